"""How long torch.compile takes on the U-Net's training step at 512², and what it buys.

    python benchmarks/gpu_compile_probe.py [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import time

from _gpu import training_step, write_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--batch", type=int, default=60)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args(argv)
    import torch

    from napari_calcinosis.segment import new_model

    out = {}
    torch.zeros(1, device="cuda")
    from napari_calcinosis._cuda_decoder import upsample_in_input_dtype

    net = new_model().network.to("cuda").to(memory_format=torch.channels_last).train()
    upsample_in_input_dtype(net)  # as PhalanxModel.to does on CUDA
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, fused=True)
    cnet = torch.compile(net)
    b, s = args.batch, args.size
    x = torch.rand(b, 1, s, s, device="cuda").contiguous(memory_format=torch.channels_last)

    train_step = training_step(cnet, opt)

    def step():
        train_step(x)

    def save():
        write_json(out, args.json)

    t = time.perf_counter()
    step()
    torch.cuda.synchronize()
    out["first_step_with_compile_s"] = round(time.perf_counter() - t, 2)
    save()
    step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / 10
    out[f"compiled_images_per_s_b{b}_{s}"] = round(b / dt, 1)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
