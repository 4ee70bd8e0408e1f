"""Where the first seconds of GPU training go: imports, CUDA start, first steps, new shapes.

    python benchmarks/gpu_startup.py [--json PATH] [--cudnn-everywhere] [--nchw] [--cudnn-v7] [--profile]

Each phase is timed after ``torch.cuda.synchronize()``. Run it in a fresh process: the point is
what a user waits for after pressing Train. By default the 1 x 1 and depthwise convolutions run
without cuDNN, as ``train_segmenter`` does on CUDA (``napari_calcinosis._cuda_convs``);
``--cudnn-everywhere`` gives every convolution to cuDNN, for comparison; ``--cudnn-v7`` has
PyTorch call cuDNN's legacy v7 API (``TORCH_CUDNN_V8_API_DISABLED=1``: heuristics pick an
algorithm, no execution plan is built; bfloat16 convolutions, the inference phases here, then
run on PyTorch's own kernels, as PyTorch gives bfloat16 to cuDNN only through v8). cuDNN's libraries are loaded in a phase of their own
(``cudnn_init_s``, ``segment.start_cudnn``, which the Train widget runs when it opens), so the
first steps are the shape-bound start-up. ``--profile`` adds the
25 costliest GPU kernels of a 512² training step. The step is train_segmenter's, in its
precision (float16 with a gradient scaler since 2026-11-27; ``results-h200-startup.json`` was
measured in bfloat16).
"""

from __future__ import annotations

import argparse
import sys
import time

from _gpu import training_step, use_cudnn_v7_api, write_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--cudnn-everywhere", action="store_true")
    ap.add_argument("--nchw", action="store_true", help="plan-free layers in NCHW rather than channels-last")
    ap.add_argument("--cudnn-v7", action="store_true", help="cuDNN's legacy v7 API (no execution plans)")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    if args.cudnn_v7:
        use_cudnn_v7_api()
    t_all = time.perf_counter()
    import torch

    layout = torch.contiguous_format if args.nchw else torch.channels_last
    out = {"plan_free_convs": not args.cudnn_everywhere, "layout": "nchw" if args.nchw else "channels_last",
           "cudnn_api": "v7" if args.cudnn_v7 else "v8", "import_torch_s": round(time.perf_counter() - t_all, 3)}

    def timed(name, fn):
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        out[name] = round(time.perf_counter() - t, 4)
        print(f"{name}: {out[name]:.3f} s", file=sys.stderr, flush=True)

    timed("import_smp_and_package_s", lambda: __import__("napari_calcinosis.segment") and __import__("segmentation_models_pytorch"))
    from napari_calcinosis._cuda_convs import plan_free_convs
    from napari_calcinosis._cuda_decoder import upsample_in_input_dtype
    from napari_calcinosis.segment import new_model, start_cudnn

    timed("cuda_init_s", lambda: torch.zeros(1, device="cuda"))
    timed("cublas_init_s", lambda: (torch.ones(64, 64, device="cuda") @ torch.ones(64, 64, device="cuda")).sum().item())
    timed("cudnn_init_s", lambda: start_cudnn("cuda"))
    state = {}
    timed("build_network_cpu_s", lambda: state.update(net=new_model().network))

    def to_gpu():
        net = state["net"].to("cuda").to(memory_format=layout).train()
        if not args.cudnn_everywhere:
            out["n_plan_free"] = plan_free_convs(net)
        upsample_in_input_dtype(net)  # as PhalanxModel.to does on CUDA
        state["net"] = net
        state["opt"] = torch.optim.AdamW(net.parameters(), lr=1e-3, fused=True)

    timed("model_to_gpu_s", to_gpu)
    net, opt = state["net"], state["opt"]

    train_step = training_step(net, opt)

    def step(batch, size):
        train_step(torch.rand(batch, 1, size, size, device="cuda").contiguous(memory_format=layout))

    def infer(b, h, w):
        x = torch.rand(b, 1, h, w, device="cuda").contiguous(memory_format=layout)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            net.eval()(x)
        net.train()

    timed("train_step1_b64_256_s", lambda: step(64, 256))
    timed("train_step2_b64_256_s", lambda: step(64, 256))
    timed("train_steps3to12_b64_256_s", lambda: [step(64, 256) for _ in range(10)])
    timed("infer_new_shape_b8_416x640_s", lambda: infer(8, 416, 640))
    timed("infer_same_shape_b8_416x640_s", lambda: infer(8, 416, 640))
    timed("infer_new_shape_b1_448x320_s", lambda: infer(1, 448, 320))
    timed("train_step1_b32_256_s", lambda: step(32, 256))
    timed("train_step1_b60_512_s", lambda: step(60, 512))
    for batch, size in ((32, 256), (64, 256), (128, 256), (60, 512)):
        step(batch, size)
        timed(f"steady_step_b{batch}_{size}_s", lambda: [step(batch, size) for _ in range(10)])
        out[f"steady_step_b{batch}_{size}_s"] /= 10
        out[f"images_per_s_b{batch}_{size}"] = round(batch / out[f"steady_step_b{batch}_{size}_s"], 1)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step(60, 512)
            torch.cuda.synchronize()
        rows = []
        for e in sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[:25]:
            rows.append({"kernel": e.key[:120], "calls": e.count, "cuda_ms_per_step": round(e.device_time_total / 1000 / 3, 3)})
        out["profile_b60_512_top25"] = rows
        out["profile_b60_512_total_ms_per_step"] = round(sum(e.self_device_time_total for e in prof.key_averages()) / 1000 / 3, 2)
    out["total_s"] = round(time.perf_counter() - t_all, 2)
    write_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
