"""Shared pieces of the model zoo: the ``BlockInfo`` contract, forward hooks on blocks, registration helpers.

Every vitwork model lists its blocks with ``feature_blocks() -> list[BlockInfo]`` (docs/architecture.md, Models);
``capture_feature_maps`` reads their outputs through forward hooks and turns token sequences into spatial maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from timm.models import register_model
from torch import nn
from torch.utils.hooks import RemovableHandle

BLOCK_KINDS = ("stem", "conv", "downsample", "msa", "mlp", "head")
TAPS = ("output", "input")

# arch name -> family, filled by `register_family` as the model modules are imported
MODEL_FAMILIES: dict[str, str] = {}
FAMILIES = ("resnet", "preact_resnet", "alternet", "swin", "pit", "vit_local", "vit")


@dataclass(frozen=True)
class BlockInfo:
    """One block of a model: where to read its output and what kind of block it is.

    ``tap="output"`` reads the output of ``module`` (forward hook); ``tap="input"`` reads the first input of
    ``module`` (forward pre-hook), which is how a ViT's MSA sub-block with its skip is read (input of ``norm2``).
    ``num_prefix_tokens`` is the number of leading non-spatial tokens (CLS) of a ``[B, N, C]`` token output;
    ``channels_last`` marks a 4-D output laid out ``[B, H, W, C]`` (timm's Swin) instead of ``[B, C, H, W]``.
    """

    name: str
    kind: str
    module: nn.Module
    tap: str = "output"
    num_prefix_tokens: int = 0
    channels_last: bool = False

    def __post_init__(self) -> None:
        """Reject kinds and taps outside the contract."""
        if self.kind not in BLOCK_KINDS:
            raise ValueError(f"BlockInfo.kind must be one of {BLOCK_KINDS}, got {self.kind!r}")
        if self.tap not in TAPS:
            raise ValueError(f"BlockInfo.tap must be one of {TAPS}, got {self.tap!r}")
        if self.num_prefix_tokens < 0:
            raise ValueError(f"BlockInfo.num_prefix_tokens must be >= 0, got {self.num_prefix_tokens}")


def register_tap(info: BlockInfo, fn: Callable[[torch.Tensor], None]) -> RemovableHandle:
    """Call ``fn(tensor)`` with the block's tapped tensor on every forward pass; returns the hook handle."""
    if info.tap == "output":
        return info.module.register_forward_hook(lambda _module, _args, output: fn(output))
    return info.module.register_forward_pre_hook(lambda _module, args: fn(args[0]))


def tokens_to_map(tensor: torch.Tensor, num_prefix_tokens: int = 0, channels_last: bool = False) -> torch.Tensor:
    """``[B, C, H, W]`` map of a block output: NCHW passes through, NHWC (``channels_last``) is permuted,
    ``[B, N, C]`` tokens lose prefix tokens and are reshaped to the square token grid."""
    if tensor.dim() == 4:
        return tensor.permute(0, 3, 1, 2) if channels_last else tensor
    if tensor.dim() != 3:
        raise ValueError(f"expected a [B, C, H, W] map or [B, N, C] tokens, got shape {tuple(tensor.shape)}")
    tokens = tensor[:, num_prefix_tokens:]
    batch, count, channels = tokens.shape
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"{count} spatial tokens do not form a square grid")
    return tokens.transpose(1, 2).reshape(batch, channels, side, side)


def selected_blocks(model: nn.Module, kinds: Iterable[str] | None) -> list[BlockInfo]:
    """The model's non-head blocks, optionally restricted to ``kinds``."""
    if kinds is not None:
        kinds = set(kinds)
        unknown = kinds - set(BLOCK_KINDS)
        if unknown:
            raise ValueError(f"kinds must be a subset of {BLOCK_KINDS}, got unknown {sorted(unknown)}")
    return [b for b in model.feature_blocks() if b.kind != "head" and (kinds is None or b.kind in kinds)]


def capture_feature_maps(
    model: nn.Module, x: torch.Tensor, kinds: Sequence[str] | None = None
) -> list[tuple[BlockInfo, torch.Tensor]]:
    """Run one forward pass and return ``[(BlockInfo, map [B, C, H, W])]`` for every non-head block.

    Hooks are removed even if the forward pass raises. Autograd and train/eval mode are the caller's choice
    (wrap in ``torch.inference_mode()`` for analysis).
    """
    blocks = selected_blocks(model, kinds)
    captured: list[torch.Tensor | None] = [None] * len(blocks)
    handles: list[RemovableHandle] = []

    def store(index: int) -> Callable[[torch.Tensor], None]:
        """Hook callback writing the tapped tensor into slot ``index``."""
        def _store(tensor: torch.Tensor) -> None:
            captured[index] = tensor
        return _store

    try:
        for index, info in enumerate(blocks):
            handles.append(register_tap(info, store(index)))
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    missing = [info.name for info, t in zip(blocks, captured) if t is None]
    if missing:
        raise RuntimeError(f"blocks {missing} were not run by the forward pass")
    return [(info, tokens_to_map(t, info.num_prefix_tokens, info.channels_last)) for info, t in zip(blocks, captured)]


def set_fused_attention(model: nn.Module, enabled: bool) -> int:
    """Switch timm's fused SDPA on or off in every attention module (those with a ``fused_attn`` flag).

    Needed because fused SDPA has no double backward on CPU (Hessian-vector products). Returns how many
    modules were switched.
    """
    count = 0
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = bool(enabled)
            count += 1
    return count


def changes_resolution(block: nn.Module) -> bool:
    """True if any convolution or pooling inside ``block`` has a stride above 1."""
    for module in block.modules():
        stride = getattr(module, "stride", 1)
        if isinstance(module, (nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d)):
            strides = stride if isinstance(stride, (tuple, list)) else (stride,)
            if max(strides) > 1:
                return True
    return False


def register_family(family: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a model entrypoint with timm and record its family for ``model_family``."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        """Record the family, then hand the entrypoint to timm's registry."""
        MODEL_FAMILIES[fn.__name__] = family
        return register_model(fn)

    return wrap


def build_model(model_cls: Callable[..., nn.Module], pretrained: bool, defaults: dict[str, Any], **kwargs: Any):
    """Build ``model_cls(**defaults overridden by kwargs)``, dropping the pretrained-weight arguments timm passes."""
    if pretrained:
        raise ValueError("vitwork models have no pretrained weights (pretrained=True is not supported)")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return model_cls(**{**defaults, **kwargs})
