"""The loss a grid is scored by (``--loss``): cross-entropy and accuracy on class indices by
default, mean squared error, or a per-sample loss of your own (``path/to/file.py:name``,
``package.module:name``, or a callable from Python such as ``nn.MSELoss(reduction="none")``).

A loss of your own takes (outputs (N, ...), targets (N, ...)) and returns one value per sample
((N,) or (N, ...), averaged over the rest); accuracy is counted only for cross-entropy unless
asked for. Without accuracy, results hold the loss only and basin labels use the loss barrier.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from landscape.assets.imports import import_object, is_import_path
from landscape.engine.sums import CROSS_ENTROPY, Objective
from landscape.errors import UserError

LOSSES = ("ce", "mse")


def loss_name(loss: Any) -> str:
    """The name a result file records for ``loss``."""
    if isinstance(loss, str):
        return loss
    return getattr(loss, "__name__", None) or type(loss).__name__


def check_loss(loss: Any) -> None:
    """A loss given as settings: a known name, an import path, or a callable."""
    if isinstance(loss, str):
        if loss not in LOSSES and not is_import_path(loss):
            raise UserError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}, path/to/file.py:name "
                            "or package.module:name")
    elif not callable(loss):
        raise UserError(f"loss must be a name or a callable, got {type(loss).__name__}")


def objective(loss: Any = "ce", accuracy: bool | None = None) -> Objective:
    """The engine's ``Objective`` for a loss as settings give it (an import path is imported
    here, since the user named it)."""
    check_loss(loss)
    if loss == "ce":
        return CROSS_ENTROPY if accuracy in (None, True) else Objective("ce", None, False)
    fn = nn.MSELoss(reduction="none") if loss == "mse" else import_object(loss, what="--loss") \
        if isinstance(loss, str) else loss
    if not callable(fn):
        raise UserError(f"--loss {loss} is a {type(fn).__name__}, not a callable")
    return Objective(loss_name(loss), fn, bool(accuracy))


def objective_metrics(loss: Any = "ce", accuracy: bool | None = None) -> tuple[str, ...]:
    """The metrics a result of this loss holds, without importing anything."""
    counted = accuracy in (None, True) if loss == "ce" else bool(accuracy)
    return ("loss", "acc") if counted else ("loss",)


def per_sample_loss(loss: Any = "ce"):
    """The per-sample loss of ``loss`` as settings give it, as a differentiable function
    (outputs, targets) -> (N,): cross-entropy on class indices for ``ce``, else the loss with any
    trailing shape averaged (for training curves and for Hessians)."""
    import torch.nn.functional as F

    fn = objective(loss).per_sample
    if fn is None:
        return lambda out, y: F.cross_entropy(out.float(), y, reduction="none")

    def mean_rest(out, y):
        v = fn(out, y)
        return v.reshape(len(out), -1).mean(1) if v.dim() > 1 else v

    return mean_rest
