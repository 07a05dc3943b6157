"""The claims verdicts: the verdict rule, model roles, and synthetic figure tables in which every claim holds,
fails or is inconclusive; a study with parts left out; the markdown; the rule's place in the workflow."""

from __future__ import annotations

import csv
import importlib
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vitwork import claims
from vitwork.figures import (
    corruptions_grid, corruptions_scatter, corruptions_small_data, data_size, fourier_depth, hessian_grid,
    hessian_spectra, inductive_bias, landscape_surfaces, noise_frequency_curves, optimizer_grid, time_to_accuracy,
)
from vitwork.results import read_csv, write_csv
from vitwork.summary import COLUMNS as SUMMARY_COLUMNS

REPO = Path(__file__).resolve().parents[1]

# The models of a study, named freely: roles come from the architectures (ViT sizes shared by the like-for-like pairs).
VIT_SIZE = {"patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2}
RESNET_SIZE = {"block": "basic", "layers": [1, 1, 1, 1], "channels": [8, 8, 8, 8], "stem_width": 8}
ALTERNET_SIZE = {"layers": [1, 1, 2, 2], "channels": [8, 8, 16, 16], "stem_width": 8, "heads": [1, 1, 2, 2],
                 "head_dim": 8}
MODELS = {
    "convnet": {"arch": "vitwork_resnet", "kwargs": RESNET_SIZE},
    "hybrid": {"arch": "vitwork_alternet", "kwargs": {**ALTERNET_SIZE, "msa_per_stage": [0, 0, 1, 1]}},
    "hybrid_start": {"arch": "vitwork_alternet", "kwargs": {**ALTERNET_SIZE, "msa_per_stage": [0, 0, 0, 0]}},
    "window3": {"arch": "vitwork_vit_local", "kwargs": {**VIT_SIZE, "kernel_size": 3}},
    "window5": {"arch": "vitwork_vit_local", "kwargs": {**VIT_SIZE, "kernel_size": 5}},
    "window8": {"arch": "vitwork_vit_local", "kwargs": {**VIT_SIZE, "kernel_size": 8}},  # covers the 8x8 grid
    "transformer": {"arch": "vitwork_vit", "kwargs": VIT_SIZE},
    "transformer_gap": {"arch": "vitwork_vit", "kwargs": {**VIT_SIZE, "global_pool": "avg"}},
}
SEEDS = (0, 1, 2)
SEED_OFFSETS = (-1.0, 0.0, 1.0)
# scenario -> (k, noise): a seed's claimed effect is (k + noise * its offset) times the effect's base size, so it
# holds clearly, is reversed clearly, or lies in the claimed direction (k = 0.2) but well within the seed spread
SCENARIOS = {"holds": (1.0, 0.05), "fails": (-1.0, 0.05), "inconclusive": (0.2, 1.0)}


@pytest.fixture(scope="module")
def roster():
    """The models' traits, built once (meta device)."""
    return claims.Roster(MODELS)


# ------------------------------------------------------------------------------------------ the verdict rule


def test_judge_two_sides_by_the_welch_interval():
    assert claims.judge([10.0, 10.2, 9.8], [5.0, 5.1, 4.9], ">").verdict == "holds"
    assert claims.judge([10.0, 10.2, 9.8], [5.0, 5.1, 4.9], "<").verdict == "fails"
    overlapping = claims.judge([10.0, 12.0, 8.0], [9.0, 11.0, 7.0], ">")
    assert overlapping.verdict == "inconclusive" and overlapping.ci_low < 0 < overlapping.ci_high
    assert overlapping.basis == "Welch 95% CI" and overlapping.difference == pytest.approx(1.0)


def test_judge_one_side_against_zero_and_single_seeds_by_the_sign():
    assert claims.judge([-0.5, -0.4, -0.6], None, "<").verdict == "holds"
    assert claims.judge([-0.5, 0.6, -0.6], None, "<").verdict == "inconclusive"
    single = claims.judge([3.0], [4.0], "<")
    assert (single.verdict, single.basis, single.ci_low) == ("holds", "sign only (n=1)", None)
    assert claims.judge([3.0], [3.0], "<").verdict == "inconclusive"
    assert claims.judge([3.0, 3.1], [4.0], ">").verdict == "fails"  # one side with one seed: the sign decides
    assert claims.judge([math.inf], [4.0], ">").verdict == "holds"  # a target never reached
    with pytest.raises(ValueError, match="claimed"):
        claims.judge([1.0], [2.0], "!=")


# ------------------------------------------------------------------------------------------------ model roles


def test_roles_come_from_the_architecture_not_the_name(roster):
    present = list(MODELS)
    assert roster.pick("ResNet", present) == "convnet"
    assert roster.pick("AlterNet", present) == "hybrid"  # the most MSA blocks
    assert roster.pick("AlterNet 0 MSA", present) == "hybrid_start"
    assert roster.pick("local-MSA ViT", present) == "window3"  # first in config order; window8 covers the grid
    assert roster.pick("ViT", present) == "transformer"
    assert roster.pick("ViT (GAP)", present) == "transformer_gap"
    assert roster.pick("ViT", ["convnet"]) is None
    assert roster.traits["window8"].global_msa and not roster.traits["window5"].global_msa
    # the global side of the kernel comparison: the vit_local whose kernel covers the grid, before a plain ViT
    assert roster.pick_pair(claims._kernel(5), claims._global_msa, present,
                            rank_b=lambda t: t.family != "vit_local") == ("window5", "window8")
    # the local ViTs pool by GAP (as the authors'): a CLS ViT is no like-for-like partner, a GAP ViT of their shape is
    assert roster.pick_pair(claims._kernel(5), claims._global_msa, ["window5", "transformer"]) is None
    assert roster.pick_pair(claims._kernel(5), claims._global_msa, ["window5", "transformer_gap"]) == (
        "window5", "transformer_gap")


def test_like_for_like_pairs_need_the_same_vit_size():
    models = {"small": {"arch": "vitwork_vit", "kwargs": VIT_SIZE},
              "wide_gap": {"arch": "vitwork_vit", "kwargs": {**VIT_SIZE, "embed_dim": 32, "global_pool": "avg"}}}
    roster = claims.Roster(models)
    assert roster.pick_pair(claims.ROLES["ViT (GAP)"].fits, claims.ROLES["ViT"].fits, models, same_pool=False) is None


# ----------------------------------------------------------------------------------- synthetic figure tables


def multiplier(k: float, noise: float, seed: int) -> float:
    """How much of the claimed effect a seed shows."""
    return k + noise * SEED_OFFSETS[seed]


def shifted(base: float, center: float, k: float, noise: float, seed: int) -> float:
    """A run's value: ``center`` plus the seed's share of the claimed difference ``base - center``."""
    return center + multiplier(k, noise, seed) * (base - center)


def identity(model: str, seed: int, optimizer: str = "adamw", lr: float = 1e-3, wd: float = 0.05,
             fraction: float = 1.0, checkpoint: str = "last", status: str = "finished") -> dict:
    run_id = f"{model}/{optimizer}-lr{lr:g}-wd{wd:g}/f{fraction}/s{seed}"
    return {"run_id": run_id, "setting_id": run_id.rpartition("/")[0], "model": model, "model_label": model,
            "family": "x", "optimizer": optimizer, "optimizer_label": optimizer, "optimizer_setting": "",
            "lr": lr, "weight_decay": wd, "fraction": fraction, "seed": seed, "status": status,
            "checkpoint": checkpoint}


def write(folder: Path, name: str, rows: list[dict], columns) -> str:
    """Write a table with the columns of the module that writes it in the pipeline (so renamed columns fail here)."""
    path = folder / f"{name}.csv"
    write_csv(rows, path, columns)
    return str(path)


def only(row: dict, columns) -> dict:
    return {key: value for key, value in row.items() if key in columns}


def summary_rows(k, noise):
    accuracy = {"hybrid": 60, "convnet": 55, "hybrid_start": 50, "window5": 45, "window3": 40, "window8": 35}
    small = {"hybrid": 40, "convnet": 35}
    rows = [{**identity(model, seed), "test_acc_pct": shifted(base, 45, k, noise, seed), "train_nll": 1.0}
            for model, base in accuracy.items() for seed in SEEDS]
    rows += [{**identity(model, seed, fraction=0.25), "test_acc_pct": shifted(base, 37.5, k, noise, seed),
              "train_nll": 1.0} for model, base in small.items() for seed in SEEDS]
    return [only(row, SUMMARY_COLUMNS) for row in rows]


def induct_rows(k, noise):
    error = {"convnet": (20, 1.0), "window5": (30, 1.5), "transformer": (40, 2.0)}
    rows = [{**identity(model, seed), "kind": "run", "test_err_pct": shifted(err, 30, k, noise, seed),
             "train_nll": shifted(nll, 1.5, k, noise, seed)}
            for model, (err, nll) in error.items() for seed in SEEDS]
    # aggregate rows the claims must not take for runs
    rows += [{**identity("convnet", 0), "kind": "mean", "run_id": None, "seed": None, "test_err_pct": 99.0}]
    return [only(row, inductive_bias.COLUMNS) for row in rows]


def data_size_rows(k, noise):
    return [only({**identity(model, seed, fraction=fraction),
                  "train_nll": shifted(2.0 + (1.0 - fraction), 2.0, k, noise, seed)}, data_size.COLUMNS)
            for model in ("transformer", "convnet") for fraction in (1.0, 0.5, 0.25) for seed in SEEDS]


def hessian_rows(k, noise, checkpoint="warmup", part="objective"):
    values = {"transformer": (0.4, 10.0), "convnet": (0.1, 50.0), "transformer_gap": (0.1, 10.0)}
    rows = []
    for model, (share, largest) in values.items():
        for seed in SEEDS:
            base = {**identity(model, seed, checkpoint=checkpoint), "kind": "run", "loss_part": part}
            rows += [{**base, "which": "top_magnitude", "fraction_negative": shifted(share, 0.25, k, noise, seed)},
                     {**base, "which": "largest", "median_positive": shifted(largest, 30.0, k, noise, seed)},
                     {**base, "which": "smallest", "median_positive": None}]
    rows.append({**identity("transformer", 0, checkpoint=checkpoint), "kind": "density", "run_id": None,
                 "panel": "ends", "sign": "negative", "density": 0.3})
    return [only(row, hessian_spectra.COLUMNS) for row in rows]


def landscape_rows(k, noise):
    rows = [{**identity(model, seed), "kind": "run", "loss_part": "objective", "curvature": shifted(base, 2.0, k, noise, seed)}
            for model, base in (("transformer", 1.0), ("convnet", 3.0)) for seed in SEEDS]
    rows.append({**identity("convnet", 0), "kind": "point", "x": 0.0, "y": 0.0, "loss": 1.0})
    return [only(row, landscape_surfaces.COLUMNS) for row in rows]


BLOCKS = {"convnet": ("stem", "conv", "conv", "downsample", "conv"),
          "transformer": ("stem", "msa", "mlp", "msa", "mlp"),
          "hybrid": ("stem", "conv", "downsample", "conv", "msa")}
STEPS = {"msa": -1.0, "mlp": 1.0, "conv": 1.0, "downsample": 3.0}


def fourier_rows(k, noise):
    rows = []
    for model, kinds in BLOCKS.items():
        for seed in SEEDS:
            value = 0.0
            for index, kind in enumerate(kinds):
                if index:  # the change across a block: the seed's share of its claimed step
                    value += multiplier(k, noise, seed) * STEPS[kind]
                rows.append({**identity(model, seed), "block_index": index, "block_name": f"b{index}", "kind": kind,
                             "depth": index / (len(kinds) - 1), "high_frequency": math.pi,
                             fourier_depth.VALUE: value})
    return [only(row, fourier_depth.COLUMNS) for row in rows]


def noise_rows(k, noise):
    drops = {"transformer": 5.0, "convnet": 15.0}
    rows = []
    for model, drop in drops.items():
        for seed in SEEDS:
            for f in (0.1, 0.5, 0.9):
                top = shifted(drop, 10.0, k, noise, seed) if f == 0.9 else 1.0
                rows.append({**identity(model, seed), "frequency": f * math.pi, "frequency_pi": f,
                             "delta_acc_pp": -top})
    return [only(row, noise_frequency_curves.COLUMNS) for row in rows]


def scatter_rows(k, noise, fractions=(1.0,)):
    robust = {"hybrid": 50.0, "convnet": 45.0}
    return [only({**identity(model, seed, fraction=fraction), "clean_acc_pct": 60.0,
                  "robustness_pct": shifted(base - 10 * (1 - fraction), 47.5 - 10 * (1 - fraction), k, noise, seed)},
                 corruptions_scatter.COLUMNS)
            for model, base in robust.items() for fraction in fractions for seed in SEEDS]


GRID = {"sgd": (0.1, 0.01), "adam": (1e-3, 1e-4)}


def grid_rows(k, noise):
    """The optimizer grid: per recipe, ResNet beats ViT; ViT's best accuracy spreads over recipes, ResNet's not."""
    base = {"convnet": 60.0, "transformer": 30.0}
    spread_sign = {"convnet": -1.0, "transformer": 1.0}
    rows = []
    for model in base:
        for recipe, lrs in GRID.items():
            for seed in SEEDS:
                share = multiplier(k, noise, seed)
                best = 50.0 + share * (base[model] - 50.0)
                best += 10.0 + 10.0 * spread_sign[model] * share if recipe == "adam" else 0.0
                for rank, lr in enumerate(lrs):
                    rows.append({**identity(model, seed, recipe, lr, 5e-4), "test_acc_pct": best - 5.0 * rank})
    return [only(row, optimizer_grid.COLUMNS) for row in rows]


def time_rows(k):
    """One best run per (model, recipe): a single-run comparison is inconclusive only as a tie (k = 0)."""
    return [only({**identity(model, 0, recipe), "status": "reached", "epochs": 4.5 + k * (epochs - 4.5)},
                 time_to_accuracy.COLUMNS)
            for model, epochs in (("convnet", 3), ("transformer", 6)) for recipe in GRID]


def corruption_grid_rows(k, noise):
    robust = {"convnet": 45.0, "transformer": 35.0}
    rows = []
    for model, base in robust.items():
        for recipe, lrs in GRID.items():
            for rank, lr in enumerate(lrs):
                for seed in SEEDS:
                    value = shifted(base, 40.0, k, noise, seed) if rank == 0 else 5.0  # rank 0: best clean accuracy
                    rows.append({**identity(model, seed, recipe, lr, 5e-4), "clean_acc_pct": 60.0 - 10 * rank,
                                 "robustness_pct": value})
    return [only(row, corruptions_grid.COLUMNS) for row in rows]


def hessian_grid_rows(k, noise):
    """λ_max against accuracy over the grid: per seed falling where the seed shows the claimed effect, else rising."""
    rows = []
    for model in ("convnet", "transformer"):
        for recipe, lrs in GRID.items():
            for rank, lr in enumerate(lrs):
                for seed in SEEDS:
                    accuracy = 40.0 + 5.0 * rank + (10.0 if recipe == "adam" else 0.0)
                    direction = math.copysign(1.0, multiplier(k, noise, seed))
                    rows.append({**identity(model, seed, recipe, lr, 5e-4, checkpoint="warmup"), "loss_part": "nll",
                                 "test_acc_pct": accuracy, "largest_median": 100.0 - direction * accuracy})
    return [only(row, hessian_grid.COLUMNS) for row in rows]


def write_study(folder: Path, scenario: str) -> dict[str, list[str]]:
    """Every table the claims read, in which each claim holds, fails, or is inconclusive (`SCENARIOS`)."""
    k, noise = SCENARIOS[scenario]
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "summary": [write(folder, "summary", summary_rows(k, noise), SUMMARY_COLUMNS)],
        "inductive_bias": [write(folder, "inductive_bias", induct_rows(k, noise), inductive_bias.COLUMNS)],
        "data_size": [write(folder, "data_size", data_size_rows(k, noise), data_size.COLUMNS)],
        # the NLL part's figure of the same runs says the opposite: the claims read the objective's (the paper's)
        "hessian_spectra": [write(folder, "hessian_inductive_bias_nll", hessian_rows(-k, noise, part="nll"),
                                  hessian_spectra.COLUMNS),
                            write(folder, "hessian_inductive_bias", hessian_rows(k, noise), hessian_spectra.COLUMNS)],
        "landscape_surfaces": [write(folder, "landscape_x", landscape_rows(k, noise), landscape_surfaces.COLUMNS)],
        "fourier_depth": [write(folder, "fourier_depth", fourier_rows(k, noise), fourier_depth.COLUMNS)],
        "noise_frequency_curves": [write(folder, "noise_frequency_models", noise_rows(k, noise),
                                         noise_frequency_curves.COLUMNS)],
        # the same runs in two corruption figures: read once
        "corruptions_scatter": [write(folder, "corruptions_scatter", scatter_rows(k, noise),
                                      corruptions_scatter.COLUMNS)],
        "corruptions_small_data": [write(folder, "corruptions_small", scatter_rows(k, noise, (1.0, 0.25)),
                                         corruptions_small_data.COLUMNS)],
        "corruptions_grid": [write(folder, "corruptions_grid", corruption_grid_rows(k, noise),
                                   corruptions_grid.COLUMNS)],
        "optimizer_grid": [write(folder, "optimizer_grid", grid_rows(k, noise), optimizer_grid.COLUMNS)],
        "time_to_accuracy": [write(folder, "time_to_accuracy", time_rows(k if scenario != "inconclusive" else 0.0),
                                   time_to_accuracy.COLUMNS)],
        "hessian_grid": [write(folder, "hessian_optimizer_grid", hessian_grid_rows(k, noise), hessian_grid.COLUMNS)],
    }


# ---------------------------------------------------------------------------------------- verdicts per scenario


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_claim_gets_the_scenarios_verdict(tmp_path, roster, scenario):
    tables = write_study(tmp_path / "figures", scenario)
    rows, _ = claims.claims_table(tables, MODELS, ("adamw",), roster=roster)
    assert {row["claim"] for row in rows} == set(range(1, 8))
    wrong = [(row["statement"], row["verdict"], row["note"]) for row in rows if row["verdict"] != scenario]
    assert not wrong, wrong
    # the statements the issue names are all there, each once per recipe where it is per recipe
    statements = [row["statement"] for row in rows]
    assert len(statements) == len(set(statements)) == 34
    for text in ("test error: ResNet < ViT", "NLL_train: ResNet < ViT", "test accuracy: local 5x5 MSA > global MSA",
                 "share of negative Hessian eigenvalues at the end of warm-up: ViT (GAP) < ViT (CLS)",
                 "best final test accuracy with sgd: ResNet > ViT",
                 "CIFAR-100-C mean accuracy with adam: ResNet > ViT"):
        assert text in statements


def test_rows_name_models_settings_and_spreads(tmp_path, roster):
    rows, sources = claims.claims_table(write_study(tmp_path, "holds"), MODELS, ("adamw",), roster=roster)
    by_statement = {row["statement"]: row for row in rows}
    error = by_statement["test error: ResNet < ViT"]
    assert (error["a_model"], error["b_model"], error["a_n"], error["b_n"]) == ("convnet", "transformer", 3, 3)
    assert error["a_mean"] == pytest.approx(20.0) and error["a_sd"] == pytest.approx(0.5)
    assert error["paper"] == "ResNet 17.2-17.5%, ViT 33.5%" and error["basis"] == "Welch 95% CI"
    small = by_statement["test accuracy on small data: AlterNet > ResNet"]
    assert "25% data" in small["note"] and small["a_mean"] == pytest.approx(40.0)
    grid = by_statement["best final test accuracy with sgd: ResNet > ViT"]
    assert grid["a_setting"] == "sgd lr 0.1 wd 5e-4, 100% data" and grid["a_mean"] == pytest.approx(60.0)
    drop = by_statement["accuracy drop under the highest-frequency noise (0.9π): ViT < ResNet"]
    assert (drop["a_mean"], drop["b_mean"]) == (pytest.approx(5.0), pytest.approx(15.0))
    msa = by_statement["high-frequency ΔLog amplitude drops across MSA blocks: AlterNet"]
    assert msa["a_mean"] == pytest.approx(-1.0) and msa["b_model"] is None
    assert msa["note"].endswith("; over 1 MSA block (down-sampling blocks not counted)")  # how thin the mean is
    conv = by_statement["high-frequency ΔLog amplitude rises across Conv blocks: ResNet"]
    assert conv["note"].endswith("; over 3 Conv blocks (down-sampling blocks not counted)")
    speed = by_statement["epochs to the time-to-accuracy target with adam: ResNet < ViT"]
    assert speed["basis"] == "sign only (n=1)" and speed["verdict"] == "holds"
    robust = [row for row in rows if row["statement"] == "CIFAR-100-C mean accuracy: AlterNet > ResNet"][0]
    assert robust["a_n"] == 3  # the scatter and small-data tables hold the same runs: counted once
    assert sources["corruptions"] == ["corruptions_scatter.csv", "corruptions_small.csv", "corruptions_grid.csv"]


def test_diverged_and_unreached_runs(tmp_path, roster):
    rows = summary_rows(1.0, 0.05)
    for row in rows:
        if row["model"] == "hybrid":
            row.update(status="diverged", test_acc_pct=None)
        if row["model"] == "convnet" and row["seed"] == 2:
            row["status"] = "diverged"
    tables = {"summary": [write(tmp_path, "summary", rows, SUMMARY_COLUMNS)],
              "time_to_accuracy": [write(tmp_path, "time", [
                  only({**identity("convnet", 0, "sgd"), "status": "reached", "epochs": 3}, time_to_accuracy.COLUMNS),
                  only({**identity("transformer", 0, "sgd"), "status": "not reached", "epochs": None},
                       time_to_accuracy.COLUMNS)], time_to_accuracy.COLUMNS)]}
    by_statement = {row["statement"]: row for row in claims.claims_table(tables, MODELS, roster=roster)[0]}
    alter = by_statement["test accuracy: AlterNet > ResNet"]
    assert alter["verdict"] == "inconclusive" and "no finished run" in alter["note"]
    kernel = by_statement["test accuracy: local 5x5 MSA > global MSA"]
    assert kernel["verdict"] == "holds"
    speed = by_statement["epochs to the time-to-accuracy target with sgd: ResNet < ViT"]
    assert speed["verdict"] == "holds" and math.isinf(speed["b_mean"])


# ------------------------------------------------------------------------------------------ parts left out


def test_a_study_without_tables_gives_not_run_rows_naming_the_config_key(roster):
    rows, sources = claims.claims_table({}, MODELS, roster=roster)
    assert sources == {} and {row["verdict"] for row in rows} == {"not run"}
    assert {row["claim"] for row in rows} == set(range(1, 8))
    notes = {row["statement"]: row["note"] for row in rows}
    assert "studies.inductive_bias" in notes["test error: ResNet < ViT"]
    assert "studies.data_size" in notes["NLL_train of ViT rises as the training fraction shrinks"]
    assert "analyses.hessian.figures" in notes["largest Hessian eigenvalue at the end of warm-up: ViT < ResNet"]
    assert "studies.optimizer_grid" in notes["best final test accuracy with each recipe: ResNet > ViT"]


def test_a_demo_like_study_tests_what_its_tables_hold(tmp_path, roster):
    """Only the inductive-bias study and a Hessian at the last checkpoint; no local-MSA ViT, no GAP model."""
    models = {name: MODELS[name] for name in ("convnet", "window3", "transformer")}
    tables = {"inductive_bias": [write(tmp_path, "ib", [row for row in induct_rows(1.0, 0.05)
                                                         if row["model"] != "window5"], inductive_bias.COLUMNS)],
              "hessian_spectra": [write(tmp_path, "hs", hessian_rows(1.0, 0.05, checkpoint="last"),
                                        hessian_spectra.COLUMNS)]}
    rows, _ = claims.claims_table(tables, models, roster=roster)
    verdicts = {row["statement"]: (row["verdict"], row["note"]) for row in rows}
    assert verdicts["test error: ResNet < ViT"][0] == "holds"
    verdict, note = verdicts["test error: ResNet < local-MSA ViT"]
    assert verdict == "not run" and "no local-MSA ViT model in the inductive_bias table" in note
    verdict, note = verdicts["share of negative Hessian eigenvalues at the end of warm-up: ViT > ResNet"]
    assert verdict == "not run" and "not at the warmup checkpoint" in note and "analyses.hessian.checkpoint" in note
    verdict, note = verdicts["test accuracy: local 3x3 MSA > global MSA"]
    assert verdict == "not run" and "no summary table" in note


def test_a_renamed_column_names_file_and_column(tmp_path, roster):
    path = tmp_path / "data_size.csv"
    rows = [{("nll_train" if key == "train_nll" else key): value for key, value in row.items()}
            for row in data_size_rows(1.0, 0.05)]
    write_csv(rows, path)
    with pytest.raises(ValueError, match=r"data_size.csv: the data_size table lacks the column\(s\) train_nll"):
        claims.claims_table({"data_size": [str(path)]}, MODELS, roster=roster)
    with pytest.raises(ValueError, match="no reader for table"):
        claims.claims_table({"fourier_spectra": [str(path)]}, MODELS, roster=roster)


def test_the_columns_read_are_columns_the_figures_write():
    for module_name, (table, _) in claims.READERS.items():
        module = importlib.import_module("vitwork.summary" if module_name == "summary"
                                         else f"vitwork.figures.{module_name}")
        assert set(claims.COLUMNS_READ[table]) <= set(module.COLUMNS), module_name


# ------------------------------------------------------------------------------------------------ the files


def test_make_writes_csv_and_markdown_with_the_verdict_rule(tmp_path, roster, monkeypatch):
    tables = write_study(tmp_path / "figures", "holds")
    monkeypatch.setattr(claims, "Roster", lambda models: roster)
    rows = claims.make(tables, MODELS, tmp_path / "claims.csv", tmp_path / "claims.md", ["adamw"])
    written = read_csv(tmp_path / "claims.csv")
    assert list(written[0]) == list(claims.CSV_COLUMNS) and len(written) == len(rows)
    assert {row["verdict"] for row in written} == {"holds"}
    text = (tmp_path / "claims.md").read_text()
    assert claims.VERDICT_RULE in text and claims.ROLE_RULE in text and claims.SETTING_RULE in text
    assert "34 statements: 34 holds, 0 fails, 0 inconclusive, 0 not run." in text
    assert "| 1 | test error: ResNet < ViT |" in text and "convnet: 20 ± 0.5 (n=3)" in text
    assert "`hessian_spectra`: hessian_inductive_bias_nll.csv, hessian_inductive_bias.csv (columns kind, run_id" in text
    assert sorted(os.listdir(tmp_path)) == ["claims.csv", "claims.md", "figures"]


def test_claims_rule_is_planned_for_the_demo(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "claims", "--configfile",
                             str(REPO / "presets" / "demo.yaml"), "-s", str(REPO / "Snakefile"), "--directory",
                             str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    plan = result.stdout + result.stderr
    jobs = dict(line.split() for line in plan.split("Job stats:")[-1].splitlines()[3:] if len(line.split()) == 2)
    assert jobs["claims"] == "1"
    for needed in ("figure_inductive_bias", "figure_hessian_cls_vs_gap", "figure_corruptions_optimizer_grid",
                   "figure_time_to_accuracy", "summary"):
        assert jobs[needed] == "1"
    assert "figure_fourier_spectra" not in jobs  # the claims read only the tables they use


def test_two_studies_side_by_side_mark_the_statements_whose_verdicts_differ(tmp_path, capsys):
    from vitwork.claims import CSV_COLUMNS
    from vitwork.claims_compare import main

    def study(name, rows):
        path = tmp_path / f"{name}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, CSV_COLUMNS)
            writer.writeheader()
            for claim, statement, a, b, verdict in rows:
                writer.writerow({"claim": claim, "statement": statement, "a_mean": a, "b_mean": b, "verdict": verdict})
        return f"{name}={path}"

    demo = study("demo", [(1, "test error: ResNet < ViT", 1.2, 49.6, "holds"), (3, "negative share: ViT > ResNet", 0.4, 0.0, "holds"),
                          (6, "robustness: AlterNet > ResNet", "", "", "not run")])
    mini = study("mini", [(1, "test error: ResNet < ViT", 77.0, 85.0, "holds"), (3, "negative share: ViT > ResNet", 0.1, 0.2, "fails"),
                          (6, "robustness: AlterNet > ResNet", 0.2, 0.1, "holds"), (4, "5x5 > 3x3 accuracy", 18.0, 17.7, "holds")])
    main([demo, mini])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| claim | statement | demo | mini | differs |" and len(lines) == 2 + 4
    rows = {line.split(" | ")[1]: line for line in lines[2:]}
    assert rows["test error: ResNet < ViT"] == "| 1 | test error: ResNet < ViT | holds (1.2 vs 49.6) | holds (77 vs 85) |  |"
    assert rows["negative share: ViT > ResNet"].endswith("| holds (0.4 vs 0) | fails (0.1 vs 0.2) | yes |")
    assert rows["robustness: AlterNet > ResNet"].endswith("| not run | holds (0.2 vs 0.1) |  |")  # untested is no difference
    assert rows["5x5 > 3x3 accuracy"].endswith("| — | holds (18 vs 17.7) |  |")  # only the second study has it
    with pytest.raises(SystemExit):
        main(["demo.csv"])  # no NAME=
