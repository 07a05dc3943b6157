"""The real-data miniature (presets/cifar100-mini.yaml) keeps working: a slice of it runs through `claims` on real
CIFAR-100 in a few minutes on 2 cores.

The slice is an override file layered over the preset with a second --configfile (Snakemake merges mappings key by
key and replaces lists): three of the preset's models (ResNet, AlterNet, ViT) in every study and figure, two epochs
per run, one setting per grid recipe, the largest and smallest data fractions, and analysis counts that take
seconds. It is derived from the preset, so a figure added to the preset is in the slice too. The full mini study is
not run in CI.
"""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "presets" / "cifar100-mini.yaml"
SLICE_MODELS = ("resnet", "alternet", "vit")  # every figure kind takes a subset of these (the build-up: alternet)
CHANCE_PCT = 1.0  # 100 classes
ANALYSIS_SIZES = {
    "hessian": {"batches": 1, "max_hvps": 20, "trace_probes": 1},
    "landscape": {"points": 3, "images": 64},
    "fourier": {"images": 100},
    "feature_variance": {"images": 100},
    "noise_frequency": {"images": 200, "frequencies": [0.1, 0.9]},
    "corruptions": {"images": 100},
}


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def sliced(selection: dict) -> dict:
    """A study or figure selection with its models cut to the slice's (all three when it names none of them) and
    its fractions to the largest and smallest."""
    models = [model for model in selection["models"] if model in SLICE_MODELS] or list(SLICE_MODELS)
    fractions = selection.get("fractions")
    return {"models": models, **({"fractions": sorted({max(fractions), min(fractions)}, reverse=True)} if fractions else {})}


def slice_override(preset: dict, data_root: Path) -> dict:
    """The override layered over the preset: the real data, the slice of every selection, two epochs per run, one
    setting per grid recipe (one that learns in two epochs), small analysis counts."""
    two_epochs = {"warmup_epochs": 1, "epochs": 1}
    return {
        "dataset": {"source": "imagefolder", "root": str(data_root), "download": False},
        "training": {"eval_images": 200},
        "optimizers": {
            **{name: two_epochs for name in preset["optimizers"]},
            "sgd": {**two_epochs, "hparams": {"lr": [0.03]}, "schedule": {"milestones": [1]}},
            "adam": {**two_epochs, "hparams": {"lr": [3.0e-3]}},
            "adamw_grid": {**two_epochs, "hparams": {"lr": [3.0e-3], "weight_decay": [0.05]}},
        },
        "studies": {name: sliced(study) for name, study in preset["studies"].items()},
        "analyses": {
            analysis: {**ANALYSIS_SIZES[analysis],
                       "figures": {name: sliced(figure) for name, figure in settings["figures"].items()}}
            for analysis, settings in preset["analyses"].items()
        },
    }


@pytest.mark.slow
def test_mini_preset_slice_runs_through_claims_on_real_cifar100(real_cifar100, tmp_path):
    preset = yaml.safe_load(PRESET.read_text())
    override = tmp_path / "slice.yaml"
    override.write_text(yaml.safe_dump(slice_override(preset, real_cifar100), sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "claims", "--configfile", PRESET, override,
         "-s", REPO / "Snakefile", "--directory", tmp_path],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    results = tmp_path / preset["results_dir"]

    summary = read_csv(results / "summary.csv")
    assert {row["model"] for row in summary} == set(SLICE_MODELS)
    assert {float(row["fraction"]) for row in summary} == {0.2, 0.1, 0.05}  # main, grid, smallest data size
    for row in summary:  # every run finished and learned: far from 1% chance after two epochs
        assert row["status"] == "finished" and float(row["test_acc_pct"]) > 2 * CHANCE_PCT, row

    claims = read_csv(results / "claims.csv")
    assert {int(row["claim"]) for row in claims} == set(range(1, 8))
    assert all(row["verdict"] in {"holds", "fails", "inconclusive", "not run"} for row in claims)
    judged = {row["statement"] for row in claims if row["verdict"] != "not run"}
    # the slice's models and tables make these comparisons (one of each analysis family): judged, not `not run`
    for statement in ("test error: ResNet < ViT", "CIFAR-100-C mean accuracy: AlterNet > ResNet",
                      "NLL_train of ViT rises as the training fraction shrinks",
                      "share of negative Hessian eigenvalues at the end of warm-up: ViT > ResNet",
                      "accuracy drop under the highest-frequency noise (0.9π): ViT < ResNet"):
        assert statement in judged, statement
    assert (results / "claims.md").read_text().count("\n|") >= len(claims) + 1
