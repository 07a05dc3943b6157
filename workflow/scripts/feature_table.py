"""Rules fourier_spectrum and feature_variance: per-block spectra or variances of the feature maps."""

from vitwork.analysis import feature_table
from vitwork.workflow import job_log

with job_log(snakemake):
    p = snakemake.params
    feature_table(p.kind, p.checkpoint, snakemake.input.test, p.settings, snakemake.output[0], p.device, snakemake.threads)
