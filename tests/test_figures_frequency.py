"""Figures of the frequency analyses (claim 5) on fake runs with fake analysis tables of known numbers."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

from test_figures import as_float, assert_outputs_complete, figure_paths, write_fake_run
from vitwork.figures import (
    blocks_shading, feature_variance_depth, fourier_depth, fourier_spectra, noise_frequency_curves,
)
from vitwork.results import load_run, read_csv

torch.set_num_threads(1)

# Block kinds of three small layouts (index = position, depth = index / (n - 1)), as in vitwork.fourier tables.
LAYOUTS = {
    "resnet50": ["stem", "conv", "conv", "downsample", "conv"],
    "vit_ti": ["stem", "msa", "mlp", "msa", "mlp"],
    "alter_resnet50": ["stem", "conv", "downsample", "conv", "msa", "downsample", "msa"],
}
FAMILIES = {"resnet50": "resnet", "vit_ti": "vit", "alter_resnet50": "alternet"}
# Written in this order on purpose: the largest frequency is neither the first nor the last row of a block.
FREQUENCIES = (0.0, math.pi, math.pi / 2)
NOISE_FREQUENCIES = tuple(math.pi * k / 10 for k in range(1, 10))


def high_value(kind: str, index: int, offset: float = 0.0) -> float:
    """Known ΔLog amplitude at π: MSA blocks low-pass (well below the MLP/Conv block before them)."""
    return {"msa": -3.0, "mlp": -1.0}.get(kind, -1.5) - 0.01 * index + offset


def mid_value(kind: str, index: int) -> float:
    """Known ΔLog amplitude at π/2 (distinct from the π value, so a wrong pick shows)."""
    return -0.5 - 0.1 * index


def write_table(path: Path, columns: tuple, rows: list[dict]) -> Path:
    """Write a fake analysis CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def block_identity(kinds: list[str], index: int) -> dict:
    """block_index, block_name, kind, depth of one block of a layout."""
    return {"block_index": index, "block_name": f"blocks.{index}", "kind": kinds[index],
            "depth": index / (len(kinds) - 1)}


def fourier_csv(path: Path, model: str, offset: float = 0.0) -> Path:
    """A `fourier` table of a model's layout with the known values above (``offset`` added at π)."""
    kinds = LAYOUTS[model]
    values = {0.0: lambda kind, i: 0.0, math.pi: lambda kind, i: high_value(kind, i, offset), math.pi / 2: mid_value}
    rows = [{**block_identity(kinds, i), "frequency": f, "delta_log_amplitude": values[f](kinds[i], i)}
            for i in range(len(kinds)) for f in FREQUENCIES]
    return write_table(path, ("block_index", "block_name", "kind", "depth", "frequency", "delta_log_amplitude"), rows)


def variance(kind: str, index: int) -> float:
    """Known feature-map variance: grows through Conv/MLP blocks, halved after MSA blocks."""
    return (0.5 if kind == "msa" else 2.0) * (index + 1)


def variance_csv(path: Path, model: str) -> Path:
    """A `feature_variance` table of a model's layout, rows in reverse block order (the figure must sort)."""
    kinds = LAYOUTS[model]
    rows = [{**block_identity(kinds, i), "variance": variance(kinds[i], i)} for i in reversed(range(len(kinds)))]
    return write_table(path, ("block_index", "block_name", "kind", "depth", "variance"), rows)


CLEAN_ACC = {"resnet50": 0.8, "vit_ti": 0.6, "alter_resnet50": 0.82}


def noise_drop(model: str, k: int) -> float:
    """Known accuracy drop (fraction) at f = kπ/10: ResNet loses much more at high frequency than ViT."""
    return {"resnet50": 0.02 * k, "vit_ti": 0.004 * k, "alter_resnet50": 0.01 * k}[model]


def noise_csv(path: Path, model: str) -> Path:
    """A `noise_frequency` table (frequencies in reverse order, the figure must sort)."""
    clean = CLEAN_ACC[model]
    rows = [{"frequency": f, "acc": clean - noise_drop(model, k), "clean_acc": clean, "delta_acc": -noise_drop(model, k)}
            for k, f in reversed(list(enumerate(NOISE_FREQUENCIES, start=1)))]
    return write_table(path, ("frequency", "acc", "clean_acc", "delta_acc"), rows)


def table_path(tmp_path: Path, analysis: str, run: Path, name: str = "last.csv") -> Path:
    """Where the analysis writes a run's table: analysis/<analysis>/<run id>/<checkpoint>.csv."""
    return tmp_path / "analysis" / analysis / load_run(run).run_id / name


def fake_selection(tmp_path: Path, analysis: str, writer, models=tuple(LAYOUTS), seeds=(0,)) -> tuple[list, list]:
    """Fake runs of the given models and seeds and their analysis tables at checkpoint `last` (parallel lists)."""
    runs, tables = [], []
    for model in models:
        for seed in seeds:
            run_dir = write_fake_run(tmp_path, model=model, family=FAMILIES[model], seed=seed)
            runs.append(run_dir / "run.json")
            tables.append(writer(table_path(tmp_path, analysis, run_dir), model))
    return runs, tables


def by_run_and_block(rows: list[dict]) -> dict:
    """CSV rows keyed by (model, block_index)."""
    return {(row["model"], int(row["block_index"])): row for row in rows}


# --- blocks_shading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(LAYOUTS))
def test_block_spans_cover_exactly_the_msa_and_downsampling_blocks(model):
    kinds = LAYOUTS[model]
    rows = [block_identity(kinds, i) for i in range(len(kinds)) for _ in FREQUENCIES]  # blocks repeat per frequency
    spans = blocks_shading.block_spans(rows)
    shaded = [i for i, kind in enumerate(kinds) if kind in ("msa", "downsample")]
    assert [span.block_index for span in spans] == shaded
    assert [span.kind for span in spans] == [kinds[i] for i in shaded]
    step = 1 / (len(kinds) - 1)
    for span in spans:
        assert (span.start, span.end) == pytest.approx((span.block_index * step - step / 2,
                                                         span.block_index * step + step / 2))
    # Every block depth lies inside a span iff the block is MSA or down-sampling (spans touch, never overlap).
    for i in range(len(kinds)):
        inside = [s for s in spans if s.start < i * step < s.end]
        assert len(inside) == (1 if i in shaded else 0)


def test_shade_blocks_draws_one_span_per_block_and_rejects_mixed_layouts():
    fig = Figure()
    ax = fig.subplots()
    rows = [block_identity(LAYOUTS["alter_resnet50"], i) for i in range(7)]
    spans = blocks_shading.shade_blocks(ax, rows)
    assert len(ax.patches) == len(spans) == 4
    for patch, span in zip(ax.patches, spans):
        assert matplotlib.colors.to_rgb(patch.get_facecolor()) == matplotlib.colors.to_rgb(
            blocks_shading.SHADE_STYLES[span.kind]["color"])
    assert [h.get_label() for h in blocks_shading.shading_legend_handles(spans)] == ["MSA block", "down-sampling block"]
    mixed = rows + [block_identity(LAYOUTS["vit_ti"], 1)]  # block 1 is conv in one layout and msa in the other
    with pytest.raises(ValueError, match="different block layouts"):
        blocks_shading.block_spans(mixed)


# --- fourier_depth -----------------------------------------------------------------------------------------


def test_fourier_depth_takes_the_value_at_the_largest_frequency(tmp_path):
    runs, tables = fake_selection(tmp_path, "fourier", fourier_csv)
    png, pdf, csv_path = figure_paths(tmp_path, "fourier_depth")
    fourier_depth.make(runs, tables, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    assert list(rows[0]) == list(fourier_depth.COLUMNS)
    got = by_run_and_block(rows)
    assert set(got) == {(model, i) for model, kinds in LAYOUTS.items() for i in range(len(kinds))}
    for (model, i), row in got.items():
        kind = LAYOUTS[model][i]
        assert row["kind"] == kind and as_float(row["depth"]) == pytest.approx(i / (len(LAYOUTS[model]) - 1))
        assert as_float(row["high_frequency"]) == pytest.approx(math.pi)
        assert as_float(row["high_frequency_delta_log_amplitude"]) == pytest.approx(high_value(kind, i))
        assert row["checkpoint"] == "last" and row["family"] == FAMILIES[model] and row["seed"] == "0"
    # The claim's signature in the known numbers: every MSA block sits below the MLP block before it.
    for (model, i), row in got.items():
        if row["kind"] == "msa":
            assert as_float(row["high_frequency_delta_log_amplitude"]) < as_float(
                got[(model, i - 1)]["high_frequency_delta_log_amplitude"])
    # Models in the project order (strong → weak inductive bias).
    assert list(dict.fromkeys(row["model"] for row in rows)) == ["resnet50", "alter_resnet50", "vit_ti"]


def test_fourier_depth_one_panel_per_layout_with_its_own_shading(tmp_path):
    runs, tables = fake_selection(tmp_path, "fourier", fourier_csv, seeds=(0, 1))
    fig = fourier_depth.plot(fourier_depth.table(runs, tables))
    panels = {ax.get_title(): ax for ax in fig.axes if ax.lines}
    assert sorted(panels) == ["Alter-ResNet-50", "ResNet-50", "ViT-Ti"]
    expected_spans = {"ResNet-50": 1, "ViT-Ti": 2, "Alter-ResNet-50": 4}
    for title, ax in panels.items():
        assert len(ax.lines) == 2  # the two seeds share the panel of their layout
        assert len(ax.patches) == expected_spans[title]
    # Two seeds of one setting: labels fall back to the run id to stay distinct; shading kinds are listed too.
    legend = [t.get_text() for t in panels["ViT-Ti"].get_legend().get_texts()]
    assert legend == [f"ViT-Ti · AdamW lr 1e-3 wd 0.05 · 100% data · vit_ti/adamw-lr0.001-wd0.05/f1.0/s{s}"
                      for s in (0, 1)] + ["MSA block"]


def test_figures_reject_unpaired_runs_and_broken_tables(tmp_path):
    runs, tables = fake_selection(tmp_path, "fourier", fourier_csv, models=("vit_ti",))
    with pytest.raises(ValueError, match="1 runs but 2 analysis tables"):
        fourier_depth.table(runs, tables * 2)
    broken = write_table(table_path(tmp_path, "fourier", runs[0], "broken.csv"),
                         ("block_index", "kind", "depth", "frequency"), [])
    with pytest.raises(ValueError, match=r"broken\.csv: missing column\(s\) block_name, delta_log_amplitude"):
        fourier_depth.table(runs, [broken])


# --- fourier_spectra ---------------------------------------------------------------------------------------


def test_fourier_spectra_averages_finished_seeds_point_by_point(tmp_path):
    runs, tables = [], []
    for seed, offset, diverge in ((0, 0.0, None), (1, 0.4, None), (2, 100.0, 2)):
        run_dir = write_fake_run(tmp_path, model="vit_ti", family="vit", seed=seed, diverge_at=diverge)
        runs.append(run_dir)
        tables.append(fourier_csv(table_path(tmp_path, "fourier", run_dir), "vit_ti", offset=offset))
    run_dir = write_fake_run(tmp_path, model="resnet50", family="resnet")
    runs.append(run_dir)
    tables.append(fourier_csv(table_path(tmp_path, "fourier", run_dir), "resnet50"))
    png, pdf, csv_path = figure_paths(tmp_path, "fourier_spectra")
    fourier_spectra.make(runs, tables, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    assert list(rows[0]) == list(fourier_spectra.COLUMNS)
    seeds = [r for r in rows if r["statistic"] == "seed"]
    assert len(seeds) == (3 * 5 + 5) * len(FREQUENCIES)  # every point of every run, the diverged one too
    means = {(r["model"], int(r["block_index"]), round(float(r["frequency"]), 6)): r
             for r in rows if r["statistic"] == "mean"}
    assert len(means) == (5 + 5) * len(FREQUENCIES)
    for i, kind in enumerate(LAYOUTS["vit_ti"]):
        top = means[("vit_ti", i, round(math.pi, 6))]
        # Seeds 0 and 1 only: the diverged seed's +100 must not enter the mean.
        assert as_float(top["delta_log_amplitude"]) == pytest.approx(high_value(kind, i) + 0.2)
        assert top["n_seeds"] == "2" and top["run_id"] == "" and top["seed"] == ""
        assert top["setting_id"] == "vit_ti/adamw-lr0.001-wd0.05/f1.0"
        assert as_float(means[("vit_ti", i, round(math.pi / 2, 6))]["delta_log_amplitude"]) == pytest.approx(
            mid_value(kind, i))
        assert as_float(means[("vit_ti", i, 0.0)]["delta_log_amplitude"]) == 0.0
    # Within a block the points run from DC to π.
    first_block = [float(r["frequency"]) for r in seeds if r["model"] == "resnet50" and r["block_index"] == "0"]
    assert first_block == pytest.approx([0.0, math.pi / 2, math.pi])


def test_fourier_spectra_panels_curves_and_depth_colours(tmp_path):
    runs, tables = fake_selection(tmp_path, "fourier", fourier_csv, models=("resnet50", "vit_ti"))
    fig = fourier_spectra.plot(fourier_spectra.table(runs, tables))
    panels = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in panels] == ["ResNet-50", "ViT-Ti"]
    assert all(len(ax.lines) == 5 for ax in panels)  # one curve per block
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["0", "π/2", "π"]
    cmap = matplotlib.colormaps[fourier_spectra.DEPTH_CMAP]
    assert [line.get_color() for line in panels[1].lines] == [cmap(i / 4) for i in range(5)]
    colorbars = [ax for ax in fig.axes if ax.get_ylabel() == "Normalised depth"]
    assert len(colorbars) == 1


def test_fourier_spectra_refuses_to_average_seeds_of_different_layouts(tmp_path):
    runs = [write_fake_run(tmp_path, model="vit_ti", family="vit", seed=s) for s in (0, 1)]
    tables = [fourier_csv(table_path(tmp_path, "fourier", runs[0]), "vit_ti"),
              fourier_csv(table_path(tmp_path, "fourier", runs[1]), "resnet50")]
    with pytest.raises(ValueError, match="cannot be averaged"):
        fourier_spectra.table(runs, tables)


# --- feature_variance_depth --------------------------------------------------------------------------------


def test_feature_variance_depth_rows_sorted_by_block_with_log_axis(tmp_path):
    runs, tables = fake_selection(tmp_path, "feature_variance", variance_csv)
    png, pdf, csv_path = figure_paths(tmp_path, "feature_variance_depth")
    feature_variance_depth.make(runs, tables, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    assert list(rows[0]) == list(feature_variance_depth.COLUMNS)
    for model, kinds in LAYOUTS.items():
        model_rows = [r for r in rows if r["model"] == model]
        assert [int(r["block_index"]) for r in model_rows] == list(range(len(kinds)))
        assert [as_float(r["variance"]) for r in model_rows] == pytest.approx(
            [variance(kind, i) for i, kind in enumerate(kinds)])
    fig = feature_variance_depth.plot(feature_variance_depth.table(runs, tables))
    panels = {ax.get_title(): ax for ax in fig.axes if ax.lines}
    assert all(ax.get_yscale() == "log" for ax in panels.values())
    assert len(panels["ViT-Ti"].patches) == 2 and len(panels["ResNet-50"].patches) == 1


# --- noise_frequency_curves --------------------------------------------------------------------------------


def test_noise_frequency_curves_in_fractions_and_percentage_points(tmp_path):
    runs, tables = fake_selection(tmp_path, "noise_frequency", noise_csv)
    png, pdf, csv_path = figure_paths(tmp_path, "noise_frequency_curves")
    noise_frequency_curves.make(runs, tables, png, pdf, csv_path)
    assert_outputs_complete(png, pdf, csv_path)
    rows = read_csv(csv_path)
    assert list(rows[0]) == list(noise_frequency_curves.COLUMNS)
    for model in LAYOUTS:
        curve = [r for r in rows if r["model"] == model]
        assert [as_float(r["frequency_pi"]) for r in curve] == pytest.approx([k / 10 for k in range(1, 10)])
        for k, row in enumerate(curve, start=1):
            assert as_float(row["delta_acc_fraction"]) == pytest.approx(-noise_drop(model, k))
            assert as_float(row["delta_acc_pp"]) == pytest.approx(-100 * noise_drop(model, k))
            assert as_float(row["acc_pct"]) == pytest.approx(100 * (CLEAN_ACC[model] - noise_drop(model, k)))
            assert as_float(row["clean_acc_fraction"]) == pytest.approx(CLEAN_ACC[model])
    at_09 = {r["model"]: as_float(r["delta_acc_pp"]) for r in rows if as_float(r["frequency_pi"]) == pytest.approx(0.9)}
    assert at_09["resnet50"] == pytest.approx(-18.0) and at_09["vit_ti"] == pytest.approx(-3.6)
    fig = noise_frequency_curves.plot(noise_frequency_curves.table(runs, tables))
    ax = fig.axes[0]
    assert len(ax.lines) == 1 + len(LAYOUTS)  # zero line + one line per run
    assert list(ax.lines[0].get_ydata()) == [0.0, 0.0]


def test_noise_frequency_curves_reject_accuracies_in_percent(tmp_path):
    runs = [write_fake_run(tmp_path)]
    table = write_table(table_path(tmp_path, "noise_frequency", runs[0], "pct.csv"),
                        ("frequency", "acc", "clean_acc", "delta_acc"),
                        [{"frequency": 0.1, "acc": 55.0, "clean_acc": 60.0, "delta_acc": -5.0}])
    with pytest.raises(ValueError, match=r"acc=55\.0 is not a fraction"):
        noise_frequency_curves.table(runs, [table])
