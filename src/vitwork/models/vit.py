"""CIFAR Vision Transformers (timm ``VisionTransformer``), global or with local multi-head self-attention.

Size arguments: ``img_size`` (32), ``patch_size``, ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``,
``qkv_bias`` (False, as the authors' ViT-Ti), ``global_pool`` ("token": CLS token and head on it; "avg": no class
token, head on the mean token after a LayerNorm, GAP). Position embeddings are learned.

Local MSA (``kernel_size=k``), the authors' convolutional MSA (their ``ConViT``, after Yang et al. 2019): every
grid token attends to the k x k window of the token grid centred on it. At the border the window keeps its
size and reaches off the grid: the authors unfold the projected keys and values with zero padding, so every
off-grid position is a key and value of exactly zero, i.e. a logit of 0 that takes softmax mass and adds nothing
to the output. A token with ``m`` off-grid positions in its window therefore gets
``sum_j exp(s_j) v_j / (sum_j exp(s_j) + m)`` over its in-grid neighbours j. That needs a zero key, so local MSA
has no qkv bias (the authors' has none). ``k`` must be odd (a centred window, the only kind the authors' unfold
builds) unless it covers the grid: ``k >= grid`` is plain global attention, which is how the paper's 8x8 kernel on
the 8x8 token grid is global MSA. Prefix (CLS) tokens, not part of the authors' local models, attend to every
token without padding and are attended by all.

The authors' local models are ViT-Ti sized, patch 4 (8x8 grid: only there is the 8x8 kernel global), no class
token and a GAP head (mean token, LayerNorm, linear): the ``vitwork_vit_ti_local*`` presets.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import torch
from timm.layers import Attention
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .blocks import BlockInfo, build_model, register_family

VIT_TI = dict(patch_size=2, embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0, global_pool="token", qkv_bias=False)
# the authors' local models normalise with PyTorch's LayerNorm default eps (their ViT-Ti, timm's, uses 1e-6)
VIT_TI_LOCAL = dict(VIT_TI, patch_size=4, global_pool="avg", norm_layer=partial(nn.LayerNorm, eps=1e-5))
GLOBAL_POOLS = ("token", "avg")


def axis_window(length: int, radius: int) -> torch.Tensor:
    """Boolean ``[length, length]``: entry ``[i, j]`` says ``|i - j| <= radius`` (j in the window of i)."""
    index = torch.arange(length)
    return (index[None, :] - index[:, None]).abs() <= radius


def local_attention_bias(grid_size: Sequence[int], kernel_size: int, num_prefix_tokens: int) -> torch.Tensor | None:
    """Additive attention bias ``[N + 1, N + 1]`` of local MSA over prefix tokens, the row-major grid and one
    appended zero token standing for the window's off-grid positions (module doc); None when ``k`` covers the grid.

    In-window keys get 0, other keys ``-inf``; the zero token's column gets ``log(m)`` for a query with ``m``
    off-grid window positions (``-inf`` when none), so its zero logit counts ``m`` times. Its own row is unused.
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be an integer >= 1, got {kernel_size!r}")
    if kernel_size >= max(grid_size):
        return None
    if kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd (a window centred on its token, as the authors' zero-padded unfold) or at "
            f"least the token grid {tuple(grid_size)} (global), got {kernel_size}"
        )
    radius = (kernel_size - 1) // 2
    rows, cols = axis_window(grid_size[0], radius), axis_window(grid_size[1], radius)
    inside = (rows[:, None, :, None] & cols[None, :, None, :]).reshape(rows.numel(), cols.numel())
    off_grid = kernel_size**2 - inside.sum(dim=1)
    grid = slice(num_prefix_tokens, num_prefix_tokens + inside.shape[0])
    total = num_prefix_tokens + inside.shape[0] + 1
    bias = torch.zeros(total, total)
    bias[grid, grid] = torch.zeros(inside.shape).masked_fill(~inside, float("-inf"))
    bias[:num_prefix_tokens, -1] = float("-inf")
    bias[grid, -1] = off_grid.float().log()
    return bias


class LocalAttention(Attention):
    """timm ``Attention`` restricted to zero-padded k x k windows by a bias buffer (``set_window_bias``).

    Every call appends one zero token: without qkv bias its key and value are exactly zero, and the bias counts
    its logit once per off-grid window position (``local_attention_bias``). The bias goes to timm's ``attn_mask``,
    so both the fused SDPA path and the math path (``fused_attn=False``, used for double backward) apply it. The
    buffer is not persistent: local and global ViTs have interchangeable state dicts.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.qkv.bias is not None or not isinstance(self.k_norm, nn.Identity):
            raise ValueError("local MSA needs qkv_bias=False and no qk_norm: an off-grid window position is a zero "
                             "key and value, as in the authors' zero-padded unfold")
        self.register_buffer("window_bias", None, persistent=False)

    def set_window_bias(self, bias: torch.Tensor | None) -> None:
        """Install the ``[N + 1, N + 1]`` bias of ``local_attention_bias`` (None: global attention)."""
        self.window_bias = None if bias is None else bias.to(device=self.qkv.weight.device)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        """Windowed attention over ``x`` ``[B, N, C]``; the window bias replaces any caller mask."""
        if attn_mask is not None or is_causal:
            raise ValueError("LocalAttention applies its own window bias; attn_mask and is_causal are not supported")
        if self.window_bias is None:
            return super().forward(x)
        padded = torch.cat([x, x.new_zeros(x.shape[0], 1, x.shape[2])], dim=1)
        return super().forward(padded, attn_mask=self.window_bias)[:, :-1]


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
        qkv_bias: bool = False,
        global_pool: str = "token",
        kernel_size: int | None = None,
        num_classes: int = 1000,
        **kwargs: Any,
    ) -> None:
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {GLOBAL_POOLS}, got {global_pool!r}")
        super().__init__(
            img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, global_pool=global_pool, class_token=global_pool == "token",
            num_classes=num_classes, attn_layer=Attention if kernel_size is None else LocalAttention, **kwargs,
        )
        self.kernel_size = kernel_size
        if kernel_size is not None:
            bias = local_attention_bias(self.patch_embed.grid_size, kernel_size, self.num_prefix_tokens)
            for block in self.blocks:
                block.attn.set_window_bias(bias)

    def feature_blocks(self) -> list[BlockInfo]:
        """Stem (the tokens block 0 reads: patch + position embedding), per transformer block an ``msa`` (input
        of norm2) and an ``mlp`` entry, head."""
        prefix = self.num_prefix_tokens
        infos = [BlockInfo("stem", "stem", self.norm_pre, "output", prefix)]
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
    """ViT of any size (defaults: ViT-Ti, patch 2, CLS token, no qkv bias)."""
    return build_global(pretrained, VIT_TI, kwargs)


@register_family("vit")
def vitwork_vit_ti(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT-Ti as the authors' CIFAR model: patch 2 (16x16 grid), depth 12, dim 192, 3 heads, MLP 768, CLS token,
    no qkv bias; 5,403,172 parameters at 100 classes (theirs: the same)."""
    return build_global(pretrained, VIT_TI, kwargs)


@register_family("vit")
def vitwork_vit_ti_gap(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT-Ti with a GAP head (mean token, LayerNorm, linear) and no class token; 5,402,788 parameters."""
    return build_global(pretrained, dict(VIT_TI, global_pool="avg"), kwargs)


@register_family("vit_local")
def vitwork_vit_local(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT with local MSA of any size (defaults: ViT-Ti, patch 4 = 8x8 grid, GAP, kernel 5)."""
    return build_model(VitworkViT, pretrained, dict(VIT_TI_LOCAL, kernel_size=5), **kwargs)


@register_family("vit_local")
def vitwork_vit_ti_local3(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT-Ti, patch 4 (8x8 grid), GAP, 3x3 local MSA; 5,372,836 parameters (the authors' ConViT-Ti: the same)."""
    return build_model(VitworkViT, pretrained, dict(VIT_TI_LOCAL, kernel_size=3), **kwargs)


@register_family("vit_local")
def vitwork_vit_ti_local5(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT-Ti, patch 4 (8x8 grid), GAP, 5x5 local MSA; 5,372,836 parameters (the authors' ConViT-Ti: the same)."""
    return build_model(VitworkViT, pretrained, dict(VIT_TI_LOCAL, kernel_size=5), **kwargs)


@register_family("vit_local")
def vitwork_vit_ti_local8(pretrained: bool = False, **kwargs: Any) -> VitworkViT:
    """ViT-Ti, patch 4 (8x8 grid), GAP, 8x8 kernel = global MSA: the kernel series' global reference, the same
    tokens as its local siblings; 5,372,836 parameters."""
    return build_model(VitworkViT, pretrained, dict(VIT_TI_LOCAL, kernel_size=8), **kwargs)
