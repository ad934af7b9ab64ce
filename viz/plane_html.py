"""The interactive plane (plotly): one contour per (split, loss | error) with a menu to switch.

Pure functions: a :class:`landscape.results.Surface` in, a :class:`plotly.graph_objects.Figure`
out; nothing is written to disk except by :func:`write_html`, whose page works offline. Colours
are log10 of the value on the scale of :func:`viz.views.log_levels`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from landscape.results import Surface
from viz.views import View, shown_metrics, axis_labels, describe, equal_aspect, log_levels


def _format_values(z: np.ndarray) -> np.ndarray:
    """Hover strings with the real values (inf stays visible; plotly's JSON would null it)."""
    return np.vectorize(lambda v: "not computed" if np.isnan(v) else f"{v:.4g}",
                        otypes=[object])(z)


def _log_colorbar(levels: np.ndarray, title: str) -> dict:
    """A colorbar for log10-coloured values whose tick labels show the real values."""
    ticks = np.geomspace(levels[0], levels[-1], 6)
    return dict(title=dict(text=title), tickvals=np.log10(ticks).tolist(),
                ticktext=[f"{t:.3g}" for t in ticks])


def _contour_trace(surface: Surface, view: View, *, levels: int, visible: bool) -> go.Contour:
    z = view.values(surface)
    lv = log_levels(z, levels)
    logz = np.log10(np.clip(z, lv[0], lv[-1]))  # NaN stays NaN: a gap in the plot
    lo, hi = np.log10(lv[0]), np.log10(lv[-1])
    return go.Contour(
        x=surface.x, y=surface.y, z=logz, name=view.name, visible=visible,
        zmin=lo, zmax=hi, colorscale="Viridis", colorbar=_log_colorbar(lv, view.title),
        contours=dict(coloring="heatmap", start=lo, end=hi, size=(hi - lo) / (levels - 1),
                      showlines=True),
        line=dict(width=0.5, color="rgba(0,0,0,0.4)"),
        text=_format_values(z),
        hovertemplate=f"x=%{{x:.3g}}<br>y=%{{y:.3g}}<br>{view.title}=%{{text}}<extra></extra>",
    )


def _points_trace(surface: Surface) -> go.Scatter:
    names = list(surface.points)
    pts = [surface.points[n] for n in names]
    return go.Scatter(
        x=[p.x for p in pts], y=[p.y for p in pts], text=names, name="checkpoints",
        mode="markers+text", textposition="top right", showlegend=False,
        textfont=dict(size=14, color="black"),
        marker=dict(size=10, color="white", line=dict(width=2, color="black")),
        customdata=[p.residual for p in pts],
        hovertemplate="%{text}<br>x=%{x:.3g}<br>y=%{y:.3g}"
                      "<br>off-plane residual=%{customdata:.3g}<extra></extra>",
    )


def _view_buttons(views: list[View], n_extra: int) -> list[dict]:
    """One button per view: that view's contour visible, the others hidden, markers always on."""
    return [dict(label=v.name, method="update",
                 args=[{"visible": [k == i for k in range(len(views))] + [True] * n_extra}])
            for i, v in enumerate(views)]


def plane_figure(surface: Surface, *, levels: int = 20, curves: Mapping[str, np.ndarray] | None = None) -> go.Figure:
    """An interactive plane: one contour per (split, loss | error) with a menu to switch.

    Colours are log10 of the value (colorbar ticks show real values); hovering shows x, y and
    the real value; the checkpoints are labelled markers visible in every view. The first view
    (train loss when present) is shown initially.

    Args:
        surface: the plane to draw.
        levels: number of contour levels (log-spaced), at least 2.
        curves: named (K, 2) arrays of plane coordinates drawn as lines in every view.

    Returns:
        A :class:`plotly.graph_objects.Figure`; write it with :func:`write_html`.

    Raises:
        ValueError: the surface has no metrics, or an unknown plane mode.
    """
    if not surface.splits:
        raise ValueError("the surface has no metrics to plot (surface.metrics is empty)")
    views = [View(s, m) for s in surface.splits for m in shown_metrics(surface)]
    xlabel, ylabel = axis_labels(surface)
    lines = [go.Scatter(x=np.asarray(xy)[:, 0], y=np.asarray(xy)[:, 1], mode="lines", name=name,
                        line=dict(color="crimson", dash="dash", width=2), hoverinfo="name")
             for name, xy in (curves or {}).items()]
    fig = go.Figure([_contour_trace(surface, v, levels=levels, visible=i == 0)
                     for i, v in enumerate(views)] + lines + [_points_trace(surface)])
    yaxis = dict(title=ylabel, scaleanchor="x") if equal_aspect(surface) else dict(title=ylabel)
    fig.update_layout(
        title=dict(text=f"Loss landscape: {describe(surface) or 'plane'}", y=0.97),
        margin=dict(t=120),
        xaxis=dict(title=xlabel), yaxis=yaxis, template="plotly_white",
        updatemenus=[dict(type="buttons", direction="right", x=0.0, xanchor="left",
                          y=1.02, yanchor="bottom", buttons=_view_buttons(views, 1 + len(lines)))],
    )
    return fig


def write_html(fig: go.Figure, path: str | Path) -> Path:
    """Write a self-contained page that works offline (plotly.js inlined, no CDN).

    Returns:
        The path written; its parent directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path
