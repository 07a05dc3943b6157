"""One training run: (model, optimizer setting, fraction, seed) -> checkpoints, metrics.jsonl, run.json.

Four parts: `TrainStep` (one update, with no host-device synchronisation), `Trainer` (the epoch loop: divergence
checks, evaluation, the epoch's record, pre-emption), `RunCheckpoints` (what a saved state holds, resuming, the
run's final write) and `vitwork.checkpoints` (atomic files, reading checkpoints, publishing).

Work in progress lives in `<run>/work/` (resume state, metrics so far, checkpoints so far), which the workflow
never deletes; the declared outputs are published from it only when the run ends, run.json last. Every file is
written atomically and resume.pt holds the metrics of the epochs it has trained, so a kill at any point resumes
to the same result as an uninterrupted run: a SIGTERM or SIGUSR1 (what Slurm sends before killing or requeueing)
saves the exact position, mid-epoch included; a hard kill resumes from the last epoch end; an unreadable resume
state is set aside and the run continues from its last good checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vitwork.augment import TrainAugment
from vitwork.checkpoints import (  # noqa: F401  (load_checkpoint_model: vitwork.train's interface for analyses)
    build_model,
    checkpoint_names,
    latest_resumable_state,
    load_checkpoint_model,
    plain_state_dict,
    publish_run,
    run_summary,
)
from vitwork.config import spec_hash
from vitwork.data import load_indices, load_meta, load_split, stratified_subset
from vitwork.devices import applies_on, autocast, resolve_device
from vitwork.io import append_jsonl, atomic_path, code_version, save_torch_atomic
from vitwork.objective import soft_cross_entropy
from vitwork.optim import build_optimizer, build_scheduler
from vitwork.robustness import evaluate_arrays

log = logging.getLogger(__name__)

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM; the Slurm profiles resubmit any failed job (retries)
EVAL_SAMPLE_SEED = 0  # one per-epoch evaluation sample for every run, so their curves compare


class Preempted(Exception):
    """Training stopped on a signal after saving its resume state; the message is the job log's one line."""


def evaluate(model, images: torch.Tensor, labels: torch.Tensor, mean, std, batch_size: int, device) -> dict:
    """Test NLL, accuracy and error (%) of `model` on uint8 NHWC images, batched, in eval mode."""
    metrics = evaluate_arrays(model, images, labels, mean, std, batch_size, device)
    return {"test_nll": metrics["nll"], "test_acc": metrics["acc"], "test_err": 100.0 * (1 - metrics["acc"])}


def eval_sample_indices(labels: np.ndarray, count: int | None) -> np.ndarray | None:
    """Sorted indices of a seeded class-stratified sample of about `count` test images; None for the whole split."""
    if count is None or count >= len(labels):
        return None
    try:
        return stratified_subset(labels, count / len(labels), EVAL_SAMPLE_SEED)
    except ValueError:
        classes = len(np.unique(labels))
        raise ValueError(f"training.eval_images: {count} of {len(labels)} test images leaves a class without an image (expected at least one per class, {classes} classes)") from None


def _global_rng_state() -> dict:
    return {
        "torch": torch.random.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_global_rng_state(state: dict) -> None:
    torch.random.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunRandomState:
    """The process-global random streams of one run, seeded from its seed and swapped in only while it trains.

    Every draw the run makes itself uses its torch.Generator (augmentation and mixing included). Two cannot take
    one: timm's weight initialisation and DropPath use torch's global generator. Its state is part of the resume
    state, so a resumed run stays bit-exact, and the caller's own global state is left untouched.
    """

    def __init__(self, seed: int):
        caller = _global_rng_state()
        torch.manual_seed(seed)
        self._state = _global_rng_state()
        self._active = False
        _set_global_rng_state(caller)

    @contextlib.contextmanager
    def active(self):
        """Inside the block the global streams are the run's; afterwards the caller's again."""
        caller = _global_rng_state()
        _set_global_rng_state(self._state)
        self._active = True
        try:
            yield
        finally:
            self._state = _global_rng_state()
            self._active = False
            _set_global_rng_state(caller)

    def state(self) -> dict:
        return _global_rng_state() if self._active else self._state

    def load(self, state: dict) -> None:
        self._state = {key: state[key] for key in ("torch", "cuda")}
        if self._active:
            _set_global_rng_state(self._state)


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


class TrainStep:
    """One update on a batch, with no host-device synchronisation.

    The epoch's running sums (soft NLL, correct predictions) and the divergence test (a batch loss that is
    non-finite or above `diverge_above`) stay on the device; the loop reads them back every few steps and at the
    epoch end. Updates after a diverging batch still run until that read, so the read reports the first diverging
    batch's index, which is what the metrics record (as if the run had stopped before that update).
    """

    def __init__(self, model, optimizer, scheduler, augment, generator, training: dict, device, mixed_precision: bool, channels_last: bool):
        self.model, self.optimizer, self.scheduler, self.augment, self.generator = model, optimizer, scheduler, augment, generator
        self.forward = torch.compile(model) if training["compile"] else model
        self.device, self.channels_last = device, channels_last
        self.precision = mixed_precision  # a resolved bool: autocast on this device or not
        self.clip, self.diverge_above = training["grad_clip_norm"], training["diverge_above"]
        self.start(0, 0.0, 0)

    def start(self, step_in_epoch: int, nll_sum: float, correct: int) -> None:
        """Begin (or resume) an epoch at `step_in_epoch` with these running sums."""
        self.first_step = step_in_epoch
        self.nll_sum = torch.tensor(nll_sum, dtype=torch.float64, device=self.device)
        self.correct = torch.tensor(correct, dtype=torch.int64, device=self.device)
        self.healthy = torch.tensor(True, device=self.device)  # no diverging batch since `start`
        self.healthy_steps = torch.tensor(0, dtype=torch.int64, device=self.device)
        self.last_loss = torch.tensor(float("nan"), device=self.device)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        x, targets = self.augment(images, labels, self.generator)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            logits = self.forward(x)
        loss = soft_cross_entropy(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.scheduler.step()
        loss = loss.detach().double()  # float64 sums: the same numbers as summing Python floats
        self.nll_sum += loss * len(targets)
        self.correct += (logits.detach().argmax(-1) == targets.argmax(-1)).sum()
        self.healthy &= loss <= self.diverge_above  # False for NaN and inf too
        self.healthy_steps += self.healthy
        self.last_loss = loss

    def first_diverged(self) -> int | None:
        """The epoch index of the first diverging batch since `start`, or None (one host read)."""
        index = int(torch.where(self.healthy, -1, self.healthy_steps))
        return None if index < 0 else self.first_step + index

    def sums(self) -> tuple[float, int]:
        """(summed soft NLL, correct predictions) of the epoch so far (one host read)."""
        return float(self.nll_sum), int(self.correct)


class RunData:
    """A run's images as uint8 NHWC tensors (resident on the GPU when training there) and its evaluation splits."""

    def __init__(self, train_path, test_path, meta_path, subset_path, eval_images: int | None, device: torch.device):
        meta = load_meta(meta_path)
        self.num_classes, self.mean, self.std = meta["num_classes"], meta["mean"], meta["std"]
        train_images, train_labels = load_split(train_path)
        subset = load_indices(subset_path)
        test_images, test_labels = load_split(test_path)
        on = device if device.type == "cuda" else torch.device("cpu")  # the small dataset stays on the GPU
        self.train_images = torch.from_numpy(train_images[subset]).to(on)
        self.train_labels = torch.from_numpy(train_labels[subset]).to(on)
        self.test = torch.from_numpy(test_images).to(on), torch.from_numpy(test_labels).to(on)
        sample = eval_sample_indices(test_labels, eval_images)
        self.sample, self.eval_sample = self.test, None  # without a sample: the whole split every time
        if sample is not None:
            chosen = torch.from_numpy(sample).to(on)
            self.sample = self.test[0][chosen], self.test[1][chosen]
            self.eval_sample = {"images": len(sample), "classes": len(np.unique(test_labels[sample])), "sha256": hashlib.sha256(sample.tobytes()).hexdigest()[:16]}

    def evaluation_split(self, final: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) to evaluate on: the per-epoch sample, but the whole test split for the final evaluation."""
        return self.test if final else self.sample


def epoch_record(epoch: int, pos: dict, step: int, lr: float, test: dict | None, eval_seconds: float, diverged: bool = False) -> dict:
    """One line of metrics.jsonl: the epoch's training sums (None once diverged), its evaluation when it had one."""
    seen = max(pos["sums"][2], 1)
    record = {
        "epoch": epoch,
        "step": step,
        "lr": lr,
        "train_nll": None if diverged else pos["sums"][0] / seen,
        "train_acc": None if diverged else pos["sums"][1] / seen,
        **{key: None if diverged or test is None else test[key] for key in ("test_nll", "test_acc", "test_err", "test_images")},
        "epoch_time_s": pos["epoch_time"],
        "wall_time_s": pos["wall_time"],
        "images_per_s": pos["sums"][2] / pos["epoch_time"] if pos["epoch_time"] > 0 else None,
        "eval_time_s": eval_seconds,
    }
    if diverged:
        record["diverged"] = True
    return record


def epoch_line(record: dict, total_epochs: int) -> str:
    """The job log's line for one epoch."""
    test_acc = "-" if record["test_acc"] is None else f"{record['test_acc']:.4f}"
    train_nll = "nan" if record["train_nll"] is None else f"{record['train_nll']:.4f}"
    speed = "-" if record["images_per_s"] is None else f"{record['images_per_s']:.0f}"
    return f"epoch {record['epoch']}/{total_epochs} train_nll {train_nll} test_acc {test_acc} lr {record['lr']:.3g} {speed} img/s"


class RunCheckpoints:
    """A run's saved states: what a checkpoint holds, resuming from work/, and publishing the finished run.

    Reads and restores the trainer's model, optimizer, scheduler, random state, position and metrics.
    """

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.spec, self.work_dir, self.run_dir = trainer.spec, trainer.work_dir, trainer.run_dir
        self.hash = spec_hash(self.spec)
        self.code_version = code_version()  # one git call per run, not one per checkpoint

    def state(self, status: str) -> dict:
        """Everything needed to resume or analyse: model, optimizer, scheduler, RNG, position, metrics so far."""
        t = self.trainer
        position = dict(t.position)
        if position["perm"] is not None:
            position["perm"] = position["perm"].cpu()
        return {
            "model": plain_state_dict(t.model),
            "optimizer": t.optimizer.state_dict(),
            "scheduler": t.scheduler.state_dict(),
            "rng": {**t.random.state(), "generator": t.generator.get_state()},
            "position": position,
            "metrics": list(t.metrics),
            "epoch": t.position["epoch"],
            "step": t.scheduler.last_epoch,
            "run": self.spec,
            "spec_hash": self.hash,
            "num_classes": t.num_classes,
            "mean": t.mean,
            "std": t.std,
            "status": status,
            "code_version": self.code_version,
        }

    def save_checkpoint(self, name: str, status: str = "running") -> None:
        save_torch_atomic(self.state(status), self.work_dir / "checkpoints" / f"{name}.pt")

    def save_resume_state(self, status: str) -> None:
        save_torch_atomic(self.state(status), self.work_dir / "resume.pt")

    def save_epoch(self, epoch: int) -> None:
        """After a finite epoch: the checkpoints named after it (warmup, epoch<N>), then the resume state."""
        if epoch == self.trainer.warmup_epochs:
            self.save_checkpoint("warmup")
        if epoch in self.trainer.training["checkpoint_epochs"]:
            self.save_checkpoint(f"epoch{epoch}")
        self.save_resume_state("running")

    def resume_or_start(self) -> bool:
        """Resume from work/'s latest usable state (`latest_resumable_state`), or start clean with the init (and no-warm-up) checkpoints."""
        t = self.trainer
        state = latest_resumable_state(self.work_dir, self.spec, self.hash, self.run_dir / "work-unreadable")
        if state is None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            (self.work_dir / "checkpoints").mkdir(parents=True)
            self.save_checkpoint("init")
            if t.warmup_epochs == 0:
                self.save_checkpoint("warmup")  # no warm-up: its end is the initialisation
            return False
        t.model.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.scheduler.load_state_dict(state["scheduler"])
        t.random.load(state["rng"])
        t.generator.set_state(state["rng"]["generator"])
        t.position = state["position"]
        if t.position["perm"] is not None:
            t.position["perm"] = t.position["perm"].to(t.generator.device)
        # the metrics are those of the epochs in the state: a kill after a later epoch's line repeats nothing
        t.metrics = state["metrics"]
        with atomic_path(self.work_dir / "metrics.jsonl") as tmp:
            tmp.touch()
            for record in t.metrics:
                append_jsonl(tmp, record)
        print(f"resuming {self.spec['run_id']} at epoch {t.position['epoch']} step {t.position['step_in_epoch']}", flush=True)
        return True

    def publish(self, status: str) -> dict:
        """Write last.pt (and a diverged run's unreached checkpoints), then publish the run with run.json last."""
        t = self.trainer
        names = checkpoint_names(self.spec)
        for name in names:
            path = self.work_dir / "checkpoints" / f"{name}.pt"
            if name == "last" or (status == "diverged" and not path.exists()):
                # a diverged run never reached some checkpoints: they hold its last state, flagged as diverged
                self.save_checkpoint(name, status=status)
            elif not path.exists():  # resume_or_start only resumes with every earlier checkpoint present
                raise RuntimeError(f"{path}: missing at the end of run {self.spec['run_id']}")
        (self.work_dir / "metrics.jsonl").touch()  # diverged before any record: an empty history, still an output
        summary = run_summary(self.spec, status, t.metrics, t.position["eval_time"], t.data.eval_sample, self.code_version, t.device)
        publish_run(self.work_dir, self.run_dir, names, summary)
        return summary


class Trainer:
    """The state of one run and the epoch loop that advances it; see the module docstring for the file layout."""

    def __init__(self, spec, train_path, test_path, meta_path, subset_path, run_dir, device="auto", threads=1, progress=True):
        torch.set_num_threads(threads)
        self.spec, self.training = spec, spec["training"]
        self.device = resolve_device(device)
        self.run_dir = Path(run_dir)
        self.work_dir = self.run_dir / "work"
        self.progress = progress
        self.data = RunData(train_path, test_path, meta_path, subset_path, self.training["eval_images"], self.device)
        self.num_classes, self.mean, self.std = self.data.num_classes, self.data.mean, self.data.std
        self.train_images, self.train_labels = self.data.train_images, self.data.train_labels  # bench/ reads them

        opt = spec["optimizer"]
        self.batch_size = opt["batch_size"]
        n = len(self.train_labels)
        if n < self.batch_size:
            raise ValueError(f"run {spec['run_id']}: {n} training images is fewer than batch_size {self.batch_size}")
        self.steps_per_epoch = n // self.batch_size  # drop the last partial batch (mixup needs even batches)
        self.total_epochs = opt["warmup_epochs"] + opt["epochs"]
        self.warmup_epochs = opt["warmup_epochs"]

        self.random = RunRandomState(spec["seed"])
        self.generator = torch.Generator(device=self.train_images.device)
        self.generator.manual_seed(spec["seed"])
        with self.random.active():  # timm's initialisation takes no generator
            self.model = build_model(spec, self.num_classes).to(self.device)
        self.channels_last = applies_on(self.training["channels_last"], self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, opt["name"], opt["hparams"], opt["decay"])
        self.scheduler = build_scheduler(self.optimizer, self.steps_per_epoch, opt["warmup_epochs"], opt["epochs"], opt["schedule"])
        self.augment = TrainAugment(self.training, self.num_classes, self.mean, self.std)
        self.step = TrainStep(
            self.model, self.optimizer, self.scheduler, self.augment, self.generator, self.training, self.device,
            mixed_precision=applies_on(self.training["mixed_precision"], self.device), channels_last=self.channels_last,
        )
        self.position = self._epoch_start(0, wall_time=0.0, eval_time=0.0)
        self.metrics: list[dict] = []  # one record per epoch trained, as in metrics.jsonl
        self.status = "running"
        self.updates_done = 0
        self.checkpoints = RunCheckpoints(self)

    @staticmethod
    def _epoch_start(epoch: int, wall_time: float, eval_time: float) -> dict:
        return {"epoch": epoch, "step_in_epoch": 0, "perm": None, "sums": [0.0, 0, 0], "epoch_time": 0.0, "wall_time": wall_time, "eval_time": eval_time}

    # -- loop ----------------------------------------------------------------------------------------------
    def train_step(self, indices: torch.Tensor) -> None:
        """One update on the training images at `indices` (no host sync; bench/train_throughput.py times it)."""
        images, labels = self.train_images[indices], self.train_labels[indices]
        if images.device != self.device:
            images, labels = images.to(self.device), labels.to(self.device)
        self.step(images, labels)

    def run(self, stop_after_updates: int | None = None) -> dict:
        """Train to the end (or divergence) and publish; raise Preempted after saving on a signal or after `stop_after_updates`."""
        self.checkpoints.resume_or_start()
        bar = tqdm(
            total=self.total_epochs * self.steps_per_epoch,
            initial=self.position["epoch"] * self.steps_per_epoch + self.position["step_in_epoch"],
            desc=self.spec["run_id"], file=sys.stderr, mininterval=5, disable=not self.progress,
        )
        try:
            with self.random.active(), _preemption_flag() as flag:
                while self.position["epoch"] < self.total_epochs and self.status == "running":
                    diverged = self.run_epoch(flag, stop_after_updates, bar)
                    self.end_epoch(diverged)
        finally:
            bar.close()
        return self.finish()

    def _diverged(self) -> bool:
        """Read the step's divergence test; on divergence, move the position back to the first diverging batch."""
        index = self.step.first_diverged()
        if index is None:
            return False
        self.position["step_in_epoch"] = index
        self.position["sums"][2] = index * self.batch_size  # images trained on before that batch
        return True

    def run_epoch(self, flag: dict, stop_after_updates: int | None, bar) -> bool:
        """Train the current epoch from its position to its end; True when it diverged.

        Reads the device every `divergence_check_every` steps (divergence test, progress bar) and once at the end.
        On a stop request it saves the resume state and raises Preempted, unless the run had already diverged.
        """
        pos = self.position
        if pos["perm"] is None:
            pos["perm"] = torch.randperm(len(self.train_labels), generator=self.generator, device=self.generator.device)
        self.model.train()
        self.step.start(pos["step_in_epoch"], *pos["sums"][:2])
        check_every = self.training["divergence_check_every"]
        last_shown, started, stopping = pos["step_in_epoch"], time.perf_counter(), False
        while pos["step_in_epoch"] < self.steps_per_epoch:
            if flag["signal"] is not None or (stop_after_updates is not None and self.updates_done >= stop_after_updates):
                stopping = True
                break
            i = pos["step_in_epoch"]
            self.train_step(pos["perm"][i * self.batch_size : (i + 1) * self.batch_size])
            pos["step_in_epoch"] += 1
            pos["sums"][2] += self.batch_size
            self.updates_done += 1
            if pos["step_in_epoch"] % check_every == 0:
                if self._diverged():
                    break
                bar.update(pos["step_in_epoch"] - last_shown)
                bar.set_postfix(loss=f"{float(self.step.last_loss):.3f}", refresh=False)
                last_shown = pos["step_in_epoch"]
        diverged = self._diverged() or (not stopping and not self._weights_finite())
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the epoch's one synchronisation: its time is the device's
        pos["epoch_time"] += time.perf_counter() - started
        bar.update(max(pos["step_in_epoch"] - last_shown, 0))
        if not diverged:
            pos["sums"][:2] = self.step.sums()
        if stopping and not diverged:
            self.checkpoints.save_resume_state("preempted")
            raise Preempted(f"pre-empted at epoch {pos['epoch']}, step {pos['step_in_epoch']}; checkpoint saved")
        return diverged

    def _weights_finite(self) -> bool:
        """False when an update left a non-finite weight (the run has then diverged, whatever the last loss said)."""
        return bool(torch.stack([p.detach().isfinite().all() for p in self.model.parameters()]).all())

    def _lr_at(self, update: int) -> float:
        """The learning rate of update `update` (what the scheduler set before it), for a diverged epoch's record."""
        return self.scheduler.base_lrs[0] * self.scheduler.lr_lambdas[0](update)

    def end_epoch(self, diverged: bool) -> None:
        """Evaluate when due, record the epoch, save its checkpoints and the resume state, then its metrics line."""
        pos = self.position
        epoch = pos["epoch"] + 1
        final = epoch == self.total_epochs
        test, eval_seconds = None, 0.0
        if not diverged and (final or epoch % self.training["eval_every"] == 0):
            images, labels = self.data.evaluation_split(final)
            started = time.perf_counter()
            test = evaluate(self.model, images, labels, self.mean, self.std, self.training["eval_batch_size"], self.device)
            eval_seconds = time.perf_counter() - started
            test["test_images"] = len(labels)
            diverged = not math.isfinite(test["test_nll"])
        pos["wall_time"] += pos["epoch_time"]
        update = pos["epoch"] * self.steps_per_epoch + pos["step_in_epoch"]
        if diverged:
            record = epoch_record(epoch, pos, update, self._lr_at(update), None, eval_seconds, diverged=True)
            self.status = "diverged"
        else:
            record = epoch_record(epoch, pos, self.scheduler.last_epoch, self.optimizer.param_groups[0]["lr"], test, eval_seconds)
        self.metrics.append(record)
        self.position = self._epoch_start(epoch, pos["wall_time"], pos["eval_time"] + eval_seconds)
        if not diverged:  # checkpoints and resume state only of finite runs; then the line, so it is never repeated
            self.checkpoints.save_epoch(epoch)
        append_jsonl(self.work_dir / "metrics.jsonl", record)
        print(epoch_line(record, self.total_epochs), flush=True)

    def finish(self) -> dict:
        """Publish the run (`RunCheckpoints.publish`): finished, or diverged."""
        return self.checkpoints.publish("diverged" if self.status == "diverged" else "finished")


def train_run(spec, train_path, test_path, meta_path, subset_path, run_dir, device="auto", threads=1, progress=True, stop_after_updates=None) -> dict:
    """Train (or resume) one run to its end and publish its outputs; see Trainer."""
    trainer = Trainer(spec, train_path, test_path, meta_path, subset_path, run_dir, device, threads, progress)
    return trainer.run(stop_after_updates=stop_after_updates)
