"""What the plane renderers share: which metric a view shows, log colour scales, and labels.

Both the static panels (:mod:`viz.plane`) and the interactive page (:mod:`viz.plane_html`,
:mod:`viz.report`) draw :class:`View` s of a :class:`landscape.results.Surface` on log-spaced
levels from :func:`log_levels`, with axis titles from :func:`axis_labels` and a one-line title
from :func:`describe`. Names (of checkpoints, runs, splits, datasets) are drawn as written:
matplotlib texts made from them take :data:`LITERAL`, legends :func:`literal_legend`.

Colour scales are logarithmic, as in the StarSSE paper's plane plots (Sadrtdinov et al. 2023,
following Garipov et al. 2018): loss and error span orders of magnitude between the basin floor
and the plane's corners, and a linear scale would paint everything but the corners one colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    "pca": ("PC 1 (weight-space distance)", "PC 2 (weight-space distance)"),
    "simplex": ("b (the weight of B)", "c (the weight of C)"),
}
_GENERIC_AXIS_LABELS = ("x", "y")

_METRIC_TITLES = {"loss": "loss", "error": "error (%)"}


@dataclass(frozen=True)
class View:
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


# ----------------------------------------------------------------------------- labels


def axis_labels(surface: Surface) -> tuple[str, str]:
    """(x title, y title) for the surface's plane mode; plain "x", "y" when it has none.

    Raises:
        ValueError: an unknown plane mode in ``surface.config['identity']``.
    """
    mode = surface.config.get("identity", {}).get("mode")
    if mode is None:
        return _GENERIC_AXIS_LABELS
    if mode not in _AXIS_LABELS:
        raise ValueError(f"unknown plane mode {mode!r} in surface.config['identity']; "
                         f"expected one of {sorted(_AXIS_LABELS)}")
    ratios = surface.config.get("pca", {}).get("explained_variance_ratio")
    if mode == "pca" and isinstance(ratios, list) and len(ratios) == 2:  # the explained variance on each axis
        return tuple(f"PC {k + 1} ({100 * r:.1f}% of variance)"
                     for k, r in enumerate(ratios))
    return _AXIS_LABELS[mode]


def describe(surface: Surface) -> str:
    """A one-line title from the surface's identity: dataset, BN policy and plane mode."""
    identity = surface.config.get("identity", {})
    parts = [identity.get("dataset"),
             f"BN {identity['bn']}" if identity.get("bn") else None,
             (identity.get("mode") or "").replace("_", "-") or None]
    return ", ".join(p for p in parts if p)


def equal_aspect(surface: Surface) -> bool:
    """Three-point planes are in one unit on both axes; keep it unless the plane is a sliver."""
    if surface.config.get("identity", {}).get("mode") not in ("three_point", "pca"):
        return False
    spans = np.ptp(surface.x), np.ptp(surface.y)
    return min(spans) > 0 and max(spans) / min(spans) <= 3.0


# ----------------------------------------------------------------------------- names

# Text properties of every matplotlib text drawn from a name: matplotlib reads "$...$" as
# mathtext (a name such as "$x^^2$" fails the whole figure, "a$b -> c$d" turns into maths) and
# the user's text.usetex would send the name to LaTeX; the name is shown as written instead.
LITERAL: dict[str, Any] = {"parse_math": False, "usetex": False}


def literal_legend(ax: Any, handles: Sequence[Any], labels: Sequence[str], **kwargs: Any) -> Any:
    """``ax.legend(handles, labels)`` with the labels shown as written (see :data:`LITERAL`; given
    explicitly, a label starting with "_" is shown too). Returns the legend."""
    legend = ax.legend(list(handles), list(labels), **kwargs)
    for text in legend.get_texts():
        text.set(**LITERAL)
    return legend


def shown_metrics(surface: Surface) -> tuple[str, ...]:
    """What a surface's views show: loss and error, or the loss alone (no accuracy counted)."""
    return ("loss", "error") if surface.has_acc else ("loss",)
