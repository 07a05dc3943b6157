"""Device choice, mixed precision and memory format, shared by training and every evaluation.

`mixed_precision` and `channels_last` are tri-state settings: `"auto"` applies them on CUDA only (the paper-scale
GPU default, and CPU runs stay as they were), `True` on every device (CPU autocast supports bf16, so tests run the
GPU path on CPU), `False` never.
"""

from __future__ import annotations

import contextlib

import torch

DEVICE_SETTINGS = ("auto", True, False)


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def applies_on(setting: str | bool, device: str | torch.device) -> bool:
    """Whether a tri-state setting ("auto": CUDA only, True: every device, False: never) is on for `device`."""
    if setting not in DEVICE_SETTINGS:
        raise ValueError(f"expected one of 'auto', true, false, got {setting!r}")
    if setting == "auto":
        return torch.device(device).type == "cuda"
    return bool(setting)


def autocast(device: str | torch.device, enabled: str | bool = "auto"):
    """bf16 autocast on `device` when `enabled` applies there (see `applies_on`); otherwise nothing."""
    device = torch.device(device)
    if applies_on(enabled, device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
