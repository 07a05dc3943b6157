"""Per-run analysis glue: resumable tables, the augmented Hessian loss, the landscape centre, corruption tables."""

import numpy as np
import pytest
import torch

from test_train import tiny_spec
from vitwork.analysis import (
    CORRUPTION_COLUMNS,
    ResumableTable,
    augmented_training_batch,
    run_augmentation,
    corruption_table,
    feature_table,
    hessian_spectrum_table,
    loss_landscape_table,
    noise_frequency_table,
)
from vitwork.corruptions import CORRUPTIONS, generate_corruption, write_corruption
from vitwork.data import load_split
from vitwork.hessian import regularised_loss
from vitwork.results import read_csv
from vitwork.train import load_checkpoint_model, train_run

HESSIAN = {"batches": 2, "batch_size": 16, "method": "lanczos", "k": 2, "tol": 1e-3, "max_hvps": 120, "trace_probes": 2, "seed": 0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    spec, paths = tiny_spec(tmp)
    train_run(spec, *paths, tmp / "run", device="cpu", progress=False)
    return tmp / "run" / "checkpoints", paths


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


def test_hessian_loss_is_the_augmented_regularised_loss(trained, tmp_path):
    checkpoints, (train, _, _, subset) = trained
    rows = hessian_spectrum_table(checkpoints / "warmup.pt", train, subset, HESSIAN, tmp_path / "a.csv", device="cpu")
    again = hessian_spectrum_table(checkpoints / "warmup.pt", train, subset, HESSIAN, tmp_path / "b.csv", device="cpu")
    other = hessian_spectrum_table(checkpoints / "warmup.pt", train, subset, HESSIAN | {"seed": 1}, tmp_path / "c.csv", device="cpu")
    loss = {r["batch"]: float(r["loss"]) for r in rows}
    assert loss == {r["batch"]: float(r["loss"]) for r in again}
    assert loss[0] != {r["batch"]: float(r["loss"]) for r in other}[0]  # another augmentation seed, another loss
    assert {r["which"] for r in rows} == {"top_magnitude", "largest", "most_negative", "trace"}
    # the reported loss is the soft-target cross-entropy of the seeded augmented batch plus weight decay
    model, info = load_checkpoint_model(checkpoints / "warmup.pt")
    images, labels = load_split(train)
    inputs, targets = augmented_training_batch(run_augmentation(info), images, labels, np.load(subset), 16, seed=0)
    wd = info["run"]["optimizer"]["hparams"]["weight_decay"]
    with torch.no_grad():
        expected = float(regularised_loss(model, inputs, targets, wd))
    assert loss[0] == pytest.approx(expected, rel=1e-5)
    assert read_csv(tmp_path / "a.csv")[0].keys() >= {"batch", "value", "hvps", "converged"}


def test_landscape_centre_is_the_checkpoint_loss(trained, tmp_path):
    checkpoints, (train, _, _, subset) = trained
    settings = {"points": 3, "extent": 0.5, "images": 40, "batch_size": 16, "seed": 0}
    rows = loss_landscape_table(checkpoints / "last.pt", train, subset, settings, tmp_path / "l.csv", device="cpu")
    assert len(rows) == 9
    centre = next(r for r in rows if float(r["x"]) == 0 and float(r["y"]) == 0)
    model, info = load_checkpoint_model(checkpoints / "last.pt")
    images, labels = load_split(train)
    chosen = np.load(subset)[:40]
    from vitwork.augment import eval_inputs

    x = eval_inputs(torch.from_numpy(images[chosen]), info["mean"], info["std"])
    with torch.no_grad():
        logits = model(x)
        nll = float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels[chosen])))
        wd = info["run"]["optimizer"]["hparams"]["weight_decay"]
        decay = 0.5 * wd * sum(float((p**2).sum()) for p in model.parameters())  # the recipe decays every parameter (decay: all)
    assert float(centre["nll"]) == pytest.approx(nll, rel=1e-5)
    assert float(centre["loss"]) == pytest.approx(nll + decay, rel=1e-5)
    assert max(float(r["loss"]) for r in rows) > float(centre["loss"])


def test_feature_and_noise_tables(trained, tmp_path):
    checkpoints, (_, test, _, _) = trained
    settings = {"images": 12, "batch_size": 5}
    fourier = feature_table("fourier", checkpoints / "last.pt", test, settings, tmp_path / "f.csv", device="cpu")
    variance = feature_table("feature_variance", checkpoints / "last.pt", test, settings, tmp_path / "v.csv", device="cpu")
    assert {r["kind"] for r in fourier} == {"stem", "msa", "mlp"} and len(variance) == 3
    noise = noise_frequency_table(checkpoints / "last.pt", test, settings | {"frequencies": [0.1, 0.9], "eps": 0.5, "seed": 0}, tmp_path / "n.csv", device="cpu")
    assert [round(r["frequency"] / np.pi, 6) for r in noise] == [0.1, 0.9]
    assert len(read_csv(tmp_path / "n.csv")) == 2


def test_corruption_table_has_clean_and_every_set(trained, tmp_path):
    checkpoints, (_, test, _, _) = trained
    images, labels = load_split(test)
    for name in CORRUPTIONS:
        write_corruption(tmp_path / "c", name, generate_corruption(images[:8], name, seed=0))
    settings = {"images": 8, "batch_size": 4}
    rows = corruption_table(checkpoints / "last.pt", test, tmp_path / "c", settings, False, tmp_path / "r.csv", device="cpu")
    assert len(rows) == 1 + 75 and rows[0]["corruption"] == "clean"
    assert list(read_csv(tmp_path / "r.csv")[0]) == CORRUPTION_COLUMNS
    model, info = load_checkpoint_model(checkpoints / "last.pt")
    from vitwork.augment import eval_inputs

    with torch.no_grad():
        predictions = model(eval_inputs(torch.from_numpy(images[:8]), info["mean"], info["std"])).argmax(-1)
    assert rows[0]["acc"] == pytest.approx(float((predictions == torch.from_numpy(labels[:8])).float().mean()))


def test_diverged_checkpoint_gives_an_empty_table(tmp_path):
    spec, paths = tiny_spec(tmp_path, name="sgd", hparams={"lr": 1e6, "weight_decay": 0.0}, warmup_epochs=0)
    spec["training"]["grad_clip_norm"] = None
    train_run(spec, *paths, tmp_path / "run", device="cpu", progress=False)
    hessian_spectrum_table(tmp_path / "run" / "checkpoints" / "last.pt", paths[0], paths[3], HESSIAN, tmp_path / "h.csv", device="cpu")
    assert read_csv(tmp_path / "h.csv") == [] and (tmp_path / "h.csv").read_text().startswith("batch,which")
