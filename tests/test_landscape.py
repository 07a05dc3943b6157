"""Tests for vitwork.landscape on a tiny conv net with BatchNorm."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitwork.landscape import dataset_loss_fn, grid_coords, loss_landscape_2d, random_directions

torch.set_num_threads(1)
WD = 1e-2


def tiny_convnet():
    """Conv + BN + linear head (conv kernels, a linear matrix, biases and BN affine parameters)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)).double()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.3, 0.3)
    return net


@pytest.fixture()
def case():
    """The model (in train mode, to check the landscape switches to eval) and labelled data."""
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randn(20, 3, 5, 5, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (20,), generator=gen)
    return tiny_convnet().train(), inputs, labels


def eval_loss(model, inputs, labels, weight_decay):
    """Reference: eval-mode NLL + 0.5 wd sum ||W||^2 over ndim > 1 params, and accuracy."""
    model.eval()
    with torch.no_grad():
        logits = model(inputs)
        nll = F.cross_entropy(logits, labels).item()
        reg = 0.5 * weight_decay * sum(p.pow(2).sum().item() for p in model.parameters() if p.ndim > 1)
        return nll + reg, nll, (logits.argmax(1) == labels).double().mean().item()


def test_directions_are_filter_normalised_and_zero_on_1d(case):
    model, *_ = case
    first, second = random_directions(model, seed=3)
    for name, p in model.named_parameters():
        d = first[name]
        assert d.shape == p.shape
        if p.ndim <= 1:
            assert torch.count_nonzero(d) == 0
        else:
            torch.testing.assert_close(d.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1))
            assert not torch.allclose(d, second[name])
    again = random_directions(model, seed=3)[0]
    assert all(torch.equal(first[n], again[n]) for n in first)


def test_landscape_centre_point_and_restore(case):
    model, inputs, labels = case
    state = {k: v.clone() for k, v in model.state_dict().items()}
    directions = random_directions(model, seed=4)
    coords = (np.array([-0.5, 0.0, 1.0]), np.array([0.0, 0.25]))
    rows = loss_landscape_2d(model, dataset_loss_fn(inputs, labels, batch_size=7), directions, coords,
                             weight_decay=WD, decay="matrices")
    assert [(r["x"], r["y"]) for r in rows] == [(x, y) for y in coords[1] for x in coords[0]]
    assert model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())

    centre = next(r for r in rows if r["x"] == 0.0 and r["y"] == 0.0)
    expected = eval_loss(model, inputs, labels, WD)
    assert (centre["loss"], centre["nll"], centre["accuracy"]) == pytest.approx(expected, rel=1e-12)

    # an off-centre point is the loss at w + x d1 + y d2, computed independently
    point = next(r for r in rows if r["x"] == 1.0 and r["y"] == 0.25)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(directions[0][name] + 0.25 * directions[1][name])
    expected = eval_loss(model, inputs, labels, WD)
    assert (point["loss"], point["nll"], point["accuracy"]) == pytest.approx(expected, rel=1e-10)
    assert point["loss"] != pytest.approx(centre["loss"], rel=1e-3)


def test_soft_targets_and_default_grid(case):
    model, inputs, labels = case
    soft = 0.9 * F.one_hot(labels, 3).double() + 0.1 / 3
    rows = loss_landscape_2d(model, dataset_loss_fn(inputs, soft), random_directions(model, seed=5),
                             grid_coords(3, 0.5))
    assert len(rows) == 9 and {r["x"] for r in rows} == {-0.5, 0.0, 0.5}
    centre = rows[4]
    model.eval()
    with torch.no_grad():
        logits = model(inputs)
    assert centre["nll"] == pytest.approx(-(soft * logits.log_softmax(1)).sum(1).mean().item(), rel=1e-12)
    assert centre["loss"] == centre["nll"]
    assert centre["accuracy"] == pytest.approx((logits.argmax(1) == labels).double().mean().item())
    assert len(grid_coords()) == 21 and grid_coords()[[0, 10, 20]].tolist() == [-1.0, 0.0, 1.0]


def test_regulariser_is_reported_apart_from_the_nll(case):
    model, inputs, labels = case
    rows = loss_landscape_2d(model, dataset_loss_fn(inputs, labels), random_directions(model, seed=6),
                             grid_coords(3, 0.5), weight_decay=WD, decay="all")
    for row in rows:
        assert row["loss"] == pytest.approx(row["nll"] + row["regulariser"], rel=1e-12)
    centre = rows[4]
    assert centre["regulariser"] == pytest.approx(0.5 * WD * sum(float(p.detach().pow(2).sum()) for p in model.parameters()))
    assert rows[0]["regulariser"] != pytest.approx(centre["regulariser"])  # the weights move, so does the term


@pytest.mark.parametrize("arch, kwargs", [
    ("vitwork_vit", {"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_ratio": 2}),
    ("vitwork_vit_local", {"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_ratio": 2,
                           "kernel_size": 3}),
    ("vitwork_alternet", {"layers": [1, 1, 2, 2], "channels": [8, 8, 16, 16], "stem_width": 8,
                          "msa_per_stage": [0, 0, 1, 1], "heads": [1, 1, 2, 2], "head_dim": 8}),
])
def test_directions_move_weight_tensors_only(arch, kwargs):
    """Position embeddings, class tokens and relative-position tables stay fixed (Li et al., the authors)."""
    from vitwork.landscape import direction_parameter_names
    from vitwork.models import create_model

    model = create_model(arch, num_classes=4, **kwargs)
    moved = direction_parameter_names(model)
    fixed = [n for n, _ in model.named_parameters()
             if any(key in n for key in ("pos_embed", "cls_token", "relative_position"))]
    assert fixed and not moved & set(fixed)
    first, _ = random_directions(model, seed=0)
    for name, p in model.named_parameters():
        if name in moved:
            assert p.ndim > 1
            torch.testing.assert_close(first[name].flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1))
        else:
            assert torch.count_nonzero(first[name]) == 0, name
