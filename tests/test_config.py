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
