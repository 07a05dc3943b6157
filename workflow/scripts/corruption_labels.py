"""Rule corruption_labels: labels.npy of the generated corruption sets (the test sample's labels, official layout)."""

from pathlib import Path

from vitwork.analysis import write_generated_labels
from vitwork.workflow import job_log

with job_log(snakemake):
    p = snakemake.params
    n = write_generated_labels(snakemake.input.test, p.images, p.seed, Path(snakemake.output[0]).parent)
    print(f"labels of the {n}-image test sample -> {snakemake.output[0]}")
