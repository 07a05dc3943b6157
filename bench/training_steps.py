"""Shared by the benchmarks: the pipeline's training step beside a plain PyTorch loop, timed in alternating blocks.

The pipeline's step is `vitwork.train.Trainer.train_step` (gather the batch, `TrainStep`: augmentation, mixing,
soft cross-entropy, clipping, AdamW, schedule, on-device running sums) of a run spec taken from a config, so the
figures are the pipeline's own. The plain loop is what a hand-written script does: forward, cross-entropy, backward,
AdamW step on images normalised once in advance, on the same model object, device, batch size, precision and memory
format.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from vitwork.augment import eval_inputs  # noqa: E402
from vitwork.config import selection_run_specs  # noqa: E402
from vitwork.data import prepare_dataset, write_subset  # noqa: E402
from vitwork.devices import autocast  # noqa: E402
from vitwork.train import Trainer  # noqa: E402

Step = Callable[[torch.Tensor], None]


def recipe_spec(config: dict, model_name: str, recipe: str, training: dict | None = None, arch: str | None = None, kwargs: dict | None = None) -> dict:
    """The run spec of `model_name` under `recipe` (fraction 1, seed 0) exactly as `config` has it.

    `training` overrides keys of the run's training section (precision, memory format, compile); `arch` and
    `kwargs` replace the model (the micro models of a smoke run).
    """
    if model_name not in config["models"]:
        raise KeyError(f"models.{model_name}: not in the config (defined: {', '.join(sorted(config['models']))})")
    if recipe not in config["optimizers"]:
        raise KeyError(f"optimizers.{recipe}: not in the config (defined: {', '.join(sorted(config['optimizers']))})")
    selection = {"models": [model_name], "optimizers": [recipe], "fractions": [1.0], "seeds": [0]}
    spec = copy.deepcopy(selection_run_specs(config, selection)[0])
    spec["training"].update(training or {})
    if arch is not None:
        spec["model"]["arch"] = arch
    if kwargs is not None:
        spec["model"]["kwargs"] = dict(kwargs)
    return spec


@dataclass(frozen=True)
class DataFiles:
    """A prepared dataset (the pipeline's canonical arrays) and its full training subset."""

    train: Path
    test: Path
    meta: Path
    subset: Path


def prepare_data(folder: Path, imagefolder: str | None = None, num_classes: int = 100, train_per_class: int = 20, test_per_class: int = 10) -> DataFiles:
    """Synthetic images (`vitwork.synthetic`) or a real ImageFolder tree, written as the pipeline writes them."""
    folder = Path(folder)
    if imagefolder:
        dataset = {"source": "imagefolder", "root": str(imagefolder)}
    else:
        dataset = {"source": "synthetic", "synthetic": {"num_classes": num_classes, "train_per_class": train_per_class, "test_per_class": test_per_class, "seed": 0}}
    files = DataFiles(folder / "train.npz", folder / "test.npz", folder / "meta.json", folder / "subset.npy")
    prepare_dataset(dataset, files.train, files.test, files.meta)
    write_subset(files.train, 1.0, 0, files.subset)
    return files


def build_trainer(spec: dict, data: DataFiles, run_dir: Path, device: str, threads: int) -> Trainer:
    """The pipeline's Trainer for `spec` (no progress bar), its model in training mode."""
    trainer = Trainer(spec, data.train, data.test, data.meta, data.subset, run_dir, device, threads, progress=False)
    trainer.model.train()
    return trainer


class PlainLoop:
    """Forward, cross-entropy, backward, AdamW step on pre-normalised images: the reference a ratio is taken against.

    The trainer's own model object (its stochastic depth is part of the model, so it runs in both), with a plain
    torch AdamW of the run's learning rate and weight decay, on the same device, precision and memory format; no
    augmentation, mixing, label smoothing, clipping, schedule or running sums.
    """

    def __init__(self, trainer: Trainer):
        spec = trainer.spec
        self.device, self.precision = trainer.device, trainer.step.precision
        self.model = trainer.model  # uncompiled: a compiled trainer's ratio is not taken
        hparams = spec["optimizer"]["hparams"]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=hparams["lr"], weight_decay=hparams.get("weight_decay", 0.0))
        memory_format = torch.channels_last if trainer.channels_last else torch.contiguous_format
        images = eval_inputs(trainer.train_images.to(self.device), trainer.mean, trainer.std)
        self.images = images.contiguous(memory_format=memory_format)
        self.labels = trainer.train_labels.to(self.device)

    def __call__(self, indices: torch.Tensor) -> None:
        with autocast(self.device, self.precision):
            logits = self.model(self.images[indices])
        loss = F.cross_entropy(logits.float(), self.labels[indices])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def augmentation_only(trainer: Trainer, seed: int = 1) -> Step:
    """The part of the pipeline's step before the model: gather the batch, augment and mix it (its own generator)."""
    generator = torch.Generator(device=trainer.train_images.device).manual_seed(seed)

    def step(indices: torch.Tensor) -> None:
        images, labels = trainer.train_images[indices], trainer.train_labels[indices]
        trainer.augment(images.to(trainer.device), labels.to(trainer.device), generator)

    return step


def clipping_only(trainer: Trainer) -> Step:
    """The step's gradient clipping alone, on the gradients the last update left (its cost does not depend on them)."""
    parameters = [p for p in trainer.model.parameters() if p.requires_grad]

    def step(indices: torch.Tensor) -> None:
        torch.nn.utils.clip_grad_norm_(parameters, trainer.training["grad_clip_norm"])

    return step


def random_batches(trainer: Trainer, count: int, seed: int = 0) -> list[torch.Tensor]:
    """`count` batches of distinct training indices of the trainer's batch size, where its images live."""
    n, device = len(trainer.train_labels), trainer.train_images.device
    generator = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=generator)[: trainer.batch_size].to(device) for _ in range(count)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_block(step: Step, batches: list[torch.Tensor], device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to run `step` on every batch, the device's queue drained before
    and after. On a shared CPU the process's CPU time is the steadier figure: other processes' load barely moves it."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for indices in batches:
        step(indices)
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def alternate(steps: dict[str, Step], batches: list[torch.Tensor], blocks: int, device: torch.device) -> dict[str, dict[str, list[float]]]:
    """{"wall": {step name: seconds per block}, "cpu": {...}}, the steps taking turns block by block (the order
    reversed every other block), so a change in the machine's load hits all of them alike."""
    seconds: dict[str, dict[str, list[float]]] = {"wall": {name: [] for name in steps}, "cpu": {name: [] for name in steps}}
    names = list(steps)
    for block in range(blocks):
        for name in names if block % 2 == 0 else names[::-1]:
            wall, cpu = time_block(steps[name], batches, device)
            seconds["wall"][name].append(wall)
            seconds["cpu"][name].append(cpu)
    return seconds


def fastest(seconds: list[float]) -> float:
    """The fastest block's seconds: a shared machine only ever adds time to a block, so the least disturbed block is
    the best estimate of each step's own cost (timeit's rule), and ratios of fastest blocks are the steadiest."""
    return min(seconds)


def ratio(reference: list[float], measured: list[float]) -> float:
    """How fast `measured` runs relative to `reference`: fastest reference block / fastest measured block."""
    return fastest(reference) / fastest(measured)


def images_per_second(seconds: list[float], images_per_block: int) -> float:
    """Images/s of the fastest block."""
    return images_per_block / fastest(seconds)


def peak_memory_mib(device: torch.device) -> float | None:
    """The device's peak allocated memory since the last reset, in MiB (None off CUDA: no allocator statistics)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
