"""The settings planes and paths share: one validator, one set of defaults; the engine record
read and written as format 1 lays it out."""

from __future__ import annotations

import dataclasses

import pytest

from landscape import GridSettings, PathConfig, PlaneConfig, UserError
from landscape.engine.settings import EngineSettings
from landscape.grid.record import EngineRecord

BAD = [
    ({"workers": 0}, "workers must be a positive integer"),
    ({"data_on": "gpu"}, "unknown data_on 'gpu'"),
    ({"precision": "fp16"}, "unknown precision 'fp16'"),
    ({"bn_batch_size": 1}, "bn_batch_size must be an integer >= 2"),
    ({"splits": ("train", "train")}, "splits must be distinct names"),
    ({"splits": ()}, "splits must be distinct names"),
    ({"train_subset": 1}, "train_subset must be an integer >= 2"),
    ({"test_subset": 1.5}, "test_subset must be an integer >= 2"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"engine": "fast"}, "unknown engine 'fast'"),
    ({"group_size": 0}, "group_size must be a positive integer"),
]


@pytest.mark.parametrize("config", [GridSettings, PlaneConfig, PathConfig])
@pytest.mark.parametrize(("bad", "message"), BAD)
def test_planes_and_paths_refuse_the_same_bad_settings(config, bad, message):
    with pytest.raises(UserError, match=message):
        config(**bad)


def test_planes_and_paths_share_one_set_of_defaults():
    shared = {f.name for f in dataclasses.fields(GridSettings)}
    for config in (PlaneConfig(), PathConfig()):
        assert {name: getattr(config, name) for name in shared} == dataclasses.asdict(GridSettings())
    assert GridSettings().batch_size == 512 and GridSettings().group == 8


def test_the_identity_leaves_out_the_engine_knobs_and_inert_settings():
    fields = PlaneConfig(batch_size=7, workers=3, engine="vmap").identity_fields("keep")
    assert list(fields) == ["grid", "margin", "range", "bn", "splits", "train_subset", "test_subset",
                            "ignore_1d"]  # the order of the file
    fields = PathConfig(test_subset=100, precision="bf16").identity_fields("recompute")
    assert list(fields) == ["points", "extend", "bn", "bn_batch_size", "splits", "train_subset", "test_subset",
                            "seed", "precision"]


USER = {"path": "loop", "batch_size": 64, "group_size": 8, "workers": 2, "chosen_by": "user",
        "tuned_for": {"device": "cpu (cpu)"}, "data": "on the device"}
MEASURED = {**USER, "chosen_by": "measured", "bn_ghosts": 4, "bn_folded_layers": 5, "matmul_convs": 1,
            "seconds_per_point": {"loop": 0.5}, "note": "vmap stopped", "cuda_graph": None, "bn_ghosts_note": None}
BACKED_OFF = {**MEASURED, "backoffs": ["out of memory: evaluation batch halved to 32"], "batch_size_after_backoff": 32,
              "max_group": 4, "workers_after_backoff": 1, "bn_ghosts_after_backoff": 1}


@pytest.mark.parametrize("record", [USER, MEASURED, BACKED_OFF])
def test_an_engine_record_reads_back_exactly_as_written(record):
    assert EngineRecord.from_dict(record).to_dict() == record


def test_a_resumed_run_starts_from_what_the_back_offs_left():
    assert EngineRecord.from_dict(USER).settings(bn_ghosts=3) == EngineSettings("loop", 64, 8, None, 2, 3)
    assert EngineRecord.from_dict(MEASURED).settings() == EngineSettings("loop", 64, 8, None, 2, 4)
    assert EngineRecord.from_dict(BACKED_OFF).settings() == EngineSettings("loop", 32, 8, 4, 1, 1)
    more = EngineRecord.from_dict(BACKED_OFF).after(["out of memory: 1 point at once from now on"],
                                                    EngineSettings("loop", 16, 8, 2, 1, 1), 1).to_dict()
    assert more["backoffs"] == [*BACKED_OFF["backoffs"], "out of memory: 1 point at once from now on"]
    assert (more["batch_size_after_backoff"], more["max_group"]) == (16, 2)
    assert EngineRecord.from_dict({}) is None and EngineRecord.from_dict(None) is None
