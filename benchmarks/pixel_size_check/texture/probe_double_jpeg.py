"""Exploratory, after the held-out run (not part of the pre-registered rule).

When the *original* export was a JPEG, its 8 x 8 block grid is resized with the image: a 2x
resize puts the old block boundaries every 16 px, a 0.5x every 4 px. A correct single-JPEG (or
JPEG -> PNG) image has only the 8-px grid. This probes whether that old grid is visible.

Chain: HU -> 8-bit -> JPEG q1 (75-95) -> resize f (PIL, random method) -> PNG or JPEG q2 (75-95).

Scores (whole body, unclipped pixels, both axes, mean |first difference| by phase):
  g16 = max_p (v16[p] - v16[p+8]) / mean(v16)       old boundaries every 16 px (2x)
  g4  = (v8[3] - mean(v8[1], v8[5])) / mean(v8[:7]) old boundaries at phase 3 and 7 (0.5x)

    python probe_double_jpeg.py --out /tmp/probe_dj.csv [-n 5]
"""
from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from texture_study import METHODS, body_mask, cases, export8, jpeg, pil_resize  # noqa: E402


def phase_means(u, period):
    body = body_mask(u)
    out = []
    for uu, bb in ((u, body), (u.T, body.T)):
        d = np.abs(np.diff(uu, axis=1))
        ok = bb[:, 1:] & bb[:, :-1] & (uu[:, 1:] > 0.01) & (uu[:, :-1] > 0.01) & (uu[:, 1:] < 0.99) & (uu[:, :-1] < 0.99)
        j = np.broadcast_to(np.arange(d.shape[1]), d.shape)
        out.append(np.array([d[ok & (j % period == p)].mean() for p in range(period)]))
    return out


def scores(u):
    g16 = []
    for v in phase_means(u, 16):
        g16.append(max(v[p] - v[(p + 8) % 16] for p in range(16)) / v.mean())
    g4 = []
    for v in phase_means(u, 8):
        g4.append((v[3] - (v[1] + v[5]) / 2) / v[:7].mean())
    return dict(g16=float(min(g16)), g4=float(min(g4)))   # min: both axes must show it


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--sources", default="ours_basic,varied,a,b,c,d,e,f")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    rows = []
    for src in a.sources.split(","):
        for cid, hu, s, _ in cases(src, a.n):
            rng = np.random.default_rng(zlib.crc32(f"dj/{src}/{cid}".encode()))
            q1 = int(rng.integers(75, 96))
            j1 = jpeg(export8(hu), q1)
            for f in (1.0, 2.0, 0.5):
                m = str(rng.choice(list(METHODS)))
                r = j1 if f == 1 else pil_resize(j1, f, m)
                for outfmt in ("png", "jpeg"):
                    q2 = int(rng.integers(75, 96))
                    img = r if outfmt == "png" else jpeg(r, q2)
                    rows.append(dict(source=src, case=cid, factor=f, method=m if f != 1 else "", q1=q1,
                                     out=outfmt, q2=q2 if outfmt == "jpeg" else 0, **scores(img / 255.0)))
            print(src, cid, flush=True)
    pd.DataFrame(rows).to_csv(a.out, index=False)


if __name__ == "__main__":
    main()
