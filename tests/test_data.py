"""Datasets: the synthetic generator, ImageFolder reading, canonical arrays and stratified subsets."""

import numpy as np
import pytest
from PIL import Image

from vitwork.data import DatasetError, load_meta, load_split, prepare_dataset, stratified_subset, write_subset
from vitwork.synthetic import class_names, make_synthetic


def test_synthetic_is_seeded_balanced_and_well_formed():
    images, labels = make_synthetic(10, 20, seed=3)
    again, labels_again = make_synthetic(10, 20, seed=3)
    other, _ = make_synthetic(10, 20, seed=4)
    assert images.shape == (200, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.array_equal(images, again) and np.array_equal(labels, labels_again)
    assert not np.array_equal(images, other)
    assert np.bincount(labels).tolist() == [20] * 10
    assert class_names(10)[0] == "disk_horizontal_stripes" and class_names(10)[5] == "disk_vertical_stripes"


def _power_at(images, fy, fx):
    """Mean spectral power of the grey images at the 2-D frequency bin (fy, fx), DC removed."""
    grey = images.astype(np.float64).mean(-1)
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    return (np.abs(np.fft.fft2(grey)) ** 2)[:, fy, fx].mean()


def test_synthetic_classes_differ_in_texture_and_in_shape_colour():
    images, labels = make_synthetic(10, 60, seed=0)
    horizontal, vertical = images[labels == 0], images[labels == 5]  # both disks: only the texture differs
    nyquist = 16
    # horizontal stripes put their energy at the vertical Nyquist frequency, vertical stripes at the horizontal one
    assert _power_at(horizontal, nyquist, 0) > 20 * _power_at(horizontal, 0, nyquist)
    assert _power_at(vertical, 0, nyquist) > 20 * _power_at(vertical, nyquist, 0)
    # classes that share a texture (0: disk, 1: square) differ in shape and colour: their mean images differ at low frequency
    mean0, mean1 = images[labels == 0].mean(0), images[labels == 1].mean(0)
    assert np.abs(mean0 - mean1).mean() > 10


def test_prepare_synthetic_writes_canonical_arrays(tmp_path):
    dataset = {"source": "synthetic", "synthetic": {"num_classes": 4, "train_per_class": 10, "test_per_class": 5, "seed": 1}}
    meta = prepare_dataset(dataset, tmp_path / "train.npz", tmp_path / "test.npz", tmp_path / "meta.json")
    images, labels = load_split(tmp_path / "train.npz")
    test_images, _ = load_split(tmp_path / "test.npz")
    assert images.shape == (40, 32, 32, 3) and test_images.shape == (20, 32, 32, 3)
    assert not np.array_equal(images[:20], test_images)  # the test split is new draws
    assert load_meta(tmp_path / "meta.json") == meta and meta["num_classes"] == 4
    assert np.allclose(meta["mean"], images.reshape(-1, 3).mean(0) / 255)
    assert np.allclose(meta["std"], images.reshape(-1, 3).std(0) / 255)
    assert not list(tmp_path.glob(".*.tmp"))


def _write_tree(root, classes, per_class, size=32):
    rng = np.random.default_rng(0)
    expected = {}
    for split in ("train", "test"):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
                expected[(split, cls, i)] = pixels
    return expected


def test_imagefolder_tree_is_read_losslessly(tmp_path):
    expected = _write_tree(tmp_path / "tree", ["apple", "bee"], 3)
    meta = prepare_dataset({"source": "imagefolder", "root": str(tmp_path / "tree")}, tmp_path / "tr.npz", tmp_path / "te.npz", tmp_path / "m.json")
    images, labels = load_split(tmp_path / "tr.npz")
    assert meta["classes"] == ["apple", "bee"] and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(images[4], expected[("train", "bee", 1)])


def test_imagefolder_rejects_wrong_sizes_and_missing_splits(tmp_path):
    _write_tree(tmp_path / "big", ["a"], 1, size=40)
    with pytest.raises(DatasetError, match="expected 32x32"):
        prepare_dataset({"source": "imagefolder", "root": str(tmp_path / "big")}, tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.json")
    (tmp_path / "half" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="missing folder test/"):
        prepare_dataset({"source": "imagefolder", "root": str(tmp_path / "half")}, tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.json")


def test_stratified_subset_keeps_floor_of_each_class():
    labels = np.repeat(np.arange(100), 500)
    subset = stratified_subset(labels, 0.06, seed=0)
    assert np.bincount(labels[subset]).tolist() == [30] * 100  # 6% of CIFAR-100 = 30 per class
    assert np.array_equal(subset, stratified_subset(labels, 0.06, seed=0))
    assert not np.array_equal(subset, stratified_subset(labels, 0.06, seed=1))
    assert stratified_subset(labels, 1.0, seed=0).size == labels.size
    uneven = np.array([0] * 7 + [1] * 3)
    assert np.bincount(uneven[stratified_subset(uneven, 0.5, seed=0)]).tolist() == [3, 1]


def test_stratified_subset_rejects_fractions_that_empty_a_class():
    with pytest.raises(ValueError, match="keeps no image of class"):
        stratified_subset(np.repeat(np.arange(3), 10), 0.05, seed=0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        stratified_subset(np.arange(10), 1.5, seed=0)


def test_write_subset(tmp_path):
    dataset = {"source": "synthetic", "synthetic": {"num_classes": 3, "train_per_class": 10, "test_per_class": 2, "seed": 0}}
    prepare_dataset(dataset, tmp_path / "train.npz", tmp_path / "test.npz", tmp_path / "meta.json")
    indices = write_subset(tmp_path / "train.npz", 0.5, 2, tmp_path / "subset.npy")
    assert np.array_equal(np.load(tmp_path / "subset.npy"), indices) and indices.size == 15


def _prepared(tmp_path):
    dataset = {"source": "synthetic", "synthetic": {"num_classes": 3, "train_per_class": 4, "test_per_class": 2, "seed": 0}}
    prepare_dataset(dataset, tmp_path / "train.npz", tmp_path / "test.npz", tmp_path / "meta.json")
    return tmp_path / "train.npz"


def test_a_truncated_split_is_one_line_naming_the_file(tmp_path):
    path = _prepared(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError) as info:
        load_split(path)
    message = str(info.value)
    assert message.startswith(f"{path}: unreadable (") and "expected an .npz with arrays images, labels" in message
    assert "\n" not in message
    with pytest.raises(DatasetError, match=rf"^{path}: unreadable"):
        write_subset(path, 0.5, 0, tmp_path / "subset.npy")
    with pytest.raises(DatasetError, match=r"unreadable .*FileNotFoundError"):
        load_split(tmp_path / "missing.npz")
    meta = tmp_path / "meta.json"
    meta.write_text(meta.read_text()[:20])
    with pytest.raises(DatasetError, match=rf"^{meta}: unreadable \(JSONDecodeError: .*expected the meta.json"):
        load_meta(meta)


def test_a_split_without_its_arrays_or_of_the_wrong_shape_is_named(tmp_path):
    np.savez(tmp_path / "other.npz", pixels=np.zeros(3))
    with pytest.raises(DatasetError, match=r"other.npz: no array images, labels; expected an .npz"):
        load_split(tmp_path / "other.npz")
    np.savez(tmp_path / "flat.npz", images=np.zeros((2, 8, 8), np.uint8), labels=np.zeros(2, np.int64))
    with pytest.raises(DatasetError, match=r"flat.npz: images uint8 \(2, 8, 8\) .* expected uint8 images N x 32 x 32 x 3"):
        load_split(tmp_path / "flat.npz")


@pytest.mark.parametrize("content", [b"", b"not a png at all", "truncated"])
def test_a_corrupt_image_in_an_image_folder_is_one_line_naming_it(tmp_path, content):
    _write_tree(tmp_path / "tree", ["apple", "bee"], 2)
    bad = tmp_path / "tree" / "train" / "bee" / "1.png"
    bad.write_bytes(bad.read_bytes()[:60] if content == "truncated" else content)
    with pytest.raises(DatasetError) as info:
        prepare_dataset({"source": "imagefolder", "root": str(tmp_path / "tree")}, tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.json")
    message = str(info.value)
    assert message.startswith(f"{bad}: unreadable image (") and message.endswith("expected a 32x32 RGB image")
    assert "\n" not in message


def test_image_folder_class_counts_and_kept_per_class(tmp_path):
    from vitwork.data import image_folder_class_counts, kept_per_class

    _write_tree(tmp_path / "tree", ["apple", "bee"], 3)
    (tmp_path / "tree" / "train" / "bee" / "notes.txt").write_text("not an image")
    assert image_folder_class_counts(tmp_path / "tree" / "train") == {"apple": 3, "bee": 3}
    assert kept_per_class(500, 0.06) == 30 and kept_per_class(500, 0.001) == 0 and kept_per_class(3, 1.0) == 3


def test_a_broken_index_file_is_one_line_naming_it(tmp_path):
    from vitwork.data import DatasetError, load_indices

    path = tmp_path / "f0.5_s0.npy"
    np.save(path, np.arange(10))
    path.write_bytes(path.read_bytes()[:20])  # truncated mid-header
    with pytest.raises(DatasetError, match=f"^{path}: unreadable .*expected a 1-D integer .npy index file"):
        load_indices(path)
    np.save(path, np.zeros((2, 2)))
    with pytest.raises(DatasetError, match="float64 array of shape \\(2, 2\\)"):
        load_indices(path)
