"""The training objective, defined once: soft-target cross-entropy plus the weight-decay term.

Training (the loss), the optimizer (which parameters take weight decay), the Hessian and the loss landscape
(the analysed objective) all read these functions, so the four can never disagree about what is minimised.

Which parameters decay is a recipe setting (``optimizers.<recipe>.decay``):
- ``all`` (default, the authors'): every trainable parameter, biases, norm scales, position embeddings and
  class token included (their optimizer is built on ``model.parameters()`` with one weight decay);
- ``matrices``: weights with ``ndim > 1`` except those the model lists in ``no_weight_decay()`` (timm's
  convention: position embeddings, class token, relative-position bias tables), as timm's optimizer factory does.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F

DECAY_SETS = ("all", "matrices")


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against soft (mixed, smoothed) targets, or int labels: the training loss and NLL_train."""
    # at least float32 (bf16 logits under autocast), float64 kept for exact-Hessian checks
    return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), targets)


def _no_weight_decay_names(model: torch.nn.Module) -> set[str]:
    """Names (or name prefixes) the model exempts from weight decay under `matrices` (timm's `no_weight_decay()`)."""
    exempt = getattr(model, "no_weight_decay", None)
    return set(exempt()) if callable(exempt) else set()


def decayed_parameter_names(model: torch.nn.Module, decay: str = "all") -> set[str]:
    """Names of the trainable parameters that take weight decay under the decay set `decay` (module doc)."""
    if decay not in DECAY_SETS:
        raise ValueError(f"decay must be one of {DECAY_SETS}, got {decay!r}")
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if decay == "all":
        return {name for name, _ in named}
    exempt = _no_weight_decay_names(model)
    return {
        name for name, p in named
        if p.ndim > 1 and name not in exempt and not any(name.startswith(f"{e}.") for e in exempt)
    }


def weight_decay_term(named_params: Iterable[tuple[str, torch.Tensor]], weight_decay: float,
                      names: set[str]) -> torch.Tensor | float:
    """``0.5 * weight_decay * sum ||p||^2`` over the named parameters in ``names`` (0.0 when weight_decay is 0)."""
    if weight_decay == 0.0:
        return 0.0
    return 0.5 * weight_decay * sum(p.pow(2).sum() for n, p in named_params if n in names)


def decay_param_groups(model: torch.nn.Module, weight_decay: float, decay: str = "all") -> list[dict]:
    """Optimizer parameter groups: the decayed parameters with `weight_decay`, the others with none."""
    names = decayed_parameter_names(model, decay)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n in names], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n not in names], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]
