"""Rule corruption_labels: labels.npy of the generated corruption sets (the official layout's label file)."""

from vitwork.corruptions import write_labels
from vitwork.data import load_split
from vitwork.workflow import job_log

with job_log(snakemake):
    _, labels = load_split(snakemake.input.test)
    n = snakemake.params.images or len(labels)
    write_labels(snakemake.output[0].rsplit("/", 1)[0], labels[:n])
