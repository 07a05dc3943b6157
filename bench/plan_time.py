"""Benchmark (not a test): how long `snakemake -n` of config.yaml takes, next to `snakemake --version` as the floor.

The floor is what any Snakemake command costs before it reads a workflow (interpreter, imports, CLI). A plan
is timed warm (the checks that need torch/timm cached in `.snakemake/vitwork/` of its working directory, as on
every plan after the first) and cold (a fresh working directory: the first plan of a checkout or of a changed
model/optimizer section). Warm plans and floors alternate so machine noise hits both alike. Target: a warm plan
of at most 3 s on a 2-core machine.

    python bench/plan_time.py [--repeats 5] [--config config.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def seconds(command: list[str]) -> float:
    """Wall time of one command, which must succeed."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="vitwork-plan-")
    plan = [*SNAKEMAKE, "-n", "-s", str(REPO / "Snakefile"), "--configfile", args.config, "--directory", workdir]
    version = [*SNAKEMAKE, "--version"]

    cold = seconds(plan)  # fresh working directory: fills the cache
    floors, warms = [], []
    for _ in range(args.repeats):
        floors.append(seconds(version))
        warms.append(seconds(plan))
    floor, warm = statistics.median(floors), statistics.median(warms)
    print(f"config: {args.config}   ({args.repeats} repeats, medians)")
    print(f"snakemake --version (floor): {floor:5.2f} s   ({', '.join(f'{s:.2f}' for s in floors)})")
    print(f"snakemake -n, warm         : {warm:5.2f} s   ({', '.join(f'{s:.2f}' for s in warms)})   target <= 3 s")
    print(f"snakemake -n, cold (once)  : {cold:5.2f} s   (first plan: imports torch/timm, builds models and optimizers)")
    print(f"warm plan / floor          : {warm / floor:5.2f}   (planning itself: {warm - floor:.2f} s)")


if __name__ == "__main__":
    main()
