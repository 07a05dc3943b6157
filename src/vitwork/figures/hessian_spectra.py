"""Claims 3 and 4: densities of the Hessian eigenvalues pooled over mini-batches, negative and positive apart.

The paper's Figure 4 style. Columns: negative eigenvalues (x = -λ, log axis, inverted so that more negative
lies further left) and positive eigenvalues (x = λ, log axis). Rows: top, the paper's quantity (each batch's
top-k by magnitude, ``which == "top_magnitude"``); bottom, both ends of each batch's spectrum
(``which in {"largest", "most_negative"}``), the better-defined quantity of STUDY.md.

Densities are histograms on log10|λ| with bins shared by every curve of a row (``bins_per_decade`` per decade),
normalised per run by the number of its finite values of that row, so a curve is a density per decade and the
negative and positive curves of one run together have area 1: the area of the negative curve is the run's
fraction of negative eigenvalues. (Histograms, not a KDE: a KDE on a handful of values of one sign, or on equal
values, is undefined or misleading.) One curve per setting (model, optimizer setting, fraction, checkpoint), the
mean of its seeds' densities; colour per model (family colour), dashed for a training fraction below 1 (the
paper's dotted ViT on 6% of the data). Every run with a table is drawn, whatever its status, since the
spectrum is taken at a checkpoint that may precede a divergence; the status is in the CSV.

NaN values (Lanczos ranks that did not converge) are skipped but counted, and unconverged rows are drawn but
counted. The CSV has two kinds of rows (column ``kind``):
- ``run``: one per run and ``which`` (top_magnitude, largest, most_negative): the run identity, ``n_batches``,
  ``n_values`` (finite eigenvalues), ``n_nan``, ``n_negative``, ``fraction_negative`` (of the finite values),
  ``max``, ``min``, ``median_positive``, ``n_unconverged`` (rows with ``converged`` false) and ``trace_mean``
  (the mean Hutchinson trace over batches, rows ``which == "trace"``, repeated on every row of the run);
- ``density``: one per plotted curve and bin: ``panel`` (top_magnitude | ends), ``sign`` (negative |
  positive), ``bin_low``/``bin_high`` (|λ| bin edges), ``density`` (per decade) and ``n_seeds``.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from vitwork.figures.analysis_tables import (
    IDENTITY_COLUMNS, cell_bool, cell_float, distinct_labels, identity_tables, setting_key,
)
from vitwork.figures.style import empty_figure, model_styles, new_figure, save_figure, style_context
from vitwork.results import group_by
STAT_COLUMNS = ("which", "n_batches", "n_values", "n_nan", "n_negative", "fraction_negative", "max", "min",
                "median_positive", "n_unconverged", "trace_mean")
DENSITY_COLUMNS = ("panel", "sign", "bin_low", "bin_high", "density", "n_seeds")
COLUMNS = ("kind",) + IDENTITY_COLUMNS + STAT_COLUMNS + DENSITY_COLUMNS
WHICH = ("top_magnitude", "largest", "most_negative")
# Figure rows: panel name -> the `which` values pooled into it.
PANELS = {"top_magnitude": ("top_magnitude",), "ends": ("largest", "most_negative")}
PANEL_TITLES = {"top_magnitude": "top-k by magnitude (paper)", "ends": "largest and most negative"}
SIGNS = ("negative", "positive")
BINS_PER_DECADE = 10
SMALL_DATA_LINESTYLE = "--"


# --- the Hessian table ---------------------------------------------------------------------------------------


def eigen_rows(rows: Iterable[dict], which: Iterable[str]) -> list[dict]:
    """The Hessian-table rows of the given `which` kinds."""
    which = set(which)
    return [row for row in rows if row["which"] in which]


def eigenvalues(rows: Iterable[dict], which: Iterable[str]) -> np.ndarray:
    """The values (NaN kept) of the Hessian-table rows of the given `which` kinds."""
    return np.asarray([cell_float(row["value"]) for row in eigen_rows(rows, which)], dtype=float)


def which_stats(rows: Sequence[dict], which: str) -> dict:
    """Counts and extremes of one `which` kind of a run's Hessian table (NaN values skipped but counted)."""
    selected = eigen_rows(rows, (which,))
    values = eigenvalues(selected, (which,))
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    n_negative = int((finite < 0).sum())
    return {
        "which": which, "n_batches": len({row["batch"] for row in selected}), "n_values": int(finite.size),
        "n_nan": int(values.size - finite.size), "n_negative": n_negative,
        "fraction_negative": n_negative / finite.size if finite.size else None,
        "max": float(finite.max()) if finite.size else None, "min": float(finite.min()) if finite.size else None,
        "median_positive": float(np.median(positive)) if positive.size else None,
        "n_unconverged": sum(not cell_bool(row["converged"]) for row in selected),
    }


def trace_mean(rows: Sequence[dict]) -> float | None:
    """The mean over batches of the Hutchinson trace estimates (rows `which == "trace"`), or None."""
    values = eigenvalues(rows, ("trace",))
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def median_largest(rows: Sequence[dict]) -> float | None:
    """The median over batches of the largest eigenvalue (rows `which == "largest"`), or None."""
    values = eigenvalues(rows, ("largest",))
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


# --- densities -------------------------------------------------------------------------------------------------


def log_bin_edges(values: Iterable[np.ndarray], bins_per_decade: int = BINS_PER_DECADE) -> np.ndarray | None:
    """Common log10|λ| bin edges covering every finite non-zero value given (whole decades), or None."""
    magnitudes = np.concatenate([np.abs(v[np.isfinite(v) & (v != 0)]) for v in values] or [np.empty(0)])
    if magnitudes.size == 0:
        return None
    low, high = math.floor(np.log10(magnitudes.min())), math.ceil(np.log10(magnitudes.max()))
    high = max(high, low + 1)
    return np.linspace(low, high, (high - low) * bins_per_decade + 1)


def sign_densities(values: np.ndarray, edges: np.ndarray) -> dict[str, np.ndarray]:
    """Per-decade densities of log10|λ| for the negative and the positive values, normalised by all finite values.

    The two densities together integrate to 1 over log10|λ| (zeros, of neither sign, are left out).
    """
    finite = values[np.isfinite(values)]
    width = np.diff(edges)
    densities = {}
    for sign, mask in (("negative", finite < 0), ("positive", finite > 0)):
        counts, _ = np.histogram(np.log10(np.abs(finite[mask])), bins=edges)
        densities[sign] = counts / (max(finite.size, 1) * width)
    return densities


def density_rows(runs_rows: Sequence[tuple[dict, list[dict]]], bins_per_decade: int = BINS_PER_DECADE) -> list[dict]:
    """Seed-mean density curves per setting, figure row (panel) and sign, one row per bin."""
    rows = []
    for panel, which in PANELS.items():
        per_run = [(identity, eigenvalues(table, which)) for identity, table in runs_rows]
        per_run = [(identity, values) for identity, values in per_run if np.isfinite(values).any()]
        edges = log_bin_edges([values for _, values in per_run], bins_per_decade)
        if edges is None:
            continue
        for members in group_by(per_run, lambda item: setting_key(item[0])).values():
            identity = {key: members[0][0][key] for key in IDENTITY_COLUMNS if key not in ("run_id", "seed", "status")}
            for sign in SIGNS:
                mean = np.mean([sign_densities(values, edges)[sign] for _, values in members], axis=0)
                rows += [{"kind": "density", **identity, "panel": panel, "sign": sign, "bin_low": 10.0 ** lo,
                          "bin_high": 10.0 ** hi, "density": float(d), "n_seeds": len(members)}
                         for lo, hi, d in zip(edges[:-1], edges[1:], mean)]
    return rows


# --- table, plot, make -------------------------------------------------------------------------------------------


def run_rows(identity: dict, table: Sequence[dict]) -> list[dict]:
    """One statistics row per `which` kind of one run's Hessian table."""
    trace = trace_mean(table)
    return [{"kind": "run", **identity, **which_stats(table, which), "trace_mean": trace} for which in WHICH]


def table(runs, tables: Sequence, bins_per_decade: int = BINS_PER_DECADE) -> list[dict]:
    """Per-run statistics rows (ordered strong → weak inductive bias), then the density rows of the curves."""
    paired = [(identity, rows or []) for identity, rows in identity_tables(runs, tables)]
    stats = [row for identity, rows in paired for row in run_rows(identity, rows)]
    return stats + density_rows(paired, bins_per_decade)


def _draw_curve(ax, curve: Sequence[dict], style: dict, linestyle) -> None:
    """One density curve as a step line over its |λ| bins."""
    edges = [curve[0]["bin_low"]] + [row["bin_high"] for row in curve]
    ax.stairs([row["density"] for row in curve], edges, color=style["color"], linestyle=linestyle,
              linewidth=1.4, baseline=None)


def fraction_linestyle(row: dict):
    """Dashed below the full training set (the paper's dotted ViT on 6% of the data), solid otherwise."""
    return SMALL_DATA_LINESTYLE if row["fraction"] < 1 else "-"


def _format_axes(ax, panel: str, sign: str) -> None:
    """Log |λ| axis (inverted for the negative panel), labels and the row's title."""
    ax.set_xscale("log")
    if sign == "negative":
        ax.invert_xaxis()
        ax.set_xlabel("$-\\lambda$ (negative eigenvalues)")
    else:
        ax.set_xlabel("$\\lambda$ (positive eigenvalues)")
    ax.set_ylabel("Density (per decade)")
    ax.set_title(f"{PANEL_TITLES[panel]}: {sign}")
    ax.set_ylim(bottom=0)


def plot(rows: Sequence[dict]) -> Figure:
    """2 x 2 panels: (top-k by magnitude, both ends) x (negative, positive) eigenvalue densities per setting."""
    with style_context():
        density = [row for row in rows if row["kind"] == "density"]
        if not density:
            return empty_figure("no finite Hessian eigenvalues")
        styles = model_styles((row["model"], row["family"]) for row in density)
        fig, axes = new_figure(len(PANELS), len(SIGNS))
        for r, panel in enumerate(PANELS):
            for c, sign in enumerate(SIGNS):
                ax = axes[r, c]
                curves = group_by([row for row in density if row["panel"] == panel and row["sign"] == sign],
                                  setting_key)
                for curve in curves.values():
                    _draw_curve(ax, curve, styles[curve[0]["model"]], fraction_linestyle(curve[0]))
                if curves:
                    _format_axes(ax, panel, sign)
                else:
                    ax.set_axis_off()
        firsts = [curve[0] for curve in group_by(density, setting_key).values()]
        handles = [Line2D([], [], color=styles[row["model"]]["color"], linestyle=fraction_linestyle(row),
                          label=label) for row, label in zip(firsts, distinct_labels(firsts))]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3))
        return fig


def make(runs, tables, out_png, out_pdf, out_csv, bins_per_decade: int = BINS_PER_DECADE) -> list[dict]:
    """Table from runs and their Hessian CSVs (parallel lists), drawn and saved as PNG + PDF + CSV; returns rows."""
    rows = table(runs, tables, bins_per_decade)
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
