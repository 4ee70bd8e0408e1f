"""Apply the pre-registered rule (README.md, "The rule, written before the held-out run") to rows.

    python rule.py /tmp/tex_rows_*.csv            # development half
    python rule.py /tmp/tex_held_*.csv --tag held  # held-out half, run once

Prints catch rates per factor (and per export), false alarms on correct (1x) images per source and
per kind, and writes <tag>_rule_summary.csv next to this file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from explore import load

HERE = Path(__file__).resolve().parent

# ---- the rule (frozen 2026-11-28 17:20 UTC, before the held-out run) ----
C2_LOSSLESS = -0.10   # PNG / HU: both axes' parity contrast below this -> "upsampled"
C2_JPEG = -0.16       # JPEG: stricter (JPEG's 8x8 blocks bias the contrast on smooth images)
THICK_MIN_MM = 9.0    # soft-tissue thickness (largest inscribed disc of the body) below -> "downsampled"


def flags(d: pd.DataFrame) -> pd.DataFrame:
    d = d.copy()
    d["c2hi"] = d[["c2_x", "c2_y"]].max(axis=1)
    t = np.where(d.export == "jpeg", C2_JPEG, C2_LOSSLESS)
    d["flag_up"] = d.c2hi < t
    d["flag_down"] = d.thick_mm < THICK_MIN_MM
    d["flag"] = d.flag_up | d.flag_down
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--tag", default="dev")
    a = ap.parse_args()
    d = flags(load(a.csv))
    pd.set_option("display.width", 220)
    res = d[d.factor != 1]
    print("== catch rate (any flag) by factor and export")
    print(res.groupby(["factor", "export"]).flag.mean().unstack().round(3).to_string())
    print(res.groupby("factor").agg(caught=("flag", "mean"), up=("flag_up", "mean"),
                                    down=("flag_down", "mean"), n=("flag", "size")).round(3).to_string())
    print("\n== 2x and 0.5x caught, per source")
    print(res[res.factor.isin([2.0, 0.5])].groupby(["source", "factor"]).flag.mean().unstack().round(2).to_string())
    print("\n== 2x caught per resampling method")
    print(res[res.factor == 2.0].groupby(["method", "export"]).flag.mean().unstack().round(2).to_string())
    one = d[d.factor == 1]
    print("\n== false alarms on correct (1x) images: count / n, per source and kind")
    fa = one.groupby(["source", "kind"]).flag.agg(lambda x: f"{int(x.sum())}/{len(x)}").unstack()
    print(fa.to_string())
    main_fa = one[one.stress == ""]
    print(f"\nFA on correct images (dicom/png/jpeg): {int(main_fa.flag.sum())}/{len(main_fa)};"
          f" on soft/sharp-kernel stress images: {int(one[one.stress != ''].flag.sum())}/{int((one.stress != '').sum())}")
    summ = res.groupby(["source", "factor"]).flag.mean().unstack()
    summ["fa_correct"] = main_fa.groupby("source").flag.sum()
    summ["n_correct"] = main_fa.groupby("source").flag.size()
    summ["fa_stress"] = one[one.stress != ""].groupby("source").flag.sum()
    summ.round(3).to_csv(HERE / f"{a.tag}_rule_summary.csv")


if __name__ == "__main__":
    main()
