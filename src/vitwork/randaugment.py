"""RandAugment on uint8 NCHW batches, on the batch's device, with every random draw from an explicit generator.

`TimmRandAugment` is the paper's law, timm's `rand-m<M>-n<N>-mstd<S>` (`timm.data.auto_augment`, which the authors
build through `transforms_imagenet_train(interpolation="random")`): per image, `num_ops` operations drawn uniformly
with replacement from timm's 15, each applied with probability 0.5 at a magnitude redrawn per application from
N(M, S) clipped to [0, 10]; geometric magnitudes negated with probability 0.5, bilinear or bicubic resampling drawn
per application, the dataset mean as fill. timm runs PIL image by image from Python's and numpy's global RNG; here the
draws come from the run's generator and each slot transforms the whole batch with PIL's own arithmetic (written by
hand: torchvision's tensor operations round, resample and fill differently from PIL).

`TorchvisionRandAugment` keeps the earlier law: torchvision's v2.RandAugment, image by image.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import v2

# timm's `_RAND_TRANSFORMS`, in its order (the operation index of a draw)
TIMM_OPERATIONS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
OPERATION_INDEX = {name: index for index, name in enumerate(TIMM_OPERATIONS)}
NO_OPERATION = -1
LOOKUP_OPERATIONS = ("AutoContrast", "Equalize", "Invert", "Posterize", "Solarize", "SolarizeAdd")
BLEND_OPERATIONS = ("Color", "Contrast", "Brightness", "Sharpness")
GEOMETRIC_OPERATIONS = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")  # the signed ones too
LEVEL_DENOM = 10.0  # timm's magnitude scale: magnitude / 10 is the fraction of each operation's range
TIMM_APPLY_PROB = 0.5  # timm's default probability of applying each chosen operation
UNIFORM_STD_ABOVE = 100.0  # timm reads `mstd` above 100 as "magnitude uniform in [0, M]"
# PIL's SMOOTH kernel (ImageFilter.SMOOTH: 1 around 5, divided by 13), in float32 as PIL's C filter holds it
_SMOOTH_SIDE = float(np.float32(1) / np.float32(13))
_SMOOTH_CENTRE = float(np.float32(5) / np.float32(13))


def timm_fill(mean) -> tuple[int, ...]:
    """The fill colour timm's transforms_imagenet_train gives RandAugment: the dataset mean in 0..255."""
    return tuple(min(255, round(255 * float(m))) for m in mean)


# timm's level -> argument per operation: ((level * scale) * size + offset), truncated for the integral ones, capped,
# negated for the geometric ones when drawn so; size is the width (TranslateXRel), the height (TranslateYRel) or 1
_LEVEL_SCALE = {
    "Rotate": 30.0,  # degrees
    "Posterize": 4.0,  # bits kept: 0 (all dropped) below magnitude 2.5, timm's quirk, kept
    "Solarize": 256.0,  # threshold: rises with the magnitude, so the operation gets milder
    "SolarizeAdd": 110.0,
    "ShearX": 0.3,
    "ShearY": 0.3,
    "TranslateXRel": 0.45,  # fraction of the image, then pixels
    "TranslateYRel": 0.45,
    **{name: 1.8 for name in BLEND_OPERATIONS},  # enhancement factor 0.1..1.9
}
_LEVEL_OFFSET = {name: 0.1 for name in BLEND_OPERATIONS}
_LEVEL_CAP = {"Solarize": 256.0, "SolarizeAdd": 128.0}
_INTEGRAL = ("Posterize", "Solarize", "SolarizeAdd")
_AFFINE_POSITION = {"ShearX": 1, "TranslateXRel": 2, "ShearY": 3, "TranslateYRel": 5}
_FAMILIES = (LOOKUP_OPERATIONS, BLEND_OPERATIONS, GEOMETRIC_OPERATIONS)  # family codes 1, 2, 3; 0 for none


@functools.lru_cache(maxsize=None)
def _operation_tables(device: torch.device, height: int, width: int) -> dict[str, torch.Tensor]:
    """Per-operation constants on the device (built once: a host-to-device copy per batch would stall), indexed by
    operation; the extra last entry serves NO_OPERATION (-1)."""
    names = (*TIMM_OPERATIONS, None)
    size = {"TranslateXRel": float(width), "TranslateYRel": float(height)}
    columns = {
        "scale": [_LEVEL_SCALE.get(name, 0.0) for name in names],
        "size": [size.get(name, 1.0) for name in names],
        "offset": [_LEVEL_OFFSET.get(name, 0.0) for name in names],
        "cap": [_LEVEL_CAP.get(name, math.inf) for name in names],
        "integral": [name in _INTEGRAL for name in names],
        "signed": [name in GEOMETRIC_OPERATIONS for name in names],
        "family": [next((code for code, family in enumerate(_FAMILIES, 1) if name in family), 0) for name in names],
        # where shear and translation put their argument among PIL's affine coefficients (a, b, c, d, e, f)
        "affine_position": [_AFFINE_POSITION.get(name, -1) for name in names],
        # not per operation: the coefficients' positions and the identity
        "positions": list(range(6)),
        "identity_affine": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    }
    dtypes = {"integral": torch.bool, "signed": torch.bool, "family": torch.int64, "affine_position": torch.int64, "positions": torch.int64}
    return {key: torch.tensor(values, dtype=dtypes.get(key, torch.float64), device=device) for key, values in columns.items()}


def timm_arguments(op: torch.Tensor, magnitude: torch.Tensor, negate: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """timm's argument of each image's operation at its magnitude (0..10), in float64 with Python's operations.

    Degrees (Rotate), enhancement factor (Color, Contrast, Brightness, Sharpness), shear factor, translation in
    pixels, bits kept (Posterize), threshold (Solarize) or addend (SolarizeAdd); 0 for operations without one.
    `negate` flips the sign of the geometric ones (timm's `_randomly_negate`).
    """
    tables = _operation_tables(op.device, height, width)
    table = {key: tables[key][op] for key in ("scale", "size", "offset", "cap", "integral", "signed")}
    value = (magnitude.double() / LEVEL_DENOM * table["scale"]) * table["size"] + table["offset"]
    value = torch.minimum(torch.where(table["integral"], value.trunc(), value), table["cap"])
    return torch.where(table["signed"] & negate, -value, value)


def apply_timm_operations(images: torch.Tensor, op: torch.Tensor, argument: torch.Tensor, bicubic: torch.Tensor, fill) -> torch.Tensor:
    """uint8 NCHW images, image i transformed by timm operation `op[i]` (NO_OPERATION: unchanged) at `argument[i]`.

    One lookup-table pass, one blend pass and a bilinear and a bicubic resampling pass (bicubic where `bicubic[i]`;
    `fill` the colour outside the source image), each reproducing PIL's arithmetic.
    """
    fill = torch.as_tensor(fill, dtype=torch.float64, device=images.device)
    family = _operation_tables(images.device, *images.shape[-2:])["family"][op]
    images = _where(family == 1, _lookup_stage, images, (op, argument))
    images = _where(family == 2, _blend_stage, images, (op, argument))
    geometric, matrix = family == 3, _affine_matrices(op, argument, *images.shape[-2:])
    images = _where(geometric & ~bicubic, _bilinear_stage, images, (matrix,), (fill,))
    return _where(geometric & bicubic, _bicubic_stage, images, (matrix,), (fill,))


def _transforms_subsets(device: torch.device) -> bool:
    """Whether a stage transforms only the images it selects (on the CPU, where picking them is free) rather than the
    whole batch kept under a mask (elsewhere: a data-dependent subset would make the host wait for the device)."""
    return device.type == "cpu"


def _where(mask: torch.Tensor, stage, images: torch.Tensor, per_image: tuple, shared: tuple = ()) -> torch.Tensor:
    """`images` with `stage(images, *per_image, *shared)` applied to those under `mask`."""
    if _transforms_subsets(images.device):
        index = mask.nonzero().squeeze(1)
        if len(index) == 0:
            return images
        out = images.clone()
        out[index] = stage(images[index], *(t[index] for t in per_image), *shared)
        return out
    return torch.where(mask[:, None, None, None], stage(images, *per_image, *shared), images)


def _lookup_stage(images: torch.Tensor, op: torch.Tensor, argument: torch.Tensor) -> torch.Tensor:
    """AutoContrast, Equalize, Invert, Posterize, Solarize, SolarizeAdd as per-image, per-channel 256-entry tables."""
    n, c = images.shape[:2]
    flat = images.reshape(n, c, -1).long()
    values = torch.arange(256, device=images.device)
    identity = values.expand(n, c, 256)
    # histograms by scatter_add (torch.bincount on CUDA reads its input's maximum back to the host)
    counts = torch.zeros(n, c, 256, dtype=torch.long, device=images.device).scatter_add_(2, flat, torch.ones_like(flat))
    present = (counts > 0).byte()
    lo, hi = present.argmax(-1), 255 - present.flip(-1).argmax(-1)  # darkest and brightest value per channel
    # ImageOps.autocontrast (cutoff 0): [lo, hi] stretched to [0, 255], truncated; a flat channel is left alone
    scale = 255.0 / (hi - lo).clamp(min=1).double()
    offset = -lo.double() * scale
    stretched = (values * scale[..., None] + offset[..., None]).trunc().clamp(0, 255).long()
    autocontrast = torch.where((hi > lo)[..., None], stretched, identity)
    # ImageOps.equalize: lut[i] = (step // 2 + #pixels below i) // step, step = (#pixels - #brightest) // 255
    step = (flat.shape[-1] - counts.gather(-1, hi[..., None]).squeeze(-1)) // 255
    below = counts.cumsum(-1) - counts
    equalized = ((step // 2)[..., None] + below) // step.clamp(min=1)[..., None]
    equalize = torch.where((step > 0)[..., None], equalized.clamp(max=255), identity)
    # Posterize keeps the top `bits`: i & (256 - 2 ** (8 - bits)); Solarize inverts from the threshold up;
    # SolarizeAdd adds to the values below 128
    whole = argument.long()[:, None, None]
    tables = {
        "AutoContrast": autocontrast,
        "Equalize": equalize,
        "Invert": 255 - identity,
        "Posterize": identity & (256 - 2 ** (8 - whole.clamp(0, 8))),
        "Solarize": torch.where(identity < whole, identity, 255 - identity),
        "SolarizeAdd": torch.where(identity < 128, (identity + whole).clamp(max=255), identity),
    }
    table = identity
    for name, candidate in tables.items():
        table = torch.where((op == OPERATION_INDEX[name])[:, None, None], candidate, table)
    return table.gather(-1, flat).to(torch.uint8).view_as(images)


def _pil_luminance(images: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L conversion (ITU-R 601-2 in 16-bit fixed point), (n, 1, H, W) int64."""
    r, g, b = images.long().unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)[:, None]


def _pil_smooth(images: torch.Tensor) -> torch.Tensor:
    """ImageFilter.SMOOTH as PIL's 3x3 filter computes it (float32, rows y+1, y, y-1, +0.5, truncated; border kept)."""
    x = images.float()

    def row(r, centre):
        return r[..., :-2] * _SMOOTH_SIDE + r[..., 1:-1] * centre + r[..., 2:] * _SMOOTH_SIDE

    inner = 0.5 + row(x[:, :, 2:], _SMOOTH_SIDE)
    inner = inner + row(x[:, :, 1:-1], _SMOOTH_CENTRE)
    inner = inner + row(x[:, :, :-2], _SMOOTH_SIDE)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = inner.clamp(0, 255).trunc()
    return out


def _blend_stage(images: torch.Tensor, op: torch.Tensor, argument: torch.Tensor) -> torch.Tensor:
    """ImageEnhance's Color, Contrast, Brightness, Sharpness: Image.blend(degenerate, image, factor) in float32."""
    gray = _pil_luminance(images)
    # Contrast's degenerate: the mean of the L image, rounded half up
    mean_gray = (gray.sum((1, 2, 3)).double() / gray[0].numel() + 0.5).floor().float()[:, None, None, None]

    def selected(name):
        return (op == OPERATION_INDEX[name])[:, None, None, None]

    degenerate = torch.where(
        selected("Color"),
        gray.float(),
        torch.where(selected("Contrast"), mean_gray, torch.where(selected("Brightness"), 0.0, _pil_smooth(images))),
    )
    factor = argument.float()[:, None, None, None]  # PIL's blend takes a C float
    blended = degenerate + factor * (images.float() - degenerate)
    return blended.clamp_(0, 255).to(torch.uint8)  # truncating, as PIL's cast


def _affine_matrices(op: torch.Tensor, argument: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """PIL's inverse affine coefficients (a, b, c, d, e, f) per image, (n, 6) float64: output pixel (x, y) samples the
    image at (ax + by + c, dx + ey + f). Shear and translation put the argument in one place of the identity."""
    tables = _operation_tables(op.device, height, width)
    placed = (tables["positions"] == tables["affine_position"][op][:, None]) * argument[:, None]
    matrix = tables["identity_affine"] + placed
    # Image.rotate about the centre, with cos and sin rounded to 15 decimals as PIL does
    angle = -(argument * (math.pi / 180))
    cos, sin = torch.cos(angle).round(decimals=15), torch.sin(angle).round(decimals=15)
    cx, cy = width / 2, height / 2
    rotation = torch.stack([cos, sin, (cos * -cx + sin * -cy + 0.0) + cx, -sin, cos, (-sin * -cx + cos * -cy + 0.0) + cy], 1)
    return torch.where((op == OPERATION_INDEX["Rotate"])[:, None], rotation, matrix)


def _source_positions(matrix: torch.Tensor, height: int, width: int):
    """Where each output pixel samples its image, as PIL's affine transform computes it in float64: whether the source
    point lies inside the image (else the fill), its top-left neighbour (row, column) and the fractions (dy, dx)."""
    a, b, c, d, e, f = matrix[:, :, None, None].unbind(1)
    xs = torch.arange(width, dtype=torch.float64, device=matrix.device) + 0.5
    ys = (torch.arange(height, dtype=torch.float64, device=matrix.device) + 0.5)[:, None]
    x_in = a * xs + b * ys + c
    y_in = d * xs + e * ys + f
    inside = (x_in >= 0) & (x_in < width) & (y_in >= 0) & (y_in < height)
    x_in, y_in = x_in - 0.5, y_in - 0.5
    x0, y0 = x_in.floor(), y_in.floor()
    return inside, y0.long(), x0.long(), y_in - y0, x_in - x0


def _neighbourhood(images: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, offsets: tuple[int, ...]) -> torch.Tensor:
    """The pixels (y0 + i, x0 + j) for i, j in `offsets`, clamped to the edge as PIL does: (i, j, n, c, H, W) float64."""
    n, c, h, w = images.shape
    rows = torch.stack([(y0 + i).clamp(0, h - 1) for i in offsets], 1) * w
    columns = torch.stack([(x0 + j).clamp(0, w - 1) for j in offsets], 1)
    index = (rows[:, :, None] + columns[:, None]).view(n, 1, -1).expand(n, c, -1)
    values = images.reshape(n, c, h * w).double().gather(2, index)
    return values.view(n, c, len(offsets), len(offsets), h, w).permute(2, 3, 0, 1, 4, 5)


def _filled(value: torch.Tensor, inside: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Resampled values truncated to uint8 as PIL casts them, the fill colour where the source point is outside."""
    value = torch.where(inside[:, None], value.clamp(0, 255), fill[None, :, None, None])
    return value.to(torch.uint8)


def _bilinear_stage(images, matrix, fill) -> torch.Tensor:
    """Image.transform(AFFINE, BILINEAR, fillcolor): PIL's lerp along the two rows, then between them."""
    inside, y0, x0, dy, dx = _source_positions(matrix, *images.shape[-2:])
    rows = _lerp(*_neighbourhood(images, y0, x0, (0, 1)).unbind(1), dx[:, None])
    return _filled(_lerp(*rows, dy[:, None]), inside, fill)


def _lerp(v1, v2, t):
    return (v2 - v1).mul_(t).add_(v1)


def _cubic(v1, v2, v3, v4, t):
    """PIL's bicubic convolution (a = -1) between v2 and v3 at fraction t: v2 + t (p2 + t (p3 + t p4)) with its
    p2 = -v1 + v3, p3 = 2 (v1 - v2) + v3 - v4, p4 = -v1 + v2 - v3 + v4, evaluated in its order (in place: less memory)."""
    p4 = (v2 - v1).sub_(v3).add_(v4)
    p3 = (v1 - v2).mul_(2).add_(v3).sub_(v4)
    p4.mul_(t).add_(p3).mul_(t)
    return p4.add_(torch.sub(v3, v1, out=p3)).mul_(t).add_(v2)


def _bicubic_stage(images, matrix, fill) -> torch.Tensor:
    """Image.transform(AFFINE, BICUBIC, fillcolor): PIL's cubic along each of the four rows, then across them."""
    inside, y0, x0, dy, dx = _source_positions(matrix, *images.shape[-2:])
    rows = _cubic(*_neighbourhood(images, y0, x0, (-1, 0, 1, 2)).unbind(1), dx[:, None])
    return _filled(_cubic(*rows, dy[:, None]), inside, fill)


@dataclass(frozen=True)
class TimmDraw:
    """One batch's RandAugment draw, per image (rows) and slot (columns)."""

    op: torch.Tensor  # chosen operation index, uniform over TIMM_OPERATIONS
    applied: torch.Tensor  # whether the chosen operation is applied (probability 0.5)
    magnitude: torch.Tensor  # float64 in [0, 10]
    negate: torch.Tensor  # sign flip of geometric operations (probability 0.5)
    bicubic: torch.Tensor  # bicubic, else bilinear, resampling of geometric operations (probability 0.5)


class TimmRandAugment:
    """timm's RandAugment law (`rand-m<magnitude>-n<num_ops>-mstd<magnitude_std>`) on uint8 NCHW batches."""

    def __init__(self, num_ops: int, magnitude: float, magnitude_std: float, fill, prob: float = TIMM_APPLY_PROB):
        self.num_ops, self.magnitude, self.magnitude_std, self.prob = num_ops, float(magnitude), float(magnitude_std), prob
        self.fill = tuple(fill)
        self._fill_on = {}  # device -> fill tensor, built once (a host-to-device copy per batch would stall)

    def draw(self, n: int, generator: torch.Generator, device=None) -> TimmDraw:
        device = device if device is not None else generator.device
        shape = (n, self.num_ops)

        def uniform():
            return torch.rand(shape, generator=generator, device=device, dtype=torch.float64)

        op = torch.randint(0, len(TIMM_OPERATIONS), shape, generator=generator, device=device)
        applied = uniform() < self.prob
        if self.magnitude_std > UNIFORM_STD_ABOVE:
            magnitude = uniform() * self.magnitude
        else:
            magnitude = self.magnitude + self.magnitude_std * torch.randn(shape, generator=generator, device=device, dtype=torch.float64)
        negate, bicubic = uniform() < 0.5, uniform() < 0.5
        return TimmDraw(op, applied, magnitude.clamp(0, LEVEL_DENOM), negate, bicubic)

    def apply(self, images: torch.Tensor, draw: TimmDraw) -> torch.Tensor:
        """uint8 NCHW images with the drawn operations applied, slot after slot."""
        _, _, h, w = images.shape
        if images.device not in self._fill_on:
            self._fill_on[images.device] = torch.tensor(self.fill, dtype=torch.float64, device=images.device)
        for slot in range(self.num_ops):
            op = torch.where(draw.applied[:, slot], draw.op[:, slot], NO_OPERATION)
            argument = timm_arguments(op, draw.magnitude[:, slot], draw.negate[:, slot], h, w)
            images = apply_timm_operations(images, op, argument, draw.bicubic[:, slot], self._fill_on[images.device])
        return images

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(images, self.draw(len(images), generator, images.device))


class TorchvisionRandAugment:
    """torchvision's v2.RandAugment (31 magnitude bins, always applied, black fill) image by image, with a magnitude
    per image from N(magnitude, magnitude_std) on its 0..30 scale.

    v2.RandAugment draws from torch's global CPU generator and takes none of its own. Batching it would re-implement
    its 14 operations for a law the study no longer uses, so the global generator is forked inside each call and
    seeded from `generator`: the run's generator alone still decides the result and the global state is untouched.
    """

    def __init__(self, num_ops: int, magnitude: float, magnitude_std: float):
        self.num_ops, self.magnitude, self.magnitude_std = num_ops, float(magnitude), float(magnitude_std)
        self._by_magnitude = {m: v2.RandAugment(num_ops=num_ops, magnitude=m, num_magnitude_bins=31) for m in range(31)}

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(len(images), generator=generator, device=images.device, dtype=torch.float64)
        magnitudes = (self.magnitude + self.magnitude_std * noise).round().clamp(0, 30).long().tolist()
        seed = int(torch.randint(0, 2**62, (), generator=generator, device=images.device))
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return torch.stack([self._by_magnitude[m](image) for m, image in zip(magnitudes, images)])


def build_randaugment(settings: dict | None, mean):
    """The run's RandAugment (callable (uint8 NCHW images, generator) -> images) from `training.randaugment`, or None."""
    if settings is None:
        return None
    if settings["law"] == "timm":
        return TimmRandAugment(settings["num_ops"], settings["magnitude"], settings["magnitude_std"], timm_fill(mean))
    return TorchvisionRandAugment(settings["num_ops"], settings["magnitude"], settings["magnitude_std"])
