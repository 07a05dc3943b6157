"""AlterNet (Park & Kim 2022): a pre-activation bottleneck ResNet whose stages end in MSA blocks.

Stage i has ``layers[i]`` blocks; its last ``2 * msa_per_stage[i]`` blocks alternate Conv, MSA, so a stage
with MSAs ends in one (blocks L-1, L-3, ... are MSA). MSA blocks replace bottleneck blocks, so the block count
stays ``layers``. MSA block (pre-activation, no MLP after it): BN, GELU, 1x1 conv to a quarter of the width,
BN, non-overlapping window attention (timm's Swin ``WindowAttention``: window 4, ``heads[i]`` heads of
``head_dim`` channels, one learned relative-position bias table), 1x1 conv back to the full width, drop-path,
identity skip.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from timm.layers import BatchNormAct2d, DropPath, create_conv2d, trunc_normal_
from timm.models.swin_transformer import WindowAttention, window_partition, window_reverse
from torch import nn

from .blocks import BlockInfo, build_model, register_family
from .resnet import CifarPreActResNet, stage_blocks

ALTERNET50 = dict(layers=(3, 4, 6, 4), msa_per_stage=(0, 1, 1, 2), heads=(3, 6, 12, 24))


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


class MSABlock(nn.Module):
    """Pre-activation window-attention block of AlterNet (module doc); keeps channels and resolution."""

    def __init__(
        self, dim: int, num_heads: int, head_dim: int | None = 64, window_size: int = 4, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        if dim % 4:
            raise ValueError(f"MSA block width {dim} must be divisible by 4 (it attends at a quarter width)")
        width = dim // 4
        self.window_size = window_size
        self.norm1 = BatchNormAct2d(dim, act_layer=nn.GELU)
        self.conv1 = create_conv2d(dim, width, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.attn = WindowAttention(width, num_heads=num_heads, head_dim=head_dim, window_size=window_size)
        self.conv2 = create_conv2d(width, dim, 1, bias=False)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        """Convs as timm's ResNetV2 (Kaiming normal, fan-out), attention linears as Swin (truncated normal .02)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def zero_init_last(self) -> None:
        """Zero the last convolution so the block starts as the identity (timm's ``zero_init_last``)."""
        nn.init.zeros_(self.conv2.weight)

    def window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention inside non-overlapping ``window_size`` squares of an NCHW map."""
        _, channels, height, width = x.shape
        window = self.window_size
        if height % window or width % window:
            raise ValueError(f"feature map {height}x{width} is not divisible into {window}x{window} windows")
        windows = window_partition(x.permute(0, 2, 3, 1), (window, window)).reshape(-1, window * window, channels)
        windows = self.attn(windows).reshape(-1, window, window, channels)
        return window_reverse(windows, (window, window), height, width).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + DropPath(conv2(attention(BN(conv1(GELU(BN(x)))))))."""
        y = self.norm2(self.conv1(self.norm1(x)))
        y = self.conv2(self.window_attention(y))
        return x + self.drop_path(y)


class AlterNet(CifarPreActResNet):
    """Pre-activation bottleneck ResNet whose stages end in alternating Conv, MSA blocks (module doc)."""

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 4),
        channels: Sequence[int] = (64, 128, 256, 512),
        msa_per_stage: Sequence[int] = (0, 1, 1, 2),
        heads: Sequence[int] = (3, 6, 12, 24),
        head_dim: int | None = 64,
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
    """Alter-ResNet-50: pre-act bottleneck [3, 4, 6, 4], MSAs [0, 1, 1, 2] ending stages 2-4, heads [3, 6, 12, 24]."""
    return build_model(AlterNet, pretrained, ALTERNET50, **kwargs)
