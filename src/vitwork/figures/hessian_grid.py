"""Claim 7 with claim 3: Hessian flatness and non-convexity across an optimizer grid (learning rate x weight decay).

One row of panels per (model, optimizer recipe[, fraction]) and three columns, each a heatmap over lr (x) and
weight decay (y) with its own colour scale shared down the column:
(a) the largest eigenvalue, the median over batches of `which == "largest"` (log colour scale when all positive);
(b) the fraction of negative eigenvalues among each batch's top-k by magnitude (`which == "top_magnitude"`,
    finite values);
(c) the mean Hutchinson trace over batches (`which == "trace"`).
A cell is the mean over its finished seeds, drawn by `optimizer_grid.draw_panel`: a cell whose every seed
diverged is hatched with an "×" (its Hessian numbers, where its checkpoint was reached, are still in the CSV), a
cell with some diverged seeds says how many, a setting that was not run is blank, and "n/a" marks finished runs
without a value (e.g. no trace probes). The CSV has one row per run: its identity, grid coordinates, status, final test
accuracy (%), ``largest_median``, ``fraction_negative``, ``trace_mean``, ``n_batches`` and ``n_unconverged``
(eigen-solve rows with ``converged`` false).
"""

from __future__ import annotations

from typing import Sequence

from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from vitwork.figures import optimizer_grid
from vitwork.figures.analysis_tables import (
    IDENTITY_COLUMNS, RunTable, cell_bool, identity_sort_key, load_tables, run_identity,
)
from vitwork.figures.hessian_spectra import median_largest, trace_mean, which_stats
from vitwork.figures.style import empty_figure, format_number, new_figure, save_figure, style_context
from vitwork.results import group_by, percent

METRICS = ("largest_median", "fraction_negative", "trace_mean")
METRIC_LABELS = {
    "largest_median": "$\\lambda_\\max$ (median over batches)",
    "fraction_negative": "Negative fraction (top-k by magnitude)",
    "trace_mean": "Trace (Hutchinson, mean over batches)",
}
METRIC_TITLES = {"largest_median": "$\\lambda_\\max$", "fraction_negative": "negative fraction",
                 "trace_mean": "trace"}
COLUMNS = IDENTITY_COLUMNS + ("test_acc_pct",) + METRICS + ("n_batches", "n_unconverged")


def run_row(item: RunTable) -> dict:
    """One run's identity, grid coordinates, final test accuracy and Hessian summary numbers."""
    run, rows = item.run, item.rows or []
    optimizer_grid.require_grid_coordinates(run, "hessian_grid")
    top = which_stats(rows, "top_magnitude")
    return {
        **run_identity(run, item.path), "test_acc_pct": percent(run.final_metric("test_acc")),
        "largest_median": median_largest(rows), "fraction_negative": top["fraction_negative"],
        "trace_mean": trace_mean(rows), "n_batches": len({row["batch"] for row in rows}),
        "n_unconverged": sum(not cell_bool(row["converged"]) for row in rows if row["which"] != "trace"),
    }


def table(runs, tables: Sequence) -> list[dict]:
    """One row per run, ordered by model, optimizer, fraction, lr, weight decay, seed."""
    return sorted((run_row(item) for item in load_tables(runs, tables)), key=identity_sort_key)


def metric_norm(rows: Sequence[dict], metric: str) -> Normalize:
    """One colour scale per metric: [0, 1] for the fraction, log for positive eigenvalues/traces spanning > 10x."""
    if metric == "fraction_negative":
        return Normalize(0.0, 1.0)
    values = optimizer_grid.finished_values(rows, metric)
    if values and min(values) > 0 and max(values) / min(values) > 10:
        return LogNorm(min(values), max(values))
    return optimizer_grid.range_norm(values)


def significant_text(value: float) -> str:
    """A Hessian number as written in a cell: 3 significant digits."""
    return format_number(float(f"{value:.3g}"))


def plot(rows: Sequence[dict]) -> Figure:
    """Rows: (model, optimizer[, fraction]); columns: largest eigenvalue, negative fraction, trace."""
    with style_context():
        if not rows:
            return empty_figure("no runs")
        panels = group_by(rows, lambda row: (row["model"], row["optimizer"], row["fraction"]))
        several_fractions = len({row["fraction"] for row in rows}) > 1
        fig, axes = new_figure(len(panels), len(METRICS), panel_size=(3.0, 2.5))
        for c, metric in enumerate(METRICS):
            norm = metric_norm(rows, metric)
            image = None
            for r, panel in enumerate(panels.values()):
                title = f"{optimizer_grid.panel_title(panel[0], several_fractions)} · {METRIC_TITLES[metric]}"
                image = optimizer_grid.draw_panel(axes[r, c], panel, norm, title, metric, significant_text)
            bar = fig.colorbar(image, ax=axes[:, c], label=METRIC_LABELS[metric], shrink=0.9, location="bottom")
            bar.ax.xaxis.set_minor_formatter(NullFormatter())  # log scales: label decades only
        return fig


def make(runs, tables, out_png, out_pdf, out_csv) -> list[dict]:
    """Table from runs and their Hessian CSVs (parallel lists), drawn and saved as PNG + PDF + CSV; returns rows."""
    rows = table(runs, tables)
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
