"""What the study finds: one verdict per testable statement of the seven claims of STUDY.md.

Everything is read from the tidy tables the study already wrote: the figure CSVs (`<results>/figures/<name>.csv`,
keyed here by the `vitwork.figures` module that wrote them) and the run table (`<results>/summary.csv`). Nothing is
retrained or recomputed. Every column read goes through the accessor layer below (one reader per table,
`COLUMNS_READ` lists them), so a renamed column fails in one place with the file and column named.

A row compares a statistic between two sides (or one side against 0). The rules that decide every row are stated
once, in `VERDICT_RULE`, `ROLE_RULE` and `SETTING_RULE`, and written into the header of `claims.md`.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from vitwork.config import format_number
from vitwork.io import atomic_path
from vitwork.results import group_by, write_csv

CONFIDENCE = 0.95
VERDICTS = ("holds", "fails", "inconclusive", "not run")

VERDICT_RULE = (
    "Each row compares the mean of a statistic between side A and side B (or side A against 0), over the "
    "replicates of each side: the seeds of one training setting, finished runs only (diverged runs are counted in "
    "the note, never averaged). With at least 2 replicates on every side, the 95% confidence interval of the "
    "difference (Welch's t interval for two sides, Student's t interval for one side; seeds are independent "
    "draws): `holds` when the whole interval lies on the claimed side of 0, `fails` when it lies wholly on the "
    "other side, `inconclusive` when it contains 0 (the seed spread overlaps the difference). With a single "
    "replicate on a side there is no seed spread to judge by: the verdict is the sign of the difference alone "
    "and the row says so (basis `sign only (n=1)`); a zero or undefined difference is `inconclusive`, as is a "
    "side whose every run diverged. `not run`: the config produces no runs or no table for a side; the note "
    "names the config key that would add them. No threshold depends on the row."
)
ROLE_RULE = (
    "Models are identified by role, from their architecture (family, and the size arguments the architecture "
    "is built with, its defaults included), never by their name in the config: ResNet = family resnet; "
    "AlterNet = family alternet with at least one MSA block (its 0-MSA build-up start = no MSA block); "
    "local-MSA ViT = family vit_local whose kernel is smaller than the token grid; ViT = family vit with a CLS "
    "head (global_pool token), ViT (GAP) = with global_pool avg; a global-MSA ViT for the kernel comparison = "
    "a vit_local whose kernel covers the grid, or a CLS ViT. Pairs that must be like for like (CLS vs GAP, "
    "kernel sizes) also share patch size, token grid, width, depth, heads and MLP width. When several models "
    "fit a role, the first in the config's `models` order with runs in the table read (AlterNet: the one with "
    "the most MSA blocks; the global side of the kernel comparison: a vit_local before a vit)."
)
SETTING_RULE = (
    "Two models are compared at one shared training setting (optimizer recipe, lr, weight decay, training "
    "fraction, analysis checkpoint): of the settings where both have runs, the largest training fraction "
    "(for small-data rows: the smallest fraction below that), then a recipe of studies.inductive_bias (the "
    "study's reference recipe), then the most seeds, then the first in sorted order. Optimizer-grid rows "
    "(claim 7) take each model's best (lr, weight decay) of a recipe, by seed mean, at its largest fraction."
)


# ============================================================================================== the verdict rule


@dataclass(frozen=True)
class Judgement:
    """The difference A - B (or A), its confidence interval (None without one), the basis and the verdict."""

    difference: float | None
    ci_low: float | None
    ci_high: float | None
    basis: str
    verdict: str


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _no_spread(values: np.ndarray) -> bool:
    """Equal values, up to floating-point rounding (where the t statistics lose all precision)."""
    return bool(np.ptp(values) <= 1e-12 * np.max(np.abs(values)))


def _mean_interval(values: np.ndarray) -> tuple[float, float]:
    """The `CONFIDENCE` t interval of a mean; the mean itself when the values have no spread."""
    from scipy import stats  # imported where used: the workflow imports this module while it plans

    if _no_spread(values):
        return _mean(values), _mean(values)
    interval = stats.ttest_1samp(values, 0.0).confidence_interval(CONFIDENCE)
    return float(interval.low), float(interval.high)


def confidence_interval(a: Sequence[float], b: Sequence[float] | None) -> tuple[float, float]:
    """The `CONFIDENCE` interval of mean(a) - mean(b) (Welch) or of mean(a) (one-sample t).

    A side without spread is a constant: the interval is then the other side's t interval, shifted.
    """
    from scipy import stats

    a = np.asarray(a, dtype=float)
    if b is None:
        return _mean_interval(a)
    b = np.asarray(b, dtype=float)
    if _no_spread(b):
        low, high = _mean_interval(a)
        return low - _mean(b), high - _mean(b)
    if _no_spread(a):
        low, high = _mean_interval(b)
        return _mean(a) - high, _mean(a) - low
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(CONFIDENCE)
    return float(interval.low), float(interval.high)


def judge(a: Sequence[float], b: Sequence[float] | None, claimed: str) -> Judgement:
    """Apply `VERDICT_RULE` to the replicates of side A and side B (None: A against 0); ``claimed`` is '>' or '<'
    (the claimed order of A and B, or of A and 0)."""
    if claimed not in (">", "<"):
        raise ValueError(f"claimed must be '>' or '<', got {claimed!r}")
    if not len(a) or (b is not None and not len(b)):
        raise ValueError("judge: every side needs at least one replicate")
    sign = 1.0 if claimed == ">" else -1.0
    with np.errstate(invalid="ignore"):
        difference = _mean(a) - (_mean(b) if b is not None else 0.0)
    if len(a) >= 2 and (b is None or len(b) >= 2):
        low, high = confidence_interval(a, b)
        basis = f"{'Welch' if b is not None else 't'} {CONFIDENCE:.0%} CI"
        if not (math.isfinite(low) and math.isfinite(high)):
            verdict = "inconclusive"
        elif sign * low > 0 and sign * high > 0:
            verdict = "holds"
        elif sign * low < 0 and sign * high < 0:
            verdict = "fails"
        else:
            verdict = "inconclusive"
        return Judgement(difference, low, high, basis, verdict)
    signed = sign * difference
    verdict = "holds" if signed > 0 else "fails" if signed < 0 else "inconclusive"  # NaN: neither
    return Judgement(difference, None, None, "sign only (n=1)", verdict)


# ================================================================================================ model roles


@dataclass(frozen=True)
class ModelTraits:
    """What a model's role depends on, read from the architecture as built (defaults included)."""

    family: str
    num_msa: int = 0
    kernel_size: int | None = None
    grid: tuple[int, ...] | None = None
    global_pool: str | None = None
    # ViT sizes a like-for-like pair shares: patch size, token grid, width, depth, heads, MLP width
    shape: tuple = ()

    @property
    def local(self) -> bool:
        """A ViT whose MSA window is smaller than its token grid."""
        return self.kernel_size is not None and self.grid is not None and self.kernel_size < max(self.grid)

    @property
    def global_msa(self) -> bool:
        """A ViT whose every token attends to every token (no window, or a window covering the grid)."""
        return self.family in ("vit", "vit_local") and not self.local


def model_traits(arch: str, kwargs: Mapping | None = None) -> ModelTraits:
    """Build the architecture on the meta device (no memory, no initialisation) and read its traits."""
    import torch

    from vitwork.models import create_model, model_family

    family = model_family(arch)
    with torch.device("meta"):
        model = create_model(arch, num_classes=2, **(kwargs or {}))
    if family in ("vit", "vit_local"):
        block = model.blocks[0]
        grid = tuple(model.patch_embed.grid_size)
        shape = (tuple(model.patch_embed.patch_size), grid, model.embed_dim, len(model.blocks),
                 block.attn.num_heads, block.mlp.fc1.out_features)
        return ModelTraits(family, kernel_size=getattr(model, "kernel_size", None), grid=grid,
                           global_pool=model.global_pool, shape=shape)
    return ModelTraits(family, num_msa=int(sum(getattr(model, "msa_per_stage", ()) or ())))


@dataclass(frozen=True)
class Role:
    """A role in the claims: which models fit it and, among several, which come first."""

    fits: Callable[[ModelTraits], bool]
    rank: Callable[[ModelTraits], object] = lambda traits: 0


ROLES = {
    "ResNet": Role(lambda t: t.family == "resnet"),
    "AlterNet": Role(lambda t: t.family == "alternet" and t.num_msa > 0, rank=lambda t: -t.num_msa),
    "AlterNet 0 MSA": Role(lambda t: t.family == "alternet" and t.num_msa == 0),
    "local-MSA ViT": Role(lambda t: t.family == "vit_local" and t.local),
    "ViT": Role(lambda t: t.family == "vit" and t.global_pool == "token"),
    "ViT (GAP)": Role(lambda t: t.family == "vit" and t.global_pool == "avg"),
}


class Roster:
    """The config's models with their traits: which model plays a role in a table."""

    def __init__(self, models: Mapping[str, Mapping], traits: Mapping[str, ModelTraits] | None = None):
        self.order = list(models)
        self.traits = dict(traits) if traits is not None else {
            name: model_traits(spec["arch"], spec.get("kwargs")) for name, spec in models.items()}

    def ranked(self, fits: Callable[[ModelTraits], bool], rank=lambda traits: 0,
               present: Iterable[str] | None = None) -> list[str]:
        """Models that fit, present in a table (when given), by (rank, config order)."""
        present = set(self.order if present is None else present)
        names = [name for name in self.order if name in present and fits(self.traits[name])]
        return sorted(names, key=lambda name: (rank(self.traits[name]), self.order.index(name)))

    def pick(self, role: str, present: Iterable[str]) -> str | None:
        """The model that plays ``role`` among the models with runs in a table (`ROLE_RULE`), or None."""
        names = self.ranked(ROLES[role].fits, ROLES[role].rank, present)
        return names[0] if names else None

    def pick_pair(self, fits_a, fits_b, present: Iterable[str], rank_b=lambda traits: 0,
                  same_pool: bool = True) -> tuple[str, str] | None:
        """The first (A, B) with A fitting ``fits_a``, B ``fits_b``, both of the same ViT shape (and head pooling,
        unless ``same_pool`` is False), or None."""
        present = list(present)
        for a in self.ranked(fits_a, present=present):
            mine = self.traits[a]
            partners = self.ranked(lambda t: fits_b(t) and t.shape == mine.shape
                                   and (not same_pool or t.global_pool == mine.global_pool), rank_b, present)
            if partners:
                return a, partners[0]
        return None


# ============================================================================ reading the tables (accessor layer)


@dataclass(frozen=True)
class Setting:
    """What defines a run apart from its model and seed; None where a table does not say."""

    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    fraction: float | None = None
    checkpoint: str | None = None

    def text(self) -> str:
        parts = [self.optimizer or ""]
        parts += [f"lr {format_number(self.lr)}"] if self.lr is not None else []
        parts += [f"wd {format_number(self.weight_decay)}"] if self.weight_decay is not None else []
        text = " ".join(part for part in parts if part)
        extra = [f"{format_number(100 * self.fraction)}% data"] if self.fraction is not None else []
        extra += [f"checkpoint {self.checkpoint}"] if self.checkpoint else []
        return ", ".join(([text] if text else []) + extra)

    def sort_key(self) -> tuple:
        return tuple((value is None, value if value is not None else 0) for value in
                     (self.optimizer, self.lr, self.weight_decay, self.fraction, self.checkpoint))


@dataclass(frozen=True)
class Run:
    """One run as a table reports it: identity, setting, whether it finished, and the values the claims use."""

    run_id: str
    model: str
    setting: Setting
    seed: int | None
    finished: bool
    values: dict = field(default_factory=dict)


IDENTITY = ("run_id", "model", "optimizer", "lr", "weight_decay", "fraction", "seed", "status", "checkpoint")
# table -> the columns of its CSV that the claims read (every other column is ignored)
COLUMNS_READ: dict[str, tuple[str, ...]] = {
    "summary": ("run_id", "model", "optimizer", "lr", "weight_decay", "fraction", "seed", "status", "test_acc_pct",
                "train_nll"),
    "inductive_bias": ("kind", "run_id", "model", "seed", "status", "test_err_pct", "train_nll"),
    "data_size": ("run_id", "model", "fraction", "seed", "status", "train_nll"),
    "optimizer_grid": ("run_id", "model", "optimizer", "lr", "weight_decay", "fraction", "seed", "status",
                       "test_acc_pct"),
    "time_to_accuracy": ("model", "optimizer", "run_id", "status", "epochs"),
    "hessian_spectra": ("kind", *IDENTITY, "loss_part", "which", "fraction_negative", "median_positive"),
    "hessian_grid": (*IDENTITY, "loss_part", "test_acc_pct", "largest_median"),
    "landscape_surfaces": ("kind", *IDENTITY, "loss_part", "curvature"),
    "fourier_depth": (*IDENTITY, "block_index", "kind", "high_frequency_delta_log_amplitude"),
    "noise_frequency_curves": (*IDENTITY, "frequency_pi", "delta_acc_pp"),
    "corruptions": (*IDENTITY, "clean_acc_pct", "robustness_pct"),
}


def read_columns(path: str | os.PathLike, table: str, columns: Sequence[str] | None = None) -> list[dict[str, str]]:
    """The rows of one CSV restricted to `columns` (default `COLUMNS_READ[table]`); a missing column names file and
    column."""
    columns = COLUMNS_READ[table] if columns is None else tuple(columns)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in columns if column not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: the {table} table lacks the column(s) {', '.join(missing)} that the claims "
                             f"read (expected {', '.join(columns)})")
        return [{column: record[column] for column in columns} for record in reader]


def _float(cell: str | None) -> float | None:
    """A numeric cell; empty or NaN is None."""
    if cell is None or cell.strip() == "":
        return None
    value = float(cell)
    return None if math.isnan(value) else value


def _run(raw: dict, values: dict) -> Run:
    """A Run from a row's identity columns (those the table has) and the values taken from it."""
    setting = Setting(raw.get("optimizer") or None, _float(raw.get("lr")), _float(raw.get("weight_decay")),
                      _float(raw.get("fraction")), raw.get("checkpoint") or None)
    seed = _float(raw.get("seed"))
    return Run(raw["run_id"], raw["model"], setting, None if seed is None else int(seed),
               raw["status"] == "finished", values)


def _read_runs(paths: Iterable, table: str, values: Callable[[list[dict]], dict],
               keep: Callable[[dict], bool] = lambda raw: True) -> list[Run]:
    """One Run per run id over several CSVs of one table: ``values`` turns the run's kept rows into its values;
    a run in several figures (same run, same numbers) is taken from the first."""
    runs: dict[str, Run] = {}
    for path in paths:
        rows = [raw for raw in read_columns(path, table) if keep(raw)]
        for run_id, run_rows in group_by(rows, lambda raw: raw["run_id"]).items():
            if run_id and run_id not in runs:
                runs[run_id] = _run(run_rows[0], values(run_rows))
    return list(runs.values())


def _cells(*columns: str):
    """``values`` for tables with one row per run: the named numeric cells."""
    return lambda rows: {column: _float(rows[0][column]) for column in columns}


def read_summary(paths) -> list[Run]:
    """summary.csv: final test accuracy (%) and NLL_train per run."""
    return _read_runs(paths, "summary", _cells("test_acc_pct", "train_nll"))


def read_inductive_bias(paths) -> list[Run]:
    """inductive_bias.csv (`kind == run` rows): final test error (%) and NLL_train per run."""
    return _read_runs(paths, "inductive_bias", _cells("test_err_pct", "train_nll"), lambda raw: raw["kind"] == "run")


def read_data_size(paths) -> list[Run]:
    """data_size.csv: NLL_train per run and training fraction."""
    return _read_runs(paths, "data_size", _cells("train_nll"))


def read_optimizer_grid(paths) -> list[Run]:
    """optimizer_grid.csv: final test accuracy (%) per run of the grid."""
    return _read_runs(paths, "optimizer_grid", _cells("test_acc_pct"))


def read_time_to_accuracy(paths) -> list[Run]:
    """time_to_accuracy.csv: one entry per (model, recipe), its best run's epochs to the target (∞: not reached;
    a pair whose every run diverged is not finished)."""
    entries = []
    for path in paths:
        for raw in read_columns(path, "time_to_accuracy"):
            epochs = _float(raw["epochs"])
            value = epochs if raw["status"] == "reached" else math.inf if raw["status"] == "not reached" else None
            entries.append(Run(raw["run_id"] or f"{raw['model']}/{raw['optimizer']}", raw["model"],
                               Setting(raw["optimizer"]), None, raw["status"] != "diverged", {"epochs": value}))
    return entries


def _hessian_values(rows: list[dict]) -> dict:
    """The share of negative values among the top-k by magnitude and the median largest eigenvalue of one run."""
    by_which = {raw["which"]: raw for raw in rows}
    top, largest = by_which.get("top_magnitude"), by_which.get("largest")
    return {"negative_share": _float(top["fraction_negative"]) if top else None,
            "largest_median": _float(largest["median_positive"]) if largest else None}


def read_hessian_spectra(paths) -> list[Run]:
    """hessian_spectra tables (`kind == run` rows of the objective, NLL + weight-decay term, as the paper): per run
    the negative share of the top-k by magnitude (`which == top_magnitude`, `fraction_negative`) and the median over
    batches of the positive largest eigenvalues (`which == largest`, `median_positive`). Figures of the NLL part
    alone (`loss: nll`) are not read: the paper's spectra are of the objective."""
    return _read_runs(paths, "hessian_spectra", _hessian_values,
                      lambda raw: raw["kind"] == "run" and raw["loss_part"] == "objective")


def read_hessian_grid(paths) -> list[Run]:
    """hessian_grid tables: per run the median largest eigenvalue and the final test accuracy (%), of the NLL part
    where a table has it (the grid's cells differ in weight decay: the NLL part compares like with like), else of
    the objective."""
    values = _cells("largest_median", "test_acc_pct")
    nll = _read_runs(paths, "hessian_grid", values, lambda raw: raw["loss_part"] == "nll")
    have = {run.run_id for run in nll}
    objective = _read_runs(paths, "hessian_grid", values, lambda raw: raw["loss_part"] != "nll")
    return nll + [run for run in objective if run.run_id not in have]


def read_landscape(paths) -> list[Run]:
    """landscape_surfaces tables (`kind == run` rows of the objective, as the paper): the fitted mean curvature at
    the trained weights."""
    return _read_runs(paths, "landscape_surfaces", _cells("curvature"),
                      lambda raw: raw["kind"] == "run" and raw["loss_part"] == "objective")


def read_fourier_depth(paths) -> list[Run]:
    """fourier_depth tables: per run its blocks as (block index, kind, highest-frequency ΔLog amplitude)."""
    def blocks(rows):
        return {"blocks": sorted((int(raw["block_index"]), raw["kind"],
                                  _float(raw["high_frequency_delta_log_amplitude"])) for raw in rows)}
    return _read_runs(paths, "fourier_depth", blocks)


def read_noise_frequency(paths) -> list[Run]:
    """noise_frequency_curves tables: per run the accuracy drop (pp, clean - noisy) per frequency (units of π)."""
    def drops(rows):
        return {"drop_pp": {round(float(raw["frequency_pi"]), 6): -_float(raw["delta_acc_pp"])
                            for raw in rows if _float(raw["delta_acc_pp"]) is not None}}
    return _read_runs(paths, "noise_frequency_curves", drops)


def read_corruption_scores(paths) -> list[Run]:
    """corruptions_{scatter,small_data,buildup,grid} tables: clean accuracy and robustness (%) per run."""
    return _read_runs(paths, "corruptions", _cells("clean_acc_pct", "robustness_pct"))


# figure module -> (the table it feeds, its reader); the corruption figures share one table of scores
READERS: dict[str, tuple[str, Callable]] = {
    "summary": ("summary", read_summary),
    "inductive_bias": ("inductive_bias", read_inductive_bias),
    "data_size": ("data_size", read_data_size),
    "optimizer_grid": ("optimizer_grid", read_optimizer_grid),
    "time_to_accuracy": ("time_to_accuracy", read_time_to_accuracy),
    "hessian_spectra": ("hessian_spectra", read_hessian_spectra),
    "hessian_grid": ("hessian_grid", read_hessian_grid),
    "landscape_surfaces": ("landscape_surfaces", read_landscape),
    "fourier_depth": ("fourier_depth", read_fourier_depth),
    "noise_frequency_curves": ("noise_frequency_curves", read_noise_frequency),
    **{f"corruptions_{kind}": ("corruptions", read_corruption_scores)
       for kind in ("scatter", "small_data", "buildup", "grid")},
}


def figure_tables(figures: Mapping[str, str], folder: str) -> dict[str, list[str]]:
    """Figure module -> the tables `<folder>/<figure>.csv` of the given figures (figure name -> the module that
    draws it) whose module the claims read; the claims rule's inputs."""
    tables: dict[str, list[str]] = {}
    for name, module in figures.items():
        if module in READERS:
            tables.setdefault(module, []).append(f"{folder}/{name}.csv")
    return tables


def load_tables(tables: Mapping[str, Sequence]) -> tuple[dict[str, list[Run]], dict[str, list[str]]]:
    """Read the given tables (figure module or `summary` -> CSV paths): runs and file names per table read."""
    unknown = sorted(set(tables) - set(READERS))
    if unknown:
        raise ValueError(f"claims: no reader for table(s) {', '.join(unknown)} (known: {', '.join(READERS)})")
    paths: dict[str, list] = {}
    for module, module_paths in tables.items():
        paths.setdefault(READERS[module][0], []).extend(module_paths)
    readers = {table: reader for table, reader in READERS.values()}
    runs = {table: readers[table](table_paths) for table, table_paths in paths.items() if table_paths}
    names = {table: [Path(path).name for path in table_paths] for table, table_paths in paths.items() if table_paths}
    return runs, names


# ====================================================================================== sides and the row builder


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a model (with its setting where the sides differ) and its replicates."""

    model: str
    values: tuple[float, ...]
    setting: str = ""
    diverged: int = 0


def mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample sd (None for fewer than 2 values)."""
    if not values:
        return None, None
    with np.errstate(invalid="ignore"):
        return _mean(values), float(np.std(values, ddof=1)) if len(values) > 1 else None


def fmt(value: float | None) -> str:
    """A number in a table cell: 4 significant digits; ∞ for a target never reached."""
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.4g}"


@dataclass(frozen=True)
class Statement:
    """A testable statement: claim number, text, how its statistic is computed, the claimed order of A and B
    ('>' or '<'), the table(s) it reads, the config key that adds its runs, and the paper's value."""

    claim: int
    text: str
    statistic: str
    claimed: str
    source: str
    needs: str
    paper: str = ""


CSV_COLUMNS = ("claim", "statement", "statistic", "paper", "a_model", "a_setting", "a_mean", "a_sd", "a_n",
               "b_model", "b_setting", "b_mean", "b_sd", "b_n", "difference", "ci_low", "ci_high", "basis", "verdict",
               "note", "source")


def _side_columns(prefix: str, side: Side | None) -> dict:
    mean, sd = mean_sd(side.values) if side else (None, None)
    return {f"{prefix}_model": side.model if side else None, f"{prefix}_setting": side.setting if side else None,
            f"{prefix}_mean": mean, f"{prefix}_sd": sd, f"{prefix}_n": len(side.values) if side else None}


def claim_row(statement: Statement, a: Side | None = None, b: Side | None = None, one_sample: bool = False,
              missing: str = "", note: str = "") -> dict:
    """One row of claims.csv: the statement, both sides and the verdict of `VERDICT_RULE`.

    ``missing`` (why a side has no runs) makes the row `not run`, its note naming ``statement.needs``.
    """
    row = {"claim": statement.claim, "statement": statement.text, "statistic": statement.statistic,
           "paper": statement.paper or None, **_side_columns("a", a), **_side_columns("b", b),
           "difference": None, "ci_low": None, "ci_high": None, "basis": None, "source": statement.source}
    notes = [note] if note else []
    if missing or a is None or (b is None and not one_sample):
        return {**row, "verdict": "not run",
                "note": "; ".join([missing or "no runs", f"add them with {statement.needs}"] + notes)}
    empty = [side.model for side in (a, b) if side is not None and not side.values]
    if empty:
        return {**row, "verdict": "inconclusive", "basis": "no replicate",
                "note": "; ".join([f"no finished run with a value for {', '.join(empty)}"] + notes)}
    diverged = sum(side.diverged for side in (a, b) if side is not None)
    notes += [f"{diverged} diverged run(s) left out"] if diverged else []
    result = judge(a.values, None if one_sample else b.values, statement.claimed)
    return {**row, "difference": result.difference, "ci_low": result.ci_low, "ci_high": result.ci_high,
            "basis": result.basis, "verdict": result.verdict, "note": "; ".join(notes) or None}


# ================================================================================================= the study


class Study:
    """The tables read, the roster of models and the reference recipes: what every claim draws from."""

    def __init__(self, runs: Mapping[str, list[Run]], roster: Roster, reference_recipes: Sequence[str] = ()):
        self.runs = runs
        self.roster = roster
        self.reference = tuple(reference_recipes)

    def table(self, name: str) -> list[Run] | None:
        """The runs of a table, or None when the config produced no such table."""
        return self.runs.get(name)

    def rank_settings(self, settings: Iterable[Setting], seeds: Callable[[Setting], int]) -> list[Setting]:
        """`SETTING_RULE` order (after the fraction): reference recipe, most seeds, sorted."""
        return sorted(settings, key=lambda s: (s.optimizer not in self.reference, -seeds(s), s.sort_key()))

    def shared_setting(self, runs_a: Sequence[Run], runs_b: Sequence[Run], small_data: bool = False
                       ) -> Setting | None:
        """The setting at which two models are compared (`SETTING_RULE`), or None when they share none."""
        def seeds(setting):
            return min(sum(r.finished for r in runs if r.setting == setting) for runs in (runs_a, runs_b))
        shared = {r.setting for r in runs_a} & {r.setting for r in runs_b}
        fractions = sorted({s.fraction for s in shared if s.fraction is not None})
        if small_data:
            if len(fractions) < 2:
                return None
            shared = {s for s in shared if s.fraction == fractions[0]}
        elif fractions:
            shared = {s for s in shared if s.fraction == fractions[-1]}
        ranked = self.rank_settings(shared, seeds)
        return ranked[0] if ranked else None

    def own_setting(self, runs: Sequence[Run]) -> Setting | None:
        """The setting of one model's runs used for a one-sided row: as `shared_setting`, with itself."""
        return self.shared_setting(runs, runs)


def side(model: str, runs: Iterable[Run], value: Callable[[Run], float | None], setting: str = "") -> Side:
    """A side from a model's runs of one setting: the statistic of each finished run that has one."""
    runs = list(runs)
    values = [value(run) for run in runs if run.finished]
    return Side(model, tuple(v for v in values if v is not None), setting, sum(not run.finished for run in runs))


def metric(name: str) -> Callable[[Run], float | None]:
    return lambda run: run.values.get(name)


def by_model(runs: Iterable[Run]) -> dict[str, list[Run]]:
    return group_by(runs, lambda run: run.model)


def compare_models(study: Study, statement: Statement, table: str, model_a: str | None, model_b: str | None,
                   value: Callable[[Run], float | None], roles: tuple[str, str], small_data: bool = False,
                   runs: list[Run] | None = None) -> dict:
    """A two-model row at their shared setting; `not run` when the table or a model is missing."""
    runs = study.table(table) if runs is None else runs
    if runs is None:
        return claim_row(statement, missing=f"no {table} table")
    for model, role in zip((model_a, model_b), roles):
        if model is None:
            return claim_row(statement, missing=f"no {role} model in the {table} table")
    models = by_model(runs)
    setting = study.shared_setting(models[model_a], models[model_b], small_data)
    if setting is None:
        what = "training fraction below the largest" if small_data else "setting"
        return claim_row(statement, missing=f"{model_a} and {model_b} share no {what} in the {table} table")
    sides = [side(model, (r for r in models[model] if r.setting == setting), value) for model in (model_a, model_b)]
    return claim_row(statement, *sides, note=f"setting: {setting.text()}" if setting.text() else "")


def compare_roles(study: Study, statement: Statement, table: str, role_a: str, role_b: str,
                  value: Callable[[Run], float | None], small_data: bool = False,
                  runs: list[Run] | None = None) -> dict:
    """A two-role row: each role's model (`ROLE_RULE`) at their shared setting."""
    runs = study.table(table) if runs is None else runs
    present = by_model(runs or [])
    return compare_models(study, statement, table, study.roster.pick(role_a, present),
                          study.roster.pick(role_b, present), value, (role_a, role_b), small_data, runs)


# ================================================================================================ the claims

TEST_ERROR_PAPER = {"ResNet": "17.2-17.5", "local-MSA ViT": "about 28-29", "ViT": "33.5"}
NLL_TRAIN_PAPER = {"ResNet": "about 2.09", "ViT": "about 2.52"}


def _paper(values: Mapping[str, str], roles: Sequence[str], unit: str = "") -> str:
    """`ResNet 17.2-17.5%, ViT 33.5%` when STUDY.md gives the paper's value of every role, else ''."""
    known = [f"{role} {values[role]}{unit}" for role in roles if role in values]
    return ", ".join(known) if len(known) == len(roles) else ""


def claim1(study: Study) -> list[dict]:
    """Claim 1: stronger inductive bias, lower test error and lower NLL_train (ResNet < local-MSA ViT < ViT)."""
    rows = []
    pairs = (("ResNet", "ViT"), ("ResNet", "local-MSA ViT"), ("local-MSA ViT", "ViT"))
    for column, label, paper, unit in (("test_err_pct", "test error", TEST_ERROR_PAPER, "%"),
                                       ("train_nll", "NLL_train", NLL_TRAIN_PAPER, "")):
        for role_a, role_b in pairs:
            statement = Statement(
                1, f"{label}: {role_a} < {role_b}",
                f"final {label} ({'%' if unit else 'nats'}) of each run, inductive_bias figure table", "<",
                "inductive_bias.csv", "studies.inductive_bias.models (a resnet, a vit_local and a vit model)",
                _paper(paper, (role_a, role_b), unit))
            rows.append(compare_roles(study, statement, "inductive_bias", role_a, role_b, metric(column)))
    return rows


def claim2(study: Study) -> list[dict]:
    """Claim 2: ViT does not overfit small data, its NLL_train rises as the training fraction shrinks."""
    statement = Statement(2, "NLL_train of ViT rises as the training fraction shrinks",
                          "final NLL_train of each run at the smallest vs the largest training fraction, data_size "
                          "figure table", ">", "data_size.csv",
                          "studies.data_size (a vit model, fractions below 1.0)")
    runs = study.table("data_size")
    if runs is None:
        return [claim_row(statement, missing="no data_size table")]
    model = study.roster.pick("ViT", by_model(runs))
    if model is None:
        return [claim_row(statement, missing="no ViT model in the data_size table")]
    model_runs = by_model(runs)[model]
    fractions = sorted({run.setting.fraction for run in model_runs})
    if len(fractions) < 2:
        return [claim_row(statement, missing=f"{model} has one training fraction only")]
    small, full = (side(model, (r for r in model_runs if r.setting.fraction == f), metric("train_nll"),
                        f"{format_number(100 * f)}% data") for f in (fractions[0], fractions[-1]))
    return [claim_row(statement, small, full)]


def _at_checkpoint(runs: list[Run] | None, checkpoint: str) -> list[Run] | None:
    return None if runs is None else [run for run in runs if run.setting.checkpoint == checkpoint]


def claim3(study: Study) -> list[dict]:
    """Claim 3: ViT's loss is non-convex (many negative eigenvalues early), ResNet's is not; ViT's positive
    eigenvalues are small; GAP suppresses the negative ones."""
    hessian_needs = "analyses.hessian.figures (a spectra figure with the models; analyses.hessian.checkpoint: warmup)"
    spectra = study.table("hessian_spectra")
    warmup = _at_checkpoint(spectra, "warmup")
    missing = ("no hessian_spectra table" if spectra is None
               else "the Hessian tables are not at the warmup checkpoint" if not warmup else "")
    share = "share of negative eigenvalues among each batch's top-k by magnitude, pooled over the run's batches"
    source = "hessian_*.csv (spectra)"
    statements = (
        (Statement(3, "share of negative Hessian eigenvalues at the end of warm-up: ViT > ResNet",
                   f"{share} (hessian_spectra tables, warmup checkpoint)", ">", source, hessian_needs),
         "negative_share"),
        (Statement(3, "largest Hessian eigenvalue at the end of warm-up: ViT < ResNet",
                   "median over batches of each batch's largest eigenvalue (positive ones; hessian_spectra tables, "
                   "warmup checkpoint)", "<", source, hessian_needs), "largest_median"),
    )
    rows = [claim_row(statement, missing=missing) if missing else
            compare_roles(study, statement, "hessian_spectra", "ViT", "ResNet", metric(column), runs=warmup)
            for statement, column in statements]
    gap = Statement(3, "share of negative Hessian eigenvalues at the end of warm-up: ViT (GAP) < ViT (CLS)",
                    f"{share} (hessian_spectra tables, warmup checkpoint); GAP and CLS models of the same size", "<",
                    source, "models (a vit with kwargs global_pool: avg, e.g. arch vitwork_vit_ti_gap, beside its CLS "
                    "twin) in an analyses.hessian.figures spectra figure")
    pair = None if missing else study.roster.pick_pair(ROLES["ViT (GAP)"].fits, ROLES["ViT"].fits, by_model(warmup),
                                                       same_pool=False)
    if pair is None:
        rows.append(claim_row(gap, missing=missing or "no GAP and CLS ViTs of the same size in the Hessian tables"))
    else:
        rows.append(compare_models(study, gap, "hessian_spectra", *pair, metric("negative_share"),
                                   ("ViT (GAP)", "ViT"), runs=warmup))
    landscape = Statement(3, "loss-landscape curvature at the trained weights: ViT < ResNet",
                          "mean curvature of the quadratic fitted to the loss within radius 0.5 of the centre "
                          "(landscape_surfaces tables); lower is flatter", "<", "landscape_*.csv",
                          "analyses.landscape.figures (a figure with a resnet and a vit model)")
    rows.append(compare_roles(study, landscape, "landscape_surfaces", "ViT", "ResNet", metric("curvature")))
    return rows


def _kernel(k: int) -> Callable[[ModelTraits], bool]:
    return lambda t: t.family == "vit_local" and t.local and t.kernel_size == k


def _global_msa(t: ModelTraits) -> bool:
    return t.global_msa


def claim4(study: Study) -> list[dict]:
    """Claim 4: local MSA (5x5) beats global MSA (8x8 on an 8x8 grid); 3x3 sits between."""
    needs = ("models (vit_local models with kernel_size 3 and 5 and a global one of the same size, e.g. "
             "vitwork_vit_ti_local3/5/8) in any study or analysis figure")
    paper = "test error about 28-29% for all three kernels; 8x8 the worst, 5x5 the best"
    comparisons = (("local 5x5 MSA", _kernel(5), "global MSA", _global_msa),
                   ("local 5x5 MSA", _kernel(5), "local 3x3 MSA", _kernel(3)),
                   ("local 3x3 MSA", _kernel(3), "global MSA", _global_msa))
    runs = study.table("summary")
    rows = []
    for label_a, fits_a, label_b, fits_b in comparisons:
        statement = Statement(4, f"test accuracy: {label_a} > {label_b}",
                              "final test accuracy (%) of each run (summary.csv); both ViTs of the same size", ">",
                              "summary.csv", needs, paper)
        if runs is None:
            rows.append(claim_row(statement, missing="no summary table"))
            continue
        # the global side: a vit_local whose kernel covers the grid before a plain ViT (same attention code)
        pair = study.roster.pick_pair(fits_a, fits_b, by_model(runs), rank_b=lambda t: t.family != "vit_local")
        if pair is None:
            rows.append(claim_row(statement, missing=f"no {label_a} and {label_b} ViTs of the same size with runs"))
            continue
        rows.append(compare_models(study, statement, "summary", *pair, metric("test_acc_pct"),
                                   (label_a, label_b)))
    return rows


def mean_change(blocks: Sequence[tuple[int, str, float | None]], kinds: Iterable[str]) -> float | None:
    """Mean over the blocks of the given kinds of (value after the block - value after the block before it)."""
    kinds = set(kinds)
    changes = [value - previous for (_, _, previous), (_, kind, value) in zip(blocks, blocks[1:])
               if kind in kinds and value is not None and previous is not None]
    return float(np.mean(changes)) if changes else None


def claim5(study: Study) -> list[dict]:
    """Claim 5: MSAs low-pass, Convs high-pass (ΔLog amplitude), and ViT robust to high-frequency noise."""
    rows = []
    fourier = study.table("fourier_depth")
    statistic = ("per run: mean over its {what} blocks of the change of the highest-frequency ΔLog amplitude "
                 "across the block (after it minus after the block before it; fourier_depth tables)")
    checks = (("ViT", "drops", "MSA", ("msa",), "<"), ("ViT", "rises", "MLP", ("mlp",), ">"),
              ("AlterNet", "drops", "MSA", ("msa",), "<"), ("AlterNet", "rises", "Conv", ("conv",), ">"),
              ("ResNet", "rises", "Conv", ("conv",), ">"))
    for role, verb, what, kinds, claimed in checks:
        statement = Statement(5, f"high-frequency ΔLog amplitude {verb} across {what} blocks: {role}",
                              statistic.format(what=what) + f"; claimed {claimed} 0", claimed, "fourier_*.csv (depth)",
                              f"analyses.fourier.figures (a depth figure with a {role} model)")
        if fourier is None:
            rows.append(claim_row(statement, missing="no fourier_depth table"))
            continue
        models = by_model(fourier)
        model = study.roster.pick(role, models)
        if model is None:
            rows.append(claim_row(statement, missing=f"no {role} model in the fourier_depth tables"))
            continue
        setting = study.own_setting(models[model])
        chosen = [run for run in models[model] if run.setting == setting]
        # how many blocks the mean is over: a micro ResNet's only non-down-sampling Conv block may be its first
        count = max(sum(kind in kinds for _, kind, _ in run.values["blocks"]) for run in chosen)
        rows.append(claim_row(statement, side(model, chosen, lambda run: mean_change(run.values["blocks"], kinds)),
                              one_sample=True, note=f"setting: {setting.text()}; over {count} {what} block"
                                                    f"{'' if count == 1 else 's'} (down-sampling blocks not counted)"))
    noise = Statement(5, "accuracy drop under the highest-frequency noise (0.9π): ViT < ResNet",
                      "per run: clean minus noisy accuracy (percentage points) at the highest noise frequency of "
                      "the table (noise_frequency_curves tables)", "<", "noise_frequency_*.csv",
                      "analyses.noise_frequency.figures (a figure with a resnet and a vit model)",
                      "ImageNet: ResNet 15.4 pp, ViT 4.8 pp at 0.9π")
    noise_runs = study.table("noise_frequency_curves")
    top = max((f for run in noise_runs or [] for f in run.values["drop_pp"]), default=None)
    rows.append(compare_roles(study, noise, "noise_frequency_curves", "ViT", "ResNet",
                              lambda run: run.values["drop_pp"].get(top)))
    return rows


def claim6(study: Study) -> list[dict]:
    """Claim 6: AlterNet beats ResNet in accuracy and CIFAR-100-C robustness, also on small data."""
    alter_needs = "a family-alternet model with its ResNet in {where}"
    accuracy = "final test accuracy (%) of each run (summary.csv)"
    robustness = "mean accuracy (%) over the corrupted sets (CIFAR-100-C style) of each run (corruptions_* tables)"
    rows = [
        compare_roles(study, Statement(6, "test accuracy: AlterNet > ResNet", accuracy, ">", "summary.csv",
                                       alter_needs.format(where="any study"),
                                       "Alter-ResNet-50 84.0%, ResNet-50 82.5-82.8%"),
                      "summary", "AlterNet", "ResNet", metric("test_acc_pct")),
        compare_roles(study, Statement(6, "CIFAR-100-C mean accuracy: AlterNet > ResNet", robustness, ">",
                                       "corruptions_*.csv", alter_needs.format(where="analyses.corruptions.figures"),
                                       "Alter-ResNet-50 66.7%, ResNet-50 65.0%"),
                      "corruptions", "AlterNet", "ResNet", metric("robustness_pct")),
        compare_roles(study, Statement(6, "test accuracy on small data: AlterNet > ResNet",
                                       f"{accuracy}, at the smallest shared training fraction below the largest",
                                       ">", "summary.csv",
                                       alter_needs.format(where="a selection with fractions below 1.0 (e.g. "
                                                          "analyses.corruptions.figures.small_data.fractions)")),
                      "summary", "AlterNet", "ResNet", metric("test_acc_pct"), small_data=True),
        compare_roles(study, Statement(6, "CIFAR-100-C mean accuracy on small data: AlterNet > ResNet",
                                       f"{robustness}, at the smallest shared training fraction below the largest",
                                       ">", "corruptions_*.csv",
                                       alter_needs.format(where="analyses.corruptions.figures with fractions below "
                                                          "1.0 (kind small_data)")),
                      "corruptions", "AlterNet", "ResNet", metric("robustness_pct"), small_data=True),
        compare_roles(study, Statement(6, "test accuracy: AlterNet > its 0-MSA build-up start", accuracy, ">",
                                       "summary.csv",
                                       "models (an alternet with msa_per_stage all 0 beside the AlterNet, e.g. the "
                                       "corruptions buildup figure)",
                                       "build-up 84.02% (all MSAs), 82.5% (0 MSA)"),
                      "summary", "AlterNet", "AlterNet 0 MSA", metric("test_acc_pct")),
    ]
    return rows


# ------------------------------------------------------------------------------------------- claim 7 (optimizers)

GRID_ROLES = ("ResNet", "ViT")


def _largest_fraction(runs: Sequence[Run]) -> list[Run]:
    fractions = [run.setting.fraction for run in runs if run.setting.fraction is not None]
    return [run for run in runs if run.setting.fraction == max(fractions)] if fractions else list(runs)


def best_setting(runs: Sequence[Run], column: str) -> Setting | None:
    """The setting with the highest seed mean of ``column`` among finished runs (ties: sorted), or None."""
    means = {}
    for setting, group in group_by(runs, lambda run: run.setting).items():
        values = [run.values.get(column) for run in group if run.finished and run.values.get(column) is not None]
        if values:
            means[setting] = float(np.mean(values))
    if not means:
        return None
    return min(means, key=lambda s: (-means[s], s.sort_key()))


def grid_models(study: Study, runs: list[Run]) -> dict[str, str | None]:
    """Role -> model among the roles of the optimizer grid (ResNet, ViT)."""
    present = by_model(runs)
    return {role: study.roster.pick(role, present) for role in GRID_ROLES}


def _recipe_side(model: str, runs: Sequence[Run], recipe: str, select: str, value: str) -> Side:
    """A model's side for one recipe: its best setting by ``select`` (seed mean) at the largest fraction, or the
    recipe's one setting, with the ``value`` of each of its finished runs."""
    recipe_runs = _largest_fraction([run for run in runs if run.setting.optimizer == recipe])
    settings = {run.setting for run in recipe_runs}
    setting = settings.pop() if len(settings) == 1 else best_setting(recipe_runs, select)
    if setting is None:  # every run of the recipe diverged
        return Side(model, (), recipe, len(recipe_runs))
    return side(model, (run for run in recipe_runs if run.setting == setting), metric(value), setting.text())


def _per_recipe(study: Study, template: Statement, table: str, select: str, value: str) -> list[dict]:
    """One row per recipe with runs of both grid roles: ResNet vs ViT at each one's best setting of the recipe."""
    def statement(recipe: str) -> Statement:
        return Statement(template.claim, template.text.format(recipe=recipe), template.statistic, template.claimed,
                         template.source, template.needs, template.paper)

    runs = study.table(table)
    if runs is None:
        return [claim_row(statement("each recipe"), missing=f"no {table} table")]
    models = grid_models(study, runs)
    missing = [role for role, model in models.items() if model is None]
    if missing:
        return [claim_row(statement("each recipe"),
                          missing=f"no {' and no '.join(missing)} model in the {table} table")]
    per_model = by_model(runs)
    recipes = sorted(set.intersection(*({r.setting.optimizer for r in per_model[m]} for m in models.values())))
    rows = []
    for recipe in recipes:
        sides = [_recipe_side(models[role], per_model[models[role]], recipe, select, value) for role in GRID_ROLES]
        rows.append(claim_row(statement(recipe), *sides))
    return rows or [claim_row(statement("each recipe"),
                              missing=f"no recipe with runs of both models in the {table} table")]


def _recipe_spread(model: str, runs: Sequence[Run]) -> Side | None:
    """Per seed, max - min over recipes of the final accuracy of each recipe's best setting (seeds common to all
    recipes); None when the model has runs of fewer than 2 recipes."""
    recipes = group_by(runs, lambda run: run.setting.optimizer)
    if len(recipes) < 2:
        return None
    best = {}
    for recipe, recipe_runs in recipes.items():
        recipe_runs = _largest_fraction(recipe_runs)
        setting = best_setting(recipe_runs, "test_acc_pct")
        best[recipe] = {run.seed: run.values["test_acc_pct"] for run in recipe_runs
                        if run.setting == setting and run.finished and run.values["test_acc_pct"] is not None}
    seeds = sorted(set.intersection(*(set(values) for values in best.values())))
    spreads = [max(v[s] for v in best.values()) - min(v[s] for v in best.values()) for s in seeds]
    return Side(model, tuple(spreads), f"{len(recipes)} recipes", sum(not run.finished for run in runs))


MIN_CORRELATION_POINTS = 3


def _flatness_correlation(model: str, runs: Sequence[Run]) -> Side | None:
    """Per seed, Spearman's rho over the model's grid settings (largest fraction) between λ_max and final test
    accuracy, from the seeds with at least 3 finished settings; None when the grid has fewer than 3 settings."""
    from scipy import stats

    runs = _largest_fraction(runs)
    if len({run.setting for run in runs}) < MIN_CORRELATION_POINTS:
        return None
    rhos = []
    for _, seed_runs in sorted(group_by(runs, lambda run: run.seed).items()):
        points = [(run.values["largest_median"], run.values["test_acc_pct"]) for run in seed_runs
                  if run.finished and None not in (run.values["largest_median"], run.values["test_acc_pct"])]
        if len(points) >= MIN_CORRELATION_POINTS:
            rho = stats.spearmanr(*zip(*points)).statistic  # NaN when a variable is constant
            if math.isfinite(rho):
                rhos.append(float(rho))
    return Side(model, tuple(rhos), "grid settings per seed", sum(not run.finished for run in runs))


def claim7(study: Study) -> list[dict]:
    """Claim 7: training speed, final accuracy and robustness of ResNet and ViT across optimizers and their
    hyperparameters, and whether a flatter landscape goes with them."""
    grid_needs = "studies.optimizer_grid (a resnet and a vit model, several recipes)"
    rows = _per_recipe(study, Statement(
        7, "best final test accuracy with {recipe}: ResNet > ViT",
        "final test accuracy (%) of each model's best (lr, weight decay) of the recipe (highest seed mean, largest "
        "fraction; optimizer_grid.csv)", ">", "optimizer_grid.csv", grid_needs), "optimizer_grid", "test_acc_pct",
        "test_acc_pct")
    rows += _per_recipe(study, Statement(
        7, "epochs to the time-to-accuracy target with {recipe}: ResNet < ViT",
        "epochs until the best run of (model, recipe) first reaches target_fraction_of_best of the model's best "
        "final accuracy (time_to_accuracy.csv; not reached = ∞; one best run, n=1)", "<", "time_to_accuracy.csv",
        grid_needs), "time_to_accuracy", "epochs", "epochs")
    rows += _per_recipe(study, Statement(
        7, "CIFAR-100-C mean accuracy with {recipe}: ResNet > ViT",
        "mean accuracy (%) over the corrupted sets of each model's best-clean-accuracy (lr, weight decay) of the "
        "recipe (corruptions_* tables)", ">", "corruptions_*.csv",
        "analyses.corruptions.figures (kind grid, with the optimizer_grid models and recipes)"),
        "corruptions", "clean_acc_pct", "robustness_pct")
    spread = Statement(7, "final accuracy depends more on the optimizer recipe for ViT than for ResNet",
                       "per seed: max minus min over recipes of the final test accuracy (%) of each recipe's best "
                       "(lr, weight decay) (optimizer_grid.csv)", ">", "optimizer_grid.csv", grid_needs)
    grid = study.table("optimizer_grid")
    if grid is None:
        rows.append(claim_row(spread, missing="no optimizer_grid table"))
    else:
        models = grid_models(study, grid)
        if None in models.values():
            rows.append(claim_row(spread, missing="no ResNet or no ViT model in the optimizer_grid table"))
        else:
            per_model = by_model(grid)
            vit, resnet = (_recipe_spread(models[role], per_model[models[role]]) for role in ("ViT", "ResNet"))
            rows.append(claim_row(spread, vit, resnet, missing="" if vit and resnet else
                                  "a model has runs of fewer than 2 recipes in the optimizer_grid table"))
    hessian = study.table("hessian_grid")
    for role in GRID_ROLES:
        statement = Statement(7, f"across the optimizer grid a smaller λ_max goes with higher final accuracy: {role}",
                              "per seed: Spearman's rho between the median largest Hessian eigenvalue and the final "
                              "test accuracy over the model's grid settings (hessian_grid tables); claimed < 0", "<",
                              "hessian_*.csv (grid)",
                              "analyses.hessian.figures (kind grid, with the optimizer_grid models and recipes)")
        if hessian is None:
            rows.append(claim_row(statement, missing="no hessian_grid table"))
            continue
        model = study.roster.pick(role, by_model(hessian))
        if model is None:
            rows.append(claim_row(statement, missing=f"no {role} model in the hessian_grid tables"))
            continue
        rho = _flatness_correlation(model, by_model(hessian)[model])
        rows.append(claim_row(statement, rho, one_sample=True, missing="" if rho else
                              f"the Hessian grid of {model} has fewer than {MIN_CORRELATION_POINTS} settings"))
    return rows


CLAIMS = (claim1, claim2, claim3, claim4, claim5, claim6, claim7)


# ========================================================================================= table and markdown


def claims_table(tables: Mapping[str, Sequence], models: Mapping[str, Mapping],
                 reference_recipes: Sequence[str] = (), roster: Roster | None = None) -> tuple[list[dict], dict]:
    """Every claim row from the given tables (figure module or `summary` -> CSV paths); also the file names read."""
    runs, names = load_tables(tables)
    study = Study(runs, roster or Roster(models), reference_recipes)
    return [row for claim in CLAIMS for row in claim(study)], names


MD_COLUMNS = ("Claim", "Statement", "Statistic", "Paper", "A", "B", "A − B (95% CI)", "Verdict", "Note")


def _md_cell(text) -> str:
    return "—" if text in (None, "") else str(text).replace("|", "\\|").replace("\n", " ")


def _side_cell(row: dict, prefix: str) -> str:
    if row[f"{prefix}_model"] is None:
        return ""
    mean, sd, n = row[f"{prefix}_mean"], row[f"{prefix}_sd"], row[f"{prefix}_n"]
    head = row[f"{prefix}_model"] + (f" [{row[f'{prefix}_setting']}]" if row[f"{prefix}_setting"] else "")
    if not n:
        return f"{head}: no finished run"
    return f"{head}: {fmt(mean)}" + (f" ± {fmt(sd)}" if sd is not None else "") + f" (n={n})"


def _difference_cell(row: dict) -> str:
    if row["difference"] is None:
        return ""
    ci = f" [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]" if row["ci_low"] is not None else f" ({row['basis']})"
    return fmt(row["difference"]) + ci


def markdown(rows: Sequence[dict], sources: Mapping[str, Sequence[str]]) -> str:
    """claims.md: the rules, a count of verdicts, the table, and the files and columns read."""
    counts = {verdict: sum(row["verdict"] == verdict for row in rows) for verdict in VERDICTS}
    lines = ["# The claims of Park & Kim (ICLR 2022): verdicts of this study", "",
             f"{len(rows)} statements: " + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) + ".", "",
             f"**Verdict rule.** {VERDICT_RULE}", "", f"**Roles.** {ROLE_RULE}", "", f"**Settings.** {SETTING_RULE}",
             "", "Paper values are the published numbers of Park & Kim (ICLR 2022): CIFAR-100 with the full recipe, unless stated.", "",
             "| " + " | ".join(MD_COLUMNS) + " |", "|" + "|".join("---" for _ in MD_COLUMNS) + "|"]
    for row in rows:
        cells = (row["claim"], row["statement"], row["statistic"], row["paper"], _side_cell(row, "a"),
                 _side_cell(row, "b"), _difference_cell(row), f"**{row['verdict']}**", row["note"])
        lines.append("| " + " | ".join(_md_cell(cell) for cell in cells) + " |")
    lines += ["", "## Tables read", ""]
    lines += [f"- `{table}`: {', '.join(files)} (columns {', '.join(COLUMNS_READ[table])})"
              for table, files in sources.items()] or ["- none: the config produces no table the claims read"]
    return "\n".join(lines) + "\n"


def make(tables: Mapping[str, Sequence], models: Mapping[str, Mapping], out_csv, out_md,
         reference_recipes: Sequence[str] = ()) -> list[dict]:
    """Write claims.csv and claims.md (each atomically) from the study's tables; returns the rows."""
    rows, sources = claims_table(tables, models, reference_recipes)
    write_csv(rows, out_csv, CSV_COLUMNS)
    with atomic_path(out_md) as tmp:
        tmp.write_text(markdown(rows, sources))
    return rows
