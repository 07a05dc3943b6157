"""Rule evaluate_corruptions: accuracy and NLL on the clean test images and every (corruption, severity) set."""

from vitwork.analysis import corruption_table
from vitwork.workflow import job_log

with job_log(snakemake):
    p = snakemake.params
    corruption_table(p.checkpoint, snakemake.input.test, p.folder, p.settings, p.official, snakemake.output[0], p.device, snakemake.threads)
