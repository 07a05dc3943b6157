# Paths, the run table and grid helpers. No computation beyond naming things.
# The workflow runs its own library, src/vitwork, installed or not: planning imports it through sys.path; every
# job through PYTHONPATH, set here with src/ first (local jobs inherit it; a cluster job reads this file again).
# Under --sdm conda Snakemake drops PYTHONPATH, and the link workflow/scripts/vitwork, which Snakemake appends
# to a script's path, provides it. A job that finds another copy stops with one line (vitwork.workflow.job_log).
import sys
from pathlib import Path

WORKFLOW_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, WORKFLOW_SRC)

from vitwork.workflow import put_first_on_pythonpath

put_first_on_pythonpath(WORKFLOW_SRC)

from vitwork.config import (
    ConfigError,
    all_run_specs,
    analysed_epoch_checkpoints,
    analysis_figure_run_specs,
    library_facts,
    study_run_specs,
    validate_config,
)

# every file the config was read from (an error names the one that sets the offending key)
CONFIG_FILES = [str(path) for path in workflow.overwrite_configfiles] or ["config.yaml"]
# the checks that need torch/timm are kept here per config and library version: planning stays fast
PLAN_CACHE = ".snakemake/vitwork"
try:
    STUDY = validate_config(config, CONFIG_FILES, cache_dir=PLAN_CACHE)
    CORRUPTIONS = library_facts(PLAN_CACHE)["corruptions"]
except ConfigError as error:
    sys.exit(f"vitwork: config error: {error}")

R = STUDY["results_dir"]
RUNS = all_run_specs(STUDY)
RUN_PATTERN = r"[^/]+/[^/]+/f[0-9.]+/s[0-9]+"
DATA = {split: f"{R}/data/{split}.npz" for split in ("train", "test")}
META = f"{R}/data/meta.json"


wildcard_constraints:
    run=RUN_PATTERN,
    fraction=r"[0-9.]+",
    seed=r"[0-9]+",
    corruption="|".join(CORRUPTIONS),


def run_dir(run_id):
    return f"{R}/runs/{run_id}"


def run_json(run_id):
    return f"{run_dir(run_id)}/run.json"


def subset_path(spec):
    return f"{R}/data/subsets/f{spec['fraction']}_s{spec['seed']}.npy"


def study_run_ids(study):
    """Run ids of one study section of the config (empty when the config has no such study)."""
    if study not in STUDY["studies"]:
        return []
    return [spec["run_id"] for spec in study_run_specs(STUDY, study)]


def study_run_jsons(study):
    return [run_json(run_id) for run_id in study_run_ids(study)]


# One rule per figure, named figure_<name>; each writes <name>.png/.pdf and the tidy <name>.csv it was drawn from.
# TRAINING_FIGURES: figure name -> (study section it draws, vitwork.figures module, extra outputs, options)
TRAINING_FIGURES = {
    "inductive_bias": ("inductive_bias", {}, {}),
    "data_size": ("data_size", {}, {}),
    "optimizer_grid": ("optimizer_grid", {}, {}),
    "learning_curves": ("optimizer_grid", {}, {}),
    "time_to_accuracy": (
        "optimizer_grid",
        {"out_md": "md"},
        {"fraction": "target_fraction_of_best"},
    ),
}
FIGURE_DIR = f"{R}/figures"


def figure_outputs(name, extra, caption=None, category="Training"):
    outputs = {
        "out_png": report(
            f"{FIGURE_DIR}/{name}.png",
            caption=f"../report/captions/{caption or name}.rst",
            category=category,
        ),
        "out_pdf": f"{FIGURE_DIR}/{name}.pdf",
        "out_csv": f"{FIGURE_DIR}/{name}.csv",
    }
    outputs.update({key: f"{FIGURE_DIR}/{name}.{ext}" for key, ext in extra.items()})
    return outputs


def figure_options(study, options):
    return {key: STUDY["studies"][study][setting] for key, setting in options.items()}


def all_targets():
    """Every figure of the config's studies, and the summary table."""
    figures = [
        f"{FIGURE_DIR}/{name}.png"
        for name, (study, _, _) in TRAINING_FIGURES.items()
        if study in STUDY["studies"]
    ]
    return figures + analysis_figure_targets() + [f"{R}/summary.csv"]


# -- analyses -------------------------------------------------------------------------------------
ANALYSES = STUDY["analyses"]
CORRUPTION_DIR = (ANALYSES.get("corruptions") or {}).get(
    "official_root"
) or f"{R}/corruptions"


def analysis_table(analysis, run_id="{run}"):
    """The tidy table of one analysis of one run, at the analysis's configured checkpoint."""
    return f"{R}/analysis/{analysis}/{run_id}/{ANALYSES[analysis]['checkpoint']}.csv"


def analysis_checkpoint(analysis):
    """The checkpoint an analysis reads, an input: the DAG sees it missing, and a retrained run reruns the analysis."""
    return f"{R}/runs/{{run}}/checkpoints/{ANALYSES[analysis]['checkpoint']}.pt"


def checkpoint_input(wildcards, input):
    """params function: the checkpoint input, as the analysis scripts read it."""
    return input.checkpoint


def analysed_epoch_outputs():
    """Train outputs for the epoch<N> checkpoints an analysis reads (validation: every run keeps them)."""
    return {
        name: f"{R}/runs/{{run}}/checkpoints/{name}.pt"
        for name in analysed_epoch_checkpoints(STUDY)
    }


def analysis_figure_inputs(analysis, figure):
    ids = [
        spec["run_id"] for spec in analysis_figure_run_specs(STUDY, analysis, figure)
    ]
    return {
        "runs": [run_json(run_id) for run_id in ids],
        "tables": [analysis_table(analysis, run_id) for run_id in ids],
    }


def corruption_inputs(wildcards):
    """The corruption files an evaluation reads: generated by the workflow unless official ones are configured."""
    if ANALYSES["corruptions"]["official_root"]:
        return []
    return [f"{CORRUPTION_DIR}/{name}.npy" for name in CORRUPTIONS] + [
        f"{CORRUPTION_DIR}/labels.npy"
    ]


def analysis_figure_targets():
    return [
        f"{FIGURE_DIR}/{analysis}_{name}.png"
        for analysis, settings in ANALYSES.items()
        for name in settings["figures"]
    ]
