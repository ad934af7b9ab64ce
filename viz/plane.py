"""Renderers for 2-D loss surfaces: the paper's static panels and an interactive page.

Pure functions: a :class:`landscape.results.Surface` in, a figure out. Nothing here touches
pyplot's global state (figures are built from :class:`matplotlib.figure.Figure` directly), and
nothing is written to disk except by :func:`save_figure` and :func:`write_html`.

Colour scales are logarithmic, as in the StarSSE paper's plane plots (Sadrtdinov et al. 2023,
following Garipov et al. 2018): loss and error span orders of magnitude between the basin floor
and the plane's corners, and a linear scale would paint everything but the corners one colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from landscape.results import Surface

# Smallest colour-scale floor, relative to the largest finite value: keeps log levels defined
# when a metric reaches zero (a 0 % error, a loss that underflows).
_RELATIVE_FLOOR = 1e-6
_ABSOLUTE_FLOOR = 1e-12

# Axis titles by plane mode (landscape's geometry: three-point planes are in weight-space units,
# random planes in units of the filter-normalised directions).
_AXIS_LABELS: dict[str, tuple[str, str]] = {
    "three_point": ("x (weight-space distance along u)", "y (weight-space distance along v)"),
    "random": ("direction 1", "direction 2"),
}
_GENERIC_AXIS_LABELS = ("x", "y")

_METRIC_TITLES = {"loss": "loss", "error": "error (%)"}


@dataclass(frozen=True)
class _View:
    """One metric of one split: what a panel (or an interactive view) shows."""

    split: str
    metric: str  # "loss" or "error"

    @property
    def title(self) -> str:
        return f"{self.split} {_METRIC_TITLES[self.metric]}"

    @property
    def name(self) -> str:
        return f"{self.split} {self.metric}"

    def values(self, surface: Surface) -> np.ndarray:
        """The (G, G) values, NaN wherever the surface is not done."""
        z = surface.loss(self.split) if self.metric == "loss" else surface.error(self.split)
        z = np.asarray(z, dtype=np.float64)
        return np.where(np.asarray(surface.done, dtype=bool), z, np.nan)


# ----------------------------------------------------------------------------- colour scale


def log_levels(z: np.ndarray, n: int) -> np.ndarray:
    """``n`` log-spaced, strictly increasing contour levels spanning the finite values of ``z``.

    NaN and ±inf are ignored; values <= 0 are raised to a small floor (1e-6 of the largest
    finite value) so the scale stays logarithmic; a constant (or empty) array still gets a
    decade-wide range around its value.

    Args:
        z: values of any shape.
        n: number of levels, at least 2.

    Returns:
        (n,) array, ``levels[k+1] / levels[k]`` constant.

    Example:
        >>> log_levels(np.array([0.1, 1.0, np.nan, np.inf]), 3)
        array([0.1       , 0.31622777, 1.        ])
    """
    if n < 2:
        raise ValueError(f"need at least 2 contour levels, got levels={n}")
    finite = z[np.isfinite(z)]
    hi = float(finite.max()) if finite.size else 1.0
    floor = max(abs(hi) * _RELATIVE_FLOOR, _ABSOLUTE_FLOOR)
    positive = finite[finite > 0]
    lo = max(float(positive.min()), floor) if positive.size else floor
    hi = max(hi, lo)
    if hi <= lo * (1 + 1e-9):  # constant: centre one decade on the value
        lo, hi = lo / np.sqrt(10.0), lo * np.sqrt(10.0)
    return np.geomspace(lo, hi, n)


def _clip_to_levels(z: np.ndarray, levels: np.ndarray) -> np.ma.MaskedArray:
    """Clip values (±inf included) into the level range and mask the NaNs (not computed)."""
    return np.ma.masked_invalid(np.clip(z, levels[0], levels[-1]))


# ----------------------------------------------------------------------------- labels


def _axis_labels(surface: Surface) -> tuple[str, str]:
    mode = surface.config.get("identity", {}).get("mode")
    if mode is None:
        return _GENERIC_AXIS_LABELS
    if mode not in _AXIS_LABELS:
        raise ValueError(f"unknown plane mode {mode!r} in surface.config['identity']; "
                         f"expected one of {sorted(_AXIS_LABELS)}")
    return _AXIS_LABELS[mode]


def _describe(surface: Surface) -> str:
    """A one-line title from the surface's identity: dataset, BN policy and plane mode."""
    identity = surface.config.get("identity", {})
    parts = [identity.get("dataset"),
             f"BN {identity['bn']}" if identity.get("bn") else None,
             (identity.get("mode") or "").replace("_", "-") or None]
    return ", ".join(p for p in parts if p)


def _equal_aspect(surface: Surface) -> bool:
    """Three-point planes are in one unit on both axes; keep it unless the plane is a sliver."""
    if surface.config.get("identity", {}).get("mode") != "three_point":
        return False
    spans = np.ptp(surface.x), np.ptp(surface.y)
    return min(spans) > 0 and max(spans) / min(spans) <= 3.0


# ----------------------------------------------------------------------------- matplotlib


def _panels(surface: Surface, train_split: str, test_split: str) -> list[_View]:
    """The paper's pair (train loss, test error), or loss and error of whatever splits exist."""
    if not surface.splits:
        raise ValueError("the surface has no metrics to plot (surface.metrics is empty)")
    views = []
    if train_split in surface.metrics:
        views.append(_View(train_split, "loss"))
    if test_split in surface.metrics:
        views.append(_View(test_split, "error"))
    return views or [_View(s, m) for s in surface.splits for m in ("loss", "error")]


def _draw_panel(fig: Figure, ax: Axes, surface: Surface, view: _View, levels: int) -> None:
    z = view.values(surface)
    ax.set_title(view.title)
    ax.set_label(view.title)
    ax.set_facecolor("0.85")  # grey where points are not computed yet
    if np.isnan(z).all():
        ax.text(0.5, 0.5, "not computed yet", transform=ax.transAxes, ha="center")
        return
    lv = log_levels(z, levels)
    zc = _clip_to_levels(z, lv)
    norm = LogNorm(vmin=lv[0], vmax=lv[-1])
    filled = ax.contourf(surface.x, surface.y, zc, levels=lv, norm=norm, cmap="viridis")
    if np.ptp(zc.compressed()) > 0:  # a constant surface has no lines to draw
        ax.contour(surface.x, surface.y, zc, levels=lv, colors="k", linewidths=0.4, alpha=0.6)
    _colorbar(fig, ax, filled, lv, view.title)


def _colorbar(fig: Figure, ax: Axes, mappable, levels: np.ndarray, label: str) -> None:
    """A colorbar exactly as tall as the panel, with a few plainly formatted log ticks."""
    cax = ax.inset_axes([1.04, 0.0, 0.05, 1.0])
    cax.set_label("<colorbar>")
    cbar = fig.colorbar(mappable, cax=cax, label=label)
    ticks = np.geomspace(levels[0], levels[-1], 5)
    cbar.set_ticks(ticks, labels=[f"{t:.3g}" for t in ticks])
    cbar.minorticks_off()


def _figsize(surface: Surface, n_panels: int) -> tuple[float, float]:
    """Width per panel fixed; height follows the plane's shape when the aspect is equal."""
    width, height = 5.4, 4.6
    if _equal_aspect(surface):  # ~3.5 in of plot width beside the colorbar and labels
        height = float(np.clip(3.5 * np.ptp(surface.y) / np.ptp(surface.x) + 1.1, 3.0, 8.0))
    return width * n_panels, height


def _mark_points(ax: Axes, surface: Surface) -> None:
    """A white dot and the name of every projected checkpoint."""
    for name, p in surface.points.items():
        ax.plot(p.x, p.y, marker="o", ms=7, color="white", mec="black", mew=1.2, zorder=5)
        ax.annotate(name, (p.x, p.y), xytext=(5, 5), textcoords="offset points",
                    fontsize=11, fontweight="bold", zorder=6,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7))


def plot_plane(surface: Surface, *, train_split: str = "train", test_split: str = "test",
               levels: int = 20) -> Figure:
    """The StarSSE paper's plane plot: train loss and test error (%) side by side.

    Each panel is a filled contour on log-spaced levels with a colorbar and thin contour
    lines; every checkpoint in ``surface.points`` is marked and named. Points not computed
    (NaN or not ``done``) are left grey; ±inf is drawn in the end colours; the colour range
    spans the finite values. A split that is missing drops its panel; with neither split
    present, loss and error of every split present are drawn.

    Args:
        surface: the plane to draw.
        train_split: split whose loss is drawn on the left.
        test_split: split whose error is drawn on the right.
        levels: number of contour levels (log-spaced), at least 2.

    Returns:
        A new :class:`matplotlib.figure.Figure` (not registered with pyplot); save it with
        :func:`save_figure`.

    Raises:
        ValueError: the surface has no metrics, ``levels < 2``, or an unknown plane mode.

    Example:
        >>> fig = plot_plane(read_surface("runs/plane/plane.h5"))
        >>> save_figure(fig, "plane.png")
    """
    views = _panels(surface, train_split, test_split)
    xlabel, ylabel = _axis_labels(surface)
    fig = Figure(figsize=_figsize(surface, len(views)), layout="constrained")
    for ax, view in zip(fig.subplots(1, len(views), squeeze=False)[0], views):
        _draw_panel(fig, ax, surface, view, levels)
        _mark_points(ax, surface)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if _equal_aspect(surface):
            ax.set_aspect("equal", adjustable="box")
    if title := _describe(surface):
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save a matplotlib figure (format from the suffix, PNG at 150 dpi, tight bounding box).

    Returns:
        The path written; its parent directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


# ----------------------------------------------------------------------------- plotly


def _format_values(z: np.ndarray) -> np.ndarray:
    """Hover strings with the real values (inf stays visible; plotly's JSON would null it)."""
    return np.vectorize(lambda v: "not computed" if np.isnan(v) else f"{v:.4g}",
                        otypes=[object])(z)


def _log_colorbar(levels: np.ndarray, title: str) -> dict:
    """A colorbar for log10-coloured values whose tick labels show the real values."""
    ticks = np.geomspace(levels[0], levels[-1], 6)
    return dict(title=dict(text=title), tickvals=np.log10(ticks).tolist(),
                ticktext=[f"{t:.3g}" for t in ticks])


def _contour_trace(surface: Surface, view: _View, *, levels: int, visible: bool) -> go.Contour:
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


def _view_buttons(views: list[_View], n_extra: int) -> list[dict]:
    """One button per view: that view's contour visible, the others hidden, markers always on."""
    return [dict(label=v.name, method="update",
                 args=[{"visible": [k == i for k in range(len(views))] + [True] * n_extra}])
            for i, v in enumerate(views)]


def plane_figure(surface: Surface, *, levels: int = 20) -> go.Figure:
    """An interactive plane: one contour per (split, loss | error) with a menu to switch.

    Colours are log10 of the value (colorbar ticks show real values); hovering shows x, y and
    the real value; the checkpoints are labelled markers visible in every view. The first view
    (train loss when present) is shown initially.

    Args:
        surface: the plane to draw.
        levels: number of contour levels (log-spaced), at least 2.

    Returns:
        A :class:`plotly.graph_objects.Figure`; write it with :func:`write_html`.

    Raises:
        ValueError: the surface has no metrics, or an unknown plane mode.
    """
    if not surface.splits:
        raise ValueError("the surface has no metrics to plot (surface.metrics is empty)")
    views = [_View(s, m) for s in surface.splits for m in ("loss", "error")]
    xlabel, ylabel = _axis_labels(surface)
    fig = go.Figure([_contour_trace(surface, v, levels=levels, visible=i == 0)
                     for i, v in enumerate(views)] + [_points_trace(surface)])
    yaxis = dict(title=ylabel, scaleanchor="x") if _equal_aspect(surface) else dict(title=ylabel)
    fig.update_layout(
        title=dict(text=f"Loss landscape: {_describe(surface) or 'plane'}", y=0.97),
        margin=dict(t=120),
        xaxis=dict(title=xlabel), yaxis=yaxis, template="plotly_white",
        updatemenus=[dict(type="buttons", direction="right", x=0.0, xanchor="left",
                          y=1.02, yanchor="bottom", buttons=_view_buttons(views, 1))],
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


def plot_surface_3d(surface: Surface, *, split: str = "train", metric: str = "loss") -> Figure:
    """A static 3-D view of one metric over the plane (height: log10 of the value), with the
    checkpoints marked at their height; the PNG companion of the report's 3-D figure."""
    view = _View(split, metric)
    z = view.values(surface)
    lv = log_levels(z, 2)
    logz = np.log10(np.clip(z, lv[0], lv[-1]))
    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    X, Y = np.meshgrid(surface.x, surface.y)
    ax.plot_surface(X, Y, np.ma.masked_invalid(logz), cmap="viridis", linewidth=0,
                    antialiased=True)
    for name, p in surface.points.items():
        i = int(np.abs(surface.x - p.x).argmin())
        j = int(np.abs(surface.y - p.y).argmin())
        if np.isfinite(logz[j, i]):
            ax.scatter([p.x], [p.y], [logz[j, i]], color="white", edgecolor="black", s=30)
            ax.text(p.x, p.y, logz[j, i], f" {name}", fontsize=8)
    xlabel, ylabel = _axis_labels(surface)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_zlabel(f"log10 {view.title}", fontsize=8)
    ax.set_title(f"{view.title}: {_describe(surface)}")
    return fig
