"""Seeded region growing of calcinosis deposits.

A fixed HU threshold mis-measures deposits in a way that depends on their density: blurred by
the scanner, a small faint deposit's edge falls below it (and a low threshold over-counts it in
noise), while a dense deposit's blurred halo rises above it and is over-counted. Each deposit is
therefore grown at its own *half-maximum*: the level halfway between the local soft tissue and
the deposit's plateau. For an object larger than the point-spread function, the half-maximum
contour of the blurred image sits on the true edge whatever the density, which is the classical
full-width-at-half-maximum rule used to size objects under partial volume.

Next to bone, a deposit's pixels carry the bone's blur halo on top of its own profile (blur is
linear); growth runs on the image with that halo, measured on the image, subtracted
(:func:`~napari_calcinosis.subtract.remove_bone_halo`), so it neither leaks along the bone
surface nor over-measures deposits touching bone. It never enters bone and stays one pixel
off the bone mask, except straight behind a deposit that touches it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.measure import regionprops
from skimage.segmentation import flood, watershed

from ._errors import CalcinosisError, checked_number, refuse_layer
from .io import refuse_non_finite
from .subtract import (
    DEFAULT_MARGIN_MM,
    DEFAULT_THRESHOLD_HU,
    AIR_HU,
    AIR_RING_MM,
    OUTSIDE_FINGER_AIR,
    _spacing_pair,
    checked_margin_mm,
    checked_threshold_hu,
    air_and_data,
    air_around,
    median3_at_least,
    dilate_mm,
    disk_mm,
    label_bone_pieces,
    remove_bone_halo,
    resolve_margin_mm,
    subtract_bone,
    vessel_like,
)

__all__ = ["GrowResult", "grow_lesions", "region_grow", "SEED_STATUSES", "DEFAULT_MIN_AREA_MM2"]

SEED_STATUSES = {
    "ok": "deposit grown from this seed",
    "duplicate_seed": "this seed lies on a deposit already grown from an earlier seed",
    "on_bone": "the seed is on bone with no deposit beside it: move it onto the deposit, or erase the bone mask over it",
    "no_deposit": "nothing brighter than the surrounding soft tissue at the seed: move it onto the deposit (a deposit "
    "of a few pixels, such as 0.5 mm² on 0.6 mm pixels, is too small to tell from the tissue)",
    "outside_image": "the seed lies outside the image",
    "below_noise": "automatic mode: a speck under 3 mm² standing less than 4 times the image's noise above the "
    "soft tissue was left out as noise; click it if it is a deposit",
    "outside_finger": "automatic mode: a bright thing with air around it (a splint, a ring, the skin's edge), or "
    "parted from the finger's bones by air (the CT table), was left out; click it if it is a deposit",
    "vessel_like": "automatic mode: a long thin line of calcium running along the bone, deep in the soft tissue (most "
    "likely a calcified digital artery), was left out; click it if it is a deposit",
}
# What automatic mode leaves out (a row of its own, no lesion): neither a lesion nor a failed seed.
LEFT_OUT_STATUSES = tuple(status for status, why in SEED_STATUSES.items() if why.startswith("automatic mode:"))

# The smallest deposits radiologists measured in the paper were 0.4-0.5 mm^2; automatic mode
# ignores residual specks below 0.3 mm^2, which at 0.15-0.35 mm pixels are 2-13 pixels of noise.
DEFAULT_MIN_AREA_MM2 = 0.3
# A deposit must stand this far above the local soft tissue to be grown from a seed. A 3x3
# median leaves about 0.4 of the image noise (15 HU at 35 HU noise), and the brightest of the
# dozen pixels within reach of a click rises about 1.7 of that above the mean: 60 HU clears
# that with room, and clears skin and tendon (at most ~45 HU above soft tissue), while tiny
# faint deposits blurred to a few hundred HU still pass.
DEFAULT_MIN_CONTRAST_HU = 60.0
SEARCH_RADIUS_MM = 0.5  # a click lands within half a millimetre (and two pixels) of the deposit it means
# Two peaks are two deposits when every path between them dips by this share of the lower one's
# contrast (and min_contrast_hu, against noise). A fifth until 2026-11-27; a tenth parted more
# clicked neighbours in clusters (M, D) and kept every set's seeded CCC (docs/validation.md).
APART_DIP = 0.1
# A seed on a separate piece of the bone mask up to this size, other than its largest piece, is
# taken at its word: the U-Net sometimes takes a dense deposit lying apart from the bone for
# bone. Deposits of 10-35 mm2 were lost this way on images from generators it never saw
# (docs/validation.md); the paper's deposits are mostly well under 40 mm2, while a whole
# phalanx is larger (only a cut-off stump is as small, and one would have to click on it).
MAX_FREED_PIECE_MM2 = 40.0
# ... but not a piece that is the next bone of the finger's chain: one of at least
# NEXT_BONE_MIN_MM2 and NEXT_BONE_MIN_ELONGATION times as long as wide, whose centre lies at
# least NEXT_BONE_BEYOND_MM past the end of the nearest other piece, along that piece's axis,
# when that piece is a bone too (at least NEXT_BONE_MIN_MM2 and
# NEXT_BONE_NEIGHBOUR_MIN_ELONGATION times as long as wide). A small distal phalanx the U-Net
# merged with a deposit against it is such a piece: freeing it grew the deposit over the whole
# phalanx (2 mm² deposits read 23-34 mm² on generators G and J); the click stays on_bone.
# Chosen on the pieces seeds freed on ours and A-J (docs/validation.md): it holds the 6 such
# phalanges and none of the 67 pieces freed from a deposit (nodules and plaques lie beside a
# bone rather than past its end, or are rounder).
NEXT_BONE_MIN_MM2 = 10.0
NEXT_BONE_MIN_ELONGATION = 2.5
NEXT_BONE_BEYOND_MM = 2.0
NEXT_BONE_NEIGHBOUR_MIN_ELONGATION = 2.0
BACKGROUND_RADIUS_MM = 5.0
# Automatic mode on a noisy image: the noise itself makes specks above the calcium threshold.
# A candidate under MAX_NOISE_SPECK_MM2 whose peak stands less than NOISE_CONTRAST_RATIO times
# the image's noise (the robust spread of the pixels about their 3x3 median, in the soft tissue,
# with the bone's blur halo removed) above the tissue is left out. On the nine image sets of
# docs/validation.md, 2 of the 903 lesions automatic mode grew on a deposit were such specks,
# against 199 of the 1,385 it grew where there was none (158 of 475 on generator G).
NOISE_CONTRAST_RATIO = 4.0
MAX_NOISE_SPECK_MM2 = 3.0
# Where the U-Net was unsure: a deposit against the bone is often inside the bone mask, at a
# probability of 0.5-0.8, while the bone's own pixels are above it (on 60 images from the
# eight image sets of docs/validation.md, 36 % of the deposit pixels inside the mask were under
# 0.8, against 2.6 % of the bone's pixels, most of them a thin rim along the bone's edge). A
# seed's deposit may take a blob of such pixels; the blob must be wider than UNSURE_BLOB_MM
# (and 3 pixels), so that the rim along a bone's edge is not one, and the specks of mask it
# leaves behind under UNSURE_REMNANT_MM2 go with it.
UNSURE_BONE_PROBABILITY = 0.8
# Fat (-150 to -50 HU) around a deposit lowers the local background it is grown from, which is
# right for its edge; but a faint speck in the skin then stood 60 HU above a fatty background
# while no brighter than the skin, and its level flooded the skin and septa (158-461 mm² for
# specks of 0.2-0.7 mm² on generator K, docs/validation.md). So a seed must also stand half the
# contrast it needs above the soft tissue without fat (the median of the pixels above FAT_HU;
# asking the whole contrast lost faint deposits on B and C, where that tissue is only 10 HU
# above the median with fat), and a deposit grown at a level under that tissue plus half the
# contrast is grown at that level instead when it holds more than LEAK_RATIO times as much
# there: it has flooded the tissue. (Always growing at that level or above under-measured
# deposits lying in fat on F, where the tissue is bright, by a third.)
FAT_HU = -30.0
LEAK_RATIO = 3.0
# A sharp kernel draws a bright rim along the skin's surface (its overshoot at the edge with the
# air), and a faint deposit near the skin, grown at half its contrast, ran along the rim: 0.2-3.7
# mm² deposits read 10-123 mm² on generator F (docs/validation.md). When the region a level grows
# holds more than LEAK_RATIO times what the level RIM_LEVEL_STEP (or twice that) of the seed's
# contrast higher holds, and more than RIM_SHARE of the difference lies within AIR_RING_MM of the
# air, the deposit has run along the rim and is grown at that higher level. Only the first such
# drop counts, and only along the air: a conglomerate whose lobes join at the lower level, or a
# deposit breaking through the skin (its region shrinks slowly with the level), keeps its region.
# So does a beaded plaque in the skin: of what it would drop, RIM_LOBE_SHARE or more (and
# RIM_LOBE_PX pixels) stands RIM_LOBE of the contrast above the level (3x3 median), near the seed's
# own peak: its beads. Of a rim, mostly dimmer than the deposit, a tenth or so does (F: 9-29 %
# of what the rim floods dropped; a plaque of 500 HU beads on a 250-300 HU band: 43-48 %).
RIM_LEVEL_STEP = 0.1
RIM_STEPS = 2
RIM_SHARE = 0.5
RIM_LOBE = 0.3
RIM_LOBE_PX = 5
RIM_LOBE_SHARE = 0.35
UNSURE_BLOB_MM = 0.4
UNSURE_REMNANT_MM2 = 2.0
# Calcinosis cutis lies in the skin and under it, with tissue around it: automatic mode leaves
# out a lesion with more than this share of air within 1 mm around it (subtract.OUTSIDE_FINGER_AIR).
MAX_AIR_AROUND_DEPOSIT = OUTSIDE_FINGER_AIR


@dataclass
class GrowResult:
    """Result of :func:`grow_lesions`.

    Attributes
    ----------
    lesion_labels : ndarray of int32
        0 = background, i = lesion i.
    seeds : DataFrame
        One row per seed (given, or found in automatic mode), in order: ``seed_row``,
        ``seed_col``, ``lesion_id`` (0 when the seed failed), ``status``, ``peak_hu``,
        ``background_hu``, ``level_hu`` (the half-maximum level the deposit was grown at),
        ``freed_from_bone_mm2`` (the area of the bone-mask piece the seed took back as a
        deposit; 0 for most seeds).
    bone_mask : ndarray of bool
        The bone mask growth kept out of: the one given, less the pieces seeds took back.
    """

    lesion_labels: np.ndarray
    seeds: pd.DataFrame
    bone_mask: np.ndarray


def image_noise_hu(image_hu: np.ndarray, smooth: np.ndarray | None = None, where: np.ndarray | None = None) -> float:
    """The image's noise in HU: the robust spread (1.4826 x median absolute deviation) of the
    pixels about their 3x3 median, over the soft tissue (-200 to 150 HU after the median; within
    ``where`` if given). 0 when fewer than 100 such pixels, and on a smoothed or coarsely
    quantised image where most pixels equal their median: then nothing is left out as noise."""
    image_hu = np.asarray(image_hu, np.float32)
    if smooth is None:
        smooth = ndi.median_filter(image_hu, size=3)
    tissue = (smooth > -200.0) & (smooth < 150.0)
    if where is not None:
        tissue &= where
    if tissue.sum() < 100:
        return 0.0
    residual = image_hu[tissue] - smooth[tissue]
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def _disk_offsets(radius_mm: float, spacing) -> np.ndarray:
    disk = disk_mm(radius_mm, spacing)
    return np.argwhere(disk) - np.array(disk.shape) // 2


def _within_reach(search, centre, mask) -> np.ndarray:
    """The pixels ``centre + search`` that lie inside ``mask``'s array and where it is True."""
    pts = search + centre
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < mask.shape[0]) & (pts[:, 1] >= 0) & (pts[:, 1] < mask.shape[1])
    pts = pts[inside]
    return pts[mask[pts[:, 0], pts[:, 1]]]


def _window(shape, centre, radius_px):
    r0 = max(0, centre[0] - radius_px[0])
    c0 = max(0, centre[1] - radius_px[1])
    return slice(r0, min(shape[0], centre[0] + radius_px[0] + 1)), slice(c0, min(shape[1], centre[1] + radius_px[1] + 1))


# Column names a table of seeds may carry its (row, col) under: the seeds sheet's and the
# tool's own output's.
_SEED_COLUMNS = (("row", "col"), ("seed_row", "seed_col"))


def _checked_seeds(seeds) -> list[tuple[float, float]]:
    """Seeds as (row, col) pairs of floats; a NaN stays (its row gets ``outside_image``). A table
    (a pandas DataFrame) is read by its columns' names, row and col, not by their order."""
    refuse_layer(seeds, "seeds")
    columns = getattr(seeds, "columns", None)
    if columns is not None:
        names = [str(c).strip().lower() for c in columns]
        for row_name, col_name in _SEED_COLUMNS:
            if row_name in names and col_name in names:
                seeds = np.column_stack([np.asarray(seeds.iloc[:, names.index(row_name)]),
                                         np.asarray(seeds.iloc[:, names.index(col_name)])])
                break
        else:
            raise CalcinosisError(
                f"a table of seeds needs columns named row and col (in pixels); its columns are "
                f"{', '.join(map(str, columns))}. Name them (x is col, y is row), or give (row, col) pairs"
            )
    try:
        array = np.asarray(seeds, dtype=float)
    except (TypeError, ValueError) as exc:
        raise CalcinosisError(
            f"seeds must be (row, col) pairs of numbers in pixels, got {seeds!r:.80}"
        ) from exc
    if array.size == 0:
        return []
    if array.shape == (2,):  # one seed given as a bare (row, col)
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 2:
        raise CalcinosisError(
            f"seeds must be (row, col) pairs in pixels, got an array of shape {array.shape}: "
            "give one (row, col) per deposit"
        )
    return [(float(r), float(c)) for r, c in array]


def grow_lesions(
    image_hu: np.ndarray,
    bone_mask: np.ndarray,
    spacing_mm,
    seeds=None,
    *,
    candidates: np.ndarray | None = None,
    threshold_hu: float = DEFAULT_THRESHOLD_HU,
    margin_mm: float | None = DEFAULT_MARGIN_MM,
    fraction: float = 0.5,
    connectivity: int = 4,
    min_area_mm2: float = DEFAULT_MIN_AREA_MM2,
    min_contrast_hu: float = DEFAULT_MIN_CONTRAST_HU,
    free_bone_pieces: bool = True,
    bone_probability: np.ndarray | None = None,
) -> GrowResult:
    """Grow each deposit from a seed at its own half-maximum level.

    Parameters
    ----------
    image_hu : ndarray, (rows, cols)
        The image in HU.
    bone_mask : ndarray of bool
        Bone pixels; growth never enters them.
    spacing_mm : float or (float, float)
        Pixel spacing in mm.
    seeds : sequence of (row, col), optional
        One point on each deposit, in pixels: a non-integer one is rounded to the nearest pixel
        (halves to even), and one outside the image or NaN gets the status ``outside_image``.
        Without seeds (automatic mode) every candidate component of at least ``min_area_mm2``
        is grown from its brightest pixel; a lesion with more than 40 % air within 1 mm around
        it (a splint, a ring, the skin's edge: ``MAX_AIR_AROUND_DEPOSIT``) is left out, its row
        kept with the status ``outside_finger``, and so is a speck under 3 mm² standing less
        than 4 times the image's noise above the tissue (:func:`image_noise_hu`;
        ``below_noise``), and a long thin line along the bone deep in the soft tissue, most
        likely a calcified artery (:func:`~napari_calcinosis.subtract.vessel_like`;
        ``vessel_like``).
    candidates : ndarray of bool, optional
        For automatic mode: the residual mask from :func:`subtract_bone` (default: computed
        with ``threshold_hu`` and ``margin_mm``), e.g. after the user edited it.
    threshold_hu, margin_mm : float
        Calcium threshold and bone margin in mm of automatic mode, as in :func:`subtract_bone`
        (margin None = measured on the image; 0 to 10 mm). Seeded growth uses no margin: it runs
        on the image with the bone's halo removed and is kept one pixel off the bone mask. It does
        use the threshold, as the line between calcium and soft tissue: pixels at or above it are
        left out of the local soft tissue a deposit's level is drawn from, and of the bone's halo,
        so a seeded area moves with it (by up to about a tenth between 130 and 200 HU on phantoms).
    fraction : float
        Where between local soft tissue (0) and the deposit's plateau (1) its edge is drawn;
        0.5 is the half-maximum rule.
    connectivity : {4, 8}
        Pixel neighbourhood of growth; 4 is the more conservative against leaking through
        diagonal gaps.
    min_area_mm2 : float
        Automatic mode: smallest candidate component considered a deposit.
    min_contrast_hu : float
        A seed whose surroundings stand less than this above local soft tissue, or less than
        half of it above that tissue without its fat (``FAT_HU``), gets the status
        ``no_deposit``. A deposit grown at a level under the tissue without fat plus half of it
        is grown there instead when that level holds ``LEAK_RATIO`` times less (a flood of the
        tissue).
    free_bone_pieces : bool
        With seeds: a seed that lands on a separate piece of the bone mask, other than the
        largest, of at most ``MAX_FREED_PIECE_MM2`` (40 mm²), takes that piece out of the bone
        mask and is grown as a deposit there (``freed_from_bone_mm2`` says how much). The
        U-Net sometimes takes a dense deposit lying apart from the bone for bone; the click
        says otherwise. A seed on a larger piece, on the bone itself, or on a piece that is the
        next bone of the finger's chain (phalanx-shaped, past the end of another bone along its
        axis: ``NEXT_BONE_*``) stays ``on_bone``.
    bone_probability : ndarray of float, optional
        With seeds: the U-Net's probability the mask came from. A blob of mask the network was
        unsure of (0.5 to ``UNSURE_BONE_PROBABILITY``, 0.8), wider than ``UNSURE_BLOB_MM`` (and
        3 px), bordering what lies outside the bone and at most ``MAX_FREED_PIECE_MM2``, that a
        seed's deposit runs into is taken out of the mask and measured with the deposit
        (``freed_from_bone_mm2`` counts it): deposits against the bone are often partly inside
        the mask. A blob no deposit reaches stays bone, and so does every pixel under 0.5
        (painted by the user where the network saw no bone).

    Returns
    -------
    GrowResult
    """
    for value, what in ((image_hu, "the image"), (bone_mask, "the bone mask"), (candidates, "candidates"),
                        (bone_probability, "bone_probability")):
        refuse_layer(value, what)
    image_hu = np.asarray(image_hu, dtype=np.float32)
    bone_mask = np.asarray(bone_mask, bool)
    if image_hu.ndim != 2 or image_hu.shape != bone_mask.shape:
        raise CalcinosisError(
            f"image {image_hu.shape} and bone mask {bone_mask.shape} must be the same 2-D shape: segment this image again"
        )
    if connectivity not in (4, 8):
        raise CalcinosisError(f"connectivity must be 4 or 8, got {connectivity}")
    threshold_hu = checked_threshold_hu(threshold_hu)
    if margin_mm is not None:  # refused as subtract_bone refuses it, though only automatic mode uses it
        margin_mm = checked_margin_mm(margin_mm)
    min_area_mm2 = checked_number(min_area_mm2, "the smallest deposit (mm²)", 0.0)
    min_contrast_hu = checked_number(min_contrast_hu, "the smallest contrast (HU)", 0.0)
    if not (isinstance(fraction, (int, float, np.floating)) and np.isfinite(fraction)):
        raise CalcinosisError(f"fraction must be a number between 0 and 1, got {fraction!r}")
    if not 0.0 < fraction < 1.0:
        raise CalcinosisError(f"fraction must lie between 0 and 1, got {fraction}")
    refuse_non_finite(image_hu)
    given_seeds = None if seeds is None else _checked_seeds(seeds)
    spacing = _spacing_pair(spacing_mm)
    if given_seeds and bone_probability is not None:
        return _grow_taking_unsure_bone(image_hu, bone_mask, spacing, seeds, bone_probability, dict(
            threshold_hu=threshold_hu, margin_mm=margin_mm, fraction=fraction, connectivity=connectivity,
            min_area_mm2=min_area_mm2, min_contrast_hu=min_contrast_hu, free_bone_pieces=free_bone_pieces))
    structure = ndi.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    # Growth runs on the image with the bone's blur halo removed, and is kept one pixel off
    # the bone mask (the segmentation's boundary uncertainty); the wider margin of
    # subtract_bone only decides where automatic mode looks for deposits.
    work = remove_bone_halo(image_hu, bone_mask, spacing, threshold_hu=threshold_hu)
    forbidden = dilate_mm(bone_mask, 1.01 * max(spacing), spacing)
    edge_ring = forbidden & ~bone_mask
    allowed = ~forbidden
    # A 3x3 median removes single-pixel noise spikes from the peak and background estimates
    # without moving edges.
    smooth = ndi.median_filter(work, size=3)
    pixel_area_mm2 = spacing[0] * spacing[1]
    finish = _Finish(bone_mask, forbidden, edge_ring, spacing, structure)
    skin_rim = _SkinRim(image_hu, spacing, work, smooth)

    auto = seeds is None
    if auto:
        if candidates is None:
            margin_mm = resolve_margin_mm(margin_mm, image_hu, bone_mask, spacing, threshold_hu)
            candidates = subtract_bone(image_hu, bone_mask, spacing, threshold_hu=threshold_hu, margin_mm=margin_mm)
        comp, n = ndi.label(np.asarray(candidates, bool), structure=structure)
        seed_list = []
        if n:
            sizes = ndi.sum_labels(np.ones_like(comp), comp, index=np.arange(1, n + 1)) * pixel_area_mm2
            peaks = ndi.maximum_position(smooth, comp, index=np.arange(1, n + 1))
            seed_list = [tuple(int(v) for v in p) for p, a in zip(peaks, sizes) if a >= min_area_mm2]
    else:
        seed_list = given_seeds

    labels = np.zeros(image_hu.shape, dtype=np.int32)
    search = _disk_offsets(max(SEARCH_RADIUS_MM, 2.05 * max(spacing)), spacing)
    bg_radius_px = (int(np.ceil(BACKGROUND_RADIUS_MM / spacing[0])), int(np.ceil(BACKGROUND_RADIUS_MM / spacing[1])))
    rows = []
    own_regions = {}  # a seed whose region ran into an earlier seed's lesion: (box, region) for the split
    next_id = 1
    for seed in seed_list:
        row = {"seed_row": seed[0], "seed_col": seed[1], "lesion_id": 0, "status": "",
               "peak_hu": np.nan, "background_hu": np.nan, "level_hu": np.nan}
        rows.append(row)
        if not np.all(np.isfinite(seed)):
            row["status"] = "outside_image"
            continue
        r, c = int(round(seed[0])), int(round(seed[1]))
        if not (0 <= r < image_hu.shape[0] and 0 <= c < image_hu.shape[1]):
            row["status"] = "outside_image"
            continue
        on_bone = bool(bone_mask[r, c])
        if labels[r, c]:
            row.update(status="duplicate_seed", lesion_id=int(labels[r, c]))
            continue
        # Peak: the brightest allowed pixel within reach of the click.
        pts = _within_reach(search, (r, c), allowed)
        if len(pts) == 0:
            row["status"] = "on_bone"
            continue
        best = pts[np.argmax(smooth[pts[:, 0], pts[:, 1]])]
        peak = float(smooth[best[0], best[1]])
        # Local soft tissue: the median of the non-bone, non-air, non-calcified pixels around.
        win = _window(image_hu.shape, (r, c), bg_radius_px)
        local = smooth[win]
        tissue = local[allowed[win] & (local > -200.0) & (local < threshold_hu)]
        background = float(np.median(tissue)) if tissue.size >= 10 else 40.0
        # Fat pulls that median down; the deposit must also stand clear of the soft tissue
        # itself (skin, septa, tendon), and is never grown at a level the soft tissue reaches.
        soft = tissue[tissue > FAT_HU]
        soft_hu = float(np.median(soft)) if soft.size >= 10 else background  # never under background
        floor = soft_hu + 0.5 * min_contrast_hu
        row.update(peak_hu=peak, background_hu=background)
        if peak - background < min_contrast_hu or peak - soft_hu < 0.5 * min_contrast_hu:
            # A click on bone is on_bone unless a deposit lies right beside it: small dense
            # deposits touching bone are partly inside the segmented bone.
            row["status"] = "on_bone" if on_bone else "no_deposit"
            continue
        region = None
        # Two passes: the first from the peak near the seed, the second from the deposit's
        # interior median, so that a large or uneven deposit is judged by its body rather
        # than by one bright pixel.
        start = tuple(best)
        for _ in range(2):
            level_peak = peak  # the peak this pass's level is drawn from, reported with it
            level = background + fraction * (peak - background)
            if work[start] < level:  # a noisy start pixel: take the brightest one in reach
                start = tuple(int(v) for v in pts[np.argmax(work[pts[:, 0], pts[:, 1]])])

            def grow_at(lv, start=start):
                return _flood_where(lambda win: allowed[win] & (work[win] >= lv), work.shape, start, structure)

            region = grow_at(level)
            if level < floor:
                # Under the soft tissue's level: kept unless it floods the tissue, holding many
                # times what growth at that level holds.
                held = grow_at(floor)
                if region.sum() > LEAK_RATIO * held.sum():
                    level, region = floor, held
            level, region = skin_rim(region, level, level_peak - background, start, grow_at)
            box = _bbox(region)
            # The interior is taken with a fixed 3x3 erosion so that the level does not depend
            # on the growth connectivity.
            interior = ndi.binary_erosion(region[box], structure=np.ones((3, 3), bool))
            if interior.sum() < 9:
                break
            plateau = max(float(np.median(smooth[box][interior])), background + min_contrast_hu)
            if abs(plateau - peak) < 0.02 * (peak - background):
                break
            if work[tuple(best)] < background + fraction * (plateau - background):
                # The body's level would leave out the peak the click is on: the region has run
                # into a denser neighbour. When the click is on a peak of its own, parted from the
                # neighbour's by a dip, its deposit is its side of the valley, at its own level;
                # when it is only on the neighbour's flank, the neighbour is the deposit meant.
                at = (int(best[0]) - box[0].start, int(best[1]) - box[1].start)
                own = _own_side(region[box], smooth[box], at, structure, min_contrast_hu, background)
                if own is not None:
                    region[box] = own
                    start = tuple(int(v) for v in best)
                    break
            peak = plateau
            # Start the second pass inside the body, so a raised level cannot strand the start.
            ir, ic = np.nonzero(interior)
            k = np.argmax(work[box][ir, ic])
            start = (int(ir[k]) + box[0].start, int(ic[k]) + box[1].start)
        region = finish(region, start, (r, c))
        box = _bbox(region)
        overlap = labels[box][region[box]]
        overlap = overlap[overlap > 0]
        if overlap.size:
            row.update(status="duplicate_seed", lesion_id=int(np.bincount(overlap).argmax()), level_hu=level)
            own_regions[len(rows) - 1] = (box, region[box].copy())
            continue
        labels[box][region[box]] = next_id
        row.update(status="ok", lesion_id=next_id, peak_hu=level_peak, level_hu=level)
        next_id += 1
    if auto and next_id > 1:
        _leave_out(rows, labels, air_around(labels, next_id - 1, image_hu, spacing) > MAX_AIR_AROUND_DEPOSIT,
                   "outside_finger")
        _leave_out(rows, labels, _apart_from_the_bone(labels, next_id - 1, image_hu, bone_mask), "outside_finger")
        _leave_out(rows, labels, vessel_like(labels, next_id - 1, image_hu, bone_mask, spacing), "vessel_like")
        # On the image growth runs on (the bone's blur halo removed): the halo is no noise.
        noise = image_noise_hu(work, smooth, allowed)
        areas = np.bincount(labels.ravel(), minlength=next_id) * pixel_area_mm2
        # A lesion another candidate ran into is more than a speck: it is kept.
        joined = {row["lesion_id"] for row in rows if row["status"] == "duplicate_seed"}
        specks = [row for row in rows if row["status"] == "ok" and areas[row["lesion_id"]] < MAX_NOISE_SPECK_MM2
                  and row["lesion_id"] not in joined
                  and row["peak_hu"] - row["background_hu"] < NOISE_CONTRAST_RATIO * noise]
        drop = np.zeros(next_id, bool)
        drop[[row["lesion_id"] for row in specks]] = True
        _leave_out(rows, labels, drop, "below_noise")
    if not auto and any(row["status"] == "duplicate_seed" for row in rows):
        _split_shared_lesions(rows, labels, own_regions, work, smooth, search, finish, min_contrast_hu, fraction)
        _number_in_click_order(rows, labels)
    table = pd.DataFrame(rows, columns=["seed_row", "seed_col", "lesion_id", "status", "peak_hu", "background_hu", "level_hu"])
    table["freed_from_bone_mm2"] = 0.0
    if not auto and free_bone_pieces:
        piece_of, piece_of_seed, freed_mm2 = _bone_pieces_under(bone_mask, spacing, table, search)
        while freed_mm2.any():
            pieces = np.isin(piece_of, piece_of_seed[piece_of_seed > 0])
            again = grow_lesions(
                image_hu, bone_mask & ~pieces, spacing, seeds, threshold_hu=threshold_hu, margin_mm=margin_mm,
                fraction=fraction, connectivity=connectivity, min_area_mm2=min_area_mm2,
                min_contrast_hu=min_contrast_hu, free_bone_pieces=False,
            )
            # A piece stays freed only if its seed then grew a deposit: a click on a speck of the
            # mask over plain soft tissue must not lose the speck.
            failed = (freed_mm2 > 0) & (again.seeds["status"].to_numpy() != "ok")
            if not failed.any():
                again.seeds["freed_from_bone_mm2"] = freed_mm2
                return again
            piece_of_seed[np.isin(piece_of_seed, piece_of_seed[failed])] = 0
            freed_mm2[failed] = 0.0
    return GrowResult(lesion_labels=labels, seeds=table, bone_mask=bone_mask)


def _unsure_blobs(bone_mask, bone_probability, spacing):
    """The blobs of the mask a seed's deposit may take (labelled 1..n, 8-connected) and n.

    A blob is mask the network was unsure of (probability 0.5 to ``UNSURE_BONE_PROBABILITY``)
    and wider than ``UNSURE_BLOB_MM`` and 3 px, with the specks of the network's own mask under
    ``UNSURE_REMNANT_MM2`` it would leave behind. It must border what lies outside the bone (a
    deposit does; marrow does not) and be at most ``MAX_FREED_PIECE_MM2``, as a separate piece
    must. Pixels under 0.5, painted by the user against the network, are never in one.
    """
    probability = np.asarray(bone_probability, np.float32)
    if probability.shape != bone_mask.shape:
        raise CalcinosisError(f"bone probability {probability.shape} must have the bone mask's shape {bone_mask.shape}")
    networks = bone_mask & (probability >= 0.5)
    unsure = networks & (probability < UNSURE_BONE_PROBABILITY)
    radius = [max(1, int(np.ceil(UNSURE_BLOB_MM / 2 / s - 0.5))) for s in spacing]
    r, c = np.ogrid[-radius[0] : radius[0] + 1, -radius[1] : radius[1] + 1]
    disk = (r / (radius[0] + 0.5)) ** 2 + (c / (radius[1] + 0.5)) ** 2 <= 1.0
    blobs, n = label_bone_pieces(ndi.binary_opening(unsure, structure=disk))
    if not n:
        return blobs, 0
    rest = bone_mask & (blobs == 0)
    specks, m = label_bone_pieces(rest)
    if m:
        counts = np.bincount(specks.ravel(), minlength=m + 1)
        small = counts * spacing[0] * spacing[1] < UNSURE_REMNANT_MM2
        small &= np.bincount(specks[networks], minlength=m + 1) == counts  # none painted by the user
        small[0] = False
        # A speck left beside a blob goes with it (with the lowest-numbered blob it touches).
        near = ndi.grey_erosion(np.where(blobs > 0, blobs, n + 1), footprint=np.ones((3, 3), bool))
        owner = np.asarray(ndi.minimum(near, specks, index=np.arange(m + 1)), np.int64)
        owner[(owner > n) | ~small] = 0
        blobs = np.where(rest, owner[specks], blobs)
    beside_outside = ndi.binary_dilation(~ndi.binary_fill_holes(bone_mask), structure=np.ones((3, 3), bool))
    ring = np.zeros(n + 1, bool)
    ring[np.unique(blobs[beside_outside])] = True
    small_enough = np.bincount(blobs.ravel(), minlength=n + 1) * spacing[0] * spacing[1] <= MAX_FREED_PIECE_MM2
    keep = ring & small_enough
    keep[0] = False
    blobs, n = label_bone_pieces(keep[blobs])
    return blobs, n


def _grow_taking_unsure_bone(image_hu, bone_mask, spacing, seeds, bone_probability, options) -> GrowResult:
    """grow_lesions with seeds, where a seed's deposit may take a blob of the mask the network
    was unsure of (see its ``bone_probability``): the blobs are taken out, the deposits grown,
    and the blobs no deposit then reaches put back, until every blob left out is in a deposit."""
    blobs, n = _unsure_blobs(bone_mask, bone_probability, spacing)
    out = np.ones(n + 1, bool)
    out[0] = False
    for _ in range(n + 1):
        result = grow_lesions(image_hu, bone_mask & ~out[blobs], spacing, seeds, **options)
        reached = np.zeros(n + 1, bool)
        reached[np.unique(blobs[(result.lesion_labels > 0) & (blobs > 0)])] = True
        if not (out & ~reached).any():
            break
        out &= reached
    if not out.any():
        return result
    # Each seed is credited with the pixels of the blobs its deposit holds, and a blob's pixels
    # outside every deposit (below the deposit's level) go to the deposit holding most of it.
    taken = out[blobs]
    lesion = np.where(taken, result.lesion_labels, 0)
    held = np.zeros((n + 1, int(result.lesion_labels.max()) + 1))
    np.add.at(held, (blobs[taken], lesion[taken]), 1)
    owner = np.argmax(held[:, 1:], axis=1) + 1
    per_lesion = held[:, 1:].sum(axis=0)
    np.add.at(per_lesion, owner - 1, held[:, 0])
    freed = result.seeds["freed_from_bone_mm2"].to_numpy(float).copy()
    first = ~result.seeds["lesion_id"].duplicated() & (result.seeds["status"] == "ok")
    for i in np.flatnonzero(first.to_numpy()):
        freed[i] += per_lesion[int(result.seeds["lesion_id"].iat[i]) - 1] * spacing[0] * spacing[1]
    result.seeds["freed_from_bone_mm2"] = freed
    return result


class _Finish:
    """The last steps of growing a deposit, for a region grown from ``start`` and clicked at ``click``.

    Holes are filled (except around bone); the ring next to the bone is given back straight
    behind a deposit that touches it: a ring pixel joins when the nearest pixel outside the
    ring belongs to the deposit. No level test there: at the contact a pixel mixes bone and
    deposit, and the halo subtracted for it assumes bone and soft tissue, so its value says
    little. The clicked pixel itself joins when it sits in the ring beside the deposit.
    """

    def __init__(self, bone_mask, forbidden, edge_ring, spacing, structure):
        self.bone_mask, self.edge_ring, self.structure = bone_mask, edge_ring, structure
        self.ring_r, self.ring_c = np.nonzero(edge_ring)
        if self.ring_r.size:
            nearest = ndi.distance_transform_edt(forbidden, sampling=spacing, return_indices=True)[1]
            self.near_r, self.near_c = nearest[0][self.ring_r, self.ring_c], nearest[1][self.ring_r, self.ring_c]

    def __call__(self, region, start, click):
        box = _bbox(region)
        region[box] = _fill_holes_off_bone(region[box], self.bone_mask[box])
        if self.ring_r.size:
            joins = region[self.near_r, self.near_c]
            if joins.any():
                grown = region.copy()
                grown[self.ring_r[joins], self.ring_c[joins]] = True
                region = _flood_where(lambda win: grown[win], grown.shape, start, self.structure)
        r, c = click
        if not region[r, c] and self.edge_ring[r, c] and region[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2].any():
            region[r, c] = True
        return region


class _SkinRim:
    """Keeps a seed's region off the rim a sharp kernel draws along the skin (``RIM_LEVEL_STEP``).

    ``skin_rim(region, level, contrast, start, grow_at)`` gives ``(level, region)``: the region
    ``grow_at(higher)`` gives at the first level up to ``RIM_STEPS`` steps of ``contrast`` higher
    at which the region drops by more than ``LEAK_RATIO`` times, when most of what it drops lies
    along the air and none of it stands near the seed's peak (``RIM_LOBE``); else ``(level,
    region)`` unchanged. The air map is made on first need, the
    distance to the air only around the region.
    """

    def __init__(self, image_hu, spacing, work, smooth):
        self.image_hu, self.spacing, self.work, self.smooth = image_hu, spacing, work, smooth
        self.air = None
        self.pad = [int(np.ceil(AIR_RING_MM / s)) + 1 for s in spacing]

    def __call__(self, region, level, contrast, start, grow_at):
        if self.air is None:
            self.air = air_and_data(self.image_hu)[0]
            self.any_air = bool(self.air.any())
        if not self.any_air:
            return level, region
        for k in range(1, RIM_STEPS + 1):
            higher = level + k * RIM_LEVEL_STEP * contrast
            if self.work[start] < higher:
                break
            held = grow_at(higher)
            if region.sum() <= LEAK_RATIO * held.sum():
                continue
            box = tuple(slice(max(b.start - p, 0), b.stop + p) for b, p in zip(_bbox(region), self.pad))
            if not self.air[box].any():  # (an image without background has no distances)
                break
            dropped = region[box] & ~held[box]
            beads = int((dropped & (self.smooth[box] >= level + RIM_LOBE * contrast)).sum())
            if beads >= RIM_LOBE_PX and beads >= RIM_LOBE_SHARE * dropped.sum():
                break  # it would drop more of the deposit: the beads of a plaque, not the rim
            near_air = ndi.distance_transform_edt(~self.air[box], sampling=self.spacing) <= AIR_RING_MM
            if near_air[dropped].mean() > RIM_SHARE:
                return higher, held
            break
        return level, region


def _split_shared_lesions(rows, labels, own_regions, work, smooth, search, finish, min_contrast_hu, fraction) -> None:
    """Give each seed its own deposit where several seeds landed on one grown region.

    Two deposits that touch, or whose blur overlaps above a half-maximum level, grow into one
    another: a later seed's region (``own_regions``: row -> (box, mask)) runs into an earlier
    seed's lesion. A later seed is a deposit of its own when it sits on its own intensity peak,
    parted by a dip (:func:`_apart`) from the peak of every seed already given one. The seeds'
    regions together are then cut along the valleys between the peaks (watershed), and each
    part is grown again within its side at its own half-maximum (two passes, as in
    :func:`grow_lesions`) and finished like any deposit. A seed on the same peak as another, a
    second click on one deposit, stays a ``duplicate_seed`` of that deposit. Lesion ids are
    renumbered afterwards (:func:`_number_in_click_order`).
    """
    shared: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        if row["status"] == "duplicate_seed":
            shared.setdefault(row["lesion_id"], []).append(i)
    next_id = int(labels.max()) + 1
    for lesion_id, later in shared.items():
        first = next(i for i, row in enumerate(rows) if row["status"] == "ok" and row["lesion_id"] == lesion_id)
        union = labels == lesion_id
        for i in later:
            if i in own_regions:
                own_box, own = own_regions[i]
                union[own_box] |= own & (labels[own_box] == 0)
        box = _bbox(union)
        region = union[box]
        local = smooth[box]
        offset = np.array([box[0].start, box[1].start])
        peaks = {first: _peak_in(region, local, search, rows[first], offset)}
        if peaks[first] is None:
            continue
        later_peaks = {i: _peak_in(region, local, search, rows[i], offset) for i in later}
        for i, peak in later_peaks.items():
            background = _finite_or(rows[i]["background_hu"], rows[first]["background_hu"])
            if peak is not None and all(
                _apart(region, local, peak, q, finish.structure, min_contrast_hu, background) for q in peaks.values()
            ):
                peaks[i] = peak
        if len(peaks) < 2:
            continue
        markers = np.zeros(region.shape, np.int32)
        for k, q in enumerate(peaks.values(), start=1):
            markers[q] = k
        sides = watershed(-local, markers, mask=region, connectivity=finish.structure)
        labels[labels == lesion_id] = 0
        grown = {}
        for k, i in enumerate(peaks, start=1):
            side = np.zeros(labels.shape, bool)
            side[box] = sides == k
            row = rows[i]
            background = _finite_or(row["background_hu"], rows[first]["background_hu"])
            peak_hu = float(local[peaks[i]])
            start = (int(peaks[i][0] + offset[0]), int(peaks[i][1] + offset[1]))
            near = [(start[0] + dr, start[1] + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
            near = [q for q in near if 0 <= q[0] < side.shape[0] and 0 <= q[1] < side.shape[1] and side[q]]
            start = max(near, key=lambda q: work[q])  # the median's peak; its brightest raw neighbour starts the flood
            for _ in range(2):
                level = background + fraction * (peak_hu - background)
                part = _flood_where(lambda win, lv=level: side[win] & (work[win] >= lv), work.shape, start,
                                    finish.structure)
                pbox = _bbox(part)
                interior = ndi.binary_erosion(part[pbox], structure=np.ones((3, 3), bool))
                if interior.sum() < 9:
                    break
                plateau = max(float(np.median(smooth[pbox][interior])), background + min_contrast_hu)
                if abs(plateau - peak_hu) < 0.02 * (peak_hu - background) or work[start] < background + fraction * (
                    plateau - background
                ):
                    break
                peak_hu = plateau
            if k > 1:
                row["lesion_id"] = next_id
                next_id += 1
            row.update(status="ok", peak_hu=peak_hu, background_hu=background, level_hu=level)
            click = (int(round(row["seed_row"])), int(round(row["seed_col"])))
            grown[i] = (finish(part, start, click) & (labels == 0)) | part
        # A side whose whole deposit other sides reach as well (inside one's filled hole, say) is
        # no deposit of its own: it stays out of the contest, and its seed is a duplicate of the
        # deposit it lies in. Otherwise its id would hold no pixel, and the other deposit a hole.
        absorbed = {}
        for i in list(grown):
            others = [part for j, part in grown.items() if j != i]
            if others and not (grown[i] & ~np.logical_or.reduce(others)).any():
                absorbed[i] = grown.pop(i)
        contested = np.sum(list(grown.values()), axis=0) > 1  # reached by two finished parts: neither's
        for i, part in grown.items():
            labels[part & ~contested & (labels == 0)] = rows[i]["lesion_id"]
        for i, part in absorbed.items():
            inside = labels[part & (labels > 0)]
            held = int(np.bincount(inside).argmax()) if inside.size else 0
            rows[i].update(status="duplicate_seed" if held else "no_deposit", lesion_id=held)
        # A second click on one of the deposits belongs to the deposit its peak lies in.
        owner = {k: rows[i]["lesion_id"] for k, i in enumerate(peaks, start=1)}
        for i, peak in later_peaks.items():
            if i not in peaks and peak is not None:
                rows[i]["lesion_id"] = owner[int(sides[peak])]


def _apart_from_the_bone(labels, n, image_hu, bone_mask) -> np.ndarray:
    """Which labelled lesions (index k; 0 unused) lie apart from the finger: wholly in a piece of
    the image (joined without crossing air, below ``AIR_HU`` after a 3x3 median, padding
    included) that holds no bone of the mask and reaches the image's border. Calcinosis cutis
    lies in the finger's soft tissue, joined to its bones; a CT table or a cushion along the
    border is not. A piece inside the image without bone is kept: the pulp of a flexed fingertip
    curving out of the slice. With no bone in the mask nothing is left out."""
    out = np.zeros(n + 1, bool)
    if not bone_mask.any():
        return out
    tissue = median3_at_least(image_hu, AIR_HU)
    comp, m = ndi.label(tissue)
    away = np.zeros(m + 1, bool)
    away[np.unique(np.concatenate([comp[0], comp[-1], comp[:, 0], comp[:, -1]]))] = True
    away[np.unique(comp[bone_mask & tissue])] = False
    away[0] = False
    in_away = away[comp]
    elsewhere = np.bincount(labels[~in_away], minlength=n + 1) > 0
    there = np.bincount(labels[in_away], minlength=n + 1) > 0
    out[1:] = there[1 : n + 1] & ~elsewhere[1 : n + 1]
    return out


def _leave_out(rows, labels, drop, status: str) -> None:
    """Take the lesions flagged in ``drop`` (indexed by lesion id) out of ``labels``: their rows,
    and those of any later candidate that fell on them, get ``status``; the rest are renumbered."""
    if not drop.any():
        return
    labels[drop[labels]] = 0
    for row in rows:
        if drop[row["lesion_id"]]:
            row.update(status=status, lesion_id=0)
    _number_in_click_order(rows, labels)


def _number_in_click_order(rows, labels) -> None:
    """Renumber lesions 1, 2, ... in the order of the seeds that grew them."""
    order = []
    for row in rows:
        if row["status"] == "ok" and row["lesion_id"] not in order:
            order.append(row["lesion_id"])
    lookup = np.zeros(int(labels.max()) + 1, np.int32)
    for new, old in enumerate(order, start=1):
        lookup[old] = new
    labels[...] = lookup[labels]
    for row in rows:
        if row["lesion_id"]:
            row["lesion_id"] = int(lookup[row["lesion_id"]])


def _own_side(region, local, at, structure, min_contrast_hu, background):
    """``region``'s side of the valley around the peak climbed to from ``at``, or None.

    None when ``at`` climbs to the region's top, or to a peak that no dip deep enough for two
    deposits (:func:`_apart`) parts from the top.
    """
    if not (0 <= at[0] < region.shape[0] and 0 <= at[1] < region.shape[1] and region[at]):
        return None
    mine = _climb(region, local, at)
    flat = np.where(region, local, -np.inf)
    top = np.unravel_index(np.argmax(flat), flat.shape)
    if mine == top or not _apart(region, local, mine, top, structure, min_contrast_hu, background):
        return None
    markers = np.zeros(region.shape, np.int32)
    markers[mine], markers[top] = 1, 2
    return watershed(-local, markers, mask=region, connectivity=structure) == 1


def _climb(region, local, here):
    """From ``here``, step to the brightest of the 8 neighbours in ``region`` while it is
    brighter: the top of the peak ``here`` lies on."""
    while True:
        r0, c0 = max(here[0] - 1, 0), max(here[1] - 1, 0)
        around = np.where(region[r0 : here[0] + 2, c0 : here[1] + 2], local[r0 : here[0] + 2, c0 : here[1] + 2], -np.inf)
        k = np.unravel_index(np.argmax(around), around.shape)
        if around[k] <= local[here]:
            return here
        here = (r0 + int(k[0]), c0 + int(k[1]))


def _finite_or(value, fallback) -> float:
    return float(value) if np.isfinite(value) else float(fallback)


def _peak_in(region, local, search, row, offset):
    """The intensity peak of ``region`` that the row's seed lies on, in the box's frame.

    From the brightest region pixel within reach of the click, climb to ever brighter
    neighbours until none is brighter: the top of the deposit under the click, not the flank
    of a brighter neighbour that happens to be within reach.
    """
    pts = _within_reach(search, (int(round(row["seed_row"])), int(round(row["seed_col"]))) - offset, region)
    if not len(pts):
        return None
    return _climb(region, local, tuple(int(v) for v in pts[np.argmax(local[pts[:, 0], pts[:, 1]])]))


def _apart(region, local, a, b, structure, min_contrast_hu, background) -> bool:
    """Whether peaks ``a`` and ``b`` of ``region`` are two deposits: every path between them
    within ``region`` dips at least ``APART_DIP`` (a tenth) of the lower one's contrast above ``background``,
    and ``min_contrast_hu`` (noise makes shallower dips on one deposit's plateau)."""
    height = min(float(local[a]), float(local[b]))
    dip = max(min_contrast_hu, APART_DIP * (height - background))
    # With no dip asked the peaks themselves must count, so a peak is never apart from itself;
    # otherwise a dip of exactly ``dip`` parts them, as before.
    above = local > height - dip if dip > 0 else local >= height
    comp, _ = ndi.label(region & above, structure=structure)
    return not (comp[a] and comp[a] == comp[b])


def _piece_at(bone_mask, piece_of, r, c, spacing, search) -> int:
    """The label in ``piece_of`` of the bone pixel nearest to (r, c) within reach, or 0."""
    pts = _within_reach(search, (r, c), bone_mask)
    if not len(pts):
        return 0
    nearest = pts[np.argmin((((pts - (r, c)) * spacing) ** 2).sum(axis=1))]
    return int(piece_of[nearest[0], nearest[1]])


def _bone_pieces_under(bone_mask, spacing, table, search):
    """The small separate bone-mask pieces that ``on_bone`` seeds lie on.

    A seed's piece is the one holding the bone pixel nearest to it within reach of the click.
    Returns the pieces' labels (8-connected; None when no seed is ``on_bone``), each seed's piece
    to free (0: none), and the area freed per seed (mm²; a piece is counted for the first seed on
    it).
    """
    piece_of_seed = np.zeros(len(table), np.int64)
    freed_mm2 = np.zeros(len(table))
    on_bone = np.flatnonzero(table["status"].to_numpy() == "on_bone")
    if not on_bone.size:  # the usual case: no labelling on every regrow
        return None, piece_of_seed, freed_mm2
    piece_of, _ = label_bone_pieces(bone_mask)  # a piece touching the bone at a corner is not freed
    sizes_mm2 = np.bincount(piece_of.ravel())[1:] * spacing[0] * spacing[1]
    largest = int(np.argmax(sizes_mm2)) + 1
    next_bone, pieces = {}, None
    for i in on_bone:
        k = _piece_at(bone_mask, piece_of, int(round(table.at[i, "seed_row"])), int(round(table.at[i, "seed_col"])),
                      spacing, search)
        if k == 0 or k == largest or sizes_mm2[k - 1] > MAX_FREED_PIECE_MM2:
            continue
        if k not in next_bone:
            if pieces is None:
                pieces = {p.label: p for p in regionprops(piece_of, spacing=spacing)}
            next_bone[k] = _next_bone_in_chain(piece_of, k, pieces, spacing)
        if next_bone[k]:
            continue
        if k not in piece_of_seed:
            freed_mm2[i] = sizes_mm2[k - 1]
        piece_of_seed[i] = k
    return piece_of, piece_of_seed, freed_mm2


def _long_piece(piece, min_elongation):
    """``piece`` (a bone-mask piece's ``regionprops``, in mm) when it is at least
    ``NEXT_BONE_MIN_MM2`` and ``min_elongation`` times as long as wide, else None."""
    long_enough = piece.axis_major_length >= min_elongation * piece.axis_minor_length
    return piece if piece.area >= NEXT_BONE_MIN_MM2 and long_enough else None


def _next_bone_in_chain(piece_of, k, pieces, spacing) -> bool:
    """Whether bone-mask piece ``k`` of ``piece_of`` is the next bone of the finger's chain (see
    ``NEXT_BONE_MIN_MM2``): large and long enough, its centre past the end of the nearest other
    piece, itself long, along that piece's axis. ``pieces``: the pieces' ``regionprops`` in mm
    (``spacing``), by label."""
    piece = _long_piece(pieces[k], NEXT_BONE_MIN_ELONGATION)
    others = (piece_of > 0) & (piece_of != k)
    if piece is None or not others.any():
        return False
    rows, cols = piece.coords[:, 0], piece.coords[:, 1]
    dist, (ir, ic) = ndi.distance_transform_edt(~others, sampling=spacing, return_indices=True)
    j = int(np.argmin(dist[rows, cols]))
    nearest = _long_piece(pieces[int(piece_of[ir[rows[j], cols[j]], ic[rows[j], cols[j]]])],
                          NEXT_BONE_NEIGHBOUR_MIN_ELONGATION)
    if nearest is None:
        return False
    axis = np.array([np.cos(nearest.orientation), np.sin(nearest.orientation)])  # (row, col), mm
    along = (nearest.coords_scaled - nearest.centroid) @ axis
    offset = float((np.asarray(piece.centroid) - nearest.centroid) @ axis)
    end = along.max() if offset > 0 else -along.min()
    return abs(offset) - end >= NEXT_BONE_BEYOND_MM


def _fill_holes_off_bone(region: np.ndarray, bone_mask: np.ndarray) -> np.ndarray:
    """``region`` with its holes filled, except holes that hold bone.

    A hole is noise or a darker core inside the deposit; a hole around bone is the bone (a
    deposit wrapped around a bone fragment, or a speck of the mask), which growth never enters.
    """
    holes, n = ndi.label(ndi.binary_fill_holes(region) & ~region)
    if not n:
        return region
    keep = np.ones(n + 1, bool)
    keep[0] = False
    keep[np.unique(holes[bone_mask & (holes > 0)])] = False
    return region | keep[holes]


def region_grow(image, seed, lower, upper=np.inf, *, connectivity: int = 4) -> np.ndarray:
    """The pixels connected to ``seed`` whose values lie in ``[lower, upper]``.

    The fixed-interval region growing of ITK's ``ConnectedThreshold`` and of
    ``skimage.segmentation.flood`` on a thresholded image, with the same result. A small
    deposit is labelled in a window around the seed, in microseconds whatever the size of the
    image; a larger region is flooded on the whole image.

    Parameters
    ----------
    image : ndarray, (rows, cols)
    seed : (row, col)
        In pixels.
    lower, upper : float
        The interval, inclusive, in the image's unit (HU).
    connectivity : {4, 8}

    Returns
    -------
    ndarray of bool
        Empty when the seed's own value is outside the interval.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise CalcinosisError(f"region growing needs a 2-D image, got shape {image.shape}")
    if connectivity not in (4, 8):
        raise CalcinosisError(f"connectivity must be 4 or 8, got {connectivity}")
    checked = _checked_seeds(seed)
    if len(checked) != 1 or not np.all(np.isfinite(checked[0])):
        raise CalcinosisError(f"region growing needs one (row, col) seed of finite numbers in pixels, got {seed!r:.80}")
    r, c = (int(round(v)) for v in checked[0])
    if not (0 <= r < image.shape[0] and 0 <= c < image.shape[1]):
        raise CalcinosisError(f"seed ({r}, {c}) lies outside the {image.shape[0]}x{image.shape[1]} image")
    if not lower <= image[r, c] <= upper:
        return np.zeros(image.shape, bool)
    structure = ndi.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    return _flood_where(lambda win: (image[win] >= lower) & (image[win] <= upper), image.shape, (r, c), structure)


def _bbox(mask: np.ndarray, pad: int = 1) -> tuple[slice, slice]:
    """The bounding box of ``mask``'s True pixels, ``pad`` pixels wider, clipped to the image."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    return (
        slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, mask.shape[0])),
        slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, mask.shape[1])),
    )


def _flood_where(predicate, shape, start, structure, half_px: int = 12) -> np.ndarray:
    """The connected component containing ``start`` of the pixels where ``predicate`` holds.

    ``predicate(window)`` gives the bool mask of a window ``(row_slice, col_slice)``. A deposit
    usually fits a small window around ``start``, labelled in microseconds; a region that
    reaches the window's edge is flooded on the whole image instead, which visits only its own
    pixels (labelling ever larger windows costs more than that). When ``start`` itself fails,
    the result is ``start`` alone, so that a seed always keeps its pixel.
    """
    out = np.zeros(shape, bool)
    r0, r1 = max(start[0] - half_px, 0), min(start[0] + half_px + 1, shape[0])
    c0, c1 = max(start[1] - half_px, 0), min(start[1] + half_px + 1, shape[1])
    win = (slice(r0, r1), slice(c0, c1))
    local = predicate(win)
    at = (start[0] - r0, start[1] - c0)
    if not local[at]:
        out[start] = True
        return out
    labels, _ = ndi.label(local, structure=structure)
    comp = labels == labels[at]
    reaches_edge = (
        (r0 > 0 and comp[0].any()) or (r1 < shape[0] and comp[-1].any())
        or (c0 > 0 and comp[:, 0].any()) or (c1 < shape[1] and comp[:, -1].any())
    )
    if not reaches_edge:
        out[win] = comp
        return out
    whole = predicate((slice(0, shape[0]), slice(0, shape[1])))
    return flood(whole.view(np.uint8), tuple(start), connectivity=1 if structure.sum() == 5 else 2).view(bool)
