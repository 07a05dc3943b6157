# Per-run analyses at the checkpoint each analysis configures; each rule exists when its analysis is configured.
# The checkpoint an analysis reads is an input (a train output); run.json says the run has finished.


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


if "hessian" in ANALYSES:

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


if "landscape" in ANALYSES:

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
    if feature_analysis not in ANALYSES:
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


if "noise_frequency" in ANALYSES:

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


if "corruptions" in ANALYSES:

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
