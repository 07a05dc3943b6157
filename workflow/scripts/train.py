"""Rule train: train (or resume) one run; exit 143 after saving on SIGTERM/SIGUSR1 so a retry resumes."""

import sys

from vitwork.train import PREEMPTED_EXIT_CODE, Preempted, train_run
from vitwork.workflow import job_log

with job_log(snakemake):
    try:
        summary = train_run(
            snakemake.params.spec,
            snakemake.input.train,
            snakemake.input.test,
            snakemake.input.meta,
            snakemake.input.subset,
            snakemake.params.run_dir,
            device=snakemake.params.device,
            threads=snakemake.threads,
        )
        print(f"{summary['status']}: {summary['final']}")
    except Preempted as stop:
        print(f"pre-empted, resume state saved: {stop}")
        sys.exit(PREEMPTED_EXIT_CODE)
