"""Blur corruptions: defocus_blur, motion_blur, zoom_blur, glass_blur."""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.ndimage
import scipy.sparse

from . import params
from ._ops import clipped_zoom_matrix, gaussian_blur_hw, motion_blur, to_uint8, to_unit


def defocus_kernel(radius: float, alias_sigma: float) -> np.ndarray:
    """The script's defocus kernel: a normalised pixel disk smoothed by a 3x3 Gaussian (cv2.GaussianBlur).

    Only the non-zero support is returned (the script embeds it in a 17x17 array of zeros).
    """
    half = int(math.ceil(radius)) + 1
    grid = np.arange(-half, half + 1, dtype=np.float64)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    taps = np.exp(-np.array([1.0, 0.0, 1.0]) / (2.0 * alias_sigma**2))
    taps /= taps.sum()
    kernel = scipy.ndimage.convolve1d(disk, taps, axis=0, mode="constant")
    kernel = scipy.ndimage.convolve1d(kernel, taps, axis=1, mode="constant")
    keep = np.flatnonzero(kernel.any(axis=0))
    return kernel[keep[0] : keep[-1] + 1, keep[0] : keep[-1] + 1]


def defocus_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Correlate each channel with the defocus kernel, mirroring at the borders (cv2.filter2D's default)."""
    radius, alias_sigma = params.DEFOCUS_BLUR[severity - 1]
    kernel = defocus_kernel(radius, alias_sigma)
    x = to_unit(images)
    out = scipy.ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")
    return to_uint8(out)


def motion_blur_corruption(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """ImageMagick-style motion blur along a uniform random angle in [-45, 45] degrees per image."""
    radius, sigma = params.MOTION_BLUR[severity - 1]
    angles = rng.uniform(*params.MOTION_BLUR_ANGLE, size=len(images))
    return motion_blur(images, radius, sigma, angles)


@functools.lru_cache(maxsize=None)
def zoom_blur_operator(severity: int, size: int = 32) -> scipy.sparse.csr_matrix:
    """The whole zoom blur as one sparse (size^2 x size^2) float32 matrix acting on flattened images.

    Zoom blur averages the image with its clipped zooms, all linear in the image, so their mean is one
    matrix: (I + sum_z kron(Z_z, Z_z)) / (number of zooms + 1), applied to every image and channel at
    once. Its rows have about 12 non-zeros (the zooms' interpolation points mostly coincide).
    """
    factors = params.ZOOM_BLUR[severity - 1]
    total = np.eye(size * size)
    for factor in factors:
        zoom = clipped_zoom_matrix(size, float(factor))
        total += np.kron(zoom, zoom)
    return scipy.sparse.csr_matrix((total / (len(factors) + 1)).astype(np.float32))


def zoom_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Average the image with its centre zoomed by 1.00, 1.01, ... (the severity's factors)."""
    n, height, width, channels = images.shape
    operator = zoom_blur_operator(severity, height)
    flat = (images.astype(np.float32) / np.float32(255.0)).transpose(1, 2, 0, 3).reshape(height * width, -1)
    out = (operator @ flat).reshape(height, width, n, channels).transpose(2, 0, 1, 3)
    return to_uint8(out)


def shuffle_pixels_once(images: np.ndarray, d_row: np.ndarray, d_col: np.ndarray) -> np.ndarray:
    """One pass of the script's local pixel "swap" with maximum displacement 1, for a batch.

    d_row, d_col: N x (H-2) x (W-2) offsets in {-1, 0} for pixels (2..H-1, 2..W-1). The script walks rows
    and columns from the last down to 2 and "swaps" pixel (h, w) with (h + dy, w + dx). Its tuple swap
    of numpy views only copies the neighbour into (h, w), and that neighbour has not been visited yet in
    the descending walk, so the pass equals one parallel gather from the unmodified image.
    """
    n, height, width = images.shape[:3]
    rows = np.arange(2, height)[None, :, None] + d_row
    cols = np.arange(2, width)[None, None, :] + d_col
    out = images.copy()
    out[:, 2:, 2:] = images[np.arange(n)[:, None, None], rows, cols]
    return out


def glass_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, local pixel shuffles, Gaussian blur again (the script's glass blur)."""
    sigma, max_delta, iterations = params.GLASS_BLUR[severity - 1]
    if max_delta != 1:
        raise ValueError("the vectorised pixel shuffle reproduces the script only for a maximum displacement of 1")
    blurred = gaussian_blur_hw(to_unit(images), sigma)
    shuffled = (blurred * 255.0).astype(np.uint8)
    n, height, width = images.shape[:3]
    for _ in range(iterations):
        # randint(-1, 1) in the script: offsets in {-1, 0}.
        d_row, d_col = rng.integers(-max_delta, max_delta, size=(2, n, height - 2, width - 2))
        shuffled = shuffle_pixels_once(shuffled, d_row, d_col)
    return to_uint8(gaussian_blur_hw(shuffled / 255.0, sigma))
