"""Rule generate_corruption: one corruption at severities 1-5 of the test sample, in the official layout."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

from pathlib import Path  # noqa: E402

from vitwork.analysis import write_generated_corruption  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    p, name = snakemake.params, snakemake.wildcards.corruption
    n = write_generated_corruption(snakemake.input.test, name, p.images, p.seed, Path(snakemake.output[0]).parent)
    print(f"{name}: 5 severities x {n} images (class-stratified sample, seed {p.seed}) -> {snakemake.output[0]}")
