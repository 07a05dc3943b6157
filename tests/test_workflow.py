"""The workflow itself: planning the paper-scale study, lint and format, config errors, and the demo study run."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args, cwd=REPO, timeout=3600):
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_paper_scale_study_plans_without_data(tmp_path):
    result = snakemake("-n", "--quiet", "rules", "--configfile", REPO / "config.yaml", "-s", REPO / "Snakefile", "--directory", tmp_path)
    assert result.returncode == 0, result.stderr
    counts = dict(line.split()[:2] for line in result.stdout.splitlines() if line.split()[:1] and line.split()[-1].isdigit() and len(line.split()) == 2)
    assert int(counts["train"]) == 62 and int(counts["prepare_data"]) == 1


def test_lint_and_format(tmp_path):
    lint = snakemake("--lint", "--configfile", REPO / "presets" / "demo.yaml")
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    snakefmt = shutil.which("snakefmt") or str(Path(sys.executable).parent / "snakefmt")
    files = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    formatted = subprocess.run([snakefmt, "--check", *map(str, files)], capture_output=True, text=True)
    assert formatted.returncode == 0, formatted.stderr


def test_bad_config_stops_before_any_job_with_one_line(tmp_path):
    bad = (REPO / "presets" / "demo.yaml").read_text().replace("fractions: [1.0, 0.5, 0.25]", "fractions: [1.0, 0.5, 1.5]")
    (tmp_path / "bad.yaml").write_text(bad)
    result = snakemake("-n", "--configfile", tmp_path / "bad.yaml", "-s", REPO / "Snakefile", "--directory", tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "config error" in line]
    assert lines == [f"vitwork: config error: {tmp_path / 'bad.yaml'}: studies.data_size.fractions[2]: 1.5 is greater than the maximum of 1"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Run the whole demo study once (the same command as the README's), in a scratch directory."""
    workdir = tmp_path_factory.mktemp("demo")
    result = snakemake("--cores", "2", "--configfile", REPO / "presets" / "demo.yaml", "-s", REPO / "Snakefile", "--directory", workdir)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir / "results" / "demo"


@pytest.mark.slow
def test_demo_trains_every_model_family(demo_run):
    families = {json.loads(p.read_text())["spec"]["model"]["family"] for p in demo_run.glob("runs/**/run.json")}
    assert families == {"resnet", "preact_resnet", "alternet", "vit_local", "vit"}  # PiT and Swin: config.yaml only
    summary = read_csv(demo_run / "summary.csv")
    # 28 runs of the training studies + two smaller AlterNets, AlterNet on 2 smaller fractions
    assert len(summary) == len(list(demo_run.glob("runs/**/run.json"))) == 28 + 4
    resnet = next(r for r in summary if r["run_id"] == "resnet/adamw-lr2e-3-wd0.05/f1.0/s0")
    assert float(resnet["test_acc_pct"]) > 50  # 10 classes: chance is 10%
    assert (demo_run / "summary.md").read_text().count("\n") >= 2 + 32


@pytest.mark.slow
def test_demo_figures_hold_the_runs_numbers(demo_run):
    figures = demo_run / "figures"
    for name in ("inductive_bias", "data_size", "optimizer_grid", "learning_curves", "time_to_accuracy"):
        for ext in ("png", "pdf", "csv"):
            assert (figures / f"{name}.{ext}").stat().st_size > 0
    data_size = read_csv(figures / "data_size.csv")
    assert {(r["model"], float(r["fraction"])) for r in data_size} == {(m, f) for m in ("resnet", "vit") for f in (1.0, 0.5, 0.25)}
    run = json.loads((demo_run / "runs/vit/adamw-lr2e-3-wd0.05/f0.5/s0/run.json").read_text())
    row = next(r for r in data_size if r["model"] == "vit" and float(r["fraction"]) == 0.5)
    assert float(row["train_nll"]) == pytest.approx(run["final"]["train_nll"])
    grid = read_csv(figures / "optimizer_grid.csv")
    assert len(grid) == 18
    diverged = [r for r in grid if r["status"] == "diverged"]
    assert diverged and all(float(r["lr"]) == 30.0 for r in diverged)  # SGD at lr 30 blows up, and shows it
    assert len(read_csv(figures / "inductive_bias.csv")) >= 5


@pytest.mark.slow
def test_demo_report_builds(demo_run, tmp_path):
    workdir = demo_run.parents[1]
    result = snakemake("--configfile", REPO / "presets" / "demo.yaml", "-s", REPO / "Snakefile", "--directory", workdir, "--report", workdir / "report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "report.html").stat().st_size > 10_000


@pytest.mark.slow
def test_real_cifar100_subset_trains_far_above_chance(real_cifar100, tmp_path):
    """10% of the real CIFAR-100 (50 images per class), a micro ResNet, a short CPU budget: far above 1% chance."""
    from vitwork.config import study_run_specs, validate_config
    from vitwork.data import prepare_dataset, write_subset
    from vitwork.train import train_run

    config = validate_config(
        {
            "dataset": {"source": "imagefolder", "root": str(real_cifar100)},
            "models": {"resnet": {"arch": "vitwork_resnet", "kwargs": {"block": "basic", "layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128], "stem_width": 16}}},
            "training": {"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "randaugment": None, "drop_path_rate": 0.0},
            "optimizers": {"adamw": {"name": "adamw", "hparams": {"lr": 3e-3, "weight_decay": 0.05}, "batch_size": 64, "epochs": 7, "warmup_epochs": 1}},
            "studies": {"data_size": {"models": ["resnet"], "optimizers": ["adamw"], "fractions": [0.1]}},
        },
        "test",
    )
    data = tmp_path / "data"
    meta = prepare_dataset(config["dataset"], data / "train.npz", data / "test.npz", data / "meta.json")
    assert meta["sizes"] == {"train": 50000, "test": 10000} and meta["num_classes"] == 100
    assert meta["mean"] == pytest.approx([0.5071, 0.4865, 0.4409], abs=1e-3)
    write_subset(data / "train.npz", 0.1, 0, data / "subset.npy")
    spec = study_run_specs(config, "data_size")[0]
    summary = train_run(spec, data / "train.npz", data / "test.npz", data / "meta.json", data / "subset.npy", tmp_path / "run", device="cpu", threads=2, progress=False)
    print(f"real CIFAR-100, 10% subset: test accuracy {summary['final']['test_acc']:.3f} after {summary['wall_time_s']:.0f} s")
    assert summary["status"] == "finished" and summary["final"]["test_acc"] > 0.10


def analysis_rows(demo_run, analysis, run_id, checkpoint):
    return read_csv(demo_run / "analysis" / analysis / run_id / f"{checkpoint}.csv")


@pytest.mark.slow
def test_demo_analysis_figures_hold_the_analyses_numbers(demo_run):
    figures = demo_run / "figures"
    names = [p.stem for p in figures.glob("*.png")]
    for analysis in ("hessian", "landscape", "fourier", "feature_variance", "noise_frequency", "corruptions"):
        assert any(name.startswith(analysis) for name in names), analysis
    for name in names:
        assert (figures / f"{name}.pdf").stat().st_size > 0 and (figures / f"{name}.csv").stat().st_size > 0

    vit = "vit/adamw-lr2e-3-wd0.05/f1.0/s0"
    # Hessian: the figure's counts are those of the run's eigenvalue table (2 batches x top-5 by magnitude)
    spectra = [r for r in read_csv(figures / "hessian_inductive_bias.csv") if r["kind"] == "run"]
    assert {(r["model"], float(r["fraction"])) for r in spectra} == {(m, f) for m in ("resnet", "vit") for f in (1.0, 0.25)}
    top = next(r for r in spectra if r["run_id"] == vit and r["which"] == "top_magnitude")
    values = [float(r["value"]) for r in analysis_rows(demo_run, "hessian", vit, "warmup")
              if r["which"] == "top_magnitude" and r["part"] == "objective"]
    assert int(top["n_values"]) == len(values) == 10 and int(top["n_negative"]) == sum(v < 0 for v in values)
    grid = read_csv(figures / "hessian_optimizer_grid.csv")
    assert len(grid) == 18 and {r["status"] for r in grid if float(r["lr"]) == 30.0} == {"diverged"}

    # landscape: the centre of the plane is the checkpoint's own loss
    plane = {(float(r["x"]), float(r["y"])): float(r["loss"]) for r in analysis_rows(demo_run, "landscape", vit, "last")}
    summary = next(r for r in read_csv(figures / "landscape_inductive_bias.csv") if r["kind"] == "run" and r["run_id"] == vit)
    assert float(summary["centre_loss"]) == pytest.approx(plane[(0.0, 0.0)]) and len(plane) == 11 * 11

    # Fourier: ViT has MSA and MLP blocks; the plotted value is the table's value at the highest frequency
    depth = [r for r in read_csv(figures / "fourier_depth.csv") if r["run_id"] == vit]
    assert {"msa", "mlp"} <= {r["kind"] for r in depth}
    table = analysis_rows(demo_run, "fourier", vit, "last")
    last_block = max(table, key=lambda r: (int(r["block_index"]), float(r["frequency"])))
    assert float(depth[-1]["high_frequency_delta_log_amplitude"]) == pytest.approx(float(last_block["delta_log_amplitude"]))
    assert len(read_csv(figures / "feature_variance_depth.csv")) == len(read_csv(figures / "fourier_depth.csv"))

    # noise frequency: every model at the 9 frequencies, the change is accuracy minus clean accuracy
    noise = read_csv(figures / "noise_frequency_models.csv")
    assert len(noise) == 5 * 9
    for row in noise:
        assert float(row["delta_acc_pp"]) == pytest.approx(100 * (float(row["acc_fraction"]) - float(row["clean_acc_fraction"])))

    # corruptions: robustness is the mean accuracy over the 75 generated sets of the run's table
    scatter = read_csv(figures / "corruptions_scatter.csv")
    assert len(scatter) == 5 and all(int(r["n_sets"]) == 75 for r in scatter)
    rows = analysis_rows(demo_run, "corruptions", vit, "last")
    corrupted = [float(r["acc"]) for r in rows if r["corruption"] != "clean"]
    assert float(next(r for r in scatter if r["run_id"] == vit)["robustness"]) == pytest.approx(sum(corrupted) / 75)
    assert sorted(int(r["num_msa"]) for r in read_csv(figures / "corruptions_buildup.csv")) == [0, 1, 2]
    assert len(list((demo_run / "corruptions").glob("*.npy"))) == 15 + 1
    assert "diverged" in {r["status"] for r in read_csv(figures / "corruptions_optimizer_grid.csv")}
