"""The vitwork model zoo: CIFAR ResNets, pre-activation ResNets, ViTs (global and local MSA), AlterNet, PiT, Swin.

All are timm models, registered on import, so ``timm.create_model("vitwork_resnet50", num_classes=100)``
works once this package is imported. Every model lists its blocks with ``feature_blocks()`` (see
``vitwork.models.blocks.BlockInfo`` and docs/architecture.md, Models).
"""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from . import alternet, pit, resnet, swin, vit  # noqa: F401  (imported for their timm registrations)
from .blocks import BLOCK_KINDS, MODEL_FAMILIES, BlockInfo, capture_feature_maps, set_fused_attention

__all__ = [
    "BLOCK_KINDS",
    "BlockInfo",
    "available_models",
    "capture_feature_maps",
    "create_model",
    "model_family",
    "set_fused_attention",
]


def available_models() -> list[str]:
    """The registered ``vitwork_*`` architecture names, sorted."""
    return timm.list_models("vitwork_*")


def model_family(arch: str) -> str:
    """Family of a registered architecture: one of ``vitwork.models.blocks.FAMILIES``."""
    if arch not in MODEL_FAMILIES:
        raise ValueError(f"unknown architecture {arch!r}; available: {available_models()}")
    return MODEL_FAMILIES[arch]


def create_model(arch: str, num_classes: int, drop_path_rate: float = 0.0, **kwargs: Any) -> nn.Module:
    """Build a registered vitwork architecture with ``num_classes`` outputs; ``kwargs`` override its sizes."""
    model_family(arch)  # raises a clear ValueError for unknown names
    return timm.create_model(arch, num_classes=num_classes, drop_path_rate=drop_path_rate, **kwargs)
