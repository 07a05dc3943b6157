"""One style for every figure of the project: rc settings, a colour per model family, labels, and the saver.

Figures are built on `matplotlib.figure.Figure` directly (not pyplot), so no GUI backend or global figure
state is involved; saving goes through Agg (PNG) and the PDF backend.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterable, Sequence

import matplotlib
import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from vitwork.config import format_number  # noqa: F401  (one formatting of numbers for run ids and labels)
from vitwork.io import atomic_path
from vitwork.results import FAMILY_ORDER, model_sort_key, write_csv

# Okabe-Ito colours (colour-blind safe): convolutional families in blues/green, hierarchical ViTs in purple/black,
# single-stage ViTs in orange/red.
FAMILY_COLORS = {
    "resnet": "#0072B2",
    "preact_resnet": "#56B4E9",
    "alternet": "#009E73",
    "swin": "#CC79A7",
    "pit": "#000000",
    "vit_local": "#E69F00",
    "vit": "#D55E00",
}

FAMILY_LABELS = {
    "resnet": "ResNet",
    "preact_resnet": "pre-act ResNet",
    "alternet": "AlterNet",
    "swin": "Swin",
    "pit": "PiT",
    "vit_local": "local-MSA ViT",
    "vit": "ViT",
}

# Several models of one family (e.g. ViT with CLS and with GAP) share the colour and differ by marker/shade.
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
OPTIMIZER_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))

# How model-name tokens of the study config are spelled in labels; unknown tokens are kept as they are.
NAME_TOKENS = {
    "resnet": "ResNet", "resnext": "ResNeXt", "preact": "PreAct", "vit": "ViT", "alternet": "AlterNet",
    "alter": "Alter", "swin": "Swin", "pit": "PiT", "ti": "Ti", "s": "S", "b": "B", "gap": "GAP", "cls": "CLS",
    "msa": "MSA", "local": "local",
}
OPTIMIZER_NAMES = {
    "sgd": "SGD", "momentum": "SGD (momentum)", "nesterov": "SGD (Nesterov)", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
    "lamb": "LAMB", "lars": "LARS", "sam": "SAM", "nadam": "NAdam", "radam": "RAdam", "lion": "Lion",
}

AXIS_LABELS = {
    "test_err": "Test error (%)",
    "test_acc": "Test accuracy (%)",
    "train_nll": "NLL$_\\mathrm{train}$ (nats)",
    "test_nll": "NLL$_\\mathrm{test}$ (nats)",
    "epoch": "Epoch",
    "wall_time_s": "Training time (s)",
    "fraction": "Training-set fraction (%)",
    "lr": "Learning rate",
    "weight_decay": "Weight decay",
}

FIGURE_DPI = 200
PANEL_SIZE = (3.4, 2.7)  # inches per panel

STYLE_RC = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.5,
    "lines.markersize": 4.5,
    "legend.frameon": False,
    "image.cmap": "viridis",
    "pdf.fonttype": 42,  # TrueType in PDFs, so text stays editable
    "savefig.dpi": FIGURE_DPI,
}


def apply_style() -> None:
    """Apply the project style to matplotlib's global rc settings."""
    matplotlib.rcParams.update(STYLE_RC)


def style_context() -> contextlib.AbstractContextManager:
    """A context manager that applies the project style only inside its block."""
    return matplotlib.rc_context(STYLE_RC)


def family_color(family: str) -> str:
    """The colour of a model family (the same in every figure)."""
    try:
        return FAMILY_COLORS[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILY_ORDER)}") from None


def ordered_models(models: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Unique (name, family) pairs in the project's model order."""
    return sorted(set(models), key=lambda nf: model_sort_key(nf[1], nf[0]))


def shade(color: str, index: int) -> tuple[float, float, float]:
    """The family colour for the first model, progressively darker for the next ones of the same family."""
    rgb = np.asarray(to_rgb(color))
    return tuple(rgb * (0.72 ** index))


def model_styles(models: Iterable[tuple[str, str]]) -> dict[str, dict]:
    """Colour (family, shaded within a family) and marker per model name, deterministic for a set of models."""
    styles: dict[str, dict] = {}
    seen_in_family: dict[str, int] = {}
    for name, family in ordered_models(models):
        index = seen_in_family.get(family, 0)
        seen_in_family[family] = index + 1
        styles[name] = {"color": shade(family_color(family), index), "marker": MODEL_MARKERS[index % len(MODEL_MARKERS)]}
    return styles


def optimizer_linestyles(names: Iterable[str]) -> dict[str, object]:
    """A line style per optimizer name, in sorted-name order so it does not depend on run order."""
    return {name: OPTIMIZER_LINESTYLES[i % len(OPTIMIZER_LINESTYLES)] for i, name in enumerate(sorted(set(names)))}


def _name_token(token: str) -> str:
    """Spell one model-name token for display (`resnet50` -> `ResNet-50`)."""
    if token in NAME_TOKENS:
        return NAME_TOKENS[token]
    match = re.fullmatch(r"([a-z]+)(\d+)", token)
    if match and match.group(1) in NAME_TOKENS:
        return f"{NAME_TOKENS[match.group(1)]}-{match.group(2)}"
    return token


def model_label(name: str) -> str:
    """Display name from a model's config name (`vit_ti` -> `ViT-Ti`, `alter_resnet50` -> `Alter-ResNet-50`)."""
    return "-".join(_name_token(token) for token in re.split(r"[_\-]+", name) if token)


def spec_model_label(spec: dict) -> str:
    """A run's model label: the study config's `label`, else (also when it is just the name) spelled from the name."""
    name, label = spec["model"]["name"], spec["model"].get("label")
    return label if label and label != name else model_label(name)


def optimizer_label(name: str) -> str:
    """Display name of an optimizer algorithm (`adamw` -> `AdamW`, `momentum` -> `SGD (momentum)`)."""
    return OPTIMIZER_NAMES.get(name.lower(), name)


def spec_optimizer_label(spec: dict) -> str:
    """A run's optimizer label: the recipe when it is a known name, else the algorithm with the recipe key.

    Two recipes of one algorithm (e.g. `adamw` and `adamw_grid`) thereby keep distinct labels.
    """
    optimizer = spec["optimizer"]
    recipe = optimizer.get("recipe", optimizer["name"])
    if recipe.lower() in OPTIMIZER_NAMES:
        return OPTIMIZER_NAMES[recipe.lower()]
    return f"{optimizer_label(optimizer['name'])} ({recipe})"


def optimizer_setting_label(spec: dict) -> str:
    """`AdamW lr 1e-3 wd 0.05` from a run spec's optimizer recipe and hyperparameters."""
    hparams = spec["optimizer"].get("hparams", {})
    parts = [spec_optimizer_label(spec)]
    if hparams.get("lr") is not None:
        parts.append(f"lr {format_number(hparams['lr'])}")
    if hparams.get("weight_decay") is not None:
        parts.append(f"wd {format_number(hparams['weight_decay'])}")
    return " ".join(parts)


def run_label(spec: dict) -> str:
    """`ViT-Ti · AdamW lr 1e-3 wd 0.05` from a run spec."""
    return f"{spec_model_label(spec)} · {optimizer_setting_label(spec)}"


def axis_label(quantity: str) -> str:
    """The axis label (with unit) of a tidy-table column."""
    return AXIS_LABELS.get(quantity, quantity)


def new_figure(nrows: int = 1, ncols: int = 1, panel_size: Sequence[float] = PANEL_SIZE, **subplot_kw):
    """A constrained-layout Figure with a grid of axes (always a 2-D array), sized per panel."""
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def empty_figure(message: str) -> Figure:
    """A one-panel figure that says why there is nothing to plot (a rule must still produce its outputs)."""
    fig, axes = new_figure()
    axes[0, 0].set_axis_off()
    axes[0, 0].text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def save_figure(fig: Figure, table_rows: Sequence[dict], out_png, out_pdf, out_csv,
                columns: Sequence[str] | None = None) -> None:
    """Write the tidy table the figure was drawn from as CSV, then the figure as PNG and PDF, each atomically.

    The table goes first so that a table that cannot be written never leaves new images without their data.
    """
    write_csv(table_rows, out_csv, columns)
    with style_context():
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=FIGURE_DPI)
        # A fixed (absent) creation date keeps PDFs byte-identical across reruns.
        with atomic_path(out_pdf) as tmp:
            fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})

