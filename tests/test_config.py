"""Config validation (one clear line per error) and the expansion of studies into runs."""

import copy

import pytest
import yaml

from vitwork.config import ConfigError, all_run_specs, format_number, load_config_file, study_run_specs, validate_config


@pytest.fixture
def demo(repo):
    return yaml.safe_load((repo / "presets" / "demo.yaml").read_text())


def error_of(config, source="demo.yaml"):
    with pytest.raises(ConfigError) as info:
        validate_config(config, source)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{source}: ")
    return message


def test_paper_config_expands_into_the_studies_runs(repo):
    config = load_config_file(repo / "config.yaml")
    runs = all_run_specs(config)
    grid = study_run_specs(config, "optimizer_grid")
    # 2 models x (sgd 3x2 + adam 3x2 + adamw 3x2) settings
    assert len(grid) == 2 * (6 + 6 + 6)
    # inductive bias (8) + data size (2 models x 4 more fractions; the 1.0 runs are shared) + grid, then the runs
    # only analyses need: ViT-Ti GAP, local 3x3, the 4 smaller AlterNets, AlterNet on 4 smaller fractions
    assert len(runs) == 8 + 2 * 4 + len(grid) + 2 + 4 + 4
    vit = runs["vit_ti/adamw-lr1.25e-4-wd0.05/f1.0/s0"]
    assert vit["model"]["family"] == "vit"
    assert vit["optimizer"]["warmup_epochs"] == 5 and vit["optimizer"]["epochs"] == 300
    assert vit["training"]["randaugment"] == {"law": "timm", "num_ops": 2, "magnitude": 9, "magnitude_std": 1.0}
    assert "resnet50/sgd_grid-lr0.03-wd5e-5-m0.9/f1.0/s0" in runs


def test_defaults_are_filled_and_recipe_training_overrides_only_its_keys(demo):
    config = validate_config(demo, "demo.yaml")
    assert config["training"]["mix_prob"] == 1.0  # a default
    sgd = config["optimizers"]["sgd"]["training"]
    assert sgd["grad_clip_norm"] is None  # the recipe's own value
    assert sgd["crop_padding"] == demo["training"]["crop_padding"]  # the shared value, not the schema default
    assert config["optimizers"]["adamw"]["schedule"] == {"name": "cosine", "gamma": 0.2, "min_lr": 0.0}


def test_grid_runs_have_distinct_stable_ids(demo):
    config = validate_config(demo, "demo.yaml")
    ids = [spec["run_id"] for spec in study_run_specs(config, "optimizer_grid")]
    assert len(ids) == len(set(ids)) == 2 * (3 + 2 + 4)
    assert "vit/adamw_grid-lr3e-4-wd0.5/f1.0/s0" in ids
    assert ids == [spec["run_id"] for spec in study_run_specs(validate_config(demo, "x"), "optimizer_grid")]


@pytest.mark.parametrize(
    "value, text",
    [(1.25e-4, "1.25e-4"), (0.002, "2e-3"), (0.05, "0.05"), (0.03, "0.03"), (0.1, "0.1"), (5e-4, "5e-4"), (0.0, "0"), (1, "1"), (30.0, "30"), (True, "true")],
)
def test_format_number(value, text):
    assert format_number(value) == text


def test_unknown_key_names_the_section_and_the_allowed_keys(demo):
    demo["training"]["mixup"] = 0.2
    message = error_of(demo)
    assert "training: unknown key 'mixup'" in message and "mixup_alpha" in message


def test_wrong_type(demo):
    demo["optimizers"]["adamw"]["batch_size"] = "fifty"
    assert "optimizers.adamw.batch_size: 'fifty' is not of type 'integer'" in error_of(demo)


def test_unknown_model_architecture(demo):
    demo["models"]["vit"]["arch"] = "vitwork_vit_huge"
    assert "models.vit.arch: unknown architecture 'vitwork_vit_huge'" in error_of(demo)


def test_unknown_optimizer(demo):
    demo["optimizers"]["adam"]["name"] = "adamzz"
    assert "optimizers.adam.name: unknown optimizer 'adamzz'" in error_of(demo)


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.1])
def test_fraction_outside_unit_interval(demo, fraction):
    demo["studies"]["data_size"]["fractions"] = [1.0, fraction]
    assert "studies.data_size.fractions[1]" in error_of(demo)


def test_empty_grid_and_empty_study(demo):
    broken = copy.deepcopy(demo)
    broken["optimizers"]["adam"]["hparams"]["lr"] = []
    assert "optimizers.adam.hparams.lr" in error_of(broken)
    demo["studies"]["inductive_bias"]["models"] = []
    assert "studies.inductive_bias.models" in error_of(demo)


def test_study_naming_an_undefined_model(demo):
    demo["studies"]["data_size"]["models"] = ["resnet", "deit"]
    assert "studies.data_size.models[1]: 'deit' is not defined under `models`" in error_of(demo)


def test_missing_dataset_path(demo, tmp_path):
    demo["dataset"] = {"source": "imagefolder", "root": str(tmp_path / "nowhere")}
    assert "dataset.root:" in error_of(demo) and "does not exist" in error_of(demo)
    demo["dataset"] = {"source": "cifar100", "root": str(tmp_path / "nowhere"), "download": False}
    assert "dataset.root:" in error_of(demo)


def test_step_schedule_needs_milestones(demo):
    demo["optimizers"]["sgd"]["schedule"] = {"name": "step"}
    assert "optimizers.sgd.schedule.milestones" in error_of(demo)


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("models: [\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config_file(path)


def test_analysis_figures_add_their_runs_and_check_their_kind(demo):
    config = validate_config(demo, "demo.yaml")
    from vitwork.config import analysis_figure_run_specs

    runs = all_run_specs(config)
    assert "alternet_msa1/adamw-lr2e-3-wd0.05/f1.0/s0" in runs  # needed only by the corruption build-up figure
    hessian_runs = {s["run_id"] for name in config["analyses"]["hessian"]["figures"] for s in analysis_figure_run_specs(config, "hessian", name)}
    assert len(hessian_runs) == 2 * 2 + 1 + 1 + 1 + 18  # ResNet/ViT x 2 fractions, GAP, local, AlterNet, the grid
    assert config["analyses"]["hessian"]["method"] == "lanczos" and config["analyses"]["landscape"]["checkpoint"] == "last"
    broken = copy.deepcopy(demo)
    broken["analyses"]["fourier"]["figures"]["spectra"]["kind"] = "surfaces"
    assert "analyses.fourier.figures.spectra.kind: 'surfaces' is not a figure of fourier" in error_of(broken)
    broken = copy.deepcopy(demo)
    broken["analyses"]["hessian"]["checkpoint"] = "epoch3"
    assert "analyses.hessian.checkpoint: 'epoch3' is not kept" in error_of(broken)
    broken = copy.deepcopy(demo)
    broken["studies"]["data_size"]["kind"] = "spectra"
    assert "studies.data_size.kind" in error_of(broken)


def test_official_corruption_folder_is_checked(demo, tmp_path):
    demo["analyses"]["corruptions"]["official_root"] = str(tmp_path)
    message = error_of(demo)
    assert message.startswith("demo.yaml: analyses.corruptions.official_root: ") and "gaussian_noise.npy" in message


def test_model_size_arguments_are_checked_before_any_job(demo):
    demo["models"]["vit"]["kwargs"]["patch_sz"] = 4
    assert "models.vit.kwargs: vitwork_vit cannot be built:" in error_of(demo) and "patch_sz" in error_of(demo)
    demo["models"]["vit"]["kwargs"].pop("patch_sz")
    demo["models"]["alternet"]["kwargs"]["msa_per_stage"] = [0, 0, 1, 9]
    assert "models.alternet.kwargs:" in error_of(demo)


def test_a_list_valued_optimizer_argument_is_a_list_of_lists(demo):
    demo["optimizers"]["adamw"]["hparams"]["betas"] = [[0.9, 0.99]]
    specs = study_run_specs(validate_config(demo, "demo.yaml"), "inductive_bias")
    assert all(s["optimizer"]["hparams"]["betas"] == [0.9, 0.99] for s in specs)  # one setting, not a grid axis
    assert specs[0]["run_id"] == "resnet/adamw-lr2e-3-wd0.05-betas0.9_0.99/f1.0/s0"
    import torch

    from vitwork.optim import build_optimizer

    optimizer = build_optimizer(torch.nn.Linear(2, 2), "adamw", specs[0]["optimizer"]["hparams"])
    assert tuple(optimizer.param_groups[0]["betas"]) == (0.9, 0.99)


# -- issue 14: configs that were accepted and then failed or misled ----------------------------------------


@pytest.fixture
def paper(repo):
    return yaml.safe_load((repo / "config.yaml").read_text())


def test_an_argument_the_optimizer_ignores_is_rejected(demo):
    demo["optimizers"]["adamw"]["hparams"]["momentum"] = 0.9  # timm's factory drops it for adamw
    message = error_of(demo)
    assert message.startswith("demo.yaml: optimizers.adamw.hparams.momentum: adamw does not take 'momentum'")
    assert "betas" in message  # what it does take


def test_an_argument_the_optimizer_does_not_know_is_rejected(demo):
    demo["optimizers"]["adam"]["hparams"]["betas1"] = 0.9
    assert "optimizers.adam.hparams.betas1: adam does not take 'betas1'" in error_of(demo)


def test_betas_is_one_pair_and_a_list_of_pairs_is_a_grid(demo):
    demo["optimizers"]["adam"]["hparams"]["betas"] = [0.9, 0.999]
    specs = study_run_specs(validate_config(demo, "demo.yaml"), "optimizer_grid")
    adam = [s for s in specs if s["optimizer"]["recipe"] == "adam"]
    assert len(adam) == 2 * 2 and {tuple(s["optimizer"]["hparams"]["betas"]) for s in adam} == {(0.9, 0.999)}
    assert "vit/adam-lr3e-4-wd5e-4-betas0.9_0.999/f1.0/s0" in {s["run_id"] for s in adam}
    demo["optimizers"]["adam"]["hparams"]["betas"] = [[0.9, 0.999], [0.5, 0.9]]
    specs = study_run_specs(validate_config(demo, "demo.yaml"), "optimizer_grid")
    assert len([s for s in specs if s["optimizer"]["recipe"] == "adam"]) == 2 * 2 * 2


@pytest.mark.parametrize("betas", [0.9, [0.9], [0.9, 0.99, 0.999], [[0.9, 0.99], 0.5]])
def test_betas_that_is_not_a_pair_is_rejected(demo, betas):
    demo["optimizers"]["adam"]["hparams"]["betas"] = betas
    message = error_of(demo)
    assert message.startswith("demo.yaml: optimizers.adam.hparams.betas: ")
    assert "betas of optimizer 'adam' is a list of 2 numbers, e.g. [0.9, 0.999]" in message


def test_a_list_of_lists_where_one_number_is_expected_is_rejected(demo):
    demo["optimizers"]["sgd"]["hparams"]["momentum"] = [[0.9, 0.8]]
    assert error_of(demo) == (
        "demo.yaml: optimizers.sgd.hparams.momentum: [[0.9, 0.8]]: momentum of optimizer 'momentum' is one value "
        "(a list of values is a grid axis)"
    )


def test_a_value_the_optimizer_rejects_names_the_recipe(demo):
    demo["optimizers"]["adamw"]["hparams"]["eps"] = -1.0
    message = error_of(demo)
    assert message.startswith("demo.yaml: optimizers.adamw.hparams: adamw cannot be built with") and "epsilon" in message


def test_a_negative_learning_rate_says_what_is_wrong(demo):
    demo["optimizers"]["adamw"]["hparams"]["lr"] = -0.001
    message = error_of(demo)
    assert message == (
        "demo.yaml: optimizers.adamw.hparams.lr: -0.001 is less than or equal to the minimum of 0 "
        "(expected a number > 0, or a list of them (a grid axis))"
    )
    demo["optimizers"]["adamw"]["hparams"]["lr"] = [0.1, -0.001]
    assert "optimizers.adamw.hparams.lr: -0.001 is less than or equal to the minimum of 0" in error_of(demo)


@pytest.mark.parametrize("results_dir", ["", "  ", "/", "/.."])
def test_results_dir_must_be_a_folder_of_its_own(demo, results_dir):
    demo["results_dir"] = results_dir
    message = error_of(demo)
    assert message.startswith("demo.yaml: results_dir: ") and "expected a folder" in message


def test_an_analysis_checkpoint_some_compared_run_never_reaches(paper):
    paper["analyses"]["hessian"]["checkpoint"] = "epoch200"  # the optimizer-grid figure compares 100-epoch grid runs
    message = error_of(paper, "config.yaml")
    assert message.startswith("config.yaml: analyses.hessian.checkpoint: 'epoch200' is after the end of run ")
    assert "sgd_grid" in message and "(101 epochs)" in message and "figure optimizer_grid" in message


def test_an_analysis_checkpoint_that_is_not_kept(paper):
    paper["analyses"]["fourier"]["checkpoint"] = "epoch60"
    assert "analyses.fourier.checkpoint: 'epoch60' is not kept by recipe adamw" in error_of(paper, "config.yaml")


def test_an_analysed_epoch_checkpoint_must_be_kept_by_every_trained_run(paper):
    # the landscape compares 305-epoch AdamW runs only, but the 101-epoch grid runs share the train rule's outputs
    paper["analyses"]["landscape"]["checkpoint"] = "epoch200"
    message = error_of(paper, "config.yaml")
    assert message.startswith("config.yaml: analyses.landscape.checkpoint: 'epoch200' must be kept by every run")
    paper["analyses"]["landscape"]["checkpoint"] = "epoch100"
    config = validate_config(paper, "config.yaml")
    from vitwork.config import analysed_epoch_checkpoints

    assert analysed_epoch_checkpoints(config) == ["epoch100"]


def test_warmup_checkpoint_of_a_recipe_without_warm_up_is_rejected(paper):
    paper["optimizers"]["adam_grid"]["warmup_epochs"] = 0
    message = error_of(paper, "config.yaml")
    assert message.startswith("config.yaml: analyses.hessian.checkpoint: 'warmup' but recipe adam_grid")
    assert "no warm-up" in message and "choose an epoch" in message
    paper["analyses"]["hessian"]["checkpoint"] = "init"  # asked for by its name: fine
    validate_config(paper, "config.yaml")


def test_the_authors_sgd_recipes_warm_up_for_one_epoch(repo):
    config = load_config_file(repo / "config.yaml")
    for recipe in ("sgd", "sgd_grid"):
        assert config["optimizers"][recipe]["warmup_epochs"] == 1  # the authors' 200 epochs come after it
    assert config["optimizers"]["sgd"]["epochs"] == 200 and config["optimizers"]["sgd_grid"]["epochs"] == 100


@pytest.mark.parametrize(
    "source, study, fraction, text",
    [
        ("cifar100", "data_size", 0.001, "0.001 of cifar100 keeps no image of a class of 500 images"),
        ("cifar100", "optimizer_grid", 0.002, "0.002 of cifar100 keeps 100 training images, fewer than one batch of recipe sgd_grid (batch_size 128)"),
        ("cifar10", "data_size", 0.0015, "0.0015 of cifar10 keeps 70 training images, fewer than one batch of recipe adamw (batch_size 96)"),
    ],
)
def test_a_fraction_smaller_than_one_batch_is_rejected(paper, source, study, fraction, text):
    paper["dataset"] = {"source": source, "root": "data", "download": True}
    paper["studies"][study].setdefault("fractions", [1.0]).append(fraction)
    index = len(paper["studies"][study]["fractions"]) - 1
    message = error_of(paper, "config.yaml")
    assert message.startswith(f"config.yaml: studies.{study}.fractions[{index}]: ") and text in message


def test_a_fraction_of_the_synthetic_data_smaller_than_one_batch(demo):
    demo["defaults"]["fractions"] = [0.02]  # 4 of 200 images per class x 10 classes < a batch of 50
    demo["studies"]["data_size"]["fractions"] = [1.0, 0.5, 0.25]
    message = error_of(demo)
    assert message.startswith("demo.yaml: defaults.fractions[0]: 0.02 of synthetic keeps 40 training images")


def _image_tree(root, per_class):
    for name, count in per_class.items():
        for split in ("train", "test"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (root / "train" / name / f"{i}.png").write_bytes(b"")  # counted by name, never read at planning


def test_a_fraction_of_an_image_folder_is_checked_from_its_cached_index(demo, tmp_path, monkeypatch):
    _image_tree(tmp_path / "tree", {"a": 40, "b": 30})
    demo["dataset"] = {"source": "imagefolder", "root": str(tmp_path / "tree")}
    demo["studies"]["data_size"]["fractions"] = [1.0, 0.5]  # 20 + 15 images < a batch of 50
    cache = tmp_path / "cache"
    message = error_of(demo)
    assert "studies.data_size.fractions[1]: 0.5 of imagefolder keeps 35 training images" in message
    with pytest.raises(ConfigError):
        validate_config(demo, "demo.yaml", cache_dir=cache)
    import vitwork.data

    def not_again(root):
        raise AssertionError("the index was counted again")

    monkeypatch.setattr(vitwork.data, "image_folder_class_counts", not_again)
    with pytest.raises(ConfigError, match="keeps 35 training images"):
        validate_config(demo, "demo.yaml", cache_dir=cache)  # from the cached index
    (tmp_path / "tree" / "train" / "b" / "30.png").write_bytes(b"")  # the folder changed: counted again
    with pytest.raises(AssertionError, match="counted again"):
        validate_config(demo, "demo.yaml", cache_dir=cache)


# -- issue 16: settings said once ----------------------------------------------------------------------------


def test_defaults_are_said_once_for_every_study_and_figure(demo):
    demo["defaults"] = {"fractions": [0.5], "seeds": [1, 2], "optimizers": ["adamw"]}
    for study in demo["studies"].values():
        study.pop("fractions", None)
    for settings in demo["analyses"].values():
        for figure in settings["figures"].values():
            figure.pop("fractions", None)
            figure.pop("optimizers", None)
    demo["studies"]["inductive_bias"].pop("optimizers", None)
    config = validate_config(demo, "demo.yaml")
    runs = all_run_specs(config)
    assert {(s["fraction"], s["seed"]) for s in runs.values()} == {(0.5, 1), (0.5, 2)}
    assert {s["optimizer"]["recipe"] for s in study_run_specs(config, "inductive_bias")} == {"adamw"}
    assert {s["optimizer"]["recipe"] for s in study_run_specs(config, "optimizer_grid")} == {"sgd", "adam", "adamw_grid"}


def test_a_selection_without_recipes_and_no_default_is_rejected(demo):
    demo["defaults"].pop("optimizers")
    demo["studies"]["inductive_bias"].pop("optimizers", None)  # the demo selects it by default
    assert "studies.inductive_bias.optimizers: missing: say which optimizers it selects here or once in defaults.optimizers" in error_of(demo)


def test_a_figure_drawing_a_fraction_no_study_trains_is_rejected(demo):
    demo["analyses"]["hessian"]["figures"]["inductive_bias"]["fractions"] = [1.0, 0.1]
    message = error_of(demo)
    assert message.startswith("demo.yaml: analyses.hessian.figures.inductive_bias.fractions[1]: 0.1 is a fraction no study trains")
    demo["analyses"]["hessian"]["figures"]["inductive_bias"]["fractions"] = [1.0, 0.25]
    demo["defaults"]["fractions"] = [0.1]  # the studies now train 0.1 (and data_size its own), figures too by default
    demo["studies"]["data_size"]["fractions"] = [0.1, 0.05]
    message = error_of(demo)
    assert "analyses.hessian.figures.inductive_bias.fractions[0]: 1.0 is a fraction no study trains" in message


def test_an_error_names_the_layered_file_that_sets_the_key(demo, tmp_path):
    from snakemake.utils import update_config

    base, overlay = tmp_path / "demo.yaml", tmp_path / "overlay.yaml"
    base.write_text(yaml.safe_dump(demo))
    overlay.write_text("optimizers:\n  adamw:\n    hparams: {momentum: 0.9}\n")
    merged = copy.deepcopy(demo)
    update_config(merged, yaml.safe_load(overlay.read_text()))
    with pytest.raises(ConfigError, match=rf"^{overlay}: optimizers.adamw.hparams.momentum: "):
        validate_config(merged, [str(base), str(overlay)])
    merged["studies"]["data_size"]["fractions"] = [1.0, 1.5]  # set in the base file only
    with pytest.raises(ConfigError, match=rf"^{base}: studies.data_size.fractions\[1\]"):
        validate_config(merged, [str(base), str(overlay)])



def test_an_error_names_the_command_line_when_config_sets_the_key(demo, tmp_path):
    """`--config 'dataset={root: ...}'` wins over every file: its mistake is the command line's, not the preset's."""
    base = tmp_path / "demo.yaml"
    base.write_text(yaml.safe_dump(demo))
    overrides = {"dataset": {"source": "imagefolder", "root": str(tmp_path / "nowhere")}}
    merged = {**copy.deepcopy(demo), "dataset": overrides["dataset"]}
    with pytest.raises(ConfigError, match=rf"^--config: dataset.root: '{tmp_path / 'nowhere'}' does not exist"):
        validate_config(merged, [str(base)], overrides=overrides)
    merged["results_dir"] = ""  # a key the command line leaves alone is still the file's
    with pytest.raises(ConfigError, match=rf"^{base}: results_dir: empty"):
        validate_config(merged, [str(base)], overrides=overrides)

def test_library_checks_are_cached_and_planning_then_imports_no_torch(repo, tmp_path):
    """The second validation of the same config reads the cache: no torch, timm, torchvision, matplotlib, scipy."""
    import subprocess
    import sys

    program = (
        "import sys; from vitwork.config import load_config_file; "
        f"load_config_file({str(repo / 'config.yaml')!r}, cache_dir={str(tmp_path)!r}); "
        "print(sorted(m for m in ('torch', 'timm', 'torchvision', 'matplotlib', 'scipy') if m in sys.modules))"
    )
    first = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert "torch" in first.stdout and second.stdout.strip() == "[]"
    assert {p.name.split("-")[0] for p in tmp_path.glob("*.json")} == {"library", "checks"}


def test_an_undefined_default_recipe_is_named_where_it_is_set(demo):
    demo["defaults"]["optimizers"] = ["adamw", "lion_recipe"]
    assert "defaults.optimizers[1]: 'lion_recipe' is not defined under `optimizers`" in error_of(demo)
