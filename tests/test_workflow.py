"""The workflow itself: planning the paper-scale study, lint and format, config errors, and the demo study run."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
HEAVY_MODULES = ("torch", "timm", "torchvision", "matplotlib", "scipy")


def snakemake(*args, cwd=REPO, timeout=3600, env=None):
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


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
    demo = yaml.safe_load((REPO / "presets" / "demo.yaml").read_text())["analyses"]
    noise = read_csv(figures / "noise_frequency_models.csv")
    assert len(noise) == len(demo["noise_frequency"]["figures"]["models"]["models"]) * 9
    for row in noise:
        assert float(row["delta_acc_pp"]) == pytest.approx(100 * (float(row["acc_fraction"]) - float(row["clean_acc_fraction"])))

    # corruptions: robustness is the mean accuracy over the 75 generated sets of the run's table
    scatter = read_csv(figures / "corruptions_scatter.csv")
    assert len(scatter) == len(demo["corruptions"]["figures"]["scatter"]["models"]) and all(int(r["n_sets"]) == 75 for r in scatter)
    rows = analysis_rows(demo_run, "corruptions", vit, "last")
    corrupted = [float(r["acc"]) for r in rows if r["corruption"] != "clean"]
    assert float(next(r for r in scatter if r["run_id"] == vit)["robustness"]) == pytest.approx(sum(corrupted) / 75)
    assert sorted(int(r["num_msa"]) for r in read_csv(figures / "corruptions_buildup.csv")) == [0, 1, 2]
    assert len(list((demo_run / "corruptions").glob("*.npy"))) == 15 + 1
    assert "diverged" in {r["status"] for r in read_csv(figures / "corruptions_optimizer_grid.csv")}


# -- issue 14: bad configs stop before any job, one line naming the file and the key --------------------------


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
    """One working directory for the dry-runs of config.yaml: its plan cache is filled once and then reused."""
    return tmp_path_factory.mktemp("plan")


@pytest.mark.parametrize(
    "overlay, key",
    [
        ("optimizers: {adamw: {hparams: {momentum: 0.9}}}", "bad.yaml: optimizers.adamw.hparams.momentum: adamw does not take 'momentum'"),
        ('results_dir: ""', "bad.yaml: results_dir: empty"),
        ("studies: {data_size: {fractions: [1.0, 0.001]}}", "bad.yaml: studies.data_size.fractions[1]: 0.001 of cifar100 keeps no image"),
        ("analyses: {hessian: {checkpoint: epoch200}}", "bad.yaml: analyses.hessian.checkpoint: 'epoch200' is after the end of run"),
        # the key is config.yaml's; the line names the recipe the overlay changed
        ("optimizers: {adam_grid: {warmup_epochs: 0}}", "config.yaml: analyses.hessian.checkpoint: 'warmup' but recipe adam_grid"),
    ],
)
def test_a_bad_config_layered_over_config_yaml_stops_before_any_job(plan_dir, overlay, key):
    bad = plan_dir / "bad.yaml"
    bad.write_text(overlay + "\n")
    result = snakemake("-n", "-s", REPO / "Snakefile", "--directory", plan_dir, "--configfile", REPO / "config.yaml", bad)
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    assert "Job stats" not in result.stdout + result.stderr  # nothing planned
    lines = [line for line in result.stderr.splitlines() if "config error" in line]
    folder = plan_dir if key.startswith("bad.yaml") else REPO
    assert len(lines) == 1 and lines[0].startswith(f"vitwork: config error: {folder / key}"), result.stderr[-2000:]


def test_planning_imports_no_heavy_library_once_checked(plan_dir):
    """After the first plan of a config (its library checks cached), a plan imports none of torch, timm, ..."""
    args = ["-X", "importtime", "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "--directory", str(plan_dir), "--configfile", str(REPO / "config.yaml")]
    first = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    second = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    assert first.returncode == second.returncode == 0, second.stderr[-3000:]

    def imported(stderr):
        names = {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
        return sorted({name.split(".")[0] for name in names} & set(HEAVY_MODULES))

    assert imported(second.stderr) == [] and "train" in second.stdout
    assert list((plan_dir / ".snakemake" / "vitwork").glob("checks-*.json"))


# -- issue 14: analysis checkpoints are inputs ------------------------------------------------------------------


def _finished_run(workdir, run_id, analysis_table):
    """The files of a prepared dataset, one finished run and its Fourier table, each newer than its inputs."""
    results = workdir / "results" / "demo"
    run = results / "runs" / run_id
    stages = [
        [results / "data" / name for name in ("train.npz", "test.npz", "meta.json")],
        [results / "data" / "subsets" / "f1.0_s0.npy"],
        [run / "run.json", run / "metrics.jsonl", *(run / "checkpoints" / f"{c}.pt" for c in ("init", "warmup", "last"))],
        [analysis_table],
    ]
    now = time.time()
    for age, paths in zip((400, 300, 200, 100), stages):
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            os.utime(path, (now - age, now - age))
    return run / "checkpoints" / "last.pt"


def test_a_missing_or_retrained_checkpoint_reruns_the_analysis_that_reads_it(tmp_path):
    run_id = "vit/adamw-lr2e-3-wd0.05/f1.0/s0"
    table = tmp_path / "results" / "demo" / "analysis" / "fourier" / run_id / "last.csv"
    checkpoint = _finished_run(tmp_path, run_id, table)
    target = table.relative_to(tmp_path)
    (tmp_path / "separate.yaml").write_text("combined_jobs: false\n")  # one job per analysis (the demo combines them)

    def planned_rules():
        result = snakemake("-n", target, "--rerun-triggers", "mtime", "-s", REPO / "Snakefile", "--directory", tmp_path, "--configfile", REPO / "presets" / "demo.yaml", tmp_path / "separate.yaml")
        assert result.returncode == 0, result.stderr[-3000:]
        return set(re.findall(r"^rule (\w+):", result.stdout, flags=re.M))

    assert planned_rules() == set()  # complete and consistent: nothing to do
    os.utime(checkpoint)  # the run's weights were retrained after the table was made
    assert planned_rules() == {"fourier_spectrum"}
    checkpoint.unlink()  # lost, with the table to make: the run is retrained first, not analysed without it
    table.unlink()
    assert planned_rules() == {"train", "fourier_spectrum"}


# -- issue 14: the profiles, as users type them ------------------------------------------------------------------


def fresh_home_env(home: Path, **extra) -> dict:
    """The environment of a new user: an empty HOME, no XDG_CONFIG_HOME, this checkout's library first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "SNAKEMAKE_", "VITWORK_"))}
    return {**env, "HOME": str(home), **extra}


def setup_commands() -> list[str]:
    """The README's two set-up commands (the first bash block of the Set-up section)."""
    section = (REPO / "README.md").read_text().split("## Set-up", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_set_up_installs_the_profiles_and_ci_runs_its_test_command():
    install, tests = setup_commands()
    assert ".venv/bin/python profiles/install.py" in install.split(" && ")
    assert tests.strip() in (REPO / ".ci" / "run").read_text()


def parsed_cli(env, *args):
    """Snakemake's own reading of a command line (profiles included), as `snakemake` does it."""
    program = (
        "import sys; from snakemake.cli import parse_args; _, args = parse_args(sys.argv[1:]); "
        "print(args.executor or 'local', args.jobs, args.resources)"
    )
    result = subprocess.run([sys.executable, "-c", program, *args], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_slurm_profile_works_by_name_after_the_readme_set_up(tmp_path):
    env = fresh_home_env(tmp_path, VITWORK_SLURM_GPU_PARTITION="gpu")
    before = snakemake("--profile", "slurm", "-n", env=env)
    assert before.returncode != 0  # a new user without the set-up step: Snakemake cannot find the profile
    install = subprocess.run([sys.executable, REPO / "profiles" / "install.py"], env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    assert (tmp_path / ".config" / "snakemake" / "slurm").resolve() == REPO / "profiles" / "slurm"

    result = snakemake("--profile", "slurm", "-n", env=env)  # exactly as typed, from the repository root
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using profile slurm for setting default command line arguments." in result.stderr
    assert parsed_cli(env, "--profile", "slurm", "-n").startswith("slurm 100 ")  # the Slurm executor, 100 jobs
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", result.stdout, flags=re.M)
    resources = {rule: text for rule, text in jobs}
    assert {"train", "hessian_spectrum", "subsample"} <= set(resources)
    for rule in ("train", "hessian_spectrum", "evaluate_corruptions"):
        assert "gpu=1" in resources[rule] and "slurm_partition=gpu" in resources[rule], resources[rule]
    assert "runtime=720" in resources["train"] and "cpus_per_task=8" in resources["train"] and "--signal=TERM@300" in resources["train"]
    assert "gpu=" not in resources["subsample"]

    again = subprocess.run([sys.executable, REPO / "profiles" / "install.py"], env=env, capture_output=True, text=True)
    assert again.returncode == 0  # idempotent


def test_profile_install_leaves_a_users_own_profile_alone(tmp_path):
    own = tmp_path / ".config" / "snakemake" / "slurm"
    own.mkdir(parents=True)
    (own / "config.yaml").write_text("executor: slurm\n")
    env = fresh_home_env(tmp_path)
    install = subprocess.run([sys.executable, REPO / "profiles" / "install.py"], env=env, capture_output=True, text=True)
    assert install.returncode == 0 and f"kept your own profile {own}" in install.stderr
    assert not own.is_symlink() and (tmp_path / ".config" / "snakemake" / "local-gpus").is_symlink()


def test_local_gpus_profile_runs_one_job_per_gpu_pinned_by_its_resources(tmp_path):
    env = fresh_home_env(tmp_path, VITWORK_GPUS="0,1")
    subprocess.run([sys.executable, REPO / "profiles" / "install.py"], env=env, check=True, capture_output=True)
    result = snakemake("--profile", "local-gpus", "-n", "figure_data_size", "--configfile", REPO / "presets" / "demo.yaml", "--directory", tmp_path / "work", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    executor, _, resources = parsed_cli(env, "--profile", "local-gpus", "-n").split(" ", 2)
    assert executor == "local" and 'Resource("gpu", 2)' in resources  # at most one GPU job per GPU
    jobs = dict(re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", result.stdout, flags=re.M))
    assert "gpu=1" in jobs["train"] and "gpu_devices=0,1" in jobs["train"]
    assert "gpu=" not in jobs["prepare_data"].replace("gpu_devices=", "")
    without = {k: v for k, v in env.items() if k not in ("VITWORK_GPUS", "CUDA_VISIBLE_DEVICES")}
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvidia-smi").write_text("#!/bin/sh\n")  # a machine whose nvidia-smi lists no GPU
    (tmp_path / "bin" / "nvidia-smi").chmod(0o755)
    no_gpu = snakemake("--profile", "local-gpus", "-n", env={**without, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"})
    assert no_gpu.returncode != 0 and "profiles/local-gpus: no GPU found" in no_gpu.stderr


# -- vitwork.workflow.job_log: GPU pinning, one-line errors, the workflow's own library ------------------------


def fake_job(tmp_path, scriptdir=REPO / "workflow" / "scripts", **resources):
    return SimpleNamespace(log=[str(tmp_path / "job.log")], resources=SimpleNamespace(**resources), scriptdir=str(scriptdir))


def test_job_log_pins_each_gpu_job_to_a_free_device(tmp_path, monkeypatch):
    import vitwork.workflow as workflow

    monkeypatch.setattr(workflow, "GPU_LOCK_DIR", tmp_path / "locks")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "all")
    with workflow.claim_gpu(["0", "1", "2"]) as held:  # another job holds GPU 0
        assert held == "0"
        with workflow.job_log(fake_job(tmp_path, gpu=1, gpu_devices="0,1,2")):
            assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        assert (tmp_path / "job.log").read_text().startswith("pinned to GPU 1 (of 0,1,2)")
        with workflow.job_log(fake_job(tmp_path, gpu=1, gpu_devices="0,1,2")):  # GPU 1 was freed when its job ended
            assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "all")
    with workflow.job_log(fake_job(tmp_path, gpu_devices="0,1,2")):  # a CPU job
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "all"


def test_job_log_ends_an_input_error_with_one_line_and_passes_exit_codes(tmp_path, capsys):
    from vitwork.data import DatasetError
    from vitwork.workflow import job_log

    with pytest.raises(SystemExit) as info:
        with job_log(fake_job(tmp_path)):
            raise DatasetError("/data/train.npz: unreadable (EOFError); expected an .npz")
    assert info.value.code == 1
    assert (tmp_path / "job.log").read_text() == "vitwork: /data/train.npz: unreadable (EOFError); expected an .npz\n"
    assert capsys.readouterr().err == "vitwork: /data/train.npz: unreadable (EOFError); expected an .npz\n"
    with pytest.raises(SystemExit) as info:
        with job_log(fake_job(tmp_path)):
            print("pre-empted at epoch 3")
            sys.exit(143)
    assert info.value.code == 143 and (tmp_path / "job.log").read_text() == "pre-empted at epoch 3\n"  # no traceback


def test_a_finished_jobs_log_ends_with_its_time_and_start_up_as_the_demo_bench_reads_them(tmp_path):
    import importlib.util

    from vitwork.workflow import job_log

    spec = importlib.util.spec_from_file_location("demo_time", REPO / "bench" / "demo_time.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with job_log(fake_job(tmp_path)):
        sum(range(10**6))  # some computation after the start-up
    lines = (tmp_path / "job.log").read_text().splitlines()
    job_s, job_cpu, start_up_s, start_up_cpu = map(float, bench.START_UP.fullmatch(lines[-1]).groups())
    assert 0 < start_up_s <= job_s and 0 < start_up_cpu < job_cpu  # this process: pytest's start-up and imports


def test_job_log_stops_a_job_that_imported_another_checkouts_library(tmp_path, capsys):
    from vitwork.workflow import job_log

    other = tmp_path / "other-clone"
    with pytest.raises(SystemExit) as info:
        with job_log(fake_job(tmp_path, scriptdir=other / "workflow" / "scripts")):
            pytest.fail("the job body ran")
    line = capsys.readouterr().err.strip()
    assert info.value.code == 1 and "\n" not in line
    assert line.startswith(f"vitwork: this job imported vitwork from {REPO / 'src' / 'vitwork'}, but it belongs to the workflow whose library is {other / 'src' / 'vitwork'}")
    assert (tmp_path / "job.log").read_text().strip() == line


def clone(destination: Path) -> Path:
    """A copy of this checkout's files (what `git clone` of it would hold), without results or caches."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in filter(None, listed.stdout.split("\0")):
        source, target = REPO / name, destination / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return destination


def test_every_job_runs_the_library_of_the_workflow_it_belongs_to(tmp_path):
    """Two clones, the environment pointing at clone A (as an editable install of A would): clone B's jobs import B."""
    clone_a, clone_b = clone(tmp_path / "a"), clone(tmp_path / "b")
    (clone_a / "src" / "vitwork" / "__init__.py").write_text('raise ImportError("clone A was imported")\n')
    study = yaml.safe_load((REPO / "presets" / "demo.yaml").read_text())
    study["dataset"]["synthetic"] = {"num_classes": 2, "train_per_class": 100, "test_per_class": 5, "seed": 0}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**study, "results_dir": "results/tiny"}))
    env = {**os.environ, "PYTHONPATH": str(clone_a / "src")}
    result = snakemake("--cores", "1", "results/tiny/data/meta.json", "-s", clone_b / "Snakefile", "--directory", tmp_path / "work", "--configfile", tmp_path / "tiny.yaml", env=env, cwd=tmp_path)
    log = tmp_path / "work" / "results" / "tiny" / "logs" / "prepare_data.log"
    assert result.returncode == 0, result.stderr[-3000:] + (log.read_text() if log.exists() else "")
    assert "prepared synthetic" in log.read_text()


# -- issue 17: combined jobs (config `combined_jobs`) --------------------------------------------------------------

JOB_BLOCK = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", flags=re.M)
# a job script for the rerun test: writes its outputs empty (Snakemake keeps the records of real jobs, not their work)
EMPTY_OUTPUTS = "from pathlib import Path\nfor path in snakemake.output:\n    Path(path).parent.mkdir(parents=True, exist_ok=True)\n    Path(path).touch()\n"


def planned_jobs(stdout: str) -> list[tuple[str, str | None]]:
    """(rule, run wildcard or None) of every job of a dry run, without the target rule `all`."""
    jobs = []
    for rule, body in JOB_BLOCK.findall(stdout):
        run = re.search(r"wildcards: .*?\brun=([^,\n]+)", body)
        if rule != "all":
            jobs.append((rule, run.group(1) if run else None))
    return jobs


@pytest.fixture(scope="module", params=["separate", "combined"])
def empty_demo(request, tmp_path_factory):
    """The demo's whole DAG run in one mode by a clone whose job scripts only write empty outputs."""
    root = tmp_path_factory.mktemp(request.param)
    repo = clone(root / "repo")
    for script in (repo / "workflow" / "scripts").glob("*.py"):
        script.write_text(EMPTY_OUTPUTS)
    (root / "mode.yaml").write_text(f"combined_jobs: {str(request.param == 'combined').lower()}\n")
    configs = [REPO / "presets" / "demo.yaml", root / "mode.yaml"]

    def plan(*overlays: str) -> list[tuple[str, str | None]]:
        files = []
        for index, overlay in enumerate(overlays):
            files.append(root / f"overlay{index}.yaml")
            files[-1].write_text(overlay + "\n")
        result = snakemake("-n", "-s", repo / "Snakefile", "--directory", root / "work", "--configfile", *configs, *files)
        assert result.returncode == 0, result.stderr[-3000:]
        return planned_jobs(result.stdout)

    done = snakemake("--cores", "4", "-s", repo / "Snakefile", "--directory", root / "work", "--configfile", *configs)
    assert done.returncode == 0, done.stderr[-3000:]
    return request.param, plan


def test_both_modes_plan_the_same_tables_and_figures(tmp_path):
    outputs = {}
    for mode in ("false", "true"):
        (tmp_path / "mode.yaml").write_text(f"combined_jobs: {mode}\n")
        result = snakemake("-n", "-s", REPO / "Snakefile", "--directory", tmp_path, "--configfile", REPO / "presets" / "demo.yaml", tmp_path / "mode.yaml")
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[mode] = sorted(path for line in re.findall(r"^    output: (.*)$", result.stdout, flags=re.M) for path in line.split(", "))
        jobs = Counter(rule for rule, _ in planned_jobs(result.stdout))
        if mode == "false":
            assert jobs["hessian_spectrum"] == 25 and jobs["generate_corruption"] == 15 and not any(r.startswith("analyses_") for r in jobs)
        else:  # one analysis job per run, one corruption job; no separate analysis job
            assert sum(n for rule, n in jobs.items() if rule.startswith("analyses_")) == jobs["train"] == 32
            assert jobs["generate_corruptions"] == 1 and not {"hessian_spectrum", "generate_corruption", "evaluate_corruptions"} & set(jobs)
    assert outputs["false"] == outputs["true"] and any("/analysis/noise_frequency/" in path for path in outputs["true"])


@pytest.mark.slow
def test_a_changed_analysis_setting_reruns_exactly_what_it_touches_in_both_modes(empty_demo):
    from vitwork.config import analysis_figure_run_specs, load_config_file

    mode, plan = empty_demo
    assert plan() == []  # the whole demo is done and up to date
    demo = load_config_file(REPO / "presets" / "demo.yaml")
    noise_runs = {spec["run_id"] for figure in demo["analyses"]["noise_frequency"]["figures"] for spec in analysis_figure_run_specs(demo, "noise_frequency", figure)}
    jobs = plan("analyses: {noise_frequency: {eps: 1.0}}")
    rules = Counter(rule for rule, _ in jobs)
    analysis_jobs = [(rule, run) for rule, run in jobs if run is not None]
    assert {run for _, run in analysis_jobs} == noise_runs and len(analysis_jobs) == len(noise_runs)  # nothing trains
    if mode == "separate":  # only the noise tables, their figure and the claims
        assert rules == Counter({"noise_frequency": len(noise_runs), "figure_noise_frequency_models": 1, "claims": 1})
    else:  # those runs' analysis jobs, every figure that reads one of their tables, and the claims
        assert all(rule.startswith("analyses_") and "noise_frequency" in rule for rule, _ in analysis_jobs)
        reading = {f"figure_{analysis}_{figure}" for analysis, settings in demo["analyses"].items() for figure in settings["figures"]
                   if noise_runs & {spec["run_id"] for spec in analysis_figure_run_specs(demo, analysis, figure)}}
        assert set(rules) - {rule for rule, _ in analysis_jobs} == reading | {"claims"}
        assert "figure_hessian_optimizer_grid" not in reading and "figure_noise_frequency_models" in reading


def tiny_study() -> dict:
    """The demo's analyses at the smallest sizes that still exercise them: two models, one short recipe."""
    study = yaml.safe_load((REPO / "presets" / "demo.yaml").read_text())
    pick = {"models": ["resnet", "vit"], "optimizers": ["adamw"]}
    study.update(
        results_dir="results/tiny",
        dataset={"source": "synthetic", "synthetic": {"num_classes": 4, "train_per_class": 20, "test_per_class": 10, "seed": 0}},
        models={name: study["models"][name] for name in pick["models"]},
        optimizers={"adamw": {**study["optimizers"]["adamw"], "batch_size": 20, "epochs": 1}},
        studies={"inductive_bias": pick},
    )
    study.pop("defaults")
    sizes = {"hessian": {"batches": 1, "max_hvps": 20, "trace_probes": 2, "k": 2}, "landscape": {"points": 3, "images": 16},
             "fourier": {"images": 8}, "feature_variance": {"images": 8}, "noise_frequency": {"images": 8, "frequencies": [0.5]},
             "corruptions": {"images": 8}}
    for analysis, settings in study["analyses"].items():
        first = next(iter(settings["figures"].values()))
        settings.update(sizes[analysis], figures={"tiny": {**first, **pick, "fractions": [1.0]}})
    return study


@pytest.mark.slow
def test_both_modes_write_the_same_analysis_tables(tmp_path):
    """The tiny study's analyses in separate jobs, then (same trained runs) in combined jobs: the same tables."""
    study = tiny_study()
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(study))
    tables = [f"results/tiny/analysis/{analysis}/{model}/adamw-lr2e-3-wd0.05/f1.0/s0/{'warmup' if analysis == 'hessian' else 'last'}.csv"
              for analysis in study["analyses"] for model in ("resnet", "vit")]
    written = {}
    for mode in ("false", "true"):
        workdir = tmp_path / f"combined-{mode}"
        if mode == "true":  # the same trained runs, with Snakemake's records of them; no analysis output
            shutil.copytree(tmp_path / "combined-false", workdir, symlinks=True)
            for folder in ("analysis", "corruptions"):
                shutil.rmtree(workdir / "results" / "tiny" / folder)
        (tmp_path / "mode.yaml").write_text(f"combined_jobs: {mode}\n")
        result = snakemake("--cores", "2", *tables, "-s", REPO / "Snakefile", "--directory", workdir, "--configfile", tmp_path / "tiny.yaml", tmp_path / "mode.yaml")
        assert result.returncode == 0, result.stderr[-3000:]
        ran = Counter(rule for rule, _ in planned_jobs(result.stderr + result.stdout))
        assert ("train" in ran) == (mode == "false") and any(rule.startswith("analyses_") for rule in ran) == (mode == "true")
        written[mode] = {table: [{**row, "seconds": None} for row in read_csv(workdir / table)] for table in tables}  # timings differ
    assert all(written["true"][table] for table in tables)
    assert written["true"] == written["false"]


# -- issue 17: the job server (config `job_server`) ----------------------------------------------------------------

TIMINGS = {"epoch_time_s", "wall_time_s", "images_per_s", "eval_time_s", "seconds"}


@pytest.mark.slow
def test_jobs_in_the_job_server_write_what_jobs_in_their_own_processes_write(tmp_path):
    """The tiny study (train and every analysis) with and without the server: the same weights, metrics and
    tables, bit for bit; with it every torch job ran in a fork of the server, which is gone at the end."""
    import torch

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_study()))
    tables = [f"results/tiny/analysis/{analysis}/{model}/adamw-lr2e-3-wd0.05/f1.0/s0/{'warmup' if analysis == 'hessian' else 'last'}.csv"
              for analysis in tiny_study()["analyses"] for model in ("resnet", "vit")]
    runs = [f"results/tiny/runs/{model}/adamw-lr2e-3-wd0.05/f1.0/s0" for model in ("resnet", "vit")]
    for server in ("false", "true"):
        (tmp_path / "server.yaml").write_text(f"job_server: {server}\n")
        result = snakemake("--cores", "2", *tables, "-s", REPO / "Snakefile", "--directory", tmp_path / server, "--configfile", tmp_path / "tiny.yaml", tmp_path / "server.yaml")
        assert result.returncode == 0, result.stderr[-3000:]
    served = (tmp_path / "true" / "results" / "tiny" / "logs" / "job_server.log").read_text()
    assert not (tmp_path / "false" / "results" / "tiny" / "logs" / "job_server.log").exists()
    for script in ("train", "analyses"):  # both runs' training and analysis jobs, each exited 0
        assert len(re.findall(rf"\(tmp\w+\.{script}\.py\) exited 0 after", served)) == 2, served
    assert "exited 1" not in served
    address, server_pid = re.search(r"serving on (\S+) \(process (\d+)\)", served).groups()
    assert not Path(f"/proc/{server_pid}").exists() and not Path(address).parent.exists()  # stopped with the run
    for run in runs:
        own, warm = (torch.load(tmp_path / server / run / "checkpoints" / "last.pt", map_location="cpu") for server in ("false", "true"))
        assert own["model"].keys() == warm["model"].keys()
        assert all(torch.equal(own["model"][name], warm["model"][name]) for name in own["model"])
        rows = [[{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in (tmp_path / server / run / "metrics.jsonl").read_text().splitlines()]
                for server in ("false", "true")]
        assert rows[0] == rows[1] and rows[0]
    for table in tables:
        own, warm = ([{k: v for k, v in row.items() if k not in TIMINGS} for row in read_csv(tmp_path / server / table)] for server in ("false", "true"))
        assert own == warm and own, table
