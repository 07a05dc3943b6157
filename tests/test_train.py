"""Training: schedules, augmentation, the sync-free step, resume equality, crash safety, pre-emption, divergence,
checkpoints, the GPU path on CPU, evaluation cost."""

import logging
import math
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils._python_dispatch import TorchDispatchMode

from vitwork.config import study_run_specs, validate_config
from vitwork.checkpoints import CheckpointError
from vitwork.data import load_split, prepare_dataset, write_subset
from vitwork.devices import applies_on
from vitwork.io import read_json, read_jsonl
from vitwork.optim import build_optimizer, lr_factor
from vitwork.train import PREEMPTED_EXIT_CODE, Preempted, Trainer, eval_sample_indices, evaluate, load_checkpoint_model, train_run


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


# -- the sync-free step and the deferred divergence test ----------------------------------------------------------

class HostReads(TorchDispatchMode):
    """Counts the ops by which a tensor's value reaches Python (`.item()`, `float()`, `int()`, `bool()`)."""

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads.append(func)
        return func(*args, **(kwargs or {}))


def test_training_step_reads_nothing_back_from_the_device(tmp_path, monkeypatch):
    # SGD: torch's Adam reads its CPU step counter with .item() (never a device sync); RandAugment is left out
    # until augmentation is batched (its per-image magnitudes are read on the host)
    spec, paths = tiny_spec(tmp_path, name="sgd", hparams={"lr": 0.1, "weight_decay": 0.0, "momentum": 0.9})
    spec["training"]["randaugment"] = None
    trainer = Trainer(spec, *paths, tmp_path / "run", device="cpu", progress=False)
    trainer.model.train()
    for name in ("tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, lambda *a, **k: pytest.fail("host read in the training step"))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: pytest.fail("synchronize in the training step"))
    with HostReads() as mode:
        for step in range(4):
            trainer.train_step(torch.arange(step * 16, (step + 1) * 16))
    assert mode.reads == []
    monkeypatch.undo()
    assert trainer.step.first_diverged() is None and trainer.step.sums()[0] > 0


def outputs(run_dir):
    """What a run publishes, less its timings: metrics, run.json, and every checkpoint's weights and status."""
    timings = {"epoch_time_s", "wall_time_s", "images_per_s", "eval_time_s", "eval_share"}
    metrics = [{k: v for k, v in m.items() if k not in timings} for m in read_jsonl(run_dir / "metrics.jsonl")]
    summary = {k: v for k, v in read_json(run_dir / "run.json").items() if k not in timings}
    checkpoints = {}
    for path in sorted((run_dir / "checkpoints").glob("*.pt")):
        checkpoint = torch.load(path, weights_only=False)
        checkpoints[path.name] = (checkpoint["status"], checkpoint["epoch"], checkpoint["model"])
    return metrics, summary, checkpoints


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (NaN included: a diverged run's stand-in checkpoints hold non-finite weights)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def assert_same_outputs(a, b):
    (metrics_a, summary_a, ckpt_a), (metrics_b, summary_b, ckpt_b) = a, b
    assert metrics_a == metrics_b and summary_a == summary_b and ckpt_a.keys() == ckpt_b.keys()
    for name, (status, epoch, weights) in ckpt_a.items():
        assert (status, epoch) == ckpt_b[name][:2], name
        assert weights.keys() == ckpt_b[name][2].keys() and all(same_bits(weights[k], ckpt_b[name][2][k]) for k in weights), name


def test_deferred_divergence_reads_end_the_run_as_an_immediate_test_would(tmp_path):
    # lr 1.2 without clipping: finite through epoch 1, the second batch of epoch 2 diverges
    spec, paths = tiny_spec(tmp_path, name="sgd", hparams={"lr": 1.2, "weight_decay": 0.0}, epochs=3)
    spec["training"]["grad_clip_norm"] = None
    results = {}
    for every in (1, 4, 100):  # every step; mid-epoch; only at the epoch end, after 4 more updates
        spec["training"]["divergence_check_every"] = every
        train_run(spec, *paths, tmp_path / f"every{every}", device="cpu", progress=False)
        results[every] = outputs(tmp_path / f"every{every}")
    metrics, summary, checkpoints = results[1]
    assert summary["status"] == "diverged" and summary["epochs_completed"] == 1
    assert [(m["epoch"], m["step"], m.get("diverged", False)) for m in metrics] == [(1, 6, False), (2, 7, True)]
    assert metrics[1]["train_nll"] is None and metrics[1]["lr"] == pytest.approx(1.2 * (1 + math.cos(math.pi * 1 / 18)) / 2)
    for every in (4, 100):  # the records and the summary do not depend on when the device was read
        assert results[every][0] == metrics
        assert {k: v for k, v in results[every][1].items() if k != "spec"} == {k: v for k, v in summary.items() if k != "spec"}
        for name, (status, _, weights) in results[every][2].items():
            assert status == "diverged" or all(w.isfinite().all() for w in weights.values()), name  # nothing non-finite marked good
    assert checkpoints["warmup.pt"][0] == "running" and checkpoints["last.pt"][0] == "diverged"


# -- the GPU path on CPU -----------------------------------------------------------------------------------------

def micro_resnet_spec(tmp_path, **training):
    spec, paths = tiny_spec(tmp_path)
    spec["model"].update(arch="vitwork_resnet", kwargs={"block": "basic", "layers": [1, 1, 1, 1], "channels": [8, 8, 16, 16], "stem_width": 8})
    spec["training"].update(training)
    return spec, paths


def test_bf16_and_channels_last_apply_on_cpu_only_when_asked(tmp_path, monkeypatch):
    seen = []
    real_forward = Trainer.__init__

    def recording_init(self, *args, **kwargs):
        real_forward(self, *args, **kwargs)
        self.model.register_forward_hook(lambda module, inputs, output: seen.append(
            (module.training, output.dtype, inputs[0].is_contiguous(memory_format=torch.channels_last))))

    monkeypatch.setattr(Trainer, "__init__", recording_init)
    for setting, dtype, channels_last in (("auto", torch.float32, False), (True, torch.bfloat16, True)):
        seen.clear()
        spec, paths = micro_resnet_spec(tmp_path / str(setting), mixed_precision=setting, channels_last=setting)
        summary = train_run(spec, *paths, tmp_path / str(setting) / "run", device="cpu", progress=False)
        assert summary["status"] == "finished"
        assert {(dtype, channels_last)} == {(d, c) for training, d, c in seen if training}  # every training forward
        # the checkpoint holds plain contiguous tensors that a plain float32 model loads
        path = tmp_path / str(setting) / "run" / "checkpoints" / "last.pt"
        weights = torch.load(path, weights_only=False)["model"]
        assert all(w.is_contiguous() for w in weights.values())
        model, _ = load_checkpoint_model(path)
        assert all(torch.equal(model.state_dict()[k], weights[k]) for k in weights)


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="torch.compile on CPU needs a C compiler")
def test_a_compiled_model_trains_and_its_checkpoints_load_into_a_plain_model(tmp_path, monkeypatch):
    # about 30 s on 2 shared cores, almost all of it compiling the micro ViT once
    spec, paths = tiny_spec(tmp_path, epochs=1)
    spec["training"]["compile"] = True
    compiled, real_compile = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: compiled.append(model) or real_compile(model, **kw))
    summary = train_run(spec, *paths, tmp_path / "run", device="cpu", progress=False)
    assert summary["status"] == "finished" and summary["final"]["test_nll"] is not None and len(compiled) == 1
    weights = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert not any(name.startswith("_orig_mod") for name in weights)
    model, info = load_checkpoint_model(tmp_path / "run" / "checkpoints" / "last.pt")
    assert info["run"]["training"]["compile"] is True and type(model).__name__ != "OptimizedModule"


@pytest.fixture
def training():
    """The paper study's shared training settings, defaults filled."""
    config = validate_config(yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "config.yaml"))) | {"dataset": {"source": "synthetic"}})
    return config["training"]


def test_config_defaults_keep_the_gpu_path_on_cuda_only(training):
    assert (training["mixed_precision"], training["channels_last"], training["compile"]) == ("auto", "auto", False)
    assert (training["eval_every"], training["eval_images"]) == (1, None)
    assert applies_on("auto", "cuda") and not applies_on("auto", "cpu") and applies_on(True, "cpu") and not applies_on(False, "cuda")


# -- crash safety ------------------------------------------------------------------------------------------------

class Crash(BaseException):
    """A kill: not an Exception, so nothing in the code under test can catch it."""


def declared_outputs(run_dir):
    return [run_dir / "run.json", run_dir / "metrics.jsonl", *(run_dir / "checkpoints" / f"{n}.pt" for n in ("init", "warmup", "last"))]


@pytest.mark.parametrize("outcome", ["finished", "diverged"])
def test_a_kill_at_any_file_write_reruns_to_the_uninterrupted_outputs(tmp_path, monkeypatch, outcome):
    """Every file the run writes appears by one rename; kill the job at each, rerun as Snakemake would."""
    if outcome == "finished":
        spec, paths = tiny_spec(tmp_path)
    else:  # diverges in epoch 2, after warmup.pt; last.pt and epoch2.pt are stand-ins flagged diverged
        spec, paths = tiny_spec(tmp_path, name="sgd", hparams={"lr": 1.2, "weight_decay": 0.0})
        spec["training"]["grad_clip_norm"] = None
    real_replace = os.replace
    renames = []

    def counting_replace(source, target):
        renames.append(Path(target))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", counting_replace)
    train_run(spec, *paths, tmp_path / "whole", device="cpu", progress=False)
    monkeypatch.setattr(os, "replace", real_replace)
    reference = outputs(tmp_path / "whole")
    assert read_json(tmp_path / "whole" / "run.json")["status"] == outcome and any(p.name == "run.json" for p in renames)

    for kill_at in range(len(renames)):
        run_dir = tmp_path / f"kill{kill_at}"
        calls = []

        def killing_replace(source, target):
            calls.append(target)
            if len(calls) == kill_at + 1:
                raise Crash(f"killed before {target}")
            real_replace(source, target)

        monkeypatch.setattr(os, "replace", killing_replace)
        with pytest.raises(Crash):
            train_run(spec, *paths, run_dir, device="cpu", progress=False)
        monkeypatch.setattr(os, "replace", real_replace)
        init_before = torch.load(run_dir / "work" / "checkpoints" / "init.pt", weights_only=False)["model"] if (run_dir / "work" / "checkpoints" / "init.pt").exists() else None
        for output in declared_outputs(run_dir):  # Snakemake removes a failed job's outputs before the retry
            output.unlink(missing_ok=True)
        train_run(spec, *paths, run_dir, device="cpu", progress=False)
        got = outputs(run_dir)
        assert [m["epoch"] for m in got[0]] == [m["epoch"] for m in reference[0]], f"killed before {renames[kill_at]}"
        assert_same_outputs(got, reference)
        if init_before is not None:  # the rerun never replaced the initial weights
            assert all(same_bits(init_before[k], reference[2]["init.pt"][2][k]) for k in init_before)
        assert not (run_dir / "work").exists()


@pytest.mark.parametrize("damage", ["truncated", "not a checkpoint"])
def test_an_unreadable_resume_state_is_set_aside_and_the_run_continues(tmp_path, damage, caplog):
    spec, paths = tiny_spec(tmp_path)
    train_run(spec, *paths, tmp_path / "whole", device="cpu", progress=False)
    with pytest.raises(Preempted):  # mid-epoch 2: warmup.pt (end of epoch 1) is the last good checkpoint
        train_run(spec, *paths, tmp_path / "run", device="cpu", progress=False, stop_after_updates=9)
    resume = tmp_path / "run" / "work" / "resume.pt"
    if damage == "truncated":
        resume.write_bytes(resume.read_bytes()[: resume.stat().st_size // 2])
    else:
        resume.write_text("not a checkpoint\n")
    with caplog.at_level(logging.WARNING):
        train_run(spec, *paths, tmp_path / "run", device="cpu", progress=False)
    assert str(resume) in caplog.text and "warmup.pt: resuming from this last good checkpoint" in caplog.text
    assert (tmp_path / "run" / "work-unreadable" / "resume.pt").exists()
    assert_same_outputs(outputs(tmp_path / "run"), outputs(tmp_path / "whole"))


def test_checkpoint_errors_name_the_file_in_one_line(tmp_path):
    spec, paths = tiny_spec(tmp_path, epochs=1, warmup_epochs=0)
    train_run(spec, *paths, tmp_path / "run", device="cpu", progress=False)
    good = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    cases = {
        "truncated.pt": good[: len(good) // 3],
        "text.pt": b"weights: none\n",
        "other.pt": None,  # a torch file, but not a vitwork checkpoint
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is None:
            torch.save({"state_dict": {}}, path)
        else:
            path.write_bytes(content)
        with pytest.raises(CheckpointError) as error:
            load_checkpoint_model(path)
        message = str(error.value)
        assert message.startswith(f"{path}: ") and "\n" not in message and "expected a vitwork checkpoint" in message
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint_model(tmp_path / "absent.pt")


def test_training_leaves_the_callers_global_random_state_alone(tmp_path):
    spec, paths = tiny_spec(tmp_path, epochs=1, warmup_epochs=0)
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    before = (torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    train_run(spec, *paths, tmp_path / "run", device="cpu", progress=False)
    after = (torch.random.get_rng_state(), np.random.get_state()[1], random.getstate())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


# -- pre-emption as the job log shows it -------------------------------------------------------------------------

# a preamble that defines `snakemake`, put before the rule's script as Snakemake puts its own: the job is one file
PREAMBLE = """
import pickle, sys, types
spec, paths, run_dir, log, scriptdir = pickle.load(open(sys.argv[1], "rb"))
ns = types.SimpleNamespace
snakemake = ns(params=ns(spec=spec, run_dir=str(run_dir), device="cpu"), threads=1, log=[str(log)],
               input=ns(train=str(paths[0]), test=str(paths[1]), meta=str(paths[2]), subset=str(paths[3])),
               scriptdir=scriptdir, resources=ns())
"""


@pytest.mark.parametrize("process_kind", ["own process", "job server"])
def test_sigterm_logs_one_line_and_exits_for_a_retry(tmp_path, repo, process_kind, request):
    """The job in its own process, or (config job_server) in a fork of the server that its process passes SIGTERM to."""
    spec, paths = tiny_spec(tmp_path, epochs=400)
    log = tmp_path / "train.log"
    scripts = repo / "workflow" / "scripts"
    (tmp_path / "args.pkl").write_bytes(pickle.dumps((spec, paths, tmp_path / "run", log, str(scripts))))
    (tmp_path / "job.py").write_text(PREAMBLE + (scripts / "train.py").read_text())
    env = request.getfixturevalue("job_server").env() if process_kind == "job server" else None
    process = subprocess.Popen([sys.executable, tmp_path / "job.py", tmp_path / "args.pkl"], env=env)
    metrics = tmp_path / "run" / "work" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == PREEMPTED_EXIT_CODE
    state = torch.load(tmp_path / "run" / "work" / "resume.pt", weights_only=False)
    assert state["status"] == "preempted" and state["position"]["epoch"] >= 2
    assert not (tmp_path / "run" / "run.json").exists()
    text = log.read_text()
    position = state["position"]
    assert f"pre-empted at epoch {position['epoch']}, step {position['step_in_epoch']}; checkpoint saved\n" in text
    assert "Traceback" not in text and "SystemExit" not in text and text.count("pre-empted") == 1
    if process_kind == "job server":
        assert f"(job.py) exited {PREEMPTED_EXIT_CODE} after" in request.getfixturevalue("job_server").log.read_text()


# -- evaluation cost ---------------------------------------------------------------------------------------------

def test_evaluation_every_few_epochs_on_a_fixed_sample_and_finally_on_the_whole_split(tmp_path):
    spec, paths = tiny_spec(tmp_path)  # 3 epochs, 4 classes x 6 test images
    spec["training"].update(eval_every=2, eval_images=8)
    summary = train_run(spec, *paths, tmp_path / "run", device="cpu", progress=False)
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [(m["epoch"], m["test_images"]) for m in metrics] == [(1, None), (2, 8), (3, 24)]
    assert metrics[0]["test_acc"] is None and metrics[0]["train_nll"] is not None and metrics[0]["eval_time_s"] == 0
    assert summary["final"]["test_acc"] == metrics[2]["test_acc"]  # the final number is the whole split's
    assert summary["eval_sample"]["images"] == 8 and summary["eval_sample"]["classes"] == 4
    assert summary["eval_time_s"] == pytest.approx(sum(m["eval_time_s"] for m in metrics)) and 0 < summary["eval_share"] < 1

    # the sample: 2 images per class, the same for every run; epoch 2's numbers are its checkpoint's on that sample
    _, test_labels = load_split(paths[1])
    sample = eval_sample_indices(test_labels, 8)
    assert np.array_equal(sample, eval_sample_indices(test_labels, 8)) and np.bincount(test_labels[sample]).tolist() == [2] * 4
    model, info = load_checkpoint_model(tmp_path / "run" / "checkpoints" / "epoch2.pt")
    images, labels = load_split(paths[1])
    again = evaluate(model, images[sample], labels[sample], info["mean"], info["std"], 500, "cpu")
    assert again["test_acc"] == metrics[1]["test_acc"] and again["test_nll"] == pytest.approx(metrics[1]["test_nll"], rel=1e-6)
    with pytest.raises(ValueError, match="training.eval_images"):
        eval_sample_indices(test_labels, 3)  # fewer than one per class
