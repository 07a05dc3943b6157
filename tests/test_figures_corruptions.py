"""Figures of the CIFAR-100-C analysis (claim 6): table reading, robustness, and each figure's CSV, on fake runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from test_figures import as_float, assert_outputs_complete, figure_paths, write_fake_run

from vitwork.corruptions import CORRUPTIONS, SEVERITIES
from vitwork.figures import (
    corruption_tables, corruptions_buildup, corruptions_grid, corruptions_heatmap, corruptions_scatter,
    corruptions_small_data, data_size, optimizer_grid,
)
from vitwork.models.alternet import ALTERNET50
from vitwork.results import load_run, read_csv

torch.set_num_threads(1)

NOISE_ACC = 0.2  # gaussian_noise at every severity; every other set: base - SEVERITY_STEP * severity
SEVERITY_STEP = 0.02


def expected_robustness(base: float) -> float:
    """Mean over the 75 sets of the fake table: 70 sets average base - 3 * step, 5 sets are NOISE_ACC."""
    return (70 * (base - 3 * SEVERITY_STEP) + 5 * NOISE_ACC) / 75


def set_accuracy(name: str, severity: int, base: float) -> float:
    """The fake table's accuracy of one corrupted set."""
    return NOISE_ACC if name == "gaussian_noise" else base - SEVERITY_STEP * severity


def write_table(results: Path, run_dir: Path, clean: float, base: float, checkpoint: str = "last",
                sample: tuple[int, int] | None = None) -> Path:
    """Write the run's corruption table at the analysis layout's path; returns it. `sample`: (sample size, test
    split size) columns, as the analysis writes them."""
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    path = results / "analysis" / "corruptions" / run_id / f"{checkpoint}.csv"
    path.parent.mkdir(parents=True)
    extra = "" if sample is None else f",{sample[0]},{sample[1]}"
    lines = ["corruption,severity,acc,nll" + ("" if sample is None else ",sample_size,pool_size"),
             f"clean,0,{clean},1.0{extra}"]
    lines += [f"{name},{s},{set_accuracy(name, s, base)},2.0{extra}" for name in CORRUPTIONS for s in SEVERITIES]
    path.write_text("\n".join(lines) + "\n")
    return path


def set_model(run_dir: Path, arch: str, kwargs: dict) -> Path:
    """Give a fake run's spec a model arch and kwargs (e.g. an AlterNet's msa_per_stage)."""
    info = json.loads((run_dir / "run.json").read_text())
    info["spec"]["model"].update(arch=arch, kwargs=kwargs)
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


def by_run(rows: list[dict]) -> dict[str, dict]:
    """CSV rows keyed by run id (one row per run)."""
    assert len({row["run_id"] for row in rows}) == len(rows)
    return {row["run_id"]: row for row in rows}


def run_id_of(run_dir: Path) -> str:
    return load_run(run_dir).run_id


# --- reading tables and scoring ---------------------------------------------------------------------------


def test_table_scores_and_checks(tmp_path):
    run_dir = write_fake_run(tmp_path)
    path = write_table(tmp_path, run_dir, clean=0.7, base=0.5)
    rows = corruption_tables.read_corruption_table(path)
    assert len(rows) == 76 and rows[0] == {"corruption": "clean", "severity": 0, "acc": 0.7, "nll": 1.0,
                                           "sample_size": None, "pool_size": None}
    assert corruption_tables.clean_accuracy(rows) == 0.7
    assert corruption_tables.robustness(rows) == pytest.approx(expected_robustness(0.5))
    assert corruption_tables.robustness(rows) == pytest.approx((70 * 0.44 + 5 * 0.2) / 75)
    text = path.read_text()
    path.write_text(text + "fog,3,0.5,2.0\n")
    with pytest.raises(ValueError, match="duplicate"):
        corruption_tables.read_corruption_table(path)
    path.write_text(text.replace("clean,0,0.7", "clean,0,70.0"))
    with pytest.raises(ValueError, match=r"last\.csv:2: acc=70\.0 is not a fraction"):
        corruption_tables.read_corruption_table(path)
    path.write_text(text.replace("clean,0,0.7,1.0\n", ""))
    with pytest.raises(ValueError, match="one 'clean' row"):
        corruption_tables.read_corruption_table(path)


def test_selection_pairs_runs_with_their_tables(tmp_path):
    first, second = write_fake_run(tmp_path, seed=0), write_fake_run(tmp_path, seed=1)
    diverged = write_fake_run(tmp_path, seed=2, diverge_at=2)
    tables = [write_table(tmp_path, d, 0.6, 0.5) for d in (first, second)]
    with pytest.raises(ValueError, match="does not belong to run"):
        corruption_tables.load_selection([first, second], tables[::-1])
    with pytest.raises(ValueError, match="2 runs but 1 analysis tables"):
        corruption_tables.load_selection([first, second], tables[:1])
    selection = corruption_tables.load_selection([first, diverged], [tables[0], None])
    assert selection[1].rows is None
    scores = corruption_tables.run_scores(selection[1])
    assert all(value is None for value in scores.values())
    assert corruption_tables.run_scores(selection[0])["n_sets"] == 75


# --- figures ----------------------------------------------------------------------------------------------


def test_scatter_csv_has_each_runs_scores_and_means(tmp_path):
    specs = [("resnet50", "resnet", 1.0, 0, 0.80, 0.60), ("resnet50", "resnet", 1.0, 1, 0.78, 0.56),
             ("vit_ti", "vit", 1.0, 0, 0.66, 0.45), ("vit_ti", "vit", 0.5, 0, 0.50, 0.35),
             ("alternet50", "alternet", 1.0, 0, 0.84, 0.62)]
    run_dirs, tables = [], []
    for model, family, fraction, seed, clean, base in specs:
        run_dir = write_fake_run(tmp_path, model=model, family=family, fraction=fraction, seed=seed)
        run_dirs.append(run_dir)
        tables.append(write_table(tmp_path, run_dir, clean, base))
    run_dirs.append(write_fake_run(tmp_path, model="vit_ti", family="vit", seed=1, diverge_at=2))
    tables.append(None)
    png, pdf, csv_path = figure_paths(tmp_path, "corruptions_scatter")
    corruptions_scatter.make(run_dirs, tables, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    assert [r["model"] for r in rows] == ["resnet50"] * 2 + ["alternet50"] + ["vit_ti"] * 3
    got = by_run(rows)
    for run_dir, (model, family, fraction, seed, clean, base) in zip(run_dirs, specs):
        row = got[run_id_of(run_dir)]
        assert (row["family"], float(row["fraction"]), int(row["seed"]), row["checkpoint"]) == (
            family, fraction, seed, "last")
        assert as_float(row["clean_acc"]) == pytest.approx(clean)
        assert as_float(row["clean_acc_pct"]) == pytest.approx(100 * clean)
        assert as_float(row["robustness"]) == pytest.approx(expected_robustness(base))
        assert as_float(row["robustness_pct"]) == pytest.approx(100 * expected_robustness(base))
    diverged = got[run_id_of(run_dirs[-1])]
    assert diverged["status"] == "diverged" and diverged["robustness"] == "" and diverged["clean_acc"] == ""
    table_rows = corruptions_scatter.table(corruption_tables.load_selection(run_dirs, tables))
    resnet = corruption_tables.mean_point([r for r in table_rows if r["model"] == "resnet50"])
    assert resnet["clean_acc_pct"] == pytest.approx(79.0) and resnet["clean_acc_std"] == pytest.approx(math.sqrt(2))
    assert resnet["robustness_pct"] == pytest.approx(50 * (expected_robustness(0.6) + expected_robustness(0.56)))
    vit = corruption_tables.mean_point([r for r in table_rows if r["model"] == "vit_ti" and r["fraction"] == 1.0])
    assert vit["n_seeds"] == 1 and vit["robustness_std"] is None  # the diverged seed is left out


def test_clean_accuracy_of_a_sample_is_labelled_as_the_samples(tmp_path):
    """A clean accuracy read on 500 of 10,000 test images is not called the test accuracy."""
    runs = [write_fake_run(tmp_path), write_fake_run(tmp_path, model="resnet50", family="resnet")]
    tables = [write_table(tmp_path, run, clean=0.6, base=0.5, sample=(500, 10000)) for run in runs]
    png, pdf, csv_path = figure_paths(tmp_path, "corruptions_scatter")
    rows = corruptions_scatter.make(runs, tables, png, pdf, csv_path)
    assert {(r["clean_images"], r["test_images"]) for r in rows} == {(500, 10000)}
    assert corruption_tables.score_labels(rows)["clean_acc_pct"] == "Clean accuracy, 500-image test sample (%)"
    figure = corruptions_scatter.plot(rows)
    assert figure.axes[0].get_xlabel() == "Clean accuracy, 500-image test sample (%)"
    # the whole split: the test accuracy
    full = [dict(row, clean_images=10000) for row in rows]
    assert corruption_tables.score_labels(full)["clean_acc_pct"] == "Clean test accuracy (%)"


def test_heatmap_csv_has_every_set_in_benchmark_order(tmp_path):
    run_dirs = [write_fake_run(tmp_path, model="resnet50", family="resnet", seed=s) for s in (0, 1)]
    run_dirs.append(write_fake_run(tmp_path, model="vit_ti", family="vit"))
    bases = (0.5, 0.6, 0.4)
    tables = [write_table(tmp_path, d, 0.7, base) for d, base in zip(run_dirs, bases)]
    run_dirs.append(write_fake_run(tmp_path, model="vit_ti", family="vit", seed=1, diverge_at=1))
    tables.append(None)
    png, pdf, csv_path = figure_paths(tmp_path, "corruptions_heatmap")
    corruptions_heatmap.make(run_dirs, tables, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    assert len(rows) == 3 * 76 + 1
    for run_dir, base in zip(run_dirs, bases):
        run_rows = [r for r in rows if r["run_id"] == run_id_of(run_dir)]
        assert (run_rows[0]["corruption"], run_rows[0]["severity"], run_rows[0]["acc"]) == ("clean", "0", "0.7")
        assert [r["corruption"] for r in run_rows[1::5]] == list(CORRUPTIONS)
        for row in run_rows[1:]:
            expected = set_accuracy(row["corruption"], int(row["severity"]), base)
            assert as_float(row["acc"]) == pytest.approx(expected)
            assert as_float(row["acc_pct"]) == pytest.approx(100 * expected)
    diverged = [r for r in rows if r["status"] == "diverged"]
    assert len(diverged) == 1 and diverged[0]["corruption"] == "" and diverged[0]["acc"] == ""
    # The ResNet panel averages its two seeds per cell; its title carries clean accuracy and robustness.
    table_rows = corruptions_heatmap.table(corruption_tables.load_selection(run_dirs, tables))
    resnet_rows = [r for r in table_rows if r["model"] == "resnet50"]
    grid = corruptions_heatmap.set_grid(resnet_rows, list(CORRUPTIONS), list(SEVERITIES))
    assert grid["acc"].shape == (15, 5)
    assert grid["acc"][CORRUPTIONS.index("contrast"), 3] == pytest.approx(100 * (0.55 - 4 * SEVERITY_STEP))
    assert grid["acc"][CORRUPTIONS.index("gaussian_noise"), 0] == pytest.approx(100 * NOISE_ACC)
    assert grid["robustness"] == pytest.approx(50 * (expected_robustness(0.5) + expected_robustness(0.6)))
    assert grid["clean"] == pytest.approx(70.0) and grid["n_finished"] == 2


def test_buildup_counts_msa_blocks(tmp_path):
    run_dirs = [write_fake_run(tmp_path, model="resnet50", family="resnet")]
    layouts = ([0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1], [0, 1, 1, 2])
    for count, layout in enumerate(layouts, start=1):
        run_dir = write_fake_run(tmp_path, model=f"alternet_msa{count}", family="alternet")
        run_dirs.append(set_model(run_dir, "vitwork_alternet", {"msa_per_stage": layout}))
    tables = [write_table(tmp_path, d, 0.80 + 0.01 * i, 0.60 + 0.01 * i) for i, d in enumerate(run_dirs)]
    png, pdf, csv_path = figure_paths(tmp_path, "corruptions_buildup")
    corruptions_buildup.make(run_dirs, tables, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    got = by_run(read_csv(csv_path))
    for i, run_dir in enumerate(run_dirs):
        row = got[run_id_of(run_dir)]
        assert int(row["num_msa"]) == i
        assert as_float(row["clean_acc_pct"]) == pytest.approx(80.0 + i)
        assert as_float(row["robustness_pct"]) == pytest.approx(100 * expected_robustness(0.60 + 0.01 * i))
    table_rows = corruptions_buildup.table(corruption_tables.load_selection(run_dirs, tables))
    assert [p["num_msa"] for p in corruptions_buildup.series(table_rows)] == [0, 1, 2, 3, 4]
    # A preset AlterNet without an msa_per_stage kwarg counts the architecture's own layout.
    preset = load_run(set_model(write_fake_run(tmp_path, model="alternet50", family="alternet"),
                                "vitwork_alternet50", {}))
    assert corruptions_buildup.num_msa(preset.spec) == sum(ALTERNET50["msa_per_stage"]) == 4
    with pytest.raises(ValueError, match="ResNet and AlterNet runs only"):
        corruptions_buildup.num_msa(load_run(write_fake_run(tmp_path, model="vit_ti", family="vit")).spec)


def test_small_data_has_every_model_and_fraction(tmp_path):
    fractions = (0.06, 0.25, 1.0)
    models = (("alternet50", "alternet", 0.05), ("resnet50", "resnet", 0.0), ("vit_ti", "vit", -0.2))
    run_dirs, tables = [], []
    for model, family, offset in models:
        for fraction in fractions:
            run_dir = write_fake_run(tmp_path, model=model, family=family, fraction=fraction)
            run_dirs.append(run_dir)
            tables.append(write_table(tmp_path, run_dir, 0.5 + offset + fraction / 4, 0.4 + offset + fraction / 4))
    png, pdf, csv_path = figure_paths(tmp_path, "corruptions_small_data")
    corruptions_small_data.make(run_dirs, tables, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    assert [r["model"] for r in rows] == ["resnet50"] * 3 + ["alternet50"] * 3 + ["vit_ti"] * 3
    offsets = {model: offset for model, _, offset in models}
    for row in rows:
        base = 0.4 + offsets[row["model"]] + float(row["fraction"]) / 4
        assert as_float(row["clean_acc_pct"]) == pytest.approx(100 * (base + 0.1))
        assert as_float(row["robustness_pct"]) == pytest.approx(100 * expected_robustness(base))
    table_rows = corruptions_small_data.table(corruption_tables.load_selection(run_dirs, tables))
    x, mean, _ = data_size.model_curve([r for r in table_rows if r["model"] == "vit_ti"], "robustness_pct")
    assert x == [6.0, 25.0, 100.0]
    assert mean == pytest.approx([100 * expected_robustness(0.2 + f / 4) for f in fractions])


def test_small_data_rejects_two_settings_of_one_model_and_fraction(tmp_path):
    run_dirs = [write_fake_run(tmp_path, lr=1e-3), write_fake_run(tmp_path, lr=1e-4)]
    tables = [write_table(tmp_path, d, 0.6, 0.5) for d in run_dirs]
    with pytest.raises(ValueError, match="model, fraction"):
        corruptions_small_data.table(corruption_tables.load_selection(run_dirs, tables))


def test_grid_marks_diverged_cells(tmp_path):
    run_dirs, tables, expected = [], [], {}
    for lr in (1e-4, 1e-3):
        for wd in (0.05, 0.5):
            diverged = lr == 1e-3 and wd == 0.5
            run_dir = write_fake_run(tmp_path, lr=lr, weight_decay=wd, diverge_at=2 if diverged else None)
            run_dirs.append(run_dir)
            base = 0.3 + lr * 100 + wd
            tables.append(None if diverged else write_table(tmp_path, run_dir, base + 0.1, base))
            expected[(lr, wd)] = None if diverged else 100 * expected_robustness(base)
    resnet = write_fake_run(tmp_path, model="resnet50", family="resnet", optimizer="sgd", lr=0.1, weight_decay=5e-4)
    run_dirs.append(resnet)
    tables.append(write_table(tmp_path, resnet, 0.8, 0.6))
    png, pdf, csv_path = figure_paths(tmp_path, "corruptions_grid")
    corruptions_grid.make(run_dirs, tables, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    cells = {(r["model"], r["optimizer"], float(r["lr"]), float(r["weight_decay"])): r for r in rows}
    assert len(cells) == 5
    for (lr, wd), robust in expected.items():
        row = cells[("vit_ti", "adamw", lr, wd)]
        assert row["status"] == ("diverged" if robust is None else "finished")
        assert as_float(row["robustness_pct"]) == (None if robust is None else pytest.approx(robust))
    assert as_float(cells[("resnet50", "sgd", 0.1, 5e-4)]["robustness_pct"]) == pytest.approx(
        100 * expected_robustness(0.6))
    assert as_float(cells[("resnet50", "sgd", 0.1, 5e-4)]["clean_acc_pct"]) == pytest.approx(80.0)
    table_rows = corruptions_grid.table(corruption_tables.load_selection(run_dirs[:4], tables[:4]))
    grid = optimizer_grid.cell_grid(table_rows, metric="robustness_pct")
    assert grid["lrs"] == [1e-4, 1e-3] and grid["wds"] == [0.05, 0.5]
    assert math.isnan(grid["value"][1, 1]) and grid["diverged"][1, 1] == 1  # wd 0.5 row, lr 1e-3 column
    assert grid["value"][0, 0] == pytest.approx(expected[(1e-4, 0.05)])
