"""Ensemble metrics on predicted probabilities (docs/architecture.md).

Pure functions of numpy arrays: ``probs`` are (N, C) class probabilities, ``labels`` (N,) ints.
The ensemble's prediction is the mean of its members' probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

_EPS = 1e-12


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * float(np.mean(probs.argmax(1) == labels))


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (probabilities clipped at 1e-12)."""
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], _EPS, None))))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over samples of the squared distance to the one-hot label, summed over classes."""
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(labels)), labels] = 1.0
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error in percent with ``n_bins`` equal-width confidence bins:
    sum over bins of (bin size / N) * |accuracy in bin - mean confidence in bin|."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bins are (lo, hi], the first one [0, hi]
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = idx == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return 100.0 * float(total)


def diversity(member_probs: Sequence[np.ndarray], labels: np.ndarray) -> float:
    """The slides' diversity: ``100 * mean over pairs m1 != m2 of
    mean_x[pred_m1(x) != pred_m2(x)] / max(err_m1, err_m2)`` (0 for fewer than two members,
    and a pair of error-free members contributes 0)."""
    preds = [p.argmax(1) for p in member_probs]
    errors = [float(np.mean(p != labels)) for p in preds]
    values = []
    for i, j in combinations(range(len(preds)), 2):
        disagree = float(np.mean(preds[i] != preds[j]))
        denom = max(errors[i], errors[j])
        values.append(disagree / denom if denom > 0 else 0.0)
    return 100.0 * float(np.mean(values)) if values else 0.0


@dataclass(frozen=True)
class EnsembleRow:
    """Quality of the ensemble of the first ``size`` members."""

    size: int
    accuracy: float
    nll: float
    ece: float
    brier: float
    member_accuracy: float
    diversity: float


def ensemble_rows(member_probs: Sequence[np.ndarray], labels: np.ndarray) -> list[EnsembleRow]:
    """One row per ensemble size 1..K (members taken in order)."""
    rows = []
    for k in range(1, len(member_probs) + 1):
        members = list(member_probs[:k])
        mean = np.mean(members, axis=0)
        rows.append(EnsembleRow(
            size=k, accuracy=accuracy(mean, labels), nll=nll(mean, labels),
            ece=ece(mean, labels), brier=brier(mean, labels),
            member_accuracy=float(np.mean([accuracy(p, labels) for p in members])),
            diversity=diversity(members, labels),
        ))
    return rows
