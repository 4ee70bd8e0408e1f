"""napari dock widgets: thin adapters from layers to the public API.

Every widget reads its inputs from layers (an Image in HU whose ``scale`` is the pixel spacing
in mm, a ``bone`` Labels layer, a ``seeds`` Points layer), calls the same functions as the CLI
and the console, and writes its result as a layer with the same ``scale``. A widget updates only
layers it made itself and the user has not edited: a layer the user painted, moved points in, or
brought in themselves is never overwritten; a re-run then adds a new layer beside it. A failed
run says why in the widget's status line and a napari notification, and leaves the layers as
they were.
"""

from __future__ import annotations

import contextlib
import re
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    Table,
    create_widget,
)
from psygnal import Signal

from ._errors import CalcinosisError
from .io import _one_line, _squeeze_leading, pixel_size_text, uniform_value

EDITED = "calcinosis_edited"  # layer.metadata key: the user painted this layer
MADE_HERE = "calcinosis_result"  # layer.metadata key: a widget made this layer (others are the user's)
KIND = "calcinosis_layer"  # layer.metadata key of a Labels layer a widget made: "bone", "lesions", ...
# layer.metadata key: the id of the layer a widget made, as it made it. napari's Duplicate Layer
# copies the metadata into a layer of another id: a copy is the user's, never updated by a widget.
MADE_AS = "calcinosis_layer_id"
SOURCE = "source_image"  # layer.metadata key: the name of the image layer a result was made from
# layer.metadata key: that image layer's unique id. The name alone took a closed scan's leftovers
# for those of the next scan opened under the same name (every patient's file is baseline.dcm).
SOURCE_ID = "source_image_id"
CONVERTED = "calcinosis_converted_to"  # layer.metadata key: the HU layer Prepare image made of this export
GROWN_ON = "calcinosis_grown_on"  # lesions layer metadata key: the _mask_key of the bone layer grown on
GROWN_FROM = "calcinosis_grown_from"  # lesions layer metadata key: the _points_key of the seeds grown from
# lesions layer metadata key: the unique_id of the seeds and bone layers grown from, and of every
# bone layer of the image then (a bone mask made since is one the widgets would now grow on)
GROWN_INPUTS = "calcinosis_grown_inputs"
GROWN_LABELS = "calcinosis_grown_labels"  # lesions layer metadata key: the _labels_key of the lesions as grown
GROWN_SEEDS = "calcinosis_grown_seeds"  # lesions layer metadata key: the seeds grown from, (n, 2) image pixels
# painted lesions metadata key: the seeds Grow added to the painting, (n, 5): row, col, the lesion's
# number, and a pixel of that lesion as added
ADDED_SEEDS = "calcinosis_added_seeds"
PAINTED_FROM = "calcinosis_painted_from"  # painted lesions metadata key: the _points_key of the seeds it accounts for
LAST_ADDED_ID = "calcinosis_last_added_id"  # painted lesions metadata key: the highest number Grow gave a lesion added
MADE_MASK = "calcinosis_made_mask"  # bone layer metadata key: the _mask_key of the mask as the network made it
MODEL = "calcinosis_model"  # bone/lesions layer metadata key: the network that segmented the bone (model_label)
TTA = "calcinosis_tta"  # bone layer metadata key: whether the network segmented it with flip test-time augmentation
SETTINGS = "calcinosis_settings"  # lesions layer metadata key: what they were grown with (pipeline.settings_label's keywords)
IMAGE_FILE = "calcinosis_image_file"  # lesions layer metadata key: the file its image was opened from
_MODEL_CACHE: dict = {}
TABLE_COLUMNS = ["lesion_id", "area_mm2", "near_resolution", "long_axis_mm", "short_axis_mm", "ellipse_area_mm2",
                 "mean_value", "status"]


# ---------------------------------------------------------------------------------------------
# layer helpers


def spacing_of(layer) -> tuple[float, float]:
    """Pixel spacing in mm of a 2-D layer: its ``scale``."""
    return tuple(float(s) for s in layer.scale[-2:])


def converted_message(layer) -> str:
    """Why an export Prepare image converted is not measured (or trained on) itself."""
    return (f"'{layer.name}' is the export; Prepare image made its image in HU, "
            f"'{layer.metadata.get(CONVERTED)}': choose that one (if it was deleted, Convert to HU again)")


def image_pixels(layer, export_ok: bool = False) -> np.ndarray:
    """An Image layer's pixels as one 2-D greyscale slice (float32); a leading axis of one slice
    is dropped. A colour image, a stack or (unless ``export_ok``: Prepare image's own reading)
    an export's 0-255 values raise :class:`CalcinosisError` saying what to do."""
    if layer.metadata.get(CONVERTED):
        raise CalcinosisError(converted_message(layer))
    refusal = other_readers_dicom(layer)
    if refusal:
        raise CalcinosisError(refusal)
    if getattr(layer, "rgb", False):
        raise CalcinosisError(
            f"'{layer.name}' is a colour (RGB) image: the measurement needs one greyscale slice in HU. "
            "Open the DICOM with the napari-calcinosis reader, or, for a PNG/JPEG export, "
            f"{_EXPORT_RECIPE}"
        )
    data = _squeeze_leading(np.asarray(layer.data))
    if data.ndim != 2:
        raise CalcinosisError(
            f"'{layer.name}' is a stack of shape {tuple(data.shape)}: the measurement works on one 2-D "
            "sagittal slice. Right-click the layer > Split Stack, then choose the slice's layer"
        )
    if not export_ok and _looks_like_export(layer):
        # napari's own reader opened a PNG/JPEG/TIFF: 0-255 are no HU, and its scale 1 no mm
        raise CalcinosisError(
            f"'{layer.name}' holds an export's values ({data.dtype}, {data.min():g}-{data.max():g}), not HU: "
            f"measured as they are its areas would not be mm² nor its values HU; {_EXPORT_RECIPE}"
        )
    return data.astype(np.float32, copy=False)


def other_readers_dicom(layer) -> str:
    """Why ``layer`` must not be measured or trained on, when another reader opened it from a
    DICOM file; else "". napari's builtin reader (imageio) reads a DICOM's whole folder and gives
    its first series under this file's name: another slice's, or another patient's, pixels."""
    other_reader = _dicom_read_by(layer)
    if not other_reader:
        return ""
    return (f"'{layer.name}' is a DICOM file opened by another reader ({other_reader}), which may give another file "
            "of its folder (the first series it finds) and no pixel size: open it again with the napari-calcinosis "
            "reader (File > Open, then choose napari-calcinosis; tick 'Remember this choice')")


def _dicom_read_by(layer) -> str:
    """The reader plugin, not ours, that opened ``layer`` from a DICOM file, else ""."""
    from .io import _DICOM_SUFFIXES, _dicom_by_content

    source = getattr(layer, "source", None)
    path, plugin = getattr(source, "path", None), getattr(source, "reader_plugin", None)
    if not path or not plugin or plugin == "napari-calcinosis":
        return ""
    path = Path(str(path))
    dicom = path.suffix.lower() in _DICOM_SUFFIXES - {""} or (path.is_file() and _dicom_by_content(path))
    return ("napari's builtin reader" if plugin in ("napari", "builtins") else plugin) if dicom else ""


# How an export becomes HU and mm in napari (the CLI and read_image do the same).
_EXPORT_RECIPE = ("use Plugins > napari-calcinosis > Prepare image (pixel size, HU): give the pixel size, "
                  "and it maps the export back to HU through its window")


# What the napari-calcinosis reader and Prepare image record of a file in the layer's metadata,
# passed on to the measurement: the window, where the values came from, where the export clipped.
_RECORDED = ("window_level_hu", "window_width_hu", "value_origin", "spacing_origin", "saturated_above_hu",
             "body_part", "energy_kev", "slab")


def calcinosis_image(layer, pixels):
    """The image a widget measures: ``pixels`` of ``layer`` at its scale (mm), with what the
    reader recorded of the file, so that the same warnings as the command line's apply (values
    that are not HU, deposits an export clipped). A spacing origin no longer holds once the
    scale has been changed since."""
    from .io import CalcinosisImage

    meta = layer.metadata or {}
    recorded = {key: meta[key] for key in _RECORDED if meta.get(key) is not None}
    spacing_mm = spacing_of(layer)
    if "spacing_origin" in recorded and tuple(meta.get("spacing_mm") or ()) != spacing_mm:
        del recorded["spacing_origin"]
    try:
        return CalcinosisImage(pixels_hu=pixels, spacing_mm=spacing_mm, source=layer.name, **recorded)
    except (CalcinosisError, TypeError, ValueError):  # metadata of the user's own making
        return CalcinosisImage(pixels_hu=pixels, spacing_mm=spacing_mm, source=layer.name)


def input_warning(layer, pixels) -> str:
    """What looks wrong with an image given to a widget as HU with its spacing, or ""."""
    notes = []
    if np.allclose(spacing_of(layer), 1.0):
        notes.append(f"'{layer.name}' has scale 1, so areas are in pixels, not mm²: give it its pixel spacing in mm "
                     "in Plugins > napari-calcinosis > Prepare image (the napari-calcinosis reader does this for DICOM)")
    uniform = uniform_value(pixels)
    if uniform is not None:
        notes.append(f"'{layer.name}' holds one value ({uniform:g}) everywhere: there is nothing to measure")
    elif pixels.size and pixels.min() >= 0 and pixels.max() <= 255 and np.array_equal(pixels, np.round(pixels)):
        notes.append(f"'{layer.name}' holds 0-255, an 8-bit export rather than HU; bone and deposits are then "
                     f"misread. To convert it, {_EXPORT_RECIPE}")
    return "; ".join(notes)


def placement(layer) -> dict:
    """Where a layer made from ``layer``'s pixels goes in the viewer: its scale (the pixel
    spacing in mm) and translate, and for a 2-D image its rotate, shear and affine too, so a
    result lies over the image it came from."""
    where = {"scale": tuple(float(v) for v in layer.scale[-2:]), "translate": tuple(float(v) for v in layer.translate[-2:])}
    if layer.ndim == 2:
        where.update(rotate=np.asarray(layer.rotate), shear=np.asarray(layer.shear),
                     affine=np.asarray(layer.affine.affine_matrix))
    return where


def points_in_pixels(points, image) -> np.ndarray:
    """The positions of ``points`` in ``image``'s pixels, (n, 2) as (row, col).

    Through the viewer's world coordinates (mm), where the user clicked: a points layer made
    with another scale or translate than the image (napari's own "New points" button gives
    scale 1, a seeds layer made on another image gives that image's) still lands on the pixel
    under each click.
    """
    data = np.asarray(points.data, float)
    if data.size == 0:
        return np.zeros((0, 2))
    return np.array([image.world_to_data(points.data_to_world(p))[-2:] for p in data], float)


def pixels_in_points(points, image, pixels) -> np.ndarray:
    """The inverse of :func:`points_in_pixels`: ``image`` pixels (n, 2) as ``points``' data."""
    pixels = np.asarray(pixels, float).reshape(-1, 2)
    if not len(pixels):
        return np.zeros((0, points.ndim))
    return np.array([points.world_to_data(image.data_to_world(p)) for p in pixels], float)


_WRITING: set = set()  # ids of layers a widget is writing right now: their events are not user edits


def _mark_edits(layer) -> None:
    """Record in the layer's metadata when the user paints it (Labels) or changes its points (Points)."""
    layer.metadata[MADE_HERE] = True
    layer.metadata[MADE_AS] = str(layer.unique_id)

    def edited(*_):
        if id(layer) not in _WRITING:
            layer.metadata[EDITED] = True

    for name in ("paint", "labels_update") if hasattr(layer.events, "paint") else ("data",):
        getattr(layer.events, name).connect(edited)


# The image layers whose renames are followed (held weakly: a closed scan is let go).
_RENAMES_FOLLOWED: weakref.WeakSet = weakref.WeakSet()


def _track_image_name(layers, image) -> None:
    """From now on, for as long as ``image`` lives and whether or not a widget is open, the
    name its results record (SOURCE) follows it when it is renamed (a PACS file called
    'baseline', say): they know it by its id (SOURCE_ID), the name is what they show. Holds
    neither the image nor the layer list."""
    from napari.layers import Image

    if not isinstance(image, Image) or image in _RENAMES_FOLLOWED:
        return
    _RENAMES_FOLLOWED.add(image)
    image_ref, layers_ref = weakref.ref(image), weakref.ref(layers)

    def renamed(*_):
        image, layers = image_ref(), layers_ref()
        if image is None or layers is None:
            return
        for layer in layers:
            if layer is not image and layer.metadata.get(SOURCE_ID) == str(image.unique_id):
                layer.metadata[SOURCE] = image.name

    image.events.name.connect(renamed)


def _from(image) -> dict:
    """The metadata that says a layer was made from the image layer ``image``."""
    return {SOURCE: image.name, SOURCE_ID: str(image.unique_id)}


def _of_image(layer, image) -> bool:
    """Whether ``layer`` belongs to the image layer ``image``: made from it (by its id where that
    was recorded, else by its name), or made by the user (no source recorded)."""
    return _from_image(layer.metadata, image)


def _from_image(metadata: dict, image) -> bool:
    """:func:`_of_image` of a layer's ``metadata``."""
    source_id = metadata.get(SOURCE_ID)
    if source_id is not None:
        return source_id == str(image.unique_id)
    return metadata.get(SOURCE, image.name) == image.name


def _source_of(viewer, metadata: dict):
    """The image layer a layer of ``metadata`` was made from, if it is open; else None."""
    from napari.layers import Image

    if metadata.get(SOURCE) is None:
        return None
    return next((image for image in viewer.layers if isinstance(image, Image) and _from_image(metadata, image)), None)


def _image_file(viewer, image) -> str:
    """The absolute path of the file the image layer ``image`` was opened from, or of the export
    Prepare image converted it from; "" for an image made in napari or the console."""
    for candidate in (getattr(getattr(image, "source", None), "path", None), (image.metadata or {}).get("source")):
        if candidate and Path(str(candidate)).is_file():
            return str(Path(str(candidate)).resolve())
    export = _source_of(viewer, image.metadata)  # Prepare image's layer in HU: the export it was made of
    return _image_file(viewer, export) if export is not None and export is not image else ""


def _named(layer, name: str) -> bool:
    """Whether ``layer`` is called ``name``, ``name (new)``, ..., or, made by a widget,
    ``name [image]`` (a second image's result), as :func:`_free_name` names, or holds a widget's
    ``name`` under a name the user gave it ('bone baseline': a renamed result is still the
    image's bone, with the user's corrections). A layer of the user's called ``bone [1]``
    (napari's name for a second ``bone`` opened), or napari's copy of a result (Duplicate
    Layer, 'bone copy': a backup, or corrections tried apart), is not a result."""
    if re.fullmatch(rf"{re.escape(name)}( \(new\))*", layer.name):
        return True
    made_here = layer.metadata.get(MADE_HERE)
    renamed = layer.metadata.get(KIND) == name and layer.metadata.get(MADE_AS) == str(layer.unique_id)
    return bool(made_here and (renamed or re.fullmatch(rf"{re.escape(name)} \[.+\]( \(new\))*", layer.name)))


def _results(viewer, kind, name: str, image=None) -> list:
    """The layers of ``kind`` called ``name`` (or ``name (new)``, ...), oldest first; with an
    ``image``, those that belong to it (:func:`_of_image`)."""
    return [layer for layer in viewer.layers if isinstance(layer, kind) and _named(layer, name)
            and (image is None or _of_image(layer, image))]


def _replaceable(layer, kind, shape=None, source=None) -> bool:
    """Whether a widget may update ``layer``: one it made, unedited, of the right kind and shape,
    from the image layer ``source`` (a result of another image is that image's, and stays); or
    an empty Points layer (a ``seeds`` layer made to click in, where nothing was clicked yet)."""
    from napari.layers import Points

    if kind is Points and isinstance(layer, Points) and len(layer.data) == 0:
        return source is None or _of_image(layer, source)
    return (isinstance(layer, kind) and layer.metadata.get(MADE_HERE) and not _edited(layer)
            and (shape is None or layer.data.shape == shape)
            and (source is None or _of_image(layer, source)))


def _free_name(viewer, name: str, kind, shape=None, source=None) -> str:
    """``name``, or ``name (new)`` ... past the layers of that name the widgets may not update;
    ``name [image]`` where ``name`` is another image's result (a baseline's and a follow-up's
    layers, told apart by name). ``source``: the image layer the result is made from; its newest
    result of that name the widgets may update keeps its name, also once the image is renamed."""
    if source is not None:
        own = [layer for layer in _results(viewer, kind, name, source)
               if layer.metadata.get(SOURCE) is not None and _replaceable(layer, kind, shape, source)]
        if own:
            return own[-1].name
        if name in viewer.layers and not _of_image(viewer.layers[name], source):
            name = f"{name} [{source.name}]"
    while name in viewer.layers and not _replaceable(viewer.layers[name], kind, shape, source):
        name = f"{name} (new)"
    return name


class _ResultEvents:
    """Module-wide: ``lesions_shown(layer)`` fires when Quantify or Grow has put a result on a
    lesions layer (its table in place), so that Measure and Agreement show the image just
    measured, not the lesions layer inserted last. ``lesions_remeasured(layer, summary)`` fires
    when Prepare image changed their image and their table was measured again: a status line
    that still says their ``summary`` (Quantify's, Grow's) says what they measure now."""

    lesions_shown = Signal(object)
    lesions_remeasured = Signal(object, str)


RESULT_EVENTS = _ResultEvents()


# One colour per kind of layer, so bone, candidates and lesions read apart at a glance.
LAYER_COLOURS = {"bone": "cyan", "calcification candidates": "yellow"}


def put_labels(viewer, name: str, data, image, **kwargs):
    """Show ``data`` (``image``'s pixels) as the Labels layer ``name`` over ``image``: update it,
    unless the user edited it."""
    kind = name  # what the layer holds, whatever name it gets beside another of that name
    colour = LAYER_COLOURS.get(name)
    if colour is not None and "colormap" not in kwargs:
        from napari.utils.colormaps import DirectLabelColormap

        kwargs["colormap"] = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: colour})
    from napari.layers import Labels

    name = _free_name(viewer, name, Labels, data.shape, image)
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.metadata.update({**_from(image), KIND: kind})
        _WRITING.add(id(layer))  # a widget's result, not the user's edit: Grow does not regrow from it
        try:
            layer.data = data
        finally:
            _WRITING.discard(id(layer))
        for key, value in placement(image).items():
            setattr(layer, key, value)
        for key, value in kwargs.items():
            setattr(layer, key, value)
        return layer
    # the source in place as the layer is inserted: the pickers follow it from that moment
    layer = viewer.add_labels(data, name=name, units="mm", metadata={**_from(image), MADE_HERE: True, KIND: kind},
                              **placement(image), **kwargs)
    _mark_edits(layer)
    return layer


def put_points(viewer, name: str, data, image, size_px: float):
    """Show ``data`` (``image`` pixels) as the Points layer ``name``: update it, unless the user
    edited it. An empty Points layer of that name is filled: it holds nothing to lose."""
    from napari.layers import Points

    name = _free_name(viewer, name, Points, source=image)
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.metadata.update(_from(image))
        _WRITING.add(id(layer))
        try:
            layer.data = pixels_in_points(layer, image, data)
        finally:
            _WRITING.discard(id(layer))
        return layer
    # hollow: a seed marks a deposit of a few mm² without hiding it, or the lesion's outline
    layer = viewer.add_points(data, name=name, units="mm", size=size_px, face_color="transparent",
                              border_color="yellow", border_width=0.3,
                              metadata={**_from(image), MADE_HERE: True, KIND: "seeds"}, **placement(image))
    _mark_edits(layer)
    return layer


class _WhenUndocked:
    """Calls ``callback`` once a docked widget is taken out of its dock (napari's close button
    and ``remove_dock_widget`` set its parent to None without deleting it)."""

    def __init__(self, native, callback):
        from qtpy.QtCore import QEvent, QObject

        docked = []

        class Filter(QObject):
            def eventFilter(self, obj, event):
                if event.type() == QEvent.Type.ParentChange:
                    if obj.parent() is not None:
                        docked.append(True)
                    elif docked:
                        callback()
                return False

        self.filter = Filter(native)
        native.installEventFilter(self.filter)


def _soon(fn):
    """A callback that runs ``fn()`` once the current event is handled, once however often it
    was called meanwhile. napari's Labels ``paint`` event fires before a ``paint()`` or
    ``data_setitem()`` call writes its pixels (after a brush stroke, once it is written)."""
    from qtpy.QtCore import QTimer

    pending = []

    def run():
        pending.clear()
        try:
            fn()
        except RuntimeError as exc:  # the widget was closed (its Qt parts deleted) meanwhile
            if "has been deleted" not in str(exc):
                raise

    def schedule(*_):
        if not pending:
            pending.append(True)
            QTimer.singleShot(0, run)

    return schedule


def seeds_of(viewer, image):
    """The newest Points layer named ``seeds`` (or ``seeds (new)``, ...) that belongs to ``image``:
    made from it, or made by the user (no source recorded); else the only Points layer with
    points that is the image's or no image's yet (napari's *New points* makes 'Points'); None if
    there is none. The seeds of another image are that image's, even where the two overlap in
    the viewer."""
    from napari.layers import Points

    found = _results(viewer, Points, "seeds", image)
    if found:
        return found[-1]
    # Otherwise the one points layer with points that is the image's or no image's yet: napari's
    # own New points button makes 'Points', a seeds layer may have been renamed.
    others = [layer for layer in viewer.layers if isinstance(layer, Points) and len(layer.data)
              and (_unclaimed(layer) or (layer.metadata.get(SOURCE) is not None and _of_image(layer, image)))]
    return others[0] if len(others) == 1 else None


def _claim_seeds(points, image) -> None:
    """A seeds layer of the user's (none recorded as its image) used for ``image`` becomes that
    image's: a second image open beside it (a follow-up scan) does not take the same points.
    At scale 1 (napari's New points button) and used for an image in mm, it is also put on the
    image's grid, each point where it was clicked, in mm and 1 mm across (at scale 1 napari
    draws the points 10 mm across, over the deposits clicked, and warns of the layers' units at
    every run). A layer a widget made, or already an image's, stays as it is."""
    if (_unclaimed(points) and points.ndim == 2 and np.allclose(points.scale, 1.0)
            and not np.allclose(spacing_of(image), 1.0)):
        where = points_in_pixels(points, image)
        with points.events.data.blocker():  # the points do not move: nothing to regrow meanwhile
            for key, value in placement(image).items():
                setattr(points, key, value)
            points.units = ("mm", "mm")
        points.data = where
        size_px = 1.0 / min(spacing_of(image))
        points.size = size_px
        points.current_size = size_px
    _claim(points, image)


def _unclaimed(layer) -> bool:
    """A layer of the user's (a bone mask or seeds opened or made by hand) no image has used yet."""
    return layer.metadata.get(SOURCE) is None and not layer.metadata.get(MADE_HERE)


def _claim(layer, image) -> None:
    """A layer of the user's no image has used yet, used for ``image``, becomes that image's, so
    that a second image open beside it (a follow-up scan) is not measured with it."""
    if _unclaimed(layer):
        layer.metadata.update(_from(image))


def lesion_table(viewer, layer) -> pd.DataFrame:
    """A lesions layer's table: its ``features``, or, once the user has painted the layer (or it
    has none), the layer measured as it is now, over its source image where that is open."""
    features = layer.features
    if not _painted(layer.metadata, layer.data) and features is not None and len(features) and "area_mm2" in features:
        return features
    from .measure import measure_lesions

    labels = np.asarray(layer.data)
    return measure_lesions(labels, spacing_of(layer), source_pixels(viewer, layer.metadata, labels.shape))


def source_pixels(viewer, metadata: dict, shape) -> np.ndarray | None:
    """The pixels of the image a layer of ``metadata`` was made from, where it is open in
    ``viewer`` and of ``shape``, for a lesion's mean and max HU; else None."""
    source = _source_of(viewer, metadata) if viewer is not None else None
    try:
        pixels = image_pixels(source) if source is not None else None
    except CalcinosisError:
        return None
    return pixels if pixels is not None and pixels.shape == tuple(shape) else None


def show_error(message: str) -> None:
    from napari.utils.notifications import show_error as _show

    _show(message)


def show_exception(exc: BaseException) -> None:
    """A napari error notification for an unexpected exception, with its traceback one click away."""
    from napari.utils.notifications import notification_manager

    notification_manager.receive_error(type(exc), exc, exc.__traceback__)


def get_model(choice: str, device: str):
    from .segment import load_model

    # Keyed by file times too, so a model retrained into the same file (or its card corrected
    # beside it) is loaded afresh.
    files = [Path(choice), Path(choice).with_suffix(".json")] if choice not in ("", "bundled") else []
    key = (choice, device, tuple(f.stat().st_mtime_ns if f.is_file() else None for f in files))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_model(None if choice in ("", "bundled") else choice, device=device)
    return _MODEL_CACHE[key]


def model_choices(*_):
    choices = ["bundled"]
    try:
        from ._train_widget import TRAINED_MODELS

        choices += [str(p) for p in TRAINED_MODELS]
    except ImportError:
        pass
    return choices


def _model_file_edit() -> FileEdit:
    return FileEdit(label="or model file", mode="r", filter="*.safetensors", value=None, nullable=True)


def _chosen_model(combo, file_edit) -> str:
    """The model file the user named, else the combo's choice ("bundled" or a trained model). A
    name that leads to no model is load_model's to refuse: the bundled model taken in its place
    measured without a word."""
    path = file_edit.value
    if path is not None and str(path) not in ("", "."):
        return str(path)
    return combo.value


def _follow_trained_models(widget, model_combo) -> None:
    """Offer a model in ``model_combo`` as soon as the Train widget saves it, until ``widget``
    is closed."""
    from ._train_widget import trained_model_events

    def refresh(*_):
        model_combo.reset_choices()

    widget._connect(trained_model_events.model_trained, refresh)


def device_choices(*_):
    from ._train_widget import available_devices

    return available_devices()


def _same_choice(x, y) -> bool:
    """Layers by identity, other choices (a model's name) by value."""
    return x is y or (isinstance(x, str) and x == y)


def _show_scale_bar(viewer) -> None:
    """Show the scale bar (napari 0.9 moved it to ``viewer.canvas.overlays``)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    scale_bar = getattr(overlays, "scale_bar", None) or viewer.scale_bar
    scale_bar.visible = True


def _scroll_area(inner):
    """``inner`` in a scroll area that takes its whole height where the window has room (no more:
    a dock docked below gets the rest, not this one's blank space) and shrinks to two rows,
    scrolling, where it has not (every widget docked on a laptop's screen: docks that could not
    shrink pushed the window past the screen, the lower widgets and the status bar out of reach)."""
    from qtpy.QtCore import QEvent, QSize, Qt, QTimer
    from qtpy.QtWidgets import QFrame, QScrollArea, QSizePolicy

    class ScrollArea(QScrollArea):
        def sizeHint(self):
            hint = self.widget().sizeHint()
            return QSize(hint.width() + self.verticalScrollBar().sizeHint().width(), hint.height())

        def minimumSizeHint(self):
            least = self.widget().minimumSizeHint()
            return QSize(least.width() + self.verticalScrollBar().sizeHint().width(), min(least.height(), 72))

        def eventFilter(self, obj, event):
            # the controls changed (a plot shown, a status line grown): at most their height,
            # and the docks fitted again where it grew
            if obj is self.widget() and event.type() == QEvent.Type.LayoutRequest:
                height = obj.sizeHint().height() + 2 * self.frameWidth()
                if height > self.maximumHeight() and self.isVisible():
                    self._fit_soon()
                self.setMaximumHeight(height)
            return super().eventFilter(obj, event)

        def showEvent(self, event):
            super().showEvent(event)
            self._fit_soon()

        def _fit_soon(self):
            # after napari's own sizing of the docks, which follows the dock's showing
            QTimer.singleShot(100, lambda: _fit_docks(self))

    scroll = ScrollArea()
    scroll.setFrameShape(QFrame.NoFrame)
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    scroll.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)
    scroll.setWidget(inner)
    scroll.setMaximumHeight(inner.sizeHint().height())
    return scroll


def _fit_docks(scroll) -> None:
    """Give the docks beside ``scroll``'s (its side of the window, not tabbed, not floating) the
    height of their controls, as far as the window has room. napari sizes the docks of a side as
    1 : 5 : 9 ..., each above the last at its least height: two rows, since they scroll."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QDockWidget, QMainWindow

    try:
        dock = scroll.parent()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parent()
        window = dock.parent() if dock is not None else None
        if not isinstance(window, QMainWindow) or dock.isFloating():
            return
        side = window.dockWidgetArea(dock)
        docks = [d for d in window.findChildren(QDockWidget) if window.dockWidgetArea(d) == side and d.isVisible()
                 and not d.isFloating() and not window.tabifiedDockWidgets(d)]
        window.resizeDocks(docks, [d.sizeHint().height() for d in docks], Qt.Orientation.Vertical)
    except RuntimeError:  # closed before this ran (its Qt object deleted)
        return


class _Widget(Container):
    def __init__(self, viewer, **kwargs):
        super().__init__(**kwargs)
        # the rows at the top of a scroll area taller than they are, not spread down it
        self._widget._mgui_get_native_widget().layout().addStretch(1)
        self._scroll = _scroll_area(self._widget._mgui_get_native_widget())
        # napari finds a docked widget by this attribute of what it docked (dock_widgets, a second
        # add_plugin_dock_widget); magicgui set it on the controls inside
        self._scroll._magic_widget = self
        self.viewer = viewer
        self.status = Label(value="")
        # A long status (failed seeds, what was left out) wraps instead of widening the dock
        # until the canvas is squeezed out of the window.
        self.status.native.setWordWrap(True)
        # Layers carry scale = pixel spacing and units = mm, so the scale bar reads mm.
        _show_scale_bar(viewer)
        self._connections: list = []
        self._closed = False
        self._closed_watcher = _WhenUndocked(self.native, self._disconnect_all)
        self.native.destroyed.connect(lambda *_: self._disconnect_all())  # a viewer closed with it docked
        self._connect(viewer.layers.events.inserted, lambda event: _track_image_name(viewer.layers, event.value))
        for layer in viewer.layers:
            _track_image_name(viewer.layers, layer)
        self._connect(viewer.layers.events.inserted, self._take_converted)
        self._connect(RESULT_EVENTS.lesions_remeasured, self._lesions_remeasured)

    @property
    def native(self):
        """The scroll area around the controls (:func:`_scroll_area`): what napari docks (it docks
        ``.native``)."""
        return getattr(self, "_scroll", None) or super().native

    def _lesions_remeasured(self, layer, summary: str) -> None:
        """A status line that gave ``layer``'s totals (its old ``summary``, after the image's
        name or before other notes) gives them as they are measured now."""
        if summary and summary in self.status.value and layer in self.viewer.layers:
            self.status.value = self.status.value.replace(summary, layer.metadata.get("summary", ""))

    # Whether the image picker moves from an export to the HU layer Prepare image makes of it.
    _follows_conversion = True

    def _take_converted(self, event) -> None:
        """The export chosen here was converted to HU (Prepare image): choose the HU layer, once
        the picker lists it (the export itself can no longer be measured)."""
        picker, layer = getattr(self, "image", None), event.value
        chosen = getattr(picker, "value", None)
        if not self._follows_conversion or chosen is None or chosen.metadata.get(CONVERTED) != layer.name:
            return
        from qtpy.QtCore import QTimer

        def choose():
            if not self._closed and layer in self.viewer.layers and layer in picker.choices:
                picker.value = layer
                if self.status.value.startswith("error:"):  # said of the export, not of this layer
                    self.status.value = ""

        QTimer.singleShot(0, choose)

    def _connect(self, emitter, callback) -> None:
        """Connect ``callback`` to an event of the viewer or of a layer, until the widget is closed."""
        emitter.connect(callback)
        self._connections.append((emitter, callback))

    def _disconnect(self, emitter, callback) -> None:
        if (emitter, callback) in self._connections:
            self._connections.remove((emitter, callback))
            emitter.disconnect(callback)

    def _disconnect_all(self) -> None:
        """Closed: let go of the viewer's and the layers' events (napari keeps a closed dock
        widget alive, and it would go on regrowing and re-measuring, twice once reopened)."""
        for emitter, callback in self._connections:
            emitter.disconnect(callback)
        self._connections.clear()
        self._closed = True  # a regrowth already scheduled does nothing

    def _add_model_inputs(self) -> None:
        """The image, model (bundled, trained here, or a file) and device inputs."""
        import napari

        self.image = create_widget(annotation=napari.layers.Image, label="image")
        self.model = ComboBox(label="model", choices=model_choices)
        self.model_file = _model_file_edit()
        self.device = ComboBox(label="device", choices=device_choices)
        _follow_trained_models(self, self.model)
        self.extend([self.image, self.model, self.model_file, self.device])

    def _layer_input(self, kind, label: str, follows: str, of_image=None):
        """A layer picker that keeps to the layer named ``follows`` (the newest of ``follows``,
        ``follows (new)``, ...: what the widgets write; with an image picker ``of_image``, the
        newest made from that image) until the user picks a layer by hand, and is empty when
        there is none. Picking the first layer of the kind, as a plain picker
        does, took a sample's true bone for the bone to subtract, or the lesions layer for the
        bone once the bone layer was deleted."""
        combo = create_widget(annotation=kind, label=label, options={"nullable": True})
        state = {"by_hand": False, "image": None}

        def picked_by_hand(*_):  # the user's choice, not ours
            state.update(by_hand=True, image=of_image.value if of_image is not None else None)

        combo.native.activated.connect(picked_by_hand)

        def follow(*_):
            combo.reset_choices()
            current = combo.value
            image = of_image.value if of_image is not None else None
            # A layer picked by hand stays picked; once another image is chosen, only if it is
            # that image's too (the baseline's bone is not the follow-up's).
            if (state["by_hand"] and current is not None and current in self.viewer.layers
                    and (image is state["image"] or image is None or _of_image(current, image))):
                return
            state["by_hand"] = False
            named = _results(self.viewer, kind, follows, image)
            target = named[-1] if named else None
            if target is not current and (target is None or target in combo.choices):
                combo.value = target

        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            self._connect(event, follow)
        if of_image is not None:
            of_image.changed.connect(follow)
        else:

            def shown(layer):
                """A result just put on a layer of any image: picked, even over one picked by hand."""
                if layer in self.viewer.layers and isinstance(layer, kind) and _named(layer, follows):
                    state["by_hand"] = False
                    combo.reset_choices()
                    combo.value = layer

            self._connect(RESULT_EVENTS.lesions_shown, shown)
        self._follows = getattr(self, "_follows", []) + [follow]
        return combo

    def reset_choices(self, *args):
        """New choices (napari calls this when layers come, go, move or are renamed), each
        picker keeping the layer it had while that is still there: magicgui keeps a choice by
        its text, so renaming the chosen image ('IM000001' to 'baseline') picked the first image
        instead, and the next run measured another scan."""
        from magicgui.widgets.bases import CategoricalWidget

        kept = {widget: widget.value for widget in self
                if isinstance(widget, CategoricalWidget) and widget.value is not None}
        with contextlib.ExitStack() as quiet:
            for widget in kept:
                quiet.enter_context(widget.changed.blocked())
            super().reset_choices(*args)
        for widget, value in kept.items():
            if _same_choice(widget.value, value):
                continue
            if any(_same_choice(choice, value) for choice in widget.choices):
                with widget.changed.blocked():
                    widget.value = value
            else:  # its layer is gone: the new choice is said, as magicgui would have
                widget.changed.emit(widget.value)
        picker = getattr(self, "image", None)
        first = getattr(picker, "value", None)
        if self._follows_conversion and first is not None and first.metadata.get(CONVERTED):
            # an export Prepare image converted (hidden, not measurable; magicgui's first pick of a
            # widget docked since): its HU layer, as _take_converted does when it is made
            converted = first.metadata[CONVERTED]
            if converted in self.viewer.layers and self.viewer.layers[converted] in picker.choices:
                picker.value = self.viewer.layers[converted]
        for follow in getattr(self, "_follows", []):
            follow()

    def _model(self):
        return get_model(_chosen_model(self.model, self.model_file), self.device.value)

    def _image_or_hint(self):
        if self.image.value is None:
            self.status.value = "add an image first (File > Open, or File > Open Sample)"
        return self.image.value

    def _warn_if_odd(self, layer, pixels, also=()) -> None:
        """After a run: add to the status line (and a napari warning, once per image) what
        looks wrong with the image as HU and mm (:func:`input_warning`), and the notes ``also``."""
        warning = "; ".join(filter(None, [input_warning(layer, pixels), *also]))
        if not warning:
            return
        self.status.value = f"warning: {warning}. {self.status.value}"
        if layer.metadata.get("calcinosis_warned") != warning:
            layer.metadata["calcinosis_warned"] = warning
            from napari.utils.notifications import show_warning

            show_warning(warning)

    @contextlib.contextmanager
    def _busy(self, what: str):
        """Seconds of work on the GUI's thread: the status line says what, the cursor is busy and
        the button waits, so that a frozen window is not taken for a hung one (or clicked again)."""
        from qtpy.QtCore import QEventLoop, Qt
        from qtpy.QtWidgets import QApplication

        self.status.value = what
        button = getattr(self, "run_button", None)
        if button is not None:
            button.enabled = False
        QApplication.setOverrideCursor(Qt.WaitCursor)
        QApplication.processEvents(QEventLoop.ExcludeUserInputEvents)  # paint the status line now
        try:
            yield
        finally:
            QApplication.restoreOverrideCursor()
            if button is not None:
                button.enabled = True

    def _run_safely(self, fn):
        """``fn()``; if it fails, the status line and a notification say why, and None is returned."""
        try:
            return fn()
        except CalcinosisError as exc:
            message = str(exc)
            if "check the pixel size" in message:  # the command line's words: say where napari sets it
                message += "; in napari, Plugins > napari-calcinosis > Prepare image (pixel size, HU) sets it"
            self.status.value = f"error: {message}"
            show_error(message)
        except Exception as exc:  # a bug rather than the user's doing: the viewer carries on
            self.status.value = f"failed: {type(exc).__name__}: {_one_line(exc)}"
            show_exception(exc)
        return None


# ---------------------------------------------------------------------------------------------


def _looks_like_export(layer) -> bool:
    """Whether an Image layer's values look like a PNG/JPEG/TIFF export (0-255, 0-65535 or
    colour) rather than HU: 8-bit and colour always; 16-bit when it came from such a file (a
    DICOM's raw 16-bit values opened by another reader are no export)."""
    if getattr(layer, "rgb", False):
        return True
    dtype = getattr(layer.data, "dtype", None)
    if dtype == np.uint8:
        return True
    path = getattr(getattr(layer, "source", None), "path", None)
    suffix = Path(str(path)).suffix.lower() if path else ""
    return dtype == np.uint16 and suffix in (".png", ".tif", ".tiff", ".jpg", ".jpeg")


class PrepareWidget(_Widget):
    """A PNG/JPEG/TIFF export, or an image without a pixel size -> an image in HU whose scale is
    its pixel spacing in mm: what every other widget measures."""

    _follows_conversion = False  # it says what it made of the export, on the export

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        import napari

        from .io import WINDOW_LEVEL_HU, WINDOW_WIDTH_HU

        self.image = create_widget(annotation=napari.layers.Image, label="image")
        # 0 until given: a pixel size taken by default would measure every area wrong, silently.
        # Seven decimals: a spacing such as 0.1953125 mm (a 100 mm field on 512 pixels) is exact.
        self.pixel_size_mm = FloatSpinBox(label="pixel size (mm)", value=0.0, min=0.0, max=5.0, step=0.001)
        self.pixel_size_mm.native.setDecimals(7)
        self.export = CheckBox(label="an export (0-255, colour): map back to HU through the window", value=False)
        self.level_hu = FloatSpinBox(label="window level (HU)", value=WINDOW_LEVEL_HU, min=-2000, max=4000, step=10)
        self.width_hu = FloatSpinBox(label="window width (HU)", value=WINDOW_WIDTH_HU, min=1, max=8000, step=10)
        self.run_button = PushButton(text="Apply")
        self.image.changed.connect(self._describe)
        self.export.changed.connect(self._show_window)
        self.run_button.changed.connect(self.run)
        # A newly opened export, or image without a pixel size, is the one to prepare next.
        self._connect(self.viewer.layers.events.inserted, self._take_new)
        self.extend([self.image, self.pixel_size_mm, self.export, self.level_hu, self.width_hu, self.run_button,
                     self.status])
        self._describe()

    def _take_new(self, event):
        from napari.layers import Image

        layer = event.value
        if (isinstance(layer, Image) and not layer.metadata.get(MADE_HERE)
                and (_looks_like_export(layer) or np.allclose(spacing_of(layer), 1.0))):
            self.image.reset_choices()
            if layer in self.image.choices:
                self.image.value = layer

    def _show_window(self, *_):
        self.level_hu.visible = self.width_hu.visible = bool(self.export.value)
        self.run_button.text = "Convert to HU" if self.export.value else "Set pixel size"

    def _describe(self, *_):
        """Fill the inputs from the chosen layer and say what it holds."""
        from .io import image_caveats

        layer = self.image.value
        if layer is None:
            self.status.value = "open a PNG/JPEG export (File > Open) or an image without a pixel size"
            self._show_window()
            return
        row_mm, col_mm = spacing_of(layer)
        unset = bool(np.allclose((row_mm, col_mm), 1.0))
        square = bool(np.isclose(row_mm, col_mm))
        self.pixel_size_mm.value = row_mm if square and not unset else 0.0
        self.export.value = _looks_like_export(layer)
        self._show_window()
        converted = layer.metadata.get(CONVERTED)
        if converted:
            self.status.value = (f"'{layer.name}' is an export converted to '{converted}': measure that one; "
                                 "Convert to HU again to change its pixel size or window")
        elif self.export.value:
            self.status.value = (f"'{layer.name}' looks like an export: give its pixel size in mm and the window "
                                 "it was exported through (the paper's W1500/L450 by default), then Convert to HU")
        elif unset:
            self.status.value = f"'{layer.name}' has no pixel size (scale 1): give it in mm, then Set pixel size"
        elif not square:
            self.status.value = (f"'{layer.name}' has pixels of {row_mm:g} x {col_mm:g} mm, not square: measured as "
                                 "they are; Set pixel size makes them square")
        else:
            try:
                notes = image_caveats(calcinosis_image(layer, image_pixels(layer, export_ok=True)))
            except CalcinosisError as exc:
                notes = [str(exc)]
            self.status.value = (f"warning: '{layer.name}': {'; '.join(notes)}" if notes else
                                 f"'{layer.name}': {row_mm:g} mm pixels, values taken as HU; ready to measure")

    def run(self, *_):
        layer = self._image_or_hint()
        if layer is None:
            return None

        def go():
            size_mm = float(self.pixel_size_mm.value)
            if size_mm <= 0:
                raise CalcinosisError(
                    "give the pixel size in mm: a PNG or JPEG export does not carry it (the DICOM's "
                    "PixelSpacing, or the reconstruction's field of view divided by its matrix)")
            if self.export.value:
                return self._convert(layer, size_mm)
            image_pixels(layer)  # one grey slice, or say what to do
            old = spacing_of(layer)
            if np.allclose(old, size_mm, rtol=1e-6, atol=0):  # the spacing shown, left as it was
                self.status.value = f"'{layer.name}' already has {size_mm:g} mm pixels: nothing changed"
                return layer
            _set_pixel_size(layer, size_mm)
            layer.metadata.update(spacing_mm=(size_mm, size_mm), spacing_origin="given in napari (Prepare image)")
            moved = _follow_pixel_size(self.viewer, layer, old)
            self.viewer.reset_view()
            _show_scale_bar(self.viewer)
            pixels = image_pixels(layer)
            # what Grow and Quantify would warn of later (raw values, HU + 1024, say), said now
            from .io import image_caveats

            doubts = image_caveats(calcinosis_image(layer, pixels))
            self.status.value = (f"'{layer.name}' now has {size_mm:g} mm pixels, {_spans(layer)}. Its values are "
                                 f"taken as HU{moved}" + (f"; but {'; '.join(doubts)}" if doubts else ""))
            self._warn_if_odd(layer, pixels)
            return layer

        return self._run_safely(go)

    def _convert(self, layer, size_mm: float):
        from napari.layers import Image

        from ._reader_writer import _layer_data
        from .io import image_from_export

        data = np.asarray(layer.data)
        if data.ndim == 3 and not getattr(layer, "rgb", False) and data.shape[-1] not in (2, 3, 4):
            image_pixels(layer, export_ok=True)  # a stack (grey + alpha, (rows, cols, 2), is one slice): say what to do
        # its file, where it was opened from one: the export's rows name it even once its layer is deleted
        source = _image_file(self.viewer, layer) or layer.name
        image = image_from_export(data, size_mm, self.level_hu.value, self.width_hu.value, source=source)
        pixels, kwargs, _ = _layer_data(image)
        kwargs["metadata"].update({**_from(layer), MADE_HERE: True, "spacing_origin": "given in napari (Prepare image)"})
        linked = layer.metadata.get(CONVERTED)  # its HU layer made before, by the name it has now
        if not (linked in self.viewer.layers and isinstance(self.viewer.layers[linked], Image)
                and self.viewer.layers[linked].data.shape == pixels.shape):
            linked = None
        name = linked or _free_name(self.viewer, f"{layer.name} (HU)", Image, pixels.shape, layer)
        kwargs["name"] = name
        # The export's own layer gets the same pixel size first, so that both lie in one world in
        # mm (at scale 1 it would dwarf the finger and take the scale bar out of mm); hidden.
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        export_old = spacing_of(layer)
        _set_pixel_size(layer, size_mm)
        layer.visible = False
        layer.metadata[CONVERTED] = name
        if existing is not None:
            out, old = existing, spacing_of(existing)
            out.data = pixels
            for key in ("scale", "contrast_limits", "metadata"):
                setattr(out, key, kwargs[key])
            moved = _follow_pixel_size(self.viewer, out, old, grid=(layer,))
        else:
            out = self.viewer.add_image(pixels, **kwargs)
            _follow_rename(layer, out)
            # seeds clicked on the export before it was converted stay on their pixels
            moved = _follow_pixel_size(self.viewer, layer, export_old, grid=(out,))
        self.viewer.layers.selection.active = out
        self.viewer.reset_view()
        clipped = f"; above {image.saturated_above_hu:.0f} HU it was clipped" if image.saturated_above_hu else ""
        _show_scale_bar(self.viewer)
        self.status.value = (f"'{name}': {size_mm:g} mm pixels, {_spans(out)}. Measure this one (widgets that had "
                             f"the export chosen now have it): {image.value_origin}{clipped}; '{layer.name}' is hidden, "
                             f"its pixels unchanged{moved}")
        return out


def _follow_rename(export, hu) -> None:
    """The export's link to its HU layer (``CONVERTED``, a layer name) follows the HU layer when
    the user renames it, so that widgets docked since still choose it and messages name it."""
    was = hu.name

    def renamed(event=None):
        nonlocal was
        if export.metadata.get(CONVERTED) == was:  # not once the export was converted into another layer
            export.metadata[CONVERTED] = hu.name
        was = hu.name

    hu.events.name.connect(renamed)


def _spans(layer) -> str:
    """``"so the view is 38 mm high and 51 mm wide (...)"``: a pixel size typed wrong (an export
    resized since) shows as a finger too large or too small for its view, which no check can
    tell for sure (benchmarks/pixel_size_check: the widest bone spans 3-15 mm on correct images)."""
    rows, cols = np.shape(layer.data)[-2:]
    row_mm, col_mm = spacing_of(layer)
    return (f"so the view is {rows * row_mm:.0f} mm high and {cols * col_mm:.0f} mm wide (see the scale bar): if the "
            "finger looks too large or too small for that, check the pixel size; an export resized after it was made "
            "no longer has the scan's")


def _set_pixel_size(layer, size_mm: float) -> None:
    layer.scale = tuple(layer.scale[:-2]) + (size_mm, size_mm)
    layer.units = ("mm",) * layer.ndim


def _follow_pixel_size(viewer, image, old_spacing, grid=()) -> str:
    """After ``image``'s pixel size changed from ``old_spacing``: the layers on its pixel grid
    (made from it by a widget, or the user's own at its old scale, such as clicked seeds) take the
    new size, so that seeds stay on their deposits; a lesions table measured in the old mm is
    dropped, to be measured again as the layer is now. ``grid``: other images on the same grid
    (an export and its HU layer). Returns what to tell the user."""
    from napari.layers import Image, Labels, Points

    grid = (image, *grid)
    others = [other for other in viewer.layers if isinstance(other, Image) and not any(other is g for g in grid)]
    # The user's own layers follow only when the old grid was these images' alone: shared with
    # another image, a layer of that scale may belong to it; at scale 1 (napari's New points
    # button makes layers of scale 1) only when there is no other image at all.
    own_grid = not others if np.allclose(old_spacing, 1.0) else not any(
        np.allclose(spacing_of(other), old_spacing) for other in others)
    on_old_grid = [other for other in viewer.layers if isinstance(other, (Labels, Points))
                   and ((other.metadata.get(SOURCE) is not None and any(_of_image(other, g) for g in grid))
                        or (own_grid and other.metadata.get(SOURCE) is None
                            and np.allclose(spacing_of(other), old_spacing)))]
    if not on_old_grid:
        return ""
    new = spacing_of(image)
    for other in on_old_grid:
        other.scale = tuple(other.scale[:-2]) + new
        other.units = ("mm",) * other.ndim
        measured = other.features is not None and "area_mm2" in other.features
        if isinstance(other, Labels) and (measured or other.metadata.get(GROWN_LABELS) is not None):
            # measured again from the labels, at the new size; the per-seed table (Export CSV)
            # and its summary held the old mm², so they go too until Quantify runs again. A layer
            # measured again at an earlier change has no table left; its warnings, settings and
            # summary follow each change all the same.
            other.features = pd.DataFrame()
            summary = other.metadata.pop("summary", "")
            other.metadata.pop("seed_table", None)
            _remeasured_note(other.metadata, image, old_spacing)
            other.metadata["summary"] = _remeasured_summary(viewer, other)  # matched again at the next change
            RESULT_EVENTS.lesions_remeasured.emit(other, summary)
    names = ", ".join(f"'{other.name}'" for other in on_old_grid)
    return (f". {names} moved with it, their pixels as they were; lesion tables are measured again at the "
            "new size (Quantify again for seeds and statuses)")


_REMEASURED = "measured again from the lesion labels after "


def _remeasured_summary(viewer, layer) -> str:
    """The status line of lesions measured again after their image changed (Prepare image): the
    image's warnings as they were said, and the total now."""
    frame = lesion_table(viewer, layer)
    total = float(frame["area_mm2"].sum()) if len(frame) else 0.0
    grown_warnings = [w for w in _warnings_for(layer.metadata.get("warnings"), frame).split("; ")
                      if w and not w.startswith(_REMEASURED)]
    return ((f"warning: {'; '.join(grown_warnings)}. " if grown_warnings else "")
            + f"'{layer.name}' measured again at {pixel_size_text(spacing_of(layer))} mm pixels: {len(frame)} lesion(s), "
            f"{total:.2f} mm² in all; "
            "press Quantify again for their seeds and statuses")


def _remeasured_note(metadata: dict, image, old_spacing) -> None:
    """What an export of lesions measured again after Prepare image changed their image says:
    the note is added to the growth's warnings (an earlier such note replaced), and the
    settings take the image's export pixel size and window as they are now."""
    from .io import pixel_size_caveats

    new_spacing = spacing_of(image)
    resized = tuple(old_spacing) != tuple(new_spacing)
    if resized:
        what = f"the pixel size changed from {pixel_size_text(old_spacing)} to {pixel_size_text(new_spacing)} mm"
    else:  # converted again from the export, through another window
        what = "the image was converted again from its export"
    note = f"{_REMEASURED}{what}, without their seeds and statuses: Quantify again to measure them anew"
    # what was said of the old pixel size (a scale of 1 read as 1 mm pixels, say) is said of the new one
    shape = tuple(np.shape(image.data)[-2:])
    said_of_old = set(pixel_size_caveats(shape, old_spacing)) if resized else set()
    kept = [part for part in str(metadata.get("warnings") or "").split("; ")
            if part and not part.startswith(_REMEASURED) and part not in said_of_old]
    now = pixel_size_caveats(shape, new_spacing) if resized else []
    metadata["warnings"] = "; ".join([*kept, *now, note])
    if isinstance(metadata.get(SETTINGS), dict):
        meta = image.metadata or {}
        export = meta.get("saturated_above_hu") is not None
        window = (meta.get("window_width_hu"), meta.get("window_level_hu"))
        metadata[SETTINGS] = {**metadata[SETTINGS], **_export_settings(
            export, new_spacing, window, pixel_size_given=export or resized)}


class SegmentWidget(_Widget):
    """Image -> editable ``bone`` Labels layer (the phalanx U-Net)."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._add_model_inputs()
        self.tta = CheckBox(label="flip test-time augmentation (4x slower)", value=False)
        self.run_button = PushButton(text="Segment phalanges")
        self.run_button.changed.connect(self.run)
        self.extend([self.tta, self.run_button, self.status])

    def run(self, *_):
        from .segment import segment_phalanges

        layer = self._image_or_hint()
        if layer is None:
            return None

        def go():
            pixels = image_pixels(layer)
            model = self._model()
            seg = segment_phalanges(pixels, model, spacing_mm=spacing_of(layer),
                                    device=self.device.value, tta=self.tta.value)
            from napari.layers import Labels

            # the user's: corrected, or brought in (opened from a file)
            kept = [b for b in _results(self.viewer, Labels, "bone", layer)
                    if _edited(b) or not b.metadata.get(MADE_HERE)]
            out = put_labels(self.viewer, "bone", seg.bone_mask.astype(np.uint8), layer, opacity=0.4)
            out.metadata["bone_probability"] = seg.probability
            from .segment import model_label

            out.metadata[MODEL], out.metadata[MADE_MASK] = model_label(model), _mask_key(out.data)
            out.metadata[TTA] = bool(self.tta.value)
            area_mm2 = seg.bone_mask.sum() * np.prod(spacing_of(layer))
            # a model of the user's is named: the one typed is the one that ran
            users_model = model.path is not None and not model_label(model).startswith("bundled ")
            by = f" by {Path(model.path).name}" if users_model else ""
            self.status.value = (f"bone: {area_mm2:.0f} mm² on '{layer.name}'{by} — paint or erase in '{out.name}' "
                                 "to correct")
            if kept:
                for mine in kept:  # two bone masks drawn over each other: the one in view is the one used
                    mine.visible = False
                self.status.value += (f"; your '{kept[-1].name}' is kept, hidden, but Subtract, Grow and Quantify "
                                      f"now use '{out.name}': delete '{out.name}' (and show yours) to go back to yours")
            self._warn_if_odd(layer, pixels, self._caveats(layer, pixels, model, seg.bone_mask))
            return out

        with self._busy(f"segmenting the phalanges of '{layer.name}'…"):
            return self._run_safely(go)

    @staticmethod
    def _caveats(layer, pixels, model, bone_mask) -> list:
        """What Quantify would say of this image and model before a bone mask is used: values
        that are not HU (a raw DICOM opened by another reader), a model whose own validation is
        poor, no bone found (the pixel size's notes are :func:`input_warning`'s here)."""
        from .io import image_caveats, pixel_size_caveats
        from .pipeline import bone_caveats
        from .segment import model_caveat

        spacing = spacing_of(layer)
        said = set(pixel_size_caveats(pixels.shape, spacing)) if np.allclose(spacing, 1.0) else set()
        notes = [note for note in image_caveats(calcinosis_image(layer, pixels)) if note not in said]
        return [*notes, *filter(None, [model_caveat(model)]), *bone_caveats(bone_mask)]


class SubtractWidget(_Widget):
    """Image + bone -> ``calcification candidates``, with live preview."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        import napari

        from .subtract import DEFAULT_THRESHOLD_HU, FALLBACK_MARGIN_MM

        self.image = create_widget(annotation=napari.layers.Image, label="image")
        self.bone = self._layer_input(napari.layers.Labels, "bone", follows="bone", of_image=self.image)
        self.threshold_hu = FloatSpinBox(label="threshold (HU)", value=DEFAULT_THRESHOLD_HU, min=-1000, max=3000, step=10)
        self.auto_margin = CheckBox(label="measure bone margin on the image", value=True)
        self.margin_mm = FloatSpinBox(label="bone margin (mm)", value=FALLBACK_MARGIN_MM, min=0.0, max=3.0, step=0.05)
        self.live = CheckBox(label="live preview", value=True)
        self.run_button = PushButton(text="Subtract bone")
        self.run_button.changed.connect(self.run)
        for w in (self.threshold_hu, self.margin_mm, self.auto_margin):
            w.changed.connect(self._preview)
        self.extend([self.image, self.bone, self.threshold_hu, self.auto_margin, self.margin_mm, self.live,
                     self.run_button, self.status])

    def _preview(self, *_):
        if self.live.value and self.image.value is not None and self.bone.value is not None:
            self.run()

    def run(self, *_):
        from .subtract import resolve_margin_mm, subtract_bone

        image, bone = self.image.value, self.bone.value
        if image is not None and self._run_safely(lambda: image_pixels(image)) is None:
            return None  # an export, a stack: said before asking for a bone layer it cannot have
        if image is None or bone is None:
            self.status.value = "choose an image and its bone layer (run Segment phalanges first)"
            return None

        def go():
            pixels = image_pixels(image)
            mask = _mask_for(bone, pixels, "bone")
            margin = None if self.auto_margin.value else self.margin_mm.value
            margin = resolve_margin_mm(margin, pixels, mask, spacing_of(image), self.threshold_hu.value)
            if self.auto_margin.value:
                with self.margin_mm.changed.blocked():
                    self.margin_mm.value = round(margin, 2)
            cand = subtract_bone(pixels, mask, spacing_of(image), threshold_hu=self.threshold_hu.value, margin_mm=margin)
            _claim(bone, image)
            out = put_labels(self.viewer, "calcification candidates", cand.astype(np.uint8), image, opacity=0.6)
            out.metadata.update(threshold_hu=self.threshold_hu.value, margin_mm=margin)
            from .subtract import DEFAULT_THRESHOLD_HU

            # Grow and Quantify measure with the command line's defaults (a user who set 300 HU here
            # read threshold_hu=200 in the export): said where this widget's settings differ
            own = self.threshold_hu.value != DEFAULT_THRESHOLD_HU or not self.auto_margin.value
            self.status.value = (f"{cand.sum() * np.prod(spacing_of(image)):.1f} mm² above "
                                 f"{self.threshold_hu.value:g} HU outside bone + {margin:.2f} mm"
                                 + (f" (for viewing and Auto-seed's proposals: Grow and Quantify measure at "
                                    f"{DEFAULT_THRESHOLD_HU:g} HU with the margin measured on the image, as the command "
                                    "line does by default)" if own else "")
                                 + _other_image_note(bone, image))
            self._warn_if_odd(image, pixels)
            return out

        return self._run_safely(go)


class GrowWidget(_Widget):
    """Click deposits on a ``seeds`` Points layer; the ``lesions`` layer regrows as you click."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        import napari

        self.image = create_widget(annotation=napari.layers.Image, label="image")
        self.bone = self._layer_input(napari.layers.Labels, "bone", follows="bone", of_image=self.image)
        self.connectivity = ComboBox(label="connectivity", choices=[4, 8], value=4)
        self.take_unsure = CheckBox(label="a seed may take bone the model was unsure of", value=True,
                                    tooltip="a deposit against the bone is often partly in the bone layer, where the "
                                    "model was unsure (probability 0.5-0.8): the seed's deposit takes that part")
        self.add_seeds_button = PushButton(text="Add seeds (click on each deposit)")
        self.auto_button = PushButton(text="Auto-seed every candidate deposit")
        self.add_seeds_button.changed.connect(self.start_seeding)
        self.auto_button.changed.connect(self.auto_seed)
        self.connectivity.changed.connect(self.regrow)
        self.take_unsure.changed.connect(self.regrow)
        self._watched_bone = None
        self._regrow_soon = _soon(self.regrow)
        self._regrow_if_bone_changed = _soon(lambda: self._bone_changed_since_growth() and self.regrow())
        self.bone.changed.connect(self._watch_bone)
        self.image.changed.connect(self._image_chosen)
        self.points = None
        self._watch_bone()
        # Seeds Quantify proposes (or another Grow makes) after this widget opened are followed too.
        self._connect(self.viewer.layers.events.inserted, self._layer_added)
        self._connect(self.viewer.layers.events.removed, self._layer_removed)
        self.extend([self.image, self.bone, self.connectivity, self.take_unsure, self.add_seeds_button,
                     self.auto_button, self.status])
        self._image_chosen()

    def _layer_added(self, event) -> None:
        """A seeds layer made for the chosen image (by Quantify) is followed: moving or deleting
        its points regrows the lesions."""
        from napari.layers import Points

        layer, image = event.value, self.image.value
        if (isinstance(layer, Points) and image is not None and layer.metadata.get(SOURCE) is not None
                and seeds_of(self.viewer, image) is layer):
            self._use_seeds(layer)

    def _layer_removed(self, event) -> None:
        """The seeds layer deleted: nothing grows from its points any more (a helper's run saw
        lesions grown again, when the bone was painted, from clicks no longer in the viewer)."""
        if event.value is self.points:
            self._use_seeds(None)

    def _watch_bone(self, *_):
        """Regrow when the user paints the chosen bone layer (bone erased beside a deposit is
        then measured with it), when its mask is redrawn otherwise (an undo or redo, after which
        napari only redraws the layer, or Segment phalanges run again) if it is not the mask the
        lesions were grown on, and when another bone layer is chosen, such as one made after
        the seeds."""
        if self._watched_bone is not None:
            self._disconnect(self._watched_bone.events.paint, self._regrow_soon)
            self._disconnect(self._watched_bone.events.set_data, self._regrow_if_bone_changed)
        self._watched_bone = self.bone.value
        if self._watched_bone is not None:
            self._connect(self._watched_bone.events.paint, self._regrow_soon)
            # (Quantify writing a new bone comes with its lesions, grown on it: nothing to regrow)
            self._connect(self._watched_bone.events.set_data, self._regrow_if_bone_changed)
            if self.status.value.startswith("no bone layer for "):  # said before this bone came (Quantify's)
                self._image_chosen()
        self._regrow_if_bone_changed()

    def _grown(self):
        """The chosen image's newest lesions layer a widget made, or None."""
        from napari.layers import Labels

        grown = [layer for layer in _results(self.viewer, Labels, "lesions", self.image.value)
                 if layer.metadata.get(MADE_HERE)] if self.image.value is not None else []
        return grown[-1] if grown else None

    def _bone_changed_since_growth(self) -> bool:
        """Whether the chosen image's lesions were grown on another mask than its bone layer's
        now (painted while this widget was on another image or closed, undone, segmented again,
        another bone layer chosen), or not grown yet from seeds clicked before there was a bone
        layer."""
        bone = self.bone.value
        if self.image.value is None or bone is None or self.points is None:
            return False
        grown = self._grown()
        if grown is None:
            return len(self.points.data) > 0
        key = grown.metadata.get(GROWN_ON)
        return key is not None and key != _mask_key(bone.data)

    def seeds_layer(self):
        """The chosen image's seeds layer (:func:`seeds_of`), made when it has none; the lesions
        regrow whenever its points change, and now if its bone changed since they were grown."""
        image = self.image.value
        if self.points is not None and self.points in self.viewer.layers and _of_image(self.points, image):
            return self.points
        points = seeds_of(self.viewer, image)
        if points is None:  # points 1 mm across
            points = put_points(self.viewer, "seeds", np.zeros((0, 2)), image, 1.0 / min(spacing_of(image)))
        _claim_seeds(points, image)
        self._use_seeds(points)
        return points

    def _use_seeds(self, points) -> None:
        """Regrow from ``points`` (None: from no seeds layer) when they change."""
        if self.points is not None:
            self._disconnect(self.points.events.data, self._seeds_changed)
        self.points = points
        if points is not None:
            self._connect(points.events.data, self._seeds_changed)
            self._regrow_if_bone_changed()

    def _seeds_changed(self, event=None):
        """Regrow once a point was added, moved or removed: not on napari's event before the
        change (each click sends both), and not when a widget writes its own seeds there
        (Quantify's proposal comes with its own lesions)."""
        if str(getattr(event, "action", "")).lower().endswith("ing") or id(self.points) in _WRITING:
            return
        self.regrow()

    def _image_chosen(self, *_):
        """Another image: its own seeds layer (if it has one) regrows its lesions from now on,
        they are regrown if its bone changed meanwhile, and the status line says where it stands
        (not the other image's total)."""
        image = self.image.value
        points = seeds_of(self.viewer, image) if image is not None else None
        # the image's own: not a layer of the user's that no image has used yet
        self._use_seeds(points if points is not None and points.metadata.get(SOURCE) is not None else None)
        grown = self._grown()
        summary = grown.metadata.get("summary") if grown is not None else None
        self.status.value = f"'{image.name}': {summary}" if summary else ""

    def start_seeding(self, *_):
        if self.image.value is None:
            self.status.value = "choose an image first"
            return None
        if self._run_safely(lambda: image_pixels(self.image.value)) is None:
            return None
        points = self.seeds_layer()
        self.viewer.layers.selection.active = points
        points.mode = "add"
        self.status.value = "click on each deposit; move or delete points to correct — lesions regrow" + (
            "" if self.bone.value is not None else
            f" once '{self.image.value.name}' has a bone layer: run Segment phalanges (your clicks are kept)")
        return points

    def auto_seed(self, *_):
        from .grow import grow_lesions

        image, bone = self.image.value, self.bone.value
        if image is not None and self._run_safely(lambda: image_pixels(image)) is None:
            return None  # an export, a stack: said before asking for a bone layer it cannot have
        if image is None or bone is None:
            self.status.value = "choose an image and its bone layer first"
            return None

        def go():
            pixels = image_pixels(image)
            from napari.layers import Labels

            # this image's newest candidates (Subtract's threshold and margin), else grow_lesions' own
            made = [c for c in _results(self.viewer, Labels, "calcification candidates", image)
                    if c.data.shape == pixels.shape]
            candidates = np.asarray(made[-1].data) > 0 if made else None
            auto = grow_lesions(pixels, _mask_for(bone, pixels, "bone"), spacing_of(image),
                                None, candidates=candidates, connectivity=self.connectivity.value)
            ok = auto.seeds[auto.seeds["status"] == "ok"]
            points = self.seeds_layer()
            # The user's clicks stay; a seed is added on each deposit none of them lies on.
            rc = np.round(points_in_pixels(points, image)).astype(int)
            inside = np.all((rc >= 0) & (rc < auto.lesion_labels.shape), axis=1)
            taken = set(auto.lesion_labels[rc[inside, 0], rc[inside, 1]].tolist())
            added = ok[~ok["lesion_id"].isin(taken)][["seed_row", "seed_col"]].to_numpy(float)
            clicked = np.asarray(points.data, float).reshape(-1, points.ndim)
            points.data = np.vstack([clicked, pixels_in_points(points, image, added)])  # regrows, and says so
            self.status.value += _left_out_text(auto.seeds["status"], "not proposed", ": click any that is a deposit")
            return points

        return self._run_safely(go)

    def regrow(self, *_):
        from .pipeline import quantify

        image, bone = self.image.value, self.bone.value
        if self.points is not None and self.points not in self.viewer.layers:
            self._use_seeds(None)
        if image is None or self.points is None or self._closed:
            return None
        if bone is None:
            from napari.layers import Labels

            grown = _results(self.viewer, Labels, "lesions", image)
            self.status.value = (
                f"no bone layer for '{image.name}': " + ("the lesions shown were grown on a bone layer that is gone "
                                                         "and are not updated; " if grown else "")
                + "run Segment phalanges (or pick a bone layer) and the seeds grow")
            return None

        def go():
            pixels = image_pixels(image)
            calc = calcinosis_image(image, pixels)
            seeds = points_in_pixels(self.points, image)
            mask = _mask_for(bone, pixels, "bone")
            # The network's probability, kept by Segment phalanges: a seed may take a blob of the
            # mask it was unsure of (a deposit against the bone); painted pixels stay bone.
            probability = bone.metadata.get("bone_probability")
            if (not self.take_unsure.value or probability is None or np.shape(probability) != mask.shape
                    or not _of_image(bone, image)):
                probability = None
            painted = self._painted_to_add_to(bone)
            change = _seeds_changed_since(painted, seeds) if painted is not None else None
            if change is not None:  # seeds clicked (or those deleted) after painting: the painting stays
                return self._grow_into_painted(painted, calc, *change, mask, probability)
            result = quantify(calc, seeds, bone_mask=mask, bone_probability=probability,
                              connectivity=self.connectivity.value)
            _claim(bone, image)
            lesions = show_lesions(self.viewer, result, image, bone, seeds_layer=self.points,
                                   connectivity=self.connectivity.value, unsure_bone_taken=self.take_unsure.value)
            self.status.value = lesions.metadata["summary"] + _other_image_note(bone, image)  # failed seeds say why here
            self._warn_if_odd(image, pixels)
            return lesions

        return self._run_safely(go)

    def _painted_to_add_to(self, bone):
        """The chosen image's lesions layer the user painted, shown, grown on the bone layer as it
        is now with this widget's settings: seeds added since go into it; else None."""
        grown = self._grown()
        if grown is None or not grown.visible or not _painted(grown.metadata, grown.data):
            return None
        settings = grown.metadata.get(SETTINGS) or {}
        if (grown.metadata.get(GROWN_ON) != _mask_key(bone.data)
                or settings.get("connectivity", self.connectivity.value) != self.connectivity.value
                or settings.get("unsure_bone_taken", self.take_unsure.value) != self.take_unsure.value):
            return None
        return grown

    def _grow_into_painted(self, layer, calc, added, kept, mask, probability):
        """Grow the seeds ``added`` (image pixels) since ``layer`` was painted and add their
        lesions to it under new numbers (never one used before); take out the lesions of seeds
        added so and deleted since (``kept``: which of the seeds the layer accounts for stay).
        The painting stays as it is: a seed on a painted lesion is measured as painted, one whose
        deposit grows into a painted lesion adds nothing and stays unmeasured (Measure says so
        until it is painted in or deleted), and one change is one step of the layer's undo."""
        from scipy import ndimage as ndi

        from .pipeline import (LARGER_THAN_ANY_DEPOSIT, RUNS_ALONG_A_THIN_LINE, large_lesion_note, quantify,
                               thin_tail_note)

        labels = _squeeze_leading(np.asarray(layer.data))
        accounted, grown_ids, anchors = _accounted_seeds(layer.metadata)
        merged = labels.copy()
        gone, changed_since = [], []
        for k in sorted({int(k) for k in grown_ids[~kept] if k > 0} - set(grown_ids[kept].tolist())):  # no seed left on it
            r, c = anchors[grown_ids == k][0].astype(int)
            if merged[r, c] != k:  # painted over or undone since: the user's, left as it is
                changed_since.append(k)
                continue
            piece, _ = ndi.label(merged == k)
            merged[piece == piece[r, c]] = 0
            gone.append(k)
        on_painted = _label_at(merged, added) > 0
        ids = np.where(on_painted, 0, NOT_MEASURED)  # a failed seed is 0 (said, as growth says it), as on_painted
        new_anchors = np.full((len(added), 2), np.nan)
        failed, warnings, into_painted = [], [], 0
        next_id = max(int(merged.max()), int(layer.metadata.get(LAST_ADDED_ID, 0))) + 1
        to_grow = np.flatnonzero(~on_painted)
        if len(to_grow):
            result = quantify(calc, added[to_grow], bone_mask=mask, bone_probability=probability,
                              connectivity=self.connectivity.value)
            # one row per seed given, in order (quantify() drops rows only of automatic mode)
            table, grown = result.table, result.lesion_labels
            # the image's notes; a lesion too large to be a deposit is said below by its number here
            warnings = [w for w in result.warnings if LARGER_THAN_ANY_DEPOSIT not in w
                        and RUNS_ALONG_A_THIN_LINE not in w]
            given = {}  # grown lesion -> its number in the painting (two new seeds on one deposit: one lesion)
            for j, row in zip(to_grow, table.itertuples()):
                if not row.lesion_id:
                    failed.append(row.status)
                    ids[j] = 0
                elif row.lesion_id in given:
                    ids[j], new_anchors[j] = given[row.lesion_id]
                elif (grown == row.lesion_id)[merged > 0].any():
                    into_painted += 1  # a deposit you painted, or one touching it: yours stands, this one unmeasured
                else:
                    lesion = grown == row.lesion_id
                    ids[j], new_anchors[j] = next_id, np.argwhere(lesion)[0]
                    given[row.lesion_id] = (ids[j], new_anchors[j])
                    merged[lesion] = next_id
                    next_id += 1
        changed = np.nonzero(merged != labels)
        if changed[0].size:  # one undo step: Ctrl+Z takes this back, not your last brush stroke
            lead = tuple(np.zeros_like(changed[0]) for _ in range(np.ndim(layer.data) - 2))
            layer.data_setitem(lead + changed, merged[changed])
        still = kept & (grown_ids != GROWN_BEFORE_PAINTING)
        layer.metadata[GROWN_SEEDS] = np.vstack([accounted[kept], added])
        layer.metadata[ADDED_SEEDS] = np.vstack([np.column_stack([accounted, grown_ids, anchors])[still],
                                                 np.column_stack([added, ids, new_anchors])])
        layer.metadata[LAST_ADDED_ID] = next_id - 1
        layer.metadata[PAINTED_FROM] = _points_key(self.points)  # GROWN_FROM stays: the seeds the growth measured
        if warnings:  # in the export's warnings too (a lesion too large is said there as the export measures it)
            kept_warnings = [w for w in str(layer.metadata.get("warnings") or "").split("; ") if w]
            layer.metadata["warnings"] = "; ".join(dict.fromkeys([*kept_warnings, *warnings]))
        row_mm, col_mm = spacing_of(self.image.value)
        new_ids = np.unique(ids[ids > 0])
        new_areas = pd.DataFrame({"lesion_id": new_ids,
                                  "area_mm2": [float((merged == k).sum() * row_mm * col_mm) for k in new_ids]})
        warnings += [note] if (note := large_lesion_note(new_areas)) else []
        added_lesions = np.where(np.isin(merged, new_ids), merged, 0)  # by their numbers in the painting
        warnings += [note] if (note := thin_tail_note(added_lesions, (row_mm, col_mm), new_areas)) else []
        said = ([f"lesion(s) {', '.join(map(str, new_ids))} grown ({new_areas['area_mm2'].sum():.2f} mm²) and added"]
                if len(new_ids) else [])
        if on_painted.any():
            said.append(f"{int(on_painted.sum())} on a lesion you painted, measured as painted")
        if into_painted:
            said.append(f"{into_painted} grew into a lesion you painted, which stands: paint its deposit in yourself "
                        "if it is another, or delete the seed")
        if failed:
            said.append(f"{len(failed)} failed: {', '.join(failed)}")
        if gone:
            said.append(f"lesion(s) {', '.join(map(str, gone))} of the seed(s) you deleted taken out")
        if changed_since:
            said.append(f"lesion(s) {', '.join(map(str, changed_since))} of the seed(s) you deleted left as you "
                        "changed them")
        head = f"warning: {'; '.join(warnings)}. " if warnings else ""
        # the layer's summary, as growth's is: said again when the image is chosen, followed when its pixel size changes
        layer.metadata["summary"] = self.status.value = (
            f"{head}seeds changed since you painted '{layer.name}' of '{self.image.value.name}': "
            + ("; ".join(said) or "nothing to grow or take out")
            + " (moving or deleting a seed grown before you painted, or changing the bone, grows them all again "
            "into a new layer, yours kept hidden)")
        return layer


# What ADDED_SEEDS records of a seed besides its lesion's number: grown before the painting (not
# in ADDED_SEEDS), or added and grown into a painted lesion, so measured nowhere.
GROWN_BEFORE_PAINTING, NOT_MEASURED = -1, -2


def _accounted_seeds(metadata: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The seeds (image pixels) a lesions layer accounts for (its ``metadata``); for each, the
    lesion Grow added to the painting for it (GROWN_BEFORE_PAINTING; 0: none, on a painted lesion
    or failed; NOT_MEASURED), and a pixel of that lesion as added (nan where none)."""
    accounted = np.asarray(metadata.get(GROWN_SEEDS, np.zeros((0, 2))), float).reshape(-1, 2)
    ids = np.full(len(accounted), GROWN_BEFORE_PAINTING)
    anchors = np.full((len(accounted), 2), np.nan)
    for r, c, k, ar, ac in np.asarray(metadata.get(ADDED_SEEDS, np.zeros((0, 5))), float).reshape(-1, 5):
        at = np.all(np.isclose(accounted, (r, c)), axis=1)
        ids[at], anchors[at] = int(k), (ar, ac)
    return accounted, ids, anchors


def _label_at(labels: np.ndarray, pixels) -> np.ndarray:
    """The label under each of ``pixels`` ((n, 2) image pixels, rounded); 0 outside the image
    or where a pixel is nan."""
    at = np.round(np.nan_to_num(np.asarray(pixels, float).reshape(-1, 2), nan=-1.0)).astype(int)
    inside = np.all((at >= 0) & (at < labels.shape), axis=1)
    found = np.zeros(len(at), np.int64)
    found[inside] = labels[at[inside, 0], at[inside, 1]]
    return found


def _near_seeds(seeds, others) -> np.ndarray:
    """(len(seeds), len(others)): whether each seed lies within half a pixel of each of ``others``
    ((n, 2) image pixels), as a seed still where it was grown from does."""
    seeds, others = (np.asarray(p, float).reshape(-1, 2) for p in (seeds, others))
    return np.hypot(*(seeds[:, None, :] - others[None, :, :]).transpose(2, 0, 1)) <= 0.5


def _seeds_changed_since(layer, seeds):
    """How the seeds changed since ``layer`` was painted: ``(added, kept)``, the seeds (image
    pixels) added, and which of those the layer accounts for are still there; None when a seed
    grown before the painting moved or went (all grow again), or when nothing changed."""
    accounted, ids, _ = _accounted_seeds(layer.metadata)
    seeds = np.asarray(seeds, float).reshape(-1, 2)
    near = _near_seeds(seeds, accounted)
    kept = near.any(axis=0)
    added = seeds[~near.any(axis=1)]
    if (ids[~kept] == GROWN_BEFORE_PAINTING).any() or (kept.all() and not len(added)):
        return None
    return added, kept


def _other_image_note(layer, image) -> str:
    """``"; note: ..."`` when ``layer`` was made from another image than ``image``, else ""."""
    source = layer.metadata.get(SOURCE)
    if source is None or _of_image(layer, image):
        return ""
    return f"; note: '{layer.name}' was made from '{source}', not from '{image.name}'"


def _mask_key(data) -> tuple:
    """A fingerprint of a mask's pixels (> 0), to tell whether it changed."""
    import zlib

    mask = np.asarray(data) > 0
    return mask.shape, zlib.crc32(np.packbits(mask).tobytes())


def _labels_key(data) -> tuple:
    """A fingerprint of a Labels layer's values (each lesion's number too)."""
    import zlib

    labels = np.ascontiguousarray(np.asarray(data))
    return labels.shape, str(labels.dtype), zlib.crc32(labels.tobytes())


def _edited(layer) -> bool:
    """Whether the user changed a layer a widget made: lesions or a bone mask painted into other
    pixels than the widget wrote (a stroke undone with Ctrl+Z leaves them as made, and the widgets
    may update them as before: a helper's run had an undone stroke keep 'lesions' and 'bone' as
    the user's, hidden, and new layers made beside them), points moved, added or deleted."""
    metadata = layer.metadata
    if not metadata.get(EDITED):
        return False
    if metadata.get(GROWN_LABELS) is not None:
        return _painted(metadata, layer.data)
    if metadata.get(MADE_MASK) is not None:
        return _mask_key(layer.data) != metadata[MADE_MASK]
    return True


def _painted(metadata: dict, data) -> bool:
    """Whether the user painted a lesions layer into other lesions than a widget grew: a brush
    stroke undone (Ctrl+Z) leaves the lesions as grown, and their seed table holds."""
    if not metadata.get(EDITED):
        return False
    grown = metadata.get(GROWN_LABELS)
    return grown is None or _labels_key(data) != grown


def _points_key(points) -> tuple | None:
    """A fingerprint of a Points layer's points (None for no layer), to tell whether they changed."""
    import zlib

    if points is None:
        return None
    data = np.round(np.asarray(points.data, float), 6)
    return data.shape, zlib.crc32(data.tobytes())


def _grown_inputs(viewer, image_layer, seeds_layer, bone_layer) -> dict:
    """Which layers lesions are grown from, by ``unique_id`` (kept through a rename), and which
    bone layers the image has now (:func:`_out_of_date`)."""
    from napari.layers import Labels

    def uid(layer):
        return str(layer.unique_id) if layer is not None else None

    return {"seeds": uid(seeds_layer), "bone": uid(bone_layer),
            "bones": [uid(b) for b in _results(viewer, Labels, "bone", image_layer)]}


def _by_id(viewer, unique_id):
    """The layer of ``unique_id`` in the viewer, or None (deleted, or none recorded)."""
    return next((layer for layer in viewer.layers if unique_id is not None and str(layer.unique_id) == unique_id), None)


def _out_of_date(viewer, meta: dict, data) -> str:
    """What changed since a widget grew the lesions of ``meta`` and ``data`` (a lesions layer's
    metadata and labels): the points of the seeds layer they were grown from were added, moved
    or deleted, the bone layer they were grown on was painted, or a bone mask the widgets would
    now use was made for their image (Segment again); "" when nothing did, or when the user
    painted the lesions themselves (then measured as painted)."""
    from napari.layers import Labels

    inputs = meta.get(GROWN_INPUTS)
    if not meta.get(MADE_HERE) or not inputs:
        return ""
    if _painted(meta, data):
        return _seeds_off_painted(viewer, meta, data)
    changed = []
    seeds = _by_id(viewer, inputs["seeds"])
    if seeds is not None and _points_key(seeds) != meta.get(GROWN_FROM):
        changed.append(f"the points of '{seeds.name}' were added, moved or deleted")
    image = _source_of(viewer, meta)
    if seeds is None and inputs["seeds"] is not None and image is not None:
        # deleted, and other seeds clicked in a new layer: the table is not of the seeds in view
        now = seeds_of(viewer, image)
        if now is not None and _points_key(now) != meta.get(GROWN_FROM):
            changed.append(f"the seeds layer they were grown from was deleted, and '{now.name}' holds other points")
    bone = _by_id(viewer, inputs["bone"])
    if bone is not None and _mask_key(bone.data) != meta.get(GROWN_ON):
        changed.append(f"the bone mask ('{bone.name}') changed")
    made_since = [b for b in (_results(viewer, Labels, "bone", image) if image is not None else [])
                  if str(b.unique_id) not in inputs["bones"] and np.shape(b.data) == np.shape(data)]
    if made_since:
        changed.append(f"a new bone mask ('{made_since[-1].name}') was made")
    return " and ".join(changed)


def _seeds_off_painted(viewer, meta: dict, data) -> str:
    """Lesions the user painted are measured as painted, whatever their seeds; but a seed added
    since they were grown that lies on none of them is a deposit clicked and not measured:
    what to say of it (its pixel), or ""."""
    seeds = _by_id(viewer, meta[GROWN_INPUTS]["seeds"])
    image = _source_of(viewer, meta)
    labels = _squeeze_leading(np.asarray(data))
    accounted, ids, anchors = _accounted_seeds(meta)  # in pixels: kept at a new pixel size
    # a seed Grow added to the painting whose lesion is gone from where it was added (Ctrl+Z, or
    # erased), or whose deposit grew into a painted lesion, is measured nowhere
    undone = (ids > 0) & (_label_at(labels, anchors) != ids)
    unmeasured = undone | (ids == NOT_MEASURED)
    key = meta.get(PAINTED_FROM, meta.get(GROWN_FROM))
    if seeds is None or image is None or (_points_key(seeds) == key and not unmeasured.any()):
        return ""
    clicked = points_in_pixels(seeds, image)
    # not one grown from (measured, or said to have failed then), and on no lesion
    lost = ~_near_seeds(clicked, accounted[~unmeasured]).any(axis=1) & (_label_at(labels, clicked) == 0)
    off = [f"row {int(round(r))}, col {int(round(c))}" for r, c in clicked[lost]]
    if not off:
        return ""
    return (f"{len(off)} seed(s) were added on no lesion you painted ({'; '.join(off[:3])}"
            f"{'; ...' if len(off) > 3 else ''}): paint each deposit into the lesions layer to measure it with "
            "your lesions, or delete the seed")


def _bone_model(bone_layer) -> str:
    """What segmented a bone layer, for the export's ``model`` column: the network, said to be
    corrected by hand when the user painted it; a bone mask of the user's own says so."""
    if bone_layer is None:
        return ""
    model = bone_layer.metadata.get(MODEL)
    if model is None or not bone_layer.metadata.get(MADE_HERE):
        return f"bone mask given as the layer '{bone_layer.name}'"
    return f"{model}, corrected by hand" if _edited(bone_layer) else model


def _mask_for(layer, pixels, what: str) -> np.ndarray:
    """A Labels layer as a mask (> 0) for an image of ``pixels``' shape, else CalcinosisError."""
    mask = _squeeze_leading(np.asarray(layer.data))
    if mask.shape != pixels.shape:
        raise CalcinosisError(
            f"the {what} layer '{layer.name}' ({'x'.join(map(str, mask.shape))} px) does not match the image "
            f"({'x'.join(map(str, pixels.shape))} px): choose the {what} layer made from this image"
        )
    return mask > 0


# Automatic mode's statuses for what it left out: what the status line calls them, and examples.
_LEFT_OUT = {
    "outside_finger": ("bright thing(s) lying against the air", "splints, rings, the skin's edge, the CT table"),
    "below_noise": ("speck(s) no brighter than the image's noise", None),
    "vessel_like": ("long thin line(s) along the bone", "calcified arteries, most likely"),
}


def _left_out_text(statuses, verb: str, advice: str = "") -> str:
    """``"; N <what> <verb> (<examples>)<advice>"`` for each left-out status among ``statuses``."""
    text = ""
    for status, (what, examples) in _LEFT_OUT.items():
        n = int((statuses == status).sum())
        if n:
            text += f"; {n} {what} {verb}" + (f" ({examples})" if examples else "") + advice
    return text


def show_lesions(viewer, result, image_layer, bone_layer=None, automatic: bool = False, seeds_layer=None,
                 connectivity: int = 4, unsure_bone_taken: bool = True):
    """Put a quantify() result's lesions on the ``lesions`` layer, measurements in ``features``;
    with the ``bone_layer`` they were grown on, which mask that was (Grow regrows when it changes).
    What the command line's rows say of how they were measured goes into the layer's metadata
    for the export: ``mode`` (``automatic``: seeds proposed, not the user's), ``warnings``,
    ``model`` and the settings (``connectivity`` and ``unsure_bone_taken``: what ``result`` was
    grown with, the rest quantify()'s defaults). ``seeds_layer``: the points they were grown from
    (default: the image's seeds)."""
    table = result.table
    lesions = table[table["lesion_id"] > 0].drop_duplicates("lesion_id").copy()
    features = lesions.assign(index=lesions["lesion_id"]).reset_index(drop=True)
    layer = put_labels(viewer, "lesions", result.lesion_labels, image_layer, opacity=0.7)
    layer.features = features
    layer.metadata["seed_table"] = table
    layer.metadata[IMAGE_FILE] = _image_file(viewer, image_layer)
    from .grow import LEFT_OUT_STATUSES

    failed = (table["lesion_id"] == 0) & ~table["status"].isin(LEFT_OUT_STATUSES)
    total = float(features["area_mm2"].sum()) if len(features) else 0.0
    widget_status = f"{len(features)} lesion(s), {total:.2f} mm² in all"
    warnings = getattr(result, "warnings", None)
    if warnings:  # no bone found, a lesion no deposit can be, values that are not HU
        widget_status = f"warning: {'; '.join(warnings)}. {widget_status}"
    if failed.any():
        statuses = table.loc[failed, "status"]
        # In seed order while that can be read; counted beyond (a Labels layer taken for seeds).
        listed = (", ".join(statuses) if len(statuses) <= 6
                  else ", ".join(f"{n} {status}" for status, n in statuses.value_counts().items()))
        widget_status += f"; {int(failed.sum())} seed(s) failed: {listed}"
    widget_status += _left_out_text(table["status"], "left out")
    widget_status += _near_resolution_text(features, result.image.spacing_mm)
    widget_status += _painted_kept_text(viewer, layer, image_layer)
    if "hu_clipped" in features and features["hu_clipped"].any():
        widget_status += (f"; {int(features['hu_clipped'].sum())} reach the export's top of "
                          f"{result.image.saturated_above_hu:.0f} HU: their HU are lower bounds (hu_clipped)")
    n_freed = int(((table["freed_from_bone_mm2"] > 0) & (table["status"] == "ok")).sum())
    if n_freed:
        widget_status += (f"; {n_freed} deposit(s) the bone mask had taken were measured: check the bone layer there "
                          "(a seed on bone takes it as a deposit: delete the seed to leave it out)")
    layer.metadata["summary"] = widget_status
    layer.metadata.update(mode="automatic" if automatic else "seeded", warnings="; ".join(warnings or []))
    layer.metadata[MODEL] = _bone_model(bone_layer)
    layer.metadata[SETTINGS] = _settings_of(result.image, bone_layer, connectivity, unsure_bone_taken)
    if bone_layer is not None:
        layer.metadata[GROWN_ON] = _mask_key(bone_layer.data)
    seeds_layer = seeds_layer if seeds_layer is not None else seeds_of(viewer, image_layer)
    layer.metadata[GROWN_FROM] = _points_key(seeds_layer)  # Measure tells when they move
    layer.metadata[GROWN_INPUTS] = _grown_inputs(viewer, image_layer, seeds_layer, bone_layer)
    layer.metadata[GROWN_LABELS] = _labels_key(layer.data)
    # the seeds as the seeds layer holds them: automatic mode puts there only the deposits it measured
    in_layer = table["status"].eq("ok").to_numpy() if automatic else np.ones(len(table), bool)
    layer.metadata[GROWN_SEEDS] = table.reindex(columns=["seed_row", "seed_col"]).to_numpy(float)[in_layer]
    for key in (ADDED_SEEDS, PAINTED_FROM, LAST_ADDED_ID):  # grown anew: nothing added to a painting yet
        layer.metadata.pop(key, None)
    RESULT_EVENTS.lesions_shown.emit(layer)
    return layer


def _settings_of(image, bone_layer, connectivity: int, unsure_bone_taken: bool) -> dict:
    """What lesions grown on ``image`` (a CalcinosisImage) with the widgets were grown with, as
    :func:`~napari_calcinosis.pipeline.settings_label`'s keywords (the export says them in the
    command line's words): quantify()'s threshold, margin and smallest area by default, the
    bone's test-time augmentation (Segment phalanges' tick box), an export's pixel size and window."""
    export = image.saturated_above_hu is not None  # mapped back through a window (Prepare image, a screen save)
    return dict(connectivity=connectivity, unsure_bone_taken=unsure_bone_taken,
                tta=bool(bone_layer is not None and bone_layer.metadata.get(TTA)),
                **_export_settings(export, image.spacing_mm, (image.window_width_hu, image.window_level_hu),
                                   pixel_size_given=_pixel_size_given(image)))


def _pixel_size_given(image) -> bool:
    """Whether a CalcinosisImage's pixel size is one the user gave (the command line's
    --pixel-size, Prepare image, a scale set in napari since the file was read, or a layer of
    their own), not the DICOM's own: its rows then say it, as ``export_pixel_size_mm``."""
    return not image.spacing_origin or image.spacing_origin.startswith(("user", "given in napari"))


def _export_settings(export: bool, spacing_mm, window_hu, pixel_size_given: bool) -> dict:
    """settings_label's export keywords for an image, as the command line's rows say them: the
    pixel size (square) where the user gave it (:func:`_pixel_size_given`) and an export's window
    (width, level); a DICOM read with its own spacing and HU says neither."""
    row_mm, col_mm = spacing_mm
    return dict(export_pixel_size_mm=float(row_mm) if pixel_size_given and row_mm == col_mm else None,
                export_window_hu=tuple(map(float, window_hu)) if export else None)


def _painted_kept_text(viewer, layer, image_layer) -> str:
    """Lesions the user painted are not grown over: new ones go to ``lesions (new)``. The painted
    layer is hidden then (two lesion layers drawn over each other, the one in view would not be
    the one measured), and the user is told where each is; also when they had hidden it
    themselves (to look at the image: seeds clicked meanwhile are not grown into a painting out
    of view, and a helper's run saw the painting drop out of Measure's numbers unsaid)."""
    from napari.layers import Labels

    painted = [other for other in _results(viewer, Labels, "lesions", image_layer)
               if other is not layer and _edited(other)]
    for other in painted:
        other.visible = False
    if not painted:
        return ""
    return (f"; your painted '{painted[-1].name}' is kept as you painted it, hidden: these seeds' lesions are "
            f"'{layer.name}', which Measure now shows (delete '{layer.name}' and show yours to go back to it)")


def _near_resolution_text(lesions: pd.DataFrame, spacing_mm) -> str:
    """``"; lesions 2, 3 are narrower than 1.12 mm ..."`` for the lesions flagged
    ``near_resolution`` (counted beyond six) on pixels of ``spacing_mm``, or ""."""
    from .measure import NEAR_RESOLUTION_PX

    if "near_resolution" not in lesions or not lesions["near_resolution"].eq(True).any():
        return ""
    ids = lesions.loc[lesions["near_resolution"].eq(True), "lesion_id"].astype(int).tolist()
    one = len(ids) == 1
    which = f"lesion {ids[0]} is" if one else (
        f"lesions {', '.join(map(str, ids))} are" if len(ids) <= 6 else f"{len(ids)} lesions are")
    pixel_mm = max(spacing_mm)
    return (f"; {which} narrower than {NEAR_RESOLUTION_PX * pixel_mm:.3g} mm ({NEAR_RESOLUTION_PX:g} pixels of "
            f"{pixel_mm:g} mm): read {'its area' if one else 'their areas'} as uncertain by 20 % or more, or measure "
            f"{'it' if one else 'them'} on a finer reconstruction (near_resolution)")


class MeasureWidget(_Widget):
    """A table of the lesions (mm), linked to the ``lesions`` layer; Export CSV."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        import napari

        self.lesions = self._layer_input(napari.layers.Labels, "lesions", follows="lesions")
        self.table = Table(value={c: [] for c in TABLE_COLUMNS})
        self.table.native.setMinimumHeight(160)  # a few rows even with every widget docked
        from qtpy.QtWidgets import QAbstractItemView, QStyledItemDelegate

        # cells as refresh() writes them (two decimals), not magicgui's four (4.9400)
        self.table.native.setItemDelegate(QStyledItemDelegate(self.table.native))
        # read only: a number typed over an area was shown, and the export wrote the measured one
        self.table.native.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.refresh_button = PushButton(text="Refresh")
        self.export_button = PushButton(text="Export CSV…")
        self.refresh_button.changed.connect(self.refresh)
        self.export_button.changed.connect(self._export_dialog)
        self.lesions.changed.connect(self.refresh)
        self.table.native.cellClicked.connect(lambda row, _col: self.select_row(row))
        self.extend([self.lesions, self.table, self.refresh_button, self.export_button, self.status])
        self._connected = None
        self._refresh_soon = _soon(self.refresh)
        self._inputs_watched: list = []  # the lesions' seeds and bone: moving a seed makes them out of date
        self._connect(self.viewer.layers.events.inserted, self._refresh_soon)  # a new bone mask (Segment again)

    def frame(self) -> pd.DataFrame:
        layer = self.lesions.value
        if layer is None or not_lesions(layer.metadata):  # the bone is no lesion of 480 mm²
            return pd.DataFrame(columns=TABLE_COLUMNS)
        return lesion_table(self.viewer, layer)  # measured again once the user has painted it

    def refresh(self, *_):
        layer = self.lesions.value
        if layer is not None and self._connected is not layer:
            if self._connected is not None:
                self._disconnect(self._connected.events.features, self.refresh)
                self._disconnect(self._connected.events.paint, self._refresh_soon)
                self._disconnect(self._connected.events.set_data, self._refresh_soon)
            self._connect(layer.events.features, self.refresh)
            self._connect(layer.events.paint, self._refresh_soon)  # painting a lesion re-measures it
            self._connect(layer.events.set_data, self._refresh_soon)  # and so does undoing it (Ctrl+Z)
            self._connected = layer
        self._watch_inputs(layer)
        frame = self.frame()
        cols = [c for c in TABLE_COLUMNS if c in frame]
        shown = frame[cols].copy()
        for c in shown.columns:
            if shown[c].dtype.kind == "f":  # as text: the table would show 4.94 as 4.9400
                shown[c] = [f"{v:.2f}" if np.isfinite(v) else "" for v in shown[c]]
            elif shown[c].dtype.kind == "b":  # a flag: "yes" where raised, blank where not
                shown[c] = ["yes" if v else "" for v in shown[c]]
        self.table.value = shown.to_dict(orient="list")
        total = frame["area_mm2"].sum() if len(frame) else 0.0
        self.status.value = f"{len(frame)} lesion(s), total {total:.2f} mm²"
        if layer is not None and not_lesions(layer.metadata):
            self.status.value = f"'{layer.name}': {not_lesions(layer.metadata)}: choose the lesions layer"
            return frame
        if layer is not None:
            self.status.value += _near_resolution_text(frame, spacing_of(layer))
            warned = _warnings_for(layer.metadata.get("warnings"), frame, spacing_of(layer), layer.data)  # as exported
            if warned:
                self.status.value += f"; warning: {warned}"
        stale = _out_of_date(self.viewer, layer.metadata, layer.data) if layer is not None else ""
        if stale:
            self.status.value = (f"out of date: {stale}" if _painted(layer.metadata, layer.data) else
                                 f"out of date: {stale} since these lesions were grown: {_REGROW_HINT}")
        return frame

    def _watch_inputs(self, layer) -> None:
        """Refresh when the seeds or the bone the lesions were grown from change, also renamed
        (the table is then out of date until they are grown again; a new bone layer is seen as
        it is added)."""
        for emitter in self._inputs_watched:
            self._disconnect(emitter, self._refresh_soon)
        self._inputs_watched = []
        inputs = (layer.metadata.get(GROWN_INPUTS) if layer is not None else None) or {}
        for watched in (_by_id(self.viewer, inputs.get(key)) for key in ("seeds", "bone")):
            if watched is None:
                continue
            # points moved; a brush stroke, and its undo or redo (Ctrl+Z), on a bone layer
            for name in ("data", "paint", "labels_update", "set_data"):
                emitter = getattr(watched.events, name, None)
                if emitter is not None:
                    self._connect(emitter, self._refresh_soon)
                    self._inputs_watched.append(emitter)

    def select_row(self, row: int):
        frame = self.frame()
        layer = self.lesions.value
        if layer is None or row >= len(frame):
            return
        r = frame.iloc[row]
        layer.selected_label = int(r["lesion_id"])
        centre = layer.data_to_world((float(r["centroid_row"]), float(r["centroid_col"])))
        self.viewer.camera.center = tuple(float(v) for v in centre[-2:])

    def export(self, path, *, replace: bool = False) -> Path:
        """Write the table as CSV to ``path`` (``.csv`` added when it has another suffix). An
        existing file is replaced only with ``replace`` (the dialog asks first)."""
        path = _csv_path(path)
        layer = self.lesions.value
        if layer is None:
            raise CalcinosisError("no lesions layer to export: choose one, or run Quantify (or Grow) first")
        if not_lesions(layer.metadata):  # the bone as "lesions": one of 480 mm², status ok
            raise CalcinosisError(f"not exported: {not_lesions(layer.metadata)}: choose the lesions layer")
        if path.exists() and not replace:
            raise CalcinosisError(f"{path} exists: choose another name, or confirm replacing it in the dialog")
        refusal = stale_refusal(layer.metadata, layer.data, self.viewer)
        if refusal:
            raise CalcinosisError(refusal)
        painted = _painted(layer.metadata, layer.data)
        # The seed table (a row per seed, with its status) holds until the user paints the lesions
        # or the pixel size changes (the layer is then measured as it is, at the new size).
        table = layer.metadata.get("seed_table") if not painted else None
        out = with_provenance(table if table is not None else self.frame(), layer.metadata, painted,
                              spacing_of(layer), layer.data)
        from .io import atomic_output

        with atomic_output(path) as temporary:  # all or nothing
            out.to_csv(temporary, index=False)
        how = (" (measured as painted: a row per lesion, no seed rows)" if painted
               else " (measured as the layer is: a row per lesion, no seed rows; Quantify again for them)"
               if table is None else "")
        self.status.value = f"wrote {path}{how}"
        return path

    def _export_dialog(self, *_):
        from magicgui.widgets import request_values

        values = request_values(path={"annotation": Path, "options": {"mode": "w", "filter": "*.csv"}, "label": "save as"})
        if not values or not values.get("path") or str(values["path"]) in ("", "."):
            return None

        def go():
            path = _csv_path(values["path"])
            # A name typed in the dialog's box (or one given without .csv) is not checked by the
            # file chooser: ask here before replacing a file.
            if path.exists() and not _confirm_replace(self.native, path):
                self.status.value = f"not written: {path} kept as it was"
                return None
            return self.export(path, replace=True)

        return self._run_safely(go)


def with_provenance(table: pd.DataFrame, metadata: dict, painted: bool = False, spacing_mm=None,
                    labels=None) -> pd.DataFrame:
    """A lesions layer's table as Export CSV and the CSV writer write it, with what the command
    line's rows say: which scan (its name, and its file's absolute path, a key to merge by) and
    how it was measured (``mode``, ``warnings``, ``model``, ``settings``, ``software``); seed
    positions to 1/1000 px. In the command line's column order (rows pasted under its table in
    a spreadsheet fall in their columns), then the centroid in mm. ``spacing_mm``: the layer's,
    for the warning of a scale of 1; ``labels``: its data, for the lesions running on along a thin
    line (:func:`_warnings_for`)."""
    from .cli import OUTPUT_COLUMNS
    from .pipeline import settings_label, software_label

    out = table.drop(columns=["index"], errors="ignore").copy()  # napari's own key for features
    if "image" not in out:
        out.insert(0, "image", metadata.get(SOURCE) or "")
    out.insert(int(out.columns.get_loc("image")) + 1, "path", metadata.get(IMAGE_FILE) or "")
    # painted by hand: measured as painted, whatever seeds it was first grown from
    out["mode"] = "painted" if painted else metadata.get("mode", "")
    out["warnings"] = _warnings_for(metadata.get("warnings"), out, spacing_mm, labels)
    out["model"] = metadata.get(MODEL, "")
    settings = metadata.get(SETTINGS)
    out["settings"] = settings_label(**settings) if isinstance(settings, dict) else ""
    out["software"] = software_label()
    for column in ("seed_row", "seed_col"):  # a click's pixel position, not 104.00000000000001
        if column in out:
            out[column] = pd.to_numeric(out[column], errors="coerce").round(3)
    return out[[c for c in OUTPUT_COLUMNS if c in out] + [c for c in out if c not in OUTPUT_COLUMNS]]


def _warnings_for(warnings, table: pd.DataFrame, spacing_mm=None, labels=None) -> str:
    """The ``warnings`` of lesions as ``table`` measures them: those said when they were grown
    (``warnings``, joined by "; "), with the note on lesions too large to be a deposit made anew
    from ``table``'s numbers and areas (a lesion added, deleted, painted or measured again at
    another pixel size since changes it), and, given the layer's ``labels``, the note on lesions
    running on along a thin line made anew from them (one painted out is said no more); and,
    for a lesions layer at a ``spacing_mm`` of 1 (a mask of the user's opened without its scale,
    16 times too large at 0.25 mm pixels), that its areas are pixel counts, where nothing said so
    yet."""
    from .pipeline import LARGER_THAN_ANY_DEPOSIT, RUNS_ALONG_A_THIN_LINE, large_lesion_note, thin_tail_note

    remade = labels is not None and spacing_mm is not None
    kept = [w for w in str(warnings or "").split("; ") if w and LARGER_THAN_ANY_DEPOSIT not in w
            and not (remade and RUNS_ALONG_A_THIN_LINE in w)]
    thin = thin_tail_note(_squeeze_leading(np.asarray(labels)), spacing_mm, table) if remade else ""
    unscaled = ""
    if spacing_mm is not None and np.allclose(spacing_mm, 1.0) and not any("pixel counts" in w for w in kept):
        unscaled = ("the lesions layer has scale 1, so its areas are pixel counts, not mm²: give it its image's "
                    "pixel spacing in mm (open it with the image's scale, or grow the lesions on the image)")
    return "; ".join([*kept, *filter(None, [thin, large_lesion_note(table), unscaled])])


def not_lesions(metadata: dict) -> str:
    """What a layer a widget made holds instead of lesions ("the bone layer, not lesions"), or ""."""
    kind = metadata.get(KIND)
    return "" if kind in (None, "lesions") else f"this layer is the {kind} layer, not lesions"


def stale_refusal(metadata: dict, data, viewer=None, verb: str = "exported") -> str:
    """Why lesions must not be written (Export CSV, the CSV writer): their seeds or bone changed
    since a widget grew them (:func:`_out_of_date`, in ``viewer`` or napari's current one); ""
    when they may."""
    if viewer is None:
        import napari

        viewer = napari.current_viewer()
    stale = _out_of_date(viewer, metadata, data) if viewer is not None else ""
    if stale and _painted(metadata, data):  # a seed on no painted lesion: regrowing would not measure the painting
        return f"not {verb}: {stale}, then save them"
    return (f"not {verb}: {stale} since these lesions were grown, so their numbers are not those of what you "
            f"see: {_REGROW_HINT}, then save them") if stale else ""


_REGROW_HINT = "press Quantify again (or dock Grow from seeds, which regrows them as you edit)"


def _csv_path(path) -> Path:
    """``path`` ending in .csv (``.csv`` added to any other name); a folder is refused."""
    path = Path(path)
    if path.suffix.lower() != ".csv" and not path.is_dir():
        path = path.with_name(path.name + ".csv")
    if path.is_dir():
        raise CalcinosisError(f"{path} is a folder: give the name of the CSV file to write in it")
    return path


def _confirm_replace(parent, path: Path) -> bool:
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(parent, "Replace file?", f"{path.name} already exists in {path.parent}.\nReplace it?",
                                  QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
    return answer == QMessageBox.Yes


class QuantifyWidget(_Widget):
    """The common case in one click: segment -> subtract -> seeds (auto or yours) -> grow -> measure."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._add_model_inputs()
        self.use_seeds = CheckBox(label="use the 'seeds' layer if it has points (else auto-seed)", value=True)
        self.run_button = PushButton(text="Quantify")
        self.run_button.changed.connect(self.run)
        self.extend([self.use_seeds, self.run_button, self.status])

    def run(self, *_):
        from .pipeline import quantify

        layer = self._image_or_hint()
        if layer is None:
            return None

        def go():
            from napari.layers import Labels

            v = self.viewer
            pixels = image_pixels(layer)
            calc = calcinosis_image(layer, pixels)
            seeds = None
            clicked = seeds_of(v, layer)
            if clicked is not None:
                _claim_seeds(clicked, layer)
            if self.use_seeds.value and clicked is not None and len(clicked.data):
                seeds = points_in_pixels(clicked, layer)
            # The newest bone layer of this image, as Subtract and Grow pick it: used as it is when
            # the user corrected it (or brought it in), segmented again when a widget made it.
            # (A painted 'bone' followed by Segment's 'bone (new)' is the new one, everywhere.)
            bones = [b for b in _results(v, Labels, "bone", layer) if b.data.shape == pixels.shape]
            users_bone = bones[-1] if bones and (_edited(bones[-1]) or not bones[-1].metadata.get(MADE_HERE)) else None
            bone_mask = np.asarray(users_bone.data) > 0 if users_bone is not None else None
            # With the network's probability kept on the layer, a seed may still take a deposit's
            # part of the mask the network was unsure of, after the user's corrections.
            probability = users_bone.metadata.get("bone_probability") if users_bone is not None else None
            if probability is not None and np.shape(probability) != pixels.shape:
                probability = None
            model = self._model() if bone_mask is None else None
            result = quantify(calc, seeds, model=model, bone_mask=bone_mask, bone_probability=probability,
                              device=self.device.value)
            bone_layer = users_bone
            if users_bone is not None:
                _claim(users_bone, layer)
            if bone_mask is None:
                bone_layer = put_labels(v, "bone", result.bone_mask.astype(np.uint8), layer, opacity=0.4)
                bone_layer.metadata["bone_probability"] = result.bone_probability
                from .segment import model_label

                bone_layer.metadata[MODEL], bone_layer.metadata[MADE_MASK] = model_label(model), _mask_key(bone_layer.data)
                bone_layer.metadata[TTA] = False  # segmented here, without: a layer it replaces may have been with
            candidates = put_labels(v, "calcification candidates", result.candidates.astype(np.uint8), layer, opacity=0.35)
            candidates.visible = False  # a step on the way, over the deposits: shown by ticking its eye
            seeds_layer = clicked
            if seeds is None:
                ok = result.table[result.table["status"] == "ok"]
                seeds_layer = put_points(v, "seeds", ok[["seed_row", "seed_col"]].to_numpy(float), layer,
                                         1.0 / min(spacing_of(layer)))
            lesions = show_lesions(v, result, layer, bone_layer, automatic=seeds is None, seeds_layer=seeds_layer)
            lesions.contour = 1
            self.status.value = lesions.metadata["summary"]
            if seeds is None:
                # On images from unknown sources automatic mode also takes arteries, splints and
                # the nail, and misses deposits (docs/validation.md): a proposal to check.
                self.status.value += "; seeds proposed automatically: check them, then Quantify again"
            self._warn_if_odd(layer, pixels)
            _show_scale_bar(v)
            v.layers.selection.active = lesions
            return result

        with self._busy(f"quantifying '{layer.name}': segmenting, subtracting, growing, measuring…"):
            return self._run_safely(go)


class AgreementWidget(_Widget):
    """Agreement of two numeric columns (a lesion table or a CSV): statistics and both plots."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        import napari

        self.layer = self._layer_input(napari.layers.Labels, "lesion table of", follows="lesions")
        self.csv = FileEdit(label="or CSV file", mode="r", filter="*.csv", value=None, nullable=True)
        self.x = ComboBox(label="x", choices=self._columns)
        self.y = ComboBox(label="y", choices=self._columns)
        self.run_button = PushButton(text="Compute agreement")
        self.result = Label(value="")
        self.run_button.changed.connect(self.run)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        # the two plots one above the other: a dock is narrow, and side by side they were squeezed
        # until their labels overlapped
        self.figure = Figure(figsize=(3.6, 6.4))
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.extend([self.layer, self.csv, self.x, self.y, self.run_button, self.result, self.status])
        self.result.native.setWordWrap(True)
        self.canvas.setMinimumHeight(560)
        rows = self._widget._mgui_get_native_widget().layout()
        rows.insertWidget(rows.count() - 1, self.canvas)  # inside the scroll area, above the stretch
        self._clear_result()  # shown once there is a plot
        self.csv.changed.connect(self._reload)
        # Another lesions layer, or the table of the one picked just made or remade (picked as
        # it was inserted, it had none yet): reloaded, unless a CSV is chosen (its result stays).
        self.layer.changed.connect(lambda *_: self._csv() is None and self._reload())
        self._connect(RESULT_EVENTS.lesions_shown,
                      lambda layer: layer is self.layer.value and self._csv() is None and self._reload())

    def _csv(self):
        """The CSV file named, or None where the field is empty: then the lesions layer's table is used
        (a name that leads to no file is refused, not replaced by the layer's table)."""
        path = self.csv.value
        return Path(path) if path is not None and str(path) not in ("", ".") else None

    def table(self) -> pd.DataFrame:
        path = self._csv()
        if path is not None:
            from .io import read_csv_or_refuse

            if not path.is_file():
                raise CalcinosisError(f"file not found: {path} (empty the CSV field to use the lesion table of a layer)"
                                      if not path.exists() else f"{path} is not a file: choose a CSV file")
            return read_csv_or_refuse(path)
        layer = self.layer.value
        if layer is not None and (_painted(layer.metadata, layer.data) or (layer.features is not None and len(layer.features))):
            return lesion_table(self.viewer, layer)
        return pd.DataFrame()

    def _columns(self, *_):
        try:
            table = self.table()
        except CalcinosisError:
            return []
        from .stats import measurement_columns

        # measurements: not identifiers (lesion_id) nor yes/no flags (hu_clipped); a column with a
        # cell that is not a number too, refused when it is used, with the cell named
        return measurement_columns(table)

    def _clear_result(self) -> None:
        """No numbers and no plot in view (the empty plot area is hidden: white in the dark theme)."""
        self.result.value = ""
        self.canvas.setVisible(False)

    def _reload(self, *_):
        """Another table: its columns, two different ones to start from (the tool's area first,
        not an identifier), and no numbers or plot of the table before."""
        self.x.reset_choices()
        self.y.reset_choices()
        self._clear_result()
        columns = list(self.x.choices)
        if len(columns) >= 2 and self.x.value == self.y.value:
            ids = {"lesion_id", "seed_row", "seed_col", "centroid_row", "centroid_col", "area_px"}
            ordered = sorted(columns, key=lambda c: (c != "area_mm2", c in ids))
            self.x.value, self.y.value = ordered[0], ordered[1]

    def run(self, *_):
        from .stats import agreement, agreement_without, format_p, plot_agreement, shared_unit, table_pairs

        def go():
            self._clear_result()  # a failed run must not leave the previous columns' numbers in view
            table = self.table()
            if self.x.value is None or self.y.value is None:
                raise CalcinosisError("choose a lesion table or a CSV file, then the two columns to compare")
            gone = [c for c in dict.fromkeys((self.x.value, self.y.value)) if c not in table.columns]
            if gone:  # the file edited since its columns were listed (a header corrected in a spreadsheet)
                self._reload()
                raise CalcinosisError(f"{self._csv() or 'the lesion table'} has no column {', '.join(map(repr, gone))} any "
                                      "more (changed since it was chosen): its columns are listed again; choose the two "
                                      "to compare")
            if self.x.value == self.y.value:
                raise CalcinosisError(f"x and y are both {self.x.value!r}: choose the two different columns to compare")
            pairs = table_pairs(table, self.x.value, self.y.value, self._csv())
            x, y = pairs.x, pairs.y
            a = agreement(x, y, x_label=self.x.value, y_label=self.y.value)
            unit = shared_unit(self.x.value, self.y.value)
            u = f" {unit}" if unit else ""
            self.result.value = (
                f"n = {a.n} ({pairs.dropped_text()}) · Spearman ρ {a.spearman_rho:.3f} ({format_p(a.spearman_p)})\n"
                + (f"{pairs.duplicate_text()}\n" if pairs.duplicate_seeds else "")
                + f"Lin's CCC {a.ccc:.3f} (95 % CI {a.ccc_ci_low:.3f}–{a.ccc_ci_high:.3f})\n"
                f"bias {a.ba_bias:.2f}{u} (95 % CI {a.ba_bias_ci_low:.2f} to {a.ba_bias_ci_high:.2f})\n"
                f"limits of agreement {a.ba_loa_low:.2f} to {a.ba_loa_high:.2f}{u} (95 % CIs {a.ba_loa_low_ci_low:.2f} "
                f"to {a.ba_loa_low_ci_high:.2f} and {a.ba_loa_high_ci_low:.2f} to {a.ba_loa_high_ci_high:.2f})"
            )
            without = agreement_without(x, y, pairs.near_resolution, x_label=self.x.value, y_label=self.y.value)
            if without:  # the deposits too narrow to trust: how the rest agree
                w, left_out = without
                self.result.value += (f"\nwithout the {left_out} near_resolution: n = {w.n} · CCC {w.ccc:.3f} "
                                      f"({w.ccc_ci_low:.3f}–{w.ccc_ci_high:.3f}) · bias {w.ba_bias:.2f}{u}")
            plot_agreement(x, y, x_label=self.x.value, y_label=self.y.value, unit=unit, figure=self.figure,
                           stacked=True)
            self.canvas.setVisible(True)
            self.canvas.draw_idle()
            self.status.value = ""
            return a

        return self._run_safely(go)
