"""napari reader and writer contributions (npe2). Thin adapters around the engine.

* :func:`get_dicom_reader` opens DICOM slices as Image layers in Hounsfield units, with
  the pixel spacing (mm) as the layer scale and the header's display window (or the
  paper's bone window) as contrast limits.
* :func:`write_lesions_csv` saves a Labels layer's lesion table as CSV: the layer's
  ``features`` when it has them, otherwise measurements in mm computed from the labels
  and the layer's scale.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import CalcinosisError
from .io import _DICOM_SUFFIXES, _one_line, _squeeze_leading, atomic_output

__all__ = ["get_dicom_reader", "write_lesions_csv"]

# --------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------


def _is_dicom_path(path) -> bool:
    """A DICOM suffix, or an existing file that is DICOM by its contents (the 'DICM' marker,
    or an older file without the preamble that pydicom reads)."""
    from .io import _dicom_by_content

    try:
        path = Path(os.fspath(path))
    except TypeError:
        return False
    if path.suffix and path.suffix.lower() in _DICOM_SUFFIXES:
        return True
    return path.is_file() and _dicom_by_content(path)


def get_dicom_reader(path: str | Sequence[str]) -> Callable | None:
    """npe2 reader command: a reader function for DICOM paths, None for anything else.

    Parameters
    ----------
    path : str or list of str
        One path, or several (napari's stack mode).  Every one must be DICOM: a
        ``.dcm``/``.dicom``/``.ima`` suffix, or a file with the ``DICM`` marker.

    Returns
    -------
    callable or None
        :func:`read_dicom` when every path is DICOM, otherwise None (napari then tries
        other readers).
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(_is_dicom_path(p) for p in paths):
        return None
    return read_dicom


def _layer_data(image) -> tuple:
    """One CalcinosisImage as an ``(data, kwargs, "image")`` layer tuple."""
    level_hu, width_hu = image.window_level_hu, image.window_width_hu
    metadata = {
        "spacing_mm": image.spacing_mm,
        "source": image.source,
        "value_origin": image.value_origin,
        "spacing_origin": image.spacing_origin,
        "window_level_hu": level_hu,
        "window_width_hu": width_hu,
        "saturated_above_hu": image.saturated_above_hu,
        "body_part": image.body_part,
        "energy_kev": image.energy_kev,
        "slab": image.slab,
    }
    kwargs = {
        "name": image.name,
        "scale": image.spacing_mm,
        "units": "mm",
        "contrast_limits": (level_hu - width_hu / 2, level_hu + width_hu / 2),
        "colormap": "gray",
        "metadata": metadata,
    }
    return image.pixels_hu, kwargs, "image"


def read_dicom(path: str | Sequence[str]) -> list[tuple]:
    """Read one or more DICOM slices: one Image layer tuple per file, values in HU.

    Raises
    ------
    CalcinosisError
        If a file cannot be read; the message names the file.  napari shows it (when
        opening from the GUI wrapped in its "Tried opening with napari-calcinosis, but
        failed" dialog, which quotes this message).
    """
    from .io import _PIXEL_SIZE_HINT, UnknownPixelSizeError, read_image

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers = []
    for one in paths:
        one = os.fspath(one)
        try:
            try:
                image = read_image(one)
            except UnknownPixelSizeError as exc:
                # napari cannot be told a pixel size when opening: open it at 1 mm a pixel and say
                # so; the widgets warn about scale 1 until the layer's scale is set.
                image = read_image(one, pixel_size_mm=1.0)
                from napari.utils.notifications import show_warning

                why = _one_line(exc).removesuffix(f"; {_PIXEL_SIZE_HINT}")  # the command line's advice
                show_warning(f"{why}: opened at scale 1 (1 mm a pixel). Give it its pixel spacing in mm before "
                             "measuring: Plugins > napari-calcinosis > Prepare image (pixel size, HU)")
                usable = "an invalid one" if "is invalid" in why else "none"
                image.spacing_origin = f"{usable} in the file: opened at scale 1, to be set by the user"
        except CalcinosisError as exc:
            if one in str(exc):
                raise
            raise CalcinosisError(f"{one}: {exc}") from exc
        layers.append(_layer_data(image))
    return layers


# --------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------


def _as_table(features):
    import pandas as pd

    if features is None:
        return pd.DataFrame()
    if isinstance(features, pd.DataFrame):
        return features
    try:
        return pd.DataFrame(features)
    except (TypeError, ValueError) as exc:
        raise CalcinosisError(
            f"the layer's features cannot be written as a table ({exc}); "
            "give the Labels layer a features table with one row per lesion"
        ) from exc


def _lesion_table(data, attributes: dict):
    """Measure the lesions of a Labels layer in mm, from its data and scale, and their mean and
    max HU over the image they were grown on where that is open in napari."""
    from .measure import measure_lesions
    from ._widgets import source_pixels

    labels = _squeeze_leading(np.asarray(data))  # e.g. (1, H, W)
    if labels.ndim != 2:
        raise CalcinosisError(
            f"the Labels layer has shape {np.shape(data)}; lesions can only be measured on one "
            "2-D slice: save a 2-D labels layer, or give the layer a features table"
        )
    scale = attributes.get("scale")
    spacing_mm = (1.0, 1.0) if scale is None else tuple(float(s) for s in np.ravel(scale)[-2:])
    import napari

    pixels = source_pixels(napari.current_viewer(), attributes.get("metadata") or {}, labels.shape)
    return measure_lesions(labels, spacing_mm=spacing_mm, image=pixels)


def write_lesions_csv(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 single-layer writer: save a Labels layer's lesion table as CSV.

    Parameters
    ----------
    path : str
        Output file; ``.csv`` is appended when the name has another or no suffix.
    data : numpy.ndarray
        The Labels layer's data (0 = background, each value > 0 one lesion).
    attributes : dict
        The layer's attributes (``layer.as_layer_data_tuple()[1]``).  Its ``features``
        table (DataFrame or dict of columns) is written as is when it has rows and the user
        has not painted the layer since (its ``metadata`` says so); otherwise the lesions are measured from ``data`` with the last two entries of
        ``scale`` as the (row, col) pixel spacing in mm.

    The file is written atomically: a failed save leaves an existing file as it was.

    Returns
    -------
    list of str
        The path written.
    """
    attributes = attributes or {}
    out = Path(os.fspath(path))
    if out.suffix.lower() != ".csv":
        out = out.with_name(out.name + ".csv")

    from ._widgets import MADE_HERE, SOURCE, _painted, _warnings_for, not_lesions, stale_refusal, with_provenance

    metadata = attributes.get("metadata") or {}
    if not_lesions(metadata):  # the bone mask as "lesions": one of 480 mm², status ok
        raise CalcinosisError(f"{out.name}: {not_lesions(metadata)}: save it as an image (.png or .tif) to keep the "
                              "mask, or select the lesions layer")
    if out.exists():
        # napari's dialog asks before replacing the name as typed, and '.csv' is added after it
        # ('lesions' typed, 'lesions.csv' replaced): this writer cannot tell which file was confirmed,
        # so an earlier patient's table is never replaced
        raise CalcinosisError(f"{out}: already exists, not replaced (this writer cannot tell whether napari's dialog "
                              "asked about this name or the one typed before '.csv' was added): choose another name, "
                              "or use Measure's Export CSV, which asks about the file it writes")
    # A layer painted since its table was made is measured as it is now.
    painted = _painted(metadata, data)
    # lesions whose seeds or bone changed since they were grown are refused, as by Export CSV
    refusal = stale_refusal(metadata, data, verb="saved")
    if refusal:
        raise CalcinosisError(f"{out.name}: {refusal}")
    table = _as_table(None if painted else attributes.get("features"))
    if table.empty:
        table = _lesion_table(data, attributes)
    # a lesions layer of the plugin's: with what Export CSV writes of its scan and how it was measured
    scale = attributes.get("scale")
    spacing_mm = None if scale is None else tuple(float(s) for s in np.ravel(scale)[-2:])
    if metadata.get(MADE_HERE) or metadata.get(SOURCE):
        table = with_provenance(table, metadata, painted, spacing_mm, data)
    else:
        # a mask of the user's (opened from a PNG at scale 1: pixel counts under area_mm2), or
        # a lesion larger than any deposit: said on its rows and in napari, as Export CSV does
        table = table.drop(columns=["index"], errors="ignore")
        note = _warnings_for(None, table, spacing_mm)
        if note:
            import pandas as pd

            given = table["warnings"] if "warnings" in table else pd.Series("", index=table.index)
            table["warnings"] = ["; ".join(filter(None, ("" if pd.isna(w) else str(w), note))) for w in given]
            warnings.warn(f"{out.name}: {note}", stacklevel=2)

    with atomic_output(out) as temporary:
        table.to_csv(temporary, index=False)
    return [str(out)]
