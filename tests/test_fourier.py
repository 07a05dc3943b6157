"""Tests of vitwork.fourier: spectra with known answers, streaming equivalence, band-passed noise, variance."""

import math

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from vitwork import fourier

torch.set_num_threads(1)


def _random_maps(shape, seed=0, dtype=torch.float32):
    """Reproducible Gaussian maps."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _reference_delta(maps: np.ndarray, points: int) -> np.ndarray:
    """ΔLog amplitude straight from the definition with numpy: full FFT, log, fftshift, mean, diagonal from centre."""
    size = maps.shape[-1]
    logamp = np.log(np.abs(np.fft.fft2(maps, axes=(-2, -1))) + 1e-6)
    centred = np.fft.fftshift(logamp, axes=(-2, -1)).mean(axis=(0, 1))
    idx = (size // 2 + np.arange(points)) % size
    diag = centred[idx, idx]
    return diag - diag[0]


# ------------------------------------------------------------------------------------------ spectra


@pytest.mark.parametrize("size", [8, 7, 16])
@pytest.mark.parametrize("highest", ["authors", "nyquist"])
def test_delta_matches_explicit_fftshift_definition(size, highest):
    maps = _random_maps((3, 4, size, size), dtype=torch.float64)
    freqs, values = fourier.delta_log_amplitude(maps, highest)
    # the authors end the half diagonal at index h/2 - 1 (even h); nyquist adds index h/2, the frequency pi
    points = {"authors": size - size // 2, "nyquist": size // 2 + 1}[highest]
    np.testing.assert_allclose(values.numpy(), _reference_delta(maps.numpy(), points), atol=1e-10)
    assert len(freqs) == points and freqs[0] == 0
    expected_last = math.pi if size % 2 == 0 and highest == "nyquist" else 2 * math.pi * (points - 1) / size
    assert freqs[-1].item() == pytest.approx(expected_last)
    assert fourier.delta_log_amplitude(maps)[1].shape == (size - size // 2,)  # the authors' is the default


@pytest.mark.parametrize("k0", [1, 3, 5, 8])
def test_diagonal_sinusoid_peaks_at_its_own_frequency(k0):
    size, amp, offset = 16, 2.0, 3.0
    m = torch.arange(size, dtype=torch.float64)
    wave = offset + amp * torch.cos(2 * math.pi * k0 * (m[:, None] + m[None, :]) / size + 0.3)
    maps = wave.expand(2, 3, size, size).float()
    freqs, values = fourier.delta_log_amplitude(maps, "nyquist")
    assert int(values[1:].argmax()) + 1 == k0
    assert freqs[k0].item() == pytest.approx(2 * math.pi * k0 / size)
    # |F| at (k0, k0) is amp * H * W / 2 (amp * H * W * |cos 0.3| at Nyquist, where the wave is real-valued)
    peak = amp * size * size * (abs(math.cos(0.3)) if 2 * k0 == size else 0.5)
    expected = math.log(peak + 1e-6) - math.log(offset * size * size + 1e-6)
    assert values[k0].item() == pytest.approx(expected, abs=1e-4)


def test_blur_lowers_and_sharpening_raises_high_frequencies():
    maps = _random_maps((4, 6, 16, 16), seed=1)
    blurred = torch.from_numpy(scipy.ndimage.uniform_filter(maps.numpy(), size=(1, 1, 3, 3), mode="wrap"))
    sharpened = maps + (maps - blurred)
    high = slice(5, None)  # frequencies above ~0.5π
    plain = fourier.delta_log_amplitude(maps)[1][high]
    low_passed = fourier.delta_log_amplitude(blurred)[1][high]
    high_passed = fourier.delta_log_amplitude(sharpened)[1][high]
    assert torch.all(low_passed < plain - 0.5)
    assert torch.all(high_passed > plain + 0.1)


@pytest.mark.parametrize("size,dtype", [(8, torch.float32), (7, torch.float64)])
def test_constant_map_has_no_high_frequencies(size, dtype):
    consts = torch.tensor([[1.5, -0.2, 4.0], [0.7, 2.5, -3.0]], dtype=dtype)
    maps = consts[:, :, None, None].expand(2, 3, size, size).contiguous()
    _, values = fourier.delta_log_amplitude(maps)
    dc = torch.log(consts.abs() * size * size + 1e-6).mean()
    expected = math.log(1e-6) - dc.item()
    np.testing.assert_allclose(values[1:].numpy(), expected, atol=1e-4)
    assert values[0] == 0


def test_non_square_map_is_rejected():
    with pytest.raises(ValueError, match="square"):
        fourier.delta_log_amplitude(torch.zeros(1, 1, 8, 6))


def test_streaming_accumulator_equals_one_shot():
    a = _random_maps((12, 5, 8, 8), seed=2)
    b = _random_maps((12, 3, 8, 8), seed=3) * 4
    c = _random_maps((12, 7, 4, 4), seed=4)
    acc = fourier.LogAmplitudeAccumulator()
    var = fourier.VarianceAccumulator()
    for lo, hi in [(0, 5), (5, 9), (9, 12)]:
        batch = [("a", a[lo:hi]), ("b", b[lo:hi]), ("c", c[lo:hi])]
        acc.update_many(batch)
        var.update_many(batch)
    assert acc.keys() == ["a", "b", "c"]
    for key, full in [("a", a), ("b", b), ("c", c)]:
        freqs, values = acc.result(key)
        ref_freqs, ref_values = fourier.delta_log_amplitude(full)
        torch.testing.assert_close(values, ref_values, rtol=0, atol=1e-6)
        torch.testing.assert_close(freqs, ref_freqs)
        assert var.result(key) == pytest.approx(fourier.spatial_variance(full).double().mean().item(), rel=1e-6)
    # blocks a and b share one batched FFT; their results must not mix
    assert not torch.allclose(acc.mean_log_amplitude("a"), acc.mean_log_amplitude("b"), atol=0.5)


# ----------------------------------------------------------------------------------------- variance


def test_variance_of_checkerboard_and_constant():
    a = 1.7
    m = torch.arange(6)
    board = a * (1 - 2 * ((m[:, None] + m[None, :]) % 2)).float()
    maps = torch.stack([board, 2 * board, torch.full((6, 6), 5.0)])[None]  # 1 x 3 x 6 x 6
    var = fourier.spatial_variance(maps, "population")
    torch.testing.assert_close(var, torch.tensor([[a**2, 4 * a**2, 0.0]]))
    # the default is the unbiased estimator (the authors' Tensor.var): 36 positions, factor 36/35
    torch.testing.assert_close(fourier.spatial_variance(maps), torch.tensor([[a**2, 4 * a**2, 0.0]]) * 36 / 35)


# -------------------------------------------------------------------------------------------- noise


def test_band_mask_at_09pi_is_two_linf_rings_on_32x32():
    mask = fourier.frequency_band_mask(32, 32, 0.9 * math.pi)
    # |ω|∞ ∈ [0.9π - 0.2, 0.9π + 0.2] keeps the rings |j|∞ = 14 and 15 (ω = 2πj/32): 8*14 + 8*15 bins
    assert int(mask.sum()) == 8 * 14 + 8 * 15
    j = torch.fft.fftfreq(32, 1 / 32).long().abs()
    rings = torch.maximum(j[:, None], j[None, :])
    assert torch.equal(mask, (rings == 14) | (rings == 15))


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])
def test_bandpassed_noise_energy_lies_in_band(k):
    freq, eps = k * math.pi / 10, 0.1
    noise = fourier.bandpass_sign_noise((4, 3, 32, 32), freq, eps, fourier.noise_generator(0, freq, 0))
    power = torch.fft.fft2(noise.double()).abs() ** 2
    mask = fourier.frequency_band_mask(32, 32, freq)
    assert (power * mask).sum() / power.sum() > 0.99
    rms = noise.double().pow(2).mean().sqrt().item()
    assert rms == pytest.approx(fourier.expected_bandpassed_rms(32, 32, freq, eps), rel=0.05)


def test_sign_noise_has_magnitude_eps_before_bandpass():
    eps = 0.25
    raw = fourier.sign_noise((2, 3, 16, 16), eps, torch.Generator().manual_seed(5))
    assert torch.all(raw.abs() == eps)
    assert (raw > 0).float().mean().item() == pytest.approx(0.5, abs=0.05)
    banded = fourier.bandpass_sign_noise((2, 3, 16, 16), 0.5, eps, torch.Generator().manual_seed(5), bandwidth=0.2)
    torch.testing.assert_close(banded, fourier.bandpass(raw, 0.5, 0.2))
    # a band covering every frequency returns the sign noise itself
    everything = fourier.bandpass_sign_noise((2, 3, 16, 16), 0.0, eps, torch.Generator().manual_seed(5), bandwidth=4.0)
    torch.testing.assert_close(everything, raw, rtol=0, atol=1e-6)


def test_same_seed_gives_same_noise_regardless_of_global_state():
    shape, freq = (2, 3, 16, 16), 0.5 * math.pi
    torch.manual_seed(1)
    first = fourier.bandpass_sign_noise(shape, freq, 0.1, fourier.noise_generator(7, freq, 3))
    torch.manual_seed(2)
    torch.randn(10)
    second = fourier.bandpass_sign_noise(shape, freq, 0.1, fourier.noise_generator(7, freq, 3))
    assert torch.equal(first, second)
    reference = fourier.sign_noise(shape, 0.1, fourier.noise_generator(7, freq, 3))
    for other in [fourier.noise_generator(8, freq, 3), fourier.noise_generator(7, freq, 4),
                  fourier.noise_generator(7, 0.6 * math.pi, 3)]:
        assert not torch.equal(fourier.sign_noise(shape, 0.1, other), reference)


def _tiny_classifier():
    """A fixed linear classifier on 3x8x8 inputs."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))


def test_noise_frequency_accuracy_matches_hand_computation():
    model = _tiny_classifier()
    x = _random_maps((20, 3, 8, 8), seed=9)
    y = model(x).argmax(-1).detach()
    y[::3] = (y[::3] + 1) % 4  # clean accuracy 13/20
    batches = [x[:7], x[7:14], x[14:]]
    freqs = [0.3 * math.pi, 0.8 * math.pi]

    rows = fourier.noise_frequency_accuracy(model, batches, y, freqs, eps=0.0, seed=3)
    for row, f in zip(rows, freqs):
        assert row == {"frequency": f, "acc": 13 / 20, "clean_acc": 13 / 20, "delta_acc": 0.0}

    eps, seed = 2.0, 3
    rows = fourier.noise_frequency_accuracy(model, list(zip(batches, [y[:7], y[7:14], y[14:]])), None, freqs, eps, seed)
    with torch.no_grad():
        for row, f in zip(rows, freqs):
            hits = 0
            for b, xb in enumerate(batches):
                noise = fourier.bandpass_sign_noise(xb.shape, f, eps, fourier.noise_generator(seed, f, b))
                hits += int((model(xb + noise).argmax(-1) == y[7 * b : 7 * b + len(xb)]).sum())
            assert row["acc"] == hits / 20
            assert row["delta_acc"] == pytest.approx(hits / 20 - 13 / 20)
    assert any(row["acc"] != 13 / 20 for row in rows)  # the noise is strong enough to matter


# ------------------------------------------------------------------------------------ model-level tables


class _FilterNet(nn.Module):
    """Stem (identity), a 3x3 box blur, a stride-2 down-sampling conv, then a head: outputs known in closed form."""

    def __init__(self, channels=3):
        super().__init__()
        self.stem = nn.Identity()
        self.blur = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="circular", groups=channels, bias=False)
        self.down = nn.Conv2d(channels, 2 * channels, 2, stride=2, bias=False)
        self.head = nn.Linear(2 * channels, 4)
        with torch.no_grad():
            self.blur.weight.fill_(1 / 9)
            self.down.weight.copy_(_random_maps(self.down.weight.shape, seed=11))

    def forward(self, x):
        """Stem, blur, down-sample, global pool, head."""
        return self.head(self.down(self.blur(self.stem(x))).mean(dim=(-2, -1)))

    def feature_blocks(self):
        """Blocks in the vitwork BlockInfo contract."""
        from vitwork.models import BlockInfo

        return [
            BlockInfo("stem", "stem", self.stem),
            BlockInfo("blur", "conv", self.blur),
            BlockInfo("down", "downsample", self.down),
            BlockInfo("head", "head", self.head),
        ]


def test_fourier_and_variance_tables_match_direct_computation():
    model = _FilterNet().train()
    x = _random_maps((10, 3, 8, 8), seed=12)
    batches = [(x[:4], torch.zeros(4)), (x[4:], torch.zeros(6))]
    rows = fourier.fourier_table(model, batches, "cpu")
    assert model.training  # mode restored
    with torch.no_grad():
        maps = {"stem": x, "blur": model.blur(x), "down": model.down(model.blur(x))}
    expected_depth = {"stem": 0.0, "blur": 0.5, "down": 1.0}
    assert [r["block_name"] for r in rows] == ["stem"] * 4 + ["blur"] * 4 + ["down"] * 2
    for name, fmap in maps.items():
        mine = [r for r in rows if r["block_name"] == name]
        freqs, values = fourier.delta_log_amplitude(fmap)
        assert [r["frequency"] for r in mine] == pytest.approx(freqs.tolist())
        assert [r["delta_log_amplitude"] for r in mine] == pytest.approx(values.tolist(), abs=1e-5)
        assert {(r["depth"], r["block_index"]) for r in mine} == {(expected_depth[name], int(2 * expected_depth[name]))}
    kinds = {r["block_name"]: r["kind"] for r in rows}
    assert kinds == {"stem": "stem", "blur": "conv", "down": "downsample"}
    by_name = {r["block_name"]: r for r in rows if r["frequency"] == pytest.approx(0.75 * math.pi)}
    assert by_name["blur"]["delta_log_amplitude"] < by_name["stem"]["delta_log_amplitude"] - 1.0

    only_down = fourier.fourier_table(model, batches, "cpu", kinds=["downsample"])
    assert {(r["block_name"], r["depth"]) for r in only_down} == {("down", 1.0)}

    variances = fourier.feature_variance_table(model, [x[:3], x[3:]], "cpu")
    assert [v["block_name"] for v in variances] == ["stem", "blur", "down"]
    for row in variances:
        direct = maps[row["block_name"]].var(dim=(-2, -1), correction=1).mean().item()
        assert row["variance"] == pytest.approx(direct, rel=1e-5)
        assert row["depth"] == expected_depth[row["block_name"]]


# ------------------------------------------------ the authors' notebook computation, as an independent reference


def notebook_delta_log_amplitude(latent: np.ndarray) -> np.ndarray:
    """The authors' fourier_analysis notebook in numpy: FFT, log(|F| + 1e-6), roll by h/2, mean over batch and
    channels, the diagonal from index h/2 on, minus its first value."""
    _, _, h, w = latent.shape
    log_amplitude = np.log(np.abs(np.fft.fft2(latent)) + 1e-6)
    centred = np.roll(log_amplitude, (h // 2, w // 2), axis=(2, 3)).mean(axis=(0, 1))
    diagonal = np.diag(centred)[h // 2:]
    return diagonal - diagonal[0]


def notebook_variance(latent: np.ndarray) -> float:
    """The authors' featuremap_variance notebook in numpy: unbiased spatial variance, mean over batch and channels."""
    return float(latent.var(axis=(-2, -1), ddof=1).mean())


def token_map(tokens: torch.Tensor) -> np.ndarray:
    """ViT tokens without the class token, `b (h w) c -> b c h w` as the notebook's einops call."""
    tokens = tokens[:, 1:].detach().double().numpy()
    b, n, c = tokens.shape
    side = int(math.isqrt(n))
    return tokens.reshape(b, side, side, c).transpose(0, 3, 1, 2)


def notebook_latents(model, arch: str, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Block outputs collected as the notebooks do: the model cut into a sequence of blocks, run one after the
    other (ViT: each block as Residual(norm1, attn) then Residual(norm2, mlp); ResNet: stem, then every block)."""
    latents = {}
    with torch.no_grad():
        if arch == "vitwork_vit":
            # the stem is what block 0 reads: patch + position embedding (issue 12 item 1)
            tokens = model.norm_pre(model._pos_embed(model.patch_embed(x)))
            latents["stem"] = token_map(tokens)
            for index, block in enumerate(model.blocks):
                tokens = tokens + block.attn(block.norm1(tokens))
                latents[f"blocks.{index}.msa"] = token_map(tokens)
                tokens = tokens + block.mlp(block.norm2(tokens))
                latents[f"blocks.{index}.mlp"] = token_map(tokens)
        else:
            out = model.act1(model.bn1(model.conv1(x)))
            latents["stem"] = out.double().numpy()
            for stage in range(1, 5):
                for index, block in enumerate(getattr(model, f"layer{stage}")):
                    out = block(out)
                    latents[f"layer{stage}.{index}"] = out.double().numpy()
    return latents


@pytest.mark.parametrize("arch, kwargs", [
    ("vitwork_vit", {"patch_size": 4, "embed_dim": 48, "depth": 3, "num_heads": 2, "mlp_ratio": 2}),
    ("vitwork_resnet", {"block": "basic", "layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8}),
])
def test_tables_agree_with_the_authors_notebook_computation(arch, kwargs):
    from vitwork.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, num_classes=10, **kwargs).eval()
    x = _random_maps((12, 3, 32, 32), seed=20)
    latents = notebook_latents(model, arch, x)
    spectra = fourier.fourier_table(model, [x[:5], x[5:]], "cpu")
    variances = {row["block_name"]: row["variance"] for row in fourier.feature_variance_table(model, [x], "cpu")}
    assert set(latents) <= {row["block_name"] for row in spectra}
    for name, latent in latents.items():
        ours = [row["delta_log_amplitude"] for row in spectra if row["block_name"] == name]
        np.testing.assert_allclose(ours, notebook_delta_log_amplitude(latent), atol=2e-4, err_msg=name)
        assert variances[name] == pytest.approx(notebook_variance(latent), rel=1e-4), name
    # the depth figure's "highest frequency" is the notebook's latent[-1]: index h/2 - 1 of the centred diagonal
    from vitwork.figures.fourier_depth import highest_frequency_rows

    typed = [{**row, "block_index": int(row["block_index"])} for row in spectra]
    highest = {row["block_name"]: row for row in highest_frequency_rows(typed)}
    for name, latent in latents.items():
        h = latent.shape[-1]
        assert highest[name]["high_frequency"] == pytest.approx(2 * math.pi * (h // 2 - 1) / h)
        expected = notebook_delta_log_amplitude(latent)[-1]
        assert highest[name]["high_frequency_delta_log_amplitude"] == pytest.approx(expected, abs=2e-4)
