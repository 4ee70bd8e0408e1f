"""The quantify command on batches as scanners and labs hand them over, in process (cli.main)."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from napari_calcinosis import cli, read_image
from napari_calcinosis.io import write_windowed_png


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms")
    assert cli.main(["sample", "--out", str(out), "-n", "3", "--seed", "5"]) == 0
    return out


def test_a_folder_takes_dicom_files_named_by_uid_and_says_what_it_skipped(phantoms, tmp_path, capsys):
    folder = tmp_path / "export"
    folder.mkdir()
    names = ["1.2.840.113619.2.55.3.604688119", "IM000001", "p7.DCM"]
    for name, source in zip(names, sorted(phantoms.glob("*.dcm"))):
        shutil.copy(source, folder / name)
    (folder / "notes.txt").write_text("scanned 2026-11-02\n")
    out = tmp_path / "r.csv"
    assert cli.main(["quantify", str(folder), "--out", str(out), "--device", "cpu"]) == 0
    assert set(pd.read_csv(out)["image"]) == set(names)
    assert "skipped 1 file(s) that are not DICOM, PNG, JPEG or TIFF images: notes.txt" in capsys.readouterr().err


def test_images_of_one_name_in_two_folders_are_told_apart(phantoms, tmp_path, capsys):
    # Scanners name every patient's files alike (IM0001.dcm): the rows say which is which, and a
    # seed keyed by the shared name is refused rather than given to both.
    first, second = sorted(phantoms.glob("*.dcm"))[:2]
    for folder, source in (("patient1", first), ("patient2", second)):
        (tmp_path / folder).mkdir()
        shutil.copy(source, tmp_path / folder / "IM0001.dcm")
    paths = [str(tmp_path / "patient1" / "IM0001.dcm"), str(tmp_path / "patient2" / "IM0001.dcm")]
    out = tmp_path / "r.csv"
    assert cli.main(["quantify", *paths, "--out", str(out), "--device", "cpu"]) == 0
    assert set(pd.read_csv(out)["image"]) == set(paths)
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("image,row,col\nIM0001.dcm,40,80\n")
    assert cli.main(["quantify", *paths, "--seeds", str(seeds), "--out", str(tmp_path / "s.csv"),
                     "--device", "cpu"]) == 2
    assert "gives seeds for 'IM0001.dcm', the name of 2 of the images" in capsys.readouterr().err
    seeds.write_text(f"image,row,col\n{paths[1]},40,80\n")  # the path as given is one image
    assert cli.main(["quantify", *paths, "--seeds", str(seeds), "--out", str(tmp_path / "s.csv"),
                     "--device", "cpu"]) == 0


def test_ctrl_c_keeps_the_images_already_measured(phantoms, tmp_path, monkeypatch, capsys):
    import napari_calcinosis.pipeline as pipeline

    real, calls = pipeline.quantify, []

    def interrupted_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "quantify", interrupted_on_the_third)
    out = tmp_path / "r.csv"
    assert cli.main(["quantify", *map(str, sorted(phantoms.glob("*.dcm"))), "--out", str(out), "--device", "cpu"]) == 130
    assert not out.exists()  # the output's name never holds a partial batch
    partial = pd.read_csv(tmp_path / "r.partial.csv")
    assert sorted(set(partial["image"])) == [p.name for p in sorted(phantoms.glob("*.dcm"))[:2]]
    assert "interrupted after 2 of 3 image(s)" in capsys.readouterr().err


def test_a_dicoms_rows_say_no_export_window_and_resume_keeps_them_under_another(phantoms, tmp_path, monkeypatch, capsys):
    # A DICOM is read with its own spacing and HU: its rows must not say the export's pixel size
    # and window a mixed run was given (a reader took them for the DICOM's display window), and
    # resuming with another export window keeps them, while an export's rows are refused.
    import napari_calcinosis.pipeline as pipeline

    dicom = sorted(phantoms.glob("*.dcm"))[0]
    image = read_image(dicom)
    png = tmp_path / "export.png"
    write_windowed_png(png, image.pixels_hu)
    shared = "threshold_hu=200; margin_mm=per image; connectivity=4; min_area_mm2=0.3; tta=no"
    out = tmp_path / "r.csv"
    args = ["quantify", str(dicom), str(png), "--pixel-size", f"{image.spacing_mm[0]:g}", "--out", str(out),
            "--device", "cpu"]
    assert cli.main(args) == 0
    settings = pd.read_csv(out).groupby("image")["settings"].unique()
    assert settings[dicom.name].tolist() == [shared]
    assert settings[png.name].tolist() == [f"{shared}; export_pixel_size_mm={image.spacing_mm[0]:g}; "
                                           "export_window_hu=W1500/L450"]
    real, calls = pipeline.quantify, []

    def interrupted_on_the_second(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(pipeline, "quantify", interrupted_on_the_second)
    assert cli.main([*args, "--overwrite"]) == 130
    monkeypatch.setattr(pipeline, "quantify", real)
    capsys.readouterr()
    assert cli.main([*args, "--overwrite", "--resume", "--window-level", "500"]) == 0
    assert "resuming: 1 of 2 image(s) measured before" in capsys.readouterr().err  # the DICOM's rows kept
    settings = pd.read_csv(out).groupby("image")["settings"].unique()
    assert settings[dicom.name].tolist() == [shared] and settings[png.name][0].endswith("export_window_hu=W1500/L500")
    # an export's rows measured through another window are refused
    pd.read_csv(out).to_csv(tmp_path / "r.partial.csv", index=False)
    assert cli.main([*args, "--overwrite", "--resume"]) == 2
    assert ("were measured with export_window_hu=W1500/L500, this run with export_window_hu=W1500/L450: give the same "
            "settings") in capsys.readouterr().err


def test_the_export_window_is_an_option(phantoms, tmp_path):
    # An export made at another window reads as HU again only through that window.
    dicom = sorted(phantoms.glob("*.dcm"))[0]
    image = read_image(dicom)
    png = tmp_path / "w2500.png"
    write_windowed_png(png, image.pixels_hu, window_level_hu=500, window_width_hu=2500)
    seeds = pd.read_csv(phantoms / "seeds.csv")
    seeds = seeds[seeds["image"].isin([dicom.name, dicom.stem])].assign(image="w2500.png")
    assert len(seeds) >= 2
    seeds.to_csv(tmp_path / "seeds.csv", index=False)
    areas = {}
    for name, window in (("dicom", None), ("default", []), ("given", ["--window-level", "500", "--window-width", "2500"])):
        out = tmp_path / f"{name}.csv"
        source = [str(dicom), "--seeds", str(phantoms / "seeds.csv")] if window is None else [
            str(png), "--seeds", str(tmp_path / "seeds.csv"), "--pixel-size", str(image.spacing_mm[0]), *window]
        assert cli.main(["quantify", *source, "--out", str(out), "--device", "cpu"]) == 0
        areas[name] = pd.read_csv(out)["area_mm2"].to_numpy()
    assert np.allclose(areas["given"], areas["dicom"], rtol=0.1, atol=0.3)
    assert not np.allclose(areas["default"], areas["dicom"], rtol=0.1, atol=0.3)


def test_values_that_are_not_hu_are_warned_in_the_table(phantoms, tmp_path, capsys, bundled_model_label):
    # A raw 16-bit export (HU + 1024) read as a windowed export has no calcium at all: measured,
    # but each row of that image says why its numbers are doubtful.
    image = read_image(sorted(phantoms.glob("*.dcm"))[0])
    raw = tmp_path / "raw.png"
    Image.fromarray((image.pixels_hu + 1024).round().astype(np.uint16)).save(raw)
    out = tmp_path / "r.csv"
    assert cli.main(["quantify", str(raw), str(sorted(phantoms.glob("*.dcm"))[0]), "--pixel-size",
                     str(image.spacing_mm[0]), "--out", str(out), "--device", "cpu"]) == 0
    table = pd.read_csv(out)
    warned = table["warnings"].fillna("")
    raw_rows = table["image"] == "raw.png"
    assert raw_rows.any() and warned[raw_rows].str.contains("nothing is as bright as calcium").all()
    assert (~raw_rows).any() and (warned[~raw_rows] == "").all()
    assert (table["model"] == bundled_model_label).all()  # every row names the network that found the bone
    err = capsys.readouterr().err
    assert "warning: raw.png: nothing is as bright as calcium" in err and "1 of 2 image(s) have warnings" in err


def test_a_float_tiff_of_several_channels_is_refused_not_blended(tmp_path, capsys):
    stack = np.stack([np.full((64, 64), v, np.float32) for v in (0, 500, 1000)])
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    assert cli.main(["quantify", str(tmp_path / "stack.tif"), "--pixel-size", "0.25", "--device", "cpu"]) == 1
    assert "holds 3 channels of float32 numbers, not one slice" in capsys.readouterr().err


def test_an_output_that_is_a_folder_is_refused_up_front(phantoms, tmp_path, capsys):
    dicom = str(sorted(phantoms.glob("*.dcm"))[0])
    assert cli.main(["quantify", dicom, "--out", str(tmp_path), "--overwrite", "--device", "cpu"]) == 2
    assert f"--out {tmp_path} is a folder: give the CSV file to write" in capsys.readouterr().err


def test_a_dicom_and_its_export_side_by_side_share_their_seeds(tmp_path, capsys):
    # What `sample` writes: phantom_000000.dcm and .png in one folder, seeds keyed by the stem.
    folder = tmp_path / "ph"
    assert cli.main(["sample", "--out", str(folder), "-n", "2", "--seed", "40"]) == 0
    out = tmp_path / "r.csv"
    assert cli.main(["quantify", str(folder), "--seeds", str(folder / "seeds.csv"), "--pixel-size", "0.25",
                     "--out", str(out), "--device", "cpu"]) == 0
    table = pd.read_csv(out)
    assert len(set(table["image"])) == 4 and (table["status"] == "ok").mean() > 0.7


def test_an_export_read_through_its_own_narrow_window_is_not_called_non_hu(phantoms, tmp_path):
    from napari_calcinosis.io import image_caveats

    image = read_image(sorted(phantoms.glob("*.dcm"))[0])
    for level, width in ((400, 1000), (300, 800), (450, 1500)):
        png = tmp_path / f"w{level}.png"
        write_windowed_png(png, image.pixels_hu, window_level_hu=level, window_width_hu=width)
        again = read_image(png, pixel_size_mm=image.spacing_mm[0], window_level_hu=level, window_width_hu=width)
        assert image_caveats(again) == [], (level, width)


def test_settings_are_checked_before_the_first_image(phantoms, capsys, monkeypatch):
    import napari_calcinosis.segment as segment

    monkeypatch.setattr(segment, "load_model", lambda *a, **k: pytest.fail("no image should be started"))
    for option, value, words in (("--threshold-hu", "nan", "--threshold-hu must be a number, got nan"),
                                 ("--margin-mm", "inf", "--margin-mm must be a number, got inf"),
                                 ("--min-area-mm2", "-1", "--min-area-mm2 must be at least 0, got -1")):
        assert cli.main(["quantify", str(phantoms), option, value, "--device", "cpu"]) == 2
        assert words in capsys.readouterr().err


def test_a_folder_takes_dicom_without_its_marker_and_leaves_out_a_dicomdir(phantoms, tmp_path):
    import pydicom

    folder = tmp_path / "old"
    folder.mkdir()
    whole = sorted(phantoms.glob("*.dcm"))[0].read_bytes()
    (folder / "IM000002").write_bytes(whole[132:])  # no preamble, no DICM marker, as older scanners wrote
    shutil.copy(pydicom.data.get_testdata_file("DICOMDIR"), folder / "DICOMDIR")
    assert cli._expand_images([folder]) == [folder / "IM000002"]


def test_train_refuses_a_negative_seed_and_growth_a_spacing_that_is_text(tmp_path, capsys):
    from napari_calcinosis import CalcinosisError, grow_lesions

    assert cli.main(["train", "--phantoms", "4", "--seed", "-1", "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "--seed must be 0 or more (got -1)" in capsys.readouterr().err
    with pytest.raises(CalcinosisError, match="pixel spacing must be one number or a \\(row, col\\) pair in mm, got 'x'"):
        grow_lesions(np.zeros((64, 64), np.float32), np.zeros((64, 64), bool), "x", None)


def test_train_refuses_folders_and_phantoms_together(tmp_path, capsys):
    assert cli.main(["train", "--phantoms", "4", "--images", str(tmp_path), "--masks", str(tmp_path),
                     "--out", str(tmp_path / "m")]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize("out", [".", "", "..", "models", "models/", "new/"])
def test_train_refuses_an_output_that_is_a_folder_before_any_work(tmp_path, capsys, monkeypatch, out):
    # "." crashed with a traceback; ".." trained, then failed to save over the folder (the model
    # lost); an existing folder "models" wrote models.safetensors beside it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert cli.main(["train", "--phantoms", "4", "--out", out]) == 2
    assert f"--out {out!r} is a folder: give the model's file name, e.g. " in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"] and not any((tmp_path / "models").iterdir())


def test_train_refuses_a_stop_dice_that_is_no_dice(tmp_path, capsys):
    assert cli.main(["train", "--phantoms", "4", "--stop-at-dice", "98", "--out", str(tmp_path / "m")]) == 2
    assert "--stop-at-dice is a Dice between 0 and 1, e.g. 0.98 (got 98)" in capsys.readouterr().err


def test_every_row_names_the_model_given(phantoms, tmp_path, bundled_model_label):
    import shutil

    from napari_calcinosis.segment import bundled_model_path

    mine = tmp_path / "lab_v2.safetensors"
    shutil.copy(bundled_model_path(), mine)
    shutil.copy(bundled_model_path().with_suffix(".json"), mine.with_suffix(".json"))
    out = tmp_path / "r.csv"
    assert cli.main(["quantify", str(sorted(phantoms.glob("*.dcm"))[0]), "--model", str(mine), "--out", str(out),
                     "--device", "cpu"]) == 0
    table = pd.read_csv(out)
    import hashlib

    from napari_calcinosis import __version__

    assert len(table) and (table["model"] == f"{mine} (sha256 {hashlib.sha256(mine.read_bytes()).hexdigest()[:12]})").all()
    assert list(table.columns)[-3:] == ["model", "settings", "software"]
    assert (table["software"] == f"napari-calcinosis {__version__}").all()
    assert (table["settings"] == "threshold_hu=200; margin_mm=per image; connectivity=4; min_area_mm2=0.3; tta=no").all()
    assert cli.main(["quantify", str(sorted(phantoms.glob("*.dcm"))[0]), "--model", "bundled", "--out", str(out),
                     "--device", "cpu", "--overwrite", "--threshold-hu", "250", "--margin-mm", "0.5"]) == 0
    table = pd.read_csv(out)
    assert (table["model"] == bundled_model_label).all()
    assert (table["settings"].str.startswith("threshold_hu=250; margin_mm=0.5; ")).all()
    assert cli.main(["quantify", str(sorted(phantoms.glob("*.dcm"))[0]), "--model", ".", "--device", "cpu"]) == 2


def test_a_model_whose_card_says_it_segments_badly_is_said_once_and_on_every_row(phantoms, tmp_path, capsys):
    # a fine-tune on the wrong masks: 'train' said so once; every result it gives says it too
    import json
    import shutil

    from napari_calcinosis.segment import bundled_model_path

    poor = tmp_path / "poor.safetensors"
    shutil.copy(bundled_model_path(), poor)
    card = json.loads(bundled_model_path().with_suffix(".json").read_text())
    card["validation"]["dice_mean"] = 0.74
    poor.with_suffix(".json").write_text(json.dumps(card))
    out = tmp_path / "r.csv"
    images = [str(p) for p in sorted(phantoms.glob("*.dcm"))[:2]]
    assert cli.main(["quantify", *images, "--model", str(poor), "--out", str(out), "--device", "cpu"]) == 0
    said = "the model's own validation Dice is 0.74 (its card), under 0.8: its bone masks, and so the deposits"
    assert capsys.readouterr().err.count(said) == 1
    table = pd.read_csv(out)
    assert table["image"].nunique() == 2 and table["warnings"].str.contains(said, regex=False).all()


def test_summary_gives_each_images_total_area_and_none_for_one_that_failed(phantoms, tmp_path, capsys):
    # A trial's endpoint is the burden per image: the sum of its deposits, each once.
    dicoms = sorted(phantoms.glob("*.dcm"))
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(dicoms[0].read_bytes()[:3000])
    seeds = pd.read_csv(phantoms / "seeds.csv")
    first = seeds[seeds["image"] == dicoms[0].stem]
    # a second click on the first deposit (duplicate_seed, measured once) and one on the air (no_deposit)
    extra = pd.DataFrame({"image": [dicoms[0].stem] * 2 + ["broken"] * 2, "row": [first["row"].iloc[0], 0, 5, 6],
                          "col": [first["col"].iloc[0], 0, 5, 6]})
    seeds = pd.concat([seeds, extra], ignore_index=True)
    # a column of one value per image comes along to the summary; one per seed does not
    seeds["patient"] = "P-" + seeds["image"]
    seeds["reader_mm2"] = np.arange(len(seeds), dtype=float)
    seeds.to_csv(tmp_path / "seeds.csv", index=False)
    out, summary = tmp_path / "lesions.csv", tmp_path / "per_image.csv"
    code = cli.main(["quantify", *map(str, dicoms), str(broken), "--seeds", str(tmp_path / "seeds.csv"),
                     "--out", str(out), "--summary", str(summary), "--device", "cpu"])
    assert code == 1
    lesions, per_image = pd.read_csv(out), pd.read_csv(summary, keep_default_na=False, na_values=[""])
    assert list(per_image.columns) == cli.SUMMARY_COLUMNS + ["patient"]
    # the run's last word counts the lesions to read as uncertain (a 0.45 mm² deposit here)
    near = int(((lesions["status"] == "ok") & lesions["near_resolution"]).sum())
    err = capsys.readouterr().err
    assert near >= 1 and f"lesions measured, {near} of them under 4.5 pixels wide" in err
    # the column left out is said, not dropped without a word (a reader's total on an image's first line, say)
    assert "note: --summary leaves out the seeds file's column(s) reader_mm2: they differ between an image's seeds" in err
    assert per_image["patient"].tolist() == [f"P-{p.stem}" for p in dicoms] + ["P-broken"]
    assert per_image["image"].tolist() == [p.name for p in dicoms] + ["broken.dcm"]
    for name, row in zip(per_image["image"], per_image.itertuples()):
        rows = lesions[(lesions["image"] == name) & (lesions["status"] == "ok")]
        if name == "broken.dcm":
            # unknown, not 0: no count, no total, and both its seeds not measured
            assert pd.isna(row.total_area_mm2) and pd.isna(row.lesions) and "truncated" in row.error
            assert row.seeds_not_measured == 2 and pd.isna(row.lesions_near_resolution)
            continue
        assert row.lesions == rows["lesion_id"].nunique() > 0 and pd.isna(row.error)
        once = rows.drop_duplicates("lesion_id")
        assert row.lesions_near_resolution == once["near_resolution"].sum()
        # flagged as measure_lesions flags: under 4.5 pixels wide
        spacing_mm = read_image(phantoms / name).spacing_mm[0]
        assert (once["near_resolution"] == (once["short_axis_mm"] < 4.5 * spacing_mm)).all()
        assert np.isclose(row.total_area_mm2, rows.drop_duplicates("lesion_id")["area_mm2"].sum())
        assert row.mode == "seeded" and row.path == str(Path(phantoms / name).resolve())
    statuses = lesions.loc[lesions["image"] == dicoms[0].name, "status"].tolist()
    assert "duplicate_seed" in statuses and "no_deposit" in statuses
    assert per_image["seeds_not_measured"].tolist()[0] == sum(s not in ("ok", "duplicate_seed") for s in statuses)
    assert cli.main(["quantify", str(dicoms[0]), "--out", str(out), "--summary", str(out), "--overwrite",
                     "--device", "cpu"]) == 2  # one file for both


def test_a_second_seed_on_a_deposit_is_not_called_unmeasured(phantoms, tmp_path, capsys):
    # The last line said "1 row(s) not measured: 1 duplicate_seed", though the deposit is measured
    # and counted once (README), and --summary counts no seed unmeasured.
    dicom = sorted(phantoms.glob("*.dcm"))[0]
    seeds = pd.read_csv(phantoms / "seeds.csv")
    first = seeds[seeds["image"].astype(str).str.startswith(dicom.stem)].iloc[0]
    twice = tmp_path / "seeds.csv"
    twice.write_text(f"image,row,col\n{dicom.name},{first['row']},{first['col']}\n{dicom.name},{first['row']},{first['col']}\n")
    out = tmp_path / "r.csv"
    assert cli.main(["quantify", str(dicom), "--seeds", str(twice), "--out", str(out), "--device", "cpu"]) == 0
    assert pd.read_csv(out)["status"].tolist() == ["ok", "duplicate_seed"]
    assert "not measured" not in capsys.readouterr().err
