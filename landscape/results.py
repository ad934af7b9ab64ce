"""Result types shared with the renderers (``viz`` imports nothing else of ours)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import UserError


@dataclass(frozen=True)
class PointInfo:
    """A checkpoint projected onto a plane: its coordinates and off-plane residual distance."""

    x: float
    y: float
    residual: float


@dataclass(frozen=True)
class Surface:
    """A 2-D loss surface. Arrays are indexed ``[j, i]`` = (y_j, x_i), so
    ``contour(x, y, metrics["test"]["loss"])`` works directly.

    Attributes:
        x, y: (G,) grid axes (weight-space units for three-point planes, direction units for
            random planes).
        metrics: ``metrics[split][name]`` is a (G, G) float64 array; names ``loss`` (mean
            cross-entropy, or the loss the file names) and ``acc`` (accuracy in percent; absent
            for a loss such as MSE); NaN where not computed yet.
        done: (G, G) bool mask of computed points.
        points: checkpoints projected onto the plane, by name.
        config: the full configuration the surface was computed with.
        path: the HDF5 file it lives in, if any.
    """

    x: np.ndarray
    y: np.ndarray
    metrics: dict[str, dict[str, np.ndarray]]
    done: np.ndarray
    points: dict[str, PointInfo] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def splits(self) -> list[str]:
        return list(self.metrics)

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    @property
    def diverged(self) -> np.ndarray:
        """(G, G) bool: computed points whose loss is inf or NaN on any split (far from the
        basin the loss can overflow); they are stored as such, and plots clip their colours."""
        bad = np.zeros(self.done.shape, dtype=bool)
        for values in self.metrics.values():
            bad |= ~np.isfinite(values["loss"])
        return bad & self.done

    @property
    def has_acc(self) -> bool:
        """Whether accuracy was counted (not for a loss such as MSE: the loss only)."""
        return all("acc" in m for m in self.metrics.values())

    def loss(self, split: str) -> np.ndarray:
        return self.metrics[split]["loss"]

    def acc(self, split: str) -> np.ndarray:
        return _acc(self.metrics, split, self.config)

    def error(self, split: str) -> np.ndarray:
        """Error in percent (100 - accuracy)."""
        return 100.0 - self.acc(split)


@dataclass(frozen=True)
class PathSet:
    """Metrics along linear paths ``(1 - alpha) A + alpha B`` between pairs of checkpoints.

    Attributes:
        alpha: (n,) positions; 0 and 1 are the endpoints (values outside [0, 1] extend the path).
        pairs: P pairs of indices into ``names``.
        names: the checkpoints' names, in the order given.
        metrics: ``metrics[split][name]`` is a (P, n) float64 array (``loss``, ``acc`` in %).
        done: (P, n) bool mask of computed points.
        config: the full configuration; path: the HDF5 file.
    """

    alpha: np.ndarray
    pairs: list[tuple[int, int]]
    names: list[str]
    metrics: dict[str, dict[str, np.ndarray]]
    done: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def splits(self) -> list[str]:
        return list(self.metrics)

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def pair_name(self, p: int) -> str:
        i, j = self.pairs[p]
        return f"{self.names[i]} -> {self.names[j]}"

    @property
    def has_acc(self) -> bool:
        """Whether accuracy was counted (not for a loss such as MSE: the loss only)."""
        return all("acc" in m for m in self.metrics.values())

    def curve(self, p: int, split: str, metric: str) -> np.ndarray:
        """(n,) values of ``metric`` (``loss`` or ``acc``) along pair ``p``."""
        if metric == "acc":
            return _acc(self.metrics, split, self.config)[p]
        return self.metrics[split][metric][p]


def _acc(metrics: dict[str, dict[str, np.ndarray]], split: str, config: dict[str, Any]) -> np.ndarray:
    if "acc" not in metrics[split]:
        loss = config.get("identity", {}).get("loss", "ce")
        raise UserError(f"this file holds the loss only (scored by {loss}, without accuracy)")
    return metrics[split]["acc"]
