"""Development look at the measures: per source and factor, ranges; figures.

    python explore.py /tmp/tex_rows_*.csv --fig-prefix dev
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
MEASURES = ["edge_skin_mm", "edge_bone_mm", "edge_skin_px", "rho1", "c2", "c3", "thick_mm"]


def load(paths):
    d = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    d["factor"] = d["factor"].round(2)
    d["c2"] = d[["c2_x", "c2_y"]].mean(axis=1)
    d["c2max"] = d[["c2_x", "c2_y"]].abs().min(axis=1) * np.sign(d["c2"])
    d["c3"] = d[["c3_x", "c3_y"]].mean(axis=1)
    d["v7"] = d[["v7_x", "v7_y"]].mean(axis=1)
    d["export"] = np.where(d.kind.str.contains("jpeg"), "jpeg", np.where(d.kind == "dicom", "dicom", "png"))
    d["stress"] = np.where(d.kind.str.startswith("soft"), "soft",
                           np.where(d.kind.str.startswith("sharp"), "sharp", ""))
    return d


def strip(d, measure, out, title):
    facs = sorted(d.factor.unique())
    srcs = sorted(d.source.unique())
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, f in enumerate(facs):
        for j, s in enumerate(srcs):
            sel = d[(d.factor == f) & (d.source == s) & (d.stress == "")]
            x = i + (j - len(srcs) / 2) * 0.05
            ax.scatter(np.full(len(sel), x), sel[measure], s=6, color=cmap(j % 20),
                       label=s if i == 0 else None)
        st = d[(d.factor == f) & (d.stress != "")]
        if len(st):
            ax.scatter(np.full(len(st), i + 0.45), st[measure], s=6, marker="x", color="k",
                       label="1x soft/sharp kernel" if i == facs.index(1.0) else None)
    ax.set_xticks(range(len(facs)))
    ax.set_xticklabels([f"{f:g}x" for f in facs])
    ax.set_ylabel(measure)
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--fig-prefix", default="dev")
    a = ap.parse_args()
    d = load(a.csv)
    pd.set_option("display.width", 220)
    for m in MEASURES:
        t = d[d.stress == ""].groupby(["source", "factor"])[m].agg(["min", "median", "max"]).unstack("factor")
        print(f"\n== {m}\n", t.round(3).to_string())
        strip(d, m, HERE / f"{a.fig_prefix}_{m}.png", f"{m} ({a.fig_prefix}; x = soft/sharp-kernel 1x)")
    for m in MEASURES:
        print(f"\n== {m} stress (1x)\n", d[d.stress != ""].groupby(["source", "kind"])[m]
              .agg(["min", "median", "max"]).unstack("kind").round(3).to_string())


if __name__ == "__main__":
    main()
