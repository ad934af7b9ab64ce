"""Renderers for basin geometry: sharpness of several checkpoints side by side, and per-block
distances as heatmaps. Pure renderers: plain numbers in, a figure out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from viz.views import LITERAL, literal_legend


def plot_sharpness(names: Sequence[str], top: Sequence[float], trace: Sequence[float],
                   trace_stderr: Sequence[float], groups: Sequence[str] | None = None) -> Figure:
    """Two panels, one bar per checkpoint: the top Hessian eigenvalue, and the Hutchinson trace
    with error bars of two standard errors; bars coloured by ``groups`` (e.g. the run)."""
    if not names:
        raise ValueError("no checkpoints to draw")
    groups = list(groups) if groups is not None else ["" for _ in names]
    palette = {g: f"C{i}" for i, g in enumerate(dict.fromkeys(groups))}
    colors = [palette[g] for g in groups]
    fig = Figure(figsize=(max(6.0, 0.5 * len(names) + 3), 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    x = np.arange(len(names))
    axes[0].bar(x, top, color=colors)
    axes[0].set_title("top Hessian eigenvalue", **LITERAL)
    axes[1].bar(x, trace, yerr=2 * np.nan_to_num(np.asarray(trace_stderr, dtype=float)), capsize=3, color=colors)
    axes[1].set_title("Hessian trace (Hutchinson, +-2 s.e.)", **LITERAL)
    for ax in axes:
        ax.set_xticks(x, names, rotation=45, ha="right", **LITERAL)
        ax.grid(alpha=0.3, axis="y")
    if any(groups):
        from matplotlib.patches import Patch

        handles = [Patch(color=c) for c in palette.values()]
        literal_legend(axes[0], handles, list(palette), fontsize=8)
    return fig


def plot_block_distances(panels: Mapping[str, tuple[Sequence[str], Sequence[str], np.ndarray]]) -> Figure:
    """One heatmap per panel: ``panels[title] = (row labels, block names, (rows, blocks) values)``,
    each cell annotated (NaN left blank)."""
    panels = {t: p for t, p in panels.items() if len(p[0])}
    if not panels:
        raise ValueError("no distances to draw")
    width = max(len(p[1]) for p in panels.values())
    fig = Figure(figsize=(0.9 * width + 3, sum(0.45 * len(p[0]) + 1.4 for p in panels.values())), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, (rows, blocks, values)) in zip(axes, panels.items()):
        values = np.asarray(values, dtype=float)
        im = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(blocks)), blocks, rotation=45, ha="right", **LITERAL)
        ax.set_yticks(range(len(rows)), rows, **LITERAL)
        ax.set_title(title, **LITERAL)
        finite = values[np.isfinite(values)]
        mid = float(finite.mean()) if finite.size else 0.0
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color="black" if v > mid else "white")
        fig.colorbar(im, ax=ax)
    return fig
