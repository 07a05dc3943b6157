"""Rule corruption_labels: labels.npy of the generated corruption sets (the test sample's labels, official layout)."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

from pathlib import Path  # noqa: E402

from vitwork.analysis import write_generated_labels  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    p = snakemake.params
    n = write_generated_labels(snakemake.input.test, p.images, p.seed, Path(snakemake.output[0]).parent)
    print(f"labels of the {n}-image test sample -> {snakemake.output[0]}")
