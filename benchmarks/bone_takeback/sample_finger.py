"""The bundled sample finger (tests/test_pipeline.py's xfail: lesion 4, 3.6 mm², reads 2.0) before/after the rule."""
import sys, time
from pathlib import Path
import pandas as pd
sys.path.insert(0, str(Path(__file__).resolve().parent))
from rule import take_back
from napari_calcinosis import quantify, load_model
from napari_calcinosis._sample_data import DATA_DIR, sample_truth
from napari_calcinosis.io import read_image
from napari_calcinosis.segment import segment_phalanges
from napari_calcinosis import dice

truth = pd.read_csv(DATA_DIR / "sample_finger_truth.csv")
seeds = truth[["seed_row", "seed_col"]].to_numpy(float)
img = read_image(DATA_DIR / "sample_finger.dcm")
model = load_model(device="cpu")
q = quantify(img, seeds, model=model, device="cpu")
seg = segment_phalanges(img, model, device="cpu")
s = img.spacing_mm
true_bone, _ = sample_truth("sample_finger")
for name, opts in [("frozen", {}), ("secondary (rescue)", {"rescue_on_bone": True})]:
    t0 = time.perf_counter()
    res, taken, base = take_back(img.pixels_hu, seg.bone_mask, seg.probability, s, [tuple(p) for p in seeds], **opts)
    dt = time.perf_counter() - t0
    px = s[0] * s[1]
    a0 = [(base.lesion_labels == k).sum() * px if k else 0 for k in base.seeds.lesion_id]
    a1 = [(res.lesion_labels == k).sum() * px if k else 0 for k in res.seeds.lesion_id]
    print(name, f"{dt:.2f}s", "taken px", int(taken.sum()), "dice", round(dice(base.bone_mask, true_bone), 4), "->", round(dice(res.bone_mask, true_bone), 4))
    print(pd.DataFrame({"true": truth.area_mm2, "quantify": q.table.area_mm2, "base": a0, "rule": a1,
                        "status_rule": res.seeds.status}).round(3).to_string())
