"""Digital corruptions: brightness, contrast, elastic_transform, pixelate, jpeg_compression."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from . import params
from ._ops import bilinear_sample, gaussian_blur_hw, to_uint8, to_unit


def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Add c to the HSV value channel (clipped at 1), keeping hue and saturation.

    With hue and saturation fixed every RGB channel is proportional to V = max(R, G, B), so the script's
    rgb -> hsv -> rgb round trip is a per-pixel rescale by V' / V; black pixels become grey V'. The
    largest channel is set to V' exactly, as hsv2rgb does, so that truncation to uint8 agrees.
    """
    shift = params.BRIGHTNESS[severity - 1]
    x = to_unit(images)
    value = x.max(axis=-1, keepdims=True)
    new_value = np.minimum(value + shift, 1.0)
    scale = np.divide(new_value, value, out=np.zeros_like(value), where=value > 0)
    return to_uint8(np.where(x == value, new_value, x * scale))


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Shrink deviations from each image's per-channel mean by the factor c."""
    factor = params.CONTRAST[severity - 1]
    x = to_unit(images)
    means = x.mean(axis=(1, 2), keepdims=True)
    return to_uint8((x - means) * factor + means)


def affine_from_points(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Batched 2 x 3 affine matrices mapping three (x, y) source points onto target points (N x 3 x 2)."""
    homogeneous = np.concatenate([source, np.ones(source.shape[:-1] + (1,))], axis=-1)
    return np.linalg.solve(homogeneous, target).transpose(0, 2, 1)


def elastic_transform(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Random affine warp of three control points, then a smoothed random displacement field.

    The script warps with cv2.warpAffine (bilinear, BORDER_REFLECT_101) and displaces with
    scipy.ndimage.map_coordinates (order 1, mode "reflect"); both are bilinear samplings here.
    """
    alpha, sigma, jitter = params.ELASTIC_TRANSFORM[severity - 1]
    n, height, width = images.shape[:3]
    x = images.astype(np.float32) / np.float32(255.0)

    centre = np.float32([height, width]) // 2
    side = min(height, width) // 3
    anchors = np.array([centre + side, [centre[0] + side, centre[1] - side], centre - side], dtype=np.float64)
    moved = anchors[None] + rng.uniform(-jitter, jitter, size=(n, 3, 2)).astype(np.float32)
    # warpAffine maps anchors to moved; each output pixel reads the input at the inverse map.
    inverse = affine_from_points(moved, np.broadcast_to(anchors, moved.shape))
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    src_x = inverse[:, 0, 0, None, None] * grid_x + inverse[:, 0, 1, None, None] * grid_y + inverse[:, 0, 2, None, None]
    src_y = inverse[:, 1, 0, None, None] * grid_x + inverse[:, 1, 1, None, None] * grid_y + inverse[:, 1, 2, None, None]
    x = bilinear_sample(x, src_y, src_x, border="mirror")

    dx = gaussian_blur_hw(rng.uniform(-1, 1, size=(n, height, width)), sigma, mode="reflect", truncate=3.0) * alpha
    dy = gaussian_blur_hw(rng.uniform(-1, 1, size=(n, height, width)), sigma, mode="reflect", truncate=3.0) * alpha
    x = bilinear_sample(x, grid_y + dy.astype(np.float32), grid_x + dx.astype(np.float32), border="reflect")
    return to_uint8(x)


def pixelate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Box-downsample each image to int(32 c) pixels and box-upsample back (Pillow, as the script)."""
    factor = params.PIXELATE[severity - 1]
    height, width = images.shape[1:3]
    small = (int(width * factor), int(height * factor))
    out = np.empty_like(images)
    for index, image in enumerate(images):
        resized = Image.fromarray(image).resize(small, Image.BOX).resize((width, height), Image.BOX)
        out[index] = np.asarray(resized)
    return out


def jpeg_compression(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Encode and decode each image as JPEG at the severity's quality with Pillow's defaults, as the script."""
    quality = params.JPEG_COMPRESSION[severity - 1]
    out = np.empty_like(images)
    for index, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        out[index] = np.asarray(Image.open(buffer).convert("RGB"))
    return out
