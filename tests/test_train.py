"""Training: schedules, resume equality, pre-emption, divergence, checkpoints."""

import math
import signal
import subprocess
import sys
import time

import pytest
import torch

from vitwork.config import study_run_specs, validate_config
from vitwork.data import prepare_dataset, write_subset
from vitwork.io import read_json, read_jsonl
from vitwork.optim import build_optimizer, lr_factor
from vitwork.train import PREEMPTED_EXIT_CODE, Preempted, load_checkpoint_model, train_run


def test_warmup_then_cosine():
    factors = [lr_factor(u, 4, warmup_epochs=2, epochs=3, schedule={"name": "cosine"}) for u in range(20)]
    assert factors[:8] == pytest.approx([(u + 1) / 8 for u in range(8)])  # linear, per iteration
    assert factors[8] == pytest.approx(1.0)
    assert factors[8 + 6] == pytest.approx(0.5)  # half-way through the 12 cosine updates
    assert factors[19] == pytest.approx(0.5 * (1 + math.cos(math.pi * 11 / 12)))


def test_step_schedule_decays_at_epoch_boundaries():
    schedule = {"name": "step", "milestones": [2, 3], "gamma": 0.2}
    factors = [lr_factor(u, 5, warmup_epochs=0, epochs=4, schedule=schedule) for u in range(20)]
    assert factors[:10] == [1.0] * 10 and factors[10:15] == pytest.approx([0.2] * 5) and factors[15:] == pytest.approx([0.04] * 5)


def test_weight_decay_set_is_the_recipes_choice():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    for name in ("adamw", "Adagrad"):  # timm's factory and a plain torch.optim class
        # the authors' default: every parameter decays
        optimizer = build_optimizer(model, name, {"lr": 0.1, "weight_decay": 0.3})
        decayed = [p for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]]
        assert len(decayed) == 4
        # `matrices`: biases and norms are skipped, as timm does
        optimizer = build_optimizer(model, name, {"lr": 0.1, "weight_decay": 0.3}, decay="matrices")
        decayed = [p for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]]
        assert len(decayed) == 1 and decayed[0] is model[0].weight


def tiny_spec(tmp_path, **optimizer):
    config = {
        "dataset": {"source": "synthetic", "synthetic": {"num_classes": 4, "train_per_class": 24, "test_per_class": 6}},
        "models": {"vit": {"arch": "vitwork_vit", "kwargs": {"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_ratio": 2}}},
        "training": {"randaugment": {"num_ops": 1, "magnitude": 5}, "drop_path_rate": 0.1, "checkpoint_epochs": [2]},
        "optimizers": {"opt": {"name": "adamw", "hparams": {"lr": 1e-3, "weight_decay": 0.05}, "batch_size": 16, "epochs": 2, "warmup_epochs": 1} | optimizer},
        "studies": {"inductive_bias": {"models": ["vit"], "optimizers": ["opt"]}},
    }
    config = validate_config(config, "test")
    data = tmp_path / "data"
    prepare_dataset(config["dataset"], data / "train.npz", data / "test.npz", data / "meta.json")
    write_subset(data / "train.npz", 1.0, 0, data / "subset.npy")
    paths = [data / "train.npz", data / "test.npz", data / "meta.json", data / "subset.npy"]
    return study_run_specs(config, "inductive_bias")[0], paths


def final_weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["model"]


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    spec, paths = tiny_spec(tmp_path)
    whole = train_run(spec, *paths, tmp_path / "whole", device="cpu", progress=False)
    with pytest.raises(Preempted):  # stop mid-epoch (6 updates per epoch)
        train_run(spec, *paths, tmp_path / "split", device="cpu", progress=False, stop_after_updates=8)
    assert (tmp_path / "split" / "work" / "resume.pt").exists() and not (tmp_path / "split" / "run.json").exists()
    resumed = train_run(spec, *paths, tmp_path / "split", device="cpu", progress=False)
    assert resumed["status"] == whole["status"] == "finished"
    assert resumed["final"] == whole["final"]
    a, b = final_weights(tmp_path / "whole"), final_weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    keys = ("epoch", "train_nll", "train_acc", "test_nll", "test_acc", "lr")
    assert [{k: m[k] for k in keys} for m in read_jsonl(tmp_path / "whole" / "metrics.jsonl")] == [
        {k: m[k] for k in keys} for m in read_jsonl(tmp_path / "split" / "metrics.jsonl")
    ]
    assert not (tmp_path / "split" / "work").exists()


def test_run_outputs_and_checkpoints(tmp_path):
    spec, paths = tiny_spec(tmp_path)
    summary = train_run(spec, *paths, tmp_path / "run", device="cpu", progress=False)
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert set(metrics[0]) >= {"train_nll", "train_acc", "test_nll", "test_err", "test_acc", "lr", "wall_time_s", "images_per_s"}
    assert read_json(tmp_path / "run" / "run.json") == summary and summary["epochs_completed"] == 3
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert names == ["epoch2.pt", "init.pt", "last.pt", "warmup.pt"]
    warmup = torch.load(tmp_path / "run" / "checkpoints" / "warmup.pt", weights_only=False)
    assert warmup["epoch"] == 1 and warmup["step"] == 6 and set(warmup) >= {"optimizer", "scheduler", "rng", "run"}
    model, info = load_checkpoint_model(tmp_path / "run" / "checkpoints" / "last.pt")
    assert not model.training and info["run"] == spec and info["status"] == "finished"


def test_divergence_is_an_outcome_not_a_failure(tmp_path):
    spec, paths = tiny_spec(tmp_path, name="sgd", hparams={"lr": 1e6, "weight_decay": 0.0}, warmup_epochs=0)
    spec["training"]["grad_clip_norm"] = None
    summary = train_run(spec, *paths, tmp_path / "run", device="cpu", progress=False)
    assert summary["status"] == "diverged"
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert metrics[-1]["diverged"] is True and metrics[-1]["train_nll"] is None
    for name in ("init", "warmup", "last"):
        assert (tmp_path / "run" / "checkpoints" / f"{name}.pt").exists()
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["status"] == "diverged"


SIGNAL_SCRIPT = """
import sys, torch
from vitwork.train import PREEMPTED_EXIT_CODE, Preempted, train_run
spec, paths, out = torch.load(sys.argv[1], weights_only=False)
try:
    train_run(spec, *paths, out, device="cpu", progress=False)
except Preempted:
    sys.exit(PREEMPTED_EXIT_CODE)
"""


def test_sigterm_saves_and_exits_for_a_retry(tmp_path):
    spec, paths = tiny_spec(tmp_path, epochs=400)
    torch.save((spec, paths, tmp_path / "run"), tmp_path / "args.pt")
    (tmp_path / "job.py").write_text(SIGNAL_SCRIPT)
    process = subprocess.Popen([sys.executable, tmp_path / "job.py", tmp_path / "args.pt"])
    metrics = tmp_path / "run" / "work" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == PREEMPTED_EXIT_CODE
    state = torch.load(tmp_path / "run" / "work" / "resume.pt", weights_only=False)
    assert state["status"] == "preempted" and state["position"]["epoch"] >= 2
    assert not (tmp_path / "run" / "run.json").exists()
