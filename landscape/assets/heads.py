"""A classifier's head: replaced by a fresh seeded one for fine-tuning, and found for the
distances that leave it out."""

from __future__ import annotations

import torch
from torch import nn

from landscape.errors import UserError


def reset_head(model: nn.Module, num_classes: int, *, seed: int) -> None:
    """Replace the model's classifier by a fresh head initialised from ``seed`` (in place): its
    ``reset_classifier`` (timm and the registry's models), else its last ``nn.Linear``, replaced
    by a new one of ``num_classes`` outputs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if hasattr(model, "reset_classifier"):
            model.reset_classifier(num_classes)
            return
        name, old = last_linear(model)
        parent = model.get_submodule(name.rpartition(".")[0])
        setattr(parent, name.rpartition(".")[2], nn.Linear(old.in_features, num_classes, bias=old.bias is not None))


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The name and module of the model's last ``nn.Linear`` (its head when it has no
    ``get_classifier``)."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and n]
    if not linears:
        raise UserError(f"{type(model).__name__} has no reset_classifier() and no nn.Linear head to replace; "
                        "give it a reset_classifier(num_classes) method")
    return linears[-1]


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names (as in ``named_parameters``) of the classifier's parameters."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if head is None:
        return set()
    ids = {id(p) for p in head.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}
