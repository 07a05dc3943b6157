"""Benchmark: time to generate the 75 CIFAR-100-C sets (15 corruptions x 5 severities) from real test images.

Prints, per (corruption, severity), the seconds to generate it and the mean absolute pixel change from the
clean images (0..255 scale), then the total against the 3-minute target and against the published
script's speed (about 17 s per 1,000 images per severity for the 15 corruptions on one core, i.e. about
14 minutes for 10,000 images x 5 severities). For glass blur, frost and elastic transform it also prints
the published script's mean changes measured on 300 real test images, side by side.

    .venv/bin/python bench/corruption_generation.py [--n 10000] [--root ../shared/data/cifar100/test] [--workers 1]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vitwork.corruptions import CORRUPTIONS, SEVERITIES, corrupt  # noqa: E402

TARGET_S = 180.0
# The published script: about 17 s per 1,000 images per severity for all 15 corruptions, one core.
PUBLISHED_S_PER_1000_PER_SEVERITY = 17.0
PUBLISHED_MEAN_CHANGE = {
    "glass_blur": (11.3, 11.4, 11.2, 18.3, 17.5),
    "frost": (30.0, 44.0, 49.0, 45.0, 45.0),
    "elastic_transform": (22.0, 20.0, 18.0, 17.0, 14.0),
}

_IMAGES: np.ndarray | None = None


def load_test_images(root: Path, n: int) -> np.ndarray:
    """Read N test PNGs, spread evenly over the classes (ImageFolder order, every k-th file)."""
    files = sorted(root.glob("*/*.png"))
    if not files:
        raise SystemExit(f"no PNG files under {root}")
    step = max(1, len(files) // n)
    chosen = files[::step][:n]
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in chosen])


def init_worker(images: np.ndarray) -> None:
    """Give a worker process the clean images and one thread."""
    global _IMAGES
    _IMAGES = images
    torch.set_num_threads(1)


def time_corruption(name: str, seed: int) -> list[tuple[int, float, float]]:
    """(severity, seconds, mean |change|) for every severity of one corruption."""
    rows = []
    for severity in SEVERITIES:
        start = time.perf_counter()
        out = corrupt(_IMAGES, name, severity, seed)
        seconds = time.perf_counter() - start
        change = float(np.abs(out.astype(np.int16) - _IMAGES.astype(np.int16)).mean())
        rows.append((severity, seconds, change))
    return rows


def main() -> None:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="number of test images")
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "cifar100" / "test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes, one corruption at a time each")
    args = parser.parse_args()
    torch.set_num_threads(1)

    images = load_test_images(args.root, args.n)
    n = len(images)
    print(f"{n} images from {args.root}, {args.workers} worker process(es), seed {args.seed}")
    wall_start = time.perf_counter()
    if args.workers == 1:
        init_worker(images)
        results = {name: time_corruption(name, args.seed) for name in CORRUPTIONS}
    else:
        with ProcessPoolExecutor(args.workers, initializer=init_worker, initargs=(images,)) as pool:
            futures = {name: pool.submit(time_corruption, name, args.seed) for name in CORRUPTIONS}
            results = {name: future.result() for name, future in futures.items()}
    wall = time.perf_counter() - wall_start

    header = " ".join(f"{'s' + str(s):>6}" for s in SEVERITIES)
    print(f"\nseconds per set{'':5}{header} {'total':>7}   mean |change| (0..255) {header}")
    cpu_total = 0.0
    for name in CORRUPTIONS:
        seconds = [r[1] for r in results[name]]
        changes = [r[2] for r in results[name]]
        cpu_total += sum(seconds)
        print(
            f"{name:<20}"
            + " ".join(f"{t:6.2f}" for t in seconds)
            + f" {sum(seconds):7.2f}   {'':22}"
            + " ".join(f"{c:6.2f}" for c in changes)
        )
    print("\npublished script, mean |change| on 300 real test images, vs this run:")
    for name, published in PUBLISHED_MEAN_CHANGE.items():
        ours = [r[2] for r in results[name]]
        ratios = " ".join(f"{o / p:5.2f}" for o, p in zip(ours, published))
        print(f"  {name:<18} published {' '.join(f'{p:5.1f}' for p in published)}   ratio {ratios}")
    published_s = PUBLISHED_S_PER_1000_PER_SEVERITY * n / 1000 * len(SEVERITIES)
    print(f"\nall 75 sets: {cpu_total:.1f} s summed over sets, {wall:.1f} s wall with {args.workers} worker(s)")
    print(
        f"  target {TARGET_S:.0f} s for 10,000 images: wall / target = {wall / TARGET_S * 10_000 / n:.2f} (scaled to 10,000)"
    )
    print(f"  published script ~{published_s:.0f} s on one core: speed-up {published_s / cpu_total:.1f}x per core")


if __name__ == "__main__":
    main()
