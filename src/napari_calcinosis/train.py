"""Training and fine-tuning the phalanx U-Net.

One function, :func:`train_segmenter`, serves the CLI, the napari widget and the console. It
reports progress through a callback (step, epoch, loss, validation Dice, ETA), stops at the next
step when ``should_cancel()`` says so, and keeps the weights with the best validation Dice as
safetensors + JSON card. A checkpoint is written every ``checkpoint_every_s`` seconds (at the
next step or epoch end), on cancel and at the end; ``resume=True`` carries on from it at the step
where it was written, so a run killed at any moment (kill -9, power cut) loses at most that
long. Every file is written atomically (:mod:`._atomic`): the final paths never hold half a file.

Augmentation goes beyond the paper's rotations (Chandrasekaran et al. 2021 rotated 30 images
three times): any rotation, flips, scaling around the working pixel spacing, HU gain and
offset, gamma, extra noise and blur, and 8-bit export quantisation, so that the model learns
bone shape rather than one generator's or one scanner's look.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from ._atomic import atomic_write, remove_stale_temporaries
from ._errors import CalcinosisError
from .io import (_DICOM_SUFFIXES, WINDOW_LEVEL_HU, WINDOW_WIDTH_HU, CalcinosisImage, _image_stem, _is_image_file,
                 _listed, _one_line, _planes_last, check_field_of_view, check_size, image_caveats, read_image)
from .segment import (
    MAX_BONE_SHARE,
    PhalanxModel,
    dice,
    model_file,
    new_model,
    normalise,
    save_model,
    segment_phalanges,
    select_device,
)

__all__ = [
    "TrainingSample", "TrainProgress", "TrainResult", "train_segmenter", "check_schedule", "phantom_samples", "folder_samples",
]

# A trained model under this validation Dice is offered with a warning (the bundled one has 0.98).
POOR_DICE = 0.8
# Phantom seeds used for the shipped model; the validation phantoms come from a disjoint block.
TRAIN_SEED_OFFSET = 1_000_000
VAL_SEED_OFFSET = 2_000_000


@dataclass
class TrainingSample:
    """One (image, bone mask) pair. ``pixels_hu`` in HU, ``spacing_mm`` (row, col) in mm."""

    pixels_hu: np.ndarray
    bone_mask: np.ndarray
    spacing_mm: tuple[float, float]
    name: str = ""


@dataclass
class TrainProgress:
    """What the progress callback receives after every step and at the end of every epoch."""

    phase: str  # "data", "train", "validate", "done", "cancelled"
    step: int
    total_steps: int
    epoch: int
    epochs: int
    loss: float = float("nan")
    val_dice: float = float("nan")
    best_val_dice: float = float("nan")
    eta_s: float = float("nan")
    device: str = ""
    message: str = ""


@dataclass
class TrainResult:
    model_path: Path
    best_val_dice: float
    best_epoch: int
    epochs_done: int
    cancelled: bool
    history: list = field(default_factory=list)
    device: str = ""
    elapsed_s: float = float("nan")
    interrupted: bool = False  # cancelled by Ctrl+C or SIGTERM (cancelled is True too)
    interrupted_by: str = ""  # "Ctrl+C" or "SIGTERM" (a batch scheduler's time limit)
    validated_on_training: bool = False  # one pair: trained and validated on
    ended: str = ""  # how the run ended, as the card says
    steps_trained: int = 0  # steps this run trained (a resumed run's earlier steps not counted)


# --------------------------------------------------------------------------------------------
# Data


def _phantom_sample(seed: int, varied: bool) -> TrainingSample:
    from .phantom import make_phantom

    p = make_phantom(seed, max_size_px=560, varied=varied)
    return TrainingSample(p.image_hu, p.bone_mask, p.spacing_mm, f"phantom-{seed}")


# The share of training phantoms drawn varied. All, for the bundled model: a half-and-half mix
# measured the sample finger's joint deposit right, but took more deposit pixels for bone and
# lost more seeds on both independently written generators (docs/validation.md).
VARIED_FRACTION = 1.0


def _is_varied(index: int, fraction: float) -> bool:
    # Spread evenly through the seed block (golden-ratio sequence), for any fraction.
    return (index * 0.6180339887498949) % 1.0 < fraction


def phantom_samples(
    n: int, seed_offset: int = TRAIN_SEED_OFFSET, workers: int | None = None, progress=None,
    varied: float = VARIED_FRACTION,
):
    """``n`` phantoms with seeds ``seed_offset .. seed_offset + n - 1``, made in parallel.

    ``varied`` is the share drawn from the wider distribution (``make_phantom(varied=True)``):
    True or 1 for all, False or 0 for none; the rest are basic phantoms.
    """
    seeds = list(range(seed_offset, seed_offset + n))
    kinds = [_is_varied(i, float(varied)) for i in range(n)]
    workers = workers or min(4, max(1, (__import__("os").cpu_count() or 1)))
    out = []
    if n >= 8 and workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for i, s in enumerate(pool.map(_phantom_sample, seeds, kinds, chunksize=4)):
                out.append(s)
                if progress:
                    progress(i + 1, n)
    else:
        for i, seed in enumerate(seeds):
            out.append(_phantom_sample(seed, kinds[i]))
            if progress:
                progress(i + 1, n)
    return out


_MASK_SUFFIXES = {".png", ".tif", ".tiff"}
_MASK_TAILS = ("_bone", "_mask")
# Labels fill regions of one value, smoothed edges shade from pixel to pixel: a mask's faint
# pixels (under half its brightest) are labels when at least this share of them lie inside a
# 3 x 3 square of their own value. Smoothing with any blur left none there; the 4 x 4 px
# regions of small labels a quarter, a label's 3 x 3 px speck one pixel in nine.
LABEL_REGION_SHARE = 0.1
# A grey mask whose values are all whole numbers up to this is a label image (napari's, ITK-SNAP's
# label IDs): its labels are all bone, however thin (a 2 px cortex labelled 1 around marrow 2 has
# no 3 x 3 square of its own). Smoothed edges shade down from 255, 65535 or 1.0.
MAX_LABEL_ID = 63


def _mask_stem(path: Path) -> tuple[str, bool]:
    """The image stem a mask file belongs to, and whether its name carried ``_bone``/``_mask``."""
    for tail in _MASK_TAILS:
        if path.stem.lower().endswith(tail):  # f12_Bone.png too
            return path.stem[: -len(tail)], True
    return path.stem, False


def _mask_bone(name: str, values: np.ndarray, marked: np.ndarray, what: str, shown, brightness,
               many: str | None = None) -> tuple[np.ndarray, str]:
    """The bone of a mask whose ``marked`` (non-zero) pixels hold ``values`` (a value per pixel:
    a grey level, or a colour packed into one integer; ``shown(v)`` writes one; ``what`` names a
    few of them, ``many`` many, ``what`` again by default), and what to say of it ("" when
    nothing). Values that each fill regions of their own are labels (bone 1, deposits 2:
    napari's or ITK-SNAP's): all are bone, as said. Values that shade from pixel to pixel are
    soft edges (a mask saved anti-aliased or smoothed), or an image or a probability map given
    as a mask: bone is where ``brightness`` is at least half the brightest, which puts a
    smoothed edge back where it was drawn; read as every non-zero pixel, a blur of 1 px widened
    a finger's bone by half."""
    levels = np.unique(values[marked])
    if len(levels) < 2:
        return marked, ""
    lit = brightness.astype(float)
    top = lit[marked].max()
    faint = marked & (lit < 0.5 * top)
    # Judged on the faint pixels, whose reading changes: a smoothed mask's brightest values mix
    # at random inside it (255 and 254 where the blur rounded down), as if they were two labels.
    shading = faint if faint.any() else marked & (lit < top)
    if not shading.any():  # colours all as bright (ITK-SNAP's red, green and blue labels)
        shading = marked
    in_regions = ndi.minimum_filter(values, 3) == ndi.maximum_filter(values, 3)
    label_ids = what == "labels" and levels.max() <= MAX_LABEL_ID and np.array_equal(levels, np.round(levels))
    if len(levels) == 2 or label_ids or np.mean(in_regions[shading]) >= LABEL_REGION_SHARE:
        return marked, (f"mask {name} holds {what} {_listed(map(shown, levels), 6)}: all are taken as bone; if some "
                        "mark deposits or other tissue, save a mask of the bone alone")
    if not faint.any():
        return marked, ""  # edges that shade only near the brightest: every marked pixel is bone either way
    if np.mean(faint[marked]) > 0.5:
        return marked & ~faint, (
            f"mask {name} holds {len(levels)} {many or what}, most of its marked pixels under half the brightest, as an "
            "image, a probability map or a much smoothed mask has them: only the pixels at least half as bright as the "
            "brightest are taken as bone (is it the image rather than its mask?); save the bone as one value on black")
    return marked & ~faint, (
        f"mask {name} has soft edges ({len(levels)} {many or what}, as anti-aliasing or smoothing leaves): bone is "
        "taken where it is at least half as bright as its brightest pixel, not at every non-zero pixel; save masks "
        "without smoothing to set each bone pixel yourself")


def _read_mask(path: Path, say=None) -> np.ndarray:
    """A mask file as bone (True) where any colour channel is non-zero; a mask drawn only in the
    alpha channel of an otherwise black image is read from the alpha. A mask with soft edges
    (grey levels or colours that shade from pixel to pixel) is bone where it is at least half as
    bright as its brightest (:func:`_mask_bone`). ``say`` hears of a mask holding labels (bone
    1, deposits 2: napari's labels; or colours, ITK-SNAP's), all of which are bone here, of soft
    edges, and of grey levels or colours spread as an image's are."""
    import imageio.v3 as iio

    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            if len(tif.pages) > 1:
                raise CalcinosisError(
                    f"mask {path.name} holds {len(tif.pages)} pages; a mask is one 2-D slice: save each "
                    "image's mask on its own"
                )
            page = tif.pages[0]
            mask = _planes_last(np.asarray(page.asarray()), int(page.samplesperpixel), int(page.planarconfig) == 2)
    else:
        mask = np.asarray(iio.imread(path))
    if mask.ndim > 3 or (mask.ndim == 3 and mask.shape[-1] > 4):
        raise CalcinosisError(
            f"mask {path.name} has shape {mask.shape}; a mask is one 2-D slice, in grey or colour"
        )
    if mask.ndim == 3:
        channels = mask.shape[-1]
        colour = mask[..., : 3 if channels >= 3 else 1]
        alpha = mask[..., -1] if channels in (2, 4) else None
        if alpha is not None and not colour.any():  # drawn in the alpha channel alone: its opacity is the mask
            bone, note = _mask_bone(path.name, alpha, alpha > 0, "opacities", lambda v: f"{v:g}", alpha)
        else:
            marked = colour.any(axis=-1)
            if alpha is not None and alpha.min() != alpha.max():
                marked &= alpha > 0  # drawn on a transparent sheet: what is transparent is not drawn
            if colour.shape[-1] == 3:
                bits = 8 * colour.dtype.itemsize  # one integer per colour: np.unique on rows takes seconds
                packed = (colour[..., 0].astype(np.uint64) << (2 * bits)) \
                    | (colour[..., 1].astype(np.uint64) << bits) | colour[..., 2].astype(np.uint64)
                digits = 2 * colour.dtype.itemsize

                def hex_colour(v):
                    return "#" + "".join(f"{(int(v) >> shift) & ((1 << bits) - 1):0{digits}x}"
                                         for shift in (2 * bits, bits, 0))

                bone, note = _mask_bone(path.name, packed, marked, "colours", hex_colour, colour.max(axis=-1))
            else:
                grey = colour[..., 0]
                bone, note = _mask_bone(path.name, grey, marked, "labels", lambda v: f"{v:g}", grey, many="grey levels")
    else:
        bone, note = _mask_bone(path.name, mask, mask > 0, "labels", lambda v: f"{v:g}", mask, many="grey levels")
    if note and say is not None:
        say(note)
    return bone


def _fidelity(path: Path) -> int:
    """Which of two files of one slice to train on: DICOM (HU and its own spacing), then the
    lossless exports, then JPEG (lossy)."""
    suffix = path.suffix.lower()
    return 0 if suffix in _DICOM_SUFFIXES else 2 if suffix in (".jpg", ".jpeg") else 1


def _one_image_a_name(images: list[Path], say) -> list[Path]:
    """One image per name: a mask pairs with its image by name, so f0.dcm and f0.png (an export
    beside its DICOM) would be one slice counted twice. The DICOM is kept (it holds HU and its
    own pixel spacing), else a lossless export before a JPEG; the rest are named in a note."""
    by_stem: dict[str, list[Path]] = {}
    for f in images:
        by_stem.setdefault(_image_stem(f), []).append(f)
    kept, dropped = [], []
    for f in images:
        same = by_stem[_image_stem(f)]
        if len(same) == 1:
            kept.append(f)
            continue
        first = min(same, key=_fidelity)  # min keeps the first by name among equals
        if f == first:
            kept.append(f)
        else:
            dropped.append(f"{f.name} (beside {first.name})")
    if dropped:
        say(f"{len(dropped)} image(s) named like another left out, since one mask serves one name and the "
            f"same slice would count twice (rename them to keep them): {_listed(dropped)}")
    return kept


def folder_samples(images_dir, masks_dir, pixel_size_mm=None, notes=None, *, window_level_hu: float = WINDOW_LEVEL_HU,
                   window_width_hu: float = WINDOW_WIDTH_HU, progress=None) -> list[TrainingSample]:
    """Pair each image with the mask of the same stem (``stem``, ``stem_bone`` or ``stem_mask``).

    Masks are PNG/TIFF files where any non-zero pixel (in any colour channel) is bone; in a mask
    with soft edges (anti-aliased or smoothed), a pixel at least half as bright as the brightest. When the
    masks share the images' folder, a file is a mask when its name less ``_bone``/``_mask`` names
    another file there (a PNG export beside its DICOM is an image, and so is a mask whose image
    is missing). ``pixel_size_mm`` serves images without a spacing of
    their own (exports); a DICOM keeps its own; ``window_level_hu``/``window_width_hu`` are the
    window the exports were made with, as for ``quantify``. Two masks for one image are refused.
    ``notes`` (a callable taking one line) hears what was left out or looks wrong: images without
    a mask, masks without an image, masks with no bone or mostly bone, masks holding several
    labels, JPEG masks, and images whose values or size look wrong (:func:`image_caveats`: an
    export read through another window than the one it was made with, a pixel size in cm).
    ``progress(i, n)`` is called as each of the n paired images is read.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise CalcinosisError(f"training folder not found: {d}")
    say = notes or (lambda line: None)
    same = images_dir.resolve() == masks_dir.resolve()
    def files(folder):
        return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))

    in_images = files(images_dir)
    # JPEG masks are not read (JPEG blurs a mask's edges into grey) but named: in the masks
    # folder every JPEG, in a shared folder one whose name less _bone/_mask names another file
    all_stems = {_image_stem(f) for f in in_images}
    jpeg_masks = [f for f in (in_images if same else files(masks_dir)) if f.suffix.lower() in (".jpg", ".jpeg")
                  and (not same or (_mask_stem(f)[1] and _mask_stem(f)[0] in all_stems))]
    if jpeg_masks:
        say(f"{len(jpeg_masks)} JPEG mask(s) left out (JPEG blurs a mask's edges into grey; save masks as PNG "
            f"or TIFF): {_listed(f.name for f in jpeg_masks)}")
    # quantify --masks writes <image>_lesions.tif beside <image>_bone.png: deposits, not masks
    candidates = [m for m in (in_images if same else files(masks_dir))
                  if m.suffix.lower() in _MASK_SUFFIXES and not m.stem.endswith("_lesions")]
    if same:
        # In one folder a file is a mask when, less _bone/_mask, it names another file there
        # (hand_bone_mask.png for hand_bone.png); the rest are images.
        stems = {_image_stem(f) for f in in_images}
        candidates = [m for m, (stem, tailed) in ((m, _mask_stem(m)) for m in candidates) if tailed and stem in stems]
    taken = set(candidates) | set(jpeg_masks)
    if not same:  # a mask saved as DICOM, BMP, ...: named, not passed over without a word
        other = [m for m in files(masks_dir) if m not in taken and m.suffix.lower() not in _MASK_SUFFIXES
                 and _mask_stem(m)[0] in all_stems]
        if other:
            say(f"{len(other)} file(s) in {masks_dir} named like an image's mask but not PNG or TIFF left out (save "
                f"masks as PNG or TIFF): {_listed(f.name for f in other)}")
    images = _one_image_a_name(
        [f for f in in_images if f not in taken and _is_image_file(f)], say)
    image_stems = {_image_stem(f) for f in images}  # a UID's last number is no suffix
    masks: dict[str, list[Path]] = {}
    for m in candidates:
        # A mask named exactly like an image (hand_bone.png for hand_bone.dcm) is that image's;
        # otherwise its name less _bone/_mask says whose.
        stem = m.stem if m.stem in image_stems and not same else _mask_stem(m)[0]
        masks.setdefault(stem, []).append(m)
    # Names typed by hand differ in case (F10_bone.png for f10.dcm): a mask with no image of its
    # exact name pairs with the one image whose name differs only in case, if that has no mask.
    by_lower: dict[str, list[str]] = {}
    for image_stem in image_stems:
        by_lower.setdefault(image_stem.lower(), []).append(image_stem)
    for stem in [s for s in masks if s not in image_stems]:
        alike = by_lower.get(stem.lower(), [])
        if len(alike) == 1 and alike[0] not in masks:
            masks[alike[0]] = masks.pop(stem)
            say(f"{masks[alike[0]][0].name} paired with the image {alike[0]} (the names differ only in case)")
    for stem, found in masks.items():
        if len(found) > 1:
            raise CalcinosisError(
                f"{len(found)} masks for the image {stem}: {', '.join(m.name for m in found)}; keep one"
            )
    unmasked = [f.name for f in images if _image_stem(f) not in masks]
    if unmasked:
        say(f"{len(unmasked)} image(s) without a mask left out: {_listed(unmasked)}")
    orphans = [found[0].name for stem, found in masks.items() if stem not in image_stems]
    if orphans:
        say(f"{len(orphans)} mask(s) without an image of their name left out: {_listed(orphans)}")
    samples = []
    paired = [f for f in images if _image_stem(f) in masks]
    for i, f in enumerate(paired, start=1):
        if progress is not None:
            progress(i, len(paired))
        mask_path = masks[_image_stem(f)][0]
        image = read_image(f, pixel_size_mm=pixel_size_mm, prefer_file_spacing=True,
                           window_level_hu=window_level_hu, window_width_hu=window_width_hu)
        check_size(image)  # a pixel size in cm, a thumbnail: said now, naming it, not after an epoch
        for caveat in image_caveats(image):
            say(f"{f.name}: {caveat}")
        mask = _read_mask(mask_path, say)
        if mask.shape != image.shape:
            raise CalcinosisError(
                f"mask {mask_path.name} is {mask.shape[1]}x{mask.shape[0]} px but image {f.name} is "
                f"{image.shape[1]}x{image.shape[0]} px: masks must match their image pixel for pixel"
            )
        share = float(mask.mean())
        if share == 0.0:
            say(f"mask {mask_path.name} marks no bone: {f.name} teaches the network that it holds none")
        elif share > MAX_BONE_SHARE:
            say(f"mask {mask_path.name} marks {share:.0%} of {f.name} as bone: is it inverted (bone must be non-zero)?")
        samples.append(TrainingSample(image.pixels_hu, mask, image.spacing_mm, f.name))
    subfolders = sorted(d.name for d in images_dir.iterdir()  # the masks folder inside it aside
                        if d.is_dir() and not d.name.startswith(".") and d.resolve() != masks_dir.resolve())
    if not samples:
        below = (f"; its subfolders ({_listed(subfolders, 3)}) are not searched: give a folder that holds "
                 "the images, with its masks folder (quantify --masks mirrors a study's folders: --images "
                 "T/P01/baseline --masks DIR/T/P01/baseline)") if subfolders else ""
        expected = ("in one folder, a mask is named after its image with _bone or _mask: finger01.dcm with "
                    "finger01_bone.png" if same else "expected e.g. finger01.dcm with finger01.png or finger01_bone.png")
        raise CalcinosisError(
            f"no image in {images_dir} has a mask of the same name in {masks_dir} ({expected}){below}"
        )
    if subfolders:
        say(f"the subfolders of {images_dir} are not searched ({_listed(subfolders, 3)}): only the images directly in "
            "it are trained on")
    return samples


def _fingerprint(samples) -> str:
    """A short checksum of the pairs' pixels, masks and spacings, in their order."""
    import zlib

    crc = 0
    for sample in samples:
        for array in (np.asarray(sample.pixels_hu, np.float32), np.packbits(np.asarray(sample.bone_mask, bool)),
                      np.asarray(sample.spacing_mm, np.float64)):
            crc = zlib.crc32(np.ascontiguousarray(array).tobytes(), crc)
    return f"{crc:08x}"


def _as_sample(item, number: int = 1, what: str = "training pair") -> TrainingSample:
    """A TrainingSample of one given pair, the ``number``-th (from 1) of its list (``what``);
    a mask not the shape of its image is refused, as :func:`folder_samples` refuses it."""
    if isinstance(item, TrainingSample):
        sample = item
    else:
        image, mask = item[0], item[1]
        if isinstance(image, CalcinosisImage):
            sample = TrainingSample(image.pixels_hu, np.asarray(mask, bool), image.spacing_mm, image.name)
        else:
            spacing = item[2] if len(item) > 2 else None
            if spacing is None:
                raise CalcinosisError(
                    "a training pair given as arrays needs its pixel spacing: (image_hu, bone_mask, spacing_mm)")
            spacing = tuple(np.broadcast_to(np.asarray(spacing, float), (2,)))
            sample = TrainingSample(np.asarray(image, np.float32), np.asarray(mask, bool), spacing)
    # Trained on, a mask of another shape would teach bone where the image has none.
    image_shape, mask_shape = np.shape(sample.pixels_hu), np.shape(sample.bone_mask)
    if image_shape != mask_shape:
        def size(shape):
            return f"{shape[1]}x{shape[0]} px" if len(shape) == 2 else f"of shape {shape}"

        named = f" ({sample.name})" if sample.name else ""
        raise CalcinosisError(
            f"{what} {number}{named}: the mask is {size(mask_shape)} but the image is {size(image_shape)}; masks "
            "must match their image pixel for pixel: give each image its own mask"
        )
    return sample


# --------------------------------------------------------------------------------------------
# Augmentation


def augment(sample: TrainingSample, rng: np.random.Generator, crop_px: int, input_spec: dict):
    """One random training crop at the working spacing: (network input, bone target), float32."""
    hu, mask = sample.pixels_hu, sample.bone_mask
    spacing = np.asarray(sample.spacing_mm, float)
    # Scale +-25 % around the working spacing: scanners and reformats differ in pixel size
    # and fingers in size.
    out_px_mm = input_spec["working_spacing_mm"] * float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    theta = rng.uniform(0, 2 * np.pi)  # any rotation, not only the paper's three
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    flip = np.diag([1.0 if rng.random() < 0.5 else -1.0, 1.0])
    matrix = np.diag(1.0 / spacing) @ rot @ flip * out_px_mm
    # Centre the crop on bone most of the time, anywhere otherwise (backgrounds, fingertips).
    if rng.random() < 0.7 and mask.any():
        idx = np.flatnonzero(mask)
        centre_in = np.array(np.unravel_index(idx[rng.integers(idx.size)], mask.shape), float)
    else:
        centre_in = rng.uniform([0, 0], np.array(mask.shape) - 1)
    centre_in += rng.normal(0, 10, 2)
    centre_out = np.array([crop_px, crop_px]) / 2.0 - 0.5
    offset = centre_in - matrix @ centre_out

    # Intensity, in HU before the window: gain and offset (calibration), extra noise.
    gain = rng.uniform(0.85, 1.15)
    hu_aug = hu * gain + rng.uniform(-50, 50)
    x = ndi.affine_transform(hu_aug, matrix, offset=offset, output_shape=(crop_px, crop_px), order=1, mode="reflect")
    y = ndi.affine_transform(mask.astype(np.float32), matrix, offset=offset, output_shape=(crop_px, crop_px), order=1, mode="reflect")
    if rng.random() < 0.3:
        x = ndi.gaussian_filter(x, rng.uniform(0.3, 1.0))
    if rng.random() < 0.6:
        x = x + rng.normal(0, rng.uniform(5, 40), x.shape).astype(np.float32)
    unit = (normalise(x, input_spec) + 1.0) / 2.0
    if rng.random() < 0.3:
        unit = unit ** float(np.exp(rng.uniform(-0.25, 0.25)))
    if rng.random() < 0.3:  # a JPEG/PNG export: 8-bit steps through the window
        unit = np.round(unit * 255.0) / 255.0
    return (unit * 2.0 - 1.0).astype(np.float32), (y > 0.5).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Training


def refuse_folder(out, what: str = "the output") -> None:
    """Refuse an output for a model that names a folder (``.``, ``models/``, an existing folder):
    ``..`` would train, then fail to save over the folder, losing the model."""
    text = os.fspath(out)
    if text.endswith(("/", os.sep)) or Path(text).name in ("", ".", "..") or Path(text).is_dir():
        raise CalcinosisError(f"{what} {text!r} is a folder: give the model's file name, e.g. "
                              f"{Path(text) / 'phalanx_mine.safetensors'} (its card and checkpoint go beside it)")


def _checkpoint_path(out: Path) -> Path:
    return out.with_name(out.stem + ".checkpoint.pt")


# What a resumed run must share with the run that wrote the checkpoint (the number of epochs may
# grow), with the CLI option that sets each.
_RESUME_SETTINGS = {
    "data": "the training data", "n_val": "the validation images (--val-phantoms)",
    "architecture": "the architecture (--init)", "steps_per_epoch": "the steps per epoch (--steps-per-epoch)",
    "batch_size": "the batch size (--batch-size)", "crop_px": "the crop (--crop-px)",
    "learning_rate": "the learning rate (--lr)", "seed": "the seed (--seed)",
}


class ResumeRefused(CalcinosisError):
    """A run that cannot be resumed. ``reason`` says why; the message adds what to do from the
    command line, and the Train widget its own. ``kind``: ``"checkpoint"`` (none, unreadable or
    of another network), ``"settings"`` (other data or settings) or ``"epochs"`` (no epoch left)."""

    def __init__(self, reason: str, kind: str = "checkpoint", advice: str = "run without --resume to start afresh"):
        super().__init__(f"{reason}; {advice}")
        self.reason, self.kind = reason, kind


def _read_checkpoint(ckpt_path: Path, device, settings: dict, epochs: int) -> dict:
    """The checkpoint beside the model, checked against this run's settings."""
    import torch

    try:
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        if not isinstance(ckpt, dict) or not {"network", "optimizer", "rng", "epoch", "step"} <= set(ckpt):
            raise ValueError("not a napari-calcinosis training checkpoint")
    except Exception as exc:  # not a checkpoint of ours, or damaged outside this program
        raise ResumeRefused(f"cannot resume: the checkpoint {ckpt_path} is unreadable ({_one_line(exc)[:120]})") from exc
    saved = dict(ckpt.get("settings", {}))
    if "; contents " not in str(saved.get("data", "")) and "; contents " in str(settings["data"]):
        # written before the data key carried the pixels' checksum: compared without it
        saved["data"] = str(saved.get("data", "")) + settings["data"][settings["data"].index("; contents "):]
    differ = [k for k in _RESUME_SETTINGS if k in saved and saved[k] != settings[k]]
    if differ:
        detail = "; ".join(f"{_RESUME_SETTINGS[k]}: {saved[k]!r} there, {settings[k]!r} now" for k in differ)
        raise ResumeRefused(
            f"cannot resume: the checkpoint {ckpt_path} comes from a run with other settings ({detail})", "settings",
            "resume with the same settings, or run without --resume to start afresh")
    if ckpt["epoch"] >= epochs:
        raise ResumeRefused(f"nothing to resume: the checkpoint has already done {ckpt['epoch']} of {epochs} epochs",
                            "epochs", "ask for more epochs (--epochs)")
    return ckpt


# On CUDA, short runs route the 1 x 1 and depthwise layers around cuDNN (see _cuda_convs):
# cuDNN's per-shape plans cost about 10 s before the first step on an H200, while the plan-free
# layers cost about 4.4 ns more per training pixel in bfloat16 and 3.9 ns in float16
# (benchmarks/gpu_startup.py, gpu_throughput_probe.py). Below this many training pixels
# (steps x batch x crop²) the plan-free layers win: 200 steps of 64 x 256² are 0.8e9 and gain
# about 7 s; the paper's 1,000 steps of 60 x 512² are 15.7e9 and would lose about 60 s.
PLAN_FREE_MAX_PIXELS = 2e9
# "auto" (the rule above), True or False; benchmarks set it to compare the two.
PLAN_FREE_CONVS = "auto"
# A long run (all on cuDNN) validates with its 1 x 1 and depthwise layers off cuDNN when it
# validates at most this many times. That spares cuDNN's plans for validation's shape, once (in
# the paper's workload on an H200 the first validation took 1.2-2.5 s longer than the later
# ones), but each validation then runs the slower plan-free layers: by the 4 ns per training
# pixel above (forward and backward), a few ms for 8 validation images. An estimate until a GPU
# times both; a run validating every epoch for hundreds of epochs keeps cuDNN's layers.
PLAN_FREE_VALIDATION_MAX = 200
# cuDNN's autotuner times every algorithm for each new convolution shape: a stall of seconds at
# the start (which the 10 s target rules out), perhaps faster steps after. Off (None) until it is
# measured to pay off; a number turns it on for CUDA runs of at least that many training pixels
# (steps x batch x crop²), as for PLAN_FREE_MAX_PIXELS. Benchmarks set it.
CUDNN_AUTOTUNE_MIN_PIXELS = None
# With the autotuner on, how many of cuDNN's candidate kernels it times per convolution (its
# heuristics' best first); None keeps PyTorch's own limit. Fewer candidates, a shorter stall.
CUDNN_AUTOTUNE_LIMIT = None
# Which layers the autotuner times: "all" (cuDNN's global flag) or "dense", only the dense
# k x k layers (ten of the U-Net's 61; _cuda_convs.autotune_dense_convs), a far shorter stall.
CUDNN_AUTOTUNE_LAYERS = "all"
# In a long CUDA run (all on cuDNN), run the dense layers that read or write a single channel
# (the U-Net's first and last, both at full resolution) with their channels padded to 8 with
# zeros (_cuda_convs.pad_thin_convs): cuDNN's kernels for one channel are unaligned and slow.
# On an H200 (2026-11-27) a float16 512² step at batch 60, decoder joins written directly, went
# from 857 to 933 images/s. The short plan-free runs keep the plain layers: with padding, the
# 256² run to Dice 0.98 was no faster per step (steps 10-110: 5.4 s, against 5.2 s without it
# in the session before). Float32 runs (GPUs before Ampere) keep the plain layers too: padding
# was never measured there.
# Benchmarks turn it off to compare.
CUDA_PAD_THIN_CONVS = True
# In a long CUDA run in half precision, each batch norm and the ReLU or ReLU6 after it run as
# one layer on Triton kernels (_cuda_batchnorm): two passes over the activations forward and two
# backward instead of cuDNN's batch norm and PyTorch's activation one after the other (about 25
# of the 64 ms of GPU time in a float16 step at batch 60 on an H200). True fuses all the
# U-Net's batch norms (those without an activation run on the kernels too), "activated" only
# those with one, False none. Off until a GPU has timed it; benchmarks set it. Where the
# kernels do not compile or do not agree with PyTorch's layers on a check (no Triton, as in a
# napari process drawn with Mesa's OpenGL; a GPU before Ampere), the run keeps PyTorch's
# layers and its model card says why.
CUDA_FUSE_BATCHNORM = False


def _long_half_precision_cuda_run(dev, plan_free: bool, amp_dtype) -> bool:
    """A CUDA run in half precision, long enough to run all on cuDNN (not plan-free): where the
    padded layers and the fused batch norm were built for (float32, on GPUs before Ampere, was
    never measured with either; short runs would wait for the kernels' compilation)."""
    return dev.type == "cuda" and not plan_free and amp_dtype is not None


def _fuses_batchnorm(dev, plan_free: bool, amp_dtype) -> bool:
    """Whether a run wants its batch norms fused (CUDA_FUSE_BATCHNORM), in a long half-precision
    CUDA run."""
    if CUDA_FUSE_BATCHNORM not in (False, True, "activated"):
        raise ValueError(f'CUDA_FUSE_BATCHNORM must be False, True or "activated", not {CUDA_FUSE_BATCHNORM!r}')
    return _long_half_precision_cuda_run(dev, plan_free, amp_dtype) and CUDA_FUSE_BATCHNORM is not False


def _pads_thin_convs(dev, plan_free: bool, amp_dtype) -> bool:
    """Whether a run pads its one-channel layers (CUDA_PAD_THIN_CONVS), in a long half-precision
    CUDA run, whose channels-last kernels want channels in eights."""
    return _long_half_precision_cuda_run(dev, plan_free, amp_dtype) and bool(CUDA_PAD_THIN_CONVS)


def prepare_cuda_training(device: str = "auto") -> str | None:
    """Before Train is pressed: what a long run on ``device`` checks before its first step and
    can check now, in a background thread (the Train widget's warm-up). Today that is the fused
    batch norm's kernels (compiled and compared with PyTorch's layers, seconds on a machine's
    first run), when CUDA_FUSE_BATCHNORM asks for them. Returns why they would not be used, or
    None; the run asks again and gets the same answer at once."""
    from .segment import select_device

    dev = select_device(device)
    return _batchnorm_fusion(dev, False, _training_dtype(dev))[1]


def _batchnorm_fusion(dev, plan_free: bool, amp_dtype) -> tuple[bool, str | None]:
    """Whether a run fuses its batch norms, and why not where it wanted to: it wants to
    (:func:`_fuses_batchnorm`) and the kernels pass their check on the device
    (``_cuda_batchnorm.kernels_work``, which compiles them: seconds the first time, then from
    Triton's cache; once per device and dtype in a process)."""
    if not _fuses_batchnorm(dev, plan_free, amp_dtype):
        return False, None
    from ._cuda_batchnorm import kernels_work

    why_not = kernels_work(dev, amp_dtype)
    return why_not is None, why_not


def _validates_plan_free(dev, plan_free: bool, on_device: bool, epochs: int, val_every: int) -> bool:
    """Whether a run validates (on the device) with its 1 x 1 and depthwise layers off cuDNN:
    a CUDA run all on cuDNN that validates at most PLAN_FREE_VALIDATION_MAX times."""
    return (dev.type == "cuda" and not plan_free and on_device
            and math.ceil(epochs / int(val_every)) <= PLAN_FREE_VALIDATION_MAX)


def _plan_free(total_steps: int, batch_size: int, crop_px: int) -> bool:
    if PLAN_FREE_CONVS != "auto":
        return bool(PLAN_FREE_CONVS)
    return total_steps * batch_size * crop_px**2 < PLAN_FREE_MAX_PIXELS


# CUDA training's mixed precision: float16 with a gradient scaler rather than bfloat16. PyTorch
# runs float16 batch norm on cuDNN's channels-last kernels but bfloat16 batch norm on its own,
# slower ones, and batch norm was about a third of a 512² training step's GPU time in bfloat16
# (benchmarks/results-h200-startup.json). "bfloat16" is the other choice; benchmarks set it.
CUDA_TRAINING_DTYPE = "float16"
_PRECISION = {
    "float16": "float16 autocast with gradient scaling, channels-last",
    "bfloat16": "bfloat16 autocast, channels-last",
    None: "float32",
}


def _training_dtype(dev):
    """The autocast dtype of training on ``dev`` (a ``torch.dtype``), or None for float32.

    On CUDA GPUs of Ampere and later, :data:`CUDA_TRAINING_DTYPE`; older ones (V100, T4) stay
    in float32, as they always have here (untested in mixed precision). On CPUs with bfloat16
    instructions (AVX512-BF16, AMX), bfloat16: a training step of the U-Net takes less than half
    the time of float32; without them bfloat16 is emulated and slower, so float32 stays.
    """
    import torch

    if dev.type == "cuda":
        from .segment import cuda_bf16

        if not cuda_bf16(dev):
            return None
        return {"float16": torch.float16, "bfloat16": torch.bfloat16}[CUDA_TRAINING_DTYPE]
    if dev.type != "cpu":
        return None
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return torch.bfloat16 if any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes) else None
    except Exception:  # a private probe changed: float32 is always right
        return None


def _precision_name(dtype) -> str | None:
    return None if dtype is None else str(dtype).removeprefix("torch.")


def _grad_scaler(dev, dtype):
    """A gradient scaler for float16 training (its small gradients would round to zero), else None."""
    import torch

    if dtype != torch.float16:
        return None
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(dev.type)
    return torch.cuda.amp.GradScaler()  # torch < 2.3, where float16 means CUDA


def _training_step(net, opt, scaler, x, loss_fn, dtype):
    """Forward, loss, backward and optimiser step; returns the loss (a tensor, not read)."""
    import torch

    if dtype is not None:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=dtype):
            logits = net(x)
        logits = logits.float()
    else:
        logits = net(x)
    loss = loss_fn(logits)
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:  # a step whose gradients overflowed is skipped and the scale halved
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return loss


def check_schedule(epochs, batch_size, learning_rate, crop_px, steps_per_epoch=None, checkpoint_every_s=0.0) -> None:
    """Refuse a training schedule that cannot run, saying which setting to change."""
    for what, value in (("epochs", epochs), ("the batch size", batch_size), ("steps per epoch", steps_per_epoch)):
        if value is not None and (not float(value).is_integer() or value < 1):
            raise CalcinosisError(f"{what} must be a whole number of at least 1, got {value}")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise CalcinosisError(f"the learning rate must be a positive number, got {learning_rate}")
    # The U-Net halves the crop four times: it must be a multiple of 16 px.
    if crop_px < 32 or crop_px % 16:
        raise CalcinosisError(f"crop size {crop_px} px must be a multiple of 16, at least 32 (e.g. {max(32, int(crop_px) // 16 * 16)})")
    if not checkpoint_every_s >= 0:
        raise CalcinosisError(f"the checkpoint interval must be 0 s or more, got {checkpoint_every_s}")


def evaluate(model: PhalanxModel, samples: Sequence[TrainingSample], tta: bool = False) -> list[float]:
    """Per-image bone Dice of ``model`` on ``samples``, through the same path users run."""
    return [
        dice(segment_phalanges(s.pixels_hu, model, spacing_mm=s.spacing_mm, device=str(model.device), tta=tta).bone_mask, s.bone_mask)
        for s in samples
    ]


def train_segmenter(
    out,
    *,
    samples: Sequence | None = None,
    images_dir=None,
    masks_dir=None,
    pixel_size_mm=None,
    n_phantoms: int | None = None,
    val_samples: Sequence | None = None,
    n_val: int | None = None,
    epochs: int = 50,
    batch_size: int = 8,
    learning_rate: float = 2e-3,
    crop_px: int = 192,
    steps_per_epoch: int | None = None,
    device: str = "auto",
    resume: bool = False,
    init_model=None,
    val_every: int = 1,
    stop_at_val_dice: float | None = None,
    augment_on: str = "auto",
    seed: int = 0,
    progress: Callable[[TrainProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    command: str = "",
    checkpoint_every_s: float = 30.0,
    window_level_hu: float = WINDOW_LEVEL_HU,
    window_width_hu: float = WINDOW_WIDTH_HU,
) -> TrainResult:
    """Train (or fine-tune) the phalanx U-Net and save the best model.

    Give the training data one way: ``samples`` (TrainingSample or (image, bone_mask[,
    spacing_mm]) pairs, e.g. from napari layers), ``images_dir`` + ``masks_dir``, or
    ``n_phantoms`` synthetic phantoms.

    Parameters
    ----------
    out : str or Path
        Where the best weights go (``.safetensors``); the card is written beside it as
        ``.json`` and the per-epoch checkpoint as ``.checkpoint.pt``.
    val_samples, n_val : optional
        Validation data; by default 20 % of the given pairs (at least one), or ``n_val``
        phantoms from a seed block disjoint from the training phantoms.
    epochs, batch_size, learning_rate, crop_px : training schedule; crops are ``crop_px``
        square at the working pixel spacing (0.25 mm: 192 px = 48 mm).
    steps_per_epoch : int, optional
        Default: one pass over the training images (at least 4 steps).
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``. On CUDA GPUs
        of Ampere and later training runs in float16 autocast with gradient scaling, and on
        CPUs with bfloat16 instructions (AVX512-BF16, AMX) in bfloat16 autocast, both with
        channels-last tensors.
    resume : bool
        Carry on from the checkpoint beside ``out``, at the step where it was written. The run
        must have the same data and settings (more ``epochs`` are allowed).
    init_model : PhalanxModel or path, optional
        Fine-tune from these weights instead of starting from scratch (e.g. the bundled model).
    val_every : int
        Validate (and keep the best weights) every this many epochs and after the last.
    stop_at_val_dice : float, optional
        Stop as soon as the validation Dice reaches this value (e.g. 0.98).
    augment_on : str
        ``"auto"``: on a CUDA device the images are copied to the GPU once and augmented there
        in batches (:mod:`napari_calcinosis._augment_torch`); elsewhere each crop is made with
        NumPy/SciPy. ``"device"`` or ``"cpu"`` forces one of the two.
    progress : callable, optional
        Called with a :class:`TrainProgress` after each step and each validation.
    should_cancel : callable, optional
        Polled before each step; when it returns True training stops after validating the
        steps done so far: the best model is kept and a checkpoint written to resume from.
    checkpoint_every_s : float
        Within an epoch, also write the checkpoint after a step when this many seconds have
        passed since the last one (0: after every step).
    window_level_hu, window_width_hu : float
        The window PNG/JPEG/TIFF exports in ``images_dir`` were made with (default the paper's
        W1500/L450), as for ``quantify``.

    A fine-tuned model (``init_model``) is first validated as it is: the run keeps it (epoch 0)
    unless training does better on the validation images. Ctrl+C (in the main thread) stops like
    ``should_cancel``, after the step under way; a second Ctrl+C stops at once.

    Returns
    -------
    TrainResult
    """
    import torch

    t_start = time.monotonic()
    check_schedule(epochs, batch_size, learning_rate, crop_px, steps_per_epoch, checkpoint_every_s)
    # Plain Python numbers from here on: NumPy scalars (a sweep over np.linspace, say) would
    # make the checkpoint unreadable under torch.load(weights_only=True) and break range().
    epochs, batch_size, crop_px, seed = int(epochs), int(batch_size), int(crop_px), int(seed)
    steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
    learning_rate, checkpoint_every_s = float(learning_rate), float(checkpoint_every_s)
    if not float(val_every).is_integer() or val_every < 1:
        raise CalcinosisError(f"validate every N epochs needs a whole N of at least 1, got {val_every}")
    if augment_on not in ("auto", "device", "cpu"):
        raise CalcinosisError(f"augment_on must be auto, device or cpu, got {augment_on!r}")
    refuse_folder(out)
    out = model_file(out)
    # The output's folder is made when training starts, not before the data are read: a run
    # refused on its data (or failing before it saves anything) leaves no empty folder behind.
    missing_folders = [d for d in (out.parent, *out.parent.parents) if not d.exists()]  # deepest first
    nearest = out.parent.absolute()
    while not nearest.exists():
        nearest = nearest.parent
    if not nearest.is_dir():  # said now, as the folder's making would have said it, not after the data are read
        raise CalcinosisError(f"the output {out} lies under {nearest}, which is a file: choose a folder for the model")
    ckpt_path = _checkpoint_path(out)
    if resume and not ckpt_path.exists():
        raise ResumeRefused(f"cannot resume: no checkpoint at {ckpt_path}")
    for written in (out, out.with_suffix(".json"), ckpt_path):
        remove_stale_temporaries(written)  # half-written files of a run that was killed
    dev = select_device(device)
    report = progress or (lambda p: None)
    asked_to_cancel = should_cancel or (lambda: False)

    def data_progress(i, n):
        report(TrainProgress("data", 0, 0, 0, epochs, device=str(dev), message=f"preparing images {i}/{n}"))

    # ---- data
    if samples is not None:
        train = [_as_sample(s, i) for i, s in enumerate(samples, start=1)]
        data_desc = data_key = f"{len(train)} image/mask pairs given in memory"
    elif images_dir is not None or masks_dir is not None:
        if images_dir is None or masks_dir is None:
            raise CalcinosisError("training from folders needs both an images folder and a masks folder")
        left_out = []

        def data_note(line):
            left_out.append(line)
            report(TrainProgress("data", 0, 0, 0, epochs, device=str(dev), message=f"note: {line}"))

        train = folder_samples(images_dir, masks_dir, pixel_size_mm, notes=data_note,
                               window_level_hu=window_level_hu, window_width_hu=window_width_hu,
                               progress=lambda i, n: report(TrainProgress(
                                   "data", 0, 0, 0, epochs, device=str(dev), message=f"reading images {i}/{n}")))
        # The notes name files (left out, paired by case, looking wrong), and a PACS's file names may
        # identify patients: they were shown as the run read them; the card, which travels with
        # the model, counts them.
        # The folders resolved: a card travels, and a relative path says nothing elsewhere.
        data_desc = f"{len(train)} image/mask pairs from {Path(images_dir).resolve()} and {Path(masks_dir).resolve()}" + (
            f" ({len(left_out)} note(s) on them shown when they were read, not kept here since they name files)"
            if left_out else "")
        data_key = f"{len(train)} image/mask pairs from {Path(images_dir).resolve()} and {Path(masks_dir).resolve()}"
    elif n_phantoms:
        train = phantom_samples(int(n_phantoms), TRAIN_SEED_OFFSET, progress=data_progress)
        data_desc = data_key = (
            f"{n_phantoms} synthetic finger phantoms (napari_calcinosis.phantom.make_phantom, "
            f"{VARIED_FRACTION:.0%} of them varied=True; seeds {TRAIN_SEED_OFFSET}..{TRAIN_SEED_OFFSET + int(n_phantoms) - 1})"
        )
    else:
        raise CalcinosisError("no training data: give image/mask folders, layers, or a number of phantoms")
    given = samples is not None or images_dir is not None  # the user's images, not phantoms
    if given:
        # Resuming needs the same pixels, not only as many pairs from the same folders: a mask
        # corrected in between is another run.
        data_key += f"; contents {_fingerprint(train)}"
    if val_samples is not None:
        val = [_as_sample(s, i, "validation pair") for i, s in enumerate(val_samples, start=1)]
    elif n_phantoms and samples is None and images_dir is None:
        val = phantom_samples(int(n_val or max(4, int(n_phantoms) // 10)), VAL_SEED_OFFSET, progress=data_progress)
    else:
        rng_split = np.random.default_rng(seed)
        order = rng_split.permutation(len(train))
        n_hold = max(1, int(round(0.2 * len(train)))) if len(train) > 1 else 0
        val = [train[i] for i in order[:n_hold]]
        train = [train[i] for i in order[n_hold:]] or train
    validated_on_training = not val
    if validated_on_training:
        val = train  # a single pair: validate on it rather than not at all
    for sample in (*train, *val):  # layers, arrays and folders alike: a pixel size in cm said before any step
        check_field_of_view(np.shape(sample.pixels_hu), sample.spacing_mm, f"{sample.name}: " if sample.name else "")
    # The validation images' checksum, for --resume and for the card (not their names).
    val_contents = _fingerprint(val) if given or val_samples is not None else None
    if val_samples is not None:
        data_key += f"; validation contents {val_contents}"

    # ---- model, optimiser, schedule
    torch.manual_seed(seed)  # before the network is built: the seed decides its initial weights too
    if init_model is not None:
        from .segment import load_model

        model = init_model if isinstance(init_model, PhalanxModel) else load_model(init_model)
        # The new model keeps the network and its input, not the results measured on the model
        # it started from (its test and validation figures are not the new model's); the card
        # says where it started.
        in_memory = isinstance(init_model, PhalanxModel) and model.path is None
        started_from = {"name": model.card.get("name", ""),
                        "file": "a model given in memory" if in_memory else str(model.path or init_model),
                        # which weights, whatever the file holds later (rows name them the same way)
                        "sha256": getattr(model, "sha256", None) or "",
                        "trained_on": (model.card.get("training") or {}).get("data", "")}
        # A copy: the caller's model (one in use in the viewer, say) is not trained in place.
        model = PhalanxModel(copy.deepcopy(model.network).cpu(),
                             {k: v for k, v in model.card.items() if k in ("architecture", "input", "task")}, None)
    else:
        started_from = None
        model = new_model()
    net = model.to(dev).network  # on CUDA with the plan-free 1 x 1 and depthwise layers
    amp_dtype = _training_dtype(dev)
    if amp_dtype is not None:
        net = net.to(memory_format=torch.channels_last)
    steps_per_epoch = int(steps_per_epoch or max(4, math.ceil(len(train) / batch_size)))
    total_steps = epochs * steps_per_epoch
    plan_free = dev.type == "cuda" and _plan_free(total_steps, batch_size, crop_px)
    if dev.type == "cuda" and not plan_free:
        from ._cuda_convs import restore_convs

        restore_convs(net)  # a long run: cuDNN's faster steps outweigh its start-up
    # The fused AdamW is one kernel for all weights instead of several per weight tensor.
    opt = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-4, fused=dev.type == "cuda")
    scaler = _grad_scaler(dev, amp_dtype)

    def lr_at(step_index: int) -> float:
        # Warm-up then cosine decay, a pure function of the step so that a resumed run with
        # more epochs simply stretches the schedule.
        warm = max(1, int(0.05 * total_steps))
        if step_index < warm:
            return learning_rate * (step_index + 1) / warm
        frac = min(1.0, (step_index - warm) / max(1, total_steps - warm))
        return learning_rate * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * frac)))
    rng = np.random.default_rng(seed)
    settings = {
        "data": data_key, "n_val": len(val), "architecture": model.card.get("architecture"),
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size, "crop_px": crop_px, "learning_rate": learning_rate, "seed": seed,
    }
    start_epoch, step, best_dice, best_epoch, history, epoch_losses = 0, 0, -1.0, -1, [], []
    elapsed_before = 0.0  # seconds of training before a resume, so that elapsed_s carries on
    if resume:
        ckpt = _read_checkpoint(ckpt_path, dev, settings, epochs)
        # The weights come from the checkpoint: the run it carries on says where it started. A
        # model given to start from is refused unless it is that one (else the card would lie).
        began = ckpt.get("fine_tuned_from")
        # a model in memory has no checksum to compare: refused too, rather than taken on trust
        if started_from is not None and (not started_from["sha256"]
                                         or (began or {}).get("sha256") != started_from["sha256"]):
            raise ResumeRefused(
                f"cannot resume from {started_from['file']}: the run in {ckpt_path} started from "
                + (f"{began['file']} (sha256 {str(began.get('sha256'))[:12]})" if began else "random weights (no --init)"),
                kind="settings", advice="leave --init out to carry that run on, or run without --resume to start afresh "
                "from the model given")
        started_from = began
        try:
            net.load_state_dict(ckpt["network"])
            opt.load_state_dict(ckpt["optimizer"])
            for group in opt.param_groups:  # the fused kernel exists on CUDA only: a checkpoint may move
                group["fused"] = dev.type == "cuda"
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ResumeRefused(f"cannot resume: the checkpoint {ckpt_path} holds another network") from exc
        if scaler is not None and ckpt.get("grad_scaler"):
            scaler.load_state_dict(ckpt["grad_scaler"])
        rng.bit_generator.state = ckpt["rng"]
        start_epoch, step = ckpt["epoch"], ckpt["step"]
        best_dice, best_epoch, history = ckpt["best_val_dice"], ckpt["best_epoch"], ckpt["history"]
        epoch_losses = list(ckpt.get("epoch_losses", []))
        elapsed_before = float(ckpt.get("elapsed_s", 0.0))
        report(TrainProgress("data", step, 0, start_epoch, epochs, device=str(dev), message=(
            f"resuming at step {step} (epoch {start_epoch + 1} of {epochs}), best validation Dice so far "
            + (f"{best_dice:.4f}" if best_dice >= 0 else "none yet"))))

    def trained_s() -> float:
        """Seconds of training since the run began, across resumes (not the time stopped)."""
        return elapsed_before + time.monotonic() - t_start

    def mean_loss(values) -> float:
        return float(np.mean([float(v) for v in values])) if len(values) else float("nan")

    gen = None  # the device augmentation's random generator, set below when used

    def checkpoint_due() -> bool:
        return time.monotonic() - last_checkpoint >= checkpoint_every_s

    def save_checkpoint(epochs_completed: int, losses_this_epoch: list) -> None:
        # At a step boundary: weights, optimiser, the data RNG and the losses of the unfinished
        # epoch, so that a resumed run continues as if it had not stopped.
        nonlocal last_checkpoint
        state = {
            "network": net.state_dict(), "optimizer": opt.state_dict(), "rng": rng.bit_generator.state,
            "epoch": epochs_completed, "step": step, "epoch_losses": [float(v) for v in losses_this_epoch], "epochs": epochs,
            "torch_rng": gen.get_state() if gen is not None else None,
            "grad_scaler": scaler.state_dict() if scaler is not None else None,
            "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "best_val_dice": best_dice,
            "best_epoch": best_epoch, "history": history, "settings": settings, "elapsed_s": trained_s(),
            "fine_tuned_from": started_from,
        }
        atomic_write(ckpt_path, lambda tmp: torch.save(state, tmp))
        last_checkpoint = time.monotonic()

    spec = model.input
    on_device = augment_on == "device" or (augment_on == "auto" and dev.type == "cuda")
    if on_device:
        from ._augment_torch import DeviceValidator, augment_batch, to_device_dataset

        device_data = to_device_dataset(train, dev, seed)
        validate_on_device = DeviceValidator(val, spec, dev)
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed)
        if resume and ckpt.get("torch_rng") is not None:
            gen.set_state(ckpt["torch_rng"].cpu())
    # cuDNN's autotuner would stall the first steps of every new crop size for seconds.
    autotune = (
        dev.type == "cuda" and not plan_free and CUDNN_AUTOTUNE_MIN_PIXELS is not None
        and total_steps * batch_size * crop_px**2 >= CUDNN_AUTOTUNE_MIN_PIXELS
    )
    if CUDNN_AUTOTUNE_LAYERS not in ("all", "dense"):
        raise ValueError(f'CUDNN_AUTOTUNE_LAYERS must be "all" or "dense", not {CUDNN_AUTOTUNE_LAYERS!r}')
    if CUDNN_AUTOTUNE_LIMIT is not None and (not isinstance(CUDNN_AUTOTUNE_LIMIT, int) or CUDNN_AUTOTUNE_LIMIT < 1):
        raise ValueError(f"CUDNN_AUTOTUNE_LIMIT must be a whole number of at least 1, or None, not {CUDNN_AUTOTUNE_LIMIT!r}")
    autotune_dense_only = autotune and CUDNN_AUTOTUNE_LAYERS == "dense"
    pad_thin = _pads_thin_convs(dev, plan_free, amp_dtype)
    fuse_bn, fuse_bn_not = _batchnorm_fusion(dev, plan_free, amp_dtype)
    benchmark_limit = getattr(torch.backends.cudnn, "benchmark_limit", None)  # PyTorch's, put back after
    autotune_limit = CUDNN_AUTOTUNE_LIMIT if autotune and benchmark_limit is not None else None
    # Validation's batch is a shape of its own: on cuDNN each of the 61 layers would need a new
    # plan at its first pass (seconds); with the 1 x 1 and depthwise layers off cuDNN, ten do.
    plan_free_validation = _validates_plan_free(dev, plan_free, on_device, epochs, val_every)
    if plan_free_validation:
        from ._cuda_convs import plan_free_for_a_while as validation_layers
    else:
        validation_layers = contextlib.nullcontext
    card_training = {
        "data": data_desc,
        "n_train": len(train),
        "n_val": len(val),
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "crop_px": crop_px,
        "learning_rate": learning_rate,
        "optimizer": "AdamW(weight_decay=1e-4), 5 % warm-up then cosine decay",
        "loss": "binary cross-entropy + soft Dice",
        "augmentation": "any rotation, flips, scale 0.8-1.25 around the working spacing, HU gain 0.85-1.15 and offset +-50 HU, "
        "Gaussian blur 0.3-1 px (p=0.3), noise 5-40 HU (p=0.6), gamma (p=0.3), 8-bit quantisation (p=0.3)"
        + (", made in batches on the device" if on_device else ""),
        "seed": seed,
        "device": str(dev),
        "precision": _PRECISION[_precision_name(amp_dtype)],
        "command": command,
    }
    if started_from is not None:
        card_training["fine_tuned_from"] = started_from
    # Which images were held out, by a checksum of their pixels rather than by name: file names
    # from a PACS may identify patients, and cards travel with shared models.
    validation_data = {"contents": val_contents} if given else {}
    if validated_on_training:
        validation_data["on_training_images"] = (
            "yes: one image/mask pair, trained and validated on; this Dice says nothing of other images")
    if dev.type == "cuda":
        card_training["cuda_convolutions"] = (
            "1 x 1 as cuBLAS matrix products, depthwise on PyTorch's kernel, dense 3 x 3 on cuDNN (a fast start)"
            if plan_free else "all on cuDNN (a long run: faster steps outweigh the start-up)"
        ) + ("; validation with the 1 x 1 and depthwise layers off cuDNN (no plans for them at its shape)"
             if plan_free_validation else "") + ("; cuDNN's autotuner on" if autotune else "") + (
            " for the dense k x k layers only" if autotune_dense_only else "") + (
            f", timing its best {autotune_limit} candidates" if autotune_limit is not None else "") + (
            "; the one-channel first and last layers padded to 8 channels" if pad_thin else "") + (
            ("; batch norm fused with the activation after it (Triton kernels): "
             + ("every batch norm" if CUDA_FUSE_BATCHNORM is True else "those followed by an activation"))
            if fuse_bn else "") + (
            f"; batch norm not fused: {fuse_bn_not}" if fuse_bn_not else "")

    def dice_loss(logits, target):
        p = torch.sigmoid(logits)
        inter = (p * target).sum(dim=(1, 2, 3))
        return 1.0 - ((2 * inter + 1.0) / (p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1.0)).mean()

    def validate_and_keep_best(label_epoch: int) -> float:
        nonlocal best_dice, best_epoch
        net.eval()
        if on_device:
            with validation_layers(net):
                val_dice = float(np.mean(validate_on_device(net)))
        else:
            val_dice = float(np.mean(evaluate(model, val)))
        if val_dice > best_dice:
            best_dice, best_epoch = val_dice, label_epoch
            # The model is saved before the checkpoint: a run killed in between redoes the
            # steps since the last checkpoint and comes to the same model again.
            save_model(
                model, out,
                extra_card={
                    "training": {**card_training, "best_epoch": best_epoch},
                    "validation": {
                        "dice_mean": best_dice, "n_images": len(val), "epoch": best_epoch, "step": step,
                        "measured": "at the working spacing, on the device" if on_device else "through segment_phalanges",
                        **validation_data,
                    },
                },
            )
        rate = (time.monotonic() - t0) / max(steps_this_run, 1)
        report(
            TrainProgress(
                "validate", step, total_steps, label_epoch, epochs, loss=mean_loss(losses), val_dice=val_dice,
                best_val_dice=best_dice, eta_s=rate * (total_steps - step), device=str(dev),
            )
        )
        return val_dice

    out.parent.mkdir(parents=True, exist_ok=True)
    if not resume and ckpt_path.exists():
        # A new run in place of an old one (--overwrite): a later --resume must not carry on
        # the old run from its checkpoint.
        ckpt_path.unlink()
    t0 = last_checkpoint = time.monotonic()  # the clock for checkpoints starts with training
    validated_at_step = None  # a Cancel right after a validation need not validate the same weights again
    steps_this_run = 0
    was_cancelled = stopped_early = False
    epochs_done = start_epoch
    losses = []
    # Ctrl+C (a terminal's, or a notebook's interrupt) or SIGTERM (a scheduler's time limit) is a
    # Cancel, noticed between steps so that the model and checkpoint kept are whole steps'; a
    # second one stops at once.
    stack = contextlib.ExitStack()
    signalled = stack.enter_context(_a_signal_stops_after_the_step(lambda name: report(TrainProgress(
        "data", step, total_steps, epochs_done, epochs, device=str(dev),
        message=f"{name}: stopping after this step to keep the model and a checkpoint ({name} again stops at once)"))))

    def cancelled() -> bool:
        return signalled.is_set() or asked_to_cancel()

    try:
        torch.backends.cudnn.benchmark = autotune and not autotune_dense_only
        if pad_thin:
            from ._cuda_convs import pad_thin_convs

            pad_thin_convs(net)
        if fuse_bn:
            from ._cuda_batchnorm import fuse_batchnorm

            fuse_batchnorm(net, alone=CUDA_FUSE_BATCHNORM is True)
        if autotune_dense_only:
            from ._cuda_convs import autotune_dense_convs

            # before the first step: cuDNN keeps the first plan it makes for a shape, autotuned or not
            autotune_dense_convs(net)
        if autotune_limit is not None:
            torch.backends.cudnn.benchmark_limit = autotune_limit
        if started_from is not None and not resume:
            # The model it starts from, as it is, is the one to beat: fine-tuning (at a rate made
            # for training from scratch, say) can leave a model worse on the user's images.
            validated_at_step = 0
            history.append({"epoch": 0, "step": 0, "loss": float("nan"), "val_dice": validate_and_keep_best(0),
                            "elapsed_s": round(trained_s(), 3)})
            if history[-1]["val_dice"] < POOR_DICE:  # said before hours of training on the wrong masks
                report(TrainProgress("data", 0, total_steps, 0, epochs, device=str(dev), message=(
                    f"note: the model it starts from marks the bone of your validation masks poorly (Dice "
                    f"{history[-1]['val_dice']:.2f}, under {POOR_DICE}). If they mark the bone alone, this is what "
                    "fine-tuning is for; if they mark the deposits, the whole finger or another image, stop and "
                    "correct them")))
        for epoch in range(start_epoch, epochs):
            net.train()
            losses = epoch_losses if epoch == start_epoch else []
            while len(losses) < steps_per_epoch:
                if cancelled():
                    was_cancelled = True
                    break
                if on_device:
                    with torch.no_grad():
                        x, y = augment_batch(device_data, batch_size, crop_px, spec, gen)
                else:
                    batch = [augment(train[rng.integers(len(train))], rng, crop_px, spec) for _ in range(batch_size)]
                    x = torch.from_numpy(np.stack([b[0] for b in batch])[:, None]).to(dev)
                    y = torch.from_numpy(np.stack([b[1] for b in batch])[:, None]).to(dev)
                for group in opt.param_groups:
                    group["lr"] = lr_at(step)
                loss = _training_step(
                    net, opt, scaler, x,
                    lambda logits: torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + dice_loss(logits, y),
                    amp_dtype,
                )
                step += 1
                steps_this_run += 1
                losses.append(loss.detach())
                # Reading the loss waits for the GPU; on CUDA do it every 10th step so that the
                # next steps are queued while this one runs (NaN in between: nothing new to plot).
                loss_read = dev.type != "cuda" or step % 10 == 0
                last_loss = losses[-1].item() if loss_read else float("nan")
                if loss_read and not math.isfinite(last_loss):
                    # Diverged (or, in float16, an activation overflowed): no later step can mend it.
                    kept = (f"the best model so far (validation Dice {best_dice:.3f}) is kept in {out}"
                            if best_dice >= 0 else "no model was saved")
                    raise CalcinosisError(
                        f"training stopped at step {step}: the loss is {last_loss} ({card_training['precision']}); "
                        f"{kept}. Train afresh with a lower learning rate."
                    )
                rate = (time.monotonic() - t0) / steps_this_run
                report(
                    TrainProgress(
                        "train", step, total_steps, epoch + 1, epochs, loss=last_loss,
                        best_val_dice=best_dice, eta_s=rate * (total_steps - step), device=str(dev),
                    )
                )
                if len(losses) < steps_per_epoch and checkpoint_due():
                    save_checkpoint(epoch, losses)
            if was_cancelled:
                if steps_this_run:
                    if step != validated_at_step:
                        # Validate the unfinished epoch so that Cancel keeps the best model (an
                        # epoch without a step yet holds the last one's weights, named after it).
                        validate_and_keep_best(epoch + 1 if losses else epoch)
                    # Always, even right after a validation: its checkpoint may be up to
                    # checkpoint_every_s old, and resuming needs this very step.
                    save_checkpoint(epoch, losses)
                break
            epochs_done = epoch + 1
            if epochs_done % int(val_every) and epochs_done < epochs:
                # Not a validation epoch: a checkpoint only when one is due, as within an epoch.
                if checkpoint_due():
                    save_checkpoint(epochs_done, [])
                continue
            val_dice = validate_and_keep_best(epochs_done)
            validated_at_step = step
            history.append(
                {"epoch": epochs_done, "step": step, "loss": mean_loss(losses), "val_dice": val_dice,
                 "elapsed_s": round(trained_s(), 3)}
            )
            stop = stop_at_val_dice is not None and val_dice >= stop_at_val_dice
            # A checkpoint when one is due, and at the end: each is tens of MB written and flushed,
            # which on a GPU costs more than the epoch itself.
            if stop or epochs_done == epochs or checkpoint_due():
                save_checkpoint(epochs_done, [])
            if stop:
                stopped_early = True
                break
    except BaseException:
        _remove_if_empty(missing_folders)
        raise
    finally:
        stack.close()  # Ctrl+C is the caller's again
        torch.backends.cudnn.benchmark = False  # inference meets a new shape with every image
        if autotune_dense_only or pad_thin:
            from ._cuda_convs import restore_convs

            restore_convs(net)  # model.to below gives it the layers inference starts fast with
        if fuse_bn:
            from ._cuda_batchnorm import restore_batchnorm

            restore_batchnorm(net)
        if benchmark_limit is not None:
            torch.backends.cudnn.benchmark_limit = benchmark_limit
    model.to(dev)  # as load_model leaves a model: on CUDA, new image shapes start fast
    interrupted = was_cancelled and signalled.is_set()
    ended = (f"{f'interrupted ({signalled.by})' if interrupted else 'cancelled'} at step {step} of {total_steps}"
             if was_cancelled
             else f"stopped at epoch {epochs_done} of {epochs}: the validation Dice reached {stop_at_val_dice:g}"
             if stopped_early else f"finished: {_counted(epochs, 'epoch')}, {_counted(total_steps, 'step')}")
    if best_epoch == 0 and started_from is not None:
        ended += ("; no step was trained: the model it started from is kept as it is" if not steps_this_run else
                  "; no epoch did better on the validation images than the model it started from, which is kept")
    if best_epoch >= 0 and out.exists():
        _say_how_it_ended(out, ended)
    report(
        TrainProgress(
            "cancelled" if was_cancelled else "done", step, total_steps, epochs_done, epochs,
            best_val_dice=best_dice, eta_s=0.0, device=str(dev), message=ended,
        )
    )
    return TrainResult(
        model_path=out, best_val_dice=best_dice, best_epoch=best_epoch, epochs_done=epochs_done,
        cancelled=was_cancelled, history=history, device=str(dev), elapsed_s=time.monotonic() - t_start,
        interrupted=interrupted, interrupted_by=signalled.by if interrupted else "", ended=ended,
        validated_on_training=validated_on_training,
        steps_trained=steps_this_run,
    )


class _Stop(threading.Event):
    """Set by the first Ctrl+C or SIGTERM; ``by`` says which."""

    by = ""


@contextlib.contextmanager
def _a_signal_stops_after_the_step(say):
    """Within: the first Ctrl+C (SIGINT) or SIGTERM (a batch scheduler's time limit, which
    leaves some seconds before it kills) sets the event yielded and calls ``say(name)``; a
    second one raises KeyboardInterrupt as usual. Outside the main thread (the napari widget's
    worker, whose Cancel button does this) Python takes no handler: the event is never set."""
    import signal

    from ._signals import handling

    stop = _Stop()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.by = "SIGTERM" if signum == signal.SIGTERM else "Ctrl+C"
        stop.set()
        say(stop.by)

    with handling(signal.SIGINT, on_signal), handling(signal.SIGTERM, on_signal):
        yield stop


def _remove_if_empty(folders) -> None:
    """Remove the folders a failed run made for its output (deepest first) if it left them empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # it holds the model or checkpoint saved before the failure (or is gone)
            return


def _counted(n: int, noun: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _say_how_it_ended(out: Path, ended: str) -> None:
    """Add how the run ended to the saved model's card (it was written at its best epoch)."""
    from .segment import load_model

    saved = load_model(out, device="cpu")
    save_model(saved, out, extra_card={"training": {**saved.card.get("training", {}), "ended": ended}})
