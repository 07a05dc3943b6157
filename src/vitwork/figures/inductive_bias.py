"""Claim 1: stronger inductive bias gives lower test error AND lower training NLL.

Models are ordered from strong to weak inductive bias (family, then name); two panels side by side show test
error and NLL_train at the mean over finished seeds with std error bars, each seed as a small dot beside it.
The CSV has one `kind="run"` row per (model, seed) with the run's final metrics, then a `kind="mean"` and a
`kind="std"` row per model (over finished seeds; `n_seeds` counts them).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure

from vitwork.figures.data_size import PANELS
from vitwork.figures.style import (
    axis_label, empty_figure, model_styles, new_figure, save_figure, spec_model_label, style_context,
)
from vitwork.results import (
    RunResult, as_runs, group_by, mean_and_std, model_sort_key, require_single_setting,
)

COLUMNS = ("kind", "model", "model_label", "family", "seed", "run_id", "status", "n_seeds", "test_err_pct",
           "train_nll")
METRICS = tuple(metric for metric, _ in PANELS)


def run_row(run: RunResult) -> dict:
    """The per-run row: the run's final test error (%) and training NLL."""
    return {
        "kind": "run", "model": run.model_name, "model_label": spec_model_label(run.spec), "family": run.family,
        "seed": run.seed, "run_id": run.run_id, "status": run.status, "n_seeds": None,
        "test_err_pct": run.test_err_pct(), "train_nll": run.final_metric("train_nll"),
    }


def aggregate_rows(model_rows: Sequence[dict]) -> list[dict]:
    """The mean and std rows of one model, over its finished seeds (diverged seeds are left out)."""
    finished = [row for row in model_rows if row["status"] == "finished"]
    stats = {metric: mean_and_std(row[metric] for row in finished) for metric in METRICS}
    first = model_rows[0]
    base = {"model": first["model"], "model_label": first["model_label"], "family": first["family"], "seed": None,
            "run_id": None, "status": None}
    mean = {"kind": "mean", **base, "n_seeds": stats[METRICS[0]][2], **{m: stats[m][0] for m in METRICS}}
    std = {"kind": "std", **base, "n_seeds": stats[METRICS[0]][2], **{m: stats[m][1] for m in METRICS}}
    return [mean, std]


def table(runs: Iterable[RunResult]) -> list[dict]:
    """Per-run rows then mean/std rows, models from strong to weak inductive bias; one setting per model."""
    runs = sorted(runs, key=lambda run: (model_sort_key(run.family, run.model_name), run.seed))
    by_model = group_by(runs, lambda run: run.model_name)
    for name, model_runs in by_model.items():
        require_single_setting(model_runs, f"inductive_bias: model {name}")
    run_rows = [run_row(run) for run in runs]
    by_model_rows = group_by(run_rows, lambda row: row["model"])
    return run_rows + [row for rows in by_model_rows.values() for row in aggregate_rows(rows)]


def _draw_metric(ax, rows: Sequence[dict], metric: str, styles: dict) -> None:
    """Mean over seeds (large marker) with std error bars and one small dot per finished seed, for one metric."""
    means = [row for row in rows if row["kind"] == "mean"]
    stds = {row["model"]: row[metric] for row in rows if row["kind"] == "std"}
    for x, row in enumerate(means):
        name = row["model"]
        if row[metric] is None:
            ax.annotate("diverged", (x, 0.5), xycoords=("data", "axes fraction"), rotation=90, ha="center",
                        va="center", fontsize=7, style="italic")
            continue
        seeds = [r[metric] for r in rows if r["kind"] == "run" and r["model"] == name
                 and r["status"] == "finished" and r[metric] is not None]
        if len(seeds) > 1:
            jitter = np.linspace(-0.12, 0.12, len(seeds))
            ax.scatter(x + 0.25 + jitter, seeds, s=8, color=styles[name]["color"], alpha=0.6, linewidths=0)
        ax.errorbar(x, row[metric], yerr=stds[name], fmt=styles[name]["marker"], color=styles[name]["color"],
                    markersize=7, capsize=3, elinewidth=1.2)
    ax.set_xticks(range(len(means)), [row["model_label"] for row in means], rotation=30, ha="right")
    ax.set_xlim(-0.6, len(means) - 0.4)
    ax.set_ylabel(axis_label(metric.removesuffix("_pct")))
    ax.grid(axis="x", visible=False)


def plot(rows: Sequence[dict]) -> Figure:
    """Test error and NLL_train side by side, one point per model (strong → weak inductive bias)."""
    with style_context():
        if not rows:
            return empty_figure("no runs")
        styles = model_styles((row["model"], row["family"]) for row in rows)
        fig, axes = new_figure(1, 2)
        for ax, (metric, title) in zip(axes[0], PANELS):
            _draw_metric(ax, rows, metric, styles)
            ax.set_title(title)
            ax.set_xlabel("Model (strong → weak inductive bias)")
        return fig


def make(runs, out_png, out_pdf, out_csv) -> list[dict]:
    """Build the table from runs (or run dirs / run.json paths), draw it, save PNG + PDF + CSV; returns rows."""
    rows = table(as_runs(runs))
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
