"""Bone subtraction: bright pixels outside the bone dilated by a margin in mm."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_calcinosis._errors import CalcinosisError
from napari_calcinosis.phantom import make_phantom
from napari_calcinosis.subtract import (
    DEFAULT_MARGIN_MM,
    DEFAULT_THRESHOLD_HU,
    dilate_mm,
    estimate_bone_margin_mm,
    median3_at_least,
    subtract_bone,
)


def _brute_force_dilation(mask, margin_mm, spacing_mm):
    """Pixels whose centre lies within margin_mm (Euclidean, in mm) of a mask pixel's centre."""
    rr, cc = np.nonzero(mask)
    r, c = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    out = np.zeros(mask.shape, bool)
    for r0, c0 in zip(rr, cc):
        d2 = ((r - r0) * spacing_mm[0]) ** 2 + ((c - c0) * spacing_mm[1]) ** 2
        out |= d2 <= margin_mm**2 + 1e-12
    return out


# ---- dilate_mm --------------------------------------------------------------------------


def test_dilation_of_a_point_is_an_ellipse_in_pixels():
    """Anisotropic spacing: 1 mm is 5 rows at 0.2 mm but only 2 columns at 0.5 mm."""
    mask = np.zeros((21, 21), bool)
    mask[10, 10] = True
    out = dilate_mm(mask, 1.0, (0.2, 0.5))
    np.testing.assert_array_equal(out, _brute_force_dilation(mask, 1.0, (0.2, 0.5)))
    rows = np.flatnonzero(out[:, 10])
    cols = np.flatnonzero(out[10, :])
    assert (rows.min(), rows.max()) == (5, 15)  # +-5 rows = +-1.0 mm
    assert (cols.min(), cols.max()) == (8, 12)  # +-2 cols = +-1.0 mm
    # Swapping the spacing swaps the axes.
    swapped = dilate_mm(mask, 1.0, (0.5, 0.2))
    np.testing.assert_array_equal(swapped, out.T)


def test_dilation_of_a_shape_matches_brute_force():
    rng = np.random.default_rng(1)
    mask = np.zeros((30, 40), bool)
    mask[8:14, 10:25] = True
    mask[20, 5] = True
    mask[rng.integers(0, 30, 5), rng.integers(0, 40, 5)] = True
    for spacing in [(0.25, 0.25), (0.3, 0.17), (0.6, 0.2)]:
        for margin in (0.1, 0.5, 1.3):
            out = dilate_mm(mask, margin, spacing)
            assert out.dtype == bool
            np.testing.assert_array_equal(out, _brute_force_dilation(mask, margin, spacing))
            assert (out | mask).sum() == out.sum()  # contains the mask


def test_dilation_by_zero_or_of_nothing():
    mask = np.zeros((10, 12), bool)
    mask[3:5, 4:7] = True
    out = dilate_mm(mask, 0.0, (0.3, 0.3))
    np.testing.assert_array_equal(out, mask)
    out[0, 0] = True
    assert not mask[0, 0]  # a copy, not the input
    assert not dilate_mm(np.zeros((5, 5), bool), 2.0, 0.3).any()
    # A scalar spacing means square pixels.
    np.testing.assert_array_equal(dilate_mm(mask, 0.6, 0.3), dilate_mm(mask, 0.6, (0.3, 0.3)))


@pytest.mark.parametrize("spacing", [0.0, -0.2, (0.3, 0.0), (np.nan, 0.3)])
def test_dilation_rejects_bad_spacing(spacing):
    mask = np.zeros((5, 5), bool)
    mask[2, 2] = True
    with pytest.raises(CalcinosisError, match="spacing"):
        dilate_mm(mask, 0.5, spacing)


# ---- subtract_bone on synthetic images ---------------------------------------------------


def _synthetic(shape=(40, 50), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-100.0, 600.0, shape).astype(np.float32)
    bone = np.zeros(shape, bool)
    bone[10:25, 15:30] = True
    return image, bone


@pytest.mark.parametrize("spacing, margin", [((0.2, 0.5), 1.0), ((0.5, 0.2), 1.0), ((0.3, 0.3), 0.5)])
def test_candidates_are_bright_pixels_outside_the_dilated_bone(spacing, margin):
    image, bone = _synthetic()
    cand = subtract_bone(image, bone, spacing, threshold_hu=200.0, margin_mm=margin)
    expected = (image >= 200.0) & ~_brute_force_dilation(bone, margin, spacing)
    assert cand.dtype == bool and cand.shape == image.shape
    np.testing.assert_array_equal(cand, expected)
    # Distance in mm from every candidate to the nearest bone pixel exceeds the margin...
    br, bc = np.nonzero(bone)
    for r, c in zip(*np.nonzero(cand)):
        d = np.sqrt(((br - r) * spacing[0]) ** 2 + ((bc - c) * spacing[1]) ** 2).min()
        assert d > margin
    # ...and bright pixels just beyond the margin are kept: the removed band is not wider.
    bright_outside = (image >= 200.0) & ~bone
    kept_ratio = cand.sum() / bright_outside.sum()
    assert 0.3 < kept_ratio < 1.0


def test_margin_is_measured_in_mm_along_each_axis():
    """A bone column and a bone row, spacing (0.2, 0.5) mm, margin 1 mm: 5 rows but 2 columns
    are removed next to the bone."""
    image = np.full((30, 30), 1000.0, np.float32)
    bone = np.zeros((30, 30), bool)
    bone[:, 0] = True  # left edge: distance grows along columns (0.5 mm each)
    cand = subtract_bone(image, bone, (0.2, 0.5), margin_mm=1.0)
    assert not cand[:, :3].any() and cand[:, 3:].all()
    bone = np.zeros((30, 30), bool)
    bone[0, :] = True  # top edge: distance grows along rows (0.2 mm each)
    cand = subtract_bone(image, bone, (0.2, 0.5), margin_mm=1.0)
    assert not cand[:6].any() and cand[6:].all()


def test_threshold_is_inclusive_and_configurable():
    image = np.array([[199.0, 200.0, 201.0, 129.0, 130.0]], np.float32)
    bone = np.zeros(image.shape, bool)
    assert DEFAULT_THRESHOLD_HU == 200.0
    np.testing.assert_array_equal(subtract_bone(image, bone, 0.3)[0], [False, True, True, False, False])
    np.testing.assert_array_equal(
        subtract_bone(image, bone, 0.3, threshold_hu=130.0)[0], [True, True, True, False, True]
    )


def _blurred_bone(sigma_mm, spacing=0.2, cortex_hu=1500.0, tissue_hu=40.0, noise_hu=15.0):
    """A bar of bone in soft tissue, blurred by a Gaussian PSF of sigma_mm, with its true mask."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    bone = np.zeros((160, 160), bool)
    bone[40:120, 60:100] = True
    image = np.where(bone, cortex_hu, tissue_hu).astype(np.float32)
    image = ndi.gaussian_filter(image, sigma_mm / spacing) + rng.normal(0, noise_hu, image.shape).astype(np.float32)
    return image, bone, spacing


def test_default_margin_is_measured_from_the_bone_halo():
    assert DEFAULT_MARGIN_MM is None
    sharp = estimate_bone_margin_mm(*_blurred_bone(0.12))
    soft = estimate_bone_margin_mm(*_blurred_bone(0.45))
    assert 0.25 <= sharp < soft <= 1.5
    # The default uses the measured margin: beyond it no halo pixel is a candidate, and the
    # measured margin is not wider than it needs to be (a fixed 0.5 mm would leave halo behind
    # on the soft kernel).
    for sigma in (0.12, 0.45):
        image, bone, spacing = _blurred_bone(sigma, noise_hu=0.0)
        cand = subtract_bone(image, bone, spacing)
        assert not cand.any(), sigma
    image, bone, spacing = _blurred_bone(0.45, noise_hu=0.0)
    assert subtract_bone(image, bone, spacing, margin_mm=0.5).any()


def test_margin_falls_back_without_bone():
    image = np.full((50, 50), 40.0, np.float32)
    assert estimate_bone_margin_mm(image, np.zeros(image.shape, bool), 0.25) == 0.5


def test_zero_margin_is_plain_subtraction():
    image, bone = _synthetic()
    cand = subtract_bone(image, bone, (0.2, 0.5), margin_mm=0.0)
    np.testing.assert_array_equal(cand, (image >= DEFAULT_THRESHOLD_HU) & ~bone)


def test_empty_bone_mask_keeps_every_bright_pixel():
    image, _ = _synthetic()
    cand = subtract_bone(image, np.zeros(image.shape, bool), 0.25, margin_mm=1.0)
    np.testing.assert_array_equal(cand, image >= DEFAULT_THRESHOLD_HU)


def test_bone_mask_given_as_integers():
    image, bone = _synthetic()
    np.testing.assert_array_equal(
        subtract_bone(image, bone.astype(np.uint8), 0.25), subtract_bone(image, bone, 0.25)
    )


def test_shape_mismatch_is_a_user_error():
    image = np.zeros((30, 40), np.float32)
    bone = np.zeros((30, 41), bool)
    with pytest.raises(CalcinosisError) as info:
        subtract_bone(image, bone, 0.25)
    message = str(info.value)
    assert "does not match" in message
    assert "41" in message and "40" in message  # names both sizes


def test_negative_margin_is_a_user_error():
    image, bone = _synthetic()
    with pytest.raises(CalcinosisError, match="margin"):
        subtract_bone(image, bone, 0.25, margin_mm=-0.1)


# ---- subtract_bone on phantoms with the true bone mask -----------------------------------

PHANTOM_SEEDS = (0, 8, 15, 17, 21, 22)


@pytest.fixture(scope="module")
def phantoms():
    return [make_phantom(s, max_size_px=400) for s in PHANTOM_SEEDS]


def test_no_candidate_on_or_near_the_true_bone(phantoms):
    for p in phantoms:
        cand = subtract_bone(p.image_hu, p.bone_mask, p.spacing_mm)
        assert not (cand & p.bone_mask).any()
        margin = estimate_bone_margin_mm(p.image_hu, p.bone_mask, p.spacing_mm)
        assert not (cand & dilate_mm(p.bone_mask, margin, p.spacing_mm)).any()
        # The bone is above the threshold: it really was subtracted, not absent.
        assert (p.image_hu[p.bone_mask] >= DEFAULT_THRESHOLD_HU).any()


def test_deposits_away_from_bone_are_candidates(phantoms):
    """Every deposit of 1 mm^2 or more that does not touch bone, and is dense enough for a
    200 HU threshold to apply (peak >= 400 HU before blur), is mostly among the candidates."""
    checked = 0
    for p in phantoms:
        cand = subtract_bone(p.image_hu, p.bone_mask, p.spacing_mm)
        for i, (area, site, peak) in enumerate(zip(p.lesion_areas_mm2, p.lesion_sites, p.lesion_peak_hu)):
            if area < 1.0 or site == "touching_bone" or peak < 400.0:
                continue
            region = p.lesion_labels == i + 1
            fraction = cand[region].mean()
            assert fraction > 0.5, f"phantom {p.seed} lesion {i + 1}: {fraction:.0%} of pixels are candidates"
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize("index", range(len(PHANTOM_SEEDS)), ids=[f"phantom{s}" for s in PHANTOM_SEEDS])
def test_candidates_are_mostly_deposits(phantoms, index):
    """With the true bone mask, most candidate pixels lie on or within 1 mm of a true deposit:
    the margin must remove the cortex's blurred halo, which is not calcinosis."""
    p = phantoms[index]
    cand = subtract_bone(p.image_hu, p.bone_mask, p.spacing_mm)
    near_lesion = dilate_mm(p.lesion_labels > 0, 1.0, p.spacing_mm)
    n_cand, n_near = int(cand.sum()), int((cand & near_lesion).sum())
    assert n_cand > 0
    assert n_near >= 0.6 * n_cand, (
        f"phantom {p.seed}: only {n_near} of {n_cand} candidate pixels are near a deposit "
        f"(PSF sigma {p.params['psf_sigma_mm']:.2f} mm)"
    )


def test_median3_at_least_is_the_thresholded_3x3_median():
    """The counting shortcut the air and calcium rules use gives the 3x3 median's answer, at the
    borders too, on noise and on a CT-like image with air, tissue, bone and padding."""
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 100.0, (57, 43)).astype(np.float32)
    ct = np.full((80, 90), -1000.0, np.float32)
    ct[10:70, 5:85] = 40.0
    ct[30:50, 20:70] = 900.0
    ct[:, :4] = -3024.0
    ct += rng.normal(0.0, 30.0, ct.shape).astype(np.float32)
    for image, thresholds in ((noise, (-50.0, 0.0, 120.0)), (ct, (-1150.0, -250.0, 200.0))):
        for t in thresholds:
            np.testing.assert_array_equal(median3_at_least(image, t), ndi.median_filter(image, size=3) >= t)


@pytest.mark.parametrize("kwargs, message", [
    (dict(threshold_hu=float("nan")), r"the calcium threshold \(HU\) must be a number, got nan"),
    (dict(threshold_hu="200"), r"the calcium threshold \(HU\) must be a number, got '200'"),
    (dict(threshold_hu=-5000.0), r"the calcium threshold \(HU\) must be from -1000 to 4000, got -5000"),
    (dict(margin_mm=float("inf")), r"the bone margin \(mm\) must be a number, got inf"),
    (dict(margin_mm=-0.1), r"the bone margin \(mm\) must be from 0 to 10, got -0.1"),
])
def test_nonsense_settings_are_refused_not_run(kwargs, message):
    # NaN used to subtract nothing, and infinity everything, without a word.
    from napari_calcinosis import CalcinosisError, subtract_bone

    with pytest.raises(CalcinosisError, match=message):
        subtract_bone(np.zeros((64, 64), np.float32), np.zeros((64, 64), bool), 0.25, **kwargs)


def test_a_mask_of_another_dimension_says_so():
    from napari_calcinosis import CalcinosisError, subtract_bone

    with pytest.raises(CalcinosisError, match=r"the bone mask must be one 2-D slice, got an array of shape \(2, 64, 64\)"):
        subtract_bone(np.zeros((64, 64), np.float32), np.zeros((2, 64, 64), bool), 0.25)
