"""The out-of-memory back-off as a pure decision: what it gives up, in which order."""

from __future__ import annotations

import pytest

from landscape import UserError
from landscape.engine.backoff import back_off, in_bn_pass, marking_the_bn_pass
from landscape.engine.settings import EngineSettings

OOM = RuntimeError("CUDA out of memory")


def _in_bn() -> RuntimeError:
    exc = RuntimeError("CUDA out of memory (BN pass)")
    with pytest.raises(RuntimeError), marking_the_bn_pass():
        raise exc
    return exc


def test_the_back_off_gives_up_workers_then_batch_then_splits_the_group():
    s = EngineSettings("loop", batch_size=4, workers=8)
    steps = []
    points = 5
    while True:
        step = back_off(s, points, OOM, ghosts_in_use=1, bn_batch_size=32)
        steps.append(step.message)
        if step.split:
            break
        s = step.settings
    assert steps == ["out of memory: 2 points at once from now on",  # 5 points run at once: half is 2
                     "out of memory: 1 point at once from now on",
                     "out of memory: evaluation batch halved to 2",
                     "out of memory: evaluation batch halved to 1",
                     "out of memory: group of 5 points split in two (groups of at most 2 from now on)"]
    assert step.settings == EngineSettings("loop", batch_size=1, workers=1, max_group=2)


def test_in_the_bn_pass_ghost_batches_go_first_and_the_batch_is_kept():
    s = EngineSettings("loop", batch_size=64, workers=1, bn_ghosts=4)
    exc = _in_bn()
    assert in_bn_pass(exc) and not in_bn_pass(OOM)
    step = back_off(s, 4, exc, ghosts_in_use=4, bn_batch_size=32)
    assert step.drop_ghosts and step.settings.bn_ghosts == 1 and not step.split
    step = back_off(step.settings, 4, exc, ghosts_in_use=1, bn_batch_size=32)
    assert step.split and step.settings.batch_size == 64 and step.settings.max_group == 2
    with pytest.raises(UserError, match="--bn-batch-size 32"):
        back_off(step.settings, 1, exc, ghosts_in_use=1, bn_batch_size=32)


def test_vmap_never_halves_workers_and_one_point_of_one_sample_is_a_clear_error():
    step = back_off(EngineSettings("vmap", batch_size=2, workers=8), 3, OOM, ghosts_in_use=1, bn_batch_size=32)
    assert step.message == "out of memory: evaluation batch halved to 1" and step.settings.workers == 8
    with pytest.raises(UserError, match="out of memory even with one point"):
        back_off(EngineSettings("loop", batch_size=1), 1, OOM, ghosts_in_use=1, bn_batch_size=32)


def test_a_group_already_cut_stays_cut_to_the_smaller_size():
    step = back_off(EngineSettings("vmap", batch_size=1, max_group=3), 8, OOM, ghosts_in_use=1, bn_batch_size=32)
    assert step.split and step.settings.max_group == 3  # min(3, 8 // 2)
