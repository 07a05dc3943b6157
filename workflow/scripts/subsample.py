"""Rule subsample: the class-stratified index file of one (fraction, seed)."""

from vitwork.data import write_subset
from vitwork.workflow import job_log

with job_log(snakemake):
    indices = write_subset(snakemake.input.train, snakemake.params.fraction, snakemake.params.seed, snakemake.output[0])
    print(f"fraction {snakemake.params.fraction} seed {snakemake.params.seed}: {indices.size} images")
