"""How the pipeline does on finger images from a generator it was never trained on.

    python benchmarks/ood_eval.py benchmarks/ood/generator_a.py -n 40 --json a.json --montage a.png

The generators in ``benchmarks/ood/`` were each written by an author who had not seen
``napari_calcinosis.phantom`` (nor each other's file), to other designs of anatomy, disease and
scanner; the bundled model was trained on none of them (a candidate trained on A-C as well,
``benchmarks/train_bundled.py``, was judged on D-F and not shipped). A generator module exposes
``make_case(seed) -> dict`` with ``hu`` (float HU), ``spacing_mm`` (one number or a square pair), ``bone`` (all bone in view),
``deposits`` (labels), ``areas_mm2`` (true areas), ``seeds`` ((row, col) per deposit), ``notes``.

For each case ``quantify`` runs with the true seeds, as a reader would click them. Reported: bone
Dice of the U-Net's mask against the true bone; how much of the deposits the U-Net took for
bone, and how much is still in the final bone mask once the seeds took back what they could;
area agreement (Lin's CCC, Bland-Altman bias and 95 % limits, median relative error) and seeds
not measured. ``benchmarks/ood/ours_basic.py`` wraps our own basic phantoms the same way (the
"ours, basic" rows of docs/validation.md). Then automatic mode (no seeds) on the same mask: the calcinosis burden per image
(total area) against the truth, the share of deposits it finds (all, and those of 1 mm² or
more), and the lesions it adds where there is no deposit (and how much of their area is bone the
mask missed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from napari_calcinosis import CalcinosisImage, dice, load_model, quantify
from napari_calcinosis.segment import drop_pieces_not_bone
from napari_calcinosis.stats import lins_ccc


def load_generator(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bone_border_share(lesion_labels, bone_mask, lesion_ids) -> list[float]:
    """Per lesion, the share of the pixels just outside it that are bone."""
    shares = []
    for k in lesion_ids:
        own = lesion_labels == k
        if not own.any():
            shares.append(np.nan)
            continue
        ring = ndi.binary_dilation(own) & ~own
        shares.append(float(bone_mask[ring].mean()) if ring.any() else 0.0)
    return shares


def evaluate_case(case: dict, model, seed: int, tta: bool = False) -> tuple[dict, pd.DataFrame, np.ndarray]:
    # One number, or a (row, col) pair for square pixels (generator L gives the pair).
    pair = np.broadcast_to(np.asarray(case["spacing_mm"], float), (2,))
    if not np.isclose(pair[0], pair[1]):
        raise ValueError(f"case {seed}: pixels must be square, got spacing {tuple(pair)} mm")
    spacing = float(pair[0])
    image = CalcinosisImage(np.asarray(case["hu"], np.float32), (spacing, spacing), source=f"case-{seed}")
    seeds = [tuple(map(int, s)) for s in case["seeds"]]
    result = quantify(image, seeds or None, model=model, device="cpu", tta=tta)
    truth_bone = np.asarray(case["bone"], bool)
    # The U-Net's own mask for the segmentation figures: result.bone_mask is that mask less the
    # pieces the (true) seeds took back as deposits, reported on its own below.
    pred = drop_pieces_not_bone(result.bone_probability > 0.5, image.pixels_hu, spacing)
    deposits = np.asarray(case["deposits"]) > 0
    inter = float((pred & truth_bone).sum())
    row = {
        "seed": seed,
        "shape": "x".join(map(str, truth_bone.shape)),
        "spacing_mm": spacing,
        "bone_dice": dice(pred, truth_bone),
        "bone_recall": inter / truth_bone.sum() if truth_bone.any() else 1.0,
        "bone_precision": inter / pred.sum() if pred.any() else 1.0,
        "deposit_px_taken_as_bone": float((pred & deposits).sum() / max(deposits.sum(), 1)),
        "deposit_px_in_final_bone_mask": float((result.bone_mask & deposits).sum() / max(deposits.sum(), 1)),
        "n_deposits": len(seeds),
        "notes": str(case.get("notes", "")),
    }
    # Automatic mode (no clicks) on the segmented mask: the burden per image, what it finds and
    # what it adds (vessels, splints, bone edges are bright too).
    auto = quantify(image, None, bone_mask=pred, device="cpu")
    labels = np.asarray(case["deposits"])
    found = auto.lesion_labels > 0
    true_ids = np.arange(1, len(seeds) + 1)
    detected = np.array([bool(found[labels == k].any()) for k in true_ids], bool)
    lesion_ids = np.unique(auto.lesion_labels[found])
    false_ids = [k for k in lesion_ids if not deposits[auto.lesion_labels == k].any()]
    px_mm2 = spacing * spacing
    row.update({
        "true_total_mm2": float(np.sum(case["areas_mm2"])),
        "auto_total_mm2": auto.total_area_mm2,
        "auto_detected": int(detected.sum()),
        "auto_detected_1mm2": int(detected[np.asarray(case["areas_mm2"], float)[: len(seeds)] >= 1.0].sum()),
        "n_deposits_1mm2": int((np.asarray(case["areas_mm2"], float)[: len(seeds)] >= 1.0).sum()),
        "auto_false_lesions": len(false_ids),
        "auto_false_mm2": float(sum((auto.lesion_labels == k).sum() for k in false_ids) * px_mm2),
        # of that, on true bone: bone the U-Net missed, rather than a vessel, splint or skin edge
        "auto_false_on_bone_mm2": float((np.isin(auto.lesion_labels, false_ids) & truth_bone).sum() * px_mm2),
    })
    areas = pd.DataFrame({
        "seed": seed,
        "deposit": np.arange(1, len(seeds) + 1),
        "true_area_mm2": np.asarray(case["areas_mm2"], float)[: len(seeds)],
    })
    if seeds:
        table = result.table
        areas["area_mm2"] = table["area_mm2"].to_numpy(float)
        areas["status"] = table["status"].to_numpy()
        for column in ("peak_hu", "level_hu", "max_value", "mean_value", "freed_from_bone_mm2"):
            areas[column] = table[column].to_numpy(float)
        areas["seed_hu"] = [float(image.pixels_hu[int(r), int(c)]) for r, c in seeds]
        areas["bone_border_share"] = _bone_border_share(result.lesion_labels, result.bone_mask, table["lesion_id"].to_numpy())
        # how close each true deposit lies to the true bone (0: touching)
        gap = ndi.distance_transform_edt(~truth_bone) * spacing
        areas["true_bone_gap_mm"] = [float(gap[labels == k].min()) if (labels == k).any() else np.nan for k in true_ids]
    return row, areas, pred


def summary(cases: pd.DataFrame, areas: pd.DataFrame) -> dict:
    ok = areas[areas["status"] == "ok"]
    diff = ok["area_mm2"] - ok["true_area_mm2"]
    rel = (diff.abs() / ok["true_area_mm2"]).to_numpy()
    return {
        "n_cases": int(len(cases)),
        "bone_dice_mean": float(cases["bone_dice"].mean()),
        "bone_dice_median": float(cases["bone_dice"].median()),
        "bone_dice_min": float(cases["bone_dice"].min()),
        "cases_dice_below_0.9": int((cases["bone_dice"] < 0.9).sum()),
        "bone_recall_mean": float(cases["bone_recall"].mean()),
        "bone_precision_mean": float(cases["bone_precision"].mean()),
        "deposit_px_taken_as_bone_mean": float(cases["deposit_px_taken_as_bone"].mean()),
        "deposit_px_in_final_bone_mask_mean": float(cases["deposit_px_in_final_bone_mask"].mean()),
        "n_deposits": int(len(areas)),
        "seeds_not_ok": int((areas["status"] != "ok").sum()),
        "statuses": {str(k): int(v) for k, v in areas["status"].value_counts().items()},
        "area_lins_ccc": float(lins_ccc(ok["true_area_mm2"], ok["area_mm2"])[0]) if len(ok) > 2 else float("nan"),
        "area_bias_mm2": float(diff.mean()) if len(ok) else float("nan"),
        "area_loa_mm2": [float(v) for v in _loa(diff)] if len(ok) > 2 else [float("nan")] * 2,
        "area_median_relative_error": float(np.median(rel)) if len(ok) else float("nan"),
        "auto_burden_lins_ccc": float(lins_ccc(cases["true_total_mm2"], cases["auto_total_mm2"])[0]),
        "auto_burden_bias_mm2": float((cases["auto_total_mm2"] - cases["true_total_mm2"]).mean()),
        "auto_burden_loa_mm2": [float(v) for v in _loa(cases["auto_total_mm2"] - cases["true_total_mm2"])],
        "auto_sensitivity": float(cases["auto_detected"].sum() / max(cases["n_deposits"].sum(), 1)),
        "auto_sensitivity_1mm2": float(cases["auto_detected_1mm2"].sum() / max(cases["n_deposits_1mm2"].sum(), 1)),
        "auto_false_lesions_per_image": float(cases["auto_false_lesions"].mean()),
        "auto_false_mm2_per_image": float(cases["auto_false_mm2"].mean()),
        "auto_false_on_bone_mm2_per_image": float(cases["auto_false_on_bone_mm2"].mean()),
    }


def _loa(diff) -> tuple[float, float]:
    diff = np.asarray(diff, float)
    return diff.mean() - 1.96 * diff.std(ddof=1), diff.mean() + 1.96 * diff.std(ddof=1)


def save_montage(path: Path, shown: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 5
    rows = int(np.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, (case, pred, row) in zip(np.ravel(axes), shown):
        ax.imshow(np.clip((case["hu"] - (450 - 750)) / 1500, 0, 1), cmap="gray")
        ax.contour(case["bone"], levels=[0.5], colors="lime", linewidths=0.6)
        ax.contour(pred, levels=[0.5], colors="red", linewidths=0.6)
        ax.contour(np.asarray(case["deposits"]) > 0, levels=[0.5], colors="cyan", linewidths=0.5)
        ax.set_title(f"seed {row['seed']}: Dice {row['bone_dice']:.3f}", fontsize=9)
    fig.suptitle("green: true bone, red: U-Net bone, cyan: true deposits")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("generator", type=Path, help="a generator module (benchmarks/ood/generator_*.py)")
    ap.add_argument("-n", type=int, default=40, help="number of cases")
    ap.add_argument("--seed", type=int, default=0, help="first case seed")
    ap.add_argument("--model", default=None, help="model .safetensors (default: the bundled one)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--csv", type=Path, default=None, help="per-case table")
    ap.add_argument("--areas-csv", type=Path, default=None, help="per-deposit table: true and measured area, status")
    ap.add_argument("--montage", type=Path, default=None, help="PNG of the worst cases")
    ap.add_argument("--tta", action="store_true", help="segment with flip test-time augmentation (4 passes)")
    args = ap.parse_args(argv)

    gen = load_generator(args.generator)
    model = load_model(args.model, device="cpu")
    rows, area_frames, shown = [], [], []
    t0 = time.perf_counter()
    for seed in range(args.seed, args.seed + args.n):
        case = gen.make_case(seed)
        row, areas, pred = evaluate_case(case, model, seed, tta=args.tta)
        rows.append(row)
        area_frames.append(areas)
        shown.append((case, pred, row))
        shown = sorted(shown, key=lambda t: t[2]["bone_dice"])[:15]
        print(f"{seed:4d} {row['shape']:>9} {row['spacing_mm']:.3f} mm  Dice {row['bone_dice']:.3f}  "
              f"deposit-as-bone {row['deposit_px_taken_as_bone']:.2f}  {row['notes'][:70]}", flush=True)
    cases = pd.DataFrame(rows)
    areas = pd.concat(area_frames, ignore_index=True)
    report = {"generator": args.generator.name, "model": args.model or "bundled", "tta": args.tta,
              "seeds": [args.seed, args.seed + args.n - 1],
              "seconds": time.perf_counter() - t0, **summary(cases, areas)}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.csv:
        cases.to_csv(args.csv, index=False)
    if args.areas_csv:
        areas.to_csv(args.areas_csv, index=False)
    if args.montage:
        save_montage(args.montage, shown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
