"""CIFAR-10-C / CIFAR-100-C corruptions (Hendrycks & Dietterich, ICLR 2019), vectorised over images.

The 15 corruptions of the benchmark at severities 1..5 with the parameters of the published CIFAR
script (`make_cifar_c.py`, github.com/hendrycks/robustness; tables in `params.py`), whose values for
32x32 images differ from ImageNet-C's. Re-implemented with numpy, scipy, torch and Pillow only, batched
over images, and seeded with one numpy Generator per (seed, corruption, severity):

- motion blur and snow's motion blur reproduce ImageMagick's MotionBlurImage (which the script calls
  through Wand) with a one-sided Gaussian line kernel along each image's random angle;
- skimage / OpenCV calls (Gaussian blur, HSV round trip, warpAffine, getAffineTransform, the defocus
  kernel's cv2.GaussianBlur) are replaced by their scipy / numpy / torch equivalents;
- the script's glass blur "swap" of numpy views is really a copy; it is reproduced as such (one
  parallel gather per iteration, see `blur.shuffle_pixels_once`);
- frost: the five frost photographs the script blends in are not available, so five textures are
  generated procedurally from a fixed seed (`frost_textures.py`, branching ice needles, glow and haze,
  icy blue-white), calibrated to the published mean pixel change per severity. Frost is therefore
  comparable in strength, not pixel-identical, to the official files.

Random corruptions draw different numbers than the official files (which used numpy's global state), so
they match them in distribution, not bytes; float images are truncated to uint8 as the script does.

Outputs follow the official layout (`storage.py`): `<corruption>.npy`, 5N x 32 x 32 x 3 uint8,
severity 1 first, and `labels.npy`; the official CIFAR-100-C files can be used instead of generated ones
(`validate_official_folder`).
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

from .blur import defocus_blur, glass_blur, motion_blur_corruption, zoom_blur
from .digital import brightness, contrast, elastic_transform, jpeg_compression, pixelate
from .noise import gaussian_noise, impulse_noise, shot_noise
from .storage import (
    SEVERITIES,
    load_corruption,
    load_corruption_set,
    load_labels,
    validate_official_folder,
    write_corruption,
    write_labels,
)
from .weather import fog, frost, snow

__all__ = [
    "CORRUPTIONS",
    "OFFICIAL_IMAGES",
    "SEVERITIES",
    "RANDOM_CORRUPTIONS",
    "corrupt",
    "generate_corruption",
    "write_corruption",
    "write_labels",
    "load_corruption",
    "load_corruption_set",
    "load_labels",
    "validate_official_folder",
]

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

_FUNCTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "motion_blur": motion_blur_corruption,
    "zoom_blur": zoom_blur,
    "glass_blur": glass_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}

CORRUPTIONS: tuple[str, ...] = tuple(_FUNCTIONS)
# Corruptions that draw random numbers (the others are deterministic functions of the image).
RANDOM_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "motion_blur",
    "glass_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
)
# Test images of the official CIFAR-10-C / CIFAR-100-C files (each <corruption>.npy holds 5 x this many).
OFFICIAL_IMAGES = 10_000
# Images per internal chunk: bounds the float64 temporaries (about 25 MB each) and keeps them in cache.
CHUNK_SIZE = 1000


def corruption_rng(seed: int, name: str, severity: int) -> np.random.Generator:
    """Independent numpy Generator for one (seed, corruption, severity); never touches global state."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), int(severity)]))


def check_images(images: np.ndarray) -> np.ndarray:
    """Return `images` as a uint8 N x 32 x 32 x 3 array, or raise ValueError."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"expected uint8 images of shape (N, 32, 32, 3), got {images.dtype} {images.shape}")
    return images


def corrupt(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Apply corruption `name` at `severity` (1..5) to uint8 N x 32 x 32 x 3 images; returns the same shape.

    Reproducible: the same (images, name, severity, seed) always gives the same bytes. Images are
    processed in chunks of CHUNK_SIZE that draw from one Generator in order.
    """
    images = check_images(images)
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    function = _FUNCTIONS[name]
    rng = corruption_rng(seed, name, severity)
    out = np.empty_like(images)
    for start in range(0, len(images), CHUNK_SIZE):
        chunk = np.ascontiguousarray(images[start : start + CHUNK_SIZE])
        out[start : start + CHUNK_SIZE] = function(chunk, severity, rng)
    return out


def generate_corruption(images: np.ndarray, name: str, seed: int) -> np.ndarray:
    """All five severities of one corruption, severity-major: a (5N, 32, 32, 3) uint8 array."""
    images = check_images(images)
    n = len(images)
    out = np.empty((len(SEVERITIES) * n,) + images.shape[1:], dtype=np.uint8)
    for index, severity in enumerate(SEVERITIES):
        out[index * n : (index + 1) * n] = corrupt(images, name, severity, seed)
    return out
