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

HESSIAN_FIELDS = ("batch", "which", "rank", "value", "stderr", "method", "solve", "tol", "hvps", "iterations",
                  "converged", "seconds", "loss", "hvps_total")


def write_table(path: Path, fields: tuple, rows: list[dict]) -> Path:
    """An analysis CSV as the analyses write it (None as an empty cell, NaN as `nan`, bools as True/False)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows([{key: "" if row.get(key) is None else row.get(key) for key in fields} for row in rows])
    return path


def hessian_rows(batches: list[dict]) -> list[dict]:
    """Hessian-table rows from per-batch dicts: `top` (list), `largest`, `most_negative`, `trace`, `unconverged`."""
    rows = []
    for batch, spec in enumerate(batches):
        for which in ("top_magnitude", "largest", "most_negative", "trace"):
            values = spec["top"] if which == "top_magnitude" else [spec[which]]
            for rank, value in enumerate(values):
                failed = which in spec.get("unconverged", ()) or (isinstance(value, float) and math.isnan(value))
                converged = not failed
                rows.append({"batch": batch, "which": which, "rank": rank, "value": value, "method": "lanczos",
                             "solve": which, "tol": 1e-3, "hvps": 40, "iterations": 40, "converged": converged,
                             "seconds": 0.1, "loss": 4.6, "hvps_total": 120})
    return rows


def write_hessian(tmp_path: Path, run_dir: Path, batches: list[dict], checkpoint: str = "warmup") -> Path:
    """The run's Hessian table under analysis/hessian/<run id>/<checkpoint>.csv."""
    run_id = run_dir.relative_to(tmp_path / "runs")
    return write_table(tmp_path / "analysis" / "hessian" / run_id / f"{checkpoint}.csv", HESSIAN_FIELDS,
                       hessian_rows(batches))


# ViT: per batch 3 negative of 5 top-k values (6 of 10 over two batches: ... see counts below), ResNet none.
VIT_BATCHES = [
    {"top": [50.0, -20.0, 10.0, -5.0, -2.0], "largest": 50.0, "most_negative": -20.0, "trace": 300.0},
    {"top": [40.0, 8.0, -4.0, 3.0, float("nan")], "largest": 40.0, "most_negative": -4.0, "trace": 100.0},
]
RESNET_BATCHES = [
    {"top": [900.0, 300.0, 100.0, 30.0, 10.0], "largest": 900.0, "most_negative": -0.5, "trace": 5000.0,
     "unconverged": ("most_negative",)},
    {"top": [800.0, 200.0, 90.0, 20.0, 9.0], "largest": 800.0, "most_negative": float("nan"), "trace": 7000.0},
]
SMALL_VIT_BATCHES = [
    {"top": [-3.0, 2.0, -1.0, 0.5, -0.2], "largest": 2.0, "most_negative": -3.0, "trace": 10.0},
]


def spectra_runs(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """ResNet, ViT (two seeds, the second with the same values) and ViT on 6% of the data, with their tables."""
    runs = [write_fake_run(tmp_path, model="resnet50", family="resnet", optimizer="sgd", lr=0.1, weight_decay=5e-4),
            write_fake_run(tmp_path, seed=0), write_fake_run(tmp_path, seed=1),
            write_fake_run(tmp_path, fraction=0.06)]
    batches = [RESNET_BATCHES, VIT_BATCHES, VIT_BATCHES, SMALL_VIT_BATCHES]
    return runs, [write_hessian(tmp_path, run, b) for run, b in zip(runs, batches)]


def test_which_stats_counts_negatives_nans_and_unconverged():
    rows = [{k: "" if v is None else str(v) for k, v in row.items()} for row in hessian_rows(VIT_BATCHES)]
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
    resnet = stats[("resnet50", 1.0, 0, "top_magnitude")]
    assert (int(resnet["n_values"]), int(resnet["n_negative"]), as_float(resnet["fraction_negative"])) == (10, 0, 0.0)
    resnet_neg = stats[("resnet50", 1.0, 0, "most_negative")]
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
                    "most_negative": scale * b["most_negative"], "trace": scale * b["trace"]} for b in VIT_BATCHES]
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
    assert as_float(cell["largest_median"]) == pytest.approx(2.0 * 45.0)
    assert as_float(cell["fraction_negative"]) == pytest.approx(4 / 9)
    assert as_float(cell["trace_mean"]) == pytest.approx(2.0 * 200.0)
    assert as_float(cell["test_acc_pct"]) == pytest.approx(40.0) and int(cell["n_unconverged"]) == 1
    diverged = cells[("vit_ti", 1e-3, 0.5)]
    assert diverged["status"] == "diverged" and diverged["largest_median"] == "" and diverged["n_batches"] == "0"
    resnet = cells[("resnet50", 0.1, 5e-4)]
    assert as_float(resnet["fraction_negative"]) == 0.0 and as_float(resnet["trace_mean"]) == pytest.approx(6000.0)
    vit_rows = [r for r in hessian_grid.table(runs, tables) if r["model"] == "vit_ti"]
    grid = optimizer_grid.cell_grid(vit_rows, metric="largest_median")
    assert grid["lrs"] == [1e-4, 1e-3] and grid["wds"] == [0.05, 0.5]
    assert math.isnan(grid["value"][1, 1]) and grid["diverged"][1, 1] == 1 == grid["total"][1, 1]
    assert grid["value"][1, 0] == pytest.approx(4.0 * 45.0)  # wd 0.5 row, lr 1e-4 column


def paraboloid(a: float, b: float, centre: float, points: int = 21) -> list[dict]:
    """Landscape rows of loss = centre + a x^2 + b y^2 on [-1, 1]^2."""
    coords = np.linspace(-1.0, 1.0, points)
    return [{"x": x, "y": y, "loss": centre + a * x * x + b * y * y, "nll": centre + a * x * x + b * y * y,
             "accuracy": 0.5} for y in coords for x in coords]


def write_landscape(tmp_path: Path, run_dir: Path, rows: list[dict]) -> Path:
    """The run's landscape table under analysis/landscape/<run id>/last.csv."""
    run_id = run_dir.relative_to(tmp_path / "runs")
    return write_table(tmp_path / "analysis" / "landscape" / run_id / "last.csv",
                       ("x", "y", "loss", "nll", "accuracy"), rows)


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


def test_contour_levels_are_shared_rises_above_each_panels_minimum():
    tables = [[{k: str(v) for k, v in p.items()} for p in paraboloid(a, a, c, points=5)]
              for a, c in ((1.0, 1.0), (0.1, 9.5))]
    surfaces = [landscape_surfaces.surface(landscape_surfaces.point_rows("a", rows)) for rows in tables]
    assert np.nanmax(landscape_surfaces.rise(surfaces[1])) == pytest.approx(0.2)  # 9.5 .. 9.7
    levels = landscape_surfaces.contour_levels(surfaces)
    assert levels[-1] == pytest.approx(2.0) and levels[0] == pytest.approx(2e-3)
    assert np.allclose(np.diff(np.log10(levels)), 3 / (landscape_surfaces.LEVELS - 1))
