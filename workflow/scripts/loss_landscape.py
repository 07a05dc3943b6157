"""Rule loss_landscape: loss and accuracy on a 2-D plane of filter-normalised directions (resumable by row)."""

from vitwork.analysis import loss_landscape_table
from vitwork.workflow import job_log

with job_log(snakemake):
    p = snakemake.params
    loss_landscape_table(p.checkpoint, snakemake.input.train, snakemake.input.subset, p.settings, snakemake.output[0], p.device, snakemake.threads)
