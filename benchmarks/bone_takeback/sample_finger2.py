"""Round 2: the bundled sample finger (tests/test_pipeline.py's xfail: lesion 4, 3.64 mm², reads 2.0)
before/after rule2.take_back2 (frozen defaults) and, for comparison, round 1's rule.
With --round3, also rule3.take_back3 (its frozen defaults), the options then going to take_back3.

    python benchmarks/bone_takeback/sample_finger2.py [--round3] ['{json options for take_back2}']
"""
import sys, json, time
from pathlib import Path
import pandas as pd
sys.path.insert(0, str(Path(__file__).resolve().parent))
from rule import take_back
from rule2 import take_back2
from rule3 import take_back3
from napari_calcinosis import load_model, dice
from napari_calcinosis._sample_data import DATA_DIR, sample_truth
from napari_calcinosis.io import read_image
from napari_calcinosis.segment import segment_phalanges

args = sys.argv[1:]
round3 = args[:1] == ["--round3"]
args = args[1:] if round3 else args
opts = json.loads(args[0]) if args else {}
truth = pd.read_csv(DATA_DIR / "sample_finger_truth.csv")
seeds = [tuple(p) for p in truth[["seed_row", "seed_col"]].to_numpy(float)]
img = read_image(DATA_DIR / "sample_finger.dcm")
seg = segment_phalanges(img, load_model(device="cpu"), device="cpu")
s = img.spacing_mm
px = s[0] * s[1]
true_bone, _ = sample_truth("sample_finger")
t0 = time.perf_counter()
r2, taken2, base = take_back2(img.pixels_hu, seg.bone_mask, seg.probability, s, seeds, **({} if round3 else opts))
dt = time.perf_counter() - t0
r1, taken1, _ = take_back(img.pixels_hu, seg.bone_mask, seg.probability, s, seeds, base=base)
area = lambda r: [(r.lesion_labels == k).sum() * px if k else 0 for k in r.seeds.lesion_id]
print(f"pixel {s[0]:.3f} mm; rule2 {dt:.2f}s; taken px round1 {int(taken1.sum())} round2 {int(taken2.sum())}; "
      f"bone dice base {dice(base.bone_mask, true_bone):.4f} round1 {dice(r1.bone_mask, true_bone):.4f} round2 {dice(r2.bone_mask, true_bone):.4f}")
table = pd.DataFrame({"true": truth.area_mm2, "base": area(base), "round1": area(r1), "round2": area(r2),
                      "status2": r2.seeds.status})
if round3:
    t0 = time.perf_counter()
    r3, taken3, _ = take_back3(img.pixels_hu, seg.bone_mask, seg.probability, s, seeds, base=base, **opts)
    print(f"rule3 {time.perf_counter() - t0:.2f}s; taken px round3 {int(taken3.sum())}; "
          f"bone dice round3 {dice(r3.bone_mask, true_bone):.4f}")
    table["round3"], table["status3"] = area(r3), r3.seeds.status
print(table.round(3).to_string())
