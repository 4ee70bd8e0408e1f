"""What the GPU probes share: one bf16 training step, and writing their results."""

from __future__ import annotations

import json


def bf16_step(net, opt, x) -> None:
    """One training step in bf16 autocast on a made-up loss (the mean output): timing only."""
    import torch

    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = net(x).float().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def write_json(results, path) -> None:
    """Print ``results`` as JSON and, given a ``path``, write them there too."""
    print(json.dumps(results, indent=1), flush=True)
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
