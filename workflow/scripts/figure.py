"""Every figure rule: `params.module` names the vitwork.figures module whose make() draws it from the runs."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

import importlib  # noqa: E402

from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    figure = importlib.import_module(f"vitwork.figures.{snakemake.params.module}")
    rows = figure.make(**dict(snakemake.input.items()), **dict(snakemake.output.items()), **snakemake.params.options)
    print(f"{snakemake.params.module}: {len(rows)} rows -> {snakemake.output.out_png}")
