"""quantify() end to end on phantoms, always with the true bone mask (no U-Net here)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_calcinosis import CalcinosisImage
from napari_calcinosis._errors import CalcinosisError
from napari_calcinosis.grow import grow_lesions
from napari_calcinosis.measure import LESION_COLUMNS
from napari_calcinosis.phantom import make_phantom
from napari_calcinosis.pipeline import QuantifyResult, quantify
from napari_calcinosis.subtract import subtract_bone

REQUIRED_COLUMNS = [
    "image", "lesion_id", "seed_row", "seed_col", "area_mm2", "area_px", "long_axis_mm",
    "short_axis_mm", "ellipse_area_mm2", "mean_value", "status",
]


@pytest.fixture(scope="module")
def phantom():
    # Three deposits of 3.8-13.4 mm^2 away from bone; 0.345 mm pixels.
    return make_phantom(15, max_size_px=400)


@pytest.fixture(scope="module")
def result(phantom) -> QuantifyResult:
    return quantify(phantom.to_image(), phantom.seeds, bone_mask=phantom.bone_mask)


def test_table_columns(result):
    cols = list(result.table.columns)
    for c in REQUIRED_COLUMNS:
        assert c in cols, c
    for c in LESION_COLUMNS + ["peak_hu", "background_hu", "level_hu", "freed_from_bone_mm2"]:
        assert c in cols, c
    assert cols[0] == "image"


def test_one_row_per_seed_in_order(phantom, result):
    t = result.table
    assert len(t) == phantom.n_lesions
    np.testing.assert_array_equal(t[["seed_row", "seed_col"]].to_numpy(), phantom.seeds)
    assert list(t["lesion_id"]) == list(range(1, phantom.n_lesions + 1))
    assert list(t["status"]) == ["ok"] * phantom.n_lesions
    assert (t["image"] == "phantom-15").all()


def test_intermediates(phantom, result):
    assert result.bone_probability is None  # the mask was given, nothing was segmented
    np.testing.assert_array_equal(result.bone_mask, phantom.bone_mask)
    np.testing.assert_array_equal(
        result.candidates, subtract_bone(phantom.image_hu, phantom.bone_mask, phantom.spacing_mm)
    )
    grown = grow_lesions(phantom.image_hu, phantom.bone_mask, phantom.spacing_mm, phantom.seeds)
    np.testing.assert_array_equal(result.lesion_labels, grown.lesion_labels)
    assert result.image.spacing_mm == phantom.spacing_mm


def test_areas_match_truth(phantom, result):
    t = result.table
    px_area = phantom.spacing_mm[0] * phantom.spacing_mm[1]
    np.testing.assert_allclose(t["area_mm2"], t["area_px"] * px_area)
    for i, true in enumerate(phantom.lesion_areas_mm2):
        assert t["area_px"][i] == (result.lesion_labels == i + 1).sum()
        assert abs(t["area_mm2"][i] - true) <= 0.10 * true, f"lesion {i + 1}: {t['area_mm2'][i]:.2f} vs {true:.2f}"
    assert result.total_area_mm2 == pytest.approx(t["area_mm2"].sum())
    assert abs(result.total_area_mm2 - phantom.lesion_areas_mm2.sum()) <= 0.05 * phantom.lesion_areas_mm2.sum()


def test_axes_and_values(phantom, result):
    t = result.table
    assert (t["long_axis_mm"] >= t["short_axis_mm"]).all()
    assert (t["short_axis_mm"] > 0).all()
    np.testing.assert_allclose(t["ellipse_area_mm2"], np.pi / 4 * t["long_axis_mm"] * t["short_axis_mm"])
    # The ellipse of the axes is the same order of size as the true area.
    assert ((t["ellipse_area_mm2"] > 0.5 * t["area_mm2"]) & (t["ellipse_area_mm2"] < 2.0 * t["area_mm2"])).all()
    for i in range(phantom.n_lesions):
        region = result.lesion_labels == i + 1
        assert t["mean_value"][i] == pytest.approx(phantom.image_hu[region].mean(), rel=1e-5)
        assert t["mean_value"][i] > t["level_hu"][i]
    assert (t["value_unit"] == "HU").all()


def test_total_area_counts_each_lesion_once(phantom, result):
    """Two seeds on one deposit (and a failed seed) must not change the total."""
    seeds = [tuple(phantom.seeds[0]), tuple(phantom.seeds[1]), tuple(phantom.seeds[0]),
             (-4, 7), tuple(phantom.seeds[2])]
    res = quantify(phantom.to_image(), seeds, bone_mask=phantom.bone_mask)
    t = res.table
    assert len(t) == 5
    assert list(t["status"]) == ["ok", "ok", "duplicate_seed", "outside_image", "ok"]
    assert list(t["lesion_id"]) == [1, 2, 1, 0, 3]
    # The duplicate row carries the lesion's measurements; the failed row carries none.
    assert t["area_mm2"][2] == t["area_mm2"][0]
    assert t["area_mm2"][3] == 0 and t["area_px"][3] == 0
    assert res.total_area_mm2 == pytest.approx(result.total_area_mm2)
    assert res.total_area_mm2 == pytest.approx(t["area_mm2"][[0, 1, 4]].sum())
    assert res.total_area_mm2 < t["area_mm2"].sum()


def test_seed_order_is_kept(phantom):
    seeds = phantom.seeds[::-1]
    res = quantify(phantom.to_image(), seeds, bone_mask=phantom.bone_mask)
    t = res.table
    np.testing.assert_array_equal(t[["seed_row", "seed_col"]].to_numpy(), seeds)
    n = phantom.n_lesions
    for k in range(n):
        true = phantom.lesion_areas_mm2[n - 1 - k]
        assert abs(t["area_mm2"][k] - true) <= 0.10 * true


def test_automatic_mode_with_given_bone(phantom, result):
    res = quantify(phantom.to_image(), None, bone_mask=phantom.bone_mask)
    t = res.table
    assert len(t) == phantom.n_lesions
    assert (t["status"] == "ok").all()
    assert res.total_area_mm2 == pytest.approx(result.total_area_mm2, rel=0.05)


def test_deposit_in_the_bone_mask_is_measured_and_the_mask_reported_corrected(phantom, result):
    """A seed on a free-lying deposit the bone mask swallowed: quantify measures it, and its
    result's bone mask and candidates are the corrected ones."""
    from scipy import ndimage as ndi

    piece = ndi.binary_dilation(phantom.lesion_labels == 2)
    res = quantify(phantom.to_image(), phantom.seeds, bone_mask=phantom.bone_mask | piece)
    np.testing.assert_array_equal(res.bone_mask, phantom.bone_mask)
    np.testing.assert_array_equal(res.candidates, result.candidates)
    np.testing.assert_array_equal(res.lesion_labels, result.lesion_labels)
    t = res.table
    assert list(t["status"]) == ["ok"] * phantom.n_lesions
    spacing = phantom.spacing_mm
    np.testing.assert_allclose(t["freed_from_bone_mm2"], [0.0, piece.sum() * spacing[0] * spacing[1], 0.0])


def test_bone_mask_of_wrong_shape_is_refused(phantom):
    from napari_calcinosis._errors import CalcinosisError

    with pytest.raises(CalcinosisError):
        quantify(phantom.to_image(), phantom.seeds, bone_mask=phantom.bone_mask[:-1])


@pytest.mark.xfail(
    strict=True,
    reason="known limit of the bundled model (trained on varied phantoms): a dense deposit (1,260 HU) in the PIP "
    "joint against the base of the middle phalanx is half taken into the bone mask (2.0 of 3.6 mm^2). The model "
    "trained on basic phantoms measured it, but segmented unseen generators' bone worse (docs/validation.md)",
)
def test_dense_deposit_in_a_joint_against_the_bone_is_measured_whole():
    import pandas as pd

    from napari_calcinosis._sample_data import DATA_DIR
    from napari_calcinosis.io import read_image

    truth = pd.read_csv(DATA_DIR / "sample_finger_truth.csv")
    seeds = truth[["seed_row", "seed_col"]].to_numpy(float)
    table = quantify(read_image(DATA_DIR / "sample_finger.dcm"), seeds, device="cpu").table
    joint = 3  # lesion 4: touching bone, in the PIP joint
    assert table["area_mm2"][joint] == pytest.approx(truth["area_mm2"][joint], rel=0.25)


def test_quantify_lets_a_seed_take_only_mask_the_network_was_unsure_of():
    """A deposit the mask covers where the network gave 0.5-0.8 is measured whole; where the
    mask covers it against the network (painted by the user: under 0.5), it stays bone."""
    from scipy import ndimage as ndi

    img = np.full((64, 60), 40.0, np.float32)
    bone = np.zeros(img.shape, bool)
    bone[:, 35:] = True
    img[bone] = 1200.0
    img[14:30, 20:36] = 900.0
    img = ndi.gaussian_filter(img, 1.0)
    mask = bone.copy()
    mask[14:30, 26:35] = True
    image = CalcinosisImage(img, (0.25, 0.25))
    probability = np.where(bone, 0.99, 0.0).astype(np.float32)
    probability[mask & ~bone] = 0.7
    unsure = quantify(image, [(22, 23)], bone_mask=mask, bone_probability=probability)
    plain = quantify(image, [(22, 23)], bone_mask=mask)
    assert unsure.table["area_mm2"][0] > 0.9 * 16 * 15 * 0.0625 > 2 * plain.table["area_mm2"][0]
    assert not unsure.bone_mask[14:30, 20:35].any() and unsure.bone_mask[bone].all()
    probability[mask & ~bone] = 0.3  # the user painted it
    painted = quantify(image, [(22, 23)], bone_mask=mask, bone_probability=probability)
    assert painted.table["area_mm2"][0] == plain.table["area_mm2"][0]
    np.testing.assert_array_equal(painted.bone_mask, mask)
    with pytest.raises(CalcinosisError, match="same shape"):
        quantify(image, [(22, 23)], bone_mask=mask, bone_probability=probability[:10])


def test_deposits_clipped_by_an_export_window_are_flagged():
    # An 8-bit export at W1500/L450 clipped everything above 1200 HU: a deposit reaching it is
    # denser than its pixels say. The same pixels from a DICOM (nothing clipped) say nothing.
    pixels = np.full((200, 200), 40.0, np.float32)
    pixels[:, :10] = -300.0  # the export's bottom: air
    bone = np.zeros(pixels.shape, bool)
    bone[170:190, 40:160] = True
    pixels[bone] = 1200.0
    pixels[40:52, 40:52] = 1200.0  # a dense deposit, clipped
    pixels[100:112, 100:112] = 800.0  # a fainter one, whole
    seeds = [(46, 46), (106, 106)]
    export = CalcinosisImage(pixels, (0.25, 0.25), saturated_above_hu=1200.0)
    result = quantify(export, seeds, bone_mask=bone)
    assert result.table["status"].tolist() == ["ok", "ok"]
    assert result.table["hu_clipped"].tolist() == [True, False]
    dicom = quantify(CalcinosisImage(pixels, (0.25, 0.25)), seeds, bone_mask=bone)
    assert dicom.table["hu_clipped"].tolist() == [False, False]
    assert dicom.table["area_mm2"].tolist() == result.table["area_mm2"].tolist()


def test_doubtful_results_carry_their_warnings():
    # Measured all the same, but the result says why its numbers are doubtful: no bone found,
    # and a "deposit" larger than any calcinosis deposit (a flood of something else).
    from napari_calcinosis import CalcinosisImage, quantify

    pixels = np.full((200, 200), 40.0, np.float32)
    pixels[:, :10] = -1000.0  # air beside the finger
    pixels[40:160, 40:160] = 900.0  # 30 x 30 mm of calcium-dense tissue
    image = CalcinosisImage(pixels, (0.25, 0.25))
    result = quantify(image, [(100, 100)], bone_mask=np.zeros(pixels.shape, bool))
    assert result.table["status"][0] == "ok" and result.table["area_mm2"][0] > 400
    assert any(w.startswith("no bone was found") for w in result.warnings)
    assert any("larger than any calcinosis deposit" in w for w in result.warnings)
    bone = np.zeros(pixels.shape, bool)
    bone[170:190, 40:160] = True
    pixels[170:190, 40:160] = 1200.0
    small = pixels.copy()
    small[40:160, 40:160] = 40.0
    small[95:105, 95:105] = 900.0
    clean = quantify(CalcinosisImage(small, (0.25, 0.25)), [(100, 100)], bone_mask=bone)
    assert clean.table["status"][0] == "ok" and clean.warnings == []


def test_a_pixel_size_given_with_an_image_is_used():
    from napari_calcinosis import CalcinosisImage, quantify

    pixels = np.full((128, 128), 40.0, np.float32)
    pixels[60:70, 60:70] = 800.0
    pixels[:, :5] = -1000.0
    bone = np.zeros(pixels.shape, bool)
    image = CalcinosisImage(pixels, (0.25, 0.25))
    at_image = quantify(image, [(65, 65)], bone_mask=bone).table["area_mm2"][0]
    given = quantify(image, [(65, 65)], bone_mask=bone, pixel_size_mm=0.5)
    assert np.isclose(given.table["area_mm2"][0], 4 * at_image)
    assert given.image.spacing_mm == (0.5, 0.5) and "user" in given.image.spacing_origin


def test_automatic_mode_has_no_duplicate_or_empty_rows():
    # Two candidates growing into one lesion made two rows of the same area: summed, the burden
    # was counted twice (pydicom's CT_small: 68.3 mm² of rows, 55.1 of lesions).
    from pydicom.data import get_testdata_file

    from napari_calcinosis import quantify

    result = quantify(get_testdata_file("CT_small.dcm"), device="cpu")
    table = result.table
    assert not table["status"].isin(["duplicate_seed", "no_deposit"]).any()
    ok = table[table["status"] == "ok"]
    assert len(ok) >= 3 and ok["lesion_id"].is_unique
    assert np.isclose(ok["area_mm2"].sum(), result.total_area_mm2)


def test_wrong_kinds_of_input_get_a_clear_word(phantom):
    # a notebook user's slips: a probability for a mask, a number for a model
    image = CalcinosisImage(phantom.image_hu, phantom.spacing_mm)
    whole = quantify(image, phantom.seeds, bone_mask=np.ones(phantom.image_hu.shape, np.float32) * 0.3)
    assert any("the bone mask covers 100% of the image" in w for w in whole.warnings)
    assert not any("bone mask covers" in w for w in quantify(image, phantom.seeds, bone_mask=phantom.bone_mask).warnings)
    with pytest.raises(CalcinosisError, match="a model is a .safetensors file's path, a loaded model"):
        quantify(image, phantom.seeds, model=123)
    with pytest.raises(CalcinosisError, match="bone_probability goes with the bone_mask it came from"):
        quantify(image, phantom.seeds, bone_probability=np.zeros(phantom.image_hu.shape, np.float32))
    with pytest.raises(CalcinosisError, match=r"shape \(1, \d+, \d+\): it is one slice with leading axes of one"):
        CalcinosisImage(phantom.image_hu[None], phantom.spacing_mm)


def test_a_napari_layer_given_for_its_pixels_is_refused_with_what_to_pass(phantom):
    # viewer.layers["bone"] for viewer.layers["bone"].data, the console's likeliest slip: NumPy made
    # a layer an array of shape (), and the error came as a TypeError or "got an array of shape ()"
    from napari.layers import Image, Labels, Points

    from napari_calcinosis import measure_lesions, segment_phalanges

    image = CalcinosisImage(phantom.image_hu, phantom.spacing_mm)
    finger = Image(phantom.image_hu, scale=phantom.spacing_mm, name="finger")
    bone = Labels(phantom.bone_mask.astype(np.uint8), scale=phantom.spacing_mm, name="bone")
    # napari's New points button makes a layer of scale 1: its points are in mm
    seeds = Points(np.asarray(phantom.seeds, float) * phantom.spacing_mm, name="seeds")
    pixels = r"got the napari layer '{}' itself, not its pixels: pass viewer.layers\['{}'\].data$"
    with pytest.raises(CalcinosisError, match="pixels_hu: " + pixels.format("finger", "finger")):
        CalcinosisImage(finger, phantom.spacing_mm)
    with pytest.raises(CalcinosisError, match="the bone mask: " + pixels.format("bone", "bone")):
        subtract_bone(phantom.image_hu, bone, phantom.spacing_mm)
    with pytest.raises(CalcinosisError, match="the bone mask: " + pixels.format("bone", "bone")):
        grow_lesions(phantom.image_hu, bone, phantom.spacing_mm, phantom.seeds)
    with pytest.raises(CalcinosisError, match="bone_mask: " + pixels.format("bone", "bone")):
        quantify(image, phantom.seeds, bone_mask=bone)
    with pytest.raises(CalcinosisError, match="the lesion labels: " + pixels.format("bone", "bone")):
        measure_lesions(bone, phantom.spacing_mm)
    # an image layer where an image is meant: the way that keeps its pixel spacing
    for call in (lambda: quantify(finger, phantom.seeds), lambda: segment_phalanges(finger)):
        with pytest.raises(CalcinosisError, match=r"pass CalcinosisImage\(pixels_hu=viewer.layers\['finger'\].data, "
                                                  r"spacing_mm=tuple\(viewer.layers\['finger'\].scale\[-2:\]\)\)"):
            call()
    # clicked points hold world coordinates: the message gives the way to the image's pixels
    with pytest.raises(CalcinosisError, match=r"seeds: got the napari Points layer 'seeds'.*world_to_data"):
        quantify(image, seeds, bone_mask=phantom.bone_mask)
    # ...and no seed advice for a Points layer given as a mask, nor .data for a Labels layer as seeds
    with pytest.raises(CalcinosisError, match=pixels.format("seeds", "seeds")):
        quantify(image, phantom.seeds, bone_mask=seeds)
    with pytest.raises(CalcinosisError, match=r"seeds: got the napari layer 'bone': seeds are \(row, col\) pairs"):
        quantify(image, bone, bone_mask=phantom.bone_mask)
    # the recipe it gives measures what the seeds measure
    layer_seeds = [finger.world_to_data(seeds.data_to_world(p))[-2:] for p in seeds.data]
    np.testing.assert_allclose(layer_seeds, phantom.seeds)

def test_a_deposit_grown_into_a_calcified_artery_is_warned_of_by_its_seed(phantom, result):
    # varied phantom 11: a 20 mm² deposit at a joint touches a calcified artery and was grown along
    # it to 56 mm² (status ok, no word); its true bone mask, so the network plays no part
    ph = make_phantom(11, varied=True)
    res = quantify(ph.to_image(), ph.seeds, bone_mask=ph.bone_mask)
    row = res.table.iloc[0]
    true_mm2 = float((ph.lesion_labels == ph.lesion_labels[int(row.seed_row), int(row.seed_col)]).sum()
                     * np.prod(ph.spacing_mm))
    assert row.area_mm2 > 2 * true_mm2
    note, = [w for w in res.warnings if "thin line" in w]
    assert note.startswith(f"lesion 1 (seed at row {row.seed_row:.0f}, col {row.seed_col:.0f}) runs on along a thin line")
    tail_mm2 = float(note.split("mm (")[1].split(" mm²")[0])
    assert tail_mm2 == pytest.approx(row.area_mm2 - true_mm2, rel=0.2)  # what the line added
    assert not any("thin line" in w for w in result.warnings)  # deposits with nothing running on

def test_an_export_whose_soft_tissue_reads_as_calcium_is_warned_of():
    # made through W2000/L300 (a bone window) and read as W1500/L450: the soft tissue reads 230-270
    # HU, over the calcium threshold, and deposits grew into it (1.4 mm² read 16), without a word
    from napari_calcinosis import image_from_export
    from napari_calcinosis.io import hu_to_window_unit

    ph = make_phantom(17, varied=True, max_size_px=400)
    for (level, width), warned in (((450, 1500), False), ((300, 2000), True)):
        grey = np.round(hu_to_window_unit(ph.image_hu, level, width) * 255).astype(np.uint8)
        res = quantify(image_from_export(grey, ph.spacing_mm), ph.seeds, bone_mask=ph.bone_mask)
        notes = [w for w in res.warnings if "of the finger's soft tissue (1 mm or more from the bone) reads at or above "
                                            "the calcium threshold (200 HU)" in w]
        assert bool(notes) == warned, res.warnings
    assert "was the export made through another window than W1500/L450" in notes[0]
    # where the image's own notes say better why (inverted, air not clipped, a soft-tissue
    # window), no second guess: W400/L40 was told both 'narrower window' and 'W2000/L300'
    for unit in (1 - hu_to_window_unit(ph.image_hu), hu_to_window_unit(ph.image_hu, 500, 3000),
                 hu_to_window_unit(ph.image_hu, 40, 400)):
        grey = np.round(unit * 255).astype(np.uint8)
        res = quantify(image_from_export(grey, ph.spacing_mm), ph.seeds, bone_mask=ph.bone_mask)
        assert any("looks inverted" in w or "not clipped" in w or "narrower window" in w for w in res.warnings)
        assert not any("reads at or above the calcium threshold" in w for w in res.warnings), res.warnings
    # a DICOM in HU: the same phantom, nothing said
    clean = quantify(ph.to_image(), ph.seeds, bone_mask=ph.bone_mask)
    assert not any("reads at or above the calcium threshold" in w for w in clean.warnings)


def test_flips_at_test_time_steady_a_deposit_against_the_bone_across_orientations():
    # what the user guide says of --tta: varied phantom 3's 2.1 mm² deposit touching the bone read
    # 1.91, 0, 1.10, 0.89 and 0.94 mm² as the image was flipped and turned, 0.89-0.97 with the flips
    from napari_calcinosis import load_model

    ph = make_phantom(3, varied=True)
    rows, cols = ph.image_hu.shape
    model = load_model(device="cpu")
    turns = {"as is": (lambda a: a, lambda r, c: (r, c)),
             "left-right": (lambda a: a[:, ::-1], lambda r, c: (r, cols - 1 - c)),
             "up-down": (lambda a: a[::-1], lambda r, c: (rows - 1 - r, c)),
             "turned": (np.rot90, lambda r, c: (cols - 1 - c, r)), "transposed": (np.transpose, lambda r, c: (c, r))}
    seed = tuple(int(v) for v in ph.seeds[3])  # the deposit against the bone
    spread = {}
    for tta in (False, True):
        areas = [quantify(CalcinosisImage(np.ascontiguousarray(turn(ph.image_hu)), ph.spacing_mm), [move(*seed)],
                          model=model, device="cpu", tta=tta).table["area_mm2"].iloc[0]
                 for turn, move in turns.values()]
        spread[tta] = max(areas) - min(areas)
    assert spread[False] > 1.0 and spread[True] < spread[False] / 4, spread

def test_deposits_flagged_near_resolution_are_the_ones_measured_badly():
    """On phantoms drawn at 0.2 and at 0.5 mm pixels (true bone, true seeds), the deposits
    flagged ``near_resolution`` are the ones whose areas stray: their median error is several
    times the others'."""
    errors, flagged = [], []
    for seed in range(8):
        for spacing_mm in (0.2, 0.5):
            phantom = make_phantom(seed, spacing_mm=spacing_mm, n_lesions=6)
            table = quantify(phantom.to_image(), phantom.seeds, bone_mask=phantom.bone_mask).table
            alone = (table["status"] == "ok") & ~table["lesion_id"].duplicated(keep=False)  # one deposit's truth
            truth = phantom.lesion_areas_mm2
            errors += list((np.abs(table["area_mm2"] - truth) / truth)[alone])
            flagged += list(table["near_resolution"][alone])
    errors, flagged = np.asarray(errors), np.asarray(flagged, bool)
    assert 0.1 < flagged.mean() < 0.5 and len(errors) > 50
    assert np.median(errors[~flagged]) < 0.15
    assert np.median(errors[flagged]) > 3 * np.median(errors[~flagged])
