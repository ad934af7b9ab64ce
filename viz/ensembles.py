"""Ensemble quality against ensemble size, several runs on one figure (the paper's
Local DE vs SSE vs StarSSE plots). Pure renderers: plain arrays in, a figure out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from viz.views import LITERAL, literal_legend

_TITLES = {
    "accuracy": "ensemble accuracy (%)",
    "soup_accuracy": "uniform soup accuracy (%)",
    "nll": "ensemble NLL",
    "ece": "ensemble ECE (%)",
    "brier": "ensemble Brier score",
    "diversity": "diversity",
    "member_accuracy": "mean member accuracy (%)",
    "ood_accuracy": "OOD ensemble accuracy (%)",
    "ood_soup_accuracy": "OOD soup accuracy (%)",
}


def plot_size_curves(
    series: Mapping[str, Mapping[str, Sequence[float]]],
    metrics: Sequence[str] = ("accuracy", "soup_accuracy"),
) -> Figure:
    """One panel per metric; one line per run, value against ensemble size 1..K.

    Args:
        series: ``series[run_name][metric]`` is the metric for sizes 1..K of that run, and
            ``<metric>_low`` / ``<metric>_high`` where given its interval (drawn as a band).
            Metrics a run lacks are skipped for that run.
        metrics: which metrics to draw, left to right.

    Returns:
        A new matplotlib Figure (not registered with pyplot).

    Raises:
        ValueError: no run has any of the metrics.
    """
    present = [m for m in metrics if any(len(s.get(m, ())) for s in series.values())]
    if not present:
        raise ValueError(f"none of the runs has the metrics {list(metrics)}")
    fig = Figure(figsize=(4.6 * len(present), 3.8), layout="constrained")
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    first = {}  # the lines of the first panel, by run name: the legend's
    for ax, metric in zip(axes, present):
        for name, values in series.items():
            v = np.asarray(values.get(metric, ()), dtype=float)
            if v.size:
                line = ax.plot(np.arange(1, v.size + 1), v, marker="o", label=name)[0]
                low, high = values.get(f"{metric}_low"), values.get(f"{metric}_high")
                if low is not None and high is not None and len(low) == v.size == len(high):
                    ax.fill_between(np.arange(1, v.size + 1), np.asarray(low, dtype=float),
                                    np.asarray(high, dtype=float), color=line.get_color(), alpha=0.2, lw=0)
                if ax is axes[0]:
                    first[name] = line
        ax.set_title(_TITLES.get(metric, metric), **LITERAL)
        ax.set_xlabel("ensemble size")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    literal_legend(axes[0], first.values(), first.keys(), fontsize=9)
    return fig


def plot_sweep_heatmap(
    values: np.ndarray,
    row_values: Sequence[float],
    col_values: Sequence[float],
    *,
    title: str = "ensemble accuracy (%)",
    row_label: str = "cycle LR / base LR",
    col_label: str = "cycle epochs / base epochs",
) -> Figure:
    """A heatmap of one number per sweep cell, annotated with the values (NaN left blank)."""
    values = np.asarray(values, dtype=float)
    if values.shape != (len(row_values), len(col_values)):
        raise ValueError(f"values have shape {values.shape}, expected "
                         f"({len(row_values)}, {len(col_values)})")
    fig = Figure(figsize=(1.2 * len(col_values) + 2.4, 0.8 * len(row_values) + 1.6),
                 layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(len(col_values)), [f"{v:g}" for v in col_values])
    ax.set_yticks(range(len(row_values)), [f"{v:g}" for v in row_values])
    ax.set_xlabel(col_label, **LITERAL)
    ax.set_ylabel(row_label, **LITERAL)
    ax.set_title(title, **LITERAL)
    finite = values[np.isfinite(values)]
    mid = float(finite.mean()) if finite.size else 0.0
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center",
                    color="black" if v > mid else "white", fontsize=9)
    fig.colorbar(im, ax=ax)
    return fig


def plot_sweep_curves(
    sweep: Mapping[str, Sequence[Mapping]],
    *,
    title: str = "validation ensemble accuracy (%)",
) -> Figure:
    """Validation accuracy against the cycle learning rate, one line per method, with error bars
    (``row["accuracy"]``: ``value``, ``low``, ``high``) and the chosen rate ringed.

    Args:
        sweep: per method, rows with ``cycle_lr``, ``accuracy`` and ``regime`` (containing
            ``optimal`` for the chosen rate).
    """
    if not sweep:
        raise ValueError("no sweep to draw")
    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.subplots()
    for method, rows in sweep.items():
        x = np.asarray([r["cycle_lr"] for r in rows], dtype=float)
        acc = [r["accuracy"] for r in rows]
        v = np.asarray([a["value"] for a in acc], dtype=float)
        err = np.asarray([[a["value"] - a["low"], a["high"] - a["value"]] for a in acc], dtype=float).T
        line = ax.errorbar(x, v, yerr=np.nan_to_num(err), marker="o", capsize=3, label=method)[0]
        best = [i for i, r in enumerate(rows) if "optimal" in r.get("regime", "")]
        ax.plot(x[best], v[best], "o", ms=13, mfc="none", color=line.get_color())
    ax.set_xscale("log")
    rates = sorted({r["cycle_lr"] for rows in sweep.values() for r in rows})
    ax.set_xticks(rates, [f"{v:g}" for v in rates])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("cycle learning rate")
    ax.set_title(title, **LITERAL)
    ax.grid(alpha=0.3)
    literal_legend(ax, [c[0] for c in ax.containers], list(sweep), fontsize=9)
    return fig
