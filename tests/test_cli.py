"""The napari-calcinosis command line, end to end in subprocesses."""

import json
import re
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "napari_calcinosis", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def lins_ccc(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    return 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    r = run("sample", "--out", out, "-n", "4", "--seed", "31")
    assert r.returncode == 0, r.stderr
    return out


def test_sample_writes_images_and_truth(samples):
    truth = pd.read_csv(samples / "truth.csv")
    seeds = pd.read_csv(samples / "seeds.csv")
    assert list(seeds.columns) == ["image", "row", "col"]
    assert len(seeds) == len(truth) > 0
    assert sorted(p.name for p in samples.glob("*.dcm")) == [f"phantom_{s:06d}.dcm" for s in range(31, 35)]
    assert len(list(samples.glob("*.png"))) == 4
    assert (samples / "masks" / "phantom_000031_bone.png").exists()


def test_quantify_dicom_with_seeds_and_masks(samples, tmp_path):
    out, masks = tmp_path / "r.csv", tmp_path / "M"
    r = run("quantify", *sorted(samples.glob("*.dcm")), "--seeds", samples / "seeds.csv", "--out", out,
            "--masks", masks, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(out)
    truth = pd.read_csv(samples / "truth.csv")
    for col in ["image", "lesion_id", "seed_row", "seed_col", "area_mm2", "area_px", "long_axis_mm",
                "short_axis_mm", "ellipse_area_mm2", "mean_value", "status"]:
        assert col in table.columns
    # one row per seed, in seed order
    assert len(table) == len(truth)
    assert list(table["seed_row"].astype(int)) == list(truth["seed_row"])
    assert (table["status"] == "ok").all(), table[["image", "status"]]
    assert lins_ccc(truth["area_mm2"], table["area_mm2"]) >= 0.97
    bone = iio.imread(masks / "phantom_000031_bone.png")
    assert set(np.unique(bone)) <= {0, 255}
    lesions = tifffile.imread(masks / "phantom_000031_lesions.tif")
    assert lesions.dtype == np.uint16 and lesions.shape == bone.shape and lesions.max() >= 1


def test_a_readers_columns_in_the_seeds_file_come_out_beside_the_tools_areas(samples, tmp_path):
    # A trial lab's sheet: each deposit's click and the radiologist's reading. The output has one
    # row per seed, in order, with the sheet's columns beside, so agreement runs on it directly.
    truth = pd.read_csv(samples / "truth.csv")
    seeds = pd.read_csv(samples / "seeds.csv")
    sheet = seeds.assign(radiologist_mm2=truth["area_mm2"].round(2), lesion=[f"L{i}" for i in range(len(seeds))],
                         area_mm2=truth["area_mm2"].round(1))  # a name the output uses for its own
    sheet.loc[1, "radiologist_mm2"] = np.nan  # not read
    sheet_path = tmp_path / "sheet.csv"
    sheet.to_csv(sheet_path, index=False)
    out = tmp_path / "r.csv"
    r = run("quantify", *sorted(samples.glob("*.dcm")), "--seeds", sheet_path, "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(out)
    assert table["lesion"].tolist() == sheet["lesion"].tolist()
    assert np.allclose(table["seed_row"], sheet["row"]) and np.allclose(table["seeds_area_mm2"], sheet["area_mm2"])
    assert table["radiologist_mm2"].isna().tolist() == sheet["radiologist_mm2"].isna().tolist()
    r = run("agreement", out, "--x", "area_mm2", "--y", "radiologist_mm2", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["n"] == len(sheet) - 1 and report["ccc"] > 0.95
    # that output as the next run's seeds (area_mm2 beside seeds_area_mm2), with an identifier
    # column written with leading zeros: nothing is lost or renumbered
    again = pd.read_csv(out).rename(columns={"seed_row": "row", "seed_col": "col"})
    again["code"] = [f"{i:03d}" for i in range(len(again))]
    again.to_csv(tmp_path / "again.csv", index=False)
    r = run("quantify", *sorted(samples.glob("*.dcm")), "--seeds", tmp_path / "again.csv", "--out", tmp_path / "r2.csv",
            "--device", "cpu")
    assert r.returncode == 0, r.stderr
    second = pd.read_csv(tmp_path / "r2.csv", dtype={"code": str})
    assert second["code"].tolist() == again["code"].tolist()
    assert np.allclose(second["seeds_seeds_area_mm2"], again["area_mm2"])
    assert np.allclose(second["seeds_area_mm2"], again["seeds_area_mm2"])


def test_slices_of_a_series_named_by_uid_keep_their_last_number(samples, tmp_path):
    # A PACS export: one folder, files named by UID, differing only in the last number. They are
    # two images, in the table and in --masks, not one name twice.
    series = tmp_path / "series"
    series.mkdir()
    for k, stem in ((1, "phantom_000031"), (2, "phantom_000032")):
        (series / f"1.2.840.99.7.{k}").write_bytes((samples / f"{stem}.dcm").read_bytes())
    out, masks = tmp_path / "r.csv", tmp_path / "M"
    r = run("quantify", series, "--out", out, "--masks", masks, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert set(pd.read_csv(out)["image"]) == {"1.2.840.99.7.1", "1.2.840.99.7.2"}
    assert sorted(p.name for p in masks.glob("*_bone.png")) == ["1.2.840.99.7.1_bone.png", "1.2.840.99.7.2_bone.png"]


def test_quantify_png_needs_pixel_size_and_a_bad_file_does_not_stop_the_batch(samples, tmp_path):
    truth = pd.read_csv(samples / "truth.csv")
    spacing = truth.groupby("image")["spacing_mm"].first()
    stem = "phantom_000032"
    broken = tmp_path / "broken.dcm"
    broken.write_bytes((samples / f"{stem}.dcm").read_bytes()[:3000])
    png = samples / f"{stem}.png"
    out = tmp_path / "r.csv"
    r = run("quantify", broken, png, "--seeds", samples / "seeds.csv", "--pixel-size", spacing[stem], "--out", out,
            "--device", "cpu")
    assert r.returncode == 1
    assert "broken.dcm" in r.stderr
    n_broken = int((pd.read_csv(out)["status"].str.startswith("error")).sum())
    assert f"{n_broken} row(s) not measured: {n_broken} error (the status column says which)" in r.stderr
    table = pd.read_csv(out)
    assert table.loc[table["image"] == "broken.dcm", "status"].str.startswith("error").all()
    good = table[table["image"] == f"{stem}.png"]
    want = truth[truth["image"] == stem]
    assert len(good) == len(want) and (good["status"] == "ok").all()
    assert np.allclose(good["area_mm2"], want["area_mm2"], rtol=0.35, atol=0.8)

    # exports only, and no pixel size: refused before the model is loaded, not image by image
    r = run("quantify", png, "--out", tmp_path / "r2.csv", "--device", "cpu")
    assert r.returncode == 2 and not (tmp_path / "r2.csv").exists()
    assert "the image is an export (PNG, JPEG, TIFF), which carry no pixel size: give it with --pixel-size" in r.stderr
    # beside a DICOM (which has its own), an export without one fails on its own row
    r = run("quantify", samples / f"{stem}.dcm", png, "--out", tmp_path / "r3.csv", "--device", "cpu")
    assert r.returncode == 1 and "a PNG image carries no pixel size" in r.stderr


def test_quantify_automatic_mode_to_stdout(samples):
    r = run("quantify", samples / "phantom_000033.dcm", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("image,path,lesion_id")
    assert len(lines) >= 2
    assert "without --seeds every candidate deposit was measured" in r.stderr  # a first look, said so


def test_demo(tmp_path):
    r = run("demo", "--out", tmp_path / "demo", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "area_mm2" in r.stdout and "total calcinosis area" in r.stdout
    table = pd.read_csv(tmp_path / "demo" / "sample_finger_lesions.csv")
    assert (table["status"] == "ok").all()
    # the rows quantify writes: its columns in its order, the file, the model, the settings, the version
    from napari_calcinosis import __version__
    from napari_calcinosis.cli import OUTPUT_COLUMNS, bundled_sample_path

    assert list(table.columns) == OUTPUT_COLUMNS
    assert set(table["path"]) == {str(bundled_sample_path().resolve())} and set(table["image"]) == {"sample_finger.dcm"}
    assert set(table["mode"]) == {"seeded"} and table["model"].str.startswith("bundled phalanx_unet (sha256 ").all()
    assert set(table["settings"]) == {"threshold_hu=200; margin_mm=per image; connectivity=4; min_area_mm2=0.3; tta=no"}
    assert set(table["software"]) == {f"napari-calcinosis {__version__}"}
    png = iio.imread(tmp_path / "demo" / "sample_finger_overlay.png")
    assert png.ndim == 3 and png.shape[0] > 200


def test_a_reader_that_stops_reading_ends_the_run_quietly(samples):
    # quantify ... | head: the pipe closes before the table is written
    process = subprocess.Popen([sys.executable, "-m", "napari_calcinosis", "quantify", str(samples / "phantom_000033.dcm"),
                                "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    _, err = process.communicate(timeout=600)
    assert process.returncode == 141 and b"Traceback" not in err and b"BrokenPipeError" not in err


def test_a_file_name_that_is_not_utf8_does_not_lose_the_run(samples, tmp_path):
    import os
    import shutil

    folder = tmp_path / "share"
    folder.mkdir()
    shutil.copy(samples / "phantom_000033.dcm", os.fsencode(folder) + b"/caf\xe9.dcm")  # Latin-1, not UTF-8
    out = tmp_path / "r.csv"
    r = run("quantify", folder, "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert b"/caf\xe9.dcm," in out.read_bytes()  # the file's own name, byte for byte


def test_fine_tuning_from_the_bundled_model_needs_no_path(tmp_path):
    # An installed tool has no src/ folder: the model card's command names the model "bundled".
    from napari_calcinosis.segment import bundled_model_path

    r = run("train", "--phantoms", "2", "--val-phantoms", "1", "--epochs", "1", "--steps-per-epoch", "1",
            "--batch-size", "2", "--crop-px", "64", "--device", "cpu", "--init", "bundled", "--out", "m.safetensors",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["training"]["fine_tuned_from"]["file"] == str(bundled_model_path())


def test_train_and_resume_from_the_cli(tmp_path):
    out = tmp_path / "m.safetensors"
    r = run("train", "--phantoms", "3", "--val-phantoms", "1", "--epochs", "1", "--steps-per-epoch", "1",
            "--batch-size", "2", "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert out.exists() and (tmp_path / "m.checkpoint.pt").exists()
    r = run("train", "--phantoms", "3", "--val-phantoms", "1", "--epochs", "2", "--steps-per-epoch", "1",
            "--batch-size", "2", "--out", out, "--device", "cpu", "--resume")
    assert r.returncode == 0, r.stderr
    assert "epoch 2/2" in r.stderr
    # a new run onto a trained model is refused unless asked for, before any work
    before = out.read_bytes()
    r = run("train", "--phantoms", "3", "--out", out, "--device", "cpu")
    assert r.returncode == 2 and "--overwrite" in r.stderr and "--resume" in r.stderr
    assert out.read_bytes() == before
    # ... and so is one onto an unfinished run that has a checkpoint but no model yet
    out.unlink()
    r = run("train", "--phantoms", "3", "--out", out, "--device", "cpu")
    assert r.returncode == 2 and "checkpoint of an unfinished run" in r.stderr


def test_help_prints_for_the_command_and_every_subcommand():
    # argparse formats help strings with %: a bare "95 % CI" made `napari-calcinosis --help` crash
    r = run("--help")
    assert r.returncode == 0, r.stderr
    commands = ("quantify", "demo", "train", "agreement", "validate", "sample")
    assert all(c in r.stdout for c in commands) and "95 % CI" in r.stdout
    for command in commands:
        r = run(command, "--help")
        assert r.returncode == 0 and r.stdout.startswith("usage: napari-calcinosis " + command), r.stderr


def test_cli_errors_are_one_line():
    r = run("quantify", "/nonexistent/finger.dcm", "--device", "cpu")
    assert r.returncode == 1
    assert "finger.dcm" in r.stderr
    r = run("train", "--out", "x.safetensors")
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (("sample", "--out", "s", "-n", "-2"), r"-n is the number of phantoms to write: give 1 or more \(got -2\)"),
    (("sample", "--out", "s", "-n", "0"), r"give 1 or more \(got 0\)"),
    (("sample", "--out", "s", "-n", "1", "--seed", "-1"), r"--seed must be 0 or more.*\(got -1\)"),
    (("validate", "--n", "0", "--out", "v"), r"the validation study needs at least 3 phantoms.*\(got 0;"),
    (("validate", "--n", "2", "--out", "v"), r"needs at least 3 phantoms"),
    (("validate", "--n", "5", "--seed", "-3", "--out", "v"), r"the phantom seed must be 0 or more.*\(got -3\)"),
])
def test_sample_and_validate_refuse_counts_and_seeds_they_cannot_use(tmp_path, args, message):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert re.search(message, r.stderr), r.stderr
    assert not list(tmp_path.iterdir())  # refused before writing anything
