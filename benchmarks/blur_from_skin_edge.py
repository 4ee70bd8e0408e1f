"""The image's blur, measured on the skin's edge against the air (an analysis, not shipped).

Every pixel within 5 px of the air/soft-tissue boundary (none near calcium) is placed by its
signed distance to the sub-pixel iso-contour half-way between air and soft tissue, and an
error function is fitted to those samples (an edge-spread function, oversampled by the edge's
many angles); its sigma is the Gaussian blur. An export clipped at the window's bottom is fitted
with the clip (air at -1000 HU). Written to judge whether "area under a few times the blur's
half-maximum area" tells which small deposits are over-measured (docs/validation.md, "Small
deposits"): it explains them, but flags them no better than other rules, so it was not kept.

    python benchmarks/blur_from_skin_edge.py --out benchmarks/ood/results/blur_sigma_mm.csv
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy import optimize, special
from scipy.spatial import cKDTree
from skimage import measure

GENERATORS = ["ours_basic"] + [f"generator_{c}" for c in "abcdefghijklm"]


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blur_sigma_mm(hu, spacing_mm: float) -> float:
    """Gaussian sigma (mm) of the blur across the skin's edge; NaN where it cannot be fitted."""
    hu = np.asarray(hu, np.float32)
    smooth = ndi.median_filter(hu, 3)
    floor = float(np.percentile(hu, 0.5))
    clipped = floor > -950  # an export whose window's bottom cut the air
    air = smooth < (floor + 30 if clipped else -700)
    tissue = ndi.binary_erosion((smooth > -150) & (smooth < 150), iterations=4)
    if air.sum() < 50 or tissue.sum() < 50:
        return float("nan")
    soft = float(np.median(hu[tissue]))
    deep_air = ndi.binary_erosion(air, iterations=4)
    air_hu = -1000.0 if clipped or not deep_air.any() else float(np.median(hu[deep_air]))
    mid = (max(air_hu, floor) + soft) / 2
    contours = [c for c in measure.find_contours(smooth, mid) if len(c) > 20]
    if not contours:
        return float("nan")
    tree = cKDTree(np.concatenate(contours))
    edge = ndi.binary_dilation(air) & ~air
    rows, cols = np.nonzero(ndi.distance_transform_edt(~edge) < 6)
    distance, _ = tree.query(np.c_[rows, cols])
    side = np.where(smooth[rows, cols] > mid, 1.0, -1.0)
    keep = ~(ndi.maximum_filter(hu, 11) > 200)[rows, cols] & (distance < 5)
    x, y = side[keep] * distance[keep] * spacing_mm, hu[rows, cols][keep]
    if x.size < 50:
        return float("nan")

    def edge_spread(x, sigma, high, x0, low):
        return low + (high - low) * 0.5 * (1 + special.erf((x - x0) / (np.sqrt(2) * sigma)))

    try:
        if clipped:
            fitted, _ = optimize.curve_fit(
                lambda x, sigma, high, x0: np.maximum(edge_spread(x, sigma, high, x0, air_hu), floor),
                x, y, p0=[0.3, soft, 0.0], maxfev=5000)
        else:
            fitted, _ = optimize.curve_fit(edge_spread, x, y, p0=[0.3, soft, 0.0, air_hu], maxfev=5000)
    except (RuntimeError, ValueError):
        return float("nan")
    return abs(float(fitted[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="cases per generator (seeds 0..n-1)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    folder = Path(__file__).parent / "ood"
    rows = []
    for name in GENERATORS:
        generator = _load(folder / f"{name}.py")
        short = "basic" if name == "ours_basic" else name.removeprefix("generator_")
        for seed in range(args.n):
            case = generator.make_case(seed)
            spacing = float(np.broadcast_to(np.asarray(case["spacing_mm"], float), (2,))[0])
            rows.append({"set": short, "seed": seed, "spacing_mm": spacing,
                         "sigma_mm": round(blur_sigma_mm(case["hu"], spacing), 4), "notes": str(case.get("notes", ""))})
        print(name, flush=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
