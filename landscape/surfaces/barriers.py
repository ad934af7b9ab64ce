"""Barriers along linear paths and the basin label (docs/architecture.md, "Barriers and basins").

For values f(a) along a path with endpoints f(0) and f(1):

- loss barrier = ``max_a [ f(a) - ((1 - a) f(0) + a f(1)) ]``
- accuracy barrier = ``max_a [ ((1 - a) acc(0) + a acc(1)) - acc(a) ]`` in percentage points

over a in [0, 1] (points of an extended path outside [0, 1] are ignored), with the a where the
maximum sits. A pair is "same basin" (local) when its test accuracy barrier is below a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landscape.errors import UserError

DEFAULT_THRESHOLD_PP = 0.5
"""Default test-accuracy barrier (percentage points) below which two models share a basin.
Measured on MNIST-1D: members fine-tuned from one checkpoint show about 0.1 pp, semi-local
snapshots about 1 pp, models trained from scratch tens of points."""


@dataclass(frozen=True)
class Barrier:
    """The height of a barrier and the alpha where it peaks."""

    height: float
    alpha: float


def barrier(alpha: np.ndarray, values: np.ndarray, *, kind: str = "loss") -> Barrier:
    """The loss (``kind="loss"``) or accuracy (``kind="acc"``) barrier of one path.

    Raises:
        UserError: alpha does not contain both endpoints 0 and 1, or shapes differ.
    """
    if kind not in ("loss", "acc"):
        raise UserError(f"unknown barrier kind {kind!r}; expected loss or acc")
    alpha, values = np.asarray(alpha, dtype=float), np.asarray(values, dtype=float)
    if alpha.shape != values.shape or alpha.ndim != 1:
        raise UserError(f"alpha {alpha.shape} and values {values.shape} must be equal 1-D shapes")
    ends = [np.flatnonzero(np.isclose(alpha, a, atol=1e-12)) for a in (0.0, 1.0)]
    if any(len(e) == 0 for e in ends):
        raise UserError("a path's alpha grid must contain both endpoints 0 and 1")
    f0, f1 = values[ends[0][0]], values[ends[1][0]]
    inside = (alpha >= -1e-12) & (alpha <= 1 + 1e-12)
    a, f = alpha[inside], values[inside]
    linear = (1 - a) * f0 + a * f1
    gap = f - linear if kind == "loss" else linear - f
    if not np.isfinite([f0, f1]).all() or np.isnan(gap).all():  # diverged: no barrier to tell
        return Barrier(float("nan"), float("nan"))
    k = int(np.nanargmax(gap))
    return Barrier(float(max(gap[k], 0.0)), float(a[k]) if gap[k] > 0 else float("nan"))


def same_basin(test_acc_barrier: float, threshold: float = DEFAULT_THRESHOLD_PP) -> bool:
    """The paper's label: local (same basin) when the test accuracy barrier is below
    ``threshold`` percentage points."""
    return bool(test_acc_barrier < threshold)
