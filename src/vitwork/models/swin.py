"""Swin Transformer (Liu et al. 2021) for CIFAR: timm's ``SwinTransformer`` at the authors' CIFAR sizes.

The authors' CIFAR-100 Swin-Ti (their README) is timm's class with ``img_size=32, patch_size=1, window_size=4,
embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), qkv_bias=False``: 1x1 patches (a 32x32 token grid),
stages at 32, 16, 8 and 4 tokens a side (in the last one the window is the whole map and is not shifted), one
relative-position bias table per head and block, a GAP head after a LayerNorm. 27,562,126 parameters at 100
classes (theirs: the same class). timm's Swin keeps maps channels-last (``[B, H, W, C]``).
"""

from __future__ import annotations

from typing import Any, Sequence

from timm.models.swin_transformer import SwinTransformer

from .blocks import BlockInfo, build_model, register_family

SWIN_TI = dict(patch_size=1, window_size=4, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
               qkv_bias=False)


class CifarSwin(SwinTransformer):
    """timm's Swin for 32x32 inputs with ``feature_blocks()``."""

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 1,
        window_size: int = 4,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        qkv_bias: bool = False,
        num_classes: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            img_size=img_size, patch_size=patch_size, window_size=window_size, embed_dim=embed_dim,
            depths=tuple(depths), num_heads=tuple(num_heads), qkv_bias=qkv_bias, num_classes=num_classes, **kwargs,
        )

    def feature_blocks(self) -> list[BlockInfo]:
        """Stem (patch embedding), per stage its patch merging (``downsample``, from stage 2) and per block an
        ``msa`` (input of norm2: the window attention with its skip) and ``mlp`` entry, head."""
        infos = [BlockInfo("stem", "stem", self.patch_embed, channels_last=True)]
        for stage_index, stage in enumerate(self.layers):
            name = f"layers.{stage_index}"
            if stage_index > 0:
                infos.append(BlockInfo(f"{name}.downsample", "downsample", stage.downsample, channels_last=True))
            for index, block in enumerate(stage.blocks):
                infos.append(BlockInfo(f"{name}.blocks.{index}.msa", "msa", block.norm2, "input"))
                infos.append(BlockInfo(f"{name}.blocks.{index}.mlp", "mlp", block, "output", channels_last=True))
        infos.append(BlockInfo("head", "head", self.head))
        return infos


@register_family("swin")
def vitwork_swin_ti(pretrained: bool = False, **kwargs: Any) -> CifarSwin:
    """Swin-Ti at the authors' CIFAR sizes (module doc); 27,562,126 parameters at 100 classes."""
    return build_model(CifarSwin, pretrained, SWIN_TI, **kwargs)
