"""The catalogue of bad inputs (docs/robustness.md): each one gives its documented outcome.

Entries already covered next to the code they exercise are not repeated here: see the
"test" column of docs/robustness.md.
"""

from __future__ import annotations

import struct
import time
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


def _compress_dicom(src, dst, syntax: str) -> None:
    """Recompress a DICOM file as a PACS would export it, with GDCM (a dependency)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()


@pytest.mark.parametrize(
    ("syntax", "uid"),
    [
        # the syntax most PACS exports use
        ("JPEGLosslessProcess14_1", "1.2.840.10008.1.2.4.70"),
        ("JPEGLSLossless", "1.2.840.10008.1.2.4.80"),
        ("JPEG2000Lossless", "1.2.840.10008.1.2.4.90"),
        ("RLELossless", "1.2.840.10008.1.2.5"),
    ],
)
def test_a_finger_ct_exported_compressed_reads_as_the_uncompressed_one(tmp_path, syntax, uid):
    phantom = make_phantom(seed=3)
    plain = write_dicom(tmp_path / "plain.dcm", phantom.image_hu, phantom.spacing_mm)
    _compress_dicom(plain, tmp_path / "pacs.dcm", syntax)
    assert pydicom.dcmread(tmp_path / "pacs.dcm", stop_before_pixels=True).file_meta.TransferSyntaxUID == uid
    expected, image = read_image(plain), read_image(tmp_path / "pacs.dcm")
    np.testing.assert_array_equal(image.pixels_hu, expected.pixels_hu)
    assert image.spacing_mm == expected.spacing_mm and image.value_origin == expected.value_origin


@pytest.mark.parametrize(
    "name", ["MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm"]
)
def test_pydicoms_compressed_files_read_as_their_uncompressed_twin(name):
    image = read_image(get_testdata_file(name))
    np.testing.assert_array_equal(image.pixels_hu, read_image(get_testdata_file("MR_small.dcm")).pixels_hu)


@pytest.mark.parametrize(
    ("name", "syntax", "install"),
    [
        ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless", "pylibjpeg-libjpeg"),
        ("SC_rgb_jpeg_gdcm.dcm", "JPEG Lossless", "pylibjpeg-libjpeg"),
        ("MR_small_jp2klossless.dcm", "JPEG 2000", "pylibjpeg-openjpeg"),
    ],
)
def test_compressed_dicom_without_a_decoder_says_what_to_install(monkeypatch, name, syntax, install):
    # As on a computer where python-gdcm, a dependency, could not be installed.
    from pydicom.pixels import get_decoder

    import napari_calcinosis.io

    path = get_testdata_file(name)
    decoder = get_decoder(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(napari_calcinosis.io, "_gdcm_installed", lambda: False)
    message = _error_of(read_image, path, pixel_size_mm=0.3)
    assert name in message and syntax in message and "no installed decoder can read" in message
    assert f"install a decoder (pip install python-gdcm, or pip install pylibjpeg {install})" in message
    assert "export the slice uncompressed" in message


def test_12_bit_lossy_jpeg_is_refused_with_each_decoders_reason():
    # JPEG Extended with 12-bit samples: neither GDCM (through pydicom) nor Pillow decodes it;
    # pylibjpeg-libjpeg (GPL, not a dependency) would.
    import importlib.util

    if importlib.util.find_spec("libjpeg") is not None:
        pytest.skip("pylibjpeg-libjpeg is installed here: it decodes 12-bit JPEG")
    message = _error_of(read_image, get_testdata_file("JPEG-lossy.dcm"), pixel_size_mm=0.3)
    assert "JPEG-lossy.dcm" in message and "JPEG Extended" in message
    reasons = message.split("which no installed decoder can read (")[1].split("); install")[0]
    assert "gdcm: " in reasons and "; pillow: " in reasons and "12-bit" in reasons  # each decoder's own reason
    assert "install a decoder (pip install pylibjpeg pylibjpeg-libjpeg)" in message
    assert "export the slice uncompressed" in message



def test_damaged_compressed_pixel_data_is_called_damaged_not_a_missing_decoder():
    # pydicom's JPEG 2000 file whose data holds a stray sequence delimiter: GDCM and Pillow fail on
    # it, and the user was sent to install a decoder, which cannot help
    from napari_calcinosis.io import _gdcm_installed

    if not _gdcm_installed():
        pytest.skip("python-gdcm, a dependency, is not installed here")
    message = _error_of(read_image, get_testdata_file("JPEG2000-embedded-sequence-delimiter.dcm"), pixel_size_mm=0.3)
    assert "JPEG 2000" in message and "which the installed decoders read, but they failed on this file (" in message
    assert message.endswith("its compressed data is likely damaged: export the slice again (uncompressed, Explicit "
                            "VR Little Endian, if it fails again)")
    assert "install" not in message.replace("installed", "")

@pytest.mark.parametrize(
    ("name", "shape", "origin"),
    [("693_J2KI.dcm", (512, 512), "DICOM RescaleSlope/Intercept"), ("SC_rgb_jpeg_dcmtk.dcm", (100, 100), "YBR_FULL")],
)
def test_compressed_dicom_with_a_decoder_is_read(name, shape, origin):
    image = read_image(get_testdata_file(name))
    assert image.shape == shape and np.isfinite(image.pixels_hu).all()
    assert image.value_origin.startswith(origin)


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
    assert "ramp.png" in message and f"pixel_size_mm of {bad:g} mm is not a plausible pixel size" in message
    assert "at most 5 mm" in message and "0.15-0.35 mm" in message


def test_a_pixel_size_of_5_mm_is_still_accepted(tmp_path):
    path = write_windowed_png(tmp_path / "ramp.png", _ramp_hu())
    assert read_image(path, pixel_size_mm=5.0).spacing_mm == (5.0, 5.0)


def test_dicom_with_implausible_header_spacing_asks_for_the_pixel_size():
    path = get_testdata_file("SC_rgb_small_odd.dcm")  # a screen capture: PixelSpacing 33.3 mm
    message = _error_of(read_image, path)
    assert "PixelSpacing of 33.3333 mm is not a plausible pixel size" in message and "--pixel-size" in message
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
    assert "ramp.png: cannot be written (No such file or directory)" in message and "folder exists" in message
    assert ".partial" not in message


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
    # an earlier table is not replaced: napari's dialog asks about the name as typed ('lesions'),
    # and '.csv' is added after it
    for given in (out, tmp_path / "lesions"):
        message = _error_of(write_lesions_csv, str(given), labels, {"scale": (0.25, 0.25)})
        assert f"{out}: already exists, not replaced" in message
    assert out.read_text() == "lesion_id,area_mm2\n1,4.2\n"

    def fail_halfway(self, path, *args, **kwargs):
        open(path, "w").write("lesion_id,ar")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_halfway)
    message = _error_of(write_lesions_csv, str(tmp_path / "new.csv"), labels, {"scale": (0.25, 0.25)})
    assert "new.csv: cannot be written (disk full)" in message
    assert [p.name for p in tmp_path.iterdir()] == ["lesions.csv"]  # nothing half-written left


# ---- the command line: batches, seeds files, outputs ---------------------------------


@pytest.fixture
def fake_pipeline(monkeypatch):
    """The CLI with the U-Net and the pipeline stubbed: these tests are about the batch, not the method."""
    from types import SimpleNamespace

    import pandas as pd

    from napari_calcinosis import pipeline, segment

    calls = {"load_model": 0, "images": []}

    def load_model(*args, **kwargs):  # no network, but named as the bundled model is
        calls["load_model"] += 1
        return SimpleNamespace(path=segment.bundled_model_path(), card={"name": "phalanx_unet"},
                               sha256=_bundled_sha256())

    def fake_quantify(image, seeds, **kwargs):
        calls["images"].append(image.name)
        check_measurable(image)
        if image.name == "crash":
            raise RuntimeError("something unforeseen")
        seeds = seeds or [(10.0, 10.0)]
        table = pd.DataFrame({
            "image": image.name, "lesion_id": np.arange(1, len(seeds) + 1), "seed_row": [s[0] for s in seeds],
            "seed_col": [s[1] for s in seeds], "area_mm2": 1.5, "status": "ok",
        })
        return SimpleNamespace(table=table, bone_mask=np.zeros(image.shape, bool),
                               lesion_labels=np.ones(image.shape, np.int32), warnings=[])

    monkeypatch.setattr(segment, "load_model", load_model)
    monkeypatch.setattr(pipeline, "quantify", fake_quantify)
    return calls


def _bundled_sha256() -> str:
    import hashlib

    from napari_calcinosis.segment import bundled_model_path

    return hashlib.sha256(bundled_model_path().read_bytes()).hexdigest()


def _cli(capsys, *args) -> tuple[int, str]:
    from napari_calcinosis.cli import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.fixture
def batch(tmp_path):
    """good_1.png, a text file named bad.dcm, a 1-pixel dot.png, crash.png, good_2.png and their seeds."""
    import pandas as pd

    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("good_1", "crash", "good_2"):
        write_windowed_png(folder / f"{name}.png", _ramp_hu((64, 64)))
    (folder / "bad.dcm").write_text("not an image\n")
    Image.fromarray(np.array([[128]], np.uint8)).save(folder / "dot.png")
    seeds = tmp_path / "seeds.csv"
    pd.DataFrame({"image": ["good_1", "good_1", "bad", "dot.png", "crash", "good_2"],
                  "row": [12, 20.6, 3, 0, 5, 30], "col": [14, 22, 4, 0, 6, 31]}).to_csv(seeds, index=False)
    paths = [folder / n for n in ("good_1.png", "bad.dcm", "dot.png", "crash.png", "good_2.png")]
    return paths, seeds


def test_a_batch_reports_each_bad_image_and_carries_on(fake_pipeline, batch, tmp_path, capsys):
    import pandas as pd

    paths, seeds = batch
    out = tmp_path / "results" / "areas.csv"
    code, err = _cli(capsys, "quantify", *paths, "--seeds", seeds, "--pixel-size", 0.25, "--out", out)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 3
    assert "bad.dcm" in errors[0] and "is a text file" in errors[0]
    assert "dot.png" in errors[1] and "1 x 1 px" in errors[1]
    assert errors[2] == ("error: crash.png: unexpected RuntimeError: something unforeseen "
                         "(please report this with the image)")
    assert "3 of 5 image(s) failed" in err
    assert fake_pipeline["images"] == ["good_1", "dot", "crash", "good_2"]  # bad.dcm failed on reading

    table = pd.read_csv(out)
    assert list(table["image"]) == ["good_1.png", "good_1.png", "bad.dcm", "dot.png", "crash.png", "good_2.png"]
    assert list(table["status"].str.split(":").str[0]) == ["ok", "ok", "error", "error", "error", "ok"]
    # a failed image keeps one row per seed, with the seed where the user put it
    assert table.loc[table["image"] == "crash.png", ["seed_row", "seed_col"]].values.tolist() == [[5, 6]]
    assert table["seed_row"].iloc[1] == 20.6


def test_masks_of_a_failed_image_are_not_written_and_the_others_are(fake_pipeline, batch, tmp_path, capsys):
    paths, seeds = batch
    masks = tmp_path / "masks"
    code, _ = _cli(capsys, "quantify", *paths, "--seeds", seeds, "--pixel-size", 0.25, "--masks", masks)
    assert code == 1
    assert sorted(p.name for p in masks.iterdir()) == [
        "good_1_bone.png", "good_1_lesions.tif", "good_2_bone.png", "good_2_lesions.tif"]
    assert tifffile.imread(masks / "good_1_lesions.tif").dtype == np.uint16


def test_an_existing_output_is_refused_before_any_work_unless_overwrite(fake_pipeline, batch, tmp_path, capsys):
    paths, seeds = batch
    out = tmp_path / "areas.csv"
    out.write_text("the previous results\n")
    code, err = _cli(capsys, "quantify", paths[0], "--pixel-size", 0.25, "--out", out)
    assert code == 2 and err.count("\n") == 1
    assert f"already exist: {out}" in err and "--overwrite" in err
    assert out.read_text() == "the previous results\n"
    assert fake_pipeline["load_model"] == 0

    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "good_1_lesions.tif").write_bytes(b"earlier masks")
    code, err = _cli(capsys, "quantify", paths[0], "--pixel-size", 0.25, "--masks", masks)
    assert code == 2 and "good_1_lesions.tif" in err and "--overwrite" in err
    assert (masks / "good_1_lesions.tif").read_bytes() == b"earlier masks"

    code, _ = _cli(capsys, "quantify", paths[0], "--pixel-size", 0.25, "--out", out, "--masks", masks, "--overwrite")
    assert code == 0
    assert out.read_text().startswith("image,path,lesion_id")
    assert tifffile.imread(masks / "good_1_lesions.tif").shape == (64, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["areas.csv", "images", "masks", "seeds.csv"]


def test_images_that_share_a_stem_get_mask_files_along_their_paths(fake_pipeline, batch, tmp_path, capsys):
    paths, _ = batch
    other, beside = tmp_path / "good_1.dcm", paths[0].parent / "good_1.dcm"
    write_dicom(other, _ramp_hu((64, 64)), 0.25)
    masks = tmp_path / "m"
    code, err = _cli(capsys, "quantify", paths[0], other, paths[4], "--pixel-size", 0.25, "--masks", masks)
    assert code == 0, err
    written = sorted(str(p.relative_to(masks)) for p in masks.rglob("*") if p.is_file())
    # the folders below the one all the images lie in: each folder's masks pair with its images for train
    assert written == ["good_1_bone.png", "good_1_lesions.tif", "images/good_1_bone.png", "images/good_1_lesions.tif",
                       "images/good_2_bone.png", "images/good_2_lesions.tif"]
    assert _cli(capsys, "quantify", paths[0], other, "--pixel-size", 0.25, "--masks", masks)[0] == 2  # all exist
    write_dicom(beside, _ramp_hu((64, 64)), 0.25)  # a DICOM beside its export: one stem in one folder
    code, err = _cli(capsys, "quantify", paths[0], beside, "--pixel-size", 0.25, "--masks", tmp_path / "m2")
    assert code == 2 and "images of one stem in one folder" in err and "would share their --masks files" in err
    assert fake_pipeline["images"].count("good_1") == 2  # only the first run measured


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("image,x,y\ngood_1,1,2\n", ["lacks column(s) row, col", "its header is 'image,x,y'", "image,row,col"]),
        ('image;row;col\n"good_1;1;2\n', ["does not read as a table", "semicolon-separated with commas"]),
        ("image,row,col\ngood_1,1,2\ngood_2,,3\ngood_2,nan,3\n",
         ["line 3 (image 'good_2', row '', col '3')", "2 line(s) are bad"]),
        ("image,row,col\ngood_1,1,2\ngood_2,twelve,3\n", ["line 3", "row 'twelve'"]),
        # blank lines (which pandas skips) still count: the bad line is the file's 6th
        ("image,row,col\n\ngood_1,1,2\n  \n\ngood_2,twelve,3\n", ["line 6", "row 'twelve'"]),
        ("image,row,col\n,1,2\n", ["line 2 (image ''"]),
        ("", ["is empty", "image,row,col"]),
    ],
)
def test_a_bad_seeds_file_is_refused_naming_the_line_or_columns(fake_pipeline, batch, tmp_path, capsys,
                                                                content, words):
    paths, _ = batch
    seeds = tmp_path / "bad_seeds.csv"
    seeds.write_text(content)
    code, err = _cli(capsys, "quantify", paths[0], "--seeds", seeds, "--pixel-size", 0.25)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: seeds file")
    for word in words:
        assert word in err
    assert fake_pipeline["load_model"] == 0


def test_a_seeds_sheet_saved_by_a_european_excel_is_read(fake_pipeline, batch, tmp_path, capsys):
    # semicolons, decimal commas and Windows-1252 (a reader named Müller): read as the lab wrote it
    import pandas as pd

    paths, _ = batch
    sheet = tmp_path / "sheet.csv"
    sheet.write_bytes("image;row;col;reader;radiologist_mm2\r\ngood_1;12;14,5;Müller;3,25\r\n"
                      "good_1;20;22;Müller;\r\n".encode("cp1252"))
    out = tmp_path / "r.csv"
    code, err = _cli(capsys, "quantify", paths[0], "--seeds", sheet, "--pixel-size", 0.25, "--out", out)
    assert code == 0, err
    table = pd.read_csv(out)
    assert table["seed_col"].tolist() == [14.5, 22.0] and table["reader"].tolist() == ["Müller", "Müller"]
    assert table["radiologist_mm2"].iloc[0] == 3.25 and np.isnan(table["radiologist_mm2"].iloc[1])
    # and the agreement command reads such a file too
    from napari_calcinosis.io import read_csv_table

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a;b\n1,5;1,4\n2,5;2,7\n3,0;3,1\n", encoding="utf-8")
    assert read_csv_table(pairs)["b"].tolist() == [1.4, 2.7, 3.1]
    # a reader's 1.250 (1.25 or 1250?) was carried as 1.25 without a word, where agreement refuses it
    sheet.write_text("image;row;col;radiologist_mm2\ngood_1;12;14;1.250\ngood_1;20;22;2.375\n", encoding="utf-8")
    code, err = _cli(capsys, "quantify", paths[0], "--seeds", sheet, "--pixel-size", 0.25, "--out", out, "--overwrite")
    assert code == 2 and f"error: seeds file {sheet}: column 'radiologist_mm2', line 2: is '1.250' 1250 or 1.250?" in err


def test_a_seeds_file_of_only_its_header_is_refused_not_taken_for_automatic_mode(fake_pipeline, batch, tmp_path,
                                                                                  capsys):
    paths, _ = batch
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("image,row,col\n")
    code, err = _cli(capsys, "quantify", paths[0], "--seeds", seeds, "--pixel-size", 0.25)
    assert code == 2 and f"seeds file {seeds} has no seeds, only its header" in err
    assert fake_pipeline["load_model"] == 0


def test_pydicoms_warnings_name_the_file_they_are_about(fake_pipeline, tmp_path, capsys):
    import shutil

    import pydicom.data

    padded = tmp_path / "IM000007"
    shutil.copy(pydicom.data.get_testdata_file("MR_small_padded.dcm"), padded)
    code, err = _cli(capsys, "quantify", padded)
    assert code == 0, err
    assert "warning: IM000007: while reading it: The pixel data is 8320 bytes long" in err


def test_seeds_for_images_not_given_are_listed_not_dropped_silently(fake_pipeline, batch, tmp_path, capsys):
    import pandas as pd

    paths, _ = batch
    seeds, out = tmp_path / "seeds.csv", tmp_path / "areas.csv"
    seeds.write_text("image,row,col\ngood_1.png,12,14\nfinger_07,1,2\nfinger_08,3,4\n")
    code, err = _cli(capsys, "quantify", paths[0], paths[4], "--seeds", seeds, "--pixel-size", 0.25, "--out", out)
    assert code == 0
    assert "has seeds for 2 image(s) not given here, not measured: finger_07, finger_08" in err
    # an image the seeds file does not name is measured automatically, and every row says so
    assert "1 image(s) had no seeds in" in err and "automatic mode (the mode column says which rows): good_2.png" in err
    table = pd.read_csv(out)
    assert table.groupby("image")["mode"].unique().map(list).to_dict() == {"good_1.png": ["seeded"],
                                                                          "good_2.png": ["automatic"]}
    automatic = table[table["image"] == "good_2.png"]
    assert automatic["warnings"].str.startswith(f"{seeds} has no seeds for this image").all()
    assert table["path"].tolist() == [str(paths[0].resolve()), str(paths[4].resolve())]
    # an image that fails is not said to have been measured, automatically or at all
    code, err = _cli(capsys, "quantify", paths[0], paths[1], "--seeds", seeds, "--pixel-size", 0.25)
    assert code == 1 and "automatic mode" not in err and "have warnings" not in err


def test_an_image_named_on_several_lines_or_in_other_ways_takes_all_its_seeds(fake_pipeline, batch, tmp_path,
                                                                               capsys, monkeypatch):
    import pandas as pd

    paths, _ = batch
    good_1 = paths[0]
    monkeypatch.chdir(tmp_path)
    seeds, out = tmp_path / "seeds.csv", tmp_path / "areas.csv"
    # stem, file name, Windows path, another case, absolute path, the last folder and name: all good_1.png
    seeds.write_text("Image,Row,Col,reader\ngood_1,1,1,a\ngood_1.png,2,2,b\nimages\\good_1.png,3,3,c\n"
                     f"GOOD_1.PNG,4,4,d\n{good_1.resolve()},5,5,e\nimages/good_1.png,6,6,f\ngood_2,7,7,g\n"
                     "./images/good_2.png,8,8,h\n")
    code, err = _cli(capsys, "quantify", "images/good_1.png", "images/good_2.png", "--seeds", seeds,
                     "--pixel-size", 0.25, "--out", out)
    assert code == 0, err
    assert "not given here" not in err and "automatic" not in err
    assert "names 'GOOD_1.PNG', taken as images/good_1.png (the case of the letters differs)" in err
    table = pd.read_csv(out)
    assert table["seed_row"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]  # in the file's order, none dropped
    assert table["reader"].tolist() == list("abcdefgh")  # each seed's own line's columns beside it
    assert set(table["mode"]) == {"seeded"}


def test_a_study_trees_seeds_may_name_folders_and_stem_from_anywhere(fake_pipeline, tmp_path, capsys,
                                                                      monkeypatch):
    import pandas as pd

    study = tmp_path / "study"
    for patient in ("P01", "P02"):
        (study / patient / "baseline").mkdir(parents=True)
        write_dicom(study / patient / "baseline" / "IM1.dcm", _ramp_hu((64, 64)), 0.25)
    seeds, out = tmp_path / "seeds.csv", tmp_path / "areas.csv"
    # folders and stem; a path from the seeds file's folder through ".."; another case with backslashes
    seeds.write_text("image,row,col\nP01/baseline/IM1,1,1\nstudy/P02/baseline/../baseline/IM1.dcm,2,2\n"
                     "p01\\BASELINE\\im1,3,3\n")
    monkeypatch.chdir(study / "P01" / "baseline")  # the images given from elsewhere than the seeds file
    code, err = _cli(capsys, "quantify", "IM1.dcm", "../../P02/baseline/IM1.dcm", "--seeds", seeds, "--out", out)
    assert code == 0, err
    assert "not given here" not in err and "taken as IM1.dcm (the case of the letters differs)" in err
    table = pd.read_csv(out)
    assert table[["image", "seed_row"]].values.tolist() == [["IM1.dcm", 1], ["IM1.dcm", 3],
                                                            ["../../P02/baseline/IM1.dcm", 2]]
    # one folder written two ways is one folder: a stem there names the DICOM and its export as one image
    write_windowed_png(study / "P01" / "baseline" / "IM1.png", _ramp_hu((64, 64)))
    seeds.write_text("image,row,col\nIM1,5,5\n")
    code, err = _cli(capsys, "quantify", "IM1.dcm", str(study / "P01" / "baseline" / "IM1.png"), "--seeds", seeds,
                     "--pixel-size", 0.25, "--out", out, "--overwrite")
    assert code == 0, err
    assert pd.read_csv(out)["seed_row"].tolist() == [5, 5]


def test_a_path_to_an_image_not_given_never_names_another_centres_image(fake_pipeline, tmp_path, capsys,
                                                                        monkeypatch):
    import pandas as pd

    for centre in ("CentreA", "CentreC"):
        (tmp_path / centre / "P01" / "baseline").mkdir(parents=True)
        write_dicom(tmp_path / centre / "P01" / "baseline" / "IM000001", _ramp_hu((64, 64)), 0.25)
    seeds = tmp_path / "CentreA" / "seeds.csv"  # centre A's reader, run on centre C's images only
    seeds.write_text("image,row,col\nP01/baseline/IM000001,240,86\n")
    monkeypatch.chdir(tmp_path / "CentreA")
    code, err = _cli(capsys, "quantify", "../CentreC", "-r", "--seeds", seeds)
    assert code == 2 and "none of the 1 image names in" in err  # not one seed given to centre C
    both = tmp_path / "both.csv"
    both.write_text("image,row,col\nCentreA/P01/baseline/IM000001,1,1\nCentreC/P01/baseline/IM000001,2,2\n")
    out = tmp_path / "areas.csv"
    code, err = _cli(capsys, "quantify", "../CentreC", "-r", "--seeds", both, "--out", out)
    assert code == 0, err
    assert "has seeds for 1 image(s) not given here, not measured: CentreA/P01/baseline/IM000001" in err
    assert pd.read_csv(out)["seed_row"].tolist() == [2]
    # from centre A's folder, its own image written with .dcm, or in other letters, is still its own
    for key in ("P01/baseline/IM000001.dcm", "p01\\Baseline\\im000001"):
        seeds.write_text(f"image,row,col\n{key},240,86\n")
        assert _cli(capsys, "quantify", "../CentreC", "-r", "--seeds", seeds)[0] == 2
    # folders that lead to no folder from here or from the seeds file: taken by the image's last folders, said
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("image,row,col\nP01/baseline/IM000001.dcm,3,3\n")  # .dcm written, none on the file
    code, err = _cli(capsys, "quantify", "CentreC", "-r", "--seeds", elsewhere, "--out", out, "--overwrite")
    assert code == 0, err
    assert "names 1 image(s) by folders that lead to no folder from here or from its own folder, taken by their " \
           "last folders: 'P01/baseline/IM000001.dcm' as CentreC/P01/baseline/IM000001" in err
    assert pd.read_csv(out)["seed_row"].tolist() == [3]


def test_resume_takes_each_image_once_from_its_newest_partial_file_and_keeps_other_runs_files(
        fake_pipeline, batch, tmp_path, capsys, monkeypatch):
    import os
    import signal

    import pandas as pd

    from napari_calcinosis import pipeline

    paths, _ = batch
    good_1, good_2 = paths[0], paths[4]
    other = tmp_path / "other.dcm"
    write_dicom(other, _ramp_hu((64, 64)), 0.25)
    seeds = tmp_path / "seeds.csv"
    # a patient id of 007 and a note of NA: read back from a partial file, they must stay as written
    seeds.write_text("image,row,col,patient,note\ngood_1,1,1,007,NA\ngood_1,2,2,007,n/a\ngood_2,3,3,008,x\n"
                     "other,4,4,009,y\n")
    fake = pipeline.quantify

    def terminated_on(stem):
        def quantify(image, image_seeds, **kwargs):
            if image.name == stem:
                os.kill(os.getpid(), signal.SIGTERM)
            return fake(image, image_seeds, **kwargs)
        return quantify

    out, summary = tmp_path / "areas.csv", tmp_path / "per_image.csv"
    # an earlier run over other.dcm alone, interrupted: its partial rows are no image of the next run's
    monkeypatch.setattr(pipeline, "quantify", terminated_on("never"))
    base = ["--seeds", seeds, "--pixel-size", 0.25, "--out", out]
    assert _cli(capsys, "quantify", other, *base)[0] == 0
    os.replace(out, tmp_path / "areas.partial.csv")
    # two interrupted runs over good_1 and good_2: both partial files hold good_1
    for stem in ("good_2", "good_2"):
        monkeypatch.setattr(pipeline, "quantify", terminated_on(stem))
        assert _cli(capsys, "quantify", good_1, good_2, *base)[0] == 143
    monkeypatch.setattr(pipeline, "quantify", fake)
    code, err = _cli(capsys, "quantify", good_1, good_2, *base, "--summary", summary, "--resume")
    assert code == 0, err
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    fresh = tmp_path / "fresh.csv"
    assert _cli(capsys, "quantify", good_1, good_2, *base[:-1], fresh)[0] == 0
    # once each, in order, with the seeds file's columns as a fresh run writes them
    assert table.equals(pd.read_csv(fresh, dtype=str, keep_default_na=False))
    assert table["patient"].tolist()[:2] == ["007", "007"] and table["note"].tolist()[:2] == ["NA", "n/a"]
    assert pd.read_csv(summary)["image"].tolist() == ["good_1.png", "good_2.png"]
    # the file of the run over other.dcm is left; the two of this run are removed
    assert sorted(p.name for p in tmp_path.glob("areas.partial*.csv")) == ["areas.partial.csv"]
    assert "also hold(s) rows of images not in this run: left as they are" in err
    # seeds changed since the interrupted run: that image is measured again, not kept
    monkeypatch.setattr(pipeline, "quantify", terminated_on("good_2"))
    assert _cli(capsys, "quantify", good_1, good_2, *base, "--overwrite")[0] == 143
    seeds.write_text("image,row,col\ngood_1,5,5\ngood_2,6,6\n")
    monkeypatch.setattr(pipeline, "quantify", fake)
    code, err = _cli(capsys, "quantify", good_1, good_2, *base, "--resume", "--overwrite")
    assert code == 0 and "measuring 1 image(s) again whose seeds differ" in err
    assert pd.read_csv(out)["seed_row"].tolist() == [5, 6]


def test_a_seeds_column_named_like_a_summary_column_does_not_replace_the_tools_number(fake_pipeline, batch,
                                                                                      tmp_path, capsys):
    import pandas as pd

    paths, _ = batch
    seeds, out, summary = tmp_path / "seeds.csv", tmp_path / "areas.csv", tmp_path / "per_image.csv"
    seeds.write_text("image,row,col,total_area_mm2,lesions,error\ngood_1,1,1,14.6,3,x\ngood_1,2,2,14.6,3,x\n")
    code, err = _cli(capsys, "quantify", paths[0], "--seeds", seeds, "--pixel-size", 0.25, "--out", out,
                     "--summary", summary)
    assert code == 0, err
    row = pd.read_csv(summary).iloc[0]
    assert row["lesions"] == 2 and row["total_area_mm2"] == 3.0  # the fake pipeline's two 1.5 mm² lesions
    assert row["seeds_total_area_mm2"] == 14.6 and row["seeds_lesions"] == 3


def test_mask_files_of_a_study_lie_alike_in_every_run_from_one_place(fake_pipeline, tmp_path, capsys, monkeypatch):
    for patient in ("P11", "P12"):
        for visit in ("baseline", "follow-up"):
            (tmp_path / "T" / patient / visit).mkdir(parents=True)
            write_dicom(tmp_path / "T" / patient / visit / "IM000001", _ramp_hu((64, 64)), 0.25)
    monkeypatch.chdir(tmp_path)
    for patient in ("P12", "P11"):  # patient by patient into one masks folder: none replaces another's
        assert _cli(capsys, "quantify", f"T/{patient}", "-r", "--masks", "masks")[0] == 0
    assert sorted(str(p.relative_to(tmp_path / "masks")) for p in (tmp_path / "masks").rglob("*_bone.png")) == [
        "T/P11/baseline/IM000001_bone.png", "T/P11/follow-up/IM000001_bone.png",
        "T/P12/baseline/IM000001_bone.png", "T/P12/follow-up/IM000001_bone.png"]


def test_a_dash_is_standard_output_not_a_file_named_dash(fake_pipeline, batch, tmp_path, capsys, monkeypatch):
    paths, _ = batch
    monkeypatch.chdir(tmp_path)
    assert _cli(capsys, "quantify", paths[0], "--pixel-size", 0.25, "--out", "-")[0] == 0
    out = tmp_path / "areas.csv"
    assert _cli(capsys, "quantify", paths[0], "--pixel-size", 0.25, "--out", out, "--summary", "-")[0] == 0
    assert not (tmp_path / "-").exists()
    code, err = _cli(capsys, "quantify", paths[0], "--pixel-size", 0.25, "--summary", "-")
    assert code == 2 and "cannot both go to standard output" in err


def test_an_empty_file_named_as_a_scanner_names_them_is_an_error_not_skipped(fake_pipeline, tmp_path, capsys):
    import pandas as pd

    folder = tmp_path / "P09"
    folder.mkdir()
    write_dicom(folder / "IM000001", _ramp_hu((64, 64)), 0.25)
    (folder / "IM000002").write_bytes(b"")  # a transfer that failed
    (folder / "COMPLETE").write_bytes(b"")  # a marker some exports leave: no image
    out = tmp_path / "areas.csv"
    code, err = _cli(capsys, "quantify", folder, "--out", out)
    assert code == 1 and "skipped 1 file(s) that are not DICOM, PNG, JPEG or TIFF images: COMPLETE" in err
    table = pd.read_csv(out)
    assert table["status"].tolist()[-1] == f"error: {folder / 'IM000002'}: the file is empty (0 bytes); copy or export it again"
    # never read: its row says only the settings every image of the run shares
    assert table["settings"].tolist()[-1] == "threshold_hu=200; margin_mm=per image; connectivity=4; min_area_mm2=0.3; tta=no"


def _terminated_on(name: str, quantify):
    """``quantify``, but a SIGTERM (a batch scheduler's time limit) arrives as it takes the image ``name``."""
    import os
    import signal

    def terminated(image, seeds, **kwargs):
        if image.name == name:
            os.kill(os.getpid(), signal.SIGTERM)
        return quantify(image, seeds, **kwargs)

    return terminated


def test_resume_keeps_what_an_interrupted_run_measured_and_measures_the_rest(fake_pipeline, batch, tmp_path, capsys,
                                                                             monkeypatch):
    import pandas as pd

    from napari_calcinosis import pipeline

    paths, _ = batch
    good = [paths[0], paths[4], paths[2]]  # good_1, good_2, dot (fails)
    fake = pipeline.quantify
    terminated_on_good_2 = _terminated_on("good_2", fake)
    monkeypatch.setattr(pipeline, "quantify", terminated_on_good_2)
    out, summary, masks = tmp_path / "areas.csv", tmp_path / "per_image.csv", tmp_path / "m"
    args = ["quantify", *good, "--pixel-size", 0.25, "--out", out, "--summary", summary, "--masks", masks]
    assert _cli(capsys, *args)[0] == 143
    assert _cli(capsys, *args)[0] == 2  # good_1's masks exist: a plain re-run is refused
    monkeypatch.setattr(pipeline, "quantify", fake)
    measured_before = list(fake_pipeline["images"])
    code, err = _cli(capsys, *args, "--resume")
    assert code == 1, err  # dot.png fails, as before
    assert "resuming: 1 of 3 image(s) measured before" in err and "measuring the other 2" in err
    assert fake_pipeline["images"][len(measured_before):] == ["good_2", "dot"]  # good_1 not again
    assert pd.read_csv(out)["image"].tolist() == ["good_1.png", "good_2.png", "dot.png"]  # in the order given
    assert pd.read_csv(summary)["image"].tolist() == ["good_1.png", "good_2.png", "dot.png"]
    assert not list(tmp_path.glob("areas.partial*.csv")) and "removed" in err
    # another model than the partial rows' is refused, and so is the same file changed since
    bundled = f"bundled phalanx_unet (sha256 {_bundled_sha256()[:12]})"
    assert (pd.read_csv(out)["model"] == bundled).all() and (pd.read_csv(summary)["model"] == bundled).all()
    pd.read_csv(out).assign(model="mine").to_csv(tmp_path / "areas.partial.csv", index=False)
    code, err = _cli(capsys, *args, "--resume", "--overwrite")
    assert code == 2 and f"were measured with the model mine, this run uses {bundled}: give the same --model" in err
    pd.read_csv(out).assign(model="bundled phalanx_unet (sha256 0123456789ab)").to_csv(tmp_path / "areas.partial.csv",
                                                                                        index=False)
    code, err = _cli(capsys, *args, "--resume", "--overwrite")
    assert code == 2 and "the file has changed since (retrained, replaced, or another release's bundled model)" in err
    # and rows another version measured: one table, one version
    from napari_calcinosis import __version__

    software = pd.read_csv(out)["software"]
    assert (software == f"napari-calcinosis {__version__}").all() and pd.read_csv(summary)["software"].nunique() == 1
    pd.read_csv(out).assign(software="napari-calcinosis 0.0.9").to_csv(tmp_path / "areas.partial.csv", index=False)
    code, err = _cli(capsys, *args, "--resume", "--overwrite")
    assert code == 2 and (f"were measured by napari-calcinosis 0.0.9, this run is napari-calcinosis {__version__}: "
                          "measure again without --resume") in err
    # so is another threshold: one table holds the numbers of one setting
    settings = pd.read_csv(out)["settings"]
    shared = "threshold_hu=200; margin_mm=per image; connectivity=4; min_area_mm2=0.3; tta=no"
    # the exports say the pixel size and window they were read through, dot.png too: read, then refused
    assert settings.tolist() == [f"{shared}; export_pixel_size_mm=0.25; export_window_hu=W1500/L450"] * 3
    assert pd.read_csv(summary)["settings"].tolist() == settings.tolist()
    pd.read_csv(out).to_csv(tmp_path / "areas.partial.csv", index=False)
    code, err = _cli(capsys, *args, "--resume", "--overwrite", "--threshold-hu", 150)
    assert code == 2 and "were measured with threshold_hu=200, this run with threshold_hu=150: give the same" in err
    assert "resuming:" not in err  # not "kept" first, then refused
    code, err = _cli(capsys, *args, "--resume", "--overwrite", "--window-level", 500)  # another export window
    assert code == 2 and "were measured with export_window_hu=W1500/L450, this run with export_window_hu=W1500/L500" in err
    assert "give the same settings, or measure again without --resume" in err


def test_resume_measures_again_a_file_replaced_since_and_replaces_the_masks_it_wrote(fake_pipeline, batch, tmp_path,
                                                                                    capsys, monkeypatch):
    # A wrong slice re-exported under its name between the interruption and --resume: its old
    # rows were kept under the new file's path. And with --masks, an image measured again (its
    # seeds corrected) was refused for the masks the interrupted run had written.
    import shutil

    import pandas as pd

    from napari_calcinosis import pipeline

    paths, _ = batch
    good_1, good_2 = paths[0], paths[4]
    fake = pipeline.quantify
    terminated_on_good_2 = _terminated_on("good_2", fake)
    monkeypatch.setattr(pipeline, "quantify", terminated_on_good_2)
    out, masks, seeds = tmp_path / "areas.csv", tmp_path / "m", tmp_path / "s.csv"
    seeds.write_text("image,row,col\ngood_1,12,14\ngood_2,30,31\n")
    args = ["quantify", good_1, good_2, "--seeds", seeds, "--pixel-size", 0.25, "--out", out, "--masks", masks]
    assert _cli(capsys, *args)[0] == 143
    monkeypatch.setattr(pipeline, "quantify", fake)
    seeds.write_text("image,row,col\ngood_1,13,14\ngood_2,30,31\n")  # good_1's seed corrected
    before = len(fake_pipeline["images"])
    code, err = _cli(capsys, *args, "--resume")
    assert code == 0, err
    assert "measuring 1 image(s) again whose seeds differ" in err and fake_pipeline["images"][before:] == ["good_1", "good_2"]
    assert pd.read_csv(out).set_index("image")["seed_row"]["good_1.png"] == 13

    def replaced_then_terminated(image, seeds, **kwargs):
        if image.name == "good_2":  # good_1 measured, then another image copied over it (dot.png: 1 pixel)
            shutil.copy(paths[2], good_1)
        return terminated_on_good_2(image, seeds, **kwargs)

    monkeypatch.setattr(pipeline, "quantify", replaced_then_terminated)
    out = tmp_path / "again.csv"
    args = ["quantify", good_1, good_2, "--pixel-size", 0.25, "--out", out]
    assert _cli(capsys, *args)[0] == 143
    monkeypatch.setattr(pipeline, "quantify", fake)
    before = len(fake_pipeline["images"])
    code, err = _cli(capsys, *args, "--resume")
    assert ("note: --resume: measuring 1 image(s) again whose file is not the one measured before (another file was "
            "copied over it since): good_1.png") in err
    assert code == 1 and "resuming: 0 of 2 image(s) measured before" in err
    assert pd.read_csv(out).set_index("image")["status"]["good_1.png"].startswith("error: ")


def test_a_pattern_the_shell_left_unexpanded_and_a_link_to_a_missing_file(fake_pipeline, batch, tmp_path, capsys):
    # Windows' shells expand no '*': 'scans\*.png' was taken for a file name ("file not found", or with
    # seeds the seeds file blamed). A folder's link to a file that is missing was skipped unsaid.
    import pandas as pd

    paths, _ = batch
    folder = paths[0].parent
    out = tmp_path / "r.csv"
    code, err = _cli(capsys, "quantify", folder / "good_*.png", "--pixel-size", 0.25, "--out", out)
    assert code == 0, err
    assert pd.read_csv(out)["image"].unique().tolist() == ["good_1.png", "good_2.png"]
    code, err = _cli(capsys, "quantify", folder / "nothing_*.png", "--pixel-size", 0.25, "--out", out, "--overwrite")
    assert code == 2 and f"error: no file matches {folder / 'nothing_*.png'}" in err

    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "IM000001").symlink_to(tmp_path / "archive" / "IM000001")
    (linked / "readme.txt").symlink_to(tmp_path / "archive" / "readme.txt")  # no image: skipped, not failed
    (linked / "good.png").symlink_to(paths[0])
    code, err = _cli(capsys, "quantify", linked, "--pixel-size", 0.25, "--out", out, "--overwrite")
    rows = pd.read_csv(out).set_index("image")
    assert code == 1 and rows["status"]["good.png"] == "ok" and "readme.txt" not in rows.index
    assert "skipped 1 file(s) that are not DICOM, PNG, JPEG or TIFF images: readme.txt" in err
    assert "1 of 2 image(s) failed" in err
    assert rows["status"]["IM000001"] == (f"error: {linked / 'IM000001'}: is a link to a file that is missing "
                                          f"({tmp_path / 'archive' / 'IM000001'}): is the drive or archive it points "
                                          "to connected?")


def test_an_output_name_the_file_system_cannot_take_is_refused_first(fake_pipeline, batch, tmp_path, capsys):
    paths, _ = batch
    long = tmp_path / ("lesions" * 40 + ".csv")
    code, err = _cli(capsys, "quantify", paths[0], "--pixel-size", 0.25, "--out", long)
    assert code == 2 and f"error: --out {long}: cannot be used as a file name (" in err and "Traceback" not in err
    assert fake_pipeline["load_model"] == 0  # before any work


def test_the_table_on_standard_output_is_utf8_whatever_the_consoles_code_page(fake_pipeline, tmp_path):
    # 'quantify scans/ > lesions.csv' on Windows (cp1252) crashed on a patient's name after every
    # image was measured, leaving the header alone.
    import io
    import sys

    import pandas as pd

    from napari_calcinosis.cli import main

    write_windowed_png(tmp_path / "Dvořák_IM1.png", _ramp_hu((64, 64)))
    raw = io.BytesIO()
    console = io.TextIOWrapper(raw, encoding="cp1252")
    real = sys.stdout
    sys.stdout = console
    try:
        code = main(["quantify", str(tmp_path / "Dvořák_IM1.png"), "--pixel-size", "0.25"])
    finally:
        sys.stdout = real
    assert code == 0
    table = pd.read_csv(io.BytesIO(raw.getvalue()), encoding="utf-8")
    assert table["image"].tolist() == ["Dvořák_IM1.png"] and table["status"].tolist() == ["ok"]


def test_a_file_given_twice_is_measured_once(fake_pipeline, batch, tmp_path, capsys, monkeypatch):
    import pandas as pd

    paths, _ = batch
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "areas.csv"
    code, err = _cli(capsys, "quantify", paths[0], "images/good_1.png", "./images/../images/good_1.png", paths[4],
                     "--pixel-size", 0.25, "--out", out)
    assert code == 0, err
    assert fake_pipeline["images"] == ["good_1", "good_2"]
    assert pd.read_csv(out)["image"].tolist() == ["good_1.png", "good_2.png"]
    assert f"note: images/good_1.png is the file {paths[0]} (given already): measured once, as {paths[0]}" in err
    code, err = _cli(capsys, "quantify", paths[4], paths[4], "--pixel-size", 0.25)
    assert f"note: {paths[4]} is given more than once: measured once" in err


def test_a_link_to_an_image_is_measured_once_and_its_name_names_it(fake_pipeline, batch, tmp_path, capsys):
    import pandas as pd

    paths, _ = batch
    link = paths[0].parent / "linked.png"
    link.symlink_to(paths[0].name)
    seeds, out = tmp_path / "seeds.csv", tmp_path / "areas.csv"
    seeds.write_text("image,row,col\nlinked,3,4\n")
    code, err = _cli(capsys, "quantify", paths[0], link, "--seeds", seeds, "--pixel-size", 0.25, "--out", out)
    assert code == 0, err
    assert "not given here" not in err
    table = pd.read_csv(out)
    assert table[["image", "seed_row", "mode"]].values.tolist() == [["good_1.png", 3, "seeded"]]


def test_subfolders_are_said_and_searched_with_recursive_and_masks_are_no_images(fake_pipeline, batch, tmp_path,
                                                                                 capsys):
    import pandas as pd

    paths, _ = batch
    study = tmp_path / "study"
    for visit in ("P01/baseline", "P01/follow-up"):
        (study / visit).mkdir(parents=True)
        write_dicom(study / visit / "IM000001", _ramp_hu((64, 64)), 0.25)
    code, err = _cli(capsys, "quantify", study, "--out", tmp_path / "none.csv")
    assert code == 2 and "its 1 subfolder(s) were not searched (P01): give --recursive" in err
    masks, out = study / "masks", tmp_path / "areas.csv"
    code, err = _cli(capsys, "quantify", study, "--recursive", "--masks", masks, "--out", out)
    assert code == 0, err
    assert sorted(pd.read_csv(out)["image"]) == [str(study / "P01/baseline/IM000001"),
                                                 str(study / "P01/follow-up/IM000001")]
    assert (masks / "baseline" / "IM000001_bone.png").exists() and (masks / "follow-up" / "IM000001_bone.png").exists()
    # a second run over the tree does not take the masks written into it for finger images
    code, err = _cli(capsys, "quantify", study, "-r", "--out", out, "--overwrite")
    assert code == 0 and "skipped 4 mask file(s) that --masks writes" in err
    assert len(pd.read_csv(out)) == 2
    code, err = _cli(capsys, "quantify", *sorted((masks / "baseline").iterdir()), study / "P01/baseline/IM000001")
    assert code == 0 and "IM000001_bone.png: skipped, a mask file that --masks writes" in err
    assert fake_pipeline["images"][-1:] == ["IM000001"]
    # a linked folder is followed, each real folder once (a link back up the tree is no loop)
    (study / "P02").mkdir()
    (study / "P02" / "elsewhere").symlink_to(tmp_path / "images", target_is_directory=True)
    (study / "P02" / "up").symlink_to(study, target_is_directory=True)
    code, err = _cli(capsys, "quantify", study, "-r", "--pixel-size", 0.25, "--out", out, "--overwrite")
    assert code in (0, 1), err
    assert sorted(pd.read_csv(out)["image"].unique())[-3:] == ["dot.png", "good_1.png", "good_2.png"]


def test_an_interrupted_run_keeps_an_earlier_runs_partial_rows_and_sigterm_is_a_ctrl_c(fake_pipeline, batch,
                                                                                       tmp_path, capsys, monkeypatch):
    import os
    import signal

    import pandas as pd

    from napari_calcinosis import pipeline

    paths, _ = batch
    good = [paths[0], paths[4]]
    fake = pipeline.quantify

    def terminated_on_the_second(image, seeds, **kwargs):
        if image.name == "good_2":
            os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's time limit
        return fake(image, seeds, **kwargs)

    monkeypatch.setattr(pipeline, "quantify", terminated_on_the_second)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "areas.csv"
    earlier = tmp_path / "areas.partial.csv"
    earlier.write_text("image\nan earlier run's 38 images\n")
    code, err = _cli(capsys, *["quantify", *good, "--pixel-size", 0.25, "--out", out])
    assert code == 143 and "terminated (SIGTERM)" in err
    assert signal.getsignal(signal.SIGTERM) is before
    assert earlier.read_text() == "image\nan earlier run's 38 images\n"
    assert pd.read_csv(tmp_path / "areas.partial-2.csv")["image"].tolist() == ["good_1.png"]
    monkeypatch.setattr(pipeline, "quantify", fake)
    code, err = _cli(capsys, *["quantify", *good, "--pixel-size", 0.25, "--out", out])
    assert code == 0 and f"{earlier}, {tmp_path / 'areas.partial-2.csv'} hold(s) an interrupted run's rows" in err


@pytest.mark.parametrize("bad", ["0", "-0.2", "nan", "7"])
def test_implausible_pixel_size_on_the_command_line_is_refused_first(fake_pipeline, batch, capsys, bad):
    paths, _ = batch
    code, err = _cli(capsys, "quantify", *paths, "--pixel-size", bad)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: --pixel-size of") and "at most 5 mm" in err
    assert fake_pipeline["load_model"] == 0


def test_sample_refuses_to_overwrite_a_previous_set(tmp_path, capsys):
    code, _ = _cli(capsys, "sample", "--out", tmp_path, "-n", "1")
    assert code == 0
    before = (tmp_path / "truth.csv").read_bytes()
    code, err = _cli(capsys, "sample", "--out", tmp_path, "-n", "1", "--seed", "1")  # other phantoms, same tables
    assert code == 2 and "truth.csv" in err and "--overwrite" in err
    assert not (tmp_path / "phantom_000001.dcm").exists()
    code, err = _cli(capsys, "sample", "--out", tmp_path, "-n", "1", "--overwrite")
    assert code == 0 and (tmp_path / "truth.csv").read_bytes() == before
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary file left anywhere


def test_agreement_demo_and_validate_refuse_existing_outputs(tmp_path, capsys):
    table = tmp_path / "pairs.csv"
    table.write_text("a,b\n1,1.1\n2,2.3\n3,2.9\n4,4.2\n5,4.8\n")
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"an earlier plot")
    code, err = _cli(capsys, "agreement", table, "--x", "a", "--y", "b", "--plot", plot)
    assert code == 2 and "plot.png" in err and "--overwrite" in err
    assert plot.read_bytes() == b"an earlier plot"
    code, _ = _cli(capsys, "agreement", table, "--x", "a", "--y", "b", "--plot", plot, "--overwrite")
    assert code == 0 and plot.read_bytes().startswith(b"\x89PNG")

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "sample_finger_lesions.csv").write_text("mine\n")
    code, err = _cli(capsys, "demo", "--out", tmp_path / "demo", "--device", "cpu")
    assert code == 2 and "sample_finger_lesions.csv" in err

    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "report.md").write_text("mine\n")
    code, err = _cli(capsys, "validate", "--out", tmp_path / "val", "--n", "3", "--device", "cpu")
    assert code == 2 and "report.md" in err
    assert (tmp_path / "val" / "report.md").read_text() == "mine\n"
    # a file where the report's folder goes: said before the study, not in a traceback after it
    (tmp_path / "notadir").write_text("mine\n")
    started = time.perf_counter()
    code, err = _cli(capsys, "validate", "--out", tmp_path / "notadir", "--n", "3", "--device", "cpu")
    assert code == 2 and f"error: cannot create the output folder {tmp_path / 'notadir'}" in err
    assert "Traceback" not in err and time.perf_counter() - started < 5


def test_every_test_the_catalogue_cites_exists():
    import re
    from pathlib import Path

    root = Path(__file__).parents[1]
    page = (root / "docs" / "robustness.md").read_text()
    cited = re.findall(r"`(?:(test_\w+\.py)::)?(test_\w+)`", page)
    assert len(cited) > 40
    for file, name in cited:
        source = (root / "tests" / (file or "test_robustness.py")).read_text()
        assert f"def {name}(" in source, f"docs/robustness.md cites {file or 'test_robustness.py'}::{name}"
