"""Device choice and mixed precision, shared by training and every evaluation."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; nothing on CPU."""
    if torch.device(device).type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
