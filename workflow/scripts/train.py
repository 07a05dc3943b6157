"""Rule train: train (or resume) one run; on SIGTERM/SIGUSR1 save, log one line and exit 143 so a retry resumes."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

import sys  # noqa: E402

from vitwork.train import PREEMPTED_EXIT_CODE, Preempted, train_run  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

preempted = False
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
        print(stop, flush=True)  # a normal pre-emption: one line, no traceback
        preempted = True
if preempted:
    sys.exit(PREEMPTED_EXIT_CODE)  # outside job_log, which would log the SystemExit as a failure
