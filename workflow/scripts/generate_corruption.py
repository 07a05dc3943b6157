"""Rule generate_corruption: one corruption at severities 1-5 of the test sample, in the official layout."""

from pathlib import Path

from vitwork.analysis import write_generated_corruption
from vitwork.workflow import job_log

with job_log(snakemake):
    p, name = snakemake.params, snakemake.wildcards.corruption
    n = write_generated_corruption(snakemake.input.test, name, p.images, p.seed, Path(snakemake.output[0]).parent)
    print(f"{name}: 5 severities x {n} images (class-stratified sample, seed {p.seed}) -> {snakemake.output[0]}")
