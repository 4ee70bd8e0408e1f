"""Agreement statistics against published worked examples and edge cases."""

import itertools
import math
import json
import re
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from napari_calcinosis import CalcinosisError
from napari_calcinosis.stats import agreement, bland_altman, format_p, lins_ccc, plot_agreement

def test_bland_altman_1986_worked_example(pefr):
    WRIGHT, MINI = pefr
    ba = bland_altman(WRIGHT, MINI, multiplier=2.0)
    assert round(ba["ba_bias"], 1) == -2.1
    assert round(ba["ba_sd"], 1) == 38.8
    # The paper computed the limits from the rounded mean and SD (-2.1 -+ 2 x 38.8): ours, from
    # the unrounded ones (-79.65, 75.41), agree to the published precision of 0.1 l/min.
    assert ba["ba_loa_low"] == pytest.approx(-79.7, abs=0.1)
    assert ba["ba_loa_high"] == pytest.approx(75.5, abs=0.1)
    # 95 % limits with 1.96 SD
    a = agreement(WRIGHT, MINI)
    assert a.ba_loa_low == pytest.approx(-2.1176 - 1.96 * 38.7651, abs=1e-3)
    # CI of the bias: bias +- t(16) * SD / sqrt(n); of a limit: +- t(16) * sqrt(3 SD^2 / n) (1999)
    t16 = 2.1199
    assert a.ba_bias_ci_low == pytest.approx(-2.1176 - t16 * 38.7651 / np.sqrt(17), abs=1e-2)
    assert a.ba_loa_high_ci_high - a.ba_loa_high == pytest.approx(t16 * np.sqrt(3 * 38.7651**2 / 17), abs=1e-2)


# Caldwell AR. SimplyAgree: Flexible and Robust Agreement and Reliability Analyses, R package
# (Caldwell 2022, J Open Source Softw 7(71):4148, doi:10.21105/joss.04148), vignette "Agreement
# Tests", section "Simple Agreement / agree_test" (https://aaroncaldwell.us/SimplyAgree/articles/
# agree_tests.html; also on CRAN as vignettes/agree_tests.html, versions dated 2022-12-14 to
# 2024-03-21 and 0.3.0 print the same figures). Data: the package's `reps` data set (from Zou 2013),
# columns x and y, 20 rows of which 2 have y missing; `agree_test(x = reps$x, y = reps$y,
# agree.level = .8)` keeps the 18 complete pairs. Printed: "Bias 0.4383 -0.1669 1.0436 0.95",
# "Lower LoA -1.1214", "Upper LoA 1.9980" (80 % limits) and "CCC: 0.4791, 95% C.I. [0.1276, 0.7237]".
# SimplyAgree's CCC interval is Lin's z-transform with n - 2 (R/other_functions.R, ccc.xy), as ours.
REPS_X = [7.83, 7.42, 7.89, 7.12, 7.88, 6.16, 7.26, 6.71, 6.54, 4.75,
          5.24, 4.86, 4.78, 6.05, 5.42, 4.21, 3.61, 3.72, 3.87, 3.92]
REPS_Y = [6.57, 5.62, 6.90, 6.57, np.nan, 4.06, 4.29, 4.26, np.nan, 4.71,
          5.50, 5.08, 5.02, 6.01, 5.67, 4.14, 4.20, 4.61, 4.68, 5.04]


def test_lins_ccc_published_worked_example():
    ccc, lo, hi = lins_ccc(REPS_X, REPS_Y)
    assert (round(ccc, 4), round(lo, 4), round(hi, 4)) == (0.4791, 0.1276, 0.7237)
    a = agreement(REPS_X, REPS_Y)
    assert a.n == 18 and a.n_dropped == 2  # complete cases only, as R's complete.cases()
    assert (round(a.ccc, 4), round(a.ccc_ci_low, 4), round(a.ccc_ci_high, 4)) == (0.4791, 0.1276, 0.7237)
    # the Bland-Altman part of the same printout: bias x - y with its 95 % t interval, and the
    # 80 % limits of agreement (bias -+ z(0.90) SD)
    assert (round(a.ba_bias, 4), round(a.ba_bias_ci_low, 4), round(a.ba_bias_ci_high, 4)) == (0.4383, -0.1669, 1.0436)
    ba80 = bland_altman(REPS_X, REPS_Y, multiplier=float(sps.norm.ppf(0.90)))
    assert (round(ba80["ba_loa_low"], 4), round(ba80["ba_loa_high"], 4)) == (-1.1214, 1.9980)


def test_ccc_matches_its_definition_and_ci_brackets_it(pefr):
    WRIGHT, MINI = pefr
    ccc, lo, hi = lins_ccc(WRIGHT, MINI)
    x, y = np.array(WRIGHT, float), np.array(MINI, float)
    by_hand = 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert ccc == pytest.approx(by_hand, abs=1e-12)
    assert lo < ccc < hi < 1.0
    # the z-interval is symmetric on the arctanh scale
    assert np.arctanh(ccc) - np.arctanh(lo) == pytest.approx(np.arctanh(hi) - np.arctanh(ccc), rel=1e-9)


def test_perfect_agreement_and_constant_offset():
    x = np.linspace(1, 40, 20)
    a = agreement(x, x)
    assert a.ccc == 1.0 and a.ba_bias == 0.0 and a.ba_sd == 0.0 and a.spearman_rho == pytest.approx(1.0)
    b = agreement(x, x + 5.0)
    assert b.spearman_rho == pytest.approx(1.0) and b.pearson_r == pytest.approx(1.0)
    assert b.ccc < 1.0  # correlation is perfect, agreement is not
    assert b.ba_bias == pytest.approx(-5.0) and b.ba_sd == pytest.approx(0.0, abs=1e-12)
    assert b.ba_proportional_slope == pytest.approx(0.0, abs=1e-9)


def test_proportional_bias_is_detected():
    x = np.linspace(1, 50, 30)
    a = agreement(x * 1.2, x)
    assert a.ba_proportional_slope > 0.15 and a.ba_proportional_p < 1e-6


def test_missing_pairs_dropped_and_counted_and_too_few_refused():
    x = [1.0, 2.0, np.nan, 4.0, 5.0]
    y = [1.1, np.nan, 3.0, 4.2, 4.9]
    a = agreement(x, y)
    assert a.n == 3 and a.n_dropped == 2
    with pytest.raises(CalcinosisError, match="at least 3"):
        agreement([1.0, 2.0], [1.0, 2.5])
    with pytest.raises(CalcinosisError, match="different lengths"):
        agreement([1.0, 2.0, 3.0], [1.0, 2.0])


def test_agreement_cli_json_and_plot(tmp_path, pefr):
    WRIGHT, MINI = pefr
    csv = tmp_path / "pefr.csv"
    pd.DataFrame({"wright": WRIGHT, "mini": MINI}).to_csv(csv, index=False)
    png = tmp_path / "agreement.png"
    r = subprocess.run([sys.executable, "-m", "napari_calcinosis", "agreement", str(csv), "--x", "wright", "--y", "mini",
                        "--json", "--plot", str(png)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("n", "spearman_rho", "spearman_p", "ccc", "ccc_ci_low", "ccc_ci_high", "ba_bias", "ba_sd",
                "ba_loa_low", "ba_loa_high"):
        assert key in out
    assert out["n"] == 17 and round(out["ba_bias"], 1) == -2.1
    assert png.stat().st_size > 10_000
    r = subprocess.run([sys.executable, "-m", "napari_calcinosis", "agreement", str(csv), "--x", "wright", "--y", "nope"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no column 'nope'" in r.stderr


def test_plot_svg(tmp_path, pefr):
    WRIGHT, MINI = pefr
    plot_agreement(WRIGHT, MINI, tmp_path / "a.svg", x_label="Wright", y_label="mini", unit="l/min")
    assert (tmp_path / "a.svg").read_text().startswith("<?xml")


def test_validate_study_writes_a_report(tmp_path):
    from napari_calcinosis.validation import COMPARISONS, run_validation

    out = run_validation(3, seed=3_100_000, out_dir=tmp_path, device="cpu")
    lesions = out["lesions"]
    assert len(lesions) >= 3 and set(lesions.columns) >= {"true_mm2", "pipeline_mm2", "radiologist1_mm2", "radiologist2_mm2"}
    assert set(out["stats"]) == {name for name, _, _ in COMPARISONS}
    # the simulated readers are noisy but unbiased on the axes: their ellipse tracks the truth
    assert out["stats"]["radiologist 1 vs truth"].spearman_rho > 0.5
    report = (tmp_path / "report.md").read_text()
    assert "pipeline vs truth" in report and "CCC 0.95 (0.91-0.99)" in report  # the paper's figure beside ours
    assert (tmp_path / "pipeline_vs_truth.png").stat().st_size > 10_000


def test_a_constant_measurement_is_refused_with_its_name():
    x = [1.0, 2.0, 3.0, 4.0]
    for call in (lambda: agreement(x, [5.0] * 4, x_label="reader", y_label="pipeline"),
                 lambda: agreement([5.0] * 4, x, x_label="pipeline", y_label="reader")):
        with pytest.raises(CalcinosisError, match=r"'pipeline' has the same value \(5\) in all 4 complete pairs: "
                                                  "agreement cannot be computed"):
            call()
    # not a CCC of 0 with a CI of nan, a proportional bias of p = 1e-20 or a scipy warning
    with pytest.raises(CalcinosisError, match="same value"):
        lins_ccc(x, [5.0] * 4)
    with pytest.raises(CalcinosisError, match="same value"):
        bland_altman(x, [5.0] * 4)
    with pytest.raises(CalcinosisError, match="'x' has the same value"):
        agreement([2.0] * 5, [2.0] * 5)  # identical constants too: there is no spread to agree on
    # constant only once the incomplete pairs are dropped
    with pytest.raises(CalcinosisError, match=r"'y' has the same value \(7\) in all 3 complete pairs"):
        agreement([1.0, 2.0, 3.0, 4.0], [7.0, 7.0, 7.0, np.nan])


def test_spearman_p_is_exact_for_few_pairs():
    # 3 pairs in the same order: 2 of the 3! pairings are as extreme (|rho| = 1), so p = 1/3,
    # as R's cor.test(method = "spearman") prints; the t approximation gave p = 0.
    a = agreement([1.0, 2.0, 3.0], [2.0, 3.0, 5.0])
    assert a.spearman_rho == pytest.approx(1.0) and a.spearman_p == pytest.approx(1 / 3)
    # against a count over every pairing, with a tie
    x = np.array([3.1, 1.2, 4.4, 1.2, 5.0, 2.7])
    y = np.array([2.0, 1.0, 3.5, 2.5, 4.0, 1.5])
    rho = sps.spearmanr(x, y)[0]
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    null = np.array([np.corrcoef(rx[list(order)], ry)[0, 1] for order in itertools.permutations(range(6))])
    a = agreement(x, y)
    assert a.spearman_rho == pytest.approx(rho)
    assert a.spearman_p == pytest.approx(2 * min((null >= rho - 1e-12).mean(), (null <= rho + 1e-12).mean()))
    # above 9 pairs, the t approximation (Stata, scipy)
    x = np.linspace(1, 30, 12)
    y = x + np.sin(x) * 5
    assert agreement(x, y).spearman_p == pytest.approx(sps.spearmanr(x, y)[1])
    # ...except in the same order, where it gives p = 0: the exact p is 2 of the 12! pairings,
    # and with x's ties (two pairs of equal values) 2 * 2! * 2! of them.
    assert agreement(x, x ** 2).spearman_p == pytest.approx(2 / math.factorial(12), rel=1e-9)
    tied = np.array([1, 2, 2, 3, 4, 5, 6, 6, 7, 8, 9, 10], dtype=float)
    assert agreement(tied, -tied).spearman_p == pytest.approx(8 / math.factorial(12), rel=1e-9)
    assert 0 < agreement(np.arange(300.0), np.arange(300.0)).spearman_p < 1e-300
    # ties in one of the two: the same p whichever is x
    ranks = np.arange(1.0, 13.0)
    assert agreement(tied, ranks).spearman_p == agreement(ranks, tied).spearman_p


def test_p_values_are_printed_as_a_paper_prints_them():
    assert format_p(0.0) == "p < 0.001" and format_p(0.0004) == "p < 0.001"
    assert format_p(1 / 3) == "p = 0.33" and format_p(0.049) == "p = 0.049"
    assert format_p(float("nan")) == "p not defined"


def test_ccc_ci_is_defined_for_uncorrelated_and_reversed_measurements():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # r = 0 exactly: Lin's published variance divides 0 by 0; its limit is C_b^2 / (n - 2)
        ccc, lo, hi = lins_ccc([1.0, 2.0, 3.0], [1.0, 3.0, 1.0])
        assert ccc == 0.0 and np.isfinite(lo) and lo == pytest.approx(-hi)
        near = lins_ccc([1.0, 2.0, 3.0], [1.0, 3.0, 1.0 + 1e-7])
        assert (lo, hi) == pytest.approx(near[1:], abs=1e-6)  # continuous through r = 0
        assert lins_ccc([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == (-1.0, -1.0, -1.0)


def test_a_plot_suffix_we_cannot_write_is_refused_before_plotting(tmp_path):
    with pytest.raises(CalcinosisError, match=r"out\.xyz: its name must end in one of \.png, \.svg, \.pdf"):
        plot_agreement([1.0, 2.0, 3.0], [1.0, 2.5, 2.0], tmp_path / "out.xyz")
    assert not list(tmp_path.iterdir())


def _agreement_cli(tmp_path, text, *args):
    csv = tmp_path / "readings.csv"
    csv.write_text(text)
    return subprocess.run([sys.executable, "-m", "napari_calcinosis", "agreement", str(csv), *args],
                          capture_output=True, text=True, timeout=120)


def _one_error_line(r, pattern):
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: "), r.stderr
    assert re.search(pattern, r.stderr), r.stderr


def test_agreement_cli_refuses_what_it_cannot_compare(tmp_path):
    text = "image,a,b,c,d,e\n\np1,1,2,5,x,\"1,5\"\np2,2,3,5,,2\np3,3,5,5,4,3\np4,4,4,5,5,\"4,5\"\n"
    _one_error_line(_agreement_cli(tmp_path, text, "--x", "a", "--y", "c"),
                    r"'c' has the same value \(5\) in all 4 complete pairs: agreement cannot be computed")
    _one_error_line(_agreement_cli(tmp_path, text, "--x", "a", "--y", "a"), "--x and --y are both 'a'")
    # a cell that is not a number is not a missing value: it is named with its line
    _one_error_line(_agreement_cli(tmp_path, text, "--x", "a", "--y", "d"),
                    r"column 'd' of .*readings.csv has 1 cell\(s\) that are not numbers \(line 3: 'x'\)")
    _one_error_line(_agreement_cli(tmp_path, text, "--x", "a", "--y", "e"),
                    r"2 cell\(s\) that are not numbers \(line 3: '1,5', line 6: '4,5'\).*a point, not a comma")
    _one_error_line(_agreement_cli(tmp_path, text, "--x", "image", "--y", "a"),
                    r"column 'image' of .* holds no numbers \(line 3: 'p1'\).*numeric columns are: a, b, c")
    _one_error_line(_agreement_cli(tmp_path, "a,b\n1,2\n2,3\n", "--x", "a", "--y", "b"),
                    "agreement needs at least 3 complete pairs; got 2")
    _one_error_line(_agreement_cli(tmp_path, "", "--x", "a", "--y", "b"),
                    r"could not read .*readings.csv as CSV: No columns to parse")
    for missing in (tmp_path / "nope.csv", tmp_path):
        r = subprocess.run([sys.executable, "-m", "napari_calcinosis", "agreement", str(missing), "--x", "a", "--y", "b"],
                           capture_output=True, text=True, timeout=120)
        _one_error_line(r, "file not found: .*nope.csv" if missing.suffix else "could not read .* as CSV: .*Is a directory")
    for plot in ("out.xyz", "out"):
        _one_error_line(_agreement_cli(tmp_path, text, "--x", "a", "--y", "b", "--plot", str(tmp_path / plot)),
                        r"cannot write a plot to .*: its name must end in one of \.png, \.svg, \.pdf")
        assert not (tmp_path / plot).exists()


def test_agreement_cli_takes_the_unit_from_the_column_names(tmp_path):
    table = "area_mm2,reader_mm2,mean_value,peak_hu,level_hu\n1,1.5,300,400,200\n2,2.2,500,650,310\n3,3.1,700,900,460\n"
    r = _agreement_cli(tmp_path, table, "--x", "area_mm2", "--y", "reader_mm2")
    assert r.returncode == 0, r.stderr
    assert "Bland-Altman bias (x - y) -0.27 mm² (95 % CI" in r.stdout and "agreement -0.67 to 0.14 mm²" in r.stdout
    r = _agreement_cli(tmp_path, table, "--x", "peak_hu", "--y", "level_hu", "--json")
    assert json.loads(r.stdout)["unit"] == "HU"
    r = _agreement_cli(tmp_path, table, "--x", "mean_value", "--y", "peak_hu")  # HU beside a value of no unit
    assert r.returncode == 0 and "mm²" not in r.stdout and "bias (x - y) -150.00 (95 % CI" in r.stdout
    r = _agreement_cli(tmp_path, table, "--x", "mean_value", "--y", "peak_hu", "--unit", "HU")
    assert "bias (x - y) -150.00 HU (95 % CI" in r.stdout


def test_agreement_cli_prints_an_exact_p_for_three_pairs(tmp_path):
    r = _agreement_cli(tmp_path, "a,b\n1,2\n2,3\n3,5\n,4\n", "--x", "a", "--y", "b")
    assert r.returncode == 0, r.stderr
    assert "n = 3 pairs (1 with an empty cell dropped)" in r.stdout
    assert "Spearman's rho 1.000 (p = 0.33)" in r.stdout


def test_agreement_refuses_inputs_it_would_silently_misread(pefr):
    import pandas as pd

    wright, mini = pefr
    with pytest.raises(CalcinosisError, match="confidence is a fraction between 0 and 1"):
        agreement(wright, mini, confidence=95)  # a percentage: every CI would be NaN
    with pytest.raises(CalcinosisError, match="is a table of shape \\(17, 2\\)"):
        agreement(np.column_stack([wright, mini]), np.column_stack([mini, wright]))
    shuffled = pd.Series(mini, index=np.arange(17)[::-1])
    with pytest.raises(CalcinosisError, match="pandas Series with different indexes"):
        agreement(pd.Series(wright), shuffled)
    same = agreement(pd.Series(wright), pd.Series(mini))  # one table's two columns: paired as they stand
    assert same.n == 17 and round(same.ba_bias, 1) == -2.1
    assert agreement(np.asarray(wright)[:, None], np.asarray(mini)).n == 17  # a column vector is one measurement


def test_a_plot_into_a_missing_folder_is_refused_before_drawing(tmp_path, pefr):
    from napari_calcinosis.stats import plot_agreement

    with pytest.raises(CalcinosisError, match="the folder .*missing does not exist"):
        plot_agreement(*pefr, tmp_path / "missing" / "a.png")


def test_agreement_without_the_deposits_flagged_near_resolution(tmp_path):
    # A quantify table's small deposits, flagged, make most of the disagreement with a reader:
    # the command line says how the rest agree, and leaves it out where nothing is flagged.
    from napari_calcinosis.stats import agreement_without

    area = [10.0, 20.0, 30.0, 40.0, 0.5, 1.0]
    reader = [10.5, 19.0, 31.0, 39.5, 2.5, 3.0]
    flags = [False, False, False, False, True, "True"]  # as pandas reads a CSV with an empty cell, or not
    both = agreement(area, reader)
    rest, left_out = agreement_without(area, reader, flags)
    assert left_out == 2 and rest.n == 4
    assert rest.ccc == pytest.approx(agreement(area[:4], reader[:4]).ccc) and rest.ccc > both.ccc
    assert agreement_without(area, reader, [False] * 6) is None
    assert agreement_without(area, reader, [True] * 4 + [False] * 2) is None  # two pairs left: nothing to say
    # as a spreadsheet saves flags (TRUE), or pandas a column of flags with gaps (1.0, nan)
    for saved in (["FALSE"] * 4 + ["TRUE", " yes"], [0.0, 0.0, np.nan, 0.0, 1.0, "1"]):
        assert agreement_without(area, reader, saved)[1] == 2
    assert agreement_without(area, reader, ["no", "0", "", "nan", "2", "False"]) is None
    table = pd.DataFrame({"area_mm2": area, "reader_mm2": reader, "near_resolution": flags})
    r = _agreement_cli(tmp_path, table.to_csv(index=False), "--x", "area_mm2", "--y", "reader_mm2")
    assert r.returncode == 0, r.stderr
    assert (f"without the 2 near_resolution deposit(s) (too narrow for their areas to be trusted): n = 4, Lin's CCC "
            f"{rest.ccc:.3f}") in r.stdout
    out = json.loads(_agreement_cli(tmp_path, table.to_csv(index=False), "--x", "area_mm2", "--y", "reader_mm2",
                                    "--json").stdout)
    assert out["without_near_resolution"]["n"] == 4 and out["without_near_resolution"]["left_out"] == 2
    r = _agreement_cli(tmp_path, table.drop(columns="near_resolution").to_csv(index=False), "--x", "area_mm2",
                       "--y", "reader_mm2")
    assert r.returncode == 0 and "near_resolution" not in r.stdout


def test_agreement_cli_reads_a_spreadsheets_table_as_its_user_wrote_it(tmp_path):
    # Found by a review: a header with spaces around it was not found; a second column of the same
    # name was used without a word; flags and infinities were taken as measurements or as empty
    # cells; a German spreadsheet's WAHR was no flag; NaN printed into --json, which is no JSON.
    spaced = "area_mm2, radiologist_mm2 \n1,1.5\n2,2.2\n3,3.1\n4,4.4\n"
    r = _agreement_cli(tmp_path, spaced, "--x", "area_mm2", "--y", "radiologist_mm2")
    assert r.returncode == 0 and "n = 4 pairs" in r.stdout, r.stderr
    twice = "area_mm2,area_mm2,b\n1,2,0\n2,3,1\n3,1,0\n4,5,2\n"
    _one_error_line(_agreement_cli(tmp_path, twice, "--x", "area_mm2", "--y", "area_mm2"),
                    r"--x and --y are both 'area_mm2'.*second column of that name reads as 'area_mm2.1'")
    r = _agreement_cli(tmp_path, twice, "--x", "area_mm2", "--y", "area_mm2.1")
    assert r.returncode == 0 and "n = 4 pairs" in r.stdout, r.stderr
    r = _agreement_cli(tmp_path, twice, "--x", "area_mm2", "--y", "b")
    assert r.returncode == 0 and "note: " in r.stderr and "two columns named 'area_mm2': the first is used" in r.stderr
    for flags in ("a,b\nTrue,1\nFalse,2\nTrue,3\nFalse,4\n", "a,b\nTrue,1\nFalse,2\n,3\nTrue,4\nFalse,5\n"):  # gaps too
        _one_error_line(_agreement_cli(tmp_path, flags, "--x", "a", "--y", "b"),
                        r"column 'a' of .* holds flags \(True/False\), not measurements")
    r = _agreement_cli(tmp_path, "a,a ,b \n1,2,0\n2,3,1\n3,1,0\n4,5,2\n", "--x", "a", "--y", "b ")  # 'a ' is 'a.1'
    assert r.returncode == 0 and "two columns named 'a'" in r.stderr, r.stderr
    assert "n = 4 pairs" in _agreement_cli(tmp_path, "a,a ,b \n1,2,0\n2,3,1\n3,1,0\n4,5,2\n", "--x", "a",
                                           "--y", "a.1").stdout
    _one_error_line(_agreement_cli(tmp_path, "a,b\n1,2\n2,3\n3,-inf\n4,5\n5,7\n", "--x", "a", "--y", "b"),
                    r"column 'b' of .* has 1 cell\(s\) that are not numbers \(line 4: '-inf'\)")
    with pytest.raises(CalcinosisError, match=r"'b' holds 1 infinite value\(s\) \(first at position 2\)"):
        agreement([1, 2, 3, 4], [2, 3, np.inf, 5], y_label="b")
    german = ("area_mm2;reader_mm2;near_resolution\n10,0;10,5;FALSCH\n20,0;19,0;FALSCH\n30,0;31,0;FALSCH\n"
              "40,0;39,5;FALSCH\n0,5;2,5;WAHR\n")
    r = _agreement_cli(tmp_path, german, "--x", "area_mm2", "--y", "reader_mm2")
    assert "without the 1 near_resolution deposit(s)" in r.stdout, r.stdout + r.stderr
    r = _agreement_cli(tmp_path, "a_mm2,b_mm2\n1,3\n2,2\n3,1\n4,0\n", "--x", "a_mm2", "--y", "b_mm2", "--json")
    out = json.loads(r.stdout, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert out["ba_proportional_slope"] is None and out["ba_proportional_p"] is None
    rounded = agreement([0.7, 0.1, 0.2, 0.5], [0.1, 0.7, 0.6, 0.3])  # every sum 0.8, to rounding
    assert np.isnan(rounded.ba_proportional_slope)


def test_agreement_cli_reads_excel_csvs_of_a_comma_locale_as_written(tmp_path):
    # German Excel: semicolons, decimal commas, dots between thousands; a header may hold a comma
    text = ("patient;Fläche (mm²);Radiologe, mm²\nP01;1.234;1.198,5\nP02;12,5;11\nP03;850;790\nP04;2.010;1.950\n"
            "P05;3,5;4\nP06;120;131,5\n")
    r = _agreement_cli(tmp_path, text, "--x", "Fläche (mm²)", "--y", "Radiologe, mm²", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    x = [1234, 12.5, 850, 2010, 3.5, 120]
    y = [1198.5, 11, 790, 1950, 4, 131.5]
    assert d["n"] == 6 and d["ba_bias"] == pytest.approx(np.mean(np.subtract(x, y)))  # was 1.234 for 1,234 mm²
    # the header's commas split each line as evenly as its semicolons where every value has a decimal comma
    r = _agreement_cli(tmp_path, "patient;Radiologe, mm²;Tool, mm²\nP01;12,5;13,1\nP02;3,5;3,0\nP03;8,25;9,0\n",
                       "--x", "Tool, mm²", "--y", "Radiologe, mm²", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ba_bias"] == pytest.approx(np.mean([0.6, -0.5, 0.75]))
    # with no decimal comma in the column, 1.234 may be either: refused, with its line, not guessed
    _one_error_line(_agreement_cli(tmp_path, "image;a_mm2;b_mm2\np1;1.234;1.200\np2;325;400\np3;2.000;1.850\n",
                                   "--x", "a_mm2", "--y", "b_mm2"),
                    r"column 'a_mm2' of .*readings.csv, line 2: is '1.234' 1234 or 1.234\?")
    # decimal points in a semicolon file stay decimal points
    r = _agreement_cli(tmp_path, "image;a_mm2;b_mm2\np1;1.5;1.200\np2;325;400\np3;2.25;1.85\n",
                       "--x", "a_mm2", "--y", "b_mm2", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ba_bias"] == pytest.approx(np.mean([0.3, -75, 0.4]))


def test_agreement_cli_says_why_each_pair_was_left_out(tmp_path):
    # a quantify table: a second seed on a deposit repeats its area, an image that failed has none,
    # a reader's #N/A (Excel's VLOOKUP of an ID it did not find) is a missing value, counted apart
    text = ("image,area_mm2,radiologist_mm2,status\na,1.0,1.1,ok\na,1.0,0.5,duplicate_seed\nb,2.0,2.4,ok\n"
            "c,,3.0,error: could not read\nd,4.0,#N/A,ok\ne,5.0,,ok\nf,6.0,6.5,ok\ng,7.0,NA,ok\n")
    r = _agreement_cli(tmp_path, text, "--x", "area_mm2", "--y", "radiologist_mm2")
    assert r.returncode == 0, r.stderr
    assert ("n = 3 pairs (4 dropped: 1 with an empty cell, 2 with a cell marked missing ('#N/A', 'NA'), 1 of an image "
            "that could not be measured (status error))") in r.stdout
    assert "1 duplicate_seed row(s) left out: a second seed on a deposit that an earlier seed's row measured" in r.stdout
    d = np.array([-0.1, -0.4, -0.5])
    low, high = d.mean() - 1.96 * d.std(ddof=1), d.mean() + 1.96 * d.std(ddof=1)
    assert f"limits of agreement {low:.2f} to {high:.2f} mm² (95 % CIs " in r.stdout  # with the CI of each limit
    d = json.loads(_agreement_cli(tmp_path, text, "--x", "area_mm2", "--y", "radiologist_mm2", "--json").stdout)
    assert d["n"] == 3 and d["ba_bias"] == pytest.approx(np.mean([-0.1, -0.4, -0.5]))
    assert d["dropped"] == {"empty": 1, "marked_missing": 2, "not_measured": 1} and d["duplicate_seeds_left_out"] == 1
    # a dash is not a missing value anyone wrote on purpose (a lost minus sign?): refused, with its line
    _one_error_line(_agreement_cli(tmp_path, "a,b\n1,2\n-,3\n3,5\n4,4\n", "--x", "a", "--y", "b"),
                    r"column 'a' of .* has 1 cell\(s\) that are not numbers \(line 3: '-'\)")


def test_a_layer_table_with_nullable_integers_pairs_its_gaps_as_empty():
    # pandas' nullable integers (a count column with a gap) hold <NA>: an empty cell, not text
    import pandas as pd

    from napari_calcinosis.stats import table_pairs

    table = pd.DataFrame({"a_mm2": pd.array([1, 2, None, 4, 5], dtype="Int64"), "b_mm2": [1.5, 2.5, 3.5, 4.0, 5.5]})
    pairs = table_pairs(table, "a_mm2", "b_mm2")
    assert pairs.dropped == {"empty": 1, "marked_missing": 0, "not_measured": 0}
    assert agreement(pairs.x, pairs.y).n == 4
