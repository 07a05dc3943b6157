"""Claim 7 (training speed): epochs and seconds for each (model, optimizer)'s best run to reach a target accuracy.

The target of a model is `fraction` (default 0.9) of its best final test accuracy across optimizers (the best
finished run of that model). A run reaches it at the first epoch whose test accuracy is at least the target;
`epoch` is the metrics' `epoch` field and `seconds` the cumulative training time (`wall_time_s`) at that
epoch. Status: `reached`, `not reached` (epochs/seconds null) or `diverged` (every run of that pair diverged).
Written as CSV, markdown and a bar chart.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from matplotlib.figure import Figure

from vitwork.figures.learning_curves import best_runs
from vitwork.figures.style import (
    empty_figure, model_styles, new_figure, optimizer_setting_label, save_figure, spec_model_label,
    spec_optimizer_label, style_context,
)
from vitwork.results import RunResult, as_runs, group_by, percent, write_markdown

COLUMNS = ("model", "model_label", "family", "optimizer", "optimizer_label", "run_id", "setting", "final_test_acc_pct", "model_best_acc_pct",
           "target_acc_pct", "status", "epochs", "seconds")
DEFAULT_FRACTION = 0.9


def epochs_to_reach(epochs: Sequence[dict], target: float) -> tuple[int | None, float | None]:
    """(epoch, wall_time_s) of the first epoch with test_acc >= target (a fraction), or (None, None)."""
    for epoch in epochs:
        accuracy = epoch.get("test_acc")
        if accuracy is not None and accuracy >= target:
            return epoch["epoch"], epoch.get("wall_time_s")
    return None, None


def model_best_accuracies(best: dict[tuple[str, str], RunResult | None]) -> dict[str, float]:
    """Each model's best final test accuracy (fraction) across optimizers; models with no finished run omitted."""
    result: dict[str, float] = {}
    for (model, _), run in best.items():
        if run is not None:
            result[model] = max(result.get(model, 0.0), run.final_metric("test_acc"))
    return result


def pair_row(pair_runs: list[RunResult], run: RunResult | None, model_best: float | None, fraction: float) -> dict:
    """The row of one (model, optimizer): its best run, the model's target, and when it was reached."""
    first = pair_runs[0]
    row = {"model": first.model_name, "model_label": spec_model_label(first.spec), "family": first.family,
           "optimizer": first.optimizer_recipe, "optimizer_label": spec_optimizer_label(first.spec),
           "run_id": None, "setting": None,
           "final_test_acc_pct": None, "model_best_acc_pct": percent(model_best), "target_acc_pct": None,
           "status": "diverged", "epochs": None, "seconds": None}
    if run is None:
        return row
    target = fraction * model_best
    epoch, seconds = epochs_to_reach(run.epochs, target)
    row.update(run_id=run.run_id, setting=optimizer_setting_label(run.spec),
               final_test_acc_pct=percent(run.final_metric("test_acc")), target_acc_pct=percent(target),
               status="reached" if epoch is not None else "not reached", epochs=epoch, seconds=seconds)
    return row


def table(runs: Iterable[RunResult], fraction: float = DEFAULT_FRACTION) -> list[dict]:
    """One row per (model, optimizer), models strong → weak inductive bias, then optimizer name."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"time_to_accuracy: fraction must be in (0, 1], got {fraction}")
    runs = list(runs)
    pairs = group_by(runs, lambda run: (run.model_name, run.optimizer_recipe))
    best = best_runs(runs)
    model_best = model_best_accuracies(best)
    return [pair_row(pairs[key], run, model_best.get(key[0]), fraction) for key, run in best.items()]


def _bar_text(row: dict, key: str) -> str | None:
    """What to write instead of a bar: 'not reached' or 'diverged'; None when there is a bar."""
    return None if row[key] is not None else row["status"]


def plot(rows: Sequence[dict], fraction: float = DEFAULT_FRACTION) -> Figure:
    """Horizontal bars of epochs and seconds to the target, one bar per (model, optimizer)."""
    with style_context():
        if not rows:
            return empty_figure("no runs")
        colors = model_styles((row["model"], row["family"]) for row in rows)
        fig, axes = new_figure(1, 2, panel_size=(3.6, 0.45 * len(rows) + 1.2))
        labels = [f"{row['model_label']} · {row['optimizer_label']}" for row in rows]
        x_labels = ("Epochs to target", "Training time to target (s)")
        for ax, key, x_label in zip(axes[0], ("epochs", "seconds"), x_labels):
            for y, row in enumerate(rows):
                if row[key] is None:
                    ax.text(0, y, f" {_bar_text(row, key)}", va="center", ha="left", fontsize=7, style="italic")
                else:
                    ax.barh(y, row[key], color=colors[row["model"]]["color"], height=0.65)
            ax.set_yticks(range(len(rows)), labels)
            ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top; text-only rows keep their space
            ax.set_xlabel(x_label)
            ax.grid(axis="y", visible=False)
        axes[0, 1].tick_params(labelleft=False)
        fig.suptitle(f"Time to reach {100 * fraction:g}% of the model's best test accuracy")
        return fig


def make(runs, out_png, out_pdf, out_csv, out_md, fraction: float = DEFAULT_FRACTION) -> list[dict]:
    """Build the table, draw it, save PNG + PDF + CSV and a markdown copy of the table; returns rows."""
    rows = table(as_runs(runs), fraction)
    save_figure(plot(rows, fraction), rows, out_png, out_pdf, out_csv, COLUMNS)
    write_markdown(rows, out_md, COLUMNS)
    return rows
