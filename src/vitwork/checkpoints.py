"""Checkpoints of training runs: what they hold, reading them with one-line errors, and publishing a finished run.

A checkpoint is a `torch.save`d dict: `model` (the plain module's state_dict: no `torch.compile` prefixes,
contiguous tensors, so any analysis loads it into a plain model), `run` (the run spec), `num_classes`, `mean`,
`std`, `status`, and for resuming `optimizer`, `scheduler`, `rng`, `position`, `metrics` (the epochs so far).

Publishing: a run trains in `<run>/work/`; when it ends, its checkpoints and metrics are published into the run
folder by link (or copy) and rename, and `run.json`, the completion marker Snakemake sees, is written last. Until
then `work/` is left intact, so a job killed while publishing is redone from `work/resume.pt` by the next attempt.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch

from vitwork.io import write_json
from vitwork.models import create_model

log = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("model", "run", "num_classes")
RESUME_KEYS = (*CHECKPOINT_KEYS, "optimizer", "scheduler", "rng", "position", "metrics", "spec_hash", "status")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, described in one line naming the file."""


def checkpoint_names(spec: dict) -> list[str]:
    """Checkpoints every run keeps: init, end of warm-up, the configured epochs, last."""
    total = spec["optimizer"]["warmup_epochs"] + spec["optimizer"]["epochs"]
    extra = [f"epoch{e}" for e in sorted(set(spec["training"]["checkpoint_epochs"])) if e <= total]
    return ["init", "warmup", *extra, "last"]


def checkpoints_reached(spec: dict, epochs_completed: int) -> list[str]:
    """The checkpoints a run has written once `epochs_completed` epochs are done (init and warm-up at epoch 0 without warm-up)."""
    warmup = spec["optimizer"]["warmup_epochs"]
    names = ["init", "warmup"] if epochs_completed >= warmup else ["init"]
    return names + [n for n in checkpoint_names(spec)[2:-1] if int(n[len("epoch"):]) <= epochs_completed]


def build_model(spec: dict, num_classes: int) -> torch.nn.Module:
    """The run's model, with its stochastic depth."""
    model = spec["model"]
    return create_model(model["arch"], num_classes, drop_path_rate=spec["training"]["drop_path_rate"], **model["kwargs"])


def plain_state_dict(model: torch.nn.Module) -> dict:
    """The state_dict of the plain module under any `torch.compile` wrapper, every tensor contiguous (not channels_last)."""
    model = getattr(model, "_orig_mod", model)
    return {name: value.contiguous() for name, value in model.state_dict().items()}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def read_checkpoint(path, device="cpu", keys=CHECKPOINT_KEYS) -> dict:
    """The checkpoint dict at `path`; CheckpointError naming the file and what was expected when it is unusable."""
    path = Path(path)
    expected = f"expected a vitwork checkpoint (a torch.save'd dict with {', '.join(keys)}) written by training"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; {expected}")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # truncated zip, foreign pickle, text file: torch raises many types
        raise CheckpointError(f"{path}: unreadable ({_first_line(exc)}); the file is truncated or not a checkpoint; {expected}") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a dict; {expected}")
    missing = [key for key in keys if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: not a vitwork checkpoint (no {', '.join(missing)}); {expected}")
    return checkpoint


def load_checkpoint_model(path, device="cpu"):
    """(model in eval mode with the checkpoint's weights, checkpoint dict without the optimizer state)."""
    checkpoint = read_checkpoint(path, device)
    model = build_model(checkpoint["run"], checkpoint["num_classes"]).to(device)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the run's model {checkpoint['run']['model']['arch']} ({_first_line(exc)})") from None
    model.eval()
    return model, {k: v for k, v in checkpoint.items() if k not in ("model", "optimizer", "scheduler")}


def set_aside(path: Path, folder: Path, reason: str) -> None:
    """Move an unusable file into `folder` (kept for inspection) and log a warning naming both places."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    os.replace(path, target)
    log.warning("%s; moved aside to %s", reason, target)


def resume_candidates(work_dir: Path, spec: dict) -> list[Path]:
    """Where a run in `work_dir` may resume from: resume.pt, then its kept checkpoints from the latest epoch to init."""
    epoch_of = {"init": 0, "warmup": spec["optimizer"]["warmup_epochs"]} | {n: int(n[len("epoch"):]) for n in checkpoint_names(spec)[2:-1]}
    kept = sorted(epoch_of, key=lambda name: epoch_of[name], reverse=True)
    return [work_dir / "resume.pt", *(work_dir / "checkpoints" / f"{name}.pt" for name in kept)]


def latest_resumable_state(work_dir, spec: dict, spec_hash: str, unreadable_dir) -> dict | None:
    """The latest state in `work_dir` to resume the run `spec` from, or None to start clean.

    A candidate (`resume_candidates`) that cannot be read is moved into `unreadable_dir` with a warning; one
    whose earlier checkpoints are missing is skipped (resuming from it would publish an incomplete run). A state
    of another spec means the whole of `work_dir` is stale.
    """
    work_dir = Path(work_dir)
    for path in resume_candidates(work_dir, spec):
        if not path.exists():
            continue
        try:
            state = read_checkpoint(path, "cpu", RESUME_KEYS)
        except CheckpointError as error:
            set_aside(path, Path(unreadable_dir), str(error))
            continue
        if state["spec_hash"] != spec_hash:
            print(f"discarding resume state of another spec in {work_dir}", flush=True)
            return None
        if state["status"] not in ("running", "preempted"):
            continue  # a diverged run's stand-in checkpoint
        missing = [n for n in checkpoints_reached(spec, state["position"]["epoch"]) if not (work_dir / "checkpoints" / f"{n}.pt").is_file()]
        if missing:
            log.warning("%s: not resumable, checkpoints %s of its past are missing", path, ", ".join(missing))
            continue
        if path.name != "resume.pt":
            log.warning("%s: resuming from this last good checkpoint", path)
        return state
    return None


def _publish_file(source: Path, target: Path) -> None:
    """Make `target` a complete copy of `source` in one rename: a hard link, or a copy where links are not allowed."""
    if target.exists() and os.path.samefile(source, target):
        return  # published by an earlier attempt
    partial = target.with_name(f".{target.name}.publishing")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    os.replace(partial, target)


def run_summary(spec: dict, status: str, metrics: list[dict], eval_time: float, eval_sample: dict | None, code_version: str, device) -> dict:
    """run.json of a run that ended with `status` after the epochs `metrics` (records as in metrics.jsonl)."""
    final = next((m for m in reversed(metrics) if not m.get("diverged") and m["test_acc"] is not None), None)
    wall = metrics[-1]["wall_time_s"] if metrics else 0.0  # training time, without evaluation and checkpoints
    seen = sum(m["images_per_s"] * m["epoch_time_s"] for m in metrics if m.get("images_per_s"))
    return {
        "run_id": spec["run_id"],
        "spec": spec,
        "status": status,
        "epochs_completed": len([m for m in metrics if not m.get("diverged")]),
        "final": {k: final[k] for k in ("test_acc", "test_nll", "test_err", "train_nll", "train_acc")} if final else None,
        "wall_time_s": wall,
        "images_per_s": seen / wall if wall > 0 else None,
        "eval_time_s": eval_time,  # per-epoch and final evaluations
        "eval_share": eval_time / (wall + eval_time) if wall + eval_time > 0 else None,
        "eval_sample": eval_sample,  # the per-epoch evaluation sample, or None for the whole test split
        "code_version": code_version,
        "seed": spec["seed"],
        "device": str(device),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),  # which cluster job produced the run, if any
    }


def publish_run(work_dir, run_dir, names: list[str], summary: dict) -> None:
    """Publish `work_dir`'s checkpoints `names` and metrics.jsonl into `run_dir`, then run.json last; remove work_dir.

    Every file appears under its final name complete or not at all, and `work_dir` is untouched until run.json
    is written: a kill at any point leaves either a published run or everything the next attempt needs.
    """
    work_dir, run_dir = Path(work_dir), Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    for name in names:
        _publish_file(work_dir / "checkpoints" / f"{name}.pt", run_dir / "checkpoints" / f"{name}.pt")
    _publish_file(work_dir / "metrics.jsonl", run_dir / "metrics.jsonl")
    write_json(run_dir / "run.json", summary)
    # out of the way in one rename, then deleted: a kill while deleting never leaves a half-deleted work/ to resume
    trash = run_dir / ".work.published"
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(work_dir, trash)
    shutil.rmtree(trash, ignore_errors=True)
