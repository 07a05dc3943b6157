"""Optimizers by name (timm's factory, else torch.optim) and the per-iteration learning-rate schedule."""

from __future__ import annotations

import math

import torch
from timm.optim import create_optimizer_v2, list_optimizers

from vitwork.objective import decay_param_groups


def _torch_optimizer_class(name: str):
    """The torch.optim class whose name matches `name` case-insensitively, or None."""
    for attr in dir(torch.optim):
        cls = getattr(torch.optim, attr)
        if attr.lower() == name.lower() and isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer):
            return cls
    return None


def is_known_optimizer(name: str) -> bool:
    """True when timm's optimizer factory or torch.optim provides `name`."""
    return name.lower() in list_optimizers() or _torch_optimizer_class(name) is not None


def build_optimizer(model: torch.nn.Module, name: str, hparams: dict, decay: str = "all") -> torch.optim.Optimizer:
    """Create the optimizer `name` with `hparams`; weight decay applies to the decay set `decay` (vitwork.objective)."""
    hparams = dict(hparams)
    groups = decay_param_groups(model, hparams.get("weight_decay", 0.0), decay)
    if name.lower() in list_optimizers():
        return create_optimizer_v2(groups, opt=name.lower(), **hparams)
    cls = _torch_optimizer_class(name)
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}")
    hparams.pop("weight_decay", None)
    return cls(groups, **hparams)


def optimizer_defaults(name: str) -> dict:
    """Every setting optimizer `name` takes, with its default: the optimizer as built for one tiny parameter."""
    return dict(build_optimizer(torch.nn.Linear(1, 1), name, {"lr": 1.0}).defaults)


class OptimizerSettingError(ValueError):
    """An optimizer setting that cannot be used as written; `key` names it (None: the setting as a whole)."""

    def __init__(self, key: str | None, message: str):
        super().__init__(message)
        self.key = key


def check_optimizer_setting(name: str, setting: dict, decay: str = "all") -> None:
    """Build `name` with one setting (no grid) for a tiny model, as training builds it; raise OptimizerSettingError
    for a key the optimizer does not take, silently drops or overrides (timm's factory drops e.g. `momentum` for
    adamw), or a value it rejects."""
    try:
        optimizer = build_optimizer(torch.nn.Linear(1, 1), name, setting, decay)
    except (TypeError, ValueError, KeyError) as error:
        raise OptimizerSettingError(None, f"{name} cannot be built with {setting}: {error}") from None
    for key, value in setting.items():
        if key not in optimizer.defaults:
            raise OptimizerSettingError(key, f"{name} does not take {key!r} (its settings: {', '.join(sorted(optimizer.defaults))})")
        # weight decay lives in the parameter groups (vitwork.objective); every other setting in the defaults
        used = max(group["weight_decay"] for group in optimizer.param_groups) if key == "weight_decay" else optimizer.defaults[key]
        if _as_plain(used) != _as_plain(value):
            raise OptimizerSettingError(key, f"{name} was given {value!r} but uses {_as_plain(used)!r}")


def _as_plain(value):
    """Tuples as lists, so a configured [0.9, 0.999] equals the optimizer's (0.9, 0.999)."""
    return [_as_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def lr_factor(update: int, steps_per_epoch: int, warmup_epochs: int, epochs: int, schedule: dict) -> float:
    """Multiplier of the base learning rate for 0-based update `update`.

    Linear warm-up per iteration over `warmup_epochs`, then cosine (to `min_lr` as a fraction of the base lr) or
    step decay by `gamma` at each milestone epoch (counted after warm-up) over `epochs`. Written by hand because
    timm's per-update schedulers start warm-up at zero and move milestones one update early.
    """
    warmup_updates = warmup_epochs * steps_per_epoch
    if update < warmup_updates:
        return (update + 1) / warmup_updates
    after = update - warmup_updates
    name = schedule["name"]
    if name == "constant":
        return 1.0
    if name == "step":
        epoch = after // steps_per_epoch
        return schedule.get("gamma", 0.2) ** sum(epoch >= m for m in schedule["milestones"])
    progress = min(after / max(1, epochs * steps_per_epoch), 1.0)
    floor = schedule.get("min_lr", 0.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer, steps_per_epoch: int, warmup_epochs: int, epochs: int, schedule: dict):
    """A LambdaLR stepping once per update with `lr_factor` (its state is the update count)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda update: lr_factor(update, steps_per_epoch, warmup_epochs, epochs, schedule)
    )
