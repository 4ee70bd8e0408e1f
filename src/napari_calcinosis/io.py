"""Read and write the 2-D finger CT images the tool measures.

Two kinds of input reach the tool:

* **DICOM** slices, whose stored values become Hounsfield units (HU) through
  ``RescaleSlope`` and ``RescaleIntercept``; the pixel spacing comes from the header.
* **Windowed exports** (PNG, JPEG, TIFF) such as the 8-bit JPEGs of the paper's data
  set.  The export window squeezed a range of HU into 0 .. 2**bits - 1, so the values
  are mapped back through that window; everything at or above the window's top was
  clipped by the export and is reported as saturated.  These files carry no pixel
  spacing, so the user must give it (``pixel_size_mm``, CLI ``--pixel-size``).

The bone window W1500/L450 is the one of Chandrasekaran et al. (2021); it is also the
U-Net's input normalisation (:func:`hu_to_window_unit`).
"""

from __future__ import annotations

import contextlib
import datetime
import math
import numbers
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._atomic import atomic_file
from ._errors import CalcinosisError, refuse_layer

__all__ = [
    "WINDOW_LEVEL_HU",
    "WINDOW_WIDTH_HU",
    "MAX_PIXEL_SIZE_MM",
    "MAX_IMAGE_PIXELS",
    "MIN_IMAGE_SIDE_PX",
    "MAX_FIELD_OF_VIEW_MM",
    "MIN_FIELD_OF_VIEW_MM",
    "image_caveats",
    "CalcinosisImage",
    "atomic_output",
    "check_measurable",
    "check_field_of_view",
    "hu_to_window_unit",
    "window_unit_to_hu",
    "read_image",
    "image_from_export",
    "write_dicom",
    "write_windowed_png",
]

WINDOW_LEVEL_HU = 450.0  # the paper's bone window (Chandrasekaran et al. 2021: W1500/L450)
WINDOW_WIDTH_HU = 1500.0

# Names real DICOM files carry; DICOM exports are also often named by their UID, with
# no suffix or with a numeric "suffix" (handled by the fallback in read_image).
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima", ""})
_RASTER_SUFFIXES = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

# ITU-R BT.601 luma, the weights Pillow's "L" conversion uses; they sum to 1, so a grey
# RGB export (R == G == B) keeps its values exactly.
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])

# The stored value of write_dicom is HU + 1024, the usual CT offset, so air (-1000 HU)
# is stored as a small positive number.
_DICOM_RESCALE_INTERCEPT_HU = -1024.0


class UnknownPixelSizeError(CalcinosisError):
    """A DICOM file without a usable pixel spacing (secondary captures, some exports)."""


_PIXEL_SIZE_HINT = "pass the pixel size with pixel_size_mm (CLI: --pixel-size, in mm)"

# Finger DECT reformats have 0.15-0.35 mm pixels. A "pixel size" above 5 mm is a unit slip
# (cm or um typed as mm) or a broken header: a 1 mm deposit would not span one pixel.
MAX_PIXEL_SIZE_MM = 5.0
# A finger slice is well under one megapixel. 40 Mpx (about 6300 x 6300) keeps a batch under
# about 2.5 GB through the pipeline, and a file claiming more is refused before it is decoded.
MAX_IMAGE_PIXELS = 40_000_000
# The U-Net pools four times (16 px); below 32 px a side there is no finger to segment.
MIN_IMAGE_SIDE_PX = 32
# A whole hand fits in 250 mm. The U-Net runs at its working pixel size (0.25 mm) whatever the
# image's, so its memory grows with the field of view: 400 mm is a 1600 x 1600 input (~1.5 GB).
MAX_FIELD_OF_VIEW_MM = 400.0
# ... and at least 3 mm on its longer side (a crop of 32 px at 0.1 mm): less is a pixel size in
# the wrong unit (0.00034 "mm" made a 0.5 mm disk thousands of pixels wide, and ran out of
# memory). Under 20 mm a finger slice (30-100 mm; crops of 23 mm occur) is only warned about
# (image_caveats): a pixel size in cm typed as mm?
MIN_FIELD_OF_VIEW_MM = 3.0
SMALL_FIELD_OF_VIEW_MM = 20.0
# Finger CT reformats have 0.1-0.6 mm pixels; one of 1 mm or more is most often a scale of 1
# (pixels, as napari gives a layer without one) taken for mm, and its areas are pixel counts.
COARSE_PIXEL_MM = 1.0
# A sagittal reformat's pixels are square, or at most 1 mm slices across 0.2 mm in-plane pixels
# (5 : 1). Longer ones are most often a pixel size with a digit lost on one side (0.2288 \ 0.02288:
# a helper's run measured 0.11 and 3.13 mm² for 1.03 and 1.01, with no warning).
MAX_PIXEL_ASPECT = 5.0
# A finger's soft tissue (skin, subcutis, tendons, the bulk of what is not air) is about 0-100 HU.
# Above this it reads as calcium: an export made through a soft-tissue window (W400/L40) read as
# W1500/L450 puts it at 350-650, and the whole finger becomes a candidate deposit. Chosen on 195
# images of 13 independently written generators (seeds 0-14; peak -420 to 274 HU in HU and in
# W1500/L450 exports); on seeds 0-39 (520 images), 6 of 1,040 were warned (crops where bone and
# deposits outnumber the soft tissue) and 86 % of W400/L40 misreads were caught.
MAX_SOFT_TISSUE_HU = 300.0
# An export through a window whose bottom lies above this clips the air (-1000 HU) at its bottom:
# read through that window its pixels darker than fat (-200 HU) are all at the bottom but for
# the air's blurred edge (0.1-0.6 % of the pixels of W1500/L450 exports of 40 phantoms). Air read
# above the bottom (20-87 % of the pixels of W3000/L500 exports and of exports scaled from the
# darkest to the brightest pixel, read as W1500/L450) says the export was made through a wider window.
AIR_CLIPPED_BELOW_HU = -900.0
MAX_UNCLIPPED_DARK_SHARE = 0.05
# What image_caveats says when it has found why the values are not the HU expected (uniform; an
# export inverted, or made through a wider or a narrower window): pipeline.calcium_tissue_note,
# which asks the same of the soft tissue with the bone mask, says nothing more after one of them.
WINDOW_NOTES = ("it is uniform", "the export looks inverted", "yet not clipped", "the finger's soft tissue reads about")
# Bone and deposits cover this many pixels of any finger slice; fewer over 150 HU is no calcium.
MIN_CALCIUM_PX = 20
# An export clips everything above its window's top. Below this, bone and deposits (300-2000
# HU) are clipped together (a soft-tissue window, W400/L40, clips at 240 HU): nothing tells them
# apart or gives a deposit a peak to grow from, so such an export is refused, not measured.
MIN_EXPORT_TOP_HU = 500.0


# --------------------------------------------------------------------------------------
# Window arithmetic
# --------------------------------------------------------------------------------------


def _checked_window(window_level_hu: float, window_width_hu: float) -> tuple[float, float]:
    """Return the window as floats, refusing a width that would divide by zero."""
    try:
        level_hu = float(window_level_hu)
        width_hu = float(window_width_hu)
    except (TypeError, ValueError) as exc:
        raise CalcinosisError(
            f"window level/width must be numbers in HU, got {window_level_hu!r}/{window_width_hu!r}"
        ) from exc
    if not (math.isfinite(level_hu) and math.isfinite(width_hu)) or width_hu <= 0:
        raise CalcinosisError(
            f"window W{width_hu:g}/L{level_hu:g} is invalid: the width must be a positive "
            "number of HU and the level a finite HU value (the paper's bone window is W1500/L450)"
        )
    return level_hu, width_hu


def _window_label(window_level_hu: float, window_width_hu: float) -> str:
    return f"W{window_width_hu:g}/L{window_level_hu:g}"


def hu_to_window_unit(
    pixels_hu: np.ndarray,
    window_level_hu: float = WINDOW_LEVEL_HU,
    window_width_hu: float = WINDOW_WIDTH_HU,
) -> np.ndarray:
    """Map Hounsfield units onto [0, 1] through a display window.

    ``(HU - (level - width / 2)) / width``, clipped to [0, 1].  With the default bone
    window this is the U-Net's input normalisation.

    Parameters
    ----------
    pixels_hu : numpy.ndarray
        Values in HU, any shape.
    window_level_hu : float
        Window centre in HU.
    window_width_hu : float
        Window width in HU; must be positive.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape, in window units (0 = window bottom, 1 = top).
    """
    level_hu, width_hu = _checked_window(window_level_hu, window_width_hu)
    bottom_hu = level_hu - width_hu / 2.0
    unit = (np.asarray(pixels_hu, dtype=np.float64) - bottom_hu) / width_hu
    return np.clip(unit, 0.0, 1.0).astype(np.float32)


def window_unit_to_hu(
    unit: np.ndarray,
    window_level_hu: float = WINDOW_LEVEL_HU,
    window_width_hu: float = WINDOW_WIDTH_HU,
) -> np.ndarray:
    """Inverse of :func:`hu_to_window_unit`: window units back to Hounsfield units.

    Values outside [0, 1] are extrapolated linearly, not clipped; values that were
    clipped on the way in cannot be recovered.

    Parameters
    ----------
    unit : numpy.ndarray
        Window units (0 = window bottom, 1 = window top), any shape.
    window_level_hu : float
        Window centre in HU.
    window_width_hu : float
        Window width in HU; must be positive.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape, in HU.
    """
    level_hu, width_hu = _checked_window(window_level_hu, window_width_hu)
    bottom_hu = level_hu - width_hu / 2.0
    return (bottom_hu + np.asarray(unit, dtype=np.float64) * width_hu).astype(np.float32)


def _windowed_export_to_hu(
    values: np.ndarray, bits: int, window_level_hu: float, window_width_hu: float
) -> np.ndarray:
    """Undo an N-bit export window: value v becomes bottom + v / (2**bits - 1) * width."""
    full_scale = float(2**bits - 1)
    return window_unit_to_hu(
        np.asarray(values, dtype=np.float64) / full_scale, window_level_hu, window_width_hu
    )


# --------------------------------------------------------------------------------------
# The image type
# --------------------------------------------------------------------------------------


def _checked_spacing(spacing_mm, what: str) -> tuple[float, float]:
    """(row, col) spacing as two positive finite floats; a single number means square pixels."""
    if isinstance(spacing_mm, (bool, np.bool_)):
        raise CalcinosisError(f"{what} must be a pixel size in mm, got {spacing_mm!r}")
    if isinstance(spacing_mm, numbers.Real):
        values = [spacing_mm, spacing_mm]
    elif isinstance(spacing_mm, (Sequence, np.ndarray)) and not isinstance(spacing_mm, str):
        values = list(np.ravel(np.asarray(spacing_mm, dtype=object)))
    else:
        raise CalcinosisError(
            f"{what} must be a number or a (row, col) pair in mm, got {spacing_mm!r}"
        )
    if len(values) != 2:
        raise CalcinosisError(
            f"{what} must be one number or a (row, col) pair in mm, got {len(values)} values"
        )
    try:
        row_mm, col_mm = (float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise CalcinosisError(f"{what} must be numbers in mm, got {spacing_mm!r}") from exc
    if not all(math.isfinite(v) and 0 < v <= MAX_PIXEL_SIZE_MM for v in (row_mm, col_mm)):
        raise CalcinosisError(
            f"{what} of {pixel_size_text((row_mm, col_mm))} mm is not a plausible pixel size: it must be "
            f"positive and at most {MAX_PIXEL_SIZE_MM:g} mm (finger DECT: 0.15-0.35 mm); "
            "give it in mm"
        )
    return row_mm, col_mm


# What the DICOM reader adds to value_origin for a Modality other than CT (MR, NM, ...).
_NOT_HU_MODALITY = ": values may not be Hounsfield units"
# What a colour image's value_origin says of pixels in colour (see _coloured_note).
_IN_COLOUR = " pixels in colour"


@dataclass
class CalcinosisImage:
    """One 2-D CT slice in Hounsfield units with its pixel spacing.

    Parameters
    ----------
    pixels_hu : numpy.ndarray
        2-D image in HU (stored as float32): calibrated for DICOM, mapped back through
        the export window for windowed exports.
    spacing_mm : tuple of float
        (row, col) pixel spacing in mm.
    window_level_hu, window_width_hu : float
        Display window in HU (centre and width).
    source : str
        File path or a description of where the image came from.
    value_origin : str
        How the HU values were obtained, in words.
    spacing_origin : str
        Where the pixel spacing came from, in words.
    saturated_above_hu : float or None
        For windowed exports, the top of the export window in HU: values at or above it
        were clipped by the export and are lower bounds.  None when nothing was clipped
        (DICOM).
    body_part : str
        The body part a DICOM file's header names (BodyPartExamined), or "" where none does.
    energy_kev : float or None
        For a dual-energy CT's virtual monoenergetic image, its energy in keV (the header's
        MonoenergeticEnergyEquivalent, or "40 keV" in its SeriesDescription or ImageType);
        None for other images.
    slab : str
        What the header says of a thick slab or projection ("a MIP of 5 mm", "a 4 mm thick
        slice"), or "" for a thin slice (or no header).
    """

    pixels_hu: np.ndarray
    spacing_mm: tuple[float, float]
    window_level_hu: float = WINDOW_LEVEL_HU
    window_width_hu: float = WINDOW_WIDTH_HU
    source: str = ""
    value_origin: str = ""
    spacing_origin: str = ""
    saturated_above_hu: float | None = None
    body_part: str = ""
    energy_kev: float | None = None
    slab: str = ""

    def __post_init__(self) -> None:
        refuse_layer(self.pixels_hu, "CalcinosisImage's pixels_hu")
        pixels_hu = np.asarray(self.pixels_hu, dtype=np.float32)
        if pixels_hu.ndim != 2:
            hint = ""
            if pixels_hu.ndim > 2 and _squeeze_leading(pixels_hu).ndim == 2:
                hint = ": it is one slice with leading axes of one, give array.squeeze()"
            elif pixels_hu.ndim > 2:
                hint = ": give one slice of a stack, e.g. array[k]"
            raise CalcinosisError(f"an image must be one 2-D slice, got an array of shape {pixels_hu.shape}{hint}")
        where = f"{self.source}: " if self.source else ""
        finite = np.isfinite(pixels_hu)
        if not finite.all():
            # NaN marks "no value" (often outside the reconstruction's field of view); taking it
            # as any HU would silently change the bone mask and the deposits next to it.
            first_row, first_col = np.unravel_index(np.argmin(finite), finite.shape)
            raise CalcinosisError(
                f"{where}{finite.size - int(finite.sum())} of {finite.size} pixels are NaN or "
                f"infinite (the first at row {first_row}, col {first_col}): export the slice again "
                "with a number in every pixel (e.g. -1000 HU, air, outside the field of view)"
            )
        self.pixels_hu = pixels_hu
        self.spacing_mm = _checked_spacing(self.spacing_mm, f"{where}spacing_mm")
        self.window_level_hu, self.window_width_hu = _checked_window(
            self.window_level_hu, self.window_width_hu
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) in pixels."""
        return tuple(self.pixels_hu.shape)

    @property
    def value_unit(self) -> str:
        """``"HU"``, or ``"stored value"`` for a DICOM whose Modality is not CT (its values are the
        file's, not Hounsfield units): the table's ``value_unit`` column."""
        return "stored value" if _NOT_HU_MODALITY in self.value_origin else "HU"

    @property
    def name(self) -> str:
        """File name of :attr:`source` less an image suffix (``.dcm``, ``.png``, ...), for titles,
        layer names and the table's ``image`` column. Any other "suffix" is part of the name: a
        DICOM named by its UID (``1.2.840.113619.2.55.3.6046.1``) and the next slice of its
        series (``...6046.2``) keep their last number, and so does a layer named ``finger 2.5``."""
        source = str(self.source or "")
        return _image_stem(Path(source)) or source or "image"

    def window_unit(self) -> np.ndarray:
        """The image in window units: float32 in [0, 1], the U-Net's input normalisation."""
        return hu_to_window_unit(self.pixels_hu, self.window_level_hu, self.window_width_hu)

    def to_uint8(self) -> np.ndarray:
        """The windowed 8-bit display image, ``round(window_unit * 255)``."""
        return np.round(self.window_unit() * 255.0).astype(np.uint8)


def _image_stem(path: Path) -> str:
    """A file's name less an image suffix (``.dcm``, ``.png``, ...); any other "suffix" is part
    of the name (the last number of a UID: ``1.2.840.113619.2.55.3.6046.1``)."""
    suffix = path.suffix.lower()
    return path.stem if suffix in _DICOM_SUFFIXES or suffix in _RASTER_SUFFIXES else path.name


def _megapixels(n_pixels: int) -> str:
    return f"{n_pixels / 1e6:.3g} megapixels"


def _too_large_error(where: str, size: str) -> CalcinosisError:
    return CalcinosisError(
        f"{where}the image is {size}; this tool takes at most {_megapixels(MAX_IMAGE_PIXELS)} "
        "(a finger slice is under 1): crop it to the finger, or export it at a coarser pixel size"
    )


def _check_pixel_count(rows: int, cols: int, where: str) -> None:
    """Refuse an image above MAX_IMAGE_PIXELS, naming its size (before decoding, when reading)."""
    if rows * cols > MAX_IMAGE_PIXELS:
        raise _too_large_error(where, f"{rows} x {cols} px ({_megapixels(rows * cols)})")


def pixel_size_text(spacing_mm) -> str:
    """A pixel size as messages say it, without "mm": ``0.25`` for square pixels, ``0.3 x 0.15``
    (rows x columns) for others."""
    row_mm, col_mm = spacing_mm
    return f"{row_mm:g}" if f"{row_mm:g}" == f"{col_mm:g}" else f"{row_mm:g} x {col_mm:g}"


def check_measurable(image: CalcinosisImage) -> None:
    """Refuse an image the pipeline cannot measure: too small, too many pixels, too wide a view.

    Parameters
    ----------
    image : CalcinosisImage

    Raises
    ------
    CalcinosisError
        If a side is under :data:`MIN_IMAGE_SIDE_PX` pixels, the image holds more than
        :data:`MAX_IMAGE_PIXELS` pixels, it spans more than :data:`MAX_FIELD_OF_VIEW_MM`
        (usually a pixel size in the wrong unit), or it is an export whose window clipped
        below :data:`MIN_EXPORT_TOP_HU` (bone and deposits clipped together).
    """
    check_size(image)
    where = f"{image.source}: " if image.source else ""
    top = image.saturated_above_hu
    if top is not None and top < MIN_EXPORT_TOP_HU:
        raise CalcinosisError(
            f"{where}the export's window ({_window_label(image.window_level_hu, image.window_width_hu)}) clipped "
            f"everything above {top:.0f} HU, where bone and deposits (300-2000 HU) begin: they cannot be told "
            "apart nor grown. Export the slice again through a bone window (the paper's W1500/L450), or give the DICOM"
        )


def check_size(image: CalcinosisImage) -> None:
    """Refuse an image no finger slice can be (:func:`check_measurable`'s checks of its size, in
    pixels and in mm); the message begins with its source."""
    rows, cols = image.shape
    where = f"{image.source}: " if image.source else ""
    if min(rows, cols) < MIN_IMAGE_SIDE_PX:
        raise CalcinosisError(
            f"{where}the image is {rows} x {cols} px; at least {MIN_IMAGE_SIDE_PX} x "
            f"{MIN_IMAGE_SIDE_PX} px are needed to find the bone: give the whole finger slice, "
            "not a crop or a thumbnail"
        )
    _check_pixel_count(rows, cols, where)
    check_field_of_view(image.shape, image.spacing_mm, where)


def check_field_of_view(shape, spacing_mm, where: str = "") -> None:
    """Refuse an image wider than :data:`MAX_FIELD_OF_VIEW_MM`, or spanning less than
    :data:`MIN_FIELD_OF_VIEW_MM`: usually a pixel size in the wrong unit.

    ``where`` prefixes the message (e.g. ``"finger.png: "``).
    """
    rows, cols = shape
    height_mm, width_mm = rows * spacing_mm[0], cols * spacing_mm[1]
    if max(height_mm, width_mm) < MIN_FIELD_OF_VIEW_MM:
        raise CalcinosisError(
            f"{where}the image spans only {height_mm:.2g} x {width_mm:.2g} mm ({rows} x {cols} px of "
            f"{spacing_mm[0]:g} x {spacing_mm[1]:g} mm); a finger slice spans 30-100 mm: check the pixel "
            "size (in mm; finger DECT: 0.15-0.35 mm)"
        )
    if max(height_mm, width_mm) > MAX_FIELD_OF_VIEW_MM:
        raise CalcinosisError(
            f"{where}the image spans {height_mm:.0f} x {width_mm:.0f} mm ({rows} x {cols} px of "
            f"{spacing_mm[0]:g} x {spacing_mm[1]:g} mm); a finger slice spans at most "
            f"{MAX_FIELD_OF_VIEW_MM:g} mm: check the pixel size (in mm), or crop the image to the finger"
        )


def soft_tissue_hu(pixels_hu, smoothed=None) -> float | None:
    """Where the soft tissue of a finger slice lies, in HU: the histogram peak (10 HU bins) of
    the 3 x 3 median of the pixels above -500 HU (not air), leaving out a clipped floor or
    ceiling (more than 0.5 % of them within 1 % of the range of their minimum, at -250 HU or
    below, or of their maximum, at 250 HU or above: an export's window, a scanner's 3071 HU).
    None when nothing is left. ``smoothed``: that median, when already made."""
    from scipy import ndimage as ndi

    values = (ndi.median_filter(np.asarray(pixels_hu, np.float32), 3) if smoothed is None else smoothed).ravel()
    tissue = values[values > -500.0]
    if tissue.size == 0:
        return None
    # A clipped floor or ceiling (an export's window: air at -300, bone at 1200; a scanner's 3071
    # HU), blurred by JPEG: within 1 % of the range of the extreme, holding more than 0.5 % of
    # the tissue, and as dark as air or as bright as calcium (a uniform soft tissue is no floor).
    tolerance = 0.01 * float(tissue.max() - tissue.min())
    for edge, clipped in ((tissue.min(), tissue.min() <= -250.0), (tissue.max(), tissue.max() >= 250.0)):
        spike = np.abs(tissue - edge) <= tolerance
        if clipped and spike.mean() > 0.005:
            tissue = tissue[~spike]
    if tissue.size == 0:
        return None
    low, high = np.percentile(tissue, [0.5, 99.5])
    if high - low < 10.0:
        return float(np.median(tissue))
    counts, edges = np.histogram(tissue, np.arange(low, high + 10.0, 10.0))
    return float(edges[np.argmax(counts)] + 5.0)


def refuse_non_finite(image_hu) -> None:
    """A CalcinosisError for an array of HU with NaN or infinite pixels (a step given a bare array)."""
    if not np.isfinite(image_hu).all():
        raise CalcinosisError(
            "the image has NaN or infinite pixels: give every pixel a number (e.g. -1000 HU, air, "
            "outside the field of view), as CalcinosisImage does"
        )


def _value_range(pixels) -> tuple[float, float]:
    """The lowest and highest values of an image, a few stray pixels aside (0.5th, 99.5th percentiles)."""
    low, high = np.percentile(pixels, [0.5, 99.5])
    return float(low), float(high)


def uniform_value(pixels, value_range: tuple[float, float] | None = None) -> float | None:
    """The one value of an image that holds no other (a few stray pixels aside), else None.
    ``value_range``: its :func:`_value_range`, when already known."""
    pixels = np.asarray(pixels, np.float32)
    if not pixels.size:
        return None
    low, high = value_range or _value_range(pixels)
    return low if high - low < 1e-3 else None


# BodyPartExamined values (DICOM's defined terms and what scanners write) that a finger slice
# may carry: a hand, a finger, the upper limb, an extremity. Anything else (HEAD, CHEST, ...)
# is said in image_caveats; an empty one is not.
_HAND_PART = re.compile(r"HAND|FING|THUMB|DIGIT|PHALAN|WRIST|CARP|EXTREM|XTREM|ARM|LIMB|JOINT|GOUT|MSK|SKELET",
                        re.IGNORECASE)


# A dual-energy CT's virtual monoenergetic images in this range show bone and calcium much as
# the mixed (120 kVp) images the method was made for; at 40 keV calcium reads about twice as
# bright, at 190 keV about half (a helper's run: a deposit against the bone grew to 69 mm² for
# 2.4 at 40 keV, with no warning).
MONOENERGETIC_KEV = (60.0, 80.0)
_KEV_IN_TEXT = re.compile(r"(?<![\d.])(\d{2,3}(?:\.\d+)?)\s*kev\b", re.IGNORECASE)


def _monoenergetic_kev(ds) -> float | None:
    """A virtual monoenergetic image's energy (keV) from its header, or None."""
    kev = _first_number(ds.get("MonoenergeticEnergyEquivalent"))
    if kev is None:
        texts = [str(ds.get("SeriesDescription") or ""), "\\".join(map(str, ds.get("ImageType") or []))]
        found = next((m for m in map(_KEV_IN_TEXT.search, texts) if m), None)
        kev = float(found.group(1)) if found else None
    return float(kev) if kev is not None and 20 <= kev <= 200 else None


# A sagittal slice thicker than this adds up neighbouring slices' deposits and bone; a finger
# DECT's sagittal reformats are 0.5-1 mm (a helper's run: a MIP of 5 slices read deposits
# about half as large again, with no warning).
MAX_SLICE_THICKNESS_MM = 3.0
_PROJECTION = re.compile(r"\b(MIP|MINIP|MAXIP|MIN ?IP|MAX ?IP|PROJECTION)\b", re.IGNORECASE)
_AVERAGE = re.compile(r"\b(AVERAGE|AVG|SLAB)\b", re.IGNORECASE)
# A CT's localizer (scout, topogram, surview): a projection radiograph through the whole hand
# taken to plan the scan, which every study holds beside its slices (a helper's run: measured as a
# slice, with no warning).
_LOCALIZER = re.compile(r"\b(LOCALI[SZ]ER|SCOUT|TOPOGRAM|SURVIEW|SCANOGRAM)\b", re.IGNORECASE)


def _slab_of(ds) -> str:
    """What the header says of a thick slab or projection (:attr:`CalcinosisImage.slab`): a
    localizer (scout) or a projection (MIP, MinIP) named in ImageType or SeriesDescription, of any
    thickness; an average (ImageType AVERAGE) above :data:`MAX_SLICE_THICKNESS_MM` or of no stated
    thickness; any slice above that thickness."""
    image_type = "\\".join(map(str, ds.get("ImageType") or []))
    thickness = _first_number(ds.get("SliceThickness"))
    of = f" of {thickness:g} mm" if thickness else ""
    description = str(ds.get("SeriesDescription") or "")
    if _LOCALIZER.search(image_type) or _LOCALIZER.search(description):
        return "a localizer (a scout: a projection through the whole hand, not a slice)"
    projection = _PROJECTION.search(image_type) or _PROJECTION.search(description)
    if projection:
        return f"a {projection.group(1).upper().replace(' ', '')}{of}"
    average = _AVERAGE.search(image_type)
    if average and (thickness is None or thickness > MAX_SLICE_THICKNESS_MM):
        return f"an {average.group(1).upper()} slab{of}"
    if thickness is not None and thickness > MAX_SLICE_THICKNESS_MM:
        return f"a {thickness:g} mm thick slice"
    return ""


def image_caveats(image: CalcinosisImage) -> list[str]:
    """What makes an image's values or size doubtful as a finger CT in HU, one sentence each
    (empty when nothing does). Measured all the same: these are warnings, for the user to judge.

    - values the file does not say are HU (a DICOM of another modality; no rescale and no value
      under 0, i.e. raw stored values);
    - no pixel as dark as air or fat (under -200 HU; every finger slice has air around it) or none
      as bright as calcium (over 150 HU): raw, offset or normalised values rather than HU;
    - a uniform image;
    - a field of view under :data:`SMALL_FIELD_OF_VIEW_MM` (20 mm: a pixel size in cm typed as mm?);
    - a DICOM header naming a body part other than a hand or finger (BodyPartExamined HEAD, ...);
    - pixels in colour (a colour-coded overlay or coloured marks), whose luminance is no HU;
    - a virtual monoenergetic image outside :data:`MONOENERGETIC_KEV` (a 40 keV series);
    - a localizer, a thick slab or projection (MIP, average; over :data:`MAX_SLICE_THICKNESS_MM`);
    - pixels more than :data:`MAX_PIXEL_ASPECT` times longer than wide (a digit lost from one
      side of the pixel size?).
    """
    notes = []
    pixels = image.pixels_hu
    origin = image.value_origin
    modality = re.search(rf"Modality (\S+){_NOT_HU_MODALITY}", origin)
    if modality:
        notes.append(f"it is not a CT image (the file's Modality is {modality.group(1)}): its values are not HU")
    coloured = re.search(rf"(\d+) \(([^()]*)\){_IN_COLOUR}", origin)
    if coloured:
        notes.append(f"{coloured.group(1)} of its pixels ({coloured.group(2)}) are in colour, not grey: a colour-coded "
                     "image (a dual-energy calcium or urate overlay) or one with coloured marks, whose colours are no "
                     "grey levels of the window, so deposits there are mis-measured: export the slice in grey")
    if image.body_part and not _HAND_PART.search(image.body_part):
        notes.append(f"the DICOM header names the body part {image.body_part} (BodyPartExamined), not a hand or "
                     "finger: the method measures a sagittal finger slice, check that this is one")
    if image.slab:
        notes.append(f"the DICOM header says it is {image.slab} (ImageType, SeriesDescription or SliceThickness): "
                     "deposits and bone of neighbouring slices add up in it (a MIP enlarges deposits): measure a "
                     f"thin slice (at most {MAX_SLICE_THICKNESS_MM:g} mm, no projection)")
    if image.energy_kev is not None and not MONOENERGETIC_KEV[0] <= image.energy_kev <= MONOENERGETIC_KEV[1]:
        notes.append(f"it is a virtual monoenergetic image at {image.energy_kev:g} keV: bone and calcium read "
                     f"{'brighter' if image.energy_kev < MONOENERGETIC_KEV[0] else 'darker'} than on the mixed (120 kVp) "
                     f"images the method was made for (like {MONOENERGETIC_KEV[0]:g}-{MONOENERGETIC_KEV[1]:g} keV), so the "
                     "bone mask and the 200 HU threshold do not hold: measure the mixed or a 70 keV series")
    low, high = _value_range(pixels)
    uniform = uniform_value(pixels, (low, high))
    # A windowed export clipped what lay outside its window: air reads as the window's bottom,
    # calcium at most its top. Below those, the values are as dark or bright as they can be.
    dark_hu, bright_hu = -200.0, 150.0
    if image.saturated_above_hu is not None:
        bottom = image.window_level_hu - image.window_width_hu / 2
        tolerance = 0.005 * image.window_width_hu
        dark_hu = max(dark_hu, bottom + tolerance)
        bright_hu = min(bright_hu, image.saturated_above_hu - tolerance)
    if uniform is not None:
        notes.append(f"it is uniform ({uniform:g} HU everywhere): there is nothing to measure")
    else:
        from scipy import ndimage as ndi

        smoothed = ndi.median_filter(pixels, 3)  # once, for the two checks below
        export_notes = _export_window_caveats(image, smoothed)
        if "slope 1, intercept 0" in origin and float(pixels.min()) >= 0:
            notes.append("the file has no rescale to HU and no value below 0: these look like raw scanner values "
                         "(often HU + 1024), not HU")
        elif low > dark_hu:
            notes.append(f"no pixel is as dark as air or fat (the darkest are {low:.0f} HU; a finger slice has air "
                         "around it at -1000): the values may be raw, offset or scaled rather than HU")
        bright_px = int(np.count_nonzero(pixels > bright_hu)) if high < bright_hu else MIN_CALCIUM_PX
        if 0 < bright_px < MIN_CALCIUM_PX:
            # counted, not a percentile: a finger a small part of a large canvas has little calcium
            notes.append(f"only {bright_px} pixel(s) are as bright as calcium (over {bright_hu:.0f} HU; bone and "
                         "deposits cover hundreds): the values may not be HU, or an export was made through another "
                         "window than the one given")
        elif bright_px == 0:
            notes.append(f"nothing is as bright as calcium (the brightest are {float(pixels.max()):.0f} HU; bone and "
                         "deposits are 300-2000): the values may not be HU, or an export was made through another "
                         "window than the one given")
        notes += export_notes
        soft_hu = soft_tissue_hu(pixels, smoothed) if not export_notes else None  # said better by those
        if soft_hu is not None and soft_hu > MAX_SOFT_TISSUE_HU:
            if image.saturated_above_hu is not None:
                why = (f"was the export made through a narrower window than "
                       f"{_window_label(image.window_level_hu, image.window_width_hu)} (a soft-tissue window)? Give "
                       "the window it was made with (--window-level/--window-width; in napari, Prepare image)")
            else:
                why = "the values may be scaled or offset rather than HU"
            notes.append(f"the finger's soft tissue reads about {soft_hu:.0f} HU (it is about 0-100 HU), as "
                         f"bright as calcium: {why}")
    return notes + pixel_size_caveats(pixels.shape, image.spacing_mm)


def _export_window_caveats(image: CalcinosisImage, smoothed=None) -> list[str]:
    """What says that an N-bit export was not made through the window it is read with: its air
    is not clipped at the window's bottom (:data:`MAX_UNCLIPPED_DARK_SHARE`), or its border is
    white (inverted). Empty for an image that is no export. ``smoothed``: the pixels' 3 x 3
    median, when already made."""
    if image.saturated_above_hu is None:
        return []
    from scipy import ndimage as ndi

    level, width = image.window_level_hu, image.window_width_hu
    bottom, tolerance = level - width / 2, 0.005 * width
    values = ndi.median_filter(image.pixels_hu, 3) if smoothed is None else smoothed  # JPEG's ringing aside
    window = _window_label(level, width)
    frame = np.concatenate([values[0], values[-1], values[1:-1, 0], values[1:-1, -1]])
    if (frame >= image.saturated_above_hu - tolerance).mean() > 0.5:
        return [f"its border is white (the top of {window}) where the air around a finger is black: the export "
                "looks inverted (bone dark, air white): export it again with bone white"]
    if bottom > AIR_CLIPPED_BELOW_HU:
        unclipped = float(((values > bottom + tolerance) & (values < -200.0)).mean())
        if unclipped > MAX_UNCLIPPED_DARK_SHARE:
            return [f"{unclipped:.0%} of its pixels read between the window's bottom ({bottom:.0f} HU) and -200 HU, "
                    f"darker than fat yet not clipped as an export through {window} clips the air: was it made "
                    "through a wider window (a bone window such as W3000/L500, or one scaled from the darkest to the "
                    "brightest pixel)? Give the window it was made with (--window-level/--window-width; in napari, "
                    "Prepare image)"]
    return []


def pixel_size_caveats(shape, spacing_mm) -> list[str]:
    """:func:`image_caveats`' notes on the pixel size of an image of ``shape`` (rows, cols): a
    field of view under :data:`SMALL_FIELD_OF_VIEW_MM`, pixels of :data:`COARSE_PIXEL_MM` or more,
    pixels more than :data:`MAX_PIXEL_ASPECT` times longer than wide. They depend on nothing else,
    so what was said of a pixel size can be said again of another (Prepare image)."""
    notes = []
    rows, cols = shape
    span_mm = max(rows * spacing_mm[0], cols * spacing_mm[1])
    if span_mm < SMALL_FIELD_OF_VIEW_MM:
        notes.append(f"it spans only {span_mm:.0f} mm (a finger slice spans 30-100 mm): check the pixel size "
                     f"({spacing_mm[0]:g} mm; in mm, not cm)")
    elif max(spacing_mm) >= COARSE_PIXEL_MM:
        notes.append(f"its pixels are {max(spacing_mm):g} mm (finger CT has 0.1-0.6 mm pixels): if that is a "
                     "scale of 1, the areas are pixel counts, not mm²: give the pixel size")
    aspect = max(spacing_mm) / min(spacing_mm)
    if aspect > MAX_PIXEL_ASPECT:
        notes.append(f"its pixels are {pixel_size_text(spacing_mm)} mm (rows x columns), {aspect:.0f} times longer "
                     f"than wide (a sagittal reformat's are at most about {MAX_PIXEL_ASPECT:g} times): check the pixel "
                     "size, a digit may be lost on one side")
    return notes


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (the CLI prints errors on one line)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _listed(names, shown: int = 5) -> str:
    """The first ``shown`` of ``names``, and how many more, for a message."""
    names = [str(n) for n in names]
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _squeeze_leading(array: np.ndarray) -> np.ndarray:
    """``array`` without its leading axes of length one (a (1, H, W) layer is one slice)."""
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    return array


def _sniff_format(path: Path) -> str | None:
    """Recognise DICOM, PNG, JPEG and TIFF by their first bytes; None if none matches."""
    with open(path, "rb") as handle:
        head = handle.read(132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


def _text_start(path: Path) -> str | None:
    """The start of a text file (a CSV, a note) given as an image; None for binary data."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if b"\x00" in head:
        return None
    text = head.decode("utf-8", errors="replace")
    if text.count("\ufffd") > 2 or any(ch < " " and ch not in "\t\n\r" for ch in text):
        return None
    first_line = text.strip().split("\n")[0].strip()
    return first_line[:40] + ("..." if len(first_line) > 40 else "")


def read_image(
    path,
    pixel_size_mm=None,
    window_level_hu: float = WINDOW_LEVEL_HU,
    window_width_hu: float = WINDOW_WIDTH_HU,
    *,
    prefer_file_spacing: bool = False,
) -> CalcinosisImage:
    """Read one 2-D CT slice as Hounsfield units with its pixel spacing.

    The format is recognised from the file's content first (the ``DICM`` marker, the
    PNG/JPEG/TIFF signatures), then from its suffix; files with no or an unknown suffix
    are tried as DICOM.

    Parameters
    ----------
    path : str or os.PathLike
        DICOM file (any name), or a PNG, JPEG or TIFF export.
    pixel_size_mm : float or (float, float), optional
        Pixel spacing in mm, square or (row, col).  Required for PNG/JPEG/TIFF, which
        carry no spacing.  For DICOM an explicit value overrides the header's spacing.
    window_level_hu, window_width_hu : float
        The window in HU through which an integer export was made, used to map its
        values back to HU; for DICOM the display window when the header has none.
    prefer_file_spacing : bool
        Use a DICOM file's own spacing even when ``pixel_size_mm`` is given, which then only
        serves files without one (a batch mixing DICOM and exports).

    Returns
    -------
    CalcinosisImage

    Raises
    ------
    CalcinosisError
        If the file is missing, unreadable, not a single 2-D image, or has no pixel
        spacing and none was given.
    """
    if isinstance(path, np.ndarray):
        raise CalcinosisError(
            "read_image reads a file; for an array in HU make the image yourself: "
            "CalcinosisImage(pixels_hu=array, spacing_mm=(row_mm, col_mm))"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise CalcinosisError(f"give the image as a file path (str or Path), got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        if path.is_symlink():  # a study tree of links into an archive that is not mounted
            raise CalcinosisError(f"{path}: is a link to a file that is missing ({os.readlink(path)}): is the "
                                  "drive or archive it points to connected?")
        raise CalcinosisError(f"{path}: file not found")
    if not path.is_file():
        raise CalcinosisError(f"{path}: is not a file (a folder?); give the path of one image file")
    user_spacing_mm = (
        None if pixel_size_mm is None else _checked_spacing(pixel_size_mm, f"{path}: pixel_size_mm")
    )
    level_hu, width_hu = _checked_window(window_level_hu, window_width_hu)

    try:
        size_bytes = path.stat().st_size
        sniffed = _sniff_format(path)
        text_start = None if sniffed else _text_start(path)
    except OSError as exc:
        raise CalcinosisError(f"{path}: cannot be opened ({_one_line(exc)})") from exc
    if size_bytes == 0:
        raise CalcinosisError(f"{path}: the file is empty (0 bytes); copy or export it again")

    suffix = path.suffix.lower()
    if sniffed == "DICOM":
        return _read_dicom(path, user_spacing_mm, level_hu, width_hu, has_marker=True, prefer_file_spacing=prefer_file_spacing)
    if sniffed is not None:
        return _read_raster(path, sniffed, user_spacing_mm, level_hu, width_hu)
    if text_start is not None:
        raise CalcinosisError(
            f"{path}: is a text file, not an image (it starts {text_start!r}); "
            "give a DICOM, PNG, JPEG or TIFF image"
        )
    if suffix in _RASTER_SUFFIXES:
        raise CalcinosisError(
            f"{path}: is not a readable {_RASTER_SUFFIXES[suffix]} image (its content does not "
            "start like one; the file may be damaged or misnamed): export the image again"
        )
    # DICOM without the 128-byte preamble and 'DICM' marker still exists in the wild
    # (old ACR-NEMA style files), as do DICOM files named by UID like "1.2.840.5.12".
    return _read_dicom(path, user_spacing_mm, level_hu, width_hu, has_marker=False, prefer_file_spacing=prefer_file_spacing)


# ---- DICOM ---------------------------------------------------------------------------


def _first_number(value) -> float | None:
    """First value of a possibly multi-valued DICOM number, or None if absent/invalid."""
    if value is None:
        return None
    if not isinstance(value, (str, bytes)) and isinstance(value, Sequence):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _functional_group_value(ds, sequence_keyword: str, keyword: str):
    """Look a value up in an enhanced DICOM's shared, then first per-frame, functional group.

    Enhanced (multi-frame IOD) files keep spacing and rescale there instead of at the
    top level, even when they hold a single frame.
    """
    for groups_keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(groups_keyword)
        if not groups:
            continue
        items = groups[0].get(sequence_keyword)
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return None


_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")


def _dicom_spacing(ds) -> tuple[tuple[float, float] | None, str, str]:
    """(spacing in mm or None, origin, problem) from the header's spacing attributes."""
    candidates = [
        ("PixelSpacing", ds.get("PixelSpacing")),
        ("PixelSpacing", _functional_group_value(ds, "PixelMeasuresSequence", "PixelSpacing")),
        ("ImagerPixelSpacing", ds.get("ImagerPixelSpacing")),
    ]
    problem = ""
    for keyword, value in candidates:
        if value is None:
            continue
        try:
            if not isinstance(value, (str, bytes, numbers.Real)) and len(value) == 0:
                continue
            # One number where two belong (a header written with a single value): square pixels.
            values = value if isinstance(value, numbers.Real) else list(value)
            # '0,1729': a decimal comma (a localised exporter; a DICOM list is split by backslashes)
            items = [values] if isinstance(values, (str, numbers.Real)) else values
            commas = [v.strip().replace(",", ".") if isinstance(v, str) and _DECIMAL_COMMA.fullmatch(v.strip()) else v
                      for v in items]
            if commas != items:
                return _checked_spacing(commas, keyword), f"{keyword} (written with decimal commas)", ""
            return _checked_spacing(values, keyword), keyword, ""
        except (CalcinosisError, TypeError) as exc:
            problem = str(exc)
    return None, "", problem


def _dicom_kind(ds) -> str:
    """What the DICOM object is, in words, for messages."""
    sop_class = ds.get("SOPClassUID")
    if sop_class is None and getattr(ds, "file_meta", None) is not None:
        sop_class = ds.file_meta.get("MediaStorageSOPClassUID")
    name = getattr(sop_class, "name", "") if sop_class is not None else ""
    return str(name or "DICOM object")


def _ensure_transfer_syntax(ds) -> None:
    """Give a DICOM read without file meta the transfer syntax it was actually read with.

    pydicom needs the Transfer Syntax UID to decode pixel data; a file without the meta
    header was parsed with a guessed encoding, which is the right one to decode with.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    file_meta = getattr(ds, "file_meta", None)
    if file_meta is None:
        file_meta = FileMetaDataset()
        ds.file_meta = file_meta
    if "TransferSyntaxUID" in file_meta:
        return
    implicit_vr, little_endian = ds.original_encoding
    if implicit_vr is None:
        implicit_vr, little_endian = True, True
    if implicit_vr:
        file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little_endian:
        file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        file_meta.TransferSyntaxUID = ExplicitVRBigEndian


def _looks_like_dicom(ds) -> bool:
    """Whether a force-read data set holds anything a DICOM image file would.

    pydicom's force mode turns almost any bytes into *some* data set; a real one has at
    least one of these.
    """
    try:
        return any(
            keyword in ds
            for keyword in ("SOPClassUID", "Modality", "Rows", "PixelData", "StudyInstanceUID")
        )
    except Exception:  # noqa: BLE001 - garbage may fail to parse lazily
        return False


def _dicom_by_content(path) -> bool:
    """Whether a file is DICOM by its contents, whatever its name: the ``DICM`` marker, or
    (older scanners leave out the preamble) a data set pydicom reads by force."""
    try:
        sniffed = _sniff_format(Path(path))
    except OSError:
        return False
    return sniffed == "DICOM" if sniffed is not None else _forced_dicom(path)


def _forced_dicom(path) -> bool:
    """Whether a file without a recognised signature reads as DICOM when pydicom is forced."""
    import pydicom

    try:
        return _looks_like_dicom(pydicom.dcmread(path, stop_before_pixels=True, force=True))
    except Exception:  # noqa: BLE001 - a file that does not read as DICOM is not one here
        return False


def _scanner_name(path: Path) -> bool:
    """Whether a file is named as scanners name their images: ``IM000001``, a UID
    (``1.2.840.113619.2.55.3.604688119``)."""
    return re.fullmatch(r"[A-Za-z]{0,4}[-_]?\d[\d._-]*", path.name) is not None


def _is_image_file(path: Path) -> bool:
    """An image by its suffix, or by its content: scanners name DICOM files by their UID
    (``1.2.840.113619.2.55.3.604688119``) or ``IM000001``, with no image suffix, and older ones
    leave out the ``DICM`` marker. A DICOMDIR is an index, not an image. An empty file named so
    is taken, to be refused as empty rather than passed over."""
    if path.name.upper() == "DICOMDIR":
        return False
    suffix = path.suffix.lower()
    if suffix and (suffix in _DICOM_SUFFIXES or suffix in _RASTER_SUFFIXES):
        return True
    try:
        if path.stat().st_size == 0:
            # a transfer that failed: named as a scanner names its files (IM000002, a UID), it is
            # an image to say is empty, not a file to pass over
            return _scanner_name(path)
        sniffed = _sniff_format(path)
    except OSError:
        return False
    return sniffed is not None or _forced_dicom(path)


def read_csv_table(path, *, text: bool = False):
    """A CSV a spreadsheet saved, as a DataFrame: UTF-8 (with or without a byte-order mark) or,
    failing that, Windows-1252 (Excel's "CSV" in Western Europe); comma-separated, or semicolon-
    or tab-separated with decimal commas (Excel in many locales), which become decimal points.
    In such a file a column whose decimal mark is the comma (``12,5``, ``1.198,5``) has its
    thousands separators taken out (``1.234`` is 1234); a column with no comma in which every
    dot stands before three digits (``1.234``, ``2.010``: 1.234 or 1234?) is left as text and
    named in ``table.attrs["thousands_ambiguous"]`` (column: its first such row), to be refused
    where it is used as numbers.

    ``text``: every cell as a string, empty cells as "" (else pandas' own types, empty as NaN;
    a word for a missing value, ``NA`` or ``#N/A``, stays a word, to be counted as such).
    Raises FileNotFoundError, pandas' EmptyDataError, or CalcinosisError for a file that does not
    read as a table.
    """
    import io as _io

    import pandas as pd

    raw = Path(path).read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        content = raw.decode("cp1252", errors="replace")
    header = next((line for line in content.splitlines() if line.strip()), "")
    separator = _csv_separator(content)
    try:
        table = pd.read_csv(_io.StringIO(content), sep=separator, dtype=str if text or separator != "," else None,
                            keep_default_na=False, na_values=None if text else [""])
    except pd.errors.EmptyDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - pandas' parser errors are many
        hint = ("; it looks semicolon-separated with commas inside cells: save it as CSV (comma-separated)"
                if ";" in header else "")
        raise CalcinosisError(f"{path}: does not read as a table ({_one_line(exc)}){hint}") from exc
    if separator != ",":
        ambiguous = {}
        for column in table.columns:
            cells = table[column]
            strings = cells.astype(str)
            filled = cells.notna() & (strings.str.strip() != "")
            is_decimal = strings.str.match(_CELL_DECIMAL_COMMA) & filled
            is_grouped = strings.str.match(_CELL_THOUSANDS_GROUPED) & filled
            if is_decimal.any() or (is_grouped & strings.str.contains(",", regex=False)).any():
                # the comma is this column's decimal mark: a dot is a thousands separator
                grouped = strings.str.replace(".", "", regex=False).where(is_grouped, strings)
                converted = grouped.str.replace(",", ".", regex=False)
                table[column] = cells.where(~(is_decimal | is_grouped), converted)
            elif is_grouped.any() and not (strings.str.contains(".", regex=False) & filled & ~is_grouped).any():
                ambiguous[str(column)] = int(np.flatnonzero(is_grouped.to_numpy())[0])
        if not text:
            table = table.apply(lambda column: column if str(column.name) in ambiguous else _numbers_where_all_are(column))
        table.attrs["thousands_ambiguous"] = ambiguous
    return table


# A CSV cell with a decimal comma (3,25), and one with its thousands grouped by dots (1.234, 1.198,5)
_CELL_DECIMAL_COMMA = r"^\s*[+-]?\d*,\d+\s*$"
_CELL_THOUSANDS_GROUPED = r"^\s*[+-]?[1-9]\d{0,2}(?:\.\d{3})+(?:,\d+)?\s*$"


def thousands_ambiguity(what: str, where: str, cell) -> str:
    """Why a number such as ``1.234`` (``cell``, at ``where``: ``line 2``) in ``what`` (``column
    'a_mm2' of readings.csv``), a semicolon- or tab-separated file's column, is not read: 1.234 or 1234?"""
    cell = str(cell).strip()
    return (f"{what}, {where}: is {cell!r} {cell.replace('.', '')} or {cell}? The file is separated by "
            "semicolons or tabs, as a spreadsheet writes it where the decimal mark is the comma, so the dot may "
            "separate thousands: write the numbers without thousands separators, with a decimal comma")


def _csv_separator(content: str) -> str:
    """The separator of a spreadsheet's CSV: of comma, semicolon and tab, the one that splits the
    header and the lines below it alike into more than one cell (a semicolon file's header may
    hold a comma: ``Radiologe, mm²``); where a comma and a semicolon or tab both do (that header,
    over values that all have a decimal comma: ``12,5``), the semicolon or tab; where none does,
    a semicolon or tab in a header without commas, else a comma."""
    import csv

    lines = [line for line in content.splitlines() if line.strip()][:50]
    header = lines[0] if lines else ""
    fallback = ","
    for other in (";", "\t"):
        if other in header and "," not in header:
            fallback = other
    even = []
    for separator in (",", ";", "\t"):
        if separator in header:
            counts = {len(row) for row in csv.reader(lines, delimiter=separator)}
            if len(counts) == 1 and counts.pop() > 1:
                even.append(separator)
    if len(even) > 1:
        even = [separator for separator in even if separator != ","]
    return even[0] if len(even) == 1 else fallback


def file_line(path, row_index: int) -> int:
    """The line of the file that holds data row ``row_index``: pandas skips blank lines."""
    try:
        text_lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return row_index + 2
    filled = [number for number, line in enumerate(text_lines, start=1) if line.strip()]
    return filled[row_index + 1] if row_index + 1 < len(filled) else row_index + 2


def read_csv_or_refuse(path):
    """:func:`read_csv_table`, every failure as a CalcinosisError that names the file."""
    try:
        table = read_csv_table(path)
    except FileNotFoundError:
        raise CalcinosisError(f"file not found: {path}") from None
    except CalcinosisError:
        raise
    except Exception as exc:  # noqa: BLE001 - an empty file, a directory, a parser's error
        raise CalcinosisError(f"could not read {path} as CSV: {_one_line(exc)}") from exc
    # a spreadsheet's header ' radiologist_mm2 '; a name met again becomes name.1, as pandas names it
    names: list[str] = []
    for column in table.columns:
        name = base = str(column).strip()
        k = 0
        while name in names:
            k += 1
            name = f"{base}.{k}"
        names.append(name)
    renamed = dict(zip(map(str, table.columns), names))
    table.columns = names
    table.attrs["thousands_ambiguous"] = {renamed[name]: row for name, row in
                                          table.attrs.get("thousands_ambiguous", {}).items()}
    return table


def _numbers_where_all_are(column):
    """A column of strings as numbers when every non-empty cell is one (pandas' own inference)."""
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if numbers.notna().sum() == column.notna().sum() else column


# Image Pixel module elements that must be whole numbers for the pixels to be decoded.
_PIXEL_INTEGER_KEYWORDS = (
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SamplesPerPixel", "NumberOfFrames",
)


def _check_pixel_description(ds, path: Path) -> None:
    """Refuse a malformed image description, or an image too large, before decoding the pixels."""
    from pydicom.datadict import dictionary_description, tag_for_keyword
    from pydicom.tag import Tag

    for keyword in _PIXEL_INTEGER_KEYWORDS:
        value = ds.get(keyword)
        if value is None or isinstance(value, numbers.Integral) or str(value).strip() == "":
            continue
        try:
            int(str(value).strip())
        except ValueError:
            raise CalcinosisError(
                f"{path}: the DICOM header's {dictionary_description(keyword)} "
                f"{Tag(tag_for_keyword(keyword))} is {str(value)!r}, not a whole number; the file "
                "is damaged or was written by non-conformant software: export the slice again"
            ) from None
    rows, cols = _first_number(ds.get("Rows")), _first_number(ds.get("Columns"))
    if rows is not None and cols is not None:
        _check_pixel_count(int(rows), int(cols), f"{path}: ")


def _gdcm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("gdcm") is not None


def _decoder_hint(transfer_syntax) -> str:
    """What to install to decode a compressed transfer syntax (pydicom's decoder plugins).

    python-gdcm is a dependency and decodes what PACS export (JPEG Lossless, JPEG-LS,
    JPEG 2000, RLE); it is named only where it is missing. Through pydicom it does not decode
    12-bit lossy JPEG, which pylibjpeg-libjpeg does.
    """
    from pydicom.uid import JPEG2000TransferSyntaxes, JPEGExtended12Bit

    options = []
    if transfer_syntax != JPEGExtended12Bit and not _gdcm_installed():
        options.append("pip install python-gdcm")
    if transfer_syntax in JPEG2000TransferSyntaxes:
        options.append("pip install pylibjpeg pylibjpeg-openjpeg")
    else:
        options.append("pip install pylibjpeg pylibjpeg-libjpeg")
    return ", or ".join(options)


def _decode_dicom_pixels(ds, path: Path) -> np.ndarray:
    """ds.pixel_array with each failure turned into a message the user can act on."""
    transfer_syntax = ds.file_meta.get("TransferSyntaxUID")
    try:
        return ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types from its plugins
        reason = _one_line(exc)
        if transfer_syntax is not None and getattr(transfer_syntax, "is_compressed", False):
            syntax_name = getattr(transfer_syntax, "name", "") or str(transfer_syntax)
            # pydicom says "missing dependencies" when no decoder is installed at all; when one is,
            # each decoder's own reason (e.g. 12-bit JPEG) follows on a line of its own.
            reasons = "; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip())
            found = "" if "missing dependencies" in reason else f" ({reasons or reason})"
            from pydicom.uid import JPEGExtended12Bit

            if found and _gdcm_installed() and transfer_syntax != JPEGExtended12Bit:
                # GDCM reads this syntax (_decoder_hint): it failed on this file's data, which
                # no decoder installed more will mend
                raise CalcinosisError(
                    f"{path}: the pixel data is compressed as {syntax_name}, which the installed decoders read, "
                    f"but they failed on this file{found}: its compressed data is likely damaged: export the "
                    "slice again (uncompressed, Explicit VR Little Endian, if it fails again)"
                ) from exc
            raise CalcinosisError(
                f"{path}: the pixel data is compressed as {syntax_name}, which no installed "
                f"decoder can read{found}; install a decoder ({_decoder_hint(transfer_syntax)}) "
                "or export the slice uncompressed (Explicit VR Little Endian)"
            ) from exc
        if "less than expected" in reason or "truncated" in reason.lower():
            sizes = re.search(r"\((\d+) vs (\d+) bytes\)", reason)
            found = f"{sizes.group(1)} of {sizes.group(2)} bytes" if sizes else reason
            raise CalcinosisError(
                f"{path}: the pixel data is shorter than its header says ({found}): the file is "
                "truncated or corrupt; copy or export it again"
            ) from exc
        if reason.startswith("Missing required element"):
            element = reason.split(":", 1)[1].strip()
            raise CalcinosisError(
                f"{path}: the DICOM header lacks {element}, which describes the pixels; the file "
                "is incomplete or damaged: export it again"
            ) from exc
        raise CalcinosisError(
            f"{path}: the pixel data cannot be decoded ({reason}); the file may be "
            "corrupt: export it again"
        ) from exc


def _read_dicom(path: Path, *args, **kwargs) -> CalcinosisImage:
    # pydicom warns about every header value that breaks its VR's format (a bad date, a letter
    # in a number); the ones the image depends on become one CalcinosisError instead.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR", category=UserWarning)
        return _read_dicom_quietly(path, *args, **kwargs)


def _read_dicom_quietly(
    path: Path,
    user_spacing_mm: tuple[float, float] | None,
    level_hu: float,
    width_hu: float,
    has_marker: bool,
    prefer_file_spacing: bool = False,
) -> CalcinosisImage:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            if not has_marker:
                # Force-reading a non-DICOM file makes pydicom warn about every bogus
                # element; the verdict below replaces those warnings.
                warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=not has_marker)
    except InvalidDicomError as exc:
        raise CalcinosisError(
            f"{path}: is not a DICOM file ({_one_line(exc)}); give a DICOM, PNG, JPEG or TIFF image"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - parse errors surface as many types
        if has_marker:
            raise CalcinosisError(
                f"{path}: is a damaged DICOM file that cannot be read ({_one_line(exc)}); "
                "copy or export it again"
            ) from exc
        raise CalcinosisError(
            f"{path}: is neither a DICOM file nor a PNG/JPEG/TIFF image "
            "(no 'DICM' marker, and its content cannot be read as DICOM); "
            "give a DICOM, PNG, JPEG or TIFF image"
        ) from exc

    if not has_marker and not _looks_like_dicom(ds):
        raise CalcinosisError(
            f"{path}: is neither a DICOM file nor a PNG/JPEG/TIFF image "
            "(no 'DICM' marker, and its content does not read as DICOM); "
            "give a DICOM, PNG, JPEG or TIFF image"
        )

    kind = _dicom_kind(ds)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if "DirectoryRecordSequence" in ds:
            advice = "it is a DICOMDIR index: open one of the image files it lists"
        elif "Rows" in ds and "Columns" in ds:
            advice = (
                f"it is a {kind} whose header describes an image, so the file is probably "
                "truncated: copy or export it again"
            )
        elif "Image Storage" in kind:
            advice = f"it is a {kind} with its pixels left out (a header only): export the image again with them"
        else:
            advice = f"it is a {kind}, not an image: give the CT image file"
        raise CalcinosisError(f"{path}: the DICOM file contains no pixel data ({advice})")

    _check_pixel_description(ds, path)
    n_frames = _first_number(ds.get("NumberOfFrames")) or 1
    if n_frames > 1:
        raise _multi_frame_error(path, int(n_frames), "frames")

    _ensure_transfer_syntax(ds)
    stored = _decode_dicom_pixels(ds, path)

    samples_per_pixel = int(_first_number(ds.get("SamplesPerPixel")) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    is_colour = samples_per_pixel > 1 or photometric == "PALETTE COLOR"

    # NumberOfFrames may be absent yet the data hold a stack.
    if stored.ndim == 4 or (stored.ndim == 3 and not is_colour):
        raise _multi_frame_error(path, stored.shape[0], "frames")

    header_level = _first_number(ds.get("WindowCenter"))
    header_width = _first_number(ds.get("WindowWidth"))
    if header_level is not None and header_width is not None and header_width > 0:
        image_level_hu, image_width_hu = header_level, header_width
    else:
        image_level_hu, image_width_hu = level_hu, width_hu

    saturated_above_hu = None
    # A grey DICOM of 8-bit values without a rescale to HU is a screen save (a workstation's
    # secondary capture) as a colour one is: display grey levels, not HU. Some write an identity
    # rescale (slope 1, intercept 0), which says nothing of HU in a capture.
    bits_stored = int(_first_number(ds.get("BitsStored")) or 8 * stored.dtype.itemsize)
    try:
        rescale = _rescale_of(ds)
    except CalcinosisError as exc:
        raise CalcinosisError(f"{path}: {exc}") from None
    grey_capture = not is_colour and bits_stored == 8 and "ModalityLUTSequence" not in ds and (
        rescale == (None, None) or (rescale in ((1.0, 0.0), (None, 0.0), (1.0, None)) and _is_capture(ds)))
    if is_colour or grey_capture:
        # Its values are display grey levels: a windowed export, mapped back through the given window.
        if is_colour:
            rgb = stored
            if photometric == "PALETTE COLOR":
                from pydicom.pixels import apply_color_lut

                rgb = apply_color_lut(stored, ds)
            bits = 8 if rgb.dtype == np.uint8 else int(_first_number(ds.get("BitsStored")) or 16)
            if photometric == "PALETTE COLOR" and rgb.dtype != np.uint8:
                bits = 8 * rgb.dtype.itemsize
            grey, what = _luminance(rgb), "luminance"
        else:
            bits, what = bits_stored, "grey levels"
            grey = np.asarray(stored, dtype=np.float64)
            if photometric == "MONOCHROME1":  # shown inverted: the brightest is 0
                grey, what = (2**bits - 1) - grey, "grey levels (MONOCHROME1, inverted)"
        pixels_hu = _windowed_export_to_hu(grey, bits, level_hu, width_hu)
        image_level_hu, image_width_hu = level_hu, width_hu
        saturated_above_hu = level_hu + width_hu / 2.0
        value_origin = (
            f"{photometric or 'colour'} DICOM (not HU): {bits}-bit {what} mapped back "
            f"through {_window_label(level_hu, width_hu)}"
        )
        coloured = _coloured_note(rgb) if is_colour else ""
        if coloured:
            value_origin += f"; {coloured}"
    else:
        pixels_hu, value_origin = _dicom_to_hu(ds, stored)
    modality = str(ds.get("Modality", "")).upper()
    # A screen save's Modality is OT (other) or that of what it shows; any other (an ultrasound,
    # an MR, a radiograph opened by mistake) is no finger CT, in grey levels or in stored values.
    if modality and modality != "CT" and not (modality == "OT" and (is_colour or grey_capture)):
        value_origin += f" (Modality {modality}{_NOT_HU_MODALITY})"

    file_spacing_mm, file_spacing_origin, spacing_problem = _dicom_spacing(ds)
    if prefer_file_spacing and file_spacing_mm is not None:
        spacing_mm, spacing_origin = file_spacing_mm, file_spacing_origin
        if user_spacing_mm is not None and not np.allclose(user_spacing_mm, file_spacing_mm):
            spacing_origin += f" (the given pixel size {user_spacing_mm[0]:g} mm was not used: the file has its own)"
    elif user_spacing_mm is not None:
        spacing_mm = user_spacing_mm
        spacing_origin = "user (pixel_size_mm)"
        if file_spacing_mm is not None:
            spacing_origin += (
                f", overriding the file's {file_spacing_origin} "
                f"{file_spacing_mm[0]:g} x {file_spacing_mm[1]:g} mm"
            )
    elif file_spacing_mm is not None:
        spacing_mm, spacing_origin = file_spacing_mm, file_spacing_origin
    else:
        reason = f"its spacing is invalid ({spacing_problem})" if spacing_problem else (
            "it has no PixelSpacing or ImagerPixelSpacing"
        )
        raise UnknownPixelSizeError(f"{path}: the pixel size is unknown: {reason}; {_PIXEL_SIZE_HINT}")

    return CalcinosisImage(
        pixels_hu=pixels_hu,
        spacing_mm=spacing_mm,
        window_level_hu=image_level_hu,
        window_width_hu=image_width_hu,
        source=str(path),
        value_origin=value_origin,
        spacing_origin=spacing_origin,
        saturated_above_hu=saturated_above_hu,
        body_part=" ".join(str(ds.get("BodyPartExamined") or "").split()),
        energy_kev=_monoenergetic_kev(ds),
        slab=_slab_of(ds),
    )


def _dicom_to_hu(ds, stored: np.ndarray) -> tuple[np.ndarray, str]:
    """Stored values to HU via the modality transform; returns (HU, how)."""
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return (
            np.asarray(apply_modality_lut(stored, ds), dtype=np.float32),
            "DICOM Modality LUT Sequence",
        )
    slope, intercept = _rescale_of(ds)
    if slope is None and intercept is None:
        how = "DICOM stored values (no RescaleSlope/Intercept: slope 1, intercept 0)"
    else:
        how = "DICOM RescaleSlope/Intercept"
    slope = 1.0 if slope is None else slope
    intercept = 0.0 if intercept is None else intercept
    padding = _padding_pixels(ds, stored, slope, intercept)
    if (str(ds.get("Modality", "CT")).upper() in ("CT", "") and stored.dtype.kind == "u" and stored.dtype.itemsize == 2
            and slope == 1):
        read = stored if padding is None else stored[~padding]
        top = float(read.max()) + intercept if read.size else -math.inf
        if top > MAX_STORED_HU:
            # Signed values written with an unsigned header (PixelRepresentation 0, as some
            # converters do): air's -1000 reads +64536. No CT gives that; read as signed, it is air.
            stored = stored.astype(np.uint16).view(np.int16)  # native byte order first (a big-endian file)
            padding = _padding_pixels(ds, stored, slope, intercept)
            how += (f"; stored values read as signed 16-bit numbers: the header says unsigned (PixelRepresentation "
                    f"0), but so read they reach {top:.0f} HU, which no CT gives")
    pixels_hu = np.asarray(stored, dtype=np.float64) * slope + intercept
    if padding is not None:
        pixels_hu[padding] = PADDING_HU
        how += f"; {int(padding.sum())} pixels of PixelPaddingValue (outside the field of view) set to {PADDING_HU:g} HU"
    return pixels_hu.astype(np.float32), how


# More than a signed 16-bit number can hold: no CT value (an extended scale reaches about
# 30,700 HU), so stored values read as this are signed values under an unsigned header.
MAX_STORED_HU = 32767.0


# What a pixel the header marks as padding (PixelPaddingValue: outside the reconstructed field
# of view) becomes: below subtract.NO_DATA_HU, neither air nor tissue, as scanners write it.
PADDING_HU = -3024.0


def _padding_pixels(ds, stored: np.ndarray, slope: float, intercept: float) -> np.ndarray | None:
    """The pixels whose stored value is the header's PixelPaddingValue (to its
    PixelPaddingRangeLimit, where given), or None; ``slope``, ``intercept``: the rescale to HU
    the pixels are read with. A padding written signed (-2000) over
    unsigned pixels (63536), as some scanners do, is matched too. Only a padding below
    subtract.NO_DATA_HU in HU, and not all pixels: a header that calls every pixel padding is
    wrong, not an empty image."""
    value = _first_number(ds.get("PixelPaddingValue"))
    if value is None:
        return None
    limit = _first_number(ds.get("PixelPaddingRangeLimit"))
    bits = int(_first_number(ds.get("BitsAllocated")) or 8 * stored.dtype.itemsize)
    from .subtract import NO_DATA_HU

    values = stored.astype(np.int64)
    found = np.zeros(stored.shape, bool)

    def readings(v):  # as written, as unsigned and as signed in BitsAllocated bits
        wrapped = int(v) % 2**bits
        return [int(v), wrapped, wrapped - 2**bits if wrapped >= 2 ** (bits - 1) else wrapped]

    # A padding that reads as tissue or air in HU, however taken (0, or -1024 HU: some write
    # one), cannot be told from those pixels: they are left as they are.
    if min(readings(value)) * slope + intercept >= NO_DATA_HU:
        return None
    for pad, end in zip(readings(value), readings(value if limit is None else limit)):
        found |= (values >= min(pad, end)) & (values <= max(pad, end))
    return found if found.any() and not found.all() else None


def _is_capture(ds) -> bool:
    """Whether the header says the image is a screen capture: a Secondary Capture object, a
    Modality of OT (other), or an ImageType of SECONDARY / SCREEN SAVE."""
    sop_class = str(ds.get("SOPClassUID") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    image_type = {str(v).upper() for v in (ds.get("ImageType") or [])}
    return (sop_class.startswith("1.2.840.10008.5.1.4.1.1.7") or str(ds.get("Modality", "")).upper() in ("OT", "")
            or bool(image_type & {"SECONDARY", "SCREEN SAVE"}))


def _rescale_number(value, keyword: str) -> float | None:
    """A rescale value as a number, a decimal comma ('-1024,0', a localised exporter) read as a
    point; None where absent or empty. One that is there but no number is refused: taken as 1 or 0,
    every HU would be off (a helper's run: '-1024,0' read as 0 made a 476 mm² "deposit")."""
    if value is None:
        return None
    text = str(value[0] if not isinstance(value, (str, bytes)) and isinstance(value, Sequence) and len(value) else value)
    text = text.strip()
    if not text or text == "[]":
        return None
    number = _first_number(value)
    if number is None and _DECIMAL_COMMA.fullmatch(text):
        number = float(text.replace(",", "."))
    if number is None:
        raise CalcinosisError(f"its {keyword} is {text!r}, not a number, so its values cannot be turned into HU; "
                              "export the image again")
    return number


def _rescale_of(ds) -> tuple[float | None, float | None]:
    """(RescaleSlope, RescaleIntercept) of the header, or of an enhanced image's functional
    groups; None where absent. Raises CalcinosisError where one is there but no number."""
    slope = _rescale_number(ds.get("RescaleSlope"), "RescaleSlope")
    intercept = _rescale_number(ds.get("RescaleIntercept"), "RescaleIntercept")
    if slope is None and intercept is None:
        group = "PixelValueTransformationSequence"
        slope = _rescale_number(_functional_group_value(ds, group, "RescaleSlope"), "RescaleSlope")
        intercept = _rescale_number(_functional_group_value(ds, group, "RescaleIntercept"), "RescaleIntercept")
    return slope, intercept


def _multi_frame_error(path: Path, n_frames: int, what: str) -> CalcinosisError:
    return CalcinosisError(
        f"{path}: has {n_frames} {what}; this tool measures one 2-D sagittal slice: "
        "export the slice you want as its own file"
    )


# ---- PNG / JPEG / TIFF ---------------------------------------------------------------


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """Grey level of an (..., 3 or 4) colour image, alpha dropped, as float64."""
    return np.asarray(rgb[..., :3], dtype=np.float64) @ _LUMA_WEIGHTS


# A grey slice saved in colour has R = G = B, give or take JPEG's few levels. A colour-coded one (a
# dual-energy CT's calcium or urate overlay) or one with coloured marks has pixels whose channels
# differ by more than this share of full scale: their luminance is no grey level of the window
# (calcium painted blue reads 149 HU, green 580 HU: a helper's run measured such deposits at 2.6
# mm² for 1.0, with no warning).
_COLOUR_SPREAD = 0.1
_MIN_COLOURED_PIXELS = 4


def _coloured_note(rgb: np.ndarray) -> str:
    """For value_origin: how many pixels of an (..., 3 or 4) image are in colour, not grey, or ""."""
    channels = np.asarray(rgb[..., :3], dtype=np.float64)
    if np.issubdtype(rgb.dtype, np.integer):
        full_scale = float(np.iinfo(rgb.dtype).max)
    else:
        full_scale = float(np.nanmax(channels) - np.nanmin(channels)) if channels.size else 0.0
    spread = channels.max(axis=-1) - channels.min(axis=-1)
    n_coloured = int(np.count_nonzero(spread > _COLOUR_SPREAD * full_scale)) if full_scale > 0 else 0
    if n_coloured < _MIN_COLOURED_PIXELS:
        return ""
    return f"{n_coloured} ({100 * n_coloured / spread.size:.2g} %){_IN_COLOUR}"


def _read_raster(
    path: Path,
    fmt: str,
    user_spacing_mm: tuple[float, float] | None,
    level_hu: float,
    width_hu: float,
) -> CalcinosisImage:
    if fmt == "TIFF":
        values, bits, colour_note = _read_tiff_values(path)
    else:
        values, bits, colour_note = _read_pillow_values(path, fmt)

    if user_spacing_mm is None:
        # A TIFF's resolution tags are most often print resolution (dots per inch), not the scan's.
        what = ("the pixel size is not read from a TIFF (its resolution tags are mostly print resolution)"
                if fmt == "TIFF" else f"a {fmt} image carries no pixel size")
        raise CalcinosisError(f"{path}: {what}; {_PIXEL_SIZE_HINT}")
    return _export_image(values, bits, colour_note, fmt, user_spacing_mm, level_hu, width_hu, str(path))


def _export_image(
    grey: np.ndarray, bits: int | None, colour_note: str, fmt: str, spacing_mm, level_hu: float,
    width_hu: float, source: str,
) -> CalcinosisImage:
    """An export's grey values as HU: an unsigned N-bit export mapped back through its window
    (``bits``), float or signed values (``bits`` None) taken as HU."""
    if bits is None:
        pixels_hu = np.asarray(grey, dtype=np.float32)
        number_kind = "float" if grey.dtype.kind == "f" else "signed-integer"
        value_origin = f"{number_kind} {fmt} taken as HU"
        saturated_above_hu = None
    else:
        pixels_hu = _windowed_export_to_hu(grey, bits, level_hu, width_hu)
        value_origin = f"{bits}-bit export mapped back through {_window_label(level_hu, width_hu)}"
        # The export clipped everything above the window's top to full scale.
        saturated_above_hu = level_hu + width_hu / 2.0
    if colour_note:
        value_origin = f"{value_origin} ({colour_note})"
    return CalcinosisImage(
        pixels_hu=pixels_hu,
        spacing_mm=spacing_mm,
        window_level_hu=level_hu,
        window_width_hu=width_hu,
        source=source,
        value_origin=value_origin,
        spacing_origin="user (pixel_size_mm)",
        saturated_above_hu=saturated_above_hu,
    )


def image_from_export(
    values,
    pixel_size_mm,
    window_level_hu: float = WINDOW_LEVEL_HU,
    window_width_hu: float = WINDOW_WIDTH_HU,
    *,
    source: str = "",
) -> CalcinosisImage:
    """An export already in memory (a PNG or JPEG opened by napari's own reader, say) as HU,
    as :func:`read_image` reads the file.

    Parameters
    ----------
    values : numpy.ndarray
        The export's pixels: grey (rows, cols), or colour (rows, cols, 3 or 4; grey + alpha 2),
        reduced to grey by luminance. Unsigned 8- or 16-bit values are mapped back to HU through
        the window; float or signed values are taken as HU.
    pixel_size_mm : float or (float, float)
        Pixel spacing in mm, square or (row, col): an export does not carry it.
    window_level_hu, window_width_hu : float
        The window in HU the export was made through (default: the paper's W1500/L450).
    source : str
        Where the image came from, for messages and the result's ``source``.

    Returns
    -------
    CalcinosisImage
        With ``saturated_above_hu`` the window's top for an N-bit export (it clipped there).

    Raises
    ------
    CalcinosisError
        If the values are not one 2-D slice in grey or colour, are not numbers, or the pixel
        size or window is not valid.
    """
    where = source or "the image"
    spacing_mm = _checked_spacing(pixel_size_mm, f"{where}: pixel_size_mm")
    level_hu, width_hu = _checked_window(window_level_hu, window_width_hu)
    refuse_layer(values, "image_from_export")
    array = _squeeze_leading(np.asarray(values))
    if array.dtype.kind not in "biuf":
        raise CalcinosisError(f"{where}: its values are {array.dtype}, not numbers")
    colour = array.ndim == 3 and array.shape[-1] in (2, 3, 4)
    if array.ndim != 2 and not colour:
        raise CalcinosisError(
            f"{where}: has shape {array.shape}; an export is one 2-D slice, in grey or colour"
        )
    grey, note = _grey_values(array, Path(where), "image", colour)
    bits = _bits_of(array, Path(where), "image")
    return _export_image(grey, bits, note, "image", spacing_mm, level_hu, width_hu, source)


def _grey_values(
    array: np.ndarray, path: Path, fmt: str, colour: bool
) -> tuple[np.ndarray, str]:
    """2-D grey values and a note on colour handling; refuses stacks."""
    if colour:
        if array.ndim != 3:
            raise CalcinosisError(f"{path}: unexpected colour {fmt} layout {array.shape}")
        if array.shape[-1] == 2:  # grey + alpha
            return array[..., 0], "alpha dropped"
        note = "RGB reduced to grey by luminance"
        if array.shape[-1] == 4:
            note += ", alpha dropped"
        coloured = _coloured_note(array)
        return _luminance(array), f"{note}; {coloured}" if coloured else note
    if array.ndim != 2:
        raise _multi_frame_error(path, array.shape[0], "planes")
    return array, ""


def _bits_of(
    values: np.ndarray, path: Path, fmt: str, bits_per_sample: int | None = None
) -> int | None:
    """Bit depth of an unsigned-integer export, None for float or signed images (taken as HU)."""
    kind = values.dtype.kind
    if kind == "b":
        raise CalcinosisError(
            f"{path}: is a 1-bit (black and white) {fmt}, not a CT image export; "
            "export the slice as 8- or 16-bit grey"
        )
    if kind in "fi":
        return None
    if kind == "u" and values.dtype.itemsize <= 2:
        dtype_bits = 8 * values.dtype.itemsize
        if bits_per_sample and 1 < bits_per_sample <= dtype_bits:
            return int(bits_per_sample)
        return dtype_bits
    raise CalcinosisError(
        f"{path}: {fmt} pixels of type {values.dtype} are not supported; "
        "export the slice as 8- or 16-bit grey, or as float HU (TIFF)"
    )


def _planes_last(array: np.ndarray, samples: int, planar_separate: bool) -> np.ndarray:
    """A TIFF page's colour channels last: tifffile gives a page stored plane by plane (planar
    configuration 2) as (samples, rows, cols)."""
    if samples > 1 and planar_separate and array.ndim == 3 and array.shape[0] == samples:
        return np.moveaxis(array, 0, -1)
    return array


def _read_tiff_values(path: Path) -> tuple[np.ndarray, int | None, str]:
    """(values, export bit depth or None for HU, colour note) of a single-page TIFF."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            n_pages = len(tif.pages)
            if n_pages > 1:
                raise _multi_frame_error(path, n_pages, "pages")
            page = tif.pages[0]
            _check_pixel_count(int(page.imagelength), int(page.imagewidth), f"{path}: ")
            array = page.asarray()
            photometric = int(page.photometric)
            samples = int(page.samplesperpixel)
            planar_separate = int(page.planarconfig) == 2
            bits_per_sample = page.bitspersample
            colormap = page.colormap
    except CalcinosisError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types
        raise CalcinosisError(
            f"{path}: is not a readable TIFF image ({_one_line(exc)}); export the image again"
        ) from exc

    array = np.squeeze(array) if array.ndim > 2 and 1 in array.shape[:-2] else array
    array = _planes_last(array, samples, planar_separate)

    miniswhite, palette = 0, 3  # TIFF PhotometricInterpretation codes
    if photometric == palette and colormap is not None:
        # The colour map holds 16-bit RGB for every index.
        rgb = np.moveaxis(np.asarray(colormap)[:, array], 0, -1)
        grey, note = _grey_values(rgb, path, "TIFF", colour=True)
        return grey, 16, "palette TIFF, " + note

    colour = samples > 1
    if colour and array.dtype.kind in "fi":
        # Colour exports are 8- or 16-bit; numbers in several channels are slices or maps in HU
        # (a stack of 3 saved by numpy), which luminance would blend into one.
        raise CalcinosisError(
            f"{path}: holds {samples} channels of {array.dtype} numbers, not one slice: a stack of "
            "slices or of maps; save the one slice you want as a single-channel TIFF"
        )
    grey, note = _grey_values(array, path, "TIFF", colour)
    if not isinstance(bits_per_sample, int):
        bits_per_sample = None  # tifffile gives a tuple when samples differ in depth
    bits = _bits_of(array, path, "TIFF", bits_per_sample)
    if photometric == miniswhite and bits is not None and not colour:
        # MINISWHITE stores 0 as white: flip so larger values are denser, as in a CT export.
        grey = (2**bits - 1) - grey.astype(np.int64)
        note = "MinIsWhite inverted"
    return grey, bits, note


def _read_pillow_values(path: Path, fmt: str) -> tuple[np.ndarray, int | None, str]:
    """(values, export bit depth, colour note) of a PNG or JPEG."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Pillow warns above 89 Mpx; _check_pixel_count below refuses such an image anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as exc:
        # Pillow refuses twice its own limit at open, before we can see the size.
        n_pixels = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large_error(
            f"{path}: ", _megapixels(int(n_pixels.group(1))) if n_pixels else "too large"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
        raise CalcinosisError(
            f"{path}: is not a readable {fmt} image ({_one_line(exc)}); export the image again"
        ) from exc
    try:
        with image:
            n_frames = getattr(image, "n_frames", 1)
            if n_frames > 1:
                raise _multi_frame_error(path, n_frames, "frames")
            _check_pixel_count(image.height, image.width, f"{path}: ")
            image.load()
            mode = image.mode
            if mode == "PA" or (mode == "P" and "transparency" in image.info):
                image = image.convert("RGBA")
            elif mode == "P":
                image = image.convert("RGB")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            mode_after = image.mode
            array = np.asarray(image)
    except CalcinosisError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
        raise CalcinosisError(
            f"{path}: is not a readable {fmt} image ({_one_line(exc)}); export the image again"
        ) from exc

    if mode_after == "I" and array.size and array.min() >= 0 and array.max() <= 65535:
        # Older Pillow opens 16-bit grey PNGs as 32-bit "I"; their values fit 16 bits.
        array = array.astype(np.uint16)
    colour = array.ndim == 3
    grey, note = _grey_values(array, path, fmt, colour)
    if mode in ("P", "PA"):
        note = "palette image, " + note
    bits = _bits_of(array, path, fmt)
    if bits is None and fmt != "TIFF":
        raise CalcinosisError(
            f"{path}: {fmt} pixels of type {array.dtype} are not supported; "
            "export the slice as 8- or 16-bit grey"
        )
    return grey, bits, note


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_output(path, *, overwrite: bool = True) -> Iterator[Path]:
    """Write a file all at once: yield a temporary path beside ``path``, then rename it onto ``path``.

    The caller writes the temporary file (same folder, same suffix, so writers that pick the
    format from the suffix still work). When the ``with`` block ends, the file is flushed to
    disk and renamed onto ``path`` in one step (:func:`os.replace`): ``path`` never holds half a
    file, and a write that fails or is interrupted leaves an existing ``path`` as it was and no
    temporary file behind.

    Parameters
    ----------
    path : str or os.PathLike
        The output file; its folder must exist.
    overwrite : bool
        When False, refuse if ``path`` already exists.

    Yields
    ------
    pathlib.Path
        The temporary file to write.

    Raises
    ------
    CalcinosisError
        If ``path`` exists and ``overwrite`` is False, or the file cannot be written (missing or
        read-only folder, full disk).
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise CalcinosisError(
            f"{path}: already exists; pass overwrite=True (CLI: --overwrite) to replace it, "
            "or choose another output"
        )
    try:
        with atomic_file(path, make_parents=False) as temporary:
            yield temporary
    except OSError as exc:
        # strerror alone: the full message would name the temporary file, not the output.
        raise CalcinosisError(
            f"{path}: cannot be written ({exc.strerror or _one_line(exc)}); check that the folder exists and is "
            "writable, and that the disk has room"
        ) from exc


def _checked_pixels_hu(pixels_hu) -> np.ndarray:
    pixels_hu = np.asarray(pixels_hu, dtype=np.float64)
    if pixels_hu.ndim != 2:
        raise CalcinosisError(
            f"only one 2-D slice can be written, got an array of shape {pixels_hu.shape}"
        )
    if pixels_hu.size == 0 or not np.all(np.isfinite(pixels_hu)):
        raise CalcinosisError("the image to write is empty or holds NaN/infinite HU values")
    return pixels_hu


def write_dicom(
    path,
    pixels_hu: np.ndarray,
    spacing_mm,
    window_level_hu: float = WINDOW_LEVEL_HU,
    window_width_hu: float = WINDOW_WIDTH_HU,
    patient_id: str = "PHANTOM",
    description: str = "",
    *,
    overwrite: bool = True,
) -> Path:
    """Write one slice as a CT Image Storage DICOM file.

    Stored as signed 16-bit ``round(HU) + 1024`` with RescaleSlope 1 and
    RescaleIntercept -1024 (clipped to the int16 range), so reading it back gives the
    HU to within 0.5.  Patient position and orientation are nominal.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; its folder must exist.
    pixels_hu : numpy.ndarray
        2-D image in HU.
    spacing_mm : float or (float, float)
        (row, col) pixel spacing in mm (one number: square pixels).
    window_level_hu, window_width_hu : float
        Display window written as WindowCenter/WindowWidth, in HU.
    patient_id : str
        Written as PatientID and PatientName.
    description : str
        Written as SeriesDescription.
    overwrite : bool
        When False, refuse to replace an existing file.  The file is written atomically
        (:func:`atomic_output`).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        CTImageStorage,
        ExplicitVRLittleEndian,
        generate_uid,
    )
    from pydicom.valuerep import DSfloat

    path = Path(path)
    pixels_hu = _checked_pixels_hu(pixels_hu)
    row_mm, col_mm = _checked_spacing(spacing_mm, "spacing_mm")
    level_hu, width_hu = _checked_window(window_level_hu, window_width_hu)

    int16 = np.iinfo(np.int16)
    stored = np.clip(np.round(pixels_hu - _DICOM_RESCALE_INTERCEPT_HU), int16.min, int16.max)
    stored = stored.astype("<i2")

    def ds_value(number: float) -> DSfloat:
        # DS strings hold at most 16 characters; auto_format keeps as many digits as fit.
        return DSfloat(float(number), auto_format=True)

    sop_instance_uid = generate_uid()
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = CTImageStorage
    file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = FileDataset(str(path), {}, file_meta=file_meta, preamble=b"\0" * 128)
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")

    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_instance_uid
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "napari-calcinosis"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = str(description)
    ds.PatientName = str(patient_id)
    ds.PatientID = str(patient_id)
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.KVP = ""
    ds.SliceThickness = ""
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.PixelSpacing = [ds_value(row_mm), ds_value(col_mm)]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = ds_value(level_hu)
    ds.WindowWidth = ds_value(width_hu)
    ds.RescaleIntercept = ds_value(_DICOM_RESCALE_INTERCEPT_HU)
    ds.RescaleSlope = ds_value(1.0)
    ds.RescaleType = "HU"
    ds.PixelData = stored.tobytes()

    with atomic_output(path, overwrite=overwrite) as temporary:
        ds.save_as(temporary, enforce_file_format=True)
    return path


def write_windowed_png(
    path,
    pixels_hu: np.ndarray,
    window_level_hu: float = WINDOW_LEVEL_HU,
    window_width_hu: float = WINDOW_WIDTH_HU,
    *,
    overwrite: bool = True,
) -> Path:
    """Write an 8-bit grey PNG through a window, like the paper's JPEG exports.

    Each pixel is ``round(window_unit * 255)``; HU outside the window are clipped, and
    no pixel spacing is stored.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (written as PNG whatever its suffix); its folder must exist.
    pixels_hu : numpy.ndarray
        2-D image in HU.
    window_level_hu, window_width_hu : float
        The export window in HU.
    overwrite : bool
        When False, refuse to replace an existing file.  The file is written atomically
        (:func:`atomic_output`).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    from PIL import Image

    path = Path(path)
    pixels_hu = _checked_pixels_hu(pixels_hu)
    grey = np.round(hu_to_window_unit(pixels_hu, window_level_hu, window_width_hu) * 255.0)
    with atomic_output(path, overwrite=overwrite) as temporary:
        Image.fromarray(grey.astype(np.uint8)).save(temporary, format="PNG")
    return path
