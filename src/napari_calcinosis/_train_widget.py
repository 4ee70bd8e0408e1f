"""The *Train / fine-tune* dock widget.

A thin Qt front end to :func:`napari_calcinosis.train.train_segmenter`: the user pairs Image
layers (HU, ``scale`` = pixel spacing in mm) with Labels layers (any label > 0 is bone), picks a
schedule and a device, and trains in a napari ``thread_worker``. Progress arrives through the
engine's callback and is forwarded to the GUI thread by a queued Qt signal; Cancel sets a flag
that the engine polls before each step, so training stops at the next step and the best model
saved so far is kept.

Every model this widget saves is appended to :data:`TRAINED_MODELS` and announced through
:data:`trained_model_events` (module-wide) and the widget's own ``model_trained`` signal, so the
segmentation widget can offer it.
"""

from __future__ import annotations

import math
import os
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
from psygnal import Signal
from qtpy.QtCore import QObject, Qt, QTimer
from qtpy.QtCore import Signal as QtSignal
from qtpy.QtGui import QIntValidator
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._errors import CalcinosisError
from .io import _one_line
from .train import POOR_DICE, ResumeRefused  # under POOR_DICE a trained model is offered with a warning

# What to do in this widget when a run cannot be resumed (ResumeRefused.kind)
_RESUME_ADVICE = {
    "checkpoint": "press Train and choose Replace to start afresh",
    "settings": "set them as the run had them and Resume, or press Train and choose Replace to start afresh",
    "epochs": "raise Epochs and Resume to train it longer",
}

__all__ = ["TRAINED_MODELS", "TrainWidget", "available_devices", "default_output_path", "trained_model_events"]

#: Every model saved by a TrainWidget in this session, oldest first.
TRAINED_MODELS: list[Path] = []


class _TrainedModelEvents:
    """Module-wide events: ``model_trained(path)`` fires once per saved model, from any widget."""

    model_trained = Signal(object)


trained_model_events = _TrainedModelEvents()

_DOT = " \u00b7 "  # " · "


def default_output_path() -> Path:
    """``~/napari-calcinosis-models/phalanx_<timestamp>.safetensors``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path.home() / "napari-calcinosis-models" / f"phalanx_{stamp}.safetensors"


def available_devices() -> list[str]:
    """``auto`` and ``cpu``, then ``cuda`` and ``mps`` where this machine has them."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def format_eta(seconds) -> str:
    """``mm:ss`` (``h:mm:ss`` past an hour), ``--:--`` when unknown."""
    if not _finite(seconds) or seconds < 0:
        return "--:--"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _fmt_dice(x) -> str:
    return f"{x:.3f}" if _finite(x) and x >= 0 else "\u2014"


_WARM_UP: dict = {}


def start_warm_up(device: str = "auto") -> threading.Thread:
    """Import the network library and start the GPU in the background, once per session.

    That is seconds of work (importing segmentation-models-pytorch, creating the CUDA context,
    loading cuDNN, compiling the fused batch norm's kernels where a long run would use them)
    that pressing Train would otherwise wait for; the widget starts it when it opens. An error
    is kept in ``_WARM_UP["error"]`` (one line) for the widget to show as soon as the warm-up
    ends, before Train is pressed; training reports it again, with its own message, if it fails
    the same way.
    """
    if "thread" not in _WARM_UP:

        def work():
            try:
                from .segment import warm_up
                from .train import prepare_cuda_training

                _WARM_UP["device"] = warm_up(device)
                _WARM_UP["cuda_training"] = prepare_cuda_training(device)
            except Exception as exc:  # shown by the widget; training says it again if it fails too
                _WARM_UP["error"] = f"{type(exc).__name__}: {_one_line(exc)}"

        # not a daemon: an import cut short by the interpreter's exit can crash it
        _WARM_UP["thread"] = threading.Thread(target=work, name="napari-calcinosis warm-up")
        _WARM_UP["thread"].start()
    return _WARM_UP["thread"]


def _holds_work(out: Path) -> bool:
    """Whether a run into ``out`` would replace a model, or the checkpoint of an unfinished run."""
    from .train import _checkpoint_path

    return out.exists() or _checkpoint_path(out).exists()


class _Failure:
    """What the worker returns for a CalcinosisError (superqt re-raises returned exceptions)."""

    def __init__(self, message: str):
        self.message = message


class _ProgressBridge(QObject):
    """Lives in the GUI thread; emitting from the training thread queues the call onto it.

    It has no Qt parent: closing the viewer deletes the widget with its children while the
    training thread still reports, and emitting on a deleted object crashes Python."""

    progress = QtSignal(object)


class TrainWidget(QWidget):
    """Train or fine-tune the phalanx U-Net on image/labels layer pairs of the viewer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    #: Fires with the :class:`~pathlib.Path` of each model this widget saves.
    model_trained = Signal(object)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.pairs: list[tuple] = []  # (image layer, labels layer)
        self.last_progress = None  # the latest TrainProgress
        self.last_result = None  # the latest TrainResult
        self._worker = None
        self._cancel_event = threading.Event()
        self._running = False
        self._last_val_dice = float("nan")
        self._loss_xy: tuple[list, list] = ([], [])
        self._dice_xy: tuple[list, list] = ([], [])
        self._image_layers: list = []
        self._labels_layers: list = []
        self._bridge = _ProgressBridge()
        self._bridge.progress.connect(self._on_progress)
        # Closing the viewer deletes this widget without a closeEvent: the run is cancelled as by
        # Cancel (it stops after the step under way, keeping its best model and a checkpoint to
        # resume from), and napari waits for it before it quits. Not a method of self, which is
        # gone by then.
        cancel_event = self._cancel_event
        self.destroyed.connect(lambda *_: cancel_event.set())

        content = QWidget()  # in a scroll area (below): with every widget docked, it scrolls
        layout = QVBoxLayout(content)
        layout.setContentsMargins(4, 4, 4, 4)

        # ---- training pairs
        pairs_box = QGroupBox("Training pairs (image in HU + bone labels)")
        pairs_form = QFormLayout(pairs_box)
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("A 2D Image layer in HU; its scale is taken as the pixel spacing in mm.")
        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip("A Labels layer of the same shape: any label > 0 is bone.")
        pairs_form.addRow("Image", self.image_combo)
        pairs_form.addRow("Bone labels", self.labels_combo)
        self.add_pair_button = QPushButton("Add pair")
        self.remove_pair_button = QPushButton("Remove")
        row = QHBoxLayout()
        row.addWidget(self.add_pair_button)
        row.addWidget(self.remove_pair_button)
        pairs_form.addRow(row)
        self.pairs_list = QListWidget()
        self.pairs_list.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.pairs_list.setMaximumHeight(80)
        pairs_form.addRow(self.pairs_list)
        layout.addWidget(pairs_box)

        # ---- schedule and device
        settings_box = QGroupBox("Training")
        form = QFormLayout(settings_box)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 100_000)
        self.epochs.setValue(20)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 1024)
        self.batch_size.setValue(8)
        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(5)
        self.learning_rate.setRange(1e-5, 1.0)
        self.learning_rate.setSingleStep(1e-4)
        self.learning_rate.setValue(0.002)
        self.crop_px = QSpinBox()
        self.crop_px.setRange(32, 4096)
        self.crop_px.setSingleStep(16)
        self.crop_px.setValue(192)
        self.crop_px.setToolTip("Square training crops at the model's working spacing (0.25 mm); a multiple of 16.")
        self.steps_per_epoch = QLineEdit()
        self.steps_per_epoch.setValidator(QIntValidator(1, 10_000_000, self))
        self.steps_per_epoch.setPlaceholderText("auto")
        self.steps_per_epoch.setToolTip("Blank: one pass over the training pairs, at least 4 steps.")
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.device_label = QLabel()
        device_row = QHBoxLayout()
        device_row.addWidget(self.device_combo)
        device_row.addWidget(self.device_label, 1)
        self.finetune_checkbox = QCheckBox("fine-tune from")
        self.finetune_checkbox.setToolTip("Start from a trained model instead of random weights.")
        self.init_edit = QLineEdit()
        self.init_edit.setPlaceholderText("the bundled model")
        self.init_edit.setToolTip(
            "The model to start from: blank for the shipped phalanx U-Net, or a .safetensors file trained "
            "before (a lab's own model, to fine-tune further on newly corrected masks).")
        self.init_browse_button = QPushButton("\u2026")
        self.init_browse_button.setMaximumWidth(32)
        init_row = QHBoxLayout()
        init_row.addWidget(self.finetune_checkbox)
        init_row.addWidget(self.init_edit, 1)
        init_row.addWidget(self.init_browse_button)
        self.output_edit = QLineEdit(str(default_output_path()))
        self.output_edit.setToolTip("Best weights (.safetensors); the model card (.json) and checkpoint go beside it.")
        self._default_output = self.output_edit.text()
        self.browse_button = QPushButton("\u2026")
        self.browse_button.setMaximumWidth(32)
        out_row = QHBoxLayout()
        out_row.addWidget(self.output_edit, 1)
        out_row.addWidget(self.browse_button)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("Crop (px)", self.crop_px)
        form.addRow("Steps / epoch", self.steps_per_epoch)
        form.addRow("Device", device_row)
        form.addRow(init_row)
        form.addRow("Output", out_row)
        layout.addWidget(settings_box)
        self._settings_widgets = [pairs_box, settings_box]

        # ---- run
        buttons = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("%v / %m steps")
        layout.addWidget(self.progress_bar)
        self.status = QLabel("Add image/labels pairs, then Train.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.status)
        self._build_plot(layout)
        from ._widgets import _scroll_area

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(_scroll_area(content))

        # ---- wiring
        self.add_pair_button.clicked.connect(self._on_add_pair_clicked)
        self.remove_pair_button.clicked.connect(self.remove_selected_pairs)
        self.train_button.clicked.connect(self._on_train_clicked)
        self.cancel_button.clicked.connect(self.cancel)
        self.browse_button.clicked.connect(self._browse_output)
        self.init_browse_button.clicked.connect(self._browse_init)
        self.finetune_checkbox.toggled.connect(self._update_init_row)
        self._update_init_row()
        self.device_combo.currentTextChanged.connect(self._update_device_label)
        events = self.viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)
        events.moved.connect(self._on_layers_changed)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layer_combos)
        self._refresh_layer_combos()
        self._update_device_label(self.device_combo.currentText())
        self._update_buttons()
        start_warm_up(self.device_combo.currentText())
        # The warm-up runs in its own thread; its outcome is read here, in the GUI thread.
        self._warm_up_timer = QTimer(self)
        self._warm_up_timer.setInterval(250)
        self._warm_up_timer.timeout.connect(self._check_warm_up)
        self._warm_up_timer.start()
        self.warm_up_error = ""  # what went wrong in the warm-up, once it has ended; "" if nothing

    # ------------------------------------------------------------------------------------------
    # Plot

    def _build_plot(self, layout):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        bg, fg = "#262930", "#f0f1f2"
        try:
            from napari.utils.theme import get_theme

            theme = get_theme(self.viewer.theme)
            bg, fg = theme.background.as_hex(), theme.text.as_hex()
        except Exception:  # an unknown theme: keep the dark defaults
            pass
        self.figure = Figure(figsize=(4, 2.2), facecolor=bg, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        ax = self.figure.add_subplot(111)
        ax2 = ax.twinx()
        for a in (ax, ax2):
            a.set_facecolor(bg)
            a.tick_params(colors=fg, labelsize=7)
            for spine in a.spines.values():
                spine.set_color(fg)
        ax.set_xlabel("step", color=fg, fontsize=8)
        ax.set_ylabel("loss", color="#4fa3ff", fontsize=8)
        ax2.set_ylabel("val Dice", color="#ffb000", fontsize=8)
        ax2.set_ylim(0, 1.05)
        (self._loss_line,) = ax.plot([], [], color="#4fa3ff", lw=1.2, label="loss")
        (self._dice_line,) = ax2.plot([], [], color="#ffb000", lw=1.5, marker="o", ms=4, label="val Dice")
        self._ax, self._ax2 = ax, ax2
        layout.addWidget(self.canvas, 1)

    def _redraw_plot(self):
        self._loss_line.set_data(*self._loss_xy)
        self._dice_line.set_data(*self._dice_xy)
        xs = self._loss_xy[0] + self._dice_xy[0]
        if xs:
            self._ax.set_xlim(0, max(max(xs), 1) * 1.02 + 0.5)
        if self._loss_xy[1]:
            lo, hi = min(self._loss_xy[1]), max(self._loss_xy[1])
            pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.05
            self._ax.set_ylim(max(0.0, lo - pad), hi + pad)
        self.canvas.draw_idle()

    # ------------------------------------------------------------------------------------------
    # Layers and pairs

    def _on_layers_changed(self, event=None):
        layer = getattr(event, "value", None)
        if layer is not None and getattr(event, "type", "") == "inserted":
            layer.events.name.connect(self._refresh_layer_combos)
        # Drop pairs whose layers left the viewer.
        present = {id(lyr) for lyr in self.viewer.layers}
        kept = [p for p in self.pairs if id(p[0]) in present and id(p[1]) in present]
        if len(kept) != len(self.pairs):
            self.pairs = kept
        self._refresh_layer_combos()

    def _refresh_layer_combos(self, event=None):
        from napari.layers import Image, Labels

        for combo, kind, attr in ((self.image_combo, Image, "_image_layers"), (self.labels_combo, Labels, "_labels_layers")):
            before = getattr(self, attr)
            current = before[combo.currentIndex()] if 0 <= combo.currentIndex() < len(before) else None
            layers = [lyr for lyr in self.viewer.layers if isinstance(lyr, kind)]
            setattr(self, attr, layers)
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([lyr.name for lyr in layers])
            # the layer chosen stays chosen, renamed too (by its name, the first would be)
            idx = next((i for i, lyr in enumerate(layers) if lyr is current), -1)
            if idx >= 0:
                combo.setCurrentIndex(idx)
            combo.blockSignals(False)
        self._refresh_pairs_list()

    def _refresh_pairs_list(self):
        self.pairs_list.clear()
        for image, labels in self.pairs:
            dy, dx = (float(s) for s in image.scale[-2:])
            self.pairs_list.addItem(f"{image.name}  \u2194  {labels.name}   ({dy:.3g} \u00d7 {dx:.3g} mm/px)")
        self._update_buttons()

    def add_pair(self, image_layer, labels_layer):
        """Add an (Image layer, Labels layer) training pair; raises CalcinosisError if unusable."""
        from napari.layers import Image, Labels

        if not isinstance(image_layer, Image):
            raise CalcinosisError(f"{getattr(image_layer, 'name', image_layer)!r} is not an Image layer")
        if not isinstance(labels_layer, Labels):
            raise CalcinosisError(f"{getattr(labels_layer, 'name', labels_layer)!r} is not a Labels layer")
        from ._widgets import CONVERTED, converted_message, other_readers_dicom

        if image_layer.metadata.get(CONVERTED):
            raise CalcinosisError(converted_message(image_layer))
        refusal = other_readers_dicom(image_layer)  # perhaps another file's pixels, and no pixel size
        if refusal:
            raise CalcinosisError(refusal)
        if getattr(image_layer, "rgb", False) or image_layer.data.ndim != 2:
            raise CalcinosisError(
                f"image layer {image_layer.name!r} must be a single 2D greyscale slice in HU "
                f"(it has shape {tuple(image_layer.data.shape)})"
            )
        if tuple(labels_layer.data.shape) != tuple(image_layer.data.shape):
            raise CalcinosisError(
                f"labels {labels_layer.name!r} {tuple(labels_layer.data.shape)} must match image "
                f"{image_layer.name!r} {tuple(image_layer.data.shape)} pixel for pixel"
            )
        if any(p[0] is image_layer and p[1] is labels_layer for p in self.pairs):
            raise CalcinosisError(f"the pair {image_layer.name!r} + {labels_layer.name!r} is already in the list")
        self.pairs.append((image_layer, labels_layer))
        self._refresh_pairs_list()
        from ._widgets import input_warning

        notes = [input_warning(image_layer, np.asarray(image_layer.data, np.float32))]
        values = np.unique(np.asarray(labels_layer.data))
        values = values[values != 0]
        if len(values) > 1:
            shown = ", ".join(str(v) for v in values[:6]) + (" ..." if len(values) > 6 else "")
            notes.append(f"labels {shown} of {labels_layer.name!r} are all taken as bone")
        elif not len(values):
            notes.append(f"{labels_layer.name!r} marks no bone: the network will learn that this image holds none")
        notes = [n for n in notes if n]
        self._set_status(f"{len(self.pairs)} training pair(s)" + (f" \u2014 note: {'; '.join(notes)}" if notes else "."))

    def remove_selected_pairs(self):
        rows = sorted({i.row() for i in self.pairs_list.selectedIndexes()}, reverse=True)
        if not rows and self.pairs:
            rows = [len(self.pairs) - 1]
        for r in rows:
            del self.pairs[r]
        self._refresh_pairs_list()

    def _on_add_pair_clicked(self):
        i, j = self.image_combo.currentIndex(), self.labels_combo.currentIndex()
        if i < 0 or j < 0:
            self._error("choose an Image layer and a Labels layer first")
            return
        try:
            self.add_pair(self._image_layers[i], self._labels_layers[j])
        except CalcinosisError as e:
            self._error(str(e))

    # ------------------------------------------------------------------------------------------
    # Settings

    def _update_device_label(self, choice: str):
        from .segment import select_device

        self._resolved_device = ""
        try:
            dev = select_device(choice)
        except CalcinosisError as e:
            self.device_label.setText(str(e))
            return
        self._resolved_device = dev.type
        text = f"\u2192 {dev.type}"
        if dev.type == "cuda":
            try:
                import torch

                text += f" ({torch.cuda.get_device_name(dev)})"
            except Exception:
                pass
        self.device_label.setText(text)

    def _check_warm_up(self):
        """Once the warm-up thread has ended, say in the widget if it failed: a broken GPU driver
        or network library is then known before Train is pressed, not after."""
        thread = _WARM_UP.get("thread")
        if thread is not None and thread.is_alive():
            return
        self._warm_up_timer.stop()
        error = _WARM_UP.get("error", "")
        if not error:
            return
        self.warm_up_error = error
        self.device_label.setText(f"{self.device_label.text()}  \u26a0 did not start")
        self.device_label.setToolTip(
            f"Starting the network library and the device failed in the background: {error}. "
            "Train will try again and say what fails; choose another device (cpu) to go on."
        )
        if not self._running:
            self._set_status(f"warning: the device could not be started ({error}); Train will try again")

    def _ask_about_existing(self, path: Path) -> str:
        """Ask what to do with the model or checkpoint already at ``path`` (the CLI asks for
        --resume or --overwrite): ``"resume"`` its run, ``"replace"`` it, or ``""`` to keep it."""
        from qtpy.QtWidgets import QMessageBox

        from .train import _checkpoint_path

        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("A model is already there")
        resumable = _checkpoint_path(path).exists()
        text = f"{path} already holds a trained model" if path.exists() else f"{path} is an unfinished run's place"
        if resumable:
            text += (" and the checkpoint of its run.\n\nResume carries that run on from its checkpoint: the same "
                     "pairs and settings, with more epochs to train a finished run longer.")
        box.setText(text + "\n\nReplace starts a new run in its place, even if the new model is worse.")
        resume = box.addButton("Resume", QMessageBox.ButtonRole.AcceptRole) if resumable else None
        replace = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(resume or keep)
        box.exec()
        clicked = box.clickedButton()
        if resume is not None and clicked is resume:
            return "resume"
        return "replace" if clicked is replace else ""

    def _browse_output(self):
        path, _ = QFileDialog.getSaveFileName(
            self, "Save trained model as", self.output_edit.text(), "safetensors (*.safetensors)"
        )
        if path:
            self.output_edit.setText(path)

    def _browse_init(self):
        start = self.init_edit.text().strip() or str(TRAINED_MODELS[-1] if TRAINED_MODELS else default_output_path().parent)
        path, _ = QFileDialog.getOpenFileName(self, "Fine-tune from the model", start, "safetensors (*.safetensors)")
        if path:
            self.init_edit.setText(path)
            self.finetune_checkbox.setChecked(True)

    def _update_init_row(self, *_):
        on = self.finetune_checkbox.isChecked()
        self.init_edit.setEnabled(on)

    def _init_model(self):
        """The model to fine-tune from: None (from scratch), the bundled one, or the file given."""
        if not self.finetune_checkbox.isChecked():
            return None
        text = self.init_edit.text().strip()
        if not text:
            from .segment import bundled_model_path

            path = bundled_model_path()
            if not path.exists():
                raise CalcinosisError(f"the bundled model is missing ({path}); reinstall napari-calcinosis")
            return path
        path = Path(text).expanduser()
        if not path.is_file():
            raise CalcinosisError(
                f"the model to fine-tune from, {path}, is not a file: choose it with \u2026, or leave the box empty "
                "for the bundled model")
        return path

    def _output_path(self) -> Path:
        text = self.output_edit.text().strip()
        if not text:
            raise CalcinosisError("give an output file for the trained model")
        from .segment import model_file

        given = Path(text).expanduser()
        if text.endswith(("/", os.sep)) or (given.is_dir() and given.suffix.lower() != ".safetensors"):
            given = given / default_output_path().name  # a folder: the model goes into it
        out = model_file(given)
        # Said now, not after the first epoch's checkpoint fails.
        folder = out.parent
        if not folder.exists():  # a new folder typed in the box (or the default place), made as the CLI does
            try:
                folder.mkdir(parents=True)
            except OSError as exc:
                raise CalcinosisError(f"the output folder {folder} cannot be made ({exc.strerror or exc}): choose the "
                                      "model file's place with \u2026") from None
        if not folder.is_dir():
            raise CalcinosisError(f"the output folder {folder} is a file: choose the model file's place with \u2026")
        if not os.access(folder, os.W_OK):
            raise CalcinosisError(f"the output folder {folder} cannot be written to: choose another place with \u2026")
        if out.is_dir():
            raise CalcinosisError(f"the output {out} is a folder: give a file name ending in .safetensors")
        return out

    def training_kwargs(self, resume: bool = False) -> dict:
        """The keyword arguments ``start()`` hands to ``train_segmenter`` (without callbacks).
        A resumed run starts from where its checkpoint says, whatever *fine-tune from* says."""
        if not self.pairs:
            raise CalcinosisError("no training pairs: choose an Image and a Labels layer and press Add pair")
        from .train import check_schedule

        crop = self.crop_px.value()
        steps_text = self.steps_per_epoch.text().strip()
        steps = int(steps_text) if steps_text else None
        check_schedule(self.epochs.value(), self.batch_size.value(), float(self.learning_rate.value()), crop, steps)
        init_model = None if resume else self._init_model()
        samples = []
        for image, labels in self.pairs:
            spacing = tuple(float(s) for s in image.scale[-2:])
            samples.append((np.asarray(image.data, np.float32), np.asarray(labels.data) > 0, spacing))
        return {
            "out": self._output_path(),
            "samples": samples,
            "epochs": self.epochs.value(),
            "batch_size": self.batch_size.value(),
            "learning_rate": float(self.learning_rate.value()),
            "crop_px": crop,
            "steps_per_epoch": steps,
            "device": self.device_combo.currentText(),
            "init_model": init_model,
            "resume": resume,
            "command": "napari-calcinosis Train / fine-tune widget",
        }

    # ------------------------------------------------------------------------------------------
    # Running

    @property
    def running(self) -> bool:
        return self._running

    def _on_train_clicked(self):
        try:
            out = self._output_path()
        except CalcinosisError:
            out = None  # start() says what is wrong with it
        # Asked here, where a person pressed the button; start() itself never waits on a dialog.
        answer = self._ask_about_existing(out) if out is not None and _holds_work(out) else ""
        self.start(replace=answer == "replace", resume=answer == "resume")

    def start(self, replace: bool = False, resume: bool = False):
        """Start training in a worker thread; returns the worker (None if the inputs are unusable).
        A model already in the output file is replaced only with ``replace``, or its run carried
        on from its checkpoint with ``resume`` (Train asks which)."""
        if self._running:
            return self._worker
        from napari.qt.threading import create_worker

        from .train import train_segmenter

        try:
            kwargs = self.training_kwargs(resume)
        except CalcinosisError as e:
            self._error(str(e))
            return None
        if _holds_work(kwargs["out"]) and not (replace or resume):
            self._set_status(f"kept {kwargs['out'].name}: choose another output file to train a new model")
            return None
        self._cancel_event.clear()
        self.last_progress = self.last_result = None
        self._last_val_dice = float("nan")
        self._loss_xy, self._dice_xy = ([], []), ([], [])
        self._redraw_plot()
        self.progress_bar.setRange(0, 0)  # busy until the first step reports
        self._out_path = kwargs["out"]
        bridge, cancel_event = self._bridge, self._cancel_event

        def job():
            try:
                return train_segmenter(**kwargs, progress=bridge.progress.emit, should_cancel=cancel_event.is_set)
            except ResumeRefused as e:
                return _Failure(f"{e.reason} \u2014 {_RESUME_ADVICE[e.kind]}")
            except CalcinosisError as e:  # a user-fixable problem: shown in the status, not a traceback
                return _Failure(str(e))  # (a returned exception would be re-raised by the worker)

        # An error is shown by _on_errored, not re-raised into the Qt event loop (where, without
        # napari's exception hook, it would abort the application).
        worker = create_worker(job, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._running = True
        self._update_buttons()
        self._set_status(f"starting on {self._resolved_device or kwargs['device']}\u2026")
        worker.start()
        return worker

    def cancel(self):
        """Stop at the next training step; the best model saved so far is kept."""
        if not self._running:
            return
        self._cancel_event.set()
        self.cancel_button.setEnabled(False)
        self._set_status("cancelling \u2014 stopping after this step\u2026")

    def _on_progress(self, p):
        self.last_progress = p
        if p.phase == "data":
            self._set_status(p.message or "preparing data\u2026")
            if p.message.startswith("note: "):  # kept in view as a notification: the next step's status replaces it
                from napari.utils.notifications import show_warning

                show_warning(p.message[len("note: "):])
            return
        if p.total_steps > 0:
            self.progress_bar.setRange(0, p.total_steps)
            self.progress_bar.setValue(min(p.step, p.total_steps))
        if p.phase == "train" and _finite(p.loss):
            self._loss_xy[0].append(p.step)
            self._loss_xy[1].append(float(p.loss))
        elif p.phase == "validate" and _finite(p.val_dice):
            self._last_val_dice = float(p.val_dice)
            self._dice_xy[0].append(p.step)
            self._dice_xy[1].append(float(p.val_dice))
        if p.phase in ("train", "validate"):
            parts = [
                f"epoch {p.epoch}/{p.epochs}",
                f"loss {p.loss:.3f}" if _finite(p.loss) else "loss \u2014",
                f"val Dice {_fmt_dice(self._last_val_dice)}",
                f"best {_fmt_dice(p.best_val_dice)}",
                f"ETA {format_eta(p.eta_s)}",
                p.device,
            ]
            text = _DOT.join(parts)
            per_epoch = p.total_steps // max(p.epochs, 1)
            if p.phase == "train" and per_epoch and p.step % per_epoch == 0:
                text += _DOT + "validating\u2026"
            if self._cancel_event.is_set():
                text = "cancelling \u2014 " + text
            self._set_status(text)
        self._redraw_plot()

    def _on_returned(self, result):
        if isinstance(result, _Failure):
            self._reset_progress()
            self._error(result.message)
            return
        self.last_result = result
        path = Path(result.model_path)
        saved = result.best_epoch >= 0 and path.exists()
        kept_start = result.best_epoch == 0  # fine-tuning did not beat the model it started from
        if kept_start and saved and not result.steps_trained:
            self._set_status(f"cancelled before training — the model it starts from is kept as it is at {path}")
        elif kept_start and saved:
            self._set_status(
                f"{'cancelled' if result.cancelled else 'done'} — no epoch did better on the validation "
                f"pairs than the model it started from (val Dice {_fmt_dice(result.best_val_dice)}): that model is "
                f"kept at {path}; try another learning rate (lower or higher), more epochs or more pairs")
        elif result.cancelled:
            if saved:
                self._set_status(
                    f"cancelled \u2014 best model kept at {path} (val Dice {_fmt_dice(result.best_val_dice)}, "
                    f"epoch {result.best_epoch})"
                )
            else:
                self._set_status("cancelled before the first step \u2014 no model saved")
        else:
            self.progress_bar.setValue(self.progress_bar.maximum())
            self._set_status(
                f"done \u2014 best val Dice {_fmt_dice(result.best_val_dice)} (epoch {result.best_epoch}/"
                f"{result.epochs_done}) on {result.device}; model saved to {path}"
            )
        if saved and result.validated_on_training:
            self._set_status(f"{self.status.text()} — note: with one pair the Dice is measured on the image "
                             "it trained on, which says nothing of other images")
        if saved and not (_finite(result.best_val_dice) and result.best_val_dice >= POOR_DICE):
            # Still offered (a first run is often short on purpose), but not as if it were usable.
            from napari.utils.notifications import show_warning

            warning = (f"the model's validation Dice is {_fmt_dice(result.best_val_dice)}, under {POOR_DICE}: it "
                       "segments bone poorly. Train longer (more epochs) or on more pairs before measuring with it")
            self._set_status(f"{self.status.text()} \u2014 warning: {warning}")
            show_warning(warning)
        if saved:
            if path not in TRAINED_MODELS:
                TRAINED_MODELS.append(path)
            self.model_trained.emit(path)
            trained_model_events.model_trained.emit(path)
            # A finished run's default file is not trained over next time; a cancelled run's stays
            # in the box, so that Train offers to resume it.
            if self.output_edit.text() == self._default_output and not result.cancelled:
                self._default_output = str(default_output_path())
                if self._default_output != str(path):
                    self.output_edit.setText(self._default_output)

    def _on_errored(self, exc):
        from ._widgets import show_exception

        show_exception(exc)  # a notification, its traceback one click away
        self._reset_progress()
        kept = (f"the best model so far is at {self._out_path}" if self._out_path is not None and Path(self._out_path).is_file()
                else "no model was saved")
        self._set_status(f"training failed: {type(exc).__name__}: {_one_line(exc)} \u2014 {kept}")

    def _on_finished(self):
        self._worker = None
        self._running = False
        if self.progress_bar.maximum() == 0:  # never got a step: leave the busy state
            self._reset_progress()
        self._update_buttons()

    def _reset_progress(self):
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)

    # ------------------------------------------------------------------------------------------
    # Helpers

    def _update_buttons(self):
        running = self._running
        for w in self._settings_widgets:
            w.setEnabled(not running)
        self.train_button.setEnabled(not running and bool(self.pairs))
        self.cancel_button.setEnabled(running and not self._cancel_event.is_set())
        self.remove_pair_button.setEnabled(not running and bool(self.pairs))

    def _set_status(self, text: str):
        self.status.setText(text)

    def _error(self, message: str):
        from napari.utils.notifications import show_error

        self._set_status(f"error: {message}")
        show_error(message)

    def closeEvent(self, event):
        self.cancel()
        super().closeEvent(event)
