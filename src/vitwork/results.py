"""Reading training-run outputs (`run.json`, `metrics.jsonl`) and writing tidy tables (CSV, markdown).

Accuracies (`test_acc`, `train_acc`) are stored by training as fractions in [0, 1]; loading checks that, so a
unit mismatch fails loudly instead of producing a figure that is off by 100. Tables and figures show them in
percent (columns ending in `_pct`), and derive the test error from the test accuracy (`100 * (1 - acc)`),
so they do not depend on the unit in which `test_err` was stored.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Sequence

import numpy as np

from vitwork.io import atomic_path

RUN_STATUSES = ("finished", "diverged")
# Strong to weak inductive bias: the order of models in every table and figure (claim 1 of STUDY.md).
FAMILY_ORDER = ("resnet", "preact_resnet", "alternet", "swin", "pit", "vit_local", "vit")
FRACTION_METRICS = ("test_acc", "train_acc")
REQUIRED_RUN_KEYS = ("run_id", "spec", "status", "final")


class RunLoadError(ValueError):
    """A run directory whose files are missing or malformed; the message names the file."""


@dataclass(frozen=True)
class RunResult:
    """One training run as written by `vitwork.train`: its spec, status, final metrics and per-epoch curve."""

    run_id: str
    spec: dict
    status: str
    final: dict
    epochs: list[dict]
    epochs_completed: int | None = None
    wall_time_s: float | None = None
    images_per_s: float | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def model_name(self) -> str:
        """The model's name in the study config (e.g. `vit_ti`)."""
        return self.spec["model"]["name"]

    @property
    def family(self) -> str:
        """The model family (`vitwork.results.FAMILY_ORDER`: `resnet`, ..., `swin`, `pit`, `vit_local`, `vit`)."""
        return self.spec["model"]["family"]

    @property
    def optimizer_recipe(self) -> str:
        """The optimizer recipe's key in the study config (e.g. `adamw_grid`); figures group runs by it."""
        return self.spec["optimizer"].get("recipe", self.spec["optimizer"]["name"])

    @property
    def optimizer_name(self) -> str:
        """The optimizer algorithm (timm / torch.optim name, e.g. `adamw`, `momentum`)."""
        return self.spec["optimizer"]["name"]

    @property
    def hparams(self) -> dict:
        """The optimizer hyperparameters of the run spec."""
        return self.spec["optimizer"].get("hparams", {})

    @property
    def lr(self) -> float | None:
        """The peak learning rate, or None when the spec has none."""
        return self.hparams.get("lr")

    @property
    def weight_decay(self) -> float | None:
        """The weight decay, or None when the spec has none."""
        return self.hparams.get("weight_decay")

    @property
    def fraction(self) -> float:
        """The training-set fraction the run was trained on."""
        return self.spec["fraction"]

    @property
    def seed(self) -> int:
        """The run's seed."""
        return self.spec["seed"]

    @property
    def diverged(self) -> bool:
        """True when training stopped on a non-finite loss."""
        return self.status == "diverged"

    @property
    def finished(self) -> bool:
        """True when training ran to the end with finite metrics."""
        return self.status == "finished"

    def final_metric(self, key: str) -> float | None:
        """A final metric (of the last finite epoch), or None."""
        return self.final.get(key)

    def test_err_pct(self) -> float | None:
        """Final test error in percent, from the final test accuracy."""
        return error_percent(self.final_metric("test_acc"))

    def setting_key(self) -> tuple:
        """Everything that defines the run except its seed: model, optimizer recipe, hyperparameters, fraction."""
        hparams = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in self.hparams.items()))
        return (self.model_name, self.optimizer_recipe, self.optimizer_name, hparams, self.fraction)


def percent(value: float | None) -> float | None:
    """A fraction in [0, 1] as percent; None stays None."""
    return None if value is None else 100.0 * value


def error_percent(accuracy: float | None) -> float | None:
    """The error in percent of an accuracy given as a fraction; None stays None."""
    return None if accuracy is None else 100.0 * (1.0 - accuracy)


def _finite_or_none(value: Any) -> Any:
    """Treat NaN/inf (which Python's json accepts) like the contract's null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _read_json_file(path: Path) -> Any:
    """Parse one JSON file, raising RunLoadError that names the file."""
    if not path.is_file():
        raise RunLoadError(f"{path}: missing (the run has not been trained, or did not finish writing)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunLoadError(f"{path}: malformed JSON at line {err.lineno}: {err.msg}") from None


def _read_metrics(path: Path) -> list[dict]:
    """Parse `metrics.jsonl` into one dict per epoch (non-finite values as None), naming file and line on error."""
    if not path.is_file():
        raise RunLoadError(f"{path}: missing (the run has not been trained)")
    epochs = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise RunLoadError(f"{path}:{lineno}: malformed JSON: {err.msg}") from None
        if not isinstance(record, dict) or "epoch" not in record:
            raise RunLoadError(f"{path}:{lineno}: expected a JSON object with an 'epoch' key")
        record = {key: _finite_or_none(value) for key, value in record.items()}
        _check_fractions(record, f"{path}:{lineno}")
        epochs.append(record)
    return epochs


def _check_fractions(metrics: dict, where: str) -> None:
    """Accuracies must be fractions in [0, 1] (see the module docstring)."""
    for key in FRACTION_METRICS:
        value = metrics.get(key)
        if value is not None and not (isinstance(value, (int, float)) and -1e-9 <= value <= 1 + 1e-9):
            raise RunLoadError(f"{where}: {key}={value!r} is not a fraction in [0, 1]")


def _check_spec(spec: Any, where: str) -> None:
    """The fields figures rely on must be present in the run spec."""
    if not isinstance(spec, dict):
        raise RunLoadError(f"{where}: 'spec' is not an object")
    for section, keys in (("model", ("name", "family")), ("optimizer", ("name",))):
        if not isinstance(spec.get(section), dict):
            raise RunLoadError(f"{where}: spec has no '{section}' object")
        for key in keys:
            if key not in spec[section]:
                raise RunLoadError(f"{where}: spec.{section} has no '{key}'")
    for key in ("fraction", "seed"):
        if key not in spec:
            raise RunLoadError(f"{where}: spec has no '{key}'")


def run_dir_of(path: str | os.PathLike) -> Path:
    """The run directory for a run directory or any file directly inside it (e.g. its `run.json`)."""
    path = Path(path)
    return path.parent if path.name in ("run.json", "metrics.jsonl") else path


def load_run(run_dir: str | os.PathLike) -> RunResult:
    """Load one run from `<results>/runs/<run id>/` (or its `run.json` path); RunLoadError names a bad file."""
    run_dir = run_dir_of(run_dir)
    run_json = run_dir / "run.json"
    info = _read_json_file(run_json)
    if not isinstance(info, dict):
        raise RunLoadError(f"{run_json}: expected a JSON object")
    for key in REQUIRED_RUN_KEYS:
        if key not in info:
            raise RunLoadError(f"{run_json}: missing key '{key}'")
    if info["status"] not in RUN_STATUSES:
        raise RunLoadError(f"{run_json}: status {info['status']!r} is not one of {RUN_STATUSES}")
    _check_spec(info["spec"], str(run_json))
    final = {key: _finite_or_none(value) for key, value in (info["final"] or {}).items()}
    _check_fractions(final, f"{run_json} (final)")
    return RunResult(
        run_id=info["run_id"],
        spec=info["spec"],
        status=info["status"],
        final=final,
        epochs=_read_metrics(run_dir / "metrics.jsonl"),
        epochs_completed=info.get("epochs_completed"),
        wall_time_s=_finite_or_none(info.get("wall_time_s")),
        images_per_s=_finite_or_none(info.get("images_per_s")),
        path=run_dir,
    )


def load_runs(run_dirs: Iterable[str | os.PathLike]) -> list[RunResult]:
    """Load several runs, in the given order."""
    return [load_run(run_dir) for run_dir in run_dirs]


def as_runs(items: Iterable[RunResult | str | os.PathLike]) -> list[RunResult]:
    """Accept loaded runs or run directories / `run.json` paths (what Snakemake inputs give) alike."""
    return [item if isinstance(item, RunResult) else load_run(item) for item in items]


def family_rank(family: str) -> int:
    """Position of a model family from strong to weak inductive bias."""
    if family not in FAMILY_ORDER:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILY_ORDER)}")
    return FAMILY_ORDER.index(family)


def model_sort_key(family: str, name: str) -> tuple[int, str]:
    """Sort models by family (strong to weak inductive bias), then by name."""
    return (family_rank(family), name)


def mean_and_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """Mean, sample std (None for fewer than 2 values) and count of the non-None values."""
    finite = [float(v) for v in values if v is not None]
    if not finite:
        return None, None, 0
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return float(np.mean(finite)), std, len(finite)


def group_by(items: Iterable[Any], key: Callable[[Any], Hashable]) -> dict[Hashable, list]:
    """Group items by `key`, keeping first-appearance order of groups and of items within a group."""
    groups: dict[Hashable, list] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def require_single_setting(runs: Sequence[RunResult], what: str) -> None:
    """Raise when runs meant to be seeds of one setting differ in anything but their seed."""
    settings = {run.setting_key() for run in runs}
    if len(settings) > 1:
        ids = ", ".join(run.run_id for run in runs)
        raise ValueError(f"{what}: expected seeds of one setting, got several settings: {ids}")


def table_columns(rows: Sequence[dict]) -> list[str]:
    """The union of the rows' keys, in first-appearance order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def write_csv(rows: Sequence[dict], path: str | os.PathLike, columns: Sequence[str] | None = None) -> None:
    """Write a tidy table (list of dicts) as CSV, atomically; None is written as an empty cell."""
    columns = list(columns) if columns is not None else table_columns(rows)
    extra = set(table_columns(rows)) - set(columns)
    if extra:
        raise ValueError(f"{path}: rows have columns not in the table's columns: {sorted(extra)}")
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows([{key: ("" if row.get(key) is None else row.get(key)) for key in columns} for row in rows])


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Read a CSV written by `write_csv` back as a list of string-valued dicts (empty cell = '')."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def format_cell(value: Any) -> str:
    """A markdown cell: floats to 4 significant digits, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Render a tidy table as a GitHub-flavoured markdown table."""
    columns = list(columns) if columns is not None else table_columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(format_cell(row.get(key)) for key in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_markdown(rows: Sequence[dict], path: str | os.PathLike, columns: Sequence[str] | None = None) -> None:
    """Write a tidy table as a markdown table, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(markdown_table(rows, columns))
