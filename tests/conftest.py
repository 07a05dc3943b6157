"""Shared test set-up: one CPU thread per test process, the repository root, and the real CIFAR-100 copy."""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# the offline CIFAR-100 ImageFolder tree that sits beside the checkout in CI and development machines
REAL_CIFAR100 = REPO.parent / "shared" / "data" / "cifar100"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def real_cifar100() -> Path:
    if not (REAL_CIFAR100 / "train").is_dir():
        pytest.skip(f"real CIFAR-100 not found at {REAL_CIFAR100} (only present beside the checkout in CI)")
    return REAL_CIFAR100
