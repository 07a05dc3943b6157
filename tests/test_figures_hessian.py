"""Figures of the loss-landscape analyses: Hessian spectra, the optimizer-grid Hessian heatmaps and 2-D landscapes.

Fake runs carry fake analysis CSVs (docs/architecture.md, "Analyses") whose statistics are known by construction.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from test_figures import as_float, assert_outputs_complete, figure_paths, write_fake_run
from vitwork.figures import hessian_grid, hessian_spectra, landscape_surfaces, optimizer_grid
from vitwork.results import read_csv

torch.set_num_threads(1)

HESSIAN_FIELDS = ("batch", "part", "which", "rank", "value", "sign", "stderr", "method", "solve", "tol", "hvps",
                  "iterations", "converged", "seconds", "loss", "nll", "regulariser", "hvps_total", "checkpoint_epoch")
# the fake tables' NLL part: every value of the objective's minus this (a shift, as under the decay set `all`)
NLL_SHIFT = 0.5
REGULARISER_TRACE = 250.0


def write_table(path: Path, fields: tuple, rows: list[dict]) -> Path:
    """An analysis CSV as the analyses write it (None as an empty cell, NaN as `nan`, bools as True/False)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows([{key: "" if row.get(key) is None else row.get(key) for key in fields} for row in rows])
    return path


def hessian_rows(batches: list[dict], epoch: int = 5) -> list[dict]:
    """Hessian-table rows from per-batch dicts: `top` (list), `largest`, `smallest`, `trace`, `unconverged`; the
    objective's values as given, the NLL part's `NLL_SHIFT` lower, and the regulariser's trace."""
    rows = []
    for batch, spec in enumerate(batches):
        for part, shift in (("objective", 0.0), ("nll", -NLL_SHIFT)):
            for which in ("top_magnitude", "largest", "smallest", "trace"):
                values = spec["top"] if which == "top_magnitude" else [spec[which]]
                for rank, value in enumerate(values):
                    failed = which in spec.get("unconverged", ()) or (isinstance(value, float) and math.isnan(value))
                    rows.append({"batch": batch, "part": part, "which": which, "rank": rank, "value": value + shift,
                                 "method": "lanczos", "solve": f"nll:{which}", "tol": 1e-3, "hvps": 40,
                                 "iterations": 40, "converged": not failed, "seconds": 0.1, "loss": 4.6, "nll": 4.1,
                                 "regulariser": 0.5, "hvps_total": 120, "checkpoint_epoch": epoch})
        rows.append({"batch": batch, "part": "regulariser", "which": "trace", "rank": 0, "value": REGULARISER_TRACE,
                     "method": "exact", "solve": "regulariser:trace", "converged": True, "checkpoint_epoch": epoch})
    return rows


def write_hessian(tmp_path: Path, run_dir: Path, batches: list[dict], checkpoint: str = "warmup",
                  epoch: int = 5) -> Path:
    """The run's Hessian table under analysis/hessian/<run id>/<checkpoint>.csv."""
    run_id = run_dir.relative_to(tmp_path / "runs")
    return write_table(tmp_path / "analysis" / "hessian" / run_id / f"{checkpoint}.csv", HESSIAN_FIELDS,
                       hessian_rows(batches, epoch))


# ViT: per batch 3 negative of 5 top-k values (6 of 10 over two batches: ... see counts below), ResNet none.
VIT_BATCHES = [
    {"top": [50.0, -20.0, 10.0, -5.0, -2.0], "largest": 50.0, "smallest": -20.0, "trace": 300.0},
    {"top": [40.0, 8.0, -4.0, 3.0, float("nan")], "largest": 40.0, "smallest": -4.0, "trace": 100.0},
]
RESNET_BATCHES = [
    {"top": [900.0, 300.0, 100.0, 30.0, 10.0], "largest": 900.0, "smallest": -0.5, "trace": 5000.0,
     "unconverged": ("smallest",)},
    {"top": [800.0, 200.0, 90.0, 20.0, 9.0], "largest": 800.0, "smallest": float("nan"), "trace": 7000.0},
]
SMALL_VIT_BATCHES = [
    {"top": [-3.0, 2.0, -1.0, 0.5, -0.2], "largest": 2.0, "smallest": -3.0, "trace": 10.0},
]


def spectra_runs(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """ResNet, ViT (two seeds, the second with the same values) and ViT on 6% of the data, with their tables."""
    runs = [write_fake_run(tmp_path, model="resnet50", family="resnet", optimizer="sgd", lr=0.1, weight_decay=5e-4),
            write_fake_run(tmp_path, seed=0), write_fake_run(tmp_path, seed=1),
            write_fake_run(tmp_path, fraction=0.06)]
    batches = [RESNET_BATCHES, VIT_BATCHES, VIT_BATCHES, SMALL_VIT_BATCHES]
    return runs, [write_hessian(tmp_path, run, b) for run, b in zip(runs, batches)]


def test_which_stats_counts_negatives_nans_and_unconverged():
    rows = [{k: "" if v is None else str(v) for k, v in row.items()} for row in hessian_rows(VIT_BATCHES)
            if row["part"] == "objective"]
    top = hessian_spectra.which_stats(rows, "top_magnitude")
    assert (top["n_batches"], top["n_values"], top["n_nan"], top["n_negative"]) == (2, 9, 1, 4)
    assert top["fraction_negative"] == pytest.approx(4 / 9)
    assert (top["max"], top["min"], top["median_positive"]) == (50.0, -20.0, pytest.approx(10.0))  # 3 8 10 40 50
    assert top["n_unconverged"] == 1
    assert hessian_spectra.trace_mean(rows) == pytest.approx(200.0)
    assert hessian_spectra.median_largest(rows) == pytest.approx(45.0)


def test_sign_densities_integrate_to_one_and_split_by_sign():
    values = np.array([-100.0, -1.0, 1.0, 10.0, 1000.0, np.nan])
    edges = hessian_spectra.log_bin_edges([values], bins_per_decade=2)
    assert edges[0] == 0.0 and edges[-1] == 3.0 and len(edges) == 7
    dens = hessian_spectra.sign_densities(values, edges)
    width = np.diff(edges)
    assert (dens["negative"] * width).sum() == pytest.approx(2 / 5)  # the area is the negative fraction
    assert (dens["positive"] * width).sum() == pytest.approx(3 / 5)
    assert dens["negative"][4] == pytest.approx(1 / (5 * 0.5))  # -100: log10 2 in [2, 2.5)


def curve_area(rows: list[dict]) -> float:
    """The area under a density curve of the CSV, over log10|λ| (its unit: per decade)."""
    return sum(as_float(r["density"]) * (math.log10(as_float(r["bin_high"])) - math.log10(as_float(r["bin_low"])))
               for r in rows)


def test_hessian_spectra_csv_has_per_run_counts_and_density_curves(tmp_path):
    runs, tables = spectra_runs(tmp_path)
    png, pdf, csv_path = figure_paths(tmp_path, "hessian_spectra")
    hessian_spectra.make(runs, tables, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    stats = {(r["model"], float(r["fraction"]), int(r["seed"]), r["which"]): r for r in rows if r["kind"] == "run"}
    assert len(stats) == 4 * 3
    assert [r["model"] for r in rows if r["kind"] == "run"][:3] == ["resnet50"] * 3  # strong → weak bias
    vit = stats[("vit_ti", 1.0, 1, "top_magnitude")]
    assert (int(vit["n_values"]), int(vit["n_nan"]), int(vit["n_negative"])) == (9, 1, 4)
    assert as_float(vit["fraction_negative"]) == pytest.approx(4 / 9)
    assert (as_float(vit["max"]), as_float(vit["min"]), as_float(vit["median_positive"])) == (50.0, -20.0, 10.0)
    assert as_float(vit["trace_mean"]) == pytest.approx(200.0) and vit["checkpoint"] == "warmup"
    assert int(vit["checkpoint_epoch"]) == 5 and vit["loss_part"] == "objective"
    assert as_float(vit["regulariser_trace_mean"]) == pytest.approx(REGULARISER_TRACE)
    resnet = stats[("resnet50", 1.0, 0, "top_magnitude")]
    assert (int(resnet["n_values"]), int(resnet["n_negative"]), as_float(resnet["fraction_negative"])) == (10, 0, 0.0)
    resnet_neg = stats[("resnet50", 1.0, 0, "smallest")]
    assert (int(resnet_neg["n_values"]), int(resnet_neg["n_nan"]), int(resnet_neg["n_unconverged"])) == (1, 1, 2)
    assert resnet_neg["median_positive"] == "" and as_float(resnet_neg["max"]) == -0.5
    assert as_float(stats[("vit_ti", 0.06, 0, "largest")]["max"]) == 2.0
    density = [r for r in rows if r["kind"] == "density"]
    curves = {(r["model"], float(r["fraction"]), r["panel"], r["sign"]) for r in density}
    assert len(curves) == 3 * 2 * 2  # ViT's two seeds make one curve
    for model, fraction, panel in {(m, f, p) for m, f, p, _ in curves}:
        area = {sign: curve_area([r for r in density if (r["model"], float(r["fraction"]), r["panel"], r["sign"])
                                  == (model, fraction, panel, sign)])
                for sign in ("negative", "positive")}
        assert area["negative"] + area["positive"] == pytest.approx(1.0)
        if (model, fraction, panel) == ("vit_ti", 1.0, "top_magnitude"):
            assert area["negative"] == pytest.approx(4 / 9)
        if (model, panel) == ("resnet50", "top_magnitude"):
            assert area["negative"] == 0.0
        if (model, panel) == ("resnet50", "ends"):  # the unconverged -0.5 is drawn, the NaN is not
            assert area["negative"] == pytest.approx(1 / 3)
    assert {int(r["n_seeds"]) for r in density if r["model"] == "vit_ti" and float(r["fraction"]) == 1.0} == {2}
    assert {r["checkpoint_epoch"] for r in density} == {"5"}
    # the title line counts the unconverged eigenvalues drawn (ResNet's two), and names the part and the epoch
    note = hessian_spectra.figure_note(hessian_spectra.table(*spectra_runs(tmp_path / "again")))
    assert "4 of 49 eigenvalues not converged" in note and "warmup (epoch 5)" in note and "NLL + weight" in note


def test_hessian_spectra_can_draw_the_nll_part(tmp_path):
    runs, tables = spectra_runs(tmp_path)
    png, pdf, csv_path = figure_paths(tmp_path, "hessian_spectra")
    hessian_spectra.make(runs, tables, png, pdf, csv_path, loss="nll")
    rows = read_csv(csv_path)
    vit = next(r for r in rows if r["kind"] == "run" and r["model"] == "vit_ti" and r["which"] == "largest"
               and float(r["fraction"]) == 1.0)
    assert vit["loss_part"] == "nll" and as_float(vit["max"]) == pytest.approx(50.0 - NLL_SHIFT)
    assert as_float(vit["trace_mean"]) == pytest.approx(200.0 - NLL_SHIFT)
    with pytest.raises(ValueError, match="loss"):
        hessian_spectra.table(runs, tables, loss="regulariser")


def test_every_training_fraction_has_its_own_style_and_legend_entry(tmp_path):
    runs = [write_fake_run(tmp_path, fraction=f) for f in (1.0, 0.1, 0.025)]
    tables = [write_hessian(tmp_path, run, VIT_BATCHES) for run in runs]
    rows = hessian_spectra.table(runs, tables)
    models = hessian_spectra.model_styles([("vit_ti", "vit")])
    fractions = hessian_spectra.fraction_styles(r["fraction"] for r in rows)
    styles = [hessian_spectra.curve_style({"model": "vit_ti", "fraction": f}, models, fractions)
              for f in (1.0, 0.1, 0.025)]
    assert len({(s["color"], str(s["linestyle"])) for s in styles}) == 3
    assert len({str(s["linestyle"]) for s in styles}) == 3 and styles[0]["linestyle"] == "-"
    figure = hessian_spectra.plot(rows)
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert sorted(labels) == sorted(["ViT-Ti · 100% data", "ViT-Ti · 10% data", "ViT-Ti · 2.5% data"])


def test_analysis_tables_must_match_runs_and_exist_for_finished_runs(tmp_path):
    runs, tables = spectra_runs(tmp_path)
    with pytest.raises(ValueError, match="parallel"):
        hessian_spectra.table(runs, tables[:-1])
    with pytest.raises(FileNotFoundError, match="finished run"):
        hessian_spectra.table(runs, tables[:-1] + [tmp_path / "missing.csv"])


def grid_runs(tmp_path: Path) -> tuple[list[Path], list]:
    """ViT over lr x wd: 3 finished cells with known Hessians, one diverged cell without a table; one ResNet."""
    runs, tables = [], []
    for lr, wd, scale, diverged in ((1e-4, 0.05, 1.0, False), (1e-3, 0.05, 2.0, False), (1e-4, 0.5, 4.0, False),
                                    (1e-3, 0.5, 0.0, True)):
        run = write_fake_run(tmp_path, lr=lr, weight_decay=wd, test_acc=(0.2, 0.3 + lr * 100),
                             diverge_at=2 if diverged else None)
        runs.append(run)
        batches = [{"top": [scale * v for v in b["top"]], "largest": scale * b["largest"],
                    "smallest": scale * b["smallest"], "trace": scale * b["trace"]} for b in VIT_BATCHES]
        tables.append(None if diverged else write_hessian(tmp_path, run, batches))
    resnet = write_fake_run(tmp_path, model="resnet50", family="resnet", optimizer="sgd", lr=0.1, weight_decay=5e-4,
                            test_acc=(0.5, 0.8))
    return runs + [resnet], tables + [write_hessian(tmp_path, resnet, RESNET_BATCHES)]


def test_hessian_grid_rows_and_diverged_cells(tmp_path):
    runs, tables = grid_runs(tmp_path)
    png, pdf, csv_path = figure_paths(tmp_path, "hessian_grid")
    hessian_grid.make(runs, tables, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    cells = {(r["model"], float(r["lr"]), float(r["weight_decay"])): r for r in rows}
    assert len(cells) == 5
    cell = cells[("vit_ti", 1e-3, 0.05)]
    # like with like across optimizers: the NLL part by default
    assert cell["loss_part"] == "nll" and int(cell["checkpoint_epoch"]) == 5
    assert as_float(cell["largest_median"]) == pytest.approx(2.0 * 45.0 - NLL_SHIFT)
    assert as_float(cell["fraction_negative"]) == pytest.approx(4 / 9)
    assert as_float(cell["trace_mean"]) == pytest.approx(2.0 * 200.0 - NLL_SHIFT)
    assert as_float(cell["regulariser_trace_mean"]) == pytest.approx(REGULARISER_TRACE)
    assert as_float(cell["test_acc_pct"]) == pytest.approx(40.0) and int(cell["n_unconverged"]) == 1
    diverged = cells[("vit_ti", 1e-3, 0.5)]
    assert diverged["status"] == "diverged" and diverged["largest_median"] == "" and diverged["n_batches"] == "0"
    resnet = cells[("resnet50", 0.1, 5e-4)]
    assert as_float(resnet["fraction_negative"]) == 0.0
    assert as_float(resnet["trace_mean"]) == pytest.approx(6000.0 - NLL_SHIFT)
    vit_rows = [r for r in hessian_grid.table(runs, tables) if r["model"] == "vit_ti"]
    grid = optimizer_grid.cell_grid(vit_rows, metric="largest_median")
    assert grid["lrs"] == [1e-4, 1e-3] and grid["wds"] == [0.05, 0.5]
    assert math.isnan(grid["value"][1, 1]) and grid["diverged"][1, 1] == 1 == grid["total"][1, 1]
    assert grid["value"][1, 0] == pytest.approx(4.0 * 45.0 - NLL_SHIFT)  # wd 0.5 row, lr 1e-4 column
    objective = {(r["model"], r["lr"], r["weight_decay"]): r for r in hessian_grid.table(runs, tables, loss="objective")}
    assert objective[("vit_ti", 1e-3, 0.05)]["largest_median"] == pytest.approx(2.0 * 45.0)


def paraboloid(a: float, b: float, centre: float, points: int = 21) -> list[dict]:
    """Landscape rows of loss = centre + a x^2 + b y^2 on [-1, 1]^2."""
    coords = np.linspace(-1.0, 1.0, points)
    return [{"x": x, "y": y, "loss": centre + a * x * x + b * y * y, "nll": centre - 0.25 + a * x * x + b * y * y,
             "regulariser": 0.25, "accuracy": 0.5, "objective": "train"} for y in coords for x in coords]


def write_landscape(tmp_path: Path, run_dir: Path, rows: list[dict]) -> Path:
    """The run's landscape table under analysis/landscape/<run id>/last.csv."""
    run_id = run_dir.relative_to(tmp_path / "runs")
    return write_table(tmp_path / "analysis" / "landscape" / run_id / "last.csv",
                       ("x", "y", "loss", "nll", "regulariser", "accuracy", "objective"), rows)


def test_landscape_surfaces_flatness_of_paraboloids(tmp_path):
    resnet = write_fake_run(tmp_path, model="resnet50", family="resnet", optimizer="sgd", lr=0.1, weight_decay=5e-4)
    vit = write_fake_run(tmp_path)
    small = write_fake_run(tmp_path, fraction=0.06)
    sharp = paraboloid(3.0, 1.0, 0.5)
    sharp[0]["loss"] = float("inf")  # a corner that overflowed: out of every statistic
    sharp[1]["loss"] = float("nan")
    tables = [write_landscape(tmp_path, resnet, sharp), write_landscape(tmp_path, vit, paraboloid(0.2, 0.2, 2.0)),
              write_landscape(tmp_path, small, paraboloid(0.5, 0.1, 3.0))]
    png, pdf, csv_path = figure_paths(tmp_path, "landscape_surfaces")
    landscape_surfaces.make([resnet, vit, small], tables, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    runs = {(r["model"], float(r["fraction"])): r for r in rows if r["kind"] == "run"}
    coords = np.linspace(-1.0, 1.0, 21)
    X, Y = np.meshgrid(coords, coords)
    inside = np.hypot(X, Y) <= 0.5 + 1e-9
    for key, (a, b, centre) in {("resnet50", 1.0): (3.0, 1.0, 0.5), ("vit_ti", 1.0): (0.2, 0.2, 2.0),
                                ("vit_ti", 0.06): (0.5, 0.1, 3.0)}.items():
        row = runs[key]
        assert as_float(row["centre_loss"]) == pytest.approx(centre)
        assert as_float(row["mean_rise"]) == pytest.approx(np.mean(a * X[inside] ** 2 + b * Y[inside] ** 2))
        assert as_float(row["curvature"]) == pytest.approx(a + b)
        assert as_float(row["min_loss"]) == pytest.approx(centre)
    assert as_float(runs[("vit_ti", 1.0)]["max_loss"]) == pytest.approx(2.0 + 0.4)
    assert int(runs[("resnet50", 1.0)]["n_nonfinite"]) == 2 and int(runs[("resnet50", 1.0)]["n_points"]) == 441
    assert as_float(runs[("resnet50", 1.0)]["max_loss"]) == pytest.approx(0.5 + 3.0 + 1.0)  # the other corners
    points = [r for r in rows if r["kind"] == "point"]
    assert len(points) == 3 * 441
    vit_id = runs[("vit_ti", 1.0)]["run_id"]
    corner = [r for r in points if r["run_id"] == vit_id and float(r["x"]) == 1.0 and float(r["y"]) == -1.0]
    assert len(corner) == 1 and as_float(corner[0]["loss"]) == pytest.approx(2.4)
    assert as_float(corner[0]["accuracy_pct"]) == pytest.approx(50.0)
    assert [r["model"] for r in rows if r["kind"] == "run"] == ["resnet50", "vit_ti", "vit_ti"]
    assert {(r["loss_part"], r["objective"]) for r in runs.values()} == {("objective", "train")}
    assert as_float(runs[("vit_ti", 1.0)]["centre_nll"]) == pytest.approx(1.75)
    assert as_float(runs[("vit_ti", 1.0)]["centre_regulariser"]) == pytest.approx(0.25)
    assert as_float(corner[0]["regulariser"]) == pytest.approx(0.25)
    # the NLL part alone: the same shapes, 0.25 lower
    nll = {(r["model"], float(r["fraction"])): r for r in landscape_surfaces.table([resnet, vit, small], tables, loss="nll")
           if r["kind"] == "run"}
    assert nll[("vit_ti", 1.0)]["centre_loss"] == pytest.approx(1.75) and nll[("vit_ti", 1.0)]["loss_part"] == "nll"
    assert nll[("vit_ti", 1.0)]["curvature"] == pytest.approx(0.4)


def test_contour_levels_are_shared_rises_above_each_panels_minimum():
    tables = [[{k: str(v) for k, v in p.items()} for p in paraboloid(a, a, c, points=5)]
              for a, c in ((1.0, 1.0), (0.1, 9.5))]
    surfaces = [landscape_surfaces.surface(landscape_surfaces.point_rows("a", rows)) for rows in tables]
    assert np.nanmax(landscape_surfaces.rise(surfaces[1])) == pytest.approx(0.2)  # 9.5 .. 9.7
    levels = landscape_surfaces.contour_levels(surfaces)
    assert levels[-1] == pytest.approx(2.0) and levels[0] == pytest.approx(2e-3)
    assert np.allclose(np.diff(np.log10(levels)), 3 / (landscape_surfaces.LEVELS - 1))
