"""Ways to the paper's workload in 60 s, measured: steady 512² training throughput per variant.

    python benchmarks/gpu_throughput_probe.py [--json PATH] [--variants NAME ...]

The paper's workload (120 images of 512², 500 epochs = 60,000 crops) takes about 118 s on an
H200 with the shipped network (583 images/s, all on cuDNN); 60 s needs about 1,100 images/s
with the start-up. Each variant runs in a fresh process: its first step (cuDNN's plans, or
its autotuning) and its steady images/s at batch 60, bf16 autocast, channels-last.

Variants: ``shipped`` (mobilenet_v2 U-Net, as trained), ``autotune`` (the same with
``cudnn.benchmark``), and lighter or other smp encoders at the same decoder (``resnet18``,
``efficientnet-b0``, ``mobileone_s0``, ``timm-mobilenetv3_small_100``) for comparison only:
the shipped model's architecture is what users fine-tune.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _gpu import bf16_step, write_json

VARIANTS = {
    "shipped": {},
    "autotune": {"benchmark": True},
    "resnet18": {"encoder_name": "resnet18"},
    "efficientnet-b0": {"encoder_name": "efficientnet-b0"},
    "mobileone_s0": {"encoder_name": "mobileone_s0"},
    "timm-mobilenetv3_small_100": {"encoder_name": "timm-mobilenetv3_small_100"},
}


def run_one(name: str, batch: int, size: int, steps: int) -> dict:
    import torch

    from napari_calcinosis.segment import DEFAULT_ARCHITECTURE, build_network

    v = VARIANTS[name]
    torch.backends.cudnn.benchmark = bool(v.get("benchmark", False))
    arch = {**DEFAULT_ARCHITECTURE, **{k: val for k, val in v.items() if k != "benchmark"}}
    torch.zeros(1, device="cuda")
    net = build_network(arch).cuda().to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, fused=True)
    x = torch.rand(batch, 1, size, size, device="cuda").contiguous(memory_format=torch.channels_last)

    def step():
        bf16_step(net, opt, x)

    t = time.perf_counter()
    step()
    torch.cuda.synchronize()
    first = time.perf_counter() - t
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    return {"variant": name, "architecture": arch, "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "parameters": sum(p.numel() for p in net.parameters()), "first_step_s": round(first, 3),
            "images_per_s": round(batch / dt, 1), "paper_workload_steady_s": round(60_000 / (batch / dt), 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--batch", type=int, default=60)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.batch, args.size, args.steps)))
        return 0
    results = []
    for name in args.variants:
        cmd = [sys.executable, __file__, "--one", name, "--batch", str(args.batch), "--size", str(args.size),
               "--steps", str(args.steps)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
            r = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {
                "variant": name, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
        except subprocess.TimeoutExpired:
            r = {"variant": name, "error": "over 180 s"}
        results.append(r)
        write_json(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
