"""Rule loss_landscape: loss and accuracy on a 2-D plane of filter-normalised directions (resumable by row)."""

import gc

gc.disable()  # job_log enables it: no collection need scan the imports' objects (~0.6 CPU-s for torch)

from vitwork.analysis import loss_landscape_table  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    p = snakemake.params
    loss_landscape_table(p.checkpoint, snakemake.input.train, snakemake.input.subset, p.settings, snakemake.output[0], p.device, snakemake.threads)
