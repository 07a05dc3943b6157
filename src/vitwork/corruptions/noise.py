"""Noise corruptions: gaussian_noise, shot_noise, impulse_noise (per pixel channel, independent)."""

from __future__ import annotations

import numpy as np

from . import params
from ._ops import to_uint8, to_unit


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Add N(0, c^2) noise to [0, 1] pixels."""
    scale = params.GAUSSIAN_NOISE[severity - 1]
    x = to_unit(images)
    return to_uint8(x + rng.normal(0.0, scale, size=x.shape))


def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Replace [0, 1] pixels by Poisson(x * c) / c (photon counting noise)."""
    photons = params.SHOT_NOISE[severity - 1]
    x = to_unit(images)
    return to_uint8(rng.poisson(x * photons) / photons)


def impulse_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise: each pixel channel becomes 1 or 0 with probability amount / 2 each.

    This is the distribution of `skimage.util.random_noise(mode="s&p")` used by the script, drawn
    with one uniform per pixel channel.
    """
    amount = params.IMPULSE_NOISE[severity - 1]
    x = to_unit(images)
    u = rng.random(size=x.shape)
    x[u < amount / 2] = 1.0
    x[(u >= amount / 2) & (u < amount)] = 0.0
    return to_uint8(x)
