"""CIFAR Vision Transformers (timm ``VisionTransformer``), global or with local multi-head self-attention.

Size arguments: ``img_size`` (32), ``patch_size``, ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``,
``global_pool`` ("token": CLS token and head on it; "avg": no class token, head on the mean token, GAP).
Position embeddings are learned.

Local MSA (``kernel_size=k``): every grid token attends only to the k x k window of the token grid around it.
Per axis of length G, a token at index i sees indices ``[s, s + k)`` with ``s = clip(i - (k - 1) // 2, 0, G - k)``:
the window is centred on the token (for even k it reaches k/2 - 1 back and k/2 forward) and is shifted
inwards at the borders, so every token sees exactly ``min(k, G)`` indices per axis (neighbourhood attention).
``k >= G`` is therefore global attention. Prefix (CLS) tokens attend to all tokens and are attended by all.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from timm.layers import Attention
from timm.models.vision_transformer import VisionTransformer

from .blocks import BlockInfo, build_model, register_family

VIT_TI = dict(patch_size=2, embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0, global_pool="token")
VIT_TI_LOCAL = dict(VIT_TI, patch_size=4)
GLOBAL_POOLS = ("token", "avg")


def axis_neighbourhood(length: int, kernel_size: int) -> torch.Tensor:
    """Boolean ``[length, length]``: entry ``[i, j]`` says index j lies in the k-window of index i (module doc)."""
    index = torch.arange(length)
    if kernel_size >= length:
        return torch.ones(length, length, dtype=torch.bool)
    start = (index - (kernel_size - 1) // 2).clamp(0, length - kernel_size)
    return (index[None, :] >= start[:, None]) & (index[None, :] < start[:, None] + kernel_size)


def local_attention_mask(grid_size: Sequence[int], kernel_size: int, num_prefix_tokens: int) -> torch.Tensor:
    """Boolean ``[N, N]`` attention mask (True = may attend) over prefix tokens then the row-major token grid."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be an integer >= 1, got {kernel_size!r}")
    rows = axis_neighbourhood(grid_size[0], kernel_size)
    cols = axis_neighbourhood(grid_size[1], kernel_size)
    grid = (rows[:, None, :, None] & cols[None, :, None, :]).reshape(rows.numel(), cols.numel())
    total = num_prefix_tokens + grid.shape[0]
    mask = torch.ones(total, total, dtype=torch.bool)
    mask[num_prefix_tokens:, num_prefix_tokens:] = grid
    return mask


class LocalAttention(Attention):
    """timm ``Attention`` restricted by a boolean mask buffer (set by ``set_local_mask``) on every call.

    The mask is passed as ``attn_mask``, so both the fused SDPA path and timm's math path (``fused_attn=False``)
    apply it. The buffer is not persistent: local and global ViTs have interchangeable state dicts.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("local_mask", None, persistent=False)

    def set_local_mask(self, mask: torch.Tensor) -> None:
        """Install the boolean ``[N, N]`` mask (True = may attend)."""
        self.local_mask = mask.to(dtype=torch.bool, device=self.qkv.weight.device)

    def combined_mask(self, attn_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The local mask, intersected with a caller's boolean mask or added to a caller's float bias."""
        if attn_mask is None or self.local_mask is None:
            return self.local_mask if attn_mask is None else attn_mask
        if attn_mask.dtype == torch.bool:
            return attn_mask & self.local_mask
        return attn_mask.masked_fill(~self.local_mask, float("-inf"))

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        """timm attention with the local mask applied."""
        return super().forward(x, attn_mask=self.combined_mask(attn_mask), is_causal=is_causal)


class VitworkViT(VisionTransformer):
    """timm ViT for 32x32 inputs; ``kernel_size`` makes its MSA local (see module doc)."""

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 2,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        global_pool: str = "token",
        kernel_size: int | None = None,
        num_classes: int = 1000,
        **kwargs: Any,
    ) -> None:
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {GLOBAL_POOLS}, got {global_pool!r}")
        super().__init__(
            img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=mlp_ratio, global_pool=global_pool, class_token=global_pool == "token",
            num_classes=num_classes, attn_layer=Attention if kernel_size is None else LocalAttention, **kwargs,
        )
        self.kernel_size = kernel_size
        if kernel_size is not None:
            mask = local_attention_mask(self.patch_embed.grid_size, kernel_size, self.num_prefix_tokens)
            for block in self.blocks:
                block.attn.set_local_mask(mask)

    def feature_blocks(self) -> list[BlockInfo]:
        """Patch embedding (stem), per transformer block an ``msa`` (input of norm2) and ``mlp`` entry, head."""
        prefix = self.num_prefix_tokens
        infos = [BlockInfo("stem", "stem", self.patch_embed)]
        for index, block in enumerate(self.blocks):
            infos.append(BlockInfo(f"blocks.{index}.msa", "msa", block.norm2, "input", prefix))
            infos.append(BlockInfo(f"blocks.{index}.mlp", "mlp", block, "output", prefix))
        infos.append(BlockInfo("head", "head", self.head))
        return infos


def build_global(pretrained: bool, defaults: dict[str, Any], kwargs: dict[str, Any]) -> VitworkViT:
    """A global-MSA ViT; ``kernel_size`` belongs to the vit_local family."""
    if kwargs.get("kernel_size") is not None:
        raise ValueError("kernel_size is only accepted by the local-MSA models (vitwork_vit_local, ...)")
    return build_model(VitworkViT, pretrained, defaults, **kwargs)


@register_family("vit")
def vitwork_vit(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT of any size (defaults: ViT-Ti, patch 2, CLS token)."""
    return build_global(pretrained, VIT_TI, kwargs)


@register_family("vit")
def vitwork_vit_ti(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT-Ti: patch 2 (256 tokens), depth 12, dim 192, 3 heads, MLP 768, CLS token (~5.4M parameters)."""
    return build_global(pretrained, VIT_TI, kwargs)


@register_family("vit")
def vitwork_vit_ti_gap(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT-Ti with a global-average-pooling head and no class token."""
    return build_global(pretrained, dict(VIT_TI, global_pool="avg"), kwargs)


@register_family("vit_local")
def vitwork_vit_local(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT with local MSA of any size (defaults: ViT-Ti, patch 4 = 8x8 grid, kernel 5)."""
    return build_model(VitworkViT, pretrained, dict(VIT_TI_LOCAL, kernel_size=5), **kwargs)


@register_family("vit_local")
def vitwork_vit_ti_local3(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT-Ti, patch 4, 3x3 local MSA."""
    return build_model(VitworkViT, pretrained, dict(VIT_TI_LOCAL, kernel_size=3), **kwargs)


@register_family("vit_local")
def vitwork_vit_ti_local5(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT-Ti, patch 4, 5x5 local MSA."""
    return build_model(VitworkViT, pretrained, dict(VIT_TI_LOCAL, kernel_size=5), **kwargs)


@register_family("vit_local")
def vitwork_vit_ti_local8(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT-Ti, patch 4, 8x8 "local" MSA: global on the 8x8 grid, the kernel series' global reference."""
    return build_model(VitworkViT, pretrained, dict(VIT_TI_LOCAL, kernel_size=8), **kwargs)
