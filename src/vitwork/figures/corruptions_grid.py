"""Claims 6-7: robustness over the optimizer grid, one heatmap per (model, optimizer recipe).

Drawn by the optimizer-grid figure (`optimizer_grid.plot` with ``metric="robustness_pct"``): models as rows,
optimizer recipes (and fractions, when several) as columns, learning rate on x and weight decay on y; a cell is
the robustness (mean accuracy over the corrupted sets, %) averaged over its finished seeds; a cell whose every
seed diverged is hatched with an "×", "k/n div." counts diverged seeds. One colour scale for all panels. The CSV
has one row per run with its status, clean accuracy and robustness.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from matplotlib.figure import Figure

from vitwork.figures import optimizer_grid
from vitwork.figures.analysis_tables import IDENTITY_COLUMNS, RunTable
from vitwork.figures.corruption_tables import SCORE_COLUMNS, SCORE_LABELS, load_selection, score_rows
from vitwork.figures.style import save_figure

COLUMNS = IDENTITY_COLUMNS + SCORE_COLUMNS


def table(selection: Iterable[RunTable]) -> list[dict]:
    """One row per run: identity (lr, weight decay, status), clean accuracy and robustness."""
    selection = list(selection)
    for item in selection:
        optimizer_grid.require_grid_coordinates(item.run, "corruptions_grid")
    return score_rows(selection)


def plot(rows: Sequence[dict]) -> Figure:
    """Heatmaps of robustness: models as rows, (optimizer[, fraction]) as columns, shared colour scale."""
    return optimizer_grid.plot(rows, metric="robustness_pct", colorbar_label=SCORE_LABELS["robustness_pct"])


def make(runs, tables, out_png, out_pdf, out_csv) -> list[dict]:
    """Read runs and their corruption tables (parallel lists), draw, save PNG + PDF + CSV; returns rows."""
    rows = table(load_selection(runs, tables))
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
