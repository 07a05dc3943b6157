"""Claim 2: ViT does not overfit small data: as the training fraction shrinks, NLL_train rises too.

Two panels (test error, NLL_train) against the training-set fraction on a log axis, one line per model at
the mean over finished seeds (std error bars). The CSV has one row per run.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from vitwork.figures.style import (
    axis_label, empty_figure, format_number, model_styles, new_figure, save_figure, spec_model_label,
    style_context,
)
from vitwork.results import (
    RunResult, as_runs, group_by, mean_and_std, model_sort_key, require_single_setting,
)

COLUMNS = ("model", "model_label", "family", "fraction", "seed", "run_id", "status", "test_err_pct", "train_nll")
# The two panels: (column, title); the same quantities as the inductive-bias figure.
PANELS = (("test_err_pct", "Test error"), ("train_nll", "Training NLL"))


def table(runs: Iterable[RunResult]) -> list[dict]:
    """One row per run, ordered by model (strong → weak inductive bias), fraction, seed."""
    runs = sorted(runs, key=lambda run: (model_sort_key(run.family, run.model_name), run.fraction, run.seed))
    for (name, fraction), group in group_by(runs, lambda run: (run.model_name, run.fraction)).items():
        require_single_setting(group, f"data_size: model {name} at fraction {fraction}")
    return [
        {"model": run.model_name, "model_label": spec_model_label(run.spec), "family": run.family,
         "fraction": run.fraction, "seed": run.seed, "run_id": run.run_id, "status": run.status,
         "test_err_pct": run.test_err_pct(), "train_nll": run.final_metric("train_nll")}
        for run in runs
    ]


def model_curve(rows: Sequence[dict], metric: str) -> tuple[list[float], list[float], list[float]]:
    """(fractions in %, mean, std or 0) of one model's finished runs, by increasing fraction."""
    fractions, means, stds = [], [], []
    finished = [row for row in rows if row["status"] == "finished"]
    for fraction, group in sorted(group_by(finished, lambda row: row["fraction"]).items()):
        mean, std, count = mean_and_std(row[metric] for row in group)
        if count:
            fractions.append(100.0 * fraction)
            means.append(mean)
            stds.append(std or 0.0)
    return fractions, means, stds


def plot_fraction_curves(rows: Sequence[dict], panels: Sequence[tuple[str, str, str]]) -> Figure:
    """One panel per (column, title, y label) against the training fraction (log x), one line per model at the
    mean over its finished seeds with std error bars.

    Shared by the figures of metrics against the data size (`data_size`, `corruptions_small_data`).
    """
    with style_context():
        if not any(row["status"] == "finished" for row in rows):
            return empty_figure("no finished runs")
        styles = model_styles((row["model"], row["family"]) for row in rows)
        fig, axes = new_figure(1, len(panels))
        fractions = sorted({100.0 * row["fraction"] for row in rows})
        for ax, (metric, title, ylabel) in zip(axes[0], panels):
            for name, model_rows in group_by(rows, lambda row: row["model"]).items():
                x, mean, std = model_curve(model_rows, metric)
                ax.errorbar(x, mean, yerr=std, label=model_rows[0]["model_label"], capsize=2, **styles[name])
            ax.set_xscale("log")
            ax.set_xticks(fractions, [format_number(f) for f in fractions])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(axis_label("fraction"))
            ax.set_ylabel(ylabel)
            ax.set_title(title)
        axes[0, 0].legend()
        return fig


def plot(rows: Sequence[dict]) -> Figure:
    """Test error and NLL_train vs training fraction (log x), one line per model."""
    return plot_fraction_curves(rows, [(metric, title, axis_label(metric.removesuffix("_pct")))
                                       for metric, title in PANELS])


def make(runs, out_png, out_pdf, out_csv) -> list[dict]:
    """Build the table from runs (or run dirs / run.json paths), draw it, save PNG + PDF + CSV; returns rows."""
    rows = table(as_runs(runs))
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
