"""Phalanx segmentation: the bundled model on unseen phantoms, and the inference plumbing."""

import json

import numpy as np
import pytest

from napari_calcinosis import CalcinosisError, dice, load_model, make_phantom, segment_phalanges
from napari_calcinosis.segment import bundled_model_path, resample, select_device


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


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(CalcinosisError, match="model file not found"):
        load_model(tmp_path / "nope.safetensors")
    (tmp_path / "m.safetensors").write_bytes(b"not a model")
    with pytest.raises(CalcinosisError, match="model card not found"):
        load_model(tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text(json.dumps({"architecture": None}))
    with pytest.raises(CalcinosisError, match="could not load model"):
        load_model(tmp_path / "m.safetensors")
