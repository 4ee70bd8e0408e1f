"""The ``napari-calcinosis`` command line: quantify, demo, train, sample."""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import os
import re
import sys
import time
import unicodedata
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from ._errors import CalcinosisError
from .io import (_RASTER_SUFFIXES, WINDOW_LEVEL_HU, WINDOW_WIDTH_HU, _image_stem, _is_image_file, _listed,
                 _numbers_where_all_are,
                 _one_line, atomic_output, file_line, read_csv_or_refuse, read_csv_table, thousands_ambiguity)

OUTPUT_COLUMNS = [
    "image", "path", "lesion_id", "seed_row", "seed_col", "area_mm2", "area_px", "long_axis_mm", "short_axis_mm",
    "ellipse_area_mm2", "near_resolution", "mean_value", "max_value", "value_unit", "centroid_row", "centroid_col",
    "peak_hu", "background_hu", "level_hu", "freed_from_bone_mm2", "bone_margin_mm", "hu_clipped", "status",
    "mode", "warnings", "model", "settings", "software",
]


class _Progress:
    """A one-line progress bar on stderr (a line per 10 % when stderr is not a terminal)."""

    def __init__(self, total: int, what: str = "images"):
        self.total, self.what, self.t0, self.done = total, what, time.monotonic(), 0
        self.tty = sys.stderr.isatty()
        self.last_decile = -1

    def update(self, label: str = ""):
        self.done += 1
        if self.total < 2:
            return
        elapsed = time.monotonic() - self.t0
        eta = elapsed / self.done * (self.total - self.done)
        width = 24
        filled = int(width * self.done / self.total)
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {self.what} "
            f"{elapsed / self.done:.1f} s each, {eta:.0f} s left {label}"
        )
        if self.tty:
            print("\r" + line[:110].ljust(110), end="" if self.done < self.total else "\n", file=sys.stderr, flush=True)
        else:
            decile = int(10 * self.done / self.total)
            if decile != self.last_decile:
                self.last_decile = decile
                print(line, file=sys.stderr, flush=True)


# The mask files --masks and sample write, and demo's overlay: a folder of results holds no finger images.
_MASK_FILE = re.compile(r"_(bone\.png|lesions\.(png|tiff?)|overlay\.png)$", re.IGNORECASE)


def _walk(folder: Path, recursive: bool) -> tuple[list[Path], list[Path]]:
    """The visible files of ``folder`` and, with ``recursive``, of its subfolders (linked ones
    too, each real folder once), sorted; and the visible subfolders not searched. A link to a
    file that is missing (an archive not mounted) is a file here, so that it is not skipped
    without a word: reading it says what it is."""
    if not recursive:
        entries = sorted(f for f in folder.iterdir() if not f.name.startswith("."))
        return [f for f in entries if f.is_file() or _missing(f)], [f for f in entries if f.is_dir()]
    files, seen = [], set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree, or a second link to one folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(root) / n for n in sorted(names)
                  if not n.startswith(".") and ((Path(root) / n).is_file() or _missing(Path(root) / n))]
    return sorted(files), []


def _missing(path: Path) -> bool:
    """A link to a file that is missing."""
    return path.is_symlink() and not path.exists()


def _broken_link(path: Path) -> bool:
    """A link to a file that is missing, named as an image is (``IM000001``, ``a.dcm``): a
    ``readme.txt`` or ``Thumbs.db`` linked so is no image to fail."""
    from .io import _DICOM_SUFFIXES, _scanner_name

    suffix = path.suffix.lower()
    named_as_image = suffix in _DICOM_SUFFIXES or suffix in _RASTER_SUFFIXES or _scanner_name(path)
    return bool(named_as_image) and _missing(path)


def _holds_only_masks(folder: Path) -> bool:
    """Whether ``folder`` holds the mask files this tool writes and nothing else (``sample``'s
    masks/), so that not searching it skips no image."""
    try:
        entries = [f for f in folder.iterdir() if not f.name.startswith(".")]
    except OSError:
        return False
    return bool(entries) and all(f.is_file() and _MASK_FILE.search(f.name) for f in entries)


def _globbed(paths) -> list[str]:
    """The paths given, a pattern no file is named after (``scans\\*.dcm``: Windows' shells
    leave it to the program) replaced by the files it matches, sorted. It was taken for a file
    name: "file not found", or with --seeds the seeds file blamed for naming no image given."""
    out = []
    for path in map(str, paths):
        if os.path.lexists(path) or not re.search(r"[*?[]", path):
            out.append(path)
            continue
        matches = sorted(glob.glob(path))
        if not matches:
            raise CalcinosisError(f"no file matches {path}")
        out.extend(matches)
    return out


def _expand_images(paths, recursive: bool = False) -> list[Path]:
    """The files given, and the image files of the folders given (sorted; with ``recursive``, of
    their subfolders too); what a folder holds besides images is named on stderr, and so are the
    subfolders not searched (but those of mask files only), so that no image is skipped without a
    word. The mask files this tool writes are never taken for images, given or found."""
    out = []
    for p in map(Path, _globbed(paths)):
        if not p.is_dir():
            if _MASK_FILE.search(p.name) and p.is_file():
                print(f"{p}: skipped, a mask file that --masks writes, not a finger image", file=sys.stderr)
            else:
                out.append(p)
            continue
        files, folders = _walk(p, recursive)
        ours = {f for f in files if _MASK_FILE.search(f.name)}
        images = [f for f in files if f not in ours and (_broken_link(f) or _is_image_file(f))]
        found = set(images)
        others = [str(f.relative_to(p)) for f in files if f not in found and f not in ours]
        if others:
            print(f"{p}: skipped {len(others)} file(s) that are not DICOM, PNG, JPEG or TIFF images: "
                  f"{_listed(others)}", file=sys.stderr)
        if ours:
            print(f"{p}: skipped {len(ours)} mask file(s) that --masks writes, not finger images: "
                  f"{_listed(sorted(str(f.relative_to(p)) for f in ours), 3)}", file=sys.stderr)
        unsearched = [f.name for f in folders if not _holds_only_masks(f)]
        if unsearched:
            print(f"{p}: its {len(unsearched)} subfolder(s) were not searched ({_listed(unsearched, 3)}): give "
                  "--recursive to measure the images in them too", file=sys.stderr)
        out.extend(images)
    return out


def _image_labels(images: list[Path]) -> dict[Path, str]:
    """What the ``image`` column calls each image: its file name, or the path as given where
    images in different folders share a name (scanners name every patient's files IM0001...)."""
    names = collections.Counter(path.name for path in images)
    return {path: path.name if names[path.name] == 1 else str(path) for path in images}


def _normalised(key: str) -> str:
    """An image's name or path as a seeds file may write it, in one form: Windows' backslashes as
    slashes, no ``./`` or doubled slash, letters composed (a Mac writes é as e and an accent)."""
    text = unicodedata.normalize("NFC", key.strip().replace("\\", "/"))
    parts = [part for part in text.split("/") if part not in ("", ".")]
    return ("/" if text.startswith("/") else "") + "/".join(parts)


def _spellings(path: Path) -> set[str]:
    """The names by which a seeds file may name the image ``path`` other than a path that leads
    to it: its file name or stem, after none or some of its last folders (``IM1.dcm``, ``IM1``,
    ``P01/baseline/IM1``), of its path as given or as an absolute path."""
    names = set()
    for parts in (path.parts, path.resolve().parts):
        folders = [_normalised(part) for part in parts[:-1] if part not in ("/", "")]
        for last in (path.name, _image_stem(path)):
            names.update("/".join([*folders[len(folders) - k:], _normalised(last)]) for k in range(len(folders) + 1))
    return names


def _folder_led_to(base: Path, parts: list[str]) -> Path | None:
    """The folder that the folders ``parts`` lead to from ``base``, the case of their letters aside
    (a sheet typed on Windows); None where they lead to none."""
    folder = base
    for part in parts:
        if part == "..":
            folder = folder.parent
        elif (folder / part).is_dir():
            folder = folder / part
        else:
            try:
                alike = [f for f in folder.iterdir() if f.is_dir() and f.name.casefold() == part.casefold()]
            except OSError:
                return None
            if len(alike) != 1:
                return None
            folder = alike[0]
    return folder.resolve()


def _match_seeds(images: list[Path], keys, seeds_path, aliases: dict | None = None) -> dict[str, list[Path]]:
    """The images each image name of the seeds file names, or none (said on stderr by the caller):

    - a path whose folders lead to a folder from here or from the seeds file's folder (or an
      absolute one) names the image of that folder with its file name or stem (any suffix, any
      case), else none: never another image whose path ends in the same folders (another
      centre's ``P01/baseline/IM000001``);
    - a path whose folders lead nowhere names the image whose path ends in its folders and its
      name or stem (``P01/baseline/IM000001`` of a study's tree; said on stderr, to be checked);
      a name without folders names the images of that file name or stem;
    - a name that names no image so names the same ignoring the case of its letters (said).

    ``aliases``: other paths given for an image (a link), whose names name it too. A name that
    names images in several folders is refused: it would give one image's seeds to another (a
    DICOM and its PNG export side by side, as ``sample`` writes them, are one image: they
    share seeds)."""
    exact: dict[str, set[Path]] = {}
    in_folder: dict[Path, list[tuple[set[str], Path]]] = {}
    for path in images:
        for given in (path, *(aliases or {}).get(path, ())):
            in_folder.setdefault(given.parent.resolve(), []).append(
                ({given.name.casefold(), _image_stem(given).casefold()}, path))
            for name in _spellings(given):
                exact.setdefault(name, set()).add(path)
    folded: dict[str, set[Path]] = {}
    for name, paths in exact.items():
        folded.setdefault(name.casefold(), set()).update(paths)
    bases = [Path.cwd()] + ([Path(seeds_path).parent] if seeds_path else [])
    matches, by_folders = {}, []
    for key in dict.fromkeys(keys):
        name = _normalised(key)
        parts = name.split("/")
        folders = set()
        if len(parts) > 1:
            starts = [Path("/")] if name.startswith("/") else bases
            folders = {_folder_led_to(base, [p for p in parts[:-1] if p]) for base in starts} - {None}
        if folders:  # the folders of the path lead to a folder: the image of that folder, or none
            last = {parts[-1].casefold(), _image_stem(Path(parts[-1])).casefold()}
            found = {path for folder in folders for names, path in in_folder.get(folder, ()) if names & last}
        else:
            stem = "/".join([*parts[:-1], _image_stem(Path(parts[-1]))])  # .dcm written, none on the file
            found = set(exact.get(name) or exact.get(stem) or ())
            if not found:
                found = set(folded.get(name.casefold()) or folded.get(stem.casefold()) or ())
                if found:
                    print(f"note: {seeds_path} names {key!r}, taken as {_listed(sorted(map(str, found)), 3)} "
                          "(the case of the letters differs)", file=sys.stderr)
            if len(parts) > 1 and found:
                by_folders.append(f"{key!r} as {_listed(sorted(map(str, found)), 2)}")
        matching = [path for path in images if path in found]  # in the order given
        if len({path.resolve().parent for path in matching}) > 1:
            raise CalcinosisError(
                f"{seeds_path} gives seeds for {key!r}, the name of {len(matching)} of the images "
                f"({_listed(map(str, matching), 3)}): write in its image column a path that leads to the file "
                "from the seeds file's folder, or more of its folders"
            )
        matches[key] = matching
    if by_folders:
        print(f"note: {seeds_path} names {len(by_folders)} image(s) by folders that lead to no folder from here or "
              f"from its own folder, taken by their last folders: {_listed(by_folders, 3)}; check that these are "
              "the images meant", file=sys.stderr)
    if matches and not any(matches.values()):
        raise CalcinosisError(
            f"none of the {len(matches)} image names in {seeds_path} names an image given here (e.g. "
            f"{next(iter(matches))!r}): write each image's file name or stem, its path from the seeds file's "
            "folder, or its last folders and name (a path on another computer, C:\\... or \\\\server\\..., "
            "cannot be looked up here)"
        )
    return matches


def _read_seeds(path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The seeds of a CSV with columns image,row,col (any case), one row per seed in the file's
    order (image: the name as written; row, col: numbers); every bad line is refused. Its other
    columns (a radiologist's reading of each deposit, a lesion's name), row for row, to be
    carried onto the output rows; numbers as numbers."""
    try:
        table = read_csv_table(path, text=True)
    except CalcinosisError as exc:
        raise CalcinosisError(f"seeds file {exc}") from None
    except FileNotFoundError:
        raise CalcinosisError(f"seeds file not found: {path}") from None
    except pd.errors.EmptyDataError:
        raise CalcinosisError(f"seeds file {path} is empty: it needs the header image,row,col and a line per seed") from None
    except Exception as exc:
        raise CalcinosisError(f"could not read seeds file {path}: {_one_line(exc)}") from exc
    ambiguous = table.attrs.get("thousands_ambiguous", {})  # 1.234 in a semicolon file: 1.234 or 1234?
    originals = [str(c) for c in table.columns]
    table.columns = [str(c).strip() for c in table.columns]
    # Image,Row,Col as a spreadsheet capitalises them (not where the file has both spellings)
    lower = [c.lower() for c in table.columns]
    table.columns = [c.lower() if c.lower() in ("image", "row", "col") and lower.count(c.lower()) == 1 else c
                     for c in table.columns]
    for i, original in enumerate(originals):
        # a seed's row or col, or a reader's number carried to the output, read as 1.234 where 1234 was meant
        if original in ambiguous and table.columns[i] != "image":
            row = ambiguous[original]
            raise CalcinosisError(thousands_ambiguity(f"seeds file {path}: column {table.columns[i]!r}",
                                                      f"line {file_line(path, row)}", table.iloc[row, i]))
    missing = [c for c in ("image", "row", "col") if c not in table.columns]
    if missing:
        separator = " (it looks semicolon-separated: save it as comma-separated)" if any(
            ";" in c for c in table.columns) else ""
        raise CalcinosisError(
            f"seeds file {path} lacks column(s) {', '.join(missing)}{separator}: its header is "
            f"{','.join(table.columns)!r}, it needs image,row,col (image = file name, stem or path; row/col in pixels)"
        )
    extra = _extra_seed_columns(table)
    table = table[["image", "row", "col"]].apply(lambda column: column.str.strip())
    coords = table[["row", "col"]].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(coords.to_numpy(dtype=float)).all(axis=1) | (table["image"] == "")
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        image, row, col = table.iloc[first]
        raise CalcinosisError(
            f"seeds file {path}, line {file_line(path, first)} (image {image!r}, row {row!r}, col {col!r}): each line needs an "
            f"image name and row, col in pixels as numbers; {int(bad.sum())} line(s) are bad: fix or delete them"
        )
    if table.empty:
        raise CalcinosisError(f"seeds file {path} has no seeds, only its header: add a line per deposit "
                              "(image,row,col), or leave --seeds out to measure every candidate deposit")
    seeds = pd.DataFrame({"image": table["image"], "row": coords["row"].astype(float),
                          "col": coords["col"].astype(float)})
    return seeds.reset_index(drop=True), extra.reset_index(drop=True)


def _extra_seed_columns(table: pd.DataFrame) -> pd.DataFrame:
    """A seeds table's columns besides image,row,col, named as the output does not name its own
    (a reader's area_mm2 becomes seeds_area_mm2); a column of numbers (or empty cells) as numbers."""
    extra = table.drop(columns=["image", "row", "col"])
    extra = extra.loc[:, [not str(c).startswith("Unnamed:") or (extra[c] != "").any() for c in extra.columns]]
    names: list[str] = []
    for column in map(str, extra.columns):
        while (column in OUTPUT_COLUMNS or column in SUMMARY_COLUMNS or column in names
               or column in extra.columns[len(names) + 1:]):
            column = f"seeds_{column}"  # a previous run's output as the seeds: area_mm2 and seeds_area_mm2
        names.append(column)
    extra.columns = names
    for column in names:
        text = extra[column].str.strip()
        # numbers stay numbers; an identifier such as 007 stays as written
        if not text.str.match(r"^[+-]?0\d").any():
            numbers = _numbers_where_all_are(text.replace("", np.nan))
            if pd.api.types.is_numeric_dtype(numbers):
                extra[column] = numbers
    return extra


def _seeds_of_each(images: list[Path], seeds: pd.DataFrame, extra: pd.DataFrame, matches: dict):
    """Each image's seeds in the file's order, from every line whose name names it (a stem on some
    lines and the file name on others are one image), with those lines' other columns; None for
    an image the file has no seeds for."""
    lines: dict[Path, list[int]] = {}
    for line, key in enumerate(seeds["image"]):
        for path in matches.get(key, ()):
            lines.setdefault(path, []).append(line)
    of_each = {}
    for path in images:
        if path in lines:
            rows = seeds.iloc[lines[path]]
            of_each[path] = (list(zip(rows["row"], rows["col"])),
                             extra.iloc[lines[path]].reset_index(drop=True) if len(extra.columns) else None)
        else:
            of_each[path] = (None, None)
    return of_each


def _refuse_existing(paths, overwrite: bool) -> None:
    """Refuse, before any work, to replace existing outputs unless --overwrite was given."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise CalcinosisError(
            f"{len(existing)} output file(s) already exist: {_listed(existing, 3)}; "
            "give --overwrite to replace them, or choose another output"
        )


def _make_folder(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CalcinosisError(f"cannot create the {what} folder {folder} ({_one_line(exc)})") from exc


def _write_csv(table: pd.DataFrame, path, overwrite: bool = True) -> None:
    # A file name that is not UTF-8 (an old share's café.dcm) goes out as its own bytes, as on
    # standard output, rather than losing the whole run to an encoding error at the end.
    with atomic_output(path, overwrite=overwrite) as temporary:
        table.to_csv(temporary, index=False, errors="surrogateescape")


def _csv_to_stdout(table: pd.DataFrame) -> None:
    """A table on standard output in UTF-8, as --out writes it: a file name the console's code
    page cannot spell (Dvořák on Windows, where output sent to a file is cp1252) or that is not
    UTF-8 crashed the run after every image was measured, leaving only the header."""
    text = table.to_csv(index=False)
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # standard output replaced by a text stream (a notebook, a test)
        sys.stdout.write(text)
    else:
        sys.stdout.flush()
        buffer.write(text.encode("utf-8", "surrogateescape"))
        buffer.flush()  # a reader gone (| head) is met here, not at exit


def _write_image(array: np.ndarray, path, overwrite: bool = True) -> None:
    """PNG through imageio, TIFF through tifffile (label images keep their 16-bit values)."""
    import imageio.v3 as iio
    import tifffile

    with atomic_output(path, overwrite=overwrite) as temporary:
        if Path(path).suffix.lower() in (".tif", ".tiff"):
            tifffile.imwrite(temporary, array)
        else:
            iio.imwrite(temporary, array)


def _mask_names(images: list[Path]) -> dict[Path, str]:
    """What each image's --masks files are named after: its stem; where the images lie in several
    folders, in the folders that lead to it from here (or, for images not below here, from the
    folder they all lie in), so that the masks folder mirrors the study's tree (every patient's
    first file is IM000001) alike in every run from one place, and each folder's masks read back
    by ``train --images F --masks DIR/F``. Images of one stem in one folder (a DICOM beside its
    export) are refused: their masks would be one file."""
    folders = [path.resolve().parent for path in images]
    here = Path.cwd().resolve()
    if len(set(folders)) == 1:
        common = folders[0]
    elif all(folder == here or here in folder.parents for folder in folders):
        common = here
    else:
        common = Path(os.path.commonpath(folders))
    names = {path: (folder.relative_to(common) / _image_stem(path)).as_posix() for path, folder in zip(images, folders)}
    counts = collections.Counter(names.values())
    twice = sorted({str(path) for path, name in names.items() if counts[name] > 1})
    if twice:
        raise CalcinosisError(f"images of one stem in one folder ({_listed(twice, 4)}) would share their --masks "
                              "files: give one of them (a DICOM and its export are one image: e.g. DIR/*.dcm), "
                              "or measure them in separate runs")
    return names


def _mask_paths(masks_dir: Path, name: str) -> tuple[Path, Path]:
    return masks_dir / f"{name}_bone.png", masks_dir / f"{name}_lesions.tif"


def _write_masks(masks_dir: Path, name: str, bone_mask, lesion_labels, overwrite: bool):
    bone_path, lesions_path = _mask_paths(masks_dir, name)
    _make_folder(bone_path.parent, "masks")
    _write_image((np.asarray(bone_mask, bool) * 255).astype(np.uint8), bone_path, overwrite)
    _write_image(np.asarray(lesion_labels).astype(np.uint16), lesions_path, overwrite)


def _error_rows(label: str, message: str, image_seeds) -> pd.DataFrame:
    """The rows of an image that failed: one per seed (so no seed is lost), or one."""
    seeds = image_seeds or [(np.nan, np.nan)]
    rows = [{**{c: np.nan for c in OUTPUT_COLUMNS}, "image": label, "lesion_id": 0, "seed_row": r,
             "seed_col": c, "status": f"error: {message}"} for r, c in seeds]
    return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


def _image_error(path: Path, exc: Exception) -> str:
    """One line naming the image: our message as it is, anything else as an unexpected error."""
    if isinstance(exc, CalcinosisError):
        message = _one_line(exc)
    else:
        message = f"unexpected {type(exc).__name__}: {_one_line(exc)} (please report this with the image)"
    return message if path.name in message else f"{path.name}: {message}"


def _quantify_each(images, labels, seeds_of, mask_names, model, args, frames: list,
                   masks_replaced: frozenset = frozenset(), digests: dict | None = None) -> int:
    """Measure each image into ``frames`` (a table per image, so an interruption keeps them);
    returns how many failed. One bad image never ends the batch. ``seeds_of``: each image's
    seeds and the seeds file's other columns, put beside the rows of its seeds (one row per
    seed, in order). ``masks_replaced``: images whose masks an interrupted run of this output
    wrote, replaced without --overwrite. ``digests``: filled with each file's SHA-256 as it is
    read (by its ``path`` value), for an interruption's partial file."""
    from .io import read_image
    from .pipeline import quantify
    from .segment import model_caveat

    caveat = model_caveat(model)  # said once, when the model was loaded; on every row
    failed = 0
    said_own_spacing = False
    bar = _Progress(len(images))
    for path in images:
        label = labels[path]
        image_seeds, extra = seeds_of.get(path, (None, None))

        def beside(rows: pd.DataFrame, no_seeds: str = "") -> pd.DataFrame:
            rows = rows.assign(path=str(path.resolve()), mode="automatic" if image_seeds is None else "seeded")
            if no_seeds:
                rows["warnings"] = [no_seeds if not isinstance(w, str) or not w else f"{no_seeds}; {w}"
                                    for w in rows["warnings"]]
            if extra is None or len(rows) != len(extra):
                return rows
            return pd.concat([rows.reset_index(drop=True), extra], axis=1)
        image = None
        if digests is not None:  # the file as measured: one copied over it later is not it
            digests[str(path.resolve())] = _file_digest(path)
        try:
            # In a batch, --pixel-size serves the exports; a DICOM file keeps its own spacing.
            # pydicom's warnings about a file's header are said with the file's name.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                image = read_image(path, pixel_size_mm=args.pixel_size, prefer_file_spacing=True,
                                   window_level_hu=args.window_level, window_width_hu=args.window_width)
            for said in dict.fromkeys(_one_line(w.message) for w in caught):
                print(f"warning: {label}: while reading it: {said}", file=sys.stderr)
            if "was not used" in image.spacing_origin and not said_own_spacing:
                said_own_spacing = True
                print(f"note: {label} and every other DICOM file with a pixel spacing of its own keep it; "
                      f"--pixel-size {args.pixel_size:g} serves the exports (PNG, JPEG, TIFF)", file=sys.stderr)
            result = quantify(
                image, image_seeds, model=model, device=args.device, tta=args.tta,
                threshold_hu=args.threshold_hu, margin_mm=args.margin_mm, connectivity=args.connectivity,
                min_area_mm2=args.min_area_mm2,
            )
            if args.masks:
                _write_masks(Path(args.masks), mask_names[path], result.bone_mask, result.lesion_labels,
                             args.overwrite or path in masks_replaced)
        except Exception as exc:  # noqa: BLE001 - one bad image must not end the batch
            failed += 1
            message = _image_error(path, exc)
            print(f"error: {message}", file=sys.stderr)
            # read and refused (a span too large for --pixel-size, say): what it was read with, too
            frames.append(beside(_error_rows(label, message, image_seeds)).assign(settings=_settings_label(args, image)))
            bar.update(label)
            continue
        no_seeds = (f"{args.seeds} has no seeds for this image: every candidate deposit was measured "
                    "(automatic mode)") if args.seeds and image_seeds is None else ""
        for warning in ([no_seeds] if no_seeds else []) + list(result.warnings):
            if warning != caveat:
                print(f"warning: {label}: {warning}", file=sys.stderr)
        table = result.table.copy()
        table["image"] = label
        if table.empty:
            table = pd.DataFrame([{**{c: np.nan for c in OUTPUT_COLUMNS}, "image": label, "lesion_id": 0,
                                   "area_mm2": 0.0, "area_px": 0, "status": "no_deposit_found"}])
        table["warnings"] = "; ".join(result.warnings)
        table["settings"] = _settings_label(args, image)  # a DICOM's own spacing and HU: no export settings
        frames.append(beside(table.reindex(columns=OUTPUT_COLUMNS), no_seeds))
        bar.update(label)
    return failed


SUMMARY_COLUMNS = ["image", "path", "mode", "lesions", "lesions_near_resolution", "total_area_mm2", "seeds_not_measured",
                   "error", "warnings", "model", "settings", "software"]


def _per_image(out: pd.DataFrame) -> pd.DataFrame:
    """One row per image of a quantify table: its deposits measured and their total area (each
    lesion once, however many seeds lie on it), the seeds not measured (on_bone, no_deposit, or
    all of a failed image's; automatic mode's left-out things are not seeds), and its error. An
    image that failed has no count nor total (empty, not 0: its burden is unknown); one where
    nothing was found has 0. The seeds file's columns that hold one value for all of an image's
    seeds (a patient, a visit) come along, after the tool's own."""
    from .grow import LEFT_OUT_STATUSES

    images = out.groupby("path", sort=False)
    carried = [column for column in out.columns if column not in OUTPUT_COLUMNS
               and images[column].nunique(dropna=False).le(1).all()]  # one value per image, in every image
    rows = []
    for _, table in images:
        status = table["status"].astype(str)
        error = status.str.startswith("error: ")
        lesions = table[(status == "ok") & (table["lesion_id"] > 0)].drop_duplicates("lesion_id")
        not_measured = ~status.isin(["ok", "duplicate_seed", "no_deposit_found", *LEFT_OUT_STATUSES])
        not_measured &= ~error | table["seed_row"].notna()  # a failed image's seeds, not its one seedless row
        warnings_text = next((w for w in table["warnings"] if isinstance(w, str) and w), "")
        rows.append({
            "image": table["image"].iloc[0], "path": table["path"].iloc[0], "mode": table["mode"].iloc[0],
            "lesions": np.nan if error.any() else len(lesions),
            "lesions_near_resolution": np.nan if error.any() else int(lesions["near_resolution"].eq(True).sum()),
            "total_area_mm2": np.nan if error.any() else float(lesions["area_mm2"].sum()),
            "seeds_not_measured": int(not_measured.sum()),
            "error": status[error].iloc[0].removeprefix("error: ") if error.any() else "",
            "warnings": warnings_text, "model": table["model"].iloc[0], "settings": table["settings"].iloc[0],
            "software": table["software"].iloc[0],
            **{column: table[column].iloc[0] for column in carried},
        })
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS + carried)
    for count in ("lesions", "lesions_near_resolution"):  # counts, empty for an image that failed
        summary[count] = summary[count].astype("Int64")
    return summary


def _once_each(images: list[Path]) -> tuple[list[Path], dict[Path, list[Path]]]:
    """``images`` with each file once (a file given twice, or in a folder given too, would be
    measured and counted twice), said on stderr; and, for each image kept, the other paths it was
    given by (a link to it), by which a seeds file may name it too."""
    seen: dict[Path, Path] = {}
    aliases: dict[Path, list[Path]] = {}
    for path in images:
        first = seen.setdefault(path.resolve(), path)
        if first is path:
            continue
        if str(path) == str(first):
            print(f"note: {path} is given more than once: measured once", file=sys.stderr)
        else:
            print(f"note: {path} is the file {first} (given already): measured once, as {first}", file=sys.stderr)
            aliases.setdefault(first, []).append(path)
    return list(seen.values()), aliases


def _partial_files(out) -> list[Path]:
    """The partial results interrupted runs left beside ``out``, oldest name first."""
    return sorted(Path(out).parent.glob(f"{glob.escape(Path(out).stem)}.partial*.csv"),
                  key=lambda path: (len(path.name), path.name))


# The tool's own columns that hold numbers (a partial file is read back as text, as written).
_FLAG_COLUMNS = ["near_resolution", "hu_clipped"]
_NUMERIC_COLUMNS = [c for c in OUTPUT_COLUMNS if c not in ("image", "path", "value_unit", *_FLAG_COLUMNS, "status",
                                                           "mode", "warnings", "model", "settings", "software")]


def _measured_before(out, keys: dict[Path, str], labels: dict, seeds_of: dict, mask_names: dict, masks):
    """For --resume: the rows interrupted runs wrote beside ``out`` of the images of this run that
    can be kept, by image path; and the partial files whose every row is of this run's images
    (to be removed once the output holds them). An image is kept from the newest file that holds
    it, and only when it was measured (one that failed is measured again) with the seeds this
    run gives it and, with --masks, its masks written; its rows take this run's image name and
    the seeds file's columns as this run reads them. ``keys``: each image's absolute path, the
    ``path`` column's value. Also the images measured again whose partial rows are set aside
    (their masks are that run's, to be replaced), and what to say of it all once the rows are
    accepted. An image whose file is not the one measured
    (another copied over it: its digest, kept in the partial file, differs) is measured again."""
    partials = _partial_files(out)
    if not partials:
        print(f"note: --resume: no partial results beside {out} ({Path(out).stem}.partial.csv): every image is "
              "measured", file=sys.stderr)
        return {}, [], frozenset(), []
    by_path, consumed = {}, []
    given = {key: path for path, key in keys.items()}
    for partial in partials:  # oldest first: a newer file's rows of an image replace an older one's
        rows = read_csv_table(partial, text=True)
        missing = [column for column in OUTPUT_COLUMNS if column not in rows.columns]
        if missing:
            raise CalcinosisError(f"--resume: {partial} lacks the column(s) {', '.join(missing)} (an older version, "
                                  "or an edit, wrote it): measure again without --resume")
        by_path.update({key: table for key, table in rows.groupby("path", sort=False)})
        if rows["path"].isin(given).all():
            consumed.append(partial)
    done, again, replaced, remeasured = {}, [], [], set()
    for key, rows in by_path.items():
        path = given.get(key)
        if path is None or rows["status"].str.startswith("error").any():
            continue
        remeasured.add(path)
        digest = rows[FILE_DIGEST].iloc[0] if FILE_DIGEST in rows.columns else ""
        if isinstance(digest, str) and digest and digest != _file_digest(path):
            replaced.append(labels[path])
            continue
        seeds, extra = seeds_of.get(path, (None, None))
        kept_seeds = list(zip(pd.to_numeric(rows["seed_row"]), pd.to_numeric(rows["seed_col"])))
        if (seeds is None) != (rows["mode"].iloc[0] == "automatic") or (seeds is not None and kept_seeds != seeds) or (
                masks and not all(p.exists() for p in _mask_paths(Path(masks), mask_names[path]))):
            again.append(labels[path])
            continue
        rows = rows[[c for c in rows.columns if c in OUTPUT_COLUMNS]].reset_index(drop=True)
        rows[_NUMERIC_COLUMNS] = rows[_NUMERIC_COLUMNS].apply(pd.to_numeric, errors="coerce")
        for flag in _FLAG_COLUMNS:
            rows[flag] = rows[flag].map({"True": True, "False": False})
        rows["image"] = labels[path]
        done[key] = pd.concat([rows, extra], axis=1) if extra is not None and len(extra) == len(rows) else rows
        remeasured.discard(path)
    # said once the rows are known to be kept (another model or setting refuses them first)
    notes = [f"resuming: {len(done)} of {len(keys)} image(s) measured before (in {_listed(map(str, partials), 2)}) "
             f"are kept; measuring the other {len(keys) - len(done)}"]
    if again:
        notes.append(f"note: --resume: measuring {len(again)} image(s) again whose seeds differ from the partial "
                     f"rows', or whose masks are missing: {_listed(again, 3)}")
    if replaced:
        notes.append(f"note: --resume: measuring {len(replaced)} image(s) again whose file is not the one measured "
                     f"before (another file was copied over it since): {_listed(replaced, 3)}")
    kept_files = [partial for partial in partials if partial not in consumed]
    if kept_files:
        notes.append(f"note: {_listed(map(str, kept_files), 2)} also hold(s) rows of images not in this run: left as "
                     "they are")
    return done, consumed, frozenset(remeasured), notes


# The column of a partial file (not of the output) holding each image file's digest, so that
# --resume measures again a file replaced since (a wrong slice re-exported under its name: its
# rows were kept, the old image's deposits under the new file's path).
FILE_DIGEST = "file_sha256"


def _file_digest(path) -> str:
    """The SHA-256 of a file's bytes, or "" where it cannot be read."""
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()


# The parts of a settings label that only an export's rows carry (an image read through them).
_EXPORT_SETTINGS = ("export_pixel_size_mm=", "export_window_hu=")


def _settings_label(args, image=None) -> str:
    """The settings a quantify run measured ``image`` with (:func:`~napari_calcinosis.pipeline.settings_label`).
    main() has put the defaults of the threshold and the smallest area in ``args``. The given
    pixel size where the image took it (an export, or a DICOM without one of its own), the
    window where the image was mapped back through it (an export): a DICOM measured with its own
    spacing and HU says neither. ``image`` None: the settings every image of the run shares."""
    from .pipeline import settings_label

    pixel_size_used = image is not None and image.spacing_origin.startswith("user")
    return settings_label(threshold_hu=args.threshold_hu, margin_mm=args.margin_mm, connectivity=args.connectivity,
                          min_area_mm2=args.min_area_mm2, tta=args.tta,
                          export_pixel_size_mm=args.pixel_size if pixel_size_used else None,
                          export_window_hu=((args.window_width, args.window_level)
                                            if image is not None and image.saturated_above_hu is not None else None))


def _settings_refusal(done: dict, partials, args) -> str:
    """Why --resume cannot keep the rows of ``done`` (by image path) with this run's settings, or
    "". An image's rows must carry the settings every image of this run shares, and each export
    setting they carry (a pixel size or window they were read through) as this run gives it."""
    shared = set(_settings_label(args).split("; "))
    an_export = SimpleNamespace(spacing_origin="user (pixel_size_mm)", saturated_above_hu=0.0)
    given = {part for part in _settings_label(args, an_export).split("; ") if part.startswith(_EXPORT_SETTINGS)}
    for theirs in sorted({str(s) for rows in done.values() for s in rows["settings"].dropna()}):
        parts = set(theirs.split("; "))
        carried = {part.split("=")[0] for part in parts if part.startswith(_EXPORT_SETTINGS)}
        mine = shared | {part for part in given if part.split("=")[0] in carried}
        if parts != mine:
            def said(these, others):  # the parts one run has and the other not ("no X" where it has none)
                return ", ".join(sorted(these)) or "no " + ", ".join(sorted(p.split("=")[0] for p in others))

            return (f"--resume: {_listed(map(str, partials), 2)} were measured with {said(parts - mine, mine - parts)}, "
                    f"this run with {said(mine - parts, parts - mine)}: give the same settings, or measure again "
                    "without --resume")
    return ""


def _partial_path(out) -> Path:
    """Where an interrupted run writes what it measured: beside the output, never over an
    earlier run's partial results."""
    first = Path(out).with_suffix(".partial.csv")
    candidates = [first] + [first.with_name(f"{Path(out).stem}.partial-{k}.csv") for k in range(2, 1000)]
    return next((path for path in candidates if not path.exists()), candidates[-1])


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's time limit, ``kill``) during a run: handled as Ctrl-C is."""


@contextlib.contextmanager
def _sigterm_interrupts():
    """Within: SIGTERM raises :class:`Terminated`, so that what was measured is kept as after a
    Ctrl-C. Outside the main thread Python takes no handler: nothing changes."""
    import signal

    from ._signals import handling

    def on_sigterm(signum, frame):
        raise Terminated

    with handling(signal.SIGTERM, on_sigterm):
        yield


def cmd_quantify(args) -> int:
    from .io import _checked_spacing, _checked_window
    from .segment import load_model, model_caveat

    args.out = None if args.out == "-" else args.out  # "-": standard output, as without --out
    if args.summary == "-" and not args.out:
        raise CalcinosisError("--summary - and the lesion rows cannot both go to standard output: give --out a file")
    images, aliases = _once_each(_expand_images(args.images, args.recursive))
    if not images:
        raise CalcinosisError("no images given (DICOM, PNG, JPEG or TIFF files, or folders of them)")
    if args.pixel_size is not None:
        _checked_spacing(args.pixel_size, "--pixel-size")
    elif all(path.suffix.lower() in _RASTER_SUFFIXES for path in images):  # each would fail, one by one
        raise CalcinosisError(f"{'the image is an export' if len(images) == 1 else f'all {len(images)} images are exports'} "
                              "(PNG, JPEG, TIFF), which carry no pixel size: give it with --pixel-size (in mm)")
    _checked_window(args.window_level, args.window_width)
    # Said before the first image, not as an error row on each one.
    from ._errors import checked_number
    from .subtract import checked_margin_mm, checked_threshold_hu

    checked_threshold_hu(args.threshold_hu, "--threshold-hu")
    if args.margin_mm is not None:
        checked_margin_mm(args.margin_mm, "--margin-mm")
    checked_number(args.min_area_mm2, "--min-area-mm2", 0.0)
    seeds_of = {}
    if args.seeds:
        seeds, extra = _read_seeds(args.seeds)
        matches = _match_seeds(images, seeds["image"], args.seeds, aliases)
        seeds_of = _seeds_of_each(images, seeds, extra, matches)
        unmatched = [key for key, matching in matches.items() if not matching]
        if unmatched:
            print(f"warning: {args.seeds} has seeds for {len(unmatched)} image(s) not given here, not measured: "
                  f"{_listed(unmatched)} (the image column holds a file name, stem or path)", file=sys.stderr)
    labels = _image_labels(images)
    # Every output is checked before the first image, not after an hour of work.
    for option, name in (("--out", args.out), ("--summary", args.summary)):
        if name and name != "-":
            try:
                os.stat(name)
            except FileNotFoundError:
                pass
            except OSError as exc:  # a name longer than the file system allows, say: not an hour later
                raise CalcinosisError(f"{option} {name}: cannot be used as a file name ({_one_line(exc)})") from None
    if args.out and Path(args.out).is_dir():
        raise CalcinosisError(f"--out {args.out} is a folder: give the CSV file to write, e.g. {Path(args.out) / 'lesions.csv'}")
    if args.summary and Path(args.summary).is_dir():
        raise CalcinosisError(f"--summary {args.summary} is a folder: give the CSV file to write, e.g. "
                              f"{Path(args.summary) / 'per_image.csv'}")
    csv_files = [Path(p) for p in (args.out, args.summary) if p and p != "-"]
    outputs = list(csv_files)
    if len(set(map(os.path.abspath, outputs))) < len(outputs):
        raise CalcinosisError("--out and --summary name one file: give each its own")
    if args.resume and not args.out:
        raise CalcinosisError("--resume carries on a run that wrote --out: give the same --out (and arguments)")
    mask_names = _mask_names(images) if args.masks else {}
    keys = {path: str(path.resolve()) for path in images}  # the path column's values
    done, partials, remeasured, resumed = (_measured_before(args.out, keys, labels, seeds_of, mask_names, args.masks)
                                           if args.resume else ({}, [], frozenset(), []))
    from .pipeline import software_label

    software = software_label()  # first: another version may word its settings otherwise
    other_software = sorted({str(s) for rows in done.values() for s in rows["software"].dropna()} - {software})
    if other_software:
        raise CalcinosisError(f"--resume: {_listed(map(str, partials), 2)} were measured by {other_software[0]}, this "
                              f"run is {software}: measure again without --resume, so that one table's numbers come "
                              "from one version")
    refusal = _settings_refusal(done, partials, args)  # with the model, what makes a resumed run's rows one table
    if refusal:
        raise CalcinosisError(refusal)
    earlier = _partial_files(args.out) if args.out and not args.resume else []
    if earlier:
        print(f"note: {_listed(map(str, earlier), 2)} hold(s) an interrupted run's rows: the same command with "
              "--resume would carry it on; this run measures every image", file=sys.stderr)
    to_measure = [path for path in images if keys[path] not in done]
    # (the masks of an image measured again are those the interrupted run wrote: replaced)
    outputs += [p for path in to_measure if args.masks and path not in remeasured
                for p in _mask_paths(Path(args.masks), mask_names[path])]
    _refuse_existing(outputs, args.overwrite)
    for output in csv_files:
        _make_folder(output.parent, "output")
    if args.masks:
        _make_folder(Path(args.masks), "masks")
    model = load_model(args.model, device=args.device)  # once per run, not per image
    caveat = model_caveat(model)  # a model whose own validation says it segments badly
    if caveat:
        print(f"warning: {args.model}: {caveat} (said in the warnings of every row it measures)", file=sys.stderr)
    # Which network segmented the bone, on every row: a trial's numbers name their model.
    from .segment import model_label as label_of

    model_label = label_of(model)
    other_models = sorted({str(m) for rows in done.values() for m in rows["model"].dropna()} - {model_label})
    if other_models:
        same_file = other_models[0].split(" (sha256 ")[0] == model_label.split(" (sha256 ")[0]
        raise CalcinosisError(f"--resume: {_listed(map(str, partials), 2)} were measured with the model "
                              f"{other_models[0]}, this run uses {model_label}: "
                              + ("the file has changed since (retrained, replaced, or another release's bundled "
                                 "model): measure again without --resume" if same_file else
                                 "give the same --model, or measure again without --resume"))
    for note in resumed:
        print(note, file=sys.stderr)
    frames: list = []
    digests: dict = {}
    try:
        with _sigterm_interrupts():
            # (digests only for a partial file, which only --out has)
            failed = _quantify_each(to_measure, labels, seeds_of, mask_names, model, args, frames, remeasured,
                                    digests if args.out else None)
    except KeyboardInterrupt:
        # What was measured before Ctrl-C (or a scheduler's SIGTERM) is kept, beside the output
        # rather than in its place.
        if args.out and frames:
            partial = _partial_path(args.out)
            rows = pd.concat(frames, ignore_index=True).assign(model=model_label, software=software)
            _write_csv(rows.assign(**{FILE_DIGEST: rows["path"].map(digests)}), partial)
            print(f"interrupted after {len(frames) + len(done)} of {len(images)} image(s): wrote the "
                  f"{len(frames)} this run measured to {partial}" + (f" (the others are in {_listed(map(str, partials), 2)}"
                  "; --resume takes them all)" if partials else "; --resume carries on"), file=sys.stderr)
        raise
    new = dict(zip(to_measure, frames))  # one table per image measured, in its order
    tables = [done[keys[path]] if keys[path] in done else new[path] for path in images]
    out = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=OUTPUT_COLUMNS)
    out["model"], out["software"] = model_label, software
    if args.out:
        _write_csv(out, args.out, args.overwrite)
        n_ok = int((out["status"] == "ok").sum())
        from .measure import NEAR_RESOLUTION_PX

        n_near = int(((out["status"] == "ok") & out["near_resolution"].eq(True)).sum())
        near = (f", {n_near} of them under {NEAR_RESOLUTION_PX:g} pixels wide: uncertain areas (near_resolution)"
                if n_near else "")
        print(f"wrote {len(out)} rows ({n_ok} lesions measured{near}) for {len(images)} image(s) to {args.out}",
              file=sys.stderr)
        for partial in partials:  # every row of theirs is of this run's images, now in the output
            partial.unlink()
        if partials:
            print(f"removed {_listed(map(str, partials), 3)}: their rows are in {args.out}", file=sys.stderr)
    else:
        _csv_to_stdout(out)
    if args.summary:
        summary = _per_image(out)
        if args.summary == "-":
            _csv_to_stdout(summary)
        else:
            _write_csv(summary, args.summary, args.overwrite)
            print(f"wrote one row per image ({len(images)}) with its total area to {args.summary}", file=sys.stderr)
        left = [column for column in out.columns if column not in OUTPUT_COLUMNS and column not in summary.columns]
        if left:  # a reader's total written on an image's first line only, say: not carried without a word
            print(f"note: --summary leaves out the seeds file's column(s) {_listed(left, 4)}: they differ between an "
                  "image's seeds (an empty cell counts as a value), so they are not one value per image; they are on "
                  "every row of the per-seed table", file=sys.stderr)
    # The rows not measured, by status, so that a lab sees them without filtering the CSV.
    not_ok = out["status"].astype(str).str.split(":").str[0]
    # (a second seed on a deposit is counted once, not lost: README)
    not_ok = not_ok[~not_ok.isin(["ok", "no_deposit_found", "duplicate_seed"])].value_counts()
    if len(not_ok):
        listed = ", ".join(f"{n} {status}" for status, n in not_ok.items())
        print(f"{int(not_ok.sum())} row(s) not measured: {listed} (the status column says which)", file=sys.stderr)
    warned = sorted({label for label, text in zip(out["image"], out["warnings"]) if isinstance(text, str) and text})
    if warned:
        print(f"{len(warned)} of {len(images)} image(s) have warnings (the warnings column): check them before "
              "reporting their numbers", file=sys.stderr)
    measured = set(out.loc[~out["status"].astype(str).str.startswith("error"), "image"])
    automatic = [labels[path] for path, (image_seeds, _) in seeds_of.items()
                 if image_seeds is None and labels[path] in measured]
    if automatic:
        print(f"{len(automatic)} image(s) had no seeds in {args.seeds} and were measured in automatic mode (the mode "
              f"column says which rows): {_listed(automatic, 3)}", file=sys.stderr)
    if not args.seeds and failed < len(images):
        print("note: without --seeds every candidate deposit was measured (automatic mode), a first look: on images "
              "from unknown sources it also measures some arteries and the nail and misses some deposits (bright "
              "things lying against the air or parted from the finger by it, such as splints, rings and the CT "
              "table, are left out: status outside_finger; so "
              "are specks no brighter than the image's noise: below_noise, and long thin lines along the bone, "
              "most likely calcified arteries: vessel_like); give "
              "--seeds for numbers you report", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(images)} image(s) failed; see the rows whose status starts with 'error'", file=sys.stderr)
    return 1 if failed else 0


def bundled_sample_path() -> Path:
    return Path(__file__).parent / "data" / "sample_finger.dcm"


def cmd_demo(args) -> int:
    from .pipeline import quantify
    from .segment import load_model

    out_dir = Path(args.out)
    csv, png = out_dir / "sample_finger_lesions.csv", out_dir / "sample_finger_overlay.png"
    _refuse_existing([csv, png], args.overwrite)
    _make_folder(out_dir, "output")
    sample = bundled_sample_path()
    seeds = pd.read_csv(sample.with_name("sample_finger_seeds.csv"))
    truth = pd.read_csv(sample.with_name("sample_finger_truth.csv"))
    model = load_model(None, device=args.device)
    print(f"sample: {sample.name}  model: {model.path.name} ({model.card.get('architecture', {}).get('encoder_name')})")
    t0 = time.monotonic()
    result = quantify(sample, list(zip(seeds["row"], seeds["col"])), model=model, device=args.device)
    elapsed = time.monotonic() - t0
    table = result.table
    show = table[["lesion_id", "seed_row", "seed_col", "area_mm2", "long_axis_mm", "short_axis_mm", "ellipse_area_mm2", "status"]].copy()
    show.insert(4, "true_area_mm2", truth["area_mm2"].to_numpy()[: len(show)])
    with pd.option_context("display.width", 140, "display.max_columns", 20, "display.float_format", "{:.2f}".format):
        print(show.to_string(index=False))
    print(f"pixel spacing {result.image.spacing_mm[0]:.3f} x {result.image.spacing_mm[1]:.3f} mm; "
          f"total calcinosis area {result.total_area_mm2:.2f} mm^2 (true {truth['area_mm2'].sum():.2f} mm^2); {elapsed:.1f} s")
    # the rows quantify writes of the same image and seeds: its columns, in its order
    from .pipeline import settings_label, software_label
    from .segment import model_label

    rows = table.assign(image=sample.name, path=str(sample.resolve()), mode="seeded",
                        warnings="; ".join(result.warnings), model=model_label(model), settings=settings_label(),
                        software=software_label())
    _write_csv(rows.reindex(columns=OUTPUT_COLUMNS), csv)
    write_overlay(png, result)
    print(f"wrote {csv} and {png}")
    return 0


def write_overlay(path, result) -> Path:
    """A PNG of the image in the bone window with bone (cyan) and lesion (red) outlines and seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = result.image
    rows, cols = image.shape
    extent = (-0.5 * image.spacing_mm[1], (cols - 0.5) * image.spacing_mm[1], (rows - 0.5) * image.spacing_mm[0], -0.5 * image.spacing_mm[0])
    fig, ax = plt.subplots(figsize=(8, 8 * rows / cols + 0.6))
    ax.imshow(image.to_uint8(), cmap="gray", extent=extent, interpolation="nearest")
    yy = (np.arange(rows)) * image.spacing_mm[0]
    xx = (np.arange(cols)) * image.spacing_mm[1]
    ax.contour(xx, yy, result.bone_mask.astype(float), [0.5], colors="cyan", linewidths=0.8)
    if result.lesion_labels.any():
        ax.contour(xx, yy, (result.lesion_labels > 0).astype(float), [0.5], colors="red", linewidths=0.8)
    t = result.table
    ok = t["seed_row"].notna()
    ax.plot(t.loc[ok, "seed_col"] * image.spacing_mm[1], t.loc[ok, "seed_row"] * image.spacing_mm[0], "+", color="yellow", ms=8)
    for _, r in t[t["lesion_id"] > 0].drop_duplicates("lesion_id").iterrows():
        ax.annotate(f"{int(r.lesion_id)}: {r.area_mm2:.1f} mm²", (r.centroid_col * image.spacing_mm[1], r.centroid_row * image.spacing_mm[0]),
                    xytext=(6, -6), textcoords="offset points", color="yellow", fontsize=8)
    ax.set_xlabel("mm")
    ax.set_ylabel("mm")
    ax.set_title(f"{image.name}: bone (cyan), calcinosis (red), seeds (+)")
    fig.tight_layout()
    try:
        with atomic_output(path) as temporary:
            fig.savefig(temporary, dpi=110)
    finally:
        plt.close(fig)
    return Path(path)


def cmd_train(args) -> int:
    from .io import _checked_window
    from .train import POOR_DICE, train_segmenter

    if not args.phantoms and not (args.images and args.masks):
        raise CalcinosisError("train needs --images DIR --masks DIR, or --phantoms N")
    if args.phantoms and (args.images or args.masks):
        raise CalcinosisError("give --images DIR --masks DIR or --phantoms N, not both: one run trains on one of them")
    if args.seed < 0:
        raise CalcinosisError(f"--seed must be 0 or more (got {args.seed})")
    if args.stop_at_dice is not None and not 0.0 < args.stop_at_dice <= 1.0:
        raise CalcinosisError(f"--stop-at-dice is a Dice between 0 and 1, e.g. 0.98 (got {args.stop_at_dice:g})")
    _checked_window(args.window_level, args.window_width)
    from .segment import model_file
    from .train import _checkpoint_path, refuse_folder

    refuse_folder(args.out, "--out")  # before the checks below, which would take '..' for a model
    model_path = model_file(args.out)
    checkpoint = _checkpoint_path(model_path)
    if not (args.resume or args.overwrite):
        # A model someone trained for hours, or a run cut short before its first model, is not
        # replaced by a new run by accident.
        for path, what in ((model_path, "a trained model"), (checkpoint, "the checkpoint of an unfinished run")):
            if path.exists():
                raise CalcinosisError(
                    f"{path} already exists ({what}): give --resume to carry on training it, --overwrite to start "
                    "a new model in its place, or choose another --out"
                )
    bar_state = {"last": 0.0}

    def shown(dice):  # no validation yet: nothing to show
        return f"{dice:.4f}" if dice >= 0 else "-"

    def progress(p):
        now = time.monotonic()
        # steps and images read one by one: a line every 2 s, overwritten in a terminal
        count = re.fullmatch(r"(?:reading|preparing) images (\d+)/(\d+)", p.message) if p.phase == "data" else None
        counting = p.phase == "train" or count is not None
        last = p.step == p.total_steps if p.phase == "train" else count is not None and count[1] == count[2]
        if counting and now - bar_state["last"] < 2.0 and not last:
            return
        bar_state["last"] = now
        if p.phase == "data":
            msg = p.message
        elif p.phase in ("done", "cancelled"):
            msg = f"{p.phase}: best validation Dice {shown(p.best_val_dice)}"
        elif p.phase == "validate" and p.epoch == 0:
            msg = f"the model it starts from: validation Dice {p.val_dice:.4f} (the one to beat)"
        else:
            msg = (f"epoch {p.epoch}/{p.epochs} step {p.step}/{p.total_steps} loss {p.loss:.4f} "
                   f"val Dice {shown(p.val_dice)} best {shown(p.best_val_dice)} ETA {p.eta_s / 60:.1f} min [{p.device}]")
        end = "\n" if not counting or not sys.stderr.isatty() or last else ""
        print(("\r" if sys.stderr.isatty() else "") + msg.ljust(100), end=end, file=sys.stderr, flush=True)

    command = "napari-calcinosis " + " ".join(sys.argv[1:]) if sys.argv and "train" in sys.argv else ""
    # Ctrl+C is the command line's Cancel (train_segmenter's own): training stops after the step
    # under way, keeps its best model and writes a checkpoint to --resume from.
    result = train_segmenter(
        args.out, images_dir=args.images, masks_dir=args.masks, pixel_size_mm=args.pixel_size,
        n_phantoms=args.phantoms, n_val=args.val_phantoms, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, crop_px=args.crop_px, steps_per_epoch=args.steps_per_epoch, device=args.device,
        resume=args.resume, init_model=args.init, seed=args.seed, progress=progress, command=command,
        checkpoint_every_s=args.checkpoint_every, val_every=args.val_every, stop_at_val_dice=args.stop_at_dice,
        window_level_hu=args.window_level, window_width_hu=args.window_width,
    )
    if result.best_epoch < 0:
        older = f"; {result.model_path} still holds an earlier run's model" if result.model_path.exists() else ""
        print(f"{result.ended}: this run saved no model{older}", file=sys.stderr)
    else:
        print(f"best validation Dice {result.best_val_dice:.4f} at epoch {result.best_epoch}; model written to "
              f"{result.model_path} ({result.ended})")
    if result.best_epoch >= 0 and result.validated_on_training:
        print("note: with one image/mask pair the validation Dice is measured on the image trained on, which says "
              "nothing of other images", file=sys.stderr)
    if result.best_epoch >= 0 and result.best_val_dice < POOR_DICE:
        print(f"warning: a validation Dice of {result.best_val_dice:.2f} is poor: check the masks (bone non-zero, "
              "matching their images) and the pixel size before using this model", file=sys.stderr)
    if result.interrupted:
        print(f"{'terminated (SIGTERM)' if result.interrupted_by == 'SIGTERM' else 'interrupted'}: "
              + ("a checkpoint was written; give the same command with --resume to carry on"
                 if checkpoint.exists() else "before the first step, nothing to resume"), file=sys.stderr)
        return 143 if result.interrupted_by == "SIGTERM" else 130
    return 0


def cmd_sample(args) -> int:
    from .io import write_dicom, write_windowed_png
    from .phantom import make_phantom

    if args.n < 1:
        raise CalcinosisError(f"-n is the number of phantoms to write: give 1 or more (got {args.n})")
    if args.seed < 0:
        raise CalcinosisError(f"--seed must be 0 or more: phantom seeds are SEED, SEED+1, ... (got {args.seed})")
    out = Path(args.out)
    stems = [f"phantom_{args.seed + i:06d}" for i in range(args.n)]
    _refuse_existing(
        [out / name for name in ("truth.csv", "seeds.csv")]
        + [path for stem in stems for path in (out / f"{stem}.dcm", out / f"{stem}.png",
                                               out / "masks" / f"{stem}_bone.png", out / "masks" / f"{stem}_lesions.png")],
        args.overwrite,
    )
    _make_folder(out / "masks", "output")
    truth_rows, seed_rows = [], []
    bar = _Progress(args.n, "phantoms")
    for i in range(args.n):
        seed = args.seed + i
        p = make_phantom(seed)
        stem = f"phantom_{seed:06d}"
        write_dicom(out / f"{stem}.dcm", p.image_hu, p.spacing_mm, patient_id=stem,
                    description=f"napari-calcinosis synthetic phantom, seed {seed}")
        write_windowed_png(out / f"{stem}.png", p.image_hu)
        _write_image((p.bone_mask * 255).astype(np.uint8), out / "masks" / f"{stem}_bone.png")
        _write_image(p.lesion_labels.astype(np.uint16), out / "masks" / f"{stem}_lesions.png")
        for j in range(p.n_lesions):
            truth_rows.append(dict(
                image=stem, lesion_id=j + 1, area_mm2=p.lesion_areas_mm2[j], site=p.lesion_sites[j],
                peak_hu=p.lesion_peak_hu[j], seed_row=int(p.seeds[j, 0]), seed_col=int(p.seeds[j, 1]),
                cut_off=p.cut_off, spacing_mm=p.spacing_mm[0], phantom_seed=seed,
            ))
            seed_rows.append(dict(image=stem, row=int(p.seeds[j, 0]), col=int(p.seeds[j, 1])))
        bar.update(stem)
    _write_csv(pd.DataFrame(truth_rows), out / "truth.csv")
    _write_csv(pd.DataFrame(seed_rows, columns=["image", "row", "col"]), out / "seeds.csv")
    print(f"wrote {args.n} phantoms (DICOM + PNG exported at W1500/L450), masks/, truth.csv and seeds.csv to {out}")
    return 0


def _nan_as_none(value):
    """``value`` (dicts and lists of numbers) with NaN and infinities as None, JSON's null."""
    if isinstance(value, dict):
        return {k: _nan_as_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_as_none(v) for v in value]
    return None if isinstance(value, float) and not np.isfinite(value) else value


def cmd_agreement(args) -> int:
    import json

    from .stats import (agreement, agreement_without, check_plot_path, format_p, plot_agreement, shared_unit,
                        table_pairs)

    args.x, args.y = args.x.strip(), args.y.strip()
    if args.plot:
        check_plot_path(args.plot)
        _refuse_existing([args.plot], args.overwrite)
    table = read_csv_or_refuse(args.csv)
    for col in (args.x, args.y):
        if col not in table.columns:
            raise CalcinosisError(f"{args.csv} has no column {col!r}; its columns are: {', '.join(map(str, table.columns))}")
    twins = [col for col in dict.fromkeys((args.x, args.y)) if f"{col}.1" in table.columns]  # pandas' name for a second
    if args.x == args.y:
        twin = f" (the file's second column of that name reads as {args.x + '.1'!r})" if twins else ""
        raise CalcinosisError(f"--x and --y are both {args.x!r}: give the two different columns to compare{twin}")
    for col in twins:
        print(f"note: {args.csv} has two columns named {col!r}: the first is used; the second reads as {col + '.1'!r}",
              file=sys.stderr)
    pairs = table_pairs(table, args.x, args.y, args.csv)
    x, y = pairs.x, pairs.y
    result = agreement(x, y, x_label=args.x, y_label=args.y)
    # a quantify table's deposits too narrow to trust: how the rest agree
    without = agreement_without(x, y, pairs.near_resolution, x_label=args.x, y_label=args.y)
    unit = shared_unit(args.x, args.y) if args.unit is None else args.unit
    if args.plot:
        with atomic_output(args.plot) as temporary:
            plot_agreement(x, y, temporary, x_label=args.x, y_label=args.y, unit=unit)
    if args.json:
        extra = {"without_near_resolution": {**without[0].to_dict(), "left_out": without[1]}} if without else {}
        # NaN (a proportional bias not defined) is not JSON: null
        print(json.dumps(_nan_as_none({**result.to_dict(), "unit": unit, "dropped": pairs.dropped,
                                       "missing_words": pairs.missing_words,
                                       "duplicate_seeds_left_out": pairs.duplicate_seeds, **extra})))
    else:
        r = result
        u = f" {unit}" if unit else ""
        print(f"n = {r.n} pairs ({pairs.dropped_text()}); x = {args.x}, y = {args.y}")
        if pairs.duplicate_seeds:
            print(pairs.duplicate_text())
        print(f"Spearman's rho {r.spearman_rho:.3f} ({format_p(r.spearman_p)})")
        print(f"Lin's CCC {r.ccc:.3f} (95 % CI {r.ccc_ci_low:.3f} to {r.ccc_ci_high:.3f})")
        print(f"Bland-Altman bias (x - y) {r.ba_bias:.2f}{u} (95 % CI {r.ba_bias_ci_low:.2f} to {r.ba_bias_ci_high:.2f}), "
              f"SD {r.ba_sd:.2f}; limits of agreement {r.ba_loa_low:.2f} to {r.ba_loa_high:.2f}{u} (95 % CIs "
              f"{r.ba_loa_low_ci_low:.2f} to {r.ba_loa_low_ci_high:.2f} and {r.ba_loa_high_ci_low:.2f} to "
              f"{r.ba_loa_high_ci_high:.2f})")
        if np.isfinite(r.ba_proportional_slope):
            print(f"proportional bias: slope {r.ba_proportional_slope:.3f} of the difference on the mean "
                  f"({format_p(r.ba_proportional_p)})")
        else:
            print("proportional bias: not defined (x + y is the same in every pair, so the means do not spread)")
        if without:
            w, left_out = without
            print(f"without the {left_out} near_resolution deposit(s) (too narrow for their areas to be trusted): "
                  f"n = {w.n}, Lin's CCC {w.ccc:.3f} (95 % CI {w.ccc_ci_low:.3f} to {w.ccc_ci_high:.3f}), bias "
                  f"{w.ba_bias:.2f}{u}, limits of agreement {w.ba_loa_low:.2f} to {w.ba_loa_high:.2f}{u}")
    if args.plot:
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def cmd_validate(args) -> int:
    from .validation import check_study, report_paths, run_validation

    check_study(args.n, args.seed)
    _refuse_existing(report_paths(args.out), args.overwrite)
    _make_folder(Path(args.out), "output")  # a file of that name: said now, not after the whole study
    bar = _Progress(args.n, "phantoms")
    result = run_validation(args.n, args.seed, args.out, device=args.device, progress=lambda i, n: bar.update())
    for name, a in result["stats"].items():
        print(f"{name:32s} n={a.n:3d}  rho {a.spearman_rho:.3f}  CCC {a.ccc:.3f} ({a.ccc_ci_low:.3f}-{a.ccc_ci_high:.3f})  "
              f"bias {a.ba_bias:+.2f} mm^2  LoA {a.ba_loa_low:.2f} to {a.ba_loa_high:.2f} mm^2")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-calcinosis",
        description="Measure calcinosis cutis on DECT finger images (Chandrasekaran et al. 2021 method).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add_device(p):
        p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")

    def add_overwrite(p):
        p.add_argument("--overwrite", action="store_true",
                       help="replace existing output files (without it, an existing output is an error)")

    def add_window(p):
        p.add_argument("--window-level", type=float, default=WINDOW_LEVEL_HU, metavar="HU",
                       help=f"level of the window PNG/JPEG/TIFF exports were made with (default {WINDOW_LEVEL_HU:g}, the paper's)")
        p.add_argument("--window-width", type=float, default=WINDOW_WIDTH_HU, metavar="HU",
                       help=f"width of that window (default {WINDOW_WIDTH_HU:g}); DICOM files in HU ignore both, "
                            "screen-save DICOMs (secondary captures of a view) use them")

    q = sub.add_parser("quantify", help="measure deposits on images; one CSV row per lesion (or per seed)")
    q.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    q.add_argument("--recursive", "-r", action="store_true",
                   help="measure the images in the subfolders of the folders given too (a study's tree)")
    q.add_argument("--seeds", help="CSV with columns image,row,col (image = file name, stem or path; row/col in "
                   "pixels; an image named on several lines takes all their seeds)")
    q.add_argument("--pixel-size", type=float, metavar="MM", help="pixel spacing in mm for PNG/JPEG/TIFF exports")
    add_window(q)
    q.add_argument("--model", help="phalanx U-Net .safetensors (default, or 'bundled': the model that comes with "
                   "the tool)")
    add_device(q)
    q.add_argument("--out", help="output CSV (default: standard output)")
    q.add_argument("--resume", action="store_true",
                   help="carry on a run interrupted (Ctrl-C, SIGTERM): the same command with --resume keeps the "
                   "images measured in OUT.partial*.csv and measures the others")
    from .measure import NEAR_RESOLUTION_PX

    q.add_argument("--summary", metavar="CSV", help="also write one row per image: its lesions (and how many of them are "
                   f"near_resolution: under {NEAR_RESOLUTION_PX:g} pixels wide, their areas uncertain), their total area (mm²; empty for an "
                   "image that failed), the seeds not measured, its error and warnings")
    q.add_argument("--masks", metavar="DIR", help="write <stem>_bone.png and <stem>_lesions.tif per image (in "
                   "subfolders as the images' own when they lie in several folders)")
    q.add_argument("--tta", action="store_true", help="flip test-time augmentation for segmentation (4x slower; "
                   "steadier across orientations where a deposit touches the bone: use it for numbers you report)")
    q.add_argument("--threshold-hu", type=float, default=None, help="calcium threshold in HU (default 200)")
    q.add_argument("--margin-mm", type=float, default=None, help="bone margin in mm (default: measured on each image from the bone's blur halo)")
    q.add_argument("--connectivity", type=int, choices=(4, 8), default=4)
    q.add_argument("--min-area-mm2", type=float, default=None, help="automatic mode: smallest deposit (default 0.3 mm^2)")
    add_overwrite(q)
    q.set_defaults(func=cmd_quantify)

    d = sub.add_parser("demo", help="run the whole method on the bundled sample with the bundled model")
    d.add_argument("--out", default="calcinosis-demo", help="folder for the CSV and the overlay PNG")
    add_device(d)
    add_overwrite(d)
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train or fine-tune the phalanx U-Net")
    t.add_argument("--images", help="folder of images (DICOM/PNG/JPEG/TIFF)")
    t.add_argument("--masks", help="folder of bone masks named like the images (stem, stem_bone or stem_mask)")
    t.add_argument("--pixel-size", type=float, metavar="MM", help="pixel spacing for PNG/JPEG/TIFF training images")
    add_window(t)
    t.add_argument("--phantoms", type=int, help="train on N synthetic phantoms instead")
    t.add_argument("--val-phantoms", type=int, help="number of validation phantoms (default N/10, at least 4)")
    t.add_argument("--out", required=True, help="output .safetensors (card .json and checkpoint written beside it)")
    t.add_argument("--epochs", type=int, default=50)
    t.add_argument("--steps-per-epoch", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--crop-px", type=int, default=192, help="square training crops at 0.25 mm/px (default 192 = 48 mm)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init", help="fine-tune from this .safetensors model ('bundled': the model that comes with "
                   "the tool)")
    add_overwrite(t)
    t.add_argument("--resume", action="store_true",
                   help="carry on from the checkpoint beside --out, with the same data and settings (more --epochs allowed)")
    t.add_argument("--checkpoint-every", type=float, default=30.0, metavar="SECONDS",
                   help="also checkpoint within an epoch this often (default 30 s; 0 = every step)")
    t.add_argument("--val-every", type=int, default=1, metavar="EPOCHS", help="validate every this many epochs (default 1)")
    t.add_argument("--stop-at-dice", type=float, default=None, metavar="DICE",
                   help="stop once the validation Dice reaches this value, e.g. 0.98")
    add_device(t)
    t.set_defaults(func=cmd_train)

    a = sub.add_parser("agreement", help="Spearman, Lin's CCC with 95 %% CI and Bland-Altman for two columns of a CSV")
    a.add_argument("csv")
    a.add_argument("--x", required=True, help="first measurement column (differences are x - y)")
    a.add_argument("--y", required=True, help="second measurement column")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.add_argument("--plot", help="write the scatter and Bland-Altman plots (PNG or SVG)")
    a.add_argument("--unit", help="unit of both columns, for the output and the plot (default: from the column "
                   "names: mm² for *_mm2, mm for *_mm, HU for *_hu, else none)")
    add_overwrite(a)
    a.set_defaults(func=cmd_agreement)

    v = sub.add_parser("validate", help="the paper's validation study on phantoms: pipeline and simulated radiologists vs truth")
    v.add_argument("--n", type=int, default=31, help="number of phantoms (the paper had 31 test images)")
    v.add_argument("--seed", type=int, default=3_000_000, help="phantom seeds SEED..SEED+n-1 (training used 1,000,000+)")
    v.add_argument("--out", default="calcinosis-validation", help="folder for report.md, lesions.csv and plots")
    add_device(v)
    add_overwrite(v)
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser("sample", help="write synthetic phantoms as DICOM + windowed PNG with truth.csv and seeds.csv")
    s.add_argument("--out", required=True, metavar="FOLDER",
                   help="folder to write the phantoms (DICOM and PNG), truth.csv, seeds.csv and masks/ to")
    s.add_argument("-n", type=int, default=10, help="how many phantoms (default 10)")
    s.add_argument("--seed", type=int, default=0, help="phantom seeds are SEED, SEED+1, ...")
    add_overwrite(s)
    s.set_defaults(func=cmd_sample)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "quantify":
        from .grow import DEFAULT_MIN_AREA_MM2
        from .subtract import DEFAULT_THRESHOLD_HU

        args.threshold_hu = DEFAULT_THRESHOLD_HU if args.threshold_hu is None else args.threshold_hu
        args.min_area_mm2 = DEFAULT_MIN_AREA_MM2 if args.min_area_mm2 is None else args.min_area_mm2
    try:
        return int(args.func(args) or 0)
    except CalcinosisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of standard output has gone (| head): what it did not read is not wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
