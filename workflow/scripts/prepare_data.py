"""Rule prepare_data: read the configured dataset once into canonical arrays."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

from vitwork.data import prepare_dataset  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    meta = prepare_dataset(snakemake.params.dataset, snakemake.output.train, snakemake.output.test, snakemake.output.meta)
    print(f"prepared {meta['source']}: {meta['sizes']} images, {meta['num_classes']} classes")
