"""Rule evaluate_corruptions: accuracy and NLL on the clean test images and every (corruption, severity) set."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

from vitwork.analysis import corruption_table  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    p = snakemake.params
    corruption_table(p.checkpoint, snakemake.input.test, p.folder, p.settings, p.official, snakemake.output[0], p.device, snakemake.threads)
