"""The synthetic finger phantom: determinism, consistency of its ground truth, and its flags.

Phantoms are rendered with ``max_size_px=400`` (and ``n_lesions=0`` where the deposits do not
matter) to keep the file fast; a few flag checks use the default 720 px budget because the
narrowing done for small budgets changes the field of view.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import perimeter

from napari_calcinosis.io import CalcinosisImage
from napari_calcinosis import CalcinosisError
from napari_calcinosis.phantom import LESION_SITES, Phantom, make_phantom

# A fixed, varied set: cut-off and whole fingers, every lesion site, 1-5 lesions, spacings
# 0.22-0.35 mm; all render in well under a second at 400 px.
TRUTH_SEEDS = (0, 3, 5, 7, 11, 19, 22)
FAST = dict(max_size_px=400)


@pytest.fixture(scope="module")
def phantoms() -> dict[int, Phantom]:
    return {s: make_phantom(s, **FAST) for s in TRUTH_SEEDS}


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _bone_components(bone_mask: np.ndarray, min_px: int = 20) -> tuple[int, int]:
    """(whole, cut): bone components of more than ``min_px`` pixels that do / do not stay
    clear of the image border. Joint gaps separate the bones, so a whole phalanx is one
    component that does not touch the border."""
    lab, n = ndi.label(bone_mask)
    on_edge = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])).tolist()) - {0}
    sizes = ndi.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    big = [i + 1 for i in range(n) if sizes[i] > min_px]
    whole = sum(1 for i in big if i not in on_edge)
    return whole, len(big) - whole


# ---- determinism ------------------------------------------------------------------------


def test_same_seed_gives_identical_phantom():
    a = make_phantom(5, **FAST)
    b = make_phantom(5, **FAST)
    np.testing.assert_array_equal(a.image_hu, b.image_hu)
    np.testing.assert_array_equal(a.bone_mask, b.bone_mask)
    np.testing.assert_array_equal(a.lesion_labels, b.lesion_labels)
    np.testing.assert_array_equal(a.lesion_areas_mm2, b.lesion_areas_mm2)
    np.testing.assert_array_equal(a.seeds, b.seeds)
    np.testing.assert_array_equal(a.lesion_peak_hu, b.lesion_peak_hu)
    assert a.lesion_sites == b.lesion_sites
    assert a.spacing_mm == b.spacing_mm
    assert a.cut_off == b.cut_off
    assert a.params == b.params
    assert a.seed == b.seed == 5


@pytest.mark.parametrize("seed", [-1, 2.5, "3", True, None])
def test_a_seed_that_is_not_a_whole_number_from_0_is_refused_by_name(seed):
    with pytest.raises(CalcinosisError, match=r"phantom's seed must be a whole number, 0 or more, got "):
        make_phantom(seed)


@pytest.mark.parametrize("setting, message", [
    ({"spacing_mm": 0}, "spacing_mm is one pixel size in mm"),
    ({"spacing_mm": (0.2, 0.3)}, "spacing_mm is one pixel size in mm"),
    ({"n_lesions": -1}, "n_lesions is a number of deposits"),
    ({"noise_hu": -1}, "noise_hu is the noise's standard deviation"),
])
def test_settings_a_phantom_cannot_have_are_refused_by_name(setting, message):
    with pytest.raises(CalcinosisError, match=message):
        make_phantom(1, **setting)


def test_different_seeds_give_different_phantoms(phantoms):
    for s, t in [(0, 3), (5, 7), (11, 22)]:
        a, b = phantoms[s], phantoms[t]
        assert a.seed == s and b.seed == t
        same_image = a.image_hu.shape == b.image_hu.shape and np.array_equal(a.image_hu, b.image_hu)
        assert not same_image
        assert a.spacing_mm != b.spacing_mm
        assert a.params["noise_hu"] != b.params["noise_hu"]


# ---- shapes, dtypes, spacing ------------------------------------------------------------


@pytest.mark.parametrize("seed", TRUTH_SEEDS)
def test_arrays_and_spacing(phantoms, seed):
    p = phantoms[seed]
    rows, cols = p.image_hu.shape
    assert p.image_hu.dtype == np.float32
    assert np.isfinite(p.image_hu).all()
    assert p.bone_mask.shape == p.lesion_labels.shape == (rows, cols)
    assert p.bone_mask.dtype == bool
    assert p.lesion_labels.dtype == np.int32
    # The field of view is narrowed so that neither side exceeds the pixel budget.
    assert rows <= 400 and cols <= 400
    assert rows >= 50 and cols >= 50
    dr, dc = p.spacing_mm
    assert dr == dc  # isotropic
    assert 0.15 <= dr <= 0.35
    n = p.n_lesions
    assert len(p.lesion_areas_mm2) == len(p.lesion_sites) == len(p.lesion_peak_hu) == n
    assert p.seeds.shape == (n, 2)


def test_spacing_range_over_many_seeds():
    # Narrowing a large view can only coarsen the spacing; it must still stay in 0.15-0.35 mm.
    spacings = [make_phantom(s, n_lesions=0, cut_off=True, **FAST).spacing_mm[0] for s in range(8)]
    assert all(0.15 <= s <= 0.35 for s in spacings), spacings
    assert len(set(spacings)) == len(spacings)  # drawn, not a constant


def test_to_image_round_trip(phantoms):
    p = phantoms[7]
    img = p.to_image()
    assert isinstance(img, CalcinosisImage)
    np.testing.assert_array_equal(img.pixels_hu, p.image_hu)
    assert img.spacing_mm == p.spacing_mm
    assert img.name == "phantom-7"
    assert p.to_image(source="x/finger.dcm").name == "finger"


# ---- ground truth -----------------------------------------------------------------------


def _check_truth_labels(p: Phantom) -> None:
    labels = p.lesion_labels
    # One label per deposit, numbered 1..n.
    assert set(np.unique(labels).tolist()) - {0} == set(range(1, p.n_lesions + 1))
    # No lesion pixel is bone (bone overlap is excluded from the deposits).
    assert not (labels > 0)[p.bone_mask].any()
    for i, (r, c) in enumerate(p.seeds):
        assert 0 <= r < labels.shape[0] and 0 <= c < labels.shape[1]
        assert labels[r, c] == i + 1, f"seed {i} at {(r, c)} is not on its lesion"
        assert not p.bone_mask[r, c]


def _check_true_areas(p: Phantom) -> None:
    """The analytic area and the rasterised label (pixels > half covered) differ only by
    partial volume at the outline: at most half a pixel width along the perimeter."""
    sp = p.spacing_mm[0]
    for i in range(p.n_lesions):
        region = p.lesion_labels == i + 1
        label_area = region.sum() * sp * sp
        perimeter_px = perimeter(region) + 4.0  # + 4: a one-pixel region has perimeter 0
        tolerance = 0.5 * perimeter_px * sp * sp
        assert abs(label_area - p.lesion_areas_mm2[i]) <= tolerance, (
            f"lesion {i + 1}: label {label_area:.3f} mm^2 vs true {p.lesion_areas_mm2[i]:.3f} mm^2"
        )


@pytest.mark.parametrize("seed", TRUTH_SEEDS)
def test_truth_labels_are_consistent(phantoms, seed):
    _check_truth_labels(phantoms[seed])


@pytest.mark.parametrize("seed", TRUTH_SEEDS)
def test_true_area_matches_label_pixel_count(phantoms, seed):
    _check_true_areas(phantoms[seed])


@pytest.mark.parametrize("seed", TRUTH_SEEDS)
def test_lesion_areas_in_range(phantoms, seed):
    p = phantoms[seed]
    areas = p.lesion_areas_mm2
    assert np.all(areas > 0)
    assert np.all(areas <= 60.0)
    # The nominal area is log-uniform in 0.4-50 mm^2; a lobulated deposit covers at least
    # its largest lobe, (0.45)^2 of nominal, and bone overlap cuts only deposits touching bone.
    away = np.array([site != "touching_bone" for site in p.lesion_sites], dtype=bool)
    assert np.all(areas[away] >= 0.2025 * 0.4 - 1e-9)


def test_lesion_areas_span_the_paper_range(phantoms):
    areas = np.concatenate([p.lesion_areas_mm2 for p in phantoms.values()])
    assert areas.min() < 1.0
    assert areas.max() > 10.0


@pytest.mark.parametrize("seed", TRUTH_SEEDS)
def test_hounsfield_ranges(phantoms, seed):
    p = phantoms[seed]
    img = p.image_hu
    air = img[img < -500]
    assert air.size > 0.05 * img.size
    assert -1030 <= np.median(air) <= -890
    bone = img[p.bone_mask]
    assert bone.size > 0
    assert bone.max() > 800
    soft = img[(img > -200) & (img < 200) & ~p.bone_mask & (p.lesion_labels == 0)]
    assert -20 <= np.median(soft) <= 120
    assert np.all((p.lesion_peak_hu >= 300) & (p.lesion_peak_hu <= 1700))
    for i in range(p.n_lesions):
        # Every deposit is brighter than the soft tissue around it.
        assert img[p.lesion_labels == i + 1].max() > np.median(soft) + 100


@pytest.mark.parametrize("seed", TRUTH_SEEDS)
def test_lesion_sites(phantoms, seed):
    p = phantoms[seed]
    assert all(site in LESION_SITES for site in p.lesion_sites)
    for i, site in enumerate(p.lesion_sites):
        region = p.lesion_labels == i + 1
        if site == "touching_bone":
            near = ndi.binary_dilation(region, iterations=2)
            assert (near & p.bone_mask).any(), f"lesion {i + 1} is 'touching_bone' but is not"
        else:
            # Other deposits keep at least 0.4 mm from bone: not even a pixel's neighbour.
            near = ndi.binary_dilation(region, structure=np.ones((3, 3), bool))
            assert not (near & p.bone_mask).any(), f"lesion {i + 1} ({site}) touches bone"


def test_lesion_sites_cover_all_kinds(phantoms):
    sites = {s for p in phantoms.values() for s in p.lesion_sites}
    assert "touching_bone" in sites
    assert len(sites) >= 3


# ---- n_lesions --------------------------------------------------------------------------


@pytest.mark.parametrize("seed, n", [(3, 1), (11, 3), (7, 5), (19, 0)])
def test_n_lesions_honoured(seed, n):
    p = make_phantom(seed, n_lesions=n, **FAST)
    assert p.n_lesions == n
    assert len(p.lesion_sites) == n and len(p.lesion_peak_hu) == n
    assert p.seeds.shape == (n, 2)
    assert set(np.unique(p.lesion_labels).tolist()) - {0} == set(range(1, n + 1))


def test_default_lesion_count_is_one_to_six(phantoms):
    counts = [p.n_lesions for p in phantoms.values()]
    assert all(1 <= c <= 6 for c in counts)
    assert len(set(counts)) > 1


# ---- cut-off fingers --------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 24])
def test_cut_off_true_cuts_a_phalanx(seed):
    """cut_off=True: the image border cuts through the proximal or middle phalanx. Then bone
    touches the border and at most two bones (middle and distal phalanx) are whole; a finger
    with its three phalanges whole is not cut off."""
    p = make_phantom(seed, n_lesions=0, cut_off=True, **FAST)
    flag, touches = p.cut_off, _touches_border(p.bone_mask)
    assert flag is True
    whole, cut = _bone_components(p.bone_mask)
    assert touches, "cut_off=True but no bone reaches the image border"
    assert cut >= 1
    assert whole <= 2, f"cut_off=True, yet {whole} bones lie wholly inside the image"


@pytest.mark.parametrize("seed, max_size_px", [(0, 720), (3, 720), (0, 400)])
def test_cut_off_false_keeps_the_phalanges_whole(seed, max_size_px):
    """cut_off=False forbids a phalanx cut by the border: the flag comes back False and the
    three phalanges are whole (only the metacarpal may run off the image)."""
    p = make_phantom(seed, n_lesions=0, cut_off=False, max_size_px=max_size_px)
    flag = p.cut_off
    assert flag is False, "cut_off=False was asked for but the phantom reports cut_off=True"
    whole, _ = _bone_components(p.bone_mask)
    assert whole >= 3


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_drawn_cut_off_flag_matches_the_image(seed):
    """With cut_off left to chance, the returned flag must describe the image."""
    p = make_phantom(seed, n_lesions=0)
    whole, _ = _bone_components(p.bone_mask)
    touches = _touches_border(p.bone_mask)
    if p.cut_off:
        assert touches, "cut_off=True but no bone reaches the image border"
        assert whole <= 2
    else:
        assert whole >= 3


# ---- the wider training distribution (varied=True) ------------------------------------------

VARIED_SEEDS = tuple(range(12))
VARIETIES = {
    "contracture", "acro-osteolysis", "erosions", "neighbour-finger", "neighbour-section", "osteopenia",
    "vessel-calcification", "support", "sharp-kernel", "streaks",
}


@pytest.fixture(scope="module")
def varied() -> dict[int, Phantom]:
    return {s: make_phantom(s, varied=True, **FAST) for s in VARIED_SEEDS}


def test_varied_phantoms_draw_every_variety(varied):
    drawn = [set(p.params["varied"]) for p in varied.values()]
    assert set().union(*drawn) == VARIETIES
    # Each is drawn by chance (at most 40 %), never on every phantom.
    for name in VARIETIES:
        assert sum(name in d for d in drawn) <= 10, name


@pytest.mark.parametrize("seed", VARIED_SEEDS)
def test_varied_truth_is_consistent(varied, seed):
    """The same exact-truth guarantees as the basic phantoms, with a neighbouring finger's
    bones, erosions and contractures in play."""
    p = varied[seed]
    _check_truth_labels(p)
    _check_true_areas(p)
    assert np.all(p.lesion_areas_mm2 <= 90.0)


@pytest.mark.parametrize("seed", VARIED_SEEDS)
def test_varied_bright_structures_are_bone_or_deposit(varied, seed):
    """Everything as dense as cortex is in the bone mask or a deposit: a neighbouring finger's
    bones are bone. Calcified arteries are the one dense thing that is neither, so phantoms
    that drew one are left out."""
    p = varied[seed]
    if "vessel-calcification" in p.params["varied"]:
        pytest.skip("has a calcified artery, dense and deliberately neither bone nor deposit")
    smooth = ndi.gaussian_filter(p.image_hu, 1.0)
    known = ndi.binary_dilation(p.bone_mask | (p.lesion_labels > 0), iterations=3)
    stray = (smooth > 900.0) & ~known
    assert stray.sum() <= 3, f"{stray.sum()} dense pixels outside bone and deposits"


def test_varied_contracture_keeps_the_finger_in_view(varied):
    """A flexed finger curls back on itself; the view still frames every phalanx."""
    flexed = [p for p in varied.values() if "contracture" in p.params["varied"] and not p.cut_off]
    assert flexed
    for p in flexed:
        whole, _ = _bone_components(p.bone_mask)
        assert whole >= 3
        assert min(p.image_hu.shape) * p.spacing_mm[0] >= 20.0
