"""Frequency analyses of trained models: Fourier spectra of feature maps, noise-frequency robustness, feature variance.

Definitions follow STUDY.md (section Analyses); the choices the definitions leave open are fixed here.

Fourier analysis of feature maps (``delta_log_amplitude``, ``LogAmplitudeAccumulator``, ``fourier_table``)
    For each block output ``[B, C, H, W]`` (as returned by ``vitwork.models.capture_feature_maps``: ViT tokens
    without their CLS/prefix tokens, reshaped to the square grid) the 2-D DFT over space is taken per sample
    and channel, the log amplitude ``log(|F| + 1e-6)`` is centred (fftshift), averaged over batch and channels,
    and read along the main diagonal from DC outward; ΔLog amplitude(k) = value(k) - value(DC).

    * Diagonal points. After ``fftshift`` the DC bin sits at index ``H // 2``; the half diagonal is read at
      shifted indices ``(H//2 + k) mod H`` from ``k = 0``. The point ``k`` is the 2-D frequency ``(ω, ω)`` with
      ``ω = 2πk/H`` rad per pixel (the value reported as ``frequency``, i.e. the per-axis frequency, equal to
      ``|ω|∞``). Where it ends is ``highest_frequency`` (`DIAGONAL_ENDS`):
      ``authors`` (default): ``k = 0 .. ceil(H/2) - 1``, the authors' ``diag()[H//2:]`` of the centred spectrum,
      so for even ``H`` the highest frequency is index ``H/2 - 1``, at ``π (1 - 2/H)`` (their plots label the last
      point π); ``nyquist``: ``k = 0 .. H//2``, which for even ``H`` adds the Nyquist bin ``(-π, -π)`` (the same
      frequency as ``(+π, +π)``), so frequencies run exactly ``0 .. π``. For odd ``H`` both give the
      ``(H+1)/2`` points up to ``π (H-1)/H``.
    * Since the shifted index ``(H//2 + k) mod H`` holds the unshifted bin ``k``, the code reads bins
      ``(k, k)`` of ``torch.fft.rfft2`` (which keeps columns ``0 .. W//2``, exactly the ones needed) instead of
      shifting the full spectrum; the test suite checks this against an explicit ``numpy.fft.fftshift``.
    * Averaging commutes with selecting the diagonal, so only the diagonal is averaged; the average over
      batch and channels is linear, so the streaming accumulator keeps float64 sums and counts per block and
      any number of images gives the same result as one batch holding them all.
    * Maps must be square (token grids and CIFAR maps are); non-square maps raise ``ValueError``.
    * The FFT runs in float32 (float64 inputs stay float64; half/bfloat16 maps are upcast), on the maps'
      device. Note the 1e-6 floor: float32 round-off of an exactly-zero bin is ~1e-7 of the DC amplitude, so
      spectra of nearly constant maps are only meaningful to that level.

Noise-frequency robustness (``sign_noise``, ``bandpass``, ``bandpass_sign_noise``, ``noise_frequency_accuracy``)
    * ``eps`` is the magnitude of every element of the sign noise ``eps * sign(N(0, 1))`` BEFORE band-passing,
      in normalised input space (as in the paper). The noise is white with per-element variance ``eps²``; by
      Parseval, keeping ``n_band`` of the ``H·W`` frequency bins leaves an expected per-element RMS of
      ``eps * sqrt(n_band / (H·W))`` (``expected_bandpassed_rms``); for 32x32 inputs and bandwidth 0.2 that is
      between 0.15 eps (f = 0.1π) and 0.48 eps (f = 0.9π), larger at high f because the square annulus holds
      more bins there. The band-passed noise is added to the normalised images without clipping.
    * Band: angular frequencies ``ω = 2π · fftfreq(n)`` per axis (``[-π, π)``), kept where
      ``f - bw <= max(|ω_y|, |ω_x|) <= f + bw`` (closed interval); the mask is applied to the FFT of each
      sample and channel (phase kept) and the real part of the inverse FFT is returned. The mask is symmetric
      under ω -> -ω, so the imaginary part is round-off only.
    * Same noise for every model: for batch ``b`` (position in the iteration, from 0) and frequency ``f`` the
      noise is drawn on the CPU from a ``torch.Generator`` seeded with ``noise_seed(seed, f, b)`` (a
      SeedSequence of ``seed``, ``round(f * 1e6)`` and ``b``), so it does not depend on global RNG state, on
      the device, or on the other frequencies evaluated; models see the same noise when they get the same
      batches (same order and batch size).
    * Accuracy is top-1 over all images; ``delta_acc = acc - clean_acc`` (fractions, not percent).

Feature-map variance (``spatial_variance``, ``feature_variance_table``)
    Variance over the H·W positions per sample and channel, averaged over batch and channels (streamed like the
    spectra). ``estimator`` (`VARIANCE_ESTIMATORS`): ``unbiased`` (default, ``correction=1``, the authors'
    ``Tensor.var``) or ``population`` (``correction=0``); they differ by the factor ``HW / (HW - 1)``, 1.07 on a
    4x4 map.

Tables
    ``block_index`` is the position of the block among the non-head entries of ``model.feature_blocks()``;
    ``depth = block_index / (n_non_head - 1)`` (0 for a single block), so depth does not change when ``kinds``
    selects a subset. The model must already be on ``device``; it is put in eval mode for the analysis and its
    previous train/eval mode restored afterwards. Batches are model-ready float tensors (normalised NCHW), or
    tuples/lists whose first element is one (``(images, labels)`` from a DataLoader).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

LOG_EPS = 1e-6
DEFAULT_BANDWIDTH = 0.2
# highest_frequency -> number of half-diagonal points of a size x size map (module doc)
DIAGONAL_ENDS: dict[str, Callable[[int], int]] = {"authors": lambda size: size - size // 2,
                                                  "nyquist": lambda size: size // 2 + 1}
VARIANCE_ESTIMATORS = {"unbiased": 1, "population": 0}  # estimator -> torch.var correction
DEFAULT_NOISE_FREQUENCIES = tuple(math.pi * k / 10 for k in range(1, 10))


# ----------------------------------------------------------------------------------------------- spectra


def diagonal_points(size: int, highest_frequency: str = "authors") -> int:
    """Number of half-diagonal points of a ``size x size`` map, from DC to the ``highest_frequency`` end."""
    if highest_frequency not in DIAGONAL_ENDS:
        raise ValueError(f"highest_frequency must be one of {sorted(DIAGONAL_ENDS)}, got {highest_frequency!r}")
    return DIAGONAL_ENDS[highest_frequency](size)


def half_diagonal_frequencies(size: int, device: torch.device | str | None = None,
                              highest_frequency: str = "authors") -> torch.Tensor:
    """Angular frequencies (rad/pixel, float64) of the half diagonal of a centred ``size x size`` spectrum."""
    points = diagonal_points(size, highest_frequency)
    return torch.arange(points, dtype=torch.float64, device=device) * (2 * math.pi / size)


def _check_square(fmap: torch.Tensor) -> int:
    """Return the side of a square ``[B, C, H, W]`` map or raise: the diagonal is defined for square maps."""
    if fmap.ndim != 4:
        raise ValueError(f"expected a [B, C, H, W] feature map, got shape {tuple(fmap.shape)}")
    h, w = fmap.shape[-2:]
    if h != w:
        raise ValueError(f"Fourier diagonal needs square maps, got {h}x{w}")
    return h


def _fft_dtype(fmap: torch.Tensor) -> torch.Tensor:
    """Cast a map to the dtype its FFT runs in: float64 stays, everything else becomes float32."""
    return fmap if fmap.dtype == torch.float64 else fmap.float()


def diagonal_log_amplitude(fmap: torch.Tensor, highest_frequency: str = "authors") -> torch.Tensor:
    """Log amplitude ``log(|F| + 1e-6)`` on the half diagonal (DC outward) of each sample's and channel's spectrum.

    Returns ``[B, C, points]`` (`diagonal_points`); bin ``(k, k)`` of the unshifted spectrum is the point ``k`` of
    the centred one.
    """
    size = _check_square(fmap)
    spectrum = torch.fft.rfft2(_fft_dtype(fmap))  # [B, C, H, W//2 + 1]
    k = torch.arange(diagonal_points(size, highest_frequency), device=fmap.device)
    return torch.log(spectrum[..., k, k].abs() + LOG_EPS)


def delta_log_amplitude(fmap: torch.Tensor, highest_frequency: str = "authors") -> tuple[torch.Tensor, torch.Tensor]:
    """ΔLog amplitude of one batch of maps: ``(frequencies, values)``, float64, on the map's device."""
    mean = diagonal_log_amplitude(fmap, highest_frequency).mean(dim=(0, 1), dtype=torch.float64)
    return half_diagonal_frequencies(fmap.shape[-1], fmap.device, highest_frequency), mean - mean[0]


def spatial_variance(fmap: torch.Tensor, estimator: str = "unbiased") -> torch.Tensor:
    """Variance over the spatial positions per sample and channel, ``[B, C]`` (``estimator``: unbiased | population)."""
    if fmap.ndim != 4:
        raise ValueError(f"expected a [B, C, H, W] feature map, got shape {tuple(fmap.shape)}")
    if estimator not in VARIANCE_ESTIMATORS:
        raise ValueError(f"estimator must be one of {sorted(VARIANCE_ESTIMATORS)}, got {estimator!r}")
    return torch.var(_fft_dtype(fmap), dim=(-2, -1), correction=VARIANCE_ESTIMATORS[estimator])


# ------------------------------------------------------------------------------------ streaming averages


class StreamingMean:
    """Per-key running mean of vectors: float64 sums and element counts, kept on the data's device."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, key: str, total: torch.Tensor, count: int) -> None:
        """Add the sum ``total`` of ``count`` observations to ``key``."""
        total = total.to(torch.float64)
        if key in self._sums:
            if self._sums[key].shape != total.shape:
                raise ValueError(f"{key}: shape changed from {tuple(self._sums[key].shape)} to {tuple(total.shape)}")
            self._sums[key] = self._sums[key] + total
            self._counts[key] += count
        else:
            self._sums[key] = total.clone()
            self._counts[key] = count

    def keys(self) -> list[str]:
        """Keys in the order they were first added."""
        return list(self._sums)

    def count(self, key: str) -> int:
        """Number of observations averaged for ``key``."""
        return self._counts[key]

    def mean(self, key: str) -> torch.Tensor:
        """The running mean of ``key`` (float64, on the device the sums live on)."""
        return self._sums[key] / self._counts[key]


def _group_by_shape(items: Sequence[tuple[str, torch.Tensor]]) -> dict[tuple, list[tuple[str, torch.Tensor]]]:
    """Group ``(key, map)`` pairs by batch size, spatial size, dtype and device, so each group is one tensor."""
    groups: dict[tuple, list[tuple[str, torch.Tensor]]] = {}
    for key, fmap in items:
        b, _, h, w = fmap.shape
        groups.setdefault((b, h, w, _fft_dtype(fmap).dtype, fmap.device), []).append((key, fmap))
    return groups


def _batched_channel_sums(
    items: Sequence[tuple[str, torch.Tensor]], per_map: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[tuple[str, torch.Tensor, int]]:
    """Apply ``per_map`` (``[B, C, H, W] -> [B, C, ...]``) once per shape group and yield per-key sums over B and C.

    Maps of one forward pass that share a shape are concatenated along channels so one FFT call serves
    many blocks; the result is split back by channel counts.
    """
    for group in _group_by_shape(items).values():
        channels = [fmap.shape[1] for _, fmap in group]
        stacked = group[0][1] if len(group) == 1 else torch.cat([_fft_dtype(f) for _, f in group], dim=1)
        per_channel = per_map(stacked).sum(dim=0, dtype=torch.float64)  # [C_total, ...]
        for (key, fmap), chunk in zip(group, torch.split(per_channel, channels, dim=0)):
            yield key, chunk.sum(dim=0), fmap.shape[0] * fmap.shape[1]


class LogAmplitudeAccumulator:
    """Streaming average of diagonal log amplitudes per block, so any number of images fits in bounded memory."""

    def __init__(self, highest_frequency: str = "authors") -> None:
        diagonal_points(1, highest_frequency)  # fail early on an unknown choice
        self.highest_frequency = highest_frequency
        self._mean = StreamingMean()
        self._sizes: dict[str, int] = {}

    def update(self, key: str, fmap: torch.Tensor) -> None:
        """Add one batch of maps ``[B, C, H, W]`` of block ``key``."""
        self.update_many([(key, fmap)])

    def update_many(self, items: Sequence[tuple[str, torch.Tensor]]) -> None:
        """Add maps of several blocks (one forward pass), batching the FFTs of equally shaped maps."""
        for key, fmap in items:
            size = _check_square(fmap)
            if self._sizes.setdefault(key, size) != size:
                raise ValueError(f"{key}: map size changed from {self._sizes[key]} to {size}")
        log_amplitude = functools.partial(diagonal_log_amplitude, highest_frequency=self.highest_frequency)
        for key, total, count in _batched_channel_sums(items, log_amplitude):
            self._mean.add(key, total, count)

    def keys(self) -> list[str]:
        """Blocks seen so far, in order of first update."""
        return self._mean.keys()

    def mean_log_amplitude(self, key: str) -> torch.Tensor:
        """Average diagonal log amplitude of ``key`` (float64, one value per diagonal point)."""
        return self._mean.mean(key)

    def result(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(frequencies, ΔLog amplitude)`` of ``key`` over everything added so far."""
        mean = self.mean_log_amplitude(key)
        return half_diagonal_frequencies(self._sizes[key], mean.device, self.highest_frequency), mean - mean[0]


class VarianceAccumulator:
    """Streaming average over batch and channels of the spatial variance of each block's maps."""

    def __init__(self, estimator: str = "unbiased") -> None:
        if estimator not in VARIANCE_ESTIMATORS:
            raise ValueError(f"estimator must be one of {sorted(VARIANCE_ESTIMATORS)}, got {estimator!r}")
        self.estimator = estimator
        self._mean = StreamingMean()

    def update_many(self, items: Sequence[tuple[str, torch.Tensor]]) -> None:
        """Add maps of several blocks (one forward pass)."""
        variance = functools.partial(spatial_variance, estimator=self.estimator)
        for key, total, count in _batched_channel_sums(items, variance):
            self._mean.add(key, total, count)

    def keys(self) -> list[str]:
        """Blocks seen so far, in order of first update."""
        return self._mean.keys()

    def result(self, key: str) -> float:
        """Mean spatial variance of ``key``."""
        return float(self._mean.mean(key))


# ----------------------------------------------------------------------------------- model-level tables


def _images_of(batch: Any) -> torch.Tensor:
    """The image tensor of a batch that is either a tensor or a tuple/list starting with one."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def block_positions(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``name -> {block_index, block_name, kind, depth}`` over the non-head entries of ``model.feature_blocks()``."""
    blocks = [b for b in model.feature_blocks() if b.kind != "head"]
    last = max(len(blocks) - 1, 1)
    return {
        b.name: {"block_index": i, "block_name": b.name, "kind": b.kind, "depth": i / last}
        for i, b in enumerate(blocks)
    }


def _stream_feature_maps(
    model: nn.Module, images: Iterable[Any], device: torch.device | str, kinds: Sequence[str] | None
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Yield ``[(block name, map)]`` of each batch's forward pass (eval mode, no autograd)."""
    from vitwork.models import capture_feature_maps  # imported at call time: the models package registers timm models

    with _eval_mode(model), torch.inference_mode():
        for batch in images:
            x = _images_of(batch).to(device)
            yield [(info.name, fmap) for info, fmap in capture_feature_maps(model, x, kinds=kinds)]


def _ordered_keys(keys: Iterable[str], positions: dict[str, dict[str, Any]]) -> list[str]:
    """Captured block names in feature_blocks order (unknown names, if any, last)."""
    return sorted(keys, key=lambda k: positions[k]["block_index"] if k in positions else len(positions))


def _position_of(key: str, positions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Table identity of a captured block; raise if the model's feature_blocks() does not list it."""
    if key not in positions:
        raise KeyError(f"captured block {key!r} is not a non-head entry of model.feature_blocks()")
    return positions[key]


def fourier_table(
    model: nn.Module,
    images: Iterable[Any],
    device: torch.device | str,
    kinds: Sequence[str] | None = None,
    highest_frequency: str = "authors",
) -> list[dict[str, Any]]:
    """Tidy rows ``{block_index, block_name, kind, depth, frequency, delta_log_amplitude}`` over all images.

    ``images`` is any iterable of batches (a DataLoader, a list of tensors); the spectra are accumulated
    in float64 sums, so memory does not grow with the number of images. ``highest_frequency`` (authors |
    nyquist) is where each block's half diagonal ends (module doc).
    """
    positions = block_positions(model)
    acc = LogAmplitudeAccumulator(highest_frequency)
    for maps in _stream_feature_maps(model, images, device, kinds):
        acc.update_many(maps)
    rows = []
    for key in _ordered_keys(acc.keys(), positions):
        freqs, values = acc.result(key)
        ident = _position_of(key, positions)
        rows.extend(
            {**ident, "frequency": float(f), "delta_log_amplitude": float(v)}
            for f, v in zip(freqs.cpu().tolist(), values.cpu().tolist())
        )
    return rows


def feature_variance_table(
    model: nn.Module,
    images: Iterable[Any],
    device: torch.device | str,
    kinds: Sequence[str] | None = None,
    estimator: str = "unbiased",
) -> list[dict[str, Any]]:
    """Tidy rows ``{block_index, block_name, kind, depth, variance}``: mean spatial variance of each block output
    (``estimator``: unbiased | population)."""
    positions = block_positions(model)
    acc = VarianceAccumulator(estimator)
    for maps in _stream_feature_maps(model, images, device, kinds):
        acc.update_many(maps)
    return [
        {**_position_of(key, positions), "variance": acc.result(key)}
        for key in _ordered_keys(acc.keys(), positions)
    ]


# ------------------------------------------------------------------------------ noise-frequency robustness


def angular_frequencies(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Per-axis angular frequencies ``2π · fftfreq(size)`` (rad/pixel, in ``[-π, π)``) in FFT order."""
    return 2 * math.pi * torch.fft.fftfreq(size, dtype=torch.float64, device=device)


def frequency_band_mask(
    height: int,
    width: int,
    freq: float,
    bandwidth: float = DEFAULT_BANDWIDTH,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean ``[H, W]`` mask (FFT order) of bins with ``|freq - max(|ω_y|, |ω_x|)| <= bandwidth``."""
    wy = angular_frequencies(height, device).abs()[:, None]
    wx = angular_frequencies(width, device).abs()[None, :]
    linf = torch.maximum(wy, wx)
    return (linf >= freq - bandwidth) & (linf <= freq + bandwidth)


def expected_bandpassed_rms(
    height: int, width: int, freq: float, eps: float, bandwidth: float = DEFAULT_BANDWIDTH
) -> float:
    """Expected per-element RMS of band-passed white sign noise of magnitude ``eps`` (Parseval)."""
    kept = int(frequency_band_mask(height, width, freq, bandwidth).sum())
    return eps * math.sqrt(kept / (height * width))


def sign_noise(
    shape: Sequence[int], eps: float, generator: torch.Generator, device: torch.device | str | None = None
) -> torch.Tensor:
    """``eps * sign(N(0, 1))`` drawn with ``generator`` on its own device, then moved to ``device``."""
    draws = torch.randn(tuple(shape), generator=generator, device=generator.device)
    return (eps * torch.sign(draws)).to(device if device is not None else draws.device)


def bandpass(x: torch.Tensor, freq: float, bandwidth: float = DEFAULT_BANDWIDTH) -> torch.Tensor:
    """Keep only the square frequency band of ``x`` (over its last two axes): masked FFT, real part of the inverse."""
    mask = frequency_band_mask(x.shape[-2], x.shape[-1], freq, bandwidth, x.device)
    return torch.fft.ifft2(torch.fft.fft2(x) * mask).real.to(x.dtype)


def bandpass_sign_noise(
    shape: Sequence[int],
    freq: float,
    eps: float,
    generator: torch.Generator,
    bandwidth: float = DEFAULT_BANDWIDTH,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sign noise of magnitude ``eps`` band-passed to ``|ω|∞ ∈ [freq - bandwidth, freq + bandwidth]``."""
    return bandpass(sign_noise(shape, eps, generator, device), freq, bandwidth)


def noise_seed(seed: int, freq: float, batch_index: int) -> int:
    """Deterministic 63-bit seed of the noise for one frequency (rounded to 1e-6 rad) and batch position."""
    state = np.random.SeedSequence([int(seed), int(round(freq * 1e6)), int(batch_index)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def noise_generator(seed: int, freq: float, batch_index: int) -> torch.Generator:
    """A fresh CPU generator seeded by ``noise_seed`` (independent of global RNG state and of the device)."""
    return torch.Generator().manual_seed(noise_seed(seed, freq, batch_index))


def _labels_of(batch: Any, labels: torch.Tensor | None, offset: int, n: int) -> torch.Tensor:
    """Labels of a batch: the next ``n`` entries of ``labels`` when given, else the batch's second element."""
    if labels is not None:
        return labels[offset : offset + n]
    if isinstance(batch, (tuple, list)) and len(batch) > 1:
        return torch.as_tensor(batch[1])
    raise ValueError("labels=None needs batches of (images, labels)")


def noise_frequency_accuracy(
    model: nn.Module,
    images: Iterable[Any],
    labels: Sequence[int] | np.ndarray | torch.Tensor | None,
    freqs: Sequence[float] = DEFAULT_NOISE_FREQUENCIES,
    eps: float = 0.1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    bandwidth: float = DEFAULT_BANDWIDTH,
) -> list[dict[str, float]]:
    """Rows ``{frequency, acc, clean_acc, delta_acc}``: top-1 accuracy under band-passed sign noise per frequency.

    ``images`` yields normalised batches (tensors or ``(images, labels)``), in one pass; ``labels`` holds
    the labels of all images in iteration order (or None to take them from the batches). Every frequency
    and batch gets its own seeded noise (``noise_generator``), identical across models.
    """
    labels_t = None if labels is None else torch.as_tensor(np.asarray(labels)).long()
    correct = torch.zeros(len(freqs), dtype=torch.long)
    clean_correct, total = 0, 0
    with _eval_mode(model), torch.inference_mode():
        for batch_index, batch in enumerate(images):
            x = _images_of(batch).to(device)
            y = _labels_of(batch, labels_t, total, x.shape[0]).to(device)
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"batch {batch_index}: {x.shape[0]} images but {y.shape[0]} labels left")
            clean_correct += int((model(x).argmax(dim=-1) == y).sum())
            for i, freq in enumerate(freqs):
                gen = noise_generator(seed, freq, batch_index)
                noise = bandpass_sign_noise(x.shape, freq, eps, gen, bandwidth, device=x.device).to(x.dtype)
                correct[i] += int((model(x + noise).argmax(dim=-1) == y).sum())
            total += x.shape[0]
    if total == 0:
        raise ValueError("no images")
    clean_acc = clean_correct / total
    return [
        {"frequency": float(f), "acc": int(c) / total, "clean_acc": clean_acc, "delta_acc": int(c) / total - clean_acc}
        for f, c in zip(freqs, correct.tolist())
    ]
