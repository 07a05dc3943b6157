"""Throughput of ``vitwork.fourier.fourier_table`` versus a straightforward per-block, per-image loop.

Both run the same model on the same images through the same hooks (``vitwork.models.capture_feature_maps``);
the batched path does one rFFT per group of equally shaped block outputs and keeps float64 sums on the device,
the loop does a full FFT, log, fftshift and diagonal read per block and per image. Prints images/s of each end to end
(the forward pass is shared by both and often dominates), images/s of the spectrum computation alone on one
captured batch, both ratios, and the largest difference between the two ΔLog amplitude tables.

    PYTHONPATH=src .venv/bin/python bench/fourier_throughput.py [--images 256] [--batch-size 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import nn

from vitwork import fourier


def build_model(arch: str, kwargs: dict, num_classes: int) -> tuple[nn.Module, str]:
    """A micro model from ``vitwork.models``, or a small hand-made conv net if the zoo cannot build it."""
    try:
        from vitwork.models import create_model

        return create_model(arch, num_classes=num_classes, **kwargs), f"{arch} {kwargs}"
    except (ImportError, RuntimeError, TypeError, KeyError, ValueError) as err:
        reason = f"{err.__class__.__name__}: {err}"
        return SmallConvNet(num_classes), f"hand-made SmallConvNet ({arch} unavailable: {reason})"


class SmallConvNet(nn.Module):
    """Fallback: stem, two conv blocks per resolution, one stride-2 down-sampling, a head."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        conv = lambda cin, cout, stride=1: nn.Sequential(  # noqa: E731 - a tiny local block factory
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
        )
        self.stem = conv(3, width)
        self.blocks = nn.ModuleList([conv(width, width), conv(width, width), conv(width, 2 * width, 2),
                                     conv(2 * width, 2 * width), conv(2 * width, 2 * width)])
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, blocks, global average pool, head."""
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(-2, -1)))

    def feature_blocks(self):
        """Blocks in the vitwork BlockInfo contract."""
        from vitwork.models.blocks import BlockInfo

        kinds = ["conv", "conv", "downsample", "conv", "conv"]
        return ([BlockInfo("stem", "stem", self.stem)]
                + [BlockInfo(f"blocks.{i}", k, b) for i, (k, b) in enumerate(zip(kinds, self.blocks))]
                + [BlockInfo("head", "head", self.head)])


def loop_spectra(maps: list[tuple[str, torch.Tensor]], sums: dict[str, torch.Tensor]) -> None:
    """Reference for one forward pass: per block and per image, full FFT, log amplitude, fftshift, channel mean,
    diagonal from centre, added to ``sums``."""
    for name, fmap in maps:
        size = fmap.shape[-1]
        idx = (size // 2 + torch.arange(size // 2 + 1, device=fmap.device)) % size
        for image in fmap:
            logamp = torch.log(torch.fft.fft2(image.float()).abs() + 1e-6)
            centred = torch.fft.fftshift(logamp, dim=(-2, -1)).mean(dim=0)
            sums[name] = sums.get(name, 0) + centred[idx, idx].double()


def loop_fourier(model: nn.Module, batches: list[torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    """The loop path end to end: same hooks and forward passes as ``fourier_table``, spectra by ``loop_spectra``."""
    sums: dict[str, torch.Tensor] = {}
    count = 0
    with torch.inference_mode():
        for x in batches:
            loop_spectra(captured(model, x.to(device)), sums)
            count += x.shape[0]
    return {name: (s / count) - (s / count)[0] for name, s in sums.items()}


def captured(model: nn.Module, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """``(block name, map)`` of one forward pass through the vitwork capture hooks."""
    from vitwork.models import capture_feature_maps

    return [(info.name, fmap) for info, fmap in capture_feature_maps(model, x)]


def timed(fn, device: str, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls of ``fn()`` (CUDA synchronised; best-of damps a shared CPU), its result."""
    best, out = math.inf, None
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    """Time both paths side by side and print images/s and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--arch", default="vitwork_vit")
    parser.add_argument("--model-kwargs", default='{"embed_dim": 64, "depth": 4, "num_heads": 2, "patch_size": 4}')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, described = build_model(args.arch, json.loads(args.model_kwargs), num_classes=10)
    model = model.to(args.device).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.images, 3, 32, 32, generator=gen)
    batches = list(torch.split(images, args.batch_size))

    fourier.fourier_table(model, batches[:1], args.device)  # warm-up (allocator, kernels)
    t_batched, rows = timed(lambda: fourier.fourier_table(model, batches, args.device), args.device, args.repeats)
    t_loop, reference = timed(lambda: loop_fourier(model, batches, args.device), args.device, args.repeats)
    with torch.inference_mode():  # spectra alone, on the maps of one captured batch
        maps = captured(model, batches[0].to(args.device))
        s_batched, _ = timed(lambda: fourier.LogAmplitudeAccumulator().update_many(maps), args.device, args.repeats)
        s_loop, _ = timed(lambda: loop_spectra(maps, {}), args.device, args.repeats)

    worst = 0.0
    by_block: dict[str, list[float]] = {}
    for row in rows:
        by_block.setdefault(row["block_name"], []).append(row["delta_log_amplitude"])
    for name, values in by_block.items():
        worst = max(worst, (torch.tensor(values, dtype=torch.float64) - reference[name].cpu()).abs().max().item())

    n = args.images
    print(f"model: {described}; {len(by_block)} blocks; {n} images of 3x32x32, batch {args.batch_size}, "
          f"device {args.device}, "
          f"{torch.get_num_threads()} thread(s), best of {args.repeats}")
    print(f"{'path':<28}{'seconds':>10}{'images/s':>12}")
    print(f"{'fourier_table (batched)':<28}{t_batched:>10.3f}{n / t_batched:>12.1f}")
    print(f"{'per-block per-image loop':<28}{t_loop:>10.3f}{n / t_loop:>12.1f}")
    b = batches[0].shape[0]
    print(f"{'spectra only, batched':<28}{s_batched:>10.4f}{b / s_batched:>12.1f}   (one captured batch of {b})")
    print(f"{'spectra only, loop':<28}{s_loop:>10.4f}{b / s_loop:>12.1f}")
    print(f"speed-up (batched / loop): {t_loop / t_batched:.2f}x end to end (forward included), "
          f"{s_loop / s_batched:.1f}x on the spectra alone; max |ΔLog difference| = {worst:.2e}")


if __name__ == "__main__":
    main()
