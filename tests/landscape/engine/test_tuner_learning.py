"""What one tuner candidate learns from running out of memory, every later candidate starts from
(a smaller group, one fixed BN batch a forward), as the evaluator itself does."""

from __future__ import annotations

import numpy as np
import torch
from conftest import make_model, perturbed

import landscape.engine.bn_pass as bn_pass
from landscape import load_dataset
from landscape.engine.core import OutOfMemoryError
from landscape.engine.evaluator import EvalData, GridEvaluator
from landscape.engine.layout import ParamLayout


def _setup(n: int = 4):
    base = make_model(0)
    layout = ParamLayout.of(base)
    w = torch.stack([layout.flatten(perturbed(base, s, 0.2).state_dict()) for s in range(n)])
    train, test = load_dataset("mnist1d", "train"), load_dataset("mnist1d", "test")
    data = EvalData({"train": (train.inputs[:160], train.labels[:160]), "test": (test.inputs[:90], test.labels[:90])},
                    train.inputs[:160])
    return base, layout, w, data


def test_a_group_that_does_not_fit_is_learnt_once_for_every_candidate(monkeypatch):
    base, layout, w, data = _setup(4)
    ev = GridEvaluator(base, layout, data, bn_policy="recompute", bn_batch_size=32, batch_size=64)
    reference = GridEvaluator(base, layout, data, bn_policy="recompute", bn_batch_size=32,
                              batch_size=64).evaluate(w, strategy="vmap")
    original, sizes = ev.vmap.evaluate, []

    def at_most_two(weights, buffers, settings, max_samples):
        sizes.append(len(weights))
        if len(weights) > 2:
            raise OutOfMemoryError("CUDA out of memory (simulated, more than 2 points)")
        return original(weights, buffers, settings, max_samples)

    monkeypatch.setattr(ev.vmap, "evaluate", at_most_two)
    tuning = ev.tune(w, strategy="vmap", group_sizes=(4, 8))
    assert tuning.settings.max_group == 2 and ev.max_group == 2
    # one candidate learns it (halving its batch to 1, then splitting); the rest start from it
    assert sizes.count(4) <= 8 and not [s for s in sizes if s > 4]
    assert len(tuning.backoffs) <= 8 and all(b.startswith("out of memory") for b in tuning.backoffs)
    got = ev.evaluate(w, strategy="vmap")
    for split in got.metrics:
        np.testing.assert_allclose(got.metrics[split]["loss"], reference.metrics[split]["loss"], atol=1e-5, rtol=1e-5)


def test_ghost_batches_that_run_out_of_memory_while_tuned_are_dropped_once(monkeypatch):
    base, layout, w, data = _setup(2)
    ev = GridEvaluator(base, layout, data, bn_policy="recompute", bn_batch_size=32, batch_size=64,
                       bn_ghosts=4, workers=1)
    ev.loop.bn.device_sums = True  # the GPU's BN pass, on the CPU
    ev.loop.bn.check(4)  # the check passes: ghost batches hold for this model
    original = bn_pass.ghost_bn

    def short_of_memory(m, name, rec, batch, x):
        if len(x) > batch:
            raise OutOfMemoryError("CUDA out of memory (simulated, ghost batches)")
        return original(m, name, rec, batch, x)

    monkeypatch.setattr(bn_pass, "ghost_bn", short_of_memory)
    tuning = ev.tune(w, strategy="loop")
    assert tuning.settings.bn_ghosts == 1 == ev.ghosts_in_use
    assert ev.ghost_note == "not used: out of memory"
    drops = [b for b in ev.backoffs if "one fixed batch a forward" in b]
    assert len(drops) == 1, ev.backoffs
