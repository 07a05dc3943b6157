"""Rule generate_corruptions (config `combined_jobs`): every corruption set and labels.npy in one process."""

import gc

gc.disable()  # job_log enables it: no collection need scan the imports' objects (~0.6 CPU-s for torch)

from pathlib import Path  # noqa: E402

from vitwork.analysis import write_generated_corruption, write_generated_labels  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    p, test = snakemake.params, snakemake.input.test
    folder = Path(snakemake.output.labels).parent
    for name in snakemake.output.keys():
        if name != "labels":
            n = write_generated_corruption(test, name, p.images, p.seed, folder)
            print(f"{name}: 5 severities x {n} images", flush=True)
    write_generated_labels(test, p.images, p.seed, folder)
    print(f"labels of the {n}-image test sample (class-stratified, seed {p.seed}) -> {snakemake.output.labels}")
