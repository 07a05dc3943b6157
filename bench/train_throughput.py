"""Benchmark (not a test): images/s of the pipeline's training step vs a plain PyTorch loop, side by side.

Both use the same model, batch size, device and optimizer; the plain loop is forward, cross-entropy, backward,
AdamW step on pre-normalised tensors. The pipeline's step adds its augmentation (crop, flip, mixup/cutmix,
label smoothing), gradient clipping and the schedule. Blocks of steps alternate between the two so machine
noise hits both alike; the ratio (target >= 0.95) is printed. Then the dry-run planning time of config.yaml.

    python bench/train_throughput.py [--arch vitwork_vit_ti] [--batch-size 96] [--steps 20] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vitwork.config import load_config_file, study_run_specs  # noqa: E402
from vitwork.data import prepare_dataset, write_subset  # noqa: E402
from vitwork.models import create_model  # noqa: E402
from vitwork.train import Trainer  # noqa: E402


def plain_step_fn(model, optimizer, images, labels):
    """The hand-written reference: one plain update."""

    def step(indices):
        logits = model(images[indices])
        loss = F.cross_entropy(logits, labels[indices])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def time_steps(step, batches, device) -> float:
    """Seconds for running `step` on every batch in `batches`."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for indices in batches:
        step(indices)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vitwork_vit")
    parser.add_argument("--model-kwargs", default='{"patch_size": 4, "embed_dim": 96, "depth": 4, "num_heads": 3}')
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=10, help="steps per block")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--randaugment", action="store_true", help="keep the paper's RandAugment in the pipeline step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = load_config_file(REPO / "config.yaml")
    spec = study_run_specs(config, "inductive_bias")[0]
    spec["model"].update(arch=args.arch, kwargs=json.loads(args.model_kwargs))
    spec["optimizer"].update(batch_size=args.batch_size, hparams={"lr": 1e-4, "weight_decay": 0.05})
    if not args.randaugment:
        spec["training"]["randaugment"] = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset = {"source": "synthetic", "synthetic": {"num_classes": 100, "train_per_class": 20, "test_per_class": 1, "seed": 0}}
        prepare_dataset(dataset, tmp / "train.npz", tmp / "test.npz", tmp / "meta.json")
        write_subset(tmp / "train.npz", 1.0, 0, tmp / "subset.npy")
        trainer = Trainer(spec, tmp / "train.npz", tmp / "test.npz", tmp / "meta.json", tmp / "subset.npy", tmp / "run", args.device, args.threads, progress=False)
    device = trainer.device
    trainer.model.train()

    plain_model = create_model(args.arch, 100, drop_path_rate=spec["training"]["drop_path_rate"], **spec["model"]["kwargs"]).to(device)
    if trainer.channels_last:
        plain_model = plain_model.to(memory_format=torch.channels_last)
    plain_model.train()
    plain_optimizer = torch.optim.AdamW(plain_model.parameters(), lr=1e-4, weight_decay=0.05)
    images = ((trainer.train_images.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25).to(device)
    labels = trainer.train_labels.to(device)
    plain = plain_step_fn(plain_model, plain_optimizer, images, labels)

    n = len(labels)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randperm(n, generator=generator)[: args.batch_size].to(labels.device) for _ in range(args.steps)]
    time_steps(trainer.train_step, batches[:2], device)  # warm-up both
    time_steps(plain, batches[:2], device)
    pipeline_rates, plain_rates = [], []
    for _ in range(args.blocks):
        pipeline_rates.append(args.steps * args.batch_size / time_steps(trainer.train_step, batches, device))
        plain_rates.append(args.steps * args.batch_size / time_steps(plain, batches, device))
    pipe, ref = statistics.median(pipeline_rates), statistics.median(plain_rates)
    print(f"model {args.arch} {args.model_kwargs}, batch {args.batch_size}, device {device}, {args.threads} threads")
    print(f"pipeline training step: {pipe:8.1f} images/s   (blocks: {', '.join(f'{r:.0f}' for r in pipeline_rates)})")
    print(f"plain PyTorch loop    : {ref:8.1f} images/s   (blocks: {', '.join(f'{r:.0f}' for r in plain_rates)})")
    print(f"ratio pipeline / plain: {pipe / ref:.3f}   (target >= 0.95)")

    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "-s", str(REPO / "Snakefile"), "--configfile", str(REPO / "config.yaml"), "--directory", tempfile.mkdtemp()],
        capture_output=True, text=True, check=True,
    )
    seconds = time.perf_counter() - start
    total = next(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("total"))
    print(f"dry-run of config.yaml: {seconds:.1f} s to plan {total} jobs")


if __name__ == "__main__":
    main()
