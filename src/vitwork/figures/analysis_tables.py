"""What every analysis figure shares: pairing runs with their analysis tables, the run-identity columns of a
tidy row, typed cells, labels that stay distinct among the lines or panels of a figure, and the panel grid.

An analysis figure's `make(runs, tables, ...)` receives parallel lists of runs (RunResults, run dirs or run.json
paths) and their analysis CSVs, laid out as `<results>/analysis/<analysis>/<run id>/<checkpoint>.csv`
(docs/architecture.md, "Analyses"): a table's path contains its run's id (checked, which catches mis-ordered
inputs) and its file stem is the checkpoint. A diverged run may lack its table (None, or no file: its
checkpoint was never reached); a finished run may not.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np
from matplotlib.colors import to_rgb

from vitwork.figures.style import (
    PANEL_SIZE, format_number, new_figure, optimizer_setting_label, spec_model_label, spec_optimizer_label,
)
from vitwork.results import RunResult, as_runs, group_by, model_sort_key, read_csv

IDENTITY_COLUMNS = ("run_id", "setting_id", "model", "model_label", "family", "optimizer", "optimizer_label",
                    "optimizer_setting", "lr", "weight_decay", "fraction", "seed", "status", "checkpoint")


# --- run identity ----------------------------------------------------------------------------------------------


def setting_id(run: RunResult) -> str:
    """The run id without its seed (`vit_ti/adamw-lr0.001-wd0.05/f1.0`): one id per setting."""
    head, _, last = run.run_id.rpartition("/")
    return head if head and last == f"s{run.seed}" else run.run_id


def checkpoint_epoch(rows: Sequence[dict] | None) -> int | None:
    """The epoch of the checkpoint an analysis table read (its `checkpoint_epoch` column), or None."""
    cell = rows[0].get("checkpoint_epoch") if rows else None
    return None if cell in (None, "") else int(float(cell))


def checkpoint_text(identity: dict) -> str:
    """A checkpoint as written in labels and notes: `warmup (epoch 5)`, or its name when the epoch is unknown."""
    epoch = identity.get("checkpoint_epoch")
    name = identity.get("checkpoint") or ""
    return f"{name} (epoch {epoch})" if epoch is not None else name


def checkpoint_name(table: str | os.PathLike | None) -> str | None:
    """The checkpoint an analysis table was computed at: its file stem (`.../<run id>/warmup.csv` -> `warmup`)."""
    return None if table is None else Path(table).stem


def run_identity(run: RunResult, table: str | os.PathLike | None = None) -> dict:
    """The columns that identify a run (and the checkpoint of its analysis table) in every analysis CSV."""
    return {
        "run_id": run.run_id, "setting_id": setting_id(run), "model": run.model_name,
        "model_label": spec_model_label(run.spec), "family": run.family, "optimizer": run.optimizer_recipe,
        "optimizer_label": spec_optimizer_label(run.spec), "optimizer_setting": optimizer_setting_label(run.spec),
        "lr": run.lr, "weight_decay": run.weight_decay, "fraction": run.fraction, "seed": run.seed,
        "status": run.status, "checkpoint": checkpoint_name(table),
    }


def _none_first(value: float | None) -> float:
    """Sort key for optional numbers: a missing value before every present one."""
    return -math.inf if value is None else value


def identity_sort_key(row: dict) -> tuple:
    """Figure order of identity rows: model (strong → weak inductive bias), optimizer, fraction, lr, weight
    decay, checkpoint, seed."""
    return (model_sort_key(row["family"], row["model"]), row["optimizer"], row["fraction"], _none_first(row["lr"]),
            _none_first(row["weight_decay"]), row.get("checkpoint") or "", _none_first(row["seed"]))


def setting_key(row: dict) -> tuple:
    """Everything that defines a curve except the seed: the setting (model, optimizer setting, fraction) and
    the checkpoint."""
    return (row["setting_id"], row["checkpoint"] or "")


# --- runs and their tables -------------------------------------------------------------------------------------


class RunTable(NamedTuple):
    """One run of a figure's selection with its analysis table's path (as given) and rows (None: not read)."""

    run: RunResult
    path: Path | None
    rows: list[dict] | None


def load_tables(runs: Iterable, tables: Iterable, read: Callable[[Path], list[dict]] = read_csv,
                read_diverged: bool = True) -> list[RunTable]:
    """Pair each run with its analysis table (parallel lists, in order), read by ``read``.

    A diverged run's table may be None or missing (rows None); with ``read_diverged=False`` it is never read.
    A finished run's missing table is an error, and so is a table whose path lacks its run's id.
    """
    runs, tables = as_runs(runs), list(tables)
    if len(runs) != len(tables):
        raise ValueError(f"{len(runs)} runs but {len(tables)} analysis tables: the lists must be parallel")
    paired = []
    for run, table in zip(runs, tables):
        path = None if table is None else Path(table)
        if path is None or not path.is_file():
            if not run.diverged:
                raise FileNotFoundError(f"{path}: analysis table of finished run {run.run_id} is missing")
            paired.append(RunTable(run, path, None))
            continue
        if run.run_id not in path.as_posix():
            raise ValueError(f"analysis table {path} does not belong to run {run.run_id} "
                             "(its path must contain the run id)")
        paired.append(RunTable(run, path, read(path) if read_diverged or not run.diverged else None))
    return paired


def identity_tables(runs: Iterable, tables: Iterable, read: Callable[[Path], list[dict]] = read_csv,
                    read_diverged: bool = True) -> list[tuple[dict, list[dict] | None]]:
    """(run identity, table rows or None) per run (`load_tables`), in figure order (`identity_sort_key`)."""
    pairs = [(run_identity(item.run, item.path), item.rows) for item in load_tables(runs, tables, read, read_diverged)]
    return sorted(pairs, key=lambda pair: identity_sort_key(pair[0]))


def read_analysis_table(path: str | os.PathLike, types: dict[str, Callable[[str], object]]) -> list[dict]:
    """Rows of an analysis CSV with the columns of ``types`` converted (other columns dropped); errors name the file."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in types if column not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = []
        for line, record in enumerate(reader, start=2):
            try:
                rows.append({column: convert(record[column]) for column, convert in types.items()})
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}:{line}: {err}") from None
    if not rows:
        raise ValueError(f"{path}: the analysis table has no rows")
    return rows


# --- typed cells -----------------------------------------------------------------------------------------------


def cell_float(cell: str | None) -> float:
    """A CSV cell as float; an empty cell (None written by write_csv) or `nan` is NaN."""
    return float("nan") if cell is None or cell.strip() == "" else float(cell)


def cell_bool(cell: str | None) -> bool:
    """A CSV cell written from a bool (`True`/`False`, also `1`/`0`, `true`/`false`)."""
    return str(cell).strip().lower() in ("true", "1", "yes")


def finite_or_none(value: float | None) -> float | None:
    """A float for the CSV: NaN/inf (no value) as None, which write_csv leaves empty."""
    return None if value is None or not math.isfinite(value) else float(value)


# --- labels and panels -----------------------------------------------------------------------------------------


def _fraction_text(identity: dict) -> str:
    """The training fraction of a run or setting as `6% data`."""
    return f"{format_number(100 * float(identity['fraction']))}% data"


def setting_parts(identities: Sequence[dict]) -> list[list[str]]:
    """Per identity, the model label plus only what tells the settings of a figure apart: the data fraction and
    the checkpoint where the figure has several, the optimizer setting where its model has several."""
    several_fractions = len({float(identity["fraction"]) for identity in identities}) > 1
    several_checkpoints = len({checkpoint_text(identity) for identity in identities}) > 1
    settings_of = {model: {identity["optimizer_setting"] for identity in group}
                   for model, group in group_by(identities, lambda identity: identity["model"]).items()}
    parts = []
    for identity in identities:
        part = [identity["model_label"]]
        part += [_fraction_text(identity)] if several_fractions else []
        part += [identity["optimizer_setting"]] if len(settings_of[identity["model"]]) > 1 else []
        part += [checkpoint_text(identity)] if several_checkpoints else []
        parts.append(part)
    return parts


def identity_label(identity: dict, detail: int, sep: str = " · ") -> str:
    """A line/panel label: the model label plus ``detail`` of (optimizer setting, data fraction, run or setting
    id, checkpoint)."""
    parts = [identity["model_label"], identity["optimizer_setting"], _fraction_text(identity),
             identity.get("run_id") or identity["setting_id"], checkpoint_text(identity)]
    return sep.join(parts[: detail + 1])


def distinct_labels(identities: Sequence[dict], sep: str = " · ") -> list[str]:
    """Labels under which the given runs or settings are all distinct, as short as they can be.

    First the `setting_parts` of each; where two are still alike (e.g. seeds of one setting), the least detailed
    `identity_label` under which all differ. ``sep`` joins the parts (a newline for narrow panel titles).
    """
    labels = [sep.join(parts) for parts in setting_parts(identities)]
    if len(set(labels)) == len(labels):
        return labels
    for detail in range(5):
        labels = [identity_label(identity, detail, sep) for identity in identities]
        if len(set(labels)) == len(labels):
            break
    return labels


def line_label(label: str, run_rows: Sequence[dict]) -> str:
    """A run's legend label, marked when the run diverged."""
    return f"{label} (diverged)" if run_rows[0]["status"] == "diverged" else label


def panel_grid(count: int, ncols: int, panel_size: Sequence[float] = PANEL_SIZE):
    """A figure with ``count`` panels in rows of at most ``ncols`` (unused cells hidden); returns (fig, used axes)."""
    ncols = max(1, min(ncols, count))
    fig, axes = new_figure(math.ceil(count / ncols), ncols, panel_size=panel_size)
    for ax in axes.flat[count:]:
        ax.set_axis_off()
    return fig, list(axes.flat[:count])


def fraction_styles(fractions: Iterable[float]) -> dict[float, dict]:
    """Per training fraction (largest first): a line style and a tint, so every fraction of a model reads apart.

    The full data set is solid and untinted; smaller fractions get dashes, dots, ... and a paler shade of the
    model's colour (`tinted`).
    """
    ordered = sorted({float(f) for f in fractions}, reverse=True)
    return {fraction: {"linestyle": FRACTION_LINESTYLES[i % len(FRACTION_LINESTYLES)],
                       "tint": 0.0 if len(ordered) == 1 else 0.55 * i / (len(ordered) - 1)}
            for i, fraction in enumerate(ordered)}


FRACTION_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))


def tinted(color, amount: float) -> tuple[float, float, float]:
    """``color`` mixed with white by ``amount`` (0 = unchanged)."""
    rgb = np.asarray(to_rgb(color))
    return tuple(rgb + (1.0 - rgb) * amount)


# --- Hessian tables: parts of the objective -------------------------------------------------------------------

LOSS_PARTS = ("objective", "nll")
LOSS_TEXT = {"objective": "objective (NLL + weight-decay term)", "nll": "NLL part (no weight-decay term)"}


def check_loss(loss: str) -> str:
    """A figure's `loss` option: objective or nll."""
    if loss not in LOSS_PARTS:
        raise ValueError(f"loss must be one of {LOSS_PARTS}, got {loss!r}")
    return loss


def part_rows(rows: Iterable[dict], part: str) -> list[dict]:
    """The Hessian-table rows of one part of the objective (`part` column: objective, nll, regulariser)."""
    return [row for row in rows if row["part"] == part]
