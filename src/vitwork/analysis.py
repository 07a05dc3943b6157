"""Per-run analyses at one checkpoint: the glue between checkpoints, data and the analysis libraries.

Each function writes one tidy CSV (columns in docs/architecture.md, "Analyses"). Long analyses are split into
units (a Hessian batch, a landscape row, a corruption) whose rows are appended to `<out>.partial` as each unit
ends, so a pre-empted job loses at most one unit and the retry continues. A diverged run's checkpoint has no
meaningful analysis: its table is written with the header only, and figures show the run as diverged.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from vitwork.augment import TrainAugment, eval_inputs
from vitwork.data import load_split
from vitwork.results import write_csv
from vitwork.devices import resolve_device
from vitwork.train import load_checkpoint_model

HESSIAN_COLUMNS = ["batch", "which", "rank", "value", "stderr", "method", "solve", "tol", "hvps", "iterations",
                   "converged", "seconds", "loss", "hvps_total"]
LANDSCAPE_COLUMNS = ["x", "y", "loss", "nll", "accuracy"]
FOURIER_COLUMNS = ["block_index", "block_name", "kind", "depth", "frequency", "delta_log_amplitude"]
VARIANCE_COLUMNS = ["block_index", "block_name", "kind", "depth", "variance"]
NOISE_COLUMNS = ["frequency", "acc", "clean_acc", "delta_acc"]
CORRUPTION_COLUMNS = ["corruption", "severity", "acc", "nll"]


class ResumableTable:
    """Rows computed unit by unit, appended to `<out>.partial` so a retry skips the finished units."""

    def __init__(self, out_csv, columns: list[str], unit_column: str):
        self.out = Path(out_csv)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.columns, self.unit_column = columns, unit_column
        self.rows: list[dict] = []
        if self.partial.exists():
            with open(self.partial, newline="") as handle:
                self.rows = list(csv.DictReader(handle))

    def done(self) -> set[str]:
        return {row[self.unit_column] for row in self.rows}

    def run(self, units: Iterable[tuple[object, Callable[[], list[dict]]]]) -> list[dict]:
        """Compute every unit not yet in the partial file; then publish the whole table and drop the partial."""
        done = self.done()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        for key, compute in units:
            if str(key) in done:
                continue
            rows = compute()
            new_file = not self.partial.exists()
            with open(self.partial, "a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns)
                if new_file:
                    writer.writeheader()
                writer.writerows([{c: row.get(c) for c in self.columns} for row in rows])
                handle.flush()
                os.fsync(handle.fileno())
            self.rows.extend({c: row.get(c) for c in self.columns} for row in rows)
            print(f"{self.unit_column} {key}: {len(rows)} rows", flush=True)
        write_csv(self.rows, self.out, self.columns)
        self.partial.unlink(missing_ok=True)
        return self.rows


def load_for_analysis(checkpoint, device: str, threads: int = 1):
    """(model in eval mode on the device, checkpoint info, device), or model None for a diverged run."""
    torch.set_num_threads(threads)
    device = resolve_device(device)
    model, info = load_checkpoint_model(checkpoint, device)
    return (None if info["status"] == "diverged" else model), info, device


def test_batches(test_path, info: dict, images: int | None, batch_size: int, device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The first `images` test images as normalised batches on the device, and their labels."""
    x, y = load_split(test_path)
    x, y = x[:images], y[:images]
    batches = [eval_inputs(torch.from_numpy(x[i : i + batch_size]).to(device), info["mean"], info["std"]) for i in range(0, len(y), batch_size)]
    return batches, torch.from_numpy(y).to(device)


def run_augmentation(info: dict) -> TrainAugment:
    """The training augmentation of the checkpoint's run."""
    return TrainAugment(info["run"]["training"], info["num_classes"], info["mean"], info["std"])


def augmented_training_batch(augment: TrainAugment, images, labels, subset, batch_size: int, seed: int):
    """One training mini-batch of the run's data with its training augmentation, fixed by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    chosen = subset[torch.randperm(len(subset), generator=generator)[:batch_size].numpy()]
    return augment(torch.from_numpy(images[chosen]), torch.from_numpy(labels[chosen]), generator)


def hessian_spectrum_table(checkpoint, train_path, subset_path, settings: dict, out_csv, device="auto", threads=1):
    """Eigenvalues of the augmented training loss (+ weight decay) over `settings['batches']` batches, resumable."""
    from vitwork.hessian import batch_spectrum

    model, info, device = load_for_analysis(checkpoint, device, threads)
    if model is None:
        return write_csv([], out_csv, HESSIAN_COLUMNS)
    spec = info["run"]
    images, labels = load_split(train_path)
    subset = np.load(subset_path)
    batch_size = settings["batch_size"] or spec["optimizer"]["batch_size"]
    weight_decay = spec["optimizer"]["hparams"].get("weight_decay", 0.0)
    augment = run_augmentation(info)  # built once: RandAugment keeps one transform per magnitude

    def unit(batch: int):
        seed = settings["seed"] * 1_000_003 + batch
        inputs, targets = augmented_training_batch(augment, images, labels, subset, batch_size, seed)
        rows = batch_spectrum(
            model, inputs.to(device), targets.to(device), weight_decay=weight_decay, decay=spec["optimizer"]["decay"], method=settings["method"],
            k=settings["k"], tol=settings["tol"], max_hvps=settings["max_hvps"], seed=seed, trace_probes=settings["trace_probes"],
        )
        return [{"batch": batch, **row} for row in rows]

    table = ResumableTable(out_csv, HESSIAN_COLUMNS, "batch")
    return table.run((b, lambda b=b: unit(b)) for b in range(settings["batches"]))


def loss_landscape_table(checkpoint, train_path, subset_path, settings: dict, out_csv, device="auto", threads=1):
    """Loss (NLL + weight decay) and accuracy on a 2-D plane of filter-normalised directions, row by row."""
    from vitwork.landscape import dataset_loss_fn, grid_coords, loss_landscape_2d, random_directions

    model, info, device = load_for_analysis(checkpoint, device, threads)
    if model is None:
        return write_csv([], out_csv, LANDSCAPE_COLUMNS)
    images, labels = load_split(train_path)
    chosen = np.load(subset_path)[: settings["images"]]
    inputs = eval_inputs(torch.from_numpy(images[chosen]), info["mean"], info["std"]).to(device)
    loss_fn = dataset_loss_fn(inputs, torch.from_numpy(labels[chosen]).to(device), settings["batch_size"])
    directions = [{k: v.to(device) for k, v in d.items()} for d in random_directions(model.cpu(), settings["seed"])]
    model.to(device)
    coords = grid_coords(settings["points"], settings["extent"])
    weight_decay = info["run"]["optimizer"]["hparams"].get("weight_decay", 0.0)

    def unit(y: float):
        return loss_landscape_2d(model, loss_fn, directions, (coords, np.array([y])), weight_decay=weight_decay, decay=info["run"]["optimizer"]["decay"])

    table = ResumableTable(out_csv, LANDSCAPE_COLUMNS, "y")
    return table.run((float(y), lambda y=y: unit(y)) for y in coords)


def feature_table(kind: str, checkpoint, test_path, settings: dict, out_csv, device="auto", threads=1):
    """Fourier (`kind='fourier'`) or feature-map variance (`'feature_variance'`) table over test images."""
    from vitwork.fourier import feature_variance_table, fourier_table

    table_fn, columns = {"fourier": (fourier_table, FOURIER_COLUMNS), "feature_variance": (feature_variance_table, VARIANCE_COLUMNS)}[kind]
    model, info, device = load_for_analysis(checkpoint, device, threads)
    rows = []
    if model is not None:
        batches, _ = test_batches(test_path, info, settings["images"], settings["batch_size"], device)
        rows = table_fn(model, batches, device)
    write_csv(rows, out_csv, columns)
    return rows


def noise_frequency_table(checkpoint, test_path, settings: dict, out_csv, device="auto", threads=1):
    """Accuracy under band-passed sign noise per frequency (same noise draws for every model)."""
    from vitwork.fourier import noise_frequency_accuracy

    model, info, device = load_for_analysis(checkpoint, device, threads)
    rows = []
    if model is not None:
        batches, labels = test_batches(test_path, info, settings["images"], settings["batch_size"], device)
        freqs = [f * np.pi for f in settings["frequencies"]]
        rows = noise_frequency_accuracy(model, batches, labels, freqs=freqs, eps=settings["eps"], seed=settings["seed"], device=device)
    write_csv(rows, out_csv, NOISE_COLUMNS)
    return rows


def corruption_table(checkpoint, test_path, corruption_folder, settings: dict, official: bool, out_csv, device="auto", threads=1):
    """Accuracy and NLL on the clean test images and on every (corruption, severity) set, corruption by corruption."""
    from vitwork.corruptions import CORRUPTIONS
    from vitwork.robustness import evaluate_arrays, evaluate_corruptions

    model, info, device = load_for_analysis(checkpoint, device, threads)
    if model is None:
        return write_csv([], out_csv, CORRUPTION_COLUMNS)
    images, labels = load_split(test_path)
    images, labels = images[: settings["images"]], labels[: settings["images"]]
    # official files come in the official test order with their own labels.npy; generated ones follow our test split
    corruption_labels = None if official else labels

    def clean():
        return [{"corruption": "clean", "severity": 0, **evaluate_arrays(model, images, labels, info["mean"], info["std"], settings["batch_size"], device)}]

    def unit(name: str):
        return evaluate_corruptions(model, corruption_folder, corruption_labels, info["mean"], info["std"], names=[name], batch_size=settings["batch_size"], device=device)

    table = ResumableTable(out_csv, CORRUPTION_COLUMNS, "corruption")
    return table.run([("clean", clean)] + [(name, lambda name=name: unit(name)) for name in CORRUPTIONS])
