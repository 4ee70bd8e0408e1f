"""Where the first seconds of GPU training go: CUDA start, first steps, first inference per shape.

    python benchmarks/gpu_startup.py [--json PATH]

Each phase is timed after ``torch.cuda.synchronize()``. Run in a fresh process: the point is
what a user waits for after pressing Train.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    import torch

    from napari_calcinosis.segment import new_model

    out = {"import_torch_s": time.perf_counter() - t_all}

    def timed(name, fn):
        torch.cuda.synchronize() if torch.cuda.is_initialized() else None
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out[name] = round(time.perf_counter() - t, 4)
        print(f"{name}: {out[name]:.3f} s", file=sys.stderr, flush=True)

    timed("cuda_init_s", lambda: torch.zeros(1, device="cuda"))
    state = {}

    def build():
        state["net"] = new_model().network.to("cuda").to(memory_format=torch.channels_last).train()
        state["opt"] = torch.optim.AdamW(state["net"].parameters(), lr=1e-3, fused=True)

    timed("model_to_gpu_s", build)
    net, opt = state["net"], state["opt"]

    def step(batch, size):
        x = torch.rand(batch, 1, size, size, device="cuda").contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = net(x).float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer(h, w):
        x = torch.rand(1, 1, h, w, device="cuda").contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            net.eval()(x)
        net.train()

    timed("train_step1_b32_256_s", lambda: step(32, 256))
    timed("train_step2_b32_256_s", lambda: step(32, 256))
    timed("train_steps3to12_b32_256_s", lambda: [step(32, 256) for _ in range(10)])
    timed("infer_new_shape_448x320_s", lambda: infer(448, 320))
    timed("infer_same_shape_448x320_s", lambda: infer(448, 320))
    timed("infer_new_shape_464x336_s", lambda: infer(464, 336))
    timed("train_step1_b64_512_s", lambda: step(64, 512))
    timed("train_steps2to6_b64_512_s", lambda: [step(64, 512) for _ in range(5)])
    torch.backends.cudnn.enabled = False
    timed("nocudnn_infer_new_shape_480x352_s", lambda: infer(480, 352))
    timed("nocudnn_infer_same_shape_480x352_s", lambda: infer(480, 352))
    timed("nocudnn_train_step1_b32_256_s", lambda: step(32, 256))
    timed("nocudnn_train_steps2to11_b32_256_s", lambda: [step(32, 256) for _ in range(10)])
    torch.backends.cudnn.enabled = True
    for batch, size in ((16, 512), (32, 512), (64, 512), (64, 256), (128, 256)):
        step(batch, size)
        timed(f"steady_step_b{batch}_{size}_s", lambda: [step(batch, size) for _ in range(10)])
        out[f"steady_step_b{batch}_{size}_s"] /= 10
        out[f"images_per_s_b{batch}_{size}"] = batch / out[f"steady_step_b{batch}_{size}_s"]
    out["total_s"] = time.perf_counter() - t_all
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
