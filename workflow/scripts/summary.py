"""Rule summary: one row per run of the study (spec, status, accuracy, NLL_train, time)."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

from vitwork.summary import make  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    rows = make(snakemake.input.runs, snakemake.output.csv, snakemake.output.md)
    print(f"summary of {len(rows)} runs -> {snakemake.output.csv}")
