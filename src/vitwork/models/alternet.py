"""AlterNet (Park & Kim 2022): a pre-activation bottleneck ResNet whose stages end in MSA blocks.

Stage i has ``layers[i]`` blocks; its last ``2 * msa_per_stage[i]`` blocks alternate Conv, MSA, so a stage
with MSAs ends in one (blocks L-1, L-3, ... are MSA). MSA blocks replace bottleneck blocks, so the block count
stays ``layers``. The MSA block is the authors' (their ``AttentionBlockB`` with ``LocalAttention``): BN, GELU,
1x1 conv (no bias) to a quarter of the block width, BN, then attention inside non-overlapping windows (window 4)
whose q, k, v are projections without bias from that quarter width to ``heads[i] x 64`` channels, with one
learned relative-position bias table shared by all heads, and an output projection (with bias) from
``heads[i] x 64`` straight to the block's full width; drop-path and the identity skip. No MLP after it.

Parameters at 100 classes (window 4, CIFAR stem, no stem pooling), ours = the authors' code instantiated:
``msa_per_stage`` (0, 1, 1, 2) 33,012,840 (Alter-ResNet-50 for CIFAR-100, the paper's Fig. 11); the build-up
(0, 0, 0, 0) 28,160,164, (0, 0, 0, 1) 30,258,389, (0, 0, 0, 2) 32,356,614, (0, 0, 1, 2) 32,881,463,
(0, 0, 2, 2) 33,406,312, (0, 0, 3, 2) 33,931,161, (0, 1, 3, 2) 34,062,538 (their ImageNet ``dnn_50`` layout).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from timm.layers import Attention, BatchNormAct2d, DropPath, create_conv2d
from timm.models.swin_transformer import window_partition, window_reverse
from torch import nn

from .blocks import BlockInfo, build_model, register_family
from .resnet import CifarPreActResNet, stage_blocks

ALTERNET50 = dict(layers=(3, 4, 6, 4), msa_per_stage=(0, 1, 1, 2), heads=(3, 6, 12, 24))
# The paper's build-up of Alter-ResNet-50 (Fig. 12 left), step by step: Convs become MSAs from the end of the
# network (two in stage 4, then stage 3); several stage-3 MSAs harm accuracy, the one ending stage 2 helps, and
# the CIFAR-100 model keeps one MSA in stage 3 (ALTERNET50).
ALTERNET50_BUILDUP = (
    (0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 0, 2), (0, 0, 1, 2), (0, 0, 2, 2), (0, 0, 3, 2), (0, 1, 3, 2),
)


def is_int(value: Any) -> bool:
    """True for integers (and numpy integers), False for bools and floats."""
    return not isinstance(value, bool) and hasattr(value, "__index__")


def check_msa_layout(layers: Sequence[int], msa_per_stage: Sequence[int], heads: Sequence[int]) -> None:
    """Raise ValueError naming the argument if the MSA layout does not fit the stages."""
    if len(msa_per_stage) != len(layers):
        raise ValueError(
            f"msa_per_stage must have one entry per stage ({len(layers)}), got {list(msa_per_stage)}"
        )
    if len(heads) != len(layers):
        raise ValueError(f"heads must have one entry per stage ({len(layers)}), got {list(heads)}")
    for stage, (depth, count, num_heads) in enumerate(zip(layers, msa_per_stage, heads)):
        if not is_int(count) or count < 0 or 2 * count > depth:
            raise ValueError(
                f"msa_per_stage[{stage}] must be an integer with 0 <= n <= layers[{stage}] / 2 = {depth / 2:g} "
                f"(the last 2n blocks alternate Conv, MSA), got {count!r}"
            )
        if not is_int(num_heads) or num_heads < 1:
            raise ValueError(f"heads[{stage}] must be an integer >= 1, got {num_heads!r}")


def msa_positions(depth: int, count: int) -> list[int]:
    """Indices of the MSA blocks in a stage of ``depth`` blocks with ``count`` MSAs: L-1, L-3, ..."""
    return [depth - 1 - 2 * j for j in range(count)]


class WindowSelfAttention(nn.Module):
    """The authors' AlterNet attention on an NCHW map: multi-head self-attention inside non-overlapping
    ``window_size`` squares, q, k, v without bias from ``dim`` to ``heads x head_dim``, one learned
    relative-position bias table shared by all heads, output projection (with bias) to ``out_dim``.

    timm's ``Attention`` does the heads (its ``attn_head_dim``/``dim_out`` fit; fused or math SDPA, so
    ``set_fused_attention`` and double backward work); timm's Swin ``WindowAttention`` does not fit (per-head
    tables, output width fixed to the input width), so the shared table is ours.
    """

    def __init__(self, dim: int, out_dim: int, num_heads: int, head_dim: int = 64, window_size: int = 4) -> None:
        super().__init__()
        self.window_size = window_size
        self.attn = Attention(dim, num_heads=num_heads, attn_head_dim=head_dim, dim_out=out_dim, qkv_bias=False)
        # [dy, dx] of key minus query, shifted to be >= 0; the authors' sign, so their tables load as they are
        coords = torch.cartesian_prod(torch.arange(window_size), torch.arange(window_size))
        self.register_buffer("relative_position_index", coords[None] - coords[:, None] + window_size - 1,
                             persistent=False)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(2 * window_size - 1, 2 * window_size - 1))
        nn.init.normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> torch.Tensor:
        """``[window^2, window^2]`` bias of query i on key j, the same for every head."""
        index = self.relative_position_index
        return self.relative_position_bias_table[index[..., 0], index[..., 1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, dim, H, W]`` -> ``[B, out_dim, H, W]``."""
        _, channels, height, width = x.shape
        window = self.window_size
        if height % window or width % window:
            raise ValueError(f"feature map {height}x{width} is not divisible into {window}x{window} windows")
        windows = window_partition(x.permute(0, 2, 3, 1), (window, window)).reshape(-1, window * window, channels)
        windows = self.attn(windows, attn_mask=self.relative_position_bias())
        windows = windows.reshape(-1, window, window, windows.shape[-1])
        return window_reverse(windows, (window, window), height, width).permute(0, 3, 1, 2)


class MSABlock(nn.Module):
    """Pre-activation AlterNet MSA block, as the authors' (module doc); keeps channels and resolution."""

    def __init__(
        self, dim: int, num_heads: int, head_dim: int = 64, window_size: int = 4, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        if dim % 4:
            raise ValueError(f"MSA block width {dim} must be divisible by 4 (it attends at a quarter width)")
        width = dim // 4
        self.norm1 = BatchNormAct2d(dim, act_layer=nn.GELU)
        self.conv1 = create_conv2d(dim, width, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.attn = WindowSelfAttention(width, dim, num_heads, head_dim, window_size)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        # the convolution as timm's ResNetV2 body; the attention keeps PyTorch's default init, as the authors'
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def zero_init_last(self) -> None:
        """Zero the output projection so the block starts as the identity (timm's ``zero_init_last``)."""
        nn.init.zeros_(self.attn.attn.proj.weight)
        nn.init.zeros_(self.attn.attn.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + DropPath(attention(BN(conv1(GELU(BN(x))))))."""
        return x + self.drop_path(self.attn(self.norm2(self.conv1(self.norm1(x)))))


class AlterNet(CifarPreActResNet):
    """Pre-activation bottleneck ResNet whose stages end in alternating Conv, MSA blocks (module doc)."""

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 4),
        channels: Sequence[int] = (64, 128, 256, 512),
        msa_per_stage: Sequence[int] = (0, 1, 1, 2),
        heads: Sequence[int] = (3, 6, 12, 24),
        head_dim: int = 64,
        window_size: int = 4,
        stem_width: int = 64,
        num_classes: int = 1000,
        zero_init_last: bool = False,
        **kwargs: Any,
    ) -> None:
        check_msa_layout(layers, msa_per_stage, heads)
        super().__init__(
            block="bottleneck", layers=layers, channels=channels, stem_width=stem_width, num_classes=num_classes,
            zero_init_last=zero_init_last, **kwargs,
        )
        self.msa_per_stage = tuple(int(n) for n in msa_per_stage)
        for stage, count, num_heads in zip(self.stages, self.msa_per_stage, heads):
            for index in msa_positions(len(stage.blocks), count):
                replaced = stage.blocks[index]
                block = MSABlock(replaced.conv3.out_channels, int(num_heads), head_dim, window_size)
                block.drop_path = replaced.drop_path  # keep the stochastic-depth rate of the block it replaces
                if zero_init_last:
                    block.zero_init_last()
                stage.blocks[index] = block

    def no_weight_decay(self) -> set[str]:
        """The relative-position bias tables (timm's convention, read by the ``matrices`` decay set)."""
        return {name for name, _ in self.named_parameters() if name.endswith("relative_position_bias_table")}

    def feature_blocks(self) -> list[BlockInfo]:
        """Stem, every block (``msa`` for MSA blocks, ``downsample`` for a stage's strided first block), head."""
        stages = [(f"stages.{i}.blocks", stage.blocks) for i, stage in enumerate(self.stages)]
        infos = [
            BlockInfo(info.name, "msa", info.module) if isinstance(info.module, MSABlock) else info
            for info in stage_blocks(stages)
        ]
        return [BlockInfo("stem", "stem", self.stem), *infos, BlockInfo("head", "head", self.head)]


@register_family("alternet")
def vitwork_alternet(pretrained: bool = False, **kwargs: Any) -> AlterNet:
    """AlterNet of any size (defaults: Alter-ResNet-50 for CIFAR)."""
    return build_model(AlterNet, pretrained, {}, **kwargs)


@register_family("alternet")
def vitwork_alternet50(pretrained: bool = False, **kwargs: Any) -> AlterNet:
    """Alter-ResNet-50 for CIFAR-100: pre-act bottleneck [3, 4, 6, 4], MSAs [0, 1, 1, 2] ending stages 2-4, heads
    [3, 6, 12, 24]; 33,012,840 parameters at 100 classes (the authors' code: the same)."""
    return build_model(AlterNet, pretrained, ALTERNET50, **kwargs)


def build_step(step: int, pretrained: bool, kwargs: dict[str, Any]) -> AlterNet:
    """Step ``step`` of the Alter-ResNet-50 build-up (``ALTERNET50_BUILDUP``)."""
    return build_model(AlterNet, pretrained, dict(ALTERNET50, msa_per_stage=ALTERNET50_BUILDUP[step]), **kwargs)


@register_family("alternet")
def vitwork_alternet50_msa0(pretrained: bool = False, **kwargs: Any) -> AlterNet:
    """Build-up step 0: MSAs (0, 0, 0, 0), the pre-act ResNet with [3, 4, 6, 4] blocks; 28,160,164 parameters."""
    return build_step(0, pretrained, kwargs)


@register_family("alternet")
def vitwork_alternet50_msa1(pretrained: bool = False, **kwargs: Any) -> AlterNet:
    """Build-up step 1: MSAs (0, 0, 0, 1), the last block is an MSA; 30,258,389 parameters."""
    return build_step(1, pretrained, kwargs)


@register_family("alternet")
def vitwork_alternet50_msa2(pretrained: bool = False, **kwargs: Any) -> AlterNet:
    """Build-up step 2: MSAs (0, 0, 0, 2), stage 4 alternates Conv, MSA; 32,356,614 parameters."""
    return build_step(2, pretrained, kwargs)


@register_family("alternet")
def vitwork_alternet50_msa3(pretrained: bool = False, **kwargs: Any) -> AlterNet:
    """Build-up step 3: MSAs (0, 0, 1, 2), stage 3 ends in an MSA; 32,881,463 parameters."""
    return build_step(3, pretrained, kwargs)


@register_family("alternet")
def vitwork_alternet50_msa4(pretrained: bool = False, **kwargs: Any) -> AlterNet:
    """Build-up step 4: MSAs (0, 0, 2, 2), a second stage-3 MSA (harms accuracy in the paper); 33,406,312."""
    return build_step(4, pretrained, kwargs)


@register_family("alternet")
def vitwork_alternet50_msa5(pretrained: bool = False, **kwargs: Any) -> AlterNet:
    """Build-up step 5: MSAs (0, 0, 3, 2), a third stage-3 MSA (harms accuracy in the paper); 33,931,161."""
    return build_step(5, pretrained, kwargs)


@register_family("alternet")
def vitwork_alternet50_msa6(pretrained: bool = False, **kwargs: Any) -> AlterNet:
    """Build-up step 6: MSAs (0, 1, 3, 2), stage 2 ends in an MSA (helps in the paper); the authors' ImageNet
    ``dnn_50`` layout; 34,062,538 parameters."""
    return build_step(6, pretrained, kwargs)
