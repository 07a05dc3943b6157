"""Claim 5 (companion): feature-map variance vs normalised depth (log scale), MSA and down-sampling blocks shaded.

The variance is the `feature_variance` analysis: spatial variance of each block output, averaged over images
and channels. Same layout and shading as `fourier_depth` (one panel per block layout, MSA grey, down-sampling
blue; see its docstring for why), drawn by its `plot_depth_profiles`. In the paper MSAs reduce the variance
(they ensemble, i.e. spatially smooth, feature maps) and Conv/MLP blocks increase it. The CSV has one row per
(run, block).
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

from matplotlib.figure import Figure

from vitwork.figures.fourier_depth import plot_depth_profiles
from vitwork.figures.analysis_tables import IDENTITY_COLUMNS
from vitwork.figures.fourier_spectra import BLOCK_COLUMNS, BLOCK_TYPES, typed_tables
from vitwork.figures.style import save_figure

VARIANCE_TYPES = {**BLOCK_TYPES, "variance": float}
COLUMNS = (*IDENTITY_COLUMNS, *BLOCK_COLUMNS, "variance")
Y_LABEL = "Feature-map variance"


def table(runs: Iterable, tables: Iterable[str | os.PathLike]) -> list[dict]:
    """One row per (run, block): the run's identity and the block's mean spatial variance, blocks by index."""
    return [{**identity, **block} for identity, blocks in typed_tables(runs, tables, VARIANCE_TYPES)
            for block in sorted(blocks, key=lambda row: row["block_index"])]


def plot(rows: Sequence[dict], ncols: int = 3) -> Figure:
    """Feature-map variance vs normalised depth on a log axis, MSA blocks grey, down-sampling blocks blue."""
    return plot_depth_profiles(rows, "variance", Y_LABEL, yscale="log", ncols=ncols)


def make(runs, tables, out_png, out_pdf, out_csv, ncols: int = 3) -> list[dict]:
    """Read the runs and their `feature_variance` tables, draw them, save PNG + PDF + CSV; returns the rows."""
    rows = table(runs, tables)
    save_figure(plot(rows, ncols=ncols), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
