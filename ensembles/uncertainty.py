"""How sure a number about ensembles is: 95% intervals from a paired bootstrap over test samples,
intervals across independent replicates, and the verdict of a claim (docs/architecture.md).

The bootstrap resamples the test set's indices ``resamples`` times with a fixed seed; every
quantity of one comparison is computed on the *same* resampled indices, so that the interval of
a difference between two methods reflects only how the methods differ on the same samples
(paired). Intervals are percentile intervals. Across replicates (independent pre-trained sources)
the interval is Student's t on the replicates' values.

Example:
    >>> idx = resample_indices(len(labels))
    >>> a, b = correct(probs_a, labels), correct(probs_b, labels)
    >>> diff = paired_difference(a, b, idx)          # accuracy of a minus b, percent points
    >>> diff.verdict("greater")                      # supported, contradicted or inconclusive
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
RESAMPLES = 1000
VERDICTS = ("supported", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Interval:
    """A value with its ``level`` confidence interval [low, high]."""

    value: float
    low: float
    high: float
    level: float = LEVEL

    def verdict(self, side: str = "greater") -> str:
        """Of the claim that the value is above zero (``side="greater"``) or below it
        (``"less"``): supported when the interval lies on the claimed side of zero,
        contradicted when it lies on the other, else inconclusive."""
        if side not in ("greater", "less"):
            raise ValueError(f"side must be 'greater' or 'less', got {side!r}")
        above, below = self.low > 0, self.high < 0
        if side == "less":
            above, below = below, above
        return "supported" if above else "contradicted" if below else "inconclusive"

    def format(self, unit: str = "pp", digits: int = 1, signed: bool = True) -> str:
        """``+0.6 pp [+0.2, +1.0]``."""
        f = f"{{:{'+' if signed else ''}.{digits}f}}"
        return f"{f.format(self.value)}{' ' + unit if unit else ''} [{f.format(self.low)}, {f.format(self.high)}]"

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level}


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, n) indices drawn with replacement from ``range(n)``; the same for every call
    with the same arguments, so that separate calls on one test set stay paired."""
    if n < 1:
        raise ValueError("the bootstrap needs at least one sample")
    dtype = np.int32 if n < 2**31 else np.int64
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n), dtype=dtype)


def correct(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) floats: 1 where the prediction (argmax of ``probs``) is right."""
    return (np.asarray(probs).argmax(1) == np.asarray(labels)).astype(np.float64)


def sample_nll(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) negative log-likelihood of the true class (clipped at 1e-12), for bootstrapping the NLL."""
    p = np.asarray(probs)[np.arange(len(labels)), labels]
    return -np.log(np.clip(p, 1e-12, None))


def mean_interval(values: np.ndarray, idx: np.ndarray, *, scale: float = 1.0, level: float = LEVEL) -> Interval:
    """The mean of per-sample ``values`` (times ``scale``, e.g. 100 for percent) with its bootstrap
    interval over the resampled indices ``idx``."""
    values = np.asarray(values, dtype=np.float64)
    if idx.shape[1] != len(values):
        raise ValueError(f"indices resample {idx.shape[1]} samples but there are {len(values)} values")
    means = values[idx].mean(axis=1) * scale
    return _percentile(float(values.mean() * scale), means, level)


def paired_difference(a: np.ndarray, b: np.ndarray, idx: np.ndarray, *, scale: float = 100.0,
                      level: float = LEVEL) -> Interval:
    """``mean(a) - mean(b)`` of per-sample values on the same test samples (e.g. ``correct`` of
    two ensembles: the accuracy difference in percent points), with its paired bootstrap interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values must be of one test set, got {a.shape} and {b.shape}")
    return mean_interval(a - b, idx, scale=scale, level=level)


def replicate_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean of independent replicates' values with Student's t interval (a single replicate:
    an interval of no width is not claimed, it is NaN on both sides)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        raise ValueError("no replicates")
    mean = float(v.mean())
    if len(v) < 2:
        return Interval(mean, math.nan, math.nan, level)
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return Interval(mean, mean - half, mean + half, level)


def _percentile(value: float, draws: np.ndarray, level: float) -> Interval:
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return Interval(value, float(lo), float(hi), level)
