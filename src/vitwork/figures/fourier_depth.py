"""Claim 5: the highest-frequency ΔLog amplitude of feature maps vs normalised depth, MSA and down-sampling shaded.

For every block the value at the largest frequency of its `fourier` table (π for even map sizes) is taken;
one line per run (colour per model family, shaded within a family, line style per optimizer recipe). MSA blocks
are shaded grey and down-sampling blocks blue (`blocks_shading`). Claim 5 predicts drops at grey spans and
rises at Conv/MLP blocks.

One panel per block layout (the kinds and depths of a run's blocks): runs that share a layout (seeds,
optimizers, ViT with CLS or GAP) share a panel, and its shading is then exact for every line in it; runs of
different architectures (ResNet, ViT, AlterNet) have their MSA and down-sampling blocks at different depths, so
one shading could not be right for all of them. The CSV has one row per (run, block).
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

from matplotlib.figure import Figure

from vitwork.figures.blocks_shading import layout_key, shade_blocks, shading_legend_handles
from vitwork.figures.analysis_tables import IDENTITY_COLUMNS, distinct_labels, line_label, panel_grid
from vitwork.figures.fourier_spectra import BLOCK_COLUMNS, DEPTH_LABEL, FOURIER_TYPES, typed_tables
from vitwork.figures.style import empty_figure, model_styles, optimizer_linestyles, save_figure, style_context
from vitwork.results import group_by

VALUE = "high_frequency_delta_log_amplitude"
COLUMNS = (*IDENTITY_COLUMNS, *BLOCK_COLUMNS, "high_frequency", VALUE)
Y_LABEL = "High-frequency ΔLog amplitude"


def highest_frequency_rows(points: Iterable[dict]) -> list[dict]:
    """Per block (by index), its point at the largest frequency: block columns, that frequency and its value."""
    rows = []
    for block in group_by(sorted(points, key=lambda p: p["block_index"]), lambda p: p["block_index"]).values():
        top = max(block, key=lambda p: p["frequency"])
        rows.append({**{column: top[column] for column in BLOCK_COLUMNS}, "high_frequency": top["frequency"],
                     VALUE: top["delta_log_amplitude"]})
    return rows


def table(runs: Iterable, tables: Iterable[str | os.PathLike]) -> list[dict]:
    """One row per (run, block): the run's identity and the block's highest-frequency ΔLog amplitude."""
    return [{**identity, **block} for identity, points in typed_tables(runs, tables, FOURIER_TYPES)
            for block in highest_frequency_rows(points)]


def depth_panels(rows: Sequence[dict]) -> list[list[list[dict]]]:
    """Rows split into runs (by run id, blocks by index) and the runs grouped into panels by block layout."""
    runs = [sorted(run_rows, key=lambda row: row["block_index"])
            for run_rows in group_by(rows, lambda row: row["run_id"]).values()]
    return list(group_by(runs, layout_key).values())


def plot_depth_profiles(rows: Sequence[dict], value: str, ylabel: str, yscale: str = "linear",
                        ncols: int = 3) -> Figure:
    """``value`` vs normalised depth, one line per run, one panel per block layout with its blocks shaded.

    Shared by the depth figures (`fourier_depth`, `feature_variance_depth`), which differ only in the column
    drawn and the y scale.
    """
    with style_context():
        if not rows:
            return empty_figure("no runs")
        styles = model_styles((row["model"], row["family"]) for row in rows)
        linestyles = optimizer_linestyles(row["optimizer"] for row in rows)
        panels = depth_panels(rows)
        fig, axes = panel_grid(len(panels), ncols)
        for ax, panel in zip(axes, panels):
            spans = shade_blocks(ax, [row for run_rows in panel for row in run_rows])
            labels = distinct_labels([run_rows[0] for run_rows in panel])
            for run_rows, label in zip(panel, labels):
                first = run_rows[0]
                ax.plot([row["depth"] for row in run_rows], [row[value] for row in run_rows],
                        linestyle=linestyles[first["optimizer"]], label=line_label(label, run_rows),
                        **styles[first["model"]])
            ax.set_yscale(yscale)
            ax.set_xlabel(DEPTH_LABEL)
            ax.set_ylabel(ylabel)
            ax.set_title(", ".join(dict.fromkeys(run_rows[0]["model_label"] for run_rows in panel)))
            handles, _ = ax.get_legend_handles_labels()
            ax.legend(handles=handles + shading_legend_handles(spans))
        return fig


def plot(rows: Sequence[dict], ncols: int = 3) -> Figure:
    """Highest-frequency ΔLog amplitude vs normalised depth, MSA blocks grey, down-sampling blocks blue."""
    return plot_depth_profiles(rows, VALUE, Y_LABEL, ncols=ncols)


def make(runs, tables, out_png, out_pdf, out_csv, ncols: int = 3) -> list[dict]:
    """Read the runs and their `fourier` tables, draw the depth profiles, save PNG + PDF + CSV; returns the rows."""
    rows = table(runs, tables)
    save_figure(plot(rows, ncols=ncols), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
