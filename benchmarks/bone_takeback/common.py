"""Shared loading and measuring for the bone take-back study (see README.md here)."""
from pathlib import Path
import numpy as np
from scipy import ndimage as ndi

from napari_calcinosis.grow import grow_lesions
from napari_calcinosis.measure import measure_lesions

CACHE = Path("/tmp/bone_takeback_cache")
DEV = ["ours_basic"] + [f"generator_{x}" for x in "abcdef"]
HELD_OUT = [f"generator_{x}" for x in "ghijklm"]
SHORT = {"ours_basic": "basic", **{f"generator_{x}": x for x in "abcdefghijklm"}}


def load_case(name, seed):
    z = np.load(CACHE / f"{name}_{seed}.npz")
    return {k: z[k] for k in z.files}


def grow_and_measure(case, bone_mask, probability):
    """What quantify() does with seeds, from growing on: grow_lesions then measure_lesions."""
    s = float(case["spacing"])
    seeds = [tuple(map(int, p)) for p in case["seeds"]]
    res = grow_lesions(case["hu"], bone_mask, (s, s), seeds, bone_probability=probability)
    t = res.seeds
    table = measure_lesions(res.lesion_labels, (s, s), case["hu"], seeds=list(zip(t["seed_row"], t["seed_col"])),
                            statuses=list(t["status"]), lesion_ids=list(t["lesion_id"]))
    table["freed_from_bone_mm2"] = t["freed_from_bone_mm2"].to_numpy()
    return res, table


def true_gaps(case):
    s = float(case["spacing"])
    gap = ndi.distance_transform_edt(~case["bone"]) * s
    lab = case["deposits"]
    return np.array([float(gap[lab == k].min()) if (lab == k).any() else np.nan
                     for k in range(1, len(case["seeds"]) + 1)])
