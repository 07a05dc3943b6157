"""Procedural stand-ins for the five frost photographs of the CIFAR-C script.

The script blends crops of five photographs of frost on glass (shipped with the ImageNet-C code, resized
by 0.2, i.e. a few hundred pixels a side). They are not redistributable here, so five textures are drawn
procedurally from a fixed seed: feathery ice crystals (straight needles with side branches at about 60
degrees, as dendritic frost grows), a soft glow around them and a cloudy haze, tinted icy blue-white.
Their brightness is calibrated so that the mean absolute pixel change per severity on real CIFAR-100
test images is close to the published files' (about 30, 44, 49, 45, 45 on a 0..255 scale).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.ndimage

# Fixed, so that the textures play the role of fixed files: the user's seed only picks texture and crop.
FROST_TEXTURE_SEED = 20190117
# (height, width) of the five textures, comparable to the script's photographs after their 0.2 resize.
FROST_TEXTURE_SHAPES = ((192, 256), (224, 224), (176, 240), (240, 208), (208, 208))
# Icy tint multiplying the grey level per RGB channel.
ICE_TINT = np.array([0.9, 0.96, 1.0])


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigmas: tuple[float, ...]) -> np.ndarray:
    """Sum of Gaussian-smoothed white noise at several scales, each normalised, rescaled to [0, 1]."""
    total = np.zeros(shape)
    for sigma in sigmas:
        layer = scipy.ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
        total += layer / layer.std()
    total -= total.min()
    return total / total.max()


def crystal_segments(
    rng: np.random.Generator, shape: tuple[int, int], n_stems: int, levels: int = 3, branches: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Needle segments (start points N x 2, angles N, lengths N) of branching ice crystals.

    Each level sprouts `branches` side needles per parent at random points along it, at +-60 degrees
    (the hexagonal habit of ice) with some jitter, shorter than the rest of the parent.
    """
    starts = rng.uniform((0.0, 0.0), shape, size=(n_stems, 2))
    angles = rng.uniform(0.0, 2.0 * np.pi, size=n_stems)
    lengths = rng.uniform(20.0, 70.0, size=n_stems)
    all_starts, all_angles, all_lengths = [starts], [angles], [lengths]
    for _ in range(levels - 1):
        position = rng.uniform(0.05, 0.95, size=(len(angles), branches))
        side = rng.choice([-1.0, 1.0], size=position.shape)
        direction = np.stack([np.sin(angles), np.cos(angles)], axis=-1)
        starts = (starts[:, None, :] + (position * lengths[:, None])[..., None] * direction[:, None, :]).reshape(-1, 2)
        angles = (angles[:, None] + side * np.deg2rad(60.0) + rng.normal(0.0, 0.15, size=position.shape)).ravel()
        lengths = (lengths[:, None] * (1.0 - position) * rng.uniform(0.3, 0.7, size=position.shape)).ravel()
        all_starts.append(starts)
        all_angles.append(angles)
        all_lengths.append(lengths)
    return np.concatenate(all_starts), np.concatenate(all_angles), np.concatenate(all_lengths)


def rasterise_segments(
    shape: tuple[int, int], starts: np.ndarray, angles: np.ndarray, lengths: np.ndarray, samples: int = 160
) -> np.ndarray:
    """Line density map: points sampled along every segment, binned to the nearest pixel (toroidally)."""
    t = np.linspace(0.0, 1.0, samples)[None, :]
    rows = starts[:, :1] + t * (lengths * np.sin(angles))[:, None]
    cols = starts[:, 1:] + t * (lengths * np.cos(angles))[:, None]
    weight = np.broadcast_to((lengths / samples)[:, None], rows.shape)
    flat = (np.rint(rows).astype(np.int64) % shape[0]) * shape[1] + np.rint(cols).astype(np.int64) % shape[1]
    density = np.bincount(flat.ravel(), weights=weight.ravel(), minlength=shape[0] * shape[1])
    return density.reshape(shape)


def frost_texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """One uint8 H x W x 3 frost texture: haze, crystal needles and their glow, tinted icy blue-white."""
    haze = smooth_noise(rng, shape, sigmas=(24.0, 8.0, 2.0))
    area = shape[0] * shape[1]
    needles = rasterise_segments(shape, *crystal_segments(rng, shape, n_stems=max(1, area // 1500)))
    sharp = scipy.ndimage.gaussian_filter(needles, 0.6, mode="wrap")
    glow = scipy.ndimage.gaussian_filter(needles, 3.0, mode="wrap")
    sharp = np.minimum(sharp / np.percentile(sharp, 99.0), 1.0)
    glow = np.minimum(glow / np.percentile(glow, 99.0), 1.0)
    grain = scipy.ndimage.gaussian_filter(rng.standard_normal(shape), 0.7, mode="wrap")
    grey = 0.47 + 0.30 * haze + 0.40 * sharp + 0.25 * glow + 0.04 * grain / grain.std()
    colour = np.clip(grey, 0.0, 1.0)[..., None] * ICE_TINT
    return np.rint(colour * 255.0).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def frost_textures() -> tuple[np.ndarray, ...]:
    """The five frost textures (computed once per process from FROST_TEXTURE_SEED)."""
    children = np.random.SeedSequence(FROST_TEXTURE_SEED).spawn(len(FROST_TEXTURE_SHAPES))
    textures = []
    for child, shape in zip(children, FROST_TEXTURE_SHAPES):
        texture = frost_texture(np.random.default_rng(child), shape)
        texture.setflags(write=False)
        textures.append(texture)
    return tuple(textures)
