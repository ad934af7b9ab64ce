"""The metadata, checkpoint and HDF5 readers, given damaged input, give one clean ``UserError``
or exactly the data the input holds: the values written, wherever the damage missed them.

Where a value is stored is known from the undamaged file (a dataset's raw data from HDF5, a
tensor's bytes from the safetensors header, the bytes of a stored string); a value whose bytes
the damage touched may come back changed, since neither format checksums its data. Everything
else must come back exactly as written.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct

import h5py
import numpy as np
import pytest
import torch
from conftest import make_model, meta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from landscape import UserError, load_checkpoint, read_paths, read_surface, save_checkpoint
from landscape.assets.checkpoint import CheckpointMeta
from landscape.grid.store import PathStore, SurfaceStore
from landscape.results import PointInfo

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=4),
    max_leaves=12)


def _clean(exc: UserError) -> None:
    """A reader's error is one line of text, never a traceback or a dump."""
    assert str(exc) and "\n" not in str(exc), repr(exc)


# ---------------------------------------------------------------------------- checkpoint metadata

def _expected_meta(text: str) -> dict | None:
    """The fields of the ``CheckpointMeta`` that ``text`` describes, written out from the
    metadata's definition, or None where it describes none."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    names = {f.name for f in dataclasses.fields(CheckpointMeta)}
    fields = {"arch_kwargs": {}, "dataset": None, "method": None, "member": None, "seed": None,
              "epochs": None, "parent": None, "extra": {}, **{k: v for k, v in doc.items() if k in names}}
    if isinstance(fields["extra"], dict):  # keys it does not know about go to ``extra``
        fields["extra"] = {**fields["extra"], **{k: v for k, v in doc.items() if k not in names}}

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    valid = (isinstance(fields.get("arch"), str) and fields["arch"] != ""
             and is_int(fields.get("num_classes")) and fields["num_classes"] >= 1
             and isinstance(fields["arch_kwargs"], dict) and isinstance(fields["extra"], dict)
             and all(fields[k] is None or isinstance(fields[k], str) for k in ("dataset", "method", "parent"))
             and all(fields[k] is None or is_int(fields[k]) for k in ("member", "seed", "epochs")))
    return fields if valid else None


@FUZZ
@given(st.one_of(st.text(max_size=60), json_values.map(json.dumps),
                 st.dictionaries(st.sampled_from(["arch", "num_classes", "arch_kwargs", "seed",
                                                  "extra", "member", "x"]), json_values,
                                 max_size=6).map(json.dumps)))
def test_metadata_reader_gives_what_the_json_says_or_a_clean_error(text):
    expected = _expected_meta(text)
    if expected is None:
        with pytest.raises(UserError) as info:
            CheckpointMeta.from_json(text)
        _clean(info.value)
    else:
        assert dataclasses.asdict(CheckpointMeta.from_json(text)) == expected


# ---------------------------------------------------------------------------- good files

CONFIG = {"identity": {"mode": "three_point"}, "runtime": {}}
POINT = PointInfo(0.25, 0.75, 0.125)  # values whose bytes are found in the file
GRID = np.arange(3.0)
ALPHA = np.linspace(0, 1, 4)
PAIRS, NAMES = [(0, 1), (1, 2)], ["A", "B", "C"]


def _written(shape, values: dict[tuple[int, int], float]) -> np.ndarray:
    out = np.full(shape, np.nan)
    for index, v in values.items():
        out[index] = v
    return out


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    model = make_model(0)
    save_checkpoint(model, root / "m.safetensors", meta())
    with SurfaceStore.open(root / "s.h5", x=GRID, y=GRID, splits=("test",), config=CONFIG,
                           points={"A": POINT}) as store:
        store.write([(0, 0), (1, 2)], {"test": {"loss": np.array([1.0, 2.0]), "acc": np.array([10.0, 20.0])}})
    with PathStore.open(root / "p.h5", alpha=ALPHA, pairs=PAIRS, names=NAMES, splits=("test",),
                        config=CONFIG) as store:
        store.write([(0, 1)], {"test": {"loss": np.array([1.0]), "acc": np.array([10.0])}})
    return {"model": model, "ckpt": (root / "m.safetensors").read_bytes(),
            "surface": (root / "s.h5").read_bytes(), "surface_at": _h5_places(root / "s.h5", SURFACE_PLACES),
            "paths": (root / "p.h5").read_bytes(), "paths_at": _h5_places(root / "p.h5", PATHS_PLACES)}


# Where each part of a reader's result is stored: HDF5 datasets by name, or bytes to look for
# (attribute values and the names of links in the groups' heaps).
_CONFIG_BYTES = json.dumps(CONFIG, sort_keys=True).encode()
SURFACE_PLACES = {"x": ["x"], "y": ["y"], "loss": ["metrics/test/loss"], "acc": ["metrics/test/acc"],
                  "done": ["done"], "splits": [b"test\0"], "config": [_CONFIG_BYTES],
                  "points": ["points/A", b"points\0", b"A\0", struct.pack("<d", POINT.residual)]}
PATHS_PLACES = {"alpha": ["alpha"], "pairs": ["pairs"], "loss": ["metrics/test/loss"],
                "acc": ["metrics/test/acc"], "done": ["done"], "splits": [b"test\0"],
                "config": [_CONFIG_BYTES], "names": [json.dumps(NAMES).encode()]}


def _h5_places(path, places: dict[str, list]) -> dict[str, list[range]]:
    data = path.read_bytes()
    out = {}
    with h5py.File(path, "r") as f:
        for part, where in places.items():
            out[part] = []
            for w in where:
                if isinstance(w, str):
                    start = f[w].id.get_offset()
                    out[part].append(range(start, start + f[w].id.get_storage_size()))
                else:
                    found = [range(m.start(), m.end()) for m in re.finditer(re.escape(w), data)]
                    assert found, f"{w!r} is not in {path.name}"
                    out[part] += found
    return out


def _damage(data: bytes, edits, cut: int) -> tuple[bytes, np.ndarray]:
    """``data`` with ``edits`` applied and its last ``cut`` bytes removed, and a mask of the bytes
    of ``data`` that this changed."""
    good = np.frombuffer(data, np.uint8)
    out = good.copy()
    for pos, value in edits:
        out[pos % len(out)] = value
    changed = out != good
    if cut:
        changed[len(data) - cut:] = True
    return out[: len(out) - cut].tobytes(), changed


def _intact(places: dict[str, list[range]], changed: np.ndarray) -> set[str]:
    """The parts of a result whose stored bytes the damage missed."""
    return {part for part, where in places.items() if not any(changed[r.start:r.stop].any() for r in where)}


def _assert_metrics(result, intact: set[str], loss: np.ndarray, acc: np.ndarray, done: np.ndarray):
    if "splits" in intact:
        assert list(result.metrics) == ["test"]
    (values,) = result.metrics.values()
    for part, expected in (("loss", loss), ("acc", acc)):
        if part in intact:
            assert values[part].dtype == np.float64
            np.testing.assert_array_equal(values[part], expected)  # NaN where nothing was written
    if "done" in intact:
        np.testing.assert_array_equal(result.done, done)
    if "config" in intact:
        assert result.config == CONFIG


# ---------------------------------------------------------------------------- checkpoints

edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8)


def _tensor_index(header: dict) -> dict:
    return {k: v for k, v in header.items() if k != "__metadata__"}


@FUZZ
@given(edits=edits, cut=st.integers(0, 400), head=st.booleans())
def test_tampered_safetensors_give_the_file_tensors_or_a_clean_error(good_files, tmp_path, edits, cut, head):
    good = good_files["ckpt"]
    if head:  # concentrate the damage in the JSON header, where parsing happens
        edits = [(pos % 300, v) for pos, v in edits]
    data, changed = _damage(good, edits, cut)
    path = tmp_path / "t.safetensors"
    path.write_bytes(data)
    try:
        ckpt = load_checkpoint(path)
    except UserError as exc:
        _clean(exc)
        return
    # it loaded: the header is the saved one (or differs only where nothing is read from it) ...
    n = struct.unpack("<Q", good[:8])[0]
    assert data[:8] == good[:8]
    saved, header = json.loads(good[8:8 + n]), json.loads(data[8:8 + n])
    assert _tensor_index(header) == _tensor_index(saved)
    assert ckpt.meta == CheckpointMeta.from_json(header["__metadata__"]["landscape"])
    if not changed[:8 + n].any():
        assert ckpt.meta == meta()
    # ... and every tensor holds the bytes the file holds: the saved ones where the damage missed
    model_state = good_files["model"].state_dict()
    for name, tensor in ckpt.model.state_dict().items():
        start, stop = (8 + n + o for o in saved[name]["data_offsets"])
        assert tensor.dtype == model_state[name].dtype and tensor.shape == model_state[name].shape
        assert tensor.reshape(-1).view(torch.uint8).tolist() == list(data[start:stop])
        if not changed[start:stop].any():
            assert torch.equal(tensor, model_state[name])


def test_a_tensor_relabelled_with_another_dtype_is_refused(good_files, tmp_path):
    data = bytearray(good_files["ckpt"])
    at = data.index(b'"F32"')
    data[at + 1] = ord("I")  # F32 -> I32: the same size, so the header stays consistent
    path = tmp_path / "t.safetensors"
    path.write_bytes(bytes(data))
    with pytest.raises(UserError):
        load_checkpoint(path)


# ---------------------------------------------------------------------------- results files

SURFACE_LOSS = {(0, 0): 1.0, (1, 2): 2.0}
SURFACE_ACC = {(0, 0): 10.0, (1, 2): 20.0}


def _assert_surface(surface, intact: set[str], loss: dict, acc: dict) -> None:
    if "x" in intact:
        np.testing.assert_array_equal(surface.x, GRID)
    if "y" in intact:
        np.testing.assert_array_equal(surface.y, GRID)
    if "points" in intact:
        assert surface.points == {"A": POINT}
    _assert_metrics(surface, intact, _written((3, 3), loss), _written((3, 3), acc),
                    ~np.isnan(_written((3, 3), loss)))


@FUZZ
@given(edits=edits, cut=st.integers(0, 2000))
def test_tampered_surface_file_gives_the_written_data_or_a_clean_error(good_files, tmp_path, edits, cut):
    data, changed = _damage(good_files["surface"], edits, cut)
    path = tmp_path / "t.h5"
    path.write_bytes(data)
    try:
        surface = read_surface(path)
    except UserError as exc:
        _clean(exc)
        return
    _assert_surface(surface, _intact(good_files["surface_at"], changed), SURFACE_LOSS, SURFACE_ACC)


@FUZZ
@given(edits=edits, cut=st.integers(0, 2000))
def test_tampered_paths_file_gives_the_written_data_or_a_clean_error(good_files, tmp_path, edits, cut):
    data, changed = _damage(good_files["paths"], edits, cut)
    path = tmp_path / "t.h5"
    path.write_bytes(data)
    try:
        paths = read_paths(path)
    except UserError as exc:
        _clean(exc)
        return
    intact = _intact(good_files["paths_at"], changed)
    if "alpha" in intact:
        np.testing.assert_array_equal(paths.alpha, ALPHA)
    if "pairs" in intact:
        assert paths.pairs == PAIRS
    if "names" in intact:
        assert paths.names == NAMES
    loss = _written((2, 4), {(0, 1): 1.0})
    _assert_metrics(paths, intact, loss, _written((2, 4), {(0, 1): 10.0}), ~np.isnan(loss))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=edits, cut=st.integers(0, 2000))
def test_resuming_a_damaged_partial_file_gives_a_clean_error_or_a_store_that_works(good_files, tmp_path,
                                                                                  edits, cut):
    """Opening a damaged unfinished file to resume it: a clean error, or a store that resumes
    where the file left off and whose next point reads back with the earlier ones."""
    data, changed = _damage(good_files["surface"], edits, cut)
    path = tmp_path / "r.h5"
    path.write_bytes(data)
    intact = _intact(good_files["surface_at"], changed)
    loss, acc = dict(SURFACE_LOSS), dict(SURFACE_ACC)
    try:
        with SurfaceStore.open(path, x=GRID, y=GRID, splits=("test",), config=CONFIG,
                               points={"A": POINT}) as store:
            missing = store.missing()
            if "done" in intact:
                assert missing == [(j, i) for j in range(3) for i in range(3) if (j, i) not in loss]
            if missing:
                store.write(missing[:1], {"test": {"loss": np.array([3.0]), "acc": np.array([30.0])}})
                loss[missing[0]], acc[missing[0]] = 3.0, 30.0
        surface = read_surface(path)
    except UserError as exc:
        _clean(exc)
        return
    _assert_surface(surface, intact, loss, acc)
