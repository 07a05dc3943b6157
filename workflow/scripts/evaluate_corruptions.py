"""Rule evaluate_corruptions: accuracy and NLL on the clean test images and every (corruption, severity) set."""

import gc

gc.disable()  # job_log enables it: no collection need scan the imports' objects (~0.6 CPU-s for torch)

from vitwork.analysis import corruption_table  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    p = snakemake.params
    corruption_table(p.checkpoint, snakemake.input.test, p.folder, p.settings, p.official, snakemake.output[0], p.device, snakemake.threads)
