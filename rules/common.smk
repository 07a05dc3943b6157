# Paths, the run table and grid helpers. No computation beyond naming things.
# The workflow runs its own library, src/vitwork, installed or not: planning imports it through sys.path; every
# job through PYTHONPATH, set here with src/ first (local jobs inherit it; a cluster job reads this file again).
# Under --sdm conda Snakemake drops PYTHONPATH, and the link workflow/scripts/vitwork, which Snakemake appends
# to a script's path, provides it. A job that finds another copy stops with one line (vitwork.workflow.job_log).
import re
import sys
from pathlib import Path

WORKFLOW_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, WORKFLOW_SRC)

from vitwork import job_server
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

# every file the config was read from, and --config's values (an error names the one that sets the offending key)
CONFIG_FILES = [str(path) for path in workflow.overwrite_configfiles] or ["config.yaml"]
# the checks that need torch/timm are kept here per config and library version: planning stays fast
PLAN_CACHE = ".snakemake/vitwork"
try:
    STUDY = validate_config(
        config,
        CONFIG_FILES,
        cache_dir=PLAN_CACHE,
        overrides=workflow.config_settings.config,
    )
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


def checkpoint_path(name):
    return f"{R}/runs/{{run}}/checkpoints/{name}.pt"


def analysis_checkpoint(analysis):
    """The checkpoint an analysis reads, an input: the DAG sees it missing, and a retrained run reruns the analysis."""
    return checkpoint_path(ANALYSES[analysis]["checkpoint"])


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


# -- combined jobs (config `combined_jobs`): one job per run for all its analyses ------------------
# what each analysis reads besides its run.json and its checkpoint
ANALYSIS_DATA = {
    "hessian": ("train", "subset"),
    "landscape": ("train", "subset"),
    "fourier": ("test",),
    "feature_variance": ("test",),
    "noise_frequency": ("test",),
    "corruptions": ("test", "corruptions"),
}


def analyses_by_run():
    """run id -> the analyses (in config order) that some figure of theirs draws the run in."""
    found = {}
    for analysis, settings in ANALYSES.items():
        for figure in settings["figures"]:
            for spec in analysis_figure_run_specs(STUDY, analysis, figure):
                found.setdefault(spec["run_id"], set()).add(analysis)
    return {
        run_id: tuple(name for name in ANALYSES if name in names)
        for run_id, names in found.items()
    }


def runs_by_analyses():
    """Each distinct set of analyses -> the run ids that need exactly that set: one combined rule each
    (a rule's outputs cannot vary with its wildcards)."""
    groups = {}
    for run_id, analyses in analyses_by_run().items():
        groups.setdefault(analyses, []).append(run_id)
    return groups


def one_of(run_ids):
    """A wildcard constraint that matches exactly these run ids."""
    return "|".join(re.escape(run_id) for run_id in sorted(run_ids))


def combined_inputs(analyses):
    """The union of the inputs of these analyses' separate rules; checkpoints as checkpoint_<name>."""
    data = {key for analysis in analyses for key in ANALYSIS_DATA[analysis]}
    inputs = {"run": run_json("{run}")}
    for name in sorted({ANALYSES[analysis]["checkpoint"] for analysis in analyses}):
        inputs[f"checkpoint_{name}"] = checkpoint_path(name)
    if "train" in data:
        inputs["train"] = DATA["train"]
        inputs["subset"] = lambda w: subset_path(RUNS[w.run])
    if "test" in data:
        inputs["test"] = DATA["test"]
    if "corruptions" in data:
        inputs["corruptions"] = corruption_inputs
    return inputs


def combined_checkpoints(analyses):
    """params function: analysis -> the checkpoint input it reads."""

    def checkpoints(wildcards, input):
        return {
            analysis: input[f"checkpoint_{ANALYSES[analysis]['checkpoint']}"]
            for analysis in analyses
        }

    return checkpoints


# -- the job server (config `job_server`): jobs of a run on this machine start in warm forks of one process -----
JOB_SERVERS = []  # the server this Snakemake process started, if any


def start_job_server():
    """onstart: start the server when configured and the jobs run here (not on a cluster's nodes)."""
    if STUDY["job_server"] and workflow.local_exec:
        log = f"{R}/logs/job_server.log"
        address = job_server.default_address()
        JOB_SERVERS.append(job_server.start(address, log, threads=STUDY["threads"]))


def stop_job_server():
    """onsuccess/onerror: stop it (jobs still running in it get SIGTERM)."""
    while JOB_SERVERS:
        job_server.stop(JOB_SERVERS.pop())
