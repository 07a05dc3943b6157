"""Block layouts of per-block analysis tables and the grey/blue shading of MSA and down-sampling blocks vs depth.

Shared by the depth figures (`fourier_depth`, `feature_variance_depth`) so both shade the same spans. A run's
blocks sit at normalised depths ``block_index / (n - 1)`` (see `vitwork.fourier.block_positions`); a shaded
block covers ``depth ± half`` where ``half`` is half the smallest gap between consecutive block depths, so
the spans of neighbouring blocks touch but never overlap, and each span contains exactly one block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from matplotlib.patches import Patch

# Kind of block -> how it is shaded (the paper's convention: MSA grey, down-sampling blue).
SHADE_STYLES = {
    "msa": {"color": "0.5", "label": "MSA block"},
    "downsample": {"color": "#56B4E9", "label": "down-sampling block"},
}
SHADE_ALPHA = 0.25
DEPTH_DECIMALS = 9  # depths are i / (n - 1) floats read back from CSV: compare them rounded


@dataclass(frozen=True)
class BlockSpan:
    """One shaded interval of normalised depth, around the block ``block_index`` of kind ``kind``."""

    block_index: int
    kind: str
    depth: float
    start: float
    end: float


def block_layout(rows: Iterable[dict]) -> list[tuple[int, str, float]]:
    """Unique ``(block_index, kind, depth)`` of table rows, by block index; raise if one index has two identities.

    Rows may repeat a block (one row per frequency, or several runs of one layout).
    """
    blocks: dict[int, tuple[str, float]] = {}
    for row in rows:
        identity = (row["kind"], round(float(row["depth"]), DEPTH_DECIMALS))
        previous = blocks.setdefault(int(row["block_index"]), identity)
        if previous != identity:
            raise ValueError(f"block {row['block_index']} appears as {previous} and as {identity}: "
                             "rows of runs with different block layouts were mixed")
    return [(index, kind, depth) for index, (kind, depth) in sorted(blocks.items())]


def layout_key(rows: Iterable[dict]) -> tuple[tuple[str, float], ...]:
    """A hashable layout: the ``(kind, depth)`` of every block in order; runs with equal keys share shading."""
    return tuple((kind, depth) for _, kind, depth in block_layout(rows))


def half_spacing(depths: Sequence[float]) -> float:
    """Half the smallest gap between distinct consecutive depths (0.5 for a single block)."""
    ordered = sorted(set(depths))
    gaps = [b - a for a, b in zip(ordered, ordered[1:])]
    return 0.5 * min(gaps) if gaps else 0.5


def block_spans(rows: Iterable[dict], kinds: Iterable[str] = tuple(SHADE_STYLES)) -> list[BlockSpan]:
    """The shaded span of every block whose kind is in ``kinds`` (by default MSA and down-sampling), in order."""
    layout = block_layout(rows)
    half = half_spacing([depth for _, _, depth in layout])
    kinds = set(kinds)
    return [BlockSpan(index, kind, depth, depth - half, depth + half) for index, kind, depth in layout if kind in kinds]


def shade_blocks(ax, rows: Iterable[dict]) -> list[BlockSpan]:
    """Shade MSA blocks grey and down-sampling blocks blue behind the data of ``ax``; returns the spans drawn."""
    spans = block_spans(rows)
    for span in spans:
        # A thin white edge keeps neighbouring spans (e.g. consecutive down-sampling blocks) apart.
        ax.axvspan(span.start, span.end, facecolor=SHADE_STYLES[span.kind]["color"], alpha=SHADE_ALPHA,
                   edgecolor="white", linewidth=0.8, zorder=0)
    return spans


def shading_legend_handles(spans: Iterable[BlockSpan]) -> list[Patch]:
    """Legend patches for the kinds of block actually shaded (in SHADE_STYLES order)."""
    present = {span.kind for span in spans}
    return [Patch(facecolor=style["color"], alpha=SHADE_ALPHA, label=style["label"])
            for kind, style in SHADE_STYLES.items() if kind in present]
