# The claims verdicts: one row per testable statement of STUDY.md's claims, from the tables the figures wrote.
from vitwork.claims import figure_tables

# figure name -> the vitwork.figures module that draws it, for every figure of the config
CLAIMS_FIGURES = {
    name: name
    for name, (study, _, _) in TRAINING_FIGURES.items()
    if study in STUDY["studies"]
} | {
    f"{analysis}_{figure}": f"{analysis}_{selection['kind']}"
    for analysis, settings in ANALYSES.items()
    for figure, selection in settings["figures"].items()
}


rule claims:
    input:
        **figure_tables(CLAIMS_FIGURES, FIGURE_DIR),
        summary=f"{R}/summary.csv",
    output:
        csv=report(
            f"{R}/claims.csv",
            caption="../report/captions/claims.rst",
            category="Claims",
        ),
        md=report(
            f"{R}/claims.md",
            caption="../report/captions/claims.rst",
            category="Claims",
        ),
    log:
        f"{R}/logs/claims.log",
    benchmark:
        f"{R}/benchmarks/claims.tsv"
    conda:
        "../envs/vitwork.yaml"
    params:
        models=STUDY["models"],
        reference_recipes=STUDY["studies"]
        .get("inductive_bias", {})
        .get("optimizers", []),
    script:
        "../workflow/scripts/claims.py"
