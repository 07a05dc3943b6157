"""Per-run analysis glue: fair samples, resumable tables, the Hessian's and the landscape's objective, one decay
set everywhere, feature, noise and corruption tables."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from test_train import tiny_spec
from vitwork.analysis import (
    CORRUPTION_COLUMNS,
    SAMPLE_COLUMNS,
    ResumableTable,
    analysis_sample,
    augmented_training_batch,
    corruption_table,
    feature_table,
    hessian_spectrum_table,
    landscape_data,
    loss_landscape_table,
    noise_frequency_table,
    run_augmentation,
    write_generated_corruption,
    write_generated_labels,
)
from vitwork.corruptions import CORRUPTIONS
from vitwork.data import load_split, stratified_sample
from vitwork.hessian import HessianOperator, regularised_loss
from vitwork.landscape import loss_landscape_2d
from vitwork.models import available_models, create_model, model_family
from vitwork.objective import DECAY_SETS, soft_cross_entropy
from vitwork.optim import build_optimizer
from vitwork.results import read_csv
from vitwork.train import load_checkpoint_model, train_run

HESSIAN = {"batches": 2, "batch_size": 16, "method": "lanczos", "k": 2, "tol": 1e-3, "max_hvps": 120, "trace_probes": 2, "seed": 0}
FEATURES = {"images": 12, "batch_size": 5, "seed": 0, "highest_frequency": "authors", "estimator": "unbiased"}
LANDSCAPE = {"points": 3, "extent": 0.5, "images": 40, "batch_size": 16, "seed": 0, "objective": "train"}
# augmentation drawn from the generator alone (crop, flip, label smoothing): the same batches on every call
GENERATOR_ONLY = {"randaugment": None, "mixup_alpha": 0.0, "cutmix_alpha": 0.0}
MICRO_RESNET = {"name": "resnet", "arch": "vitwork_resnet", "family": "resnet", "label": "resnet",
                "kwargs": {"block": "basic", "layers": [1, 1, 1, 1], "channels": [4, 4, 8, 8], "stem_width": 4}}


def train_tiny(tmp, spec, paths, name):
    """Train `spec` (generator-only augmentation) into tmp/name; its checkpoints folder."""
    spec = copy.deepcopy(spec)
    spec["training"].update(GENERATOR_ONLY)
    train_run(spec, *paths, tmp / name, device="cpu", progress=False)
    return tmp / name / "checkpoints"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny ViT and a tiny ResNet trained on the same data: (ViT checkpoints, paths, ResNet checkpoints)."""
    tmp = tmp_path_factory.mktemp("run")
    spec, paths = tiny_spec(tmp)
    vit = train_tiny(tmp, spec, paths, "vit")
    resnet = train_tiny(tmp, {**spec, "model": MICRO_RESNET, "run_id": "resnet/opt-lr1e-3-wd0.05/f1.0/s0"}, paths,
                        "resnet")
    return vit, paths, resnet


# --- fair samples -------------------------------------------------------------------------------------------------


def test_sample_of_a_class_ordered_split_covers_every_class_evenly():
    labels = np.repeat(np.arange(100), 100)  # an ImageFolder split: stored class after class
    sample = stratified_sample(labels, 500, seed=0)
    assert sample.size == 500 and np.bincount(labels[sample], minlength=100).tolist() == [5] * 100
    assert np.array_equal(sample, stratified_sample(labels, 500, seed=0))
    assert not np.array_equal(sample, stratified_sample(labels, 500, seed=1))
    # 130 of 100 classes: 30 classes drawn by the seed get a second image
    assert sorted(set(np.bincount(labels[stratified_sample(labels, 130, 3)]).tolist())) == [1, 2]
    # a small class gives all it has, the others share the rest; the whole split when asked for more
    uneven = np.concatenate([np.zeros(2, int), np.ones(50, int), np.full(50, 2)])
    assert np.bincount(uneven[stratified_sample(uneven, 30, 0)]).tolist() == [2, 14, 14]
    assert np.array_equal(stratified_sample(uneven, 500, 0), np.arange(102))
    assert np.array_equal(stratified_sample(uneven, None, 0), np.arange(102))


def test_sample_of_the_real_cifar100_test_tree(real_cifar100):
    from torchvision.datasets import ImageFolder

    labels = np.asarray(ImageFolder(str(real_cifar100 / "test")).targets)
    assert (np.diff(labels) >= 0).all()  # stored in class order: "the first 500" are 5 classes
    indices, record = analysis_sample(labels, 500, seed=0)
    assert np.bincount(labels[indices], minlength=100).tolist() == [5] * 100
    assert record["sample_classes"] == 100 and record["sample_size"] == 500 and record["pool_size"] == labels.size


def test_every_analysis_sample_is_the_same_for_every_model(trained, tmp_path):
    vit, (train, test, _, subset), resnet = trained
    hashes = {}
    for model, checkpoints in (("vit", vit), ("resnet", resnet)):
        out = tmp_path / model
        tables = {
            "fourier": feature_table("fourier", checkpoints / "last.pt", test, FEATURES, out / "f.csv", device="cpu"),
            "variance": feature_table("feature_variance", checkpoints / "last.pt", test, FEATURES, out / "v.csv",
                                      device="cpu"),
            "noise": noise_frequency_table(checkpoints / "last.pt", test, FEATURES | {"frequencies": [0.5], "eps": 0.5},
                                           out / "n.csv", device="cpu"),
            "landscape": loss_landscape_table(checkpoints / "last.pt", train, subset, LANDSCAPE | {"points": 3},
                                              out / "l.csv", device="cpu"),
            "hessian": hessian_spectrum_table(checkpoints / "warmup.pt", train, subset, HESSIAN | {"k": 1, "max_hvps": 40},
                                              out / "h.csv", device="cpu"),
        }
        hashes[model] = {name: sorted({(row["batch"] if name == "hessian" else 0, row["sample_hash"]) for row in rows})
                         for name, rows in tables.items()}
        for name, rows in tables.items():
            assert all(row["sample_hash"] for row in rows), name
    assert hashes["vit"] == hashes["resnet"]
    assert len(hashes["vit"]["hessian"]) == 2  # one sample per batch, the same batches for both models
    rows = read_csv(tmp_path / "vit" / "f.csv")
    assert {(r["sample_size"], r["sample_classes"], r["pool_size"]) for r in rows} == {("12", "4", "24")}


# --- resumable tables -----------------------------------------------------------------------------------------


def test_resumable_table_skips_finished_units(tmp_path):
    calls = []

    def unit(k, fail=False):
        def compute():
            calls.append(k)
            if fail:
                raise RuntimeError("pre-empted")
            return [{"unit": k, "value": k * 10}]

        return compute

    table = ResumableTable(tmp_path / "t.csv", ["unit", "value"], "unit")
    with pytest.raises(RuntimeError):
        table.run([(0, unit(0)), (1, unit(1)), (2, unit(2, fail=True))])
    assert not (tmp_path / "t.csv").exists() and (tmp_path / "t.csv.partial").exists()
    rows = ResumableTable(tmp_path / "t.csv", ["unit", "value"], "unit").run([(k, unit(k)) for k in range(3)])
    assert calls == [0, 1, 2, 2]  # after the failure only the unfinished unit ran again
    assert [r["value"] for r in read_csv(tmp_path / "t.csv")] == ["0", "10", "20"] and len(rows) == 3
    assert not (tmp_path / "t.csv.partial").exists()


# --- the Hessian ------------------------------------------------------------------------------------------------


def test_hessian_loss_is_the_augmented_regularised_loss(trained, tmp_path):
    checkpoints, (train, _, _, subset), _ = trained
    rows = hessian_spectrum_table(checkpoints / "warmup.pt", train, subset, HESSIAN, tmp_path / "a.csv", device="cpu")
    again = hessian_spectrum_table(checkpoints / "warmup.pt", train, subset, HESSIAN, tmp_path / "b.csv", device="cpu")
    other = hessian_spectrum_table(checkpoints / "warmup.pt", train, subset, HESSIAN | {"seed": 1}, tmp_path / "c.csv", device="cpu")
    loss = {r["batch"]: float(r["loss"]) for r in rows}
    assert loss == {r["batch"]: float(r["loss"]) for r in again}
    assert loss[0] != {r["batch"]: float(r["loss"]) for r in other}[0]  # another augmentation seed, another loss
    assert {r["which"] for r in rows} == {"top_magnitude", "largest", "smallest", "trace"}
    assert {r["part"] for r in rows} == {"objective", "nll", "regulariser"}
    # the reported loss is the soft-target cross-entropy of the seeded augmented batch plus weight decay
    model, info = load_checkpoint_model(checkpoints / "warmup.pt")
    images, labels = load_split(train)
    inputs, targets, chosen = augmented_training_batch(run_augmentation(info), images, labels, np.load(subset), 16, seed=0)
    wd = info["run"]["optimizer"]["hparams"]["weight_decay"]
    with torch.no_grad():
        expected = float(regularised_loss(model, inputs, targets, wd))
        nll = float(soft_cross_entropy(model(inputs), targets))
    assert loss[0] == pytest.approx(expected, rel=1e-5)
    first = next(r for r in rows if r["batch"] == 0)
    assert float(first["nll"]) == pytest.approx(nll, rel=1e-5)
    assert float(first["nll"]) + float(first["regulariser"]) == pytest.approx(loss[0], rel=1e-6)
    # the table says the epoch of the checkpoint it read (the end of the one warm-up epoch) and the batch's sample
    assert {int(r["checkpoint_epoch"]) for r in rows} == {1}
    assert first["sample_size"] == 16 and first["pool_size"] == len(np.load(subset))
    written = read_csv(tmp_path / "a.csv")
    assert written[0].keys() >= {"batch", "part", "value", "sign", "hvps", "converged", "checkpoint_epoch", *SAMPLE_COLUMNS}
    # every parameter decays (decay: all): the objective's trace is the NLL's plus wd * n, per batch
    n = sum(p.numel() for p in model.parameters())
    traces = {(r["batch"], r["part"]): float(r["value"]) for r in rows if r["which"] == "trace"}
    assert traces[(0, "objective")] - traces[(0, "nll")] == pytest.approx(wd * n, rel=1e-9)
    assert traces[(0, "regulariser")] == pytest.approx(wd * n)


# --- one weight-decay definition --------------------------------------------------------------------------------


def family_models():
    """One small instance per registered model family: the demo preset's size where it has one, else the
    smallest registered architecture of the family with its defaults."""
    with open(Path(__file__).resolve().parents[1] / "presets" / "demo.yaml") as handle:
        demo = yaml.safe_load(handle)["models"]
    by_family = {}
    for model in demo.values():
        by_family.setdefault(model_family(model["arch"]), (model["arch"], model.get("kwargs", {})))
    for arch in available_models():
        by_family.setdefault(model_family(arch), (arch, {}))
    return by_family


@pytest.mark.parametrize("decay", DECAY_SETS)
@pytest.mark.parametrize("family", sorted(family_models()))
def test_optimizer_hessian_and_landscape_decay_the_same_parameters(family, decay):
    arch, kwargs = family_models()[family]
    torch.manual_seed(0)
    model = create_model(arch, num_classes=5, **kwargs).double().eval()
    wd = 0.3
    named = dict(model.named_parameters())
    # the optimizer: parameters of the groups with weight decay
    optimizer = build_optimizer(model, "adamw", {"lr": 1e-3, "weight_decay": wd}, decay)
    ids = {id(p): name for name, p in named.items()}
    optimizer_set = {ids[id(p)] for group in optimizer.param_groups if group["weight_decay"] > 0 for p in group["params"]}
    assert optimizer_set  # every family has decayed weights under both sets
    # the Hessian's objective: its Hessian minus the NLL's is wd on exactly the decayed coordinates
    inputs = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    targets = torch.softmax(torch.randn(2, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64), 1)
    op = HessianOperator(model, inputs, targets, weight_decay=wd, decay=decay)
    ones = torch.ones(op.size, dtype=torch.float64)
    difference = (op.for_part("objective").hvp(ones) - op.for_part("nll").hvp(ones)).split(
        [p.numel() for p in op.params])
    hessian_set = {name for name, d in zip(op.names, difference) if torch.allclose(d, torch.full_like(d, wd))}
    assert all(torch.all(d == 0) for name, d in zip(op.names, difference) if name not in hessian_set)
    assert hessian_set == optimizer_set
    # the landscape's objective: its regulariser at the trained weights is 0.5 wd sum ||p||^2 over that set
    zero = {name: torch.zeros_like(p) for name, p in named.items()}
    [point] = loss_landscape_2d(model, lambda m: (0.0, 0.0), [zero, zero], (np.zeros(1), np.zeros(1)),
                                weight_decay=wd, decay=decay)
    expected = 0.5 * wd * sum(float(named[name].detach().pow(2).sum()) for name in optimizer_set)
    assert point["regulariser"] == pytest.approx(expected, rel=1e-12)
    assert op.regulariser == pytest.approx(expected, rel=1e-12)


# --- the landscape ----------------------------------------------------------------------------------------------


def test_landscape_centre_is_the_training_objective(trained, tmp_path):
    checkpoints, (train, _, _, subset), _ = trained
    rows = loss_landscape_table(checkpoints / "last.pt", train, subset, LANDSCAPE, tmp_path / "l.csv", device="cpu")
    assert len(rows) == 9 and {r["objective"] for r in rows} == {"train"}
    centre = next(r for r in rows if float(r["x"]) == 0 and float(r["y"]) == 0)
    model, info = load_checkpoint_model(checkpoints / "last.pt")
    images, labels = load_split(train)
    subset_indices = np.load(subset)
    chosen = subset_indices[stratified_sample(labels[subset_indices], 40, LANDSCAPE["seed"])]
    assert np.bincount(labels[chosen]).tolist() == [10] * 4  # a class-stratified sample of the training subset
    inputs, targets = landscape_data(info, images, labels, chosen, "train", LANDSCAPE["seed"])
    assert targets.ndim == 2 and targets.max() < 1.0  # label-smoothed soft targets
    wd = info["run"]["optimizer"]["hparams"]["weight_decay"]
    with torch.no_grad():
        nll = float(soft_cross_entropy(model(inputs), targets))
        decay = 0.5 * wd * sum(float((p**2).sum()) for p in model.parameters())  # the recipe decays every parameter
    assert float(centre["nll"]) == pytest.approx(nll, rel=1e-5)
    assert float(centre["regulariser"]) == pytest.approx(decay, rel=1e-6)
    assert float(centre["loss"]) == pytest.approx(nll + decay, rel=1e-5)
    assert max(float(r["loss"]) for r in rows) > float(centre["loss"])
    # the same batches at every grid point and on every call (drawn once, from the analysis seed)
    again = loss_landscape_table(checkpoints / "last.pt", train, subset, LANDSCAPE, tmp_path / "m.csv", device="cpu")
    assert [r["loss"] for r in again] == [r["loss"] for r in rows]
    # the clean objective: the un-augmented sample with its labels
    clean = loss_landscape_table(checkpoints / "last.pt", train, subset, LANDSCAPE | {"objective": "clean"},
                                 tmp_path / "c.csv", device="cpu")
    from vitwork.augment import eval_inputs

    with torch.no_grad():
        clean_nll = float(torch.nn.functional.cross_entropy(
            model(eval_inputs(torch.from_numpy(images[chosen]), info["mean"], info["std"])), torch.from_numpy(labels[chosen])))
    clean_centre = next(r for r in clean if float(r["x"]) == 0 and float(r["y"]) == 0)
    assert float(clean_centre["nll"]) == pytest.approx(clean_nll, rel=1e-5) and clean_centre["objective"] == "clean"


def test_landscape_training_batches_carry_the_recipes_mixing(trained):
    """With the recipe's mixup/cutmix the fixed batches have mixed soft targets, in batches of the recipe's size."""
    checkpoints, (train, _, _, subset), _ = trained
    _, info = load_checkpoint_model(checkpoints / "last.pt")
    info = copy.deepcopy(info)
    info["run"]["training"].update(mixup_alpha=1.0, cutmix_alpha=0.8, mix_prob=1.0)
    images, labels = load_split(train)
    chosen = np.load(subset)[:32]
    inputs, targets = landscape_data(info, images, labels, chosen, "train", seed=0)
    assert inputs.shape == (32, 3, 32, 32) and targets.shape == (32, 4)
    smoothing_only = targets.max(dim=1).values >= 1 - 0.1 + 0.1 / 4 - 1e-6
    assert not smoothing_only.all()  # some rows mix two images' labels
    with pytest.raises(ValueError, match="objective"):
        landscape_data(info, images, labels, chosen, "test", seed=0)


# --- feature, noise and corruption tables -----------------------------------------------------------------------


def test_feature_and_noise_tables(trained, tmp_path):
    checkpoints, (_, test, _, _), _ = trained
    fourier = feature_table("fourier", checkpoints / "last.pt", test, FEATURES, tmp_path / "f.csv", device="cpu")
    variance = feature_table("feature_variance", checkpoints / "last.pt", test, FEATURES, tmp_path / "v.csv", device="cpu")
    assert {r["kind"] for r in fourier} == {"stem", "msa", "mlp"} and len(variance) == 3
    # 4x4 token grid: the authors' half diagonal has 2 points (0 and pi/2), nyquist adds pi
    assert sorted({round(r["frequency"] / np.pi, 6) for r in fourier}) == [0.0, 0.5]
    nyquist = feature_table("fourier", checkpoints / "last.pt", test, FEATURES | {"highest_frequency": "nyquist"},
                            tmp_path / "g.csv", device="cpu")
    assert sorted({round(r["frequency"] / np.pi, 6) for r in nyquist}) == [0.0, 0.5, 1.0]
    population = feature_table("feature_variance", checkpoints / "last.pt", test, FEATURES | {"estimator": "population"},
                               tmp_path / "p.csv", device="cpu")
    for unbiased, biased in zip(variance, population):  # 16 positions: the factor 16/15
        assert unbiased["variance"] == pytest.approx(biased["variance"] * 16 / 15, rel=1e-5)
    noise = noise_frequency_table(checkpoints / "last.pt", test, FEATURES | {"frequencies": [0.1, 0.9], "eps": 0.5},
                                  tmp_path / "n.csv", device="cpu")
    assert [round(r["frequency"] / np.pi, 6) for r in noise] == [0.1, 0.9]
    assert len(read_csv(tmp_path / "n.csv")) == 2
    assert {r["sample_classes"] for r in noise} == {4}


def test_corruption_table_is_evaluated_on_the_sample_it_was_generated_from(trained, tmp_path):
    checkpoints, (_, test, _, _), _ = trained
    images, labels = load_split(test)
    settings = {"images": 8, "batch_size": 4, "seed": 0}
    for name in CORRUPTIONS:
        write_generated_corruption(test, name, settings["images"], settings["seed"], tmp_path / "c")
    write_generated_labels(test, settings["images"], settings["seed"], tmp_path / "c")
    rows = corruption_table(checkpoints / "last.pt", test, tmp_path / "c", settings, False, tmp_path / "r.csv", device="cpu")
    assert len(rows) == 1 + 75 and rows[0]["corruption"] == "clean"
    assert list(read_csv(tmp_path / "r.csv")[0]) == CORRUPTION_COLUMNS
    sample = stratified_sample(labels, 8, 0)
    assert np.bincount(labels[sample]).tolist() == [2] * 4
    model, info = load_checkpoint_model(checkpoints / "last.pt")
    from vitwork.augment import eval_inputs

    with torch.no_grad():
        predictions = model(eval_inputs(torch.from_numpy(images[sample]), info["mean"], info["std"])).argmax(-1)
    assert rows[0]["acc"] == pytest.approx(float((predictions == torch.from_numpy(labels[sample])).float().mean()))
    assert {(r["sample_size"], r["sample_classes"], r["pool_size"]) for r in rows} == {(8, 4, 24)}
    # sets generated from another sample are refused, not evaluated against the wrong labels
    with pytest.raises(ValueError, match="regenerate"):
        corruption_table(checkpoints / "last.pt", test, tmp_path / "c", settings | {"seed": 5}, False,
                         tmp_path / "s.csv", device="cpu")


def test_diverged_checkpoint_gives_an_empty_table(tmp_path):
    spec, paths = tiny_spec(tmp_path, name="sgd", hparams={"lr": 1e6, "weight_decay": 0.0}, warmup_epochs=0)
    spec["training"]["grad_clip_norm"] = None
    train_run(spec, *paths, tmp_path / "run", device="cpu", progress=False)
    hessian_spectrum_table(tmp_path / "run" / "checkpoints" / "last.pt", paths[0], paths[3], HESSIAN, tmp_path / "h.csv", device="cpu")
    assert read_csv(tmp_path / "h.csv") == [] and (tmp_path / "h.csv").read_text().startswith("batch,part,which")


def test_a_class_ordered_split_gives_the_shuffled_splits_numbers(trained, tmp_path):
    """The same test images stored class after class (as an ImageFolder tree is read) or shuffled (as torchvision's
    CIFAR files) give the same analysis numbers within sampling error; "the first N images" did not."""
    from vitwork.synthetic import make_synthetic

    *_, resnet = trained
    images, labels = make_synthetic(10, 40, seed=5)  # 10 classes that differ in shape and fine texture
    storages = {"ordered": np.argsort(labels, kind="stable"), "shuffled": np.random.default_rng(0).permutation(400)}
    seeds = range(4)
    highest = {}  # storage -> [seed, block]: the highest-frequency ΔLog amplitude of every block
    for name, order in storages.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, images=images[order], labels=labels[order])
        tables = [feature_table("fourier", resnet / "last.pt", path, {**FEATURES, "images": 100, "seed": seed},
                                tmp_path / "f.csv", device="cpu") for seed in seeds]
        highest[name] = np.array([[rows[-1]["delta_log_amplitude"] for rows in by_block(table)] for table in tables])
    ordered, shuffled = highest["ordered"], highest["shuffled"]
    standard_error = np.sqrt(ordered.var(0, ddof=1) / len(seeds) + shuffled.var(0, ddof=1) / len(seeds))
    assert np.all(np.abs(ordered.mean(0) - shuffled.mean(0)) <= 3 * standard_error + 0.01)


def by_block(rows):
    """Rows of a Fourier table grouped by block, in block order."""
    blocks = {}
    for row in rows:
        blocks.setdefault(row["block_index"], []).append(row)
    return [blocks[index] for index in sorted(blocks)]
