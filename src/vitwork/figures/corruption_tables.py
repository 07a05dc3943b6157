"""Shared by the `corruptions_*` figures: read a run's corruption table and score the run (claim 6).

A table (docs/architecture.md, "Analyses": `<results>/analysis/corruptions/<run id>/<checkpoint>.csv`) has the
columns `corruption, severity, acc, nll`: one `clean` row at severity 0 (the clean test set at the same
checkpoint), then one row per corrupted set (15 corruptions x 5 severities for CIFAR-100-C). A run's scores are
its clean accuracy and its robustness, the mean accuracy over the corrupted sets
(`vitwork.robustness.mean_corruption_accuracy`, not mCE), as fractions and in percent. Both are read on the
analysis's test sample (columns `sample_size` and `pool_size` of the table, kept as ``clean_images`` and
``test_images``); when the sample is smaller than the test split, every label of the clean accuracy says so
(`score_labels`).

Diverged runs are not scored (their table, if any, is not read): like the optimizer-grid figure, every figure
keeps them in its CSV with empty scores and leaves them out of means.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Sequence

from vitwork.corruptions import CORRUPTIONS, SEVERITIES
from vitwork.figures.analysis_tables import RunTable, identity_sort_key, load_tables, run_identity
from vitwork.results import group_by, mean_and_std, percent, read_csv, require_single_setting
from vitwork.robustness import mean_corruption_accuracy

CLEAN = "clean"
TABLE_COLUMNS = ("corruption", "severity", "acc", "nll")
SCORE_COLUMNS = ("n_sets", "clean_acc", "robustness", "clean_acc_pct", "robustness_pct", "clean_images",
                 "test_images")
SCORE_LABELS = {
    "clean_acc_pct": "Clean test accuracy (%)",
    "robustness_pct": "Robustness: mean corrupted acc. (%)",
}
# The two panels of the figures that plot both scores against something: (column, title).
SCORE_PANELS = (("clean_acc_pct", "Clean accuracy"), ("robustness_pct", "Robustness"))


def _optional_int(cell: str | None) -> int | None:
    """An optional integer cell (None when the column is absent or empty)."""
    return None if cell in ("", None) else int(cell)


def _parse_row(raw: dict, where: str) -> dict:
    """One CSV row with typed values (severity int, acc and nll float), acc checked to be a fraction."""
    try:
        row = {"corruption": raw["corruption"], "severity": int(raw["severity"]), "acc": float(raw["acc"]),
               "nll": float(raw["nll"]) if raw["nll"] not in ("", None) else None,
               "sample_size": _optional_int(raw.get("sample_size")), "pool_size": _optional_int(raw.get("pool_size"))}
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: malformed row {raw}: {err}") from None
    if not (math.isfinite(row["acc"]) and 0.0 <= row["acc"] <= 1.0):
        raise ValueError(f"{where}: acc={row['acc']!r} is not a fraction in [0, 1]")
    return row


def _check_sets(rows: Sequence[dict], path: Path) -> None:
    """Exactly one clean row at severity 0, and corrupted sets that are known, unique and not empty."""
    clean = [row for row in rows if row["corruption"] == CLEAN]
    if len(clean) != 1 or clean[0]["severity"] != 0:
        raise ValueError(f"{path}: expected exactly one '{CLEAN}' row at severity 0, got {len(clean)}")
    corrupted = [row for row in rows if row["corruption"] != CLEAN]
    if not corrupted:
        raise ValueError(f"{path}: no corrupted sets")
    for row in corrupted:
        if row["corruption"] not in CORRUPTIONS or row["severity"] not in SEVERITIES:
            raise ValueError(f"{path}: unknown set ({row['corruption']!r}, severity {row['severity']})")
    keys = [(row["corruption"], row["severity"]) for row in corrupted]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{path}: duplicate (corruption, severity) rows")


def read_corruption_table(path: str | os.PathLike) -> list[dict]:
    """A run's corruption table as checked, typed rows (`corruption`, `severity`, `acc`, `nll`); errors name it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: missing (the corruptions analysis of this run has not been run)")
    raw_rows = read_csv(path)
    if not raw_rows:
        raise ValueError(f"{path}: no rows")
    missing = [column for column in TABLE_COLUMNS if column not in raw_rows[0]]
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(missing)} (expected {', '.join(TABLE_COLUMNS)})")
    rows = [_parse_row(raw, f"{path}:{lineno}") for lineno, raw in enumerate(raw_rows, start=2)]
    _check_sets(rows, path)
    return rows


def corrupted_rows(rows: Sequence[dict]) -> list[dict]:
    """The corrupted-set rows of a table (every row but the clean one)."""
    return [row for row in rows if row["corruption"] != CLEAN]


def clean_accuracy(rows: Sequence[dict]) -> float:
    """Accuracy (fraction) on the clean test set, from the table's `clean` row."""
    return next(row["acc"] for row in rows if row["corruption"] == CLEAN)


def robustness(rows: Sequence[dict]) -> float:
    """Robustness (fraction): the mean accuracy over the table's corrupted sets."""
    return mean_corruption_accuracy(corrupted_rows(rows))


def load_selection(runs: Iterable, tables: Iterable) -> list[RunTable]:
    """Pair each run (RunResult, run dir or run.json) with its checked corruption table, in order
    (`analysis_tables.load_tables`); a diverged run's table is never read (its rows are None)."""
    return load_tables(runs, tables, read=read_corruption_table, read_diverged=False)


def run_scores(item: RunTable) -> dict:
    """Clean accuracy and robustness (fractions and %) and the number of corrupted sets; None for a diverged run."""
    if item.rows is None:
        return dict.fromkeys(SCORE_COLUMNS)
    clean, robust = clean_accuracy(item.rows), robustness(item.rows)
    clean_row = next(row for row in item.rows if row["corruption"] == CLEAN)
    return {"n_sets": len(corrupted_rows(item.rows)), "clean_acc": clean, "robustness": robust,
            "clean_acc_pct": percent(clean), "robustness_pct": percent(robust),
            "clean_images": clean_row["sample_size"], "test_images": clean_row["pool_size"]}


def sample_note(sizes: Iterable[tuple[int | None, int | None]]) -> str | None:
    """`N-image test sample` when some (sample size, test split size) pair is a sample smaller than the split."""
    samples = {size for size, pool in sizes if size is not None and pool is not None and size < pool}
    if not samples:
        return None
    return f"{samples.pop()}-image test sample" if len(samples) == 1 else "test samples"


def score_labels(rows: Sequence[dict]) -> dict[str, str]:
    """`SCORE_LABELS`, the clean accuracy's labelled as the sample's when it is not the full test split's."""
    note = sample_note((row.get("clean_images"), row.get("test_images")) for row in rows)
    if note is None:
        return dict(SCORE_LABELS)
    return {**SCORE_LABELS, "clean_acc_pct": f"Clean accuracy, {note} (%)"}


def score_rows(selection: Sequence[RunTable], **extra_columns) -> list[dict]:
    """One row per run: identity, any extra columns (name -> function of the RunTable), scores; sorted."""
    rows = [{**run_identity(item.run, item.path), **{name: fn(item) for name, fn in extra_columns.items()},
             **run_scores(item)} for item in selection]
    return sorted(rows, key=identity_sort_key)


def mean_point(rows: Sequence[dict]) -> dict | None:
    """Mean and std (None for one seed) of clean accuracy and robustness (%) over the finished rows; None if none."""
    finished = [row for row in rows if row["status"] == "finished"]
    if not finished:
        return None
    clean, clean_std, count = mean_and_std(row["clean_acc_pct"] for row in finished)
    robust, robust_std, _ = mean_and_std(row["robustness_pct"] for row in finished)
    return {"clean_acc_pct": clean, "clean_acc_std": clean_std, "robustness_pct": robust,
            "robustness_std": robust_std, "n_seeds": count}


def require_one_setting_per(selection: Sequence[RunTable], key, what: str) -> None:
    """Runs that share `key(run)` must be seeds of one setting (so averaging them is averaging seeds)."""
    for value, group in group_by(selection, lambda item: key(item.run)).items():
        require_single_setting([item.run for item in group], f"{what} {value}")
