"""The study's run table: one row per training run (setting, status, final metrics, cost), as CSV and markdown."""

from __future__ import annotations

import os
from typing import Iterable, Sequence

from vitwork.results import RunResult, as_runs, model_sort_key, percent, write_csv, write_markdown

COLUMNS = ("run_id", "model", "family", "optimizer", "algorithm", "lr", "weight_decay", "fraction", "seed", "status",
           "test_acc_pct", "train_nll", "epochs", "wall_time_s", "images_per_s")


def summary_row(run: RunResult) -> dict:
    """One run's setting (optimizer = the config's recipe key, algorithm = its optimizer), status, final test accuracy (%), NLL_train, epochs completed, time and throughput."""
    return {
        "run_id": run.run_id, "model": run.model_name, "family": run.family, "optimizer": run.optimizer_recipe,
        "algorithm": run.optimizer_name,
        "lr": run.lr, "weight_decay": run.weight_decay, "fraction": run.fraction, "seed": run.seed,
        "status": run.status, "test_acc_pct": percent(run.final_metric("test_acc")),
        "train_nll": run.final_metric("train_nll"),
        "epochs": run.epochs_completed if run.epochs_completed is not None else len(run.epochs),
        "wall_time_s": run.wall_time_s, "images_per_s": run.images_per_s,
    }


def summary_rows(runs: Iterable[RunResult]) -> list[dict]:
    """One row per run, models strong → weak inductive bias, then by run id."""
    runs = sorted(runs, key=lambda run: (model_sort_key(run.family, run.model_name), run.run_id))
    return [summary_row(run) for run in runs]


def write_summary(rows: Sequence[dict], csv_path: str | os.PathLike, md_path: str | os.PathLike) -> None:
    """Write the run table as CSV and as a markdown table, each atomically."""
    write_csv(rows, csv_path, COLUMNS)
    write_markdown(rows, md_path, COLUMNS)


def make(runs, csv_path, md_path) -> list[dict]:
    """Summarise runs (or run dirs / run.json paths) into CSV + markdown; returns rows."""
    rows = summary_rows(as_runs(runs))
    write_summary(rows, csv_path, md_path)
    return rows
