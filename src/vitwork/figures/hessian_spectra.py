"""Claims 3 and 4: densities of the Hessian eigenvalues pooled over mini-batches, negative and positive apart.

The paper's Figure 4 style. Columns: negative eigenvalues (x = -λ, log axis, inverted so that more negative
lies further left) and positive eigenvalues (x = λ, log axis). Rows: top, the paper's quantity (each batch's
top-k by magnitude, ``which == "top_magnitude"``); bottom, both ends of each batch's spectrum
(``which in {"largest", "smallest"}``), the better-defined quantity of STUDY.md. Option ``loss``: the Hessian
drawn, ``objective`` (NLL + weight-decay term, the paper's; default) or ``nll`` (the NLL part alone); the figure's
title line says which, the checkpoint and its epoch, and how many eigenvalues did not converge.

Densities are histograms on log10|λ| with bins shared by every curve of a row (``bins_per_decade`` per decade),
normalised per run by the number of its finite values of that row, so a curve is a density per decade and the
negative and positive curves of one run together have area 1: the area of the negative curve is the run's
fraction of negative eigenvalues. (Histograms, not a KDE: a KDE on a handful of values of one sign, or on equal
values, is undefined or misleading.) One curve per setting (model, optimizer setting, fraction, checkpoint), the
mean of its seeds' densities; colour per model (family colour), and per training fraction its own line style
and a paler shade of the model's colour (the full set solid), named in the legend. Every run with a table is
drawn, whatever its status, since the spectrum is taken at a checkpoint that may precede a divergence; the
status is in the CSV.

Eigenvalues that did not converge within the HVP budget are kept by the analysis (``converged`` false), drawn,
and counted; a NaN value (tables of older versions) is skipped but counted. The CSV has two kinds of rows
(column ``kind``), both with the run identity, ``checkpoint_epoch`` and ``loss_part`` (the part drawn):
- ``run``: one per run and ``which`` (top_magnitude, largest, smallest): ``n_batches``, ``n_values`` (finite
  eigenvalues), ``n_nan``, ``n_negative``, ``fraction_negative`` (of the finite values), ``max``, ``min``,
  ``median_positive``, ``n_unconverged`` (rows with ``converged`` false), ``trace_mean`` (the mean Hutchinson
  trace of the part drawn over batches, rows ``which == "trace"``) and ``regulariser_trace_mean`` (the
  weight-decay term's exact trace, ``wd * n_decayed``), both repeated on every row of the run;
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
    IDENTITY_COLUMNS, LOSS_TEXT, cell_bool, cell_float, check_loss, checkpoint_epoch, checkpoint_text,
    distinct_labels, fraction_styles, identity_tables, part_rows, setting_key, tinted,
)
from vitwork.figures.style import empty_figure, model_styles, new_figure, save_figure, style_context
from vitwork.results import group_by

RUN_COLUMNS = ("checkpoint_epoch", "loss_part")
STAT_COLUMNS = ("which", "n_batches", "n_values", "n_nan", "n_negative", "fraction_negative", "max", "min",
                "median_positive", "n_unconverged", "trace_mean", "regulariser_trace_mean")
DENSITY_COLUMNS = ("panel", "sign", "bin_low", "bin_high", "density", "n_seeds")
COLUMNS = ("kind",) + IDENTITY_COLUMNS + RUN_COLUMNS + STAT_COLUMNS + DENSITY_COLUMNS
WHICH = ("top_magnitude", "largest", "smallest")
# Figure rows: panel name -> the `which` values pooled into it.
PANELS = {"top_magnitude": ("top_magnitude",), "ends": ("largest", "smallest")}
PANEL_TITLES = {"top_magnitude": "top-k by magnitude (paper)", "ends": "largest and smallest"}
SIGNS = ("negative", "positive")
BINS_PER_DECADE = 10
DEFAULT_LOSS = "objective"


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
            identity = {key: members[0][0].get(key) for key in IDENTITY_COLUMNS + RUN_COLUMNS
                        if key not in ("run_id", "seed", "status")}
            for sign in SIGNS:
                mean = np.mean([sign_densities(values, edges)[sign] for _, values in members], axis=0)
                rows += [{"kind": "density", **identity, "panel": panel, "sign": sign, "bin_low": 10.0 ** lo,
                          "bin_high": 10.0 ** hi, "density": float(d), "n_seeds": len(members)}
                         for lo, hi, d in zip(edges[:-1], edges[1:], mean)]
    return rows


# --- table, plot, make -------------------------------------------------------------------------------------------


def run_rows(identity: dict, table: Sequence[dict], regulariser: Sequence[dict] = ()) -> list[dict]:
    """One statistics row per `which` kind of one run's Hessian table (rows of one part; `regulariser`: the
    table's regulariser rows)."""
    trace, regulariser_trace = trace_mean(table), trace_mean(regulariser)
    return [{"kind": "run", **identity, **which_stats(table, which), "trace_mean": trace,
             "regulariser_trace_mean": regulariser_trace} for which in WHICH]


def run_parts(runs, tables: Sequence, loss: str = DEFAULT_LOSS) -> list[tuple[dict, list[dict], list[dict]]]:
    """Per run (figure order): its identity with ``checkpoint_epoch`` and ``loss``, the rows of the part drawn and
    the regulariser's rows."""
    check_loss(loss)
    parts = []
    for identity, rows in identity_tables(runs, tables):
        rows = rows or []
        identity = {**identity, "checkpoint_epoch": checkpoint_epoch(rows), "loss_part": loss}
        parts.append((identity, part_rows(rows, loss), part_rows(rows, "regulariser")))
    return parts


def table(runs, tables: Sequence, bins_per_decade: int = BINS_PER_DECADE, loss: str = DEFAULT_LOSS) -> list[dict]:
    """Per-run statistics rows (ordered strong → weak inductive bias), then the density rows of the curves."""
    parts = run_parts(runs, tables, loss)
    stats = [row for identity, rows, regulariser in parts for row in run_rows(identity, rows, regulariser)]
    return stats + density_rows([(identity, rows) for identity, rows, _ in parts], bins_per_decade)


def _draw_curve(ax, curve: Sequence[dict], color, linestyle) -> None:
    """One density curve as a step line over its |λ| bins."""
    edges = [curve[0]["bin_low"]] + [row["bin_high"] for row in curve]
    ax.stairs([row["density"] for row in curve], edges, color=color, linestyle=linestyle, linewidth=1.4,
              baseline=None)


def curve_style(row: dict, models: dict, fractions: dict) -> dict:
    """Colour (the model's, paler for a smaller training fraction) and line style (per fraction) of a curve."""
    fraction = fractions[float(row["fraction"])]
    return {"color": tinted(models[row["model"]]["color"], fraction["tint"]), "linestyle": fraction["linestyle"]}


def figure_note(rows: Sequence[dict]) -> str:
    """The title line: the loss drawn, the checkpoints read (with their epochs), the unconverged eigenvalues."""
    runs = [row for row in rows if row["kind"] == "run"]
    loss = runs[0]["loss_part"] if runs else DEFAULT_LOSS
    checkpoints = ", ".join(sorted({checkpoint_text(row) for row in runs}))
    unconverged = sum(int(row["n_unconverged"]) for row in runs)
    total = sum(int(row["n_values"]) + int(row["n_nan"]) for row in runs)
    return (f"Hessian of the {LOSS_TEXT[loss]} · checkpoint {checkpoints} · {unconverged} of {total} eigenvalues "
            "not converged within the HVP budget (kept and drawn)")


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
        models = model_styles((row["model"], row["family"]) for row in density)
        fractions = fraction_styles(row["fraction"] for row in density)
        fig, axes = new_figure(len(PANELS), len(SIGNS))
        for r, panel in enumerate(PANELS):
            for c, sign in enumerate(SIGNS):
                ax = axes[r, c]
                curves = group_by([row for row in density if row["panel"] == panel and row["sign"] == sign],
                                  setting_key)
                for curve in curves.values():
                    _draw_curve(ax, curve, **curve_style(curve[0], models, fractions))
                if curves:
                    _format_axes(ax, panel, sign)
                else:
                    ax.set_axis_off()
        firsts = [curve[0] for curve in group_by(density, setting_key).values()]
        handles = [Line2D([], [], label=label, **curve_style(row, models, fractions))
                   for row, label in zip(firsts, distinct_labels(firsts))]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3))
        fig.suptitle(figure_note(rows), fontsize=8, wrap=True)
        return fig


def make(runs, tables, out_png, out_pdf, out_csv, bins_per_decade: int = BINS_PER_DECADE,
         loss: str = DEFAULT_LOSS) -> list[dict]:
    """Table from runs and their Hessian CSVs (parallel lists), drawn and saved as PNG + PDF + CSV; returns rows.

    ``loss``: the part of the objective drawn, ``objective`` (the paper's) or ``nll``."""
    rows = table(runs, tables, bins_per_decade, loss)
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
