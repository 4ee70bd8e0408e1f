"""What the GPU probes share: train_segmenter's training step, and writing their results."""

from __future__ import annotations

import json
import sys


def training_step(net, opt):
    """A function ``step(x)``: one of train_segmenter's steps on CUDA (its precision, its
    gradient scaler) on a made-up loss, the mean output: for timing only."""
    import torch

    from napari_calcinosis.train import _grad_scaler, _training_dtype, _training_step

    dev = torch.device("cuda")
    dtype = _training_dtype(dev)
    scaler = _grad_scaler(dev, dtype)

    def step(x):
        _training_step(net, opt, scaler, x, lambda logits: logits.mean(), dtype)

    return step


def use_cudnn_v7_api() -> None:
    """Have PyTorch call cuDNN's legacy v7 API in this process (``TORCH_CUDNN_V8_API_DISABLED``):
    heuristics pick an algorithm, no execution plan is built. PyTorch reads the variable once,
    at the process's first convolution, so call this before that."""
    import os

    os.environ["TORCH_CUDNN_V8_API_DISABLED"] = "1"


def write_json(results, path) -> None:
    """Print ``results`` as JSON and, given a ``path``, write them there too (whole or not at all:
    a probe killed at its time limit leaves the last complete file)."""
    import os

    print(json.dumps(results, indent=1), flush=True)
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, path)


def best_paper_runs(probe: list, gain: float = 1.03) -> list:
    """The paper-workload runs for ``gpu.sh`` from the throughput probe's results: the probed
    float16, all-on-cuDNN 512² variant with train_segmenter's defaults (the decoder's joins
    written directly, the one-channel layers padded), its batch norm fused or not, on cuDNN's
    v8 or v7 API, whose first
    step plus 60,000 images at its steady rate is shortest, when that beats train_segmenter's own step (``fp16-join-pad``,
    run ``b60``) by ``gain``; then ``b60``."""
    def projected_s(r):
        return r["first_step_s"] + 60_000 / r["images_per_s"]

    usable = {r["variant"]: r for r in probe if r.get("images_per_s") and r.get("first_step_s") is not None
              and r.get("dtype") == "float16" and r.get("upsample") and r.get("join") and r.get("pad")
              and r.get("convs") == "cudnn" and r.get("size") == 512 and r.get("batch", 0) > 0
              and 120 % r["batch"] == 0 and not (r.get("benchmark") == "dense" and r.get("benchmark_limit"))}
    if "fp16-join-pad" not in usable:
        return ["b60"]
    best = min(usable.values(), key=projected_s)
    spec = f"b{best['batch']}" + {True: "-fusebn", "activated": "-fuseact"}.get(best.get("fuse"), "")
    if best.get("benchmark") == "dense":
        spec += "-autotunedense"
    elif best.get("benchmark"):
        spec += "-autotune" + (f"{best['benchmark_limit']}" if best.get("benchmark_limit") else "")
    if best.get("cudnn_api") == "v7":
        spec += "-v7"
    if spec == "b60" or projected_s(best) * gain > projected_s(usable["fp16-join-pad"]):
        return ["b60"]
    return [spec, "b60"]


if __name__ == "__main__":  # python benchmarks/_gpu.py best-paper-run PROBE_JSON
    if len(sys.argv) != 3 or sys.argv[1] != "best-paper-run":
        sys.exit("usage: python benchmarks/_gpu.py best-paper-run PROBE_JSON")
    with open(sys.argv[2]) as f:
        print(" ".join(best_paper_runs(json.load(f))))
