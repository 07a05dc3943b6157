"""Glue used by the thin scripts in workflow/scripts: the job's library check, GPU pinning, log and start-up time."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import vitwork
from vitwork.io import InputFileError
from vitwork.job_server import job_clock

# where jobs of one user on one machine take their GPUs (one lock file per device; the kernel frees a lock
# when its job ends, killed or not)
GPU_LOCK_DIR = Path(tempfile.gettempdir()) / f"vitwork-gpu-locks-{os.getuid()}"
GPU_WAIT_S = 2.0


def start_up_line(start_up: float | None, start_up_cpu: float, total: float | None, total_cpu: float) -> str:
    """The last line of a finished job's log: its time and CPU time, and how much of each went before its first
    computation (interpreter, Snakemake's preamble, imports). bench/demo_time.py reads it: Snakemake's benchmark
    files sample CPU time every 0.5 s for 15 s, then every 30 s, so they miss up to 30 s of a long job's CPU."""
    wall = "unknown" if start_up is None or total is None else f"{total:.2f} s"
    before = "unknown" if start_up is None else f"{start_up:.2f} s"
    return f"vitwork: job {wall} ({total_cpu:.2f} s CPU), start-up {before} ({start_up_cpu:.2f} s CPU)"


def put_first_on_pythonpath(folder: str) -> None:
    """Put `folder` first on PYTHONPATH (once) for every process this one starts: how the Snakefile makes its
    jobs import the workflow's own src/vitwork rather than an installed or other checkout's copy."""
    entries = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry and entry != folder]
    os.environ["PYTHONPATH"] = os.pathsep.join([folder, *entries])


def workflow_library(snakemake) -> Path:
    """The vitwork package of the workflow a job belongs to: <workflow>/src/vitwork (its scripts: <workflow>/workflow/scripts)."""
    return Path(snakemake.scriptdir).resolve().parents[1] / "src" / "vitwork"


def library_mismatch(snakemake) -> str | None:
    """One line when this job imported another copy of vitwork than its workflow's own, else None."""
    found = Path(vitwork.__file__).resolve().parent
    expected = workflow_library(snakemake)
    if found == expected:
        return None
    return (
        f"vitwork: this job imported vitwork from {found}, but it belongs to the workflow whose library is {expected} "
        "(another checkout comes first on the path: start Snakemake from this checkout's Snakefile, and check "
        "PYTHONPATH and editable installs)"
    )


@contextlib.contextmanager
def claim_gpu(devices: list[str], lock_dir: Path | None = None) -> Iterator[str]:
    """Hold one device of `devices` for the block (an exclusive lock per device, waited for when all are held)."""
    lock_dir = Path(lock_dir or GPU_LOCK_DIR)
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for device in devices:
            handle = open(lock_dir / f"gpu{device}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield device
            finally:
                handle.close()  # releases the lock
            return
        time.sleep(GPU_WAIT_S)


def _gpu_pool(snakemake) -> list[str]:
    """Devices a GPU job may take (resource `gpu_devices`, set by profiles/local-gpus); empty when not pinning."""
    resources = snakemake.resources
    pool = str(getattr(resources, "gpu_devices", "") or "")
    wanted = int(getattr(resources, "gpu", 0) or 0)
    return [d.strip() for d in pool.split(",") if d.strip()] if pool and wanted >= 1 else []


@contextlib.contextmanager
def job_log(snakemake):
    """The frame of every job script.

    Stops at once (one line) when the job imported another checkout's vitwork; pins a GPU job to one free
    device of its `gpu_devices` resource through CUDA_VISIBLE_DEVICES; sends stdout, stderr (progress bars
    included) and logging to the job's `log:` file. An InputFileError ends the job with its one line, a
    SystemExit (e.g. pre-emption's exit code) passes unchanged, anything else leaves its traceback in the log.
    A job that succeeds ends its log with `start_up_line`: entering this block is its first computation.
    """
    age, cpu = job_clock()  # the job's process's, also when a job server's child runs it
    # the imports' objects (torch, sympy, ...) live until the job ends: frozen, no garbage collection scans them,
    # neither during the job nor at the interpreter's exit (which otherwise costs a torch job ~1 CPU-s, measured);
    # a script that disabled collection for its imports gets it back here
    gc.freeze()
    gc.enable()
    mismatch = library_mismatch(snakemake)
    pool = _gpu_pool(snakemake)
    with contextlib.ExitStack() as stack:
        handle = stack.enter_context(open(snakemake.log[0], "w", buffering=1)) if snakemake.log else None
        if mismatch:
            _report(mismatch, handle)
            raise SystemExit(1)
        old = sys.stdout, sys.stderr
        if handle is not None:
            sys.stdout = sys.stderr = handle
            logging.basicConfig(stream=handle, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
        try:
            if pool:
                device = stack.enter_context(claim_gpu(pool))
                os.environ["CUDA_VISIBLE_DEVICES"] = device  # read when CUDA starts, after this point
                print(f"pinned to GPU {device} (of {','.join(pool)})", flush=True)
            yield
            print(start_up_line(age, cpu, *job_clock()), flush=True)
        except SystemExit:
            raise
        except InputFileError as error:
            sys.stdout, sys.stderr = old
            _report(f"vitwork: {error}", handle)
            raise SystemExit(1) from None
        except BaseException:
            import traceback

            traceback.print_exc(file=handle or sys.stderr)
            raise
        finally:
            sys.stdout, sys.stderr = old


def _report(line: str, handle) -> None:
    """A job's one-line error: in its log, and on stderr where Snakemake shows it."""
    if handle is not None:
        print(line, file=handle, flush=True)
    print(line, file=sys.stderr, flush=True)
