"""Crops before/after the rule: python show.py OUT.png RADIUS source:seed:deposit ..."""
import sys, json
from pathlib import Path
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_case
from rule import take_back

out, opts, items = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
fig, axes = plt.subplots(2, len(items), figsize=(4.2 * len(items), 8.4), squeeze=False)
for j, it in enumerate(items):
    name, seed, k = it.split(":"); seed, k = int(seed), int(k) - 1
    c = load_case(name, seed); s = float(c["spacing"])
    seeds = [tuple(map(int, p)) for p in c["seeds"]]
    res, taken, base = take_back(c["hu"], c["bone_mask"], c["probability"], (s, s), seeds, **opts)
    h = int(round(5 / s)); rr, cc = seeds[k]
    win = (slice(max(rr - h, 0), rr + h), slice(max(cc - h, 0), cc + h))
    for row, (r, lbl) in enumerate([(base, "before"), (res, "after")]):
        ax = axes[row, j]; ax.axis("off")
        ax.imshow(c["hu"][win], cmap="gray", vmin=-200, vmax=1600)
        ax.contour(c["bone"][win], [0.5], colors="lime", linewidths=0.8)
        ax.contour(r.bone_mask[win], [0.5], colors="red", linewidths=0.8)
        ax.contour(c["deposits"][win] == k + 1, [0.5], colors="cyan", linewidths=0.8)
        lid = r.seeds["lesion_id"].iat[k]
        area = (r.lesion_labels == lid).sum() * s * s if lid else 0.0
        if lid: ax.contour(r.lesion_labels[win] == lid, [0.5], colors="yellow", linewidths=1.0)
        if row == 1 and taken[win].any(): ax.contour(taken[win], [0.5], colors="magenta", linewidths=0.8)
        ax.plot(cc - win[1].start, rr - win[0].start, "m+")
        ax.set_title(f"{it} {lbl}: true {c['areas'][k]:.2f}, got {area:.2f} {r.seeds['status'].iat[k]}", fontsize=9)
fig.suptitle("green true bone, red bone mask used, cyan true deposit, yellow lesion, magenta bulge taken")
fig.tight_layout(); fig.savefig(out, dpi=70)
