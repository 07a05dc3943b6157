"""Robustness evaluation on corrupted test sets (CIFAR-100-C): accuracy and NLL per (corruption, severity).

"Robustness" in the study is the mean accuracy over the 75 corrupted sets (15 corruptions x 5
severities), not the mean corruption error (mCE).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from vitwork.corruptions import CORRUPTIONS, SEVERITIES, load_corruption, load_labels


def evaluate_arrays(
    model: torch.nn.Module,
    images_uint8: np.ndarray,
    labels: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Top-1 accuracy (fraction) and mean NLL of `model` on uint8 N x 32 x 32 x 3 images (numpy or torch, any device).

    The model runs in eval mode (its previous mode is restored afterwards) under torch.inference_mode, with
    bf16 autocast on CUDA; `mean` and `std` are per-channel statistics in [0, 1] units; `model` must already
    be on `device`. Training evaluates its test split with this function too.
    """
    import torch  # deferred: figure jobs import this module for mean_corruption_accuracy, without torch
    import torch.nn.functional as F

    from vitwork.augment import eval_inputs
    from vitwork.devices import autocast

    if not isinstance(images_uint8, torch.Tensor):
        images_uint8 = np.asarray(images_uint8)
    if not isinstance(labels, torch.Tensor):
        labels = np.asarray(labels)
    if images_uint8.ndim != 4 or images_uint8.shape[-1] != len(mean) or len(images_uint8) != len(labels):
        raise ValueError(
            f"expected N x H x W x {len(mean)} images and N labels, got {images_uint8.shape} and {labels.shape}"
        )
    if len(labels) == 0:
        raise ValueError("cannot evaluate on an empty set")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    correct = 0
    total_nll = torch.zeros((), dtype=torch.float64, device=device)
    try:
        with torch.inference_mode():
            for start in range(0, len(labels), batch_size):
                batch = images_uint8[start : start + batch_size]
                # numpy batches are copied: memory-mapped corruption files are read-only, which torch warns about
                batch = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.array(batch))
                inputs = eval_inputs(batch.to(device), mean, std)
                targets = torch.as_tensor(labels[start : start + batch_size]).to(device, torch.long)
                with autocast(device):
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
    positions: np.ndarray | None = None,
) -> list[dict]:
    """Evaluate on every (corruption, severity) set of an official-layout folder.

    `labels`: the N labels of the images the folder was generated from; None reads the folder's
    `labels.npy` (required for the official CIFAR-100-C files, whose image order is the official test
    order). `positions`: evaluate only these images of each set (a sample of the official files); None = all.
    Returns rows {"corruption", "severity", "acc", "nll"} in (corruption, severity) order.
    """
    if labels is None:
        labels = load_labels(folder)
    labels = np.asarray(labels)
    n = len(labels)
    rows = []
    for name in names:
        array = load_corruption(folder, name, n)
        for severity in severities:
            start = (severity - 1) * n
            block = array[start : start + n] if positions is None else array[start + np.asarray(positions)]
            block_labels = labels if positions is None else labels[positions]
            metrics = evaluate_arrays(model, block, block_labels, mean, std, batch_size=batch_size, device=device)
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
