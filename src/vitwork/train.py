"""One training run: (model, optimizer setting, fraction, seed) -> checkpoints, metrics.jsonl, run.json.

Work in progress lives in `<run>/work/` (resume state, metrics so far, checkpoints so far), which the workflow
never deletes; the declared outputs are published from it only when the run ends, run.json last. A SIGTERM or
SIGUSR1 (what Slurm sends before killing or requeueing) saves the exact position, mid-epoch included, and the
next attempt resumes from it to the same result as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vitwork.augment import TrainAugment
from vitwork.config import spec_hash
from vitwork.data import load_meta, load_split
from vitwork.devices import autocast, resolve_device
from vitwork.io import append_jsonl, code_version, read_jsonl, save_torch_atomic, write_json
from vitwork.models import create_model
from vitwork.objective import soft_cross_entropy
from vitwork.optim import build_optimizer, build_scheduler
from vitwork.robustness import evaluate_arrays

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
PREEMPTED_EXIT_CODE = 143


class Preempted(Exception):
    """Training stopped on a signal after saving its resume state."""


def checkpoint_names(spec: dict) -> list[str]:
    """Checkpoints every run keeps: init, end of warm-up, the configured epochs, last."""
    total = spec["optimizer"]["warmup_epochs"] + spec["optimizer"]["epochs"]
    extra = [f"epoch{e}" for e in sorted(set(spec["training"]["checkpoint_epochs"])) if e <= total]
    return ["init", "warmup", *extra, "last"]


def build_model(spec: dict, num_classes: int) -> torch.nn.Module:
    """The run's model, with its stochastic depth."""
    model = spec["model"]
    return create_model(model["arch"], num_classes, drop_path_rate=spec["training"]["drop_path_rate"], **model["kwargs"])


def load_checkpoint_model(path, device="cpu"):
    """(model in eval mode with the checkpoint's weights, checkpoint dict without the optimizer state)."""
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    model = build_model(checkpoint["run"], checkpoint["num_classes"]).to(device)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return model, {k: v for k, v in checkpoint.items() if k not in ("model", "optimizer", "scheduler")}


def evaluate(model, images: torch.Tensor, labels: torch.Tensor, mean, std, batch_size: int, device) -> dict:
    """Test NLL, accuracy and error (%) of `model` on uint8 NHWC images, batched, in eval mode."""
    metrics = evaluate_arrays(model, images, labels, mean, std, batch_size, device)
    return {"test_nll": metrics["nll"], "test_acc": metrics["acc"], "test_err": 100.0 * (1 - metrics["acc"])}


def _rng_state(generator: torch.Generator) -> dict:
    return {
        "torch": torch.random.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "generator": generator.get_state(),
    }


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.random.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    generator.set_state(state["generator"])


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@contextlib.contextmanager
def _preemption_flag():
    """A dict whose 'signal' is set when SIGTERM/SIGUSR1 arrives (handlers restored afterwards)."""
    flag = {"signal": None}
    previous = {}

    def handler(signum, _frame):
        flag["signal"] = signum

    for sig in PREEMPTION_SIGNALS:
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: run without pre-emption support
            pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Trainer:
    """The state of one run and the loop that advances it; see the module docstring for the file layout."""

    def __init__(self, spec, train_path, test_path, meta_path, subset_path, run_dir, device="auto", threads=1, progress=True):
        torch.set_num_threads(threads)
        self.spec = spec
        self.device = resolve_device(device)
        self.run_dir = Path(run_dir)
        self.work_dir = self.run_dir / "work"
        self.progress = progress
        meta = load_meta(meta_path)
        self.num_classes, self.mean, self.std = meta["num_classes"], meta["mean"], meta["std"]
        train_images, train_labels = load_split(train_path)
        subset = np.load(subset_path)
        test_images, test_labels = load_split(test_path)
        on_gpu = self.device.type == "cuda"  # the small dataset stays resident on the GPU
        data_device = self.device if on_gpu else torch.device("cpu")
        self.train_images = torch.from_numpy(train_images[subset]).to(data_device)
        self.train_labels = torch.from_numpy(train_labels[subset]).to(data_device)
        self.test_images = torch.from_numpy(test_images).to(data_device)
        self.test_labels = torch.from_numpy(test_labels).to(data_device)

        opt = spec["optimizer"]
        self.batch_size = opt["batch_size"]
        n = len(self.train_labels)
        if n < self.batch_size:
            raise ValueError(f"run {spec['run_id']}: {n} training images is fewer than batch_size {self.batch_size}")
        self.steps_per_epoch = n // self.batch_size  # drop the last partial batch (mixup needs even batches)
        self.total_epochs = opt["warmup_epochs"] + opt["epochs"]
        self.warmup_epochs = opt["warmup_epochs"]

        _seed_everything(spec["seed"])
        self.generator = torch.Generator(device=data_device)
        self.generator.manual_seed(spec["seed"])
        self.model = build_model(spec, self.num_classes).to(self.device)
        self.channels_last = on_gpu and spec["training"]["channels_last"]
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, opt["name"], opt["hparams"], opt["decay"])
        self.scheduler = build_scheduler(self.optimizer, self.steps_per_epoch, opt["warmup_epochs"], opt["epochs"], opt["schedule"])
        self.augment = TrainAugment(spec["training"], self.num_classes, self.mean, self.std)
        self.mixed_precision = spec["training"]["mixed_precision"]
        self.hash = spec_hash(spec)
        self.code_version = code_version()  # one git call per run, not one per checkpoint
        self.position = {"epoch": 0, "step_in_epoch": 0, "perm": None, "sums": [0.0, 0.0, 0], "epoch_time": 0.0, "wall_time": 0.0}
        self.status = "running"

    # -- state ---------------------------------------------------------------------------------------------
    def state(self, status: str) -> dict:
        """Everything needed to resume or analyse: model, optimizer, scheduler, RNG, position."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(self.generator),
            "position": self.position,
            "epoch": self.position["epoch"],
            "step": self.scheduler.last_epoch,
            "run": self.spec,
            "spec_hash": self.hash,
            "num_classes": self.num_classes,
            "mean": self.mean,
            "std": self.std,
            "status": status,
            "code_version": self.code_version,
        }

    def save_checkpoint(self, name: str, status: str = "running") -> None:
        save_torch_atomic(self.state(status), self.work_dir / "checkpoints" / f"{name}.pt")

    def try_resume(self) -> bool:
        """Load work/resume.pt if it belongs to this exact spec; otherwise start clean."""
        resume = self.work_dir / "resume.pt"
        if resume.exists():
            state = torch.load(resume, map_location=self.device, weights_only=False)
            if state["spec_hash"] == self.hash:
                self.model.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
                self.scheduler.load_state_dict(state["scheduler"])
                _set_rng_state(state["rng"], self.generator)
                self.position = state["position"]
                print(f"resuming {self.spec['run_id']} at epoch {self.position['epoch']} step {self.position['step_in_epoch']}", flush=True)
                return True
            print(f"discarding resume state of another spec in {self.work_dir}", flush=True)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.work_dir.mkdir(parents=True)
        return False

    # -- loop ----------------------------------------------------------------------------------------------
    def train_step(self, indices: torch.Tensor) -> tuple[float, int]:
        """One update on the images at `indices`; returns (summed soft NLL, correct count), NLL NaN if diverged."""
        images, labels = self.train_images[indices], self.train_labels[indices]
        if images.device != self.device:
            images, labels = images.to(self.device), labels.to(self.device)
        x, targets = self.augment(images, labels, self.generator)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.mixed_precision):
            logits = self.model(x)
        loss = soft_cross_entropy(logits, targets)
        if not torch.isfinite(loss) or loss.item() > self.spec["training"]["diverge_above"]:
            return float("nan"), 0
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.spec["training"]["grad_clip_norm"]
        if clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        self.scheduler.step()
        correct = (logits.argmax(-1) == targets.argmax(-1)).sum().item()
        return loss.item() * len(indices), correct

    def run(self, stop_after_updates: int | None = None) -> dict:
        """Train to the end (or divergence); raise Preempted after saving on a signal or after `stop_after_updates`."""
        resumed = self.try_resume()
        if not resumed:
            self.save_checkpoint("init")
            if self.warmup_epochs == 0:
                self.save_checkpoint("warmup")  # no warm-up: its end is the initialisation
        updates_done = 0
        bar = tqdm(
            total=self.total_epochs * self.steps_per_epoch,
            initial=self.position["epoch"] * self.steps_per_epoch + self.position["step_in_epoch"],
            desc=self.spec["run_id"], file=sys.stderr, mininterval=5, disable=not self.progress,
        )
        with _preemption_flag() as flag:
            while self.position["epoch"] < self.total_epochs and self.status == "running":
                pos = self.position
                if pos["perm"] is None:
                    pos["perm"] = torch.randperm(len(self.train_labels), generator=self.generator, device=self.generator.device)
                self.model.train()
                while pos["step_in_epoch"] < self.steps_per_epoch:
                    if flag["signal"] is not None or (stop_after_updates is not None and updates_done >= stop_after_updates):
                        save_torch_atomic(self.state("preempted"), self.work_dir / "resume.pt")
                        bar.close()
                        raise Preempted(f"stopped at epoch {pos['epoch']} step {pos['step_in_epoch']} (signal {flag['signal']})")
                    start = time.perf_counter()
                    i = pos["step_in_epoch"]
                    nll, correct = self.train_step(pos["perm"][i * self.batch_size : (i + 1) * self.batch_size])
                    if self.device.type == "cuda":
                        torch.cuda.synchronize()
                    pos["epoch_time"] += time.perf_counter() - start
                    if not math.isfinite(nll):
                        self.status = "diverged"
                        break
                    pos["sums"][0] += nll
                    pos["sums"][1] += correct
                    pos["sums"][2] += self.batch_size
                    pos["step_in_epoch"] += 1
                    updates_done += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{nll / self.batch_size:.3f}", refresh=False)
                self.end_epoch()
        bar.close()
        return self.finish()

    def end_epoch(self) -> None:
        """Evaluate, append the epoch's metrics, save the epoch's checkpoints and the resume state."""
        pos = self.position
        epoch = pos["epoch"] + 1
        test = evaluate(self.model, self.test_images, self.test_labels, self.mean, self.std, self.spec["training"]["eval_batch_size"], self.device)
        seen = max(pos["sums"][2], 1)
        pos["wall_time"] += pos["epoch_time"]
        diverged = self.status == "diverged" or not math.isfinite(test["test_nll"])
        record = {
            "epoch": epoch,
            "step": self.scheduler.last_epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_nll": float("nan") if diverged else pos["sums"][0] / seen,
            "train_acc": float("nan") if diverged else pos["sums"][1] / seen,
            **({k: float("nan") for k in test} if diverged else test),
            "epoch_time_s": pos["epoch_time"],
            "wall_time_s": pos["wall_time"],
            "images_per_s": pos["sums"][2] / pos["epoch_time"] if pos["epoch_time"] > 0 else float("nan"),
        }
        if diverged:
            record["diverged"] = True
            self.status = "diverged"
        append_jsonl(self.work_dir / "metrics.jsonl", record)
        print(
            f"epoch {epoch}/{self.total_epochs} train_nll {record['train_nll']:.4f} test_acc {record['test_acc']:.4f} "
            f"lr {record['lr']:.3g} {record['images_per_s']:.0f} img/s",
            flush=True,
        )
        self.position = {"epoch": epoch, "step_in_epoch": 0, "perm": None, "sums": [0.0, 0.0, 0], "epoch_time": 0.0, "wall_time": pos["wall_time"]}
        if diverged:
            return
        if epoch == self.warmup_epochs:
            self.save_checkpoint("warmup")
        if epoch in self.spec["training"]["checkpoint_epochs"]:
            self.save_checkpoint(f"epoch{epoch}")
        save_torch_atomic(self.state("running"), self.work_dir / "resume.pt")

    def finish(self) -> dict:
        """Publish checkpoints and metrics from work/ into the run folder, then run.json; return the summary."""
        status = "diverged" if self.status == "diverged" else "finished"
        for name in checkpoint_names(self.spec):
            path = self.work_dir / "checkpoints" / f"{name}.pt"
            if name == "last" or not path.exists():
                # a diverged run never reached some checkpoints: they hold its last state, flagged as diverged
                self.save_checkpoint(name, status=status)
        metrics = read_jsonl(self.work_dir / "metrics.jsonl") if (self.work_dir / "metrics.jsonl").exists() else []
        final_epoch = next((m for m in reversed(metrics) if not m.get("diverged")), None)
        out_ckpt = self.run_dir / "checkpoints"
        out_ckpt.mkdir(parents=True, exist_ok=True)
        for path in (self.work_dir / "checkpoints").glob("*.pt"):
            path.replace(out_ckpt / path.name)
        if metrics:
            (self.work_dir / "metrics.jsonl").replace(self.run_dir / "metrics.jsonl")
        else:  # diverged in the first epoch before any record: an empty history, still a declared output
            (self.run_dir / "metrics.jsonl").write_text("")
        wall = metrics[-1]["wall_time_s"] if metrics else 0.0
        seen = sum(m["images_per_s"] * m["epoch_time_s"] for m in metrics if m.get("images_per_s"))
        summary = {
            "run_id": self.spec["run_id"],
            "spec": self.spec,
            "status": status,
            "epochs_completed": len([m for m in metrics if not m.get("diverged")]),
            "final": {k: final_epoch[k] for k in ("test_acc", "test_nll", "test_err", "train_nll", "train_acc")} if final_epoch else None,
            "wall_time_s": wall,
            "images_per_s": seen / wall if wall > 0 else None,
            "code_version": self.code_version,
            "seed": self.spec["seed"],
            "device": str(self.device),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),  # which cluster job produced the run, if any
        }
        write_json(self.run_dir / "run.json", summary)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        return summary


def train_run(spec, train_path, test_path, meta_path, subset_path, run_dir, device="auto", threads=1, progress=True, stop_after_updates=None) -> dict:
    """Train (or resume) one run to its end and publish its outputs; see Trainer."""
    trainer = Trainer(spec, train_path, test_path, meta_path, subset_path, run_dir, device, threads, progress)
    return trainer.run(stop_after_updates=stop_after_updates)
