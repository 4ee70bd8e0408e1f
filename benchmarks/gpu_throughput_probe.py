"""Ways to the paper's workload in 60 s, measured: steady training throughput per variant.

    python benchmarks/gpu_throughput_probe.py [--json PATH] [--variants NAME ...] [--profile NAME]

The paper's workload (120 images of 512², 500 epochs = 60,000 crops) took about 118 s on an
H200 with the shipped network in bfloat16 (583 images/s, all on cuDNN); 60 s needs about
1,100 images/s with the start-up. Each variant runs train_segmenter's step
(``train._training_step``: autocast, channels-last, fused AdamW, a gradient scaler in float16)
on random crops already on the GPU, in a fresh process: its first step (cuDNN's plans) and
its steady images/s. The variants differ in

- ``dtype``: bfloat16 (PyTorch's own batch-norm kernels) or float16 (cuDNN's batch norm);
- ``upsample``: the decoder's nearest upsampling in autocast's dtype (``_cuda_decoder``) or,
  as CUDA autocast does by itself, in float32; ``join``: besides, written straight into the
  join with the skip connection (``_cuda_decoder.JOIN_UPSAMPLED``);
- ``convs``: all on cuDNN, plan-free 1 x 1 and depthwise layers (``_cuda_convs``), or only the
  1 x 1 layers on cuBLAS;
- ``pad``: the one-channel first and last layers run with their channels padded to 8
  (``_cuda_convs.pad_thin_convs``: cuDNN's one-channel kernels are unaligned and slow);
- ``fuse``: batch norm and the activation after it as one layer on Triton kernels
  (``_cuda_batchnorm``; True: every batch norm, "activated": those with an activation); the
  first step includes the kernels' check and compilation (a second process finds them in
  Triton's cache: the ``-again`` variant);
- ``augment-b120``: not a training step but the device augmentation before it
  (``_augment_torch.augment_batch``, batch 120 at 512²), its ms a batch and kernel profile;
- batch and crop size, and cuDNN's autotuner (all its candidate kernels, or the best 3; for
  every layer, or only the ten dense 3 x 3 ones: ``_cuda_convs.autotune_dense_convs``);
- ``cudnn_api``: PyTorch's cuDNN v8 ("graph") API, its default, or the legacy v7 API
  (``TORCH_CUDNN_V8_API_DISABLED=1``, read once per process at the first convolution): the v8
  API builds an execution plan per layer shape, which is most of the first step; for
  float16 and float32 the v7 API asks cuDNN's heuristics for an algorithm instead (bfloat16
  convolutions it takes off cuDNN: PyTorch sends them to cuDNN only through v8). The ``-v7``
  variants, float16, time that.

cuDNN's libraries are loaded before the first step (``segment.start_cudnn``, as the Train
widget does when it opens; ``cudnn_start_s``), so ``first_step_s`` is the shape-bound start-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _gpu import use_cudnn_v7_api, write_json

BASE = {"dtype": "float16", "upsample": True, "join": False, "pad": False, "convs": "cudnn", "batch": 60, "size": 512,
        "benchmark": False, "benchmark_limit": None, "fuse": False, "cudnn_api": "v8"}
VARIANTS = {
    "bf16": {"dtype": "bfloat16", "upsample": False},  # the step before this probe: 583-595 images/s
    "bf16-upsample": {"dtype": "bfloat16"},
    "fp16": {"upsample": False},
    "fp16-upsample": {},  # train_segmenter's long runs until 2026-11-27
    "fp16-upsample-pointwise-cublas": {"convs": "pointwise"},
    "fp16-upsample-b120": {"batch": 120},
    "fp16-upsample-plan-free": {"convs": "plan-free"},
    "256-bf16-plan-free": {"dtype": "bfloat16", "upsample": False, "convs": "plan-free", "batch": 64, "size": 256},
    "256-fp16-upsample-plan-free": {"convs": "plan-free", "batch": 64, "size": 256},  # short runs now
    "fp16-join": {"join": True},
    "fp16-join-b120": {"join": True, "batch": 120},
    "fp16-pad": {"pad": True},
    "fp16-join-pad": {"join": True, "pad": True},  # train_segmenter's long runs now
    "fp16-join-pad-b120": {"join": True, "pad": True, "batch": 120},
    "fp16-join-pad-fusebn": {"join": True, "pad": True, "fuse": True},
    "fp16-join-pad-fusebn-again": {"join": True, "pad": True, "fuse": True},  # Triton's cache now warm
    "fp16-join-pad-fuseact": {"join": True, "pad": True, "fuse": "activated"},
    "fp16-join-pad-fusebn-b120": {"join": True, "pad": True, "fuse": True, "batch": 120},
    "fp16-join-pad-v7": {"join": True, "pad": True, "cudnn_api": "v7"},
    # the device augmentation alone (train_segmenter's, before each step), batch 120 at 512²
    "augment-b120": {"batch": 120, "augment_only": True},
    "fp16-join-pad-fusebn-b120-v7": {"join": True, "pad": True, "fuse": True, "batch": 120, "cudnn_api": "v7"},
    # only when asked for (--variants): cuDNN's autotuner, whose first step is the autotuning
    "fp16-upsample-autotune": {"benchmark": True},
    "fp16-join-autotune": {"join": True, "benchmark": True},
    "fp16-join-autotune-top3": {"join": True, "benchmark": True, "benchmark_limit": 3},
    "fp16-join-autotune-dense": {"join": True, "benchmark": "dense"},
    "fp16-join-pad-autotune": {"join": True, "pad": True, "benchmark": True},
    "fp16-join-pad-autotune-top3": {"join": True, "pad": True, "benchmark": True, "benchmark_limit": 3},
    "fp16-join-pad-autotune-dense": {"join": True, "pad": True, "benchmark": "dense"},
}
DEFAULT_VARIANTS = [name for name in VARIANTS if "autotune" not in name]


def _profile(step, steps: int = 3) -> list:
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t:
            rows.append({"kernel": e.key[:140], "calls": e.count // steps, "ms_per_step": round(t / 1000 / steps, 3)})
    rows.sort(key=lambda r: -r["ms_per_step"])
    return rows[:25] + [{"kernel": "total", "ms_per_step": round(sum(r["ms_per_step"] for r in rows), 2)}]


def _first_and_steady(step, sync, steps: int, since: float | None = None) -> tuple[float, float]:
    """Seconds of the first ``step()`` (counted from ``since`` when given), then of each of
    ``steps`` more after three to warm up."""
    t = time.perf_counter() if since is None else since
    step()
    sync()
    first = time.perf_counter() - t
    for _ in range(3):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return first, (time.perf_counter() - t) / steps


def augment_one(v: dict, steps: int, profile: bool, device: str) -> dict:
    """The device augmentation's time per batch (``_augment_torch.augment_batch``) on 120
    images of the paper's phantoms' size, already on the device."""
    import numpy as np
    import torch

    from napari_calcinosis._augment_torch import augment_batch, to_device_dataset
    from napari_calcinosis.segment import DEFAULT_INPUT
    from napari_calcinosis.train import TrainingSample

    dev = torch.device(device)
    rng = np.random.default_rng(0)
    samples = [TrainingSample(rng.normal(40, 300, (448, 640)).astype(np.float32), rng.random((448, 640)) > 0.8, 0.2)
               for _ in range(120)]
    data = to_device_dataset(samples, dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step():
        with torch.no_grad():
            augment_batch(data, v["batch"], v["size"], DEFAULT_INPUT, gen)

    first, dt = _first_and_steady(step, sync, steps)
    out = {"variant": v["name"], **v, "first_batch_s": round(first, 3), "augment_ms_per_batch": round(1000 * dt, 2)}
    if profile and dev.type == "cuda":
        out["profile_top25"] = _profile(step)
    return out


def run_one(name: str, steps: int, profile: bool, device: str = "cuda") -> dict:
    v = {**BASE, "augment_only": False, **VARIANTS[name]}
    if v["augment_only"]:
        return augment_one({**v, "name": name}, steps, profile, device)
    if v["cudnn_api"] == "v7":
        use_cudnn_v7_api()
    import torch

    from napari_calcinosis._cuda_convs import (_DepthwiseConv2d, autotune_dense_convs, pad_thin_convs, plan_free_convs,
                                                restore_convs)
    from napari_calcinosis._cuda_decoder import restore_decoder, upsample_in_input_dtype
    from napari_calcinosis.segment import new_model, start_cudnn
    from napari_calcinosis.train import _grad_scaler, _training_step

    torch.backends.cudnn.benchmark = v["benchmark"] is True  # "dense": those layers only, below
    if v["benchmark_limit"] is not None:  # the autotuner times only the heuristics' best few kernels
        torch.backends.cudnn.benchmark_limit = v["benchmark_limit"]
    dtype = getattr(torch, v["dtype"])
    dev = torch.device(device)  # "cpu" only to smoke-test this script
    torch.zeros(1, device=dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t = time.perf_counter()
    start_cudnn(dev)  # the libraries, as the Train widget loads them when it opens
    cudnn_start = time.perf_counter() - t

    net = new_model().network.to(dev).to(memory_format=torch.channels_last).train()
    restore_convs(net)
    if v["convs"] in ("plan-free", "pointwise"):
        plan_free_convs(net)
    if v["convs"] == "pointwise":
        for m in net.modules():
            if type(m) is _DepthwiseConv2d:
                m.__class__ = torch.nn.Conv2d
    if v["pad"]:
        pad_thin_convs(net)
    if v["benchmark"] == "dense":
        autotune_dense_convs(net)
    if v["upsample"]:
        upsample_in_input_dtype(net, join=v["join"])
    else:
        restore_decoder(net)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4, fused=dev.type == "cuda")
    scaler = _grad_scaler(dev, dtype)
    b, s = v["batch"], v["size"]
    x = torch.rand(b, 1, s, s, device=dev) * 2 - 1
    y = (torch.rand(b, 1, s, s, device=dev) > 0.7).float()

    def step():
        _training_step(net, opt, scaler, x, lambda logits: torch.nn.functional.binary_cross_entropy_with_logits(logits, y),
                       dtype)

    t = time.perf_counter()
    if v["fuse"]:  # as train_segmenter does: the check (which compiles the kernels), then the layers
        from napari_calcinosis._cuda_batchnorm import fuse_batchnorm, kernels_work

        fuse_note = kernels_work(dev, dtype)
        if fuse_note is not None:
            raise RuntimeError(f"batch norm not fused: {fuse_note}")
        fuse_batchnorm(net, alone=v["fuse"] is True)
    first, dt = _first_and_steady(step, sync, steps, since=t)
    bn = None
    try:  # which batch norm backend PyTorch picks for this dtype (cuDNN or its own)
        bn_layer = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
        probe = torch.zeros(2, bn_layer.num_features, 8, 8, device=dev, dtype=dtype).contiguous(memory_format=torch.channels_last)
        bn = str(torch._C._select_batch_norm_backend(probe, bn_layer.weight, bn_layer.bias, bn_layer.running_mean,
                                                      bn_layer.running_var, True, bn_layer.eps))
    except Exception as exc:  # a private function: report, do not fail
        bn = f"unknown ({type(exc).__name__})"
    out = {"variant": name, **v, "batch_norm_backend": bn, "cudnn_start_s": round(cudnn_start, 3),
           "first_step_s": round(first, 3),
           "steady_step_s": round(dt, 5), "images_per_s": round(b / dt, 1),
           "paper_workload_steady_s": round(60_000 / (b / dt), 1),
           "grad_scale": float(scaler.get_scale()) if scaler is not None else None,
           "cuda_peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev.type == "cuda" else None}
    if profile and dev.type == "cuda":
        out["profile_top25"] = _profile(step)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    ap.add_argument("--profile", nargs="*", default=["fp16-join-pad", "fp16-join-pad-fusebn-again", "augment-b120"],
                    help="variants to profile")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: a smoke test of this script
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.steps, args.one in args.profile, args.device)))
        return 0
    results = []
    for name in args.variants:
        cmd = [sys.executable, __file__, "--one", name, "--steps", str(args.steps), "--device", args.device,
               "--profile", *args.profile]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            r = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {
                "variant": name, "error": proc.stderr.strip()[-1500:] if proc.stderr.strip() else "failed"}
        except subprocess.TimeoutExpired:
            r = {"variant": name, "error": "over 120 s"}
        results.append(r)
        write_json(results, args.json)
        if "augment_ms_per_batch" in r:
            print(f"{name:34s} {r['augment_ms_per_batch']:>10} ms a batch", file=sys.stderr, flush=True)
            continue
        print(f"{name:34s} {r.get('images_per_s', r.get('error', '?'))!s:>10} images/s  first step "
              f"{r.get('first_step_s', '-')} s  bn {r.get('batch_norm_backend', '-')}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
