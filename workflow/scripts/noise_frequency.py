"""Rule noise_frequency: accuracy change under band-passed sign noise per frequency."""

from vitwork.analysis import noise_frequency_table
from vitwork.workflow import job_log

with job_log(snakemake):
    p = snakemake.params
    noise_frequency_table(p.checkpoint, snakemake.input.test, p.settings, snakemake.output[0], p.device, snakemake.threads)
