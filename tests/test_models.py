"""Tests of the model zoo (vitwork.models): micro models except the parameter counts of the paper presets."""

from __future__ import annotations

from functools import partial

import pytest
import timm
import torch
from timm.layers import DropPath

from vitwork.figures.style import FAMILY_COLORS
from vitwork.models import (
    BLOCK_KINDS,
    available_models,
    capture_feature_maps,
    create_model,
    model_family,
    set_fused_attention,
)
from vitwork.models.alternet import ALTERNET50_BUILDUP, MSABlock
from vitwork.models.blocks import FAMILIES
from vitwork.models.vit import LocalAttention, axis_window, local_attention_bias
from vitwork.results import FAMILY_ORDER

torch.set_num_threads(1)

MICRO_VIT = dict(patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
MICRO = {
    "resnet_basic": ("vitwork_resnet", dict(block="basic", layers=[2, 1, 2, 1], channels=[8, 16, 16, 32],
                                            stem_width=8)),
    "resnet_bottleneck": ("vitwork_resnet", dict(layers=[1, 1, 1, 1], channels=[4, 8, 8, 16], stem_width=8)),
    "preact_basic": ("vitwork_preact_resnet", dict(block="basic", layers=[1, 1, 1, 1], channels=[8, 16, 16, 32],
                                                   stem_width=8)),
    "preact_bottleneck": ("vitwork_preact_resnet", dict(layers=[1, 1, 1, 1], channels=[8, 8, 16, 16], stem_width=8)),
    "vit_token": ("vitwork_vit", MICRO_VIT),
    "vit_gap": ("vitwork_vit", dict(MICRO_VIT, global_pool="avg")),
    "vit_local": ("vitwork_vit_local", dict(MICRO_VIT, kernel_size=3)),
    "alternet": ("vitwork_alternet", dict(layers=[1, 2, 1, 4], channels=[8, 8, 16, 16], msa_per_stage=[0, 1, 0, 2],
                                          heads=[1, 2, 2, 2], head_dim=8, stem_width=8)),
    "pit": ("vitwork_pit_ti", dict(base_dims=[4, 4], depth=[1, 1], heads=[2, 2], mlp_ratio=2.0)),
    "swin": ("vitwork_swin_ti", dict(embed_dim=8, depths=[2, 2], num_heads=[1, 2], mlp_ratio=2.0)),
}
NUM_CLASSES = 10


def micro(name: str, **overrides) -> torch.nn.Module:
    """A micro model of the MICRO table (seeded), in eval mode."""
    arch, kwargs = MICRO[name]
    torch.manual_seed(0)
    return create_model(arch, NUM_CLASSES, **{**kwargs, **overrides}).eval()


def images(batch: int = 2) -> torch.Tensor:
    """Seeded CIFAR-sized input."""
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def drop_probs(model: torch.nn.Module) -> list[float]:
    """Drop-path probabilities of all DropPath modules."""
    return [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]


def num_params(model: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(MICRO))
def test_output_shape(name):
    with torch.no_grad():
        out = micro(name)(images())
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()


def test_registry_and_families():
    expected = {
        "vitwork_resnet": "resnet", "vitwork_resnet18": "resnet", "vitwork_resnet50": "resnet",
        "vitwork_preact_resnet": "preact_resnet", "vitwork_preact_resnet50": "preact_resnet",
        "vitwork_vit": "vit", "vitwork_vit_ti": "vit", "vitwork_vit_ti_gap": "vit",
        "vitwork_vit_local": "vit_local", "vitwork_vit_ti_local3": "vit_local", "vitwork_vit_ti_local5": "vit_local",
        "vitwork_vit_ti_local8": "vit_local", "vitwork_alternet": "alternet", "vitwork_alternet50": "alternet",
        **{f"vitwork_alternet50_msa{step}": "alternet" for step in range(7)},
        "vitwork_pit_ti": "pit", "vitwork_swin_ti": "swin",
    }
    assert sorted(available_models()) == sorted(expected)
    assert {arch: model_family(arch) for arch in expected} == expected
    # every family is ordered by the result tables and coloured by the figures
    assert set(FAMILIES) == set(FAMILY_ORDER) == set(FAMILY_COLORS)
    with pytest.raises(ValueError, match="unknown architecture"):
        model_family("resnet50")
    with pytest.raises(ValueError, match="unknown architecture"):
        create_model("vitwork_nope", 10)
    # timm builds them directly too, with size kwargs
    model = timm.create_model("vitwork_vit", num_classes=3, **MICRO_VIT)
    assert model.head.out_features == 3 and len(model.blocks) == 2
    with pytest.raises(ValueError, match="kernel_size"):
        create_model("vitwork_vit", 10, kernel_size=3, **MICRO_VIT)
    with pytest.raises(ValueError, match="pretrained"):
        timm.create_model("vitwork_resnet18", pretrained=True)


def test_resnet_block_list():
    blocks = micro("resnet_basic").feature_blocks()
    assert [b.kind for b in blocks] == [
        "stem", "conv", "conv", "downsample", "downsample", "conv", "downsample", "head"]
    assert [b.name for b in blocks][1:4] == ["layer1.0", "layer1.1", "layer2.0"]
    pre = micro("preact_bottleneck").feature_blocks()
    assert [b.kind for b in pre] == ["stem", "conv", "downsample", "downsample", "downsample", "head"]
    for model_blocks in (blocks, pre):
        assert len({b.name for b in model_blocks}) == len(model_blocks)
        assert all(b.kind in BLOCK_KINDS and b.tap == "output" for b in model_blocks)


@pytest.mark.parametrize("name, prefix", [("vit_token", 1), ("vit_gap", 0), ("vit_local", 0)])
def test_vit_block_list(name, prefix):
    model = micro(name)
    blocks = model.feature_blocks()
    assert [b.kind for b in blocks] == ["stem", "msa", "mlp", "msa", "mlp", "head"]
    assert (blocks[0].module, blocks[0].tap, blocks[0].num_prefix_tokens) == (model.norm_pre, "output", prefix)
    assert blocks[-1].module is model.head
    for i in range(2):
        msa, mlp = blocks[1 + 2 * i], blocks[2 + 2 * i]
        assert (msa.module, msa.tap) == (model.blocks[i].norm2, "input")
        assert (mlp.module, mlp.tap) == (model.blocks[i], "output")
        assert msa.num_prefix_tokens == mlp.num_prefix_tokens == prefix


def test_alternet_block_list():
    model = micro("alternet")
    blocks = model.feature_blocks()
    stage_kinds = {}
    for b in blocks[1:-1]:
        stage_kinds.setdefault(b.name.split(".")[1], []).append(b.kind)
    assert stage_kinds == {
        "0": ["conv"], "1": ["downsample", "msa"], "2": ["downsample"], "3": ["downsample", "msa", "conv", "msa"]}
    assert sum(isinstance(m, MSABlock) for m in model.modules()) == 3
    assert all(isinstance(b.module, MSABlock) == (b.kind == "msa") for b in blocks)


@pytest.mark.parametrize("msa, where", [([0, 0, 0, 1], "3"), ([0, 0, 1, 2], "233"), ([1, 1, 1, 1], "0123")])
def test_alternet_buildup_series(msa, where):
    model = micro("alternet", layers=[2, 2, 2, 4], msa_per_stage=msa)
    msa_stages = "".join(b.name.split(".")[1] for b in model.feature_blocks() if b.kind == "msa")
    assert msa_stages == where


@pytest.mark.parametrize("kwargs, match", [
    (dict(msa_per_stage=[0, 1, 2]), "msa_per_stage"),
    (dict(msa_per_stage=[0, 2, 0, 2]), r"msa_per_stage\[1\]"),
    (dict(msa_per_stage=[0, -1, 0, 2]), r"msa_per_stage\[1\]"),
    (dict(msa_per_stage=[0, 1.0, 0, 2]), r"msa_per_stage\[1\]"),
    (dict(heads=[1, 2]), "heads"),
])
def test_alternet_rejects_bad_layouts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        micro("alternet", **kwargs)


def test_msa_block_attends_within_windows():
    torch.manual_seed(0)
    block = MSABlock(16, num_heads=2, head_dim=4, window_size=4).eval()
    x = torch.randn(1, 16, 8, 8)
    bumped = x.clone()
    bumped[..., 1, 2] += 1.0  # a pixel of the top-left 4x4 window
    with torch.no_grad():
        changed = (block(bumped) - block(x)).abs().sum(1)[0] > 0
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[:4, :4] = True
    assert torch.equal(changed, expected)


def stage_of(block_name: str) -> int:
    """Stage index of a block name: 'layer2.0' -> 1; 'stages.1.blocks.0', 'layers.1...', 'transformers.1...' -> 1."""
    parts = block_name.split(".")
    return int(parts[1]) if parts[0] in ("stages", "layers", "transformers") else int(parts[0].removeprefix("layer")) - 1


def expected_spatial_shapes(name: str, model) -> list[tuple[int, int]]:
    """(H, W) of every non-head block of a micro model: ViT 8x8 grid; PiT 31x31 (2x2 patches, stride 1) then 16x16;
    ResNets and Swin 32 >> stage, stem 32."""
    blocks = model.feature_blocks()[:-1]
    if name.startswith("vit"):
        return [(8, 8)] * len(blocks)
    if name == "pit":
        return [(31, 31) if b.kind == "stem" else ((31, 31), (16, 16))[stage_of(b.name)] for b in blocks]
    return [(32, 32) if b.kind == "stem" else (32 >> stage_of(b.name),) * 2 for b in blocks]


@pytest.mark.parametrize("name", sorted(MICRO))
def test_capture_feature_maps(name):
    model = micro(name)
    with torch.no_grad():
        maps = capture_feature_maps(model, images())
    non_head = [b for b in model.feature_blocks() if b.kind != "head"]
    assert [info.name for info, _ in maps] == [b.name for b in non_head]
    for (info, fmap), size in zip(maps, expected_spatial_shapes(name, model)):
        assert fmap.shape[0] == 2 and fmap.shape[2:] == size, info.name
    assert maps[0][1].shape[1] == (32 if name.startswith("vit") else 8)  # embed_dim / stem_width
    assert maps[-1][1].shape[1] == model.num_features
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    only = capture_feature_maps(model, images(), kinds=["stem"])
    assert [info.kind for info, _ in only] == ["stem"]


@pytest.mark.parametrize("name, stages", [("pit", ["0", "0", "1", "1", "1"]), ("swin", ["0"] * 4 + ["1"] * 5)])
def test_hierarchical_vit_block_lists(name, stages):
    model = micro(name)
    blocks = model.feature_blocks()
    kinds = [b.kind for b in blocks]
    assert kinds[0] == "stem" and kinds[-1] == "head"
    assert [b.name.split(".")[1] for b in blocks[1:-1]] == stages
    expected = {"pit": ["msa", "mlp", "downsample", "msa", "mlp"],
                "swin": ["msa", "mlp", "msa", "mlp", "downsample", "msa", "mlp", "msa", "mlp"]}[name]
    assert kinds[1:-1] == expected
    assert len({b.name for b in blocks}) == len(blocks)


def test_swin_maps_are_channels_last_outputs_permuted():
    model = micro("swin")
    x = images()
    with torch.no_grad():
        maps = dict((info.name, fmap) for info, fmap in capture_feature_maps(model, x))
        stem = model.patch_embed(x)  # [B, H, W, C]
        block = model.layers[0].blocks[0]
        after_mlp = block(stem)
    torch.testing.assert_close(maps["stem"], stem.permute(0, 3, 1, 2))
    torch.testing.assert_close(maps["layers.0.blocks.0.mlp"], after_mlp.permute(0, 3, 1, 2))


def test_capture_removes_hooks_on_error():
    model = micro("vit_token")
    with pytest.raises(Exception):
        capture_feature_maps(model, torch.randn(1, 3, 16, 16))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    with pytest.raises(ValueError, match="kinds"):
        capture_feature_maps(model, images(), kinds=["attention"])


def test_msa_map_is_attention_output_with_skip():
    model = micro("vit_token")
    x = images()
    with torch.no_grad():
        maps = dict((info.name, fmap) for info, fmap in capture_feature_maps(model, x))
        tokens = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        block = model.blocks[0]
        after_msa = tokens + block.attn(block.norm1(tokens))
        after_mlp = block(tokens)
    grid = lambda t: t[:, 1:].transpose(1, 2).reshape(2, 32, 8, 8)  # noqa: E731
    torch.testing.assert_close(maps["blocks.0.msa"], grid(after_msa))
    torch.testing.assert_close(maps["blocks.0.mlp"], grid(after_mlp))
    torch.testing.assert_close(maps["stem"], grid(tokens))  # what block 0 reads


@pytest.mark.parametrize("name", ["vit_token", "vit_gap"])
def test_vit_stem_is_patch_plus_position_embedding(name):
    """The stem map is what block 0 reads: the bare patch embedding plus the grid's position embedding."""
    model = micro(name)
    with torch.no_grad():
        model.pos_embed.normal_()  # a position embedding far from zero, so leaving it out cannot pass
        stem = capture_feature_maps(model, images(), kinds=["stem"])[0][1]
        patches = model.patch_embed(images())
    grid_pos = model.pos_embed[:, model.num_prefix_tokens:]
    to_map = lambda t: t.transpose(1, 2).reshape(-1, 32, 8, 8)  # noqa: E731
    torch.testing.assert_close(stem - to_map(patches), to_map(grid_pos).expand_as(stem))
    # token order: grid row-major, so the stem map's pixel (r, c) is patch (r, c)
    torch.testing.assert_close(stem[:, :, 2, 5], patches[:, 2 * 8 + 5] + grid_pos[:, 2 * 8 + 5])


def test_axis_window_and_window_bias():
    assert torch.equal(axis_window(5, 1).sum(1), torch.tensor([2, 3, 3, 3, 2]))  # clipped at the border
    bias = local_attention_bias((4, 4), 3, num_prefix_tokens=1)
    assert bias.shape == (18, 18)
    off_grid = bias[1:17, -1].exp().round().reshape(4, 4)  # zero-padded window positions per token
    assert torch.equal(off_grid, torch.tensor([[5., 3, 3, 5], [3, 0, 0, 3], [3, 0, 0, 3], [5, 3, 3, 5]]))
    assert torch.isinf(bias[0, -1]) and (bias[0, :-1] == 0).all()  # the class token: everything, no padding
    assert ((bias[1:17, 1:17] == 0).sum(1).reshape(4, 4) == 9 - off_grid).all()
    assert local_attention_bias((8, 8), 8, 0) is None and local_attention_bias((8, 8), 11, 0) is None
    with pytest.raises(ValueError, match="odd"):
        local_attention_bias((8, 8), 4, 0)
    with pytest.raises(ValueError, match="kernel_size"):
        local_attention_bias((8, 8), 0, 0)


def zero_padded_window_attention(attn: LocalAttention, x: torch.Tensor, side: int, kernel: int) -> torch.Tensor:
    """Reference: the authors' convolutional MSA, keys and values unfolded over k x k windows with zero padding."""
    batch, count, _ = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    q, k, v = attn.qkv(x).reshape(batch, count, 3, heads * head_dim).unbind(2)
    unfold = lambda t: torch.nn.functional.unfold(  # noqa: E731
        t.transpose(1, 2).reshape(batch, heads * head_dim, side, side), kernel, padding=kernel // 2
    ).reshape(batch, heads, head_dim, kernel * kernel, count)
    q = q.reshape(batch, count, heads, head_dim).permute(0, 2, 1, 3)  # [B, h, N, d]
    logits = torch.einsum("bhnd,bhdwn->bhnw", q, unfold(k)) * attn.scale
    out = torch.einsum("bhnw,bhdwn->bhnd", logits.softmax(-1), unfold(v))
    return attn.proj(out.transpose(1, 2).reshape(batch, count, heads * head_dim))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kernel", [3, 5])
def test_local_msa_matches_zero_padded_unfold(fused, kernel):
    torch.manual_seed(0)
    attn = LocalAttention(16, num_heads=2)
    attn.set_window_bias(local_attention_bias((6, 6), kernel, 0))
    attn.fused_attn = fused
    x = torch.randn(2, 36, 16)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), zero_padded_window_attention(attn, x, 6, kernel))


def test_local_msa_needs_zero_keys():
    with pytest.raises(ValueError, match="qkv_bias"):
        LocalAttention(16, num_heads=2, qkv_bias=True)
    with pytest.raises(ValueError, match="odd"):
        micro("vit_local", kernel_size=4)


def patch_influence(model, row: int, col: int) -> torch.Tensor:
    """8x8 boolean map of input patches whose pixels change the output token (row, col) of a 1-block ViT."""
    x = images(1).requires_grad_(True)
    tokens = model.forward_features(x)  # final LayerNorm is per token: locality is unchanged
    token_output(tokens, model.num_prefix_tokens + row * 8 + col).backward()
    return x.grad.abs().sum(1)[0].reshape(8, 4, 8, 4).sum((1, 3)) > 0


def token_output(tokens: torch.Tensor, index: int) -> torch.Tensor:
    """A random linear read-out of one token (a plain sum of a LayerNorm output is constant)."""
    weights = torch.randn(tokens.shape[-1], generator=torch.Generator().manual_seed(2))
    return tokens[0, index] @ weights


def box(rows: range, cols: range) -> torch.Tensor:
    """8x8 boolean map of a rectangle."""
    out = torch.zeros(8, 8, dtype=torch.bool)
    out[rows.start:rows.stop, cols.start:cols.stop] = True
    return out


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kernel, token, rows, cols", [
    (3, (3, 4), range(2, 5), range(3, 6)),   # interior: centred 3x3
    (3, (0, 0), range(0, 2), range(0, 2)),   # corner: the window reaches off the grid (zero padding)
    (5, (7, 2), range(5, 8), range(0, 5)),
    (7, (0, 7), range(0, 4), range(4, 8)),
])
def test_local_msa_is_local(fused, kernel, token, rows, cols):
    model = micro("vit_local", kernel_size=kernel, depth=1)
    set_fused_attention(model, fused)
    assert torch.equal(patch_influence(model, *token), box(rows, cols))


def test_local_msa_class_token_sees_everything():
    model = micro("vit_local", kernel_size=3, depth=1, global_pool="token")
    x = images(1).requires_grad_(True)
    token_output(model.forward_features(x), 0).backward()
    assert (x.grad.abs().sum(1)[0].reshape(8, 4, 8, 4).sum((1, 3)) > 0).all()


@pytest.mark.parametrize("fused", [True, False])
def test_kernel_covering_grid_equals_global(fused):
    # the global ViT of the local models' tokens and head (patch 4, GAP, their LayerNorm eps)
    global_vit = micro("vit_gap", norm_layer=partial(torch.nn.LayerNorm, eps=1e-5))
    x = images()
    for kernel, same in ((8, True), (11, True), (7, False), (5, False)):
        local = micro("vit_local", kernel_size=kernel)
        local.load_state_dict(global_vit.state_dict())
        set_fused_attention(local, fused)
        set_fused_attention(global_vit, fused)
        with torch.no_grad():
            close = torch.allclose(local(x), global_vit(x), atol=1e-5, rtol=1e-5)
        assert close == same, kernel


def test_gap_model_has_no_class_token():
    gap, cls = micro("vit_gap"), micro("vit_token")
    assert gap.cls_token is None and gap.num_prefix_tokens == 0
    assert gap.pos_embed.shape[1] == 64 and cls.pos_embed.shape[1] == 65
    assert cls.cls_token is not None and cls.num_prefix_tokens == 1
    assert num_params(cls) - num_params(gap) == 2 * 32  # the class token and its position embedding
    local = micro("vit_local")  # the authors' local models: GAP, no class token
    assert local.cls_token is None and isinstance(local.norm, torch.nn.Identity) and local.fc_norm is not None


def test_vits_have_no_qkv_bias():
    for name in ("vit_token", "vit_gap", "vit_local"):
        assert all(block.attn.qkv.bias is None for block in micro(name).blocks), name


def test_msa_block_is_the_authors():
    """Quarter-width 1x1 conv without bias, q/k/v without bias to heads x head_dim, one bias table for all heads,
    output projection with bias straight to the full width; nothing else carries parameters."""
    block = MSABlock(32, num_heads=3, head_dim=4, window_size=4)
    shapes = {name: tuple(p.shape) for name, p in block.named_parameters()}
    assert shapes == {
        "norm1.weight": (32,), "norm1.bias": (32,), "conv1.weight": (8, 32, 1, 1), "norm2.weight": (8,),
        "norm2.bias": (8,), "attn.relative_position_bias_table": (7, 7), "attn.attn.qkv.weight": (36, 8),
        "attn.attn.proj.weight": (32, 12), "attn.attn.proj.bias": (32,),
    }
    assert isinstance(block.norm1.act, torch.nn.GELU)
    bias = block.attn.relative_position_bias()
    assert bias.shape == (16, 16)
    # bias of query i on key j reads the table at (key - query) + 3: the same offset, the same entry
    table = block.attn.relative_position_bias_table
    assert bias[0, 5] == table[4, 4] and bias[5, 0] == table[2, 2] and bias[0, 0] == table[3, 3]
    assert torch.equal(bias.diagonal(), table[3, 3].expand(16))


def test_alternet_excludes_bias_tables_from_matrix_decay():
    model = micro("alternet")
    assert model.no_weight_decay() == {
        "stages.1.blocks.1.attn.relative_position_bias_table", "stages.3.blocks.1.attn.relative_position_bias_table",
        "stages.3.blocks.3.attn.relative_position_bias_table"}


@pytest.mark.parametrize("name", ["vit_token", "vit_local", "alternet", "pit", "swin"])
def test_unfused_attention_has_double_backward(name):
    model = micro(name)
    switched = set_fused_attention(model, False)
    assert switched == {"vit_token": 2, "vit_local": 2, "alternet": 3, "pit": 2, "swin": 4}[name]
    assert all(not m.fused_attn for m in model.modules() if hasattr(m, "fused_attn"))
    params = [p for p in model.parameters() if p.requires_grad]
    loss = torch.nn.functional.cross_entropy(model(images()), torch.tensor([1, 2]))
    grads = torch.autograd.grad(loss, params, create_graph=True)
    vector = [torch.ones_like(g) for g in grads]
    hvp = torch.autograd.grad(grads, params, grad_outputs=vector, allow_unused=True)
    assert any(h is not None and h.abs().sum() > 0 for h in hvp)


@pytest.mark.parametrize("name", ["vit_local", "alternet"])
def test_fused_attention_has_double_backward_under_math_sdpa(name):
    """The Hessian runs fused attention under sdpa_kernel(MATH) (vitwork.hessian.analysis_mode): it must twice
    differentiate, the attention bias table included."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = micro(name)
    params = [p for p in model.parameters() if p.requires_grad]
    with sdpa_kernel(SDPBackend.MATH):
        loss = torch.nn.functional.cross_entropy(model(images()), torch.tensor([1, 2]))
        grads = torch.autograd.grad(loss, params, create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in grads), params, allow_unused=True)
    named = dict(zip([n for n, p in model.named_parameters() if p.requires_grad], second))
    assert all(torch.isfinite(h).all() for h in second if h is not None)
    if name == "alternet":
        assert named["stages.3.blocks.3.attn.relative_position_bias_table"].abs().sum() > 0


@pytest.mark.parametrize("name", sorted(MICRO))
def test_drop_path_rate_reaches_blocks(name):
    assert drop_probs(micro(name)) == []
    probs = drop_probs(micro(name, drop_path_rate=0.1))
    assert probs and max(probs) == pytest.approx(0.1)


def test_alternet_msa_keeps_drop_path_of_replaced_block():
    model = micro("alternet", drop_path_rate=0.1)
    last = model.stages[-1].blocks[-1]
    assert isinstance(last, MSABlock) and last.drop_path.drop_prob == pytest.approx(0.1)


def test_cifar_stems():
    model = micro("resnet_bottleneck")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    pre = micro("preact_basic")
    assert [type(m).__name__ for m in pre.stem] == ["Conv2d"] and pre.stem[0].stride == (1, 1)


def meta_model(arch: str, **kwargs) -> torch.nn.Module:
    """A paper-size model on the meta device (shapes only: no memory, no initialisation)."""
    with torch.device("meta"):
        return create_model(arch, 100, **kwargs)


# Parameters at 100 classes of the authors' code, instantiated outside this repository (their ResNets and AlterNet
# with window 4 and no stem pooling, their ConViT-Ti at patch 4; timm's ViT, PiT and Swin with their README's CIFAR
# arguments).
AUTHORS_PARAMETERS = {
    "vitwork_resnet50": (23_705_252, 0.001),
    "vitwork_preact_resnet50": (23_697_572, 0.001),
    "vitwork_alternet50": (33_012_840, 0.005),
    "vitwork_alternet50_msa0": (28_160_164, 0.005),
    "vitwork_alternet50_msa1": (30_258_389, 0.005),
    "vitwork_alternet50_msa2": (32_356_614, 0.005),
    "vitwork_alternet50_msa3": (32_881_463, 0.005),
    "vitwork_alternet50_msa4": (33_406_312, 0.005),
    "vitwork_alternet50_msa5": (33_931_161, 0.005),
    "vitwork_alternet50_msa6": (34_062_538, 0.005),
    "vitwork_vit_ti": (5_403_172, 0.001),
    "vitwork_vit_ti_local3": (5_372_836, 0.001),
    "vitwork_vit_ti_local5": (5_372_836, 0.001),
    "vitwork_vit_ti_local8": (5_372_836, 0.001),
    "vitwork_pit_ti": (4_582_436, 0.001),
    "vitwork_swin_ti": (27_562_126, 0.001),
}


@pytest.mark.parametrize("arch", sorted(AUTHORS_PARAMETERS))
def test_parameter_counts_match_the_authors(arch):
    expected, rel = AUTHORS_PARAMETERS[arch]
    assert num_params(meta_model(arch)) == pytest.approx(expected, rel=rel)


def test_paper_preset_layouts():
    alternet = meta_model("vitwork_alternet50")
    stages = [b.name.split(".")[1] for b in alternet.feature_blocks() if b.kind == "msa"]
    assert stages == ["1", "2", "3", "3"]
    assert all(stage.blocks[-1].__class__ is MSABlock for stage in alternet.stages[1:])
    assert alternet.msa_per_stage == (0, 1, 1, 2)
    layouts = [meta_model(f"vitwork_alternet50_msa{step}").msa_per_stage for step in range(7)]
    assert layouts == list(ALTERNET50_BUILDUP)
    assert [sum(layout) for layout in layouts] == list(range(7))
    for arch, patch, grid, prefix in (("vitwork_vit_ti", 2, 16, 1), ("vitwork_vit_ti_gap", 2, 16, 0),
                                      ("vitwork_vit_ti_local3", 4, 8, 0), ("vitwork_vit_ti_local8", 4, 8, 0)):
        model = meta_model(arch)
        assert (model.patch_embed.patch_size, model.patch_embed.grid_size) == ((patch,) * 2, (grid,) * 2), arch
        assert model.num_prefix_tokens == prefix, arch
    local8 = meta_model("vitwork_vit_ti_local8")
    assert all(block.attn.window_bias is None for block in local8.blocks)  # 8x8 on the 8x8 grid: global
