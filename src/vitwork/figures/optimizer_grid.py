"""Claim 7: final test accuracy over learning rate x weight decay, one heatmap per (model, optimizer).

Panels are laid out with models as rows (strong → weak inductive bias) and optimizers as columns (one column
per optimizer and training fraction when several fractions are present); the grid axes are the lr and
weight-decay values found in the runs' `optimizer.hparams`. A cell is the mean over its finished seeds; a cell
whose every seed diverged is hatched with an "×"; a cell with some diverged seeds says how many; "n/a" marks
finished seeds without a value; a combination that was not run is left blank. All panels share one colour
scale. The CSV has one row per run.

The grid machinery (`cell_grid`, `color_norm`, `draw_panel`, `mark_diverged`, `plot`) takes the column to
draw as ``metric``, so other figures over the same grid (`hessian_grid`, `corruptions_grid`) draw with it.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import matplotlib
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from vitwork.figures.analysis_tables import identity_sort_key
from vitwork.figures.style import (
    axis_label, empty_figure, format_number, new_figure, save_figure, spec_model_label, spec_optimizer_label,
    style_context,
)
from vitwork.results import RunResult, as_runs, group_by, mean_and_std, percent

COLUMNS = ("model", "model_label", "family", "optimizer", "optimizer_label", "fraction", "lr", "weight_decay", "seed",
           "run_id", "status", "test_acc_pct")
MISSING_COLOR = "0.93"
DEFAULT_METRIC = "test_acc_pct"


def require_grid_coordinates(run: RunResult, figure: str) -> None:
    """A grid figure places a run by its lr and weight decay, so both must be in its `optimizer.hparams`."""
    if run.lr is None or run.weight_decay is None:
        raise ValueError(f"{figure}: run {run.run_id} has no lr or weight_decay in optimizer.hparams")


def run_row(run: RunResult) -> dict:
    """One run's grid coordinates, status and final test accuracy (%)."""
    require_grid_coordinates(run, "optimizer_grid")
    return {
        "model": run.model_name, "model_label": spec_model_label(run.spec), "family": run.family,
        "optimizer": run.optimizer_recipe, "optimizer_label": spec_optimizer_label(run.spec), "fraction": run.fraction,
        "lr": run.lr, "weight_decay": run.weight_decay, "seed": run.seed, "run_id": run.run_id,
        "status": run.status, "test_acc_pct": percent(run.final_metric("test_acc")),
    }


def table(runs: Iterable[RunResult]) -> list[dict]:
    """One row per run, ordered by model, optimizer, fraction, lr, weight decay, seed."""
    return sorted((run_row(run) for run in runs), key=identity_sort_key)


def cell_grid(rows: Sequence[dict], metric: str = DEFAULT_METRIC) -> dict:
    """One panel's grid: sorted lr and wd axes, the metric's mean over finished seeds (`value`, NaN: no finished
    seed with a value), and the diverged and run counts per cell."""
    lrs = sorted({row["lr"] for row in rows})
    wds = sorted({row["weight_decay"] for row in rows})
    shape = (len(wds), len(lrs))
    value, diverged, total = np.full(shape, np.nan), np.zeros(shape, int), np.zeros(shape, int)
    for (lr, wd), cell in group_by(rows, lambda row: (row["lr"], row["weight_decay"])).items():
        i, j = wds.index(wd), lrs.index(lr)
        total[i, j] = len(cell)
        diverged[i, j] = sum(row["status"] == "diverged" for row in cell)
        mean, _, count = mean_and_std(row[metric] for row in cell if row["status"] == "finished")
        if count:
            value[i, j] = mean
    return {"lrs": lrs, "wds": wds, "value": value, "diverged": diverged, "total": total}


def heatmap_cmap():
    """The project colormap, with masked cells (not run, or no value) in MISSING_COLOR."""
    return matplotlib.colormaps[matplotlib.rcParams["image.cmap"]].with_extremes(bad=MISSING_COLOR)


def text_color(norm: Normalize, value: float) -> str:
    """White text on the dark part of the colour scale, black on the light part."""
    return "white" if norm(value) < 0.6 else "black"


def mark_diverged(ax, i: int, j: int) -> None:
    """Hatch heatmap cell (row i, column j) and cross it with a red ×: every seed of it diverged."""
    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="white", edgecolor="0.45", hatch="///", linewidth=0))
    ax.text(j, i, "×", ha="center", va="center", fontsize=14, color="#B00020", fontweight="bold")


def accuracy_text(value: float) -> str:
    """An accuracy in % as written in a cell: one decimal."""
    return f"{value:.1f}"


def annotate_cell(ax, i: int, j: int, grid: dict, norm: Normalize, value_text: Callable[[float], str]) -> None:
    """Write the cell's value (n/a: finished seeds without one) and its diverged count, or mark it all-diverged."""
    value, diverged, total = grid["value"][i, j], grid["diverged"][i, j], grid["total"][i, j]
    if total == 0:
        return
    if diverged == total:
        mark_diverged(ax, i, j)
        return
    text = "n/a" if np.isnan(value) else value_text(value)
    text += f"\n{diverged}/{total} div." if diverged else ""
    color = "black" if np.isnan(value) else text_color(norm, value)
    ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)


def draw_panel(ax, rows: Sequence[dict], norm: Normalize, title: str, metric: str = DEFAULT_METRIC,
               value_text: Callable[[float], str] = accuracy_text):
    """One heatmap of the metric with lr on x and weight decay on y; returns the image for the colour bar."""
    grid = cell_grid(rows, metric)
    image = ax.imshow(np.ma.masked_invalid(grid["value"]), cmap=heatmap_cmap(), norm=norm, origin="lower",
                      aspect="auto")
    for i in range(len(grid["wds"])):
        for j in range(len(grid["lrs"])):
            annotate_cell(ax, i, j, grid, norm, value_text)
    ax.set_xticks(range(len(grid["lrs"])), [format_number(v) for v in grid["lrs"]])
    ax.set_yticks(range(len(grid["wds"])), [format_number(v) for v in grid["wds"]])
    ax.set_xlabel(axis_label("lr"))
    ax.set_ylabel(axis_label("weight_decay"))
    ax.set_title(title)
    ax.grid(False)
    return image


def panel_title(row: dict, several_fractions: bool) -> str:
    """`model · optimizer` of a panel, with the training fraction when the figure has several."""
    title = f"{row['model_label']} · {row['optimizer_label']}"
    return title + (f" · {format_number(100 * row['fraction'])}% data" if several_fractions else "")


def finished_values(rows: Sequence[dict], metric: str) -> list[float]:
    """The metric of the finished rows that have a value."""
    return [row[metric] for row in rows if row["status"] == "finished" and row[metric] is not None]


def range_norm(values: Sequence[float]) -> Normalize:
    """A linear colour scale over the values' range (one unit wide for one value, 0..100 without values)."""
    if not values:
        return Normalize(0.0, 100.0)
    low, high = min(values), max(values)
    return Normalize(low, high if high > low else low + 1.0)


def color_norm(rows: Sequence[dict], metric: str = DEFAULT_METRIC) -> Normalize:
    """One colour scale for all panels: the range of the finished runs' values of the metric."""
    return range_norm(finished_values(rows, metric))


def plot(rows: Sequence[dict], metric: str = DEFAULT_METRIC, colorbar_label: str = axis_label("test_acc")) -> Figure:
    """Heatmaps of the metric (final test accuracy by default): models as rows, (optimizer[, fraction]) as
    columns, one colour scale."""
    with style_context():
        if not rows:
            return empty_figure("no runs")
        models = list(dict.fromkeys(row["model"] for row in rows))
        columns = sorted({(row["optimizer"], row["fraction"]) for row in rows})
        several_fractions = len({fraction for _, fraction in columns}) > 1
        norm = color_norm(rows, metric)
        panels = group_by(rows, lambda row: (row["model"], row["optimizer"], row["fraction"]))
        fig, axes = new_figure(len(models), len(columns), panel_size=(3.0, 2.5))
        image = None
        for r, model in enumerate(models):
            for c, (optimizer, fraction) in enumerate(columns):
                ax = axes[r, c]
                panel = panels.get((model, optimizer, fraction))
                if panel is None:
                    ax.set_axis_off()
                    continue
                image = draw_panel(ax, panel, norm, panel_title(panel[0], several_fractions), metric)
        fig.colorbar(image, ax=axes, label=colorbar_label, shrink=0.9)
        return fig


def make(runs, out_png, out_pdf, out_csv) -> list[dict]:
    """Build the table from runs (or run dirs / run.json paths), draw it, save PNG + PDF + CSV; returns rows."""
    rows = table(as_runs(runs))
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
