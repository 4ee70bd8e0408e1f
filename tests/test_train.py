"""Training on CPU: a few steps, progress, cancel, checkpoint and resume."""

import contextlib
from pathlib import Path
import json
import warnings

import numpy as np
import pytest

from napari_calcinosis import CalcinosisError, load_model, make_phantom, segment_phalanges, train_segmenter
from napari_calcinosis.train import TrainingSample, _fingerprint, augment, folder_samples
from napari_calcinosis.segment import DEFAULT_INPUT


@pytest.fixture(scope="module")
def pairs():
    out = []
    for seed in (101, 102, 103):
        p = make_phantom(seed, max_size_px=240)
        out.append((p.image_hu, p.bone_mask, p.spacing_mm))
    return out


def test_train_few_steps_then_resume(tmp_path, pairs):
    events = []
    out = tmp_path / "m.safetensors"
    r1 = train_segmenter(out, samples=pairs, epochs=1, steps_per_epoch=2, batch_size=2, crop_px=64, device="cpu",
                         progress=events.append)
    assert not r1.cancelled and r1.epochs_done == 1
    train_steps = [e for e in events if e.phase == "train"]
    assert [e.step for e in train_steps] == [1, 2]
    assert all(np.isfinite(e.loss) and e.eta_s >= 0 and e.total_steps == 2 for e in train_steps)
    assert any(e.phase == "validate" and 0.0 <= e.val_dice <= 1.0 for e in events)
    assert events[-1].phase == "done"
    assert out.exists() and out.with_suffix(".json").exists()
    ckpt = tmp_path / "m.checkpoint.pt"
    assert ckpt.exists()
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["n_train"] == 2 and card["validation"]["n_images"] == 1

    events.clear()
    r2 = train_segmenter(out, samples=pairs, epochs=2, steps_per_epoch=2, batch_size=2, crop_px=64, device="cpu",
                         resume=True, progress=events.append)
    assert r2.epochs_done == 2 and len(r2.history) == 2
    assert r2.history[0] == r1.history[0]  # the first epoch comes from the checkpoint, not retrained
    assert [e.step for e in events if e.phase == "train"] == [3, 4]
    model = load_model(out)
    seg = segment_phalanges(pairs[0][0], model, spacing_mm=pairs[0][2], device="cpu")
    assert seg.bone_mask.shape == pairs[0][0].shape


def test_cancel_stops_at_next_step_and_keeps_best(tmp_path, pairs):
    calls = {"n": 0}

    def should_cancel():
        calls["n"] += 1
        return calls["n"] > 1  # let one step run, then cancel

    out = tmp_path / "c.safetensors"
    events = []
    r = train_segmenter(out, samples=pairs, epochs=5, steps_per_epoch=10, batch_size=2, crop_px=64, device="cpu",
                        should_cancel=should_cancel, progress=events.append)
    assert r.cancelled
    assert [e.step for e in events if e.phase == "train"] == [1]
    assert events[-1].phase == "cancelled"
    assert out.exists()  # the best (only) validated weights are kept
    assert (tmp_path / "c.checkpoint.pt").exists()


def test_cancel_then_resume_continues_exactly_where_it_stopped(tmp_path, pairs):
    kw = dict(samples=pairs, epochs=2, steps_per_epoch=3, batch_size=2, crop_px=64, device="cpu")
    whole = train_segmenter(tmp_path / "whole.safetensors", **kw)

    calls = {"n": 0}

    def cancel_after_four_steps():
        calls["n"] += 1
        return calls["n"] > 4  # in the middle of the second epoch

    out = tmp_path / "split.safetensors"
    first = train_segmenter(out, **kw, should_cancel=cancel_after_four_steps)
    assert first.cancelled and first.epochs_done == 1 and len(first.history) == 1
    assert first.best_epoch >= 1 and out.exists()  # Cancel keeps the best model, validated on the steps done
    import torch

    trained_before = torch.load(out.with_suffix(".checkpoint.pt"), weights_only=True)["elapsed_s"]
    assert trained_before >= first.history[-1]["elapsed_s"] > 0
    events = []
    second = train_segmenter(out, **kw, resume=True, progress=events.append)
    assert [e.step for e in events if e.phase == "train"] == [5, 6]  # the rest of epoch 2, no step twice
    assert not second.cancelled and second.epochs_done == 2
    # elapsed_s counts the training time of both calls, not only the second's
    assert second.history[-1]["elapsed_s"] > trained_before
    # Same data, same weights, same optimiser state: the same run as one without a stop.
    for a, b in zip(second.history, whole.history, strict=True):
        assert a["epoch"] == b["epoch"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["val_dice"] == pytest.approx(b["val_dice"], abs=1e-4)


def test_float16_training_with_gradient_scaling_resumes_exactly(tmp_path, pairs, monkeypatch):
    # CUDA's float16 path (autocast + gradient scaler), run on the CPU. The scaler grows its
    # scale every step here, so it overflows and skips steps: a resumed run that did not carry
    # the scaler's state would scale and skip differently from the run without a stop.
    import torch

    import napari_calcinosis.train as train_module

    monkeypatch.setattr(train_module, "_training_dtype", lambda dev: torch.float16)
    monkeypatch.setattr(train_module, "_grad_scaler",
                        lambda dev, dtype: torch.amp.GradScaler("cpu", init_scale=2.0**14, growth_interval=1))
    kw = dict(samples=pairs, epochs=2, steps_per_epoch=4, batch_size=2, crop_px=64, device="cpu")
    whole = train_segmenter(tmp_path / "whole.safetensors", **kw)
    assert json.loads((tmp_path / "whole.json").read_text())["training"]["precision"].startswith("float16 autocast")
    scale_whole = torch.load(tmp_path / "whole.checkpoint.pt", weights_only=True)["grad_scaler"]["scale"]
    assert scale_whole < 2.0**14 * 2**8  # grown every step but halved on overflow: steps were skipped
    calls = {"n": 0}

    def cancel_after_five_steps():
        calls["n"] += 1
        return calls["n"] > 5

    out = tmp_path / "split.safetensors"
    assert train_segmenter(out, **kw, should_cancel=cancel_after_five_steps).cancelled
    second = train_segmenter(out, **kw, resume=True)
    assert torch.load(tmp_path / "split.checkpoint.pt", weights_only=True)["grad_scaler"]["scale"] == scale_whole
    for a, b in zip(second.history, whole.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_a_loss_that_is_not_finite_stops_training_with_a_clear_error(tmp_path, pairs, monkeypatch):
    # As a float16 overflow or a diverging run would: the loss turns NaN at step 3, after the
    # first epoch's validation saved a model.
    import napari_calcinosis.train as train_module

    real_step, calls = train_module._training_step, {"n": 0}

    def step_then_nan(*args):
        loss = real_step(*args)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(train_module, "_training_step", step_then_nan)
    out = tmp_path / "nan.safetensors"
    with pytest.raises(CalcinosisError, match=r"training stopped at step 3: the loss is nan \(.*\); the best model so far "
                       r"\(validation Dice \d\.\d{3}\) is kept in .*nan.safetensors\. Train afresh with a lower learning rate"):
        train_segmenter(out, samples=pairs, epochs=3, steps_per_epoch=2, batch_size=2, crop_px=64, device="cpu")
    assert load_model(out).network is not None


def test_checkpoint_within_an_epoch(tmp_path, pairs):
    import torch

    out = tmp_path / "m.safetensors"
    seen = []

    def look(p):
        if p.phase == "train" and p.step == 3:  # the last step of the epoch: the file is from step 2
            seen.append(torch.load(tmp_path / "m.checkpoint.pt", weights_only=True))

    train_segmenter(out, samples=pairs, epochs=1, steps_per_epoch=3, batch_size=2, crop_px=64, device="cpu",
                    checkpoint_every_s=0, progress=look)
    ckpt = seen[0]
    assert ckpt["epoch"] == 0 and ckpt["step"] == 2 and len(ckpt["epoch_losses"]) == 2
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.checkpoint.pt", "m.json", "m.safetensors"]


def test_resume_with_other_settings_or_a_damaged_checkpoint_is_a_clear_error(tmp_path, pairs):
    out = tmp_path / "m.safetensors"
    kw = dict(samples=pairs, steps_per_epoch=2, crop_px=64, device="cpu")
    train_segmenter(out, epochs=1, batch_size=2, **kw)
    with pytest.raises(CalcinosisError, match=r"other settings \(the batch size \(--batch-size\): 2 there, 3 now\); resume with the same"):
        train_segmenter(out, epochs=2, batch_size=3, resume=True, **kw)
    with pytest.raises(CalcinosisError, match="nothing to resume: the checkpoint has already done 1 of 1 epochs"):
        train_segmenter(out, epochs=1, batch_size=2, resume=True, **kw)
    ckpt = tmp_path / "m.checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CalcinosisError, match="checkpoint .*m.checkpoint.pt is unreadable .*run without --resume"):
        train_segmenter(out, epochs=2, batch_size=2, resume=True, **kw)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, pairs):
    with pytest.raises(CalcinosisError, match="no checkpoint"):
        train_segmenter(tmp_path / "x.safetensors", samples=pairs, epochs=1, resume=True, device="cpu")


def test_no_data_is_a_clear_error(tmp_path):
    with pytest.raises(CalcinosisError, match="no training data"):
        train_segmenter(tmp_path / "x.safetensors", device="cpu")


def test_augment_keeps_mask_on_bone():
    p = make_phantom(104, max_size_px=240)
    sample = TrainingSample(p.image_hu, p.bone_mask, p.spacing_mm)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = augment(sample, rng, 96, DEFAULT_INPUT)
        assert x.shape == y.shape == (96, 96) and -1.0 <= x.min() and x.max() <= 1.0
        if y.sum() > 50:
            # bone is bright: the mean input under the mask is well above the mean elsewhere
            assert x[y > 0].mean() > x[y == 0].mean() + 0.3


def test_folder_pairs(tmp_path):
    import imageio.v3 as iio

    from napari_calcinosis import write_dicom

    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    p = make_phantom(105, max_size_px=200)
    write_dicom(tmp_path / "img" / "f1.dcm", p.image_hu, p.spacing_mm)
    iio.imwrite(tmp_path / "msk" / "f1_bone.png", (p.bone_mask * 255).astype(np.uint8))
    samples = folder_samples(tmp_path / "img", tmp_path / "msk")
    assert len(samples) == 1 and np.array_equal(samples[0].bone_mask, p.bone_mask)
    iio.imwrite(tmp_path / "msk" / "f1_bone.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(CalcinosisError, match="must match their image"):
        folder_samples(tmp_path / "img", tmp_path / "msk")
    # a stack of masks saved as one multi-page TIFF is named as that, not as a size mismatch
    import tifffile

    (tmp_path / "msk" / "f1_bone.png").unlink()
    planes = np.stack([p.bone_mask.astype(np.uint8) * 255] * 3)
    tifffile.imwrite(tmp_path / "msk" / "f1_bone.tif", planes, photometric="minisblack")
    with pytest.raises(CalcinosisError, match=r"mask f1_bone.tif holds 3 pages; a mask is one 2-D slice"):
        folder_samples(tmp_path / "img", tmp_path / "msk")
    # ...while one RGB page stored plane by plane is one mask
    planes[1:] = 0  # drawn in red
    tifffile.imwrite(tmp_path / "msk" / "f1_bone.tif", planes, photometric="rgb", planarconfig="separate")
    [sample] = folder_samples(tmp_path / "img", tmp_path / "msk")
    assert np.array_equal(sample.bone_mask, p.bone_mask)
    # a study's tree (quantify --masks mirrors it) is not searched below the folder given: said so
    (tmp_path / "T" / "P01" / "baseline").mkdir(parents=True)
    (tmp_path / "img" / "f1.dcm").rename(tmp_path / "T" / "P01" / "baseline" / "IM000001.dcm")
    with pytest.raises(CalcinosisError, match=r"no image in .*T has a mask .*; its subfolders \(P01\) are not searched"):
        folder_samples(tmp_path / "T", tmp_path / "msk")


@pytest.mark.gpu
def test_cuda_mixed_precision_training_step(tmp_path, pairs):
    # Runs only where CUDA exists: the float16 autocast + gradient scaler + channels_last path end to end.
    import torch

    r = train_segmenter(tmp_path / "g.safetensors", samples=pairs, epochs=1, steps_per_epoch=2, batch_size=2,
                        crop_px=64, device="cuda")
    assert r.device.startswith("cuda") and np.isfinite(r.history[0]["loss"])
    card = json.loads((tmp_path / "g.json").read_text())
    assert "on the device" in card["training"]["augmentation"]  # crops made on the GPU
    from napari_calcinosis.train import _training_dtype

    if _training_dtype(torch.device("cuda")) == torch.float16:  # Ampere and later; older GPUs train in float32
        assert card["training"]["precision"] == "float16 autocast with gradient scaling, channels-last"
        assert torch.load(tmp_path / "g.checkpoint.pt", weights_only=True)["grad_scaler"]["scale"] > 0
    else:
        assert card["training"]["precision"] == "float32"
    r2 = train_segmenter(tmp_path / "g.safetensors", samples=pairs, epochs=2, steps_per_epoch=2, batch_size=2,
                         crop_px=64, device="cuda", resume=True)
    assert r2.epochs_done == 2 and r2.history[0] == r.history[0]
    model = load_model(tmp_path / "g.safetensors", device="cuda")
    seg = segment_phalanges(pairs[0][0], model, spacing_mm=pairs[0][2], device="cuda")
    assert seg.bone_mask.shape == pairs[0][0].shape


@pytest.mark.parametrize("name, value, message", [
    ("CUDNN_AUTOTUNE_LAYERS", "Dense", 'CUDNN_AUTOTUNE_LAYERS must be "all" or "dense"'),
    ("CUDNN_AUTOTUNE_LIMIT", 0, "CUDNN_AUTOTUNE_LIMIT must be a whole number of at least 1"),
    ("CUDNN_AUTOTUNE_LIMIT", "3", "CUDNN_AUTOTUNE_LIMIT must be a whole number of at least 1"),
])
def test_autotuner_settings_are_checked_before_training(tmp_path, pairs, monkeypatch, name, value, message):
    # A misspelt setting must not quietly autotune every layer (or none): it stops the run
    # before any step, with no model written and cuDNN's flags as they were.
    import torch

    import napari_calcinosis.train as train_module

    monkeypatch.setattr(train_module, name, value)
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.benchmark_limit)
    with pytest.raises(ValueError, match=message):
        train_segmenter(tmp_path / "a.safetensors", samples=pairs, epochs=1, steps_per_epoch=1, batch_size=2,
                        crop_px=64, device="cpu")
    assert not (tmp_path / "a.safetensors").exists()
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.benchmark_limit) == before


@pytest.mark.gpu
@pytest.mark.parametrize("layers, limit", [("all", None), ("all", 3), ("dense", None)])
def test_cuda_autotuner_switch(tmp_path, pairs, monkeypatch, layers, limit):
    # Off by default; CUDNN_AUTOTUNE_MIN_PIXELS turns it on for long all-on-cuDNN runs (timing
    # only the best CUDNN_AUTOTUNE_LIMIT candidates when set, only the dense layers with
    # CUDNN_AUTOTUNE_LAYERS="dense"), the card says so, and it is off again afterwards (inference
    # meets a new shape with every image), PyTorch's limit restored, the model's layers those
    # that start fast.
    import torch

    import napari_calcinosis._cuda_convs as convs
    import napari_calcinosis.train as train_module

    tuned = []
    autotune_dense = convs.autotune_dense_convs
    monkeypatch.setattr(convs, "autotune_dense_convs", lambda net: tuned.append((net, autotune_dense(net))) or tuned[-1][1])
    monkeypatch.setattr(train_module, "CUDNN_AUTOTUNE_MIN_PIXELS", 0)
    monkeypatch.setattr(train_module, "CUDNN_AUTOTUNE_LIMIT", limit)
    monkeypatch.setattr(train_module, "CUDNN_AUTOTUNE_LAYERS", layers)
    monkeypatch.setattr(train_module, "PLAN_FREE_CONVS", False)
    monkeypatch.setattr(train_module, "CUDA_PAD_THIN_CONVS", False)
    before = torch.backends.cudnn.benchmark_limit
    train_segmenter(tmp_path / "a.safetensors", samples=pairs, epochs=1, steps_per_epoch=2, batch_size=2, crop_px=64,
                    device="cuda")
    said = json.loads((tmp_path / "a.json").read_text())["training"]["cuda_convolutions"]
    assert said.endswith({("all", None): "autotuner on", ("all", 3): "autotuner on, timing its best 3 candidates",
                          ("dense", None): "autotuner on for the dense k x k layers only"}[layers, limit])
    assert torch.backends.cudnn.benchmark is False
    assert torch.backends.cudnn.benchmark_limit == before
    assert [n for _, n in tuned] == ([10] if layers == "dense" else [])
    assert not any(type(m) is convs._AutotunedConv2d for net, _ in tuned for m in net.modules())


@pytest.mark.gpu
def test_cuda_training_with_padded_one_channel_layers(tmp_path, pairs, monkeypatch):
    # CUDA_PAD_THIN_CONVS pads the first and last layers' channels for the run (with the dense
    # autotuner too), the card says so, the loss is finite, and the model handed back has
    # plain layers again.
    import torch

    import napari_calcinosis._cuda_convs as convs
    import napari_calcinosis.train as train_module

    padded, routed = [], []
    pad, route = convs.pad_thin_convs, convs.plan_free_for_a_while
    monkeypatch.setattr(convs, "pad_thin_convs", lambda net: padded.append((net, pad(net))) or padded[-1][1])

    @contextlib.contextmanager
    def counted_route(net):
        with route(net) as n:
            routed.append(n)
            yield n

    monkeypatch.setattr(convs, "plan_free_for_a_while", counted_route)
    monkeypatch.setattr(train_module, "CUDA_PAD_THIN_CONVS", True)
    monkeypatch.setattr(train_module, "CUDNN_AUTOTUNE_MIN_PIXELS", 0)
    monkeypatch.setattr(train_module, "CUDNN_AUTOTUNE_LAYERS", "dense")
    monkeypatch.setattr(train_module, "PLAN_FREE_CONVS", False)
    result = train_segmenter(tmp_path / "a.safetensors", samples=pairs, epochs=2, steps_per_epoch=2, batch_size=2,
                             crop_px=64, device="cuda")
    said = json.loads((tmp_path / "a.json").read_text())["training"]["cuda_convolutions"]
    assert said.endswith("dense k x k layers only; the one-channel first and last layers padded to 8 channels")
    assert "; validation with the 1 x 1 and depthwise layers off cuDNN" in said
    assert [n for _, n in padded] == [2]
    assert routed == [51, 51]  # each validation (after epochs 1 and 2) with those layers routed
    assert len(result.history) == 2 and all(np.isfinite(h["loss"]) for h in result.history)
    assert not any(type(m) in convs._CHANGED_CLASSES[2:] for m in padded[0][0].modules())
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.gpu
def test_cuda_training_with_fused_batch_norm(tmp_path, pairs, monkeypatch):
    # CUDA_FUSE_BATCHNORM fuses every batch norm with its activation for a long run, the card
    # says so, the loss is finite and validation Dice sensible, and the model handed back has
    # PyTorch's layers again.
    import torch

    import napari_calcinosis._cuda_batchnorm as cbn
    import napari_calcinosis.train as train_module

    fused = []
    fuse = cbn.fuse_batchnorm
    monkeypatch.setattr(cbn, "fuse_batchnorm", lambda net, alone=True: fused.append((net, fuse(net, alone))) or fused[-1][1])
    monkeypatch.setattr(train_module, "CUDA_FUSE_BATCHNORM", True)
    monkeypatch.setattr(train_module, "PLAN_FREE_CONVS", False)
    result = train_segmenter(tmp_path / "a.safetensors", samples=pairs, epochs=2, steps_per_epoch=2, batch_size=2,
                             crop_px=64, device="cuda")
    said = json.loads((tmp_path / "a.json").read_text())["training"]["cuda_convolutions"]
    assert said.endswith("; batch norm fused with the activation after it (Triton kernels): every batch norm"), said
    assert [n for _, n in fused] == [60]
    assert len(result.history) == 2 and all(np.isfinite(h["loss"]) for h in result.history)
    assert not any(type(m) in cbn._BN_CLASSES or type(m) in cbn._ACT_CLASSES for m in fused[0][0].modules())
    assert torch.isfinite(load_model(tmp_path / "a.safetensors").network.encoder.features[0][1].running_var).all()


def _bone_agreement(x, y, spec):
    """Of the target's bone pixels, the fraction the (augmented) image shows brighter than 150 HU."""
    level = (150.0 - (spec["window_level_hu"] - spec["window_width_hu"] / 2)) / spec["window_width_hu"] * 2 - 1
    x, y = np.asarray(x), np.asarray(y) > 0.5
    return float((x[y] > level).mean()), float(y.mean())


def test_device_augmentation_matches_the_cpu_path(pairs):
    import torch

    from napari_calcinosis._augment_torch import augment_batch, to_device_dataset

    samples = [TrainingSample(*p) for p in pairs]
    gen = torch.Generator("cpu")
    gen.manual_seed(0)
    x, y = augment_batch(to_device_dataset(samples, "cpu"), 64, 96, DEFAULT_INPUT, gen)
    assert x.shape == y.shape == (64, 1, 96, 96)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert set(np.unique(y.numpy())) <= {0.0, 1.0}
    rng = np.random.default_rng(0)
    cpu = [augment(samples[i % 3], rng, 96, DEFAULT_INPUT) for i in range(64)]
    on_device = _bone_agreement(x.numpy(), y.numpy(), DEFAULT_INPUT)
    on_cpu = _bone_agreement([c[0] for c in cpu], [c[1] for c in cpu], DEFAULT_INPUT)
    # the target sits on the bone in both paths, and crops centre on bone as often
    assert on_device[0] > 0.9 and on_cpu[0] > 0.9
    assert abs(on_device[1] - on_cpu[1]) < 0.1


def test_device_dataset_pads_each_image_with_its_edge():
    # Images of different shapes, padded on the device to the largest: each at the top left,
    # its last row and column repeated, as np.pad(mode="edge") (sampling past an image's own
    # border then repeats its edge); the bone masks the same, as 0/1 floats.
    from napari_calcinosis._augment_torch import to_device_dataset

    rng = np.random.default_rng(3)
    shapes = [(40, 31), (23, 57), (40, 57), (1, 1)]
    samples = [TrainingSample(rng.normal(0, 300, sh).astype(np.float32), rng.random(sh) > 0.6, 0.3) for sh in shapes]
    samples[0].pixels_hu.flags.writeable = False  # a read-only image is copied, not warned about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = to_device_dataset(samples, "cpu")
    assert tuple(data.pixels_hu.shape) == tuple(data.bone.shape) == (4, 1, 40, 57)
    for i, s in enumerate(samples):
        pad = ((0, 40 - s.pixels_hu.shape[0]), (0, 57 - s.pixels_hu.shape[1]))
        assert np.array_equal(data.pixels_hu[i, 0].numpy(), np.pad(s.pixels_hu, pad, mode="edge"))
        assert np.array_equal(data.bone[i, 0].numpy(), np.pad(s.bone_mask.astype(np.float32), pad, mode="edge"))
    assert np.array_equal(data.shape_px.numpy(), np.array(shapes, np.float32))


def test_device_crops_are_the_cpu_path_affine_transform(pairs):
    # The same rotation, flip, scale and centre through grid_sample and through SciPy.
    import torch
    from scipy import ndimage as ndi

    from napari_calcinosis._augment_torch import sample_crops, to_device_dataset

    samples = [TrainingSample(*p) for p in pairs]
    data = to_device_dataset(samples, "cpu")
    crop = 48
    for i, (theta, flip, scale) in enumerate([(0.3, 1.0, 1.1), (2.2, -1.0, 0.8), (4.0, 1.0, 1.25)]):
        s = samples[i]
        c, sn = np.cos(theta), np.sin(theta)
        matrix = np.diag(1.0 / np.asarray(s.spacing_mm)) @ np.array([[c, -sn], [sn, c]]) @ np.diag([flip, 1.0]) * 0.25 * scale
        centre = np.array(s.pixels_hu.shape, float) / 2 + [3.3, -7.6]
        x, y = sample_crops(data, torch.tensor([i]), torch.tensor(matrix[None], dtype=torch.float32),
                            torch.tensor(centre[None], dtype=torch.float32), crop)
        offset = centre - matrix @ np.full(2, (crop - 1) / 2.0)
        ref = ndi.affine_transform(s.pixels_hu.astype(np.float64), matrix, offset=offset, output_shape=(crop, crop), order=1)
        ref_bone = ndi.affine_transform(s.bone_mask.astype(np.float64), matrix, offset=offset, output_shape=(crop, crop), order=1)
        np.testing.assert_allclose(x[0, 0].numpy(), ref, atol=0.05)  # HU
        np.testing.assert_allclose(y[0, 0].numpy(), ref_bone, atol=1e-4)


def test_training_with_device_augmentation_resumes(tmp_path, pairs):
    out = tmp_path / "d.safetensors"
    r1 = train_segmenter(out, samples=pairs, epochs=1, steps_per_epoch=2, batch_size=2, crop_px=64, device="cpu",
                         augment_on="device")
    assert r1.epochs_done == 1 and r1.elapsed_s > 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert "on the device" in card["training"]["augmentation"]
    r2 = train_segmenter(out, samples=pairs, epochs=3, steps_per_epoch=2, batch_size=2, crop_px=64, device="cpu",
                         augment_on="device", resume=True, val_every=2)
    assert [h["epoch"] for h in r2.history] == [1, 2, 3]  # validated at 2 and at the last epoch
    with pytest.raises(CalcinosisError, match="augment_on"):
        train_segmenter(out, samples=pairs, epochs=1, device="cpu", augment_on="gpu")


def test_stop_at_val_dice(tmp_path, pairs):
    r = train_segmenter(tmp_path / "s.safetensors", samples=pairs, epochs=5, steps_per_epoch=1, batch_size=2,
                        crop_px=64, device="cpu", stop_at_val_dice=0.0)
    assert r.epochs_done == 1 and not r.cancelled


def test_device_validation_agrees_with_the_user_path():
    from napari_calcinosis._augment_torch import DeviceValidator
    from napari_calcinosis.train import evaluate

    model = load_model(device="cpu")
    val = []
    for seed in (105, 106, 107):
        p = make_phantom(seed, max_size_px=300)
        val.append(TrainingSample(p.image_hu, p.bone_mask, p.spacing_mm))
    on_device = DeviceValidator(val, model.input, "cpu")(model.network)
    through_segment = evaluate(model, val)
    assert np.allclose(on_device, through_segment, atol=0.01)
    assert min(on_device) > 0.95


@pytest.mark.parametrize("setting,message", [
    (dict(epochs=0), "epochs must be a whole number of at least 1, got 0"),
    (dict(batch_size=0), "the batch size must be"),
    (dict(steps_per_epoch=0), "steps per epoch must be"),
    (dict(learning_rate=float("nan")), "learning rate must be a positive number"),
    (dict(crop_px=70), r"crop size 70 px must be a multiple of 16, at least 32 \(e.g. 64\)"),
    (dict(checkpoint_every_s=-1.0), "checkpoint interval"),
])
def test_a_schedule_that_cannot_run_is_a_clear_error(tmp_path, setting, message):
    with pytest.raises(CalcinosisError, match=message):
        train_segmenter(tmp_path / "x.safetensors", n_phantoms=2, device="cpu", **setting)
    assert not any(tmp_path.iterdir())  # refused before any work or file


def test_numpy_typed_settings_train_and_resume(tmp_path, pairs):
    # e.g. a sweep over np.linspace: the checkpoint must still load under weights_only=True
    out = tmp_path / "n.safetensors"
    settings = dict(samples=pairs, steps_per_epoch=np.int64(2), batch_size=np.int64(2), crop_px=np.int64(64),
                    learning_rate=np.float64(2e-3), seed=np.int64(3), device="cpu")
    train_segmenter(out, epochs=np.int64(1), **settings)
    r = train_segmenter(out, epochs=2.0, resume=True, **settings)
    assert r.epochs_done == 2 and [h["epoch"] for h in r.history] == [1, 2]


def test_a_share_of_varied_training_phantoms_is_spread_evenly():
    """phantom_samples(varied=f) mixes basic and varied phantoms evenly through the seed block,
    so that any prefix of it (a short run, a small N) is mixed too."""
    from napari_calcinosis.train import VARIED_FRACTION, _is_varied, phantom_samples

    assert VARIED_FRACTION == 1.0  # the bundled model's training set: all varied
    assert all(_is_varied(i, VARIED_FRACTION) for i in range(400))
    kinds = [_is_varied(i, 0.5) for i in range(400)]
    assert abs(sum(kinds) - 200) <= 2
    for n in (4, 10, 40):
        assert 0 < sum(kinds[:n]) < n
    import itertools

    assert max(len(list(run)) for _, run in itertools.groupby(kinds)) <= 3
    assert not any(_is_varied(i, False) for i in range(20)) and all(_is_varied(i, True) for i in range(20))
    # the varied ones are what make_phantom(varied=True) draws
    varied_index = kinds.index(True)
    sample = phantom_samples(varied_index + 1, 7, workers=1, varied=0.5)[varied_index]
    expected = make_phantom(7 + varied_index, max_size_px=560, varied=True)
    assert np.array_equal(sample.pixels_hu, expected.image_hu)


def test_folder_pairs_say_what_they_leave_out_and_read_masks_as_drawn(tmp_path):
    # A lab's folders: an image without a mask, a mask without an image, a mask drawn in green,
    # one drawn only in the alpha channel, an inverted one; a PNG export beside its DICOM with
    # the masks in the same folder; a pixel size for the exports that must not override a DICOM's.
    import imageio.v3 as iio

    from napari_calcinosis import write_dicom

    d = tmp_path / "data"
    d.mkdir()
    phantoms = [make_phantom(s, max_size_px=120) for s in (201, 202, 203, 204)]
    for i, p in enumerate(phantoms):
        write_dicom(d / f"f{i}.dcm", p.image_hu, p.spacing_mm)
    iio.imwrite(d / "f0.png", np.zeros(phantoms[0].image_hu.shape, np.uint8))  # an export, not a mask
    bone = [p.bone_mask for p in phantoms]
    green = np.zeros(bone[0].shape + (3,), np.uint8)
    green[..., 1] = bone[0] * 255
    iio.imwrite(d / "f0_bone.png", green)
    alpha = np.zeros(bone[1].shape + (4,), np.uint8)
    alpha[..., 3] = bone[1] * 255
    iio.imwrite(d / "f1_mask.png", alpha)
    iio.imwrite(d / "f2_bone.png", (~bone[2] * 255).astype(np.uint8))  # inverted
    iio.imwrite(d / "f9_bone.png", (bone[3] * 255).astype(np.uint8))  # no image f9
    notes = []
    samples = folder_samples(d, d, pixel_size_mm=0.5, notes=notes.append)
    names = [s.name for s in samples]
    # f3.dcm has no mask; f0.png is an image here, but f0.dcm's: one slice is not taken twice
    assert names == ["f0.dcm", "f1.dcm", "f2.dcm"]
    assert np.array_equal(samples[0].bone_mask, bone[0]) and np.array_equal(samples[1].bone_mask, bone[1])
    assert np.allclose(samples[0].spacing_mm, phantoms[0].spacing_mm)  # not the exports' 0.5 mm
    assert any(n.startswith("1 image(s) named like another left out") and "f0.png (beside f0.dcm)" in n
               for n in notes)
    # without a DICOM, a lossless export before a JPEG, whatever their names' order
    from napari_calcinosis.train import _one_image_a_name

    said = []
    kept = _one_image_a_name([Path("f5.jpg"), Path("f5.png"), Path("f6.jpeg"), Path("f7.tif")], said.append)
    assert kept == [Path("f5.png"), Path("f6.jpeg"), Path("f7.tif")] and "f5.jpg (beside f5.png)" in said[0]
    # in one folder, a mask whose image is missing (f9_bone.png) reads as an image without a mask
    assert "2 image(s) without a mask left out: f3.dcm, f9_bone.png" in notes
    assert any("f2_bone.png marks" in n and "is it inverted" in n for n in notes)
    apart = tmp_path / "masks"
    apart.mkdir()
    (d / "f9_bone.png").rename(apart / "f9_bone.png")
    (d / "f1_mask.png").rename(apart / "f1_bone.png")
    notes.clear()
    assert [s.name for s in folder_samples(d, apart, notes=notes.append)] == ["f1.dcm"]
    assert any(n.startswith("1 mask(s) without an image of their name left out: f9_bone.png") for n in notes)
    iio.imwrite(d / "f0_mask.png", (bone[0] * 255).astype(np.uint8))
    with pytest.raises(CalcinosisError, match="2 masks for the image f0: f0_bone.png, f0_mask.png; keep one"):
        folder_samples(d, d)


def test_a_fine_tuned_model_card_says_where_it_started_not_its_results(tmp_path, pairs):
    import json

    from napari_calcinosis.segment import bundled_model_path

    result = train_segmenter(tmp_path / "tuned.safetensors", samples=pairs, epochs=1, steps_per_epoch=1, batch_size=2,
                             crop_px=64, device="cpu", init_model=bundled_model_path())
    card = json.loads(Path(result.model_path).with_suffix(".json").read_text())
    assert "test" not in card and "previous_model" not in card["training"]
    started = card["training"]["fine_tuned_from"]
    assert started["name"] == "phalanx_unet" and started["file"].endswith("phalanx_unet.safetensors")
    import hashlib  # the weights it started from, as sha256sum names them

    assert started["sha256"] == hashlib.sha256(bundled_model_path().read_bytes()).hexdigest()
    assert "synthetic finger phantoms" in started["trained_on"]
    assert card["architecture"]["encoder_name"] == "mobilenet_v2"


def test_fine_tuning_is_remembered_through_a_resume_and_in_memory(tmp_path, pairs):
    from napari_calcinosis.segment import bundled_model_path, new_model

    out = tmp_path / "tuned.v1"
    train_segmenter(out, samples=pairs, epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu",
                    init_model=bundled_model_path(), checkpoint_every_s=0)
    resumed = train_segmenter(out, samples=pairs, epochs=3, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu",
                              resume=True, checkpoint_every_s=0)
    assert resumed.model_path.name == "tuned.v1.safetensors"
    card = json.loads(resumed.model_path.with_suffix(".json").read_text())
    assert card["training"]["fine_tuned_from"]["name"] == "phalanx_unet"
    memory = train_segmenter(tmp_path / "m", samples=pairs, epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64,
                             device="cpu", init_model=new_model())
    card = json.loads(memory.model_path.with_suffix(".json").read_text())
    assert card["training"]["fine_tuned_from"]["file"] == "a model given in memory"
    assert card["training"]["fine_tuned_from"]["sha256"] == ""  # no file, no checksum


def test_a_series_named_by_uid_pairs_with_the_masks_quantify_writes(tmp_path):
    # quantify --masks names them <UID>_bone.png, the UID's last number kept; training pairs them
    import imageio.v3 as iio

    from napari_calcinosis import write_dicom

    images, masks = tmp_path / "img", tmp_path / "msk"
    images.mkdir(), masks.mkdir()
    phantoms = [make_phantom(s, max_size_px=120) for s in (211, 212)]
    for k, p in enumerate(phantoms, start=1):
        write_dicom(images / f"1.2.840.99.6046.{k}", p.image_hu, p.spacing_mm)
        iio.imwrite(masks / f"1.2.840.99.6046.{k}_bone.png", (p.bone_mask * 255).astype(np.uint8))
    (images / "notes").write_text("scanned 2026-11-28\n")  # not an image, whatever its name
    iio.imwrite(masks / "1.2.840.99.6046.1_lesions.tif", np.zeros((8, 8), np.uint16))  # quantify writes these too
    notes = []
    samples = folder_samples(images, masks, notes=notes.append)
    assert notes == []
    assert [s.name for s in samples] == ["1.2.840.99.6046.1", "1.2.840.99.6046.2"]
    assert all(np.array_equal(s.bone_mask, p.bone_mask) for s, p in zip(samples, phantoms))


def test_images_named_like_masks_in_one_folder_are_images(tmp_path):
    import imageio.v3 as iio

    p = make_phantom(205, max_size_px=120)
    iio.imwrite(tmp_path / "hand_bone.png", np.clip((p.image_hu + 300) / 1500 * 255, 0, 255).astype(np.uint8))
    iio.imwrite(tmp_path / "hand_bone_mask.png", (p.bone_mask * 255).astype(np.uint8))
    [sample] = folder_samples(tmp_path, tmp_path, pixel_size_mm=p.spacing_mm[0])
    assert sample.name == "hand_bone.png" and np.array_equal(sample.bone_mask, p.bone_mask)


def test_a_mask_on_a_transparent_sheet_and_a_model_given_in_memory(tmp_path, pairs):
    # A mask painted white on a transparent sheet read as all bone; fine-tuning from a model in
    # memory (one in use in the viewer) trained the caller's network in place.
    import imageio.v3 as iio
    import torch

    from napari_calcinosis.segment import new_model
    from napari_calcinosis.train import _read_mask

    bone = np.zeros((40, 50), bool)
    bone[10:30, 20:30] = True
    sheet = np.full((40, 50, 4), 255, np.uint8)
    sheet[..., 3] = bone * 255
    iio.imwrite(tmp_path / "sheet.png", sheet)
    assert np.array_equal(_read_mask(tmp_path / "sheet.png"), bone)
    mine = new_model()
    before = {k: v.clone() for k, v in mine.network.state_dict().items()}
    train_segmenter(tmp_path / "m", samples=pairs, epochs=1, steps_per_epoch=2, batch_size=2, crop_px=64,
                    device="cpu", init_model=mine)
    assert all(torch.equal(before[k], v) for k, v in mine.network.state_dict().items())


def test_fine_tuning_keeps_the_model_it_started_from_unless_training_beats_it(tmp_path, pairs):
    # The bundled model is validated before the first step; a rate that wrecks it in two steps
    # leaves that model in place, and the card and the result say so.
    from napari_calcinosis.segment import bundled_model_path

    events = []
    start = load_model(bundled_model_path())
    result = train_segmenter(tmp_path / "tuned", samples=pairs, epochs=1, steps_per_epoch=2, batch_size=2, crop_px=64,
                             device="cpu", init_model=bundled_model_path(), learning_rate=1.0, progress=events.append)
    first = [e for e in events if e.phase == "validate"][0]
    assert first.epoch == 0 and first.step == 0 and result.history[0]["epoch"] == 0
    assert result.best_epoch == 0 and result.history[1]["val_dice"] < result.history[0]["val_dice"]
    card = json.loads(result.model_path.with_suffix(".json").read_text())
    assert "no epoch did better on the validation images than the model it started from" in card["training"]["ended"]
    assert card["validation"]["epoch"] == 0 and card["training"]["best_epoch"] == 0
    kept = load_model(result.model_path)
    import torch

    for name, tensor in start.network.state_dict().items():
        assert torch.equal(tensor, kept.network.state_dict()[name]), name  # the very weights it started from


def _sigint_in_step(monkeypatch, at_call: int, times: int = 1):
    """Ctrl+C pressed ``times`` while the ``at_call``-th training step runs (as a terminal sends it)."""
    import os
    import signal

    from napari_calcinosis import train as train_module

    real_step, calls = train_module._training_step, {"n": 0}

    def step_with_ctrl_c(*args):
        calls["n"] += 1
        if calls["n"] == at_call:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return real_step(*args)

    monkeypatch.setattr(train_module, "_training_step", step_with_ctrl_c)


def test_ctrl_c_stops_after_the_step_keeping_the_model_and_a_checkpoint(tmp_path, pairs, monkeypatch):
    import signal

    before = signal.getsignal(signal.SIGINT)
    _sigint_in_step(monkeypatch, at_call=3)
    out = tmp_path / "ctrlc.safetensors"
    events = []
    result = train_segmenter(out, samples=pairs, epochs=2, steps_per_epoch=4, batch_size=2, crop_px=64, device="cpu",
                             progress=events.append)
    assert result.cancelled and result.interrupted and result.ended == "interrupted (Ctrl+C) at step 3 of 8"
    assert result.steps_trained == 3
    assert any("Ctrl+C: stopping after this step" in e.message for e in events)
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl+C is the caller's again
    assert out.exists() and (tmp_path / "ctrlc.checkpoint.pt").exists()
    assert json.loads(out.with_suffix(".json").read_text())["training"]["ended"] == result.ended
    monkeypatch.undo()
    resumed = train_segmenter(out, samples=pairs, epochs=2, steps_per_epoch=4, batch_size=2, crop_px=64, device="cpu",
                              resume=True)
    assert not resumed.cancelled and resumed.epochs_done == 2 and resumed.ended == "finished: 2 epochs, 8 steps"
    assert resumed.steps_trained == 5  # this run's steps: the first 3 were the interrupted run's


def test_a_second_ctrl_c_stops_at_once_leaving_the_last_whole_checkpoint(tmp_path, pairs, monkeypatch):
    import signal

    import torch

    before = signal.getsignal(signal.SIGINT)
    _sigint_in_step(monkeypatch, at_call=3, times=2)
    out = tmp_path / "twice.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(out, samples=pairs, epochs=2, steps_per_epoch=4, batch_size=2, crop_px=64, device="cpu",
                        checkpoint_every_s=0)
    assert signal.getsignal(signal.SIGINT) is before
    assert torch.load(tmp_path / "twice.checkpoint.pt", weights_only=True)["step"] == 2  # the last whole step's


def test_a_fine_tune_cancelled_before_its_first_step_keeps_its_model_as_it_is(tmp_path, pairs):
    from napari_calcinosis.segment import bundled_model_path

    result = train_segmenter(tmp_path / "t", samples=pairs, epochs=1, steps_per_epoch=2, batch_size=2, crop_px=64,
                             device="cpu", init_model=bundled_model_path(), should_cancel=lambda: True)
    assert result.cancelled and result.best_epoch == 0 and result.steps_trained == 0
    assert result.ended == "cancelled at step 0 of 2; no step was trained: the model it started from is kept as it is"


def test_a_new_run_in_place_of_an_old_one_cannot_be_resumed_into_it(tmp_path, pairs):
    # --overwrite: the old run's checkpoint goes when the new run starts, even if the new run
    # writes none of its own before it stops
    out = tmp_path / "m.safetensors"
    train_segmenter(out, samples=pairs, epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu")
    ckpt = tmp_path / "m.checkpoint.pt"
    assert ckpt.exists()
    stopped = train_segmenter(out, samples=pairs, epochs=9, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu",
                              should_cancel=lambda: True)
    assert stopped.cancelled and not ckpt.exists()
    with pytest.raises(CalcinosisError, match="cannot resume: no checkpoint"):
        train_segmenter(out, samples=pairs, epochs=9, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu",
                        resume=True)


def test_resuming_on_changed_pixels_is_refused_and_one_pair_is_named_as_validated_on_itself(tmp_path, pairs):
    out = tmp_path / "m.safetensors"
    train_segmenter(out, samples=pairs, epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu")
    corrected = [(image, mask.copy(), spacing) for image, mask, spacing in pairs]
    corrected[1][1][40:44, 40:44] ^= True  # a mask corrected between the stop and the resume
    with pytest.raises(CalcinosisError, match="cannot resume"):
        train_segmenter(out, samples=corrected, epochs=2, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu",
                        resume=True)
    one = train_segmenter(tmp_path / "one", samples=[TrainingSample(*pairs[0], name="f1.dcm")], epochs=1,
                          steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu")
    card = json.loads(one.model_path.with_suffix(".json").read_text())
    assert one.validated_on_training and "says nothing of other images" in card["validation"]["on_training_images"]
    assert card["validation"]["contents"] == _fingerprint([TrainingSample(*pairs[0])])  # no file names in a card
    assert "f1.dcm" not in json.dumps(card)
    assert not train_segmenter(tmp_path / "three", samples=pairs, epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64,
                               device="cpu").validated_on_training


def _exports_and_a_masks_folder(tmp_path, names, seeds):
    """images/ holding a phantom per name as a W1500/L450 PNG export, an empty masks/, the phantoms."""
    from napari_calcinosis import write_windowed_png

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    phantoms = [make_phantom(s, max_size_px=120) for s in seeds]
    for name, p in zip(names, phantoms):
        write_windowed_png(images / f"{name}.png", p.image_hu)
    return images, masks, phantoms


def test_folder_pairs_name_label_masks_jpeg_masks_and_exports_read_through_the_wrong_window(tmp_path):
    import imageio.v3 as iio

    from napari_calcinosis import write_windowed_png

    images, masks, phantoms = _exports_and_a_masks_folder(tmp_path, ("f0", "f1", "f2"), (301, 302, 303))
    write_windowed_png(images / "soft.png", phantoms[0].image_hu, window_level_hu=40, window_width_hu=400)
    labels = (phantoms[0].bone_mask + 2 * (phantoms[0].lesion_labels > 0)).astype(np.uint8)
    iio.imwrite(masks / "f0.png", labels)  # bone 1, deposits 2: napari's labels
    iio.imwrite(masks / "f1_bone.png", (phantoms[1].bone_mask * 255).astype(np.uint8))
    iio.imwrite(masks / "f2_bone.jpg", (phantoms[2].bone_mask * 255).astype(np.uint8))
    iio.imwrite(masks / "soft.png", (phantoms[0].bone_mask * 255).astype(np.uint8))
    notes = []
    samples = folder_samples(images, masks, pixel_size_mm=0.25, notes=notes.append)
    assert [s.name for s in samples] == ["f0.png", "f1.png", "soft.png"]
    assert any("mask f0.png holds labels 1, 2: all are taken as bone" in n for n in notes)
    assert not any("f1_bone.png holds labels" in n for n in notes)  # 0/255 is one label
    assert any(n.startswith("1 JPEG mask(s) left out") and "f2_bone.jpg" in n for n in notes)
    assert any(n.startswith("soft.png: the finger's soft tissue reads about") for n in notes)
    assert not any(n.startswith(("f0.png:", "f1.png:")) for n in notes)
    # the window it was exported with, given: read as HU like quantify reads it, and no word
    notes.clear()
    soft = folder_samples(images, masks, pixel_size_mm=0.25, notes=notes.append, window_level_hu=40,
                          window_width_hu=400)[2]
    assert not any(n.startswith("soft.png:") for n in notes)
    tissue = phantoms[0].image_hu[(phantoms[0].image_hu > -100) & (phantoms[0].image_hu < 200)]
    assert abs(np.median(soft.pixels_hu[(soft.pixels_hu > -100) & (soft.pixels_hu < 200)]) - np.median(tissue)) < 10


def test_folder_pairs_name_colour_labels_images_as_masks_masks_of_other_formats_and_subfolders(tmp_path):
    # ITK-SNAP's colours (bone red, deposits green) were all taken as bone without a word, as was
    # the scan's own export given as its mask; a mask saved as DICOM, and the images of a
    # subfolder, were passed over silently; a pixel size in cm was refused after an epoch.
    import imageio.v3 as iio
    from PIL import Image

    from napari_calcinosis import write_dicom, write_windowed_png

    images, masks, phantoms = _exports_and_a_masks_folder(tmp_path, ("f0", "f1", "f2", "f3"), (311, 312, 313, 314))
    labels = (phantoms[0].bone_mask + 2 * (phantoms[0].lesion_labels > 0)).astype(np.uint8)
    palette = Image.fromarray(labels, "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    palette.save(masks / "f0_bone.png")
    write_windowed_png(masks / "f1.png", phantoms[1].image_hu)  # the image, not its mask
    from scipy import ndimage as ndi

    smooth = np.round(ndi.gaussian_filter(phantoms[2].bone_mask * 255.0, 0.7)).astype(np.uint8)  # dozens of greys at its edges
    iio.imwrite(masks / "f2_bone.png", smooth)
    write_dicom(masks / "f3_bone.dcm", phantoms[3].bone_mask * 1000.0, phantoms[3].spacing_mm)
    (images / "P02").mkdir()
    write_windowed_png(images / "P02" / "f4.png", phantoms[3].image_hu)
    notes = []
    samples = folder_samples(images, masks, pixel_size_mm=0.25, notes=notes.append)
    assert [s.name for s in samples] == ["f0.png", "f1.png", "f2.png"]
    assert np.array_equal(samples[0].bone_mask, labels > 0)  # all are bone, as said
    assert any(n.startswith("mask f0_bone.png holds colours #00ff00, #ff0000: all are taken as bone; if some mark "
                            "deposits") for n in notes)
    assert any(n.startswith("mask f1.png holds") and "grey levels, most of its marked pixels under half the brightest"
               in n and "is it the image rather than its mask?" in n for n in notes)
    assert not any("f2_bone.png holds" in n for n in notes)  # a 0/255 mask with grey edges is a mask
    assert any(n.startswith("1 file(s) in") and "not PNG or TIFF left out" in n and "f3_bone.dcm" in n for n in notes)
    assert f"the subfolders of {images} are not searched (P02): only the images directly in it are trained on" in notes
    with pytest.raises(CalcinosisError, match=r"images/f0.png: the image spans \d+ x \d+ mm .* of 3 x 3 mm.*check the pixel size"):
        folder_samples(images, masks, pixel_size_mm=3.0)  # 0.3 meant: refused as read, naming the image
    shared = tmp_path / "shared"  # a DICOM and its mask named alike in one folder: the mask is taken for its export
    shared.mkdir()
    write_dicom(shared / "f1.dcm", phantoms[1].image_hu, phantoms[1].spacing_mm)
    iio.imwrite(shared / "f1.png", (phantoms[1].bone_mask * 255).astype(np.uint8))
    with pytest.raises(CalcinosisError, match="in one folder, a mask is named after its image with _bone or _mask: "):
        folder_samples(shared, shared)


def test_a_models_card_names_no_file_of_the_images_it_was_trained_on(tmp_path):
    # The notes on reading the folders (here: an image without a mask) name files, and a PACS's
    # file names may name the patient; the card travels with the model.
    import imageio.v3 as iio

    from napari_calcinosis import write_windowed_png

    images, masks, phantoms = _exports_and_a_masks_folder(tmp_path, ("f0", "f1"), (321, 322))
    for name, p in zip(("f0", "f1"), phantoms):
        iio.imwrite(masks / f"{name}_bone.png", (p.bone_mask * 255).astype(np.uint8))
    write_windowed_png(images / "DOE_JANE_19650312.png", phantoms[0].image_hu)  # no mask yet
    progress = []
    result = train_segmenter(tmp_path / "lab.safetensors", images_dir=images, masks_dir=masks, pixel_size_mm=0.25,
                             epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu",
                             progress=progress.append)
    assert any("DOE_JANE_19650312.png" in p.message for p in progress)  # said to the user as it was read
    card = json.loads(result.model_path.with_suffix(".json").read_text())
    assert card["training"]["data"].startswith("2 image/mask pairs from ")
    assert "1 note(s) on them shown when they were read" in card["training"]["data"]
    for text in (result.model_path.with_suffix(".json").read_text(), json.dumps(load_model(result.model_path).card)):
        assert "DOE" not in text and "f0.png" not in text


def test_resuming_from_another_model_than_the_run_started_from_is_refused(tmp_path, pairs):
    # A run from random weights resumed with a model to start from: the weights come from the
    # checkpoint, so the card would have said it was fine-tuned from that model.
    from napari_calcinosis.segment import bundled_model_path
    from napari_calcinosis.train import ResumeRefused

    settings = dict(samples=pairs, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu", checkpoint_every_s=0)
    out = train_segmenter(tmp_path / "scratch", epochs=1, **settings).model_path
    with pytest.raises(ResumeRefused, match="the run in .*scratch.checkpoint.pt started from random weights .no --init.; "
                                            "leave --init out to carry that run on"):
        train_segmenter(out, epochs=2, resume=True, init_model=bundled_model_path(), **settings)
    tuned = train_segmenter(tmp_path / "tuned", epochs=1, init_model=bundled_model_path(), **settings).model_path
    resumed = train_segmenter(tuned, epochs=2, resume=True, init_model=bundled_model_path(), **settings)  # the same: on
    card = json.loads(resumed.model_path.with_suffix(".json").read_text())
    assert card["training"]["fine_tuned_from"]["name"] == "phalanx_unet"
    with pytest.raises(ResumeRefused, match="started from .*phalanx_unet.safetensors .sha256 [0-9a-f]{12}"):
        train_segmenter(tuned, epochs=3, resume=True, init_model=out, **settings)
    from napari_calcinosis.segment import new_model  # a model in memory has no checksum to compare: refused too

    memory = train_segmenter(tmp_path / "memory", epochs=1, init_model=new_model(), **settings).model_path
    with pytest.raises(ResumeRefused, match="cannot resume from a model given in memory"):
        train_segmenter(memory, epochs=2, resume=True, init_model=new_model(), **settings)


def test_layers_of_an_impossible_size_and_an_output_that_is_a_folder_are_refused_before_training(tmp_path, pairs,
                                                                                                monkeypatch):
    # The Train widget's pairs come in memory: a pixel size in cm was refused after an epoch,
    # naming no image; '.' raised a traceback and '..' trained, then lost the model.
    image, bone, _ = pairs[0]
    steps = []
    with pytest.raises(CalcinosisError, match=r"^finger 2: the image spans \d+ x \d+ mm"):
        train_segmenter(tmp_path / "m", samples=[*pairs[:2], TrainingSample(image, bone, (3.0, 3.0), "finger 2")],
                        epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu",
                        progress=lambda p: steps.append(p) if p.phase == "train" else None)
    assert not steps
    monkeypatch.chdir(tmp_path)
    for out in (".", "..", tmp_path):
        with pytest.raises(CalcinosisError, match="is a folder: give the model's file name"):
            train_segmenter(out, samples=pairs, epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu")


def test_fine_tuning_on_masks_of_the_deposits_says_so_before_training(tmp_path):
    # The starting model's Dice on the validation masks, under POOR_DICE: said before the first
    # step, not only at the end of hours of training
    phantoms = [make_phantom(s, max_size_px=160) for s in (331, 332, 333)]
    deposits = [(p.image_hu, p.lesion_labels > 0, p.spacing_mm) for p in phantoms]
    progress = []
    train_segmenter(tmp_path / "m", samples=deposits, epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64,
                    device="cpu", init_model="bundled", progress=progress.append)
    said = [p for p in progress if "marks the bone of your validation masks poorly" in p.message]
    assert len(said) == 1 and said[0].message.startswith("note: the model it starts from marks")
    first_step = next(i for i, p in enumerate(progress) if p.phase == "train")
    assert progress.index(said[0]) < first_step
    bone = [(p.image_hu, p.bone_mask, p.spacing_mm) for p in phantoms]
    progress.clear()
    train_segmenter(tmp_path / "b", samples=bone, epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64,
                    device="cpu", init_model="bundled", progress=progress.append)
    assert not any("poorly" in p.message for p in progress)


def test_masks_named_in_another_case_pair_with_their_image(tmp_path):
    import imageio.v3 as iio

    from napari_calcinosis import write_windowed_png

    images, masks, phantoms = _exports_and_a_masks_folder(tmp_path, ("f10", "f12", "f13"), (311, 312, 313))
    iio.imwrite(masks / "F10_bone.png", (phantoms[0].bone_mask * 255).astype(np.uint8))
    iio.imwrite(masks / "f12_Bone.png", (phantoms[1].bone_mask * 255).astype(np.uint8))
    iio.imwrite(masks / "F13_MASK.png", (phantoms[2].bone_mask * 255).astype(np.uint8))
    notes = []
    samples = folder_samples(images, masks, pixel_size_mm=0.25, notes=notes.append)
    assert [s.name for s in samples] == ["f10.png", "f12.png", "f13.png"]
    for sample, p in zip(samples, phantoms):
        assert np.array_equal(sample.bone_mask, p.bone_mask)
    assert "F10_bone.png paired with the image f10 (the names differ only in case)" in notes
    # two images whose names differ only in case: no guessing, the mask is left out and named
    for name in ("ab", "AB"):
        write_windowed_png(images / f"{name}.png", phantoms[1].image_hu)
    iio.imwrite(masks / "Ab_bone.png", (phantoms[1].bone_mask * 255).astype(np.uint8))
    notes.clear()
    names = [s.name for s in folder_samples(images, masks, pixel_size_mm=0.25, notes=notes.append)]
    assert names == ["f10.png", "f12.png", "f13.png"]
    assert "1 mask(s) without an image of their name left out: Ab_bone.png" in notes


def test_a_cancel_right_after_a_validation_keeps_a_checkpoint_to_resume_from(tmp_path, pairs):
    # A Cancel (or Ctrl+C) during or just after a validation wrote no checkpoint (the last one
    # may be up to checkpoint_every_s old, or not written yet): the run could not be resumed.
    import torch

    kw = dict(samples=pairs, epochs=3, steps_per_epoch=2, batch_size=2, crop_px=64, device="cpu")
    whole = train_segmenter(tmp_path / "whole.safetensors", **kw)
    validated = []

    def cancel_on_the_first_validation(p):
        if p.phase == "validate":
            validated.append(p.step)

    out = tmp_path / "split.safetensors"
    first = train_segmenter(out, **kw, progress=cancel_on_the_first_validation, should_cancel=lambda: bool(validated))
    assert first.cancelled and first.ended == "cancelled at step 2 of 6" and first.steps_trained == 2
    assert validated == [2]  # the weights just validated are not validated again
    second = train_segmenter(out, **kw, resume=True)
    assert second.ended == "finished: 3 epochs, 6 steps" and second.steps_trained == 4
    for a, b in zip(second.history, whole.history, strict=True):  # the same run as one without a stop
        assert a["epoch"] == b["epoch"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["val_dice"] == pytest.approx(b["val_dice"], abs=1e-4)
    split_weights = torch.load(tmp_path / "split.checkpoint.pt", weights_only=True)["network"]
    for name, tensor in torch.load(tmp_path / "whole.checkpoint.pt", weights_only=True)["network"].items():
        assert torch.allclose(split_weights[name].float(), tensor.float(), atol=1e-5), name


def test_a_mask_of_another_shape_than_its_image_given_in_memory_is_refused_before_training(tmp_path, pairs):
    # folder_samples refused it; pairs given to train_segmenter (the console, the Python API)
    # trained on it silently.
    other = [(pairs[0][0], pairs[1][1], pairs[0][2]), *pairs[1:]]
    out = tmp_path / "new" / "m.safetensors"
    events = []
    with pytest.raises(CalcinosisError, match=(
            rf"training pair 1: the mask is {pairs[1][1].shape[1]}x{pairs[1][1].shape[0]} px but the image is "
            rf"{pairs[0][0].shape[1]}x{pairs[0][0].shape[0]} px; masks must match their image pixel for pixel")):
        train_segmenter(out, samples=other, epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu",
                        progress=events.append)
    assert not any(e.phase == "train" for e in events)
    assert not (tmp_path / "new").exists()  # a refused run leaves no empty folder behind
    named = [TrainingSample(pairs[0][0], pairs[0][1].T, pairs[0][2], name="f7.dcm"), *pairs[1:]]
    with pytest.raises(CalcinosisError, match=r"training pair 1 \(f7.dcm\): the mask is"):
        train_segmenter(out, samples=named, epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu")
    with pytest.raises(CalcinosisError, match="validation pair 2: the mask is"):
        train_segmenter(out, samples=pairs, val_samples=[pairs[0], other[0]], epochs=1, steps_per_epoch=1,
                        batch_size=2, crop_px=64, device="cpu")


def test_a_mask_with_soft_edges_is_read_as_drawn_and_labels_stay_bone(tmp_path):
    # An anti-aliased or smoothed 0/255 mask: every non-zero pixel was bone, widening a
    # phantom finger's bone by half, without a word.
    import imageio.v3 as iio
    from scipy import ndimage as ndi

    from napari_calcinosis.train import _read_mask

    bone = make_phantom(331, max_size_px=200).bone_mask
    for blur in (0.5, 1.0, 2.0):
        soft = np.clip(ndi.gaussian_filter(bone * 255.0, blur), 0, 255).astype(np.uint8)  # 254 inside where it rounds down
        iio.imwrite(tmp_path / "soft_bone.png", soft)
        notes = []
        read = _read_mask(tmp_path / "soft_bone.png", notes.append)
        assert (soft > 0).sum() > 1.1 * bone.sum()  # what every non-zero pixel made of it
        assert abs(int(read.sum()) - int(bone.sum())) <= 0.02 * bone.sum(), blur
        assert (read ^ bone).sum() <= 0.05 * bone.sum(), blur
        assert len(notes) == 1 and notes[0].startswith("mask soft_bone.png has soft edges (") and (
            "bone is taken where it is at least half as bright as its brightest pixel" in notes[0])
        red = np.zeros(soft.shape + (3,), np.uint8)
        red[..., 0] = soft  # anti-aliased in colour, as drawing programs save it
        iio.imwrite(tmp_path / "red_bone.png", red)
        assert np.array_equal(_read_mask(tmp_path / "red_bone.png"), read)
    # labels, a few or many, each a region of its own value: all bone, as before, and said
    labels = np.zeros((200, 200), np.uint8)
    for i in range(20):
        row, col = divmod(i, 5)
        labels[10 + 45 * row: 40 + 45 * row, 10 + 38 * col: 38 + 38 * col] = i + 1
    labels[100:103, 3:6] = 2  # a speck
    iio.imwrite(tmp_path / "many_bone.png", labels)
    notes = []
    assert np.array_equal(_read_mask(tmp_path / "many_bone.png", notes.append), labels > 0)
    assert notes == [("mask many_bone.png holds labels 1, 2, 3, 4, 5, 6 and 14 more: all are taken as bone; if some "
                      "mark deposits or other tissue, save a mask of the bone alone")]
    colours = np.zeros(labels.shape + (3,), np.uint8)
    colours[..., 0], colours[..., 1], colours[..., 2] = 255 * (labels == 1), 255 * (labels == 2), 255 * (labels > 2)
    iio.imwrite(tmp_path / "colours_bone.png", colours)
    notes = []
    assert np.array_equal(_read_mask(tmp_path / "colours_bone.png", notes.append), labels > 0)
    assert notes == [("mask colours_bone.png holds colours #0000ff, #00ff00, #ff0000: all are taken as bone; if some "
                      "mark deposits or other tissue, save a mask of the bone alone")]
    few = (bone * 2 + ndi.binary_dilation(bone, iterations=2) * ~bone).astype(np.uint8)  # a rim labelled 1 around bone 2
    iio.imwrite(tmp_path / "few_bone.png", few)
    assert np.array_equal(_read_mask(tmp_path / "few_bone.png"), few > 0)
    # thin labels, no 3 x 3 square of their own: a 2 px cortex labelled 1 around marrow 2 and a
    # deposit 3; five 2 px bones labelled 1-5 in 16 bits. They lost their pixels as 'soft edges'.
    ring = np.zeros((128, 128), np.uint8)
    ring[20:100, 30:70], ring[22:98, 32:68], ring[50:54, 90:94] = 1, 2, 3
    thin = np.zeros((128, 128), np.uint16)
    for i in range(5):
        thin[10:120, 10 + 20 * i: 12 + 20 * i] = i + 1
    for name, mask in (("ring_bone.png", ring), ("thin_bone.png", thin)):
        iio.imwrite(tmp_path / name, mask)
        notes = []
        assert np.array_equal(_read_mask(tmp_path / name, notes.append), mask > 0), name
        assert len(notes) == 1 and notes[0].startswith(f"mask {name} holds labels 1, 2, 3") and "soft" not in notes[0]


def test_a_models_card_names_its_training_folders_in_full(tmp_path, monkeypatch):
    import imageio.v3 as iio

    images, masks, phantoms = _exports_and_a_masks_folder(tmp_path, ("f0", "f1"), (341, 342))
    for name, p in zip(("f0", "f1"), phantoms):
        iio.imwrite(masks / f"{name}_bone.png", (p.bone_mask * 255).astype(np.uint8))
    monkeypatch.chdir(tmp_path)
    result = train_segmenter("m.safetensors", images_dir="images", masks_dir="masks", pixel_size_mm=0.25, epochs=1,
                             steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu")
    card = json.loads(result.model_path.with_suffix(".json").read_text())
    assert card["training"]["data"] == f"2 image/mask pairs from {images.resolve()} and {masks.resolve()}"
