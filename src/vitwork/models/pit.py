"""PiT (Heo et al. 2021) for CIFAR: timm's ``PoolingVisionTransformer`` at the authors' CIFAR sizes.

The authors' CIFAR-100 PiT-Ti (their README) is timm's class with ``img_size=32, patch_size=2, stride=1,
base_dims=(32, 32, 32), depth=(2, 6, 4), heads=(2, 4, 8), mlp_ratio=4``: overlapping 2x2 patches give a 31x31
token grid, then depth-wise strided pooling gives 16x16 and 8x8; a class token, whose head reads it after a
LayerNorm; qkv bias (timm's PiT always has it). 4,582,436 parameters at 100 classes (theirs: the same class).
"""

from __future__ import annotations

from typing import Any, Sequence

from timm.models.pit import PoolingVisionTransformer

from .blocks import BlockInfo, build_model, register_family

PIT_TI = dict(patch_size=2, stride=1, base_dims=(32, 32, 32), depth=(2, 6, 4), heads=(2, 4, 8), mlp_ratio=4.0)


class CifarPiT(PoolingVisionTransformer):
    """timm's PiT for 32x32 inputs with ``feature_blocks()``."""

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 2,
        stride: int = 1,
        base_dims: Sequence[int] = (32, 32, 32),
        depth: Sequence[int] = (2, 6, 4),
        heads: Sequence[int] = (2, 4, 8),
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            img_size=img_size, patch_size=patch_size, stride=stride, base_dims=list(base_dims), depth=list(depth),
            heads=list(heads), mlp_ratio=mlp_ratio, num_classes=num_classes, **kwargs,
        )

    def feature_blocks(self) -> list[BlockInfo]:
        """Stem (patch + position embedding, the map stage 1 reads), per stage its pooling (``downsample``, from
        stage 2) and per transformer block an ``msa`` (input of norm2) and ``mlp`` entry, head."""
        prefix = self.cls_token.shape[1]
        infos = [BlockInfo("stem", "stem", self.pos_drop)]
        for stage_index, stage in enumerate(self.transformers):
            name = f"transformers.{stage_index}"
            if stage.pool is not None:
                infos.append(BlockInfo(f"{name}.pool", "downsample", stage.pool.conv))
            for index, block in enumerate(stage.blocks):
                infos.append(BlockInfo(f"{name}.blocks.{index}.msa", "msa", block.norm2, "input", prefix))
                infos.append(BlockInfo(f"{name}.blocks.{index}.mlp", "mlp", block, "output", prefix))
        infos.append(BlockInfo("head", "head", self.head))
        return infos


@register_family("pit")
def vitwork_pit_ti(pretrained: bool = False, **kwargs: Any) -> CifarPiT:
    """PiT-Ti at the authors' CIFAR sizes (module doc); 4,582,436 parameters at 100 classes."""
    return build_model(CifarPiT, pretrained, PIT_TI, **kwargs)
