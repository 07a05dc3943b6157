"""Shared test set-up: one CPU thread per test process, the repository root, the real CIFAR-100 copy, and a job
server for jobs started by tests."""

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# the offline CIFAR-100 ImageFolder tree that sits beside the checkout in CI and development machines
REAL_CIFAR100 = REPO.parent / "shared" / "data" / "cifar100"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def real_cifar100() -> Path:
    if not (REAL_CIFAR100 / "train").is_dir():
        pytest.skip(f"real CIFAR-100 not found at {REAL_CIFAR100} (only present beside the checkout in CI)")
    return REAL_CIFAR100


@pytest.fixture(scope="session")
def job_server(tmp_path_factory):
    """A job server started as the Snakefile starts one (1 thread), its log, and `env(...)`: a job's environment
    as Snakemake makes it for that server (thread variables set to the job's threads)."""
    from vitwork import job_server as server

    folder = tmp_path_factory.mktemp("job_server")
    address, log = str(folder / "jobs.sock"), folder / "job_server.log"
    process = server.start(address, str(log), threads=1)
    mine = {name: os.environ.pop(name) for name in server.SERVER_VARIABLES}
    deadline = time.monotonic() + 300  # its imports, on a loaded machine: not part of any test's own timeout
    while not Path(address).exists():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)

    def env(threads: int = 1, **extra) -> dict:
        variables = {name: str(threads) for name in server.THREAD_VARIABLES}
        return {**os.environ, "PYTHONPATH": str(REPO / "src"), **mine, **variables, **extra}

    yield SimpleNamespace(process=process, address=address, log=log, env=env)
    server.stop(process)
    assert process.returncode == 0 and not Path(address).exists(), log.read_text()
