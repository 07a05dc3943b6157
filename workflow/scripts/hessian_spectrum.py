"""Rule hessian_spectrum: Hessian eigenvalues of the augmented training loss per mini-batch (resumable)."""

from vitwork.analysis import hessian_spectrum_table
from vitwork.workflow import job_log

with job_log(snakemake):
    p = snakemake.params
    hessian_spectrum_table(p.checkpoint, snakemake.input.train, snakemake.input.subset, p.settings, snakemake.output[0], p.device, snakemake.threads)
