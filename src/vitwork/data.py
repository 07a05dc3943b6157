"""Datasets prepared once into canonical arrays, and seeded class-stratified training subsets.

Canonical form (read by every rule): `train.npz` / `test.npz` with `images` (uint8, N x 32 x 32 x 3) and
`labels` (int64), and `meta.json` with the class names and the per-channel mean/std of the training split.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from vitwork.io import InputFileError, atomic_path, read_json, write_json

IMAGE_SHAPE = (32, 32, 3)
# the file name extensions torchvision's ImageFolder reads as images
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DatasetError(InputFileError):
    """A dataset that cannot be read, described in one line."""


def _read_torchvision_cifar(source: str, root: str, download: bool):
    """Train and test arrays of CIFAR-10/100 through torchvision (its pickles hold the uint8 arrays already)."""
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[source]
    try:
        splits = {split: cls(root, train=(split == "train"), download=download) for split in ("train", "test")}
    except RuntimeError as exc:
        raise DatasetError(f"{source} at {root!r}: {exc} (set dataset.download: true to fetch it)") from None
    arrays = {split: (np.asarray(ds.data, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64)) for split, ds in splits.items()}
    return arrays, list(splits["train"].classes)


def _read_image_folder(root: str):
    """Train and test arrays of an ImageFolder tree `{train,test}/<class>/<image>` of 32x32 RGB images."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    arrays, classes = {}, None
    for split in ("train", "test"):
        if not (Path(root) / split).is_dir():
            raise DatasetError(f"imagefolder {root!r}: missing folder {split}/ (expected {{train,test}}/<class>/<image>)")
    for split in ("train", "test"):
        try:
            tree = ImageFolder(str(Path(root) / split))
        except FileNotFoundError as exc:
            raise DatasetError(f"imagefolder {root!r}: {split}/: {exc}") from None
        if classes is not None and tree.classes != classes:
            raise DatasetError(f"imagefolder {root!r}: train/ and test/ have different class folders")
        classes = tree.classes
        images = np.empty((len(tree.samples),) + IMAGE_SHAPE, dtype=np.uint8)
        for i, (path, _) in enumerate(tree.samples):
            try:
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
            except (OSError, SyntaxError, ValueError) as exc:  # PIL: unidentified, truncated or malformed files
                raise DatasetError(f"{path}: unreadable image ({exc}); expected a 32x32 RGB image") from None
            if pixels.shape != IMAGE_SHAPE:
                raise DatasetError(f"{path}: image is {pixels.shape[1]}x{pixels.shape[0]}, expected 32x32")
            images[i] = pixels
        arrays[split] = (images, np.asarray(tree.targets, dtype=np.int64))
    return arrays, classes


def read_source(dataset: dict):
    """({split: (images, labels)}, class names) for a validated `dataset` config section."""
    source = dataset["source"]
    if source == "synthetic":
        from vitwork.synthetic import class_names, make_synthetic  # (matplotlib: only when generating)

        cfg = dataset["synthetic"]
        arrays = {
            # distinct seeds per split, so test images are new draws of the same classes
            split: make_synthetic(cfg["num_classes"], cfg[f"{split}_per_class"], seed=cfg["seed"] * 2 + offset)
            for offset, split in enumerate(("train", "test"))
        }
        return arrays, class_names(cfg["num_classes"])
    if source == "imagefolder":
        return _read_image_folder(dataset["root"])
    return _read_torchvision_cifar(source, dataset["root"], dataset.get("download", False))


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return pixels.mean(0).tolist(), pixels.std(0).tolist()


def prepare_dataset(dataset: dict, train_path, test_path, meta_path) -> dict:
    """Read the configured source once and write the canonical arrays and meta.json (atomically)."""
    arrays, classes = read_source(dataset)
    for split, path in (("train", train_path), ("test", test_path)):
        images, labels = arrays[split]
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, images=images, labels=labels)
    mean, std = channel_stats(arrays["train"][0])
    meta = {
        "source": dataset["source"],
        "classes": classes,
        "num_classes": len(classes),
        "mean": mean,
        "std": std,
        "sizes": {split: int(arrays[split][1].size) for split in arrays},
    }
    write_json(meta_path, meta)
    return meta


def load_split(path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x 32 x 32 x 3, labels int64) of one prepared split."""
    images, labels = _read_npz(path, ("images", "labels"))
    if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE or labels.shape != images.shape[:1]:
        raise DatasetError(
            f"{path}: images {images.dtype} {images.shape} and labels {labels.shape}; expected uint8 images "
            "N x 32 x 32 x 3 and N labels (a split written by the prepare_data rule)"
        )
    return images, labels


def _read_npz(path, names: tuple[str, ...]) -> list[np.ndarray]:
    """The arrays `names` of an .npz file, or a one-line DatasetError naming the file and what was expected."""
    expected = f"an .npz with arrays {', '.join(names)} (a split written by the prepare_data rule)"
    try:
        with np.load(path) as data:
            missing = [name for name in names if name not in data.files]
            if missing:
                raise DatasetError(f"{path}: no array {', '.join(missing)}; expected {expected}")
            return [data[name] for name in names]  # npz members are read (and checked) here
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: unreadable ({type(exc).__name__}: {exc}); expected {expected}") from None


def load_indices(path) -> np.ndarray:
    """An index file (a training subset, a sample) as int64, or a one-line DatasetError naming the file."""
    expected = "a 1-D integer .npy index file (written by the subsample rule)"
    try:
        indices = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path}: unreadable ({type(exc).__name__}: {exc}); expected {expected}") from None
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise DatasetError(f"{path}: {indices.dtype} array of shape {indices.shape}; expected {expected}")
    return indices.astype(np.int64, copy=False)


def load_meta(path) -> dict:
    """meta.json of a prepared dataset."""
    try:
        return read_json(path)
    except (OSError, ValueError) as exc:  # (json's decode error is a ValueError)
        expected = "expected the meta.json written by the prepare_data rule"
        raise DatasetError(f"{path}: unreadable ({type(exc).__name__}: {exc}); {expected}") from None


def kept_per_class(count: int, fraction: float) -> int:
    """Images a class of `count` images keeps in a subset of `fraction`: floor(count * fraction)."""
    return int(np.floor(count * fraction + 1e-9))


def image_folder_class_counts(split_root) -> dict[str, int]:
    """Images per class folder of one split of an ImageFolder tree (counted by name, not read)."""
    root = Path(split_root)
    return {
        folder.name: sum(1 for entry in os.scandir(folder) if entry.name.lower().endswith(IMAGE_EXTENSIONS))
        for folder in sorted(root.iterdir(), key=lambda p: p.name)
        if folder.is_dir()
    }


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices keeping floor(n_c * fraction) images of every class c, chosen with `seed`.

    6% of CIFAR-100 keeps 30 of each class's 500 images.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    keep = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        count = kept_per_class(members.size, fraction)
        if count == 0:
            raise ValueError(f"fraction {fraction} keeps no image of class {cls} ({members.size} images)")
        keep.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64)


def write_subset(labels_path, fraction: float, seed: int, out_path) -> np.ndarray:
    """Write the index file of one (fraction, seed) subset of the prepared train split."""
    (labels,) = _read_npz(labels_path, ("labels",))  # the images are not needed here: npz reads each array on demand
    indices = stratified_subset(labels, fraction, seed)
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, indices)
    return indices


def stratified_sample(labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Sorted indices of `size` images spread as evenly over the classes as their sizes allow, chosen with `seed`.

    The analysis sample (Fourier, variance, noise, corruptions, landscape): every class gets `size // C` images and
    `size % C` classes drawn with `seed` get one more (a class smaller than its share gives all its images and the
    others share the rest). It depends only on `labels`, `size` and `seed`, so every model compared sees the same
    images; a split stored in class order (an ImageFolder tree) is sampled as fairly as a shuffled one.
    `size` None or at least the split's size means the whole split.
    """
    labels = np.asarray(labels)
    if size is None or size >= labels.size:
        return np.arange(labels.size, dtype=np.int64)
    if size < 1:
        raise ValueError(f"sample size must be positive, got {size}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    taken = np.zeros_like(counts)
    remaining = size
    while remaining:
        open_classes = np.flatnonzero(taken < counts)
        share = remaining // open_classes.size
        if share == 0:  # fewer images left than classes with images left: one more for `remaining` random classes
            taken[rng.choice(open_classes, size=remaining, replace=False)] += 1
            break
        extra = np.minimum(share, counts[open_classes] - taken[open_classes])
        taken[open_classes] += extra
        remaining -= int(extra.sum())
    keep = [rng.choice(np.flatnonzero(labels == cls), size=count, replace=False)
            for cls, count in zip(classes, taken) if count]
    return np.sort(np.concatenate(keep)).astype(np.int64)
