"""Atomic file output, JSON lines and provenance helpers shared by every stage."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import vitwork


class InputFileError(ValueError):
    """An input file that cannot be used, described in one line: which file, what is wrong, what was expected.

    A job that raises it ends with that line in its log (vitwork.workflow.job_log), not with a traceback.
    """


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    An interrupted job therefore never leaves a complete-looking but truncated file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf: store non-finite floats as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically, with non-finite floats as null."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite_or_none(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read one JSON document."""
    return json.loads(Path(path).read_text())


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record to a JSON-lines file and flush it to disk."""
    with open(path, "a") as handle:
        handle.write(json.dumps(_finite_or_none(record)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read every record of a JSON-lines file (blank lines ignored)."""
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def save_torch_atomic(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through a temporary file, so a kill mid-write keeps the previous checkpoint."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def code_version() -> str:
    """The git commit of the vitwork checkout (with '-dirty' when modified), else the package version."""
    root = Path(vitwork.__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        return f"{vitwork.__version__}+{commit}"
    except (OSError, subprocess.SubprocessError):
        return vitwork.__version__
