"""Figures of the training half: run loading, style, and each figure's table, plot and files, on fake runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

from vitwork.figures import data_size, inductive_bias, learning_curves, optimizer_grid, style, time_to_accuracy
from vitwork.results import RunLoadError, load_run, load_runs, read_csv

EPOCH_TIME_S = 2.0


def write_fake_run(results: Path, model: str = "vit_ti", family: str = "vit", optimizer: str = "adamw",
                   lr: float = 1e-3, weight_decay: float = 0.05, fraction: float = 1.0, seed: int = 0,
                   label: str | None = None,
                   test_acc: tuple = (0.2, 0.4, 0.5), train_nll: tuple | None = None,
                   diverge_at: int | None = None) -> Path:
    """Write `run.json` + `metrics.jsonl` as training does (docs/architecture.md, "Run outputs"); returns the dir.

    As `vitwork.train` writes them: accuracies as fractions, `test_err` in percent, the spec's optimizer with the
    recipe key and its algorithm (recipe `sgd` runs `momentum`), the model's label defaulting to its name.
    `diverge_at` (1-based epoch) makes that epoch non-finite (nulls, `"diverged": true`) and stops the run there.
    """
    run_id = f"{model}/{optimizer}-lr{lr:g}-wd{weight_decay:g}/f{float(fraction)}/s{seed}"
    run_dir = results / "runs" / run_id
    run_dir.mkdir(parents=True)
    train_nll = train_nll or tuple(4.0 - 2.0 * acc for acc in test_acc)
    epochs = []
    for index, (acc, nll) in enumerate(zip(test_acc, train_nll), start=1):
        record = {"epoch": index, "step": 10 * index, "lr": lr, "train_nll": nll, "train_acc": acc * 0.9,
                  "test_nll": 3.0 - acc, "test_acc": acc, "test_err": 100.0 * (1.0 - acc),
                  "epoch_time_s": EPOCH_TIME_S, "wall_time_s": EPOCH_TIME_S * index, "images_per_s": 500.0}
        if diverge_at == index:
            record.update({key: None for key in ("train_nll", "train_acc", "test_nll", "test_acc", "test_err")})
            record["diverged"] = True
        epochs.append(record)
        if diverge_at == index:
            break
    finite = [e for e in epochs if not e.get("diverged")]
    final = ({key: finite[-1][key] for key in ("test_acc", "test_nll", "test_err", "train_nll", "train_acc")}
             if finite else None)
    spec = {"run_id": run_id,
            "model": {"name": model, "arch": f"vitwork_{model}", "family": family, "label": label or model,
                      "kwargs": {}},
            "optimizer": {"recipe": optimizer, "name": {"sgd": "momentum"}.get(optimizer, optimizer), "hparams": {"lr": lr, "weight_decay": weight_decay}, "batch_size": 96,
                          "epochs": len(test_acc), "warmup_epochs": 1, "schedule": "cosine"},
            "fraction": fraction, "seed": seed, "training": {}}
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    info = {"run_id": run_id, "spec": spec, "status": "diverged" if diverge_at else "finished",
            "epochs_completed": len(epochs), "final": final, "wall_time_s": EPOCH_TIME_S * len(epochs),
            "images_per_s": 500.0, "code_version": "test", "seed": seed}
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


def figure_paths(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """PNG, PDF and CSV output paths of one figure under tmp_path/figures."""
    folder = tmp_path / "figures"
    return folder / f"{name}.png", folder / f"{name}.pdf", folder / f"{name}.csv"


def assert_outputs_complete(*paths: Path) -> None:
    """Every output exists and is non-empty, and no temporary file is left beside them."""
    for path in paths:
        assert path.is_file() and path.stat().st_size > 0, path
    folder = paths[0].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)


def as_float(cell: str) -> float | None:
    """A CSV cell as float; empty is None."""
    return None if cell == "" else float(cell)


# --- vitwork.results ---------------------------------------------------------------------------------------


def test_load_run_reads_spec_status_final_and_epochs(tmp_path):
    run_dir = write_fake_run(tmp_path, test_acc=(0.3, 0.6), diverge_at=None)
    diverged_dir = write_fake_run(tmp_path, seed=1, test_acc=(0.3, 0.6, 0.7), diverge_at=2)
    run, diverged = load_runs([run_dir, diverged_dir / "run.json"])
    assert (run.model_name, run.family, run.optimizer_name, run.lr, run.weight_decay) == (
        "vit_ti", "vit", "adamw", 1e-3, 0.05)
    assert run.optimizer_recipe == "adamw" and run.test_err_pct() == pytest.approx(40.0)
    assert run.status == "finished" and run.final["test_acc"] == 0.6 and [e["epoch"] for e in run.epochs] == [1, 2]
    assert diverged.diverged and diverged.final["test_acc"] == 0.3
    assert diverged.epochs[-1]["diverged"] is True and diverged.epochs[-1]["test_acc"] is None


def test_load_run_errors_name_the_broken_file(tmp_path):
    with pytest.raises(RunLoadError, match=r"nowhere/run\.json: missing"):
        load_run(tmp_path / "nowhere")
    run_dir = write_fake_run(tmp_path)
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write("{not json\n")
    with pytest.raises(RunLoadError, match=r"metrics\.jsonl:4: malformed JSON"):
        load_run(run_dir)
    percent_dir = write_fake_run(tmp_path, seed=1)
    info = json.loads((percent_dir / "run.json").read_text())
    info["final"]["test_acc"] = 55.0  # percent instead of a fraction: a unit mismatch must not pass silently
    (percent_dir / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunLoadError, match=r"run\.json \(final\): test_acc=55\.0 is not a fraction"):
        load_run(percent_dir)
    del info["spec"]["model"]["family"]
    info["final"]["test_acc"] = 0.5
    (percent_dir / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunLoadError, match=r"spec\.model has no 'family'"):
        load_run(percent_dir)


# --- vitwork.figures.style ---------------------------------------------------------------------------------


def test_labels_numbers_and_family_colours():
    assert style.format_number(1e-3) == "1e-3"
    assert style.format_number(0.05) == "0.05"
    assert style.format_number(1.25e-4) == "1.25e-4"
    assert style.format_number(100.0) == "100"
    assert style.model_label("vit_ti") == "ViT-Ti"
    assert style.model_label("alter_resnet50") == "Alter-ResNet-50"
    spec = {"model": {"name": "vit_ti", "label": "vit_ti"},
            "optimizer": {"recipe": "adamw", "name": "adamw", "hparams": {"lr": 1e-3, "weight_decay": 0.05}}}
    assert style.run_label(spec) == "ViT-Ti · AdamW lr 1e-3 wd 0.05"
    spec = {"model": {"name": "resnet", "label": "ResNet (micro)"},
            "optimizer": {"recipe": "adamw_grid", "name": "adamw", "hparams": {"lr": 3e-3, "weight_decay": 0.0}}}
    assert style.run_label(spec) == "ResNet (micro) · AdamW (adamw_grid) lr 3e-3 wd 0"
    assert len(set(style.FAMILY_COLORS.values())) == len(style.FAMILY_ORDER)
    with pytest.raises(ValueError, match="unknown model family 'mlp'"):
        style.family_color("mlp")
    styles = style.model_styles([("vit_ti", "vit"), ("vit_ti_gap", "vit"), ("resnet50", "resnet")])
    assert styles["resnet50"]["color"] == matplotlib.colors.to_rgb(style.FAMILY_COLORS["resnet"])
    assert styles["vit_ti"]["color"] == matplotlib.colors.to_rgb(style.FAMILY_COLORS["vit"])
    assert styles["vit_ti_gap"]["color"] != styles["vit_ti"]["color"]
    assert styles["vit_ti_gap"]["marker"] != styles["vit_ti"]["marker"]


def test_save_figure_failure_keeps_previous_files_and_leaves_no_temp(tmp_path):
    png, pdf, csv_path = figure_paths(tmp_path, "broken")
    csv_path.parent.mkdir()
    csv_path.write_text("old\n")
    fig = style.empty_figure("nothing")
    with pytest.raises(ValueError):
        style.save_figure(fig, [{"a": 1, "unexpected": 2}], png, pdf, csv_path, columns=["a"])
    assert csv_path.read_text() == "old\n"
    # The table is written first, so no image is left without its data and no temp file remains.
    assert sorted(p.name for p in csv_path.parent.iterdir()) == ["broken.csv"]


# --- figures ----------------------------------------------------------------------------------------------


def test_inductive_bias_has_every_model_and_seed_with_final_metrics(tmp_path):
    models = [("vit_ti", "vit", 0.5), ("resnet50", "resnet", 0.8), ("vit_local5", "vit_local", 0.7)]
    run_dirs = [write_fake_run(tmp_path, model=m, family=f, seed=s, test_acc=(0.1, peak - 0.02 * s))
                for m, f, peak in models for s in (0, 1)]
    run_dirs.append(write_fake_run(tmp_path, model="vit_ti", family="vit", seed=2, test_acc=(0.1, 0.2, 0.3),
                                   diverge_at=3))
    png, pdf, csv_path = figure_paths(tmp_path, "inductive_bias")
    inductive_bias.make(run_dirs, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    run_rows = [r for r in rows if r["kind"] == "run"]
    runs = {(run.model_name, run.seed): run for run in load_runs(run_dirs)}
    assert {(r["model"], int(r["seed"])) for r in run_rows} == set(runs)
    for row in run_rows:
        run = runs[(row["model"], int(row["seed"]))]
        assert as_float(row["test_err_pct"]) == pytest.approx(100 * (1 - run.final["test_acc"]))
        assert as_float(row["test_err_pct"]) == pytest.approx(run.final["test_err"])  # training writes it in %
        assert as_float(row["train_nll"]) == pytest.approx(run.final["train_nll"])
        assert row["status"] == run.status
    means = {r["model"]: r for r in rows if r["kind"] == "mean"}
    assert list(means) == ["resnet50", "vit_local5", "vit_ti"]  # strong → weak inductive bias
    # The diverged third seed of vit_ti is not averaged in.
    assert int(means["vit_ti"]["n_seeds"]) == 2
    assert as_float(means["vit_ti"]["test_err_pct"]) == pytest.approx((50.0 + 52.0) / 2)
    stds = {r["model"]: r for r in rows if r["kind"] == "std"}
    assert as_float(stds["resnet50"]["test_err_pct"]) == pytest.approx(math.sqrt(2) * 1.0)


def test_inductive_bias_rejects_two_settings_of_one_model(tmp_path):
    run_dirs = [write_fake_run(tmp_path, lr=1e-3), write_fake_run(tmp_path, lr=1e-4)]
    with pytest.raises(ValueError, match="model vit_ti"):
        inductive_bias.table(load_runs(run_dirs))


def test_data_size_has_every_fraction_and_model(tmp_path):
    fractions = (0.06, 0.25, 1.0)
    run_dirs = [write_fake_run(tmp_path, model=m, family=f, label=label, fraction=fr, test_acc=(0.1, 0.3 + fr / 2),
                               train_nll=(4.0, 3.0 - fr))
                for m, f, label in (("vit_ti", "vit", None), ("resnet50", "resnet", "ResNet (micro)"))
                for fr in fractions]
    png, pdf, csv_path = figure_paths(tmp_path, "data_size")
    data_size.make(run_dirs, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    got = {(r["model"], float(r["fraction"])): r for r in rows}
    assert set(got) == {(m, fr) for m in ("vit_ti", "resnet50") for fr in fractions}
    for (model, fraction), row in got.items():
        assert as_float(row["test_err_pct"]) == pytest.approx(100 * (1 - (0.3 + fraction / 2)))
        assert as_float(row["train_nll"]) == pytest.approx(3.0 - fraction)
    assert [r["model"] for r in rows][:3] == ["resnet50"] * 3
    assert {r["model"]: r["model_label"] for r in rows} == {"resnet50": "ResNet (micro)", "vit_ti": "ViT-Ti"}


def test_optimizer_grid_marks_diverged_cells(tmp_path):
    run_dirs = []
    for lr in (1e-4, 1e-3):
        for wd in (0.05, 0.5):
            diverged = lr == 1e-3 and wd == 0.5
            run_dirs.append(write_fake_run(tmp_path, lr=lr, weight_decay=wd, test_acc=(0.1, 0.3 + lr * 100 + wd),
                                           diverge_at=2 if diverged else None))
    run_dirs.append(write_fake_run(tmp_path, model="resnet50", family="resnet", optimizer="sgd", lr=0.1,
                                   weight_decay=5e-4, test_acc=(0.3, 0.8)))
    png, pdf, csv_path = figure_paths(tmp_path, "optimizer_grid")
    optimizer_grid.make(run_dirs, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    cells = {(r["model"], r["optimizer"], float(r["lr"]), float(r["weight_decay"])): r for r in rows}
    assert len(cells) == 5
    assert cells[("vit_ti", "adamw", 1e-3, 0.5)]["status"] == "diverged"
    assert cells[("vit_ti", "adamw", 1e-4, 0.05)]["status"] == "finished"
    assert as_float(cells[("vit_ti", "adamw", 1e-4, 0.05)]["test_acc_pct"]) == pytest.approx(100 * 0.36)
    assert as_float(cells[("resnet50", "sgd", 0.1, 5e-4)]["test_acc_pct"]) == pytest.approx(80.0)
    grid = optimizer_grid.cell_grid(optimizer_grid.table(load_runs(run_dirs[:4])))
    assert grid["lrs"] == [1e-4, 1e-3] and grid["wds"] == [0.05, 0.5]
    assert math.isnan(grid["value"][1, 1]) and grid["diverged"][1, 1] == 1  # wd 0.5 row, lr 1e-3 column
    assert grid["value"][0, 0] == pytest.approx(36.0)


def test_learning_curves_pick_the_best_finished_run(tmp_path):
    worse = write_fake_run(tmp_path, lr=1e-4, test_acc=(0.2, 0.5))
    best = write_fake_run(tmp_path, lr=1e-3, test_acc=(0.3, 0.6, 0.7))
    # Diverged after a high accuracy: must not count as the best setting.
    write_fake_run(tmp_path, lr=1e-2, test_acc=(0.9, 0.95), diverge_at=2)
    sgd_best = write_fake_run(tmp_path, optimizer="sgd", lr=0.1, weight_decay=5e-4, test_acc=(0.4, 0.55))
    write_fake_run(tmp_path, model="resnet50", family="resnet", optimizer="sgd", lr=0.1, test_acc=(0.5,),
                   diverge_at=1)
    run_dirs = sorted((tmp_path / "runs").glob("*/*/*/*"))
    png, pdf, csv_path = figure_paths(tmp_path, "learning_curves")
    learning_curves.make(run_dirs, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    chosen = {(r["model"], r["optimizer"]): r["run_id"] for r in rows}
    assert chosen == {("vit_ti", "adamw"): load_run(best).run_id, ("vit_ti", "sgd"): load_run(sgd_best).run_id}
    best_rows = [r for r in rows if r["run_id"] == load_run(best).run_id]
    assert [int(r["epoch"]) for r in best_rows] == [1, 2, 3]
    assert [float(r["wall_time_s"]) for r in best_rows] == [2.0, 4.0, 6.0]
    assert [float(r["test_acc_pct"]) for r in best_rows] == pytest.approx([30.0, 60.0, 70.0])
    assert load_run(worse).run_id not in {r["run_id"] for r in rows}
    assert learning_curves.best_runs(load_runs(run_dirs))[("resnet50", "sgd")] is None


def test_epochs_to_reach_on_a_hand_made_curve():
    curve = [{"epoch": 1, "test_acc": 0.2, "wall_time_s": 5.0}, {"epoch": 2, "test_acc": None, "wall_time_s": 9.0},
             {"epoch": 3, "test_acc": 0.74, "wall_time_s": 14.0}, {"epoch": 4, "test_acc": 0.78, "wall_time_s": 20.0}]
    assert time_to_accuracy.epochs_to_reach(curve, 0.75) == (4, 20.0)
    assert time_to_accuracy.epochs_to_reach(curve, 0.74) == (3, 14.0)
    assert time_to_accuracy.epochs_to_reach(curve, 0.8) == (None, None)


def test_time_to_accuracy_table_statuses_and_files(tmp_path):
    write_fake_run(tmp_path, optimizer="adamw", test_acc=(0.4, 0.7, 0.8))  # the model's best: 0.8 → target 0.72
    write_fake_run(tmp_path, optimizer="sgd", lr=0.1, test_acc=(0.3, 0.6, 0.75, 0.78))
    write_fake_run(tmp_path, optimizer="adam", test_acc=(0.1, 0.2, 0.3))
    write_fake_run(tmp_path, optimizer="rmsprop", test_acc=(0.1, 0.2), diverge_at=2)
    run_dirs = sorted((tmp_path / "runs").glob("*/*/*/*"))
    png, pdf, csv_path = figure_paths(tmp_path, "time_to_accuracy")
    md_path = csv_path.with_suffix(".md")
    time_to_accuracy.make(run_dirs, png, pdf, csv_path, md_path, fraction=0.9)
    assert_outputs_complete(png, pdf, csv_path, md_path)
    rows = {r["optimizer"]: r for r in read_csv(csv_path)}
    assert as_float(rows["sgd"]["target_acc_pct"]) == pytest.approx(72.0)
    assert (rows["sgd"]["status"], rows["sgd"]["epochs"], float(rows["sgd"]["seconds"])) == ("reached", "3", 6.0)
    assert (rows["adamw"]["status"], rows["adamw"]["epochs"]) == ("reached", "3")
    assert (rows["adam"]["status"], rows["adam"]["epochs"], rows["adam"]["seconds"]) == ("not reached", "", "")
    assert (rows["rmsprop"]["status"], rows["rmsprop"]["epochs"]) == ("diverged", "")
    markdown = md_path.read_text()
    assert "not reached" in markdown and "diverged" in markdown and markdown.startswith("| model |")
