"""Claims 3, 6 and 7: 2-D loss landscapes (Li et al. 2018) of several runs side by side, on one contour scale.

Option ``loss``: the surface drawn, ``objective`` (NLL + weight-decay term, the paper's; default) or ``nll`` (the
NLL part alone). The analysis's ``objective`` setting says over which data: ``train`` (the paper's: augmented
training batches with mixup/cutmix and label-smoothed soft targets, fixed per run) or ``clean`` (un-augmented
images); the figure's title line says both.

Top row: one panel per run, filled contours over the plane ``w + x d1 + y d2`` of the loss minus the panel's own
lowest loss, the trained weights (the grid point nearest the origin) marked with a
white "+". Every panel uses the same contour levels and colours, log-spaced in that rise
(``geomspace(span / 1000, span, 15)``, span = the largest rise of all panels), so equal colours mean equal rises
and a flat landscape shows few, wide bands whatever its loss level (rises below the first level share the darkest
colour). Bottom row: the 1-D cut y = 0 (the grid row nearest y = 0) of every run on one axis, the loss itself on a
log axis, which also shows the loss level.
Non-finite losses (far from the minimum a model can overflow) are left blank and out of every statistic.

Flatness numbers (within ``radius``, default 0.5, of the centre, in the directions' filter-normalised units):
- ``mean_rise``: the mean of loss - centre loss over the finite grid points with sqrt(x^2 + y^2) <= radius;
  for a paraboloid ``c + a x^2 + b y^2`` it is the mean of ``a x^2 + b y^2`` over those points.
- ``curvature``: the mean curvature of the least-squares quadratic ``c + g.(x, y) + (x, y) A (x, y)^T / 2`` fitted to
  those points, i.e. ``trace(A) / 2`` (``a + b`` for the paraboloid above); resolution independent.
Lower is flatter for both.

The CSV has two kinds of rows (column ``kind``): ``run``, one per run (identity, ``loss_part`` (the surface
drawn), ``objective`` (train | clean), ``centre_x``, ``centre_y``, ``centre_loss``, ``min_loss``, ``max_loss``
(finite grid points), ``n_points``, ``n_nonfinite``, ``radius``, ``mean_rise``, ``curvature``, all of the surface
drawn, and the two parts at the centre, ``centre_nll`` and ``centre_regulariser``); and ``point``, one per run
and grid point (``run_id``, ``x``, ``y``, ``loss`` (objective), ``nll``, ``regulariser``, ``accuracy_pct``), the
grid the panels are drawn from.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from vitwork.figures.analysis_tables import (
    IDENTITY_COLUMNS, LOSS_TEXT, cell_float, check_loss, distinct_labels, finite_or_none, fraction_styles,
    identity_tables, tinted,
)
from vitwork.figures.style import empty_figure, model_styles, new_figure, save_figure, style_context
from vitwork.results import percent

RADIUS = 0.5
LEVELS = 15
LEVEL_SPAN_DECADES = 3
RUN_COLUMNS = ("loss_part", "objective")
SUMMARY_COLUMNS = ("centre_x", "centre_y", "centre_loss", "min_loss", "max_loss", "n_points", "n_nonfinite",
                   "radius", "mean_rise", "curvature", "centre_nll", "centre_regulariser")
POINT_COLUMNS = ("x", "y", "loss", "nll", "regulariser", "accuracy_pct")
COLUMNS = ("kind",) + IDENTITY_COLUMNS + RUN_COLUMNS + SUMMARY_COLUMNS + POINT_COLUMNS
DEFAULT_LOSS = "objective"
# the point column each `loss` option draws
SURFACE_COLUMN = {"objective": "loss", "nll": "nll"}
OBJECTIVE_TEXT = {"train": "augmented training batches (mixup/cutmix, smoothed targets)",
                  "clean": "clean training images", None: "unrecorded data"}


def surface(points: Sequence[dict], column: str = "loss") -> dict:
    """A run's `point` rows as arrays: sorted axes `xs`, `ys` and `loss[iy, ix]`, the values of ``column`` (NaN
    where missing or non-finite)."""
    x = np.asarray([p["x"] for p in points], dtype=float)
    y = np.asarray([p["y"] for p in points], dtype=float)
    loss = np.asarray([np.nan if p[column] is None else p[column] for p in points], dtype=float)
    xs, ix = np.unique(x, return_inverse=True)
    ys, iy = np.unique(y, return_inverse=True)
    grid = np.full((len(ys), len(xs)), np.nan)
    grid[iy, ix] = np.where(np.isfinite(loss), loss, np.nan)
    return {"xs": xs, "ys": ys, "loss": grid}


def centre_index(surf: dict) -> tuple[int, int]:
    """(iy, ix) of the grid point nearest the origin (the trained weights)."""
    return int(np.argmin(np.abs(surf["ys"]))), int(np.argmin(np.abs(surf["xs"])))


def disc(surf: dict, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y and loss of the finite grid points within `radius` of the centre point."""
    iy, ix = centre_index(surf)
    X, Y = np.meshgrid(surf["xs"] - surf["xs"][ix], surf["ys"] - surf["ys"][iy])
    inside = (np.hypot(X, Y) <= radius + 1e-12) & np.isfinite(surf["loss"])
    return X[inside], Y[inside], surf["loss"][inside]


def mean_rise(surf: dict, radius: float = RADIUS) -> float | None:
    """Mean loss increase over the centre's loss at the finite grid points within `radius`."""
    iy, ix = centre_index(surf)
    centre = surf["loss"][iy, ix]
    _, _, loss = disc(surf, radius)
    return float(np.mean(loss - centre)) if loss.size and np.isfinite(centre) else None


def curvature(surf: dict, radius: float = RADIUS) -> float | None:
    """Mean curvature trace(A)/2 of the least-squares quadratic fitted to the grid points within `radius`."""
    x, y, loss = disc(surf, radius)
    if loss.size < 6:  # a 2-D quadratic has 6 coefficients
        return None
    design = np.column_stack([np.ones_like(x), x, y, x * x / 2, x * y, y * y / 2])
    coef, _, rank, _ = np.linalg.lstsq(design, loss, rcond=None)
    if rank < 6:
        return None
    return float((coef[3] + coef[5]) / 2)


def summary(surf: dict, radius: float = RADIUS) -> dict:
    """Centre, extreme losses and the flatness numbers of one landscape."""
    iy, ix = centre_index(surf)
    finite = surf["loss"][np.isfinite(surf["loss"])]
    return {
        "centre_x": float(surf["xs"][ix]), "centre_y": float(surf["ys"][iy]),
        "centre_loss": finite_or_none(surf["loss"][iy, ix]),
        "min_loss": float(finite.min()) if finite.size else None,
        "max_loss": float(finite.max()) if finite.size else None,
        "n_points": int(surf["loss"].size), "n_nonfinite": int(surf["loss"].size - finite.size), "radius": radius,
        "mean_rise": mean_rise(surf, radius), "curvature": curvature(surf, radius),
    }


def point_rows(run_id: str, points: Sequence[dict]) -> list[dict]:
    """One CSV row per grid point of a run's landscape table (numbers parsed, non-finite as None)."""
    return [{"kind": "point", "run_id": run_id, "x": cell_float(p["x"]), "y": cell_float(p["y"]),
             "loss": finite_or_none(cell_float(p["loss"])), "nll": finite_or_none(cell_float(p["nll"])),
             "regulariser": finite_or_none(cell_float(p["regulariser"])),
             "accuracy_pct": finite_or_none(percent(cell_float(p["accuracy"])))}
            for p in points]


def centre_parts(surf_points: Sequence[dict]) -> dict:
    """The NLL and regulariser at the grid point nearest the origin."""
    centre = min(surf_points, key=lambda p: (abs(p["x"]), abs(p["y"])))
    return {"centre_nll": centre["nll"], "centre_regulariser": centre["regulariser"]}


def table(runs, tables: Sequence, radius: float = RADIUS, loss: str = DEFAULT_LOSS) -> list[dict]:
    """Summary rows (one per run with a landscape, strong → weak inductive bias), then every run's grid points."""
    check_loss(loss)
    paired = [(identity, table_rows[0].get("objective") or None, point_rows(identity["run_id"], table_rows))
              for identity, table_rows in identity_tables(runs, tables) if table_rows]  # a diverged run may have none
    summaries = [{"kind": "run", **identity, "loss_part": loss, "objective": objective,
                  **summary(surface(points, SURFACE_COLUMN[loss]), radius), **centre_parts(points)}
                 for identity, objective, points in paired]
    return summaries + [row for _, _, points in paired for row in points]


def rise(surf: dict) -> np.ndarray:
    """The loss above the landscape's own lowest finite loss (NaN stays NaN)."""
    finite = surf["loss"][np.isfinite(surf["loss"])]
    return surf["loss"] - finite.min() if finite.size else surf["loss"]


def contour_levels(surfaces: Sequence[dict]) -> np.ndarray | None:
    """Rise levels shared by all panels: geometric from 1/1000 of the largest rise of any panel up to it."""
    rises = np.concatenate([rise(s)[np.isfinite(s["loss"])] for s in surfaces])
    if rises.size == 0:
        return None
    span = float(rises.max()) if rises.max() > 0 else 1.0
    return np.geomspace(span * 10.0 ** -LEVEL_SPAN_DECADES, span, LEVELS)


def _run_titles(runs: Sequence[dict], sep: str = " · ") -> dict[str, str]:
    """A title per run: the shortest label that tells it from the other runs of the figure."""
    return {run["run_id"]: label for run, label in zip(runs, distinct_labels(runs, sep))}


def _draw_surface(ax, surf: dict, levels: np.ndarray, title: str):
    """Filled contours of one landscape's rise on the shared levels, the centre marked; returns the contour set."""
    X, Y = np.meshgrid(surf["xs"], surf["ys"])
    # a log norm blanks rises <= 0 (the minimum itself): lift them just below the first level, its "under" colour
    above = np.ma.masked_invalid(np.maximum(rise(surf), levels[0] / 2))
    norm = LogNorm(levels[0], levels[-1])
    filled = ax.contourf(X, Y, above, levels=levels, norm=norm, extend="min")
    ax.contour(X, Y, above, levels=levels, colors="white", linewidths=0.4, alpha=0.6)
    iy, ix = centre_index(surf)
    ax.plot(surf["xs"][ix], surf["ys"][iy], marker="+", color="white", markersize=9, markeredgewidth=1.8)
    ax.set_aspect("equal")
    ax.set_xlabel("$x$ (direction 1)")
    ax.set_ylabel("$y$ (direction 2)")
    ax.set_title(title)
    ax.grid(False)
    return filled


def _draw_cuts(ax, runs: Sequence[dict], surfaces: Sequence[dict], titles: dict[str, str]) -> None:
    """The y = 0 cut of every run on one axis, colour per model, line style and shade per training fraction."""
    styles = model_styles((run["model"], run["family"]) for run in runs)
    fractions = fraction_styles(run["fraction"] for run in runs)
    handles = []
    for run, surf in zip(runs, surfaces):
        iy, _ = centre_index(surf)
        fraction = fractions[float(run["fraction"])]
        style = {"color": tinted(styles[run["model"]]["color"], fraction["tint"]), "linestyle": fraction["linestyle"]}
        ax.plot(surf["xs"], surf["loss"][iy], **style)
        handles.append(Line2D([], [], label=titles[run["run_id"]], **style))
    ax.set_yscale("log")
    ax.set_xlabel("$x$ (direction 1, $y = 0$)")
    ax.set_ylabel("NLL + weight decay (nats)" if runs[0]["loss_part"] == "objective" else "NLL (nats)")
    ax.set_title("1-D cut through the trained weights")
    ax.legend(handles=handles, fontsize=7)


def plot(rows: Sequence[dict]) -> Figure:
    """One contour panel per run (shared levels and colour bar), and the y = 0 cuts of all runs below."""
    with style_context():
        runs = [row for row in rows if row["kind"] == "run"]
        points = [row for row in rows if row["kind"] == "point"]
        if not runs:
            return empty_figure("no loss landscapes")
        by_run = {run["run_id"]: [] for run in runs}
        for point in points:
            by_run[point["run_id"]].append(point)
        surfaces = [surface(by_run[run["run_id"]], SURFACE_COLUMN[run["loss_part"]]) for run in runs]
        levels = contour_levels(surfaces)
        if levels is None:
            return empty_figure("no finite loss on any landscape")
        titles = _run_titles(runs)
        panel_titles = _run_titles(runs, sep="\n")  # stacked: a panel is narrower than the legend
        fig, axes = new_figure(2, len(runs), panel_size=(3.0, 2.9))
        filled = None
        for c, (run, surf) in enumerate(zip(runs, surfaces)):
            filled = _draw_surface(axes[0, c], surf, levels, panel_titles[run["run_id"]])
        bar = fig.colorbar(filled, ax=axes[0, :], label="Loss − panel minimum (nats)", shrink=0.9)
        bar.set_ticks(levels[::2], labels=[f"{v:.3g}" for v in levels[::2]])
        gs = axes[1, 0].get_subplotspec().get_gridspec()
        for ax in axes[1]:
            ax.remove()
        _draw_cuts(fig.add_subplot(gs[1, :]), runs, surfaces, titles)
        data = ", ".join(OBJECTIVE_TEXT.get(o, o) for o in dict.fromkeys(run["objective"] for run in runs))
        fig.suptitle(f"Loss: the {LOSS_TEXT[runs[0]['loss_part']]} on {data}", fontsize=8)
        return fig


def make(runs, tables, out_png, out_pdf, out_csv, radius: float = RADIUS, loss: str = DEFAULT_LOSS) -> list[dict]:
    """Table from runs and their landscape CSVs (parallel lists), drawn and saved as PNG + PDF + CSV; returns rows.

    ``loss``: the surface drawn, ``objective`` (the paper's) or ``nll``."""
    rows = table(runs, tables, radius, loss)
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
