"""Tests of vitwork.robustness: accuracy / NLL on arrays and on official-layout corruption folders."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import scipy.special
import torch
from torch import nn

from vitwork import corruptions as C
from vitwork.robustness import evaluate_arrays, evaluate_corruptions, mean_corruption_accuracy

torch.set_num_threads(1)

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


class ChannelMeanClassifier(nn.Module):
    """Logits = per-channel means of the normalised input (3 classes); dropout shows whether eval mode is used."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(p=0.9)

    def forward(self, x):
        return self.drop(x).mean(dim=(2, 3))


def solid(colour) -> np.ndarray:
    """One 32 x 32 image of a single RGB colour."""
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (1, 32, 32, 3))


def test_accuracy_and_nll_match_a_hand_computation():
    # Pure red normalises to channel means (2, -2, -2), pure green to (-2, 2, -2), grey 128 to ~(0, 0, 0).
    images = np.concatenate([solid((255, 0, 0)), solid((0, 255, 0)), solid((255, 0, 0))])
    labels = np.array([0, 1, 2])
    model = ChannelMeanClassifier()
    model.train()
    result = evaluate_arrays(model, images, labels, MEAN, STD, batch_size=2)
    log_normaliser = math.log(math.exp(2) + 2 * math.exp(-2))
    nll_right = log_normaliser - 2  # -log softmax of the true, largest logit
    nll_wrong = log_normaliser + 2  # the third image's label has logit -2
    assert result["acc"] == pytest.approx(2 / 3)
    assert result["nll"] == pytest.approx((2 * nll_right + nll_wrong) / 3, rel=1e-6)
    assert model.training, "the model's training mode must be restored"


def test_linear_model_matches_a_numpy_reference_across_partial_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(11, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, size=11)
    weight = rng.normal(0, 0.02, size=(5, 3 * 32 * 32)).astype(np.float32)
    bias = rng.normal(0, 0.1, size=5).astype(np.float32)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 5))
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(weight))
        model[1].bias.copy_(torch.from_numpy(bias))
    mean, std = np.array([0.51, 0.49, 0.44]), np.array([0.27, 0.26, 0.28])
    x = ((images / 255.0 - mean) / std).transpose(0, 3, 1, 2).reshape(11, -1)
    logits = x @ weight.T.astype(np.float64) + bias
    log_prob = scipy.special.log_softmax(logits, axis=1)
    expected_nll = -log_prob[np.arange(11), labels].mean()
    expected_acc = (logits.argmax(1) == labels).mean()
    result = evaluate_arrays(model, images, labels, tuple(mean), tuple(std), batch_size=4)
    assert result["acc"] == pytest.approx(expected_acc)
    assert result["nll"] == pytest.approx(expected_nll, rel=1e-5)


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError):
        evaluate_arrays(ChannelMeanClassifier(), solid((1, 2, 3)), np.array([0, 1]), MEAN, STD)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_evaluation_runs_on_cuda():
    images = np.concatenate([solid((255, 0, 0)), solid((0, 0, 255))])
    model = ChannelMeanClassifier().cuda()
    cpu = evaluate_arrays(ChannelMeanClassifier(), images, np.array([0, 1]), MEAN, STD)
    gpu = evaluate_arrays(model, images, np.array([0, 1]), MEAN, STD, device="cuda")
    assert gpu["acc"] == cpu["acc"] == 0.5
    assert gpu["nll"] == pytest.approx(cpu["nll"], rel=1e-5)


def test_evaluate_corruptions_reads_every_set_of_a_folder(tmp_path):
    rng = np.random.default_rng(1)
    n = 6
    labels = rng.integers(0, 3, size=n)
    names = ("fog", "contrast")
    arrays = {name: rng.integers(0, 256, size=(5 * n, 32, 32, 3), dtype=np.uint8) for name in names}
    for name, array in arrays.items():
        C.write_corruption(tmp_path, name, array)
    C.write_labels(tmp_path, labels)
    model = ChannelMeanClassifier()
    rows = evaluate_corruptions(model, tmp_path, labels, MEAN, STD, names=names, batch_size=4)
    assert [(r["corruption"], r["severity"]) for r in rows] == [(m, s) for m in names for s in range(1, 6)]
    for row in rows:
        block = arrays[row["corruption"]][(row["severity"] - 1) * n : row["severity"] * n]
        expected = evaluate_arrays(model, block, labels, MEAN, STD)
        assert row["acc"] == pytest.approx(expected["acc"]) and row["nll"] == pytest.approx(expected["nll"])
    assert evaluate_corruptions(model, tmp_path, None, MEAN, STD, names=names, batch_size=4) == rows  # labels.npy
    assert mean_corruption_accuracy(rows) == pytest.approx(np.mean([r["acc"] for r in rows]))
    with pytest.raises(ValueError, match="snow.npy: file is missing"):
        evaluate_corruptions(model, tmp_path, labels, MEAN, STD, names=("snow",))


def test_evaluate_corruptions_on_positions_of_the_sets(tmp_path):
    """A sample of the official files: only the given positions of every severity's block are evaluated."""
    rng = np.random.default_rng(2)
    n = 10
    labels = rng.integers(0, 3, size=n)
    array = rng.integers(0, 256, size=(5 * n, 32, 32, 3), dtype=np.uint8)
    C.write_corruption(tmp_path, "fog", array)
    positions = np.array([1, 4, 7])
    model = ChannelMeanClassifier()
    rows = evaluate_corruptions(model, tmp_path, labels, MEAN, STD, names=("fog",), positions=positions)
    for row in rows:
        block = array[(row["severity"] - 1) * n + positions]
        assert row == {"corruption": "fog", "severity": row["severity"],
                       **evaluate_arrays(model, block, labels[positions], MEAN, STD)}


def test_memory_mapped_sets_are_evaluated_without_a_warning(tmp_path):
    """Corruption files are read-only memory maps; torch warns (once per process) when wrapping those, so the
    check runs in a fresh interpreter."""
    C.write_corruption(tmp_path, "fog", np.zeros((5 * 2, 32, 32, 3), dtype=np.uint8))
    C.write_labels(tmp_path, np.array([0, 1]))
    script = (
        "import warnings, torch; warnings.simplefilter('always');\n"
        "from vitwork.robustness import evaluate_corruptions\n"
        f"evaluate_corruptions(torch.nn.Flatten(), {str(tmp_path)!r}, None, (0.5,) * 3, (0.25,) * 3, names=('fog',))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "not writable" not in done.stderr


def test_mean_corruption_accuracy_rejects_empty_and_duplicate_rows():
    with pytest.raises(ValueError):
        mean_corruption_accuracy([])
    row = {"corruption": "fog", "severity": 1, "acc": 0.5, "nll": 1.0}
    with pytest.raises(ValueError, match="duplicate"):
        mean_corruption_accuracy([row, dict(row)])
    assert mean_corruption_accuracy([row, {**row, "severity": 2, "acc": 0.7}]) == pytest.approx(0.6)
