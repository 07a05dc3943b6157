"""The benchmark scripts keep running: gpu_check.py --smoke end to end, study_cost.py on config.yaml (no timings asserted)."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vitwork.config import all_run_specs, analysis_figure_run_specs, load_config_file, validate_config

REPO = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(REPO / "bench"))

import study_cost  # noqa: E402

SMOKE_TIMEOUT_S = 300


def numbers(obj, path=""):
    """(path, value) of every number in a JSON document."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield path, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from numbers(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from numbers(value, f"{path}[{index}]")


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--smoke", "--device", "cpu", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def test_gpu_check_smoke_reports_every_figure_of_every_paper_model(smoke_report):
    import gpu_check

    _, report, text = smoke_report
    assert report["smoke"] is True and report["device"] == "cpu"
    assert list(report["models"]) == list(gpu_check.PAPER_MODELS)
    for name, entry in report["models"].items():
        for precision in ("fp32", "bf16_channels_last"):
            assert entry[precision]["images_per_s"] > 0
            assert entry[precision]["peak_memory_mib"] is None  # no allocator statistics on CPU
        bf16 = entry["bf16_channels_last"]
        assert bf16["plain_images_per_s"] > 0 and bf16["ratio"] > 0
        assert 0 < bf16["augmentation_share"]
        assert entry["eval_images_per_s"] > 0 and entry["forward_fp32_images_per_s"] > 0
        assert entry["fourier"]["seconds"] > 0 and entry["fourier"]["rows"] > 0
        assert entry["compile"] is None  # never compiled in a smoke run
        assert f"| {entry['label']} |" in text
    hessian = report["hessian"]
    assert hessian["arch"] == "vitwork_vit_ti"
    assert len(hessian["top5_eigenvalues"]) == 5
    assert 0 < hessian["top5_hvps"] <= hessian["batch_hvps"]
    assert 0 < hessian["top5_seconds"] <= hessian["batch_seconds"]
    for path, value in numbers(report):
        assert math.isfinite(value), path
    assert "Smoke run" in text and "torch.compile of vit_ti (--smoke)" in text


def test_study_cost_refuses_a_smoke_report(smoke_report):
    out, _, _ = smoke_report
    with pytest.raises(study_cost.CostError, match="--smoke report"):
        study_cost.main([str(REPO / "config.yaml"), "--images-per-second", str(out / "gpu_check.json")])


def test_study_cost_from_measured_images_per_second(smoke_report, tmp_path):
    """The measured path: the smoke run's micro models stand in for measurements; config.yaml's models, none of
    them measured at their own size, take the FLOP rate of their family's micro model."""
    _, report, _ = smoke_report
    measured = dict(report, smoke=False)
    (tmp_path / "gpu.json").write_text(json.dumps(measured))
    cost = study_cost.main([str(REPO / "config.yaml"), "--images-per-second", str(tmp_path / "gpu.json")])
    assert cost["gpu"].startswith("measured")
    assert cost["training_runs"] == len(all_run_specs(load_config_file(REPO / "config.yaml")))
    for row in cost["rows"]:
        assert row["gpu_hours"] > 0 and math.isfinite(row["gpu_hours"]), row
        assert row["basis"] != "assumed"
    alternet_train = next(r for r in cost["rows"] if r["kind"] == "train" and r["model"] == "alternet50_msa0")
    assert alternet_train["basis"] == "FLOP rate of alternet50"


@pytest.fixture(scope="module")
def paper_cost():
    return study_cost.main([str(REPO / "config.yaml")])


def test_study_cost_counts_every_job_of_config_yaml(paper_cost):
    config = load_config_file(REPO / "config.yaml")
    assert paper_cost["training_runs"] == len(all_run_specs(config)) == 62
    for analysis, settings in config["analyses"].items():
        runs = {spec["run_id"] for figure in settings["figures"] for spec in analysis_figure_run_specs(config, analysis, figure)}
        assert paper_cost["kinds"][analysis]["jobs"] == len(runs), analysis
    for key in ("jobs", "pflops", "gpu_hours"):
        assert paper_cost["total"][key] == pytest.approx(sum(kind[key] for kind in paper_cost["kinds"].values()))
        by_rows = sum(row["runs" if key == "jobs" else key] for row in paper_cost["rows"])
        assert paper_cost["total"][key] == pytest.approx(by_rows)
    for path, value in numbers(paper_cost):
        assert math.isfinite(value), path
    assert "35% of an H100 SXM" in paper_cost["gpu"]


def test_study_cost_training_images_follow_the_recipe(paper_cost):
    config = load_config_file(REPO / "config.yaml")
    adamw = config["optimizers"]["adamw"]
    epochs = adamw["warmup_epochs"] + adamw["epochs"]
    pit = next(row for row in paper_cost["rows"] if row["kind"] == "train" and row["model"] == "pit_ti")
    assert pit["runs"] == 1 and pit["epochs"] == str(epochs)
    assert pit["train_images"] == epochs * (50_000 // adamw["batch_size"]) * adamw["batch_size"]
    assert pit["forward_images"] == epochs * 10_000  # evaluated on the whole test split every epoch
    corruptions = next(row for row in paper_cost["rows"] if row["kind"] == "corruptions" and row["model"] == "pit_ti")
    assert corruptions["forward_images"] == 76 * 10_000
    # the two paper models' forward + backward FLOPs per image at 32x32 (FlopCounterMode; about 3x the forward)
    vit = next(row for row in paper_cost["rows"] if row["kind"] == "train" and row["model"] == "vit_ti")
    assert 2.5 < vit["gflops_forward_backward"] / vit["gflops_forward"] < 3.5


def test_study_cost_evaluations_follow_eval_every_and_eval_images():
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["training"].update(eval_every=10, eval_images=1000)
    raw["studies"] = {"inductive_bias": dict(raw["studies"]["inductive_bias"], models=["pit_ti"])}
    raw["analyses"] = {}
    config = validate_config(copy.deepcopy(raw), "test")
    cost = study_cost.study_cost(config, study_cost.AssumedGPU(study_cost.DEFAULT_GPU))
    (row,) = cost["rows"]
    # epochs 10, 20, ..., 300 on the 1,000-image sample, then the last (305) on the whole test split
    assert row["forward_images"] == 30 * 1000 + 10_000
