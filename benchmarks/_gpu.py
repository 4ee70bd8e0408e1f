"""What the GPU probes share: train_segmenter's training step, and writing their results."""

from __future__ import annotations

import json


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
