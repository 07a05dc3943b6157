"""2-D loss landscapes along filter-normalised random directions (Li et al., 2018).

A direction has one tensor per trainable parameter. On weight tensors (`direction_parameter_names`: ``ndim > 1``,
not an embedding or a bias table) a Gaussian tensor is drawn and each output filter (slice along dim 0) is
rescaled to the norm of the same filter of the weights, so the plot is invariant to the scale of each filter
(which BN/LN makes irrelevant to the function). Every other parameter gets a zero direction, as in Li et al. and
the authors' code: biases and norm parameters (``ndim <= 1``), and the tensors that are not filters, position
embeddings, class/register tokens and relative-position bias tables (the model's ``no_weight_decay()`` names and
`NOT_FILTERS`).

The loss at a grid point is NLL + the weight-decay term ``0.5 * wd * sum ||p||^2`` of the recipe's decay set
(`vitwork.objective`) at the moved weights; rows report both parts (``nll``, ``regulariser``) and their sum
(``loss``). The model runs in eval mode (see ``vitwork.hessian`` for why), and the weights are restored bit for
bit.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from vitwork.hessian import analysis_mode, decayed_names
from vitwork.objective import decayed_parameter_names, soft_cross_entropy, weight_decay_term

Direction = dict[str, torch.Tensor]
# Parameter-name fragments of tensors that are not filters (embeddings and bias tables), for models that do not
# list them in `no_weight_decay()`; the authors' code skips names matching `pos_embed` and `relative_position`.
NOT_FILTERS = ("pos_embed", "cls_token", "dist_token", "reg_token", "relative_position")


def direction_parameter_names(model: torch.nn.Module) -> set[str]:
    """Trainable weight tensors a landscape direction moves: the weight matrices and kernels (the `matrices` decay
    set: ``ndim > 1`` without the model's ``no_weight_decay()`` names), minus embeddings and bias tables."""
    return {name for name in decayed_parameter_names(model, "matrices")
            if not any(fragment in name for fragment in NOT_FILTERS)}


def filter_normalized_direction(model: torch.nn.Module, generator: torch.Generator) -> Direction:
    """One random direction, normalised per filter to the weights' filter norms; zero off the weight tensors."""
    moved = direction_parameter_names(model)
    direction = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name not in moved:
            direction[name] = torch.zeros_like(p)
            continue
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        w_norm = p.detach().flatten(1).norm(dim=1)
        d_norm = d.flatten(1).norm(dim=1)
        scale = w_norm / d_norm.clamp_min(torch.finfo(p.dtype).tiny)
        direction[name] = d * scale.view(-1, *([1] * (p.ndim - 1)))
    return direction


def random_directions(model: torch.nn.Module, seed: int = 0, count: int = 2) -> list[Direction]:
    """``count`` seeded filter-normalised directions (the landscape's axes)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return [filter_normalized_direction(model, generator) for _ in range(count)]


def grid_coords(points: int = 21, extent: float = 1.0) -> np.ndarray:
    """Evenly spaced coordinates over [-extent, extent] (the paper: 21 points over [-1, 1])."""
    return np.linspace(-extent, extent, points)


def dataset_loss_fn(inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 256
                    ) -> Callable[[torch.nn.Module], tuple[float, float]]:
    """A ``loss_fn(model) -> (nll, accuracy)`` over fixed data, in batches.

    ``targets``: int64 labels or soft-target rows; accuracy is against the labels or the rows' argmax.
    """
    labels = targets if targets.ndim == 1 else targets.argmax(dim=1)

    def loss_fn(model: torch.nn.Module) -> tuple[float, float]:
        """Mean NLL and accuracy of ``model`` on the captured data."""
        device = next(model.parameters()).device
        nll_sum, correct = 0.0, 0
        for start in range(0, len(inputs), batch_size):
            x = inputs[start:start + batch_size].to(device)
            t = targets[start:start + batch_size].to(device)
            logits = model(x)
            nll_sum += float(soft_cross_entropy(logits, t)) * len(x)
            correct += int((logits.argmax(dim=1) == labels[start:start + batch_size].to(device)).sum())
        return nll_sum / len(inputs), correct / len(inputs)

    return loss_fn


def _set_point(params: dict[str, torch.nn.Parameter], origin: dict[str, torch.Tensor],
               directions: Sequence[Direction], coords: Sequence[float]) -> None:
    """Set the weights to origin + sum_i coords[i] * directions[i] (from the origin: no drift)."""
    for name, p in params.items():
        moved = origin[name].clone()
        for c, d in zip(coords, directions):
            moved.add_(d[name], alpha=float(c))
        p.copy_(moved)


def loss_landscape_2d(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module], tuple[float, float]],
                      directions: Sequence[Direction], coords: np.ndarray | Sequence[np.ndarray] | None = None,
                      weight_decay: float = 0.0, decay: str | Sequence[str] = "all") -> list[dict]:
    """Loss, its parts and accuracy on the plane ``w + x * d1 + y * d2``: rows ``(x, y, loss, nll, regulariser,
    accuracy)``.

    ``coords``: one 1-D array used for both axes, or a pair ``(xs, ys)``; default 21 points over [-1, 1].
    ``loss_fn(model) -> (nll, accuracy)`` (e.g. ``dataset_loss_fn``); ``regulariser`` is the weight-decay term of
    the decay set ``decay`` at the moved weights and ``loss = nll + regulariser``.
    The model runs in eval mode under ``torch.no_grad``; its weights and mode are restored exactly.
    """
    if len(directions) != 2:
        raise ValueError("a 2-D landscape needs exactly two directions")
    coords = grid_coords() if coords is None else coords
    xs, ys = (coords, coords) if np.ndim(coords[0]) == 0 else coords
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    names = decayed_names(model, decay)
    origin = {n: p.detach().clone() for n, p in params.items()}
    rows = []
    try:
        with torch.no_grad(), analysis_mode(model, train=False):
            for y in ys:
                for x in xs:
                    _set_point(params, origin, directions, (x, y))
                    nll, accuracy = loss_fn(model)
                    reg = float(weight_decay_term(params.items(), weight_decay, names))
                    rows.append({"x": float(x), "y": float(y), "loss": nll + reg, "nll": nll,
                                 "regulariser": reg, "accuracy": accuracy})
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(origin[n])
    return rows
