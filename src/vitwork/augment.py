"""Training augmentation on batches of uint8 images, on the device where the data lives.

Crop and flip are drawn from an explicit torch.Generator; RandAugment (torchvision) draws from torch's global
generator and mixup/cutmix (timm) from numpy's, so `seeded_rng` can rebuild exactly the same augmented batch:
the Hessian analysis evaluates the loss of a fixed augmented batch.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from timm.data.mixup import Mixup, mixup_target
from torchvision.transforms import v2


@contextlib.contextmanager
def seeded_rng(seed: int):
    """Seed torch, numpy and random globally inside the block, restoring the previous states after it."""
    states = (torch.random.get_rng_state(), np.random.get_state(), random.getstate())
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop of a zero-padded NCHW batch and random horizontal flip.

    Vectorised by hand: torchvision's batch transforms draw one crop for the whole batch.
    """
    n, _, h, w = images.shape
    if padding > 0:
        padded = torch.nn.functional.pad(images, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=images.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=images.device)
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, :, None]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, :]
        batch = torch.arange(n, device=images.device)[:, None, None]
        images = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(n, generator=generator, device=images.device) < 0.5
        images = torch.where(mask[:, None, None, None], images.flip(-1), images)
    return images.contiguous()


class RandAugmentPerImage:
    """torchvision RandAugment applied image by image, with a magnitude drawn per image from N(m, std) (timm's mstd)."""

    def __init__(self, num_ops: int, magnitude: float, magnitude_std: float):
        self.num_ops, self.magnitude, self.magnitude_std = num_ops, magnitude, magnitude_std
        self._by_magnitude = {m: v2.RandAugment(num_ops=num_ops, magnitude=m, num_magnitude_bins=31) for m in range(31)}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        magnitudes = torch.normal(self.magnitude, max(self.magnitude_std, 1e-12), (len(images),))
        magnitudes = magnitudes.round().clamp(0, 30).long().tolist()
        return torch.stack([self._by_magnitude[m](image) for m, image in zip(magnitudes, images)])


class TrainAugment:
    """(uint8 NHWC images, int labels) -> (normalised float NCHW inputs, soft targets) with the run's augmentation."""

    def __init__(self, training: dict, num_classes: int, mean, std):
        self.training = training
        self.num_classes = num_classes
        self.mean, self.std = mean, std
        ra = training.get("randaugment")
        self.randaugment = RandAugmentPerImage(ra["num_ops"], ra["magnitude"], ra["magnitude_std"]) if ra else None
        mixing = training["mix_prob"] > 0 and (training["mixup_alpha"] > 0 or training["cutmix_alpha"] > 0)
        self.mixup = (
            Mixup(
                mixup_alpha=training["mixup_alpha"],
                cutmix_alpha=training["cutmix_alpha"],
                prob=training["mix_prob"],
                switch_prob=training["mix_switch_prob"],
                mode="batch",
                label_smoothing=training["label_smoothing"],
                num_classes=num_classes,
            )
            if mixing
            else None
        )

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        x = images.permute(0, 3, 1, 2)
        x = random_crop_flip(x, self.training["crop_padding"], self.training["horizontal_flip"], generator)
        if self.randaugment is not None:
            x = self.randaugment(x)
        x = normalise(x, self.mean, self.std)
        if self.mixup is not None and len(x) % 2 == 0:
            return self.mixup(x, labels)
        return x, mixup_target(labels, self.num_classes, lam=1.0, smoothing=self.training["label_smoothing"])


def normalise(images_nchw: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 NCHW -> float NCHW standardised with the training-set per-channel mean and std (in [0, 1] units)."""
    x = images_nchw.float().div_(255.0)
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def eval_inputs(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised float NCHW inputs of uint8 NHWC test images (no augmentation)."""
    return normalise(images.permute(0, 3, 1, 2), mean, std)
