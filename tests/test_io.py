"""Reading and writing images: DICOM calibration, windowed exports, and every user error."""

from __future__ import annotations

import re

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file

from napari_calcinosis._errors import CalcinosisError
from napari_calcinosis.io import (
    WINDOW_LEVEL_HU,
    WINDOW_WIDTH_HU,
    CalcinosisImage,
    hu_to_window_unit,
    image_from_export,
    read_image,
    window_unit_to_hu,
    write_dicom,
    write_windowed_png,
)

CT_SMALL = get_testdata_file("CT_small.dcm")
BONE_BOTTOM_HU = WINDOW_LEVEL_HU - WINDOW_WIDTH_HU / 2  # -300
BONE_TOP_HU = WINDOW_LEVEL_HU + WINDOW_WIDTH_HU / 2  # 1200


def _hu_ramp(low_hu: float, high_hu: float, shape=(40, 64)) -> np.ndarray:
    """A smooth left-to-right ramp in HU, the same on every row."""
    return np.tile(np.linspace(low_hu, high_hu, shape[1]), (shape[0], 1))


def _error_of(path, **kwargs) -> str:
    with pytest.raises(CalcinosisError) as info:
        read_image(path, **kwargs)
    return str(info.value)


# ---- DICOM ---------------------------------------------------------------------------


def test_ct_small_is_calibrated_with_header_spacing():
    image = read_image(CT_SMALL)
    ds = pydicom.dcmread(CT_SMALL)
    stored = ds.pixel_array.astype(np.float64)
    expected_hu = stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)

    assert image.spacing_mm == (0.661468, 0.661468)
    assert image.spacing_origin == "PixelSpacing"
    assert image.pixels_hu.dtype == np.float32
    assert image.shape == (128, 128)
    np.testing.assert_array_equal(image.pixels_hu, expected_hu.astype(np.float32))
    assert image.pixels_hu.min() == expected_hu.min() == 128 - 1024
    assert image.pixels_hu.max() == expected_hu.max() == 2191 - 1024
    assert "RescaleSlope/Intercept" in image.value_origin
    assert image.saturated_above_hu is None
    # CT_small has no WindowCenter/Width, so the bone window applies.
    assert "WindowCenter" not in ds
    assert (image.window_level_hu, image.window_width_hu) == (450.0, 1500.0)
    assert image.name == "CT_small"


def test_header_window_is_read_and_non_ct_modality_is_flagged():
    image = read_image(get_testdata_file("MR_small.dcm"))
    assert (image.window_level_hu, image.window_width_hu) == (600.0, 1600.0)
    assert image.spacing_mm == (0.3125, 0.3125)
    assert "may not be Hounsfield" in image.value_origin


def test_explicit_pixel_size_overrides_file_spacing():
    image = read_image(CT_SMALL, pixel_size_mm=(0.5, 0.25))
    assert image.spacing_mm == (0.5, 0.25)
    assert image.spacing_origin.startswith("user (pixel_size_mm)")
    assert "0.661468" in image.spacing_origin


def test_spacing_falls_back_to_imager_pixel_spacing_then_to_user(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.4, 0.3]
    imager = tmp_path / "imager.dcm"
    ds.save_as(imager)
    image = read_image(imager)
    assert image.spacing_mm == (0.4, 0.3)
    assert image.spacing_origin == "ImagerPixelSpacing"

    del ds.ImagerPixelSpacing
    no_spacing = tmp_path / "no_spacing.dcm"
    ds.save_as(no_spacing)
    message = _error_of(no_spacing)
    assert "no_spacing.dcm" in message
    assert "pixel_size_mm" in message and "--pixel-size" in message

    image = read_image(no_spacing, pixel_size_mm=0.3)
    assert image.spacing_mm == (0.3, 0.3)
    assert image.spacing_origin == "user (pixel_size_mm)"


def test_dicom_without_preamble_or_meta_and_without_suffix_is_read(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    del ds.file_meta
    ds.preamble = None
    raw = tmp_path / "1.2.840.99999.1"  # UID-style name: suffix ".1"
    ds.save_as(raw, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert raw.read_bytes()[128:132] != b"DICM"

    image = read_image(raw)
    np.testing.assert_array_equal(image.pixels_hu, read_image(CT_SMALL).pixels_hu)
    assert image.spacing_mm == (0.661468, 0.661468)
    # its name keeps the UID's last number (the next slice is ...99999.2), as a layer's name does
    assert image.name == "1.2.840.99999.1"
    assert CalcinosisImage(image.pixels_hu, 0.5, source="finger 2.5").name == "finger 2.5"
    assert CalcinosisImage(image.pixels_hu, 0.5, source="/data/finger.DCM").name == "finger"
    assert CalcinosisImage(image.pixels_hu, 0.5, source="/data/export.jpeg").name == "export"


def test_rgb_dicom_is_mapped_back_through_the_window_not_taken_as_hu():
    path = get_testdata_file("SC_rgb_small_odd.dcm")
    rgb = pydicom.dcmread(path).pixel_array.astype(np.float64)
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    image = read_image(path, pixel_size_mm=0.2)  # its header's 33 mm pixels are implausible
    np.testing.assert_allclose(
        image.pixels_hu, BONE_BOTTOM_HU + luminance / 255 * WINDOW_WIDTH_HU, atol=1e-3
    )
    assert "not HU" in image.value_origin
    assert image.saturated_above_hu == BONE_TOP_HU


@pytest.mark.parametrize(("photometric", "rescale"), [("MONOCHROME2", None), ("MONOCHROME1", None),
                                                     ("MONOCHROME2", (1, 0))])  # an identity rescale says nothing
def test_a_grey_screen_save_dicom_is_mapped_back_through_the_window_like_its_png(tmp_path, photometric, rescale):
    # A workstation's grey secondary capture of the W1500/L450 view: 8-bit display levels and no
    # rescale. Read as HU (0-255) every deposit against the bone grew into it (41 mm² for 2.4).
    from napari_calcinosis import make_phantom, quantify, write_windowed_png
    from napari_calcinosis.io import write_dicom

    phantom = make_phantom(seed=10)
    png = write_windowed_png(tmp_path / "view.png", phantom.image_hu)
    grey = np.asarray(Image.open(png))
    ds = pydicom.dcmread(write_dicom(tmp_path / "sc.dcm", phantom.image_hu, phantom.spacing_mm))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    ds.Modality, ds.ImageType = "OT", ["DERIVED", "SECONDARY", "SCREEN SAVE"]
    for keyword in ("RescaleIntercept", "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth"):
        delattr(ds, keyword)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation = photometric
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.PixelData = (grey if photometric == "MONOCHROME2" else 255 - grey).astype(np.uint8).tobytes()
    ds.save_as(tmp_path / "sc.dcm")
    image, export = read_image(tmp_path / "sc.dcm"), read_image(png, pixel_size_mm=phantom.spacing_mm)
    np.testing.assert_allclose(image.pixels_hu, export.pixels_hu, atol=1e-3)
    assert image.value_origin.startswith(f"{photometric} DICOM (not HU): 8-bit grey levels")
    assert image.saturated_above_hu == BONE_TOP_HU and np.allclose(image.spacing_mm, phantom.spacing_mm)
    areas = quantify(image, phantom.seeds).table["area_mm2"].to_numpy()
    np.testing.assert_allclose(areas, phantom.lesion_areas_mm2, rtol=0.35, atol=0.3)


def test_a_one_bit_dicom_is_no_screen_save():
    # pydicom's SEG (1-bit, no rescale) keeps its stored values: a mask, not display levels
    image = read_image(get_testdata_file("liver_1frame.dcm"), pixel_size_mm=0.5)
    assert "mapped back" not in image.value_origin and float(image.pixels_hu.max()) <= 1


def test_a_padding_value_that_reads_as_tissue_or_air_marks_nothing(tmp_path):
    # PixelPaddingValue 0 over HU stored as they are: 0 HU is soft tissue, so nothing is padding
    from napari_calcinosis import make_phantom
    from napari_calcinosis.io import write_dicom

    phantom = make_phantom(seed=10)
    ds = pydicom.dcmread(write_dicom(tmp_path / "pad0.dcm", phantom.image_hu, phantom.spacing_mm))
    ds.add_new(0x00280120, "SS", 1024)  # 0 HU once rescaled (intercept -1024)
    ds.save_as(tmp_path / "pad0.dcm")
    image = read_image(tmp_path / "pad0.dcm")
    assert "PixelPaddingValue" not in image.value_origin
    np.testing.assert_array_equal(image.pixels_hu, read_image(write_dicom(tmp_path / "plain.dcm", phantom.image_hu,
                                                                            phantom.spacing_mm)).pixels_hu)


@pytest.mark.parametrize("intercept", [0, -1024])
def test_signed_values_under_an_unsigned_header_are_read_as_signed(tmp_path, intercept):
    # A converter wrote signed HU (air -1000) but PixelRepresentation 0: air read +64536 HU, and
    # the phantom's deposits were grown in a finger of "calcium", warned of but measured.
    from napari_calcinosis import make_phantom, quantify
    from napari_calcinosis.io import write_dicom

    phantom = make_phantom(seed=10)
    plain = read_image(write_dicom(tmp_path / "plain.dcm", phantom.image_hu, phantom.spacing_mm))
    ds = pydicom.dcmread(tmp_path / "plain.dcm")
    ds.PixelRepresentation, ds.RescaleIntercept = 0, intercept
    ds.PixelData = (np.round(plain.pixels_hu) - intercept).astype(np.int16).view(np.uint16).tobytes()
    ds.save_as(tmp_path / "unsigned.dcm")
    image = read_image(tmp_path / "unsigned.dcm")
    np.testing.assert_array_equal(image.pixels_hu, plain.pixels_hu)
    assert "read as signed 16-bit numbers: the header says unsigned (PixelRepresentation 0)" in image.value_origin
    result = quantify(image, phantom.seeds)
    assert result.warnings == []
    np.testing.assert_allclose(result.table["area_mm2"], phantom.lesion_areas_mm2, rtol=0.35, atol=0.3)


def test_signed_values_under_an_unsigned_header_are_read_as_signed_big_endian_too(tmp_path):
    from napari_calcinosis.io import write_dicom

    ds = pydicom.dcmread(write_dicom(tmp_path / "plain.dcm", np.zeros((64, 64)), 0.25))
    hu = np.full((64, 64), -1000, np.int16)
    hu[10:20, 10:20] = 500
    ds.PixelRepresentation, ds.RescaleIntercept = 0, 0
    ds.PixelData = hu.astype(">i2").tobytes()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
    pydicom.dcmwrite(tmp_path / "big.dcm", ds, little_endian=False, implicit_vr=False, force_encoding=True)
    assert pydicom.dcmread(tmp_path / "big.dcm").pixel_array.dtype.byteorder == ">"  # as pydicom gives it
    image = read_image(tmp_path / "big.dcm")
    np.testing.assert_array_equal(image.pixels_hu, hu)


def test_unsigned_values_of_another_modality_are_left_unsigned(tmp_path):
    # an MR image's intensities fill the unsigned range: they are no signed HU
    from napari_calcinosis.io import write_dicom

    ds = pydicom.dcmread(write_dicom(tmp_path / "plain.dcm", np.zeros((64, 64)), 0.25))
    stored = np.full((64, 64), 1000, np.uint16)
    stored[20:40, 20:40] = 40000
    ds.Modality, ds.PixelRepresentation, ds.PixelData = "MR", 0, stored.tobytes()
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.save_as(tmp_path / "mr.dcm")
    image = read_image(tmp_path / "mr.dcm")
    np.testing.assert_array_equal(image.pixels_hu, stored)
    assert "signed" not in image.value_origin


def test_unsigned_values_that_a_ct_gives_are_left_unsigned(tmp_path):
    # The usual unsigned file (HU + 1024, up to 3071 HU), and values up to the extended scale
    from napari_calcinosis.io import write_dicom

    ds = pydicom.dcmread(write_dicom(tmp_path / "plain.dcm", np.zeros((64, 64)), 0.25))
    stored = np.full((64, 64), 24, np.uint16)  # air
    stored[10:20, 10:20] = 31734  # 30710 HU, the top of an extended CT scale (metal)
    ds.PixelRepresentation, ds.RescaleIntercept, ds.PixelData = 0, -1024, stored.tobytes()
    ds.save_as(tmp_path / "extended.dcm")
    image = read_image(tmp_path / "extended.dcm")
    assert image.pixels_hu.max() == 30710 and image.pixels_hu.min() == -1000 and "signed" not in image.value_origin


@pytest.mark.parametrize(("signed", "padding"), [(False, 63536), (True, -2000), (False, -2000), (True, 63536)])
def test_pixel_padding_outside_the_field_of_view_is_no_tissue(tmp_path, signed, padding):
    # PixelPaddingValue marks the pixels outside the reconstructed circle. Stored unsigned as
    # 63536 (-2000 written as unsigned, as some scanners do) it read as +62512 HU: calcium
    # around the finger, and a false "soft tissue as bright as calcium" warning on every row.
    from napari_calcinosis import make_phantom, quantify
    from napari_calcinosis.io import PADDING_HU, write_dicom

    phantom = make_phantom(seed=10)
    hu = phantom.image_hu
    rows, cols = np.mgrid[: hu.shape[0], : hu.shape[1]]
    outside = ((rows / hu.shape[0] - 0.5) / 0.62) ** 2 + ((cols / hu.shape[1] - 0.5) / 0.62) ** 2 > 1
    ds = pydicom.dcmread(write_dicom(tmp_path / "pad.dcm", hu, phantom.spacing_mm))
    stored = np.clip(np.round(hu) + 1024, 0, None).astype(np.int64)
    expected_hu = stored - 1024.0
    stored[outside] = padding
    ds.PixelRepresentation = int(signed)
    ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
    ds.add_new(0x00280120, "SS" if signed else "US", padding if (padding < 0) == signed else
               (padding - 65536 if signed else padding + 65536))
    ds.save_as(tmp_path / "pad.dcm")
    image = read_image(tmp_path / "pad.dcm")
    assert (image.pixels_hu[outside] == PADDING_HU).all()
    np.testing.assert_array_equal(image.pixels_hu[~outside], expected_hu[~outside])
    assert f"{outside.sum()} pixels of PixelPaddingValue" in image.value_origin
    result = quantify(image, phantom.seeds)
    assert result.warnings == []
    np.testing.assert_allclose(result.table["area_mm2"], phantom.lesion_areas_mm2, rtol=0.35, atol=0.3)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("rtplan.dcm", ["no pixel data", "RT Plan"]),
        ("rtdose.dcm", ["15 frames", "one 2-D", "export the slice"]),
        ("SC_rgb_rle_2frame.dcm", ["2 frames"]),
        ("MR_truncated.dcm", ["truncated"]),
        ("no_meta.dcm", ["DICM", "neither a DICOM"]),  # a stray leading byte: unreadable
        ("DICOMDIR", ["no pixel data", "DICOMDIR"]),
        ("UN_sequence.dcm", ["no pixel data", "CT Image Storage with its pixels left out"]),
    ],
)
def test_odd_pydicom_files_give_one_clear_error(name, words):
    path = get_testdata_file(name)
    message = _error_of(path)
    assert name in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("fraction", "words"),
    [(0.5, ["pixel data is shorter", "truncated"]), (0.1, ["no pixel data", "truncated"])],
)
def test_truncated_ct_small_is_reported_as_truncated(tmp_path, fraction, words):
    data = open(CT_SMALL, "rb").read()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: int(len(data) * fraction)])
    message = _error_of(cut)
    assert "cut.dcm" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("name", ["garbage", "garbage.dcm", "garbage.xyz", "garbage.png"])
def test_garbage_file_is_refused(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    message = _error_of(path)
    assert name in message
    assert "DICOM" in message or "PNG image" in message


def test_missing_file_and_folder_are_refused(tmp_path):
    assert "file not found" in _error_of(tmp_path / "nope.dcm")
    assert "not a file" in _error_of(tmp_path)


def test_write_dicom_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    hu = rng.uniform(-1024.0, 3000.0, size=(33, 47))
    hu[0, 0] = 40000.0  # beyond int16 after the offset: clipped, not wrapped
    path = write_dicom(
        tmp_path / "slice.dcm", hu, (0.25, 0.3), window_level_hu=40, window_width_hu=400,
        patient_id="P01", description="test slice",
    )
    assert path == tmp_path / "slice.dcm"
    assert path.read_bytes()[128:132] == b"DICM"

    ds = pydicom.dcmread(path)  # no force: a proper Part 10 file
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert ds.file_meta.MediaStorageSOPClassUID == pydicom.uid.CTImageStorage
    assert ds.Modality == "CT" and ds.PatientID == "P01" and ds.SeriesDescription == "test slice"
    assert float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == -1024

    image = read_image(path)
    assert image.spacing_mm == (0.25, 0.3)
    assert (image.window_level_hu, image.window_width_hu) == (40.0, 400.0)
    assert image.pixels_hu[0, 0] == 32767 - 1024
    inside = np.ones(hu.shape, bool)
    inside[0, 0] = False
    assert np.max(np.abs(image.pixels_hu[inside] - hu[inside])) <= 0.5


# ---- windowed exports ----------------------------------------------------------------


def test_8bit_png_maps_back_through_the_bone_window(tmp_path):
    hu = _hu_ramp(-1000.0, 2000.0, shape=(8, 301))
    path = write_windowed_png(tmp_path / "ramp.png", hu)
    image = read_image(path, pixel_size_mm=0.2)

    assert image.spacing_mm == (0.2, 0.2)
    assert image.spacing_origin == "user (pixel_size_mm)"
    assert image.saturated_above_hu == BONE_TOP_HU
    assert "8-bit" in image.value_origin and "W1500/L450" in image.value_origin
    inside = (hu >= BONE_BOTTOM_HU) & (hu <= BONE_TOP_HU)
    assert np.max(np.abs(image.pixels_hu[inside] - hu[inside])) <= 1500 / 255 / 2 + 1e-3
    np.testing.assert_allclose(image.pixels_hu[hu > BONE_TOP_HU], BONE_TOP_HU)
    np.testing.assert_allclose(image.pixels_hu[hu < BONE_BOTTOM_HU], BONE_BOTTOM_HU)
    # The display image of what was read is the exported file, pixel for pixel.
    np.testing.assert_array_equal(image.to_uint8(), np.asarray(Image.open(path)))


def test_an_export_in_memory_becomes_the_image_read_image_reads(tmp_path):
    # napari's own reader opens a PNG as 0-255 and a colour JPEG as RGB: the same HU as the file
    hu = _hu_ramp(-1000.0, 2000.0, shape=(8, 301))
    path = write_windowed_png(tmp_path / "ramp.png", hu)
    from_file = read_image(path, pixel_size_mm=0.2)
    grey = np.asarray(Image.open(path))
    for values in (grey, np.stack([grey] * 3, axis=-1), grey[None]):
        image = image_from_export(values, 0.2, source="ramp")
        np.testing.assert_allclose(image.pixels_hu, from_file.pixels_hu, atol=1e-3)
        assert image.spacing_mm == (0.2, 0.2) and image.saturated_above_hu == BONE_TOP_HU
        assert image.value_origin.startswith("8-bit export mapped back through W1500/L450")
    wide = image_from_export(grey, (0.3, 0.2), window_level_hu=40, window_width_hu=400)
    assert wide.pixels_hu.min() == pytest.approx(-160) and wide.saturated_above_hu == 240
    assert wide.spacing_mm == (0.3, 0.2)
    sixteen = image_from_export(np.array([[0, 65535]], np.uint16), 0.2)
    assert sixteen.pixels_hu.tolist() == [[BONE_BOTTOM_HU, BONE_TOP_HU]]
    # float values are HU already, and nothing was clipped
    as_hu = image_from_export(hu.astype(np.float32), 0.2)
    np.testing.assert_array_equal(as_hu.pixels_hu, hu.astype(np.float32))
    assert as_hu.saturated_above_hu is None and as_hu.value_origin.startswith("float image taken as HU")
    with pytest.raises(CalcinosisError, match=r"ramp: has shape \(3, 8, 301\); an export is one 2-D slice"):
        image_from_export(np.stack([grey] * 3), 0.2, source="ramp")
    with pytest.raises(CalcinosisError, match="pixel_size_mm"):
        image_from_export(grey, 0.0)


def test_png_without_pixel_size_is_refused(tmp_path):
    path = write_windowed_png(tmp_path / "nosize.png", _hu_ramp(0, 100))
    message = _error_of(path)
    assert "nosize.png" in message
    assert "pixel_size_mm" in message and "--pixel-size" in message


@pytest.mark.parametrize(
    "bad", [-0.2, 0.0, float("nan"), float("inf"), (0.2, -0.1), (0.1, 0.2, 0.3), "x"]
)
def test_bad_pixel_size_is_refused(tmp_path, bad):
    path = write_windowed_png(tmp_path / "ramp.png", _hu_ramp(0, 100))
    with pytest.raises(CalcinosisError, match="pixel_size_mm"):
        read_image(path, pixel_size_mm=bad)


def test_rectangular_pixel_size(tmp_path):
    path = write_windowed_png(tmp_path / "ramp.png", _hu_ramp(0, 100))
    assert read_image(path, pixel_size_mm=(0.2, 0.3)).spacing_mm == (0.2, 0.3)


def _16bit_soft_tissue_export(hu: np.ndarray) -> np.ndarray:
    return np.round(hu_to_window_unit(hu, 40, 400) * 65535).astype(np.uint16)


def test_16bit_png_with_custom_window(tmp_path):
    hu = _hu_ramp(-400.0, 500.0, shape=(6, 500))
    path = tmp_path / "soft16.png"
    Image.fromarray(_16bit_soft_tissue_export(hu)).save(path)
    image = read_image(path, pixel_size_mm=0.1, window_level_hu=40, window_width_hu=400)

    assert "16-bit" in image.value_origin and "W400/L40" in image.value_origin
    assert image.saturated_above_hu == 240.0
    assert (image.window_level_hu, image.window_width_hu) == (40.0, 400.0)
    inside = (hu >= -160) & (hu <= 240)
    assert np.max(np.abs(image.pixels_hu[inside] - hu[inside])) <= 400 / 65535 / 2 + 1e-3
    np.testing.assert_allclose(image.pixels_hu[hu > 240], 240.0)


def test_16bit_tiff_with_custom_window(tmp_path):
    hu = _hu_ramp(-160.0, 240.0, shape=(5, 400))
    path = tmp_path / "soft16.tif"
    tifffile.imwrite(path, _16bit_soft_tissue_export(hu))
    image = read_image(path, pixel_size_mm=0.1, window_level_hu=40, window_width_hu=400)
    assert np.max(np.abs(image.pixels_hu - hu)) <= 400 / 65535 / 2 + 1e-3


def test_float_and_signed_tiff_are_taken_as_hu(tmp_path):
    hu = _hu_ramp(-1000.0, 3000.0).astype(np.float32)
    tifffile.imwrite(tmp_path / "hu.tif", hu)
    image = read_image(tmp_path / "hu.tif", pixel_size_mm=0.2)
    np.testing.assert_array_equal(image.pixels_hu, hu)
    assert image.value_origin == "float TIFF taken as HU"
    assert image.saturated_above_hu is None

    tifffile.imwrite(tmp_path / "hu16.tif", np.round(hu).astype(np.int16))
    image = read_image(tmp_path / "hu16.tif", pixel_size_mm=0.2)
    np.testing.assert_array_equal(image.pixels_hu, np.round(hu))


def test_multipage_tiff_is_refused(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    message = _error_of(path, pixel_size_mm=0.2)
    assert "stack.tif" in message and "3 pages" in message and "one 2-D" in message


@pytest.mark.parametrize("channels", ["RGB", "RGBA"])
def test_grey_rgb_png_reads_like_grey(tmp_path, channels):
    hu = _hu_ramp(-500.0, 1500.0)
    grey_path = write_windowed_png(tmp_path / "grey.png", hu)
    grey = np.asarray(Image.open(grey_path))
    layers = [grey] * 3 + ([np.full_like(grey, 200)] if channels == "RGBA" else [])
    colour_path = tmp_path / "colour.png"
    Image.fromarray(np.stack(layers, axis=-1)).save(colour_path)

    colour_image = read_image(colour_path, pixel_size_mm=0.2)
    assert colour_image.pixels_hu.ndim == 2
    assert "luminance" in colour_image.value_origin
    np.testing.assert_allclose(
        colour_image.pixels_hu, read_image(grey_path, pixel_size_mm=0.2).pixels_hu, atol=1e-3
    )


@pytest.mark.parametrize("colour", [(0, 0, 255), (0, 255, 0)])
def test_a_colour_coded_export_is_warned_about(tmp_path, colour):
    # A dual-energy CT application paints calcium blue or urate green over the grey slice. Their
    # luminance is no grey level of the window (blue reads 149 HU, green 580): a helper's run
    # measured such deposits at 2.6 mm² for 1.0, with no warning.
    from napari_calcinosis import make_phantom, quantify
    from napari_calcinosis.io import image_caveats

    phantom = make_phantom(seed=3)
    grey = np.asarray(Image.open(write_windowed_png(tmp_path / "grey.png", phantom.image_hu)))
    rgb = np.stack([grey] * 3, axis=-1)
    grey_image = read_image(tmp_path / "grey.png", pixel_size_mm=phantom.spacing_mm)
    rgb[phantom.lesion_labels > 0] = colour
    Image.fromarray(rgb).save(tmp_path / "coded.png")
    image = read_image(tmp_path / "coded.png", pixel_size_mm=phantom.spacing_mm)
    n = int((phantom.lesion_labels > 0).sum())
    expected = (f"{n} of its pixels ({100 * n / rgb[..., 0].size:.2g} %) are in colour, not grey: a colour-coded image "
                "(a dual-energy calcium or urate overlay) or one with coloured marks, whose colours are no grey levels "
                "of the window, so deposits there are mis-measured: export the slice in grey")
    assert expected in image_caveats(image)
    assert expected in quantify(image, phantom.seeds).warnings
    assert not any("in colour" in note for note in image_caveats(grey_image))


def test_a_colour_dicom_of_another_modality_is_no_finger_ct(tmp_path):
    # An ultrasound screen save (pydicom's RGB example, Modality US) was read as a bone-window export,
    # its value_unit HU and no warning: a helper's run measured 55 "lesions" on it.
    from napari_calcinosis.io import image_caveats

    image = read_image(get_testdata_file("examples_rgb_color.dcm"), pixel_size_mm=0.25)
    assert image.value_unit == "stored value"
    assert "it is not a CT image (the file's Modality is US): its values are not HU" in image_caveats(image)
    # a screen save of a CT (Modality OT) is what it should be
    sc = read_image(get_testdata_file("SC_rgb_small_odd.dcm"), pixel_size_mm=0.25)
    assert pydicom.dcmread(get_testdata_file("SC_rgb_small_odd.dcm")).Modality == "OT"
    assert sc.value_unit == "HU" and not any("not a CT image" in note for note in image_caveats(sc))


def test_pixels_far_longer_than_wide_are_warned_about():
    from napari_calcinosis.io import image_caveats

    finger = np.full((256, 256), 40.0)
    finger[:, :20], finger[100:110, 100:110] = -1000.0, 900.0
    lost_digit = CalcinosisImage(finger, (0.2288, 0.02288))
    assert ("its pixels are 0.2288 x 0.02288 mm (rows x columns), 10 times longer than wide (a sagittal reformat's "
            "are at most about 5 times): check the pixel size, a digit may be lost on one side") in image_caveats(lost_digit)
    reformat = CalcinosisImage(finger, (1.0, 0.2))  # 1 mm slices across 0.2 mm pixels
    assert not any("longer than wide" in note for note in image_caveats(reformat))


def test_rgb_jpeg_export(tmp_path):
    hu = _hu_ramp(-300.0, 1200.0, shape=(32, 128))
    grey = np.round(hu_to_window_unit(hu) * 255).astype(np.uint8)
    path = tmp_path / "export.jpg"
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(path, quality=95)
    image = read_image(path, pixel_size_mm=0.2)
    assert image.shape == (32, 128)
    assert image.saturated_above_hu == BONE_TOP_HU
    # JPEG compression moves grey levels by a few steps of 1500/255 ~ 5.9 HU each.
    assert np.max(np.abs(image.pixels_hu - hu)) <= 4 * 1500 / 255


# ---- window arithmetic and the image type --------------------------------------------


def test_window_unit_round_trip_and_clipping():
    hu = np.array([-1000.0, -300.0, 0.0, 450.0, 1200.0, 3000.0])
    unit = hu_to_window_unit(hu)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, [0.0, 0.0, 0.2, 0.5, 1.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(window_unit_to_hu(unit[1:5]), hu[1:5], atol=1e-3)
    np.testing.assert_allclose(window_unit_to_hu(np.array([0.5]), 40, 400), [40.0])
    with pytest.raises(CalcinosisError, match="width"):
        hu_to_window_unit(hu, 450, 0)


def test_calcinosis_image_helpers():
    image = CalcinosisImage(pixels_hu=[[-300.0, 450.0], [1200.0, 5000.0]], spacing_mm=(0.1, 0.2),
                            source="/data/finger_07.png")
    assert image.pixels_hu.dtype == np.float32
    assert image.shape == (2, 2)
    assert image.name == "finger_07"
    np.testing.assert_array_equal(image.to_uint8(), [[0, 128], [255, 255]])
    with pytest.raises(CalcinosisError):
        CalcinosisImage(pixels_hu=np.zeros((2, 2, 2)), spacing_mm=(0.1, 0.1))


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    assert "empty" in _error_of(path)


@pytest.mark.parametrize(("kind", "words"), [("1-bit", ["1-bit"]), ("animated", ["2 frames"])])
def test_unmeasurable_pngs_are_refused(tmp_path, kind, words):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    path = tmp_path / f"{kind}.png"
    if kind == "1-bit":
        Image.fromarray(grey > 100).save(path)
    else:
        Image.fromarray(grey).save(path, save_all=True, append_images=[Image.fromarray(255 - grey)])
    message = _error_of(path, pixel_size_mm=0.2)
    assert path.name in message
    for word in words:
        assert word in message


def test_prefer_file_spacing_keeps_the_dicom_spacing_in_a_mixed_batch():
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    image = read_image(path, pixel_size_mm=0.3, prefer_file_spacing=True)
    assert image.spacing_mm == (0.661468, 0.661468)
    assert "was not used" in image.spacing_origin
    assert read_image(path, pixel_size_mm=0.3).spacing_mm == (0.3, 0.3)  # an explicit override otherwise


@pytest.mark.parametrize(("body_part", "warned"), [("HEAD", True), ("WHOLE BODY", True), ("HAND", False),
                                                    ("UPR EXTREMITY", False), ("RIGHT FINGER", False), ("", False)])
def test_a_dicom_of_another_body_part_is_warned_about(tmp_path, body_part, warned):
    import pydicom

    from napari_calcinosis import read_image
    from napari_calcinosis.io import image_caveats, write_dicom

    finger = np.full((128, 128), 40, np.float32)
    finger[:, :10], finger[60:70, 60:70] = -1000, 900
    path = tmp_path / "slice.dcm"
    write_dicom(path, finger, 0.25)
    ds = pydicom.dcmread(path)
    ds.BodyPartExamined = body_part
    ds.save_as(path)
    image = read_image(path)
    assert image.body_part == body_part
    expected = [f"the DICOM header names the body part {body_part} (BodyPartExamined), not a hand or finger: the "
                "method measures a sagittal finger slice, check that this is one"] if warned else []
    assert image_caveats(image) == expected
    # pydicom's own CT of a head (BodyPartExamined HEAD), measured without a word before
    head = read_image(pydicom.data.get_testdata_file("J2K_pixelrep_mismatch.dcm"))
    assert any("body part HEAD" in note for note in image_caveats(head))


def _dicom_with(path, pixels_hu, spacing_mm, header: dict):
    """A CT DICOM of ``pixels_hu`` (write_dicom) whose header also holds ``header``'s keywords."""
    from napari_calcinosis.io import write_dicom

    ds = pydicom.dcmread(write_dicom(path, pixels_hu, spacing_mm))
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


@pytest.mark.parametrize(("header", "kev"), [({"MonoenergeticEnergyEquivalent": 40.0}, 40.0),
                                             ({"SeriesDescription": "MonoE 40keV"}, 40.0),
                                             ({"SeriesDescription": "Mono+ 190 keV"}, 190.0),
                                             ({"MonoenergeticEnergyEquivalent": 70.0}, 70.0),
                                             ({"SeriesDescription": "DE_Hand 80kV/Sn140kV"}, None)])
def test_a_low_or_high_kev_monoenergetic_image_is_warned_about(tmp_path, header, kev):
    # A dual-energy CT's 40 keV image shows calcium about twice as bright: the bone mask and the
    # 200 HU threshold no longer hold (a helper saw 69 mm² for 2.4 with no warning).
    from napari_calcinosis import make_phantom, quantify, read_image

    phantom = make_phantom(seed=10)
    image = read_image(_dicom_with(tmp_path / "vmi.dcm", phantom.image_hu, phantom.spacing_mm, header))
    assert image.energy_kev == kev
    warnings = quantify(image, phantom.seeds).warnings
    if kev in (40.0, 190.0):
        assert [w for w in warnings if w.startswith(f"it is a virtual monoenergetic image at {kev:g} keV: bone and "
                                                     f"calcium read {'brighter' if kev < 60 else 'darker'} than")]
        assert any("measure the mixed or a 70 keV series" in w for w in warnings)
    else:
        assert not any("monoenergetic" in w for w in warnings)


@pytest.mark.parametrize(("keyword", "written", "offset_hu"), [
    ("RescaleIntercept", b"-1024,0", 0.0),  # a localised exporter's decimal comma: read as a point
    ("RescaleSlope", b"1,0", 0.0),
    ("RescaleSlope", b"0,5", None),
    ("RescaleSlope", b"abc", None),
    ("RescaleIntercept", b"x", None),
])
def test_a_rescale_written_with_a_decimal_comma_is_read_and_one_that_is_no_number_refused(
        tmp_path, keyword, written, offset_hu):
    # Unreadable, it was taken as 1 or 0: every HU off by 1024, with value_origin saying the
    # rescale was applied (a helper's run measured a 476 mm² "deposit").
    import struct

    hu = _hu_ramp(-1000.0, 1500.0)
    path = write_dicom(tmp_path / "rescale.dcm", hu, 0.25)
    raw = path.read_bytes()
    group, element = {"RescaleIntercept": (0x0028, 0x1052), "RescaleSlope": (0x0028, 0x1053)}[keyword]
    at = raw.index(struct.pack("<HH", group, element) + b"DS")
    length = struct.unpack("<H", raw[at + 6:at + 8])[0]
    value = written + b" " * (len(written) % 2)
    path.write_bytes(raw[:at + 6] + struct.pack("<H", len(value)) + value + raw[at + 8 + length:])
    if written == b"0,5":
        # the slope halves every stored value: compare with what a slope of 0.5 gives
        ds = pydicom.dcmread(path)
        expected = ds.pixel_array * 0.5 + float(ds.RescaleIntercept)
        np.testing.assert_allclose(read_image(path).pixels_hu, expected, atol=1e-3)
    elif offset_hu is not None:
        image = read_image(path)
        np.testing.assert_allclose(image.pixels_hu, hu, atol=0.5)
        assert image.value_origin == "DICOM RescaleSlope/Intercept"
    else:
        bad = written.decode()
        assert _error_of(path) == (f"{path}: its {keyword} is {bad!r}, not a number, so its values cannot be turned "
                                   "into HU; export the image again")


def test_a_pixel_spacing_written_with_decimal_commas_is_read(tmp_path):
    # '0,25\\0,25' from a localised exporter: a DICOM list is split by backslashes, so the comma
    # can only be a decimal one. It was refused as an unknown pixel size.
    from napari_calcinosis import read_image
    from napari_calcinosis.io import write_dicom

    path = write_dicom(tmp_path / "comma.dcm", np.full((64, 64), 40.0), 0.25)
    raw = path.read_bytes()
    assert raw.count(b"0.25\\0.25") == 1
    path.write_bytes(raw.replace(b"0.25\\0.25", b"0,25\\0,25"))
    image = read_image(path)
    assert image.spacing_mm == (0.25, 0.25) and image.spacing_origin == "PixelSpacing (written with decimal commas)"


LOCALIZER = "a localizer (a scout: a projection through the whole hand, not a slice)"


@pytest.mark.parametrize(("header", "slab"), [
    ({"ImageType": ["DERIVED", "PRIMARY", "MIP"], "SliceThickness": 3}, "a MIP of 3 mm"),
    ({"SeriesDescription": "Sag MinIP 5mm"}, "a MINIP"),
    ({"ImageType": ["DERIVED", "SECONDARY", "AVERAGE"], "SliceThickness": 5}, "an AVERAGE slab of 5 mm"),
    ({"ImageType": ["DERIVED", "SECONDARY", "AVERAGE"], "SliceThickness": 1}, ""),  # a thin average: fine
    ({"SliceThickness": 4}, "a 4 mm thick slice"),
    ({"SliceThickness": 0.6, "SeriesDescription": "Hand Bone 0.6 Sag"}, ""),
    # every study holds its localizer beside the slices: a projection radiograph, measured as a slice
    ({"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, LOCALIZER),
    ({"SeriesDescription": "Topogram 0.6 T20f"}, LOCALIZER),
])
def test_a_thick_slab_or_projection_is_warned_about(tmp_path, header, slab):
    # A MIP or a thick average adds neighbouring slices' deposits and bone (a helper's run: a MIP of
    # 5 slices read deposits about half as large again, with no warning).
    from napari_calcinosis.io import image_caveats

    finger = np.full((128, 128), 40, np.float32)
    finger[:, :10], finger[60:70, 60:70] = -1000, 900
    image = read_image(_dicom_with(tmp_path / "slab.dcm", finger, 0.25, header))
    assert image.slab == slab
    notes = [n for n in image_caveats(image) if "neighbouring slices add up" in n]
    assert notes == ([f"the DICOM header says it is {slab} (ImageType, SeriesDescription or SliceThickness): deposits "
                      "and bone of neighbouring slices add up in it (a MIP enlarges deposits): measure a thin slice "
                      "(at most 3 mm, no projection)"] if slab else [])


def test_image_caveats_name_values_that_are_not_hu():
    import pydicom.data

    from napari_calcinosis import CalcinosisImage, read_image
    from napari_calcinosis.io import image_caveats

    # pydicom's CT_small (an axial slice of a vertebra) has HU values: its only caveat is its 5 mm
    assert image_caveats(read_image(pydicom.data.get_testdata_file("CT_small.dcm"))) == [
        "the DICOM header says it is a 5 mm thick slice (ImageType, SeriesDescription or SliceThickness): deposits "
        "and bone of neighbouring slices add up in it (a MIP enlarges deposits): measure a thin slice (at most 3 mm, "
        "no projection)"]
    mr_image = read_image(pydicom.data.get_testdata_file("MR_small.dcm"))
    mr = image_caveats(mr_image)
    assert any("not a CT image (the file's Modality is MR)" in note for note in mr)
    # the table's value_unit says so too (it said HU)
    assert mr_image.value_unit == "stored value"
    assert read_image(pydicom.data.get_testdata_file("CT_small.dcm")).value_unit == "HU"
    from napari_calcinosis import quantify

    assert set(quantify(mr_image, [(32, 32)], device="cpu").table["value_unit"]) == {"stored value"}
    unit = np.linspace(0, 1, 128 * 128, dtype=np.float32).reshape(128, 128)  # a normalised float export
    notes = image_caveats(CalcinosisImage(unit, (0.25, 0.25)))
    assert any(n.startswith("no pixel is as dark as air or fat") for n in notes)
    assert any(n.startswith("nothing is as bright as calcium (the brightest are 1 HU") for n in notes)
    # a few bright pixels are counted, not said to be the brightest of nothing bright
    specks = np.full((128, 128), 40, np.float32)
    specks[:, :20] = -1000
    specks[60:63, 60:64] = 900
    assert any(n.startswith("only 12 pixel(s) are as bright as calcium (over 150 HU") for n in image_caveats(
        CalcinosisImage(specks, (0.25, 0.25))))
    flat = image_caveats(CalcinosisImage(np.full((128, 128), 453, np.float32), (0.25, 0.25)))
    assert flat == ["it is uniform (453 HU everywhere): there is nothing to measure"]
    finger = np.full((128, 128), 40, np.float32)
    finger[:, :10], finger[60:70, 60:70] = -1000, 900
    assert image_caveats(CalcinosisImage(finger, (0.25, 0.25))) == []
    assert "it spans only 13 mm" in image_caveats(CalcinosisImage(finger, (0.1, 0.1)))[0]
    # a scale of 1 (pixels) taken for mm: 128 mm across, but 1 mm pixels
    assert image_caveats(CalcinosisImage(finger, (1.0, 1.0))) == [
        "its pixels are 1 mm (finger CT has 0.1-0.6 mm pixels): if that is a scale of 1, the areas are pixel counts, "
        "not mm²: give the pixel size"]
    assert image_caveats(CalcinosisImage(finger, (0.6, 0.6))) == []


def test_an_export_made_through_a_soft_tissue_window_is_named(tmp_path):
    # Exported at W400/L40 (a soft-tissue window) but read as the paper's W1500/L450: the soft
    # tissue reads as calcium and the whole finger would be a deposit. Read with its own window,
    # or as the DICOM, nothing is said.
    from napari_calcinosis import make_phantom
    from napari_calcinosis.io import image_caveats, soft_tissue_hu

    phantom = make_phantom(3)
    dicom = CalcinosisImage(phantom.image_hu, phantom.spacing_mm)
    assert -100 < soft_tissue_hu(dicom.pixels_hu) < 100 and image_caveats(dicom) == []
    path = write_windowed_png(tmp_path / "soft.png", phantom.image_hu, window_level_hu=40, window_width_hu=400)
    misread = image_caveats(read_image(path, pixel_size_mm=phantom.spacing_mm))
    assert any(n.startswith("the finger's soft tissue reads about") and "narrower window than W1500/L450" in n
               for n in misread), misread
    told = read_image(path, phantom.spacing_mm, window_level_hu=40, window_width_hu=400)
    assert image_caveats(told) == []
    # ...but read with its own window, it clipped bone and deposits together at 240 HU: refused
    from napari_calcinosis import quantify

    with pytest.raises(CalcinosisError, match=r"soft.png: the export's window \(W400/L40\) clipped everything above "
                                              r"240 HU, where bone and deposits \(300-2000 HU\) begin"):
        quantify(told)
    assert image_caveats(read_image(write_windowed_png(tmp_path / "bone.png", phantom.image_hu), phantom.spacing_mm)) == []
    scaled = image_caveats(CalcinosisImage(phantom.image_hu * 4 + 400, phantom.spacing_mm))
    assert any("scaled or offset rather than HU" in n for n in scaled)
    # a noiseless soft tissue at one value is the tissue, not a clipped floor
    flat = np.full((100, 100), 40.0, np.float32)
    flat[:, :10], flat[80:90, 20:80], flat[40:45, 40:45] = -1000.0, 1200.0, 900.0
    assert soft_tissue_hu(flat) == pytest.approx(40, abs=10)


@pytest.mark.parametrize("seed", [14, 17])
def test_an_export_through_a_wider_window_an_inverted_one_and_a_wide_canvas_are_told_apart(seed):
    # Exports a trial lab has, read as the paper's W1500/L450 (a review found them measured with
    # areas 2-40 times too large, status ok, no word): through a bone window (W3000/L500) or
    # scaled from the darkest to the brightest pixel, the air is not clipped at the window's
    # bottom; inverted, the border is white and the advice was to change the window.
    from napari_calcinosis import make_phantom
    from napari_calcinosis.io import image_caveats

    phantom = make_phantom(seed, varied=True, max_size_px=400)
    hu = phantom.image_hu

    def caveats(unit):
        return image_caveats(image_from_export(np.round(unit * 255).astype(np.uint8), phantom.spacing_mm))

    assert caveats(hu_to_window_unit(hu)) == []
    unclipped = r"\d+% of its pixels read between the window's bottom \(-300 HU\) and -200 HU, darker than fat yet not clipped"
    for unit in (hu_to_window_unit(hu, 500, 3000), (hu - hu.min()) / (hu.max() - hu.min())):
        notes = caveats(unit)
        assert any(re.match(unclipped, n) for n in notes), notes
    inverted = caveats(1 - hu_to_window_unit(hu))
    assert inverted and any("the export looks inverted (bone dark, air white)" in n for n in inverted), inverted
    assert not any("narrower window" in n for n in inverted)  # no window can mend it
    # the finger a small part of a wide black canvas: its bone and deposits are calcium all the same
    small = make_phantom(seed, varied=True, max_size_px=160)
    side = max(1024, int(np.sqrt((small.image_hu > 150).sum() / 0.004)))
    canvas = np.zeros((side, side))
    canvas[:small.image_hu.shape[0], :small.image_hu.shape[1]] = hu_to_window_unit(small.image_hu)
    wide = image_from_export(np.round(canvas * 255).astype(np.uint8), small.spacing_mm)
    assert np.percentile(wide.pixels_hu, 99.5) < 150  # calcium under half a per cent of the pixels
    assert image_caveats(wide) == []

def test_a_pixel_size_far_too_small_is_refused():
    from napari_calcinosis import CalcinosisError, CalcinosisImage, quantify

    pixels = np.full((512, 512), 40, np.float32)
    with pytest.raises(CalcinosisError, match=r"spans only 0.17 x 0.17 mm .* check the pixel size"):
        quantify(CalcinosisImage(pixels, (0.0003366, 0.0003366)), [(10, 10)])


def test_read_image_of_an_array_says_how_to_make_one():
    from napari_calcinosis import CalcinosisError, read_image

    with pytest.raises(CalcinosisError, match=r"CalcinosisImage\(pixels_hu=array"):
        read_image(np.zeros((64, 64)))
    with pytest.raises(CalcinosisError, match="give the image as a file path"):
        read_image(None)


def test_a_pixel_spacing_of_one_value_is_read_as_square(tmp_path):
    # A header with PixelSpacing holding one number raised a TypeError from len().
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PixelSpacing = 0.5
    ds.save_as(tmp_path / "one.dcm")
    from napari_calcinosis import read_image

    assert read_image(tmp_path / "one.dcm").spacing_mm == (0.5, 0.5)
