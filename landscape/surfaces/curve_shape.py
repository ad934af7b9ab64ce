"""The shapes of curves between two checkpoints (Garipov et al. 2018): a point of the curve at
``t`` in [0, 1] is a weighted sum of the control points ``A, bend 1, ..., bend k, B``.

- ``bezier``: the Bezier curve of degree k + 1, weights the Bernstein polynomials
  ``C(n, i) t^i (1 - t)^(n - i)``; it passes through A (t = 0) and B (t = 1), not the bends.
- ``polychain``: the polygonal chain A -> bend 1 -> ... -> B, the bends at ``t = i / (k + 1)``;
  on each segment the point is the straight-line point between its two control points.

Bends start on the straight segment (``initial_positions``): bend i at ``i / (k + 1)`` of the
way from A to B, where both curves are the straight line itself.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from landscape.errors import UserError

KINDS = ("bezier", "polychain")
MAX_BENDS = 8


def check_shape(kind: str, bends: int) -> None:
    """A known kind and 1..MAX_BENDS bends, or one line saying what is expected."""
    if kind not in KINDS:
        raise UserError(f"unknown curve kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not (isinstance(bends, int) and not isinstance(bends, bool) and 1 <= bends <= MAX_BENDS):
        raise UserError(f"bends must be an integer from 1 to {MAX_BENDS}, got {bends!r}")


def coefficients(kind: str, bends: int, t: float) -> np.ndarray:
    """(bends + 2,) float64 weights of the control points at ``t`` (they sum to 1)."""
    check_shape(kind, bends)
    if not 0.0 <= t <= 1.0:
        raise UserError(f"a curve's t must be in [0, 1], got {t!r}")
    n = bends + 1
    if kind == "bezier":
        return np.array([math.comb(n, i) * t**i * (1 - t) ** (n - i) for i in range(n + 1)])
    out = np.zeros(n + 1)
    segment = min(int(t * n), n - 1)  # t = 1 belongs to the last segment
    s = t * n - segment
    out[segment], out[segment + 1] = 1.0 - s, s
    return out


def torch_coefficients(kind: str, bends: int, t: float, dtype=torch.float32) -> torch.Tensor:
    """``coefficients`` as a tensor (training computes the point in the model's dtype)."""
    return torch.as_tensor(coefficients(kind, bends, t), dtype=dtype)


def initial_positions(bends: int) -> list[float]:
    """Where the bends start on the segment A -> B, as fractions of the way."""
    return [i / (bends + 1) for i in range(1, bends + 1)]
