"""Rule generate_corruptions (config `combined_jobs`): every corruption set and labels.npy in one process."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

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
