"""Claim 7 with claim 3: Hessian flatness and non-convexity across an optimizer grid (learning rate x weight decay).

One row of panels per (model, optimizer recipe[, fraction]) and three columns, each a heatmap over lr (x) and
weight decay (y) with its own colour scale shared down the column:
(a) the largest eigenvalue, the median over batches of `which == "largest"` (log colour scale when all positive);
(b) the fraction of negative eigenvalues among each batch's top-k by magnitude (`which == "top_magnitude"`,
    finite values);
(c) the mean Hutchinson trace over batches (`which == "trace"`).
By default (option ``loss: nll``) the numbers are the NLL part's Hessian: the weight-decay term adds exactly wd to
every eigenvalue and ``wd * n_decayed`` to the trace under the default decay set, i.e. it would colour the cells
by their own y coordinate, and AdamW's decoupled decay is not the gradient of that term (Adam's preconditioner
does not scale it), so only the NLL part compares like with like across the optimizers; ``loss: objective``
draws the objective's. The title line says which, and the checkpoint's epoch.
A cell is the mean over its finished seeds, drawn by `optimizer_grid.draw_panel`: a cell whose every seed
diverged is hatched with an "×" (its Hessian numbers, where its checkpoint was reached, are still in the CSV), a
cell with some diverged seeds says how many, a setting that was not run is blank, and "n/a" marks finished runs
without a value (e.g. no trace probes). The CSV has one row per run: its identity, ``checkpoint_epoch``,
``loss_part`` (the part drawn), grid coordinates, status, final test accuracy (%), ``largest_median``,
``fraction_negative``, ``trace_mean``, ``regulariser_trace_mean`` (the weight-decay term's exact trace),
``n_batches`` and ``n_unconverged`` (eigen-solve rows with ``converged`` false).
"""

from __future__ import annotations

from typing import Sequence

from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from vitwork.figures import optimizer_grid
from vitwork.figures.analysis_tables import (
    IDENTITY_COLUMNS, LOSS_TEXT, RunTable, cell_bool, check_loss, checkpoint_epoch, checkpoint_text, identity_sort_key,
    load_tables, part_rows, run_identity,
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
COLUMNS = IDENTITY_COLUMNS + ("checkpoint_epoch", "loss_part", "test_acc_pct") + METRICS + (
    "regulariser_trace_mean", "n_batches", "n_unconverged")
DEFAULT_LOSS = "nll"


def run_row(item: RunTable, loss: str = DEFAULT_LOSS) -> dict:
    """One run's identity, grid coordinates, final test accuracy and the Hessian numbers of the part `loss`."""
    run, table_rows = item.run, item.rows or []
    optimizer_grid.require_grid_coordinates(run, "hessian_grid")
    rows = part_rows(table_rows, loss)
    top = which_stats(rows, "top_magnitude")
    return {
        **run_identity(run, item.path), "checkpoint_epoch": checkpoint_epoch(table_rows), "loss_part": loss,
        "test_acc_pct": percent(run.final_metric("test_acc")),
        "largest_median": median_largest(rows), "fraction_negative": top["fraction_negative"],
        "trace_mean": trace_mean(rows), "regulariser_trace_mean": trace_mean(part_rows(table_rows, "regulariser")),
        "n_batches": len({row["batch"] for row in rows}),
        "n_unconverged": sum(not cell_bool(row["converged"]) for row in rows if row["which"] != "trace"),
    }


def table(runs, tables: Sequence, loss: str = DEFAULT_LOSS) -> list[dict]:
    """One row per run, ordered by model, optimizer, fraction, lr, weight decay, seed."""
    check_loss(loss)
    return sorted((run_row(item, loss) for item in load_tables(runs, tables)), key=identity_sort_key)


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
        checkpoints = ", ".join(sorted({checkpoint_text(row) for row in rows}))
        fig.suptitle(f"Hessian of the {LOSS_TEXT[rows[0]['loss_part']]} · checkpoint {checkpoints}", fontsize=8)
        return fig


def make(runs, tables, out_png, out_pdf, out_csv, loss: str = DEFAULT_LOSS) -> list[dict]:
    """Table from runs and their Hessian CSVs (parallel lists), drawn and saved as PNG + PDF + CSV; returns rows.

    ``loss``: the part of the objective drawn, ``nll`` (default: like with like across optimizers) or
    ``objective``."""
    rows = table(runs, tables, loss)
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
