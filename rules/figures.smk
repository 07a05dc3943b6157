for figure_name, (figure_study, figure_extra, figure_opts) in TRAINING_FIGURES.items():
    if figure_study not in STUDY["studies"]:
        continue

    rule:
        name:
            f"figure_{figure_name}"
        input:
            runs=study_run_jsons(figure_study),
        output:
            **figure_outputs(figure_name, figure_extra),
        log:
            f"{R}/logs/figures/{figure_name}.log",
        benchmark:
            f"{R}/benchmarks/figures/{figure_name}.tsv"
        conda:
            "../envs/vitwork.yaml"
        params:
            module=figure_name,
            options=figure_options(figure_study, figure_opts),
        script:
            "../workflow/scripts/figure.py"


for analysis_name, analysis_settings in ANALYSES.items():
    for analysis_figure, analysis_selection in analysis_settings["figures"].items():
        analysis_module = f"{analysis_name}_{analysis_selection['kind']}"

        rule:
            name:
                f"figure_{analysis_name}_{analysis_figure}"
            input:
                **analysis_figure_inputs(analysis_name, analysis_figure),
            output:
                **figure_outputs(
                    f"{analysis_name}_{analysis_figure}",
                    {},
                    caption=analysis_module,
                    category=analysis_name.replace("_", " ").capitalize(),
                ),
            log:
                f"{R}/logs/figures/{analysis_name}_{analysis_figure}.log",
            benchmark:
                f"{R}/benchmarks/figures/{analysis_name}_{analysis_figure}.tsv"
            conda:
                "../envs/vitwork.yaml"
            params:
                module=analysis_module,
                options=ANALYSIS_FIGURE_OPTIONS[(analysis_name, analysis_figure)],
            script:
                "../workflow/scripts/figure.py"


rule summary:
    input:
        runs=[run_json(run_id) for run_id in RUNS],
    output:
        csv=report(
            f"{R}/summary.csv",
            caption="../report/captions/summary.rst",
            category="Summary",
        ),
        md=f"{R}/summary.md",
    log:
        f"{R}/logs/summary.log",
    benchmark:
        f"{R}/benchmarks/summary.tsv"
    conda:
        "../envs/vitwork.yaml"
    script:
        "../workflow/scripts/summary.py"
