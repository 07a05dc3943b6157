"""Rules analyses_* (config `combined_jobs`): every analysis table of one run, written in one process."""

import gc

gc.disable()  # job_log enables it: no collection need scan the imports' objects (~0.6 CPU-s for torch)

from vitwork.analysis import analysis_table  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    p = snakemake.params
    data = {key: snakemake.input.get(key) for key in ("train", "subset", "test")}
    for analysis in p.analyses:
        print(f"-- {analysis} -> {snakemake.output[analysis]}", flush=True)
        analysis_table(analysis, p.checkpoints[analysis], p.settings[analysis], snakemake.output[analysis], **data,
                       corruption_folder=p.corruption_folder, official=p.official, device=p.device,
                       threads=snakemake.threads)
