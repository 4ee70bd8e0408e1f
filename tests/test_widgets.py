"""The napari widgets, docked in a real viewer (run under xvfb), asserting on the layers they make."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_calcinosis import dice
from napari_calcinosis._sample_data import DATA_DIR, sample_truth

SHOTS = os.environ.get("NAPARI_CALCINOSIS_SCREENSHOTS")


def screenshot(viewer, name):
    # Documentation screenshots, only when asked for (they are looked at, then committed).
    if SHOTS:
        from imageio.v3 import imwrite

        from qtpy.QtWidgets import QApplication

        out = Path(__file__).parents[1] / "docs" / "images"
        out.mkdir(parents=True, exist_ok=True)
        viewer.window._qt_window.resize(1500, 950)
        viewer.window._qt_window.show()
        QApplication.processEvents()
        viewer.reset_view()
        for _ in range(5):  # the docks are fitted to their controls 0.1 s after they show
            time.sleep(0.05)
            QApplication.processEvents()
        imwrite(out / f"{name}.png", viewer.screenshot(canvas_only=False, flash=False))


@pytest.fixture
def sample(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-calcinosis", "sample_finger")
    image = layers[0]
    bone, lesions = sample_truth("sample_finger")
    seeds = pd.read_csv(DATA_DIR / "sample_finger_seeds.csv")[["row", "col"]].to_numpy(float)
    areas = pd.read_csv(DATA_DIR / "sample_finger_truth.csv")["area_mm2"].to_numpy()
    return viewer, image, bone, lesions, seeds, areas


def settings_of(lesions):
    """The ``settings`` column Export CSV writes for a lesions layer."""
    from napari_calcinosis._widgets import with_provenance

    return with_provenance(pd.DataFrame({"lesion_id": [1]}), lesions.metadata)["settings"][0]


def dock(viewer, widget):
    viewer.window.add_dock_widget(widget, area="right", name=type(widget).__name__.replace("Widget", ""))
    widget.reset_choices()
    return widget


def with_true_bone(viewer, widget, image, bone):
    """Dock ``widget`` with the image and the sample's true bone as its inputs."""
    bone_layer = viewer.add_labels(bone.astype(np.uint8), name="bone", scale=image.scale, units="mm")
    dock(viewer, widget)
    widget.image.value, widget.bone.value = image, bone_layer
    return widget


def test_sample_opens_with_scale_and_truth_layers(sample):
    viewer, image, bone, lesions, _, _ = sample
    assert image.data.shape == bone.shape
    assert tuple(image.scale) == (0.25, 0.25)
    assert {"sample_finger true bone", "sample_finger true lesions"} <= {layer.name for layer in viewer.layers}
    assert all(tuple(layer.scale) == (0.25, 0.25) for layer in viewer.layers)


def test_segment_widget_makes_an_editable_bone_layer(sample):
    from napari_calcinosis._widgets import SegmentWidget

    viewer, image, bone, _, _, _ = sample
    w = dock(viewer, SegmentWidget(viewer))
    w.image.value = image
    w.device.value = "cpu"
    out = w.run()
    assert out.name == "bone" and tuple(out.scale) == tuple(image.scale)
    assert dice(out.data > 0, bone) >= 0.97
    assert "mm²" in w.status.value
    # the user paints a correction: a re-run must not overwrite it
    out.paint((0, 0), 1)
    painted = out.data.copy()
    again = w.run()
    assert again is not out and again.name == "bone (new)"
    assert np.array_equal(viewer.layers["bone"].data, painted)
    assert w.run() is again  # further runs update the new layer instead of piling up layers
    assert [layer.name for layer in viewer.layers].count("bone (new)") == 1
    screenshot(viewer, "widget_segment")


def test_settings_say_whether_the_bone_was_segmented_with_flips(sample):
    """Segment phalanges' flip test-time augmentation reaches the lesions' settings through the
    bone layer Grow grows on; Quantify, which segments again without, says so over it."""
    from napari_calcinosis._widgets import GrowWidget, QuantifyWidget, SegmentWidget

    viewer, image, _, _, seeds, _ = sample
    seg = dock(viewer, SegmentWidget(viewer))
    seg.image.value, seg.device.value, seg.tta.value = image, "cpu", True
    bone = seg.run()
    grow = dock(viewer, GrowWidget(viewer))
    grow.image.value, grow.bone.value = image, bone
    grow.seeds_layer().add(seeds[0])
    assert settings_of(viewer.layers["lesions"]).endswith("; tta=yes")  # a DICOM: no export settings after it
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = image, "cpu"
    q.run()  # the bone layer a widget made is segmented again, here without flips
    assert viewer.layers["bone"] is bone and settings_of(viewer.layers["lesions"]).endswith("; tta=no")


def test_subtract_widget_live_preview(sample):
    from napari_calcinosis._widgets import SubtractWidget

    viewer, image, bone, lesions, _, _ = sample
    w = with_true_bone(viewer, SubtractWidget(viewer), image, bone)
    out = w.run()
    cand = viewer.layers["calcification candidates"].data > 0
    assert out.name == "calcification candidates" and tuple(out.scale) == tuple(image.scale)
    assert not (cand & bone).any()
    assert (cand & (lesions > 0)).sum() > 0.5 * (lesions > 0).sum()
    before = cand.sum()
    w.threshold_hu.value = 600.0  # live preview: the layer follows the spin box
    assert viewer.layers["calcification candidates"].data.sum() < before
    assert 0.25 <= w.margin_mm.value <= 1.5  # measured on the image, shown to the user
    # Grow and Quantify measure at the defaults: said, since the export will say threshold_hu=200
    assert ("(for viewing and Auto-seed's proposals: Grow and Quantify measure at 200 HU with the margin measured "
            "on the image, as the command line does by default)") in w.status.value
    screenshot(viewer, "widget_subtract")


def test_grow_widget_regrows_as_seeds_are_added(sample):
    from napari_calcinosis._widgets import GrowWidget

    viewer, image, bone, lesions, seeds, areas = sample
    w = with_true_bone(viewer, GrowWidget(viewer), image, bone)
    points = w.start_seeding()
    assert points.mode == "add" and tuple(points.scale) == tuple(image.scale)
    points.add(seeds[0])  # as a click would
    grown = viewer.layers["lesions"]
    assert set(np.unique(grown.data)) == {0, 1}
    points.add(seeds[1:])
    grown = viewer.layers["lesions"]
    assert grown.data.max() == len(seeds)
    f = grown.features
    assert list(f["index"]) == list(range(1, len(seeds) + 1))
    assert np.allclose(f["area_mm2"], areas, rtol=0.25, atol=0.5)
    assert tuple(grown.scale) == tuple(image.scale)
    points.data = points.data[1:]  # delete the first seed: that deposit disappears
    assert viewer.layers["lesions"].data.max() == len(seeds) - 1
    screenshot(viewer, "widget_grow")


def test_grow_widget_measures_a_deposit_the_bone_layer_had_taken(sample):
    """A seed on a free-lying deposit that the bone layer covers: it is measured as with the true
    bone, and the status line says the bone layer needs a look there."""
    from scipy import ndimage as ndi

    from napari_calcinosis._widgets import GrowWidget

    viewer, image, bone, lesions, seeds, areas = sample
    near_bone = ndi.binary_dilation(bone, iterations=3)
    free = [k for k in range(1, len(seeds) + 1) if not (near_bone & (lesions == k)).any()]
    assert free, "the sample finger has a deposit apart from the bone"
    k = free[0]
    w = with_true_bone(viewer, GrowWidget(viewer), image, bone | ndi.binary_dilation(lesions == k))
    w.seeds_layer().add(seeds[k - 1])
    grown = viewer.layers["lesions"]
    assert list(grown.features["status"]) == ["ok"]
    assert grown.features["area_mm2"][0] == pytest.approx(areas[k - 1], rel=0.25)
    assert grown.features["freed_from_bone_mm2"][0] > 0
    assert "bone mask had taken" in w.status.value
    w.seeds_layer().add([5.0, 5.0])  # a click on air: the status line says why it failed
    assert "1 seed(s) failed: no_deposit" in w.status.value


def test_grow_widget_uses_the_networks_probability_kept_on_the_bone_layer(sample):
    """A deposit against the bone that the bone layer covers as part of the bone: with the
    probability Segment phalanges keeps on the layer (unsure over the deposit), a seed measures it
    whole; without it, only its part outside the layer."""
    from scipy import ndimage as ndi

    from napari_calcinosis._widgets import GrowWidget

    viewer, image, bone, lesions, seeds, areas = sample
    touching = [k for k in range(1, len(seeds) + 1) if (ndi.binary_dilation(bone, iterations=2) & (lesions == k)).any()]
    assert touching, "the sample finger has a deposit against the bone"
    k = max(touching, key=lambda j: areas[j - 1])
    covered = ndi.binary_dilation(lesions == k) & ndi.binary_dilation(bone, iterations=6)
    w = with_true_bone(viewer, GrowWidget(viewer), image, bone | covered)
    w.seeds_layer().add(seeds[k - 1])
    without = viewer.layers["lesions"].features["area_mm2"].sum()  # none when the seed is on_bone
    probability = np.where(bone, 0.99, 0.0).astype(np.float32)
    probability[covered & ~bone] = 0.7
    w.bone.value.metadata["bone_probability"] = probability
    w.regrow()
    grown = viewer.layers["lesions"].features
    assert list(grown["status"]) == ["ok"] and grown["freed_from_bone_mm2"][0] > 0
    assert grown["area_mm2"][0] == pytest.approx(areas[k - 1], rel=0.25)
    assert grown["area_mm2"][0] > without + 0.5 * covered.sum() * np.prod(image.scale[-2:])
    assert "bone mask had taken" in w.status.value
    screenshot(viewer, "widget_grow_unsure_bone")
    assert "unsure_bone" not in settings_of(viewer.layers["lesions"])  # as quantify() does it
    w.take_unsure.value = False  # the user's veto: the bone layer is taken as it is
    assert viewer.layers["lesions"].features["area_mm2"].sum() == pytest.approx(without)
    w.connectivity.value = 8
    # and the export says so, as it says the connectivity
    assert settings_of(viewer.layers["lesions"]).endswith("connectivity=8; min_area_mm2=0.3; tta=no; "
                                                          "unsure_bone=left as bone")


def test_deposits_near_the_resolution_are_flagged_in_the_status_and_the_table(make_napari_viewer):
    # A phantom drawn at 0.5 mm pixels: two of its four deposits are under 4.5 pixels wide
    from napari_calcinosis._widgets import GrowWidget, MeasureWidget
    from napari_calcinosis.phantom import make_phantom

    phantom = make_phantom(5, spacing_mm=0.5, n_lesions=4)
    viewer = make_napari_viewer()
    image = viewer.add_image(phantom.image_hu, name="coarse", scale=phantom.spacing_mm, units="mm")
    grow = with_true_bone(viewer, GrowWidget(viewer), image, phantom.bone_mask)
    grow.seeds_layer().add(phantom.seeds)
    features = viewer.layers["lesions"].features
    assert len(features) == 4 and features["near_resolution"].sum() == 2
    said = (f"; lesions {', '.join(map(str, features.loc[features['near_resolution'], 'lesion_id']))} are narrower "
            "than 2.25 mm (4.5 pixels of 0.5 mm): read their areas as uncertain by 20 % or more, or measure them on a "
            "finer reconstruction (near_resolution)")
    assert said in grow.status.value
    m = dock(viewer, MeasureWidget(viewer))
    m.lesions.value = viewer.layers["lesions"]
    m.refresh()
    shown = m.table.data.to_list()
    column = list(m.table.column_headers).index("near_resolution")
    # "yes" where flagged, a blank cell (None) where not
    assert [row[column] for row in shown] == ["yes" if flag else None for flag in features["near_resolution"]]
    assert m.status.value.endswith(said)


def test_grow_docked_before_quantify_does_not_go_on_saying_there_is_no_bone(sample, qtbot):
    # Grow docked first and seeds clicked (no bone yet), then Quantify makes the bone: Grow's
    # status line went on saying "no bone layer" beside the bone its picker now showed.
    from napari_calcinosis._widgets import GrowWidget, QuantifyWidget

    viewer, image, _, _, seeds, _ = sample
    grow = dock(viewer, GrowWidget(viewer))
    grow.image.value = image
    grow.start_seeding().add(seeds)  # clicked before there is a bone layer
    assert grow.status.value.startswith("no bone layer for 'sample_finger'")
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = image, "cpu"
    q.run()
    qtbot.wait(50)
    assert grow.bone.value is viewer.layers["bone"]
    assert not grow.status.value.startswith("no bone layer"), grow.status.value


def test_auto_seed_fills_points_from_candidates(sample):
    from napari_calcinosis._widgets import GrowWidget

    viewer, image, bone, lesions, seeds, _ = sample
    w = with_true_bone(viewer, GrowWidget(viewer), image, bone)
    points = w.auto_seed()
    assert len(points.data) >= len(seeds)
    grown = viewer.layers["lesions"].data
    for lesion_id in range(1, len(seeds) + 1):  # every true deposit was found
        assert (grown[lesions == lesion_id] > 0).any()


def test_quantify_widget_one_click_and_measure_table(sample, tmp_path, bundled_model_label):
    from napari_calcinosis._widgets import MeasureWidget, QuantifyWidget

    viewer, image, bone, lesions, seeds, areas = sample
    viewer.add_points(seeds, name="seeds", scale=image.scale, units="mm")
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value = image
    q.device.value = "cpu"
    result = q.run()
    names = {layer.name for layer in viewer.layers}
    assert {"bone", "calcification candidates", "seeds", "lesions"} <= names
    for name in ("bone", "calcification candidates", "lesions"):
        assert tuple(viewer.layers[name].scale) == tuple(image.scale)
    assert (result.table["status"] == "ok").all()
    # Deposit 4 is dense and sits in the PIP joint against the base of the middle phalanx: the
    # bundled model takes part of it for bone (a known limit, recorded in test_pipeline.py).
    assert np.allclose(result.table["area_mm2"][:3], areas[:3], rtol=0.25, atol=0.5)
    assert 0 < result.table["area_mm2"][3] <= areas[3] * 1.25
    assert dice(viewer.layers["bone"].data > 0, bone) >= 0.97
    assert getattr(getattr(viewer, "canvas", None), "overlays", viewer).scale_bar.visible
    assert all(str(u) == "millimeter" for layer in viewer.layers for u in layer.units)

    m = dock(viewer, MeasureWidget(viewer))
    m.lesions.value = viewer.layers["lesions"]
    frame = m.refresh()
    assert len(frame) == len(seeds)
    assert m.table.shape[0] == len(seeds) and "area_mm2" in m.table.column_headers
    shown = m.table.data.to_list()[0][list(m.table.column_headers).index("area_mm2")]
    assert shown == f"{frame['area_mm2'][0]:.2f}"  # two decimals, as text
    m.select_row(2)
    lesion = frame.iloc[2]
    assert viewer.layers["lesions"].selected_label == int(lesion["lesion_id"])
    assert np.allclose(viewer.camera.center[-2:], (lesion["centroid_row"] * 0.25, lesion["centroid_col"] * 0.25))
    out = m.export(tmp_path / "lesions")
    written = pd.read_csv(out)
    assert out.suffix == ".csv" and len(written) == len(seeds) and "area_mm2" in written
    # the command line's key: the image file's absolute path, beside the layer's name
    assert list(written.columns[:3]) == ["image", "path", "lesion_id"]
    assert set(written["path"]) == {str((DATA_DIR / "sample_finger.dcm").resolve())}
    # how they were measured, as the command line's rows say it
    from napari_calcinosis import __version__

    # in the command line's order (rows pasted under its table fall in their columns), then the centroid in mm
    from napari_calcinosis.cli import OUTPUT_COLUMNS

    assert list(written.columns) == [*OUTPUT_COLUMNS, "centroid_row_mm", "centroid_col_mm"]
    assert set(written["mode"]) == {"seeded"} and set(written["model"]) == {bundled_model_label}
    assert set(written["software"]) == {f"napari-calcinosis {__version__}"}
    assert written["warnings"].isna().all()  # nothing doubtful about the sample
    # a DICOM measured with the defaults: the command line's row of the same says the same
    # (tests/test_cli_batch.py::test_every_row_names_the_model_given)
    assert set(written["settings"]) == {"threshold_hu=200; margin_mm=per image; connectivity=4; min_area_mm2=0.3; "
                                        "tta=no"}
    # File > Save Selected Layers (the plugin's writer): one row per lesion, the same keys
    from napari_calcinosis._reader_writer import write_lesions_csv

    lesions_layer = viewer.layers["lesions"]
    saved = pd.read_csv(write_lesions_csv(str(tmp_path / "saved.csv"), lesions_layer.data,
                                          lesions_layer.as_layer_data_tuple()[1])[0])
    assert "index" not in saved and list(saved.columns[:3]) == ["image", "path", "lesion_id"]
    assert saved["path"].tolist() == written["path"].tolist()[: len(saved)]
    assert set(saved["model"]) == {bundled_model_label} and set(saved["software"]) == set(written["software"])
    # painted: measured as it is, its HU over the image too (they were empty), as Export CSV writes them
    _paint_a_pixel_more(lesions_layer, 1)
    saved = pd.read_csv(write_lesions_csv(str(tmp_path / "painted.csv"), lesions_layer.data,
                                          lesions_layer.as_layer_data_tuple()[1])[0])
    exported = pd.read_csv(m.export(tmp_path / "painted_export.csv"))
    pd.testing.assert_frame_equal(saved[["lesion_id", "area_mm2", "mean_value", "max_value"]],
                                  exported[["lesion_id", "area_mm2", "mean_value", "max_value"]])
    assert saved["mean_value"].notna().all() and saved["mean_value"].between(200, 2500).all()
    lesions_layer.undo()
    # the bone layer is not saved as one lesion of hundreds of mm²
    bone_layer = viewer.layers["bone"]
    from napari_calcinosis._errors import CalcinosisError

    with pytest.raises(CalcinosisError, match="this layer is the bone layer, not lesions: save it as an image"):
        write_lesions_csv(str(tmp_path / "bone.csv"), bone_layer.data, bone_layer.as_layer_data_tuple()[1])
    assert (written["seed_row"] == written["seed_row"].round(3)).all()
    screenshot(viewer, "widget_quantify")
    viewer.layers["bone"].paint((5, 5), 1, refresh=True)
    q.run()  # grown on the corrected bone
    assert set(pd.read_csv(m.export(tmp_path / "corrected.csv"))["model"]) == {f"{bundled_model_label}, corrected by hand"}


def test_export_asks_before_replacing_a_file_and_refuses_what_it_cannot_write(sample, tmp_path, monkeypatch):
    import magicgui.widgets
    from qtpy.QtWidgets import QMessageBox

    from napari_calcinosis._errors import CalcinosisError
    from napari_calcinosis._widgets import MeasureWidget, QuantifyWidget

    viewer, image, *_ = sample
    m = dock(viewer, MeasureWidget(viewer))
    typed = {}
    monkeypatch.setattr(magicgui.widgets, "request_values", lambda **_: dict(typed))
    typed["path"] = tmp_path / "nothing.csv"
    assert m._export_dialog() is None and "no lesions layer to export" in m.status.value
    assert not (tmp_path / "nothing.csv").exists()

    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = image, "cpu"
    q.run()
    m.lesions.value = viewer.layers["lesions"]
    kept = tmp_path / "patient1.csv"
    kept.write_text("a reading made yesterday\n")
    answers = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args: answers.pop(0))
    for name in ("patient1.csv", "patient1"):  # typed in the dialog's box, with and without .csv
        typed["path"] = tmp_path / name
        answers.append(QMessageBox.No)
        assert m._export_dialog() is None and "not written" in m.status.value
        assert kept.read_text() == "a reading made yesterday\n"
    answers.append(QMessageBox.Yes)
    assert m._export_dialog() == kept and len(pd.read_csv(kept)) == len(viewer.layers["lesions"].metadata["seed_table"])
    with pytest.raises(CalcinosisError, match="exists: choose another name"):
        m.export(kept)  # the API never replaces a file unasked
    typed["path"] = tmp_path
    assert m._export_dialog() is None and "is a folder: give the name of the CSV file" in m.status.value
    assert not (tmp_path.parent / (tmp_path.name + ".csv")).exists()
    assert m.export(tmp_path / "visit.2").name == "visit.2.csv"  # a dot in the name is not a suffix to replace


def test_quantify_uses_a_corrected_bone_layer(sample):
    from napari_calcinosis._widgets import EDITED, QuantifyWidget

    viewer, image, bone, _, seeds, _ = sample
    edited = viewer.add_labels(bone.astype(np.uint8), name="bone", scale=image.scale, units="mm")
    edited.metadata[EDITED] = True
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value = image
    result = q.run()
    assert np.array_equal(result.bone_mask, bone)  # the user's layer, not a new segmentation
    assert "bone (new)" not in {layer.name for layer in viewer.layers}


def test_segmenting_again_after_a_correction_is_the_bone_every_widget_uses(sample):
    # Painted 'bone', then Segment again: 'bone (new)' is what Grow picks, so Quantify uses it
    # too (before, Quantify kept the painted one and the two widgets gave two totals), and
    # Segment says where the correction went.
    from napari_calcinosis._widgets import EDITED, GrowWidget, QuantifyWidget, SegmentWidget

    viewer, image, bone, _, seeds, _ = sample
    painted = bone.copy()
    painted[:, : bone.shape[1] // 2] = False  # a correction the fresh segmentation does not have
    mine = viewer.add_labels(painted.astype(np.uint8), name="bone", scale=image.scale, units="mm")
    mine.metadata[EDITED] = True
    seg = dock(viewer, SegmentWidget(viewer))
    seg.image.value, seg.device.value = image, "cpu"
    new = seg.run()
    assert new.name == "bone (new)" and "your 'bone' is kept, hidden, but Subtract, Grow and Quantify now use " \
        "'bone (new)': delete 'bone (new)' (and show yours) to go back to yours" in seg.status.value
    assert not mine.visible and new.visible  # the mask in view is the one used
    grow = dock(viewer, GrowWidget(viewer))
    grow.image.value = image
    assert grow.bone.value is new
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = image, "cpu"
    result = q.run()
    assert np.array_equal(result.bone_mask, np.asarray(new.data) > 0)
    viewer.layers.remove(new)
    assert np.array_equal(q.run().bone_mask, painted)  # deleted: back to the correction


def test_a_trained_model_becomes_selectable(sample, tmp_path):
    from napari_calcinosis._train_widget import TRAINED_MODELS, trained_model_events
    from napari_calcinosis._widgets import SegmentWidget
    from napari_calcinosis.segment import bundled_model_path

    viewer, image, bone, _, _, _ = sample
    w = dock(viewer, SegmentWidget(viewer))
    path = tmp_path / "mine.safetensors"
    path.write_bytes(bundled_model_path().read_bytes())
    path.with_suffix(".json").write_text(bundled_model_path().with_suffix(".json").read_text())
    TRAINED_MODELS.append(path)
    try:
        trained_model_events.model_trained.emit(path)
        assert str(path) in w.model.choices
        w.image.value, w.model.value, w.device.value = image, str(path), "cpu"
        out = w.run()
        assert dice(out.data > 0, bone) >= 0.97
    finally:
        TRAINED_MODELS.remove(path)


def test_every_manifest_widget_docks_from_the_plugins_menu(make_napari_viewer):
    # What `napari -w napari-calcinosis` and Plugins > napari-calcinosis do.
    import npe2

    viewer = make_napari_viewer()
    manifest = npe2.PluginManager.instance().get_manifest("napari-calcinosis")
    names = [w.display_name for w in manifest.contributions.widgets]
    assert {"Prepare image (pixel size, HU)", "Quantify (one click)", "Segment phalanges", "Subtract bone",
            "Grow from seeds", "Measure", "Train / fine-tune"} <= set(names)
    for name in names:
        dock, widget = viewer.window.add_plugin_dock_widget("napari-calcinosis", name)
        assert widget is not None and dock.isVisible() is not None


def test_segment_with_a_model_file(sample, tmp_path):
    from napari_calcinosis._widgets import SegmentWidget
    from napari_calcinosis.segment import bundled_model_path

    viewer, image, bone, _, _, _ = sample
    path = tmp_path / "picked.safetensors"
    path.write_bytes(bundled_model_path().read_bytes())
    path.with_suffix(".json").write_text(bundled_model_path().with_suffix(".json").read_text())
    w = dock(viewer, SegmentWidget(viewer))
    w.image.value, w.device.value, w.model_file.value = image, "cpu", path
    assert dice(w.run().data > 0, bone) >= 0.97
    assert w.status.value.startswith("bone: ") and " by picked.safetensors — paint" in w.status.value
    (tmp_path / "broken.safetensors").write_bytes(b"no")
    w.model_file.value = tmp_path / "broken.safetensors"
    assert w.run() is None and w.status.value.startswith("error:")  # a clear message, no crash
    # a name mistyped, or the file's drive not mounted: said; the bundled model ran in its place
    n_layers = len(viewer.layers)
    w.model_file.value = tmp_path / "pickd.safetensors"
    assert w.run() is None and "model file not found: " in w.status.value and len(viewer.layers) == n_layers
    # a model whose own card says it segments badly (a fine-tune on the wrong masks) is used, and said
    card = json.loads(path.with_suffix(".json").read_text())
    card["validation"]["dice_mean"] = 0.5
    path.with_suffix(".json").write_text(json.dumps(card))
    w.model_file.value = path
    assert w.run() is not None and "the model's own validation Dice is 0.50 (its card), under 0.8" in w.status.value


def test_segment_says_values_that_are_not_hu(sample):
    # a DICOM's stored values (HU + 1024) opened by another reader: said, as Quantify says it
    from napari_calcinosis._widgets import SegmentWidget

    viewer, image, *_ = sample
    raw = viewer.add_image(np.asarray(image.data) + 1024, name="raw", scale=image.scale, units="mm")
    w = dock(viewer, SegmentWidget(viewer))
    w.image.value, w.device.value = raw, "cpu"
    assert w.run() is not None
    assert "warning: no pixel is as dark as air or fat" in w.status.value and "raw, offset or scaled" in w.status.value
    w.image.value = image
    assert w.run() is not None and "warning" not in w.status.value


def test_agreement_widget_on_a_csv_and_on_the_lesion_table(sample, tmp_path, pefr):
    from napari_calcinosis._widgets import AgreementWidget, QuantifyWidget

    WRIGHT, MINI = pefr
    viewer, image, *_ = sample
    csv = tmp_path / "pefr.csv"
    pd.DataFrame({"wright": WRIGHT, "mini": MINI, "note": ["a"] * 17}).to_csv(csv, index=False)
    w = dock(viewer, AgreementWidget(viewer))
    assert w.canvas.isHidden()  # no empty plot area before there is a plot
    w.csv.value = csv
    assert set(w.x.choices) == {"wright", "mini"}  # numeric columns only
    assert w.x.value != w.y.value  # two different columns to start from
    w.x.value, w.y.value = "wright", "mini"
    a = w.run()
    assert a.n == 17 and round(a.ba_bias, 1) == -2.1
    assert "Lin's CCC" in w.result.value and len(w.figure.axes) == 2 and not w.canvas.isHidden()
    # a failed run leaves no numbers or plot of the previous columns in view
    w.y.value = "wright"
    assert w.run() is None and "both 'wright'" in w.status.value
    assert w.result.value == "" and w.canvas.isHidden()
    # an exported table with flagged deposits: how the others agree, on a line of its own
    flagged = tmp_path / "flagged.csv"
    pd.DataFrame({"area_mm2": [10.0, 20.0, 30.0, 40.0, 0.5], "reader_mm2": [10.5, 19.0, 31.0, 39.5, 2.5],
                  "near_resolution": [False] * 4 + [True]}).to_csv(flagged, index=False)
    w.csv.value = flagged
    w.x.value, w.y.value = "area_mm2", "reader_mm2"
    assert w.run().n == 5 and "\nwithout the 1 near_resolution: n = 4 · CCC" in w.result.value
    # the file's header corrected in a spreadsheet since: said, and its columns listed again (was a KeyError)
    pd.read_csv(flagged).rename(columns={"reader_mm2": "radiologist_mm2"}).to_csv(flagged, index=False)
    assert w.run() is None and "has no column 'reader_mm2' any more (changed since it was chosen)" in w.status.value
    assert "radiologist_mm2" in w.y.choices and "reader_mm2" not in w.y.choices
    w.y.value = "radiologist_mm2"
    assert w.run().n == 5
    # a reader's "n.a." is a missing value, counted apart; a column with a typo is offered, and the typo named
    readings = tmp_path / "readings.csv"
    readings.write_text("image,area_mm2,reader_mm2,other_mm2\np1,1,1.5,1\np2,2,n.a.,2\np3,3,3.5,x\n"
                        "p4,4,4.5,4\np5,5,5.5,5\n")
    w.csv.value = readings
    assert w.x.choices == ("area_mm2", "reader_mm2", "other_mm2")
    w.x.value, w.y.value = "area_mm2", "reader_mm2"
    assert w.run().n == 4 and "n = 4 (1 with a cell marked missing ('n.a.') dropped)" in w.result.value
    w.y.value = "other_mm2"
    assert w.run() is None and "column 'other_mm2' of " in w.status.value and "(line 4: 'x')" in w.status.value

    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = image, "cpu"
    q.run()
    w.csv.value = None
    assert w.result.value == "" and w.canvas.isHidden()  # another table: the old numbers go
    w.layer.value = viewer.layers["lesions"]
    w.reset_choices()
    assert w.x.value == "area_mm2" and w.y.value != "lesion_id"
    assert "lesion_id" not in w.x.choices and "hu_clipped" not in w.x.choices  # an id and a flag: nothing to agree on
    w.x.value, w.y.value = "area_mm2", "ellipse_area_mm2"
    a = w.run()
    assert a.n == len(viewer.layers["lesions"].features)
    assert f"bias {a.ba_bias:.2f} mm² (95 % CI" in w.result.value  # both columns are in mm²
    assert f"limits of agreement {a.ba_loa_low:.2f} to {a.ba_loa_high:.2f} mm² (95 % CIs {a.ba_loa_low_ci_low:.2f} to" \
        in w.result.value
    screenshot(viewer, "widget_agreement")
    # a CSV name mistyped (the case of a letter): said, not the layer's table computed in its place
    w.csv.value = tmp_path / "PEFR.csv"
    assert w.run() is None and "file not found: " in w.status.value and "PEFR.csv" in w.status.value
    assert w.result.value == "" and w.canvas.isHidden()


def _true_segmentation(bone):
    """Stands in for the U-Net (slow on CPU): returns the true bone."""
    from napari_calcinosis import BoneSegmentation

    return lambda *args, **kwargs: BoneSegmentation(bone.copy(), bone.astype(np.float32))


def test_a_failing_run_notifies_and_leaves_the_viewer_usable(sample, monkeypatch):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    from napari_calcinosis import pipeline, segment
    from napari_calcinosis._widgets import QuantifyWidget, SegmentWidget, SubtractWidget

    viewer, image, bone, _, _, _ = sample

    def crash(*args, **kwargs):
        raise RuntimeError("out of memory in the middle of it")  # a bug or the machine, not the user

    def fails_visibly(widget, action):
        before = len(notification_manager.records)
        assert action() is None
        assert widget.status.value.startswith("failed: RuntimeError: out of memory")
        errors = [n for n in notification_manager.records[before:] if n.severity == NotificationSeverity.ERROR]
        assert len(errors) == 1 and "out of memory" in str(errors[0].message)

    names = [layer.name for layer in viewer.layers]
    seg = dock(viewer, SegmentWidget(viewer))
    seg.image.value, seg.device.value = image, "cpu"
    monkeypatch.setattr(segment, "segment_phalanges", crash)
    fails_visibly(seg, seg.run)
    assert [layer.name for layer in viewer.layers] == names  # nothing half-made
    monkeypatch.setattr(segment, "segment_phalanges", _true_segmentation(bone))
    out = seg.run()  # the widget and the viewer carry on
    assert out.name == "bone" and np.array_equal(out.data > 0, bone) and not seg.status.value.startswith("failed")

    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = image, "cpu"
    monkeypatch.setattr(pipeline, "quantify", crash)
    fails_visibly(q, q.run)

    sub = with_true_bone(viewer, SubtractWidget(viewer), image, bone)
    monkeypatch.setattr("napari_calcinosis.subtract.subtract_bone", crash)
    # The live preview fails the same way, not with an exception.
    fails_visibly(sub, lambda: setattr(sub.threshold_hu, "value", 300.0))


def test_layers_the_user_made_or_edited_are_never_replaced(sample, monkeypatch):
    from napari_calcinosis import segment
    from napari_calcinosis._widgets import GrowWidget, QuantifyWidget, SegmentWidget, SubtractWidget

    viewer, image, bone, _, seeds, _ = sample
    monkeypatch.setattr(segment, "segment_phalanges", _true_segmentation(bone))
    # A bone layer the user brought in (e.g. opened from a file): never overwritten.
    users_bone = np.zeros(bone.shape, np.uint8)
    users_bone[:, : bone.shape[1] // 2] = bone[:, : bone.shape[1] // 2]
    mine = viewer.add_labels(users_bone.copy(), name="bone", scale=image.scale, units="mm")
    seg = dock(viewer, SegmentWidget(viewer))
    seg.image.value, seg.device.value = image, "cpu"
    assert seg.run().name == "bone (new)" and np.array_equal(mine.data, users_bone)
    assert "your 'bone' is kept" in seg.status.value  # brought in, not painted: named all the same

    # A result layer the user painted: the next run goes beside it.
    sub = dock(viewer, SubtractWidget(viewer))
    sub.image.value, sub.bone.value = image, viewer.layers["bone (new)"]
    candidates = sub.run()
    assert candidates.name == "calcification candidates"
    candidates.paint((5, 5), 1)  # as the brush does
    painted = candidates.data.copy()
    assert sub.run().name == "calcification candidates (new)" and np.array_equal(candidates.data, painted)

    grow = dock(viewer, GrowWidget(viewer))
    grow.image.value, grow.bone.value = image, viewer.layers["bone (new)"]
    points = grow.start_seeding()
    points.add(seeds[0])
    lesions = viewer.layers["lesions"]
    lesions.paint((3, 3), 1)
    painted = lesions.data.copy()
    points.add(seeds[1])  # clicked after painting: its lesion is added to the painting, which stays
    assert "lesions (new)" not in viewer.layers and lesions.visible
    row, col = np.round(seeds[1]).astype(int)
    assert np.array_equal(lesions.data[painted > 0], painted[painted > 0]) and lesions.data[row, col] == painted.max() + 1
    assert "seeds changed since you painted 'lesions' of 'sample_finger': lesion(s) 2 grown" in grow.status.value
    painted = lesions.data.copy()
    moved = points.data.copy()
    moved[0] += 1.0
    points.data = moved  # a seed moved: all grow again, into a new layer
    assert "lesions (new)" in viewer.layers and np.array_equal(lesions.data, painted)
    # the painted layer is kept, hidden under the new one, and the status line says where each is
    assert not lesions.visible and viewer.layers["lesions (new)"].visible
    assert ("your painted 'lesions' is kept as you painted it, hidden: these seeds' lesions are 'lesions (new)'"
            in grow.status.value)
    # Auto-seeding keeps the user's clicks and adds a seed on each other deposit.
    grow.auto_seed()
    assert np.allclose(points.data[:2], moved[:2]) and len(points.data) >= len(seeds)

    # Quantify without the user's seeds: its own seeds go to a new layer, the clicks stay.
    clicked = points.data.copy()
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value, q.use_seeds.value = image, "cpu", False
    result = q.run()
    assert "seeds proposed automatically: check them" in q.status.value
    # the newest bone layer, as Grow picked it ('bone (new)', segmented again); the user's stays as it is
    assert dice(result.bone_mask, bone) >= 0.97 and np.array_equal(mine.data, users_bone)
    assert np.array_equal(points.data, clicked) and "seeds (new)" in viewer.layers
    auto = viewer.layers["seeds (new)"]
    q.run()  # ...and updates that layer of its own next time, while the user leaves it alone
    assert "seeds (new) (new)" not in viewer.layers and len(auto.data) == len(result.table[result.table["status"] == "ok"])


def test_auto_seed_leaves_out_a_splint_lying_in_air_and_says_so(sample):
    from scipy import ndimage as ndi

    from napari_calcinosis._widgets import GrowWidget

    viewer, image, bone, lesions, seeds, _ = sample
    data = np.asarray(image.data, np.float32)
    tissue = ndi.binary_fill_holes(data > -500)
    air_rows = np.flatnonzero(~ndi.binary_dilation(tissue, iterations=12).any(axis=1))
    assert air_rows.size >= 6, "the sample has a band of air along the finger"
    splint = np.zeros(data.shape, bool)
    splint[air_rows[:4], 20:-20] = True  # 1 mm thick, 3 mm or more off the skin
    image.data = np.where(splint, 2500.0, data)
    w = with_true_bone(viewer, GrowWidget(viewer), image, bone)
    points = w.auto_seed()
    rc = np.round(np.asarray(points.data)).astype(int)
    assert not splint[rc[:, 0], rc[:, 1]].any()  # no seed proposed on the splint
    assert "1 bright thing(s) lying against the air not proposed" in w.status.value
    grown = viewer.layers["lesions"].data
    for lesion_id in range(1, len(seeds) + 1):  # the deposits are still all found
        assert (grown[lesions == lesion_id] > 0).any()


def test_auto_seed_leaves_out_a_calcified_artery_and_says_so(make_napari_viewer, finger_with_lines):
    # The artery rule from the Grow widget: no seed on the line along the bone, the status
    # line says why, and the deposits are proposed and grown.
    from napari_calcinosis._widgets import GrowWidget

    viewer = make_napari_viewer()
    img, bone, masks = finger_with_lines()
    image = viewer.add_image(img, name="finger", scale=(0.2, 0.2), units="mm")
    w = with_true_bone(viewer, GrowWidget(viewer), image, bone)
    points = w.auto_seed()
    rc = np.round(np.asarray(points.data)).astype(int)
    assert len(rc) == 3 and not masks["artery"][rc[:, 0], rc[:, 1]].any()
    assert "1 long thin line(s) along the bone not proposed (calcified arteries, most likely)" in w.status.value
    grown = viewer.layers["lesions"].data
    assert all((grown[masks[name]] > 0).mean() > 0.9 for name in ("plaque", "nodule", "across"))
    assert not (grown[masks["artery"]] > 0).any()


def test_lesions_summary_counts_what_automatic_mode_left_out_apart_from_failed_seeds(make_napari_viewer,
                                                                                   finger_with_lines):
    from napari_calcinosis import CalcinosisImage, quantify
    from napari_calcinosis._widgets import show_lesions

    viewer = make_napari_viewer()
    img, bone, _ = finger_with_lines()
    image = viewer.add_image(img, name="finger", scale=(0.2, 0.2), units="mm")
    result = quantify(CalcinosisImage(img, (0.2, 0.2), source="finger"), bone_mask=bone)
    layer = show_lesions(viewer, result, image)
    assert layer.metadata["summary"].startswith("3 lesion(s)")
    assert "; 1 long thin line(s) along the bone left out (calcified arteries, most likely)" in layer.metadata["summary"]
    assert "failed" not in layer.metadata["summary"]


def test_seeds_clicked_on_a_layer_of_another_scale_land_where_they_were_clicked(sample):
    # napari's own "New points" button makes a points layer of scale 1, so the user's clicks are
    # stored in mm; a seeds layer made on another image has that image's scale. Either way the
    # deposit under each click is measured. The scale-1 layer is then put on the image's grid,
    # every point where it was clicked, in mm and 1 mm across (at scale 1 napari draws them 10 mm
    # across, over the deposits).
    from napari_calcinosis._widgets import GrowWidget, QuantifyWidget

    viewer, image, bone, _, seeds, areas = sample
    clicks = viewer.add_points(seeds * 0.25, name="seeds")  # scale 1: world (mm) coordinates
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value = image
    q.device.value = "cpu"
    result = q.run()
    assert np.allclose(result.table[["seed_row", "seed_col"]].to_numpy(float), seeds)
    assert np.allclose(result.table["area_mm2"][:3], areas[:3], rtol=0.25, atol=0.5)
    assert viewer.layers["seeds"] is clicks and np.allclose(clicks.data, seeds)  # where they were clicked
    assert tuple(clicks.scale) == tuple(image.scale) and all(str(u) == "millimeter" for u in clicks.units)
    assert np.allclose(clicks.size, 4.0)  # 1 mm at 0.25 mm a pixel

    g = with_true_bone(viewer, GrowWidget(viewer), image, bone)
    points = g.start_seeding()
    assert points is viewer.layers["seeds"]
    points.add(np.array([[10.0, 10.0]]))  # one more click, in the layer's frame: now the image's pixels
    table = viewer.layers["lesions"].metadata["seed_table"]
    assert np.allclose(table[["seed_row", "seed_col"]].to_numpy(float)[: len(seeds)], seeds)
    assert np.allclose(table[["seed_row", "seed_col"]].to_numpy(float)[-1], (10, 10))


def test_results_lie_over_a_translated_image(sample):
    # An image moved in the viewer (translate) keeps its results on it, and a click on a deposit
    # in the viewer is a click on that deposit.
    from napari_calcinosis._widgets import GrowWidget, MeasureWidget, QuantifyWidget

    viewer, image, bone, _, seeds, areas = sample
    image.translate = (20.0, -5.0)
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value = image
    q.device.value = "cpu"
    q.run()
    for name in ("bone", "calcification candidates", "seeds", "lesions"):
        layer = viewer.layers[name]
        assert tuple(layer.translate) == (20.0, -5.0) and tuple(layer.scale) == tuple(image.scale), name
    viewer.layers.remove("seeds")
    g = dock(viewer, GrowWidget(viewer))
    g.image.value = image
    points = g.start_seeding()
    assert tuple(points.translate) == (20.0, -5.0)
    points.add(points.world_to_data(image.data_to_world(seeds[0])))
    table = viewer.layers["lesions"].metadata["seed_table"]
    assert np.allclose(table[["seed_row", "seed_col"]].to_numpy(float), seeds[:1])
    assert table["status"][0] == "ok" and abs(table["area_mm2"][0] - areas[0]) <= 0.25 * areas[0] + 0.5
    m = dock(viewer, MeasureWidget(viewer))
    frame = m.refresh()
    m.select_row(0)
    expected = image.data_to_world((frame["centroid_row"][0], frame["centroid_col"][0]))
    assert np.allclose(viewer.camera.center[-2:], expected)


def test_layer_pickers_follow_the_bone_and_lesions_layers_not_the_samples_truth(sample):
    # The sample opens with its true bone and lesions: a picker that takes the first Labels
    # layer measured against the truth. The pickers keep to the layers the widgets write, and
    # are empty (saying so) when there is none, until the user picks one by hand.
    from napari_calcinosis._widgets import GrowWidget, MeasureWidget, SegmentWidget, SubtractWidget

    viewer, image, _, _, seeds, _ = sample
    sub, grow, measure = (dock(viewer, w(viewer)) for w in (SubtractWidget, GrowWidget, MeasureWidget))
    assert sub.bone.value is None and grow.bone.value is None and measure.lesions.value is None
    assert sub.run() is None and "choose an image and its bone layer" in sub.status.value
    seg = dock(viewer, SegmentWidget(viewer))
    seg.image.value, seg.device.value = image, "cpu"
    made = seg.run()
    assert sub.bone.value is made and grow.bone.value is made
    grow.image.value = image
    grow.start_seeding().add(seeds)
    assert measure.lesions.value is viewer.layers["lesions"]
    assert len(measure.refresh()) == len(seeds)
    viewer.layers.remove(made)  # the bone layer is gone: the picker empties, not "lesions"
    assert grow.bone.value is None and sub.bone.value is None
    # A layer picked by hand stays picked when layers come and go.
    truth = viewer.layers["sample_finger true bone"]
    sub.bone.value = truth
    sub.bone.native.activated.emit(sub.bone.native.currentIndex())
    seg.run()
    assert sub.bone.value is truth and grow.bone.value is viewer.layers["bone"]


def test_quantify_measures_the_proposed_seeds_the_user_kept(sample):
    # Automatic seeds are a proposal: the user deletes the ones that are no deposit and presses
    # Quantify again; those must stay out. An empty seeds layer the user made to click in
    # takes the proposal (it held nothing to lose).
    from napari_calcinosis._widgets import GrowWidget, QuantifyWidget

    viewer, image, bone, _, _, _ = sample
    grow = with_true_bone(viewer, GrowWidget(viewer), image, bone)
    empty = grow.start_seeding()
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = image, "cpu"
    first = q.run()
    proposed = len(viewer.layers["seeds"].data)
    assert viewer.layers["seeds"] is empty and proposed == (first.table["status"] == "ok").sum() >= 3
    assert "seeds (new)" not in viewer.layers
    kept = viewer.layers["seeds"].data[1:]
    viewer.layers["seeds"].data = kept  # delete one proposal
    again = q.run()
    assert len(again.table) == proposed - 1
    assert np.allclose(again.table[["seed_row", "seed_col"]].to_numpy(float),
                       [image.world_to_data(empty.data_to_world(p)) for p in kept])


def test_a_proposed_seed_deleted_then_measured_is_never_exported_stale(sample, qtbot, tmp_path):
    # Quantify proposes seeds; the user deletes one (an artery). With only Quantify and Measure
    # docked the table is out of date until Quantify runs again: Measure says so and Export
    # refuses; so after painting the bone. Grow docked afterwards follows those seeds: deleting
    # another regrows at once.
    from napari_calcinosis._errors import CalcinosisError
    from napari_calcinosis._widgets import GrowWidget, MeasureWidget, QuantifyWidget

    viewer, image, _, _, _, _ = sample
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = image, "cpu"
    measure = dock(viewer, MeasureWidget(viewer))
    first = q.run()
    seeds, n = viewer.layers["seeds"], int((first.table["status"] == "ok").sum())
    assert len(seeds.data) == n >= 3
    seeds.data = seeds.data[1:]
    qtbot.waitUntil(lambda: measure.status.value.startswith("out of date: the points of 'seeds'"))
    with pytest.raises(CalcinosisError, match="not exported: the points of 'seeds' were added, moved or deleted"):
        measure.export(tmp_path / "stale.csv")
    assert not (tmp_path / "stale.csv").exists()
    from napari_calcinosis._reader_writer import write_lesions_csv  # File > Save Selected Layers refuses too

    lesions = viewer.layers["lesions"]
    with pytest.raises(CalcinosisError, match="stale.csv: not saved: the points of 'seeds' were added, moved"):
        write_lesions_csv(str(tmp_path / "stale.csv"), lesions.data, lesions.as_layer_data_tuple()[1])
    assert not (tmp_path / "stale.csv").exists()
    q.run()
    qtbot.waitUntil(lambda: measure.status.value.startswith(f"{n - 1} lesion(s)"))
    assert len(pd.read_csv(measure.export(tmp_path / "kept.csv"))) == n - 1
    viewer.layers["bone"].paint((5, 5), 1, refresh=True)
    qtbot.waitUntil(lambda: measure.status.value.startswith("out of date: the bone mask ('bone') changed"))
    q.run()  # grown on the painted bone
    qtbot.waitUntil(lambda: not measure.status.value.startswith("out of date"))
    grow = dock(viewer, GrowWidget(viewer))
    grow.image.value = image
    assert grow.points is seeds
    seeds.data = seeds.data[1:]
    qtbot.waitUntil(lambda: len(np.unique(viewer.layers["lesions"].data)) - 1 == n - 2)
    measure.refresh()
    assert not measure.status.value.startswith("out of date")
    assert len(pd.read_csv(measure.export(tmp_path / "regrown.csv"))) == n - 2


def test_out_of_date_follows_the_layers_grown_from_not_their_names(sample, qtbot, tmp_path):
    # Grown in Grow on a bone layer picked by hand beside another 'bone': up to date, and
    # regrowing keeps it so. A renamed seeds layer is still the one they were grown from. A
    # bone mask made since (Segment again) is one Quantify would now use: out of date.
    from napari_calcinosis._errors import CalcinosisError
    from napari_calcinosis._widgets import GrowWidget, MeasureWidget, SegmentWidget

    viewer, image, bone, _, seeds, _ = sample
    viewer.add_labels(np.zeros(bone.shape, np.uint8), name="bone", scale=image.scale, units="mm")
    mine = viewer.add_labels(bone.astype(np.uint8), name="my bone", scale=image.scale, units="mm")
    grow = dock(viewer, GrowWidget(viewer))
    grow.image.value, grow.bone.value = image, mine
    grow.bone.native.activated.emit(grow.bone.native.currentIndex())  # picked by hand: kept
    points = grow.start_seeding()
    points.data = seeds
    qtbot.waitUntil(lambda: "lesions" in viewer.layers)
    assert grow.bone.value is mine and grow.status.value.startswith(f"{len(seeds)} lesion(s)")
    measure = dock(viewer, MeasureWidget(viewer))
    measure.lesions.value = viewer.layers["lesions"]
    measure.refresh()
    assert not measure.status.value.startswith("out of date"), measure.status.value
    measure.export(tmp_path / "fine.csv")
    points.name = "seeds checked"
    with points.events.data.blocker():  # as if Grow were closed: nothing regrows
        points.data = seeds[1:]
    with pytest.raises(CalcinosisError, match="the points of 'seeds checked' were added, moved or deleted"):
        measure.export(tmp_path / "stale.csv")
    grow.regrow()
    measure.refresh()
    assert not measure.status.value.startswith("out of date")
    seg = dock(viewer, SegmentWidget(viewer))
    seg.image.value, seg.device.value = image, "cpu"
    seg.run()
    qtbot.waitUntil(lambda: "a new bone mask ('bone (new)') was made" in measure.status.value)


def test_an_undone_stroke_leaves_lesions_as_grown_and_naparis_new_points_are_seeds(sample, qtbot,
                                                                                                      tmp_path):
    # A stroke on the lesions undone (Ctrl+Z): the seed table holds and moving a seed still makes
    # them out of date. Points clicked with napari's own New points button ('Points') are the seeds.
    from napari_calcinosis._errors import CalcinosisError
    from napari_calcinosis._widgets import MeasureWidget, QuantifyWidget

    viewer, image, _, _, seeds, _ = sample
    clicked = viewer.add_points(seeds, name="Points")  # scale 1, as napari's button makes it
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = image, "cpu"
    result = q.run()
    assert len(result.table) == len(seeds) and "proposed automatically" not in q.status.value
    measure = dock(viewer, MeasureWidget(viewer))
    lesions = viewer.layers["lesions"]
    measure.lesions.value = lesions
    lesions.brush_size = 3
    lesions.paint((5, 5), 1, refresh=True)
    lesions.undo()
    measure.refresh()
    assert set(pd.read_csv(measure.export(tmp_path / "undone.csv"))["mode"]) == {"seeded"}
    clicked.data = clicked.data[1:]
    qtbot.waitUntil(lambda: measure.status.value.startswith("out of date: the points of 'Points'"))
    with pytest.raises(CalcinosisError, match="not exported"):
        measure.export(tmp_path / "stale.csv")


def _paint_a_pixel_more(lesions, k: int) -> None:
    """Lesion ``k`` one pixel larger, below its lowest row, with the brush (as the user paints)."""
    lesions.brush_size = 1
    rows, cols = np.nonzero(np.asarray(lesions.data) == k)
    lesions.paint((rows.max() + 1, cols[rows.argmax()]), k)


def test_a_seed_added_on_no_painted_lesion_is_not_lost_without_a_word(sample, qtbot, tmp_path):
    # Quantify on three seeds, a lesion painted larger, then the missed fourth deposit clicked
    # (Grow not docked, so nothing regrows): the painted lesions would be exported without it.
    from napari_calcinosis._errors import CalcinosisError
    from napari_calcinosis._widgets import MeasureWidget, QuantifyWidget

    viewer, image, _, truth, seeds, _ = sample
    clicks = viewer.add_points(seeds[:3], name="seeds", scale=image.scale, units="mm")
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = image, "cpu"
    q.run()
    lesions = viewer.layers["lesions"]
    measure = dock(viewer, MeasureWidget(viewer))
    measure.lesions.value = lesions
    _paint_a_pixel_more(lesions, 2)
    measure.refresh()
    assert len(pd.read_csv(measure.export(tmp_path / "painted.csv"))) == 3  # painted, and nothing missing
    clicks.add(seeds[3])
    row, col = np.round(seeds[3]).astype(int)
    said = f"1 seed(s) were added on no lesion you painted (row {row}, col {col}): paint each deposit into the lesions"
    qtbot.waitUntil(lambda: measure.status.value.startswith(f"out of date: {said}"))
    assert "Quantify again" not in measure.status.value  # it would not measure the painting
    with pytest.raises(CalcinosisError, match="not exported: 1 seed"):
        measure.export(tmp_path / "missing.csv")
    lesions.paint((row, col), 4, refresh=True)  # painted in: measured with the others
    lesions.data = np.where(truth == 4, 4, lesions.data)
    measure.refresh()
    exported = pd.read_csv(measure.export(tmp_path / "all.csv"))
    assert sorted(exported["lesion_id"]) == [1, 2, 3, 4] and set(exported["mode"]) == {"painted"}


def _two_grown_then_one_painted(sample):
    """Grow and Measure docked; the sample's first two deposits grown, lesion 1 painted a pixel larger."""
    from napari_calcinosis._widgets import GrowWidget, MeasureWidget

    viewer, image, bone, _, seeds, _ = sample
    grow = with_true_bone(viewer, GrowWidget(viewer), image, bone)
    points = grow.start_seeding()
    points.add(seeds[:2])
    lesions = viewer.layers["lesions"]
    measure = dock(viewer, MeasureWidget(viewer))
    measure.lesions.value = lesions
    _paint_a_pixel_more(lesions, 1)
    return grow, points, lesions, measure


def test_seeds_clicked_after_painting_are_grown_into_the_painted_lesions(sample, qtbot, tmp_path):
    # Grow docked: two deposits grown, one painted larger, then the missed third clicked, and a
    # click on the painted one. The painting stays; the third is grown and added to it; the
    # export holds all three, as painted.
    from scipy import ndimage as ndi

    from napari_calcinosis._errors import CalcinosisError

    viewer, image, bone, truth, seeds, areas = sample
    grow, points, lesions, measure = _two_grown_then_one_painted(sample)
    painted = lesions.data.copy()
    points.add(seeds[2])
    assert "lesions (new)" not in viewer.layers and lesions.visible
    assert np.array_equal(lesions.data[painted > 0], painted[painted > 0])  # the painting as it was
    third = lesions.data == 3
    row, col = np.round(seeds[2]).astype(int)
    assert third[row, col] and not (third & (painted > 0)).any()
    assert third.sum() * 0.25**2 == pytest.approx(areas[2], rel=0.25)  # the deposit, against the truth
    assert f"lesion(s) 3 grown ({third.sum() * 0.25**2:.2f} mm²) and added" in grow.status.value
    points.add(np.argwhere(third)[0])  # a second click on the deposit just added: the same lesion, not a new one
    assert np.array_equal(lesions.data == 3, third) and lesions.data.max() == 3
    points.selected_data = {len(points.data) - 1}
    points.remove_selected()  # deleted again: the lesion stays, its first seed is on it
    assert np.array_equal(lesions.data == 3, third)
    points.add(np.argwhere(painted == 1)[0])  # a click on the painted lesion: measured as painted
    assert "1 on a lesion you painted, measured as painted" in grow.status.value
    grow.status.value = ""
    grow._image_chosen()  # the image chosen again (after another): the status says where its lesions stand
    assert "1 on a lesion you painted, measured as painted" in grow.status.value
    assert np.array_equal(lesions.data == 3, third) and "lesions (new)" not in viewer.layers
    qtbot.waitUntil(lambda: not measure.status.value.startswith("out of date"))
    exported = pd.read_csv(measure.export(tmp_path / "all.csv"))  # nothing out of date: exported
    assert sorted(exported["lesion_id"]) == [1, 2, 3] and set(exported["mode"]) == {"painted"}
    assert exported.set_index("lesion_id")["area_mm2"][1] == pytest.approx((painted == 1).sum() * 0.25**2)

    # Ctrl+Z takes the added lesion back (not the user's brush stroke); its seed is then measured
    # no more, which Measure says
    lesions.undo()
    assert np.array_equal(lesions.data, painted)
    qtbot.waitUntil(lambda: measure.status.value.startswith("out of date: 1 seed(s) were added on no lesion you painted"))
    lesions.undo()  # the brush stroke too: the lesions as grown, which never measured the third seed
    qtbot.waitUntil(lambda: measure.status.value.startswith("out of date: the points of 'seeds' were added"))
    with pytest.raises(CalcinosisError, match="not exported"):
        measure.export(tmp_path / "undone.csv")
    lesions.redo()
    lesions.redo()
    assert np.array_equal(lesions.data == 3, third)
    # a click beside a painted lesion, on its rim the user erased: the deposit is the painted
    # one, which stands; nothing is added, and the seed stays unmeasured until painted in or deleted
    rim = np.argwhere(ndi.binary_dilation(lesions.data == 1) & (lesions.data == 0))
    before = lesions.data.copy()
    points.add(rim[0])
    assert np.array_equal(lesions.data, before)
    assert "1 grew into a lesion you painted, which stands: paint its deposit in" in grow.status.value
    qtbot.waitUntil(lambda: measure.status.value.startswith("out of date: 1 seed(s) were added on no lesion you painted"))
    points.selected_data = {len(points.data) - 1}
    points.remove_selected()
    qtbot.waitUntil(lambda: not measure.status.value.startswith("out of date"))
    # the third deposit's seed deleted (a mis-click): its lesion goes, the painting stays
    points.selected_data = {2}
    points.remove_selected()
    assert "lesions (new)" not in viewer.layers and lesions.visible and not (lesions.data == 3).any()
    assert np.array_equal(lesions.data, painted) and "lesion(s) 3 of the seed(s) you deleted taken out" in grow.status.value
    # one grown before the painting moved: all grow again, beside the painting
    moved = points.data.copy()
    moved[0] += 1.0
    points.data = moved
    assert "lesions (new)" in viewer.layers and not lesions.visible


def test_settings_say_a_pixel_size_given_in_prepare_image_as_the_command_line_does(sample):
    # The sample DICOM's own 0.25 mm: its rows say no pixel size. Given 0.3 mm in Prepare image,
    # its rows measured at 0.3 mm say so, as the command line's rows of a DICOM given
    # --pixel-size without one of its own do.
    from napari_calcinosis._widgets import GrowWidget, PrepareWidget

    viewer, image, bone, _, seeds, _ = sample
    grow = with_true_bone(viewer, GrowWidget(viewer), image, bone)
    points = grow.start_seeding()
    points.add(seeds[:1])
    assert settings_of(viewer.layers["lesions"]).endswith("tta=no")
    prep = dock(viewer, PrepareWidget(viewer))
    prep.image.value, prep.export.value, prep.pixel_size_mm.value = image, False, 0.3
    prep.run()
    viewer.layers["bone"].scale = image.scale
    points.add(seeds[1:2])  # grown again at the pixel size given
    assert settings_of(viewer.layers["lesions"]).endswith("tta=no; export_pixel_size_mm=0.3")


def test_a_lesion_added_to_a_painting_and_undone_keeps_its_number_unused(sample, qtbot):
    # The third deposit added (lesion 3), then undone with Ctrl+Z, then the fourth clicked: it is
    # lesion 4, so the undone seed is still told apart as unmeasured, and deleting it takes out
    # nothing of the fourth.
    viewer, image, bone, truth, seeds, areas = sample
    grow, points, lesions, measure = _two_grown_then_one_painted(sample)
    points.add(seeds[2])
    assert (lesions.data == 3).any()
    lesions.undo()
    points.add(seeds[3])
    fourth = lesions.data == 4
    assert fourth.any() and not (lesions.data == 3).any()
    row, col = np.round(seeds[2]).astype(int)
    qtbot.waitUntil(lambda: measure.status.value.startswith(
        f"out of date: 1 seed(s) were added on no lesion you painted (row {row}, col {col})"))
    points.selected_data = {2}
    points.remove_selected()  # the undone one
    assert np.array_equal(lesions.data == 4, fourth) and "lesion(s) 3 of the seed(s) you deleted left as you changed" \
        in grow.status.value
    qtbot.waitUntil(lambda: not measure.status.value.startswith("out of date"))


def test_a_lesion_too_large_is_warned_of_by_its_number_in_the_painting_and_not_once_gone(sample, qtbot, tmp_path,
                                                                                          monkeypatch):
    # With the limit at 1 mm², every deposit of the sample is "larger than any deposit". The third,
    # added to the painting, is warned of as lesion 3 (its growth alone called it lesion 1, the
    # number of a painted lesion), in the status and the export; deleted, its warning goes too.
    import re

    from napari_calcinosis import pipeline

    monkeypatch.setattr(pipeline, "MAX_PLAUSIBLE_DEPOSIT_MM2", 1.0)
    viewer, image, bone, truth, seeds, areas = sample
    grow, points, lesions, measure = _two_grown_then_one_painted(sample)

    def warned_of(path):
        """The exported lesions' areas (mm²) by number, and the lesions the export warns of with theirs."""
        exported = pd.read_csv(measure.export(path))
        said = set(exported["warnings"])
        assert len(said) == 1 and said.pop().count("larger than any calcinosis deposit") == 1
        return (dict(zip(exported["lesion_id"], exported["area_mm2"])),
                {int(k): int(a) for k, a in re.findall(r"(\d+) \((\d+) mm²\)", exported["warnings"][0])})

    points.add(seeds[2])
    third = float((lesions.data == 3).sum() * 0.25**2)
    assert f"lesion(s) 3 ({third:.0f} mm²) are larger than any calcinosis deposit" in grow.status.value
    assert "lesion(s) 1 (" not in grow.status.value
    qtbot.waitUntil(lambda: not measure.status.value.startswith("out of date"))
    exported, warned = warned_of(tmp_path / "three.csv")
    assert sorted(exported) == [1, 2, 3] and warned == {k: round(a) for k, a in exported.items()}
    points.selected_data = {2}
    points.remove_selected()  # the third's seed deleted: its lesion and its warning go
    qtbot.waitUntil(lambda: not measure.status.value.startswith("out of date"))
    exported, warned = warned_of(tmp_path / "two.csv")
    assert sorted(exported) == sorted(warned) == [1, 2]


def test_a_click_after_automatic_quantify_and_painting_is_added_to_the_painting(sample):
    # Quantify's own seeds hold only the deposits it measured, not the things it left out: a
    # deposit clicked after painting is added to the painting, not grown again with every seed.
    from napari_calcinosis._widgets import GrowWidget, QuantifyWidget

    from scipy import ndimage as ndi

    viewer, image, bone, truth, seeds, areas = sample
    data = np.asarray(image.data, np.float32)
    air_rows = np.flatnonzero(~ndi.binary_dilation(ndi.binary_fill_holes(data > -500), iterations=12).any(axis=1))
    image.data = np.where(np.isin(np.arange(data.shape[0]), air_rows[:4])[:, None], 2500.0, data)  # a splint in air
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = image, "cpu"
    assert "outside_finger" in set(q.run().table["status"])  # left out: no seed of it in the seeds layer
    lesions = viewer.layers["lesions"]
    grow = dock(viewer, GrowWidget(viewer))
    grow.image.value = image
    last = int(lesions.data.max())
    where = np.nonzero(lesions.data == last)
    lesions.data_setitem(where, 0)  # erased with the brush: the user took it for an artefact
    painted = lesions.data.copy()
    viewer.layers["seeds"].add(np.argwhere(truth == truth[where].max()).mean(axis=0))  # then clicked it back
    assert "lesions (new)" not in viewer.layers and np.array_equal(lesions.data[painted > 0], painted[painted > 0])
    back = (lesions.data > 0) & (painted == 0)
    assert back.sum() == pytest.approx(len(where[0]), rel=0.2) and "grown" in grow.status.value


def test_painting_re_measures_and_regrows(sample, qtbot, tmp_path):
    # Measure's and Agreement's tables follow a painted lesions layer; painting a deposit into
    # the bone layer while seeding regrows without it.
    from napari_calcinosis._widgets import AgreementWidget, GrowWidget, MeasureWidget

    viewer, image, bone, _, seeds, _ = sample
    grow = with_true_bone(viewer, GrowWidget(viewer), image, bone)
    grow.start_seeding().add(seeds)
    lesions = viewer.layers["lesions"]
    m = dock(viewer, MeasureWidget(viewer))
    before = m.refresh()
    _paint_a_pixel_more(lesions, 1)
    qtbot.wait(50)  # the table follows once the paint is written
    area_px = 0.25 * 0.25
    now = m.frame()
    assert np.isclose(now["area_mm2"][0], (lesions.data == 1).sum() * area_px)
    assert now["area_mm2"][0] > before["area_mm2"][0]
    assert m.status.value.startswith(f"{len(seeds)} lesion(s), total {now['area_mm2'].sum():.2f}")
    exported = pd.read_csv(m.export(tmp_path / "painted.csv"))
    assert set(exported["mode"]) == {"painted"} and np.allclose(exported["area_mm2"], now["area_mm2"])
    a = dock(viewer, AgreementWidget(viewer))  # Agreement reads the table as painted too
    a.layer.value = lesions
    assert np.allclose(a.table()["area_mm2"], now["area_mm2"])
    # The bone: paint the second deposit into it, and it is no longer measured.
    b = grow.bone.value
    second = viewer.layers["lesions"].data == 2
    b.data_setitem(np.nonzero(second), 1)
    qtbot.wait(50)
    table = viewer.layers["lesions (new)"].metadata["seed_table"]  # the painted lesions layer stays
    assert table["status"][1] in ("on_bone", "no_deposit") and table["lesion_id"][1] == 0
    # Ctrl+Z on that stroke (napari only redraws the layer): the deposit is measured again
    b.undo()
    qtbot.wait(50)
    table = viewer.layers["lesions (new)"].metadata["seed_table"]
    assert table["status"][1] == "ok" and np.isclose(table["area_mm2"][1], before["area_mm2"][1])
    b.refresh()  # a redraw that changes nothing regrows nothing
    qtbot.wait(50)
    assert viewer.layers["lesions (new)"].metadata["seed_table"] is table


def test_a_widget_writing_the_bone_layer_does_not_make_grow_regrow_over_its_result(sample, qtbot, monkeypatch):
    # Quantify segments again into the widget-made 'bone' Grow is watching: its own lesions stand,
    # Grow does not regrow its one seed over them once the events are handled.
    from napari_calcinosis import segment
    from napari_calcinosis._widgets import GrowWidget, QuantifyWidget, SegmentWidget

    viewer, image, bone, _, seeds, _ = sample
    monkeypatch.setattr(segment, "segment_phalanges", _true_segmentation(bone))  # Segment gives the true bone
    seg = dock(viewer, SegmentWidget(viewer))
    seg.image.value, seg.device.value = image, "cpu"
    made = seg.run()
    grow = dock(viewer, GrowWidget(viewer))
    grow.image.value = image
    assert grow.bone.value is made
    grow.start_seeding().add(seeds[:1])
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value, q.use_seeds.value = image, "cpu", False
    result = q.run()  # the U-Net's own mask this time, written into 'bone'
    assert not np.array_equal(np.asarray(made.data) > 0, bone)
    qtbot.wait(50)
    assert len(viewer.layers["lesions"].metadata["seed_table"]) == len(result.table) > 1


def test_seeds_clicked_before_the_bone_grow_once_it_is_there(sample, qtbot):
    from napari_calcinosis._widgets import GrowWidget

    viewer, image, bone, _, seeds, areas = sample
    viewer.layers.remove("sample_finger true bone")
    grow = dock(viewer, GrowWidget(viewer))
    grow.image.value = image
    assert grow.bone.value is None
    points = grow.start_seeding()
    assert "once 'sample_finger' has a bone layer: run Segment phalanges" in grow.status.value
    points.add(seeds)
    assert "lesions" not in viewer.layers and "no bone layer for 'sample_finger'" in grow.status.value
    viewer.add_labels(bone.astype(np.uint8), name="bone", scale=image.scale, units="mm")  # as Segment would
    qtbot.wait(50)
    assert np.allclose(viewer.layers["lesions"].features["area_mm2"], areas, rtol=0.25, atol=0.5)
    viewer.layers.remove("bone")
    points.data = points.data[1:]
    assert "grown on a bone layer that is gone and are not updated" in grow.status.value


def test_odd_images_get_a_clear_word(sample):
    # A stack, a colour image, a PNG opened at scale 1 with 0-255 values: each says what is wrong.
    from napari_calcinosis._widgets import QuantifyWidget, SegmentWidget

    viewer, image, _, _, _, _ = sample
    seg = dock(viewer, SegmentWidget(viewer))
    seg.device.value = "cpu"
    stack = viewer.add_image(np.stack([image.data] * 3), name="stack", scale=(1, 0.25, 0.25))
    seg.image.value = stack
    assert seg.run() is None and "stack of shape (3, " in seg.status.value and "Split Stack" in seg.status.value
    rgb = viewer.add_image(np.zeros(image.data.shape + (3,), np.uint8), name="photo", rgb=True)
    seg.image.value = rgb
    assert seg.run() is None and "colour (RGB)" in seg.status.value and "Prepare image" in seg.status.value
    one = viewer.add_image(image.data[None], name="one slice", scale=(1, 0.25, 0.25))
    seg.image.value = one
    assert seg.run() is not None and seg.status.value.startswith("bone:")  # a leading axis of one slice is fine
    png = viewer.add_image(np.clip((image.data - (450 - 750)) / 1500 * 255, 0, 255).round().astype(np.uint8), name="png")
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = png, "cpu"
    assert q.run() is None and "lesions" not in viewer.layers  # refused: no pixel counts as mm², no 0-255 as HU
    assert q.status.value.startswith("error: 'png' holds an export's values (uint8, 0-255), not HU")
    assert "Prepare image (pixel size, HU)" in q.status.value
    from napari_calcinosis._widgets import GrowWidget, SubtractWidget

    for widget, press in ((dock(viewer, SubtractWidget(viewer)), "run"), (dock(viewer, GrowWidget(viewer)), "auto_seed")):
        widget.image.value = png  # no bone layer yet: the export is what to say first
        assert getattr(widget, press)() is None and "holds an export's values" in widget.status.value
    wide = viewer.add_image(np.full((300, 900), 40, np.float32), name="wide")  # HU, but scale 1: 900 "mm"
    q.image.value = wide
    assert q.run() is None and "the image spans 300 x 900 mm" in q.status.value
    assert q.status.value.endswith("; in napari, Plugins > napari-calcinosis > Prepare image (pixel size, HU) sets it")
    q.image.value = image
    q.run()
    assert not q.status.value.startswith("warning")
    from napari_calcinosis._widgets import input_warning

    blank = viewer.add_image(np.zeros(image.data.shape, np.float32), name="blank", scale=image.scale)
    assert input_warning(blank, blank.data) == "'blank' holds one value (0) everywhere: there is nothing to measure"


def test_prepare_turns_an_export_opened_by_napari_into_hu_and_mm(sample, tmp_path, qtbot):
    # The paper's route: a JPEG/PNG exported at W1500/L450, opened with napari's own reader
    # (0-255, scale 1). Prepare image maps it back to HU with the pixel size given, and the
    # deposits measure as they do on the DICOM.
    from napari_calcinosis import read_image, write_windowed_png
    from napari_calcinosis._widgets import PrepareWidget, QuantifyWidget, SegmentWidget

    viewer, image, _, _, seeds, areas = sample
    spacing_mm = float(image.scale[-1])
    path = write_windowed_png(tmp_path / "finger.png", image.data)
    [png] = viewer.open(str(path), plugin="napari")
    assert png.data.dtype == np.uint8 and tuple(png.scale) == (1.0, 1.0)
    prep = dock(viewer, PrepareWidget(viewer))
    prep.image.value = png
    assert prep.export.value and prep.pixel_size_mm.value == 0.0 and prep.run_button.text == "Convert to HU"
    assert prep.status.value.startswith("'finger' looks like an export")
    assert prep.run() is None and "give the pixel size in mm" in prep.status.value
    assert [layer.name for layer in viewer.layers][-1] == "finger"  # nothing added

    segment = dock(viewer, SegmentWidget(viewer))
    segment.image.value = png  # chosen before the conversion: moves to the HU layer with it
    prep.pixel_size_mm.value = spacing_mm
    hu = prep.run()
    assert hu.name == "finger (HU)" and tuple(hu.scale) == (spacing_mm, spacing_mm) and not png.visible
    qtbot.waitUntil(lambda: segment.image.value is hu)
    assert prep.image.value is png  # Prepare says what it made of the export, on the export
    assert tuple(png.scale) == (spacing_mm, spacing_mm) and png.data.dtype == np.uint8  # one world, in mm
    expected = read_image(path, pixel_size_mm=spacing_mm)
    np.testing.assert_allclose(hu.data, expected.pixels_hu)
    assert hu.metadata["saturated_above_hu"] == 1200.0
    assert "8-bit export mapped back through W1500/L450" in prep.status.value
    assert prep.run() is hu and sum(layer.name.startswith("finger (HU)") for layer in viewer.layers) == 1
    screenshot(viewer, "widget_prepare")

    viewer.add_points(seeds, name="seeds", scale=hu.scale, units="mm")
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = hu, "cpu"
    result = q.run()
    assert "has scale 1" not in q.status.value and "8-bit export" not in q.status.value
    assert (result.table["status"] == "ok").all()
    assert np.allclose(result.table["area_mm2"][:3], areas[:3], rtol=0.25, atol=0.5)
    # the clipping the export recorded reaches the table and the status line
    dense = (result.table["max_value"] >= 1200 - 3).to_numpy()
    assert dense.any() and result.table["hu_clipped"].tolist() == dense.tolist()
    assert f"; {dense.sum()} reach the export's top of 1200 HU: their HU are lower bounds" in q.status.value
    assert not q.status.value.startswith("warning")

    # A colour export (a JPEG from a PACS viewer) converts to the same HU.
    rgb = viewer.add_image(np.stack([png.data] * 3, axis=-1), name="photo", rgb=True)
    prep.image.value = rgb
    assert prep.export.value
    prep.pixel_size_mm.value = spacing_mm
    np.testing.assert_allclose(prep.run().data, expected.pixels_hu, atol=1e-3)

    # An image in HU without a pixel size gets its scale, in place: nothing to convert.
    bare = viewer.add_image(image.data, name="no size")
    prep.image.value = bare
    assert not prep.export.value and prep.run_button.text == "Set pixel size"
    assert "has no pixel size (scale 1)" in prep.status.value
    prep.pixel_size_mm.value = 0.3
    assert prep.run() is bare and tuple(bare.scale) == (0.3, 0.3) and bare.data is image.data
    prep.image.value = png
    prep.image.value = bare
    assert prep.pixel_size_mm.value == pytest.approx(0.3) and "ready to measure" in prep.status.value


def test_prepare_again_at_another_pixel_size_keeps_seeds_and_results_on_their_pixels(sample, tmp_path):
    # A pixel size typed wrong, measured, then corrected: the seeds, bone and lesions follow the
    # image (they lie on its pixels), the lesion table is measured again at the new size, and
    # the hidden export is refused with the name of its HU image.
    from napari_calcinosis import write_windowed_png
    from napari_calcinosis._widgets import MeasureWidget, PrepareWidget, QuantifyWidget

    viewer, image, _, _, seeds, areas = sample
    spacing_mm = float(image.scale[-1])
    path = write_windowed_png(tmp_path / "finger.png", image.data)
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)  # the export alone: its grid is no other image's
    prep = dock(viewer, PrepareWidget(viewer))
    [png] = viewer.open(str(path), plugin="napari")
    assert prep.image.value is png  # a newly opened export is the one to prepare
    wrong = spacing_mm * 1.25
    prep.pixel_size_mm.value = wrong
    hu = prep.run()
    viewer.add_points(seeds, name="seeds", scale=hu.scale, units="mm")  # the user's clicks
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = hu, "cpu"
    first = q.run()
    assert np.allclose(first.table["area_mm2"][:3], areas[:3] * 1.25**2, rtol=0.25, atol=0.8)

    q.image.value = png
    assert q.run() is None and "'finger' is the export; Prepare image made its image in HU, 'finger (HU)'" in q.status.value

    prep.image.value = png
    prep.pixel_size_mm.value = spacing_mm
    assert prep.run() is hu and tuple(hu.scale) == (spacing_mm, spacing_mm)
    for name in ("seeds", "bone", "calcification candidates", "lesions"):
        assert tuple(viewer.layers[name].scale) == (spacing_mm, spacing_mm), name
        assert f"'{name}'" in prep.status.value
    m = dock(viewer, MeasureWidget(viewer))
    m.lesions.value = viewer.layers["lesions"]
    remeasured = m.refresh()
    np.testing.assert_allclose(sorted(remeasured["area_mm2"]), sorted(first.table["area_mm2"] / 1.25**2))
    # Export CSV writes what the table shows, not the per-seed table measured at the old size
    exported = pd.read_csv(m.export(tmp_path / "after.csv"))
    np.testing.assert_allclose(sorted(exported["area_mm2"]), sorted(remeasured["area_mm2"]))
    # which scan the rows are of, also as measured from the layer: the file the export was opened from
    assert set(exported["image"]) == {"finger (HU)"} and set(exported["path"]) == {str(path.resolve())}
    # what the rows were measured with: the export's pixel size now, its window; and that the
    # growth's seeds and statuses are gone
    assert set(first_settings := exported["settings"]) == {
        f"threshold_hu=200; margin_mm=per image; connectivity=4; min_area_mm2=0.3; tta=no; "
        f"export_pixel_size_mm={spacing_mm:g}; export_window_hu=W1500/L450"}, first_settings
    assert set(exported["warnings"]) == {
        f"measured again from the lesion labels after the pixel size changed from {wrong:g} to {spacing_mm:g} mm, "
        "without their seeds and statuses: Quantify again to measure them anew"}
    assert "Quantify again" in m.status.value
    q.image.value = hu
    again = q.run()
    assert (again.table["status"] == "ok").all()
    assert np.allclose(again.table["area_mm2"][:3], areas[:3], rtol=0.25, atol=0.5)


def test_seeds_clicked_on_the_export_before_converting_stay_on_their_deposits(sample, tmp_path):
    from napari_calcinosis import write_windowed_png
    from napari_calcinosis._errors import CalcinosisError
    from napari_calcinosis._train_widget import TrainWidget
    from napari_calcinosis._widgets import PrepareWidget, QuantifyWidget, SegmentWidget, image_pixels, input_warning

    viewer, image, bone, _, seeds, areas = sample
    spacing_mm = float(image.scale[-1])
    path = write_windowed_png(tmp_path / "finger.png", image.data)
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)  # the export alone, as a user opens it
    [png] = viewer.open(str(path), plugin="napari")
    assert "Prepare image" in input_warning(png, np.asarray(png.data, np.float32))
    clicks = viewer.add_points(seeds, name="seeds")  # clicked on the export, at its scale 1
    prep = dock(viewer, PrepareWidget(viewer))
    prep.image.value, prep.pixel_size_mm.value = png, spacing_mm
    scale_bar = getattr(getattr(viewer, "canvas", None), "overlays", viewer).scale_bar
    scale_bar.visible = False  # hidden by the user: Prepare image shows it again with the mm it gave
    hu = prep.run()
    assert tuple(clicks.scale) == (spacing_mm, spacing_mm) and "'seeds' moved with it" in prep.status.value
    # what that pixel size makes of the view, in mm, for the user to judge against the finger
    rows, cols = hu.data.shape
    assert prep.status.value.startswith(f"'finger (HU)': {spacing_mm:g} mm pixels, so the view is {rows * spacing_mm:.0f} "
                                        f"mm high and {cols * spacing_mm:.0f} mm wide (see the scale bar)")
    assert scale_bar.visible
    assert all(str(u) == "millimeter" for u in clicks.units)
    hu.name = "finger HU (mine)"  # renamed by the user: the export's link follows it
    q = dock(viewer, QuantifyWidget(viewer))
    assert q.image.value is hu  # docked after: the HU layer, not the (hidden) export listed first
    with pytest.raises(CalcinosisError, match=r"made its image in HU, 'finger HU \(mine\)': choose that one"):
        image_pixels(png)
    prep.image.value = png
    assert prep.run() is hu and hu.name == "finger HU (mine)"  # converted again: into the renamed layer, not a new one
    q.device.value = "cpu"
    result = q.run()
    assert (result.table["status"] == "ok").all()
    assert np.allclose(result.table["area_mm2"][:3], areas[:3], rtol=0.25, atol=0.5)
    # the export itself is neither trained on nor measured, even once its HU layer is gone
    labels = viewer.add_labels(bone.astype(np.uint8), name="true bone", scale=hu.scale)
    with pytest.raises(CalcinosisError, match="'finger' is the export; Prepare image made its image in HU"):
        TrainWidget(viewer).add_pair(png, labels)
    viewer.layers.remove(hu)
    seg = dock(viewer, SegmentWidget(viewer))
    seg.image.value, seg.device.value = png, "cpu"
    assert seg.run() is None and "if it was deleted, Convert to HU again" in seg.status.value


def _sample_as_prepared_export(sample, tmp_path, **window):
    """The sample as a user has it from a PNG export alone, converted by Prepare image at its
    pixel size: (Prepare, the export's layer, the HU layer, the pixel size)."""
    from napari_calcinosis import write_windowed_png
    from napari_calcinosis._widgets import PrepareWidget

    viewer, image, *_ = sample
    spacing_mm = float(image.scale[-1])
    path = write_windowed_png(tmp_path / "finger.png", image.data, **window)
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    prep = dock(viewer, PrepareWidget(viewer))
    [png] = viewer.open(str(path), plugin="napari")
    prep.image.value, prep.pixel_size_mm.value = png, spacing_mm
    return prep, png, prep.run(), spacing_mm


def test_an_export_converted_again_keeps_its_warnings_and_says_its_new_window(sample, tmp_path):
    # An export made through a soft-tissue window, grown on, then converted again at the same
    # pixel size through that window: the export's rows keep the image's warning, say they were
    # measured again, and carry the window they were measured through now.
    from napari_calcinosis._widgets import GrowWidget, MeasureWidget

    viewer, _, bone, _, seeds, _ = sample
    prep, png, hu, spacing_mm = _sample_as_prepared_export(sample, tmp_path, window_level_hu=40, window_width_hu=400)
    grow = with_true_bone(viewer, GrowWidget(viewer), hu, bone)
    grow.seeds_layer().add(seeds)
    lesions = viewer.layers["lesions"]
    grown_warning = lesions.metadata["warnings"]
    assert "soft tissue" in grown_warning and "export_window_hu=W1500/L450" in settings_of(lesions)
    prep.image.value = png
    prep.level_hu.value, prep.width_hu.value = 40, 400
    for _ in range(2):  # twice: one note, not two
        prep.run()
    # Grow's status line no longer gives the total grown before, but the one measured now
    assert grow.status.value.startswith(f"warning: {grown_warning}. 'lesions' measured again at {spacing_mm:g} mm "
                                        f"pixels: {len(seeds)} lesion(s)")
    m = dock(viewer, MeasureWidget(viewer))
    m.lesions.value = lesions
    exported = pd.read_csv(m.export(tmp_path / "again.csv"))
    assert set(exported["warnings"]) == {
        f"{grown_warning}; measured again from the lesion labels after the image was converted again from its "
        "export, without their seeds and statuses: Quantify again to measure them anew"}
    assert set(exported["settings"]) == {"threshold_hu=200; margin_mm=per image; connectivity=4; min_area_mm2=0.3; "
                                         f"tta=no; export_pixel_size_mm={spacing_mm:g}; export_window_hu=W400/L40"}


def test_pixel_size_changed_twice_with_a_failed_seed_and_a_painted_lesion(sample, tmp_path):
    # Grow's status (and a second Grow's, which names the image first) follow each pixel-size
    # change, not the first only; a seed that failed at growth is no seed "added" since, after
    # the pixel size changed, once the lesions are painted.
    from napari_calcinosis._widgets import GrowWidget, MeasureWidget

    viewer, _, bone, _, seeds, _ = sample
    prep, png, hu, _ = _sample_as_prepared_export(sample, tmp_path)
    grow = with_true_bone(viewer, GrowWidget(viewer), hu, bone)
    grow.seeds_layer().add(np.vstack([seeds, [[3.0, 3.0]]]))  # the last finds no deposit
    assert "1 seed(s) failed: no_deposit" in grow.status.value
    second = dock(viewer, GrowWidget(viewer))
    second.image.value = hu
    assert second.status.value.startswith("'finger (HU)': ")
    lesions = viewer.layers["lesions"]
    m = dock(viewer, MeasureWidget(viewer))
    m.lesions.value = lesions
    for size_mm in (0.3, 0.4):
        prep.image.value, prep.pixel_size_mm.value = png, size_mm
        prep.run()
        total = f"{m.refresh()['area_mm2'].sum():.2f} mm² in all"
        assert grow.status.value.startswith(f"'lesions' measured again at {size_mm:g} mm pixels: {len(seeds)} lesion(s), "
                                            f"{total}"), grow.status.value
        assert second.status.value.startswith(f"'finger (HU)': 'lesions' measured again at {size_mm:g} mm pixels")
        assert total in second.status.value
    for g in (grow, second):
        g._disconnect_all()  # undocked: nothing regrows now
    _paint_a_pixel_more(lesions, 2)
    on_lesion = np.argwhere(lesions.data == 1)[0].astype(float)
    viewer.layers["seeds"].add(on_lesion)  # a seed put on a painted lesion
    m.refresh()
    assert not m.status.value.startswith("out of date"), m.status.value
    assert len(pd.read_csv(m.export(tmp_path / "painted.csv"))) == len(seeds)


def test_prepare_on_awkward_inputs(sample):
    from pydicom.data import get_testdata_file

    from napari_calcinosis._widgets import PrepareWidget

    viewer, image, _, _, _, _ = sample
    prep = dock(viewer, PrepareWidget(viewer))
    # a DICOM's own spacing shown and left as it was changes nothing
    prep.image.value = image
    origin = image.metadata.get("spacing_origin")
    assert "ready to measure" in prep.status.value and prep.run() is image
    assert "nothing changed" in prep.status.value and image.metadata.get("spacing_origin") == origin
    # spacings such as 0.1953125 mm (100 mm on 512 pixels) are kept exact
    prep.pixel_size_mm.value = 0.1953125
    assert prep.pixel_size_mm.value == 0.1953125
    # grey + alpha, which napari opens as (rows, cols, 2), is one slice
    grey = np.clip((image.data + 300) / 1500 * 255, 0, 255).round().astype(np.uint8)
    la = viewer.add_image(np.stack([grey, np.full_like(grey, 255)], axis=-1), name="la", rgb=False)
    prep.image.value = la
    assert prep.export.value
    prep.pixel_size_mm.value = 0.25
    out = prep.run()
    assert out is not None and out.name == "la (HU)" and out.data.shape == grey.shape
    # pixels that are not square are named as such, not as "no pixel size"
    oblong = viewer.add_image(image.data, name="oblong", scale=(0.3, 0.15))
    prep.image.value = oblong
    assert "0.3 x 0.15 mm, not square" in prep.status.value and prep.pixel_size_mm.value == 0.0
    # an MR slice is named as not HU before anything is measured
    [mr] = viewer.open(get_testdata_file("MR_small.dcm"), plugin="napari-calcinosis")
    prep.image.value = mr
    assert prep.status.value.startswith("warning: 'MR_small': it is not a CT image")
    # raw scanner values (HU + 1024) given their pixel size: said as they are set, not first in Grow
    raw = viewer.add_image(np.clip(image.data + 1024, 0, 4095).astype(np.uint16), name="IM000001")
    prep.image.value = raw
    assert not prep.export.value
    prep.pixel_size_mm.value = 0.25
    assert prep.run() is raw
    assert "Its values are taken as HU; but no pixel is as dark as air or fat (the darkest are" in prep.status.value


def test_the_widgets_hear_what_the_reader_recorded_of_the_file(sample):
    # An MR slice opened with the plugin's reader: the file says its values are not HU, and the
    # widget's result says so, as the command line's does.
    from pydicom.data import get_testdata_file

    from napari_calcinosis._widgets import QuantifyWidget, calcinosis_image

    viewer = sample[0]
    [mr] = viewer.open(get_testdata_file("MR_small.dcm"), plugin="napari-calcinosis")
    image = calcinosis_image(mr, np.asarray(mr.data, np.float32))
    assert "values may not be Hounsfield units" in image.value_origin
    assert image.spacing_origin == mr.metadata["spacing_origin"]
    q = dock(viewer, QuantifyWidget(viewer))
    q.image.value, q.device.value = mr, "cpu"
    q.run()
    assert "it is not a CT image (the file's Modality is MR)" in q.status.value
    # a scale changed since the file was read is the user's, not the file's
    mr.scale = (0.5, 0.5)
    assert calcinosis_image(mr, np.asarray(mr.data, np.float32)).spacing_origin == ""


def test_many_failed_seeds_are_counted_not_listed(sample):
    from types import SimpleNamespace

    from napari_calcinosis._widgets import calcinosis_image, show_lesions

    viewer, image, _, _, _, _ = sample
    statuses = ["no_deposit"] * 8 + ["on_bone"]
    table = pd.DataFrame({"lesion_id": 0, "status": statuses, "area_mm2": np.nan, "freed_from_bone_mm2": 0.0})
    measured = calcinosis_image(image, np.asarray(image.data, np.float32))
    result = SimpleNamespace(table=table, lesion_labels=np.zeros(image.data.shape, np.int32), image=measured)
    summary = show_lesions(viewer, result, image).metadata["summary"]
    assert summary == "0 lesion(s), 0.00 mm² in all; 9 seed(s) failed: 8 no_deposit, 1 on_bone"
    few = show_lesions(viewer, SimpleNamespace(table=table[-3:], lesion_labels=result.lesion_labels, image=measured),
                       image)
    assert few.metadata["summary"].endswith("3 seed(s) failed: no_deposit, no_deposit, on_bone")


def test_a_doubtful_result_says_why_in_the_widget(sample):
    # A bone layer the user emptied: the deposits are measured, and the status line says no bone
    # was found, so that the numbers are not taken at face value.
    from napari_calcinosis._widgets import GrowWidget

    viewer, image, bone, _, seeds, _ = sample
    grow = with_true_bone(viewer, GrowWidget(viewer), image, np.zeros_like(bone))
    grow.start_seeding().add(seeds[:1])
    assert grow.status.value.startswith("warning: no bone was found")
    assert "1 lesion(s)" in grow.status.value


def _quantified_then_another_image(sample):
    """The sample quantified in a docked Quantify widget, and the cut-off sample opened beside it."""
    from napari_calcinosis._widgets import QuantifyWidget

    viewer, image = sample[0], sample[1]
    other = viewer.open_sample("napari-calcinosis", "sample_finger_cut_off")[0]
    q = dock(viewer, QuantifyWidget(viewer))
    q.device.value = "cpu"
    q.image.value = image
    return viewer, image, other, q, q.run()


def test_a_second_image_keeps_the_first_images_results(sample):
    # Quantify on a second image used to overwrite the first one's bone and lesions (and used the
    # first one's corrected bone for the second): each image keeps its own, and the pickers of
    # Grow follow the chosen image's bone.
    from napari_calcinosis._widgets import GrowWidget

    viewer, image, other, q, first = _quantified_then_another_image(sample)
    viewer.layers["bone"].paint((0, 0), 1)  # the user corrected the first image's bone
    q.image.value = other
    q.use_seeds.value = False
    second = q.run()
    assert viewer.layers["lesions"].metadata["source_image"] == image.name
    # the second image's layers are named by it: told apart from the first's, and from a re-run's (new)
    assert viewer.layers[f"lesions [{other.name}]"].metadata["source_image"] == other.name
    assert np.array_equal(viewer.layers["lesions"].data, first.lesion_labels)
    assert np.array_equal(viewer.layers[f"bone [{other.name}]"].data > 0, second.bone_mask)
    assert not np.array_equal(second.bone_mask, viewer.layers["bone"].data > 0)
    g = dock(viewer, GrowWidget(viewer))
    g.image.value = image
    assert g.bone.value is viewer.layers["bone"]
    g.image.value = other
    assert g.bone.value is viewer.layers[f"bone [{other.name}]"]


def test_each_image_is_measured_with_its_own_seeds(sample):
    # Quantify on a second image used the first image's seeds layer (mapped through the viewer):
    # every seed failed on it, and its own proposal was never measured.
    viewer, _, other, q, _ = _quantified_then_another_image(sample)
    q.image.value = other
    second = q.run()
    assert (second.table["status"] == "ok").all() and len(second.table) >= 1
    assert viewer.layers[f"seeds [{other.name}]"].metadata["source_image"] == other.name
    again = q.run()  # the second image's proposal is its seeds now
    assert np.allclose(again.table[["seed_row", "seed_col"]], second.table[["seed_row", "seed_col"]])


def test_a_closed_widget_lets_go_of_the_layers(sample, qtbot):
    # napari keeps a closed dock widget alive: it must not go on regrowing when the bone is
    # painted or a seed is added.
    from napari_calcinosis._widgets import GrowWidget

    viewer, image, bone, _, seeds, _ = sample
    grow = with_true_bone(viewer, GrowWidget(viewer), image, bone)
    grow.start_seeding().add(seeds[:2])
    lesions = viewer.layers["lesions"]
    before = lesions.data.copy()
    viewer.window.remove_dock_widget(grow.native)
    assert grow._connections == []
    grow.bone.value.data_setitem(np.nonzero(before == 1), 1)  # the first deposit painted into the bone
    viewer.layers["seeds"].add(seeds[2:3])
    qtbot.wait(50)
    assert np.array_equal(lesions.data, before) and "lesions (new)" not in viewer.layers


def test_results_follow_a_rotated_image(sample):
    from napari_calcinosis._widgets import GrowWidget

    viewer, image, bone, _, seeds, _ = sample
    image.rotate = 20
    grow = with_true_bone(viewer, GrowWidget(viewer), image, bone)
    grow.bone.value.rotate = 20
    points = grow.start_seeding()
    points.add(points.world_to_data(image.data_to_world(seeds[0])))
    lesions = viewer.layers["lesions"]
    centre = np.argwhere(lesions.data == 1).mean(axis=0)
    assert np.allclose(lesions.data_to_world(centre), image.data_to_world(centre))
    assert np.allclose(np.asarray(lesions.rotate), np.asarray(image.rotate))


def test_quantify_keeps_the_networks_probability_with_the_bone_it_makes(sample):
    # After the user paints Quantify's bone layer, a seed may still take the part of a deposit
    # the network was unsure of: the probability travels with the layer, as Segment's does.
    viewer, image, other, q, first = _quantified_then_another_image(sample)
    bone = viewer.layers["bone"]
    assert np.array_equal(bone.metadata["bone_probability"], first.bone_probability)
    bone.paint((0, 0), 1)  # corrected
    q.image.value = image
    again = q.run()
    assert np.array_equal(again.bone_probability, first.bone_probability)
    assert np.allclose(again.table["area_mm2"], first.table["area_mm2"])


def test_deleting_the_seeds_layer_stops_growing_from_its_points(sample, qtbot):
    # Seeds and lesions deleted to start over, then the bone corrected: lesions were grown again
    # from the clicks no longer in the viewer, with nothing to move or delete.
    from napari_calcinosis._widgets import GrowWidget

    viewer, image, bone, _, seeds, _ = sample
    grow = with_true_bone(viewer, GrowWidget(viewer), image, bone)
    points = grow.start_seeding()
    points.add(seeds)
    assert "lesions" in viewer.layers
    viewer.layers.remove(points)
    viewer.layers.remove(viewer.layers["lesions"])
    bone_layer = grow.bone.value
    bone_layer.brush_size = 3
    bone_layer.paint((5, 5), 1)
    grow.take_unsure.value = not grow.take_unsure.value
    qtbot.wait(300)
    assert grow.points is None and grow.regrow() is None
    assert not any(layer.name.startswith("lesions") for layer in viewer.layers)


def _segmented_then_painted(viewer, image):
    """Segment docked and run on ``image``; a brush stroke on its bone layer, in a corner."""
    from napari_calcinosis._widgets import SegmentWidget

    segment = dock(viewer, SegmentWidget(viewer))
    segment.image.value, segment.device.value = image, "cpu"
    bone_layer = segment.run()
    bone_layer.brush_size = 3
    bone_layer.paint((5, 5), 1)
    return segment, bone_layer


def test_an_undone_stroke_on_bone_or_lesions_leaves_them_the_widgets(sample):
    # A brush stroke undone (Ctrl+Z) made the layer the user's: the next seed went to 'lesions (new)'
    # with the grown one hidden as "your painted 'lesions'", Segment made 'bone (new)' likewise.
    from napari_calcinosis._widgets import GrowWidget

    viewer, image, bone, _, seeds, areas = sample
    segment, bone_layer = _segmented_then_painted(viewer, image)
    bone_layer.undo()
    assert segment.run() is bone_layer and "is kept" not in segment.status.value
    assert [layer.name for layer in viewer.layers if layer.name.startswith("bone")] == ["bone"]

    grow = dock(viewer, GrowWidget(viewer))
    grow.image.value, grow.bone.value = image, bone_layer
    points = grow.start_seeding()
    points.add(seeds[:3])
    lesions = viewer.layers["lesions"]
    lesions.brush_size = 3
    lesions.paint((5, 5), 1, refresh=True)
    lesions.undo()
    points.add(seeds[3])
    assert [layer.name for layer in viewer.layers if layer.name.startswith("lesions")] == ["lesions"]
    assert lesions.visible and "painted" not in grow.status.value
    assert len(np.unique(lesions.data)) - 1 == 4


def test_a_renamed_result_is_still_the_images_result(sample):
    # 'bone' renamed 'bone baseline' (the user's corrections in it): every picker emptied, Grow said
    # "no bone layer ... run Segment phalanges", and doing so drew a second bone over the first.
    from napari_calcinosis._widgets import GrowWidget, SubtractWidget

    viewer, image, bone, _, seeds, _ = sample
    segment, bone_layer = _segmented_then_painted(viewer, image)  # corrected
    bone_layer.name = "bone baseline"
    grow, subtract = dock(viewer, GrowWidget(viewer)), dock(viewer, SubtractWidget(viewer))
    grow.image.value = subtract.image.value = image
    assert grow.bone.value is bone_layer and subtract.bone.value is bone_layer
    points = grow.start_seeding()
    points.add(seeds[:2])
    lesions = viewer.layers["lesions"]
    assert "no bone layer" not in grow.status.value and len(np.unique(lesions.data)) - 1 == 2
    lesions.name = "lesions baseline"
    points.add(seeds[2])  # regrown in place, under the name the user gave
    assert len(np.unique(lesions.data)) - 1 == 3
    assert not any(layer.name == "lesions" for layer in viewer.layers)
    new = segment.run()  # the corrected one kept, hidden, and said so
    assert new.name == "bone" and not bone_layer.visible and "your 'bone baseline' is kept" in segment.status.value


def test_a_painting_hidden_by_the_user_is_said_when_a_seed_is_not_grown_into_it(sample):
    # Hidden to look at the image, the painted lesions were left out of the next seed's growth and
    # of Measure's numbers without a word.
    viewer, image, bone, _, seeds, _ = sample
    grow, points, lesions, measure = _two_grown_then_one_painted(sample)
    lesions.visible = False
    points.add(seeds[2])
    assert "lesions (new)" in viewer.layers and not lesions.visible
    assert "your painted 'lesions' is kept as you painted it, hidden: these seeds' lesions are 'lesions (new)'" \
        in grow.status.value


def test_the_exports_file_stays_the_rows_path_once_its_layer_is_deleted(sample, tmp_path):
    # Tidying up after Prepare image (deleting the hidden export) blanked the CSV's path column,
    # the key for merging with the command line's rows.
    from napari_calcinosis import write_windowed_png
    from napari_calcinosis._widgets import GrowWidget, MeasureWidget, PrepareWidget

    viewer, image, bone, _, seeds, _ = sample
    path = write_windowed_png(tmp_path / "finger.png", image.data)
    [png] = viewer.open(str(path), plugin="napari")
    prep = dock(viewer, PrepareWidget(viewer))
    prep.image.value, prep.pixel_size_mm.value = png, float(image.scale[-1])
    hu = prep.run()
    viewer.layers.remove(png)
    viewer.layers.remove(image)
    grow = with_true_bone(viewer, GrowWidget(viewer), hu, bone)
    grow.start_seeding().add(seeds[:2])
    measure = dock(viewer, MeasureWidget(viewer))
    measure.lesions.value = viewer.layers["lesions"]
    written = pd.read_csv(measure.export(tmp_path / "lesions.csv"))
    assert set(written["path"]) == {str(path.resolve())} and set(written["image"]) == {"finger (HU)"}


def test_measure_says_the_warnings_the_export_carries(sample, tmp_path):
    # An image at scale 1 (pixels, not mm): Grow warned, the export's warnings column did, but
    # Measure showed "total 241.00 mm²" alone. Once given its pixel size, neither says "pixel
    # counts" any more; a lesion painted larger than any deposit is said as the export says it.
    from napari_calcinosis._widgets import GrowWidget, MeasureWidget, PrepareWidget

    viewer, image, bone, _, seeds, _ = sample
    unscaled = viewer.add_image(np.asarray(image.data), name="noscale")
    grow = dock(viewer, GrowWidget(viewer))
    bone_layer = viewer.add_labels(bone.astype(np.uint8), name="bone")
    grow.image.value, grow.bone.value = unscaled, bone_layer
    grow.start_seeding().add(seeds)
    lesions = next(layer for layer in viewer.layers if layer.name.startswith("lesions"))
    measure = dock(viewer, MeasureWidget(viewer))
    measure.lesions.value = lesions
    measure.refresh()
    assert "scale of 1" in lesions.metadata["warnings"]
    assert measure.status.value.endswith(f"; warning: {lesions.metadata['warnings']}")

    prep = dock(viewer, PrepareWidget(viewer))
    prep.image.value, prep.export.value, prep.pixel_size_mm.value = unscaled, False, 0.25
    prep.run()
    measure.refresh()
    shown = measure.status.value
    exported = pd.read_csv(measure.export(tmp_path / "resized.csv"))["warnings"][0]
    for said in (shown, exported):
        assert "scale of 1" not in said and "pixel counts" not in said and "its pixels are 1 mm" not in said
        assert "the pixel size changed from 1 to 0.25 mm" in said

    lesions.brush_size = 120
    lesions.paint((100, 75), 1, refresh=True)  # one stroke far larger than any deposit
    measure.refresh()
    assert "are larger than any calcinosis deposit" in measure.status.value
    assert "are larger than any calcinosis deposit" in pd.read_csv(measure.export(tmp_path / "big.csv"))["warnings"][0]


def test_napari_s_copy_of_a_result_is_the_users_never_updated(sample):
    # Duplicate Layer copies the metadata: 'bone copy' (a backup, or corrections tried apart) was
    # taken for the scan's bone, picked by Grow and overwritten by Segment, the correction lost.
    from napari.layers._layer_actions import _duplicate_layer

    from napari_calcinosis._widgets import GrowWidget

    viewer, image, bone, _, seeds, _ = sample
    segment, bone_layer = _segmented_then_painted(viewer, image)
    bone_layer.undo()
    viewer.layers.selection = {bone_layer}
    _duplicate_layer(viewer.layers)
    copy = viewer.layers["bone copy"]
    copy.brush_size = 9
    copy.paint((5, 5), 1)  # corrections tried in the copy
    corrected = np.asarray(copy.data).copy()
    grow = dock(viewer, GrowWidget(viewer))
    grow.image.value = image
    assert grow.bone.value is bone_layer
    again = segment.run()
    assert again is bone_layer and np.array_equal(copy.data, corrected)


def test_measure_on_a_mask_at_scale_1_on_the_bone_and_after_the_seeds_layer_was_replaced(sample, tmp_path):
    # A helper's review of Measure: a lesion mask of the user's at scale 1 was exported as mm²
    # (16 times too large) without a word; the bone layer picked by mistake was exported as one
    # lesion of 484 mm², status ok; the seeds layer deleted and others clicked in a new one left
    # the table of the old seeds exportable; the table's cells took typed numbers the export ignored.
    from qtpy.QtWidgets import QAbstractItemView

    from napari_calcinosis._errors import CalcinosisError
    from napari_calcinosis._widgets import GrowWidget, MeasureWidget, SegmentWidget

    viewer, image, _, truth, seeds, areas = sample
    mine = viewer.add_labels(truth.astype(np.int32), name="reader's lesions")  # opened without its scale
    measure = dock(viewer, MeasureWidget(viewer))
    assert measure.table.native.editTriggers() == QAbstractItemView.NoEditTriggers
    measure.lesions.value = mine
    measure.refresh()
    said = "the lesions layer has scale 1, so its areas are pixel counts, not mm²"
    assert said in measure.status.value
    assert said in pd.read_csv(measure.export(tmp_path / "mine.csv"))["warnings"][0]
    mine.scale = image.scale  # given its scale: areas in mm², nothing said
    measure.refresh()
    assert "warning" not in measure.status.value
    assert np.allclose(measure.frame()["area_mm2"], areas, rtol=0.05)

    segment = dock(viewer, SegmentWidget(viewer))
    segment.image.value, segment.device.value = image, "cpu"
    bone_layer = segment.run()
    grow = dock(viewer, GrowWidget(viewer))
    grow.image.value, grow.bone.value = image, bone_layer
    points = grow.start_seeding()
    points.add(seeds[:2])
    measure.lesions.value = bone_layer  # picked by mistake
    measure.refresh()
    assert measure.status.value == "'bone': this layer is the bone layer, not lesions: choose the lesions layer"
    with pytest.raises(CalcinosisError, match="not exported: this layer is the bone layer, not lesions"):
        measure.export(tmp_path / "bone.csv")

    lesions = viewer.layers["lesions"]
    viewer.window.remove_dock_widget(grow.native)  # Grow closed: nothing regrows
    measure.lesions.value = lesions
    viewer.layers.remove(points)
    viewer.add_points(seeds[2:], name="seeds", scale=image.scale, units="mm")
    measure.refresh()
    assert measure.status.value.startswith("out of date: the seeds layer they were grown from was deleted, and "
                                           "'seeds' holds other points")
    with pytest.raises(CalcinosisError, match="not exported"):
        measure.export(tmp_path / "stale.csv")


def test_every_widget_docked_fits_a_laptop_screen(sample):
    # napari -w napari-calcinosis docks all eight: docks that could not shrink pushed the window to
    # 2,562 px tall, the lower widgets and the status bar past the screen's edge. Each scrolls now.
    import npe2
    from qtpy.QtWidgets import QApplication, QScrollArea

    viewer, *_ = sample
    window = viewer.window._qt_window
    window.show()
    window.resize(1400, 900)
    names = [w.display_name for w in npe2.PluginManager.instance().get_manifest("napari-calcinosis").contributions.widgets]
    assert len(names) == 8
    docked = [viewer.window.add_plugin_dock_widget("napari-calcinosis", name)[1] for name in names]
    QApplication.processEvents()
    assert window.minimumSizeHint().height() <= 900 and window.height() <= 900
    areas = [w.native if hasattr(w, "native") else w.findChild(QScrollArea) for w in docked]
    assert all(isinstance(area, QScrollArea) for area in areas)
    assert any(area.verticalScrollBar().maximum() > 0 for area in areas)  # squeezed: scrolled, not cut off
    # napari finds a docked widget again (the menu a second time, dock_widgets), not its scroll area
    assert viewer.window.add_plugin_dock_widget("napari-calcinosis", names[1])[1] is docked[1]
    assert docked[1] in viewer.window.dock_widgets.values()
    screenshot(viewer, "napari_all_widgets")
