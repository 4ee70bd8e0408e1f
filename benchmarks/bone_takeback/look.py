"""Baseline on the development cases, and crops of the touching deposits it mis-measures.

    python benchmarks/bone_takeback/look.py OUT_DIR SOURCE [SOURCE ...]
"""
import sys
from pathlib import Path
import pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_case, grow_and_measure, true_gaps, SHORT

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
rows, crops = [], []
for name in sys.argv[2:]:
    for seed in range(15):
        c = load_case(name, seed)
        res, tab = grow_and_measure(c, c["bone_mask"], c["probability"])
        gaps = true_gaps(c)
        for k in range(len(c["seeds"])):
            t = tab.iloc[k]
            r = dict(source=SHORT[name], seed=seed, deposit=k + 1, true=c["areas"][k], area=t["area_mm2"],
                     status=t["status"], gap=gaps[k], freed=t["freed_from_bone_mm2"])
            rows.append(r)
            if gaps[k] < 0.3 and (r["status"] != "ok" or abs(r["area"] / r["true"] - 1) > 0.15):
                crops.append((c, res, k, r))
df = pd.DataFrame(rows)
df.to_csv(out / "baseline_dev.csv", index=False)
print(len(df), "seeds;", len(crops), "touching mis-measured")
per = 12
for p in range(0, len(crops), per):
    fig, axes = plt.subplots(3, 8, figsize=(32, 12))
    for ax in axes.ravel(): ax.axis("off")
    for j, (c, res, k, r) in enumerate(crops[p:p + per]):
        s = float(c["spacing"]); h = int(round(6 / s))
        rr, cc = c["seeds"][k]
        win = (slice(max(rr - h, 0), rr + h), slice(max(cc - h, 0), cc + h))
        ax = axes.ravel()[2 * j]
        ax.imshow(c["hu"][win], cmap="gray", vmin=-200, vmax=1500)
        ax.contour(c["bone"][win], [0.5], colors="lime", linewidths=0.8)
        ax.contour(c["bone_mask"][win], [0.5], colors="red", linewidths=0.8)
        ax.contour(c["deposits"][win] == k + 1, [0.5], colors="cyan", linewidths=0.8)
        lid = res.seeds["lesion_id"].iat[k]
        if lid: ax.contour(res.lesion_labels[win] == lid, [0.5], colors="yellow", linewidths=0.8)
        ax.plot(cc - win[1].start, rr - win[0].start, "m+")
        ax.set_title(f"{r['source']}{r['seed']} d{r['deposit']} true {r['true']:.2f} got {r['area']:.2f} {r['status']} s={s:.2f}", fontsize=8)
        ax = axes.ravel()[2 * j + 1]
        ax.imshow(c["probability"][win], cmap="viridis", vmin=0, vmax=1)
        ax.contour(c["deposits"][win] == k + 1, [0.5], colors="cyan", linewidths=0.8)
        ax.contour(c["bone_mask"][win], [0.5], colors="red", linewidths=0.8)
        ax.set_title("prob (0-1)", fontsize=8)
    fig.tight_layout(); fig.savefig(out / f"crops_{p // per}.png", dpi=55); plt.close(fig)
