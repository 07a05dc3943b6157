"""Rule summary: one row per run of the study (spec, status, accuracy, NLL_train, time)."""

from vitwork.summary import make
from vitwork.workflow import job_log

with job_log(snakemake):
    rows = make(snakemake.input.runs, snakemake.output.csv, snakemake.output.md)
    print(f"summary of {len(rows)} runs -> {snakemake.output.csv}")
