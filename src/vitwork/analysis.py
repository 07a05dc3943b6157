"""Per-run analyses at one checkpoint: the glue between checkpoints, data and the analysis libraries.

Each function writes one tidy CSV (columns in docs/architecture.md, "Analyses"). Long analyses are split into
units (a Hessian batch, a landscape row, a corruption) whose rows are appended to `<out>.partial` as each unit
ends, so a pre-empted job loses at most one unit and the retry continues. A diverged run's checkpoint has no
meaningful analysis: its table is written with the header only, and figures show the run as diverged.

Samples. An analysis that uses fewer images than its pool (the test split, or the run's training subset for the
landscape) takes a class-stratified seeded sample (`vitwork.data.stratified_sample`), which depends only on the
pool's labels, the size and the analysis seed: every model compared sees the same images, also when the split is
stored in class order. Every table records it in the columns `SAMPLE_COLUMNS` (constant over the table; for the
Hessian, per batch): ``sample_hash`` (first 16 hex digits of the SHA-256 of the int64 indices into the prepared
split), ``sample_size``, ``sample_classes`` (classes present) and ``pool_size`` (images it was drawn from).
"""

from __future__ import annotations

import csv
import hashlib
import os
import zlib
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from vitwork.augment import TrainAugment, eval_inputs
from vitwork.data import load_indices, load_split, stratified_sample
from vitwork.results import write_csv
from vitwork.devices import resolve_device
from vitwork.train import load_checkpoint_model

SAMPLE_COLUMNS = ["sample_hash", "sample_size", "sample_classes", "pool_size"]
HESSIAN_COLUMNS = ["batch", "part", "which", "rank", "value", "sign", "stderr", "method", "solve", "tol", "hvps",
                   "iterations", "converged", "seconds", "loss", "nll", "regulariser", "hvps_total",
                   "checkpoint_epoch", *SAMPLE_COLUMNS]
LANDSCAPE_COLUMNS = ["x", "y", "loss", "nll", "regulariser", "accuracy", "objective", *SAMPLE_COLUMNS]
FOURIER_COLUMNS = ["block_index", "block_name", "kind", "depth", "frequency", "delta_log_amplitude", *SAMPLE_COLUMNS]
VARIANCE_COLUMNS = ["block_index", "block_name", "kind", "depth", "variance", *SAMPLE_COLUMNS]
NOISE_COLUMNS = ["frequency", "acc", "clean_acc", "delta_acc", *SAMPLE_COLUMNS]
CORRUPTION_COLUMNS = ["corruption", "severity", "acc", "nll", *SAMPLE_COLUMNS]
LANDSCAPE_OBJECTIVES = ("train", "clean")


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


# --- samples ---------------------------------------------------------------------------------------------------


def sample_record(indices: np.ndarray, labels: np.ndarray, pool_size: int) -> dict:
    """The `SAMPLE_COLUMNS` of a sample: hash of its indices into the split, size, classes present, pool size."""
    indices = np.ascontiguousarray(indices, dtype="<i8")
    return {"sample_hash": hashlib.sha256(indices.tobytes()).hexdigest()[:16], "sample_size": int(indices.size),
            "sample_classes": int(np.unique(labels[indices]).size), "pool_size": int(pool_size)}


def analysis_sample(labels: np.ndarray, size: int | None, seed: int, pool: np.ndarray | None = None
                    ) -> tuple[np.ndarray, dict]:
    """(indices into the split, sample record) of a class-stratified seeded sample of `size` images of the pool.

    `pool`: the split indices it is drawn from (default the whole split, e.g. a run's training subset).
    """
    pool = np.arange(len(labels), dtype=np.int64) if pool is None else np.asarray(pool, dtype=np.int64)
    indices = pool[stratified_sample(labels[pool], size, seed)]
    return indices, sample_record(indices, labels, len(pool))


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose of an analysis (independent streams from one configured seed)."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(purpose.encode())]).generate_state(1, np.uint64)[0] >> 1)


# --- checkpoints and data --------------------------------------------------------------------------------------


def load_for_analysis(checkpoint, device: str, threads: int = 1):
    """(model in eval mode on the device, checkpoint info, device), or model None for a diverged run."""
    torch.set_num_threads(threads)
    device = resolve_device(device)
    model, info = load_checkpoint_model(checkpoint, device)
    return (None if info["status"] == "diverged" else model), info, device


def test_sample(test_path, settings: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(images, labels, indices, record) of the test split and its analysis sample (`images`, `seed` settings)."""
    images, labels = load_split(test_path)
    indices, record = analysis_sample(labels, settings["images"], settings["seed"])
    return images, labels, indices, record


def normalised_batches(images: np.ndarray, indices: np.ndarray, info: dict, batch_size: int, device
                       ) -> list[torch.Tensor]:
    """The images at `indices` as normalised NCHW batches on the device."""
    return [eval_inputs(torch.from_numpy(images[indices[i : i + batch_size]]).to(device), info["mean"], info["std"])
            for i in range(0, len(indices), batch_size)]


def run_augmentation(info: dict) -> TrainAugment:
    """The training augmentation of the checkpoint's run."""
    return TrainAugment(info["run"]["training"], info["num_classes"], info["mean"], info["std"])


def augment_images(augment: TrainAugment, images: np.ndarray, labels: np.ndarray, chosen: np.ndarray,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's training augmentation of the images at `chosen`, every draw from `generator`."""
    return augment(torch.from_numpy(images[chosen]), torch.from_numpy(labels[chosen]), generator)


def augmented_training_batch(augment: TrainAugment, images, labels, subset, batch_size: int, seed: int):
    """(inputs, soft targets, indices) of one training mini-batch of the run's subset, augmented, fixed by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    chosen = subset[torch.randperm(len(subset), generator=generator)[:batch_size].numpy()]
    inputs, targets = augment_images(augment, images, labels, chosen, generator)
    return inputs, targets, chosen


# --- the analyses ----------------------------------------------------------------------------------------------


def hessian_spectrum_table(checkpoint, train_path, subset_path, settings: dict, out_csv, device="auto", threads=1):
    """Eigenvalues and traces of the objective and of its NLL part over `settings['batches']` augmented training
    batches, resumable by batch; each row also says the checkpoint's epoch and the batch's sample."""
    from vitwork.hessian import batch_spectrum

    model, info, device = load_for_analysis(checkpoint, device, threads)
    if model is None:
        return write_csv([], out_csv, HESSIAN_COLUMNS)
    spec = info["run"]
    images, labels = load_split(train_path)
    subset = load_indices(subset_path)
    batch_size = settings["batch_size"] or spec["optimizer"]["batch_size"]
    weight_decay = spec["optimizer"]["hparams"].get("weight_decay", 0.0)
    augment = run_augmentation(info)  # built once: RandAugment keeps one transform per magnitude

    def unit(batch: int):
        seed = settings["seed"] * 1_000_003 + batch
        inputs, targets, chosen = augmented_training_batch(augment, images, labels, subset, batch_size, seed)
        rows = batch_spectrum(
            model, inputs.to(device), targets.to(device), weight_decay=weight_decay, decay=spec["optimizer"]["decay"],
            method=settings["method"], k=settings["k"], tol=settings["tol"], max_hvps=settings["max_hvps"], seed=seed,
            trace_probes=settings["trace_probes"],
        )
        extra = {"batch": batch, "checkpoint_epoch": info["epoch"], **sample_record(chosen, labels, len(subset))}
        return [{**row, **extra} for row in rows]

    table = ResumableTable(out_csv, HESSIAN_COLUMNS, "batch")
    return table.run((b, lambda b=b: unit(b)) for b in range(settings["batches"]))


def landscape_data(info: dict, images: np.ndarray, labels: np.ndarray, chosen: np.ndarray, objective: str,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) the landscape's loss is averaged over, built once so every grid point sees the same data.

    ``train`` (the paper's): the images in a seeded random order (so a batch mixes classes as training's do), in
    batches of the recipe's size through the run's training augmentation (crop, flip, RandAugment, mixup/cutmix,
    label smoothing), every draw from one generator seeded by ``seed``: soft targets. ``clean``: the images
    without augmentation, with their labels.
    """
    if objective not in LANDSCAPE_OBJECTIVES:
        raise ValueError(f"landscape objective must be one of {LANDSCAPE_OBJECTIVES}, got {objective!r}")
    if objective == "clean":
        inputs = eval_inputs(torch.from_numpy(images[chosen]), info["mean"], info["std"])
        return inputs, torch.from_numpy(labels[chosen])
    generator = torch.Generator().manual_seed(derived_seed(seed, "landscape batches"))
    order = chosen[torch.randperm(len(chosen), generator=generator).numpy()]
    augment, batch = run_augmentation(info), info["run"]["optimizer"]["batch_size"]
    parts = [augment_images(augment, images, labels, order[i : i + batch], generator)
             for i in range(0, len(order), batch)]
    return torch.cat([inputs for inputs, _ in parts]), torch.cat([targets for _, targets in parts])


def loss_landscape_table(checkpoint, train_path, subset_path, settings: dict, out_csv, device="auto", threads=1):
    """Loss (NLL + weight-decay term, and each part) and accuracy on a 2-D plane of filter-normalised directions,
    row by row, over a fixed class-stratified sample of the run's training subset (`landscape_data`)."""
    from vitwork.landscape import dataset_loss_fn, grid_coords, loss_landscape_2d, random_directions

    model, info, device = load_for_analysis(checkpoint, device, threads)
    if model is None:
        return write_csv([], out_csv, LANDSCAPE_COLUMNS)
    images, labels = load_split(train_path)
    chosen, record = analysis_sample(labels, settings["images"], settings["seed"], pool=load_indices(subset_path))
    inputs, targets = landscape_data(info, images, labels, chosen, settings["objective"], settings["seed"])
    loss_fn = dataset_loss_fn(inputs.to(device), targets.to(device), settings["batch_size"])
    directions = [{k: v.to(device) for k, v in d.items()} for d in random_directions(model.cpu(), settings["seed"])]
    model.to(device)
    coords = grid_coords(settings["points"], settings["extent"])
    optimizer = info["run"]["optimizer"]
    extra = {"objective": settings["objective"], **record}

    def unit(y: float):
        rows = loss_landscape_2d(model, loss_fn, directions, (coords, np.array([y])),
                                 weight_decay=optimizer["hparams"].get("weight_decay", 0.0), decay=optimizer["decay"])
        return [{**row, **extra} for row in rows]

    table = ResumableTable(out_csv, LANDSCAPE_COLUMNS, "y")
    return table.run((float(y), lambda y=y: unit(y)) for y in coords)


def feature_table(kind: str, checkpoint, test_path, settings: dict, out_csv, device="auto", threads=1):
    """Fourier (`kind='fourier'`) or feature-map variance (`'feature_variance'`) table over the test sample."""
    from vitwork.fourier import feature_variance_table, fourier_table

    if kind == "fourier":
        table_fn, columns, option = fourier_table, FOURIER_COLUMNS, {"highest_frequency": settings["highest_frequency"]}
    elif kind == "feature_variance":
        table_fn, columns, option = feature_variance_table, VARIANCE_COLUMNS, {"estimator": settings["estimator"]}
    else:
        raise ValueError(f"kind must be fourier or feature_variance, got {kind!r}")
    model, info, device = load_for_analysis(checkpoint, device, threads)
    rows = []
    if model is not None:
        images, _, indices, record = test_sample(test_path, settings)
        batches = normalised_batches(images, indices, info, settings["batch_size"], device)
        rows = [{**row, **record} for row in table_fn(model, batches, device, **option)]
    write_csv(rows, out_csv, columns)
    return rows


def noise_frequency_table(checkpoint, test_path, settings: dict, out_csv, device="auto", threads=1):
    """Accuracy under band-passed sign noise per frequency on the test sample (same noise draws for every model)."""
    from vitwork.fourier import noise_frequency_accuracy

    model, info, device = load_for_analysis(checkpoint, device, threads)
    rows = []
    if model is not None:
        images, labels, indices, record = test_sample(test_path, settings)
        batches = normalised_batches(images, indices, info, settings["batch_size"], device)
        freqs = [f * np.pi for f in settings["frequencies"]]
        rows = noise_frequency_accuracy(model, batches, torch.from_numpy(labels[indices]).to(device), freqs=freqs,
                                        eps=settings["eps"], seed=settings["seed"], device=device)
        rows = [{**row, **record} for row in rows]
    write_csv(rows, out_csv, NOISE_COLUMNS)
    return rows


# --- corruptions -----------------------------------------------------------------------------------------------


def corruption_sample(test_path, images: int | None, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(test images, labels, sample indices): the images the generated CIFAR-C sets are made of and evaluated on."""
    test_images, labels = load_split(test_path)
    return test_images, labels, stratified_sample(labels, images, seed)


def write_generated_corruption(test_path, name: str, images: int | None, seed: int, folder) -> int:
    """Generate one corruption (5 severities) of the test sample into `folder` (official layout); returns N."""
    from vitwork.corruptions import generate_corruption, write_corruption

    test_images, _, indices = corruption_sample(test_path, images, seed)
    write_corruption(folder, name, generate_corruption(test_images[indices], name, seed))
    return len(indices)


def write_generated_labels(test_path, images: int | None, seed: int, folder) -> int:
    """Write `labels.npy` of the generated sets: the test sample's labels; returns N."""
    from vitwork.corruptions import write_labels

    _, labels, indices = corruption_sample(test_path, images, seed)
    write_labels(folder, labels[indices])
    return len(indices)


def corruption_table(checkpoint, test_path, corruption_folder, settings: dict, official: bool, out_csv, device="auto",
                     threads=1):
    """Accuracy and NLL on the clean test sample and on every (corruption, severity) set, corruption by corruption.

    Generated sets hold exactly the test sample (`write_generated_corruption`; their labels are checked against
    it). The official files hold the whole official test set in its own order: the same-size stratified sample of
    their `labels.npy` is evaluated, and the clean row is the sample of the prepared test split (the same images
    when the split is torchvision's CIFAR-100, whose order the official files follow).
    """
    from vitwork.corruptions import CORRUPTIONS, load_labels
    from vitwork.robustness import evaluate_arrays, evaluate_corruptions

    model, info, device = load_for_analysis(checkpoint, device, threads)
    if model is None:
        return write_csv([], out_csv, CORRUPTION_COLUMNS)
    images, labels, indices = corruption_sample(test_path, settings["images"], settings["seed"])
    record = sample_record(indices, labels, len(labels))
    folder_labels = load_labels(corruption_folder)
    if official:
        positions = stratified_sample(folder_labels, settings["images"], settings["seed"])
    else:
        positions = None
        if not np.array_equal(folder_labels, labels[indices]):
            raise ValueError(f"{corruption_folder}: its labels.npy is not the labels of the configured test sample "
                             f"(images {settings['images']}, seed {settings['seed']}); regenerate the corruptions")

    def clean():
        metrics = evaluate_arrays(model, images[indices], labels[indices], info["mean"], info["std"],
                                  settings["batch_size"], device)
        return [{"corruption": "clean", "severity": 0, **metrics, **record}]

    def unit(name: str):
        rows = evaluate_corruptions(model, corruption_folder, folder_labels, info["mean"], info["std"], names=[name],
                                    batch_size=settings["batch_size"], device=device, positions=positions)
        return [{**row, **record} for row in rows]

    table = ResumableTable(out_csv, CORRUPTION_COLUMNS, "corruption")
    return table.run([("clean", clean)] + [(name, lambda name=name: unit(name)) for name in CORRUPTIONS])


# --- one run's analyses in one process -------------------------------------------------------------------------


def analysis_table(analysis: str, checkpoint, settings: dict, out_csv, *, train=None, subset=None, test=None,
                   corruption_folder=None, official: bool = False, device="auto", threads=1) -> list[dict]:
    """Write the table of one analysis, named as in the config, with the function its separate rule's script calls.

    The combined rule (config `combined_jobs`) calls this for every analysis of a run in one process; each
    analysis reads its own checkpoint and data and draws only from its own seeded generators, so its table is
    the one its separate job writes. (The separate rules' scripts call those functions directly: each knows
    its analysis.)
    """
    if analysis in ("hessian", "landscape"):
        table = hessian_spectrum_table if analysis == "hessian" else loss_landscape_table
        return table(checkpoint, train, subset, settings, out_csv, device, threads)
    if analysis in ("fourier", "feature_variance"):
        return feature_table(analysis, checkpoint, test, settings, out_csv, device, threads)
    if analysis == "noise_frequency":
        return noise_frequency_table(checkpoint, test, settings, out_csv, device, threads)
    if analysis == "corruptions":
        return corruption_table(checkpoint, test, corruption_folder, settings, official, out_csv, device, threads)
    raise ValueError(f"unknown analysis {analysis!r}; expected hessian, landscape, fourier, feature_variance, "
                     "noise_frequency or corruptions")
