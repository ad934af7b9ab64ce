"""The metadata, checkpoint and HDF5 readers survive fuzzing with clean errors only."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_model, meta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from landscape import UserError, load_checkpoint, read_paths, read_surface, save_checkpoint
from landscape.assets.checkpoint import CheckpointMeta
from landscape.results import PointInfo
from landscape.grid.store import PathStore, SurfaceStore

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=4),
    max_leaves=12)


@FUZZ
@given(st.one_of(st.text(max_size=60), json_values.map(json.dumps),
                 st.dictionaries(st.sampled_from(["arch", "num_classes", "arch_kwargs", "seed",
                                                  "extra", "member", "x"]), json_values,
                                 max_size=6).map(json.dumps)))
def test_metadata_reader_gives_clean_errors(text):
    try:
        CheckpointMeta.from_json(text)
    except UserError:
        pass


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    save_checkpoint(make_model(0), root / "m.safetensors", meta())
    config = {"identity": {"mode": "three_point"}, "runtime": {}}
    with SurfaceStore.open(root / "s.h5", x=np.arange(3.0), y=np.arange(3.0), splits=("test",),
                           config=config, points={"A": PointInfo(0, 0, 0)}) as store:
        store.write([(0, 0), (1, 2)], {"test": {"loss": np.array([1.0, 2.0]), "acc": np.array([10.0, 20.0])}})
    with PathStore.open(root / "p.h5", alpha=np.linspace(0, 1, 4), pairs=[(0, 1), (1, 2)],
                        names=["A", "B", "C"], splits=("test",), config=config) as store:
        store.write([(0, 1)], {"test": {"loss": np.array([1.0]), "acc": np.array([10.0])}})
    return tuple((root / n).read_bytes() for n in ("m.safetensors", "s.h5", "p.h5"))


SURFACE_CONFIG = {"identity": {"mode": "three_point"}, "runtime": {}}


def _mutate(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out)


def _damaged_copy(data: bytes, edits, cut: int, path):
    """Write ``data`` with ``edits`` applied and its last ``cut`` bytes removed to ``path``."""
    data = _mutate(data, edits)
    path.write_bytes(data[: len(data) - cut] if cut else data)
    return path


edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8)


@FUZZ
@given(edits=edits, cut=st.integers(0, 400), head=st.booleans())
def test_tampered_safetensors_errors_cleanly(good_files, tmp_path, edits, cut, head):
    data = good_files[0]
    if head:  # concentrate the damage in the JSON header, where parsing happens
        edits = [(pos % 300, v) for pos, v in edits]
    data = _mutate(data, edits)
    data = data[: len(data) - cut] if cut else data
    path = tmp_path / "t.safetensors"
    path.write_bytes(data)
    try:
        load_checkpoint(path)
    except UserError:
        pass


@FUZZ
@given(edits=edits, cut=st.integers(0, 2000))
def test_tampered_surface_file_errors_cleanly(good_files, tmp_path, edits, cut):
    path = _damaged_copy(good_files[1], edits, cut, tmp_path / "t.h5")
    try:
        read_surface(path)
    except UserError:
        pass


@FUZZ
@given(edits=edits, cut=st.integers(0, 2000))
def test_tampered_paths_file_errors_cleanly(good_files, tmp_path, edits, cut):
    path = _damaged_copy(good_files[2], edits, cut, tmp_path / "t.h5")
    try:
        read_paths(path)
    except UserError:
        pass


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=edits, cut=st.integers(0, 2000))
def test_resuming_a_damaged_partial_file_errors_cleanly(good_files, tmp_path, edits, cut):
    """Opening a damaged unfinished file to resume it: a clean error, or a store that works."""
    path = _damaged_copy(good_files[1], edits, cut, tmp_path / "r.h5")
    try:
        with SurfaceStore.open(path, x=np.arange(3.0), y=np.arange(3.0), splits=("test",),
                               config=SURFACE_CONFIG, points={"A": PointInfo(0, 0, 0)}) as store:
            missing = store.missing()
            if missing:
                store.write(missing[:1], {"test": {"loss": np.array([3.0]), "acc": np.array([30.0])}})
    except (UserError, OSError):
        pass
