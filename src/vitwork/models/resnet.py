"""CIFAR ResNets built from timm: post-activation (timm ``ResNet``) and pre-activation (timm ``ResNetV2``).

Both take the same size arguments:
    block       "basic" or "bottleneck"
    layers      blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50
    channels    base width of each stage (timm ResNet ``planes``); a bottleneck stage outputs 4x this width
    stem_width  width of the CIFAR stem, one 3x3 stride-1 convolution (no max-pool)
The first stage keeps the 32x32 resolution; every later stage halves it in its first block.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Any, Sequence

from timm.layers import BatchNormAct2d, create_conv2d
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from timm.models.resnetv2 import ResNetV2
from torch import nn

from .blocks import BlockInfo, build_model, changes_resolution, register_family

POST_ACT_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
EXPANSION = {"basic": 1, "bottleneck": 4}
RESNET50 = dict(block="bottleneck", layers=(3, 4, 6, 3))
RESNET18 = dict(block="basic", layers=(2, 2, 2, 2))


def check_sizes(block: str, layers: Sequence[int], channels: Sequence[int], stem_width: int) -> None:
    """Raise ValueError naming the argument when the ResNet size arguments are inconsistent."""
    if block not in EXPANSION:
        raise ValueError(f"block must be one of {sorted(EXPANSION)}, got {block!r}")
    if len(layers) != len(channels) or not layers:
        raise ValueError(f"layers ({list(layers)}) and channels ({list(channels)}) must have the same, non-zero length")
    if any(int(n) < 1 for n in layers):
        raise ValueError(f"layers must all be >= 1, got {list(layers)}")
    if stem_width < 2 or stem_width % 2:
        raise ValueError(f"stem_width must be an even number >= 2, got {stem_width}")


def rescale_feature_info(feature_info: list[dict[str, Any]], stem_module: str) -> None:
    """Divide timm's feature reductions by 4 in place: the CIFAR stem has stride 1 where ImageNet's has 4."""
    feature_info[0].update(reduction=1, module=stem_module)
    for info in feature_info[1:]:
        info["reduction"] = max(info["reduction"] // 4, 1)


def stage_blocks(stages: Sequence[tuple[str, nn.Sequential]]) -> list[BlockInfo]:
    """``conv``/``downsample`` entries for the residual blocks of named stages, in order."""
    infos = []
    for stage_name, blocks in stages:
        for index, block in enumerate(blocks):
            kind = "downsample" if index == 0 and changes_resolution(block) else "conv"
            infos.append(BlockInfo(f"{stage_name}.{index}", kind, block))
    return infos


class CifarResNet(ResNet):
    """Post-activation ResNet (timm ``ResNet``) with a 3x3 stride-1 stem and no max-pool."""

    def __init__(
        self,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        channels: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        num_classes: int = 1000,
        in_chans: int = 3,
        **kwargs: Any,
    ) -> None:
        check_sizes(block, layers, channels, stem_width)
        # timm's plain stem is fixed at 64 channels; its 'deep' stem feeds 2 * stem_width channels to the
        # first stage, so ask for a deep stem of half the width and swap the stem convolution afterwards.
        super().__init__(
            POST_ACT_BLOCKS[block], tuple(layers), channels=tuple(channels), num_classes=num_classes,
            in_chans=in_chans, stem_type="deep", stem_width=stem_width // 2, **kwargs,
        )
        self.conv1 = create_conv2d(in_chans, stem_width, 3, stride=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        rescale_feature_info(self.feature_info, "act1")

    def feature_blocks(self) -> list[BlockInfo]:
        """Stem, every residual block (first block of a down-sampling stage is ``downsample``), head."""
        stages = [(f"layer{i + 1}", getattr(self, f"layer{i + 1}")) for i in range(len(self.feature_info) - 1)]
        return [BlockInfo("stem", "stem", self.act1), *stage_blocks(stages), BlockInfo("head", "head", self.fc)]


class CifarPreActResNet(ResNetV2):
    """Pre-activation ResNet (timm ``ResNetV2`` with BatchNorm + ReLU, plain convs) with a 3x3 stride-1 stem."""

    def __init__(
        self,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        channels: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        num_classes: int = 1000,
        in_chans: int = 3,
        **kwargs: Any,
    ) -> None:
        check_sizes(block, layers, channels, stem_width)
        super().__init__(
            layers=list(layers), channels=tuple(c * EXPANSION[block] for c in channels), num_classes=num_classes,
            in_chans=in_chans, stem_chs=stem_width, basic=block == "basic", act_layer=nn.ReLU,
            norm_layer=BatchNormAct2d, conv_layer=partial(create_conv2d, bias=False), **kwargs,
        )
        # pre-activation: the stem is a bare convolution, the first block's norm1 normalises it; its width is
        # the one timm gave the first stage (ResNetV2 rounds widths to multiples of 8)
        stem_chs = self.feature_info[0]["num_chs"]
        self.stem = nn.Sequential(OrderedDict(conv=create_conv2d(in_chans, stem_chs, 3, stride=1, bias=False)))
        nn.init.kaiming_normal_(self.stem.conv.weight, mode="fan_out", nonlinearity="relu")
        self.stem_feat_idx = 0
        rescale_feature_info(self.feature_info, "stem.conv")

    def feature_blocks(self) -> list[BlockInfo]:
        """Stem, every residual block (first block of a down-sampling stage is ``downsample``), head."""
        stages = [(f"stages.{i}.blocks", stage.blocks) for i, stage in enumerate(self.stages)]
        return [BlockInfo("stem", "stem", self.stem), *stage_blocks(stages), BlockInfo("head", "head", self.head)]


@register_family("resnet")
def vitwork_resnet(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """Post-activation CIFAR ResNet of any size (defaults: ResNet-50)."""
    return build_model(CifarResNet, pretrained, {}, **kwargs)


@register_family("resnet")
def vitwork_resnet18(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-18: basic blocks [2, 2, 2, 2]."""
    return build_model(CifarResNet, pretrained, RESNET18, **kwargs)


@register_family("resnet")
def vitwork_resnet50(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-50: bottleneck blocks [3, 4, 6, 3] (~23.7M parameters at 100 classes)."""
    return build_model(CifarResNet, pretrained, RESNET50, **kwargs)


@register_family("preact_resnet")
def vitwork_preact_resnet(pretrained: bool = False, **kwargs: Any) -> CifarPreActResNet:
    """Pre-activation CIFAR ResNet of any size (defaults: ResNet-50)."""
    return build_model(CifarPreActResNet, pretrained, {}, **kwargs)


@register_family("preact_resnet")
def vitwork_preact_resnet50(pretrained: bool = False, **kwargs: Any) -> CifarPreActResNet:
    """Pre-activation CIFAR ResNet-50: bottleneck blocks [3, 4, 6, 3]."""
    return build_model(CifarPreActResNet, pretrained, RESNET50, **kwargs)
