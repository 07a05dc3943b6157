"""Rule prepare_data: read the configured dataset once into canonical arrays."""

from vitwork.data import prepare_dataset
from vitwork.workflow import job_log

with job_log(snakemake):
    meta = prepare_dataset(snakemake.params.dataset, snakemake.output.train, snakemake.output.test, snakemake.output.meta)
    print(f"prepared {meta['source']}: {meta['sizes']} images, {meta['num_classes']} classes")
