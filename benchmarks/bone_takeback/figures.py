"""Figures for README.md: per-source median |area error| of touching deposits, baseline vs rule."""
import sys
from pathlib import Path
import numpy as np, pandas as pd
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
sys.path.insert(0, str(Path(__file__).resolve().parent))
from summarise import figures

here = Path(__file__).resolve().parent
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, (csv, title) in zip(axes, [("dev_frozen_rule.csv", "development (ours, A-F)"), ("heldout.csv", "held-out (G-M), run once")]):
    d = pd.read_csv(here / csv)
    d = d[d.variant == 0]
    srcs = sorted(d.source.unique()) + ["pooled"]
    f = {s: figures(d if s == "pooled" else d[d.source == s], s) for s in srcs}
    x = np.arange(len(srcs))
    ax.bar(x - 0.2, [f[s]["touch_med_abs_err_0"] for s in srcs], 0.4, label="baseline")
    ax.bar(x + 0.2, [f[s]["touch_med_abs_err_1"] for s in srcs], 0.4, label="bulge rule")
    ax.set_xticks(x, [f"{s}\n(n={f[s]['n_touch_ok0']})" for s in srcs], fontsize=8)
    ax.set_title(title); ax.set_ylabel("median |area error| of touching ok deposits (%)")
    ax.legend()
fig.tight_layout(); fig.savefig(here / "touching_error_by_source.png", dpi=70)
