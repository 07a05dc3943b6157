"""Severity tables (severity 1..5) of Hendrycks & Dietterich's CIFAR-10-C/CIFAR-100-C script (ICLR 2019).

The values are those of `make_cifar_c.py` in github.com/hendrycks/robustness, which are tuned for 32x32
images; the ImageNet-C tables (also used by the `imagecorruptions` package) are 2-10x stronger on 32x32.
Each entry is indexed by `severity - 1`.
"""

from __future__ import annotations

import numpy as np

# Additive N(0, c) noise on [0, 1] pixels: standard deviation c.
GAUSSIAN_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)

# Poisson noise: pixels become Poisson(x * c) / c, so larger c is weaker noise.
SHOT_NOISE = (500, 250, 100, 75, 50)

# Salt-and-pepper: fraction of pixel channels replaced (half by 1, half by 0).
IMPULSE_NOISE = (0.01, 0.02, 0.03, 0.05, 0.07)

# (disk radius, sigma of the 3x3 anti-aliasing Gaussian) of the defocus kernel.
DEFOCUS_BLUR = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))

# (ImageMagick motion-blur radius, sigma); the angle is uniform in [-45, 45] degrees. Severities 3 and 4
# share sigma 2 and differ only in taps beyond 3 sigma, so they are about equally strong.
MOTION_BLUR = ((6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5))
MOTION_BLUR_ANGLE = (-45.0, 45.0)

# Zoom factors averaged with the clean image. Built with the script's own `np.arange` calls, whose
# floating-point end points include 1.06 and 1.11 (7 and 12 factors) but not 1.16, 1.21, 1.26.
ZOOM_BLUR = (
    np.arange(1, 1.06, 0.01),
    np.arange(1, 1.11, 0.01),
    np.arange(1, 1.16, 0.01),
    np.arange(1, 1.21, 0.01),
    np.arange(1, 1.26, 0.01),
)

# (Gaussian sigma, maximum pixel displacement, iterations) of the local pixel shuffle.
GLASS_BLUR = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))

# (noise mean, noise std, zoom factor, threshold, motion radius, motion sigma, image blend weight);
# the motion angle is uniform in [-135, -45] degrees (falling flakes).
SNOW = (
    (0.1, 0.2, 1.0, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1.0, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
SNOW_ANGLE = (-135.0, -45.0)

# (image weight, frost texture weight).
FROST = ((1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))
# The script picks one of its first five frost photographs (`randint(5)`) after resizing them by 0.2.
FROST_TEXTURE_COUNT = 5

# (fog strength, decay of the plasma fractal's roughness per scale).
FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))

# Added to the HSV value channel.
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)

# Factor applied to deviations from each channel's mean.
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)

# (displacement scale alpha, displacement smoothing sigma, affine corner jitter), in pixels: the script
# writes them as fractions of the image size 32.
_IMSIZE = 32
ELASTIC_TRANSFORM = (
    (_IMSIZE * 0.0, _IMSIZE * 0.0, _IMSIZE * 0.08),
    (_IMSIZE * 0.05, _IMSIZE * 0.2, _IMSIZE * 0.07),
    (_IMSIZE * 0.08, _IMSIZE * 0.06, _IMSIZE * 0.06),
    (_IMSIZE * 0.1, _IMSIZE * 0.04, _IMSIZE * 0.05),
    (_IMSIZE * 0.1, _IMSIZE * 0.03, _IMSIZE * 0.03),
)

# Fraction of the side length the image is box-downsampled to before box-upsampling back.
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)

# JPEG quality.
JPEG_COMPRESSION = (80, 65, 58, 50, 40)
