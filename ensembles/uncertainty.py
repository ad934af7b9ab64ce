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

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from landscape.rounding import interval_digits, rounded

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

    def digits(self) -> int:
        """Decimals the interval supports (``landscape.rounding.interval_digits``)."""
        return interval_digits(self.low, self.high)

    def format(self, unit: str = "pp", digits: int | None = None, signed: bool = True) -> str:
        """``+0.6 pp [+0.2, +1.0]``, rounded to ``digits`` decimals (default: ``self.digits()``)."""
        d = self.digits() if digits is None else digits
        bounds = f"[{rounded(self.low, d, signed)}, {rounded(self.high, d, signed)}]" if math.isfinite(self.low) else "[n/a]"
        return f"{rounded(self.value, d, signed)}{' ' + unit if unit else ''} {bounds}"

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level}


@functools.lru_cache(maxsize=4)
def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, n) indices drawn with replacement from ``range(n)``; the same for every call
    with the same arguments, so that separate calls on one test set stay paired (read-only: the
    last few are kept and shared)."""
    if n < 1:
        raise ValueError("the bootstrap needs at least one sample")
    dtype = np.int32 if n < 2**31 else np.int64
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n), dtype=dtype)
    idx.flags.writeable = False
    return idx


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


def replicated_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray], idx: np.ndarray, *,
                          scale: float = 100.0, level: float = LEVEL) -> tuple[Interval, Interval, Interval]:
    """``mean(a) - mean(b)`` averaged over independent replicates (``a[r]``, ``b[r]``: per-sample
    values of replicate r on one test set; a single run on either side is compared with every
    replicate of the other).

    Returns three intervals of that mean difference: the paired bootstrap over test samples (the
    same resampled samples for every replicate), Student's t across the replicates, and their
    union (the lower of the two lows, the higher of the two highs), whose verdict is supported
    only when both intervals lie on the claimed side of zero.
    """
    if len(a) == 1 or len(b) == 1:  # one run (e.g. Global DE, from every source) against each replicate
        a, b = list(a) * max(1, len(b) // len(a)), list(b) * max(1, len(a) // len(b))
    if len(a) != len(b) or not len(a):
        raise ValueError(f"replicates must pair up, got {len(a)} and {len(b)}")
    diffs = [np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64) for x, y in zip(a, b)]
    if len({d.shape for d in diffs}) != 1:
        raise ValueError("every replicate must be judged on the same test samples")
    boot = mean_interval(np.mean(diffs, axis=0), idx, scale=scale, level=level)
    reps = replicate_interval([float(d.mean() * scale) for d in diffs], level)
    return boot, reps, union(boot, reps)


def group_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """``mean(a) - mean(b)`` of two groups of independent values (e.g. the barriers of the pairs
    of two runs), with Welch's t interval; NaN values are left out, and a group of fewer than two
    values leaves the interval NaN (no verdict)."""
    a = np.asarray([v for v in a if math.isfinite(v)], dtype=np.float64)
    b = np.asarray([v for v in b if math.isfinite(v)], dtype=np.float64)
    value = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return Interval(value, math.nan, math.nan, level)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(value, value, value, level)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
    return Interval(value, value - half, value + half, level)


def union(*intervals: Interval) -> Interval:
    """The smallest interval holding every given one (NaN bounds left out; all NaN: NaN)."""
    lows = [i.low for i in intervals if math.isfinite(i.low)]
    highs = [i.high for i in intervals if math.isfinite(i.high)]
    return Interval(intervals[0].value, min(lows, default=math.nan), max(highs, default=math.nan),
                    intervals[0].level)


def overall_verdict(verdicts: Sequence[str]) -> str:
    """A claim made of several effects: supported when every one is, contradicted when any is."""
    if verdicts and all(v == "supported" for v in verdicts):
        return "supported"
    return "contradicted" if "contradicted" in verdicts else "inconclusive"


def _percentile(value: float, draws: np.ndarray, level: float) -> Interval:
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return Interval(value, float(lo), float(hi), level)
