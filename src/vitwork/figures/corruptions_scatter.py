"""Claim 6: clean accuracy vs. robustness on the corrupted test sets (the paper's Fig. 12, centre).

One marker per (model, training fraction) at the mean over finished seeds, with std error bars on both axes
when there are several seeds; colour and marker per model (family colour), each point labelled. Robustness is
the mean accuracy over the corrupted sets (`vitwork.figures.corruption_tables`). The CSV has one row per run.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from matplotlib.figure import Figure

from vitwork.figures.analysis_tables import IDENTITY_COLUMNS
from vitwork.figures.corruption_tables import (
    SCORE_COLUMNS, load_selection, mean_point, require_one_setting_per, score_labels, score_rows,
)
from vitwork.figures.style import empty_figure, format_number, model_styles, new_figure, save_figure, style_context
from vitwork.results import group_by

COLUMNS = IDENTITY_COLUMNS + SCORE_COLUMNS


def table(selection: Iterable) -> list[dict]:
    """One row per run (identity, clean accuracy, robustness); one setting per (model, fraction)."""
    selection = list(selection)
    require_one_setting_per(selection, lambda run: (run.model_name, run.fraction),
                            "corruptions_scatter: model, fraction")
    return score_rows(selection)


def point_label(row: dict, several_fractions: bool) -> str:
    """A point's text: the model label, with the training fraction when the figure has several."""
    return row["model_label"] + (f" ({format_number(100 * row['fraction'])}%)" if several_fractions else "")


def plot(rows: Sequence[dict]) -> Figure:
    """Robustness (y) against clean accuracy (x), one labelled marker per (model, fraction)."""
    with style_context():
        points = [(group[0], mean_point(group))
                  for group in group_by(rows, lambda row: (row["model"], row["fraction"])).values()]
        points = [(first, point) for first, point in points if point is not None]
        if not points:
            return empty_figure("no finished runs")
        styles = model_styles((first["model"], first["family"]) for first, _ in points)
        several_fractions = len({first["fraction"] for first, _ in points}) > 1
        fig, axes = new_figure(1, 1, panel_size=(4.2, 3.4))
        ax = axes[0, 0]
        for first, point in points:
            x, y = point["clean_acc_pct"], point["robustness_pct"]
            ax.errorbar([x], [y], xerr=point["clean_acc_std"], yerr=point["robustness_std"], capsize=2,
                        linestyle="none", **styles[first["model"]])
            ax.annotate(point_label(first, several_fractions), (x, y), xytext=(4, 3), textcoords="offset points",
                        fontsize=7, color=styles[first["model"]]["color"])
        ax.margins(0.15)
        labels = score_labels(rows)
        ax.set_xlabel(labels["clean_acc_pct"])
        ax.set_ylabel(labels["robustness_pct"])
        ax.set_title("Accuracy vs. robustness")
        return fig


def make(runs, tables, out_png, out_pdf, out_csv) -> list[dict]:
    """Read runs and their corruption tables (parallel lists), draw, save PNG + PDF + CSV; returns rows."""
    rows = table(load_selection(runs, tables))
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
