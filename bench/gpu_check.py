"""One command that measures the study's GPU path on one GPU in a few minutes, and writes what it found.

For each paper model (config.yaml's models, under its `adamw` recipe and `training` section, batch 96):
- training images/s of the pipeline's own step (`Trainer.train_step`: the whole recipe) in fp32 and in
  bf16 autocast + channels_last (the config's `auto` on CUDA), and with torch.compile for the models most runs
  train (ViT-Ti, ResNet-50) while the time budget allows; the peak device memory of each;
- the ratio of the bf16 + channels_last step to a plain loop (forward, cross-entropy, backward, AdamW on
  pre-normalised tensors) timed block by block beside it, and the share of the step spent augmenting;
- evaluation images/s of `vitwork.robustness.evaluate_arrays` (what the corruption and test evaluations run), the
  fp32 forward images/s of the analyses without autocast, and the seconds of one Fourier analysis
  (`vitwork.analysis.feature_table`) of a checkpoint the trainer wrote, on ~1,000 test images.
Then the Hessian of one augmented training batch of ViT-Ti with config.yaml's `analyses.hessian` settings
(`vitwork.analysis.hessian_spectrum_table`, one batch): the seconds and HVPs of the Lanczos top-5, and of the batch.

Warm-up steps are never timed; every timed block drains the device queue before and after; each figure is that of
the fastest of its blocks (bench/training_steps.py). A section that fails is recorded under `failures` and the
others go on; the files are rewritten after every section, so a run cut short keeps what it finished. Writes
`gpu_check.json` (read by bench/study_cost.py --images-per-second) and `gpu_check.md` into --out.

    python bench/gpu_check.py --out DIR                 # on a GPU: well within 8 minutes
    python bench/gpu_check.py --smoke --out DIR         # seconds on CPU: micro models of every family
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from training_steps import (  # noqa: E402
    REPO,
    PlainLoop,
    alternate,
    augmentation_only,
    build_trainer,
    fastest,
    images_per_second,
    ratio,
    peak_memory_mib,
    prepare_data,
    random_batches,
    recipe_spec,
    reset_peak_memory,
    synchronize,
    time_block,
)

from vitwork.analysis import feature_table, hessian_spectrum_table  # noqa: E402
from vitwork.augment import eval_inputs  # noqa: E402
from vitwork.checkpoints import load_checkpoint_model  # noqa: E402
from vitwork.config import load_config_file  # noqa: E402
from vitwork.data import load_split  # noqa: E402
from vitwork.devices import resolve_device  # noqa: E402
from vitwork.io import atomic_path, code_version, write_json  # noqa: E402
from vitwork.robustness import evaluate_arrays  # noqa: E402

MICRO_VIT = {"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}
# config model name -> the micro size of its family that --smoke builds instead (same registered architecture)
PAPER_MODELS = {
    "resnet50": {"layers": [1, 1, 1, 1], "channels": [4, 8, 8, 16], "stem_width": 8},
    "vit_ti": MICRO_VIT,
    "alternet50": {"layers": [1, 1, 2, 2], "channels": [4, 8, 8, 16], "stem_width": 8, "msa_per_stage": [0, 0, 1, 1], "heads": [1, 1, 2, 2], "head_dim": 8},
    "pit_ti": {"patch_size": 4, "stride": 4, "base_dims": [4, 4], "depth": [1, 1], "heads": [2, 2], "mlp_ratio": 2.0},
    "swin_ti": {"embed_dim": 8, "depths": [2, 2], "num_heads": [1, 2], "mlp_ratio": 2.0},
    "preact_resnet50": {"layers": [1, 1, 1, 1], "channels": [4, 8, 8, 16], "stem_width": 8},
    "vit_ti_local5": MICRO_VIT,
}
COMPILE_MODELS = ("vit_ti", "resnet50")  # most of the study's runs train these two
HESSIAN_MODEL = "vit_ti"
PRECISIONS = {
    "fp32": {"mixed_precision": False, "channels_last": False, "compile": False},
    "bf16_channels_last": {"mixed_precision": True, "channels_last": True, "compile": False},
    "compile": {"mixed_precision": True, "channels_last": True, "compile": True},
}
COMPILE_RESERVE_S = 120  # start a torch.compile measurement only with this much of the budget left


@dataclass(frozen=True)
class Sizes:
    """How much each section runs."""

    warmup: int  # untimed steps first
    steps: int  # steps per timed block
    blocks: int  # timed blocks per step kind
    train_per_class: int  # synthetic training images per class (100 classes)
    test_per_class: int  # synthetic test images per class: the Fourier analysis reads them all (up to its `images`)
    eval_images: int  # images evaluated for the evaluation throughput
    batch_size: int | None  # None: the recipe's (96)
    hessian: dict  # overrides of config.yaml's analyses.hessian (one batch always)


SIZES = {
    "full": Sizes(5, 10, 5, 20, 10, 10_000, None, {}),
    "smoke": Sizes(1, 2, 2, 1, 1, 200, 16, {"max_hvps": 24, "trace_probes": 2, "batch_size": 16}),
}


class Budget:
    """Seconds left of the run's time budget."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def training_figures(spec, data, folder: Path, args, sizes, with_plain: bool) -> tuple[dict, Path | None]:
    """Images/s and peak memory of the pipeline's step for one spec (and, with `with_plain`, the ratio to the plain
    loop and the augmentation's share); the checkpoint its trainer wrote afterwards (None without `with_plain`)."""
    warmup, steps, blocks = sizes.warmup, sizes.steps, sizes.blocks
    trainer = build_trainer(spec, data, folder / "run", args.device, args.threads)
    device = trainer.device
    batches = random_batches(trainer, steps)
    reset_peak_memory(device)
    started = time.perf_counter()
    time_block(trainer.train_step, batches[:1] * warmup, device)
    # the pipeline's own peak, over its warm-up steps (before a plain loop shares the device)
    figures = {"warmup_seconds": time.perf_counter() - started, "peak_memory_mib": peak_memory_mib(device)}
    steps_timed = {"pipeline": trainer.train_step}
    if with_plain:
        steps_timed["plain"] = PlainLoop(trainer)
        steps_timed["augmentation"] = augmentation_only(trainer)
        for name in ("plain", "augmentation"):
            time_block(steps_timed[name], batches[:1] * warmup, device)
    seconds = alternate(steps_timed, batches, blocks, device)["wall"]
    images = steps * trainer.batch_size
    figures["images_per_s"] = images_per_second(seconds["pipeline"], images)
    checkpoint = None
    if with_plain:
        figures["plain_images_per_s"] = images_per_second(seconds["plain"], images)
        figures["ratio"] = ratio(seconds["plain"], seconds["pipeline"])
        figures["augmentation_share"] = fastest(seconds["augmentation"]) / fastest(seconds["pipeline"])
        (trainer.work_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        trainer.checkpoints.save_checkpoint("last")
        checkpoint = trainer.work_dir / "checkpoints" / "last.pt"
    del trainer, steps_timed
    release(device)
    return figures, checkpoint


def evaluation_figures(checkpoint: Path, data, config: dict, args, sizes, device: torch.device) -> dict:
    """Images/s of evaluate_arrays (bf16 autocast on CUDA) and of a plain fp32 forward, and one Fourier analysis."""
    model, info = load_checkpoint_model(checkpoint, device)
    test_images, test_labels = load_split(data.test)
    count = sizes.eval_images
    repeat = -(-count // len(test_labels))
    images = np.concatenate([test_images] * repeat)[:count]
    labels = np.concatenate([test_labels] * repeat)[:count]
    batch_size = config["analyses"]["corruptions"]["batch_size"]
    evaluate_arrays(model, images[:batch_size], labels[:batch_size], info["mean"], info["std"], batch_size, device)  # warm-up
    synchronize(device)
    started = time.perf_counter()
    evaluate_arrays(model, images, labels, info["mean"], info["std"], batch_size, device)
    eval_seconds = time.perf_counter() - started

    inputs = eval_inputs(torch.from_numpy(images).to(device), info["mean"], info["std"])
    with torch.inference_mode():
        model(inputs[:batch_size])  # warm-up
        synchronize(device)
        started = time.perf_counter()
        for start in range(0, count, batch_size):
            model(inputs[start : start + batch_size])
        synchronize(device)
    forward_seconds = time.perf_counter() - started
    del model, inputs
    release(device)

    settings = config["analyses"]["fourier"]
    started = time.perf_counter()
    rows = feature_table("fourier", checkpoint, data.test, settings, checkpoint.parent / "fourier.csv", device, args.threads)
    synchronize(device)
    fourier_seconds = time.perf_counter() - started
    release(device)
    return {
        "eval_images_per_s": count / eval_seconds,
        "eval_batch_size": batch_size,
        "forward_fp32_images_per_s": count / forward_seconds,
        "fourier": {"images": min(settings["images"], len(test_labels)), "seconds": fourier_seconds, "rows": len(rows)},
    }


def hessian_figures(checkpoint: Path, arch: str, data, config: dict, args, sizes: Sizes, device: torch.device) -> dict:
    """One batch of the pipeline's Hessian analysis of `arch`'s checkpoint with the config's settings (smaller budgets
    with --smoke): the Lanczos top-5's seconds and HVPs, and the whole batch's (top-5, spectrum ends, trace)."""
    settings = dict(config["analyses"]["hessian"], batches=1, **sizes.hessian)
    out = checkpoint.parent / "hessian.csv"
    started = time.perf_counter()
    rows = hessian_spectrum_table(checkpoint, data.train, data.subset, settings, out, device, args.threads)
    synchronize(device)
    seconds = time.perf_counter() - started
    # the objective's rows (NLL + weight decay); each solve (`<part>:<which>`) counted once, from the row it names
    top = [row for row in rows if row["which"] == "top_magnitude" and row["part"] == "objective"]
    solves = {row["solve"]: (float(row["seconds"]), int(row["hvps"])) for row in rows
              if row["solve"].split(":")[-1] == row["which"]}
    total_hvps = int(rows[0]["hvps_total"])
    return {
        "arch": arch,
        "batch_size": settings["batch_size"] or config["optimizers"]["adamw"]["batch_size"],
        "settings": {key: settings[key] for key in ("method", "k", "tol", "max_hvps", "trace_probes")},
        "top5_seconds": float(top[0]["seconds"]),
        "top5_hvps": int(top[0]["hvps"]),
        "top5_converged": str(top[0]["converged"]) in ("True", "true", "1"),
        "top5_eigenvalues": [float(row["value"]) for row in top],
        "batch_seconds": seconds,
        "batch_hvps": total_hvps,
        "seconds_per_hvp": sum(s for s, _ in solves.values()) / max(1, sum(h for _, h in solves.values())),
    }


def check_model(name: str, config: dict, data, folder: Path, args, sizes, smoke: bool) -> tuple[dict, Path]:
    """Training (fp32, bf16 + channels_last with the plain loop) and evaluation figures of one paper model."""
    kwargs = PAPER_MODELS[name] if smoke else None
    entry = {"name": name, "label": config["models"][name].get("label", name)}
    checkpoint = None
    for precision in ("fp32", "bf16_channels_last"):
        spec = recipe_spec(config, name, "adamw", PRECISIONS[precision], kwargs=kwargs)
        spec["optimizer"]["batch_size"] = sizes.batch_size or spec["optimizer"]["batch_size"]
        figures, written = training_figures(spec, data, folder / name / precision, args, sizes, with_plain=precision == "bf16_channels_last")
        entry[precision] = figures
        checkpoint = written or checkpoint
    entry.update(arch=spec["model"]["arch"], kwargs=spec["model"]["kwargs"], batch_size=spec["optimizer"]["batch_size"])
    entry["bf16_speedup"] = entry["bf16_channels_last"]["images_per_s"] / entry["fp32"]["images_per_s"]
    entry.update(evaluation_figures(checkpoint, data, config, args, sizes, resolve_device(args.device)))
    entry["compile"] = None
    return entry, checkpoint


def markdown(report: dict) -> str:
    """The report as a markdown section: one table row per model, then the Hessian and the targets."""
    lines = [
        f"### GPU check: {report['device_name']} ({report['date']}, vitwork {report['code_version']}, torch {report['torch']})",
        "",
        f"Batch {report['batch_size']}, config.yaml's `adamw` recipe with its whole `training` section; {report['timing']}."
        + (" **Smoke run: micro models on CPU; these figures say nothing about the paper's models.**" if report["smoke"] else ""),
        "",
        "| model | fp32 img/s | bf16+CL img/s | bf16+CL / fp32 | compile img/s | plain loop img/s | recipe / plain | augmentation share | peak MiB fp32 / bf16+CL | eval img/s | fp32 forward img/s | Fourier s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def number(value, digits=0):
        return "-" if value is None else f"{value:,.{digits}f}"

    for entry in report["models"].values():
        bf16, fp32, compiled = entry["bf16_channels_last"], entry["fp32"], entry["compile"]
        compile_text = "-" if compiled is None else number(compiled["images_per_s"])
        lines.append(
            f"| {entry['label']} | {number(fp32['images_per_s'])} | {number(bf16['images_per_s'])} | {number(entry['bf16_speedup'], 2)} | "
            f"{compile_text} | {number(bf16['plain_images_per_s'])} | {number(bf16['ratio'], 3)} | {100 * bf16['augmentation_share']:.1f}% | "
            f"{number(fp32['peak_memory_mib'])} / {number(bf16['peak_memory_mib'])} | {number(entry['eval_images_per_s'])} | "
            f"{number(entry['forward_fp32_images_per_s'])} | {number(entry['fourier']['seconds'], 2)} ({entry['fourier']['images']} images) |"
        )
    hessian = report["hessian"]
    lines.append("")
    if hessian is None:
        lines.append("Hessian: not measured.")
    else:
        lines.append(
            f"Hessian of one augmented batch of {hessian['batch_size']} ({hessian['arch']}, {hessian['settings']}): Lanczos top-5 "
            f"{hessian['top5_seconds']:.2f} s ({hessian['top5_hvps']} HVPs, converged {hessian['top5_converged']}); the whole batch "
            f"(top-5, ends, trace) {hessian['batch_seconds']:.2f} s, {hessian['batch_hvps']} HVPs, {1000 * hessian['seconds_per_hvp']:.1f} ms per HVP."
        )
    lines += [
        "",
        "Targets (paper scale, on a GPU): the whole-recipe step at least 0.90 of the plain loop; ResNet-50 and ViT-Ti at least",
        "as fast in bf16 + channels_last as in fp32.",
    ]
    for line in report["targets"]:
        lines.append(f"- {line}")
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(report["skipped"]) + "."]
    if report["failures"]:
        lines += ["", "**Failed:** " + "; ".join(report["failures"]) + "."]
    lines.append(f"\nTotal {report['seconds_total']:.0f} s.")
    return "\n".join(lines) + "\n"


def targets(report: dict) -> list[str]:
    out = []
    for entry in report["models"].values():
        value = entry["bf16_channels_last"]["ratio"]
        out.append(f"{entry['label']}: recipe / plain {value:.3f} ({'met' if value >= 0.90 else 'NOT met'})")
    for name in ("resnet50", "vit_ti"):
        if name in report["models"]:
            entry = report["models"][name]
            speedup = entry["bf16_speedup"]
            out.append(f"{entry['label']}: bf16+CL / fp32 {speedup:.2f} ({'met' if speedup >= 1.0 else 'NOT met'})")
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--smoke", action="store_true", help="micro models of every family, micro sizes: seconds on CPU")
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--models", nargs="+", default=list(PAPER_MODELS), choices=list(PAPER_MODELS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--budget-s", type=float, default=400, help="torch.compile runs only while this budget lasts")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = Budget(args.budget_s)
    device = resolve_device(args.device)
    if device.type != "cuda" and not args.smoke:
        print(f"warning: no GPU ({device}); the figures are this machine's, not a GPU's", file=sys.stderr)
    sizes = SIZES["smoke" if args.smoke else "full"]
    config = load_config_file(args.config)
    report = {
        "smoke": args.smoke,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {args.threads} threads)",
        "date": datetime.date.today().isoformat(),
        "code_version": code_version(),
        "torch": torch.__version__,
        "batch_size": sizes.batch_size or config["optimizers"]["adamw"]["batch_size"],
        "timing": f"{sizes.warmup} warm-up steps, then {sizes.blocks} alternating blocks of {sizes.steps} steps",
        "models": {},
        "hessian": None,
        "skipped": [],
        "failures": [],
    }
    out = Path(args.out)

    def attempt(label: str, compute):
        """compute(); a failure ends a smoke run (so the test sees it) but only its own section of a GPU run."""
        try:
            return compute()
        except Exception as error:
            if args.smoke:
                raise
            report["failures"].append(f"{label}: {type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}")
            release(device)
            return None
        finally:
            print(f"{label}: {budget.elapsed():.0f} s", flush=True)
            publish(report, out, budget)  # a run cut short still leaves every finished section

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = prepare_data(folder / "data", train_per_class=sizes.train_per_class, test_per_class=sizes.test_per_class)
        checkpoints = {}
        for name in args.models:
            result = attempt(name, lambda: check_model(name, config, data, folder, args, sizes, args.smoke))
            if result is not None:
                report["models"][name], checkpoints[name] = result
        hessian_name = HESSIAN_MODEL if HESSIAN_MODEL in checkpoints else next(iter(checkpoints), None)
        if hessian_name is not None:
            arch = report["models"][hessian_name]["arch"]
            report["hessian"] = attempt("hessian", lambda: hessian_figures(checkpoints[hessian_name], arch, data, config, args, sizes, device))
        for name in COMPILE_MODELS:
            if name not in report["models"]:
                continue
            if args.smoke or args.no_compile or budget.left() < COMPILE_RESERVE_S:
                reason = "--smoke" if args.smoke else "--no-compile" if args.no_compile else "time budget"
                report["skipped"].append(f"torch.compile of {name} ({reason})")
                continue
            spec = recipe_spec(config, name, "adamw", PRECISIONS["compile"])
            compiled = attempt(f"compile {name}", lambda: training_figures(spec, data, folder / name / "compile", args, sizes, with_plain=False))
            if compiled is not None:
                report["models"][name]["compile"] = compiled[0]
    text = publish(report, out, budget)
    print(text)
    return report


def publish(report: dict, out: Path, budget: Budget) -> str:
    """Write gpu_check.json and gpu_check.md (atomically) with what is measured so far; the markdown."""
    report["targets"] = targets(report)
    report["seconds_total"] = budget.elapsed()
    write_json(out / "gpu_check.json", report)
    text = markdown(report)
    with atomic_path(out / "gpu_check.md") as tmp:
        tmp.write_text(text)
    return text


if __name__ == "__main__":
    main()
