"""Rule subsample: the class-stratified index file of one (fraction, seed)."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

from vitwork.data import write_subset  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    indices = write_subset(snakemake.input.train, snakemake.params.fraction, snakemake.params.seed, snakemake.output[0])
    print(f"fraction {snakemake.params.fraction} seed {snakemake.params.seed}: {indices.size} images")
