"""Our own basic phantoms as an ``ood_eval.py`` generator module: the "ours, basic" rows.

    python benchmarks/ood_eval.py benchmarks/ood/ours_basic.py -n 40 --seed 7

Not out of distribution: ``make_phantom`` is what the first model was trained on (other seeds).
"""

from napari_calcinosis import make_phantom


def make_case(seed: int) -> dict:
    p = make_phantom(seed)
    return {"hu": p.image_hu, "spacing_mm": float(p.spacing_mm[0]), "bone": p.bone_mask, "deposits": p.lesion_labels,
            "areas_mm2": [float(a) for a in p.lesion_areas_mm2], "seeds": [tuple(int(v) for v in s) for s in p.seeds],
            "notes": f"basic phantom{', cut off' if p.cut_off else ''}"}
