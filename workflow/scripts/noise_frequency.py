"""Rule noise_frequency: accuracy change under band-passed sign noise per frequency."""

import gc

gc.disable()  # job_log enables it: no collection need scan the imports' objects (~0.6 CPU-s for torch)

from vitwork.analysis import noise_frequency_table  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    p = snakemake.params
    noise_frequency_table(p.checkpoint, snakemake.input.test, p.settings, snakemake.output[0], p.device, snakemake.threads)
