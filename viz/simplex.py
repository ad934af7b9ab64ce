"""The simplex view: loss and error over the triangle of convex combinations of three models,
drawn as an equilateral triangle with the models at its corners (A bottom left, B bottom right,
C on top). Pure renderers: a simplex ``Surface`` in, a figure out."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from matplotlib.figure import Figure
from matplotlib.tri import Triangulation

from landscape.results import Surface
from viz.views import LITERAL, View, describe, log_levels, shown_metrics

_HEIGHT = np.sqrt(3) / 2


def triangle_points(surface: Surface) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K,) cartesian x, y of the points inside the triangle, and their (j, i) grid indices (K, 2)."""
    b, c = np.meshgrid(surface.x, surface.y)
    inside = b + c <= 1 + 1e-9
    idx = np.argwhere(inside)
    return b[inside] + c[inside] / 2, c[inside] * _HEIGHT, idx


def _corners(surface: Surface) -> list[tuple[str, float, float]]:
    names = list(surface.points)[:3]
    return [(n, x, y) for n, (x, y) in zip(names, ((0.0, 0.0), (1.0, 0.0), (0.5, _HEIGHT)))]


def plot_simplex(surface: Surface, *, levels: int = 20) -> Figure:
    """One triangle panel per view (train loss and test error when present), filled contours on
    log-spaced levels over the points inside the triangle, the three models at the corners."""
    views = [v for v in (View("train", "loss"), View("test", "error")) if v.split in surface.splits] or \
        [View(s, m) for s in surface.splits for m in shown_metrics(surface)]
    x, y, idx = triangle_points(surface)
    tri = Triangulation(x, y)
    fig = Figure(figsize=(5.2 * len(views), 4.6), layout="constrained")
    for ax, view in zip(fig.subplots(1, len(views), squeeze=False)[0], views):
        z = view.values(surface)[idx[:, 0], idx[:, 1]]
        lv = log_levels(z, levels)
        cs = ax.tricontourf(tri, np.clip(z, lv[0], lv[-1]), levels=lv, cmap="viridis", norm=_log_norm(lv))
        cbar = fig.colorbar(cs, ax=ax, label=view.title, shrink=0.8)
        ticks = np.geomspace(lv[0], lv[-1], 5)
        cbar.set_ticks(ticks, labels=[f"{t:.3g}" for t in ticks])
        cbar.minorticks_off()
        ax.plot([0, 1, 0.5, 0], [0, 0, _HEIGHT, 0], color="black", lw=1)
        for name, cx, cy in _corners(surface):
            ax.plot(cx, cy, "o", ms=7, color="white", mec="black", zorder=5)
            ax.annotate(name, (cx, cy), xytext=(4, 4), textcoords="offset points", fontsize=10, fontweight="bold",
                        **LITERAL)
        ax.set_aspect("equal")
        ax.set_axis_off()
        ax.set_title(view.title, pad=18, **LITERAL)
    if title := describe(surface):
        fig.suptitle(title, **LITERAL)
    return fig


def _log_norm(levels):
    from matplotlib.colors import LogNorm

    return LogNorm(vmin=levels[0], vmax=levels[-1])


def simplex_figure(surface: Surface) -> go.Figure:
    """An interactive triangle: every point inside coloured by log10 of the value (hover shows the
    coefficients a, b, c and the value), a menu to switch views, the models at the corners."""
    x, y, idx = triangle_points(surface)
    b, c = surface.x[idx[:, 1]], surface.y[idx[:, 0]]
    views = [View(s, m) for s in surface.splits for m in shown_metrics(surface)]
    traces = []
    for k, view in enumerate(views):
        z = view.values(surface)[idx[:, 0], idx[:, 1]]
        text = [f"a={1 - bb - cc:.3f}, b={bb:.3f}, c={cc:.3f}<br>{view.title}={zz:.4g}" for bb, cc, zz in zip(b, c, z)]
        traces.append(go.Scatter(x=x, y=y, mode="markers", visible=k == 0, name=view.name, text=text,
                                 hoverinfo="text", marker=dict(color=np.log10(np.clip(z, 1e-12, None)), size=9,
                                                               colorscale="Viridis", showscale=True,
                                                               colorbar=dict(title="log10"))))
    corners = _corners(surface)
    traces.append(go.Scatter(x=[cx for _, cx, _ in corners], y=[cy for _, _, cy in corners], mode="markers+text",
                             text=[n for n, _, _ in corners], textposition="top center", name="models",
                             marker=dict(color="white", size=11, line=dict(color="black", width=1))))
    buttons = [dict(label=v.name, method="update",
                    args=[{"visible": [i == k for i in range(len(views))] + [True]}]) for k, v in enumerate(views)]
    fig = go.Figure(traces)
    fig.update_layout(title=f"Simplex: {describe(surface)}", template="plotly_white", showlegend=False,
                      xaxis=dict(visible=False), yaxis=dict(visible=False, scaleanchor="x"),
                      updatemenus=[dict(type="buttons", direction="right", x=0, y=1.08, xanchor="left",
                                        buttons=buttons)])
    return fig
