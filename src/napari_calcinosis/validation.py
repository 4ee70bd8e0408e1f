"""The paper's validation study, replayed on phantoms with exact truth.

Chandrasekaran et al. 2021 compared, on 31 test images, a radiologist's ellipse estimate
(long axis/2 x short axis/2 x pi) with a second radiologist's and with the computer vision
area. Here the truth is known, so each of them is also compared with it:

- the pipeline: bundled U-Net, bone subtraction, growth from a seed inside each deposit;
- two simulated radiologists: each measures the true deposit's maximal long axis and its
  perpendicular short axis with reader error, and reports the ellipse area.

Reader error model (documented, not tuned): each axis is read as
``true_axis x (1 + e_rel) + e_abs`` with ``e_rel ~ N(0, 0.08)`` (8 % relative calliper
variability between readers) and ``e_abs ~ N(0, 0.25 mm)`` (about one pixel of placement at
0.15-0.35 mm), independently per reader, axis and deposit, floored at one pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._errors import CalcinosisError
from .io import atomic_output
from .measure import feret_axes_mm
from .stats import agreement, plot_agreement

__all__ = ["run_validation", "report_paths", "check_study", "PAPER_RESULTS", "READER_RELATIVE_SD",
           "READER_ABSOLUTE_SD_MM", "MIN_PHANTOMS"]

READER_RELATIVE_SD = 0.08
READER_ABSOLUTE_SD_MM = 0.25

# Chandrasekaran et al. 2021, Results (31 test images).
PAPER_RESULTS = {
    "radiologist 1 vs radiologist 2": dict(spearman_rho=0.91, ccc=0.91, ccc_ci=(0.85, 0.98), bias=-0.5, loa=(-10.0, 9.0)),
    "radiologist 1 vs pipeline": dict(spearman_rho=0.94, ccc=0.95, ccc_ci=(0.91, 0.99), bias=-1.7, loa=(-6.0, 9.5)),
}

# Agreement needs 3 pairs and a phantom is drawn with at least one deposit, so 3 phantoms give them
# (run_validation still checks the deposits it got: placing one can fail on a crowded finger).
MIN_PHANTOMS = 3

COMPARISONS = [
    ("radiologist 1 vs radiologist 2", "radiologist1_mm2", "radiologist2_mm2"),
    ("radiologist 1 vs pipeline", "radiologist1_mm2", "pipeline_mm2"),
    ("pipeline vs truth", "pipeline_mm2", "true_mm2"),
    ("radiologist 1 vs truth", "radiologist1_mm2", "true_mm2"),
    ("radiologist 2 vs truth", "radiologist2_mm2", "true_mm2"),
]


def _reader(long_mm, short_mm, rng, pixel_mm):
    def read(axis):
        value = axis * (1 + rng.normal(0, READER_RELATIVE_SD)) + rng.normal(0, READER_ABSOLUTE_SD_MM)
        return max(value, pixel_mm)

    long_read, short_read = read(long_mm), read(short_mm)
    long_read, short_read = max(long_read, short_read), min(long_read, short_read)
    return np.pi * long_read / 2 * short_read / 2


def _count(n: int, noun: str) -> str:
    """``1 image``, ``10 images``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def check_study(n: int, seed: int) -> None:
    """Refuse, before any phantom is made, a study too small to compare or with a negative seed."""
    if n < MIN_PHANTOMS:
        raise CalcinosisError(
            f"the validation study needs at least {MIN_PHANTOMS} phantoms, so that agreement has 3 deposits to "
            f"compare (got {n}; the paper had 31 test images)"
        )
    if seed < 0:
        raise CalcinosisError(f"the phantom seed must be 0 or more: phantoms are seeds SEED..SEED+n-1 (got {seed})")


def run_validation(n: int = 31, seed: int = 3_000_000, out_dir=None, *, model=None, device: str = "auto", progress=None) -> dict:
    """Replay the study on ``n`` phantoms (seeds ``seed .. seed + n - 1``); write a report.

    Returns a dict with the per-lesion table (``lesions``) and the statistics of each comparison
    (``stats``: name -> Agreement). With ``out_dir``, writes ``lesions.csv``, ``report.md`` and one
    plot per comparison there.
    """
    from .phantom import make_phantom
    from .pipeline import quantify
    from .segment import load_model

    check_study(n, seed)
    model = model if model is not None else load_model(None, device=device)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        p = make_phantom(seed + i)
        result = quantify(p.to_image(), p.seeds, model=model, device=device)
        pixel_mm = p.spacing_mm[0]
        for j in range(p.n_lesions):
            mask = p.lesion_labels == j + 1
            long_mm, short_mm = feret_axes_mm(mask, p.spacing_mm)
            row = result.table.iloc[j]
            rows.append(dict(
                phantom_seed=p.seed, lesion_id=j + 1, site=p.lesion_sites[j], cut_off=p.cut_off,
                true_mm2=p.lesion_areas_mm2[j], pipeline_mm2=float(row["area_mm2"]), pipeline_status=row["status"],
                radiologist1_mm2=_reader(long_mm, short_mm, rng, pixel_mm),
                radiologist2_mm2=_reader(long_mm, short_mm, rng, pixel_mm),
            ))
        if progress:
            progress(i + 1, n)
    lesions = pd.DataFrame(rows)
    if len(lesions) < 3:
        raise CalcinosisError(
            f"the {n} phantoms hold only {len(lesions)} deposit(s) and agreement needs at least 3: "
            "use more phantoms (the paper had 31 test images)"
        )
    stats = {name: agreement(lesions[x], lesions[y], x_label=x, y_label=y) for name, x, y in COMPARISONS}
    if out_dir is not None:
        _write_report(Path(out_dir), lesions, stats, n, seed)
    return {"lesions": lesions, "stats": stats}


def _plot_name(comparison: str) -> str:
    return f"{comparison.replace(' ', '_')}.png"


def report_paths(out_dir) -> list[Path]:
    """The files :func:`run_validation` writes into ``out_dir``."""
    out = Path(out_dir)
    return [out / "lesions.csv", out / "report.md"] + [out / _plot_name(name) for name, _, _ in COMPARISONS]


def _write_report(out: Path, lesions: pd.DataFrame, stats: dict, n: int, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "lesions.csv") as temporary:
        lesions.to_csv(temporary, index=False)
    lines = [
        "# Validation study on phantoms",
        "",
        f"{n} phantoms (seeds {seed}-{seed + n - 1}), {len(lesions)} deposits of "
        f"{lesions.true_mm2.min():.2f}-{lesions.true_mm2.max():.1f} mm^2, "
        f"{_count(int(lesions.groupby('phantom_seed').cut_off.first().sum()), 'image')} with a phalanx cut off. "
        f"Pipeline seeds failing: {int((lesions.pipeline_status != 'ok').sum())}.",
        "",
        "Simulated radiologists read each deposit's long and perpendicular short axis with "
        f"{READER_RELATIVE_SD:.0%} relative and {READER_ABSOLUTE_SD_MM} mm absolute error per axis and report the ellipse area.",
        "",
        "| comparison (x vs y) | n | Spearman rho | Lin's CCC (95 % CI) | bias x - y (mm^2) | 95 % limits of agreement (mm^2) | paper |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, x, y in COMPARISONS:
        a = stats[name]
        paper = PAPER_RESULTS.get(name)
        paper_text = (
            f"rho {paper['spearman_rho']}, CCC {paper['ccc']} ({paper['ccc_ci'][0]}-{paper['ccc_ci'][1]}), "
            f"bias {paper['bias']}, LoA {paper['loa'][0]} to {paper['loa'][1]}" if paper else "(no truth in the paper)"
        )
        lines.append(
            f"| {name} | {a.n} | {a.spearman_rho:.3f} | {a.ccc:.3f} ({a.ccc_ci_low:.3f}-{a.ccc_ci_high:.3f}) | "
            f"{a.ba_bias:.2f} | {a.ba_loa_low:.2f} to {a.ba_loa_high:.2f} | {paper_text} |"
        )
        with atomic_output(out / _plot_name(name)) as temporary:
            plot_agreement(lesions[x], lesions[y], temporary, x_label=x.replace("_mm2", ""), y_label=y.replace("_mm2", ""))
    lines.append("")
    lines += [f"![{name}]({_plot_name(name)})" for name, _, _ in COMPARISONS]
    with atomic_output(out / "report.md") as temporary:
        temporary.write_text("\n".join(lines) + "\n")
