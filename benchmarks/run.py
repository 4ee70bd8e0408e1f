"""Speed benchmarks: training, inference, region growing and the whole ``quantify``.

One command, on whatever machine it runs on (CUDA parts run when a GPU is present)::

    python benchmarks/run.py                      # everything, prints a table, writes JSON
    python benchmarks/run.py --only grow quantify # some sections
    python benchmarks/run.py --quick              # a smoke run (minutes on a laptop)

Sections
--------
grow       ms/seed of fixed-interval region growing: ours (``grow.region_grow``), SimpleITK
           ``ConnectedThreshold`` and ``skimage.segmentation.flood``, same images, same
           interval; the masks must be identical. Also the half-maximum ``grow_lesions``.
quantify   seconds per 512x512 image of ``quantify`` (model loaded once), peak memory.
infer      U-Net inference ms/image at 512x512, batch 1 and batched, CPU and CUDA.
train      training throughput (images/s) and the wall-clock time to a bone Dice >= 0.98 on
           phantoms never trained on, CPU and CUDA; on CUDA also the paper's workload
           (120 images of 512x512, 500 epochs).

The time-to-Dice runs start a fresh process per run, so CUDA start-up is part of the time: the
clock starts when ``train_segmenter`` is called with the images in memory (the user has pressed
Train) and stops at the first validation that reaches the target. Phantoms are generated
beforehand and that time is reported separately.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TARGET_DICE = 0.98
# Phantom seed blocks: training 1,000,000+ and validation 2,000,000+ as the shipped model;
# the test phantoms that the time-to-Dice figures are checked on come from a block neither used.
TEST_SEED_OFFSET = 5_000_000


# --------------------------------------------------------------------------------------------
# helpers


def _machine() -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    return info


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _square(p, size: int = 512):
    """A phantom padded (edge values) to ``size`` x ``size`` pixels."""
    h, w = p.image_hu.shape
    pad = ((0, size - h), (0, size - w))
    return np.pad(p.image_hu, pad, mode="edge"), np.pad(p.bone_mask, pad, mode="edge")


def _timeit(fn, repeat: int) -> float:
    """Seconds per call: the best of ``repeat`` rounds of a few calls."""
    fn()
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


# --------------------------------------------------------------------------------------------
# grow


def bench_grow(quick: bool) -> dict:
    from skimage.segmentation import flood

    from napari_calcinosis import make_phantom
    from napari_calcinosis.grow import grow_lesions, region_grow

    try:
        import SimpleITK as sitk
    except ImportError:
        sitk = None
    lower, upper = 200.0, 3000.0
    n_images = 3 if quick else 10
    rows = {"ours_region_grow": 0.0, "skimage_flood": 0.0, "simpleitk_connected_threshold": 0.0, "grow_lesions_half_max": 0.0}
    n_seeds = 0
    identical = True
    for seed in range(7, 7 + n_images):
        p = make_phantom(seed, max_size_px=512, spacing_mm=0.25)
        image, bone = _square(p)
        seeds = [tuple(int(v) for v in s) for s in p.seeds]
        n_seeds += len(seeds)
        sitk_image = sitk.GetImageFromArray(image) if sitk else None
        for s in seeds:
            ours = region_grow(image, s, lower, upper)
            inside = (image >= lower) & (image <= upper)
            # flood fills the seed's own value: when the seed is outside the interval, nothing
            ref = flood(inside.view(np.uint8), s, connectivity=1).astype(bool) & inside[s]
            identical &= bool(np.array_equal(ours, ref))
            rows["ours_region_grow"] += _timeit(lambda: region_grow(image, s, lower, upper), 5)
            rows["skimage_flood"] += _timeit(
                lambda: flood(((image >= lower) & (image <= upper)).view(np.uint8), s, connectivity=1), 5
            )
            if sitk:
                def run_sitk():
                    return sitk.ConnectedThreshold(sitk_image, seedList=[(s[1], s[0])], lower=lower, upper=upper)

                identical &= bool(np.array_equal(sitk.GetArrayFromImage(run_sitk()).astype(bool), ours))
                rows["simpleitk_connected_threshold"] += _timeit(run_sitk, 5)
        rows["grow_lesions_half_max"] += _timeit(lambda: grow_lesions(image, bone, 0.25, seeds), 2)
    out = {k: 1000.0 * v / n_seeds for k, v in rows.items()}
    if not sitk:
        out.pop("simpleitk_connected_threshold")
    out.update(
        n_images=n_images, n_seeds=n_seeds, image_px="512x512", interval_hu=[lower, upper], masks_identical=identical,
        simpleitk_available=sitk is not None,
    )
    if sitk:
        out["ratio_simpleitk_over_ours"] = out["simpleitk_connected_threshold"] / out["ours_region_grow"]
    out["ratio_skimage_over_ours"] = out["skimage_flood"] / out["ours_region_grow"]
    return out


# --------------------------------------------------------------------------------------------
# quantify


def bench_quantify(quick: bool, device: str) -> dict:
    from napari_calcinosis import load_model, make_phantom, quantify
    from napari_calcinosis.io import CalcinosisImage

    model = load_model(device=device)
    times = []
    n = 3 if quick else 10
    for seed in range(7, 7 + n):
        p = make_phantom(seed, max_size_px=512, spacing_mm=0.25)
        image, _ = _square(p)
        img = CalcinosisImage(image.astype(np.float32), (0.25, 0.25))
        quantify(img, seeds=p.seeds, model=model, device=device)  # warm
        t = time.perf_counter()
        quantify(img, seeds=p.seeds, model=model, device=device)
        times.append(time.perf_counter() - t)
    return {
        "s_per_image_median": float(np.median(times)), "s_per_image_max": float(np.max(times)), "n_images": n,
        "image_px": "512x512", "device": device, "peak_rss_mb": _peak_rss_mb(),
    }


# --------------------------------------------------------------------------------------------
# inference


def bench_infer(quick: bool, device: str) -> dict:
    import torch

    from napari_calcinosis import load_model, segment_phalanges

    from napari_calcinosis import make_phantom
    from napari_calcinosis.segment import cuda_bf16

    model = load_model(device=device)
    net = model.network.eval()
    dev = model.device
    image, _ = _square(make_phantom(7, max_size_px=512, spacing_mm=0.25))
    bf16 = cuda_bf16(dev)

    def batch_of(n):
        # made once, outside the timing: only the network's work is timed
        x = torch.rand(n, 1, 512, 512, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(dev)
        return x.contiguous(memory_format=torch.channels_last) if bf16 else x

    def forward(x):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            net(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    out = {"device": str(dev), "image": "phantom 7 padded to 512x512 (segment_phalanges); random input (network)"}
    repeat = 2 if quick else 5
    # The first image after loading the model, and below one of a shape not seen before: on
    # CUDA, cuDNN prepares kernels for each new shape (the plan-free layers of _cuda_convs
    # keep that short).
    def once(seed, size):
        other = make_phantom(seed, max_size_px=size, spacing_mm=0.25)
        t = time.perf_counter()
        segment_phalanges(other.image_hu, model, spacing_mm=0.25, device=str(dev))
        return 1000 * (time.perf_counter() - t)

    out["segment_phalanges_ms_first_image"] = once(8, 448)
    out["segment_phalanges_ms_batch1"] = 1000 * _timeit(lambda: segment_phalanges(image, model, spacing_mm=0.25, device=str(dev)), repeat)
    one = batch_of(1)
    out["network_ms_per_image_batch1"] = 1000 * _timeit(lambda: forward(one), repeat)
    batch = 32 if dev.type == "cuda" else 8
    many = batch_of(batch)
    out[f"network_ms_per_image_batch{batch}"] = 1000 * _timeit(lambda: forward(many), repeat) / batch
    out["batch"] = batch
    out["segment_phalanges_ms_new_shape"] = once(9, 384)
    if dev.type == "cuda":
        out["cuda_peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


# --------------------------------------------------------------------------------------------
# train


def bench_throughput(device: str, crop_px: int, batch: int, steps: int, mixed_precision: bool = True) -> dict:
    """Training images/s in steady state (after a few warm-up steps), on device-made crops.

    The step is train_segmenter's, in its precision on this device; ``mixed_precision=False``: float32.
    """
    import torch

    from napari_calcinosis._augment_torch import augment_batch, to_device_dataset
    from napari_calcinosis.segment import DEFAULT_INPUT, new_model, select_device
    from napari_calcinosis.train import (TRAIN_SEED_OFFSET, _grad_scaler, _precision_name, _training_dtype,
                                         _training_step, augment, phantom_samples)

    dev = select_device(device)
    dtype = _training_dtype(dev) if mixed_precision else None
    samples = phantom_samples(8, TRAIN_SEED_OFFSET, workers=1, varied=False)
    model = new_model()
    net = model.to(dev).network.train()  # on CUDA: the layers train_segmenter starts from
    if dev.type == "cuda":
        from napari_calcinosis._cuda_convs import restore_convs

        restore_convs(net)  # as a long run: all on cuDNN
    if dtype is not None:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, fused=dev.type == "cuda")
    scaler = _grad_scaler(dev, dtype)
    on_device = dev.type == "cuda"
    if on_device:
        data = to_device_dataset(samples, dev)
        gen = torch.Generator(device=dev)
        gen.manual_seed(0)
    rng = np.random.default_rng(0)

    def step():
        if on_device:
            with torch.no_grad():
                x, y = augment_batch(data, batch, crop_px, DEFAULT_INPUT, gen)
        else:
            b = [augment(samples[rng.integers(len(samples))], rng, crop_px, DEFAULT_INPUT) for _ in range(batch)]
            x = torch.from_numpy(np.stack([v[0] for v in b])[:, None])
            y = torch.from_numpy(np.stack([v[1] for v in b])[:, None])
        _training_step(net, opt, scaler, x, lambda logits: torch.nn.functional.binary_cross_entropy_with_logits(logits, y),
                       dtype)

    for _ in range(3):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return {"crop_px": crop_px, "batch": batch, "steps": steps, "images_per_s": steps * batch / dt, "s_per_step": dt / steps,
            "augmentation": "on device" if on_device else "NumPy/SciPy on CPU", "precision": _precision_name(dtype) or "float32",
            "convolutions": "all on cuDNN" if on_device else "oneDNN"}


def _cache_phantoms(path: Path, n_train: int, n_val: int, n_test: int, varied: bool = False) -> float:
    from napari_calcinosis.train import TRAIN_SEED_OFFSET, VAL_SEED_OFFSET, phantom_samples

    t = time.perf_counter()
    blocks = {"train": (n_train, TRAIN_SEED_OFFSET), "val": (n_val, VAL_SEED_OFFSET), "test": (n_test, TEST_SEED_OFFSET)}
    workers = max(1, min(16, os.cpu_count() or 1))
    arrays = {}
    for name, (n, offset) in blocks.items():
        for i, s in enumerate(phantom_samples(n, offset, workers=workers, varied=varied)):
            arrays[f"{name}_{i}_hu"] = s.pixels_hu
            arrays[f"{name}_{i}_bone"] = s.bone_mask
            arrays[f"{name}_{i}_spacing"] = np.asarray(s.spacing_mm)
    np.savez(path, **arrays)
    return time.perf_counter() - t


def _load_cached(path: Path, block: str):
    from napari_calcinosis.train import TrainingSample

    z = np.load(path)
    n = len([k for k in z.files if k.startswith(block + "_") and k.endswith("_hu")])
    return [TrainingSample(z[f"{block}_{i}_hu"], z[f"{block}_{i}_bone"], tuple(z[f"{block}_{i}_spacing"]), f"{block}-{i}") for i in range(n)]


def train_to_target(cache: str, device: str, config: dict, out_dir: str, limit_s: float) -> dict:
    """One time-to-Dice run; meant to run in a fresh process (see ``--worker``)."""
    t_process = time.monotonic()
    if config.get("cudnn_api") == "v7":
        from _gpu import use_cudnn_v7_api

        use_cudnn_v7_api()
    import torch  # imported before the clock: napari has it loaded when Train is pressed

    from napari_calcinosis.train import evaluate, train_segmenter

    train = _load_cached(Path(cache), "train")[: config.get("n_train", 10**9)]
    val = _load_cached(Path(cache), "val")
    test = _load_cached(Path(cache), "test")
    deadline = {}

    def should_cancel():
        return time.monotonic() > deadline["t"]

    import napari_calcinosis.train as train_module

    train_module.PLAN_FREE_CONVS = config.get("plan_free", "auto")
    train_module.CUDA_TRAINING_DTYPE = config.get("cuda_dtype") or train_module.CUDA_TRAINING_DTYPE
    if config.get("autotune"):
        train_module.CUDNN_AUTOTUNE_MIN_PIXELS = 0
        train_module.CUDNN_AUTOTUNE_LIMIT = config.get("autotune_limit")
        train_module.CUDNN_AUTOTUNE_LAYERS = config.get("autotune_layers") or "all"
    if config.get("pad") is not None:
        train_module.CUDA_PAD_THIN_CONVS = bool(config["pad"])
    if config.get("fuse") is not None:
        train_module.CUDA_FUSE_BATCHNORM = config["fuse"]
    if config.get("join") is not None:
        import napari_calcinosis._cuda_decoder as decoder_module

        decoder_module.JOIN_UPSAMPLED = bool(config["join"])
    torch.backends.cudnn.enabled = bool(config.get("cudnn", True))
    if config.get("warm"):
        # what the Train widget does when it opens: the network library imported, CUDA started
        from napari_calcinosis.segment import warm_up
        from napari_calcinosis.train import prepare_cuda_training

        warm_up(device)
        prepare_cuda_training(device)  # the fused batch norm's kernels, where the run would use them
    t0 = time.monotonic()
    deadline["t"] = t0 + limit_s
    seen = {"steps": 0}

    def progress(p):
        if p.phase == "train":
            seen["steps"] = p.step
            if p.step in (10, 110):  # the loss is read (the GPU waited for) every 10th step
                seen[f"step{p.step}_s"] = time.monotonic() - t0

    result = train_segmenter(
        Path(out_dir) / f"bench-{config['name']}.safetensors", samples=train, val_samples=val, device=device,
        epochs=config["epochs"], steps_per_epoch=config["steps_per_epoch"], batch_size=config["batch"],
        crop_px=config["crop_px"], learning_rate=config["lr"], val_every=config.get("val_every", 1),
        stop_at_val_dice=config.get("stop_at", TARGET_DICE), should_cancel=should_cancel, seed=config.get("seed", 0),
        progress=progress,
    )
    wall = time.monotonic() - t0
    reached = [h for h in result.history if h["val_dice"] >= config.get("stop_at", TARGET_DICE)]
    from napari_calcinosis import load_model

    model = load_model(result.model_path, device=device)
    test_dice = evaluate(model, test)
    return {
        "config": config, "device": result.device, "n_train_images": len(train), "n_val": len(val), "n_test": len(test),
        "wall_s": wall, "process_s": time.monotonic() - t_process, "steps_done": seen["steps"],
        # the seconds to step 10 (start-up and 10 steps) and from step 10 to 110 (100 steady steps, one validation at most)
        "step10_s": seen.get("step10_s"),
        "steps_10_to_110_s": seen["step110_s"] - seen["step10_s"] if "step110_s" in seen else None,
        "time_to_target_s": reached[0]["elapsed_s"] if reached else None,
        "step_at_target": reached[0]["step"] if reached else None,
        "best_val_dice": result.best_val_dice, "test_dice_mean": float(np.mean(test_dice)),
        "test_dice_min": float(np.min(test_dice)), "history": result.history, "cancelled_at_limit": result.cancelled,
        "cuda_peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    }


def _run_worker(args_list, timeout_s) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(args_list)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"the worker ran over {timeout_s:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:] or f"the worker died (exit status {proc.returncode})"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "(no message)"


CPU_TARGET = {"name": "cpu", "epochs": 60, "steps_per_epoch": 10, "batch": 8, "crop_px": 192, "lr": 3e-3, "val_every": 2}
CUDA_TARGETS = [
    # every convolution on cuDNN, as before napari_calcinosis._cuda_convs: the start-up it costs
    {"name": "cuda-b64-c256-cudnn-everywhere", "epochs": 40, "steps_per_epoch": 10, "batch": 64, "crop_px": 256,
     "lr": 5e-3, "plan_free": False},
    # 200 steps: train_segmenter's rule routes the 1 x 1 and depthwise layers around cuDNN
    {"name": "cuda-b64-c256-200-steps", "epochs": 20, "steps_per_epoch": 10, "batch": 64, "crop_px": 256, "lr": 5e-3},
    # the Train widget imports the network library and starts CUDA when it opens (segment.warm_up)
    {"name": "cuda-b64-c256-200-steps-widget-warm", "epochs": 20, "steps_per_epoch": 10, "batch": 64, "crop_px": 256,
     "lr": 5e-3, "warm": True},
]
# The paper: 120 images, 500 epochs = 60,000 images. At 512x512 crops, batch 60: 2 steps an epoch.
PAPER_WORKLOAD = {"name": "paper-workload", "epochs": 500, "steps_per_epoch": 2, "batch": 60, "crop_px": 512, "lr": 3e-3,
                  "val_every": 100, "stop_at": 2.0}


def paper_run_config(spec: str) -> dict:
    """One paper-workload run from ``b<batch>[-plain|[-join][-pad]][-fusebn|-fuseact][-autotune[N]|-autotunedense][-v7]``:
    ``b60`` is train_segmenter's own long run; ``-join`` writes the decoder's upsampling straight
    into its joins (``_cuda_decoder.JOIN_UPSAMPLED``) and ``-pad`` pads the one-channel first and
    last layers to 8 channels (``train.CUDA_PAD_THIN_CONVS``), both train_segmenter's defaults
    since 2026-11-27 (the flags say so explicitly); ``-plain`` turns both off, the step before
    that; ``-fusebn`` fuses every batch norm with its activation on Triton kernels, ``-fuseact``
    only those with an activation (``train.CUDA_FUSE_BATCHNORM``: True, "activated");
    ``-autotune`` turns cuDNN's autotuner on
    (``train.CUDNN_AUTOTUNE_MIN_PIXELS``), ``-autotuneN`` timing only its best N candidates
    (``train.CUDNN_AUTOTUNE_LIMIT``), ``-autotunedense`` only for the dense 3 x 3 layers
    (``train.CUDNN_AUTOTUNE_LAYERS``); ``-v7`` runs cuDNN's convolutions through its legacy v7
    API (``TORCH_CUDNN_V8_API_DISABLED=1``: no execution plans to build)."""
    head, *flags = spec.split("-")
    limit = layers = None
    for i, flag in enumerate(flags):
        if flag.startswith("autotune") and flag[8:].isdigit():  # autotune3: the best 3 candidates
            flags[i], limit = "autotune", int(flag[8:])
        elif flag == "autotunedense":  # the dense 3 x 3 layers only
            flags[i], layers = "autotune", "dense"
    order = ["plain", "join", "pad", "fusebn", "fuseact", "autotune", "v7"]
    if (not head.startswith("b") or not head[1:].isdigit() or head[1] == "0" or set(flags) - set(order)
            or len(set(flags)) < len(flags) or limit == 0 or flags != sorted(flags, key=order.index)
            or ("plain" in flags and {"join", "pad"} & set(flags)) or {"fusebn", "fuseact"} <= set(flags)):
        raise ValueError("a paper run is b<batch>[-plain|[-join][-pad]][-fusebn|-fuseact][-autotune[N]|-autotunedense][-v7], "
                         f"got {spec!r}")
    batch = int(head[1:])
    if batch < 1 or 120 % batch:
        raise ValueError(f"the paper workload's batch must divide its 120 images, got {batch}")
    config = {**PAPER_WORKLOAD, "batch": batch, "steps_per_epoch": 120 // batch}
    for flag in order:
        if flag in flags:
            config.update(name=config["name"] + "-" + flag, **{flag: True})
    if config.pop("plain", False):
        config.update(join=False, pad=False)
    if config.pop("fusebn", False):
        config["fuse"] = True
    if config.pop("fuseact", False):
        config["fuse"] = "activated"
    if config.pop("v7", False):
        config["cudnn_api"] = "v7"
    if limit is not None:
        config.update(name=config["name"] + str(limit), autotune_limit=limit)
    if layers is not None:
        config.update(name=config["name"] + layers, autotune_layers=layers)
    if batch != PAPER_WORKLOAD["batch"]:
        config["name"] += f"-b{batch}"
    return config


def bench_train(quick: bool, device: str, work: Path, limit_cpu_s: float, paper: bool, paper_limit_s: float = 100.0,
                cuda_configs=None, varied: bool = False, cuda_dtype: str | None = None, paper_warm: bool = False,
                paper_runs=("b60",), save_partial=None) -> dict:
    """Training benchmarks; ``save_partial(out)`` is called after each run, so that a run killed
    at a time limit keeps the runs before it."""
    import torch

    import napari_calcinosis.train as train_module

    out = {}
    if cuda_dtype:
        train_module.CUDA_TRAINING_DTYPE = cuda_dtype
    cuda = device != "cpu" and torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    out["throughput"] = [bench_throughput(dev, 256, 64 if cuda else 8, 30 if cuda else (3 if quick else 10))]
    if cuda:
        out["throughput"].append(bench_throughput(dev, 512, 60, 20))
    elif out["throughput"][0]["precision"] == "bfloat16":
        # what bf16 buys on this CPU: the same steps in float32
        out["throughput"].append(bench_throughput(dev, 256, 8, 3 if quick else 10, mixed_precision=False))
    cache = work / "phantoms.npz"
    n_train = 8 if quick else (120 if cuda else 40)
    out["phantom_generation_s"] = _cache_phantoms(cache, n_train, 4 if quick else 8, 4 if quick else 16, varied)
    out["n_train_phantoms"] = n_train
    out["phantoms"] = "varied" if varied else "basic"
    configs = [c for c in CUDA_TARGETS if not cuda_configs or c["name"] in cuda_configs] if cuda else [CPU_TARGET]
    if cuda_dtype:
        configs = [{**c, "cuda_dtype": cuda_dtype} for c in configs]
    if quick:
        configs = [{**configs[0], "epochs": 2, "steps_per_epoch": 2}]
    limit = 30.0 if cuda else limit_cpu_s
    keep = save_partial or (lambda partial: None)
    keep(out)
    out["time_to_dice"] = []
    for c in configs:
        out["time_to_dice"].append(_run_worker(["target", str(cache), dev, c, str(work), limit], timeout_s=limit + 180))
        keep(out)
    if cuda and paper:
        runs = []
        for spec in paper_runs:
            paper_config = {**paper_run_config(spec), "cuda_dtype": cuda_dtype}
            if paper_warm:  # as from the Train widget, which imports the library and starts CUDA when it opens
                paper_config.update(name=paper_config["name"] + "-widget-warm", warm=True)
            runs.append(_run_worker(["target", str(cache), dev, paper_config, str(work), paper_limit_s],
                                    timeout_s=paper_limit_s + 180))
            out["paper_workload"], out["paper_workload_variants"] = runs[0], runs[1:]
            keep(out)
    return out


# --------------------------------------------------------------------------------------------
# report


def _table(results: dict) -> str:
    lines = ["| measure | value |", "| --- | --- |"]

    def row(k, v):
        lines.append(f"| {k} | {v} |")

    g = results.get("grow")
    if g:
        row("region growing, ours (ms/seed)", f"{g['ours_region_grow']:.3f}")
        if "simpleitk_connected_threshold" in g:
            row("SimpleITK ConnectedThreshold (ms/seed)", f"{g['simpleitk_connected_threshold']:.3f} (x{g['ratio_simpleitk_over_ours']:.1f} ours)")
        row("skimage flood (ms/seed)", f"{g['skimage_flood']:.3f} (x{g['ratio_skimage_over_ours']:.1f} ours)")
        row("masks identical", g["masks_identical"])
        row("grow_lesions, half-maximum (ms/seed)", f"{g['grow_lesions_half_max']:.2f}")
    q = results.get("quantify")
    if q and "error" not in q:
        row(f"quantify per 512² image ({q['device']}, s)", f"{q['s_per_image_median']:.3f} median, {q['s_per_image_max']:.3f} max")
        row("peak memory of the quantify process (RSS, MB)", f"{q['peak_rss_mb']:.0f}")
    i = results.get("infer")
    if i:
        for k, v in i.items():
            if k.endswith("_ms") or "_ms_" in k:
                row(f"inference {k} ({i['device']})", f"{v:.1f}")
    t = results.get("train")
    if t:
        for th in t["throughput"]:
            row(f"training images/s, {th['crop_px']}² crops, batch {th['batch']}, {th['precision']}", f"{th['images_per_s']:.1f}")
        for r in t["time_to_dice"]:
            if "error" in r:
                row("time to Dice ≥ 0.98", "error: " + _last_line(r["error"]))
                continue
            ttt = r["time_to_target_s"]
            row(
                f"time to val Dice ≥ 0.98 ({r['config']['name']}, {r['device']}, {t.get('phantoms', 'basic')} phantoms)",
                (f"{ttt:.1f} s (step {r['step_at_target']})" if ttt is not None else f"not reached in {r['wall_s']:.0f} s")
                + f"; test Dice {r['test_dice_mean']:.3f} (min {r['test_dice_min']:.3f}, {r['n_test']} unseen)",
            )
        for p in [t.get("paper_workload")] + list(t.get("paper_workload_variants", [])):
            if not p:
                continue
            if "error" in p:
                row("paper workload", "error: " + _last_line(p["error"]))
                continue
            done = p.get("steps_done", p["history"][-1]["step"] if p.get("history") else 0)
            row(f"paper workload 120 × 512², 500 epochs ({p['config']['name']}, s)",
                f"{p['wall_s']:.1f}" + (f" (stopped at the limit after step {done} of {500 * p['config']['steps_per_epoch']})"
                                   if p["cancelled_at_limit"] else "")
                + f"; test Dice {p['test_dice_mean']:.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", choices=["grow", "quantify", "infer", "train"], default=None)
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda (CUDA sections run only with a GPU)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: few images, few steps")
    ap.add_argument("--cpu-train-limit-s", type=float, default=300.0, help="CPU time-to-Dice budget (default 5 min)")
    ap.add_argument("--paper-workload", action="store_true", help="also run 120 x 512², 500 epochs (CUDA only)")
    ap.add_argument("--paper-limit-s", type=float, default=100.0, help="stop the paper workload after this long")
    ap.add_argument("--cuda-configs", nargs="*", default=None, help="run only these CUDA time-to-Dice configurations")
    ap.add_argument("--cuda-dtype", choices=["float16", "bfloat16"], default=None,
                    help="CUDA training's mixed precision (default: train.CUDA_TRAINING_DTYPE)")
    ap.add_argument("--paper-runs", nargs="+", default=["b60"],
                    help="paper-workload runs in this order, each b<batch>[-plain|[-join][-pad]][-fusebn|-fuseact][-autotune[N]|-autotunedense][-v7]: the "
                    "batch divides the 120 images; -join: upsampling written into the decoder's joins; -pad: the one-channel "
                    "first and last layers padded to 8 channels (both the defaults); -plain: neither; -fusebn: every batch norm "
                    "fused with its activation (Triton kernels), -fuseact: those with an activation; -autotune: "
                    "cuDNN's autotuner, -autotune3 timing its best 3 candidates, -autotunedense for the dense "
                    "3 x 3 layers only (default: b60, train_segmenter's own run)")
    ap.add_argument("--paper-warm", action="store_true",
                    help="time the paper workload as from the Train widget (library imported, CUDA started)")
    ap.add_argument(
        "--phantoms", choices=["basic", "varied"], default="basic",
        help="time-to-Dice task: basic phantoms (default; every figure in docs/performance.md before the varied "
        "phantoms was measured on them) or the varied ones the bundled model now trains on",
    )
    ap.add_argument("--json", default=None, help="where to write the results (default benchmarks/results-<host>.json)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for spec in args.paper_runs:
        try:
            paper_run_config(spec)
        except ValueError as exc:
            ap.error(f"--paper-runs: {exc}")
    if args.worker:
        kind, *rest = json.loads(args.worker)
        work = {"target": train_to_target, "quantify": bench_quantify}[kind]
        print(json.dumps(work(*rest)))
        return 0

    import tempfile

    import torch

    sections = args.only or ["grow", "quantify", "infer", "train"]
    cuda = args.device != "cpu" and torch.cuda.is_available()
    results = {"machine": _machine(), "date": time.strftime("%Y-%m-%d"), "quick": args.quick}
    work = Path(args.work or tempfile.mkdtemp(prefix="calcinosis-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json or HERE / f"results-{platform.node() or 'machine'}.json")

    def save():
        json_path.write_text(json.dumps(results, indent=1, default=str))

    for name in sections:
        t = time.perf_counter()
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        try:
            if name == "grow":
                results["grow"] = bench_grow(args.quick)
            elif name == "quantify":
                # in a process of its own, so that its peak memory is that of quantify alone
                results["quantify"] = _run_worker(["quantify", args.quick, "cpu"], timeout_s=900)
                if cuda:
                    results["quantify_cuda"] = _run_worker(["quantify", args.quick, "cuda"], timeout_s=900)
            elif name == "infer":
                results["infer"] = bench_infer(args.quick, "cpu")
                if cuda:
                    results["infer_cuda"] = bench_infer(args.quick, "cuda")
            elif name == "train":
                results["train"] = bench_train(
                    args.quick, "cuda" if cuda else "cpu", work, args.cpu_train_limit_s, args.paper_workload,
                    args.paper_limit_s, args.cuda_configs, args.phantoms == "varied", args.cuda_dtype, args.paper_warm,
                    args.paper_runs, save_partial=lambda partial: (results.__setitem__("train", partial), save()),
                )
        except Exception as exc:  # a failed section is reported, the others still run
            import traceback

            results[name + "_error"] = traceback.format_exc()
            print(f"[{name}] failed: {exc}", file=sys.stderr, flush=True)
        print(f"[{name}] {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        save()
    print(_table(results))
    for key in ("quantify_cuda", "infer_cuda"):
        if key in results:
            print(_table({key.split("_")[0]: results[key]}).split("\n", 2)[2])
    print(f"\nresults written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
