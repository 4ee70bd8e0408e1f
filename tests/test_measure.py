"""Tests of napari_calcinosis.measure on rasterised shapes of known geometry."""

import math

import numpy as np
import pandas as pd
import pytest
from skimage import draw

from napari_calcinosis._errors import CalcinosisError
from napari_calcinosis.measure import (
    LESION_COLUMNS,
    NEAR_RESOLUTION_PX,
    feret_axes_mm,
    measure_lesions,
    summarize,
)


def _rotated_rectangle_mask(length_px, width_px, angle_deg, shape=(120, 120)):
    """Rasterise a length x width rectangle rotated by angle_deg about the image centre."""
    angle = math.radians(angle_deg)
    along = np.array([math.cos(angle), math.sin(angle)])
    across = np.array([-math.sin(angle), math.cos(angle)])
    centre = np.array(shape, dtype=float) / 2
    corners = np.array(
        [
            centre + a * along * length_px / 2 + b * across * width_px / 2
            for a, b in [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        ]
    )
    mask = np.zeros(shape, dtype=bool)
    rr, cc = draw.polygon(corners[:, 0], corners[:, 1], shape)
    mask[rr, cc] = True
    return mask


# --- feret_axes_mm -----------------------------------------------------------


def test_empty_mask_has_zero_axes():
    assert feret_axes_mm(np.zeros((5, 5), bool), (1.0, 1.0)) == (0.0, 0.0)


def test_single_pixel_axes_are_its_diagonals():
    # documented convention: pixels are squares, axes measured on their corners
    mask = np.zeros((5, 5), bool)
    mask[2, 2] = True
    long_mm, short_mm = feret_axes_mm(mask, (0.5, 0.5))
    assert long_mm == pytest.approx(0.5 * math.sqrt(2))
    assert short_mm == pytest.approx(0.5 * math.sqrt(2))


def test_axis_aligned_bar_is_exactly_its_corner_rectangle():
    # 1 x 10 px bar: the corner hull is the 1 x 10 rectangle itself
    mask = np.zeros((5, 20), bool)
    mask[2, 3:13] = True
    long_mm, short_mm = feret_axes_mm(mask, (1.0, 1.0))
    diagonal = math.hypot(10, 1)
    assert long_mm == pytest.approx(diagonal)
    assert short_mm == pytest.approx(2 * 10 * 1 / diagonal)


def test_anisotropic_spacing_is_applied_before_the_geometry():
    # 20 x 20 px square at (0.2, 0.1) mm is a 4 x 2 mm rectangle
    mask = np.zeros((30, 30), bool)
    mask[5:25, 5:25] = True
    long_mm, short_mm = feret_axes_mm(mask, (0.2, 0.1))
    diagonal = math.hypot(4.0, 2.0)
    assert long_mm == pytest.approx(diagonal)
    assert short_mm == pytest.approx(2 * 4.0 * 2.0 / diagonal)
    # scaling the pixel-space axes afterwards would give a different, wrong answer
    long_px, short_px = feret_axes_mm(mask, (1.0, 1.0))
    assert short_mm != pytest.approx(short_px * 0.15, rel=0.05)


def test_disk_at_anisotropic_spacing():
    spacing = (0.2, 0.3)
    radius_px = 30
    mask = np.zeros((100, 100), bool)
    mask[draw.disk((50, 50), radius_px, shape=mask.shape)] = True
    long_mm, short_mm = feret_axes_mm(mask, spacing)
    pixel_diagonal_mm = math.hypot(*spacing)
    # in mm the disk is an ellipse with axes 2r*0.3 (cols) and 2r*0.2 (rows)
    assert long_mm == pytest.approx(2 * radius_px * 0.3, abs=pixel_diagonal_mm)
    # A digital disk has flat runs of ~15 px at its extremes, so the max Feret
    # chord runs corner-to-corner across them, tilted ~10 degrees; the width
    # perpendicular to that tilted chord is ~2 row pixels more than 2r.
    assert short_mm == pytest.approx(2 * radius_px * 0.2, abs=2 * pixel_diagonal_mm)
    assert short_mm < long_mm


@pytest.mark.parametrize("angle_deg", [0.0, 30.0, 90.0])
def test_rasterised_ellipse_axes(angle_deg):
    semi_long_px, semi_short_px = 45, 20
    mask = np.zeros((120, 120), bool)
    rr, cc = draw.ellipse(
        60, 60, semi_long_px, semi_short_px, shape=mask.shape, rotation=math.radians(angle_deg)
    )
    mask[rr, cc] = True
    long_mm, short_mm = feret_axes_mm(mask, (1.0, 1.0))
    assert long_mm == pytest.approx(2 * semi_long_px, abs=1.5)
    # the short axis is biased up: +1 px from the pixel corners, plus up to
    # ~1 px because the max Feret chord is tilted across the flat runs of
    # pixels at the ellipse's ends, and the width across a tilted chord is larger
    assert short_mm == pytest.approx(2 * semi_short_px, abs=2.0)


def test_rotated_rectangle_short_axis_is_width_across_the_diagonal():
    length_px, width_px = 40, 10
    mask = _rotated_rectangle_mask(length_px, width_px, 30)
    long_mm, short_mm = feret_axes_mm(mask, (1.0, 1.0))
    diagonal = math.hypot(length_px, width_px)
    # the max Feret direction is the diagonal, and the rectangle's extent
    # perpendicular to its diagonal is 2*w*l/diagonal (19.4 px), not w (10 px)
    assert long_mm == pytest.approx(diagonal, abs=1.5)
    assert short_mm == pytest.approx(2 * width_px * length_px / diagonal, abs=1.0)


def _brute_force_axes(mask, spacing):
    """Axes from all four corners of every pixel, with no hull: the reference."""
    rows, cols = np.nonzero(mask)
    offsets = np.array([(-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5)])
    corners = (np.column_stack([rows, cols])[:, None, :] + offsets).reshape(-1, 2)
    corners = corners * np.asarray(spacing)
    diff = corners[:, None, :] - corners[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    long_ = dist.max()
    best_short = 0.0
    for i, j in zip(*np.nonzero(dist >= long_ * (1 - 1e-9))):
        direction = diff[j, i] / dist[i, j]
        proj = corners @ np.array([-direction[1], direction[0]])
        best_short = max(best_short, proj.max() - proj.min())
    return long_, best_short


@pytest.mark.parametrize("seed", range(4))
def test_axes_match_brute_force_over_all_pixel_corners(seed):
    # random blobs (not convex, possibly disconnected) at anisotropic spacing
    rng = np.random.default_rng(seed)
    mask = rng.random((9, 12)) < 0.3
    mask[rng.integers(9), rng.integers(12)] = True
    spacing = (0.3, 0.7) if seed % 2 else (0.9, 0.25)
    assert feret_axes_mm(mask, spacing) == pytest.approx(_brute_force_axes(mask, spacing))


def test_non_2d_mask_is_rejected():
    with pytest.raises(CalcinosisError, match=r"shape \(2, 2, 2\); axes are measured on one 2-D slice"):
        feret_axes_mm(np.ones((2, 2, 2), bool), (1.0, 1.0))


@pytest.mark.parametrize("spacing", [(0.0, 1.0), (1.0, -0.1), (float("nan"), 1.0), (1.0,), None, True, 0.0])
def test_bad_spacing_is_a_user_error(spacing):
    with pytest.raises(CalcinosisError):
        feret_axes_mm(np.ones((2, 2), bool), spacing)


def test_one_number_is_square_pixels_as_elsewhere():
    square = np.zeros((9, 9), bool)
    square[2:6, 2:6] = True
    assert feret_axes_mm(square, 0.5) == feret_axes_mm(square, (0.5, 0.5))
    one, pair = measure_lesions(square.astype(np.int32), 0.5), measure_lesions(square.astype(np.int32), (0.5, 0.5))
    assert one["area_mm2"][0] == pair["area_mm2"][0] == 16 * 0.25


# --- measure_lesions ----------------------------------------------------------


def test_disk_area_and_centroid_at_anisotropic_spacing():
    spacing = (0.2, 0.3)
    labels = np.zeros((100, 120), np.int32)
    labels[draw.disk((40, 70), 25, shape=labels.shape)] = 3
    table = measure_lesions(labels, spacing)
    assert list(table.columns) == LESION_COLUMNS
    assert len(table) == 1
    row = table.iloc[0]
    n_px = int((labels == 3).sum())
    assert row.lesion_id == 3
    assert row.area_px == n_px
    assert row.area_mm2 == pytest.approx(n_px * 0.06)
    assert row.area_mm2 == pytest.approx(math.pi * 25**2 * 0.06, rel=0.02)
    assert (row.centroid_row, row.centroid_col) == pytest.approx((40.0, 70.0))
    assert (row.centroid_row_mm, row.centroid_col_mm) == pytest.approx((8.0, 21.0))
    assert row.long_axis_mm == pytest.approx(50 * 0.3, abs=math.hypot(*spacing))
    assert math.isnan(row.mean_value) and math.isnan(row.max_value)
    assert row.value_unit == "HU"
    assert row.status == "ok"
    assert math.isnan(row.seed_row) and math.isnan(row.seed_col)


def test_ellipse_area_approximates_true_ellipse():
    semi_long_px, semi_short_px = 60, 30
    spacing_mm = 0.1
    labels = np.zeros((150, 150), np.int32)
    rr, cc = draw.ellipse(75, 75, semi_long_px, semi_short_px, shape=labels.shape,
                          rotation=math.radians(20))
    labels[rr, cc] = 1
    row = measure_lesions(labels, (spacing_mm, spacing_mm)).iloc[0]
    true_area_mm2 = math.pi * semi_long_px * semi_short_px * spacing_mm**2
    assert row.long_axis_mm == pytest.approx(2 * semi_long_px * spacing_mm, abs=1.5 * spacing_mm)
    assert row.short_axis_mm == pytest.approx(2 * semi_short_px * spacing_mm, abs=1.5 * spacing_mm)
    assert row.ellipse_area_mm2 == pytest.approx(
        math.pi * row.long_axis_mm * row.short_axis_mm / 4
    )
    assert row.ellipse_area_mm2 == pytest.approx(true_area_mm2, rel=0.04)
    assert row.area_mm2 == pytest.approx(true_area_mm2, rel=0.02)


def test_near_resolution_is_a_width_in_pixels_of_the_coarser_side():
    # Disks 3, 5, 7 and 10 pixels across, and a bar 2 pixels wide of 60 pixels: a lesion is
    # flagged by its width (the short axis, across the long one) in pixels, not its pixel count.
    assert 4 < NEAR_RESOLUTION_PX < 5
    labels = np.zeros((80, 80), np.int32)
    for k, (r, c, radius) in enumerate([(10, 10, 1.5), (10, 30, 2.5), (30, 10, 3.5), (30, 30, 5)], 1):
        labels[draw.disk((r, c), radius)] = k
    labels[50:52, 10:40] = 5
    square = measure_lesions(labels, (0.25, 0.25))
    assert square["near_resolution"].dtype == bool
    assert square["near_resolution"].tolist() == [True, False, False, False, True]
    assert square["area_px"][4] > square["area_px"][2]  # the bar has more pixels than a disk that is not flagged
    # the same labels at coarser square pixels: as many pixels wide, flagged alike
    assert measure_lesions(labels, (0.5, 0.5))["near_resolution"].tolist() == [True, False, False, False, True]
    # pixels twice as long one way: widths are counted in the coarser pixels
    for spacing in [(0.5, 0.25), (0.25, 0.5)]:
        flagged = measure_lesions(labels, spacing)["near_resolution"].tolist()
        assert flagged == [True, True, True, False, True], spacing
    # a failed seed's row is not flagged
    seeded = measure_lesions(labels, (0.25, 0.25), lesion_ids=[0, 1], statuses=["on_bone", "ok"])
    assert seeded["near_resolution"].tolist() == [False, True]


def test_rows_sorted_by_label_with_mean_and_max_over_known_image():
    labels = np.zeros((20, 20), np.int32)
    labels[2:4, 2:4] = 7  # 4 px
    labels[10:13, 10:12] = 2  # 6 px
    image = np.arange(400, dtype=float).reshape(20, 20)
    table = measure_lesions(labels, (1.0, 1.0), image, value_unit="mg/cm3")
    assert table.lesion_id.tolist() == [2, 7]
    assert table.area_px.tolist() == [6, 4]
    expected_2 = image[10:13, 10:12]
    expected_7 = image[2:4, 2:4]
    assert table.mean_value.tolist() == pytest.approx([expected_2.mean(), expected_7.mean()])
    assert table.max_value.tolist() == pytest.approx([expected_2.max(), expected_7.max()])
    assert (table.value_unit == "mg/cm3").all()


def test_labels_far_larger_than_the_image_are_measured_as_they_are():
    # a label typed into napari's label box, 2**31 - 1, beside 7: no array 2**31 long
    big = 2**31 - 1
    labels = np.zeros((20, 20), np.int32)
    labels[2:4, 2:4] = 7  # 4 px
    labels[10:13, 10:12] = big  # 6 px
    image = np.arange(400, dtype=float).reshape(20, 20)
    table = measure_lesions(labels, (0.5, 0.5), image)
    assert table.lesion_id.tolist() == [7, big]
    assert table.area_mm2.tolist() == pytest.approx([1.0, 1.5])
    assert table.max_value.tolist() == pytest.approx([image[3, 3], image[12, 11]])
    assert table.centroid_row.tolist() == pytest.approx([2.5, 11.0])
    seeded = measure_lesions(labels, (0.5, 0.5), image, lesion_ids=[big, 0, 7, big])
    assert seeded.lesion_id.tolist() == [big, 0, 7, big]
    assert seeded.area_px.tolist() == [6, 0, 4, 6]
    with pytest.raises(CalcinosisError, match=r"lesion_ids \[8\] are not labels"):
        measure_lesions(labels, (0.5, 0.5), lesion_ids=[8])
    # and no background at all
    full = np.full((3, 3), big, np.int64)
    assert measure_lesions(full, (1.0, 1.0)).area_px.tolist() == [9]
    # uint64 beyond float's 53 bits stays exact
    huge = np.zeros((4, 4), np.uint64)
    huge[0, 0], huge[3, 3] = 2**53 + 1, 2**63 - 1
    assert measure_lesions(huge, (1.0, 1.0)).lesion_id.tolist() == [2**53 + 1, 2**63 - 1]
    neighbours = np.zeros((4, 4), np.uint64)
    neighbours[0, 0], neighbours[3, 2:4] = 2**60, 2**60 + 1  # 1 px and 2 px, one apart as floats
    seeded = measure_lesions(neighbours, (1.0, 1.0), lesion_ids=[2**60 + 1, 2**60])
    assert seeded.area_px.tolist() == [2, 1] and seeded.centroid_col.tolist() == [2.5, 0.0]
    huge[3, 3] = 2**64 - 1
    with pytest.raises(CalcinosisError, match=r"label values up to 2\*\*63 - 1"):
        measure_lesions(huge, (1.0, 1.0))


def test_statuses_follow_label_order_without_lesion_ids():
    labels = np.zeros((10, 10), np.int32)
    labels[1, 1] = 5
    labels[8, 8] = 1
    table = measure_lesions(labels, (1.0, 1.0), statuses=["first", "second"], seeds=[(8, 8), (1.2, 0.9)])
    assert table.lesion_id.tolist() == [1, 5]
    assert table.status.tolist() == ["first", "second"]
    assert table.seed_row.tolist() == [8.0, 1.2]
    assert table.seed_col.tolist() == [8.0, 0.9]


def test_empty_label_image_gives_empty_table_with_columns():
    table = measure_lesions(np.zeros((50, 50), np.int32), (0.5, 0.5), np.zeros((50, 50)))
    assert table.empty
    assert list(table.columns) == LESION_COLUMNS
    assert summarize(table) == {"total_area_mm2": 0.0, "n_lesions": 0, "n_failed_seeds": 0}


def test_seeded_mode_failed_and_duplicate_seeds():
    labels = np.zeros((40, 40), np.int32)
    labels[5:10, 5:15] = 1  # 50 px
    labels[20:30, 20:30] = 2  # 100 px
    image = np.full(labels.shape, 100.0)
    image[20:30, 20:30] = 300.0
    lesion_ids = [2, 0, 1, 2]
    seeds = [(25, 25), (0.5, 39.5), (7, 9), (22.5, 28)]
    statuses = ["ok", "on_bone", "ok", "duplicate_seed"]
    table = measure_lesions(labels, (0.5, 0.5), image, seeds=seeds, statuses=statuses,
                            lesion_ids=lesion_ids)

    assert table.lesion_id.tolist() == lesion_ids  # seed order kept, not sorted
    assert table.status.tolist() == statuses
    assert table.seed_row.tolist() == [25.0, 0.5, 7.0, 22.5]
    assert table.seed_col.tolist() == [25.0, 39.5, 9.0, 28.0]

    failed = table.iloc[1]
    assert failed.area_px == 0 and failed.area_mm2 == 0.0
    assert failed.long_axis_mm == 0.0 and failed.short_axis_mm == 0.0
    assert failed.ellipse_area_mm2 == 0.0
    # the failed seed must not pick up the background's statistics
    for column in ["mean_value", "max_value", "centroid_row", "centroid_col",
                   "centroid_row_mm", "centroid_col_mm"]:
        assert math.isnan(failed[column]), column

    first, duplicate = table.iloc[0], table.iloc[3]
    measured = [c for c in LESION_COLUMNS if c not in ("seed_row", "seed_col", "status")]
    pd.testing.assert_series_equal(first[measured], duplicate[measured], check_names=False)
    assert first.area_mm2 == pytest.approx(100 * 0.25)
    assert first.mean_value == pytest.approx(300.0)
    assert table.iloc[2].mean_value == pytest.approx(100.0)

    summary = summarize(table)
    assert summary["n_lesions"] == 2
    assert summary["n_failed_seeds"] == 1
    # lesion 2 is pointed at twice but counted once: 25 + 12.5 mm^2
    assert summary["total_area_mm2"] == pytest.approx(37.5)


def test_seeded_mode_missing_seeds_and_default_statuses():
    labels = np.zeros((10, 10), np.int32)
    labels[2:4, 2:4] = 1
    table = measure_lesions(labels, (1.0, 1.0), seeds=[None, (3, 3)], lesion_ids=[0, 1])
    assert math.isnan(table.seed_row.iloc[0]) and math.isnan(table.seed_col.iloc[0])
    assert table.status.tolist() == ["failed", "ok"]


def test_all_seeds_failed_still_gives_rows():
    table = measure_lesions(np.zeros((10, 10), np.int32), (1.0, 1.0), seeds=[(20, 20)],
                            statuses=["outside_image"], lesion_ids=[0])
    assert table.lesion_id.tolist() == [0]
    assert table.status.tolist() == ["outside_image"]
    assert summarize(table) == {"total_area_mm2": 0.0, "n_lesions": 0, "n_failed_seeds": 1}


def test_inconsistent_inputs_are_rejected():
    labels = np.zeros((10, 10), np.int32)
    labels[2:4, 2:4] = 1
    # every one a CalcinosisError (what the CLI and the widgets print in one line), not a ValueError
    cases = [
        (dict(lesion_ids=[3]), r"lesion_ids \[3\] are not labels in lesion_labels"),
        (dict(lesion_ids=[-1]), r"lesion_ids must be 0 \(a failed seed\) or a label; got \[-1\]"),
        (dict(lesion_ids=["a"]), "lesion_ids must be whole numbers"),
        (dict(statuses=["ok", "ok"], lesion_ids=[1]), "got 2 statuses for 1 table rows"),
        (dict(seeds=[(1, 1), (2, 2)]), "got 2 seeds for 1 table rows"),
        (dict(seeds=[(1, 1, 1)]), r"seed 0 must be two numbers \(row, col\) in pixels"),
        (dict(seeds=[("a", "b")]), "seed 0 must be two numbers"),
        (dict(image=np.zeros((5, 5))), r"intensity image has shape \(5, 5\) but the lesion labels have shape"),
        (dict(image=np.full((10, 10), "a")), "intensity image is not an array of numbers"),
    ]
    for kwargs, message in cases:
        with pytest.raises(CalcinosisError, match=message):
            measure_lesions(labels, (1.0, 1.0), **kwargs)
    for bad_labels, message in [
        (labels.astype(float), "must be an integer label image .* got float64 values"),
        (-labels, r"negative values \(down to -1\)"),
        (labels[None], r"shape \(1, 10, 10\); lesions are measured on one 2-D slice"),
        ([[1, 2], [1]], "their rows have different lengths"),
    ]:
        with pytest.raises(CalcinosisError, match=message):
            measure_lesions(bad_labels, (1.0, 1.0))
    assert measure_lesions(labels, (1.0, 1.0), seeds=[None]).seed_row.isna().all()


def test_many_lesions_on_a_large_image():
    rng = np.random.default_rng(0)
    labels = np.zeros((1000, 1000), np.int32)
    for label in range(1, 51):
        centre = rng.uniform(30, 970, size=2)
        labels[draw.disk(centre, rng.uniform(3, 25), shape=labels.shape)] = label
    image = rng.normal(size=labels.shape)
    n_present = len(np.unique(labels)) - 1
    table = measure_lesions(labels, (0.1, 0.1), image)
    assert len(table) == n_present
    assert table.area_px.sum() == (labels > 0).sum()
    assert np.allclose(table.area_mm2, table.area_px * 0.01)


def test_summarize_names_what_it_needs_and_leaves_out_what_automatic_mode_left_out():
    with pytest.raises(CalcinosisError, match="summarize needs a lesion table.*lacks lesion_id"):
        summarize(pd.DataFrame({"area_mm2": [1.0]}))
    table = pd.DataFrame({"lesion_id": [1, 0, 0, 0], "area_mm2": [2.0, 0.0, 0.0, 0.0],
                          "status": ["ok", "outside_finger", "vessel_like", "no_deposit"]})
    assert summarize(table) == {"total_area_mm2": 2.0, "n_lesions": 1, "n_failed_seeds": 1}


def test_summarize_counts_lesion_1_of_each_image_of_a_batchs_table():
    # quantify --out's table: lesion 1 of image A and lesion 1 of image B were counted once
    table = pd.DataFrame({"image": ["a.dcm", "a.dcm", "a.dcm", "b.dcm", "b.dcm"], "lesion_id": [1, 1, 2, 1, 2],
                          "area_mm2": [2.0, 2.0, 3.0, 5.0, 7.0],
                          "status": ["ok", "duplicate_seed", "ok", "ok", "ok"]})
    assert summarize(table) == {"total_area_mm2": 17.0, "n_lesions": 4, "n_failed_seeds": 0}
    # two widget exports of images made in napari (no file: path empty) put together
    assert summarize(table.assign(path="")) == {"total_area_mm2": 17.0, "n_lesions": 4, "n_failed_seeds": 0}


def test_two_images_tables_stacked_without_telling_them_apart_are_refused_not_half_counted():
    # two scans quantified at the console (both named "image") and stacked: lesion 1 of the
    # follow-up was taken for a second seed on lesion 1 of the baseline and left out of the total
    from napari_calcinosis import CalcinosisImage, quantify
    from napari_calcinosis.phantom import make_phantom

    tables = []
    for seed in (15, 16):
        ph = make_phantom(seed, max_size_px=300)
        tables.append(quantify(CalcinosisImage(ph.image_hu, ph.spacing_mm), ph.seeds, bone_mask=ph.bone_mask).table)
    assert set(tables[0]["image"]) == set(tables[1]["image"]) == {"image"}
    both = pd.concat(tables, ignore_index=True)
    with pytest.raises(CalcinosisError, match=r"stand for different lesions in one table: lesion 1 of image 'image' "
                                              r"reads .* mm². These look like the tables of two images stacked"):
        summarize(both)
    # told apart, each image's lesions count: the two totals added
    told = pd.concat([t.assign(path=f"scan{k}.dcm") for k, t in enumerate(tables)], ignore_index=True)
    apart = [summarize(t) for t in tables]
    assert summarize(told)["total_area_mm2"] == pytest.approx(sum(a["total_area_mm2"] for a in apart))
    assert summarize(told)["n_lesions"] == sum(a["n_lesions"] for a in apart) > 2
    # tables without an image column (measure_lesions'), stacked: the same word, not an IndexError
    bare = pd.concat([t.drop(columns=["image"]) for t in tables], ignore_index=True)
    with pytest.raises(CalcinosisError, match=r"lesion 1 of the table reads .* These look like the tables of two"):
        summarize(bare)
    # a second seed on one deposit (its area and centroid repeated) is still one lesion
    twice = pd.concat([tables[0], tables[0].iloc[[0]].assign(status="duplicate_seed")], ignore_index=True)
    assert summarize(twice) == apart[0]

def test_a_lesion_running_on_along_a_thin_line_is_told_from_plaques_and_ellipses():
    from napari_calcinosis.measure import thin_tails

    spacing = (0.2, 0.2)
    rows, cols = np.mgrid[:150, :200] * 0.2
    disc = (rows - 15) ** 2 + (cols - 10) ** 2 <= 2.0**2  # a 4 mm deposit
    line = (np.abs(rows - 15) <= 0.5) & (cols >= 10) & (cols < 30)  # a 1 mm artery, 18 mm past the disc
    labels = (disc | line).astype(np.int32)
    (length_mm, area_mm2), = thin_tails(labels, spacing).values()
    assert length_mm == pytest.approx(30 - 12, abs=1.0)  # end to end, from the grown-back body
    beyond = line & ~((rows - 15) ** 2 + (cols - 10) ** 2 <= 2.75**2)  # the line past the grown-back body
    assert area_mm2 == pytest.approx(beyond.sum() * 0.04, rel=0.15)
    # a plaque all thin (no body), an ellipse, a disc with a short spur: no line to tell of
    assert thin_tails(line.astype(np.int32), spacing) == {}
    ellipse = ((rows - 15) / 3.0) ** 2 + ((cols - 20) / 8.0) ** 2 <= 1
    assert thin_tails(ellipse.astype(np.int32), spacing) == {}
    spur = disc | (line & (cols < 15))
    assert thin_tails(spur.astype(np.int32), spacing) == {}
    # at anisotropic pixels the same shapes, the same answer
    coarse = np.repeat(labels, 2, axis=1)[:, ::4]  # 0.2 x 0.4 mm
    (length_mm, _), = thin_tails(coarse, (0.2, 0.4)).values()
    assert length_mm == pytest.approx(18, abs=1.5)

def test_a_true_false_mask_of_several_pieces_or_a_pixel_size_in_um_is_refused():
    # A bool mask of two deposits was measured as one lesion, its long axis across both; 250 for
    # 0.25 mm gave areas a million times too large.
    mask = np.zeros((20, 20), bool)
    mask[2:5, 2:5] = mask[12:15, 12:15] = True
    with pytest.raises(CalcinosisError, match=r"a True/False mask of 2 separate pieces, which would be measured as one "
                                              r"lesion .*scipy.ndimage.label\(mask\)\[0\]"):
        measure_lesions(mask, 0.25)
    mask[12:15, 12:15] = False
    mask[5, 5] = True  # one piece, touching by a corner: one lesion
    assert measure_lesions(mask, 0.25)["area_px"].tolist() == [10]
    with pytest.raises(CalcinosisError, match="a pixel spacing of 250 mm is not a plausible pixel size: at most 5 mm"):
        measure_lesions(mask.astype(np.uint8), 250)
    from napari_calcinosis import subtract_bone

    with pytest.raises(CalcinosisError, match="a pixel spacing of 0.25 x 250 mm is not a plausible pixel size"):
        subtract_bone(np.zeros((20, 20)), mask, (0.25, 250))


def test_float_labels_point_to_numbering_the_pieces():
    with pytest.raises(CalcinosisError, match=r"scipy.ndimage.label\(mask\)\[0\]"):
        measure_lesions(np.ones((4, 4), np.float32), (0.25, 0.25))
