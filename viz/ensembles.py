"""Ensemble quality against ensemble size, several runs on one figure (the paper's
Local DE vs SSE vs StarSSE plots). Pure renderers: plain arrays in, a figure out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

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
        series: ``series[run_name][metric]`` is the metric for sizes 1..K of that run.
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
    for ax, metric in zip(axes, present):
        for name, values in series.items():
            v = np.asarray(values.get(metric, ()), dtype=float)
            if v.size:
                ax.plot(np.arange(1, v.size + 1), v, marker="o", label=name)
        ax.set_title(_TITLES.get(metric, metric))
        ax.set_xlabel("ensemble size")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=9)
    return fig
