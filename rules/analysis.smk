# Per-run analyses at the checkpoint each analysis configures; each rule exists when its analysis is configured.
# The checkpoint an analysis reads is an input (a train output); run.json says the run has finished.
# Config `combined_jobs` (small studies): instead of one job per (analysis, run), one job per run writes the same
# tables (rules analyses_*, at the end), and one job generates every corruption set.
SEPARATE_JOBS = not STUDY["combined_jobs"]


# What each analysis job reads: its settings without the figures, so that adding a figure reruns no analysis.
ANALYSIS_SETTINGS = {
    name: {key: value for key, value in settings.items() if key != "figures"}
    for name, settings in ANALYSES.items()
}
# The make() options an analysis figure sets in the config (e.g. `loss: nll`), by (analysis, figure).
ANALYSIS_FIGURE_OPTIONS = {
    (name, figure): {
        key: selection[key] for key in ("loss",) if selection.get(key) is not None
    }
    for name, settings in ANALYSES.items()
    for figure, selection in settings["figures"].items()
}


if SEPARATE_JOBS and "hessian" in ANALYSES:

    rule hessian_spectrum:
        input:
            run=run_json("{run}"),
            checkpoint=analysis_checkpoint("hessian"),
            train=DATA["train"],
            subset=lambda w: subset_path(RUNS[w.run]),
        output:
            analysis_table("hessian"),
        log:
            f"{R}/logs/hessian/{{run}}.log",
        benchmark:
            f"{R}/benchmarks/hessian/{{run}}.tsv"
        conda:
            "../envs/vitwork.yaml"
        threads: STUDY["threads"]
        resources:
            gpu=1,
        params:
            checkpoint=checkpoint_input,
            settings=ANALYSIS_SETTINGS["hessian"],
            device=STUDY["device"],
        script:
            "../workflow/scripts/hessian_spectrum.py"


if SEPARATE_JOBS and "landscape" in ANALYSES:

    rule loss_landscape:
        input:
            run=run_json("{run}"),
            checkpoint=analysis_checkpoint("landscape"),
            train=DATA["train"],
            subset=lambda w: subset_path(RUNS[w.run]),
        output:
            analysis_table("landscape"),
        log:
            f"{R}/logs/landscape/{{run}}.log",
        benchmark:
            f"{R}/benchmarks/landscape/{{run}}.tsv"
        conda:
            "../envs/vitwork.yaml"
        threads: STUDY["threads"]
        resources:
            gpu=1,
        params:
            checkpoint=checkpoint_input,
            settings=ANALYSIS_SETTINGS["landscape"],
            device=STUDY["device"],
        script:
            "../workflow/scripts/loss_landscape.py"


for feature_analysis, feature_rule in (
    ("fourier", "fourier_spectrum"),
    ("feature_variance", "feature_variance"),
):
    if not SEPARATE_JOBS or feature_analysis not in ANALYSES:
        continue

    rule:
        name:
            feature_rule
        input:
            run=run_json("{run}"),
            checkpoint=analysis_checkpoint(feature_analysis),
            test=DATA["test"],
        output:
            analysis_table(feature_analysis),
        log:
            f"{R}/logs/{feature_analysis}/{{run}}.log",
        benchmark:
            f"{R}/benchmarks/{feature_analysis}/{{run}}.tsv"
        conda:
            "../envs/vitwork.yaml"
        threads: STUDY["threads"]
        resources:
            gpu=1,
        params:
            kind=feature_analysis,
            checkpoint=checkpoint_input,
            settings=ANALYSIS_SETTINGS[feature_analysis],
            device=STUDY["device"],
        script:
            "../workflow/scripts/feature_table.py"


if SEPARATE_JOBS and "noise_frequency" in ANALYSES:

    rule noise_frequency:
        input:
            run=run_json("{run}"),
            checkpoint=analysis_checkpoint("noise_frequency"),
            test=DATA["test"],
        output:
            analysis_table("noise_frequency"),
        log:
            f"{R}/logs/noise_frequency/{{run}}.log",
        benchmark:
            f"{R}/benchmarks/noise_frequency/{{run}}.tsv"
        conda:
            "../envs/vitwork.yaml"
        threads: STUDY["threads"]
        resources:
            gpu=1,
        params:
            checkpoint=checkpoint_input,
            settings=ANALYSIS_SETTINGS["noise_frequency"],
            device=STUDY["device"],
        script:
            "../workflow/scripts/noise_frequency.py"


if SEPARATE_JOBS and "corruptions" in ANALYSES:

    rule generate_corruption:
        input:
            test=DATA["test"],
        output:
            f"{R}/corruptions/{{corruption}}.npy",
        log:
            f"{R}/logs/corruptions/{{corruption}}.log",
        benchmark:
            f"{R}/benchmarks/corruptions/{{corruption}}.tsv"
        conda:
            "../envs/vitwork.yaml"
        params:
            images=ANALYSES["corruptions"]["images"],
            seed=ANALYSES["corruptions"]["seed"],
        script:
            "../workflow/scripts/generate_corruption.py"

    rule corruption_labels:
        input:
            test=DATA["test"],
        output:
            f"{R}/corruptions/labels.npy",
        log:
            f"{R}/logs/corruptions/labels.log",
        benchmark:
            f"{R}/benchmarks/corruptions/labels.tsv"
        conda:
            "../envs/vitwork.yaml"
        params:
            images=ANALYSES["corruptions"]["images"],
            seed=ANALYSES["corruptions"]["seed"],
        script:
            "../workflow/scripts/corruption_labels.py"

    rule evaluate_corruptions:
        input:
            run=run_json("{run}"),
            checkpoint=analysis_checkpoint("corruptions"),
            test=DATA["test"],
            corruptions=corruption_inputs,
        output:
            analysis_table("corruptions"),
        log:
            f"{R}/logs/evaluate_corruptions/{{run}}.log",
        benchmark:
            f"{R}/benchmarks/evaluate_corruptions/{{run}}.tsv"
        conda:
            "../envs/vitwork.yaml"
        threads: STUDY["threads"]
        resources:
            gpu=1,
        params:
            checkpoint=checkpoint_input,
            settings=ANALYSIS_SETTINGS["corruptions"],
            folder=CORRUPTION_DIR,
            official=bool(ANALYSES["corruptions"]["official_root"]),
            device=STUDY["device"],
        script:
            "../workflow/scripts/evaluate_corruptions.py"


if not SEPARATE_JOBS and "corruptions" in ANALYSES:

    rule generate_corruptions:
        input:
            test=DATA["test"],
        output:
            **{name: f"{R}/corruptions/{name}.npy" for name in CORRUPTIONS},
            labels=f"{R}/corruptions/labels.npy",
        log:
            f"{R}/logs/corruptions/all.log",
        benchmark:
            f"{R}/benchmarks/corruptions/all.tsv"
        conda:
            "../envs/vitwork.yaml"
        params:
            images=ANALYSES["corruptions"]["images"],
            seed=ANALYSES["corruptions"]["seed"],
        script:
            "../workflow/scripts/generate_corruptions.py"


# One rule per distinct set of analyses a run needs (its outputs are that set's tables), restricted to the runs that
# need exactly that set; its params are those analyses' settings, so a changed setting reruns only the runs that use it.
for combined_analyses, combined_runs in (
    runs_by_analyses().items() if not SEPARATE_JOBS else []
):

    rule:
        name:
            "analyses_" + "_".join(combined_analyses)
        input:
            **combined_inputs(combined_analyses),
        output:
            **{analysis: analysis_table(analysis) for analysis in combined_analyses},
        log:
            f"{R}/logs/analyses/{{run}}.log",
        benchmark:
            f"{R}/benchmarks/analyses/{{run}}.tsv"
        wildcard_constraints:
            run=one_of(combined_runs),
        conda:
            "../envs/vitwork.yaml"
        threads: STUDY["threads"]
        resources:
            gpu=1,
        params:
            analyses=list(combined_analyses),
            checkpoints=combined_checkpoints(combined_analyses),
            settings={name: ANALYSIS_SETTINGS[name] for name in combined_analyses},
            corruption_folder=(
                CORRUPTION_DIR if "corruptions" in combined_analyses else None
            ),
            official=bool((ANALYSES.get("corruptions") or {}).get("official_root"))
            and "corruptions" in combined_analyses,
            device=STUDY["device"],
        script:
            "../workflow/scripts/analyses.py"
