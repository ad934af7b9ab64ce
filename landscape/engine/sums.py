"""The engine's pure maths: loss and accuracy from sums, BN statistics from sums.

Both strategies (and the naive reference) reduce to the same few operations, kept here once:
per-sample cross-entropy summed in float64 and correct predictions counted, then divided by
the number of samples; and BatchNorm's cumulative running statistics, which with
``momentum=None`` are the mean over every fixed batch of the batch mean and the unbiased batch
variance (``torch.nn.BatchNorm``'s own definition).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from landscape.errors import UserError


@dataclass(frozen=True)
class GroupResult:
    """Metrics of K points: ``metrics[split][name]`` is a (K,) float64 array
    (``loss`` = mean cross-entropy, ``acc`` = accuracy in percent)."""

    metrics: dict[str, dict[str, np.ndarray]]


def concat(parts: Sequence[GroupResult]) -> GroupResult:
    """The results of consecutive groups as one."""
    first = parts[0].metrics
    return GroupResult({s: {m: np.concatenate([p.metrics[s][m] for p in parts]) for m in first[s]}
                        for s in first})


@dataclass(frozen=True)
class Objective:
    """What a point is scored by: a per-sample loss (None: cross-entropy on class indices) and
    whether its accuracy is counted too (classification)."""

    name: str = "ce"
    per_sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    accuracy: bool = True

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics a result holds: ``loss``, and ``acc`` with accuracy."""
        return ("loss", "acc") if self.accuracy else ("loss",)


CROSS_ENTROPY = Objective()


class SplitSums:
    """Running sums of the loss (and of correct predictions) of K points over one split."""

    def __init__(self, k: int, device: torch.device, objective: Objective = CROSS_ENTROPY) -> None:
        self.objective = objective
        self.loss = torch.zeros(k, dtype=torch.float64, device=device)
        self.correct = torch.zeros(k, dtype=torch.long, device=device)
        self.n = 0

    def add(self, outputs: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: ``outputs`` (K, B, C) of every point, ``labels`` (B, ...)."""
        k, b = outputs.shape[:2]
        if self.objective.per_sample is None:
            loss = F.cross_entropy(outputs.flatten(0, 1), labels.repeat(k), reduction="none")  # (K * B,)
        else:  # each sample's loss, averaged over its output dims: (K * B,)
            target = labels.repeat(k, *[1] * (labels.dim() - 1)).reshape(k * b, -1).to(outputs.dtype)
            loss = self.objective.per_sample(outputs.reshape(k * b, -1), target)
            if loss.dim() == 0 or loss.shape[0] != k * b:
                raise UserError(f"the loss {self.objective.name} gave {tuple(loss.shape)} for {k * b} samples; it "
                                "must give one value per sample (e.g. reduction='none')")
            loss = loss.reshape(k * b, -1).mean(1)
        self.loss += loss.view(k, -1).double().sum(1)
        if self.objective.accuracy:
            self.correct += (outputs.argmax(-1) == labels).sum(1)
        self.n += len(labels)

    def means(self) -> dict[str, np.ndarray]:
        """(K,) mean loss and, with accuracy, (K,) accuracy in percent."""
        out = {"loss": (self.loss / self.n).cpu().numpy()}
        if self.objective.accuracy:
            out["acc"] = (100.0 * self.correct.double() / self.n).cpu().numpy()
        return out


def batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A BN layer's input's batch mean and unbiased variance per channel, in float32 (also under
    bf16 autocast), over every dim but the channels (dim 1)."""
    var, mean = torch.var_mean(x.float(), [0, *range(2, x.dim())], correction=1)
    return mean, var


def bn_buffers(names: Sequence[str], sums: dict[str, tuple[torch.Tensor, torch.Tensor]],
               calls: dict[str, int], *, points: int | None = None) -> dict[str, torch.Tensor]:
    """BN buffers (``<layer>.running_mean``, ``running_var``, ``num_batches_tracked``) from each
    layer's sums of batch means and variances over ``calls[layer]`` batches: what
    ``momentum=None`` accumulates. ``points``: the sums are (K, C), one row per point. A layer the
    forward never used is left out (it keeps its reset statistics)."""
    out = {}
    for name in names:
        n = calls.get(name, 0)
        if n == 0:
            continue
        prefix = f"{name}." if name else ""
        mean, var = sums[name]
        out[prefix + "running_mean"] = mean / n
        out[prefix + "running_var"] = var / n
        shape = () if points is None else (points,)
        out[prefix + "num_batches_tracked"] = torch.full(shape, n, dtype=torch.long, device=mean.device)
    return out


def ghost_moments(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For ``v`` (batches, rows, channels, ...): each batch's biased moments (keepdim, for
    normalising) and their sums over the batches of mean and unbiased variance (for the record)."""
    var, mean = torch.var_mean(v, [1, *range(3, v.dim())], correction=0, keepdim=True)
    per_channel = v[0].numel() // v.shape[2]
    return mean, var, mean.sum(0).flatten(), var.sum(0).flatten() * (per_channel / (per_channel - 1))


def bn_pieces(inputs: torch.Tensor, batch: int, chunk: int) -> Iterator[torch.Tensor]:
    """``inputs`` as whole chunks of ``chunk`` rows, then the rest of the whole fixed batches
    in one piece, then the last, shorter batch: each piece holds whole fixed batches or one."""
    full, whole = len(inputs) // chunk * chunk, len(inputs) // batch * batch
    for start in range(0, full, chunk):
        yield inputs[start : start + chunk]
    if whole > full:
        yield inputs[full:whole]
    if len(inputs) > whole:
        yield inputs[whole:]
