"""Claim 5 (MSAs are low-pass filters, Convs high-pass): ΔLog amplitude of feature maps vs frequency, per block.

One panel per setting (model, optimizer recipe and hyperparameters, training fraction), titled by the model
label (more detail only where two panels would otherwise share a title). Each block is one curve of
ΔLog amplitude (`vitwork.fourier`: diagonal log amplitude minus its DC value) against the frequency
0..π rad/pixel, coloured by the block's normalised depth (sequential colormap, one colorbar). Several seeds of
one setting are averaged point by point over their finished runs (diverged seeds are listed but not averaged).
The CSV is tidy, one row per (block, frequency): ``statistic = seed`` rows hold each run's table,
``statistic = mean`` rows (``run_id``/``seed`` empty, ``n_seeds`` averaged) the plotted curves.

This module also holds what the frequency figures (`fourier_depth`, `feature_variance_depth`,
`noise_frequency_curves`) share beyond `analysis_tables`: the block columns, typed frequency tables and the
frequency axis.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Callable, Iterable, Sequence

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from vitwork.figures.analysis_tables import (
    IDENTITY_COLUMNS, distinct_labels, identity_tables, panel_grid, read_analysis_table,
)
from vitwork.figures.style import empty_figure, save_figure, style_context
from vitwork.results import group_by

# ------------------------------------------------------------------ shared by the frequency-analysis figures

BLOCK_COLUMNS = ("block_index", "block_name", "kind", "depth")
BLOCK_TYPES: dict[str, Callable[[str], object]] = {"block_index": int, "block_name": str, "kind": str, "depth": float}
FOURIER_TYPES = {**BLOCK_TYPES, "frequency": float, "delta_log_amplitude": float}
FREQUENCY_LABEL = "Frequency (rad/pixel)"
DEPTH_LABEL = "Normalised depth"


def typed_tables(runs: Iterable, tables: Iterable[str | os.PathLike],
                 types: dict[str, Callable[[str], object]]) -> list[tuple[dict, list[dict]]]:
    """(run identity, table rows with ``types`` converted) of every run with a table, in figure order."""
    pairs = identity_tables(runs, tables, read=functools.partial(read_analysis_table, types=types))
    return [(identity, rows) for identity, rows in pairs if rows is not None]


def frequency_ticks(ax) -> None:
    """Frequency axis from 0 to π rad/pixel with ticks at 0, π/2 and π."""
    ax.set_xlim(0, math.pi)
    ax.set_xticks([0, math.pi / 2, math.pi], ["0", "π/2", "π"])
    ax.set_xlabel(FREQUENCY_LABEL)


# ---------------------------------------------------------------------------------------- this figure

COLUMNS = ("statistic", "n_seeds", *IDENTITY_COLUMNS, *BLOCK_COLUMNS, "frequency", "delta_log_amplitude")
DEPTH_CMAP = "viridis"
DECIMALS = 9  # float columns read back from CSV are compared rounded


def seed_rows(identity: dict, points: Iterable[dict]) -> list[dict]:
    """One run's spectra as tidy rows (``statistic = seed``), by block index then frequency."""
    points = sorted(points, key=lambda p: (p["block_index"], p["frequency"]))
    return [{"statistic": "seed", "n_seeds": 1, **identity, **point} for point in points]


def _point_key(row: dict) -> tuple:
    """What must agree between seeds for their values to be averaged: block identity and frequency."""
    return (row["block_index"], row["block_name"], row["kind"], round(row["depth"], DECIMALS),
            round(row["frequency"], DECIMALS))


def seed_mean_rows(runs_rows: Sequence[list[dict]]) -> list[dict]:
    """Point-by-point mean ΔLog amplitude over the finished seeds of one setting (no rows if none finished)."""
    finished = [rows for rows in runs_rows if rows[0]["status"] == "finished"]
    if not finished:
        return []
    keys = [_point_key(row) for row in finished[0]]
    for rows in finished[1:]:
        if [_point_key(row) for row in rows] != keys:
            raise ValueError(f"fourier_spectra: seeds {finished[0][0]['run_id']} and {rows[0]['run_id']} have "
                             "different blocks or frequencies and cannot be averaged")
    values = np.mean([[row["delta_log_amplitude"] for row in rows] for rows in finished], axis=0)
    checkpoints = "+".join(sorted({rows[0]["checkpoint"] for rows in finished}))
    return [
        {**row, "statistic": "mean", "n_seeds": len(finished), "run_id": None, "seed": None, "status": None,
         "checkpoint": checkpoints, "delta_log_amplitude": float(value)}
        for row, value in zip(finished[0], values)
    ]


def table(runs: Iterable, tables: Iterable[str | os.PathLike]) -> list[dict]:
    """Seed rows of every run and mean rows of every setting (its seeds grouped), in figure order."""
    rows = []
    pairs = typed_tables(runs, tables, FOURIER_TYPES)
    for group in group_by(pairs, lambda pair: pair[0]["setting_id"]).values():
        per_run = [seed_rows(identity, points) for identity, points in group]
        rows.extend(row for run_rows in per_run for row in run_rows)
        rows.extend(seed_mean_rows(per_run))
    return rows


def draw_spectra(ax, rows: Sequence[dict], cmap, norm: Normalize) -> None:
    """One ΔLog-amplitude curve per block of one setting, coloured by the block's normalised depth."""
    for block in group_by(rows, lambda row: row["block_index"]).values():
        block = sorted(block, key=lambda row: row["frequency"])
        ax.plot([row["frequency"] for row in block], [row["delta_log_amplitude"] for row in block],
                color=cmap(norm(block[0]["depth"])), linewidth=1.0)


def plot(rows: Sequence[dict], ncols: int = 3) -> Figure:
    """ΔLog amplitude vs frequency, one panel per setting (seed means), one curve per block coloured by depth."""
    with style_context():
        panels = group_by([row for row in rows if row["statistic"] == "mean"], lambda row: row["setting_id"])
        if not panels:
            return empty_figure("no finished runs")
        cmap, norm = matplotlib.colormaps[DEPTH_CMAP], Normalize(0.0, 1.0)
        fig, axes = panel_grid(len(panels), ncols)
        titles = distinct_labels([panel[0] for panel in panels.values()])
        for ax, title, panel in zip(axes, titles, panels.values()):
            draw_spectra(ax, panel, cmap, norm)
            frequency_ticks(ax)
            ax.set_ylabel("ΔLog amplitude")
            ax.set_title(title)
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, label=DEPTH_LABEL)
        return fig


def make(runs, tables, out_png, out_pdf, out_csv, ncols: int = 3) -> list[dict]:
    """Read the runs and their `fourier` tables, draw the spectra, save PNG + PDF + CSV; returns the rows."""
    rows = table(runs, tables)
    save_figure(plot(rows, ncols=ncols), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
