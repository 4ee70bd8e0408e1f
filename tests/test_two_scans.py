"""A baseline and a follow-up scan open in one viewer, as a trial reader compares them: each
scan's layers stay its own in every widget (found by a reader's run, where the widgets picked,
grew on, measured and exported the other scan's layers)."""

import numpy as np
import pytest
from qtpy.QtWidgets import QApplication

from napari_calcinosis import CalcinosisImage, make_phantom, quantify
from napari_calcinosis._widgets import (
    SOURCE,
    AgreementWidget,
    GrowWidget,
    MeasureWidget,
    QuantifyWidget,
    SegmentWidget,
    SubtractWidget,
)

SHIFT = (8, 12)  # the follow-up: the same finger lying 8 rows and 12 columns further on


@pytest.fixture
def scans(make_napari_viewer):
    """A viewer with ``baseline`` and ``followup`` (the same finger, moved), their phantom and
    each scan's seeds on the phantom's deposits (pixels)."""
    p = make_phantom(3, n_lesions=4, cut_off=False)
    baseline = p.image_hu.astype(np.float32)
    followup = np.full_like(baseline, -1000.0)
    followup[SHIFT[0]:, SHIFT[1]:] = baseline[:-SHIFT[0], :-SHIFT[1]]
    viewer = make_napari_viewer()
    a = viewer.add_image(baseline, scale=p.spacing_mm, name="baseline", colormap="gray")
    b = viewer.add_image(followup, scale=p.spacing_mm, name="followup", colormap="gray")
    return viewer, a, b, p, np.asarray(p.seeds, float), np.asarray(p.seeds, float) + SHIFT


def _dock(viewer, widget, image=None):
    viewer.window.add_dock_widget(widget, area="right", name=type(widget).__name__)
    widget.reset_choices()
    if hasattr(widget, "device"):
        widget.device.value = "cpu"
    if image is not None:
        widget.image.value = image
    return widget


def _segment(viewer, *images):
    seg = _dock(viewer, SegmentWidget(viewer))
    for image in images:
        seg.image.value = image
        seg.run()
    return seg


def _click(points, image, seeds_px):
    """Add points where a user clicks on ``image``'s pixels ``seeds_px`` (points hold mm)."""
    points.add(np.array([points.world_to_data(image.data_to_world(rc)) for rc in seeds_px]))


def _areas(layer) -> np.ndarray:
    return np.sort(layer.features["area_mm2"].to_numpy())


def _api(image, seeds, bone_layer):
    """quantify() on the scan alone, with its bone layer (and the network's probability) as Grow uses them."""
    return quantify(CalcinosisImage(np.asarray(image.data), tuple(image.scale)), seeds,
                    bone_mask=np.asarray(bone_layer.data) > 0,
                    bone_probability=bone_layer.metadata.get("bone_probability"))


def test_each_scans_bone_is_picked_and_named_for_it(scans):
    viewer, a, b, _, _, _ = scans
    sub = _dock(viewer, SubtractWidget(viewer), a)
    grow = _dock(viewer, GrowWidget(viewer), a)
    _segment(viewer, a, b)
    bone_a, bone_b = viewer.layers["bone"], viewer.layers["bone [followup]"]
    assert (bone_a.metadata[SOURCE], bone_b.metadata[SOURCE]) == ("baseline", "followup")
    # the follow-up's bone, inserted last, is not the baseline's (it was: 193 mm² of candidates for 14)
    assert sub.bone.value is bone_a and grow.bone.value is bone_a
    from napari_calcinosis.subtract import subtract_bone

    candidates = sub.run()
    expected = subtract_bone(np.asarray(a.data), np.asarray(bone_a.data) > 0, tuple(a.scale),
                             threshold_hu=sub.threshold_hu.value, margin_mm=candidates.metadata["margin_mm"])
    np.testing.assert_array_equal(candidates.data > 0, expected)
    assert candidates.name == "calcification candidates"
    sub.image.value = b
    assert sub.bone.value is bone_b and sub.run().name == "calcification candidates [followup]"


def test_auto_seed_uses_the_chosen_scans_candidates(scans):
    viewer, a, b, _, _, _ = scans
    _segment(viewer, a, b)
    sub = _dock(viewer, SubtractWidget(viewer), a)
    sub.run()  # the baseline's candidates only
    grow = _dock(viewer, GrowWidget(viewer), a)
    grow.auto_seed()
    on_a = _areas(viewer.layers["lesions"])
    grow.image.value = b
    grow.auto_seed()  # found no deposit on the follow-up through the baseline's candidates
    on_b = _areas(viewer.layers["lesions [followup]"])
    assert len(on_a) >= 3 and len(on_b) == len(on_a)
    np.testing.assert_allclose(on_b, on_a, rtol=0.1)  # the same finger, moved


def test_a_bone_corrected_while_grow_is_on_the_other_scan_is_grown_on_when_chosen_again(scans, qtbot):
    from scipy import ndimage as ndi

    viewer, a, b, p, seeds_a, seeds_b = scans
    _segment(viewer, a, b)
    grow = _dock(viewer, GrowWidget(viewer), a)
    _click(grow.start_seeding(), a, seeds_a)
    grow.image.value = b
    _click(grow.start_seeding(), b, seeds_b)
    lesions_a = viewer.layers["lesions"]
    before = _areas(lesions_a)
    assert "followup" not in grow.status.value  # Grow's status: its own result's summary

    # the reader erases the baseline's bone around a deposit against it, with Grow still on the follow-up
    touching = p.lesion_sites.index("touching_bone") + 1
    bone_a = viewer.layers["bone"]
    near = ndi.binary_dilation(p.lesion_labels == touching, iterations=4) & (np.asarray(bone_a.data) > 0)
    bone_a.data_setitem(np.nonzero(near), 0)
    qtbot.wait(50)
    assert np.array_equal(_areas(lesions_a), before)  # not grown on yet: Grow is on the follow-up

    grow.image.value = a
    qtbot.wait(50)
    expected = _api(a, seeds_a, bone_a).table["area_mm2"]
    np.testing.assert_allclose(_areas(lesions_a), np.sort(expected[expected > 0]))
    assert not np.allclose(_areas(lesions_a), before)
    assert grow.status.value.startswith(("'baseline'", f"{len(expected[expected > 0])} lesion(s)"))
    # moving a baseline seed now regrows the baseline, without pressing Add seeds again
    seeds_layer = viewer.layers["seeds"]
    seeds_layer.data = seeds_layer.data[:-1]
    assert len(lesions_a.features) == len(before) - 1


def test_renaming_a_scan_keeps_its_corrected_bone_and_seeds(scans):
    viewer, a, _, _, seeds_a, _ = scans
    q = _dock(viewer, QuantifyWidget(viewer), a)
    _segment(viewer, a)
    bone = viewer.layers["bone"]
    bone.paint((0, 0), 1)  # the reader corrected it
    seeds = _dock(viewer, GrowWidget(viewer), a).start_seeding()
    _click(seeds, a, seeds_a)
    a.name = "IM000001 baseline"  # a PACS name made readable
    assert q.image.value is a  # magicgui kept the choice by its text: the first image was picked instead
    result = q.run()
    assert bone.metadata[SOURCE] == seeds.metadata[SOURCE] == "IM000001 baseline"
    assert not [layer.name for layer in viewer.layers if "(new)" in layer.name or "[" in layer.name]
    np.testing.assert_array_equal(result.bone_mask, np.asarray(bone.data) > 0)
    np.testing.assert_allclose(result.table["seed_row"], seeds_a[:, 0])


def test_a_seeds_layer_of_the_readers_belongs_to_the_scan_it_is_first_used_for(scans):
    viewer, a, b, _, seeds_a, _ = scans
    mine = viewer.add_points(seeds_a, name="seeds", scale=a.scale)  # clicked on the baseline, at its scale
    q = _dock(viewer, QuantifyWidget(viewer), a)
    first = q.run()
    assert (first.table["status"] == "ok").all() and mine.metadata[SOURCE] == "baseline"
    q.image.value = b
    second = q.run()  # measured the follow-up at the baseline's places: every seed failed
    assert (second.table["status"] == "ok").all() and len(second.table) >= len(seeds_a) - 1
    assert "seeds proposed automatically" in q.status.value and len(mine.data) == len(seeds_a)


def test_a_bone_picked_by_hand_stays_with_its_scan(scans):
    viewer, a, b, _, seeds_a, seeds_b = scans
    _segment(viewer, a, b)
    grow = _dock(viewer, GrowWidget(viewer), a)
    bone_a, bone_b = viewer.layers["bone"], viewer.layers["bone [followup]"]
    hand_pick = grow.bone.native

    def pick(layer):
        grow.bone.value = layer
        hand_pick.activated.emit(hand_pick.currentIndex())

    pick(bone_a)
    grow.image.value = b
    assert grow.bone.value is bone_b  # it stayed on the baseline's bone: 104 mm² grown for the follow-up
    _click(grow.start_seeding(), b, seeds_b)
    pick(bone_a)  # on purpose: kept, and said
    grow.regrow()
    assert grow.bone.value is bone_a and "note: 'bone' was made from 'baseline', not from 'followup'" in grow.status.value


def test_measure_and_agreement_follow_the_scan_just_measured(scans, tmp_path):
    viewer, a, b, _, _, _ = scans
    measure = _dock(viewer, MeasureWidget(viewer))
    agreement = _dock(viewer, AgreementWidget(viewer))
    q = _dock(viewer, QuantifyWidget(viewer), a)
    first = q.run()
    assert "area_mm2" in agreement.x.choices  # empty: picked as inserted, before it had a table
    q.image.value = b
    q.run()
    assert measure.lesions.value is viewer.layers["lesions [followup]"]
    q.image.value = a
    again = q.run()  # the follow-up's table stayed in view, and was exported as the baseline's
    assert measure.lesions.value is viewer.layers["lesions"] and agreement.layer.value is viewer.layers["lesions"]
    assert np.isclose(measure.frame()["area_mm2"].sum(), again.table["area_mm2"].sum())
    assert np.isclose(again.table["area_mm2"].sum(), first.table["area_mm2"].sum())
    written = measure.export(tmp_path / "baseline.csv")
    import pandas as pd

    assert set(pd.read_csv(written)["image"]) == {"baseline"}


def _erase_bone_beside_a_deposit(bone_layer, phantom):
    """Erase the bone around the phantom's first deposit against it (as a reader corrects it)."""
    from scipy import ndimage as ndi

    touching = phantom.lesion_sites.index("touching_bone") + 1
    near = ndi.binary_dilation(phantom.lesion_labels == touching, iterations=4) & (np.asarray(bone_layer.data) > 0)
    bone_layer.data_setitem(np.nonzero(near), 0)


def test_a_duplicated_scan_renamed_takes_nothing_of_the_original(scans):
    # napari copies a layer's metadata to its duplicate: the duplicate's rename took the
    # original's corrected bone and seeds along with it.
    from napari.layers._layer_actions import _duplicate_layer

    viewer, a, _, p, _, _ = scans
    q = _dock(viewer, QuantifyWidget(viewer), a)
    q.run()
    bone = viewer.layers["bone"]
    _erase_bone_beside_a_deposit(bone, p)
    corrected = np.asarray(bone.data).copy()
    viewer.layers.selection = {a}
    _duplicate_layer(viewer.layers)
    viewer.layers["baseline copy"].name = "baseline sharpened"
    assert {layer.metadata.get(SOURCE) for layer in viewer.layers if layer.metadata.get(SOURCE)} == {"baseline"}
    again = q.run()
    np.testing.assert_array_equal(again.bone_mask, corrected > 0)


def test_a_scan_renamed_while_no_widget_is_open_keeps_its_results(scans):
    viewer, a, _, p, _, _ = scans
    q = QuantifyWidget(viewer)
    dock = viewer.window.add_dock_widget(q, area="right")
    q.device.value, q.image.value = "cpu", a
    q.run()
    bone = viewer.layers["bone"]
    _erase_bone_beside_a_deposit(bone, p)
    viewer.window.remove_dock_widget(dock)
    a.name = "IM000001"
    again = _dock(viewer, QuantifyWidget(viewer), a).run()  # segmented again, beside the corrected bone
    np.testing.assert_array_equal(again.bone_mask, np.asarray(bone.data) > 0)
    assert "bone [IM000001]" not in viewer.layers


def test_a_deleted_scan_is_not_held_by_the_widgets(scans):
    import gc
    import weakref

    viewer, a, _, _, _, _ = scans
    widgets = [_dock(viewer, cls(viewer)) for cls in (QuantifyWidget, GrowWidget, MeasureWidget, SubtractWidget)]
    read = viewer.add_image(np.asarray(a.data).copy(), scale=a.scale, name="read and closed")
    widgets[0].image.value = read
    widgets[0].run()
    gone = weakref.ref(read)
    for layer in [layer for layer in viewer.layers if layer.metadata.get(SOURCE) == read.name] + [read]:
        viewer.layers.remove(layer)
    del read, layer
    for widget in widgets:
        widget.reset_choices()
    gc.collect()
    assert gone() is None  # a lab reading scan after scan kept every one's pixels


def test_only_the_widgets_results_are_told_apart_by_a_scans_name(scans):
    viewer, a, b, _, _, _ = scans
    q = _dock(viewer, QuantifyWidget(viewer), a)
    q.run()
    # a bone mask the reader opened beside the widget's: napari names it 'bone [1]'; it is not the follow-up's
    mine = viewer.add_labels(np.zeros(b.data.shape, np.uint8), scale=b.scale, name="bone")
    assert mine.name == "bone [1]"
    q.image.value = b
    on_b = q.run()
    assert on_b.bone_mask.any() and viewer.layers["bone [followup]"].metadata[SOURCE] == "followup"
    # an image whose name holds ' (new)' finds its own results
    b.name = "followup (new)"
    assert q.image.value is b  # magicgui kept the choice by its text: renamed, the first image was picked
    bone_b = viewer.layers["bone [followup]"]
    bone_b.paint((0, 0), 1)  # corrected
    grow = _dock(viewer, GrowWidget(viewer), b)
    assert grow.bone.value is bone_b
    np.testing.assert_array_equal(q.run().bone_mask, np.asarray(bone_b.data) > 0)


def test_agreement_on_a_csv_keeps_its_result_while_seeds_are_clicked(scans, tmp_path):
    import pandas as pd

    viewer, a, _, _, seeds_a, _ = scans
    _segment(viewer, a)
    csv = tmp_path / "readers.csv"
    pd.DataFrame({"reader1_mm2": [1.0, 2.0, 3.5, 4.0, 6.0], "reader2_mm2": [1.1, 2.3, 3.1, 4.4, 5.8]}).to_csv(csv)
    agreement = _dock(viewer, AgreementWidget(viewer))
    agreement.csv.value = csv
    agreement.x.value, agreement.y.value = "reader1_mm2", "reader2_mm2"
    agreement.run()
    shown = agreement.result.value
    _click(_dock(viewer, GrowWidget(viewer), a).start_seeding(), a, seeds_a[:2])
    assert shown and agreement.result.value == shown


# The same bookkeeping with one scan open

def test_grow_grows_on_a_bone_corrected_before_it_was_opened_or_segmented_again(scans, qtbot):
    viewer, a, _, p, seeds_a, _ = scans
    q = _dock(viewer, QuantifyWidget(viewer), a)
    seeds = viewer.add_points(seeds_a, name="seeds", scale=a.scale)
    q.run()
    lesions, bone = viewer.layers["lesions"], viewer.layers["bone"]
    quantified = _areas(lesions)
    grow = _dock(viewer, GrowWidget(viewer), a)
    _erase_bone_beside_a_deposit(bone, p)  # before Add seeds: Grow follows no seeds yet
    qtbot.wait(50)
    grow.start_seeding()
    qtbot.wait(50)
    expected = _api(a, seeds_a, bone).table["area_mm2"]
    np.testing.assert_allclose(_areas(lesions), np.sort(expected[expected > 0]))  # Measure showed 13 for 27
    assert not np.allclose(_areas(lesions), quantified)
    _segment(viewer, a)  # Segment again writes the network's mask back into the bone layer
    qtbot.wait(50)
    np.testing.assert_allclose(_areas(lesions), quantified)
    assert len(seeds.data) == len(seeds_a)


def test_one_regrowth_per_click_and_none_for_quantifys_own_seeds(scans):
    viewer, a, _, _, seeds_a, _ = scans
    _segment(viewer, a)
    grow = _dock(viewer, GrowWidget(viewer), a)
    calls = []
    regrow = grow.regrow
    grow.regrow = lambda *args: calls.append(1) or regrow(*args)
    points = grow.start_seeding()
    _click(points, a, seeds_a[:1])
    assert len(calls) == 1  # napari tells of each click twice: before and after the point is added
    q = _dock(viewer, QuantifyWidget(viewer), a)
    q.use_seeds.value = False
    points.data = np.zeros((0, 2))  # an empty seeds layer: Quantify's proposal goes into it
    calls.clear()
    result = q.run()
    assert calls == [] and len(points.data) == (result.table["status"] == "ok").sum()


# From a third reader's run, on the fixes above

def test_a_bone_mask_of_the_readers_belongs_to_the_scan_it_is_first_used_for(scans):
    viewer, a, b, p, _, _ = scans
    mine = viewer.add_labels(p.bone_mask.astype(np.uint8), name="bone", scale=a.scale)  # the baseline's, opened
    q = _dock(viewer, QuantifyWidget(viewer), a)
    np.testing.assert_array_equal(q.run().bone_mask, p.bone_mask)
    assert mine.metadata[SOURCE] == "baseline"
    q.image.value = b
    on_b = q.run()  # was measured on the baseline's mask: 54 mm² for 31
    alone = quantify(CalcinosisImage(np.asarray(b.data), tuple(b.scale)))
    np.testing.assert_array_equal(on_b.bone_mask, alone.bone_mask)
    assert np.isclose(on_b.table["area_mm2"].sum(), alone.table["area_mm2"].sum())
    # picked by hand in Grow, it stays the baseline's when Grow goes to the follow-up
    grow = _dock(viewer, GrowWidget(viewer), a)
    grow.bone.value = mine
    grow.bone.native.activated.emit(grow.bone.native.currentIndex())
    grow.image.value = b
    assert grow.bone.value is viewer.layers["bone [followup]"]
    np.testing.assert_allclose(_areas(viewer.layers["lesions [followup]"]), np.sort(on_b.table["area_mm2"]))


def test_a_closed_scans_results_are_not_taken_by_the_next_scan_of_its_name(scans):
    viewer, a, b, p, seeds_a, _ = scans
    seeds = viewer.add_points(seeds_a, name="seeds", scale=a.scale)
    q = _dock(viewer, QuantifyWidget(viewer), a)
    q.run()
    _erase_bone_beside_a_deposit(viewer.layers["bone"], p)
    viewer.layers.remove(a)  # the reader closes the scan, not its layers
    viewer.layers.remove(b)
    other = viewer.add_image(np.asarray(b.data).copy(), scale=b.scale, name="baseline")  # the next patient's baseline.dcm
    q.reset_choices()
    q.image.value = other
    result = q.run()  # took patient 1's corrected bone and seeds: 101 mm² for 31
    alone = quantify(CalcinosisImage(np.asarray(other.data), tuple(other.scale)))
    np.testing.assert_array_equal(result.bone_mask, alone.bone_mask)
    assert "seeds proposed automatically" in q.status.value and len(seeds.data) == len(seeds_a)
    assert np.isclose(result.table["area_mm2"].sum(), alone.table["area_mm2"].sum())


def test_renaming_the_scan_grow_is_on_keeps_its_bone_and_its_layer_names(scans):
    viewer, _, b, _, _, seeds_b = scans
    _segment(viewer, b)
    grow = _dock(viewer, GrowWidget(viewer), b)
    sub = _dock(viewer, SubtractWidget(viewer), b)
    bone = viewer.layers["bone"]
    _click(grow.start_seeding(), b, seeds_b)
    lesions = viewer.layers["lesions"]
    b.name = "FU 2024-06"
    assert grow.bone.value is bone and sub.bone.value is bone  # emptied: Grow stopped regrowing
    seeds = viewer.layers["seeds"]
    seeds.data = seeds.data[:-1]
    assert len(lesions.features) == len(seeds_b) - 1
    q = _dock(viewer, QuantifyWidget(viewer), b)
    q.run()
    assert [layer.name for layer in viewer.layers if layer.name.startswith("bone")] == ["bone"]


def test_measure_follows_an_undone_lesion_paint(scans):
    viewer, a, _, _, _, _ = scans
    measure = _dock(viewer, MeasureWidget(viewer))
    _dock(viewer, QuantifyWidget(viewer), a).run()
    lesions = viewer.layers["lesions"]
    n = len(measure.frame())
    lesions.data_setitem(np.nonzero(np.asarray(lesions.data) == 1), 0)  # the reader erases lesion 1
    QApplication.processEvents()
    assert len(measure.frame()) == n - 1
    lesions.undo()
    QApplication.processEvents()
    assert len(measure.frame()) == n and measure.status.value.startswith(f"{n} lesion(s)")
