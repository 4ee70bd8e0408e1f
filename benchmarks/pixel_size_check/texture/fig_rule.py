"""Figure of the rule's two measures by factor: c2hi (PNG and JPEG apart) and thick_mm.

    python fig_rule.py /tmp/tex_rows_*.csv --tag dev
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rule import C2_JPEG, C2_LOSSLESS, THICK_MIN_MM, flags  # noqa: E402
from explore import load  # noqa: E402

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--tag", default="dev")
    a = ap.parse_args()
    d = flags(load(a.csv))
    d["grp"] = np.where(d.stress != "", "1x " + d.stress + " kernel", d.factor.map(lambda f: f"{f:g}x"))
    order = ["0.5x", "0.67x", "1x", "1x soft kernel", "1x sharp kernel", "1.5x", "2x"]
    rng = np.random.default_rng(0)
    fig, axs = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, exp, thr in ((axs[0], ("png", "dicom"), C2_LOSSLESS), (axs[1], ("jpeg",), C2_JPEG)):
        for i, g in enumerate(order):
            v = d[(d.grp == g) & d.export.isin(exp)].c2hi
            ax.scatter(i + rng.uniform(-0.3, 0.3, len(v)), v, s=4,
                       color="tab:red" if g in ("2x", "0.5x") else ("k" if g.startswith("1x") else "tab:gray"))
        ax.axhline(thr, color="b", lw=1)
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(order, rotation=30, fontsize=8)
        ax.set_title(f"c2hi, {'/'.join(exp)} ({a.tag}); line = rule {thr}")
    ax = axs[2]
    for i, g in enumerate(order):
        v = d[d.grp == g].thick_mm
        ax.scatter(i + rng.uniform(-0.3, 0.3, len(v)), v, s=4,
                   color="tab:red" if g in ("2x", "0.5x") else ("k" if g.startswith("1x") else "tab:gray"))
    ax.axhline(THICK_MIN_MM, color="b", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order, rotation=30, fontsize=8)
    ax.set_title(f"soft-tissue thickness, stated mm ({a.tag}); line = {THICK_MIN_MM}")
    fig.tight_layout()
    fig.savefig(HERE / f"{a.tag}_rule_measures.png", dpi=100)


if __name__ == "__main__":
    main()
