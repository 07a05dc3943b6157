"""Weather corruptions: snow, frost, fog."""

from __future__ import annotations

import numpy as np

from . import params
from ._ops import clipped_zoom, motion_blur, to_uint8, to_unit
from .frost_textures import frost_textures


def snow(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Zoomed, thresholded Gaussian flakes, motion-blurred downwards, over a whitened image."""
    loc, scale, zoom, threshold, radius, sigma, blend = params.SNOW[severity - 1]
    n = len(images)
    x = images.astype(np.float32) / np.float32(255.0)
    flakes = clipped_zoom(rng.normal(loc, scale, size=(n,) + images.shape[1:3]), zoom)
    flakes[flakes < threshold] = 0.0
    # The script passes the flakes to ImageMagick as an 8-bit PNG, truncated to uint8.
    flakes = (np.clip(flakes, 0.0, 1.0) * 255.0).astype(np.uint8)
    angles = rng.uniform(*params.SNOW_ANGLE, size=n)
    flakes = motion_blur(flakes[..., None], radius, sigma, angles).astype(np.float32) / np.float32(255.0)
    gray = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    whitened = np.maximum(x, gray[..., None] * np.float32(1.5) + np.float32(0.5))
    x = np.float32(blend) * x + np.float32(1.0 - blend) * whitened
    return to_uint8(x + flakes + flakes[:, ::-1, ::-1])


def frost(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blend each image with a random 32x32 crop of one of five frost textures."""
    image_weight, frost_weight = params.FROST[severity - 1]
    textures = frost_textures()
    n, height, width = images.shape[:3]
    which = rng.integers(len(textures), size=n)
    shapes = np.array([t.shape[:2] for t in textures])[which]
    top = rng.integers(0, shapes[:, 0] - height)
    left = rng.integers(0, shapes[:, 1] - width)
    crops = np.empty(images.shape, dtype=np.uint8)
    for index, texture in enumerate(textures):
        members = np.flatnonzero(which == index)
        rows = top[members, None, None] + np.arange(height)[None, :, None]
        cols = left[members, None, None] + np.arange(width)[None, None, :]
        crops[members] = texture[rows, cols]
    blended = image_weight * images.astype(np.float64) + frost_weight * crops.astype(np.float64)
    return np.clip(blended, 0.0, 255.0).astype(np.uint8)


def plasma_fractal(rng: np.random.Generator, n: int, size: int = 32, decay: float = 3.0) -> np.ndarray:
    """N diamond-square height maps of side `size` (a power of two), each scaled to [0, 1].

    Follows the script's toroidal diamond-square: every new point is the mean of its four neighbours
    plus `wibble * U(-wibble, wibble)` (so the noise scale is wibble squared), wibble starting at 100
    and divided by `decay` per halving of the step.
    """
    if size & (size - 1):
        raise ValueError(f"plasma size must be a power of two, got {size}")
    heights = np.zeros((n, size, size))
    step = size
    wibble = 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        """Mean of four neighbours plus the scale's random perturbation."""
        return total / 4.0 + wibble * rng.uniform(-wibble, wibble, size=total.shape)

    while step >= 2:
        half = step // 2
        corners = heights[:, ::step, ::step]
        square = corners + np.roll(corners, -1, axis=1)
        square = square + np.roll(square, -1, axis=2)
        heights[:, half::step, half::step] = wibbled_mean(square)
        centres = heights[:, half::step, half::step]
        corners = heights[:, ::step, ::step]
        edge_sum = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        heights[:, ::step, half::step] = wibbled_mean(edge_sum)
        edge_sum = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        heights[:, half::step, ::step] = wibbled_mean(edge_sum)
        step //= 2
        wibble /= decay
    heights -= heights.min(axis=(1, 2), keepdims=True)
    return heights / heights.max(axis=(1, 2), keepdims=True)


def fog(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Add a plasma-fractal haze to all channels, then rescale by the image maximum."""
    strength, decay = params.FOG[severity - 1]
    x = to_unit(images)
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    haze = plasma_fractal(rng, len(images), size=32, decay=decay)[:, : x.shape[1], : x.shape[2], None]
    return to_uint8((x + strength * haze) * peak / (peak + strength))
