"""Rule claims: a verdict per testable statement of the study's claims, from the figure tables and the run table."""

from vitwork.claims import make
from vitwork.workflow import job_log

with job_log(snakemake):
    tables = {name: list(paths) for name, paths in snakemake.input.items() if name != "summary"}
    tables["summary"] = [snakemake.input.summary]
    rows = make(tables, snakemake.params.models, snakemake.output.csv, snakemake.output.md,
                snakemake.params.reference_recipes)
    print(f"claims: {len(rows)} statements -> {snakemake.output.md}")
