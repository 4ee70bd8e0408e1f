"""The catalogue of bad inputs (docs/robustness.md): each one gives its documented outcome.

Entries already covered next to the code they exercise are not repeated here: see the
"test" column of docs/robustness.md.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file

from napari_calcinosis import CalcinosisError, CalcinosisImage, grow_lesions, make_phantom, quantify, read_image
from napari_calcinosis.io import (
    MAX_FIELD_OF_VIEW_MM,
    MAX_IMAGE_PIXELS,
    MIN_IMAGE_SIDE_PX,
    atomic_output,
    check_measurable,
    write_dicom,
    write_windowed_png,
)


def _error_of(call, *args, **kwargs) -> str:
    with pytest.raises(CalcinosisError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message  # the CLI prints it on one line
    return message


def _ramp_hu(shape=(40, 64)) -> np.ndarray:
    return np.tile(np.linspace(-200.0, 1500.0, shape[1]), (shape[0], 1))


# ---- broken files --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        # NumberOfFrames holds '1A': a bad value for its VR (IS, integer string)
        ("badVR.dcm", ["Number of Frames (0028,0008)", "'1A'", "not a whole number", "export"]),
        # file meta without a transfer syntax, and no image description at all
        ("meta_missing_tsyntax.dcm", ["lacks", "Bits Allocated", "export it again"]),
    ],
)
def test_broken_pydicom_files_name_what_is_wrong(name, words):
    message = _error_of(read_image, get_testdata_file(name))
    assert name in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("name", "syntax", "install"),
    [
        ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless", "pylibjpeg-libjpeg"),
        ("JPEG-lossy.dcm", "JPEG Extended", "pylibjpeg-libjpeg"),  # 12-bit: beyond Pillow
    ],
)
def test_compressed_dicom_without_a_decoder_says_what_to_install(name, syntax, install):
    path = get_testdata_file(name)
    try:
        read_image(path, pixel_size_mm=0.3)
    except CalcinosisError as exc:
        message = str(exc)
    else:
        pytest.skip(f"a decoder for {syntax} is installed here")
    assert name in message and syntax in message
    assert f"pip install pylibjpeg {install}" in message
    assert "export the slice uncompressed" in message


def test_compressed_dicom_with_a_decoder_is_read():
    # JPEG 2000 and 8-bit JPEG decode through Pillow, a dependency of the package.
    path = get_testdata_file("693_J2KI.dcm")
    image = read_image(path)
    assert image.shape == (512, 512) and np.isfinite(image.pixels_hu).all()
    assert image.value_origin == "DICOM RescaleSlope/Intercept"


@pytest.mark.parametrize("name", ["empty.dcm", "empty.png", "empty"])
def test_zero_byte_file_is_refused_whatever_its_name(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    message = _error_of(read_image, path, pixel_size_mm=0.2)
    assert name in message and "empty (0 bytes)" in message


@pytest.mark.parametrize("name", ["seeds.dcm", "notes.png", "report"])
def test_text_file_named_like_an_image_is_refused_as_text(tmp_path, name):
    path = tmp_path / name
    path.write_text("image,row,col\nfinger_01,120,88\n")
    message = _error_of(read_image, path, pixel_size_mm=0.2)
    assert name in message and "is a text file" in message and "'image,row,col'" in message


# ---- image sizes ---------------------------------------------------------------------


def test_one_pixel_image_is_read_but_not_measured(tmp_path):
    path = tmp_path / "dot.png"
    Image.fromarray(np.array([[128]], np.uint8)).save(path)
    image = read_image(path, pixel_size_mm=0.2)
    assert image.shape == (1, 1)
    message = _error_of(quantify, image, [(0, 0)])
    assert "dot.png" in message and "1 x 1 px" in message
    assert f"at least {MIN_IMAGE_SIDE_PX} x {MIN_IMAGE_SIDE_PX} px" in message


def _png_claiming(path, rows: int, cols: int) -> None:
    """A small PNG whose header claims rows x cols: readers learn the size before decoding."""
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytes(data[12:29])  # b"IHDR" + 13 bytes of data
    ihdr = ihdr[:4] + struct.pack(">II", cols, rows) + ihdr[12:]
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("rows", "cols"), [(7000, 7000), (20000, 20000)])
def test_huge_png_is_refused_before_it_is_decoded(tmp_path, rows, cols):
    path = tmp_path / "huge.png"
    _png_claiming(path, rows, cols)
    message = _error_of(read_image, path, pixel_size_mm=0.1)
    assert "huge.png" in message
    assert f"{rows * cols / 1e6:.3g} megapixels" in message
    assert f"at most {MAX_IMAGE_PIXELS / 1e6:.3g} megapixels" in message and "crop it" in message


def test_huge_dicom_is_refused_before_it_is_decoded(tmp_path):
    path = write_dicom(tmp_path / "huge.dcm", np.zeros((8, 8)), 0.1)
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 10000, 10000  # the pixel data stays 8 x 8: never decoded
    ds.save_as(path)
    message = _error_of(read_image, path)
    assert "huge.dcm" in message and "10000 x 10000 px (100 megapixels)" in message


def test_huge_tiff_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    monkeypatch.setattr("napari_calcinosis.io.MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((40, 64), np.uint16))
    message = _error_of(read_image, path, pixel_size_mm=0.1)
    assert "big.tif" in message and "40 x 64 px" in message


def test_absurd_field_of_view_is_refused():
    # 300 px of 2 mm: 600 mm, not a finger; usually a pixel size in the wrong unit.
    image = CalcinosisImage(_ramp_hu((300, 100)), spacing_mm=2.0, source="finger.png")
    message = _error_of(check_measurable, image)
    assert "finger.png" in message and "600 x 200 mm" in message and "300 x 100 px of 2 x 2 mm" in message
    assert f"at most {MAX_FIELD_OF_VIEW_MM:g} mm" in message
    check_measurable(CalcinosisImage(_ramp_hu((300, 100)), spacing_mm=0.3))


# ---- pixel values --------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_pixels_are_refused_with_their_count_and_place(tmp_path, bad):
    hu = _ramp_hu().astype(np.float32)
    hu[5, 7] = hu[30, 2] = bad
    path = tmp_path / "float_hu.tif"
    tifffile.imwrite(path, hu)
    message = _error_of(read_image, path, pixel_size_mm=0.2)
    assert "float_hu.tif" in message
    assert f"2 of {hu.size} pixels are NaN or infinite (the first at row 5, col 7)" in message
    assert "-1000 HU" in message
    assert "NaN or infinite" in _error_of(CalcinosisImage, hu, 0.2)


# ---- pixel size ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -0.3, float("nan"), 5.5, 250.0])
def test_implausible_pixel_size_is_refused_with_the_plausible_range(tmp_path, bad):
    path = write_windowed_png(tmp_path / "ramp.png", _ramp_hu())
    message = _error_of(read_image, path, pixel_size_mm=bad)
    assert "ramp.png" in message and f"{bad:g} x {bad:g} mm" in message
    assert "at most 5 mm" in message and "0.15-0.35 mm" in message


def test_a_pixel_size_of_5_mm_is_still_accepted(tmp_path):
    path = write_windowed_png(tmp_path / "ramp.png", _ramp_hu())
    assert read_image(path, pixel_size_mm=5.0).spacing_mm == (5.0, 5.0)


def test_dicom_with_implausible_header_spacing_asks_for_the_pixel_size():
    path = get_testdata_file("SC_rgb_small_odd.dcm")  # a screen capture: PixelSpacing 33.3 mm
    message = _error_of(read_image, path)
    assert "33.3333 x 33.3333 mm is not a plausible pixel size" in message and "--pixel-size" in message
    assert read_image(path, pixel_size_mm=0.25).spacing_mm == (0.25, 0.25)


# ---- seeds ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(5)


def test_seeds_off_the_image_negative_or_nan_get_outside_image(phantom):
    rows, cols = phantom.image_hu.shape
    seeds = [tuple(phantom.seeds[0]), (-3, 10), (10, cols), (rows + 40, -1), (np.nan, 5), (5, np.inf)]
    grown = grow_lesions(phantom.image_hu, phantom.bone_mask, phantom.spacing_mm, seeds)
    assert list(grown.seeds["status"]) == ["ok"] + ["outside_image"] * 5
    assert (grown.lesion_labels > 0).any()


def test_non_integer_seeds_are_rounded_to_the_nearest_pixel(phantom):
    r, c = (int(v) for v in phantom.seeds[0])
    exact = grow_lesions(phantom.image_hu, phantom.bone_mask, phantom.spacing_mm, [(r, c)])
    near = grow_lesions(phantom.image_hu, phantom.bone_mask, phantom.spacing_mm, [(r + 0.4, c - 0.49)])
    np.testing.assert_array_equal(exact.lesion_labels, near.lesion_labels)
    assert (near.seeds["seed_row"][0], near.seeds["seed_col"][0]) == (r + 0.4, c - 0.49)  # kept as given


@pytest.mark.parametrize(
    ("seeds", "words"),
    [([(1, "a")], ["pairs of numbers"]), ([(1, 2, 3)], ["shape (1, 3)"]), ([1, 2, 3], ["shape (3,)"])],
)
def test_seeds_that_are_not_row_col_pairs_are_refused(phantom, seeds, words):
    message = _error_of(grow_lesions, phantom.image_hu, phantom.bone_mask, phantom.spacing_mm, seeds)
    for word in words:
        assert word in message


# ---- atomic outputs ------------------------------------------------------------------


def test_atomic_output_replaces_the_file_in_one_step(tmp_path):
    out = tmp_path / "table.csv"
    out.write_text("old\n")
    with atomic_output(out) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".csv" and temporary != out
        temporary.write_text("new\n")
        assert out.read_text() == "old\n"  # nothing visible until the block ends
    assert out.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path, error):
    out = tmp_path / "table.csv"
    out.write_text("old\n")
    with pytest.raises((CalcinosisError, KeyboardInterrupt)) as info:
        with atomic_output(out) as temporary:
            temporary.write_text("half a ta")
            raise error
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    if isinstance(error, OSError):
        assert "table.csv: cannot be written (No space left on device)" in str(info.value)


def test_atomic_output_can_refuse_to_overwrite(tmp_path):
    out = tmp_path / "table.csv"
    out.write_text("old\n")
    message = _error_of(atomic_output(out, overwrite=False).__enter__)
    assert "table.csv: already exists" in message and "--overwrite" in message
    assert out.read_text() == "old\n"


def test_a_missing_folder_is_reported_not_raised_as_oserror(tmp_path):
    message = _error_of(write_windowed_png, tmp_path / "nowhere" / "ramp.png", _ramp_hu())
    assert "ramp.png: cannot be written" in message and "folder exists" in message


@pytest.mark.parametrize("writer", ["dicom", "png"])
def test_image_writers_are_atomic(tmp_path, monkeypatch, writer):
    out = tmp_path / f"slice.{'dcm' if writer == 'dicom' else 'png'}"
    out.write_bytes(b"the previous export")

    def fail_halfway(self, path, *args, **kwargs):
        open(path, "wb").write(b"\0" * 100)
        raise OSError("disk full")

    if writer == "dicom":
        monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", fail_halfway)
        call = write_dicom
    else:
        monkeypatch.setattr(Image.Image, "save", fail_halfway)
        call = write_windowed_png
    args = (out, _ramp_hu(), 0.2) if writer == "dicom" else (out, _ramp_hu())
    assert "disk full" in _error_of(call, *args)
    assert out.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    assert "already exists" in _error_of(call, *args, overwrite=False)


def test_napari_csv_writer_is_atomic(tmp_path, monkeypatch):
    import pandas as pd

    from napari_calcinosis._reader_writer import write_lesions_csv

    out = tmp_path / "lesions.csv"
    out.write_text("lesion_id,area_mm2\n1,4.2\n")
    labels = np.zeros((20, 20), np.int32)
    labels[5:9, 5:9] = 1

    def fail_halfway(self, path, *args, **kwargs):
        open(path, "w").write("lesion_id,ar")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_halfway)
    message = _error_of(write_lesions_csv, str(out), labels, {"scale": (0.25, 0.25)})
    assert "lesions.csv: cannot be written (disk full)" in message
    assert out.read_text() == "lesion_id,area_mm2\n1,4.2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["lesions.csv"]
