"""Claim 6 on small data: clean accuracy and robustness of AlterNet, ResNet and ViT against the training fraction.

Two panels (clean accuracy, robustness = mean accuracy over the corrupted sets) against the training-set fraction
on a log axis, one line per model at the mean over finished seeds (std error bars), as in the data-size figure.
The CSV has one row per run.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from matplotlib.figure import Figure

from vitwork.figures.analysis_tables import IDENTITY_COLUMNS, RunTable
from vitwork.figures.corruption_tables import (
    SCORE_COLUMNS, SCORE_PANELS, load_selection, require_one_setting_per, score_labels, score_rows,
)
from vitwork.figures.data_size import plot_fraction_curves
from vitwork.figures.style import save_figure

COLUMNS = IDENTITY_COLUMNS + SCORE_COLUMNS


def table(selection: Iterable[RunTable]) -> list[dict]:
    """One row per run (identity incl. fraction, clean accuracy, robustness); one setting per (model, fraction)."""
    selection = list(selection)
    require_one_setting_per(selection, lambda run: (run.model_name, run.fraction),
                            "corruptions_small_data: model, fraction")
    return score_rows(selection)


def plot(rows: Sequence[dict]) -> Figure:
    """Clean accuracy and robustness vs training fraction (log x), one line per model."""
    labels = score_labels(rows)
    return plot_fraction_curves(rows, [(metric, title, labels[metric]) for metric, title in SCORE_PANELS])


def make(runs, tables, out_png, out_pdf, out_csv) -> list[dict]:
    """Read runs and their corruption tables (parallel lists), draw, save PNG + PDF + CSV; returns rows."""
    rows = table(load_selection(runs, tables))
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
