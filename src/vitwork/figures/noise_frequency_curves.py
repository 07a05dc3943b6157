"""Claim 5 (robustness side): accuracy change under band-passed noise vs the noise frequency, one line per run.

The `noise_frequency` analysis adds sign noise kept to the square band ``|ω|∞ ∈ [f - 0.2, f + 0.2]`` rad and
reports top-1 accuracy per frequency f = 0.1π .. 0.9π. Drawn: ``acc - clean_acc`` in percentage points
against f in units of π, one line per run (colour per model family, shaded within a family, line style per
optimizer recipe) and a zero line. Claim 5 predicts ResNet's curve falling far below zero at high f and ViT's
staying close to it. The CSV has one row per (run, frequency), accuracies both as fractions (``*_fraction``)
and in percent / percentage points (``*_pct``, ``delta_acc_pp``).
"""

from __future__ import annotations

import math
import os
from typing import Iterable, Sequence

from matplotlib.figure import Figure

from vitwork.figures.analysis_tables import (
    IDENTITY_COLUMNS, distinct_labels, identity_tables, line_label, read_analysis_table,
)
from vitwork.figures.style import (
    empty_figure, format_number, model_styles, new_figure, optimizer_linestyles, save_figure, style_context,
)
from vitwork.results import group_by

NOISE_TYPES = {"frequency": float, "acc": float, "clean_acc": float, "delta_acc": float}
COLUMNS = (*IDENTITY_COLUMNS, "frequency", "frequency_pi", "acc_fraction", "clean_acc_fraction",
           "delta_acc_fraction", "acc_pct", "clean_acc_pct", "delta_acc_pp")
FRACTION_TOLERANCE = 1e-9


def _check_fractions(row: dict, where: str) -> None:
    """Accuracies must be fractions in [0, 1], so a table written in percent fails instead of plotting 100x off."""
    for key in ("acc", "clean_acc"):
        if not -FRACTION_TOLERANCE <= row[key] <= 1 + FRACTION_TOLERANCE:
            raise ValueError(f"{where}: {key}={row[key]!r} is not a fraction in [0, 1]")


def read_noise_table(path: str | os.PathLike) -> list[dict]:
    """A `noise_frequency` table's typed rows, its accuracies checked to be fractions."""
    points = read_analysis_table(path, NOISE_TYPES)
    for point in points:
        _check_fractions(point, str(path))
    return points


def curve_rows(identity: dict, points: Iterable[dict]) -> list[dict]:
    """One run's accuracy per noise frequency (by frequency), as fractions and in percent / percentage points."""
    return [{
        **identity, "frequency": point["frequency"], "frequency_pi": point["frequency"] / math.pi,
        "acc_fraction": point["acc"], "clean_acc_fraction": point["clean_acc"],
        "delta_acc_fraction": point["delta_acc"], "acc_pct": 100.0 * point["acc"],
        "clean_acc_pct": 100.0 * point["clean_acc"], "delta_acc_pp": 100.0 * point["delta_acc"],
    } for point in sorted(points, key=lambda p: p["frequency"])]


def table(runs: Iterable, tables: Iterable[str | os.PathLike]) -> list[dict]:
    """One row per (run, noise frequency), runs in figure order."""
    pairs = identity_tables(runs, tables, read=read_noise_table)
    return [row for identity, points in pairs if points is not None for row in curve_rows(identity, points)]


def plot(rows: Sequence[dict]) -> Figure:
    """Accuracy change (percentage points) vs noise frequency (×π), one line per run, with a zero line."""
    with style_context():
        if not rows:
            return empty_figure("no runs")
        styles = model_styles((row["model"], row["family"]) for row in rows)
        linestyles = optimizer_linestyles(row["optimizer"] for row in rows)
        curves = list(group_by(rows, lambda row: row["run_id"]).values())
        fig, axes = new_figure()
        ax = axes[0, 0]
        ax.axhline(0.0, color="0.3", linewidth=0.8, zorder=1)
        for curve, label in zip(curves, distinct_labels([curve[0] for curve in curves])):
            first = curve[0]
            ax.plot([row["frequency_pi"] for row in curve], [row["delta_acc_pp"] for row in curve],
                    linestyle=linestyles[first["optimizer"]], label=line_label(label, curve),
                    **styles[first["model"]])
        ticks = sorted({round(row["frequency_pi"], 6) for row in rows})
        ax.set_xticks(ticks, [format_number(tick) for tick in ticks])
        ax.set_xlabel("Noise frequency (×π rad/pixel)")
        ax.set_ylabel("Accuracy change (percentage points)")
        ax.legend()
        return fig


def make(runs, tables, out_png, out_pdf, out_csv) -> list[dict]:
    """Read the runs and their `noise_frequency` tables, draw the curves, save PNG + PDF + CSV; returns the rows."""
    rows = table(runs, tables)
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
