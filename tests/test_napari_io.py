"""napari reader/writer contributions: DICOM -> Image layer in HU, Labels -> lesion CSV."""

from __future__ import annotations

import numpy as np
import pydicom
import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from napari_calcinosis._errors import CalcinosisError
from napari_calcinosis._reader_writer import get_dicom_reader, write_lesions_csv
from napari_calcinosis.io import read_image, write_dicom

CT_SMALL = get_testdata_file("CT_small.dcm")
CT_SMALL_SPACING_MM = (0.661468, 0.661468)
PLUGIN = "napari-calcinosis"
READER_PYTHON_NAME = "napari_calcinosis._reader_writer:get_dicom_reader"
WRITER_PYTHON_NAME = "napari_calcinosis._reader_writer:write_lesions_csv"


def _two_squares() -> np.ndarray:
    labels = np.zeros((20, 30), dtype=np.int32)
    labels[2:6, 3:7] = 1  # 16 px
    labels[10:15, 20:25] = 2  # 25 px
    return labels


def _contribution_python_names(kind: str) -> set[str]:
    """python_names of this plugin's installed reader or writer contributions."""
    import npe2

    pm = npe2.PluginManager.instance()
    try:
        manifest = pm.get_manifest(PLUGIN)
    except KeyError:  # plugins not discovered yet (napari discovers them on first use)
        pm.discover()
        try:
            manifest = pm.get_manifest(PLUGIN)
        except KeyError:
            return set()
    contributions = getattr(manifest.contributions, kind) or []
    commands = {c.id: c.python_name for c in manifest.contributions.commands or []}
    return {commands.get(c.command) for c in contributions}


# ---- reader ----------------------------------------------------------------------------


def test_reader_gives_hu_layer_with_mm_scale():
    reader = get_dicom_reader(CT_SMALL)
    assert callable(reader)
    layers = reader(CT_SMALL)
    assert len(layers) == 1
    data, kwargs, layer_type = layers[0]
    image = read_image(CT_SMALL)

    assert layer_type == "image"
    np.testing.assert_array_equal(data, image.pixels_hu)
    assert data.dtype == np.float32
    assert tuple(kwargs["scale"]) == CT_SMALL_SPACING_MM
    assert kwargs["name"] == "CT_small"
    assert kwargs["colormap"] == "gray"
    # CT_small has no header window: the bone window W1500/L450 is used
    assert kwargs["contrast_limits"] == (-300.0, 1200.0)
    meta = kwargs["metadata"]
    assert meta["spacing_mm"] == CT_SMALL_SPACING_MM
    assert meta["source"] == CT_SMALL
    assert meta["value_origin"] == image.value_origin
    assert meta["spacing_origin"] == image.spacing_origin
    assert (meta["window_level_hu"], meta["window_width_hu"]) == (450.0, 1500.0)


def test_reader_uses_header_window_and_reads_a_list(tmp_path):
    hu = np.tile(np.linspace(-1000, 1500, 16), (8, 1))
    path = write_dicom(tmp_path / "soft.dcm", hu, (0.5, 0.25), window_level_hu=40, window_width_hu=400)
    paths = [str(path), CT_SMALL]
    layers = get_dicom_reader(paths)(paths)

    assert [kw["name"] for _, kw, _ in layers] == ["soft", "CT_small"]
    _, kwargs, _ = layers[0]
    assert kwargs["contrast_limits"] == (-160.0, 240.0)
    assert tuple(kwargs["scale"]) == (0.5, 0.25)
    np.testing.assert_allclose(layers[0][0], hu, atol=0.5)


def test_reader_recognises_dicom_by_suffix_or_marker(tmp_path):
    assert get_dicom_reader("x.png") is None
    assert get_dicom_reader(["a.dcm", "x.png"]) is None
    assert get_dicom_reader(str(tmp_path)) is None  # a folder
    for name in ("a.dcm", "b.DICOM", "c.ima"):
        assert get_dicom_reader(name) is not None
    # no suffix, but the DICM marker
    unnamed = tmp_path / "1.2.840.113619"
    unnamed.write_bytes(open(CT_SMALL, "rb").read())
    assert get_dicom_reader(str(unnamed)) is not None
    plain = tmp_path / "notes"
    plain.write_bytes(b"\0" * 200)
    assert get_dicom_reader(str(plain)) is None
    # an older file without the preamble and the marker, named by its UID
    import pydicom

    ds = pydicom.dcmread(CT_SMALL)
    del ds.file_meta
    ds.preamble = None
    bare = tmp_path / "1.2.840.99999.1"
    ds.save_as(bare, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert bare.read_bytes()[128:132] != b"DICM"
    reader = get_dicom_reader(str(bare))
    assert reader is not None
    np.testing.assert_array_equal(reader(str(bare))[0][0], read_image(CT_SMALL).pixels_hu)
    # a PNG named like a PACS export is not DICOM
    from PIL import Image as PILImage

    png = tmp_path / "IM000002"
    PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(png, format="PNG")
    assert get_dicom_reader(str(png)) is None


def test_reader_error_names_the_file(tmp_path):
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"this is not a DICOM file at all" * 10)
    reader = get_dicom_reader(str(garbage))
    assert reader is not None  # accepted by its suffix...
    with pytest.raises(CalcinosisError, match="garbage.dcm"):
        reader(str(garbage))  # ...and refused, by name, when read


# ---- writer ----------------------------------------------------------------------------


def test_writer_measures_labels_in_mm_when_no_features(tmp_path):
    labels = _two_squares()
    written = write_lesions_csv(
        str(tmp_path / "lesions"), labels, {"scale": np.array([0.2, 0.2]), "features": pd.DataFrame()}
    )
    assert written == [str(tmp_path / "lesions.csv")]
    table = pd.read_csv(written[0])
    assert len(table) == 2
    assert table["lesion_id"].tolist() == [1, 2]
    assert table["area_px"].tolist() == [16, 25]
    np.testing.assert_allclose(table["area_mm2"], [16 * 0.04, 25 * 0.04])


def test_writer_writes_given_features(tmp_path):
    features = {"lesion_id": [1, 2], "area_mm2": [9.5, 1.25], "note": ["big", "small"]}
    out = tmp_path / "table.csv"
    written = write_lesions_csv(str(out), _two_squares(), {"scale": (0.2, 0.2), "features": features})
    assert written == [str(out)]
    table = pd.read_csv(out)
    assert table.columns.tolist() == ["lesion_id", "area_mm2", "note"]
    assert table["area_mm2"].tolist() == [9.5, 1.25]
    assert table["note"].tolist() == ["big", "small"]


def test_writer_measures_a_painted_layer_as_it_is_now(tmp_path):
    # The features were measured before the user painted: the lesions as painted are written.
    from napari_calcinosis._widgets import EDITED

    stale = {"lesion_id": [1, 2], "area_mm2": [9.5, 1.25]}
    out = tmp_path / "table.csv"
    write_lesions_csv(str(out), _two_squares(), {"scale": (0.2, 0.2), "features": stale, "metadata": {EDITED: True}})
    np.testing.assert_allclose(pd.read_csv(out)["area_mm2"], [16 * 0.04, 25 * 0.04])



def test_a_lesion_painted_free_of_the_artery_it_ran_along_is_written_without_that_warning(tmp_path):
    # The warning of a lesion grown along a calcified artery asks the user to paint the line out;
    # written after that, its rows still said so. It is made anew from the lesions as they are.
    from napari_calcinosis._widgets import EDITED, MADE_HERE, SOURCE
    from napari_calcinosis.phantom import make_phantom
    from napari_calcinosis.pipeline import quantify

    ph = make_phantom(11, varied=True)  # a deposit at a joint touching an artery
    res = quantify(ph.to_image(), ph.seeds, bone_mask=ph.bone_mask)
    said = "; ".join(res.warnings)
    assert "runs on along a thin line" in said
    metadata = {MADE_HERE: True, SOURCE: "finger", "warnings": said}
    attributes = {"scale": ph.spacing_mm, "features": res.table, "metadata": metadata}
    write_lesions_csv(str(tmp_path / "grown.csv"), res.lesion_labels, attributes)
    assert pd.read_csv(tmp_path / "grown.csv")["warnings"].str.contains("runs on along a thin line").all()
    painted = np.where(ph.lesion_labels > 0, res.lesion_labels, 0)  # the line painted out
    write_lesions_csv(str(tmp_path / "painted.csv"), painted, {**attributes, "metadata": {**metadata, EDITED: True}})
    table = pd.read_csv(tmp_path / "painted.csv")
    assert not table["warnings"].astype(str).str.contains("thin line").any()
    assert table["area_mm2"].sum() < res.table["area_mm2"].sum() / 2

def test_writer_says_a_mask_at_scale_1_holds_pixel_counts(tmp_path):
    # a reader's own mask opened from a PNG (scale 1): its areas are pixel counts, said on its rows and
    # in napari, as Measure's Export CSV says it; at its image's scale, nothing to say
    with pytest.warns(UserWarning, match="pixel counts, not mm²"):
        write_lesions_csv(str(tmp_path / "own.csv"), _two_squares(), {"scale": (1.0, 1.0)})
    table = pd.read_csv(tmp_path / "own.csv")
    assert table["area_mm2"].tolist() == [16, 25]
    assert table["warnings"].str.startswith("the lesions layer has scale 1, so its areas are pixel counts").all()
    write_lesions_csv(str(tmp_path / "scaled.csv"), _two_squares(), {"scale": (0.2, 0.2)})
    assert "warnings" not in pd.read_csv(tmp_path / "scaled.csv").columns


def test_writer_refuses_the_samples_true_bone(tmp_path):
    from napari_calcinosis._napari import sample_finger

    (_, _, _), (bone, bone_kwargs, _), (lesions, lesion_kwargs, _) = sample_finger()
    with pytest.raises(CalcinosisError, match="this layer is the true bone layer, not lesions"):
        write_lesions_csv(str(tmp_path / "bone.csv"), bone, bone_kwargs)  # was one 'lesion' of 480 mm²
    assert not (tmp_path / "bone.csv").exists()
    write_lesions_csv(str(tmp_path / "truth.csv"), lesions, lesion_kwargs)
    assert len(pd.read_csv(tmp_path / "truth.csv")) == lesions.max()


def test_a_dicom_opened_by_napari_builtin_reader_is_refused(make_napari_viewer, tmp_path):
    # napari's builtin reader (imageio) reads a DICOM's folder and gives its first series under the
    # name of the file opened: another slice's, or another patient's, pixels
    import shutil

    from napari_calcinosis._sample_data import DATA_DIR
    from napari_calcinosis._widgets import image_pixels

    for name in ("sample_finger.dcm", "sample_finger_cut_off.dcm"):
        shutil.copy(f"{DATA_DIR}/{name}", tmp_path / name)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tmp_path / "sample_finger.dcm"), plugin="napari")
    assert layer.data.shape != read_image(tmp_path / "sample_finger.dcm").pixels_hu.shape  # the other file's
    with pytest.raises(CalcinosisError, match="'sample_finger' is a DICOM file opened by another reader "
                                              r"\(napari's builtin reader\).*open it again with the napari-calcinosis"):
        image_pixels(layer)
    from napari_calcinosis._train_widget import TrainWidget

    labels = viewer.add_labels(np.zeros(layer.data.shape, np.uint8))
    with pytest.raises(CalcinosisError, match="is a DICOM file opened by another reader"):
        TrainWidget(viewer).add_pair(layer, labels)  # nor trained on
    [ours] = viewer.open(str(tmp_path / "sample_finger.dcm"), plugin=PLUGIN)
    np.testing.assert_array_equal(image_pixels(ours), read_image(tmp_path / "sample_finger.dcm").pixels_hu)


def test_writer_refuses_a_stack_without_features(tmp_path):
    with pytest.raises(CalcinosisError, match="2-D"):
        write_lesions_csv(str(tmp_path / "x.csv"), np.zeros((3, 5, 5), int), {"scale": (1, 1, 1)})


# ---- through napari / npe2 (needs the manifest entries) --------------------------------


def test_viewer_opens_dicom_with_the_plugin(make_napari_viewer, tmp_path):
    if READER_PYTHON_NAME not in _contribution_python_names("readers"):
        pytest.skip(f"napari.yaml has no reader contribution for {READER_PYTHON_NAME} yet")
    from napari.layers import Image

    viewer = make_napari_viewer()
    layers = viewer.open(CT_SMALL, plugin=PLUGIN)
    assert len(layers) == 1
    layer = layers[0]
    assert isinstance(layer, Image)
    assert tuple(layer.scale[-2:]) == CT_SMALL_SPACING_MM
    assert tuple(layer.contrast_limits) == (-300.0, 1200.0)
    np.testing.assert_array_equal(layer.data, read_image(CT_SMALL).pixels_hu)

    # a broken file surfaces as the plugin's error, naming the file
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not DICOM" * 20)
    with pytest.raises(CalcinosisError, match="broken.dcm"):
        viewer.open(str(broken), plugin=PLUGIN)
    assert len(viewer.layers) == 1


def test_viewer_offers_the_reader_for_names_pacs_exports_give(make_napari_viewer, tmp_path):
    """PACS exports name DICOM files without a suffix (IM000001, a UID): napari offers our
    reader for them, and only for them: a suffix another reader claims is left alone."""
    if READER_PYTHON_NAME not in _contribution_python_names("readers"):
        pytest.skip(f"napari.yaml has no reader contribution for {READER_PYTHON_NAME} yet")
    from napari.plugins._npe2 import get_readers

    for name in ("IM000001", "IM_0001", "I1000000", "00000001", "1", "12", "123",
                 "1.2.840.113619.2.55.3.604688119.969.1268071029.320", "1.3.6.1.4.1.9328.50.1.5",
                 "a.dcm", "b.DCM"):
        assert PLUGIN in get_readers(str(tmp_path / name)), name
    for name in ("finger.png", "scan_2024.png", "movie.mp4", "clip.h264", "raw.k25", "x.jp2",
                 "data.h5", "notes", "finger_1.tif"):
        assert PLUGIN not in get_readers(str(tmp_path / name)), name

    # No other reader claims such a name, so File -> Open opens it without asking.
    unnamed = tmp_path / "IM000001"
    unnamed.write_bytes(open(CT_SMALL, "rb").read())
    assert list(get_readers(str(unnamed))) == [PLUGIN]
    viewer = make_napari_viewer()
    viewer.window._qt_viewer._qt_open([str(unnamed)], stack=False)  # what File -> Open calls
    assert [layer.name for layer in viewer.layers] == ["IM000001"]
    layer = viewer.layers[0]
    assert tuple(layer.scale[-2:]) == CT_SMALL_SPACING_MM
    np.testing.assert_array_equal(layer.data, read_image(CT_SMALL).pixels_hu)


def test_npe2_writes_labels_layer_as_csv(tmp_path):
    if WRITER_PYTHON_NAME not in _contribution_python_names("writers"):
        pytest.skip(f"napari.yaml has no writer contribution for {WRITER_PYTHON_NAME} yet")
    import npe2
    from napari.layers import Labels

    layer = Labels(_two_squares(), scale=(0.2, 0.2))
    written = npe2.write(str(tmp_path / "lesions.csv"), [layer], plugin_name=PLUGIN)
    assert written == [str(tmp_path / "lesions.csv")]
    table = pd.read_csv(written[0])
    np.testing.assert_allclose(table["area_mm2"], [16 * 0.04, 25 * 0.04])


def test_a_dicom_without_spacing_opens_at_scale_1_with_a_warning(monkeypatch):
    # napari cannot be told a pixel size when opening a file: a secondary capture opens, at scale 1,
    # and says so, instead of failing with advice for the command line.
    import pydicom.data
    from napari.utils import notifications

    from napari_calcinosis._reader_writer import read_dicom

    said = []
    monkeypatch.setattr(notifications, "show_warning", said.append)
    [(data, kwargs, kind)] = read_dicom(pydicom.data.get_testdata_file("SC_rgb_jpeg.dcm"))
    assert kind == "image" and tuple(kwargs["scale"]) == (1.0, 1.0)
    assert "the pixel size is unknown" in said[0] and "opened at scale 1" in said[0]


def test_a_dicom_with_an_invalid_spacing_opens_at_scale_1_saying_why_in_full(monkeypatch, tmp_path):
    # The warning was cut at the first "; " inside the reason, mid-parenthesis, and the layer said
    # the file had no spacing when it had an implausible one.
    from napari.utils import notifications

    from napari_calcinosis._reader_writer import read_dicom

    path = write_dicom(tmp_path / "ten.dcm", np.full((32, 32), 40.0), 0.25)
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = [10, 10]
    ds.save_as(path)
    said = []
    monkeypatch.setattr(notifications, "show_warning", said.append)
    [(data, kwargs, kind)] = read_dicom(str(path))
    assert tuple(kwargs["scale"]) == (1.0, 1.0)
    assert said[0].startswith(f"{path}: the pixel size is unknown: its spacing is invalid (PixelSpacing of 10 mm is "
                              "not a plausible pixel size")
    assert "(finger DECT: 0.15-0.35 mm); give it in mm): opened at scale 1 (1 mm a pixel)." in said[0]
    assert "--pixel-size" not in said[0]
    assert kwargs["metadata"]["spacing_origin"] == "an invalid one in the file: opened at scale 1, to be set by the user"
