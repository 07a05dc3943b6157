"""Benchmark (not a test): images/s of the pipeline's training step with the paper's whole recipe vs a plain loop.

For each model (default: ViT-Ti and ResNet-50) the run spec is config.yaml's, under its recipe (default `adamw`:
batch 96) and its shared `training` section: timm RandAugment m9 n2 mstd1, crop and flip, mixup/cutmix, label
smoothing, clipping at norm 5, stochastic depth 0.1. Four kinds of block take turns on the same batches:
- pipeline: `Trainer.train_step`, the pipeline's own step;
- plain: forward, cross-entropy, backward, AdamW on pre-normalised tensors, on the trainer's own model object (its
  stochastic depth runs in both; bench/training_steps.py);
- augmentation: the step's augmentation and mixing alone; clipping: its gradient clipping alone.
Printed per model, by wall time and by this process's CPU time, each from the fastest block of its kind (a shared
machine only ever adds time to a block): the ratio pipeline / plain (target on CPU: >= 0.95); the same ratio from
the parts, plain / (plain + augmentation + clipping), which does not compare two noisy whole steps; and the share
of the step spent augmenting. The line marked * is the headline (and the JSON's top level): CPU time on a CPU, wall
time on CUDA.

The paper's models take 10-30 s per step of 96 images on one CPU thread, so the CPU defaults are one warm-up step
and three blocks of one step each (about three minutes per model); raise --blocks for tighter figures. On CUDA the
defaults are 5 warm-up steps and 5 blocks of 20 steps.

    python bench/train_throughput.py [--models vit_ti resnet50] [--steps N] [--blocks N] [--device auto]
        [--imagefolder /path/to/cifar100] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from training_steps import (  # noqa: E402
    REPO,
    PlainLoop,
    alternate,
    augmentation_only,
    build_trainer,
    clipping_only,
    fastest,
    images_per_second,
    ratio,
    prepare_data,
    random_batches,
    recipe_spec,
    time_block,
)

from vitwork.config import load_config_file  # noqa: E402
from vitwork.devices import resolve_device  # noqa: E402
from vitwork.io import write_json  # noqa: E402

TARGET = 0.95


def measure(spec: dict, data, device: str, threads: int, warmup: int, steps: int, blocks: int) -> dict:
    """Side-by-side figures of one run spec: pipeline step, plain loop, augmentation alone, by both clocks."""
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(spec, data, Path(run_dir), device, threads)
    timed = {"pipeline": trainer.train_step, "plain": PlainLoop(trainer), "augmentation": augmentation_only(trainer)}
    if trainer.training["grad_clip_norm"]:
        timed["clipping"] = clipping_only(trainer)
    batches = random_batches(trainer, steps)
    for step in timed.values():
        time_block(step, batches[:1] * warmup, trainer.device)
    seconds = alternate(timed, batches, blocks, trainer.device)
    images = steps * trainer.batch_size
    figures = {
        clock: {
            "ratio": ratio(times["plain"], times["pipeline"]),
            "pipeline_images_per_s": images_per_second(times["pipeline"], images),
            "plain_images_per_s": images_per_second(times["plain"], images),
            "augmentation_share": fastest(times["augmentation"]) / fastest(times["pipeline"]),
            # the same ratio from the parts: the plain step plus the pipeline's work outside the model (augmentation,
            # mixing, clipping), each timed alone; far steadier than two whole steps on a loaded machine
            "ratio_from_parts": fastest(times["plain"]) / (fastest(times["plain"]) + sum(fastest(times[name]) for name in ("augmentation", "clipping") if name in times)),
            "blocks": {name: [round(s, 4) for s in values] for name, values in times.items()},
        }
        for clock, times in seconds.items()
    }
    # the headline figures: wall time on a GPU; on a CPU the process's CPU time, which other processes barely move
    clock = "wall" if trainer.device.type == "cuda" else "cpu"
    headline = {key: value for key, value in figures[clock].items() if key != "blocks"}
    return {
        **headline,
        "clock": clock,
        "arch": spec["model"]["arch"],
        "batch_size": trainer.batch_size,
        "device": str(trainer.device),
        "threads": threads,
        "randaugment": spec["training"]["randaugment"],
        "warmup_steps": warmup,
        "steps_per_block": steps,
        "by_clock": figures,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--recipe", default="adamw", help="optimizer recipe of the config (its batch size and training section)")
    parser.add_argument("--models", nargs="+", default=["vit_ti", "resnet50"], help="model names of the config")
    parser.add_argument("--steps", type=int, help="steps per block (default: 1 on CPU, 20 on CUDA)")
    parser.add_argument("--blocks", type=int, help="blocks per step kind (default: 3 on CPU, 5 on CUDA)")
    parser.add_argument("--warmup", type=int, help="untimed steps of each kind first (default: 1 on CPU, 5 on CUDA)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: on a shared machine the steadiest and often the fastest)")
    parser.add_argument("--imagefolder", help="a real {train,test}/<class>/ tree (e.g. CIFAR-100) instead of synthetic images")
    parser.add_argument("--json", help="write {arch: {ratio, pipeline_images_per_s, plain_images_per_s, augmentation_share, ..., by_clock}} here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cuda = resolve_device(args.device).type == "cuda"
    steps = args.steps or (20 if cuda else 1)
    blocks = args.blocks or (5 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)

    config = load_config_file(args.config)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        data = prepare_data(Path(folder), args.imagefolder)
        for name in args.models:
            spec = recipe_spec(config, name, args.recipe)
            result = measure(spec, data, args.device, args.threads, warmup, steps, blocks)
            results[spec["model"]["arch"]] = result
            for clock, figures in result["by_clock"].items():
                lead = "*" if clock == result["clock"] else " "
                print(
                    f"{lead}{spec['model']['arch']:<18} {clock:>4} time, batch {result['batch_size']} on {result['device']} "
                    f"({args.threads} threads): pipeline {figures['pipeline_images_per_s']:.1f} images/s, plain "
                    f"{figures['plain_images_per_s']:.1f} images/s, ratio {figures['ratio']:.3f} (target >= {TARGET}), "
                    f"from the parts {figures['ratio_from_parts']:.3f}; augmentation {100 * figures['augmentation_share']:.1f}% of the step",
                    flush=True,
                )
            gc.collect()
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
