"""Every figure rule: `params.module` names the vitwork.figures module whose make() draws it from the runs."""

import importlib

from vitwork.workflow import job_log

with job_log(snakemake):
    figure = importlib.import_module(f"vitwork.figures.{snakemake.params.module}")
    rows = figure.make(**dict(snakemake.input.items()), **dict(snakemake.output.items()), **snakemake.params.options)
    print(f"{snakemake.params.module}: {len(rows)} rows -> {snakemake.output.out_png}")
