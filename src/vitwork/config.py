"""Study configuration: schema validation with defaults, semantic checks, and expansion into runs.

Every error is a `ConfigError` whose message is one line naming the file, the key and what was expected,
so the Snakefile can stop before planning any job without a traceback.

Planning must stay fast, so this module imports neither torch nor timm. The checks that need the library
(architectures, model sizes built on the meta device, optimizers built for a tiny model) run once per
configuration and library version and are kept under `cache_dir` (the Snakefile uses `.snakemake/vitwork/`).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.metadata
import itertools
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

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
# what a study or an analysis figure selects; `defaults` gives them once for every selection that omits them
SELECTION_DEFAULTS = ("optimizers", "fractions", "seeds")
# training images per class of the torchvision datasets (known without reading them)
TRAIN_IMAGES_PER_CLASS = {"cifar10": (10, 5000), "cifar100": (100, 500)}
# cached library checks kept per kind in cache_dir (older ones are removed)
CACHE_ENTRIES_KEPT = 8


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
        expected = expected or " or ".join(map(str, types))
        # the branch whose type fits says what is wrong (e.g. a negative number), not "is not of type"
        fitting = [e for e in error.context if e.validator not in ("type", "oneOf", "anyOf")]
        if fitting:
            return f"{fitting[0].message} (expected {expected})"
        return f"{error.instance!r} is not valid; expected {expected}"
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(repr, error.validator_value))}"
    return error.message


def _sets(node, parts) -> bool:
    """Whether the mapping `node` (one config file's content) holds the key at `parts`."""
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    return True


class _Sources:
    """Where a configuration came from: its file(s), and the values given on the command line (`--config`), which
    win over every file; an error names `--config` or the last file that sets the key it is about."""

    def __init__(self, source: str | os.PathLike | Sequence[str | os.PathLike], overrides: dict | None = None):
        self.files = [str(source)] if isinstance(source, (str, os.PathLike)) else [str(s) for s in source]
        self.overrides = overrides or {}
        self._contents: dict[str, Any] = {}

    def _content(self, path: str):
        if path not in self._contents:
            try:
                self._contents[path] = yaml.safe_load(Path(path).read_text())
            except (OSError, yaml.YAMLError):
                self._contents[path] = None
        return self._contents[path]

    def file_of(self, parts) -> str:
        if _sets(self.overrides, parts):
            return "--config"
        if len(self.files) > 1:
            for path in reversed(self.files):
                if _sets(self._content(path), parts):
                    return path
        return self.files[-1]

    def error(self, parts, message: str) -> ConfigError:
        parts = list(parts)
        return ConfigError(f"{self.file_of(parts)}: {key_path(parts)}: {message}")


def validate_config(config: dict, source: str | Sequence[str] = "config", cache_dir: str | Path | None = None,
                    overrides: dict | None = None) -> dict:
    """Return a validated copy of `config` with defaults filled; raise ConfigError naming the file and the key.

    `source` is the file the configuration came from, or the files layered into it (later ones win, as with
    `snakemake --configfile a.yaml b.yaml`): an error names the last one that sets the offending key, or
    `--config` when `overrides` (the command line's `--config` values, which win over every file) sets it.
    With `cache_dir`, the checks that need torch/timm are kept there per configuration and library version.
    The result also holds what the library says about it: each model's `family`, each recipe's `hparams` with
    every sequence-valued setting (betas) written as one grid value.
    """
    sources = _Sources(source, overrides)
    config = copy.deepcopy(config)
    raw_recipe_training = {
        name: set((recipe or {}).get("training", {}) or {})
        for name, recipe in (config.get("optimizers") or {}).items()
        if isinstance(recipe, dict)
    }
    validator = DefaultFillingValidator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise sources.error(errors[0].absolute_path, _describe(errors[0]))
    origins = _fill_selection_defaults(config, sources)
    _check_semantics(config, sources, origins)
    for name, recipe in config["optimizers"].items():
        # a recipe's own training keys override the shared ones; defaults come from the shared section only
        own = {key: recipe["training"][key] for key in raw_recipe_training.get(name, ())}
        recipe["training"] = {**config["training"], **own}
    _check_library(config, sources, cache_dir)
    _check_runs(config, sources, origins, cache_dir)
    return config


def _fill_selection_defaults(config: dict, sources: _Sources) -> dict:
    """Give every study and analysis figure the `defaults` it omits; return where each selection's values came from."""
    origins = {}
    for where, selection in _selections(config):
        origins[where] = {}
        for field in SELECTION_DEFAULTS:
            if field in selection:
                origins[where][field] = (*where, field)
            elif field in config["defaults"]:
                selection[field] = copy.deepcopy(config["defaults"][field])
                origins[where][field] = ("defaults", field)
            else:
                raise sources.error((*where, field), f"missing: say which {field} it selects here or once in defaults.{field}")
    return origins


def _check_semantics(config: dict, sources: _Sources, origins: dict) -> None:
    """Checks a schema cannot express: names that must exist, paths that must make sense, kinds that must fit."""
    results_dir = config["results_dir"]
    if not results_dir.strip():
        raise sources.error(["results_dir"], "empty (expected a folder for every output of the study, e.g. results)")
    resolved = Path(results_dir).expanduser().resolve()
    if resolved == Path(resolved.anchor):
        raise sources.error(["results_dir"], f"{results_dir!r} is the filesystem root (expected a folder of its own, e.g. results)")
    for name, recipe in config["optimizers"].items():
        schedule = recipe["schedule"]
        if schedule["name"] == "step" and not schedule.get("milestones"):
            raise sources.error(["optimizers", name, "schedule", "milestones"], "a step schedule needs milestones")
    named = [(("defaults", "optimizers"), config["defaults"].get("optimizers", []), config["optimizers"])]
    for where, selection in _selections(config):
        named.append(((*where, "models"), selection["models"], config["models"]))
        named.append((origins[where]["optimizers"], selection["optimizers"], config["optimizers"]))
    for key, items, known in named:
        for index, item in enumerate(items):
            if item not in known:
                raise sources.error(
                    (*key, index), f"{item!r} is not defined under `{key[-1]}` (defined: {', '.join(sorted(known))})"
                )
    for study_name, study in config["studies"].items():
        if "kind" in study:
            raise sources.error(["studies", study_name, "kind"], "a study has no kind (only analysis figures do)")
    for analysis, settings in config["analyses"].items():
        for name, figure in settings["figures"].items():
            if figure["kind"] not in ANALYSIS_FIGURE_KINDS[analysis]:
                raise sources.error(
                    ["analyses", analysis, "figures", name, "kind"],
                    f"{figure['kind']!r} is not a figure of {analysis} (expected one of {', '.join(ANALYSIS_FIGURE_KINDS[analysis])})",
                )
    official = config["analyses"].get("corruptions", {}).get("official_root")
    if official:
        from vitwork.corruptions import OFFICIAL_IMAGES, validate_official_folder

        try:
            validate_official_folder(official, OFFICIAL_IMAGES)
        except (ValueError, OSError) as error:
            raise sources.error(["analyses", "corruptions", "official_root"], str(error)) from None
    dataset = config["dataset"]
    if dataset["source"] != "synthetic":
        root = dataset.get("root")
        if not root:
            raise sources.error(["dataset", "root"], f"required for source {dataset['source']!r}")
        if not Path(root).exists() and not (dataset["download"] and dataset["source"] != "imagefolder"):
            expected = (
                "an ImageFolder tree with train/ and test/"
                if dataset["source"] == "imagefolder"
                else "a torchvision root, or download: true"
            )
            raise sources.error(["dataset", "root"], f"{root!r} does not exist (expected {expected})")


# -- checks that need the library (torch, timm), cached ------------------------------------------------------


# the sources a cached library answer depends on (the checks, the models, the optimizers, the corruption names)
LIBRARY_SOURCES = ("config.py", "data.py", "optim.py", "objective.py", "models/*.py", "corruptions/__init__.py")


@functools.lru_cache(maxsize=None)
def _library_digest() -> str:
    """Digest of the library sources the cached checks read and of the torch/timm versions."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(p for pattern in LIBRARY_SOURCES for p in package.glob(pattern)):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    for dependency in ("torch", "timm"):
        try:
            digest.update(f"{dependency}={importlib.metadata.version(dependency)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{dependency} absent".encode())
    return digest.hexdigest()[:16]


def _cached(cache_dir: str | Path | None, kind: str, material: Any, compute: Callable[[], Any]) -> Any:
    """compute(), kept as JSON in cache_dir under a hash of (kind, library digest, material); errors are not kept."""
    if cache_dir is None:
        return compute()
    key = hashlib.sha256(json.dumps([kind, _library_digest(), material], sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{kind}-{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    value = compute()
    try:
        from vitwork.io import write_json

        write_json(path, value)
        older = sorted(Path(cache_dir).glob(f"{kind}-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in older[CACHE_ENTRIES_KEPT:]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only working directory: plan without the cache
    return value


def library_facts(cache_dir: str | Path | None = None) -> dict:
    """What planning needs from the library: registered architectures (name -> family) and the corruption names."""

    def compute():
        from vitwork.corruptions import CORRUPTIONS
        from vitwork.models import available_models, model_family

        return {"architectures": {arch: model_family(arch) for arch in available_models()}, "corruptions": list(CORRUPTIONS)}

    return _cached(cache_dir, "library", None, compute)


def _check_library(config: dict, sources: _Sources, cache_dir) -> None:
    """Architectures known, model sizes buildable, optimizer settings taken as written; record families and grids."""
    architectures = library_facts(cache_dir)["architectures"]
    for name, model in config["models"].items():
        if model["arch"] not in architectures:
            raise sources.error(
                ["models", name, "arch"],
                f"unknown architecture {model['arch']!r} (expected one of {', '.join(sorted(architectures))})",
            )
    material = {
        "models": config["models"],
        "optimizers": {name: {k: recipe[k] for k in ("name", "hparams", "decay")} for name, recipe in config["optimizers"].items()},
    }
    checked = _cached(cache_dir, "checks", material, lambda: _build_checks(config, sources))
    for name, model in config["models"].items():
        model["family"] = architectures[model["arch"]]
    for name, recipe in config["optimizers"].items():
        recipe["hparams"] = checked["hparams"][name]


def _build_checks(config: dict, sources: _Sources) -> dict:
    """Build every model on the meta device and every optimizer setting for a tiny model; return the recipes' grids."""
    import torch

    from vitwork.models import create_model
    from vitwork.optim import OptimizerSettingError, check_optimizer_setting, is_known_optimizer, optimizer_defaults

    for name, model in config["models"].items():
        try:
            with torch.device("meta"):  # no memory, ~0.1 s per model
                create_model(model["arch"], num_classes=10, **model["kwargs"])
        except (TypeError, ValueError) as error:
            raise sources.error(["models", name, "kwargs"], f"{model['arch']} cannot be built: {error}") from None
    grids = {}
    for name, recipe in config["optimizers"].items():
        if not is_known_optimizer(recipe["name"]):
            raise sources.error(
                ["optimizers", name, "name"],
                f"unknown optimizer {recipe['name']!r} (expected a name from timm.optim.list_optimizers() or a class of torch.optim)",
            )
        taken = optimizer_defaults(recipe["name"])
        grids[name] = {
            key: _grid_axis(recipe["name"], key, value, taken, sources, ["optimizers", name, "hparams", key])
            for key, value in recipe["hparams"].items()
        }
        for setting in _grid(grids[name]):
            try:
                check_optimizer_setting(recipe["name"], setting, recipe["decay"])
            except OptimizerSettingError as error:
                raise sources.error(["optimizers", name, "hparams", *([error.key] if error.key else [])], str(error)) from None
    return {"hparams": grids}


def _is_number_sequence(value, length: int) -> bool:
    return isinstance(value, list) and len(value) == length and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _grid_axis(optimizer: str, key: str, value, taken: dict, sources: _Sources, where: list):
    """A recipe's value of one setting as written in the grid: a list is a grid axis only where one number is
    expected; a setting that is itself a sequence (betas) is one value, or a list of such values for a grid."""
    if key not in taken:
        raise sources.error(where, f"{optimizer} does not take {key!r} (its settings: {', '.join(sorted(taken))})")
    expected = taken[key]
    if isinstance(expected, (tuple, list)):
        length = len(expected)
        example = f"[{', '.join(map(str, expected))}]"
        if _is_number_sequence(value, length):
            return [value]
        if isinstance(value, list) and value and all(_is_number_sequence(v, length) for v in value):
            return value
        raise sources.error(
            where,
            f"{value!r}: {key} of optimizer {optimizer!r} is a list of {length} numbers, e.g. {example} "
            "(a grid of them: a list of such lists)",
        )
    if isinstance(value, list) and any(isinstance(v, list) for v in value):
        raise sources.error(where, f"{value!r}: {key} of optimizer {optimizer!r} is one value (a list of values is a grid axis)")
    return value


# -- checks over the runs the configuration asks for -----------------------------------------------------------


def _check_runs(config: dict, sources: _Sources, origins: dict, cache_dir) -> None:
    """Checks over the runs: subsets hold a batch, figures draw trained fractions, analysed checkpoints exist."""
    _check_subset_sizes(config, sources, origins, cache_dir)
    trained_fractions = {float(f) for study in config["studies"].values() for f in study["fractions"]}
    for where, selection in _selections(config):
        if where[0] != "analyses":
            continue
        for index, fraction in enumerate(selection["fractions"]):
            if float(fraction) not in trained_fractions:
                raise sources.error(
                    (*origins[where]["fractions"], index),
                    f"{fraction} is a fraction no study trains (the studies train {', '.join(map(str, sorted(trained_fractions)))}); "
                    "add it to a study, or draw a trained one",
                )
    _check_analysed_checkpoints(config, sources)


def _image_folder_class_counts(root: str, cache_dir) -> list[int] | None:
    """Training images per class of an ImageFolder tree, from an index kept per folder state (None: unreadable)."""
    from vitwork.data import image_folder_class_counts

    train = Path(root) / "train"
    try:
        state = [(entry.name, entry.stat().st_mtime_ns) for entry in sorted(os.scandir(train), key=lambda e: e.name) if entry.is_dir()]
    except OSError:
        return None
    counts = _cached(cache_dir, "imagefolder", [str(train.resolve()), state], lambda: image_folder_class_counts(train))
    return list(counts.values())


def _train_class_counts(dataset: dict, cache_dir) -> list[int] | None:
    """Training images per class of the configured dataset, when known without preparing it."""
    source = dataset["source"]
    if source in TRAIN_IMAGES_PER_CLASS:
        classes, per_class = TRAIN_IMAGES_PER_CLASS[source]
        return [per_class] * classes
    if source == "synthetic":
        return [dataset["synthetic"]["train_per_class"]] * dataset["synthetic"]["num_classes"]
    return _image_folder_class_counts(dataset["root"], cache_dir)


def _check_subset_sizes(config: dict, sources: _Sources, origins: dict, cache_dir) -> None:
    """Every fraction keeps an image of every class and at least one batch of every recipe it is trained with."""
    from vitwork.data import kept_per_class

    counts = _train_class_counts(config["dataset"], cache_dir)
    if not counts:
        return
    source = config["dataset"]["source"]
    for where, selection in _selections(config):
        for index, fraction in enumerate(selection["fractions"]):
            key = (*origins[where]["fractions"], index)
            kept = [kept_per_class(count, float(fraction)) for count in counts]
            if min(kept) == 0:
                raise sources.error(
                    key,
                    f"{fraction} of {source} keeps no image of a class of {min(counts)} images "
                    f"(expected a fraction of at least {1 / min(counts):.3g})",
                )
            for recipe in selection["optimizers"]:
                batch_size = config["optimizers"][recipe]["batch_size"]
                if sum(kept) < batch_size:
                    raise sources.error(
                        key,
                        f"{fraction} of {source} keeps {sum(kept)} training images, fewer than one batch of recipe "
                        f"{recipe} (batch_size {batch_size}); expected at least {batch_size} images",
                    )


def _run_length(spec: dict) -> int:
    return spec["optimizer"]["warmup_epochs"] + spec["optimizer"]["epochs"]


def _check_analysed_checkpoints(config: dict, sources: _Sources) -> None:
    """The checkpoint an analysis reads exists in every run it compares, and means what its name says."""
    every_run = all_run_specs(config).values()
    for analysis, settings in config["analyses"].items():
        checkpoint = settings["checkpoint"]
        key = ["analyses", analysis, "checkpoint"]
        for figure in settings["figures"]:
            for spec in analysis_figure_run_specs(config, analysis, figure):
                recipe = spec["optimizer"]["recipe"]
                if checkpoint == "warmup" and spec["optimizer"]["warmup_epochs"] == 0:
                    raise sources.error(
                        key,
                        f"'warmup' but recipe {recipe} (figure {figure}) has no warm-up (warmup_epochs: 0), so it would "
                        "analyse the untrained initialisation; choose an epoch (epoch<N>), last, or init by name",
                    )
                if not checkpoint.startswith("epoch"):
                    continue
                epoch = int(checkpoint[5:])
                if epoch > _run_length(spec):
                    raise sources.error(
                        key,
                        f"{checkpoint!r} is after the end of run {spec['run_id']} of figure {figure} "
                        f"({_run_length(spec)} epochs); expected an epoch every compared run reaches",
                    )
                if epoch not in spec["training"]["checkpoint_epochs"]:
                    raise sources.error(
                        key,
                        f"{checkpoint!r} is not kept by recipe {recipe} (expected init, warmup, last, or epoch<N> "
                        "with N in training.checkpoint_epochs)",
                    )
        if checkpoint.startswith("epoch"):
            # the train rule declares an analysed epoch checkpoint as an output of every run it trains
            epoch = int(checkpoint[5:])
            short = next((spec for spec in every_run if epoch > _run_length(spec) or epoch not in spec["training"]["checkpoint_epochs"]), None)
            if short is not None:
                raise sources.error(
                    key,
                    f"{checkpoint!r} must be kept by every run the study trains (each run's checkpoints are outputs of "
                    f"one train rule), and run {short['run_id']} ({_run_length(short)} epochs, keeping epochs "
                    f"{short['training']['checkpoint_epochs']}) does not keep it",
                )


def analysed_epoch_checkpoints(config: dict) -> list[str]:
    """The `epoch<N>` checkpoints some analysis reads (the train rule declares them as outputs)."""
    return sorted({s["checkpoint"] for s in config["analyses"].values() if s["checkpoint"].startswith("epoch")})


# -- loading, naming and expanding -----------------------------------------------------------------------------


def load_config_file(path: str | Path, cache_dir: str | Path | None = None) -> dict:
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
    return validate_config(config, str(path), cache_dir)


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


def _selections(config: dict) -> Iterable[tuple[tuple, dict]]:
    """(key path, run selection) of every study and every analysis figure."""
    for name, study in config["studies"].items():
        yield ("studies", name), study
    for analysis, settings in config.get("analyses", {}).items():
        for name, figure in settings["figures"].items():
            yield ("analyses", analysis, "figures", name), figure


def study_run_specs(config: dict, study_name: str) -> list[dict]:
    """Every run spec of one study: models x optimizer settings (grids expanded) x fractions x seeds."""
    return selection_run_specs(config, config["studies"][study_name])


def analysis_figure_run_specs(config: dict, analysis: str, figure: str) -> list[dict]:
    """Every run spec an analysis figure draws."""
    return selection_run_specs(config, config["analyses"][analysis]["figures"][figure])


def selection_run_specs(config: dict, study: dict) -> list[dict]:
    """Run specs of a selection of a validated config: models x optimizer settings (grids expanded) x fractions x seeds."""
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
                        "family": model["family"],
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
