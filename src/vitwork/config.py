"""Study configuration: schema validation with defaults, semantic checks, and expansion into runs.

Every error is a `ConfigError` whose message is one line naming the file, the key and what was expected,
so the Snakefile can stop before planning any job without a traceback.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

# the schema lives at the top of the repository (schemas/), beside the Snakefile that validates with it
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
# analysis -> the figure kinds it can draw (module vitwork.figures.<analysis>_<kind>)
ANALYSIS_FIGURE_KINDS = {
    "hessian": ("spectra", "grid"),
    "landscape": ("surfaces",),
    "fourier": ("spectra", "depth"),
    "feature_variance": ("depth",),
    "noise_frequency": ("curves",),
    "corruptions": ("scatter", "heatmap", "buildup", "small_data", "grid"),
}
SHORT_HPARAM_NAMES = {"lr": "lr", "weight_decay": "wd", "momentum": "m"}


class ConfigError(ValueError):
    """A configuration problem, described in one line."""


def _with_defaults(validator_class):
    """A validator that fills `default` values of missing properties while it validates."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": fill_defaults})


DefaultFillingValidator = _with_defaults(Draft202012Validator)


def load_schema(path: str | Path | None = None) -> dict:
    """The JSON schema of a study configuration (YAML)."""
    return yaml.safe_load(Path(path or SCHEMA_PATH).read_text())


def key_path(parts) -> str:
    """Render a jsonschema path like ['studies', 'data_size', 'fractions', 2] as studies.data_size.fractions[2]."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(error) -> str:
    """One readable line for a jsonschema error."""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(allowed))
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key {', '.join(map(repr, unexpected))}{hint}"
    if error.validator in ("oneOf", "anyOf"):
        expected = error.schema.get("description")
        types = [s.get("type") for s in error.schema[error.validator] if isinstance(s, dict)]
        return f"{error.instance!r} is not valid; expected {expected or ' or '.join(map(str, types))}"
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(repr, error.validator_value))}"
    return error.message


def validate_config(config: dict, source: str = "config") -> dict:
    """Return a validated copy of `config` with defaults filled; raise ConfigError naming `source` and the key."""
    config = copy.deepcopy(config)
    raw_recipe_training = {
        name: set((recipe or {}).get("training", {}) or {})
        for name, recipe in (config.get("optimizers") or {}).items()
        if isinstance(recipe, dict)
    }
    validator = DefaultFillingValidator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        error = errors[0]
        raise ConfigError(f"{source}: {key_path(error.absolute_path)}: {_describe(error)}")
    _check_semantics(config, source)
    for name, recipe in config["optimizers"].items():
        # a recipe's own training keys override the shared ones; defaults come from the shared section only
        own = {key: recipe["training"][key] for key in raw_recipe_training.get(name, ())}
        recipe["training"] = {**config["training"], **own}
    return config


def _check_semantics(config: dict, source: str) -> None:
    """Checks a schema cannot express: names that must exist, grids that must be non-empty, paths that must exist."""
    from vitwork.models import available_models
    from vitwork.optim import is_known_optimizer

    known_archs = set(available_models())
    for name, model in config["models"].items():
        if model["arch"] not in known_archs:
            raise ConfigError(
                f"{source}: models.{name}.arch: unknown architecture {model['arch']!r} "
                f"(expected one of {', '.join(sorted(known_archs))})"
            )
        _check_model_builds(name, model, source)
    for name, recipe in config["optimizers"].items():
        if not is_known_optimizer(recipe["name"]):
            raise ConfigError(
                f"{source}: optimizers.{name}.name: unknown optimizer {recipe['name']!r} "
                "(expected a name from timm.optim.list_optimizers() or a class of torch.optim)"
            )
        schedule = recipe["schedule"]
        if schedule["name"] == "step" and not schedule.get("milestones"):
            raise ConfigError(f"{source}: optimizers.{name}.schedule.milestones: a step schedule needs milestones")
    for where, selection in _selections(config):
        for field, known in (("models", config["models"]), ("optimizers", config["optimizers"])):
            for index, item in enumerate(selection[field]):
                if item not in known:
                    raise ConfigError(
                        f"{source}: {where}.{field}[{index}]: {item!r} is not defined under "
                        f"`{field}` (defined: {', '.join(sorted(known))})"
                    )
    for study_name, study in config["studies"].items():
        if "kind" in study:
            raise ConfigError(f"{source}: studies.{study_name}.kind: a study has no kind (only analysis figures do)")
    for analysis, settings in config["analyses"].items():
        for name, figure in settings["figures"].items():
            if figure["kind"] not in ANALYSIS_FIGURE_KINDS[analysis]:
                raise ConfigError(
                    f"{source}: analyses.{analysis}.figures.{name}.kind: {figure['kind']!r} is not a figure of "
                    f"{analysis} (expected one of {', '.join(ANALYSIS_FIGURE_KINDS[analysis])})"
                )
        checkpoint = settings["checkpoint"]
        if checkpoint.startswith("epoch") and int(checkpoint[5:]) not in config["training"]["checkpoint_epochs"]:
            raise ConfigError(
                f"{source}: analyses.{analysis}.checkpoint: {checkpoint!r} is not kept "
                f"(expected init, warmup, last, or epoch<N> with N in training.checkpoint_epochs)"
            )
    official = config["analyses"].get("corruptions", {}).get("official_root")
    if official:
        from vitwork.corruptions import OFFICIAL_IMAGES, validate_official_folder

        try:
            validate_official_folder(official, OFFICIAL_IMAGES)
        except (ValueError, OSError) as error:
            raise ConfigError(f"{source}: analyses.corruptions.official_root: {error}") from None
    dataset = config["dataset"]
    if dataset["source"] != "synthetic":
        root = dataset.get("root")
        if not root:
            raise ConfigError(f"{source}: dataset.root: required for source {dataset['source']!r}")
        if not Path(root).exists() and not (dataset["download"] and dataset["source"] != "imagefolder"):
            raise ConfigError(
                f"{source}: dataset.root: {root!r} does not exist "
                f"(expected {'an ImageFolder tree with train/ and test/' if dataset['source'] == 'imagefolder' else 'a torchvision root, or download: true'})"
            )


def _check_model_builds(name: str, model: dict, source: str) -> None:
    """Build the model on the meta device (no memory, ~0.1 s) so a wrong size argument stops before any job."""
    import torch

    from vitwork.models import create_model

    try:
        with torch.device("meta"):
            create_model(model["arch"], num_classes=10, **model["kwargs"])
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: models.{name}.kwargs: {model['arch']} cannot be built: {error}") from None


def load_config_file(path: str | Path) -> dict:
    """Read and validate a study configuration file."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return validate_config(config, str(path))


def format_number(value: float | int | bool) -> str:
    """Short, stable text of a number: the shorter of plain and scientific notation (0.002 -> 2e-3, 0.05 -> 0.05).

    Run ids and figure labels both use it, so a run reads the same everywhere.
    """
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    plain = f"{value:.6g}"
    mantissa, exponent = f"{value:.6e}".split("e")
    scientific = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return scientific if len(scientific) < len(plain) else plain


def _grid(hparams: dict) -> list[dict]:
    """Expand list-valued hyperparameters into the cartesian product of settings, in the order written."""
    axes = [(key, value if isinstance(value, list) else [value]) for key, value in hparams.items()]
    return [dict(zip([k for k, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]


def optimizer_setting_id(recipe_name: str, hparams: dict) -> str:
    """`adamw-lr1.25e-4-wd0.05`: recipe name then every hyperparameter, lr and weight decay first."""
    ordered = {"lr": hparams["lr"], "weight_decay": hparams.get("weight_decay", 0.0)}
    ordered.update({k: v for k, v in hparams.items() if k not in ordered})
    parts = [recipe_name]
    for key, value in ordered.items():
        text = "_".join(map(format_number, value)) if isinstance(value, list) else format_number(value)
        parts.append(f"{SHORT_HPARAM_NAMES.get(key, key)}{text}")
    return "-".join(parts)


def spec_hash(spec: dict) -> str:
    """A short digest of a run spec: a resumed run must have been started with exactly this spec."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _selections(config: dict):
    """(config key, run selection) of every study and every analysis figure."""
    for name, study in config["studies"].items():
        yield f"studies.{name}", study
    for analysis, settings in config.get("analyses", {}).items():
        for name, figure in settings["figures"].items():
            yield f"analyses.{analysis}.figures.{name}", figure


def study_run_specs(config: dict, study_name: str) -> list[dict]:
    """Every run spec of one study: models x optimizer settings (grids expanded) x fractions x seeds."""
    return selection_run_specs(config, config["studies"][study_name])


def analysis_figure_run_specs(config: dict, analysis: str, figure: str) -> list[dict]:
    """Every run spec an analysis figure draws."""
    return selection_run_specs(config, config["analyses"][analysis]["figures"][figure])


def selection_run_specs(config: dict, study: dict) -> list[dict]:
    """Run specs of a selection: models x optimizer settings (grids expanded) x fractions x seeds."""
    from vitwork.models import model_family

    specs = []
    for model_name, recipe_name, fraction, seed in itertools.product(
        study["models"], study["optimizers"], study["fractions"], study["seeds"]
    ):
        model = config["models"][model_name]
        recipe = config["optimizers"][recipe_name]
        for hparams in _grid(recipe["hparams"]):
            hparams.setdefault("weight_decay", 0.0)
            run_id = f"{model_name}/{optimizer_setting_id(recipe_name, hparams)}/f{float(fraction)}/s{seed}"
            specs.append(
                {
                    "run_id": run_id,
                    "model": {
                        "name": model_name,
                        "arch": model["arch"],
                        "family": model_family(model["arch"]),
                        "label": model.get("label", model_name),
                        "kwargs": model["kwargs"],
                    },
                    "optimizer": {
                        "recipe": recipe_name,
                        "name": recipe["name"],
                        "hparams": hparams,
                        "batch_size": recipe["batch_size"],
                        "epochs": recipe["epochs"],
                        "warmup_epochs": recipe["warmup_epochs"],
                        "decay": recipe["decay"],
                        "schedule": recipe["schedule"],
                    },
                    "fraction": float(fraction),
                    "seed": int(seed),
                    "training": recipe["training"],
                }
            )
    return specs


def all_run_specs(config: dict) -> dict[str, dict]:
    """run id -> spec over every study and analysis figure; a run named by several appears once."""
    runs: dict[str, dict] = {}
    for _, selection in _selections(config):
        for spec in selection_run_specs(config, selection):
            runs.setdefault(spec["run_id"], spec)
    return runs

