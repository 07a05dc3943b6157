"""The official CIFAR-10-C / CIFAR-100-C folder layout: `<corruption>.npy` (5N x 32 x 32 x 3 uint8,
severity 1 first) and `labels.npy` (5N labels, the test labels repeated once per severity)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from vitwork.io import InputFileError, atomic_path

SEVERITIES = (1, 2, 3, 4, 5)
IMAGE_SHAPE = (32, 32, 3)


def corruption_path(folder: str | os.PathLike, name: str) -> Path:
    """Path of one corruption's array in an official-layout folder."""
    return Path(folder) / f"{name}.npy"


def labels_path(folder: str | os.PathLike) -> Path:
    """Path of the labels array in an official-layout folder."""
    return Path(folder) / "labels.npy"


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """np.save through a temporary file renamed into place, so readers never see a partial file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def write_corruption(folder: str | os.PathLike, name: str, array: np.ndarray) -> Path:
    """Write one corruption's 5N x 32 x 32 x 3 uint8 array as `<folder>/<name>.npy` (atomically)."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1:] != IMAGE_SHAPE or len(array) % 5:
        raise ValueError(f"{name}: expected a uint8 array of shape (5*N, 32, 32, 3), got {array.dtype} {array.shape}")
    path = corruption_path(folder, name)
    save_npy_atomic(path, array)
    return path


def write_labels(folder: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write the N test labels in the official form: repeated for severities 1..5 as `labels.npy`.

    Stored as uint8 when the labels fit (as the official files), else int64.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected a 1-D integer array, got {labels.dtype} {labels.shape}")
    fits = labels.size == 0 or (labels.min() >= 0 and labels.max() <= 255)
    tiled = np.tile(labels.astype(np.uint8 if fits else np.int64), len(SEVERITIES))
    path = labels_path(folder)
    save_npy_atomic(path, tiled)
    return path


def open_npy(path: Path, expected: str) -> np.ndarray:
    """Memory-map a .npy file, or raise a one-line InputFileError naming it and what was expected."""
    if not path.is_file():
        raise InputFileError(f"{path}: file is missing (expected {expected})")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise InputFileError(f"{path}: not a readable .npy file ({error}); expected {expected}") from None


def load_corruption(folder: str | os.PathLike, name: str, n_images: int) -> np.ndarray:
    """Memory-map `<folder>/<name>.npy` after checking it is uint8 of shape (5 * n_images, 32, 32, 3)."""
    path = corruption_path(folder, name)
    shape = (len(SEVERITIES) * n_images,) + IMAGE_SHAPE
    expected = f"uint8 array of shape {shape}"
    array = open_npy(path, expected)
    if array.dtype != np.uint8 or array.shape != shape:
        raise InputFileError(f"{path}: expected {expected}, found {array.dtype} array of shape {array.shape}")
    return array


def load_corruption_set(folder: str | os.PathLike, names: Iterable[str], n_images: int) -> dict[str, np.ndarray]:
    """Memory-map several corruptions of an official-layout folder: {name: (5N, 32, 32, 3) uint8}."""
    return {name: load_corruption(folder, name, n_images) for name in names}


def load_labels(folder: str | os.PathLike, n_images: int | None = None) -> np.ndarray:
    """The N test labels (int64) of an official-layout folder, checking the 5 severity copies agree.

    n_images=None takes N from the file (its length divided by 5).
    """
    path = labels_path(folder)
    count = "5 * N" if n_images is None else str(len(SEVERITIES) * n_images)
    expected = f"integer array of shape ({count},)"
    labels = open_npy(path, expected)
    if n_images is None and labels.ndim == 1 and labels.shape[0] % len(SEVERITIES) == 0:
        n_images = labels.shape[0] // len(SEVERITIES)
    if n_images is None or not np.issubdtype(labels.dtype, np.integer) or labels.shape != (len(SEVERITIES) * n_images,):
        raise InputFileError(f"{path}: expected {expected}, found {labels.dtype} array of shape {labels.shape}")
    blocks = np.asarray(labels).reshape(len(SEVERITIES), n_images)
    if not (blocks == blocks[:1]).all():
        raise InputFileError(f"{path}: expected the same {n_images} labels repeated for severities 1..5")
    return blocks[0].astype(np.int64)


def validate_official_folder(folder: str | os.PathLike, n_images: int, names: Iterable[str] | None = None) -> None:
    """Check that a folder holds every corruption (default: all 15) and labels.npy in the official layout.

    Raises a one-line ValueError naming the first offending file and what was expected. Reads only the
    .npy headers and the labels, so it is cheap on the official 2.3 GB CIFAR-100-C.
    """
    from . import CORRUPTIONS

    if not Path(folder).is_dir():
        raise InputFileError(f"{folder}: corruption folder is missing (expected <corruption>.npy files and labels.npy)")
    load_corruption_set(folder, CORRUPTIONS if names is None else names, n_images)
    load_labels(folder, n_images)
