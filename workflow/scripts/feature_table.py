"""Rules fourier_spectrum and feature_variance: per-block spectra or variances of the feature maps."""

import gc

gc.disable()  # job_log enables it: no collection need scan the imports' objects (~0.6 CPU-s for torch)

from vitwork.analysis import feature_table  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    p = snakemake.params
    feature_table(p.kind, p.checkpoint, snakemake.input.test, p.settings, snakemake.output[0], p.device, snakemake.threads)
