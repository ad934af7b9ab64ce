"""Ghost batches in the loop path's BN pass (``GridEvaluator(bn_ghosts=k)``): several fixed BN
batches in one forward, each normalised with its own statistics, must give the statistics of one
batch at a time. They run where the BN sums are gathered on the device (a GPU); here that path
is run on the CPU (``device_sums``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_model, perturbed
from torch import nn

import landscape.engine.bn_pass as engine  # where the BN pass finds ghost_bn
import landscape.engine.tuner as tuner
from landscape import UserError, load_dataset
from landscape.engine.evaluator import EvalData, GridEvaluator
from landscape.engine.settings import Tuning
from landscape.engine.tuner import Tuner
from landscape.engine.layout import ParamLayout

BN_BATCH = 32


def _data(n_bn: int) -> EvalData:
    train, test = load_dataset("mnist1d", "train"), load_dataset("mnist1d", "test")
    return EvalData({"train": (train.inputs[:160], train.labels[:160]),
                     "test": (test.inputs[:90], test.labels[:90])}, train.inputs[:n_bn])


def _assert_same(a, b, atol=1e-6):
    for split in a.metrics:
        for m in ("loss", "acc"):
            # BN sums: float32, another order: relative 1e-5
            np.testing.assert_allclose(a.metrics[split][m], b.metrics[split][m], atol=atol, rtol=1e-5)


def _weights(model, n=4):
    layout = ParamLayout.of(model)
    return layout, torch.stack([layout.flatten(perturbed(model, s, 0.2).state_dict()) for s in range(n)])


def _ghosted(model, layout, data, ghosts, **kw):
    ev = GridEvaluator(model, layout, data, bn_policy="recompute", bn_batch_size=BN_BATCH, batch_size=64,
                       bn_ghosts=ghosts, **kw)
    ev.loop.bn.device_sums = True  # the GPU's BN pass, on the CPU
    return ev


@pytest.mark.parametrize("n_bn", [160, 150])  # 5 fixed batches; 4 and a shorter last one
def test_ghost_batches_give_the_statistics_of_one_batch_at_a_time(n_bn, monkeypatch):
    model = make_model(0)
    layout, w = _weights(model)
    data = _data(n_bn)
    reference = GridEvaluator(model, layout, data, bn_policy="recompute", bn_batch_size=BN_BATCH,
                              batch_size=64).evaluate(w, strategy="loop")
    ghost_calls = []
    original = engine.ghost_bn

    def spy(m, name, rec, batch, x):
        ghost_calls.append(len(x) // batch if len(x) % batch == 0 else 0)
        return original(m, name, rec, batch, x)

    monkeypatch.setattr(engine, "ghost_bn", spy)
    for ghosts, workers in ((2, 1), (3, 1), (8, 1), (3, 2)):  # 8: more than there are batches
        ev = _ghosted(model, layout, data, ghosts, workers=workers)
        ghost_calls.clear()
        _assert_same(ev.evaluate(w, strategy="loop"), reference)
        assert ev.ghost_note == f"{ghosts} fixed batches a forward"
        assert max(ghost_calls) == min(ghosts, n_bn // BN_BATCH)  # several batches in one forward
        if n_bn % BN_BATCH:
            assert 0 in ghost_calls  # the shorter last batch ran as BN itself runs it


class _Interleave(nn.Module):
    """Reorders the rows of the batch (its inverse when ``back``): a model whose BN layer sees
    rows of several inputs' batches mixed, so ghost batches would change its statistics."""

    def __init__(self, back: bool = False) -> None:
        super().__init__()
        self.back = back

    def forward(self, x):
        n = len(x)
        if n % 2:
            return x
        if self.back:
            return x.view(n // 2, 2, *x.shape[1:]).transpose(0, 1).reshape(x.shape)
        return x.view(2, n // 2, *x.shape[1:]).transpose(0, 1).reshape(x.shape)


def test_ghost_batches_are_not_used_where_they_would_change_the_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, 4, 5, bias=False), _Interleave(),
                          nn.BatchNorm1d(4), _Interleave(back=True), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 36, 10)).eval()
    layout, w = _weights(model)
    data = _data(160)
    reference = GridEvaluator(model, layout, data, bn_policy="recompute", bn_batch_size=BN_BATCH,
                              batch_size=64).evaluate(w, strategy="loop")
    ev = _ghosted(model, layout, data, 4)
    _assert_same(ev.evaluate(w, strategy="loop"), reference)
    assert ev.ghost_note.startswith("not used") and ev.ghosts_in_use == 1


def test_ghost_batches_must_be_a_positive_count():
    model = make_model(0)
    with pytest.raises(UserError, match="bn_ghosts must be a positive integer"):
        GridEvaluator(model, ParamLayout.of(model), _data(64), bn_policy="recompute", bn_ghosts=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_ghost_batches_of_images_give_the_statistics_of_one_batch_at_a_time(channels_last):
    from landscape import create_model

    torch.manual_seed(0)
    model = create_model("resnet20", 10, width=4).eval()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(100, 3, 8, 8, generator=gen), torch.randint(0, 10, (100,), generator=gen)
    data = EvalData({"train": (x, y), "test": (x[:40], y[:40])}, x)
    layout, w = _weights(model, 3)
    reference = GridEvaluator(model, layout, data, bn_policy="recompute", bn_batch_size=BN_BATCH,
                              batch_size=64).evaluate(w, strategy="loop")
    ev = _ghosted(model, layout, data, 3, channels_last=channels_last)
    _assert_same(ev.evaluate(w, strategy="loop"), reference, atol=2e-6)
    assert ev.ghost_note == "3 fixed batches a forward"


@pytest.mark.parametrize("where", ["check", "pass"])
def test_out_of_memory_with_ghost_batches_falls_back_to_one_batch_at_a_time(where, monkeypatch):
    """Ghost batches need k times the BN pass's activations: out of memory, in the first check or
    in a later pass, makes the pass run one fixed batch a forward, with the same numbers."""
    from landscape.engine.core import OutOfMemoryError

    model = make_model(0)
    layout, w = _weights(model)
    data = _data(150)
    reference = GridEvaluator(model, layout, data, bn_policy="recompute", bn_batch_size=BN_BATCH,
                              batch_size=64).evaluate(w, strategy="loop")
    ev = _ghosted(model, layout, data, 4)
    if where == "pass":
        ev.evaluate(w[:1], strategy="loop")
        assert ev.ghosts_in_use == 4
    original = engine.ghost_bn

    def short_of_memory(m, name, rec, batch, x):
        if len(x) > batch:
            raise OutOfMemoryError("CUDA out of memory (simulated, ghost batches)")
        return original(m, name, rec, batch, x)

    monkeypatch.setattr(engine, "ghost_bn", short_of_memory)
    _assert_same(ev.evaluate(w, strategy="loop"), reference)
    assert ev.ghosts_in_use == 1 and ev.max_group is None and ev.batch_size == 64
    if where == "check":
        assert ev.ghost_note == "not used: out of memory while checked" and ev.backoffs == []
    else:
        assert ev.ghost_note == "not used: out of memory"
        assert ev.backoffs == ["out of memory: the BN pass runs one fixed batch a forward from now on"]


def test_ghost_batches_say_why_they_are_not_used():
    model = make_model(0)
    layout, w = _weights(model, 1)
    for device_sums, precision, n_bn, note in ((False, "fp32", 160, "the GPU's BN pass only"),
                                               (True, "bf16", 160, "off under bf16"),
                                               (True, "fp32", 40, "fewer than 2 fixed BN batches")):
        ev = GridEvaluator(model, layout, _data(n_bn), bn_policy="recompute", bn_batch_size=BN_BATCH,
                           bn_ghosts=4, precision=precision)
        ev.loop.bn.device_sums = device_sums
        ev.evaluate(w, strategy="loop")
        assert ev.ghost_note == f"not used: {note}" and ev.ghosts_in_use == 1


def _tuned_with_fake_times(model, data, w, ghosts_faster: bool, monkeypatch):
    """Tune the loop path with the GPU's BN pass (bn_ghosts left to the tuner), timing each
    candidate by a fake clock that favours the largest batch, and ghost batches or not."""
    ev = _ghosted(model, ParamLayout.of(model), data, None, workers=1)
    real = Tuner.time

    def fake(self, w, b, settings, **kw):
        real(self, w, b, settings, **kw)  # runs the candidate: the ghost check happens as it would
        return (1.0 if (self.ev.loop.bn.in_use(settings.bn_ghosts) > 1) == ghosts_faster else 2.0) / settings.batch_size

    monkeypatch.setattr(Tuner, "time", fake)
    monkeypatch.setattr(tuner, "TUNING_LIMIT", 1e12)  # the limits would compare fake times with real ones
    tuning = ev.tune(w, strategy="loop")
    monkeypatch.undo()
    return ev, tuning


@pytest.mark.parametrize("ghosts_faster", [True, False])
def test_the_tuner_times_ghost_batches_and_keeps_the_faster_with_the_same_numbers(ghosts_faster, monkeypatch):
    model = make_model(0)
    layout, w = _weights(model)
    data = _data(160)
    reference = GridEvaluator(model, layout, data, bn_policy="recompute", bn_batch_size=BN_BATCH,
                              batch_size=64).evaluate(w, strategy="loop")
    ev, tuning = _tuned_with_fake_times(model, data, w, ghosts_faster, monkeypatch)
    assert ev.batch_size == 160  # 4 x 64, cut to the longest pass: 5 fixed batches of 32
    k = 5  # an evaluation batch of them
    assert {"bn_ghosts=1", f"bn_ghosts={k}"} <= set(tuning.seconds_per_point)
    assert tuning.settings.bn_ghosts == ev.ghosts_in_use == (k if ghosts_faster else 1)
    _assert_same(ev.evaluate(w, strategy="loop"), reference)
    assert ev.ghost_note == (f"{k} fixed batches a forward" if ghosts_faster else "")


def test_the_tuner_drops_ghost_batches_that_would_change_the_statistics(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, 4, 5, bias=False), _Interleave(),
                          nn.BatchNorm1d(4), _Interleave(back=True), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 36, 10)).eval()
    _, w = _weights(model)
    ev, tuning = _tuned_with_fake_times(model, _data(160), w, True, monkeypatch)
    assert tuning.settings.bn_ghosts == ev.ghosts_in_use == 1  # "faster" only because it ran one batch a forward
    assert [k for k in tuning.seconds_per_point if k.startswith("bn_ghosts")] == ["bn_ghosts=1"]
    assert "statistics differ from one batch at a time" in tuning.note


def test_the_tuner_leaves_ghost_batches_alone_where_they_cannot_run_or_were_set():
    model = make_model(0)
    layout, w = _weights(model, 2)
    for device_sums, ghosts in ((False, None), (True, 1), (True, 3)):
        ev = _ghosted(model, layout, _data(160), ghosts, workers=1)
        ev.loop.bn.device_sums = device_sums
        tuning = ev.tune(w, strategy="loop")
        assert not any(k.startswith("bn_ghosts") for k in tuning.seconds_per_point)
        assert tuning.settings.bn_ghosts == ev.ghosts_in_use == (ghosts or 1)


def test_a_plane_records_the_tuners_ghost_batches_and_runs_with_them(three_ckpts, tmp_path, monkeypatch):
    import importlib

    from landscape import PlaneConfig, plane

    prepare_mod = importlib.import_module("landscape.grid.prepare")  # where the grid builds its evaluator
    runner = importlib.import_module("landscape.grid.driver")

    cfg = dict(grid=3, train_subset=300, test_subset=100, bn_batch_size=BN_BATCH, batch_size=128, group_size=4)
    reference = plane(three_ckpts, out=tmp_path / "ref.h5", config=PlaneConfig(**cfg, engine="loop"))

    class OnTheGPUsBNPass(GridEvaluator):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.loop.bn.device_sums = True

    real_time, real_run, original_bn, rows = Tuner.time, runner._run_alone, engine.ghost_bn, []

    def fake_time(self, w, b, settings, **kw):  # the largest batch and ghost batches win
        real_time(self, w, b, settings, **kw)
        return 1.0 / (settings.batch_size * self.ev.loop.bn.in_use(settings.bn_ghosts))

    def ghost_bn(m, name, rec, batch, x):
        rows.append(len(x))
        return original_bn(m, name, rec, batch, x)

    def run_alone(*args, **kw):  # the grid itself, after tuning
        rows.clear()
        return real_run(*args, **kw)

    monkeypatch.setattr(prepare_mod, "GridEvaluator", OnTheGPUsBNPass)
    monkeypatch.setattr(Tuner, "time", fake_time)
    monkeypatch.setattr(tuner, "TUNING_LIMIT", 1e12)  # the limits would compare fake times with real ones
    monkeypatch.setattr(Tuner, "choose_strategy",
                        lambda self, w, b: Tuning(self.ev.settings.but(strategy="loop"), {"loop": 1.0}))
    monkeypatch.setattr(engine, "ghost_bn", ghost_bn)
    monkeypatch.setattr(runner, "_run_alone", run_alone)
    tuned = plane(three_ckpts, out=tmp_path / "tuned.h5", config=PlaneConfig(**cfg, engine="auto"))
    record = tuned.config["runtime"]["engine"]
    assert record["path"] == "loop" and record["batch_size"] == 300  # 4 x 128, cut to the longest pass
    assert record["bn_ghosts"] == 9 and record["bn_ghosts_note"] == "9 fixed batches a forward"
    assert max(rows) == 9 * BN_BATCH  # the grid ran with them (and the last 12 rows alone)
    for split in ("train", "test"):
        np.testing.assert_allclose(tuned.loss(split), reference.loss(split), atol=1e-5, rtol=0)
        np.testing.assert_allclose(tuned.acc(split), reference.acc(split), atol=1e-6, rtol=0)
