"""Claim 7: final test accuracy over learning rate x weight decay, one heatmap per (model, optimizer).

Panels are laid out with models as rows (strong → weak inductive bias) and optimizers as columns (one column
per optimizer and training fraction when several fractions are present); the grid axes are the lr and
weight-decay values found in the runs' `optimizer.hparams`. A cell is the mean over its finished seeds; a cell
whose every seed diverged is hatched with an "×"; a cell with some diverged seeds says how many; a combination
that was not run is left blank. All panels share one colour scale. The CSV has one row per run.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import matplotlib
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from vitwork.figures.style import (
    axis_label, empty_figure, format_number, new_figure, save_figure, spec_model_label, spec_optimizer_label,
    style_context,
)
from vitwork.results import RunResult, as_runs, group_by, mean_and_std, model_sort_key, percent

COLUMNS = ("model", "model_label", "family", "optimizer", "optimizer_label", "fraction", "lr", "weight_decay", "seed", "run_id", "status",
           "test_acc_pct")
MISSING_COLOR = "0.93"


def run_row(run: RunResult) -> dict:
    """One run's grid coordinates, status and final test accuracy (%)."""
    if run.lr is None or run.weight_decay is None:
        raise ValueError(f"optimizer_grid: run {run.run_id} has no lr or weight_decay in optimizer.hparams")
    return {
        "model": run.model_name, "model_label": spec_model_label(run.spec), "family": run.family,
        "optimizer": run.optimizer_recipe, "optimizer_label": spec_optimizer_label(run.spec), "fraction": run.fraction,
        "lr": run.lr, "weight_decay": run.weight_decay, "seed": run.seed, "run_id": run.run_id,
        "status": run.status, "test_acc_pct": percent(run.final_metric("test_acc")),
    }


def table(runs: Iterable[RunResult]) -> list[dict]:
    """One row per run, ordered by model, optimizer, fraction, lr, weight decay, seed."""
    rows = [run_row(run) for run in runs]
    return sorted(rows, key=lambda r: (model_sort_key(r["family"], r["model"]), r["optimizer"], r["fraction"],
                                       r["lr"], r["weight_decay"], r["seed"]))


def cell_grid(rows: Sequence[dict]) -> dict:
    """One panel's grid: sorted lr and wd axes, mean accuracy (NaN: no finished seed), diverged and run counts."""
    lrs = sorted({row["lr"] for row in rows})
    wds = sorted({row["weight_decay"] for row in rows})
    shape = (len(wds), len(lrs))
    acc, diverged, total = np.full(shape, np.nan), np.zeros(shape, int), np.zeros(shape, int)
    for (lr, wd), cell in group_by(rows, lambda row: (row["lr"], row["weight_decay"])).items():
        i, j = wds.index(wd), lrs.index(lr)
        total[i, j] = len(cell)
        diverged[i, j] = sum(row["status"] == "diverged" for row in cell)
        mean, _, count = mean_and_std(row["test_acc_pct"] for row in cell if row["status"] == "finished")
        if count:
            acc[i, j] = mean
    return {"lrs": lrs, "wds": wds, "acc": acc, "diverged": diverged, "total": total}


def _annotate_cell(ax, i: int, j: int, grid: dict, norm: Normalize) -> None:
    """Write the cell's accuracy, or hatch it with an × when every seed diverged."""
    acc, diverged, total = grid["acc"][i, j], grid["diverged"][i, j], grid["total"][i, j]
    if total == 0:
        return
    if np.isnan(acc):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="white", edgecolor="0.45", hatch="///",
                               linewidth=0))
        ax.text(j, i, "×", ha="center", va="center", fontsize=14, color="#B00020", fontweight="bold")
        return
    text = f"{acc:.1f}" + (f"\n{diverged}/{total} div." if diverged else "")
    ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if norm(acc) < 0.6 else "black")


def _draw_panel(ax, rows: Sequence[dict], norm: Normalize, title: str):
    """One heatmap with lr on x and weight decay on y; returns the image for the shared colour bar."""
    grid = cell_grid(rows)
    cmap = matplotlib.colormaps[matplotlib.rcParams["image.cmap"]].with_extremes(bad=MISSING_COLOR)
    image = ax.imshow(np.ma.masked_invalid(grid["acc"]), cmap=cmap, norm=norm, origin="lower", aspect="auto")
    for i in range(len(grid["wds"])):
        for j in range(len(grid["lrs"])):
            _annotate_cell(ax, i, j, grid, norm)
    ax.set_xticks(range(len(grid["lrs"])), [format_number(v) for v in grid["lrs"]])
    ax.set_yticks(range(len(grid["wds"])), [format_number(v) for v in grid["wds"]])
    ax.set_xlabel(axis_label("lr"))
    ax.set_ylabel(axis_label("weight_decay"))
    ax.set_title(title)
    ax.grid(False)
    return image


def color_norm(rows: Sequence[dict]) -> Normalize:
    """One colour scale for all panels: the range of finished runs' accuracies."""
    values = [row["test_acc_pct"] for row in rows if row["status"] == "finished" and row["test_acc_pct"] is not None]
    if not values:
        return Normalize(0.0, 100.0)
    low, high = min(values), max(values)
    return Normalize(low, high if high > low else low + 1.0)


def plot(rows: Sequence[dict]) -> Figure:
    """Heatmaps of final test accuracy: models as rows, (optimizer[, fraction]) as columns."""
    with style_context():
        if not rows:
            return empty_figure("no runs")
        models = list(dict.fromkeys(row["model"] for row in rows))
        columns = sorted({(row["optimizer"], row["fraction"]) for row in rows})
        several_fractions = len({fraction for _, fraction in columns}) > 1
        norm = color_norm(rows)
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
                title = f"{panel[0]['model_label']} · {panel[0]['optimizer_label']}"
                title += f" · {format_number(100 * fraction)}% data" if several_fractions else ""
                image = _draw_panel(ax, panel, norm, title)
        fig.colorbar(image, ax=axes, label=axis_label("test_acc"), shrink=0.9)
        return fig


def make(runs, out_png, out_pdf, out_csv) -> list[dict]:
    """Build the table from runs (or run dirs / run.json paths), draw it, save PNG + PDF + CSV; returns rows."""
    rows = table(as_runs(runs))
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
