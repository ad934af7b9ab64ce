"""Renderers for linear paths: metric curves along alpha (the paper's accuracy-along-the-path
plots for consecutive snapshots) and the matrix of barriers between all pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from landscape.results import PathSet
from viz.views import LITERAL, literal_legend

_LABELS = {"loss": "loss", "acc": "accuracy (%)"}


def plot_paths(paths: PathSet, *, metrics: Sequence[str] = ("loss", "acc"),
               pairs: Sequence[int] | None = None) -> Figure:
    """A grid of panels, one row per metric and one column per split, one line per pair.

    Args:
        paths: the evaluated paths.
        metrics: ``loss`` and/or ``acc``.
        pairs: indices of the pairs to draw (default: all).

    Returns:
        A new matplotlib Figure; the endpoints a = 0 and a = 1 are marked by dotted lines.
    """
    splits = paths.splits
    if not splits:
        raise ValueError("the paths have no metrics to plot")
    metrics = [m for m in metrics if m != "acc" or paths.has_acc] or ["loss"]  # loss only: no accuracy
    chosen = list(range(len(paths.pairs))) if pairs is None else list(pairs)
    fig = Figure(figsize=(4.8 * len(splits), 3.4 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), len(splits), squeeze=False)
    lines = {}
    for r, metric in enumerate(metrics):
        for c, split in enumerate(splits):
            ax = axes[r][c]
            for p in chosen:
                y = np.where(paths.done[p], paths.curve(p, split, metric), np.nan)
                line = ax.plot(paths.alpha, y, marker=".", label=paths.pair_name(p))[0]
                lines.setdefault(p, line)
            for a in (0.0, 1.0):
                ax.axvline(a, color="0.6", ls=":", lw=1)
            ax.set_title(f"{split} {_LABELS.get(metric, metric)}", **LITERAL)
            ax.set_xlabel("alpha")
            ax.grid(alpha=0.3)
    literal_legend(axes[0][0], lines.values(), [paths.pair_name(p) for p in lines], fontsize=8)
    return fig


def plot_barrier_matrix(names: Sequence[str], matrix: np.ndarray, *,
                        title: str = "test accuracy barrier (pp)") -> Figure:
    """A symmetric heatmap of barriers between every pair (NaN on the diagonal)."""
    matrix = np.asarray(matrix, dtype=float)
    n = len(names)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix has shape {matrix.shape}, expected ({n}, {n})")
    fig = Figure(figsize=(1.0 * n + 2.6, 0.9 * n + 1.6), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(matrix), cmap="magma_r")
    ax.set_xticks(range(n), names, rotation=45, ha="right", **LITERAL)
    ax.set_yticks(range(n), names, **LITERAL)
    ax.set_title(title, **LITERAL)
    for (i, j), v in np.ndenumerate(matrix):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=8, color="tab:blue")
    fig.colorbar(im, ax=ax)
    return fig


def plot_line_and_curve(line: PathSet, curve: PathSet, *, metrics: Sequence[str] = ("loss", "acc"),
                        title: str = "") -> Figure:
    """The straight line's first pair and a curve between the same endpoints, against t (the
    line's alpha), one row per metric and one column per split."""
    splits = [s for s in curve.splits if s in line.splits]
    if not splits:
        raise ValueError("the line and the curve share no split")
    metrics = [m for m in metrics if m != "acc" or (line.has_acc and curve.has_acc)] or ["loss"]
    fig = Figure(figsize=(4.8 * len(splits), 3.4 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), len(splits), squeeze=False)
    handles = []
    for r, metric in enumerate(metrics):
        for c, split in enumerate(splits):
            ax = axes[r][c]
            for ps, label, style in ((line, "straight line", "--"), (curve, "curve", "-")):
                y = np.where(ps.done[0], ps.curve(0, split, metric), np.nan)
                h = ax.plot(ps.alpha, y, style, marker=".", label=label)[0]
                if r == c == 0:
                    handles.append(h)
            ax.set_title(f"{split} {_LABELS.get(metric, metric)}", **LITERAL)
            ax.set_xlabel("t")
            ax.grid(alpha=0.3)
    literal_legend(axes[0][0], handles, ["straight line", "curve"], fontsize=8)
    if title:
        fig.suptitle(title, **LITERAL)
    return fig
