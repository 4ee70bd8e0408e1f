"""Phalanx segmentation: the bundled model on unseen phantoms, and the inference plumbing."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from napari_calcinosis import CalcinosisError, dice, load_model, make_phantom, segment_phalanges
from napari_calcinosis.segment import (
    MIN_BONE_PIECE_HU,
    bundled_model_path,
    cut_parts_far_from_calcium,
    drop_pieces_in_air,
    drop_pieces_not_bone,
    drop_pieces_without_calcium,
    resample,
    select_device,
)
from napari_calcinosis.subtract import DEFAULT_THRESHOLD_HU


@pytest.fixture(scope="module")
def model():
    return load_model(device="cpu")


def test_bundled_model_is_small_and_carded():
    path = bundled_model_path()
    assert path.exists()
    assert path.stat().st_size <= 16 * 1024 * 1024
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["architecture"]["library"] == "segmentation-models-pytorch"
    assert card["input"]["window_width_hu"] == 1500.0 and card["input"]["window_level_hu"] == 450.0
    assert "phantom" in card["training"]["data"] and card["training"]["command"].startswith("napari-calcinosis train")
    assert card["validation"]["dice_mean"] >= 0.97
    # the model card page names the weights it describes, as rows name them (retrained: update it)
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    root = Path(__file__).parents[1]
    page = (root / "docs" / "model_card.md").read_text()
    assert f"`{digest}`" in page and f"`bundled phalanx_unet (sha256 {digest[:12]})`" in page
    for guide in (root / "README.md", root / "docs" / "user_guide.md"):  # their example of a row's model
        assert f"phalanx_unet (sha256 {digest[:12]})" in " ".join(guide.read_text().split()), guide


@pytest.mark.parametrize("seed,cut_off", [(11, False), (12, True), (13, True)])
def test_bundled_model_segments_unseen_phantoms(model, seed, cut_off):
    # Seeds 11-13 are far outside the training (1e6+) and validation (2e6+) seed blocks.
    p = make_phantom(seed, cut_off=cut_off, max_size_px=480)
    seg = segment_phalanges(p.to_image(), model, device="cpu")
    assert seg.bone_mask.shape == p.image_hu.shape
    assert seg.probability.dtype == np.float32 and 0.0 <= seg.probability.min() <= seg.probability.max() <= 1.0
    assert dice(seg.bone_mask, p.bone_mask) >= 0.95


def test_deposits_touching_bone_are_not_bone(model):
    # Deposits and bone are equally dense: the network must leave deposits that touch bone out
    # of the bone mask (checked on every touching deposit of >= 2 mm^2 in ten phantoms).
    checked = 0
    for seed in range(20, 30):
        p = make_phantom(seed, max_size_px=480)
        touching = [i + 1 for i, s in enumerate(p.lesion_sites) if s == "touching_bone" and p.lesion_areas_mm2[i] >= 2.0]
        if not touching:
            continue
        seg = segment_phalanges(p.to_image(), model, device="cpu")
        for lesion_id in touching:
            lesion = p.lesion_labels == lesion_id
            assert seg.bone_mask[lesion].mean() < 0.2, (seed, lesion_id)
            checked += 1
    assert checked >= 3


def test_mask_pieces_without_calcium_are_dropped():
    """A piece of mask over soft tissue (one noisy 400 HU pixel in it) is not bone; a piece with
    cortex is, however faint its medulla; a piece touching it at a corner is part of it."""
    image = np.full((60, 60), 40.0, np.float32)
    mask = np.zeros(image.shape, bool)
    mask[5:25, 5:25] = True  # bone: 300 HU medulla in a 900 HU cortex
    image[5:25, 5:25] = 900.0
    image[8:22, 8:22] = 300.0
    mask[25:28, 25:28] = True  # touches the bone at a corner only
    mask[35:55, 35:55] = True  # soft tissue taken for bone
    image[45, 45] = 400.0
    kept = drop_pieces_without_calcium(mask, image)
    np.testing.assert_array_equal(kept, mask & (np.arange(60)[:, None] < 30))
    assert MIN_BONE_PIECE_HU == DEFAULT_THRESHOLD_HU  # the calcium threshold of subtract_bone
    np.testing.assert_array_equal(drop_pieces_without_calcium(mask, image, min_hu=-1000.0), mask)


def test_noisy_soft_tissue_is_not_bone_however_many_noise_spikes():
    """A wide piece of noisy tissue (40 HU, noise 80 HU: over a hundred pixels above 200 HU) is
    dropped; a bone with a one-pixel cortex (19 % calcium) and a small dense bone fragment stay."""
    rng = np.random.default_rng(3)
    image = (40.0 + 80.0 * rng.standard_normal((120, 120))).astype(np.float32)
    mask = np.zeros(image.shape, bool)
    mask[60:115, 5:115] = True  # palm taken for bone
    assert (image[mask] >= 200).sum() > 100
    mask[5:25, 5:25] = True  # bone: 1-px cortex around fatty marrow
    image[5:25, 5:25] = 1000.0
    image[6:24, 6:24] = -50.0
    mask[10:13, 40:43] = True  # a 3x3 fragment of bone
    image[10:13, 40:43] = 600.0
    kept = drop_pieces_without_calcium(mask, image)
    np.testing.assert_array_equal(kept, mask & (np.arange(120)[:, None] < 50))


def test_parts_of_the_mask_far_from_calcium_are_cut_off_the_bone():
    """Soft tissue taken for bone and joined to a bone is cut along it; the fatty marrow of a
    bone 15 mm across (7.5 mm from its cortex at most) is kept, and so is a thin bone."""
    spacing = 0.25
    image = np.full((240, 200), 40.0, np.float32)
    mask = np.zeros(image.shape, bool)
    # a wide bone: 15 x 15 mm, 0.5 mm cortex, fatty marrow
    mask[10:70, 10:70] = True
    image[10:70, 10:70] = 900.0
    image[12:68, 12:68] = -60.0
    # a phalanx, 6 mm across, with 30 x 40 mm of soft tissue taken for bone joined to its side
    mask[100:124, 10:190] = True
    image[100:124, 10:190] = 900.0
    image[102:122, 12:188] = 100.0
    mask[124:240, 30:170] = True
    kept = cut_parts_far_from_calcium(mask, image, spacing)
    np.testing.assert_array_equal(kept[:124], mask[:124])  # both bones whole
    cut = mask & ~kept
    assert not cut[124:129].any()  # up to 1.25 mm below the cortex: kept
    np.testing.assert_array_equal(cut[131:], mask[131:])  # from 2 mm on: cut
    # With the piece rules after it (segment_phalanges), the band left alone goes with the bone,
    # and without the calcium rules (min_piece_hu=None) all of the mask is kept.
    np.testing.assert_array_equal(drop_pieces_not_bone(mask, image, spacing, max_air_fraction=None), kept)
    np.testing.assert_array_equal(drop_pieces_not_bone(mask, image, spacing, min_piece_hu=None), mask)


def test_a_deposit_in_soft_tissue_taken_for_bone_is_not_left_in_the_mask():
    """The cut leaves the 1.5 mm around a deposit lying in the soft tissue; with all around it cut
    away, that ring is a remnant of the tissue and goes with it. The bone joined to it stays."""
    spacing = 0.25
    yy, xx = np.mgrid[0:240, 0:200]
    for joined in (False, True):
        image = np.full((240, 200), 40.0, np.float32)
        mask = np.zeros(image.shape, bool)
        if joined:  # a phalanx 6 mm across, the soft tissue joined to its side
            mask[100:124, 10:190] = True
            image[100:124, 10:190] = 900.0
            image[102:122, 12:188] = 100.0
        mask[124:240, 30:170] = True  # 29 x 35 mm of pulp taken for bone
        deposit = (yy - 185) ** 2 + (xx - 100) ** 2 <= 4**2  # 2 mm across, 14 mm from the bone
        image[deposit] = 600.0
        kept = drop_pieces_not_bone(mask, image, spacing, max_air_fraction=None)
        assert not (kept & deposit).any(), joined
        np.testing.assert_array_equal(kept[:124], mask[:124])


def test_a_bone_with_a_one_pixel_cortex_is_not_cut_for_being_far_from_calcium():
    """A 6 x 40 mm shaft with a cortex one pixel thin (which a 3x3 median erases) and fatty
    marrow is bone, wherever other calcium in the image lies; noise specks are not calcium."""
    spacing = 0.25
    rng = np.random.default_rng(1)
    image = (40.0 + 20.0 * rng.standard_normal((200, 220))).astype(np.float32)
    mask = np.zeros(image.shape, bool)
    mask[20:44, 20:180] = True
    image[20:44, 20:180] = 900.0
    image[21:43, 21:179] = -50.0
    image[150:156, 150:156] = 700.0  # a dense spot far from it (a deposit)
    image[120, 40] = image[121, 41] = image[120, 41] = 400.0  # a noise speck of three pixels
    np.testing.assert_array_equal(drop_pieces_not_bone(mask, image, spacing, max_air_fraction=None), mask)
    # a lone dense pixel in the image's corner is not calcium (no reflected neighbours)
    corner = np.zeros(image.shape, bool)
    corner[:4, :4] = True
    image[0, 0] = 400.0
    assert not drop_pieces_without_calcium(corner, image).any()


def test_segmentation_drops_only_pieces_without_calcium_or_in_air(model):
    p = make_phantom(14, max_size_px=300)
    raw = segment_phalanges(p.to_image(), model, device="cpu", min_piece_hu=None)
    np.testing.assert_array_equal(raw.bone_mask, raw.probability > 0.5)
    seg = segment_phalanges(p.to_image(), model, device="cpu")
    np.testing.assert_array_equal(seg.bone_mask, drop_pieces_not_bone(raw.bone_mask, p.image_hu, p.spacing_mm))
    np.testing.assert_array_equal(seg.probability, raw.probability)


def test_mask_pieces_that_air_surrounds_are_dropped():
    """A metal bar lying in air beside the finger (a splint) is not bone; a bone inside the soft
    tissue is, also where the image border cuts it, and so is a bone near the skin."""
    spacing = 0.2
    image = np.full((100, 120), -1000.0, np.float32)  # air
    image[20:80, :100] = 40.0  # the finger, running off the left border
    mask = np.zeros(image.shape, bool)
    mask[35:65, 0:60] = True  # bone cut by the border, 3 mm of tissue above and below
    image[mask] = 1000.0
    mask[23:31, 70:90] = True  # a bone 0.6 mm under the skin: 14 % of its 1 mm ring is air
    image[23:31, 70:90] = 1000.0
    mask[88:94, 20:90] = True  # a splint in air, 1.6 mm off the skin
    image[88:94, 20:90] = 3000.0
    kept = drop_pieces_in_air(mask, image, spacing)
    np.testing.assert_array_equal(kept, mask & (np.arange(100)[:, None] < 80))
    # All of it kept without air around (the finger in a water bath, or the rule off), and where
    # the "air" is a scanner's padding outside its field of view (-3024 HU): no data, not air.
    np.testing.assert_array_equal(drop_pieces_in_air(mask, np.where(image < -500, 0.0, image), spacing), mask)
    np.testing.assert_array_equal(drop_pieces_in_air(mask, np.where(image < -500, -3024.0, image), spacing), mask)
    np.testing.assert_array_equal(drop_pieces_in_air(mask, image, spacing, max_air_fraction=1.0), mask)


def test_any_image_size_and_flip_tta(model):
    p = make_phantom(14, max_size_px=300)
    image = p.to_image()
    crop = image.pixels_hu[3:-2, 5:]  # sizes that are not multiples of 16
    plain = segment_phalanges(crop, model, spacing_mm=image.spacing_mm, device="cpu")
    tta = segment_phalanges(crop, model, spacing_mm=image.spacing_mm, device="cpu", tta=True)
    truth = p.bone_mask[3:-2, 5:]
    assert plain.bone_mask.shape == crop.shape == tta.bone_mask.shape
    assert dice(tta.bone_mask, truth) >= 0.95
    assert dice(plain.bone_mask, tta.bone_mask) > 0.97


def test_resample_round_trip_keeps_pixel_centres():
    a = np.zeros((60, 40), np.float32)
    a[20:30, 10:25] = 1.0
    up = resample(a, (120, 80), order=1)
    back = resample(up, (60, 40), order=1)
    assert np.abs(back - a).max() < 0.3
    # centre of mass stays put (no half-pixel shift)
    com = lambda x: np.array(np.nonzero(x > 0.5)).mean(axis=1)  # noqa: E731
    assert np.allclose(com(up) / 2.0 - 0.25, com(a), atol=0.05)
    assert resample(a, a.shape) is a


def test_device_choice():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(CalcinosisError, match="unknown device"):
        select_device("tpu")


def test_a_mistyped_cuda_device_is_a_clear_error_on_a_gpu_machine(monkeypatch):
    # torch's "Invalid device string" RuntimeError was a traceback where CUDA is available
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for typo in ("cuda0", "cuda:abc", "cudaX", "cuda:"):
        with pytest.raises(CalcinosisError, match=rf"unknown device '{typo}': use auto, cpu, cuda, cuda:N"):
            select_device(typo)
    with pytest.raises(CalcinosisError, match=r"device 'cuda:1' was asked for but this machine has 1 CUDA GPU\(s\)"):
        select_device("cuda:1")
    assert select_device("cuda:0") == torch.device("cuda:0") and select_device("CUDA") == torch.device("cuda")


def _model_copy(folder, name="m", weights=None, card=None):
    """A copy of the bundled model in ``folder``, with its weights or card bytes replaced if given."""
    src = bundled_model_path()
    path = folder / f"{name}.safetensors"
    path.write_bytes(src.read_bytes() if weights is None else weights)
    card_text = src.with_suffix(".json").read_text() if card is None else card
    if card_text is not False:
        path.with_suffix(".json").write_text(card_text)
    return path


def _foreign_weights():
    """Weights of another network: an smp Unet with a ResNet-18 encoder."""
    import segmentation_models_pytorch as smp
    from safetensors.torch import save

    net = smp.Unet("resnet18", encoder_depth=3, decoder_channels=[32, 16, 8], encoder_weights=None, in_channels=1, classes=1)
    return save({k: v.contiguous() for k, v in net.state_dict().items()})


BUNDLED_CARD = json.loads(bundled_model_path().with_suffix(".json").read_text())
BAD_MODEL_FILES = {
    # name: (weights bytes or a function of the bundled weights, card text, message pattern)
    "truncated": (lambda w: w[: len(w) // 2], None, r"m\.safetensors is truncated .*download it again, or train one"),
    "cut in the header": (lambda w: w[:100], None, r"is truncated"),
    "random bytes": (lambda w: bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), None,
                     r"m\.safetensors is not a safetensors file"),
    "empty": (lambda w: b"", None, r"m\.safetensors is empty"),
    "another architecture": (lambda w: _foreign_weights(), None,
                             r"does not hold the network its card describes .*not a phalanx model made by napari-calcinosis"),
    "no card": (None, False, r"model card not found beside m\.safetensors: expected m\.json"),
    "corrupt card": (None, '{"architecture": {"class": "Unet",', r"model card .*m\.json is unreadable or not JSON"),
    "card not an object": (None, "[1, 2]", r"m\.json is not a napari-calcinosis model card"),
    "card of another kind of network": (None, json.dumps({**BUNDLED_CARD, "architecture": {"class": "FPN"}}),
                                        r"describes a FPN network; napari-calcinosis runs only segmentation-models-pytorch Unets"),
    "card with an unknown encoder": (None, json.dumps({**BUNDLED_CARD, "architecture": {**BUNDLED_CARD["architecture"],
                                                                                        "encoder_name": "nosuchnet"}}),
                                     r"encoder 'nosuchnet'.*cannot build"),
    "card for RGB input": (None, json.dumps({**BUNDLED_CARD, "architecture": {**BUNDLED_CARD["architecture"], "in_channels": 3}}),
                           r"3 input channel\(s\).*the phalanx model takes one"),
    # a hand-edited card's input: an OverflowError per image, or empty bone masks without a word
    **{f"card with input {key} {value!r}": (None, json.dumps({**BUNDLED_CARD, "input": {**BUNDLED_CARD["input"], key: value}}),
                                            rf"m\.json: its input's {key} {re.escape(repr(value))} is not {what}")
       for key, value, what in (("working_spacing_mm", 0, "a pixel size in mm"), ("working_spacing_mm", -0.25, "a pixel"),
                                ("working_spacing_mm", 25, "a pixel"), ("working_spacing_mm", "0.25", "a pixel"),
                                ("window_width_hu", 0, "a width above 0 HU"), ("window_level_hu", None, "a number of HU"),
                                ("pad_multiple", 0, "a whole multiple of 16"), ("pad_multiple", 8, "a whole multiple"),
                                ("pad_mode", "bogus", "one of reflect"))},
    "card whose input is a list": (None, json.dumps({**BUNDLED_CARD, "input": [1, 2]}),
                                   r"its 'input' is \[1, 2\], not a table of the window"),
}


@pytest.mark.parametrize("case", list(BAD_MODEL_FILES))
def test_bad_model_file_is_a_clear_one_line_error(tmp_path, case):
    weights, card, pattern = BAD_MODEL_FILES[case]
    w = None if weights is None else weights(bundled_model_path().read_bytes())
    path = _model_copy(tmp_path, weights=w, card=card)
    with pytest.raises(CalcinosisError, match=pattern) as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_missing_model_file_checkpoint_or_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CalcinosisError, match="model file not found"):
        load_model(tmp_path / "nope.safetensors")
    (tmp_path / "m.checkpoint.pt").write_bytes(b"torch pickle")
    with pytest.raises(CalcinosisError, match="is a training checkpoint, not a model: give the .safetensors file"):
        load_model(tmp_path / "m.checkpoint.pt")
    (tmp_path / "d.safetensors").mkdir()
    with pytest.raises(CalcinosisError, match="is a folder, not a model file"):
        load_model(tmp_path / "d.safetensors")
    for folder in (".", "..", tmp_path):  # "." raised a ValueError from pathlib
        with pytest.raises(CalcinosisError, match="is a folder, not a model file"):
            load_model(folder)


def test_bundled_names_the_bundled_model_for_the_cli_and_the_api(tmp_path, monkeypatch):
    from napari_calcinosis.segment import bundled_model_path

    monkeypatch.chdir(tmp_path)
    assert load_model("bundled", device="cpu").path == bundled_model_path()
    (tmp_path / "bundled").write_bytes(b"")  # a file of that name is the file
    with pytest.raises(CalcinosisError, match="bundled"):
        load_model("bundled", device="cpu")


def test_results_name_a_model_by_its_file_and_its_contents(tmp_path):
    import hashlib

    import torch

    from napari_calcinosis import save_model
    from napari_calcinosis.segment import bundled_model_path, model_label, new_model

    def sha(path):  # what `sha256sum` prints, computed here
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    bundled = load_model(device="cpu")
    assert model_label(bundled) == f"bundled phalanx_unet (sha256 {sha(bundled_model_path())[:12]})"
    out = tmp_path / "mine.safetensors"
    save_model(bundled, out)
    mine = load_model(out)
    first = model_label(mine)
    assert first == f"{out.resolve()} (sha256 {sha(out)[:12]})" and model_label(bundled) == first
    with torch.no_grad():  # retrained into the same file: another model, though the same path
        next(mine.network.parameters()).add_(0.01)
    save_model(mine, out)
    second = model_label(load_model(out))
    assert second.startswith(str(out.resolve())) and second != first and model_label(mine) == second
    # a network never saved is not taken for the bundled one
    assert model_label(new_model()) == "a network in memory (not saved to a file)"


def test_save_model_round_trip_leaves_no_temporary_file(tmp_path):
    from napari_calcinosis import save_model

    model = load_model(device="cpu")  # save_model updates the card: not the shared fixture
    out = tmp_path / "copy.safetensors"
    save_model(model, out, extra_card={"note": "copy"})
    save_model(model, out, extra_card={"note": "again"})  # replaces in place
    assert sorted(f.name for f in tmp_path.iterdir()) == ["copy.json", "copy.safetensors"]
    again = load_model(out)
    assert again.card["note"] == "again" and again.card["architecture"] == BUNDLED_CARD["architecture"]


def test_a_field_of_view_no_finger_has_is_refused_before_segmenting():
    # 300 px of 2 mm: a pixel size in the wrong unit; at 0.25 mm it would be a 2400 px square
    with pytest.raises(CalcinosisError, match=r"spans 600 x 600 mm .* check the pixel size"):
        segment_phalanges(np.zeros((300, 300), np.float32), spacing_mm=2.0, device="cpu")


def test_weights_carry_their_card_so_a_save_cut_in_between_stays_consistent(tmp_path):
    from napari_calcinosis import save_model

    model = load_model(device="cpu")
    out = tmp_path / "m.safetensors"
    save_model(model, out, extra_card={"validation": {"dice_mean": 0.5}})
    old_card = out.with_suffix(".json").read_text()
    save_model(model, out, extra_card={"validation": {"dice_mean": 0.9}})
    # killed after the weights, before the .json: the old .json is still there
    out.with_suffix(".json").write_text(old_card)
    assert load_model(out).card["validation"]["dice_mean"] == 0.9
    out.with_suffix(".json").unlink()  # and the .json is not needed
    assert load_model(out).card["validation"]["dice_mean"] == 0.9


def test_marrow_holes_are_filled_and_a_ringed_deposit_is_not():
    """A mask with a hole in a bone's fatty marrow (a few trabeculae) and a hole around a dense
    deposit the mask rings: the marrow becomes bone, the deposit stays out."""
    from napari_calcinosis.segment import fill_marrow_holes

    image = np.full((80, 80), 40.0, np.float32)
    mask = np.zeros(image.shape, bool)
    mask[10:70, 10:30] = True  # a bone ...
    image[10:70, 10:30] = 1200.0
    image[14:66, 14:26] = -60.0  # ... with fatty marrow,
    image[30:32, 14:26] = 400.0  # one trabecula across it
    mask[14:66, 14:26] = False  # which the network left out
    mask[20:40, 45:65] = True  # a ring of mask around a deposit
    image[26:34, 51:59] = 900.0
    mask[25:35, 50:60] = False
    filled = fill_marrow_holes(mask, image, 0.25)
    assert filled[14:66, 14:26].all()
    assert not filled[25:35, 50:60].any() and filled[20:25, 45:65].all()
    np.testing.assert_array_equal(filled & ~mask, np.pad(np.ones((52, 12), bool), ((14, 14), (14, 54))))
    np.testing.assert_array_equal(drop_pieces_not_bone(mask, image, 0.25, None, None, fill_marrow=False), mask)
    np.testing.assert_array_equal(drop_pieces_not_bone(mask, image, 0.25, None, None), filled)


def test_a_deposit_in_a_hole_of_soft_tissue_stays_out_of_the_mask_and_is_measured():
    """A ring of mask around 28 mm² of soft tissue holding a 2.3 mm² deposit (an 11 % calcium
    hole): the tissue is filled, the deposit and a pixel around it are not, so a seed on it and
    automatic mode both measure it as they would without the ring."""
    from scipy import ndimage as ndi

    from napari_calcinosis.grow import grow_lesions
    from napari_calcinosis.segment import fill_marrow_holes

    image = np.full((90, 90), 40.0)
    mask = np.zeros(image.shape, bool)
    mask[15:75, 15:75] = True
    image[mask] = 1200.0
    mask[24:66, 24:66] = False
    image[24:66, 24:66] = 40.0
    rr, cc = np.mgrid[:90, :90]
    deposit = (rr - 45) ** 2 + (cc - 45) ** 2 <= 3.5**2  # 2.3 mm² at 0.25 mm
    image[deposit] = 700.0
    image = ndi.gaussian_filter(image, 0.8).astype(np.float32)
    filled = fill_marrow_holes(mask, image, 0.25)
    assert not (filled & deposit).any() and filled[26:34, 26:34].all()
    seeded = grow_lesions(image, filled, 0.25, [(45, 45)])
    assert seeded.seeds["status"][0] == "ok"
    assert abs((seeded.lesion_labels == 1).sum() - deposit.sum()) <= 0.2 * deposit.sum()
    auto = grow_lesions(image, filled, 0.25, None)
    assert auto.lesion_labels[45, 45] > 0


def test_filling_does_not_put_back_what_the_calcium_cut_took():
    """A mask ring whose middle the network had filled, reaching far from calcium: the cut takes
    the middle out, and the filling leaves it out (it was never the network's hole)."""
    image = np.full((200, 200), 40.0, np.float32)
    mask = np.zeros(image.shape, bool)
    mask[20:180, 20:180] = True  # 40 x 40 mm at 0.25 mm, calcium only round its edge
    image[20:180, 20:180] = 40.0
    image[20:24, 20:180] = image[176:180, 20:180] = 1200.0
    image[20:180, 20:24] = image[20:180, 176:180] = 1200.0
    cut = drop_pieces_not_bone(mask, image, 0.25, max_air_fraction=None, fill_marrow=False)
    assert not cut[100, 100]  # the middle was cut
    np.testing.assert_array_equal(drop_pieces_not_bone(mask, image, 0.25, max_air_fraction=None), cut)


def test_triton_is_let_into_a_qt_process_only_when_nvidias_opengl_draws():
    # The libraries as /proc/self/maps names them: napari drawn under xvfb (Mesa's llvmpipe),
    # on an NVIDIA display driver, both, and before anything has drawn.
    from napari_calcinosis.segment import _gl_is_nvidias

    line = "7f0000000000-7f0000001000 r-xp 00000000 08:01 1234 {}"
    mesa = [line.format("/usr/lib/x86_64-linux-gnu/libGLX_mesa.so.0.0.0"),
            line.format("/usr/lib/x86_64-linux-gnu/dri/swrast_dri.so"),
            line.format("/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1")]
    nvidia = [line.format("/usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.535.104.05"),
              line.format("/usr/lib/x86_64-linux-gnu/libnvidia-glcore.so.535.104.05")]
    nothing = line.format("/work/venv/lib/python3.11/site-packages/triton/_C/libtriton.so")
    assert _gl_is_nvidias("\n".join(nvidia))
    assert not _gl_is_nvidias("\n".join(mesa))
    for one in mesa:
        assert not _gl_is_nvidias("\n".join([*nvidia, one]))
    assert not _gl_is_nvidias(nothing)


_TRITON_AFTER_NAPARI = """
import numpy as np
import napari
from napari_calcinosis._cuda_batchnorm import _triton

viewer = napari.Viewer(show=False)
viewer.add_image(np.random.default_rng(0).random((32, 32)))
viewer.screenshot()  # Mesa's LLVM is loaded now: importing triton would crash the process
print("hidden" if _triton() is None else "imported", flush=True)
viewer.add_image(np.random.default_rng(1).random((32, 32)))
viewer.screenshot()
print("drawn", flush=True)
"""


@pytest.mark.skipif(not __import__("os").environ.get("DISPLAY"), reason="needs an X display (the tests run under xvfb-run)")
def test_triton_stays_out_of_napari_drawing_with_mesa():
    # In a fresh process, as a napari session under xvfb: once napari has drawn with Mesa's
    # software OpenGL, asking for triton (as the fused batch norm does) finds it hidden, and the
    # process goes on drawing.
    import importlib.metadata
    import subprocess
    import sys

    try:  # asked of its metadata, not imported: this process has napari's Qt (and may have hidden it)
        importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("triton is not installed")
    done = subprocess.run([sys.executable, "-c", _TRITON_AFTER_NAPARI], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["hidden", "drawn"]


@pytest.mark.gpu
def test_warming_up_the_gpu_starts_cudnn_and_leaves_nothing_behind():
    # What the Train widget does when it opens: CUDA, cuBLAS and cuDNN started; cuDNN's
    # switches as they were and no memory kept.
    import torch

    from napari_calcinosis.segment import start_cudnn, warm_up

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    flags = (torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark)
    assert warm_up("cuda").startswith("cuda")
    held = torch.cuda.memory_allocated()
    ran = []
    conv2d, batch_norm = torch.nn.functional.conv2d, torch.nn.functional.batch_norm
    with pytest.MonkeyPatch.context() as mp:  # what it ran: on CUDA, channels-last, each precision
        mp.setattr(torch.nn.functional, "conv2d", lambda x, *a, **k: ran.append(
            ("conv", x.device.type, x.dtype, x.is_contiguous(memory_format=torch.channels_last))) or conv2d(x, *a, **k))
        mp.setattr(torch.nn.functional, "batch_norm", lambda x, *a, **k: ran.append(
            ("norm", x.device.type, x.dtype)) or batch_norm(x, *a, **k))
        start_cudnn("cuda")
    from napari_calcinosis.segment import cuda_bf16

    dtypes = [torch.float16, torch.bfloat16] if cuda_bf16(torch.device("cuda")) else [torch.float32]
    assert ran == [r for d in dtypes for r in (("conv", "cuda", d, True), ("norm", "cuda", d))]
    assert torch.cuda.memory_allocated() == held
    assert (torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark) == flags
    start_cudnn("cpu")  # nothing to start


def test_dice_refuses_masks_of_different_shapes():
    # a row and a column would broadcast to a 4 x 4 overlap and give a Dice of 4
    with pytest.raises(CalcinosisError, match=r"different shapes \(\(1, 4\) and \(4, 1\)\): Dice compares masks"):
        dice(np.ones((1, 4), bool), np.ones((4, 1), bool))
    assert dice(np.eye(3, dtype=bool), np.eye(3, dtype=bool)) == 1.0
def test_a_damaged_model_file_says_so_before_asking_for_its_card(tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ")
    with pytest.raises(CalcinosisError, match="truncated|not a safetensors file"):
        load_model(cut)
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": "x"}}).encode()
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(len(header).to_bytes(8, "little") + header + b"\x00" * 4)
    with pytest.raises(CalcinosisError, match="damaged header"):
        load_model(odd)


def test_model_files_are_named_alike_everywhere(tmp_path):
    # "model.v1" and "model.v2" are two models; the CLI used to write both to model.safetensors.
    from napari_calcinosis.segment import model_file, new_model, save_model

    assert model_file("a/model.v1") == Path("a/model.v1.safetensors")
    assert model_file("model.pt") == Path("model.safetensors") and model_file("m.safetensors") == Path("m.safetensors")
    assert model_file("finger") == Path("finger.safetensors")
    written = save_model(new_model(), tmp_path / "model.v2")
    assert written.name == "model.v2.safetensors" and (tmp_path / "model.v2.json").is_file()
    assert load_model(tmp_path / "model.v2").path == written


def test_a_card_or_checkpoint_given_for_its_model_loads_the_model(tmp_path):
    from napari_calcinosis.segment import new_model, save_model

    written = save_model(new_model(), tmp_path / "x")
    assert load_model(tmp_path / "x.json").path == written
    for offsets in ("[0, Infinity]", '{"a": 1}'):
        bad = tmp_path / "bad.safetensors"
        header = ('{"w": {"dtype": "F32", "shape": [1], "data_offsets": ' + offsets + "}}").encode()
        bad.write_bytes(len(header).to_bytes(8, "little") + header + b"\x00" * 4)
        with pytest.raises(CalcinosisError, match="damaged header"):
            load_model(bad)


def test_nan_pixels_and_a_threshold_that_is_no_probability_are_refused():
    p = make_phantom(3, max_size_px=160)
    holes = p.image_hu.copy()
    holes[5, 5] = np.nan
    with pytest.raises(CalcinosisError, match="NaN or infinite pixels"):
        segment_phalanges(holes, spacing_mm=p.spacing_mm, device="cpu")
    for threshold in (1.5, float("nan"), 0):
        with pytest.raises(CalcinosisError, match="threshold is a probability between 0 and 1"):
            segment_phalanges(p.image_hu, spacing_mm=p.spacing_mm, device="cpu", threshold=threshold)


def test_a_spacing_given_to_segment_phalanges_is_checked_and_used():
    # NaN or three values raised NumPy's errors; given with a CalcinosisImage it was ignored
    from dataclasses import replace

    from napari_calcinosis._sample_data import DATA_DIR
    from napari_calcinosis.io import read_image

    image = read_image(DATA_DIR / "sample_finger.dcm")
    for bad, message in ((float("nan"), "is not a plausible pixel size"), ((0.2, 0.2, 0.2), "got 3 values"),
                         (50, "at most 5 mm")):
        with pytest.raises(CalcinosisError, match=rf"spacing_mm.*{message}"):
            segment_phalanges(image.pixels_hu, spacing_mm=bad, device="cpu")
    wrong = replace(image, spacing_mm=(0.5, 0.5))  # a header's spacing twice the real one
    right = segment_phalanges(wrong, spacing_mm=image.spacing_mm, device="cpu").bone_mask
    np.testing.assert_array_equal(right, segment_phalanges(image, device="cpu").bone_mask)
