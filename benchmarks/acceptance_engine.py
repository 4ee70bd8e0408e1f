"""Acceptance run for the headless engine (issue 2), through the command line as a user runs it.

    python benchmarks/acceptance_engine.py --seed 7 -n 40 --work /tmp/acceptance

1. ``napari-calcinosis sample --out S -n 40 --seed 7`` (seeds 7..46: never used in training,
   which used phantom seeds 1,000,000+ and validation 2,000,000+);
2. ``napari-calcinosis quantify S/*.dcm --seeds S/seeds.csv --out r.csv --masks M``, timed;
3. the same through the 8-bit PNG exports, each with its ``--pixel-size``
   (``--model M`` runs steps 2 and 3 with another model than the bundled one);
4. Lin's CCC, Bland-Altman bias and 95 % limits of agreement of area_mm2 against the truth,
   and bone Dice against the true masks, overall and on images with cut-off phalanges.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd


def lins_ccc(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2))


def agreement(truth: pd.DataFrame, result: pd.DataFrame) -> dict:
    merged = truth.reset_index(drop=True)
    est = result["area_mm2"].to_numpy(float)
    diff = est - merged["area_mm2"].to_numpy(float)
    sd = diff.std(ddof=1)
    return {
        "n_lesions": int(len(diff)),
        "failed_seeds": int((result["status"] != "ok").sum()),
        "lins_ccc": lins_ccc(merged["area_mm2"], est),
        "bias_mm2": float(diff.mean()),
        "loa_low_mm2": float(diff.mean() - 1.96 * sd),
        "loa_high_mm2": float(diff.mean() + 1.96 * sd),
    }


def cli(*args) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "napari_calcinosis", *map(str, args)], check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("-n", type=int, default=40)
    ap.add_argument("--work", default="acceptance-run")
    ap.add_argument("--skip-png", action="store_true")
    ap.add_argument("--model", default=None, help="model .safetensors (default: the bundled one)")
    args = ap.parse_args()
    model = ("--model", args.model) if args.model else ()
    work = Path(args.work)
    S, M = work / "S", work / "M"
    cli("sample", "--out", S, "-n", args.n, "--seed", args.seed)
    truth = pd.read_csv(S / "truth.csv")
    dcms = sorted(S.glob("*.dcm"))
    seconds = cli("quantify", *dcms, "--seeds", S / "seeds.csv", "--out", work / "r.csv", "--masks", M, "--device", "cpu", *model)
    report = {"dicom": agreement(truth, pd.read_csv(work / "r.csv")), "quantify_seconds_total": seconds,
              "quantify_seconds_per_image": seconds / len(dcms)}

    dices = []
    cut = truth.groupby("image")["cut_off"].first()
    for stem, is_cut in cut.items():
        pred = iio.imread(M / f"{stem}_bone.png") > 0
        gt = iio.imread(S / "masks" / f"{stem}_bone.png") > 0
        dices.append((stem, bool(is_cut), 2 * (pred & gt).sum() / (pred.sum() + gt.sum())))
    d = pd.DataFrame(dices, columns=["image", "cut_off", "dice"])
    report["bone_dice"] = {
        "mean_all": float(d["dice"].mean()), "min_all": float(d["dice"].min()), "n_all": int(len(d)),
        "mean_cut_off": float(d.loc[d.cut_off, "dice"].mean()), "min_cut_off": float(d.loc[d.cut_off, "dice"].min()),
        "n_cut_off": int(d.cut_off.sum()),
        "mean_not_cut_off": float(d.loc[~d.cut_off, "dice"].mean()),
    }

    if not args.skip_png:
        spacing = truth.groupby("image")["spacing_mm"].first()
        frames = []
        for stem, mm in spacing.items():
            out = work / "png" / f"{stem}.csv"
            cli("quantify", S / f"{stem}.png", "--seeds", S / "seeds.csv", "--pixel-size", repr(float(mm)),
                "--out", out, "--device", "cpu", *model)
            frames.append(pd.read_csv(out))
        report["png"] = agreement(truth, pd.concat(frames, ignore_index=True))
    print(json.dumps(report, indent=2))
    (work / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
