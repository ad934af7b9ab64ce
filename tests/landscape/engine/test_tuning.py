"""The engine's autotuner and its out-of-memory back-off: neither may change the numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_model, perturbed

from landscape import UserError, load_dataset
from landscape.engine.bn_pass import LoopBnPass
from landscape.engine.core import OutOfMemoryError, OutOfTime
from landscape.engine.evaluator import EvalData, GridEvaluator
from landscape.engine.loop import LoopStrategy
from landscape.engine.tuner import Tuner
from landscape.engine.layout import ParamLayout

N_TRAIN, N_TEST = 160, 90


@pytest.fixture(scope="module")
def setup():
    base = make_model(0)
    layout = ParamLayout.of(base)
    weights = torch.stack([layout.flatten(perturbed(base, s, 0.2).state_dict()) for s in range(5)])
    train, test = load_dataset("mnist1d", "train"), load_dataset("mnist1d", "test")
    data = EvalData({"train": (train.inputs[:N_TRAIN], train.labels[:N_TRAIN]),
                     "test": (test.inputs[:N_TEST], test.labels[:N_TEST])}, train.inputs[:N_TRAIN])
    return base, layout, weights, data


def _evaluator(setup, batch_size=64):
    base, layout, _, data = setup
    return GridEvaluator(base, layout, data, bn_policy="recompute", bn_batch_size=32,
                         batch_size=batch_size)


def _assert_same(a, b, atol=1e-5):
    for split in a.metrics:
        # float32 sums, another order: relative 1e-5
        np.testing.assert_allclose(a.metrics[split]["loss"], b.metrics[split]["loss"], atol=atol, rtol=1e-5)
        np.testing.assert_allclose(a.metrics[split]["acc"], b.metrics[split]["acc"], atol=atol, rtol=0)


def _evaluator_with(setup, **kw):
    base, layout, _, data = setup
    return GridEvaluator(base, layout, data, bn_policy="recompute", bn_batch_size=32, **kw)


def test_every_setting_the_tuner_can_pick_gives_the_same_numbers(setup):
    weights = setup[2]
    reference = _evaluator(setup, batch_size=N_TRAIN).evaluate(weights, strategy="loop")
    for path in ("loop", "vmap"):
        for batch in (1, 7, 16, 64, N_TRAIN):
            _assert_same(_evaluator(setup, batch).evaluate(weights, strategy=path), reference)
    for workers in (2, 4, 8):  # 5 points: uneven shares, and more workers than points
        _assert_same(_evaluator_with(setup, workers=workers).evaluate(weights, strategy="loop"), reference)


def test_worker_threads_stop_on_a_failure_and_restore_the_thread_count(setup, monkeypatch):
    """A point that fails in one worker thread fails the group with its own error; the other
    threads take no new point, and the process's intra-op thread count is restored."""
    import threading

    ev = _evaluator_with(setup, workers=2)
    original, started = LoopBnPass.run_, []

    def third_point_fails(self, replica, max_samples, ghosts=1):
        started.append(threading.current_thread().name)
        if len(started) == 3:
            raise ValueError("broken point")
        return original(self, replica, max_samples, ghosts)

    monkeypatch.setattr(LoopBnPass, "run_", third_point_fails)
    threads = torch.get_num_threads()
    with pytest.raises(ValueError, match="broken point"):
        ev.evaluate(torch.cat([setup[2]] * 4), strategy="loop")  # 20 points, 10 a thread
    assert torch.get_num_threads() == threads
    assert 3 <= len(started) <= 4 and all(n.startswith("landscape-point") for n in started)
    assert len(set(started)) == 2  # both threads ran


def test_a_real_error_in_one_worker_wins_over_a_time_limit_stop_in_another(setup, monkeypatch):
    """The tuner's time limit stops every worker; a bug met meanwhile must not hide behind it."""
    import threading

    ev = _evaluator_with(setup, workers=2)
    both_started = threading.Barrier(2, timeout=30)

    def fails(self, replica, max_samples, ghosts=1):
        first = replica is self.replicas[0]
        both_started.wait()
        raise OutOfTime if first else ValueError("broken point")

    monkeypatch.setattr(LoopBnPass, "run_", fails)
    with pytest.raises(ValueError, match="broken point"):  # worker 0's stop comes first in order
        ev.evaluate(setup[2][:2], strategy="loop")


def test_workers_gathering_bn_statistics_the_gpu_way_keep_them_apart(setup):
    """The GPU's BN pass (sums on the device, recorded by hooks) run on the CPU by 3 workers
    at once: each thread's hooks record into its own records and each replica sums into its
    own accumulators, so the numbers are those of one point at a time."""
    weights = torch.cat([setup[2]] * 2)  # 10 points
    reference = _evaluator_with(setup, workers=1, batch_size=64).evaluate(weights, strategy="loop")
    ev = _evaluator_with(setup, workers=3, batch_size=64)
    ev.loop.bn.device_sums = True
    _assert_same(ev.evaluate(weights, strategy="loop"), reference, atol=1e-6)
    assert len(ev.loop.replicas) == 3 and len({id(r.acc) for r in ev.loop.replicas}) == 3


def _out_of_memory_in_worker_threads(monkeypatch) -> None:
    """The BN pass runs out of memory whenever several points run at once (in worker threads)."""
    import threading

    original = LoopBnPass.run_

    def only_alone(self, replica, max_samples, ghosts=1):
        if threading.current_thread().name.startswith("landscape-point"):
            raise OutOfMemoryError("CUDA out of memory (simulated, several points at once)")
        return original(self, replica, max_samples, ghosts)

    monkeypatch.setattr(LoopBnPass, "run_", only_alone)


def test_out_of_memory_with_several_workers_halves_them_first(setup, monkeypatch):
    """Each worker holds a replica and its activations (on a GPU also a CUDA graph): fewer
    points at once is the first back-off, before the batch or the group."""
    weights = setup[2]
    reference = _evaluator_with(setup, workers=1, batch_size=64).evaluate(weights, strategy="loop")
    ev = _evaluator_with(setup, workers=8, batch_size=64)
    _out_of_memory_in_worker_threads(monkeypatch)
    _assert_same(ev.evaluate(weights, strategy="loop"), reference)
    assert ev.backoffs == ["out of memory: 2 points at once from now on",  # 5 points ran at once
                           "out of memory: 1 point at once from now on"]
    assert ev.workers == 1 and len(ev.loop.replicas) == 1 and ev.batch_size == 64 and ev.max_group is None


def test_a_worker_count_that_runs_out_of_memory_while_tuned_is_no_candidate(setup, monkeypatch):
    import landscape.engine.tuner as tuner

    _out_of_memory_in_worker_threads(monkeypatch)
    monkeypatch.setattr(tuner, "TUNING_LIMIT", 1000.0)  # the retry after the back-off is slow
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the tuner times 2 workers
    try:
        ev = _evaluator(setup)
        choice = ev.choose_strategy(setup[2][:4])
    finally:
        torch.set_num_threads(threads)
    assert set(choice.seconds_per_point) == {"loop", "vmap"} and choice.settings.workers == 1
    assert choice.note == "loop, 2 workers dropped: out of memory"
    assert ev.backoffs == []  # no "from now on": the candidate was dropped instead


def test_a_candidate_stopped_after_an_out_of_memory_back_off_keeps_nothing_of_it(setup, monkeypatch):
    """Out of memory with 2 workers halves them, and the retry then runs past the time limit:
    the candidate is out, the workers are as before, and no back-off is kept "from now on"."""
    import landscape.engine.tuner as tuner

    _out_of_memory_in_worker_threads(monkeypatch)
    monkeypatch.setattr(tuner, "TUNING_LIMIT", 1e-9)  # every candidate but the first is stopped
    ev = _evaluator_with(setup, batch_size=64, workers=2)
    t, why = Tuner(ev)._candidate((setup[2][:4], None), ev.settings.but(strategy="loop"), 128, limit=1e-9)
    assert t is None and why == "dropped: out of memory"
    assert ev.workers == 2 and ev.backoffs == []


def test_the_tuner_times_one_worker_per_cpu_thread_and_a_few_gpu_streams():
    from landscape.engine.tuner import worker_candidates

    assert worker_candidates("cpu", 2, 8) == {"loop, 2 workers": ("loop", 2)}
    assert worker_candidates("cpu", 16, 5) == {"loop, 5 workers": ("loop", 5)}
    assert worker_candidates("cpu", 1, 8) == {} and worker_candidates("cpu", 4, 1) == {}
    assert worker_candidates("cuda", 1, 8) == {f"loop, {n} streams": ("loop", n) for n in (2, 4, 8)}
    assert worker_candidates("cuda", 1, 3) == {"loop, 2 streams": ("loop", 2)}


def test_the_tuner_stops_timing_a_candidate_that_cannot_win(setup, monkeypatch):
    """A path many times slower than the fastest is stopped at its first batch past the limit
    (TUNING_LIMIT times the fastest's time; three times that in its warm-up), and not timed
    again: on a ResNet-50 the vmap path took minutes to time in full."""
    import time

    import landscape.engine.tuner as tuner
    import landscape.engine.vmap as vmap

    vmap_batches = []

    def slow(x):  # the vmap path calls this once a batch
        vmap_batches.append(len(x))
        time.sleep(1.0)
        return x.contiguous()

    monkeypatch.setattr(vmap, "standard", slow)
    monkeypatch.setattr(tuner, "TUNING_LIMIT", 0.5)  # tight, so that a loaded machine's loop path is fast enough
    ev = _evaluator(setup, batch_size=32)
    choice = ev.choose_strategy(setup[2][:4])
    assert choice.settings.strategy == "loop" and "vmap" not in choice.seconds_per_point and "loop" in choice.seconds_per_point
    assert "vmap stopped after 0.5x the fastest's time" in choice.note.split("; ")
    loop_seconds = min(choice.seconds_per_point.values()) * 4
    # the warm-up may take 3 limits: it also makes replicas and CUDA graphs
    assert 1.0 > 3 * 0.5 * loop_seconds, "the loop path must be fast enough for this test"
    # In full: a warm-up of 2 BN + 3 split batches, then twice 4 BN + 6 split batches. Stopped at
    # its first check past the limit: before its first batch, or right after it
    assert len(vmap_batches) <= 1, vmap_batches


def test_cudnns_autotuner_is_off_unless_asked_for(setup, monkeypatch):
    """The engine meets several batch shapes on several threads, and the autotuner benchmarks
    every convolution for each (per thread): off by default, in the tuner and in evaluations."""
    import landscape.engine.evaluator as evaluator
    import landscape.engine.loop as loop

    seen, original = [], evaluator.numerics

    def recording(precision, device, *, autotune=False):
        seen.append(autotune)
        return original(precision, device, autotune=autotune)

    monkeypatch.setattr(evaluator, "numerics", recording)
    monkeypatch.setattr(loop, "numerics", recording)
    for asked in (False, True):
        ev = _evaluator_with(setup, batch_size=64, workers=2, cudnn_benchmark=asked)
        seen.clear()  # the constructor's checks
        ev.tune(setup[2][:4], strategy="loop")
        ev.evaluate(setup[2][:4], strategy="loop")
        assert seen and set(seen) == {asked}


def test_a_stopped_candidate_leaves_the_evaluator_as_it_was(setup, monkeypatch):
    """Stopped in the middle of a BN statistics pass and of an evaluation pass, on both paths:
    the next evaluation gives the numbers of an evaluator that was never stopped."""
    weights = setup[2][:3]
    reference = _evaluator(setup).evaluate(weights, strategy="loop")
    for path in ("loop", "vmap"):
        for stop_at in (2, 7):  # a BN batch, then an evaluation batch
            ev = _evaluator_with(setup, batch_size=32, workers=2)
            clock = ev.core.clock
            batches, original = [], clock.check

            def on_time(batches=batches, stop_at=stop_at, original=original, clock=clock):
                batches.append(1)
                if len(batches) == stop_at:
                    clock.deadline = 0.0  # past
                original()

            monkeypatch.setattr(clock, "check", on_time)
            with pytest.raises(OutOfTime):
                Tuner(ev).time(weights, None, ev.settings.but(strategy=path, batch_size=32), samples=64, limit=60.0)
            assert clock.deadline is None and ev.batch_size == 32
            _assert_same(ev.evaluate(weights, strategy=path), reference)


def test_tune_picks_among_its_candidates_and_sets_the_batch_size(setup):
    weights = setup[2]
    ev = _evaluator(setup, batch_size=64)
    tuning = ev.tune(weights[:2], group_sizes=(1, 2, 4))
    assert tuning.settings.strategy in ("loop", "vmap")
    assert tuning.settings.batch_size in (16, 64, N_TRAIN) and ev.batch_size == tuning.settings.batch_size
    assert {"loop", "vmap", "batch=16", "batch=64", f"batch={N_TRAIN}"} <= set(tuning.seconds_per_point)
    assert all(s > 0 for s in tuning.seconds_per_point.values())
    assert len(ev.loop.replicas) == tuning.settings.workers  # the replicas of larger candidates are gone
    if tuning.settings.strategy == "vmap":
        assert tuning.settings.group_size in (1, 2, 4) and "group=4" in tuning.seconds_per_point
    else:
        assert tuning.settings.group_size == 2  # the loop path's speed does not depend on the group
    fixed = _evaluator(setup, batch_size=N_TRAIN).evaluate(weights, strategy="loop")
    _assert_same(ev.evaluate(weights, strategy=tuning.settings.strategy), fixed)


def _oom_above(models: list[torch.nn.Module], limit: int) -> list[int]:
    """Make the models' forward raise an out-of-memory error for batches above ``limit``."""
    seen = []

    def guard(forward):
        def guarded(x):
            seen.append(x.shape[0])
            if x.shape[0] > limit:
                raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
            return forward(x)

        return guarded

    for model in models:
        model.forward = guard(model.forward)
    return seen


@pytest.mark.parametrize("path", ["loop", "vmap"])
def test_out_of_memory_halves_the_batch_and_keeps_the_numbers(setup, path):
    weights = setup[2][:3]
    expected = _evaluator(setup, batch_size=N_TRAIN).evaluate(weights, strategy="loop")
    ev = _evaluator(setup, batch_size=256)  # BN statistics use fixed batches of 32, under the limit
    ev.vmap.stats_model_()  # the vmap path's BN-statistics copy is made before the patch
    assert ev.folded_layers == 5  # the loop path evaluates the BN-folded copy: guard both
    seen = _oom_above([ev.model, ev.core.folded.model], 40)
    got = ev.evaluate(weights, strategy=path)
    _assert_same(got, expected)
    assert ev.batch_size == 32  # 256 -> 128 -> 64 -> 32
    assert ev.backoffs == [f"out of memory: evaluation batch halved to {b}" for b in (128, 64, 32)]
    assert max(seen) > 40 and seen[-1] <= 40


def test_out_of_memory_with_a_batch_of_one_splits_the_group(setup, monkeypatch):
    weights = setup[2][:4]
    ev = _evaluator(setup, batch_size=2)
    expected = _evaluator(setup, batch_size=N_TRAIN).evaluate(weights, strategy="vmap")
    original = ev.vmap.evaluate

    def at_most_one_point(w, buffers, settings, max_samples):
        if len(w) > 1:
            raise RuntimeError("CUDA error: out of memory (simulated)")
        return original(w, buffers, settings, max_samples)

    monkeypatch.setattr(ev.vmap, "evaluate", at_most_one_point)
    got = ev.evaluate(weights, strategy="vmap")
    _assert_same(got, expected)
    assert ev.batch_size == 1
    splits = [b for b in ev.backoffs if "split" in b]
    assert splits == ["out of memory: group of 4 points split in two (groups of at most 2 from now on)",
                      "out of memory: group of 2 points split in two (groups of at most 1 from now on)",
                      "out of memory: group of 2 points split in two (groups of at most 1 from now on)"]
    assert ev.max_group == 1
    before = list(ev.backoffs)
    _assert_same(ev.evaluate(weights, strategy="vmap"), expected)  # the next group starts small
    assert ev.backoffs == before


def test_out_of_memory_at_the_smallest_setting_is_a_clear_error(setup, monkeypatch):
    ev = _evaluator(setup, batch_size=1)

    def never(w, buffers, settings, max_samples):
        raise OutOfMemoryError("out of memory (simulated)")

    monkeypatch.setattr(ev.loop, "evaluate", never)
    with pytest.raises(UserError, match="out of memory even with one point"):
        ev.evaluate(setup[2][:1], strategy="loop")


def test_other_runtime_errors_are_not_mistaken_for_out_of_memory(setup, monkeypatch):
    ev = _evaluator(setup, batch_size=64)

    def broken(w, buffers, settings, max_samples):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(ev.loop, "evaluate", broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        ev.evaluate(setup[2][:2], strategy="loop")
    assert ev.batch_size == 64 and ev.backoffs == []


def test_out_of_memory_in_the_bn_pass_splits_the_group_and_keeps_the_batch(setup, monkeypatch):
    weights = setup[2][:4]
    expected = _evaluator(setup, batch_size=N_TRAIN).evaluate(weights, strategy="vmap")
    ev = _evaluator(setup, batch_size=64)
    original = ev.vmap.bn_stats

    def stats(params, max_samples):
        if len(next(iter(params.values()))) > 1:
            raise OutOfMemoryError("out of memory (simulated, BN statistics)")
        return original(params, max_samples)

    monkeypatch.setattr(ev.vmap, "bn_stats", stats)
    _assert_same(ev.evaluate(weights, strategy="vmap"), expected)
    assert ev.batch_size == 64  # halving the evaluation batch cannot help the BN pass
    assert ev.backoffs[0].startswith("out of memory: group of 4 points split in two") and len(ev.backoffs) == 3


def test_out_of_memory_in_the_bn_pass_of_one_point_names_the_bn_batch_size(setup, monkeypatch):
    def fails(*args, **kwargs):
        raise OutOfMemoryError("out of memory (simulated)")

    monkeypatch.setattr(LoopBnPass, "run_", fails)
    ev = _evaluator(setup, batch_size=64)
    with pytest.raises(UserError, match="BN statistics pass .*--bn-batch-size 32"):
        ev.evaluate(setup[2][:1], strategy="loop")


class _Store:
    """The part of a results file that the tuner reads and writes."""

    def __init__(self, engine=None):
        self.config = {"runtime": {} if engine is None else {"engine": engine}}

    def set_runtime(self, key, value):
        self.config["runtime"][key] = value


def test_a_resumed_run_reuses_its_tuning_only_where_it_was_measured(setup, monkeypatch):
    from dataclasses import astuple

    from landscape.grid.driver import choose_settings as _tune

    ev = _evaluator(setup)
    weights = setup[2][:2]
    here = ev.tuning_key()
    assert here == {"device": "cpu (cpu)", "precision": "fp32", "channels_last": False, "bn_batch_size": 32,
                    "threads": torch.get_num_threads(), "workers": "measured"}
    recorded = {"path": "loop", "batch_size": 16, "group_size": 4, "chosen_by": "measured", "tuned_for": here,
                "batch_size_after_backoff": 8, "max_group": 2, "workers": 3}
    monkeypatch.setattr(ev, "tune", lambda *a, **k: pytest.fail("a resumed run on the same device re-tuned"))
    assert astuple(_tune(_Store(dict(recorded)), ev, "auto", 8, True, weights, None)) == ("loop", 8, 4, 2, 3, 1)
    ghosts = dict(recorded, bn_ghosts=8)  # a GPU's BN pass, 8 fixed batches a forward
    assert astuple(_tune(_Store(ghosts), ev, "auto", 8, True, weights, None)) == ("loop", 8, 4, 2, 3, 8)
    backed_off = dict(ghosts, workers_after_backoff=1, bn_ghosts_after_backoff=1)  # what its back-offs learnt
    assert astuple(_tune(_Store(backed_off), ev, "auto", 8, True, weights, None)) == ("loop", 8, 4, 2, 1, 1)
    monkeypatch.undo()
    for elsewhere in ({**here, "device": "cuda (NVIDIA H200)"}, {**here, "threads": here["threads"] + 1}):
        store = _Store(dict(ghosts, tuned_for=elsewhere))
        choice = astuple(_tune(store, ev, "auto", 8, True, weights, None))
        engine = store.config["runtime"]["engine"]
        assert engine["tuned_for"] == here and "measured again" in engine["note"]
        assert choice == (engine["path"], engine["batch_size"], engine["group_size"], None, engine["workers"], 1)
        assert engine["bn_ghosts"] == 1  # a CPU's BN pass: no ghost batches, none timed
        assert not any(k.startswith("bn_ghosts=") for k in engine["seconds_per_point"])
    assert "H200" not in engine["note"] and f"'threads': {here['threads'] + 1}" in engine["note"]


def test_a_plane_records_its_out_of_memory_back_offs_and_later_groups_start_small(three_ckpts, tmp_path,
                                                                                   monkeypatch):
    from landscape import PlaneConfig, plane

    cfg = dict(grid=3, train_subset=100, test_subset=50, engine="loop", group_size=4, batch_size=1)
    expected = plane(three_ckpts, out=tmp_path / "a.h5", config=PlaneConfig(**cfg))
    original = LoopStrategy.evaluate
    sizes = []

    def at_most_one_point(self, w, buffers, settings, max_samples):
        sizes.append(len(w))
        if len(w) > 1:
            raise OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, w, buffers, settings, max_samples)

    monkeypatch.setattr(LoopStrategy, "evaluate", at_most_one_point)
    got = plane(three_ckpts, out=tmp_path / "b.h5", config=PlaneConfig(**cfg))
    for split in ("train", "test"):
        np.testing.assert_allclose(got.loss(split), expected.loss(split), atol=1e-6, rtol=0)
    engine = got.config["runtime"]["engine"]
    assert len(engine["backoffs"]) == 3 and engine["max_group"] == 1 and engine["batch_size_after_backoff"] == 1
    assert sizes == [4, 2, 1, 1, 2, 1, 1] + [1] * 5  # groups 2 and 3 (4 + 1 points) never try more than one


def test_an_evaluator_is_freed_as_soon_as_it_is_dropped(setup):
    """Its BN hooks live on its model; they must not keep it (and, on a GPU, its resident data
    and CUDA graph) alive until the cycle collector happens to run."""
    import gc
    import weakref

    gc.disable()
    try:
        ev = _evaluator(setup)
        ev.evaluate(setup[2][:2], strategy="loop")
        ev.evaluate(setup[2][:2], strategy="vmap")  # makes the vmap path's stats model too
        gone = weakref.ref(ev)
        del ev
        assert gone() is None
    finally:
        gc.enable()
