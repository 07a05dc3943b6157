"""Training augmentation on batches of uint8 images, on the device where the data lives.

Every random draw (crop, flip, RandAugment, mixup/cutmix) comes from the run's torch.Generator, on the batch's
device: no global RNG is read or changed, so a resumed run continues the same stream and a fixed augmented batch
(the Hessian's) is rebuilt from a seeded generator alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.data.mixup import mixup_target

from vitwork.randaugment import build_randaugment


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop of a zero-padded NCHW batch and random horizontal flip.

    Vectorised by hand: torchvision's batch transforms draw one crop for the whole batch.
    """
    n, _, h, w = images.shape
    if padding > 0:
        padded = torch.nn.functional.pad(images, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=images.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=images.device)
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, :, None]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, :]
        batch = torch.arange(n, device=images.device)[:, None, None]
        images = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(n, generator=generator, device=images.device) < 0.5
        images = torch.where(mask[:, None, None, None], images.flip(-1), images)
    return images.contiguous()


def beta_sample(alpha: float, generator: torch.Generator, device) -> torch.Tensor:
    """One Beta(alpha, alpha) draw (float64, 0-dim) as a ratio of gammas: torch.distributions takes no generator,
    its gamma sampler does."""
    gammas = torch._standard_gamma(torch.full((2,), float(alpha), dtype=torch.float64, device=device), generator=generator)
    return gammas[0] / gammas.sum()


@dataclass(frozen=True)
class MixDraw:
    """One batch's mixup/cutmix draw (0-dim tensors on the batch's device)."""

    mixed: torch.Tensor  # bool: the batch is mixed (probability `prob`)
    cutmix: torch.Tensor  # bool: by cutmix, else by mixup
    lam: torch.Tensor  # float64: the Beta draw of the chosen mode (before cutmix's area correction)
    centre_y: torch.Tensor  # int64: cutmix box centre row, uniform in [0, H)
    centre_x: torch.Tensor  # int64: cutmix box centre column, uniform in [0, W)


class MixupCutmix:
    """timm's Mixup in mode "batch": with probability `prob` the batch is mixed with its reverse, by cutmix
    (probability `switch_prob` when both alphas are positive) or by mixup; cutmix's square box is clipped to the image
    and lam corrected to the pasted area; soft targets by timm's mixup_target with label smoothing.

    Written out because timm's Mixup draws from numpy's global state; here the draws come from the run's generator,
    on the batch's device, without a host round trip.
    """

    def __init__(self, mixup_alpha: float, cutmix_alpha: float, prob: float, switch_prob: float, label_smoothing: float, num_classes: int):
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.prob, self.switch_prob = float(prob), float(switch_prob)
        self.label_smoothing, self.num_classes = float(label_smoothing), num_classes

    def draw(self, height: int, width: int, generator: torch.Generator, device) -> MixDraw:
        def uniform():
            return torch.rand((), generator=generator, device=device, dtype=torch.float64)

        one = torch.ones((), dtype=torch.float64, device=device)
        mixed, switch = uniform() < self.prob, uniform() < self.switch_prob
        lam_mixup = beta_sample(self.mixup_alpha, generator, device) if self.mixup_alpha > 0 else one
        lam_cutmix = beta_sample(self.cutmix_alpha, generator, device) if self.cutmix_alpha > 0 else one
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            cutmix = switch
        else:
            cutmix = torch.full((), self.cutmix_alpha > 0, device=device)
        centre_y = torch.randint(0, height, (), generator=generator, device=device)
        centre_x = torch.randint(0, width, (), generator=generator, device=device)
        return MixDraw(mixed, cutmix, torch.where(cutmix, lam_cutmix, lam_mixup), centre_y, centre_x)

    def apply(self, x: torch.Tensor, labels: torch.Tensor, draw: MixDraw) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed float NCHW inputs, soft targets) for one draw."""
        _, _, h, w = x.shape
        lam = torch.where(draw.mixed, draw.lam, 1.0)
        # timm's rand_bbox: a square of side sqrt(1 - lam) (truncated) centred at the draw, clipped to the image
        ratio = torch.sqrt(1 - lam)
        cut_h, cut_w = (h * ratio).long(), (w * ratio).long()
        top, bottom = (draw.centre_y - cut_h // 2).clamp(0, h), (draw.centre_y + (cut_h + 1) // 2).clamp(0, h)
        left, right = (draw.centre_x - cut_w // 2).clamp(0, w), (draw.centre_x + (cut_w + 1) // 2).clamp(0, w)
        rows, cols = torch.arange(h, device=x.device)[:, None], torch.arange(w, device=x.device)
        box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
        cut = draw.mixed & draw.cutmix
        flipped = x.flip(0)
        blended = x * lam.to(x.dtype) + flipped * (1 - lam).to(x.dtype)
        x = torch.where(cut, torch.where(box, flipped, x), blended)
        lam = torch.where(cut, 1 - ((bottom - top) * (right - left)).double() / float(h * w), lam)
        return x, mixup_target(labels, self.num_classes, lam, self.label_smoothing)

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        return self.apply(x, labels, self.draw(x.shape[-2], x.shape[-1], generator, x.device))


class TrainAugment:
    """(uint8 NHWC images, int labels) -> (normalised float NCHW inputs, soft targets) with the run's augmentation:
    crop and flip, RandAugment (`training.randaugment`, law timm or torchvision), normalisation, mixup/cutmix."""

    def __init__(self, training: dict, num_classes: int, mean, std):
        self.training = training
        self.num_classes = num_classes
        self.mean, self.std = mean, std
        self.randaugment = build_randaugment(training.get("randaugment"), mean)
        mixing = training["mix_prob"] > 0 and (training["mixup_alpha"] > 0 or training["cutmix_alpha"] > 0)
        self.mixup = (
            MixupCutmix(
                mixup_alpha=training["mixup_alpha"],
                cutmix_alpha=training["cutmix_alpha"],
                prob=training["mix_prob"],
                switch_prob=training["mix_switch_prob"],
                label_smoothing=training["label_smoothing"],
                num_classes=num_classes,
            )
            if mixing
            else None
        )
        self._statistics_on = {}  # device -> (mean, std) tensors, copied there once rather than every batch

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        x = images.permute(0, 3, 1, 2)
        x = random_crop_flip(x, self.training["crop_padding"], self.training["horizontal_flip"], generator)
        if self.randaugment is not None:
            x = self.randaugment(x, generator)
        if x.device not in self._statistics_on:
            self._statistics_on[x.device] = tuple(torch.as_tensor(v, dtype=torch.float32, device=x.device) for v in (self.mean, self.std))
        x = normalise(x, *self._statistics_on[x.device])
        if self.mixup is not None and len(x) % 2 == 0:  # timm's batch mixing pairs each image with its reverse
            return self.mixup(x, labels, generator)
        return x, mixup_target(labels, self.num_classes, lam=1.0, smoothing=self.training["label_smoothing"])


def normalise(images_nchw: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 NCHW -> float NCHW standardised with the training-set per-channel mean and std (in [0, 1] units)."""
    x = images_nchw.float().div_(255.0)
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def eval_inputs(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised float NCHW inputs of uint8 NHWC test images (no augmentation)."""
    return normalise(images.permute(0, 3, 1, 2), mean, std)
