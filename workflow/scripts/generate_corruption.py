"""Rule generate_corruption: one corruption at severities 1-5 of the test split, in the official layout."""

from pathlib import Path

from vitwork.corruptions import generate_corruption, write_corruption
from vitwork.data import load_split
from vitwork.workflow import job_log

with job_log(snakemake):
    images, labels = load_split(snakemake.input.test)
    n = snakemake.params.images or len(labels)
    name = snakemake.wildcards.corruption
    folder = Path(snakemake.output[0]).parent
    write_corruption(folder, name, generate_corruption(images[:n], name, snakemake.params.seed))
    print(f"{name}: 5 severities x {n} images -> {snakemake.output[0]}")
