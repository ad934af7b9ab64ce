"""BatchNorm folding for evaluation passes: a convolution (or linear layer) followed directly by
a BatchNorm layer in eval mode is one affine map, so the pair can run as one layer whose weight
is ``W * s`` and bias ``(b - mean) * s + beta``, with ``s = gamma / sqrt(var + eps)``.

``Folded`` keeps a copy of a model in which every such pair is fused; its other parameters are
the source model's own tensors, so only the fused layers are refreshed (``refresh``) after the
source's weights or BN statistics change. Pairs are found by running the model once and matching
each BN layer's input to the output of the layer called just before it; the fused copy is then
checked against the model on real inputs and not used if they differ (e.g. when a convolution's
output is also used elsewhere).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

FUSABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
PLAIN_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class Folded:
    """A BN-folded view of ``model`` (which must stay in eval mode while it is used)."""

    def __init__(self, model: nn.Module, pairs: list[tuple[str, str]]) -> None:
        self.source, self.pairs = model, pairs
        self.model = copy.deepcopy(model)
        fused = {conv for conv, _ in pairs}
        for conv_name, bn_name in pairs:
            _set(self.model, bn_name, nn.Identity())
            conv = self.model.get_submodule(conv_name)
            if conv.bias is None:
                conv.bias = nn.Parameter(torch.zeros(conv.weight.shape[0], device=conv.weight.device,
                                                     dtype=conv.weight.dtype), requires_grad=False)
        for name, module in self.model.named_modules():  # share everything not fused
            own = self.source.get_submodule(name)
            for key in list(module._parameters):
                if name not in fused:
                    module._parameters[key] = own._parameters[key]
            for key in list(module._buffers):
                module._buffers[key] = own._buffers[key]

    @torch.no_grad()
    def refresh(self) -> nn.Module:
        """Recompute the fused layers from the source's current weights and BN statistics."""
        for conv_name, bn_name in self.pairs:
            conv, bn = self.source.get_submodule(conv_name), self.source.get_submodule(bn_name)
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            bias = -bn.running_mean * scale if conv.bias is None else (conv.bias - bn.running_mean) * scale
            if bn.bias is not None:
                bias = bias + bn.bias
            target = self.model.get_submodule(conv_name)
            target.weight.copy_(conv.weight * scale.view(-1, *([1] * (conv.weight.dim() - 1))))
            target.bias.copy_(bias)
        return self.model


def fold_pairs(model: nn.Module, sample: torch.Tensor) -> list[tuple[str, str]]:
    """(layer, BN) name pairs where the BN layer's input is the output of the layer called just
    before it, found by one forward pass on ``sample``."""
    calls: list[tuple[str, nn.Module, int, int]] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module, args, output):
        if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
            calls.append((names[module], module, id(args[0]), id(output)))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, FUSABLE + PLAIN_BN)]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in handles:
            h.remove()
    pairs, seen = [], set()
    for (name, module, _, out), (bn_name, bn, bn_in, _) in zip(calls, calls[1:]):
        if (isinstance(module, FUSABLE) and type(bn) in PLAIN_BN and bn_in == out
                and bn.track_running_stats and name not in seen and bn_name not in seen):
            pairs.append((name, bn_name))
            seen.update((name, bn_name))
    # a layer called twice in one forward, or whose weights other layers share, cannot be fused
    counts: dict[str, int] = {}
    for name, *_ in calls:
        counts[name] = counts.get(name, 0) + 1
    uses: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        uses[id(p)] = uses.get(id(p), 0) + 1

    def shared(name: str) -> bool:
        return any(uses[id(p)] > 1 for p in model.get_submodule(name).parameters())

    return [(c, b) for c, b in pairs
            if counts[c] == 1 and counts[b] == 1 and not shared(c) and not shared(b)]


def try_fold(model: nn.Module, sample: torch.Tensor, *, atol: float = 1e-4) -> Folded | None:
    """A checked ``Folded`` view of ``model`` (in eval mode), or None when nothing can be fused
    or the fused copy does not reproduce the model's outputs on ``sample``."""
    try:
        pairs = fold_pairs(model, sample)
        if not pairs:
            return None
        folded = Folded(model, pairs)
        with torch.no_grad():
            expected, got = model(sample), folded.refresh()(sample)
        scale = 1.0 + float(expected.abs().max())
        return folded if torch.allclose(expected, got, rtol=0, atol=atol * scale) else None
    except (RuntimeError, TypeError, AttributeError):
        return None


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)
