"""Batched image operations shared by several corruptions (arrays are N x H x W x C)."""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.ndimage


def to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 images as float64 in [0, 1], the script's `np.array(x) / 255.`."""
    return images.astype(np.float64) / 255.0


def to_uint8(unit: np.ndarray) -> np.ndarray:
    """Clip [0, 1] floats and scale to uint8 by truncation.

    Truncation, not rounding: the script stores `np.uint8(float image * 255)`, which truncates, and the
    pixel statistics of the official files follow from it.
    """
    return (np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def gaussian_blur_hw(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """Gaussian blur over the two spatial axes (1, 2) of a batch, per channel.

    Defaults are those of `skimage.filters.gaussian`, which the script calls.
    """
    if sigma <= 0:
        return x.copy()
    return scipy.ndimage.gaussian_filter(x, sigma=sigma, mode=mode, truncate=truncate, axes=(1, 2))


@functools.lru_cache(maxsize=None)
def clipped_zoom_matrix(size: int, factor: float) -> np.ndarray:
    """The script's `clipped_zoom` along one axis as a `size x size` matrix (it is linear and separable).

    The script crops the central ceil(size / factor) pixels, zooms them with
    `scipy.ndimage.zoom(order=1)` and trims the result back to `size`; zooming the identity matrix
    gives the same interpolation weights, so a batch is zoomed with two matrix products.
    """
    crop = int(math.ceil(size / factor))
    top = (size - crop) // 2
    zoomed = scipy.ndimage.zoom(np.eye(crop), (factor, 1.0), order=1)
    trim = (zoomed.shape[0] - size) // 2
    matrix = np.zeros((size, size))
    matrix[:, top : top + crop] = zoomed[trim : trim + size]
    return matrix


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre of each N x H x W image by `factor`, keeping H x W (batched matrix products)."""
    rows = clipped_zoom_matrix(x.shape[1], float(factor))
    cols = clipped_zoom_matrix(x.shape[2], float(factor))
    return rows @ x @ cols.T


def motion_blur_kernel(radius: float, sigma: float) -> np.ndarray:
    """ImageMagick's one-sided motion-blur weights: half a Gaussian over 2*ceil(radius)+1 taps, normalised."""
    width = int(2 * math.ceil(radius) + 1)
    taps = np.arange(width, dtype=np.float64)
    weights = np.exp(-(taps**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def motion_blur_offsets(width: int, angles_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer (row, column) offsets of each tap along each image's angle, rounded as ImageMagick does.

    ImageMagick rounds with ceil(v - 0.5); returns two int arrays of shape N x width.
    """
    theta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))[:, None]
    taps = np.arange(width, dtype=np.float64)[None, :]
    d_col = np.ceil(taps * np.cos(theta) - 0.5).astype(np.int64)
    d_row = np.ceil(taps * np.sin(theta) - 0.5).astype(np.int64)
    return d_row, d_col


def motion_blur(images: np.ndarray, radius: float, sigma: float, angles_deg: np.ndarray) -> np.ndarray:
    """Line-kernel motion blur of an N x H x W x C batch (values 0..255), one angle per image.

    Reproduces ImageMagick's MotionBlurImage, which the script calls through Wand: each output pixel is
    the weighted sum of the pixels at the tap offsets along the angle, with edge pixels repeated outside
    the image; the result is rounded to uint8 as ImageMagick's 8-bit PNG output is. Each tap is one
    torch.gather from the edge-padded, flattened images at a per-image shift.
    """
    import torch  # deferred (also in bilinear_sample): figure jobs import this package for its names only
    import torch.nn.functional as F

    weights = motion_blur_kernel(radius, sigma)
    d_row, d_col = motion_blur_offsets(len(weights), angles_deg)
    n, height, width, channels = images.shape
    pad = len(weights) - 1
    source = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    padded = F.pad(source, (pad, pad, pad, pad), mode="replicate")
    padded_width = width + 2 * pad
    flat = padded.reshape(n, channels, -1)
    interior = (torch.arange(height)[:, None] + pad) * padded_width + torch.arange(width)[None, :] + pad
    shifts = torch.from_numpy(d_row * padded_width + d_col)
    out = torch.zeros(n, channels, height * width)
    for tap, weight in enumerate(weights):
        index = (interior.reshape(1, 1, -1) + shifts[:, tap, None, None]).expand(n, channels, -1)
        out += float(weight) * torch.gather(flat, 2, index)
    out = out.reshape(n, channels, height, width).permute(0, 2, 3, 1)
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


def bilinear_sample(images: np.ndarray, rows: np.ndarray, cols: np.ndarray, border: str) -> np.ndarray:
    """Sample N x H x W x C float images at per-pixel (row, col) coordinates with bilinear interpolation.

    border "mirror": reflect about the edge pixels' centres (OpenCV BORDER_REFLECT_101, scipy "mirror");
    border "reflect": reflect about the image edges (scipy "reflect"). Uses torch's grid_sample, whose
    reflection padding is the first with align_corners=True and the second with align_corners=False.
    """
    import torch
    import torch.nn.functional as F

    height, width = images.shape[1:3]
    if border == "mirror":
        align = True
        grid_x = cols / (width - 1) * 2.0 - 1.0
        grid_y = rows / (height - 1) * 2.0 - 1.0
    elif border == "reflect":
        align = False
        grid_x = (2.0 * cols + 1.0) / width - 1.0
        grid_y = (2.0 * rows + 1.0) / height - 1.0
    else:
        raise ValueError(f"border must be 'mirror' or 'reflect', got {border!r}")
    source = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    grid = torch.from_numpy(np.stack([grid_x, grid_y], axis=-1).astype(np.float32))
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="reflection", align_corners=align)
    return out.permute(0, 2, 3, 1).numpy()
