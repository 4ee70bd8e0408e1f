"""Agreement statistics as reported in Chandrasekaran et al. 2021 (computed there in Stata).

- Spearman's rank correlation with its p-value: exact (every pairing of the ranks) for up to 9
  pairs, as R ``cor.test`` is for small samples, where the t approximation fails (it gives p = 0 for 3 pairs in the
  same order, whose exact p is 1/3); from the t distribution with n - 2 degrees of freedom
  above, as Stata ``spearman`` and scipy, but never below the exact p of the most extreme
  ordering (2 / n! without ties), which the t approximation gives as 0 at |rho| = 1.
- Lin's concordance correlation coefficient (Lin 1989) with a 95 % CI from Fisher's
  z-transformation and Lin's asymptotic variance, with n - 2 in the denominator (as R
  DescTools ``CCC(ci="z-transform")`` and epiR ``epi.ccc``).
- Bland-Altman (Bland & Altman 1986, 1999): bias = mean of x - y, SD of the differences
  (n - 1), limits of agreement bias +- 1.96 SD, confidence intervals of the bias and of each
  limit (SE of a limit = sqrt(3 SD^2 / n), t with n - 1 degrees of freedom), and a
  proportional-bias check (least-squares regression of the difference on the mean).

A measurement with the same value in every pair is refused: its correlation with anything is
undefined, and its Bland-Altman differences are the other measurement shifted, so a
"proportional bias" would be an artefact of the constant, not an observation.
"""

from __future__ import annotations

import math

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats as sps

from ._errors import CalcinosisError

__all__ = ["Agreement", "agreement", "agreement_without", "lins_ccc", "bland_altman", "plot_agreement", "check_plot_path",
           "format_p", "PLOT_SUFFIXES"]

# What plot_agreement writes: matplotlib's formats less raw/rgba (headerless pixel dumps no viewer
# opens), pgf (needs a LaTeX installation) and those that depend on optional Pillow codecs.
PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".eps", ".ps", ".jpg", ".jpeg", ".tif", ".tiff")

# Up to 9 pairs every pairing of the ranks is enumerated (9! = 362,880, a fraction of a second);
# above, the t approximation is close.
EXACT_SPEARMAN_MAX_N = 9


def _as_numbers(values, label: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise CalcinosisError(
            f"{label!r} is not a list of numbers: agreement compares two numeric measurements"
        ) from None
    if array.ndim > 1 and sum(n > 1 for n in array.shape) > 1:
        raise CalcinosisError(
            f"{label!r} is a table of shape {array.shape}, not one measurement per pair: give one column"
        )
    return array.ravel()


def _checked_confidence(confidence) -> float:
    if not (isinstance(confidence, (int, float, np.floating)) and 0.0 < confidence < 1.0):
        raise CalcinosisError(f"confidence is a fraction between 0 and 1, e.g. 0.95 for 95 %; got {confidence!r}")
    return float(confidence)


def _pairs(x, y, x_label: str = "x", y_label: str = "y") -> tuple[np.ndarray, np.ndarray, int]:
    # (a list's .index is a method; a pandas Series' is its index)
    x_index, y_index = getattr(x, "index", None), getattr(y, "index", None)
    if hasattr(x_index, "equals") and hasattr(y_index, "equals") and not x_index.equals(y_index):
        # pandas would pair them by index, NumPy by position: neither is said, so ask
        raise CalcinosisError(
            f"{x_label!r} and {y_label!r} are pandas Series with different indexes: pair them first (two columns "
            "of one table, or .to_numpy() of each in the same order)"
        )
    x = _as_numbers(x, x_label)
    y = _as_numbers(y, y_label)
    if x.shape != y.shape:
        raise CalcinosisError(f"the two measurements have different lengths ({x.size} and {y.size}): they must be paired")
    for values, label in ((x, x_label), (y, y_label)):
        if np.isinf(values).any():  # not an empty cell: a value no measurement is, not dropped without a word
            raise CalcinosisError(
                f"{label!r} holds {int(np.isinf(values).sum())} infinite value(s) (first at position "
                f"{int(np.flatnonzero(np.isinf(values))[0])}): correct them, or empty them to leave those pairs out")
    keep = np.isfinite(x) & np.isfinite(y)
    dropped = int((~keep).sum())
    x, y = x[keep], y[keep]
    if x.size < 3:
        raise CalcinosisError(
            f"agreement needs at least 3 complete pairs; got {x.size} ({dropped} pair(s) with a missing value dropped)"
        )
    for values, label in ((x, x_label), (y, y_label)):
        if values.min() == values.max():
            raise CalcinosisError(
                f"{label!r} has the same value ({values[0]:g}) in all {values.size} complete pairs: agreement "
                "cannot be computed with a constant measurement (its correlation is undefined); check the column"
            )
    return x, y, dropped


def format_p(p: float) -> str:
    """A p-value as a clinical paper prints it: ``p < 0.001`` below 0.001, else two digits."""
    if not np.isfinite(p):
        return "p not defined"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman's rho and its two-sided p (exact up to EXACT_SPEARMAN_MAX_N pairs)."""
    rho, p = sps.spearmanr(x, y)
    if x.size <= EXACT_SPEARMAN_MAX_N:
        rx = sps.rankdata(x)
        ry = sps.rankdata(y)
        ry = (ry - ry.mean()) / np.sqrt(((ry - ry.mean()) ** 2).sum())

        def rank_correlation(a, axis=-1):
            a = a - a.mean(axis=axis, keepdims=True)
            return (a * ry).sum(axis=axis) / np.sqrt((a * a).sum(axis=axis))

        # One sample reordered against the fixed other: every one of the n! pairings
        # (n_resamples=inf), not a random sample of them.
        p = sps.permutation_test((rx,), rank_correlation, permutation_type="pairings", vectorized=True,
                                 n_resamples=np.inf, alternative="two-sided").pvalue
    else:
        # Near |rho| = 1 the t approximation gives p = 0 or 1e-79: no p can be smaller than
        # that of the most extreme ordering. At least prod(t!) of the n! pairings are as extreme,
        # those that only reorder the tied values of x (or, as many, of y): the larger of the two,
        # so that swapping x and y gives the same p.
        ties = max(sum(math.lgamma(c + 1) for c in np.unique(v, return_counts=True)[1]) for v in (x, y))
        log_p = math.log(2.0) + ties - math.lgamma(x.size + 1)
        p = max(p, math.exp(log_p), np.finfo(float).tiny)
    return float(rho), float(p)


def lins_ccc(x, y, confidence: float = 0.95) -> tuple[float, float, float]:
    """Lin's concordance correlation coefficient and its CI (Fisher z, Lin's variance, n - 2).

    Returns
    -------
    (ccc, ci_low, ci_high)
    """
    confidence = _checked_confidence(confidence)
    x, y, _ = _pairs(x, y)
    n = x.size
    mx, my = x.mean(), y.mean()
    sx2, sy2 = x.var(), y.var()  # population (n) moments, as Lin (1989)
    sxy = ((x - mx) * (y - my)).mean()
    denom = sx2 + sy2 + (mx - my) ** 2
    rho_c = 2 * sxy / denom
    if abs(rho_c) >= 1.0 - 1e-12:
        edge = float(np.sign(rho_c))  # every pair on the line y = x (or y = 2 mean - x): no spread to estimate
        return edge, edge, edge
    r = sxy / np.sqrt(sx2 * sy2)
    # Lin's variance written with the bias correction factor C_b = rho_c / r (Lin 1989),
    # so that it holds at r = 0 too, where the published form divides 0 by 0.
    c_b = 2 * np.sqrt(sx2 * sy2) / denom
    u = (my - mx) / (sx2 * sy2) ** 0.25
    var_rho = (
        (1 - r**2) * c_b**2 * (1 - rho_c**2)
        + 2 * r**2 * c_b**3 * (1 - rho_c) * u**2
        - 0.5 * r**2 * c_b**4 * u**4
    ) / (n - 2)
    se_z = np.sqrt(max(var_rho, 0.0)) / (1 - rho_c**2)
    z = np.arctanh(rho_c)
    q = sps.norm.ppf(0.5 + confidence / 2)
    return float(rho_c), float(np.tanh(z - q * se_z)), float(np.tanh(z + q * se_z))


def bland_altman(x, y, confidence: float = 0.95, multiplier: float = 1.96) -> dict:
    """Bias, SD of the differences, limits of agreement and their CIs, proportional bias.

    Differences are x - y. ``multiplier`` is 1.96 for 95 % limits (Bland & Altman 1986 used 2).
    """
    confidence = _checked_confidence(confidence)
    x, y, _ = _pairs(x, y)
    n = x.size
    d = x - y
    mean_xy = (x + y) / 2
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    t = sps.t.ppf(0.5 + confidence / 2, n - 1)
    se_bias = sd / np.sqrt(n)
    se_limit = np.sqrt(3 * sd**2 / n)  # Bland & Altman 1999, section 2.4
    low, high = bias - multiplier * sd, bias + multiplier * sd
    # x + y the same in every pair (to rounding: 0.7 + 0.1 and 0.2 + 0.6): the means do not spread,
    # so no slope can be fitted on them.
    nan = float("nan")
    spread = np.ptp(mean_xy) > 1e-9 * np.abs(mean_xy).max()
    slope, intercept, _, p_slope, _ = sps.linregress(mean_xy, d) if spread else (nan, nan, 0, nan, 0)
    return {
        "ba_bias": bias, "ba_sd": sd,
        "ba_bias_ci_low": float(bias - t * se_bias), "ba_bias_ci_high": float(bias + t * se_bias),
        "ba_loa_low": float(low), "ba_loa_high": float(high),
        "ba_loa_low_ci_low": float(low - t * se_limit), "ba_loa_low_ci_high": float(low + t * se_limit),
        "ba_loa_high_ci_low": float(high - t * se_limit), "ba_loa_high_ci_high": float(high + t * se_limit),
        "ba_proportional_slope": float(slope), "ba_proportional_intercept": float(intercept),
        "ba_proportional_p": float(p_slope),
    }


@dataclass
class Agreement:
    """Agreement between two paired measurements (x against y)."""

    n: int
    n_dropped: int
    spearman_rho: float
    spearman_p: float
    pearson_r: float
    ccc: float
    ccc_ci_low: float
    ccc_ci_high: float
    ba_bias: float
    ba_sd: float
    ba_bias_ci_low: float
    ba_bias_ci_high: float
    ba_loa_low: float
    ba_loa_high: float
    ba_loa_low_ci_low: float
    ba_loa_low_ci_high: float
    ba_loa_high_ci_low: float
    ba_loa_high_ci_high: float
    ba_proportional_slope: float
    ba_proportional_intercept: float
    ba_proportional_p: float

    def to_dict(self) -> dict:
        return asdict(self)


def shared_unit(x_column: str, y_column: str) -> str:
    """The unit both columns carry in their names ("mm²" for area_mm2, "mm" for long_axis_mm,
    "HU" for peak_hu), else "": a column's unit is in its name, and two columns of different
    units, or of none, get no unit on their statistics or plot."""
    for tail, unit in (("_mm2", "mm²"), ("_mm", "mm"), ("_hu", "HU")):
        if str(x_column).lower().endswith(tail) and str(y_column).lower().endswith(tail):
            return unit
    return ""


def agreement(x, y, confidence: float = 0.95, *, x_label: str = "x", y_label: str = "y") -> Agreement:
    """All the paper's agreement statistics for paired measurements ``x`` and ``y``.

    Pairs with a missing (NaN) value are dropped and counted in ``n_dropped``; fewer than 3
    complete pairs, or a measurement with the same value in every pair, raise
    :class:`CalcinosisError` (naming ``x_label`` or ``y_label``).
    """
    xs, ys, dropped = _pairs(x, y, x_label, y_label)
    rho, p = _spearman(xs, ys)
    pearson = float(np.corrcoef(xs, ys)[0, 1])
    ccc, lo, hi = lins_ccc(xs, ys, confidence)
    return Agreement(n=int(xs.size), n_dropped=dropped, spearman_rho=rho, spearman_p=p, pearson_r=pearson,
                     ccc=ccc, ccc_ci_low=lo, ccc_ci_high=hi, **bland_altman(xs, ys, confidence))


# TRUE as spreadsheets in other languages save it (German, French, Spanish, Italian, Dutch,
# Portuguese, Swedish, Danish/Norwegian, Polish), with "yes" as the Measure table shows it.
_TRUE_WORDS = ("true", "yes", "wahr", "vrai", "verdadero", "vero", "waar", "verdadeiro", "sant", "sand", "sann",
               "prawda")


def _is_true(value) -> bool:
    """A flag as a table holds it: ``True`` (or a spreadsheet's word for it in another language:
    ``WAHR``, ``VRAI``, ...), ``yes``, or the number 1 (``1.0`` where a column of flags with gaps
    was saved as numbers)."""
    text = str(value).strip().lower()
    if text in _TRUE_WORDS:
        return True
    try:
        return float(text) == 1.0
    except ValueError:
        return False


def agreement_without(x, y, flags, *, x_label: str = "x", y_label: str = "y"):
    """The agreement of ``x`` and ``y`` without the pairs whose flag is true (``True`` as a CSV
    holds it, ``TRUE`` as a spreadsheet saves it, ``yes``, ``1`` or ``1.0`` count): with a
    table's ``near_resolution``, the deposits too narrow for their areas to be trusted, so that
    a reader sees how much of the disagreement they make. Returns
    ``(Agreement, n_left_out)`` where complete pairs were flagged and at least 3 remain, else None
    (also for ``flags`` None: a table without the column)."""
    if flags is None:
        return None
    flagged = np.array([_is_true(value) for value in flags], bool)
    xs = _as_numbers(x, x_label)
    ys = _as_numbers(y, y_label)
    if not flagged.any() or flagged.shape != xs.shape:
        return None
    complete = np.isfinite(xs) & np.isfinite(ys)
    left_out = int((flagged & complete).sum())
    if not left_out or (complete & ~flagged).sum() < 3:
        return None
    try:
        return agreement(xs[~flagged], ys[~flagged], x_label=x_label, y_label=y_label), left_out
    except CalcinosisError:  # the rest alike in every pair: nothing to say of them
        return None


# Words a spreadsheet, R or SPSS writes for a value that is missing (Excel's VLOOKUP gives #N/A
# for an ID it did not find): such a cell leaves its pair out, as an empty one does, counted apart.
MISSING_WORDS = ("na", "n/a", "n.a.", "#n/a", "nan", "null", "none", "<na>")

# Why a table's pair was left out, as said after its count.
DROPPED_REASONS = {
    "empty": "with an empty cell",
    "marked_missing": "with a cell marked missing",
    "not_measured": "of an image that could not be measured (status error)",
}


def _is_missing_word(value) -> bool:
    return isinstance(value, str) and value.strip().lower() in MISSING_WORDS


def _is_blank(value) -> bool:
    """An empty cell: None, NaN, pandas' NA (a nullable integer column's gap), or only spaces."""
    import pandas as pd

    if isinstance(value, str):
        return not value.strip()
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _cell_place(source, row: int) -> str:
    """Where a table's row ``row`` is: its line in the CSV file ``source``, or its row of a layer's table."""
    from .io import file_line

    return f"line {file_line(source, row)}" if source is not None else f"row {row + 1}"


def _is_flag_column(cells) -> bool:
    import pandas as pd

    filled = cells[~cells.map(_is_blank)]
    return bool(len(filled)) and (pd.api.types.is_bool_dtype(filled) or filled.map(
        lambda v: isinstance(v, (bool, np.bool_)) or str(v).strip().lower() in ("true", "false")).all())


def measurement_columns(table) -> list[str]:
    """The columns of ``table`` that hold measurements: some numbers (a cell that is not one is
    refused where the column is used, naming it), not identifiers (``lesion_id``) nor yes/no flags
    (``hu_clipped``)."""
    import pandas as pd

    names = []
    for name in table.columns:
        cells = table[name]
        if str(name) == "index" or str(name).endswith("_id") or _is_flag_column(cells):
            continue
        if pd.to_numeric(cells.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce").notna().any():
            names.append(str(name))
    return names


def measurement_column(table, column: str, source=None):
    """Column ``column`` of ``table`` (a CSV read by :func:`io.read_csv_or_refuse`, its path
    ``source``; or a layer's table, ``source`` None) as numbers, with the cells that are a word
    for a missing value (:data:`MISSING_WORDS`) marked: ``(values, marked)``, two Series on the
    table's index. Empty cells and those words become NaN; any other cell that is not a number
    is refused, named with its line (or row)."""
    import pandas as pd

    from .io import thousands_ambiguity

    of = f" of {source}" if source is not None else ""
    ambiguous = table.attrs.get("thousands_ambiguous", {}).get(column)
    if ambiguous is not None:
        raise CalcinosisError(thousands_ambiguity(f"column {column!r}{of}", _cell_place(source, ambiguous),
                                                  table[column].iloc[ambiguous]))
    cells = table[column]
    if _is_flag_column(cells):
        raise CalcinosisError(f"column {column!r}{of} holds flags (True/False), not measurements: choose a "
                              "column of measurements")
    marked = cells.map(_is_missing_word).astype(bool)
    blank = cells.map(_is_blank).astype(bool)
    values = pd.to_numeric(cells.where(~(marked | blank)).map(lambda v: v.strip() if isinstance(v, str) else v),
                           errors="coerce").astype(float)
    bad = np.flatnonzero(((values.isna() & ~marked & ~blank) | np.isinf(values)).to_numpy())
    if bad.size == 0:
        return values, marked
    if bad.size == (~marked & ~blank).sum():
        numeric = measurement_columns(table)
        raise CalcinosisError(
            f"column {column!r}{of} holds no numbers ({_cell_place(source, int(bad[0]))}: "
            f"{cells.iloc[bad[0]]!r}): choose a column of measurements"
            + (f"; the numeric columns are: {', '.join(numeric)}" if numeric else "")
        )
    shown_cells = [str(cells.iloc[i]) for i in bad]
    shown = ", ".join(f"{_cell_place(source, int(i))}: {cell!r}" for i, cell in zip(bad[:3], shown_cells))
    more = f" and {bad.size - 3} more" if bad.size > 3 else ""
    comma = "; write decimals with a point, not a comma" if any("," in cell for cell in shown_cells) else ""
    raise CalcinosisError(
        f"column {column!r}{of} has {bad.size} cell(s) that are not numbers ({shown}{more}): correct them, "
        f"or empty them to leave those rows out{comma}"
    )


@dataclass
class TablePairs:
    """Two columns of a table paired for :func:`agreement`, and what was left out and why."""

    x: object  # pandas Series of floats, NaN where the pair is dropped
    y: object
    near_resolution: object  # the table's near_resolution flags for those rows, or None
    dropped: dict  # DROPPED_REASONS key -> number of pairs
    missing_words: list  # the words for a missing value met in the pairs dropped, as written
    duplicate_seeds: int  # rows left out: a second seed on a deposit an earlier row measured

    def dropped_text(self) -> str:
        """``1 with an empty cell dropped``, ``3 dropped: 1 with an empty cell, 2 with a cell
        marked missing ('NA')``, ``none dropped``."""
        parts = []
        for reason, count in self.dropped.items():
            if count:
                words = f" ({', '.join(map(repr, self.missing_words))})" if reason == "marked_missing" else ""
                parts.append(f"{count} {DROPPED_REASONS[reason]}{words}")
        if not parts:
            return "none dropped"
        if len(parts) == 1:
            return f"{parts[0]} dropped"
        return f"{sum(self.dropped.values())} dropped: {', '.join(parts)}"

    def duplicate_text(self) -> str:
        """What the rows of a second seed on a measured deposit are, and that they are left out; "" for none."""
        if not self.duplicate_seeds:
            return ""
        return (f"{self.duplicate_seeds} duplicate_seed row(s) left out: a second seed on a deposit that an earlier "
                "seed's row measured; its area repeats that row's, and would count the deposit twice")


def table_pairs(table, x_column: str, y_column: str, source=None) -> TablePairs:
    """Columns ``x_column`` and ``y_column`` of ``table`` (see :func:`measurement_column`) paired
    for :func:`agreement`. In a ``quantify`` table (a ``status`` column) the rows of a second
    seed on a deposit (``duplicate_seed``) are left out: they repeat the area of an earlier
    row, and would count that deposit twice. Each pair dropped for a missing value is counted by
    why: an empty cell, a cell marked missing, an image that could not be measured."""
    import pandas as pd

    x, x_marked = measurement_column(table, x_column, source)
    y, y_marked = measurement_column(table, y_column, source)
    status = table["status"].astype(str).str.strip() if "status" in table.columns else None
    keep = status != "duplicate_seed" if status is not None else pd.Series(True, index=x.index)
    incomplete = (x.isna() | y.isna()) & keep
    failed = incomplete & (status.str.startswith("error") if status is not None else False)
    marked = incomplete & ~failed & (x_marked | y_marked)
    words = list(dict.fromkeys(
        str(table[c].loc[i]).strip() for c, m in ((x_column, x_marked), (y_column, y_marked)) for i in m[marked].index
        if m.loc[i]))
    flags = table["near_resolution"][keep] if "near_resolution" in table.columns else None
    return TablePairs(
        x=x[keep], y=y[keep], near_resolution=flags,
        dropped={"empty": int((incomplete & ~failed & ~marked).sum()), "marked_missing": int(marked.sum()),
                 "not_measured": int(failed.sum())},
        missing_words=words, duplicate_seeds=int((~keep).sum()))


def check_plot_path(path) -> None:
    """Refuse, before any work, a plot file whose suffix names no format we write."""
    if Path(path).suffix.lower() not in PLOT_SUFFIXES:
        raise CalcinosisError(
            f"cannot write a plot to {path}: its name must end in one of {', '.join(PLOT_SUFFIXES)} (the suffix picks "
            "the format)"
        )
    if not Path(path).parent.is_dir():
        raise CalcinosisError(f"cannot write a plot to {path}: the folder {Path(path).parent} does not exist")


def plot_agreement(x, y, path=None, *, x_label: str = "x", y_label: str = "y", unit: str = "mm²", figure=None,
                   stacked: bool = False):
    """Scatter with the identity line (CCC in the legend) beside a Bland-Altman plot.

    Draws into ``figure`` when given (e.g. a napari dock's canvas), else a new one; saves to
    ``path`` (by its suffix, one of :data:`PLOT_SUFFIXES`) when given; returns the matplotlib Figure.
    ``stacked``: the Bland-Altman plot below the scatter instead of beside it (a narrow dock).
    """
    if path is not None:
        check_plot_path(path)
    xs, ys, _ = _pairs(x, y, x_label, y_label)
    a = agreement(xs, ys, x_label=x_label, y_label=y_label)
    if figure is None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(11, 4.8))
    fig = figure
    fig.clear()
    ax1, ax2 = fig.subplots(2, 1) if stacked else fig.subplots(1, 2)
    lim = [min(xs.min(), ys.min()), max(xs.max(), ys.max())]
    pad = 0.05 * (lim[1] - lim[0] or 1.0)
    lim = [lim[0] - pad, lim[1] + pad]
    ax1.plot(lim, lim, "k--", lw=1, label="identity")
    ax1.scatter(xs, ys, s=18, alpha=0.8,
                label=f"CCC {a.ccc:.3f} (95 % CI {a.ccc_ci_low:.3f}–{a.ccc_ci_high:.3f})\nSpearman ρ {a.spearman_rho:.3f}, n = {a.n}")
    ax1.set_xlim(lim)
    ax1.set_ylim(lim)
    ax1.set_aspect("equal")
    ax1.set_xlabel(f"{x_label} ({unit})" if unit else x_label)
    ax1.set_ylabel(f"{y_label} ({unit})" if unit else y_label)
    ax1.legend(loc="upper left", fontsize=8)
    mean_xy, diff = (xs + ys) / 2, xs - ys
    ax2.scatter(mean_xy, diff, s=18, alpha=0.8)
    for value, style, text in ((a.ba_bias, "-", "bias"), (a.ba_loa_low, "--", "−1.96 SD"), (a.ba_loa_high, "--", "+1.96 SD")):
        ax2.axhline(value, color="tab:red", ls=style, lw=1)
        ax2.annotate(f"{text} {value:.2f}", (1.0, value), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                     fontsize=8, color="tab:red")
    ax2.set_xlabel(f"mean of {x_label} and {y_label}" + (f" ({unit})" if unit else ""))
    ax2.set_ylabel(f"{x_label} − {y_label}" + (f" ({unit})" if unit else ""))
    ax2.set_title("Bland-Altman")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
