"""Pixel-size plausibility study: bone thickness (mm) from the U-Net's bone mask.

For each case of a source, at correct spacing and with the image resized by a factor f while the
original spacing is kept (what a resized PNG/JPEG export given the original pixel size looks like),
segment with the bundled U-Net and compute candidate thickness measures in mm (computed with the
*stated* spacing, i.e. what the tool would see).  Also the truth measures and bone Dice against the
resized truth.

    python thickness_study.py SOURCE [-n 15] [--factors 1,2,0.5,1.5,0.6667] --out rows_SOURCE.csv

SOURCE: a..m (generator_X.py), ours_basic, varied, sample
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.morphology import skeletonize
from skimage.transform import rescale

from napari_calcinosis import CalcinosisImage, dice, load_model, make_phantom, segment_phalanges

OOD = Path(__file__).resolve().parents[1] / "ood"


def load_generator(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases(source: str, n: int):
    """Yield (case_id, hu, spacing, bone_truth)."""
    if source == "varied":
        for i in range(n):
            p = make_phantom(3_000_000 + i, varied=True)
            yield 3_000_000 + i, p.image_hu, float(p.spacing_mm[0]), p.bone_mask
    elif source == "sample":
        from napari_calcinosis import read_image
        from napari_calcinosis._sample_data import DATA_DIR, sample_truth
        for name in ("sample_finger", "sample_finger_cut_off"):
            img = read_image(str(DATA_DIR / f"{name}.dcm"))
            bone, _ = sample_truth(name)
            yield name, img.pixels_hu, float(img.spacing_mm[0]), bone
    else:
        path = OOD / (f"generator_{source}.py" if len(source) == 1 else f"{source}.py")
        mod = load_generator(path)
        for seed in range(n):
            c = mod.make_case(seed)
            sp = float(np.broadcast_to(np.asarray(c["spacing_mm"], float), (2,))[0])
            yield seed, np.asarray(c["hu"], np.float32), sp, np.asarray(c["bone"], bool)


def resize_image(hu: np.ndarray, f: float) -> np.ndarray:
    if f == 1:
        return hu
    # bilinear; anti-aliased when shrinking, as an image viewer's export would be
    return rescale(hu.astype(np.float32), f, order=1, anti_aliasing=f < 1, preserve_range=True,
                   mode="edge").astype(np.float32)


def resize_mask(mask: np.ndarray, f: float, shape) -> np.ndarray:
    if f == 1:
        return mask
    r = rescale(mask.astype(np.float32), f, order=1, anti_aliasing=f < 1, preserve_range=True, mode="edge")
    assert r.shape == tuple(shape), (r.shape, shape)
    return r > 0.5


def thickness_measures(mask: np.ndarray, spacing: float, min_rel: float = 0.2) -> dict:
    """Candidate thickness measures in mm, using the stated spacing.

    Components smaller than ``min_rel`` x the largest are ignored (relative, so no mm threshold
    that the wrong spacing would distort).
    """
    out = dict(n_comp=0, bone_px=int(mask.sum()), maxdisc_largest=np.nan, maxdisc_all=np.nan,
               skel_med=np.nan, skel_p25=np.nan, skel_p75=np.nan, skel_p90=np.nan, meanwidth=np.nan,
               maxdisc_med_comp=np.nan)
    if mask.sum() < 4:
        return out
    lab, n = ndi.label(mask)
    sizes = ndi.sum(mask, lab, index=np.arange(1, n + 1))
    keep_ids = np.flatnonzero(sizes >= min_rel * sizes.max()) + 1
    keep = np.isin(lab, keep_ids)
    out["n_comp"] = int(len(keep_ids))
    # fill small holes so marrow gaps do not shrink the distance map
    keep = ndi.binary_fill_holes(keep)
    # pad so the image border counts as *inside*? No: the border is where the picture stops, not
    # the bone; pad with edge values so a bone cut by the border is not thinned there.
    pad = 8
    kp = np.pad(keep, pad, mode="edge")
    edt = ndi.distance_transform_edt(kp)[pad:-pad, pad:-pad]
    d_mm = 2.0 * edt * spacing  # local diameter in mm
    largest = lab == (np.argmax(sizes) + 1)
    out["maxdisc_largest"] = float(d_mm[largest].max())
    out["maxdisc_all"] = float(d_mm[keep].max())
    out["maxdisc_med_comp"] = float(np.median([d_mm[lab == k].max() for k in keep_ids]))
    sk = skeletonize(keep)
    # leave out skeleton pixels on the image border band (cut-off ends)
    border = np.zeros_like(sk)
    border[:3, :] = border[-3:, :] = border[:, :3] = border[:, -3:] = True
    sk &= ~border
    vals = d_mm[sk]
    # drop spur tips: skeleton points whose disc is under 30 % of the median (branches to corners)
    if vals.size:
        vals = vals[vals >= 0.3 * np.median(vals)]
    if vals.size >= 5:
        out["skel_med"] = float(np.median(vals))
        out["skel_p25"] = float(np.percentile(vals, 25))
        out["skel_p75"] = float(np.percentile(vals, 75))
        out["skel_p90"] = float(np.percentile(vals, 90))
        # area / skeleton length: mean width (mm)
        out["meanwidth"] = float(keep.sum() * spacing ** 2 / (sk.sum() * spacing))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("-n", type=int, default=15)
    ap.add_argument("--factors", default="1,2,0.5,1.5,0.6667")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    factors = [float(x) for x in args.factors.split(",")]
    model = load_model()
    rows = []
    t0 = time.time()
    for cid, hu, sp, bone in cases(args.source, args.n):
        truth_meas = thickness_measures(bone, sp)
        for f in factors:
            img = resize_image(hu, f)
            tb = resize_mask(bone, f, img.shape)
            row = dict(source=args.source, case=cid, factor=f, spacing_true=sp / f, spacing_stated=sp,
                       shape="x".join(map(str, img.shape)))
            try:
                seg = segment_phalanges(CalcinosisImage(img, (sp, sp), source=str(cid)), model, device="cpu")
                m = seg.bone_mask
                row["error"] = ""
            except Exception as exc:  # noqa: BLE001 -- record, e.g. field-of-view refusal
                m = np.zeros(img.shape, bool)
                row["error"] = f"{type(exc).__name__}: {exc}"[:200]
            row["dice"] = dice(m, tb)
            row.update({f"seg_{k}": v for k, v in thickness_measures(m, sp).items()})
            # truth at the same (stated) spacing: what the measure would be with a perfect U-Net
            if f == 1:
                row.update({f"true_{k}": v for k, v in truth_meas.items()})
            else:
                row.update({f"true_{k}": v for k, v in thickness_measures(tb, sp).items()})
            rows.append(row)
        print(f"{args.source} {cid} done {time.time() - t0:.0f}s", flush=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print("wrote", args.out, len(rows), "rows", f"{time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
