"""The vmap strategy: the K weight sets of a group stacked, and the model mapped over them with
``torch.func.vmap`` (``functional_call``), so that each batch of data runs once for all K."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, replace_all_batch_norm_modules_, vmap

from landscape.engine.backoff import marking_the_bn_pass
from landscape.engine.bn import bn_modules, fixed_batches
from landscape.engine.core import Core
from landscape.engine.inputs import standard
from landscape.engine.settings import EngineSettings
from landscape.engine.sums import GroupResult, bn_buffers


class VmapStrategy:
    """Evaluates a group of points at once on the core's model, stacked with ``vmap``."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.bn_names = [n for n, _ in bn_modules(core.model)]
        self.stats_model: nn.Module | None = None  # made when first needed (stats_model_)

    def evaluate(self, weights: torch.Tensor, buffers: Sequence[dict[str, torch.Tensor]] | None,
                 settings: EngineSettings, max_samples: int | None) -> GroupResult:
        """Metrics of the (K, P) points ``weights`` (BN ``buffers`` per point unless recomputed)."""
        core = self.core
        params = core.layout.unflatten(weights.to(core.device))  # name -> (K, *shape)
        if core.recompute and self.bn_names:
            with marking_the_bn_pass():
                bufs = self.bn_stats(params, max_samples)
        elif buffers is not None and buffers[0]:
            bufs = {n: torch.stack([b[n] for b in buffers]).to(core.device) for n in buffers[0]}
        else:
            bufs = {}

        def one(p, b, x):
            return functional_call(core.model, (p, b), (x,))

        fn = vmap(one, in_dims=(0, 0, None))
        out = {}
        for split, (x, y) in core.data.splits.items():
            out[split] = core.eval_split(lambda xb: fn(params, bufs, standard(xb)), x, y,
                                         batch_size=settings.batch_size, max_samples=max_samples, k=len(weights))
        return GroupResult(out)

    def bn_stats(self, params: dict[str, torch.Tensor], max_samples: int | None) -> dict[str, torch.Tensor]:
        """Cumulative BN statistics for K stacked weight sets over every call of a layer in
        every fixed batch (``landscape.engine.sums.bn_buffers``). Statistics are keyed by layer
        name, so layers that run in another order than they are registered, or run twice, are
        handled."""
        core, model, rec = self.core, self.stats_model_(), self.core.rec
        zeros = {n: torch.zeros(m.num_features, device=core.device) for n, m in bn_modules(core.model)}

        def one(p, x):
            rec.clear()
            functional_call(model, p, (x,))
            return tuple(t for name in self.bn_names for t in rec.records.get(name, (zeros[name], zeros[name])))

        fn = vmap(one, in_dims=(0, None))
        sums: list[torch.Tensor] | None = None
        calls: dict[str, int] = {}
        rec.on = True
        try:
            for xb in fixed_batches(core.bn_inputs(max_samples), core.bn_batch_size):
                stats = fn(params, standard(core.batch(xb)))
                sums = list(stats) if sums is None else [s + t for s, t in zip(sums, stats)]
                for name in self.bn_names:  # recorded on the last call of `one`
                    calls[name] = calls.get(name, 0) + rec.calls.get(name, 0)
        finally:
            rec.on = False
        by_layer = {name: (sums[2 * j], sums[2 * j + 1]) for j, name in enumerate(self.bn_names)}
        return bn_buffers(self.bn_names, by_layer, calls, points=len(next(iter(params.values()))))

    def stats_model_(self) -> nn.Module:
        """A copy of the model whose BN layers normalise with batch statistics (and record)."""
        if self.stats_model is None:
            model = copy.deepcopy(self.core.model)
            layers = dict(bn_modules(model))
            replace_all_batch_norm_modules_(model)  # BN normalises with batch statistics
            model.eval()
            for m in layers.values():  # the BN hooks came along with the copy
                m.train()
            self.stats_model = model
        return self.stats_model
