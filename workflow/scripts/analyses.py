"""Rules analyses_* (config `combined_jobs`): every analysis table of one run, written in one process."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

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
