"""Claim 6: the AlterNet build-up, accuracy and robustness as MSA blocks replace Conv blocks from the end.

The paper builds AlterNet from a ResNet by turning blocks into MSA blocks from the end of the network, one at a
time. Two panels show clean accuracy and robustness (mean accuracy over the corrupted sets) against the number
of MSA blocks of each model: a ResNet counts 0, an AlterNet `sum(msa_per_stage)` (from the run's model kwargs, or
the architecture's own default). A marker is a model at the mean over finished seeds (std error bars), a grey
line joins the models of one training fraction in MSA order. The CSV has one row per run.
"""

from __future__ import annotations

import functools
import json
from typing import Iterable, Sequence

import torch
from matplotlib.figure import Figure

from vitwork.figures.analysis_tables import IDENTITY_COLUMNS, RunTable
from vitwork.figures.corruption_tables import (
    SCORE_COLUMNS, SCORE_PANELS, load_selection, mean_point, require_one_setting_per, score_labels, score_rows,
)
from vitwork.figures.style import (
    OPTIMIZER_LINESTYLES, empty_figure, format_number, model_styles, new_figure, save_figure, style_context,
)
from vitwork.models import create_model
from vitwork.results import group_by, model_sort_key

COLUMNS = IDENTITY_COLUMNS + ("num_msa",) + SCORE_COLUMNS
RESNET_FAMILIES = ("resnet", "preact_resnet")
LINE_COLOR = "0.6"


@functools.lru_cache(maxsize=None)
def default_msa_per_stage(arch: str, kwargs_json: str) -> tuple[int, ...]:
    """The MSA layout an AlterNet architecture builds from its own defaults (kwargs given as sorted JSON)."""
    # Built on the meta device (no memory, no initialisation), so the presets' layouts live only in vitwork.models.
    with torch.device("meta"):
        model = create_model(arch, num_classes=1, **json.loads(kwargs_json))
    return tuple(model.msa_per_stage)


def num_msa(spec: dict) -> int:
    """Number of MSA blocks of a run's model: sum of `msa_per_stage`; 0 for ResNets (the build-up's start)."""
    model = spec["model"]
    kwargs = model.get("kwargs") or {}
    if "msa_per_stage" in kwargs:
        return int(sum(kwargs["msa_per_stage"]))
    if model["family"] in RESNET_FAMILIES:
        return 0
    if model["family"] == "alternet":
        return int(sum(default_msa_per_stage(model["arch"], json.dumps(kwargs, sort_keys=True))))
    raise ValueError(f"corruptions_buildup: model {model['name']} is a {model['family']} model; the build-up "
                     f"counts MSA blocks of ResNet and AlterNet runs only")


def table(selection: Iterable[RunTable]) -> list[dict]:
    """One row per run with its number of MSA blocks and scores; one setting per (model, fraction)."""
    selection = list(selection)
    require_one_setting_per(selection, lambda run: (run.model_name, run.fraction),
                            "corruptions_buildup: model, fraction")
    return score_rows(selection, num_msa=lambda item: num_msa(item.run.spec))


def series(rows: Sequence[dict]) -> list[dict]:
    """The models of one fraction in build-up order (MSA count, then model order), each at its seed mean."""
    points = []
    for group in group_by(rows, lambda row: row["model"]).values():
        point = mean_point(group)
        if point is not None:
            points.append({**group[0], **point})
    return sorted(points, key=lambda p: (p["num_msa"], model_sort_key(p["family"], p["model"])))


def plot(rows: Sequence[dict]) -> Figure:
    """Clean accuracy and robustness against the number of MSA blocks, one marker per model."""
    with style_context():
        by_fraction = {fraction: series(group)
                       for fraction, group in sorted(group_by(rows, lambda row: row["fraction"]).items())}
        by_fraction = {fraction: points for fraction, points in by_fraction.items() if points}
        if not by_fraction:
            return empty_figure("no finished runs")
        styles = model_styles((row["model"], row["family"]) for row in rows)
        counts = sorted({p["num_msa"] for points in by_fraction.values() for p in points})
        labels = score_labels(rows)
        fig, axes = new_figure(1, 2)
        for ax, (metric, title) in zip(axes[0], SCORE_PANELS):
            labelled = set()
            for index, (fraction, points) in enumerate(by_fraction.items()):
                line_label = f"{format_number(100 * fraction)}% data" if len(by_fraction) > 1 else None
                ax.plot([p["num_msa"] for p in points], [p[metric] for p in points], color=LINE_COLOR,
                        linestyle=OPTIMIZER_LINESTYLES[index % len(OPTIMIZER_LINESTYLES)], label=line_label,
                        zorder=1)
                std_key = metric.replace("_pct", "_std")
                for p in points:
                    label = None if p["model"] in labelled else p["model_label"]
                    labelled.add(p["model"])
                    ax.errorbar([p["num_msa"]], [p[metric]], yerr=p[std_key], capsize=2, linestyle="none",
                                label=label, zorder=2, **styles[p["model"]])
            ax.set_xticks(counts)
            ax.set_xlabel("Number of MSA blocks")
            ax.set_ylabel(labels[metric])
            ax.set_title(title)
        axes[0, 0].legend()
        return fig


def make(runs, tables, out_png, out_pdf, out_csv) -> list[dict]:
    """Read runs and their corruption tables (parallel lists), draw, save PNG + PDF + CSV; returns rows."""
    rows = table(load_selection(runs, tables))
    save_figure(plot(rows), rows, out_png, out_pdf, out_csv, COLUMNS)
    return rows
