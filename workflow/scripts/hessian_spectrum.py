"""Rule hessian_spectrum: Hessian eigenvalues of the augmented training loss per mini-batch (resumable)."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

from vitwork.analysis import hessian_spectrum_table  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    p = snakemake.params
    hessian_spectrum_table(p.checkpoint, snakemake.input.train, snakemake.input.subset, p.settings, snakemake.output[0], p.device, snakemake.threads)
