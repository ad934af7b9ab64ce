"""The StarSSE paper's static plane panels (matplotlib) and a static 3-D view of a plane.

Pure functions: a :class:`landscape.results.Surface` in, a figure out. Nothing here touches
pyplot's global state (figures are built from :class:`matplotlib.figure.Figure` directly), and
nothing is written to disk except by :func:`save_figure`. Colour scales are logarithmic (see
:mod:`viz.views`); the interactive page is :mod:`viz.plane_html`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from landscape.results import Surface
from viz.views import LITERAL, View, axis_labels, describe, equal_aspect, literal_legend, log_levels, shown_metrics

# ----------------------------------------------------------------------------- matplotlib


def _clip_to_levels(z: np.ndarray, levels: np.ndarray) -> np.ma.MaskedArray:
    """Clip values (±inf included) into the level range and mask the NaNs (not computed)."""
    return np.ma.masked_invalid(np.clip(z, levels[0], levels[-1]))


def _panels(surface: Surface, train_split: str, test_split: str) -> list[View]:
    """The paper's pair (train loss, test error), or loss and error of whatever splits exist."""
    if not surface.splits:
        raise ValueError("the surface has no metrics to plot (surface.metrics is empty)")
    views = []
    if train_split in surface.metrics:
        views.append(View(train_split, "loss"))
    if test_split in surface.metrics:
        views.append(View(test_split, "error" if surface.has_acc else "loss"))
    return views or [View(s, m) for s in surface.splits for m in shown_metrics(surface)]


def _draw_panel(fig: Figure, ax: Axes, surface: Surface, view: View, levels: int) -> None:
    z = view.values(surface)
    ax.set_title(view.title, **LITERAL)
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
    cbar = fig.colorbar(mappable, cax=cax)
    cbar.set_label(label, **LITERAL)
    ticks = np.geomspace(levels[0], levels[-1], 5)
    cbar.set_ticks(ticks, labels=[f"{t:.3g}" for t in ticks])
    cbar.minorticks_off()


def _figsize(surface: Surface, n_panels: int) -> tuple[float, float]:
    """Width per panel fixed; height follows the plane's shape when the aspect is equal."""
    width, height = 5.4, 4.6
    if equal_aspect(surface):  # ~3.5 in of plot width beside the colorbar and labels
        height = float(np.clip(3.5 * np.ptp(surface.y) / np.ptp(surface.x) + 1.1, 3.0, 8.0))
    return width * n_panels, height


def _mark_points(ax: Axes, surface: Surface) -> None:
    """A white dot and the name of every projected checkpoint."""
    for name, p in surface.points.items():
        ax.plot(p.x, p.y, marker="o", ms=7, color="white", mec="black", mew=1.2, zorder=5)
        ax.annotate(name, (p.x, p.y), xytext=(5, 5), textcoords="offset points",
                    fontsize=11, fontweight="bold", zorder=6, **LITERAL,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7))


def plot_plane(surface: Surface, *, train_split: str = "train", test_split: str = "test",
               levels: int = 20, curves: Mapping[str, np.ndarray] | None = None) -> Figure:
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
        curves: named (K, 2) arrays of plane coordinates drawn as lines over every panel
            (e.g. a fitted curve between two of the checkpoints).

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
    xlabel, ylabel = axis_labels(surface)
    fig = Figure(figsize=_figsize(surface, len(views)), layout="constrained")
    for ax, view in zip(fig.subplots(1, len(views), squeeze=False)[0], views):
        _draw_panel(fig, ax, surface, view, levels)
        for name, xy in (curves or {}).items():
            xy = np.asarray(xy, dtype=float)
            ax.plot(xy[:, 0], xy[:, 1], color="white", lw=2.2, zorder=4)
            ax.plot(xy[:, 0], xy[:, 1], color="tab:red", lw=1.2, ls="--", zorder=4, label=name)
        if curves:
            literal_legend(ax, [ln for ln in ax.get_lines() if ln.get_label() in curves], list(curves), fontsize=8)
        _mark_points(ax, surface)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if equal_aspect(surface):
            ax.set_aspect("equal", adjustable="box")
    if title := describe(surface):
        fig.suptitle(title, **LITERAL)
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


# ----------------------------------------------------------------------------- 3-D


def plot_surface_3d(surface: Surface, *, split: str = "train", metric: str = "loss") -> Figure:
    """A static 3-D view of one metric over the plane (height: log10 of the value), with the
    checkpoints marked at their height; the PNG companion of the report's 3-D figure."""
    view = View(split, metric)
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
            ax.text(p.x, p.y, logz[j, i], f" {name}", fontsize=8, **LITERAL)
    xlabel, ylabel = axis_labels(surface)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_zlabel(f"log10 {view.title}", fontsize=8, **LITERAL)
    ax.set_title(f"{view.title}: {describe(surface)}", **LITERAL)
    return fig
