"""The workflow on a real one-node Slurm cluster (tests/cluster/start_cluster.sh) through profiles/slurm-local.

Two things are proved with evidence that does not come from squeue or sacct: a figure's whole DAG runs as
Slurm batch jobs (slurmd's own log launched each job id Snakemake reports, and each job's Slurm log holds
the jobstep Snakemake that ran the rule), and a training job cancelled with SIGTERM mid-run is resubmitted
by Snakemake and resumes where it stopped. Skipped unless the local cluster answers; with
VITWORK_REQUIRE_CLUSTER=1 (CI, after a successful start) a missing cluster fails instead.
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from snakemake.utils import update_config

from vitwork.config import study_run_specs, validate_config
from vitwork.train import PREEMPTED_EXIT_CODE

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("VITWORK_SLURM_DIR", "/tmp/vitwork-slurm"))
PARTITION = os.environ.get("VITWORK_SLURM_PARTITION", "local")
PROFILE = REPO / "profiles" / "slurm-local"
DEMO = REPO / "presets" / "demo.yaml"
PREEMPT = REPO / "tests" / "cluster" / "preempt.yaml"
RESULTS = Path("results") / "demo"
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing"}

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def slurm_env() -> dict:
    """The environment for Slurm commands and Snakemake: the test cluster's config, whatever the caller had."""
    return {**os.environ, "SLURM_CONF": str(STATE / "slurm.conf"), "VITWORK_SLURM_PARTITION": PARTITION}


def cluster_problem() -> str | None:
    """Why the local test cluster cannot take jobs now, or None when its partition's node is up."""
    if shutil.which("sinfo") is None:
        return "sinfo is not on PATH (no Slurm client installed)"
    if not (STATE / "pids").exists():  # start_cluster.sh writes it, stop_cluster.sh removes it
        return f"no local test cluster running in {STATE} (start one: bash tests/cluster/start_cluster.sh)"
    try:
        answer = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%T"], env=slurm_env(), capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    states = answer.stdout.split()
    if answer.returncode != 0 or not states:
        return f"sinfo -p {PARTITION} failed: {(answer.stderr or answer.stdout).strip()[:300]}"
    if not set(states) & USABLE_NODE_STATES:
        return f"partition {PARTITION} has no usable node (states: {' '.join(states)})"
    return None


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    """Skip (or, with VITWORK_REQUIRE_CLUSTER=1, fail) every test here unless the local cluster answers."""
    problem = cluster_problem()
    if problem and os.environ.get("VITWORK_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"VITWORK_REQUIRE_CLUSTER=1 but the local Slurm cluster is not usable: {problem}")
    if problem:
        pytest.skip(f"local Slurm cluster not usable: {problem}")


def start_snakemake(workdir: Path, *args) -> tuple[subprocess.Popen, Path]:
    """Start Snakemake with the local Slurm profile in workdir; its output goes to workdir/../snakemake.out."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir.parent / "snakemake.out"
    command = [sys.executable, "-m", "snakemake", "--profile", str(PROFILE), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *map(str, args)]
    with open(out, "w") as handle:
        process = subprocess.Popen(command, cwd=REPO, env=slurm_env(), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    return process, out


def submitted_jobs(out: Path) -> list[tuple[str, str, Path]]:
    """(Slurm job id, rule, Slurm log) of every job Snakemake has submitted so far, in submission order."""
    jobs = []
    for job_id, log in SUBMITTED.findall(out.read_text()):
        rule = re.search(r"/slurm_logs/rule_([^/]+)/", log)[1]
        jobs.append((job_id, rule, Path(log)))
    return jobs


def stop_snakemake(process: subprocess.Popen, out: Path) -> None:
    """Stop a Snakemake that overran: SIGTERM (it cancels its jobs), SIGKILL after 60 s, then scancel what it submitted."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    job_ids = [job_id for job_id, _, _ in submitted_jobs(out)]
    if job_ids:
        subprocess.run(["scancel", *job_ids], env=slurm_env(), capture_output=True, timeout=30)


def finish_snakemake(process: subprocess.Popen, out: Path, timeout: float) -> str:
    """Wait (bounded) for Snakemake to end; fail with its last output if it overran or failed; return its output."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_snakemake(process, out)
        pytest.fail(f"Snakemake on Slurm took over {timeout:.0f} s:\n{out.read_text()[-4000:]}")
    text = out.read_text()
    assert process.returncode == 0, text[-6000:]
    return text


def launched_batch_jobs() -> set[str]:
    """Job ids slurmd itself says it launched as batch jobs (its log, independent of squeue/sacct)."""
    return set(re.findall(r"Launching batch job (\d+)", (STATE / "log" / "slurmd.log").read_text()))


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV file as dicts."""
    with open(path) as handle:
        return list(csv.DictReader(handle))


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_data_size_figure_runs_every_job_through_slurm(tmp_path):
    """figure_data_size of the demo: data, 3 subsets, 6 training runs and the figure, each one Slurm batch job."""
    workdir = tmp_path / "work"
    started = time.monotonic()
    process, out = start_snakemake(workdir, "figure_data_size", "--configfile", DEMO)
    text = finish_snakemake(process, out, timeout=900)
    print(f"figure_data_size on Slurm: {time.monotonic() - started:.0f} s")

    jobs = submitted_jobs(out)
    assert Counter(rule for _, rule, _ in jobs) == {"prepare_data": 1, "subsample": 3, "train": 6, "figure_data_size": 1}
    assert len({job_id for job_id, _, _ in jobs}) == 11 and "11 of 11 steps (100%) done" in text
    launched = launched_batch_jobs()
    trained = set()
    for job_id, rule, log in jobs:
        assert job_id in launched, f"slurmd never launched job {job_id} ({rule})"
        assert log.name == f"{job_id}.log" and log.is_relative_to(workdir / ".snakemake" / "slurm_logs")
        job_output = log.read_text()  # written by slurmstepd: the batch job ran the jobstep Snakemake, which ran the rule
        assert "--executor slurm-jobstep" in job_output and f"Finished jobid: 0 (Rule: {rule})" in job_output, job_output[-3000:]
        if rule == "train":
            trained.add(re.search(r"wildcards: run=(\S+)", job_output)[1])

    rows = read_csv(workdir / RESULTS / "figures" / "data_size.csv")
    assert {(row["model"], float(row["fraction"])) for row in rows} == {(m, f) for m in ("resnet", "vit") for f in (1.0, 0.5, 0.25)}
    assert trained == {row["run_id"] for row in rows}
    for row in rows:
        run = json.loads((workdir / RESULTS / "runs" / row["run_id"] / "run.json").read_text())
        assert run["status"] == row["status"] == "finished"


def wait_for_first_epoch(process: subprocess.Popen, out: Path, metrics: Path, timeout: float) -> tuple[str, int]:
    """Wait until the training job has written an epoch to work/metrics.jsonl; return its Slurm job id and the epochs seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Snakemake ended before the training job wrote an epoch:\n{out.read_text()[-4000:]}")
        train_jobs = [job_id for job_id, rule, _ in submitted_jobs(out) if rule == "train"]
        epochs = len(read_jsonl(metrics)) if metrics.exists() else 0
        if train_jobs and epochs:
            return train_jobs[0], epochs
        time.sleep(0.5)
    stop_snakemake(process, out)
    pytest.fail(f"no training epoch within {timeout:.0f} s:\n{out.read_text()[-4000:]}")


def preempt_spec() -> dict:
    """The run the pre-emption test trains: ResNet on all data, from the demo preset with preempt.yaml merged over it as Snakemake merges."""
    config = yaml.safe_load(DEMO.read_text())
    update_config(config, yaml.safe_load(PREEMPT.read_text()))
    specs = study_run_specs(validate_config(config, str(PREEMPT)), "data_size")
    return next(spec for spec in specs if spec["model"]["name"] == "resnet" and spec["fraction"] == 1.0)


def test_preempted_training_job_resumes_on_retry(tmp_path):
    """scancel --signal=TERM mid-run: the job saves its position and fails, Snakemake resubmits it, the retry resumes."""
    spec = preempt_spec()
    run_id, total = spec["run_id"], spec["optimizer"]["warmup_epochs"] + spec["optimizer"]["epochs"]
    workdir = tmp_path / "work"
    run = workdir / RESULTS / "runs" / run_id
    started = time.monotonic()
    process, out = start_snakemake(workdir, RESULTS / "runs" / run_id / "run.json", "--configfile", DEMO, PREEMPT)  # targets first: --configfile takes several
    first_job, epochs_seen = wait_for_first_epoch(process, out, run / "work" / "metrics.jsonl", timeout=480)
    cancel = subprocess.run(["scancel", "--signal=TERM", first_job], env=slurm_env(), capture_output=True, text=True, timeout=30)
    assert cancel.returncode == 0, cancel.stderr
    assert not (run / "run.json").exists()  # still training when the signal was sent
    text = finish_snakemake(process, out, timeout=600)
    print(f"pre-emption run on Slurm: {time.monotonic() - started:.0f} s")

    train_jobs = [(job_id, log) for job_id, rule, log in submitted_jobs(out) if rule == "train"]
    assert [job_id for job_id, _ in train_jobs][:1] == [first_job] and len(train_jobs) == 2, text[-4000:]
    retry_job = train_jobs[1][0]
    assert int(retry_job) > int(first_job) and {first_job, retry_job} <= launched_batch_jobs()
    # attempt 1: the training script saved its position and exited with its pre-emption code (not killed outright)
    assert f"returned non-zero exit status {PREEMPTED_EXIT_CODE}" in train_jobs[0][1].read_text()
    assert "--attempt 2" in train_jobs[1][1].read_text()
    log = (workdir / RESULTS / "logs" / "train" / f"{run_id}.log").read_text()
    resumed = re.search(rf"resuming {re.escape(run_id)} at epoch (\d+) step (\d+)", log)
    assert resumed, log[-3000:]

    summary = json.loads((run / "run.json").read_text())
    assert total == 31 and summary["spec"]["optimizer"] == spec["optimizer"]  # preempt.yaml took effect
    assert epochs_seen <= int(resumed[1]) < total
    assert summary["status"] == "finished" and summary["epochs_completed"] == total
    assert [record["epoch"] for record in read_jsonl(run / "metrics.jsonl")] == list(range(1, total + 1))
    print(f"pre-empted job {first_job} after {epochs_seen} epoch(s); retry job {retry_job}: {resumed[0]}")
