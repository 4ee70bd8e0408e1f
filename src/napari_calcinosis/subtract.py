"""Bone subtraction: bright (calcium-dense) pixels that are not bone are candidate deposits.

Deposits and bone are both calcium hydroxyapatite and equally bright, so a threshold alone
cannot separate them (Chandrasekaran et al. 2021); the segmented phalanges are removed first.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ._errors import CalcinosisError, checked_number, refuse_layer

__all__ = ["DEFAULT_THRESHOLD_HU", "DEFAULT_MARGIN_MM", "subtract_bone", "dilate_mm", "estimate_bone_margin_mm", "remove_bone_halo"]

# Finger soft tissue, skin and flexor tendon lie at 20-110 HU and the nail plate up to ~200 HU on
# bone-kernel CT; 200 HU keeps all of them (plus three standard deviations of typical 20-35 HU
# noise on tendon) out of the candidates, while calcinosis deposits of measurable size are
# hydroxyapatite at several hundred HU and above. The coronary-calcium convention of 130 HU
# (Agatston) is set for 3 mm heart slices and would admit the nail and tendons here. Seeded
# growth does not use this threshold: it adapts to each deposit's own contrast (grow.py).
DEFAULT_THRESHOLD_HU = 200.0
# What a threshold or margin may be: HU from air to the densest cortex a DECT scale holds, and a
# margin up to 10 mm (the halo reaches 0.3-1.5 mm; more would subtract the finger).
THRESHOLD_RANGE_HU = (-1000.0, 4000.0)
MAX_MARGIN_MM = 10.0


def checked_threshold_hu(threshold_hu, what: str = "the calcium threshold (HU)") -> float:
    """``threshold_hu`` as a number within :data:`THRESHOLD_RANGE_HU`, else a CalcinosisError."""
    return checked_number(threshold_hu, what, *THRESHOLD_RANGE_HU)


def checked_margin_mm(margin_mm, what: str = "the bone margin (mm)") -> float:
    """``margin_mm`` as a number from 0 to :data:`MAX_MARGIN_MM`, else a CalcinosisError."""
    return checked_number(margin_mm, what, 0.0, MAX_MARGIN_MM)

# The cortex is the densest thing in the image; blurred by the scanner's point-spread function
# it leaves a bright halo outside the bone outline that must not count as calcinosis. How far
# that halo reaches depends on the scanner's kernel and the cortex density (0.3 mm for a sharp
# kernel, 0.8 mm and more for a soft one), so by default the margin is measured on each image:
# the distance from the bone at which the median intensity has fallen to within
# HALO_TOLERANCE_HU of the surrounding soft tissue (see estimate_bone_margin_mm). The part of a
# deposit touching bone that falls inside the margin is given back by seeded growth.
DEFAULT_MARGIN_MM = None  # None = measured per image
FALLBACK_MARGIN_MM = 0.5  # used when the image has too little bone edge to measure
HALO_TOLERANCE_HU = 40.0  # below the weakest deposit's half-maximum (100 HU contrast / 2)
MARGIN_LIMITS_MM = (0.25, 1.5)
HALO_REACH_MM = 2.0  # beyond this the halo of any clinical bone kernel is gone


def _spacing_pair(spacing_mm) -> tuple[float, float]:
    try:
        spacing = np.broadcast_to(np.asarray(spacing_mm, float), (2,))
    except (TypeError, ValueError):
        raise CalcinosisError(f"pixel spacing must be one number or a (row, col) pair in mm, got {spacing_mm!r}") from None
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise CalcinosisError(f"pixel spacing must be positive, got {spacing_mm!r} mm")
    from .measure import _check_plausible

    _check_plausible((float(spacing[0]), float(spacing[1])))
    return float(spacing[0]), float(spacing[1])


def dilate_mm(mask: np.ndarray, margin_mm: float, spacing_mm) -> np.ndarray:
    """Grow a binary mask by ``margin_mm`` (Euclidean, in physical units, anisotropy respected)."""
    mask = np.asarray(mask, bool)
    if margin_mm <= 0 or not mask.any():
        return mask.copy()
    distance_mm = ndi.distance_transform_edt(~mask, sampling=_spacing_pair(spacing_mm))
    return distance_mm <= margin_mm


def disk_mm(radius_mm: float, spacing_mm) -> np.ndarray:
    """A disc of ``radius_mm`` on pixels of ``spacing_mm`` (row, col) as a bool array centred on its
    middle pixel: the pixels whose centres lie within the radius (an ellipse on anisotropic pixels)."""
    spacing = _spacing_pair(spacing_mm)
    rr, cc = (int(np.ceil(radius_mm / s)) for s in spacing)
    r, c = np.mgrid[-rr : rr + 1, -cc : cc + 1]
    return (r * spacing[0]) ** 2 + (c * spacing[1]) ** 2 <= radius_mm**2


def width_mm(piece: np.ndarray, spacing_mm) -> float:
    """The width of a region (a bool array, e.g. ``regionprops``' ``image``) in mm: twice the
    largest distance from inside it to its edge (the array's border counts as outside)."""
    return 2.0 * float(ndi.distance_transform_edt(np.pad(piece, 1), sampling=_spacing_pair(spacing_mm)).max())


def label_bone_pieces(bone_mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The separate pieces of a bone mask, labelled 1..n: ``(labels, n)``.

    8-connected: a piece touching the bone only at a corner is part of it. The segmentation's
    piece rules and a seed freeing a piece of the mask (``grow_lesions``) tell pieces apart alike.
    """
    return ndi.label(np.asarray(bone_mask, bool), structure=np.ones((3, 3), bool))


# Air, also in 8-bit exports at window 1500 / level 450 (which floor at -300 HU). Below
# NO_DATA_HU a pixel is a scanner's padding outside the reconstructed field of view (-2048,
# -3024 HU, ...): neither air nor tissue, it is left out of the count.
AIR_HU = -250.0
NO_DATA_HU = -1150.0
AIR_RING_MM = 1.0
# Bone and calcinosis cutis lie inside the finger, with tissue around them. A bright thing with
# more than this share of air within AIR_RING_MM around it lies outside the finger or on its
# surface: a splint, a ring, the rim a sharp kernel draws along the skin. On images from ours and
# four independently written generators no true bone piece had more than 8 % air around it and
# no true deposit more than about 30 %, while splints, rings and skin rims reached 23-100 %
# (docs/validation.md). One threshold for the bone mask and for automatic mode, so that a piece
# the bone mask drops is also left out of automatic mode.
OUTSIDE_FINGER_AIR = 0.4


def median3_at_least(image: np.ndarray, threshold: float) -> np.ndarray:
    """``median_filter(image, size=3) >= threshold``, without sorting: the median of nine values
    is at least ``threshold`` exactly when five of them are (borders reflected, as the median's).
    Exact for finite values; a NaN counts as below ``threshold``."""
    dense = (np.asarray(image) >= threshold).astype(np.uint8)
    return ndi.convolve(dense, np.ones((3, 3), np.uint8), mode="reflect") >= 5


def share_around(labels: np.ndarray, n: int, flagged: np.ndarray, spacing_mm, ring_mm: float,
                 counted: np.ndarray | None = None) -> np.ndarray:
    """For each labelled object, the share of ``flagged`` pixels among those within ``ring_mm``
    outside the objects, nearer to it than to any other, and ``counted`` (all, if None). Only
    the image counts (a border cuts the ring). Index k holds object k's share (index 0 is
    unused, 0.0)."""
    dist, (ir, ic) = ndi.distance_transform_edt(labels == 0, sampling=_spacing_pair(spacing_mm), return_indices=True)
    ring = (dist > 0) & (dist <= ring_mm)
    if counted is not None:
        ring &= counted
    owner = labels[ir[ring], ic[ring]]
    around = np.bincount(owner, minlength=n + 1)
    share = np.bincount(owner, weights=flagged[ring], minlength=n + 1) / np.maximum(around, 1)
    share[0] = 0.0
    return share


def air_and_data(image_hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(air, data)``: the pixels below ``AIR_HU`` after a 3x3 median, less the padding outside
    the scanner's field of view; and the pixels that are not padding (``NO_DATA_HU`` or more)."""
    data = median3_at_least(image_hu, NO_DATA_HU)
    return ~median3_at_least(image_hu, AIR_HU) & data, data


def air_around(labels: np.ndarray, n: int, image_hu: np.ndarray, spacing_mm, ring_mm: float = AIR_RING_MM) -> np.ndarray:
    """The share of air around each labelled object (:func:`share_around`): pixels below
    ``AIR_HU`` after a 3x3 median, of those within ``ring_mm``; padding outside the scanner's
    field of view (below ``NO_DATA_HU``) does not count."""
    air, data = air_and_data(image_hu)
    return share_around(labels, n, air, spacing_mm, ring_mm, counted=data)


# A calcified digital artery is calcium in the soft tissue, outside the bone, as a deposit is.
# On a sagittal image it is a thin line (one wall, or both as a tram-track) running along the
# phalanx, deep in the palmar soft tissue; calcinosis cutis lies in the skin and under it, in
# nodules, clusters and plaques that follow the skin. A lesion at least VESSEL_MIN_LENGTH_MM
# long (ellipse major axis), at most VESSEL_MAX_WIDTH_MM wide (twice the largest distance from
# its inside to its edge), at least VESSEL_MIN_ELONGATION times as long as wide, within
# VESSEL_MAX_ANGLE_DEG of the long axis of the nearest bone piece that has one (at least
# VESSEL_BONE_MIN_ELONGATION times as long as wide, as a phalanx is; a round speck's axis means
# nothing), and nowhere nearer than VESSEL_MIN_DEPTH_MM to the air, the image's border or
# padding (where the skin may be out of view) is taken for an artery. Chosen on ours and A-H
# (docs/validation.md): of the 592 lesions automatic mode grew on their deposits 3 were such
# lines (9-14 mm² deposits along the bone), against 19 of the 68 arterial segments on H, 46 %
# of their area. Shorter, curved, beaded or shallow segments of an artery are not caught.
# Without air in view the depth is unknown and nothing is taken for an artery.
VESSEL_MIN_LENGTH_MM = 6.0
VESSEL_MAX_WIDTH_MM = 3.0
VESSEL_MIN_ELONGATION = 4.0
VESSEL_MAX_ANGLE_DEG = 20.0
VESSEL_MIN_DEPTH_MM = 2.0
VESSEL_BONE_MIN_ELONGATION = 2.0


def vessel_like(labels: np.ndarray, n: int, image_hu: np.ndarray, bone_mask: np.ndarray, spacing_mm) -> np.ndarray:
    """Which labelled objects look like a calcified artery (see ``VESSEL_*`` above).

    Returns a bool array of length ``n + 1``; index k is object k (index 0 unused, False).
    """
    from skimage.measure import regionprops

    out = np.zeros(n + 1, bool)
    spacing = _spacing_pair(spacing_mm)
    bone_mask = np.asarray(bone_mask, bool)
    if n == 0 or not bone_mask.any():
        return out
    # most images have no lesion this long: then no image-wide filter or distance map is made
    candidates = [p for p in regionprops(labels, spacing=spacing)
                  if p.label <= n and p.axis_major_length >= VESSEL_MIN_LENGTH_MM]
    if not candidates:
        return out
    air, data = air_and_data(image_hu)
    if not air.any():
        return out
    pieces, _ = label_bone_pieces(bone_mask)
    axes = {p.label: p.orientation for p in regionprops(pieces, spacing=spacing)
            if p.axis_major_length >= VESSEL_BONE_MIN_ELONGATION * p.axis_minor_length}
    long_bones = np.isin(pieces, list(axes))
    if not long_bones.any():
        return out
    # The skin may lie past the border or in the padding: both count as air here.
    open_edge = air | ~data
    open_edge[[0, -1], :] = True
    open_edge[:, [0, -1]] = True
    depth_mm = ndi.distance_transform_edt(~open_edge, sampling=spacing)
    bone_dist, (ir, ic) = ndi.distance_transform_edt(~long_bones, sampling=spacing, return_indices=True)
    for p in candidates:
        width = width_mm(p.image, spacing)
        if width > VESSEL_MAX_WIDTH_MM or p.axis_major_length < VESSEL_MIN_ELONGATION * width:
            continue
        rows, cols = p.coords[:, 0], p.coords[:, 1]
        if depth_mm[rows, cols].min() < VESSEL_MIN_DEPTH_MM:
            continue
        k = int(np.argmin(bone_dist[rows, cols]))
        turn = abs(p.orientation - axes[int(pieces[ir[rows[k], cols[k]], ic[rows[k], cols[k]]])]) % np.pi
        if np.degrees(min(turn, np.pi - turn)) <= VESSEL_MAX_ANGLE_DEG:
            out[p.label] = True
    return out


def _check_same_shape(image_hu: np.ndarray, bone_mask: np.ndarray) -> None:
    if image_hu.shape != bone_mask.shape:
        for what, array in (("image", image_hu), ("bone mask", bone_mask)):
            if array.ndim != 2:
                raise CalcinosisError(f"the {what} must be one 2-D slice, got an array of shape {array.shape}")
        raise CalcinosisError(
            f"the bone mask ({bone_mask.shape[1]}x{bone_mask.shape[0]} px) does not match the image "
            f"({image_hu.shape[1]}x{image_hu.shape[0]} px): segment this image again"
        )


def _halo_profile(image_hu, bone_mask, spacing, threshold_hu):
    """Median excess HU over soft tissue in 0.1 mm distance bins outside the bone.

    Returns (bin upper edges in mm, excess in HU or NaN where a bin has too few pixels,
    distance map in mm), or None when the image has too little bone edge or tissue to measure.
    Medians ignore the few deposits that touch bone.
    """
    _check_same_shape(image_hu, bone_mask)
    if bone_mask.sum() < 50:
        return None
    distance_mm = ndi.distance_transform_edt(~bone_mask, sampling=spacing)
    body = image_hu > -200.0  # not air: skin surfaces near bone would drag the medians down
    ring = body & (distance_mm >= 1.5) & (distance_mm <= 3.0) & (image_hu < threshold_hu)
    if ring.sum() < 50:
        return None
    tissue_hu = float(np.median(image_hu[ring]))
    edges = np.arange(0.0, HALO_REACH_MM + 1e-9, 0.1)
    near = body & (distance_mm > 0) & (distance_mm <= HALO_REACH_MM)
    d_near, v_near = distance_mm[near], image_hu[near]
    bins = np.digitize(d_near, edges[1:-1], right=True)
    excess = np.full(len(edges) - 1, np.nan)
    for i in range(len(excess)):
        values = v_near[bins == i]
        if values.size >= 20:
            excess[i] = float(np.median(values)) - tissue_hu
    return edges[1:], excess, distance_mm


def estimate_bone_margin_mm(
    image_hu: np.ndarray,
    bone_mask: np.ndarray,
    spacing_mm,
    *,
    threshold_hu: float = DEFAULT_THRESHOLD_HU,
    tolerance_hu: float = HALO_TOLERANCE_HU,
) -> float:
    """How far the bone's blur halo reaches, in mm, measured on the image itself.

    The median HU of the pixels at each distance from the bone (0.1 mm bins) is compared with
    the soft tissue 1.5-3 mm away; the margin is the largest distance at which the median
    still stands more than ``tolerance_hu`` above it, clipped to 0.25-1.5 mm. Falls back to
    0.5 mm when the image has too little bone edge to measure.
    """
    image_hu = np.asarray(image_hu, dtype=np.float32)
    profile = _halo_profile(image_hu, np.asarray(bone_mask, bool), _spacing_pair(spacing_mm), threshold_hu)
    if profile is None:
        return FALLBACK_MARGIN_MM
    upper_mm, excess, _ = profile
    lo, hi = MARGIN_LIMITS_MM
    above = upper_mm[np.nan_to_num(excess, nan=0.0) > tolerance_hu]
    margin = float(above.max()) if above.size else lo
    return float(min(max(margin, lo), hi))


def remove_bone_halo(image_hu: np.ndarray, bone_mask: np.ndarray, spacing_mm, *, threshold_hu: float = DEFAULT_THRESHOLD_HU) -> np.ndarray:
    """The image with the bone's average blur halo subtracted outside the bone (HU).

    Blurring is linear, so next to bone a deposit's pixels are its own blurred profile plus
    the bone's halo; subtracting the halo measured on this image (median excess over soft
    tissue at each distance from the bone) leaves the deposit as if the bone were not there,
    and the halo itself at the level of soft tissue, so that growth neither leaks along the
    bone surface nor over-measures deposits that touch it.
    """
    image_hu = np.asarray(image_hu, dtype=np.float32)
    profile = _halo_profile(image_hu, np.asarray(bone_mask, bool), _spacing_pair(spacing_mm), threshold_hu)
    if profile is None:
        return image_hu.copy()
    upper_mm, excess, distance_mm = profile
    ok = np.isfinite(excess)
    if not ok.any():
        return image_hu.copy()
    centres = upper_mm[ok] - 0.05
    halo = np.interp(distance_mm, centres, np.clip(excess[ok], 0.0, None), right=0.0)
    halo[(distance_mm <= 0) | (distance_mm > HALO_REACH_MM)] = 0.0
    return (image_hu - halo).astype(np.float32)


def resolve_margin_mm(margin_mm, image_hu, bone_mask, spacing_mm, threshold_hu=DEFAULT_THRESHOLD_HU) -> float:
    """``margin_mm`` itself, or the measured halo width when it is None."""
    threshold_hu = checked_threshold_hu(threshold_hu)
    if margin_mm is None:
        return estimate_bone_margin_mm(image_hu, bone_mask, spacing_mm, threshold_hu=threshold_hu)
    return checked_margin_mm(margin_mm)


def subtract_bone(
    image_hu: np.ndarray,
    bone_mask: np.ndarray,
    spacing_mm,
    *,
    threshold_hu: float = DEFAULT_THRESHOLD_HU,
    margin_mm: float | None = DEFAULT_MARGIN_MM,
) -> np.ndarray:
    """Calcification candidates: pixels at or above ``threshold_hu`` outside the dilated bone.

    Parameters
    ----------
    image_hu : ndarray, (rows, cols)
        The image in Hounsfield units.
    bone_mask : ndarray of bool, (rows, cols)
        Bone (phalanx) pixels, from :func:`segment_phalanges` or painted by the user.
    spacing_mm : float or (float, float)
        Pixel spacing in mm, (row, col).
    threshold_hu : float
        Calcium threshold in HU (default 200 HU; see ``DEFAULT_THRESHOLD_HU``).
    margin_mm : float or None
        The bone mask is dilated by this many mm before subtraction; None (default) measures
        the bone's blur halo on the image (:func:`estimate_bone_margin_mm`).

    Returns
    -------
    ndarray of bool
        The residual (candidate deposit) mask.
    """
    refuse_layer(image_hu, "the image")
    refuse_layer(bone_mask, "the bone mask")
    image_hu = np.asarray(image_hu)
    bone_mask = np.asarray(bone_mask, bool)
    _check_same_shape(image_hu, bone_mask)
    margin_mm = resolve_margin_mm(margin_mm, image_hu, bone_mask, spacing_mm, threshold_hu)  # checks the threshold
    return (image_hu >= threshold_hu) & ~dilate_mm(bone_mask, margin_mm, spacing_mm)
