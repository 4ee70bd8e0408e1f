"""Bone subtraction: bright (calcium-dense) pixels that are not bone are candidate deposits.

Deposits and bone are both calcium hydroxyapatite and equally bright, so a threshold alone
cannot separate them (Chandrasekaran et al. 2021); the segmented phalanges are removed first.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ._errors import CalcinosisError

__all__ = ["DEFAULT_THRESHOLD_HU", "DEFAULT_MARGIN_MM", "subtract_bone", "dilate_mm"]

# Finger soft tissue, skin and flexor tendon lie at 20-110 HU and the nail plate up to ~200 HU on
# bone-kernel CT; 200 HU keeps all of them (plus three standard deviations of typical 20-35 HU
# noise on tendon) out of the candidates, while calcinosis deposits of measurable size are
# hydroxyapatite at several hundred HU and above. The coronary-calcium convention of 130 HU
# (Agatston) is set for 3 mm heart slices and would admit the nail and tendons here. Seeded
# growth does not use this threshold: it adapts to each deposit's own contrast (grow.py).
DEFAULT_THRESHOLD_HU = 200.0

# The cortex is the densest thing in the image; blurred by the scanner's point-spread function
# (FWHM ~0.5-0.9 mm for bone kernels) it leaves a bright halo just outside the bone outline
# that must not count as calcinosis. 0.5 mm covers that halo and the U-Net's typical boundary
# error of about one pixel; the part of a deposit touching bone that falls in the margin is
# recovered by seeded growth.
DEFAULT_MARGIN_MM = 0.5


def _spacing_pair(spacing_mm) -> tuple[float, float]:
    spacing = np.broadcast_to(np.asarray(spacing_mm, float), (2,))
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise CalcinosisError(f"pixel spacing must be positive, got {spacing_mm!r} mm")
    return float(spacing[0]), float(spacing[1])


def dilate_mm(mask: np.ndarray, margin_mm: float, spacing_mm) -> np.ndarray:
    """Grow a binary mask by ``margin_mm`` (Euclidean, in physical units, anisotropy respected)."""
    mask = np.asarray(mask, bool)
    if margin_mm <= 0 or not mask.any():
        return mask.copy()
    distance_mm = ndi.distance_transform_edt(~mask, sampling=_spacing_pair(spacing_mm))
    return distance_mm <= margin_mm


def subtract_bone(
    image_hu: np.ndarray,
    bone_mask: np.ndarray,
    spacing_mm,
    *,
    threshold_hu: float = DEFAULT_THRESHOLD_HU,
    margin_mm: float = DEFAULT_MARGIN_MM,
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
    margin_mm : float
        The bone mask is dilated by this many mm before subtraction (default 0.5 mm).

    Returns
    -------
    ndarray of bool
        The residual (candidate deposit) mask.
    """
    image_hu = np.asarray(image_hu)
    bone_mask = np.asarray(bone_mask, bool)
    if image_hu.shape != bone_mask.shape:
        raise CalcinosisError(
            f"the bone mask ({bone_mask.shape[1]}x{bone_mask.shape[0]} px) does not match the image "
            f"({image_hu.shape[1]}x{image_hu.shape[0]} px): segment this image again"
        )
    if margin_mm < 0:
        raise CalcinosisError(f"the bone margin must be 0 mm or more, got {margin_mm} mm")
    return (image_hu >= threshold_hu) & ~dilate_mm(bone_mask, margin_mm, spacing_mm)
