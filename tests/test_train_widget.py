"""The Train / fine-tune dock widget: a couple of tiny CPU steps, cancel, errors."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from napari_calcinosis import make_phantom

SCREENSHOTS = bool(os.environ.get("NAPARI_CALCINOSIS_SCREENSHOTS"))
DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


@pytest.fixture(scope="module")
def phantoms():
    return [make_phantom(seed, max_size_px=200) for seed in (11, 12)]


def _add_pairs(viewer, widget, phantoms):
    for i, p in enumerate(phantoms):
        image = viewer.add_image(p.image_hu, scale=p.spacing_mm, name=f"finger {i}", colormap="gray",
                                 contrast_limits=(-300, 1500))
        labels = viewer.add_labels(p.bone_mask.astype(int), scale=p.spacing_mm, name=f"finger {i} bone", opacity=0.3)
        widget.add_pair(image, labels)


def _tiny_settings(widget, out, epochs=1, steps=2):
    widget.epochs.setValue(epochs)
    widget.steps_per_epoch.setText(str(steps))
    widget.batch_size.setValue(2)
    widget.crop_px.setValue(64)
    widget.device_combo.setCurrentText("cpu")
    widget.output_edit.setText(str(out))


def test_train_two_steps_registers_model(make_napari_viewer, qtbot, tmp_path, phantoms):
    from napari_calcinosis._train_widget import (
        TRAINED_MODELS,
        TrainWidget,
        trained_model_events,
    )

    viewer = make_napari_viewer(show=SCREENSHOTS)
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train / fine-tune", area="right")
    _add_pairs(viewer, widget, phantoms)
    assert widget.pairs_list.count() == 2 and widget.train_button.isEnabled()
    assert widget.device_combo.findText("auto") >= 0 and widget.device_combo.findText("cpu") >= 0
    assert "cpu" in widget.device_label.text()

    out = tmp_path / "m.safetensors"
    # A few more steps for the docs screenshot, fine-tuning the bundled model, so that the curves show something.
    epochs, steps = (3, 4) if SCREENSHOTS else (1, 2)
    _tiny_settings(widget, out, epochs, steps)
    if SCREENSHOTS:
        widget.finetune_checkbox.setChecked(True)
        widget.learning_rate.setValue(0.0005)
    fired, fired_module = [], []
    widget.model_trained.connect(fired.append)
    trained_model_events.model_trained.connect(fired_module.append)

    worker = widget.start()
    assert worker is not None and widget.running
    assert not widget.train_button.isEnabled() and widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    trained_model_events.model_trained.disconnect(fired_module.append)

    assert out.exists() and out.with_suffix(".json").exists()
    assert out in TRAINED_MODELS
    assert fired == [out] and fired_module == [out]
    assert widget.progress_bar.maximum() == epochs * steps
    assert widget.progress_bar.value() == widget.progress_bar.maximum()
    assert "Dice" in widget.status.text() and "done" in widget.status.text()
    assert widget.last_result is not None and not widget.last_result.cancelled
    assert widget.train_button.isEnabled() and not widget.cancel_button.isEnabled()
    # a fine-tune is validated once more, before its first step: the model to beat
    assert len(widget._loss_xy[0]) == epochs * steps and len(widget._dice_xy[0]) == epochs + (1 if SCREENSHOTS else 0)
    assert widget.output_edit.text() == str(out)  # a name the user typed is left alone
    # A model under POOR_DICE is offered with a warning (two steps from scratch give one).
    from napari_calcinosis._train_widget import POOR_DICE

    poor = not widget.last_result.best_val_dice >= POOR_DICE
    assert ("warning: the model's validation Dice is" in widget.status.text()) == poor
    assert poor or SCREENSHOTS

    if SCREENSHOTS:
        import imageio.v3 as iio

        viewer.window._qt_window.resize(1500, 950)
        for layer in list(viewer.layers)[:2]:  # show one finger, not two overlapping ones
            layer.visible = False
        viewer.reset_view()
        qtbot.wait(300)
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        iio.imwrite(DOCS_IMAGES / "widget_train.png", viewer.screenshot(canvas_only=False, flash=False))


def test_cancel_keeps_best_model(make_napari_viewer, qtbot, tmp_path, phantoms):
    from napari_calcinosis._train_widget import TRAINED_MODELS, TrainWidget

    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    _add_pairs(viewer, widget, phantoms)
    out = tmp_path / "c.safetensors"
    _tiny_settings(widget, out, epochs=5, steps=50)
    widget.finetune_checkbox.setChecked(True)  # init_model = the bundled model

    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.last_progress is not None and widget.last_progress.phase == "train", timeout=60000)
    widget.cancel()
    assert not widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)

    assert "cancelled" in widget.status.text() and str(out) in widget.status.text()
    assert widget.last_result.cancelled
    assert widget.last_progress.phase == "cancelled"
    assert widget.last_progress.step < 20  # of 250
    assert widget.progress_bar.value() < widget.progress_bar.maximum() == 250
    assert out.exists() and out in TRAINED_MODELS
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["epochs"] == 5 and card["training"]["crop_px"] == 64
    assert widget.train_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_a_fine_tune_cancelled_before_its_first_step_says_its_start_is_kept(make_napari_viewer, qtbot, tmp_path,
                                                                           phantoms):
    from napari_calcinosis._train_widget import TrainWidget

    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    _add_pairs(viewer, widget, phantoms)
    out = tmp_path / "f.safetensors"
    _tiny_settings(widget, out, epochs=1, steps=2)
    widget.finetune_checkbox.setChecked(True)
    assert widget.start() is not None
    widget.cancel()  # before the worker reaches its first step
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)

    assert widget.last_result.cancelled and widget.last_result.steps_trained == 0
    assert widget.status.text().startswith("cancelled before training — the model it starts from is kept as it is at ")
    assert str(out) in widget.status.text() and out.exists()


def test_bad_inputs_show_in_status(make_napari_viewer, qtbot, tmp_path, phantoms, monkeypatch):
    from napari_calcinosis import CalcinosisError
    from napari_calcinosis import train as train_module
    from napari_calcinosis._train_widget import TrainWidget

    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    assert not widget.train_button.isEnabled()
    assert widget.start() is None and "no training pairs" in widget.status.text()

    p = phantoms[0]
    image = viewer.add_image(p.image_hu, scale=p.spacing_mm)
    small = viewer.add_labels(np.zeros((10, 10), int))
    with pytest.raises(CalcinosisError, match="pixel for pixel"):
        widget.add_pair(image, small)
    # Through the buttons: the error lands in the status, not in an exception.
    widget.image_combo.setCurrentText(image.name)
    widget.labels_combo.setCurrentText(small.name)
    widget.add_pair_button.click()
    assert "pixel for pixel" in widget.status.text() and widget.pairs_list.count() == 0

    labels = viewer.add_labels(p.bone_mask.astype(int), scale=p.spacing_mm)
    widget.add_pair(image, labels)
    _tiny_settings(widget, tmp_path / "e.safetensors")
    widget.crop_px.setValue(70)
    assert widget.start() is None and "multiple of 16" in widget.status.text()
    widget.crop_px.setValue(64)

    def failing(*args, **kwargs):
        raise CalcinosisError("the GPU caught fire")

    monkeypatch.setattr(train_module, "train_segmenter", failing)
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=10000)
    assert "the GPU caught fire" in widget.status.text()
    assert widget.train_button.isEnabled()

    # Removing a layer drops its pair.
    viewer.layers.remove(labels)
    assert widget.pairs_list.count() == 0 and not widget.train_button.isEnabled()


def test_a_crashing_worker_shows_a_notification_and_leaves_the_widget_usable(make_napari_viewer, qtbot, tmp_path,
                                                                               phantoms, monkeypatch):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    from napari_calcinosis import TrainProgress
    from napari_calcinosis import train as train_module
    from napari_calcinosis._train_widget import TrainWidget

    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    _add_pairs(viewer, widget, phantoms)
    out = tmp_path / "x.safetensors"
    _tiny_settings(widget, out)
    real = train_module.train_segmenter

    def crash(*args, progress, **kwargs):
        progress(TrainProgress("train", 3, 10, 1, 5, loss=0.5, device="cuda"))
        raise RuntimeError("CUDA error: an illegal memory access was encountered")  # not one of ours

    monkeypatch.setattr(train_module, "train_segmenter", crash)
    seen = len(notification_manager.records)
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=20000)
    errors = [n for n in notification_manager.records[seen:] if n.severity == NotificationSeverity.ERROR]
    assert len(errors) == 1 and "illegal memory access" in str(errors[0].message)
    assert "training failed: RuntimeError: CUDA error" in widget.status.text()
    assert (widget.progress_bar.minimum(), widget.progress_bar.maximum(), widget.progress_bar.value()) == (0, 1, 0)
    assert widget.train_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert len(viewer.layers) == 4  # the layers are as they were

    monkeypatch.setattr(train_module, "train_segmenter", real)  # the next run works
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert "done" in widget.status.text() and out.exists()


def test_opening_the_widget_warms_up_the_network_library(make_napari_viewer):
    # Pressing Train should not wait for the import of segmentation-models-pytorch nor for the
    # GPU to start: the widget does both in the background when it opens, once per session.
    import sys

    from napari_calcinosis._train_widget import _WARM_UP, TrainWidget, start_warm_up
    from napari_calcinosis.segment import select_device

    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    thread = _WARM_UP["thread"]
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert "error" not in _WARM_UP, _WARM_UP.get("error")
    assert _WARM_UP["device"] == str(select_device(widget.device_combo.currentText()))
    assert _WARM_UP["cuda_training"] is None  # the fused batch norm's kernels: none wanted, or ready
    assert "segmentation_models_pytorch" in sys.modules
    assert start_warm_up() is thread  # a second widget does not start another


def test_a_failed_warm_up_is_shown_before_train_is_pressed(make_napari_viewer, qtbot, monkeypatch):
    # A broken GPU driver or network library must be said in the widget as soon as the
    # background warm-up meets it, not only after the user has set everything up and pressed Train.
    from napari_calcinosis import _train_widget, segment

    def broken(device="auto"):
        raise RuntimeError("CUDA driver version is insufficient\nfor CUDA runtime version")

    monkeypatch.setattr(_train_widget, "_WARM_UP", {})  # this session's warm-up has not run yet
    monkeypatch.setattr(segment, "warm_up", broken)
    widget = _train_widget.TrainWidget(make_napari_viewer())
    qtbot.waitUntil(lambda: bool(widget.warm_up_error), timeout=30000)
    expected = "RuntimeError: CUDA driver version is insufficient for CUDA runtime version"
    assert widget.warm_up_error == expected
    assert "did not start" in widget.device_label.text() and expected in widget.device_label.toolTip()
    assert widget.status.text().startswith("warning: the device could not be started") and expected in widget.status.text()
    assert not widget._warm_up_timer.isActive()


def test_an_unwritable_output_is_refused_before_training(make_napari_viewer, tmp_path):
    # Said when Train is pressed, not after the first checkpoint fails with a traceback.
    import napari_calcinosis._train_widget as tw
    from napari_calcinosis import CalcinosisError

    viewer = make_napari_viewer()
    widget = tw.TrainWidget(viewer)
    image = viewer.add_image(np.zeros((64, 64), np.float32), scale=(0.25, 0.25))
    labels = viewer.add_labels(np.zeros((64, 64), np.uint8))
    widget.add_pair(image, labels)
    widget.output_edit.setText(str(tmp_path / "new folder" / "model.safetensors"))  # typed: made, as the CLI does
    assert widget.training_kwargs()["out"] == tmp_path / "new folder" / "model.safetensors"
    assert (tmp_path / "new folder").is_dir()
    for folder in (f"{tmp_path / 'runs'}/", str(tmp_path / "new folder")):  # a folder, typed or existing: into it
        widget.output_edit.setText(folder)
        out = widget.training_kwargs()["out"]
        assert out.parent == Path(folder.rstrip("/")) and out.suffix == ".safetensors" and out.parent.is_dir()
    (tmp_path / "notes.txt").write_text("not a folder")
    widget.output_edit.setText(str(tmp_path / "notes.txt" / "sub" / "model.safetensors"))
    with pytest.raises(CalcinosisError, match="notes.txt/sub cannot be made"):
        widget.training_kwargs()
    assert widget.start() is None and "cannot be made" in widget.status.text()
    (tmp_path / "a.safetensors").mkdir()
    widget.output_edit.setText(str(tmp_path / "a.safetensors"))
    with pytest.raises(CalcinosisError, match="is a folder"):
        widget.training_kwargs()
    widget.output_edit.setText(str(tmp_path / "model"))
    assert widget.training_kwargs()["out"] == tmp_path / "model.safetensors"


def test_the_default_output_folder_is_made_on_first_use(make_napari_viewer, tmp_path, monkeypatch):
    import napari_calcinosis._train_widget as tw

    monkeypatch.setattr(tw.Path, "home", classmethod(lambda cls: tmp_path))
    viewer = make_napari_viewer()
    widget = tw.TrainWidget(viewer)
    image = viewer.add_image(np.zeros((64, 64), np.float32), scale=(0.25, 0.25))
    widget.add_pair(image, viewer.add_labels(np.zeros((64, 64), np.uint8)))
    widget.output_edit.setText(str(tw.default_output_path()))
    out = widget.training_kwargs()["out"]
    assert out.parent == tmp_path / "napari-calcinosis-models" and out.parent.is_dir()


def test_a_cancelled_run_in_the_default_file_stays_there_to_resume(make_napari_viewer, qtbot, tmp_path, phantoms,
                                                                   monkeypatch):
    # After a Cancel the box moved on to a new default file: Train started afresh, and the
    # cancelled run's checkpoint was never offered.
    import itertools

    import napari_calcinosis._train_widget as tw

    names = (tmp_path / f"phalanx_{i}.safetensors" for i in itertools.count())
    monkeypatch.setattr(tw, "default_output_path", lambda: next(names))
    widget = tw.TrainWidget(make_napari_viewer())
    _add_pairs(widget.viewer, widget, phantoms)
    first = Path(widget.output_edit.text())
    _tiny_settings(widget, first, epochs=5, steps=50)  # the default file, as it was
    widget.start()
    qtbot.waitUntil(lambda: widget.last_progress is not None and widget.last_progress.phase == "train", timeout=60000)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert widget.last_result.cancelled and widget.output_edit.text() == str(first)
    asked = []
    monkeypatch.setattr(widget, "_ask_about_existing", lambda path: asked.append(path) or "")
    widget.train_button.click()
    assert asked == [first]
    # a finished run moves the box on to a new default file, so that the next run does not replace it
    again = tw.TrainWidget(widget.viewer)
    again.add_pair(*widget.pairs[0])
    done = Path(again.output_edit.text())
    _tiny_settings(again, done)
    again.start()
    qtbot.waitUntil(lambda: not again.running, timeout=60000)
    assert done.exists() and again.output_edit.text() not in ("", str(done))


def test_training_into_an_existing_model_asks_first(make_napari_viewer, qtbot, tmp_path, phantoms, monkeypatch):
    # The CLI asks for --overwrite; the widget replaced a good model without a word.
    import napari_calcinosis._train_widget as tw

    widget = tw.TrainWidget(make_napari_viewer())
    _add_pairs(widget.viewer, widget, phantoms)
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"a model trained for hours")
    _tiny_settings(widget, out)
    asked = []
    monkeypatch.setattr(widget, "_ask_about_existing", lambda path: asked.append(path) or "")
    widget.train_button.click()
    assert asked == [out] and not widget.running
    assert out.read_bytes() == b"a model trained for hours" and "kept m.safetensors" in widget.status.text()
    assert widget.start() is None  # from a script: refused, no dialog to wait on
    unfinished = tmp_path / "run.safetensors"  # a CLI run cut short before its first model
    (tmp_path / "run.checkpoint.pt").write_bytes(b"hours of training")
    widget.output_edit.setText(str(unfinished))
    widget.train_button.click()
    assert asked[-1] == unfinished and not widget.running
    widget.output_edit.setText(str(out))
    monkeypatch.setattr(widget, "_ask_about_existing", lambda path: "replace")
    widget.train_button.click()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert out.read_bytes() != b"a model trained for hours"


def _answer_dialog(qtbot, button_text: str, seen: list):
    """Press ``button_text`` in the next modal message box, recording its buttons and text."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication, QMessageBox

    def press():
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(50, press)
            return
        seen.append(([b.text().replace("&", "") for b in box.buttons()], box.text()))
        next(b for b in box.buttons() if b.text().replace("&", "") == button_text).click()

    QTimer.singleShot(50, press)


def test_train_again_resumes_a_run_from_its_checkpoint(make_napari_viewer, qtbot, tmp_path, phantoms):
    # The CLI has --resume; the widget could only replace a run, so a run cancelled (or a napari
    # closed) after an hour on a laptop started again from step 0.
    import napari_calcinosis._train_widget as tw

    widget = tw.TrainWidget(make_napari_viewer())
    _add_pairs(widget.viewer, widget, phantoms)
    out = tmp_path / "r.safetensors"
    _tiny_settings(widget, out, epochs=1, steps=2)
    widget.start()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert out.exists() and out.with_name("r.checkpoint.pt").exists()
    first = out.read_bytes()

    widget.epochs.setValue(2)  # train the finished run longer
    seen = []
    _answer_dialog(qtbot, "Resume", seen)
    widget.train_button.click()
    assert seen and sorted(seen[0][0]) == ["Cancel", "Replace", "Resume"] and str(out) in seen[0][1]
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert widget._loss_xy[0] == [3, 4]  # steps 1-2 were the first run's
    assert "done" in widget.status.text() and widget.last_result.epochs_done == 2
    assert json.loads(out.with_suffix(".json").read_text())["training"]["ended"] == "finished: 2 epochs, 4 steps"
    assert out.read_bytes() != first or widget.last_result.best_epoch == 1  # kept unless epoch 2 did better

    # nothing left to resume, and other settings: said in the status, with the way out; nothing replaced
    kept = out.read_bytes()
    for change, said, advice in ((lambda: None, "nothing to resume", "raise Epochs and Resume"),
                                 (lambda: widget.batch_size.setValue(3), "the batch size", "choose Replace to start afresh")):
        change()
        _answer_dialog(qtbot, "Resume", seen)
        widget.train_button.click()
        qtbot.waitUntil(lambda: not widget.running, timeout=60000)
        assert said in widget.status.text() and advice in widget.status.text()
        assert "--resume" not in widget.status.text()  # the command line's advice, not the widget's
        assert out.read_bytes() == kept
    widget.batch_size.setValue(2)

    # a run from scratch resumed with 'fine-tune from' ticked is still from scratch (its card said otherwise)
    widget.epochs.setValue(3)
    widget.finetune_checkbox.setChecked(True)
    widget.init_edit.setText(str(tmp_path / "gone.safetensors"))  # nor does a missing start model matter
    _answer_dialog(qtbot, "Resume", seen)
    widget.train_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert widget.last_result is not None and widget.last_result.epochs_done == 3, widget.status.text()
    assert "fine_tuned_from" not in json.loads(out.with_suffix(".json").read_text())["training"]
    import torch

    assert torch.load(out.with_name("r.checkpoint.pt"), weights_only=True)["fine_tuned_from"] is None
    widget.finetune_checkbox.setChecked(False)
    kept = out.read_bytes()

    _answer_dialog(qtbot, "Cancel", seen)  # the dialog's Cancel keeps everything
    widget.train_button.click()
    assert not widget.running and "kept r.safetensors" in widget.status.text() and out.read_bytes() == kept

    # a model with no checkpoint beside it offers Replace only
    out.with_name("r.checkpoint.pt").unlink()
    _answer_dialog(qtbot, "Cancel", seen)
    widget.train_button.click()
    assert sorted(seen[-1][0]) == ["Cancel", "Replace"] and not widget.running


def test_fine_tune_from_a_model_of_ones_own(make_napari_viewer, qtbot, tmp_path, phantoms):
    # A lab fine-tunes, corrects more masks, and fine-tunes again from its own model: the widget
    # could only start from the bundled one.
    import napari_calcinosis._train_widget as tw

    widget = tw.TrainWidget(make_napari_viewer())
    _add_pairs(widget.viewer, widget, phantoms)
    assert not widget.init_edit.isEnabled()
    widget.finetune_checkbox.setChecked(True)
    assert widget.init_edit.isEnabled()
    assert widget.training_kwargs()["init_model"].name == "phalanx_unet.safetensors"  # blank: the bundled model
    widget.init_edit.setText(str(tmp_path / "missing.safetensors"))
    widget.train_button.click()
    assert not widget.running and "missing.safetensors, is not a file" in widget.status.text()

    own = tmp_path / "lab.safetensors"
    _tiny_settings(widget, own)
    widget.finetune_checkbox.setChecked(False)
    widget.start()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    again = tmp_path / "lab2.safetensors"
    _tiny_settings(widget, again)
    widget.finetune_checkbox.setChecked(True)
    widget.init_edit.setText(str(own))
    widget.start()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    card = json.loads(again.with_suffix(".json").read_text())
    assert card["training"]["fine_tuned_from"]["file"] == str(own)
    assert len(widget._dice_xy[0]) == 2  # its own model validated first, as the one to beat

    widget.init_edit.setText(str(tmp_path / "notes.safetensors"))
    (tmp_path / "notes.safetensors").write_text("not a model")
    _tiny_settings(widget, tmp_path / "lab3.safetensors")
    widget.start()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert widget.status.text().startswith("error:") and "notes.safetensors" in widget.status.text()


def test_fine_tuning_on_masks_of_the_deposits_is_said_in_a_notification(make_napari_viewer, qtbot, tmp_path,
                                                                       phantoms):
    # The starting model's poor Dice on the masks, said before the first step: in the status line
    # alone, the next step's progress would replace it at once.
    from napari.utils.notifications import NotificationSeverity, notification_manager

    import napari_calcinosis._train_widget as tw

    viewer = make_napari_viewer()
    widget = tw.TrainWidget(viewer)
    for i, p in enumerate(phantoms):
        image = viewer.add_image(p.image_hu, scale=p.spacing_mm, name=f"finger {i}")
        widget.add_pair(image, viewer.add_labels((p.lesion_labels > 0).astype(int), scale=p.spacing_mm,
                                                 name=f"finger {i} deposits"))
    _tiny_settings(widget, tmp_path / "deposits.safetensors")
    widget.finetune_checkbox.setChecked(True)
    seen = len(notification_manager.records)
    widget.start()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    warned = [n.message for n in notification_manager.records[seen:] if n.severity == NotificationSeverity.WARNING]
    assert any(m.startswith("the model it starts from marks the bone of your validation masks poorly") for m in warned)


def test_the_layers_chosen_stay_chosen_when_renamed(make_napari_viewer, phantoms):
    import napari_calcinosis._train_widget as tw

    widget = tw.TrainWidget(make_napari_viewer())
    _add_pairs(widget.viewer, widget, phantoms)
    widget.image_combo.setCurrentText("finger 1")
    widget.labels_combo.setCurrentText("finger 1 bone")
    widget.viewer.layers["finger 1"].name = "patient 7"  # chosen by its name, 'finger 0' was chosen instead
    widget.viewer.layers["finger 1 bone"].name = "patient 7 bone"
    assert (widget.image_combo.currentText(), widget.labels_combo.currentText()) == ("patient 7", "patient 7 bone")


def test_a_pair_says_what_looks_wrong(make_napari_viewer, phantoms):
    import napari_calcinosis._train_widget as tw

    viewer = make_napari_viewer()
    widget = tw.TrainWidget(viewer)
    p = phantoms[0]
    png = viewer.add_image(np.clip((p.image_hu + 300) / 1500 * 255, 0, 255).astype(np.uint8), name="export")
    labels = viewer.add_labels(p.bone_mask.astype(np.uint8) * np.where(np.arange(p.bone_mask.shape[1]) % 2, 1, 3))
    widget.add_pair(png, labels)
    text = widget.status.text()
    assert "'export' has scale 1" in text and "8-bit export" in text and "labels 1, 3 of" in text


_CLOSE_MID_RUN = """
import json, sys
import napari
from qtpy.QtCore import QThreadPool, QTimer
from napari_calcinosis import load_model, make_phantom
from napari_calcinosis._train_widget import TrainWidget

out = sys.argv[1]
viewer = napari.Viewer(show=True)
widget = TrainWidget(viewer)
viewer.window.add_dock_widget(widget, name="Train / fine-tune")
for i, p in enumerate(make_phantom(seed, max_size_px=120) for seed in (11, 12)):
    widget.add_pair(viewer.add_image(p.image_hu, scale=p.spacing_mm, name=f"f{i}"),
                    viewer.add_labels(p.bone_mask.astype(int), scale=p.spacing_mm, name=f"f{i} bone"))
widget.epochs.setValue(50)
widget.steps_per_epoch.setText("4")
widget.batch_size.setValue(2)
widget.crop_px.setValue(64)
widget.device_combo.setCurrentText("cpu")
widget.output_edit.setText(out)
widget.start(replace=True)
timer = QTimer()


def close_once_training():
    p = widget.last_progress
    if p is not None and p.phase == "train" and p.step >= 5:  # past the first epoch's validation
        timer.stop()
        viewer.close()


timer.timeout.connect(close_once_training)
timer.start(20)
napari.run()
QThreadPool.globalInstance().waitForDone(120_000)
import torch
ckpt = torch.load(out.replace(".safetensors", ".checkpoint.pt"), weights_only=True)
print(json.dumps({"step": ckpt["step"], "ended": load_model(out).card["training"]["ended"]}))
"""


def test_closing_the_viewer_mid_run_stops_it_keeping_a_checkpoint(tmp_path):
    # Closing napari while training deleted the widget, and with it the object the training
    # thread reported to: Python crashed at the next step, and the run went on until then.
    import subprocess
    import sys

    out = tmp_path / "m.safetensors"
    script = tmp_path / "close_mid_run.py"
    script.write_text(_CLOSE_MID_RUN)
    done = subprocess.run([sys.executable, "-X", "faulthandler", str(script), str(out)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]  # -11: a segmentation fault
    kept = json.loads(done.stdout.strip().splitlines()[-1])
    assert 5 <= kept["step"] < 200  # stopped soon after the close, of 50 x 4 steps
    assert kept["ended"] == f"cancelled at step {kept['step']} of 200"
