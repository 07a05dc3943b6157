"""A procedural, seeded image-classification dataset: the demo study's data.

Each class is a (shape, texture) pair. Shape and colour (the hue follows the shape) are low-frequency cues;
the texture that fills the shape (stripes, checkerboard, diagonals with a 2-3 pixel period) is a
high-frequency cue. Classes that share a shape differ only in texture, and classes that share a texture differ
in shape and colour, so a model must use both ends of the spectrum, and the frequency analyses of the study
have something real to find. Everything is vectorised over images; the same seed gives the same bytes.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import hsv_to_rgb

SHAPES = ("disk", "square", "triangle", "ring", "cross")
TEXTURES = ("horizontal_stripes", "vertical_stripes", "checkerboard", "diagonal_stripes")
IMAGE_SIZE = 32


def class_names(num_classes: int) -> list[str]:
    """Readable names: `<shape>_<texture>` for class c = shape c % 5, texture (c // 5) % 4 (repeats past 20)."""
    names = []
    for c in range(num_classes):
        name = f"{SHAPES[c % len(SHAPES)]}_{TEXTURES[(c // len(SHAPES)) % len(TEXTURES)]}"
        names.append(name if c < len(SHAPES) * len(TEXTURES) else f"{name}_{c}")
    return names


def _shape_masks(shape_ids, cx, cy, radius, angle, size):
    """Boolean masks (N, size, size) of each image's shape at its centre, radius and rotation."""
    grid = np.arange(size, dtype=np.float32) + 0.5
    y, x = np.meshgrid(grid, grid, indexing="ij")
    dx = x[None] - cx[:, None, None]
    dy = y[None] - cy[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # coordinates in the shape's rotated frame
    r = radius[:, None, None]
    dist = np.hypot(u, v)
    masks = {
        0: dist <= r,
        1: np.maximum(abs(u), abs(v)) <= 0.8 * r,
        2: (v <= 0.5 * r) & (v >= -r + 1.8 * abs(u)),
        3: (dist <= r) & (dist >= 0.55 * r),
        4: ((abs(u) <= 0.3 * r) | (abs(v) <= 0.3 * r)) & (np.maximum(abs(u), abs(v)) <= r),
    }
    out = np.zeros_like(dist, dtype=bool)
    for shape_id, mask in masks.items():
        selected = shape_ids == shape_id
        out[selected] = mask[selected]
    return out


def _textures(texture_ids, phase, size):
    """Zero-mean +-1 texture maps (N, size, size) with a 2-3 pixel period and a random phase."""
    idx = np.arange(size)
    y, x = np.meshgrid(idx, idx, indexing="ij")
    y = y[None] + phase[:, None, None]
    x = x[None] + phase[:, None, None]
    patterns = {
        0: np.where(y % 2 == 0, 1.0, -1.0),
        1: np.where(x % 2 == 0, 1.0, -1.0),
        2: np.where((x + y) % 2 == 0, 1.0, -1.0),
        3: np.where((x + y) % 3 == 0, 1.0, -0.5),
    }
    out = np.zeros((len(texture_ids), size, size), dtype=np.float32)
    for texture_id, pattern in patterns.items():
        selected = texture_ids == texture_id
        out[selected] = pattern[selected]
    return out


def make_synthetic(num_classes: int, per_class: int, seed: int, size: int = IMAGE_SIZE):
    """Generate `num_classes * per_class` images (uint8, N x size x size x 3) and labels, class-balanced, shuffled."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(num_classes), per_class))
    n = labels.size
    shape_ids = labels % len(SHAPES)
    texture_ids = (labels // len(SHAPES)) % len(TEXTURES)

    cx = size / 2 + rng.uniform(-5, 5, n)
    cy = size / 2 + rng.uniform(-5, 5, n)
    radius = rng.uniform(7.5, 12.0, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    mask = _shape_masks(shape_ids, cx, cy, radius, angle, size)
    texture = _textures(texture_ids, rng.integers(0, 6, n), size)

    hue = (shape_ids / len(SHAPES) + rng.uniform(-0.08, 0.08, n)) % 1.0
    fg = hsv_to_rgb(np.stack([hue, rng.uniform(0.55, 0.9, n), rng.uniform(0.6, 0.9, n)], -1))
    bg = hsv_to_rgb(np.stack([rng.uniform(0, 1, n), rng.uniform(0.05, 0.3, n), rng.uniform(0.15, 0.45, n)], -1))

    # background: a faint linear gradient in a random direction, so it is not flat
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    direction = rng.uniform(0, 2 * np.pi, n)
    gradient = np.cos(direction)[:, None, None] * ramp[None, None, :] + np.sin(direction)[:, None, None] * ramp[None, :, None]
    background = bg[:, None, None, :] * (1 + 0.25 * gradient[..., None])

    amplitude = rng.uniform(0.12, 0.3, n)[:, None, None, None]
    foreground = fg[:, None, None, :] * (1 + amplitude * texture[..., None])
    image = np.where(mask[..., None], foreground, background)
    image = image + rng.normal(0, 0.08, image.shape)
    images = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)
