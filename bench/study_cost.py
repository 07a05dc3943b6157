"""What a study costs on a GPU: per job kind and model, runs, epochs, images, FLOPs and GPU-hours.

Every GPU job the workflow plans for CONFIG is counted (the runs of `vitwork.config.all_run_specs`, the analysis
jobs of each analysis's figures), with what it computes:
- train: every run's epochs, warm-up included (steps x batch images, forward + backward), and its evaluations
  (every `training.eval_every` epochs on `eval_images` test images, the last on the whole test split);
- hessian: per batch the gradient graph and at most (1 + 2 ends) x `max_hvps` + `trace_probes` HVPs, each
  costing HVP_GRADIENTS gradients (an upper bound: each solve spending its whole budget), or `--hessian-hvps` HVPs
  per batch (what solves typically take: the demo's micro models needed a median of 53 and at most 125 HVPs per
  batch with max_hvps 150, tol 1e-3, k 5 and 3 probes);
- landscape: points^2 x images forward; fourier, feature_variance: images forward; noise_frequency: images x
  (1 + frequencies) forward; corruptions: (1 clean + 75 corrupted) x images forward.
FLOPs per image come from `torch.utils.flop_counter.FlopCounterMode` on the meta device (no memory, no compute).
GPU-hours come from images/s that bench/gpu_check.py measured (--images-per-second its JSON; models it did not
measure take the FLOP rate of a measured model of their family, else the median one), or else from an assumed
fraction of a stated GPU's peak for the precision the job runs in (bf16 autocast: training and evaluations on
CUDA; fp32: the analyses, which run without autocast). Job start-up, data loading and checkpoint I/O are not
counted.

    python bench/study_cost.py config.yaml [--images-per-second gpu_check.json] [--json cost.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from vitwork.config import all_run_specs, analysis_figure_run_specs, load_config_file  # noqa: E402
from vitwork.corruptions import CORRUPTIONS, SEVERITIES  # noqa: E402
from vitwork.data import stratified_subset  # noqa: E402
from vitwork.devices import applies_on  # noqa: E402
from vitwork.io import read_json, write_json  # noqa: E402
from vitwork.models import create_model, model_family  # noqa: E402
from vitwork.train import eval_sample_indices  # noqa: E402

IMAGE_SIZE = 32
# one HVP by double backward through the reused gradient graph, in gradient evaluations (vitwork.hessian's docstring)
HVP_GRADIENTS = 2.3
# the H100 SXM's dense peaks (NVIDIA's datasheet): bf16 tensor cores; fp32 without TF32 (PyTorch's default for matmuls)
DEFAULT_GPU = {"name": "H100 SXM", "bf16_tflops": 989.0, "fp32_tflops": 67.0, "utilisation": 0.35}
KIND_ORDER = ("train", "hessian", "landscape", "fourier", "feature_variance", "noise_frequency", "corruptions")


class CostError(ValueError):
    """A problem with the inputs, described in one line."""


# -- the data's sizes --------------------------------------------------------------------------------------------
def dataset_labels(dataset: dict) -> tuple[np.ndarray, np.ndarray]:
    """(train labels, test labels) of the configured dataset, without reading its images."""
    source = dataset["source"]
    if source in ("cifar10", "cifar100"):
        classes = 10 if source == "cifar10" else 100
        return np.repeat(np.arange(classes), 50_000 // classes), np.repeat(np.arange(classes), 10_000 // classes)
    if source == "synthetic":
        synthetic = dataset["synthetic"]
        classes = np.arange(synthetic["num_classes"])
        return np.repeat(classes, synthetic["train_per_class"]), np.repeat(classes, synthetic["test_per_class"])
    root = Path(dataset["root"])
    splits = []
    for split in ("train", "test"):
        folders = sorted(p for p in (root / split).glob("*") if p.is_dir())
        if not folders:
            raise CostError(f"dataset.root: {root / split} has no class folders (expected {{train,test}}/<class>/<image>)")
        splits.append(np.concatenate([np.full(sum(1 for f in folder.iterdir() if f.is_file()), i) for i, folder in enumerate(folders)]))
    return splits[0], splits[1]


# -- FLOPs -------------------------------------------------------------------------------------------------------
_FLOPS: dict[str, tuple[float, float]] = {}


def flops_per_image(spec: dict, num_classes: int) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per image of the run's model in training mode (FlopCounterMode)."""
    model = spec["model"]
    key = json.dumps([model["arch"], model["kwargs"], spec["training"]["drop_path_rate"], num_classes], sort_keys=True)
    if key not in _FLOPS:
        try:
            _FLOPS[key] = _count_flops(model, spec["training"]["drop_path_rate"], num_classes, torch.device("meta"), batch=2)
        except (NotImplementedError, RuntimeError):  # an operation without a meta kernel: count on CPU, one image
            _FLOPS[key] = _count_flops(model, spec["training"]["drop_path_rate"], num_classes, torch.device("cpu"), batch=1)
    return _FLOPS[key]


def _count_flops(model: dict, drop_path_rate: float, num_classes: int, device: torch.device, batch: int) -> tuple[float, float]:
    with torch.device(device):
        network = create_model(model["arch"], num_classes, drop_path_rate=drop_path_rate, **model["kwargs"]).train()
        images = torch.zeros(batch, 3, IMAGE_SIZE, IMAGE_SIZE)
    with FlopCounterMode(display=False) as counter:
        logits = network(images)
        forward = counter.get_total_flops()
        logits.float().sum().backward()
        total = counter.get_total_flops()
    return forward / batch, total / batch


# -- the jobs ----------------------------------------------------------------------------------------------------
def analysis_runs(config: dict, analysis: str) -> list[dict]:
    """The run specs an analysis has a job for: every run one of its figures draws, once."""
    runs: dict[str, dict] = {}
    for figure in config["analyses"][analysis]["figures"]:
        for spec in analysis_figure_run_specs(config, analysis, figure):
            runs.setdefault(spec["run_id"], spec)
    return list(runs.values())


def training_work(spec: dict, train_labels: np.ndarray, test_labels: np.ndarray) -> dict:
    """Images trained on (forward + backward) and evaluated (forward) by one run."""
    optimizer, training = spec["optimizer"], spec["training"]
    images = len(stratified_subset(train_labels, spec["fraction"], spec["seed"]))
    batch = optimizer["batch_size"]
    epochs = optimizer["warmup_epochs"] + optimizer["epochs"]
    sample = eval_sample_indices(test_labels, training["eval_images"])
    sample_size = len(test_labels) if sample is None else len(sample)
    evaluated = sum(len(test_labels) if epoch == epochs else sample_size for epoch in range(1, epochs + 1) if epoch == epochs or epoch % training["eval_every"] == 0)
    return {"epochs": epochs, "train_images": (images // batch) * batch * epochs, "eval_images": evaluated}


def hessian_work(spec: dict, settings: dict, hvps_per_batch: int | None = None) -> dict:
    """Gradient evaluations (in images) of one run's Hessian job: `hvps_per_batch` HVPs per batch, by default the
    upper bound of every solve using its budget."""
    batch = settings["batch_size"] or spec["optimizer"]["batch_size"]
    # top-k, largest and smallest, trace
    hvps = hvps_per_batch if hvps_per_batch is not None else 3 * settings["max_hvps"] + settings["trace_probes"]
    return {"batches": settings["batches"], "batch_size": batch, "hvps_per_batch": hvps, "gradient_images": settings["batches"] * batch * (1 + HVP_GRADIENTS * hvps)}


def forward_images(analysis: str, settings: dict, train_images: int, test_images: int) -> int:
    """Images one run's analysis job passes forward."""
    if analysis == "landscape":
        return settings["points"] ** 2 * min(settings["images"], train_images)
    if analysis in ("fourier", "feature_variance"):
        return min(settings["images"], test_images)
    if analysis == "noise_frequency":
        return min(settings["images"], test_images) * (1 + len(settings["frequencies"]))
    if analysis == "corruptions":
        return (1 + len(CORRUPTIONS) * len(SEVERITIES)) * min(settings["images"] or test_images, test_images)
    raise CostError(f"analyses.{analysis}: no cost model for this analysis")


# -- GPU time ----------------------------------------------------------------------------------------------------
class AssumedGPU:
    """Seconds from FLOPs at a stated fraction of a GPU's peak for the job's precision."""

    def __init__(self, gpu: dict):
        self.gpu = gpu

    def describe(self) -> str:
        g = self.gpu
        return (f"assumed: {g['utilisation']:.0%} of an {g['name']}'s dense peak, {g['bf16_tflops']:g} TFLOPS bf16 "
                f"(training, evaluations) and {g['fp32_tflops']:g} TFLOPS fp32 (analyses: no autocast)")

    def seconds(self, kind: str, spec: dict, flops: float, work: dict, per_image: tuple[float, float]) -> tuple[float, str]:
        bf16 = kind == "corruptions" or (kind == "train" and applies_on(spec["training"]["mixed_precision"], "cuda"))
        if kind == "train":  # its evaluations run in bf16 whatever training does
            eval_flops = work["eval_images"] * per_image[0]
            return self._at(flops - eval_flops, bf16) + self._at(eval_flops, True), "assumed"
        return self._at(flops, bf16), "assumed"

    def _at(self, flops: float, bf16: bool) -> float:
        peak = self.gpu["bf16_tflops" if bf16 else "fp32_tflops"] * 1e12
        return flops / (self.gpu["utilisation"] * peak)


class MeasuredGPU:
    """Seconds from the images/s of bench/gpu_check.py's JSON; unmeasured models at a measured model's FLOP rate."""

    def __init__(self, path: str, num_classes: int, drop_path_rate: float):
        report = read_json(path)
        if report.get("smoke"):
            raise CostError(f"{path}: a --smoke report (micro models on CPU); run bench/gpu_check.py without --smoke on a GPU")
        self.path, self.device = path, report.get("device_name", "?")
        self.models = {}
        for entry in report["models"].values():
            spec = {"model": {"arch": entry["arch"], "kwargs": entry["kwargs"]}, "training": {"drop_path_rate": drop_path_rate}}
            self.models[_model_key(entry["arch"], entry["kwargs"])] = (entry, flops_per_image(spec, num_classes))
        self.hessian = report["hessian"]

    def describe(self) -> str:
        return f"measured: bench/gpu_check.py on {self.device} ({self.path})"

    def _rate(self, spec: dict, per_image: tuple[float, float], figure, backward: bool) -> tuple[float, str]:
        """Images/s of the run's model for `figure(entry) -> images/s` of a gpu_check entry; an unmeasured model at
        the FLOP rate (forward, or forward + backward with `backward`) of its measured relatives."""
        key = _model_key(spec["model"]["arch"], spec["model"]["kwargs"])
        if key in self.models:
            return figure(self.models[key][0]), "measured"
        family = model_family(spec["model"]["arch"])
        relatives = [(e, f) for e, f in self.models.values() if model_family(e["arch"]) == family] or list(self.models.values())
        flop_rate = statistics.median(figure(e) * f[backward] for e, f in relatives)
        source = relatives[0][0]["name"] if len(relatives) == 1 else "median of " + ", ".join(e["name"] for e, _ in relatives)
        return flop_rate / per_image[backward], f"FLOP rate of {source}"

    def seconds(self, kind: str, spec: dict, flops: float, work: dict, per_image: tuple[float, float]) -> tuple[float, str]:
        if kind == "train":
            training = spec["training"]
            mixed = applies_on(training["mixed_precision"], "cuda")
            precision = "compile" if training["compile"] and mixed else "bf16_channels_last" if mixed else "fp32"

            def train_rate(entry):
                return (entry.get(precision) or entry["bf16_channels_last" if mixed else "fp32"])["images_per_s"]

            rate, basis = self._rate(spec, per_image, train_rate, backward=True)
            eval_rate, _ = self._rate(spec, per_image, lambda e: e["eval_images_per_s"], backward=False)
            return work["train_images"] / rate + work["eval_images"] / eval_rate, basis
        if kind == "hessian" and self.hessian is None:  # gpu_check's Hessian section failed: the HVP bound, in fp32
            rate, basis = self._rate(spec, per_image, lambda e: e["fp32"]["images_per_s"], backward=True)
            return work["gradient_images"] / rate, f"HVP bound at the fp32 training rate ({basis})"
        if kind == "hessian":
            measured = self.hessian
            measured_flops = next(f[1] for e, f in self.models.values() if e["arch"] == measured["arch"])
            per_batch = measured["batch_seconds"] * (work["batch_size"] * per_image[1]) / (measured["batch_size"] * measured_flops)
            return work["batches"] * per_batch, f"one measured batch of {measured['arch']} ({measured['settings']}), scaled by FLOPs"
        if kind in ("fourier", "feature_variance"):
            rate, basis = self._rate(spec, per_image, lambda e: e["fourier"]["images"] / e["fourier"]["seconds"], backward=False)
        elif kind == "corruptions":
            rate, basis = self._rate(spec, per_image, lambda e: e["eval_images_per_s"], backward=False)
        else:
            rate, basis = self._rate(spec, per_image, lambda e: e["forward_fp32_images_per_s"], backward=False)
        return work["forward_images"] / rate, basis


def _model_key(arch: str, kwargs: dict) -> str:
    return json.dumps([arch, kwargs], sort_keys=True)


# -- the table ---------------------------------------------------------------------------------------------------
def study_cost(config: dict, gpu, hessian_hvps: int | None = None) -> dict:
    """Rows per (job kind, model) and totals per kind and overall."""
    train_labels, test_labels = dataset_labels(config["dataset"])
    num_classes = len(np.unique(train_labels))
    jobs: list[tuple[str, dict, dict]] = [("train", spec, training_work(spec, train_labels, test_labels)) for spec in all_run_specs(config).values()]
    for analysis, settings in config["analyses"].items():
        for spec in analysis_runs(config, analysis):
            if analysis == "hessian":
                work = hessian_work(spec, settings, hessian_hvps)
            else:
                work = {"forward_images": forward_images(analysis, settings, len(stratified_subset(train_labels, spec["fraction"], spec["seed"])), len(test_labels))}
            jobs.append((analysis, spec, work))

    groups: dict[tuple[str, str], dict] = {}
    for kind, spec, work in jobs:
        per_image = flops_per_image(spec, num_classes)
        if kind == "train":
            flops = work["train_images"] * per_image[1] + work["eval_images"] * per_image[0]
        elif kind == "hessian":
            flops = work["gradient_images"] * per_image[1]
        else:
            flops = work["forward_images"] * per_image[0]
        seconds, basis = gpu.seconds(kind, spec, flops, work, per_image)
        row = groups.setdefault((kind, spec["model"]["name"]), {
            "kind": kind, "model": spec["model"]["name"], "arch": spec["model"]["arch"], "runs": 0, "epochs": set(),
            "train_images": 0, "forward_images": 0, "gflops_forward": per_image[0] / 1e9, "gflops_forward_backward": per_image[1] / 1e9,
            "pflops": 0.0, "gpu_hours": 0.0, "basis": set(),
        })
        row["runs"] += 1
        row["pflops"] += flops / 1e15
        row["gpu_hours"] += seconds / 3600
        row["basis"].add(basis)
        if kind == "train":
            row["epochs"].add(work["epochs"])
            row["train_images"] += work["train_images"]
            row["forward_images"] += work["eval_images"]
        elif kind == "hessian":
            row["forward_images"] += work["gradient_images"]
        else:
            row["forward_images"] += work["forward_images"]
    rows = sorted(groups.values(), key=lambda r: (KIND_ORDER.index(r["kind"]), r["model"]))
    for row in rows:
        # what the GPU-hours imply (evaluations included): the figure to hold against experience or a measurement
        row["train_images_per_s"] = row["train_images"] / (3600 * row["gpu_hours"]) if row["kind"] == "train" else None
        row["epochs"] = "-" if not row["epochs"] else "-".join(map(str, sorted({min(row["epochs"]), max(row["epochs"])})))
        row["basis"] = "; ".join(sorted(row["basis"]))
    kinds = {}
    for row in rows:
        total = kinds.setdefault(row["kind"], {"jobs": 0, "pflops": 0.0, "gpu_hours": 0.0})
        total["jobs"] += row["runs"]
        total["pflops"] += row["pflops"]
        total["gpu_hours"] += row["gpu_hours"]
    return {
        "gpu": gpu.describe(),
        "training_runs": kinds.get("train", {}).get("jobs", 0),
        "rows": rows,
        "kinds": kinds,
        "total": {key: sum(k[key] for k in kinds.values()) for key in ("jobs", "pflops", "gpu_hours")},
    }


def markdown(cost: dict, config_name: str) -> str:
    """Two markdown tables: per kind (with the total), then per kind and model."""
    lines = [
        f"GPU cost of `{config_name}` ({cost['gpu']}; job start-up and I/O not counted).",
        "",
        "| job kind | GPU jobs | PFLOPs | GPU-hours |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind, total in cost["kinds"].items():
        lines.append(f"| {kind} | {total['jobs']} | {total['pflops']:,.1f} | {total['gpu_hours']:,.1f} |")
    total = cost["total"]
    lines += [f"| **total** | **{total['jobs']}** | **{total['pflops']:,.1f}** | **{total['gpu_hours']:,.1f}** |", ""]
    lines += [
        "| job kind | model | runs | epochs | images trained (all runs) | images forward (all runs) | GFLOPs/image fwd | fwd+bwd | PFLOPs | GPU-hours | implied training img/s | basis |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in cost["rows"]:
        trained = f"{row['train_images']:,}" if row["kind"] == "train" else "-"
        rate = "-" if row["train_images_per_s"] is None else f"{row['train_images_per_s']:,.0f}"
        lines.append(
            f"| {row['kind']} | {row['model']} | {row['runs']} | {row['epochs']} | {trained} | {row['forward_images']:,.0f} | "
            f"{row['gflops_forward']:.2f} | {row['gflops_forward_backward']:.2f} | {row['pflops']:,.1f} | {row['gpu_hours']:,.2f} | {rate} | {row['basis']} |"
        )
    lines += [
        "",
        "images forward: test evaluations (train), gradient evaluations at the HVPs per batch of the Hessian (the budget's bound unless --hessian-hvps), analysis",
        "forwards (others). implied training img/s: training images over the training jobs' GPU time (evaluations included).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--images-per-second", metavar="FILE", help="gpu_check.json of bench/gpu_check.py (measured on a GPU)")
    parser.add_argument("--gpu", default=DEFAULT_GPU["name"], help="name of the assumed GPU")
    parser.add_argument("--bf16-tflops", type=float, default=DEFAULT_GPU["bf16_tflops"], help="its dense bf16 peak")
    parser.add_argument("--fp32-tflops", type=float, default=DEFAULT_GPU["fp32_tflops"], help="its fp32 peak")
    parser.add_argument("--utilisation", type=float, default=DEFAULT_GPU["utilisation"], help="assumed fraction of the peak")
    parser.add_argument("--hessian-hvps", type=int, help="HVPs per Hessian batch (default: the budget's upper bound)")
    parser.add_argument("--json", help="write the rows and totals here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = load_config_file(args.config)
    if args.images_per_second:
        gpu = MeasuredGPU(args.images_per_second, len(np.unique(dataset_labels(config["dataset"])[0])), config["training"]["drop_path_rate"])
    else:
        gpu = AssumedGPU({"name": args.gpu, "bf16_tflops": args.bf16_tflops, "fp32_tflops": args.fp32_tflops, "utilisation": args.utilisation})
    cost = study_cost(config, gpu, args.hessian_hvps)
    print(markdown(cost, Path(args.config).name), end="")
    if args.json:
        write_json(args.json, cost)
    return cost


if __name__ == "__main__":
    main()
