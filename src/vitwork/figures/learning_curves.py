"""Claim 7 (training speed): test accuracy and NLL_train vs epoch and vs training time, best run per (model, optimizer).

The best run of a (model, optimizer) is its finished run with the highest final test accuracy (ties: the
smaller run id), over every hyperparameter setting and seed given. Colour is the model (family colour),
line style the optimizer. The CSV has one row per (best run, epoch).
"""

from __future__ import annotations

from typing import Iterable, Sequence

from matplotlib.figure import Figure

from vitwork.figures.style import (
    axis_label, empty_figure, model_styles, new_figure, optimizer_linestyles, run_label, save_figure, style_context,
)
from vitwork.results import RunResult, as_runs, group_by, model_sort_key, percent

COLUMNS = ("model", "family", "optimizer", "run_id", "label", "epoch", "wall_time_s", "test_acc_pct", "train_nll")
PANELS = (("test_acc_pct", "epoch"), ("test_acc_pct", "wall_time_s"), ("train_nll", "epoch"),
          ("train_nll", "wall_time_s"))


def best_run(runs: Iterable[RunResult]) -> RunResult | None:
    """The finished run with the highest final test accuracy (ties: smaller run id), or None."""
    candidates = [run for run in runs if run.finished and run.final_metric("test_acc") is not None]
    if not candidates:
        return None
    return min(candidates, key=lambda run: (-run.final_metric("test_acc"), run.run_id))


def best_runs(runs: Iterable[RunResult]) -> dict[tuple[str, str], RunResult | None]:
    """The best run of every (model, optimizer recipe), models strong → weak inductive bias, then recipe name.

    A (model, optimizer) whose runs all diverged maps to None.
    """
    runs = sorted(runs, key=lambda run: (model_sort_key(run.family, run.model_name), run.optimizer_recipe))
    groups = group_by(runs, lambda run: (run.model_name, run.optimizer_recipe))
    return {key: best_run(group) for key, group in groups.items()}


def curve_rows(run: RunResult) -> list[dict]:
    """One row per epoch of a run: time, test accuracy (%) and training NLL (None where non-finite)."""
    label = run_label(run.spec)
    return [
        {"model": run.model_name, "family": run.family, "optimizer": run.optimizer_recipe, "run_id": run.run_id,
         "label": label, "epoch": epoch["epoch"], "wall_time_s": epoch.get("wall_time_s"),
         "test_acc_pct": percent(epoch.get("test_acc")), "train_nll": epoch.get("train_nll")}
        for epoch in run.epochs
    ]


def table(runs: Iterable[RunResult]) -> list[dict]:
    """The per-epoch curves of each (model, optimizer)'s best run."""
    return [row for run in best_runs(runs).values() if run is not None for row in curve_rows(run)]


def _nan_if_none(values: Iterable[float | None]) -> list[float]:
    """None (non-finite epochs) as NaN, so matplotlib leaves a gap."""
    return [float("nan") if v is None else v for v in values]


def plot(rows: Sequence[dict]) -> Figure:
    """A 2x2 grid: test accuracy and NLL_train (rows) vs epoch and training time (columns)."""
    with style_context():
        if not rows:
            return empty_figure("no finished runs")
        colors = model_styles((row["model"], row["family"]) for row in rows)
        linestyles = optimizer_linestyles(row["optimizer"] for row in rows)
        fig, axes = new_figure(2, 2)
        for ax, (metric, x_key) in zip(axes.flat, PANELS):
            for curve in group_by(rows, lambda row: row["run_id"]).values():
                first = curve[0]
                ax.plot(_nan_if_none(r[x_key] for r in curve), _nan_if_none(r[metric] for r in curve),
                        color=colors[first["model"]]["color"], linestyle=linestyles[first["optimizer"]],
                        label=first["label"])
            ax.set_xlabel(axis_label(x_key))
            ax.set_ylabel(axis_label(metric.removesuffix("_pct")))
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3))
        return fig


def make(runs, out_png, out_pdf, out_csv) -> list[dict]:
    """Build the table from runs (or run dirs / run.json paths), draw it, save PNG + PDF + CSV; returns rows."""
    rows = table(as_runs(runs))
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
