"""Claim 6: accuracy per corruption and severity, one heatmap per run group.

A panel is one setting (model, optimizer recipe and hyperparameters, fraction); rows are the corruptions in the
benchmark's order (noise, blur, weather, digital), columns the severities 1..5, and a cell is the accuracy (%)
averaged over the group's finished seeds, written in the cell. All panels share one colour scale; the title gives
the clean accuracy and the robustness (mean over the corrupted sets); the colour bar's label names the test sample
when it is smaller than the test split. The CSV has the table rows of every finished run (its `clean` row first,
with ``sample_size`` and ``pool_size``, the images evaluated and the test split's) and one row with empty set
columns per diverged run.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from vitwork.corruptions import CORRUPTIONS, SEVERITIES
from vitwork.figures.analysis_tables import IDENTITY_COLUMNS, RunTable, identity_sort_key, panel_grid, run_identity
from vitwork.figures.corruption_tables import CLEAN, clean_accuracy, load_selection, robustness, sample_note
from vitwork.figures.optimizer_grid import heatmap_cmap, range_norm, text_color
from vitwork.figures.style import empty_figure, format_number, save_figure, style_context
from vitwork.results import group_by, percent

SET_COLUMNS = ("corruption", "severity", "acc", "acc_pct", "nll", "sample_size", "pool_size")
COLUMNS = IDENTITY_COLUMNS + SET_COLUMNS
MAX_PANEL_COLUMNS = 4


def run_set_rows(item: RunTable) -> list[dict]:
    """A run's rows: identity + one (corruption, severity, accuracy) per set, clean first; a bare row if diverged."""
    identity = run_identity(item.run, item.path)
    if item.rows is None:
        return [{**identity, **dict.fromkeys(SET_COLUMNS)}]
    return [{**identity, "corruption": row["corruption"], "severity": row["severity"], "acc": row["acc"],
             "acc_pct": percent(row["acc"]), "nll": row["nll"], "sample_size": row["sample_size"],
             "pool_size": row["pool_size"]} for row in item.rows]


def table(selection: Iterable[RunTable]) -> list[dict]:
    """The set rows of every run, runs ordered by model, optimizer, fraction, lr, weight decay, seed."""
    runs = sorted((run_set_rows(item) for item in selection), key=lambda rows: identity_sort_key(rows[0]))
    return [row for rows in runs for row in rows]


def group_key(row: dict) -> tuple:
    """A panel: one setting (everything but the seed)."""
    return (row["model"], row["optimizer"], row["lr"], row["weight_decay"], row["fraction"])


def set_grid(rows: Sequence[dict], corruptions: Sequence[str], severities: Sequence[int]) -> dict:
    """One panel's mean accuracy (%) per (corruption, severity) over finished seeds (NaN: not evaluated),
    its clean accuracy and robustness (% means over seeds), and its seed counts."""
    finished = [row for row in rows if row["status"] == "finished"]
    acc = np.full((len(corruptions), len(severities)), np.nan)
    for (name, severity), cell in group_by([r for r in finished if r["corruption"] != CLEAN],
                                           lambda row: (row["corruption"], row["severity"])).items():
        acc[corruptions.index(name), severities.index(severity)] = np.mean([row["acc_pct"] for row in cell])
    by_run = group_by(finished, lambda row: row["run_id"])
    clean = [percent(clean_accuracy(run_rows)) for run_rows in by_run.values()]
    robust = [percent(robustness(run_rows)) for run_rows in by_run.values()]
    return {"acc": acc, "clean": np.mean(clean) if clean else None, "robustness": np.mean(robust) if robust else None,
            "n_finished": len(by_run), "n_runs": len({row["run_id"] for row in rows})}


def panel_title(first: dict, grid: dict, show_optimizer: bool, show_fraction: bool) -> str:
    """Model (and optimizer setting / fraction when panels differ in them), then clean acc. and robustness."""
    title = first["model_label"]
    if show_optimizer:
        title += f"\n{first['optimizer_label']}"
        title += f" lr {format_number(first['lr'])}" if first["lr"] is not None else ""
        title += f" wd {format_number(first['weight_decay'])}" if first["weight_decay"] is not None else ""
    if show_fraction:
        title += f" · {format_number(100 * first['fraction'])}% data"
    if grid["n_finished"] == 0:
        return title + "\nall seeds diverged"
    return title + f"\nclean {grid['clean']:.1f}% · robustness {grid['robustness']:.1f}%"


def _draw_panel(ax, grid: dict, corruptions: Sequence[str], severities: Sequence[int], norm: Normalize,
                title: str, show_names: bool):
    """One heatmap (corruptions down, severities across) with each cell's value; returns the image."""
    image = ax.imshow(np.ma.masked_invalid(grid["acc"]), cmap=heatmap_cmap(), norm=norm, aspect="auto")
    for i, j in zip(*np.nonzero(np.isfinite(grid["acc"]))):
        value = grid["acc"][i, j]
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=5.5, color=text_color(norm, value))
    ax.set_xticks(range(len(severities)), [str(s) for s in severities])
    ax.set_yticks(range(len(corruptions)), [name.replace("_", " ") for name in corruptions] if show_names else [])
    ax.set_xlabel("Severity")
    ax.set_title(title, fontsize=8)
    ax.grid(False)
    return image


def color_norm(rows: Sequence[dict]) -> Normalize:
    """One colour scale for all panels: the range of the finished runs' corrupted-set accuracies (%)."""
    return range_norm([row["acc_pct"] for row in rows
                       if row["status"] == "finished" and row["corruption"] not in (CLEAN, None)])


def plot(rows: Sequence[dict]) -> Figure:
    """One heatmap per setting, up to four per row, with a shared colour bar."""
    with style_context():
        if not rows:
            return empty_figure("no runs")
        present = {(row["corruption"], row["severity"]) for row in rows if row["corruption"] not in (CLEAN, None)}
        if not present:
            return empty_figure("no finished runs with corruption results")
        corruptions = [name for name in CORRUPTIONS if name in {c for c, _ in present}]
        severities = [s for s in SEVERITIES if s in {sev for _, sev in present}]
        panels = group_by(rows, group_key)
        show_optimizer = len({(k[1], k[2], k[3]) for k in panels}) > 1
        show_fraction = len({k[4] for k in panels}) > 1
        fig, axes = panel_grid(len(panels), MAX_PANEL_COLUMNS, panel_size=(2.5, 3.9))
        norm = color_norm(rows)
        image = None
        for ax, panel_rows in zip(axes, panels.values()):
            grid = set_grid(panel_rows, corruptions, severities)
            title = panel_title(panel_rows[0], grid, show_optimizer, show_fraction)
            image = _draw_panel(ax, grid, corruptions, severities, norm, title,
                                show_names=ax.get_subplotspec().is_first_col())
        note = sample_note((row["sample_size"], row["pool_size"]) for row in rows)
        label = "Accuracy on the corrupted set (%)" + (f", {note}" if note else "")
        fig.colorbar(image, ax=axes, label=label, shrink=0.6)
        return fig


def make(runs, tables, out_png, out_pdf, out_csv) -> list[dict]:
    """Read runs and their corruption tables (parallel lists), draw, save PNG + PDF + CSV; returns rows."""
    rows = table(load_selection(runs, tables))
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
