"""The whole method on one image: read -> segment phalanges -> subtract bone -> grow -> measure."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .grow import DEFAULT_MIN_AREA_MM2, grow_lesions
from ._errors import AS_IMAGE, CalcinosisError, refuse_layer
from .io import CalcinosisImage, _checked_spacing, _window_label, check_measurable, image_caveats, read_image
from .measure import measure_lesions
from .segment import MAX_BONE_SHARE, PhalanxModel, load_model, model_caveat, segment_phalanges
from .subtract import DEFAULT_MARGIN_MM, DEFAULT_THRESHOLD_HU, resolve_margin_mm, subtract_bone

__all__ = ["QuantifyResult", "quantify", "settings_label", "software_label"]


@dataclass
class QuantifyResult:
    """Every intermediate of :func:`quantify`, so each can be inspected or corrected.

    Attributes
    ----------
    image : CalcinosisImage
    bone_mask : ndarray of bool
        The bone mask the deposits were measured with: the segmented (or given) one, less any
        piece a seed took back as a deposit (see :func:`~napari_calcinosis.grow.grow_lesions`).
    bone_probability : ndarray of float32 or None
        None when the bone mask was given without one.
    candidates : ndarray of bool
        Bright pixels outside the dilated bone (calcification candidates).
    lesion_labels : ndarray of int32
    margin_mm : float
        The bone margin used (measured on the image unless given).
    table : DataFrame
        One row per lesion (automatic mode) or per seed, in seed order; see
        :data:`napari_calcinosis.measure.LESION_COLUMNS`, plus ``peak_hu``,
        ``background_hu``, ``level_hu`` and ``freed_from_bone_mm2`` from growing, and
        ``hu_clipped``: the lesion reaches the top of an export's window, where the export
        clipped it, so its mean and max HU are lower bounds (always False for DICOM).
    warnings : list of str
        What makes this result doubtful, one sentence each, for the user to judge: the image's
        values or size (:func:`~napari_calcinosis.io.image_caveats`), no bone found, a lesion
        larger than a deposit can be. Empty when nothing does. The CLI prints them and writes
        them in its ``warnings`` column.
    """

    image: CalcinosisImage
    bone_mask: np.ndarray
    bone_probability: np.ndarray | None
    candidates: np.ndarray
    lesion_labels: np.ndarray
    table: pd.DataFrame
    margin_mm: float = float("nan")
    warnings: list = field(default_factory=list)

    @property
    def total_area_mm2(self) -> float:
        ok = self.table[self.table["lesion_id"] > 0].drop_duplicates("lesion_id")
        return float(ok["area_mm2"].sum())


def quantify(
    image,
    seeds=None,
    *,
    model: PhalanxModel | str | Path | None = None,
    pixel_size_mm=None,
    bone_mask: np.ndarray | None = None,
    bone_probability: np.ndarray | None = None,
    device: str = "auto",
    tta: bool = False,
    threshold_hu: float = DEFAULT_THRESHOLD_HU,
    margin_mm: float | None = DEFAULT_MARGIN_MM,
    connectivity: int = 4,
    min_area_mm2: float = DEFAULT_MIN_AREA_MM2,
) -> QuantifyResult:
    """Measure the calcinosis deposits of one image.

    Parameters
    ----------
    image : CalcinosisImage, str or Path
        The image, or a file to read (DICOM, PNG, JPEG, TIFF).
    seeds : sequence of (row, col), optional
        A point on each deposit, in pixels. Without seeds every candidate deposit of at least
        ``min_area_mm2`` is measured (automatic mode), except bright things lying against the
        air or parted from the finger's bones by it (splints, rings, the skin's edge, the CT
        table), listed with the status ``outside_finger``,
        specks no brighter than the image's noise (``below_noise``), and long thin lines along
        the bone deep in the soft tissue, most likely calcified arteries (``vessel_like``).
        Its table has a row per lesion and per candidate so left out; a candidate that ran into
        another's lesion, or did not stand out from the tissue, has none.
    model : PhalanxModel or path, optional
        Phalanx U-Net (default: the bundled model). Load it once with :func:`load_model` when
        measuring many images.
    pixel_size_mm : float, optional
        Pixel spacing for PNG/JPEG/TIFF exports, which carry none; for a DICOM file or a
        ``CalcinosisImage`` it replaces the spacing they carry.
    bone_mask : ndarray of bool, optional
        A bone mask to use instead of segmenting (e.g. one the user corrected).
    bone_probability : ndarray of float, optional
        With ``bone_mask``: the U-Net's probability it came from (``segment_phalanges``). Where
        the mask holds pixels the network was unsure of (probability 0.5 to 0.8), a seed's
        deposit may take a blob of them (see ``grow_lesions``'s ``bone_probability``); pixels
        the user painted where the network saw no bone (under 0.5) always stay bone. When this
        function segments, it uses the network's own probability.
    device, tta : segmentation device and flip test-time augmentation.
    threshold_hu, margin_mm, connectivity, min_area_mm2 : see :func:`subtract_bone` and
        :func:`grow_lesions`.

    Returns
    -------
    QuantifyResult

    Raises
    ------
    CalcinosisError
        If the image cannot be read or measured (see :func:`~napari_calcinosis.io.check_measurable`),
        or a seed is not a (row, col) pair of numbers.
    """
    refuse_layer(image, "the image", instead=AS_IMAGE)
    refuse_layer(bone_mask, "bone_mask")
    refuse_layer(bone_probability, "bone_probability")
    if not isinstance(image, CalcinosisImage):
        image = read_image(image, pixel_size_mm=pixel_size_mm)
    elif pixel_size_mm is not None:
        image = replace(image, spacing_mm=_checked_spacing(pixel_size_mm, "pixel_size_mm"),
                        spacing_origin="user (pixel_size_mm)")
    check_measurable(image)
    if bone_mask is None and bone_probability is not None:
        raise CalcinosisError("bone_probability goes with the bone_mask it came from (segment_phalanges' bone_mask "
                              "and probability): give both, or neither and the image is segmented here")
    probability = None
    model_caveats = []
    if bone_mask is None:
        if not isinstance(model, PhalanxModel):
            model = load_model(model, device=device)
        seg = segment_phalanges(image, model, device=device, tta=tta)
        bone_mask, probability = seg.bone_mask, seg.probability
        model_caveats = list(filter(None, [model_caveat(model)]))  # a fine-tune that went wrong
    elif bone_probability is not None:
        probability = np.asarray(bone_probability, np.float32)
    bone_mask = np.asarray(bone_mask, bool)
    if probability is not None and np.shape(probability) != bone_mask.shape:
        raise CalcinosisError(f"bone_probability {np.shape(probability)} and bone mask {bone_mask.shape} must be the "
                              "same shape: segment this image again")
    spacing = image.spacing_mm
    margin_mm = resolve_margin_mm(margin_mm, image.pixels_hu, bone_mask, spacing, threshold_hu)
    candidates = subtract_bone(image.pixels_hu, bone_mask, spacing, threshold_hu=threshold_hu, margin_mm=margin_mm)
    grown = grow_lesions(
        image.pixels_hu, bone_mask, spacing, seeds,
        candidates=candidates, threshold_hu=threshold_hu, margin_mm=margin_mm,
        connectivity=connectivity, min_area_mm2=min_area_mm2, bone_probability=probability,
    )
    if (grown.seeds["freed_from_bone_mm2"] > 0).any():
        # A seed took a piece of the mask back as a deposit (see grow_lesions): the mask and the
        # candidates reported are the ones it was measured with.
        bone_mask = grown.bone_mask
        candidates = subtract_bone(image.pixels_hu, bone_mask, spacing, threshold_hu=threshold_hu, margin_mm=margin_mm)
    s = grown.seeds
    table = measure_lesions(
        grown.lesion_labels, spacing, image.pixels_hu, value_unit=image.value_unit,
        seeds=list(zip(s["seed_row"], s["seed_col"])), statuses=list(s["status"]), lesion_ids=list(s["lesion_id"]),
    )
    for col in ("peak_hu", "background_hu", "level_hu", "freed_from_bone_mm2"):
        table[col] = s[col].to_numpy()
    table["bone_margin_mm"] = margin_mm
    table["hu_clipped"] = _hu_clipped(image, table)
    table.insert(0, "image", image.name)
    if seeds is None:
        # Automatic mode's seeds are its own: a candidate that ran into another's lesion, or
        # stood out from nothing, is no row of the user's (its area summed twice, or none).
        table = table[~table["status"].isin(["duplicate_seed", "no_deposit"])].reset_index(drop=True)
    image_notes = image_caveats(image)
    warnings = (image_notes + model_caveats + _result_caveats(image, bone_mask, table, threshold_hu, image_notes)
                + ([note] if (note := thin_tail_note(grown.lesion_labels, spacing, table)) else []))
    return QuantifyResult(image, bone_mask, probability, candidates, grown.lesion_labels, table, margin_mm, warnings)


def settings_label(*, threshold_hu: float = DEFAULT_THRESHOLD_HU, margin_mm: float | None = DEFAULT_MARGIN_MM,
                   connectivity: int = 4, min_area_mm2: float = DEFAULT_MIN_AREA_MM2, tta: bool = False,
                   export_pixel_size_mm: float | None = None, export_window_hu: tuple[float, float] | None = None,
                   unsure_bone_taken: bool = True) -> str:
    """The settings deposits were measured with, as the ``settings`` column of the command line's
    rows and of the widgets' exports says them: with the model, what makes two tables' numbers
    comparable. ``export_window_hu``: (width, level) an export was mapped back through. The same
    settings read the same, whichever way the deposits were measured."""
    parts = [f"threshold_hu={threshold_hu:g}",
             "margin_mm=per image" if margin_mm is None else f"margin_mm={margin_mm:g}",
             f"connectivity={connectivity}", f"min_area_mm2={min_area_mm2:g}", f"tta={'yes' if tta else 'no'}"]
    if export_pixel_size_mm is not None:
        parts.append(f"export_pixel_size_mm={export_pixel_size_mm:g}")
    if export_window_hu is not None:
        parts.append(f"export_window_hu=W{export_window_hu[0]:g}/L{export_window_hu[1]:g}")
    if not unsure_bone_taken:  # the widgets' choice; quantify() always lets a seed take it
        parts.append("unsure_bone=left as bone")
    return "; ".join(parts)


def software_label() -> str:
    """What measured the rows (their ``software`` column): this package and its version. With
    ``model`` and ``settings``, it makes two tables' numbers comparable, or says why not."""
    from . import __version__

    return f"napari-calcinosis {__version__}"


# No calcinosis deposit of the paper (nor of the 14 image sets of docs/validation.md, whose
# largest is 170 mm², a sheet on generator F) comes near 400 mm² on one slice; a lesion that large has flooded
# something that is not a deposit (bone the mask missed, a uniform or mis-scaled image).
MAX_PLAUSIBLE_DEPOSIT_MM2 = 400.0


def _result_caveats(image: CalcinosisImage, bone_mask: np.ndarray, table: pd.DataFrame,
                    threshold_hu: float = DEFAULT_THRESHOLD_HU, image_notes=()) -> list[str]:
    """What makes a measurement doubtful beyond the image itself (``image_notes``, what
    :func:`~napari_calcinosis.io.image_caveats` said of it): no bone, soft tissue as bright as
    calcium, implausible lesions."""
    tissue = calcium_tissue_note(image, bone_mask, threshold_hu, image_notes)
    return [*bone_caveats(bone_mask), *filter(None, [tissue, large_lesion_note(table)])]


# Deposits are a small part of a finger's soft tissue: at most 24 % of what lies over -200 HU and
# 1 mm or more from the bone is at or above 200 HU, in HU and in W1500/L450 exports of 40
# phantoms (the most, a crop full of deposits). An export made through W2000/L300 and read as
# W1500/L450 puts the soft tissue at 230-270 HU: 39-86 % of it, and the whole finger grows.
MAX_CALCIUM_TISSUE_SHARE = 0.4


def calcium_tissue_note(image: CalcinosisImage, bone_mask: np.ndarray,
                        threshold_hu: float = DEFAULT_THRESHOLD_HU, image_notes=()) -> str:
    """The warning for an image whose soft tissue reads as calcium (:data:`MAX_CALCIUM_TISSUE_SHARE`
    of it at or above ``threshold_hu``); "" when it does not, when a finger's worth of soft tissue
    is not there to tell, or when ``image_notes`` (what :func:`~napari_calcinosis.io.image_caveats`
    said of the image) already say why its values are not the HU expected (:data:`~napari_calcinosis.
    io.WINDOW_NOTES`: uniform, an export inverted or made through another window)."""
    from .io import WINDOW_NOTES
    from .subtract import dilate_mm

    if any(said in note for note in image_notes for said in WINDOW_NOTES):
        return ""  # one answer to one question, with its own advice
    values = image.pixels_hu  # noise over 200 HU is a fraction of a per cent of 40 HU tissue
    tissue = (values > -200.0) & ~dilate_mm(np.asarray(bone_mask, bool), 1.0, image.spacing_mm)
    if tissue.sum() < 100:
        return ""
    share = float((values[tissue] >= threshold_hu).mean())
    if share <= MAX_CALCIUM_TISSUE_SHARE:
        return ""
    export = (f"was the export made through another window than "
              f"{_window_label(image.window_level_hu, image.window_width_hu)} (a bone window such as W2000/L300)? "
              "Give the window it was made with (--window-level/--window-width; in napari, Prepare image)"
              if image.saturated_above_hu is not None
              else "are the values HU, and the threshold right?")
    return (f"{share:.0%} of the finger's soft tissue (1 mm or more from the bone) reads at or above the calcium "
            f"threshold ({threshold_hu:g} HU), where deposits are a small part of it: {export}")


def bone_caveats(bone_mask: np.ndarray) -> list[str]:
    """What makes a bone mask doubtful: no bone, or more bone than a finger slice holds."""
    notes = []
    if not bone_mask.any():
        notes.append("no bone was found: deposits are measured against the whole finger, and bone may be "
                     "measured as calcinosis: is this a sagittal finger CT in HU?")
    elif (share := bone_mask.mean()) > MAX_BONE_SHARE:
        notes.append(f"the bone mask covers {share:.0%} of the image (a finger slice is a third bone or "
                     "less): is it inverted, or a probability rather than a mask (segment_phalanges' bone_mask)?")
    return notes


RUNS_ALONG_A_THIN_LINE = "runs on along a thin line"


def thin_tail_note(lesion_labels: np.ndarray, spacing_mm, table: pd.DataFrame) -> str:
    """The warning for lesions that run on from their body along a thin line (:func:`~napari_calcinosis.
    measure.thin_tails`: perhaps a calcified artery the deposit touches), each named by the
    seed it was grown from where ``table`` has its seed; "" when none. It contains
    :data:`RUNS_ALONG_A_THIN_LINE`, so that lesions measured again (painted) can replace it."""
    from .measure import thin_tails

    tails = thin_tails(lesion_labels, spacing_mm)
    if not tails:
        return ""
    named = []
    for k, (length_mm, area_mm2) in tails.items():
        rows = table[pd.to_numeric(table["lesion_id"], errors="coerce") == k] if "lesion_id" in table else table[:0]
        where = [pd.to_numeric(rows[c], errors="coerce").iloc[0] if c in rows and len(rows) else np.nan
                 for c in ("seed_row", "seed_col")]
        seed = f" (seed at row {where[0]:.0f}, col {where[1]:.0f})" if np.isfinite(where).all() else ""
        named.append(f"{k}{seed} {RUNS_ALONG_A_THIN_LINE} for {length_mm:.0f} mm ({area_mm2:.1f} mm² of its area)")
    # (lesions joined by commas: warnings are joined, and split again, at "; ")
    return (f"lesion {', lesion '.join(named)}: perhaps a calcified artery the deposit touches, measured with it: "
            "check whether the line belongs to the deposit, and if not erase it from the lesion (in napari: paint "
            "it out, then Measure)")


LARGER_THAN_ANY_DEPOSIT = "larger than any calcinosis deposit"


def large_lesion_note(table: pd.DataFrame) -> str:
    """The warning for the lesions of ``table`` (``lesion_id``, ``area_mm2``; a row per seed or
    per lesion) larger than any deposit, by their numbers in it; "" when there are none. It
    contains :data:`LARGER_THAN_ANY_DEPOSIT`, so that a table measured again (painted, or at
    another pixel size) can replace an earlier one."""
    if "lesion_id" not in table or "area_mm2" not in table:
        return ""
    lesions = table[pd.to_numeric(table["lesion_id"], errors="coerce") > 0].drop_duplicates("lesion_id")
    large = lesions[pd.to_numeric(lesions["area_mm2"], errors="coerce") > MAX_PLAUSIBLE_DEPOSIT_MM2]
    if not len(large):
        return ""
    shown = ", ".join(f"{int(k)} ({a:.0f} mm²)" for k, a in zip(large["lesion_id"], large["area_mm2"]))
    return (f"lesion(s) {shown} are {LARGER_THAN_ANY_DEPOSIT} ({MAX_PLAUSIBLE_DEPOSIT_MM2:g} mm²): check the "
            "bone mask and the image's values there")


def _hu_clipped(image: CalcinosisImage, table: pd.DataFrame) -> np.ndarray:
    """Per row: whether the lesion reaches the top of the export's window, where the export
    clipped it (its mean and max HU are then lower bounds, and its half-maximum edge is drawn
    from the clipped peak). Half an 8-bit step below the top counts. False for DICOM."""
    if image.saturated_above_hu is None:
        return np.zeros(len(table), bool)
    top = image.saturated_above_hu - 0.5 * image.window_width_hu / 255
    return ((table["lesion_id"] > 0) & (table["max_value"] >= top)).to_numpy()
