"""Post-hoc (after the held-out run): what the bulges the frozen rule took are made of, and simple
features that might tell a deposit's bulge from bone shaved by the opening. Exploratory only.

    python benchmarks/bone_takeback/bulge_stats.py OUT.csv SOURCES
"""
import sys
from pathlib import Path
import numpy as np, pandas as pd
from scipy import ndimage as ndi
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_case, SHORT
from rule import take_back, bulges
from napari_calcinosis.subtract import label_bone_pieces

rows = []
for name in sys.argv[2].split(","):
    for seed in range(15):
        c = load_case(name, seed)
        if len(c["seeds"]) == 0:
            continue
        s = float(c["spacing"]); sp = (s, s)
        seeds = [tuple(map(int, p)) for p in c["seeds"]]
        res, taken, base = take_back(c["hu"], c["bone_mask"], c["probability"], sp, seeds)
        if not taken.any():
            continue
        lab, n = bulges(base.bone_mask, sp, 1.25)
        _, npieces = label_bone_pieces(base.bone_mask)
        filled = ndi.binary_fill_holes(base.bone_mask)
        for k in np.unique(lab[taken]):
            b = lab == k
            _, np_after = label_bone_pieces(base.bone_mask & ~b)
            depth = ndi.distance_transform_edt(np.pad(b, 1))[1:-1, 1:-1].max() * s
            lesion_ids = np.unique(res.lesion_labels[b & (res.lesion_labels > 0)])
            les = np.isin(res.lesion_labels, lesion_ids)
            rows.append(dict(source=SHORT[name], seed=seed, area_mm2=b.sum() * s * s,
                             share_deposit=float((b & (c["deposits"] > 0)).mean() / b.mean()),
                             share_true_bone=float((b & c["bone"]).sum() / b.sum()),
                             prob_mean=float(c["probability"][b].mean()), prob_min=float(c["probability"][b].min()),
                             splits=int(np_after > npieces), half_width_mm=depth,
                             hu_med=float(np.median(c["hu"][b])),
                             border=bool(b[0].any() or b[-1].any() or b[:, 0].any() or b[:, -1].any()),
                             lesion_in_bulge=float((les & b).sum() / max(les.sum(), 1))))
df = pd.DataFrame(rows); df.to_csv(sys.argv[1], index=False)
pd.set_option("display.width", 250); pd.set_option("display.max_rows", 400)
print(df.round(3).to_string())
