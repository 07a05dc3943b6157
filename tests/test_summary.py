"""The run summary table: one row per run, finished and diverged, as CSV and markdown."""

from __future__ import annotations

import pytest

from test_figures import EPOCH_TIME_S, write_fake_run
from vitwork import summary
from vitwork.results import load_runs, read_csv


def test_summary_rows_cover_finished_and_diverged_runs(tmp_path):
    run_dirs = [
        write_fake_run(tmp_path, model="vit_ti", family="vit", lr=1e-3, test_acc=(0.2, 0.4, 0.55)),
        write_fake_run(tmp_path, model="vit_ti", family="vit", lr=1e-2, test_acc=(0.2, 0.3, 0.5), diverge_at=2),
        write_fake_run(tmp_path, model="resnet50", family="resnet", optimizer="sgd", lr=0.1, weight_decay=5e-4,
                       fraction=0.25, seed=3, test_acc=(0.5, 0.7)),
    ]
    rows = summary.summary_rows(load_runs(run_dirs))
    assert [row["model"] for row in rows] == ["resnet50", "vit_ti", "vit_ti"]  # strong → weak inductive bias
    by_lr = {row["lr"]: row for row in rows}
    resnet = by_lr[0.1]
    assert (resnet["optimizer"], resnet["algorithm"], resnet["weight_decay"], resnet["fraction"], resnet["seed"]) == (
        "sgd", "momentum", 5e-4, 0.25, 3)
    assert resnet["status"] == "finished" and resnet["test_acc_pct"] == pytest.approx(70.0)
    assert resnet["epochs"] == 2 and resnet["wall_time_s"] == 2 * EPOCH_TIME_S and resnet["images_per_s"] == 500.0
    diverged = by_lr[1e-2]
    assert diverged["status"] == "diverged" and diverged["epochs"] == 2
    assert diverged["test_acc_pct"] == pytest.approx(20.0)  # the last finite epoch, as run.json's final says
    assert by_lr[1e-3]["train_nll"] == pytest.approx(4.0 - 2.0 * 0.55)


def test_write_summary_csv_and_markdown(tmp_path):
    run_dirs = [write_fake_run(tmp_path, test_acc=(0.2, 0.4)), write_fake_run(tmp_path, seed=1, diverge_at=1)]
    csv_path, md_path = tmp_path / "out" / "summary.csv", tmp_path / "out" / "summary.md"
    rows = summary.make(run_dirs, csv_path, md_path)
    back = read_csv(csv_path)
    assert [row["run_id"] for row in back] == [row["run_id"] for row in rows]
    assert [row["status"] for row in back] == ["finished", "diverged"]
    assert back[1]["test_acc_pct"] == "" and back[1]["train_nll"] == ""  # diverged in its first epoch: no final
    assert float(back[0]["test_acc_pct"]) == pytest.approx(40.0)
    lines = md_path.read_text().splitlines()
    assert lines[0].startswith("| run_id | model | family | optimizer |") and len(lines) == 2 + len(rows)
    assert "| diverged |" in lines[3] and "—" in lines[3]
    assert sorted(p.name for p in csv_path.parent.iterdir()) == ["summary.csv", "summary.md"]
