# Paths, the run table and grid helpers. No computation beyond naming things.
# vitwork is imported from this checkout, installed or not: here through sys.path, in jobs through the
# link workflow/scripts/vitwork (snakemake puts the scripts' folder on their sys.path).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from vitwork.config import ConfigError, all_run_specs, study_run_specs, validate_config
from vitwork.train import checkpoint_names

CONFIG_SOURCE = (
    workflow.overwrite_configfiles[-1]
    if workflow.overwrite_configfiles
    else "config.yaml"
)
try:
    STUDY = validate_config(config, str(CONFIG_SOURCE))
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


def figure_outputs(name, extra):
    outputs = {
        "out_png": report(
            f"{FIGURE_DIR}/{name}.png",
            caption=f"../report/captions/{name}.rst",
            category="Training",
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
    return figures + [f"{R}/summary.csv"]
