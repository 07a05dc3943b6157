"""Rule claims: a verdict per testable statement of the study's claims, from the figure tables and the run table."""

from vitwork.job_server import hand_off

hand_off()  # the study's warm job server runs this job when it has one (config job_server)

from vitwork.claims import make  # noqa: E402
from vitwork.workflow import job_log  # noqa: E402

with job_log(snakemake):
    tables = {name: list(paths) for name, paths in snakemake.input.items() if name != "summary"}
    tables["summary"] = [snakemake.input.summary]
    rows = make(tables, snakemake.params.models, snakemake.output.csv, snakemake.output.md,
                snakemake.params.reference_recipes)
    print(f"claims: {len(rows)} statements -> {snakemake.output.md}")
