"""Rules fourier_spectrum and feature_variance: per-block spectra or variances of the feature maps."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

from vitwork.analysis import feature_table  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    p = snakemake.params
    feature_table(p.kind, p.checkpoint, snakemake.input.test, p.settings, snakemake.output[0], p.device, snakemake.threads)
