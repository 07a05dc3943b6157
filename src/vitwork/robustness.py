"""Robustness evaluation on corrupted test sets (CIFAR-100-C): accuracy and NLL per (corruption, severity).

"Robustness" in the study is the mean accuracy over the 75 corrupted sets (15 corruptions x 5
severities), not the mean corruption error (mCE).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vitwork.corruptions import CORRUPTIONS, SEVERITIES, load_corruption, load_labels


def normalise_batch(images: np.ndarray, mean: torch.Tensor, std: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 N x H x W x C images to a float N x C x H x W tensor on `device`, standardised per channel."""
    batch = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True)).to(device)
    batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
    return batch.sub_(mean).div_(std)


def evaluate_arrays(
    model: torch.nn.Module,
    images_uint8: np.ndarray,
    labels: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Top-1 accuracy (fraction) and mean NLL of `model` on uint8 N x 32 x 32 x 3 images.

    The model runs in eval mode (its previous mode is restored afterwards) under torch.inference_mode;
    `mean` and `std` are per-channel statistics in [0, 1] units; `model` must already be on `device`.
    """
    images_uint8 = np.asarray(images_uint8)
    labels = np.asarray(labels)
    if images_uint8.ndim != 4 or images_uint8.shape[-1] != len(mean) or len(images_uint8) != len(labels):
        raise ValueError(
            f"expected N x H x W x {len(mean)} images and N labels, got {images_uint8.shape} and {labels.shape}"
        )
    if len(labels) == 0:
        raise ValueError("cannot evaluate on an empty set")
    device = torch.device(device)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    was_training = model.training
    model.eval()
    correct = 0
    total_nll = torch.zeros((), dtype=torch.float64, device=device)
    try:
        with torch.inference_mode():
            for start in range(0, len(labels), batch_size):
                inputs = normalise_batch(images_uint8[start : start + batch_size], mean_t, std_t, device)
                targets = torch.as_tensor(labels[start : start + batch_size], dtype=torch.long, device=device)
                logits = model(inputs).float()
                total_nll += F.cross_entropy(logits, targets, reduction="sum").double()
                correct += int((logits.argmax(dim=1) == targets).sum())
    finally:
        model.train(was_training)
    return {"acc": correct / len(labels), "nll": float(total_nll) / len(labels)}


def evaluate_corruptions(
    model: torch.nn.Module,
    folder: str | os.PathLike,
    labels: np.ndarray | None,
    mean: Sequence[float],
    std: Sequence[float],
    names: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> list[dict]:
    """Evaluate on every (corruption, severity) set of an official-layout folder.

    `labels`: the N labels of the images the folder was generated from; None reads the folder's
    `labels.npy` (required for the official CIFAR-100-C files, whose image order is the official test
    order). Returns rows {"corruption", "severity", "acc", "nll"} in (corruption, severity) order.
    """
    if labels is None:
        labels = load_labels(folder)
    labels = np.asarray(labels)
    n = len(labels)
    rows = []
    for name in names:
        array = load_corruption(folder, name, n)
        for severity in severities:
            block = array[(severity - 1) * n : severity * n]
            metrics = evaluate_arrays(model, block, labels, mean, std, batch_size=batch_size, device=device)
            rows.append({"corruption": name, "severity": int(severity), **metrics})
    return rows


def mean_corruption_accuracy(rows: Sequence[dict]) -> float:
    """Robustness: the mean accuracy over the evaluated (corruption, severity) sets (75 for the benchmark)."""
    if not rows:
        raise ValueError("no corruption results to average")
    keys = [(row["corruption"], row["severity"]) for row in rows]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate (corruption, severity) rows")
    return float(np.mean([row["acc"] for row in rows]))
