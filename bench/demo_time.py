"""Benchmark (not a test): the demo study end to end, where its time goes, and how much of it is start-up.

Runs `snakemake --cores 2 --configfile presets/demo.yaml` from this checkout in a fresh temporary working
directory (the README's first command) and prints:

- the wall time and the job count (Snakemake's: the target rule `all` included);
- the CPU time of every process it started, of the jobs, and of Snakemake's own process;
- per rule (figure rules together as `figure_*`): jobs, the sums of the job wall times (`s` of Snakemake's
  benchmark files) and CPU times, and the start-up share: the time each job spent before its first computation
  (interpreter, Snakemake's preamble, imports) as a fraction of the job's time, in wall and in CPU seconds. The
  job's CPU time and start-up come from the last line of its log (`vitwork.workflow.start_up_line`); a job
  without it counts its benchmark file's `cpu_time`, which misses up to 30 s of a long job's CPU;
- how many jobs ran at once over the run (from the timestamps of Snakemake's log, 1 s resolution): the time
  with 0, 1, 2, ... jobs running, so an idle core shows.

On a shared machine compare CPU sums (steadier than wall times), and note the load (`uptime`, printed before
and after). Target (issue 17): at most 360 s wall on an idle 2-core machine.

    python bench/demo_time.py [--cores 2] [--configfile presets/demo.yaml] [--json out.json] [--keep]
                              [--existing WORKDIR] [-- extra snakemake arguments, e.g. --scheduler greedy]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# a job block of Snakemake's log: its start time, rule, log file, job id and benchmark file
JOB_START = re.compile(r"^\[(?P<time>[^\]]+)\]\n(?:local)?rule (?P<rule>\S+):\n(?P<body>(?:    .*\n)+)", re.M)
JOB_END = re.compile(r"^\[(?P<time>[^\]]+)\]\nFinished jobid: (?P<jobid>\d+)", re.M)
# the last line of a finished job's log (vitwork.workflow.start_up_line)
START_UP = re.compile(r"^vitwork: job ([0-9.]+) s \(([0-9.]+) s CPU\), start-up ([0-9.]+) s \(([0-9.]+) s CPU\)", re.M)


def load() -> str:
    """The machine's load averages (1, 5, 15 min)."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def rule_group(rule: str) -> str:
    """Figure rules are one row (`figure_*`); every other rule its own."""
    return "figure_*" if rule.startswith("figure_") else rule


def _field(body: str, name: str) -> str | None:
    match = re.search(rf"^    {name}: (.*)$", body, re.M)
    return match.group(1).strip() if match else None


def _timestamp(text: str) -> float:
    return datetime.strptime(text, "%a %b %d %H:%M:%S %Y").timestamp()


def jobs_of(workdir: Path) -> list[dict]:
    """Every job of the largest Snakemake log of `workdir` (the whole run, not a later rerun): rule, log,
    benchmark numbers, start-up, start/end."""
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda path: path.stat().st_size)
    if not logs:
        sys.exit(f"{workdir}: no Snakemake log under .snakemake/log")
    text = logs[-1].read_text()
    ends = {int(m["jobid"]): _timestamp(m["time"]) for m in JOB_END.finditer(text)}
    jobs = []
    for match in JOB_START.finditer(text):
        body = match["body"]
        jobid = int(_field(body, "jobid"))
        job = {"rule": match["rule"], "jobid": jobid, "start": _timestamp(match["time"]), "end": ends.get(jobid)}
        benchmark, log = _field(body, "benchmark"), _field(body, "log")
        if benchmark and (workdir / benchmark).exists():
            with open(workdir / benchmark) as handle:
                row = next(csv.DictReader(handle, delimiter="\t"))
            job["s"], job["cpu_time"] = float(row["s"]), float(row["cpu_time"])
        if log and (workdir / log.split(",")[0]).exists():
            found = START_UP.findall((workdir / log.split(",")[0]).read_text())
            if found:
                job["job_s"], job["job_cpu_s"], job["start_up_s"], job["start_up_cpu_s"] = map(float, found[-1])
        jobs.append(job)
    return jobs


def per_rule(jobs: list[dict]) -> dict[str, dict]:
    """Sums per rule group: jobs; wall s and CPU s (the job's own where its log says, else its benchmark file's);
    start-up wall and CPU s with the job wall and CPU s of the jobs that logged it (for the shares)."""
    table: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    for job in jobs:
        row = table[rule_group(job["rule"])]
        row["jobs"] += 1
        row["s"] += job.get("s", 0.0)
        row["cpu_s"] += job.get("job_cpu_s", job.get("cpu_time", 0.0))
        row["benchmark_cpu_time"] += job.get("cpu_time", 0.0)
        if "start_up_s" in job:
            for key in ("start_up_s", "start_up_cpu_s", "job_s", "job_cpu_s"):
                row[key] += job[key]
    return {rule: dict(row) for rule, row in sorted(table.items(), key=lambda item: -item[1]["cpu_s"])}


def concurrency(jobs: list[dict]) -> dict[int, float]:
    """Seconds during which n jobs ran at once, from the jobs' start and end times (1 s resolution)."""
    # at one timestamp, starts before ends: a job ending in the second another starts never counts as -1 running
    events = sorted([(job["start"], -1) for job in jobs if job["end"]] + [(job["end"], 1) for job in jobs if job["end"]])
    if not events:
        return {}
    seconds: dict[int, float] = defaultdict(float)
    running, previous = 0, events[0][0]
    for moment, change in events:
        seconds[running] += moment - previous
        running, previous = running - change, moment
    return {n: s for n, s in sorted(seconds.items()) if s > 0 or n == 0}


def report(jobs: list[dict], run: dict | None = None) -> dict:
    """Print the tables; return them (and `run`'s numbers) for --json."""
    counted = [job for job in jobs if job["rule"] != "all"]
    rules = per_rule(counted)
    keys = ("s", "cpu_s", "benchmark_cpu_time", "start_up_s", "start_up_cpu_s", "job_s", "job_cpu_s")
    total = {key: sum(row.get(key, 0.0) for row in rules.values()) for key in keys}
    if run:
        own = "unknown" if run.get("snakemake_cpu_s") is None else f"{run['snakemake_cpu_s']:.1f} s"
        print(f"wall time: {run['wall_s']:.1f} s   jobs: {len(jobs)}   load before/after: {run['load_before']} / {run['load_after']}")
        print(f"CPU of every process: {run['cpu_s']:.1f} s = jobs {total['cpu_s']:.1f} s (to their logs' last line) "
              f"+ Snakemake's own {own} + the rest (interpreters' exits, shells)")
    else:
        print(f"jobs: {len(jobs)}")
    print(f"{'rule':<28} {'jobs':>5} {'sum s':>8} {'sum CPU s':>9} {'start-up s':>10} {'share':>6} {'start-up CPU s':>14} {'share':>6}")
    for rule, row in [*rules.items(), ("total", {**total, "jobs": len(counted)})]:
        share = row.get("start_up_s", 0.0) / row["job_s"] if row.get("job_s") else float("nan")
        cpu_share = row.get("start_up_cpu_s", 0.0) / row["job_cpu_s"] if row.get("job_cpu_s") else float("nan")
        print(f"{rule:<28} {int(row['jobs']):>5} {row['s']:>8.1f} {row['cpu_s']:>9.1f} {row.get('start_up_s', 0.0):>10.1f} "
              f"{share:>6.0%} {row.get('start_up_cpu_s', 0.0):>14.1f} {cpu_share:>6.0%}")
    running = concurrency(counted)
    span = sum(running.values())
    if span:
        print("jobs running at once: " + ", ".join(f"{n}: {s:.0f} s ({s / span:.0%})" for n, s in running.items())
              + f"   (mean {sum(n * s for n, s in running.items()) / span:.2f})")
    return {**(run or {}), "jobs": len(jobs), "per_rule": rules, "total": total, "seconds_with_n_jobs_running": running}


def own_cpu_until_exit(process: subprocess.Popen) -> float | None:
    """CPU seconds of the process itself (not its jobs), last sampled within a second of its exit."""
    try:
        import psutil  # Snakemake's own dependency
    except ImportError:
        process.wait()
        return None
    watched, cpu = psutil.Process(process.pid), None
    while process.poll() is None:
        try:
            times = watched.cpu_times()
            cpu = times.user + times.system
        except psutil.Error:
            break
        time.sleep(1.0)
    process.wait()
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", default=str(REPO / "presets" / "demo.yaml"))
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (printed)")
    parser.add_argument("--existing", help="report on the finished run in this working directory instead of running")
    parser.add_argument("snakemake_args", nargs="*", help="extra Snakemake arguments (after --)")
    args = parser.parse_args()

    if args.existing:
        result = report(jobs_of(Path(args.existing)))
    else:
        workdir = Path(tempfile.mkdtemp(prefix="vitwork-demo-time-"))
        command = [*SNAKEMAKE, "--cores", str(args.cores), "--configfile", str(Path(args.configfile).resolve()),
                   "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args.snakemake_args]
        print(" ".join(command[2:]), flush=True)
        before, used = load(), resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        with open(workdir / "snakemake.out", "w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            snakemake_cpu = own_cpu_until_exit(process)
        wall = time.perf_counter() - started
        after, now = load(), resource.getrusage(resource.RUSAGE_CHILDREN)
        if process.returncode != 0:
            sys.exit(f"the demo failed ({workdir} kept):\n{(workdir / 'snakemake.out').read_text()[-3000:]}")
        cpu = now.ru_utime - used.ru_utime + now.ru_stime - used.ru_stime
        run = {"command": command, "wall_s": wall, "cpu_s": cpu, "snakemake_cpu_s": snakemake_cpu,
               "load_before": before, "load_after": after}
        result = report(jobs_of(workdir), run)
        if args.keep:
            print(f"working directory kept: {workdir}")
        else:
            shutil.rmtree(workdir)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
