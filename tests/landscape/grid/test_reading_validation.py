"""Surface and paths files whose arrays were damaged (a wrong shape, a wrong dtype, a deleted
dataset or split) give one line naming the file and the field, wherever they are read: the
readers, ``landscape info``, ``landscape report`` and a rerun of a finished plane. A replaced
array that fits the layout comes back exactly as written.

The files are real ones, computed by ``plane`` and ``interpolate`` on three tiny checkpoints.
"""

from __future__ import annotations

import json
import re
import shutil

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main
from landscape import PathConfig, PlaneConfig, UserError, interpolate, plane, read_paths, read_surface
from landscape.grid.reading import read_results

SUBSETS = dict(train_subset=100, test_subset=100, engine="loop")
PLANE = PlaneConfig(grid=3, **SUBSETS)
PATHS = PathConfig(points=3, **SUBSETS)


@pytest.fixture(scope="module")
def real(three_ckpts, tmp_path_factory):
    """A finished plane and paths file, and a plane interrupted after two of its five groups."""
    from landscape.engine import evaluator as engine

    root = tmp_path_factory.mktemp("real")
    plane(three_ckpts, out=root / "plane.h5", config=PLANE)
    interpolate(three_ckpts, out=root / "paths.h5", config=PATHS)
    original, calls = engine.GridEvaluator.evaluate, []

    def dies_after_two_groups(self, *args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine.GridEvaluator, "evaluate", dies_after_two_groups)
        with pytest.raises(KeyboardInterrupt):
            plane(three_ckpts, out=root / "part.h5", config=PlaneConfig(grid=3, group_size=2, **SUBSETS))
    assert read_surface(root / "part.h5").done.sum() == 4
    return root


def _damaged(real, tmp_path, name: str, edit) -> object:
    path = tmp_path / name
    shutil.copyfile(real / name, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _replace(name: str, value):
    def edit(f):
        attrs = dict(f[name].attrs)
        del f[name]
        f[name] = value
        f[name].attrs.update(attrs)
    return edit


def _delete(name: str):
    def edit(f):
        del f[name]
    return edit


def _set_attr(name: str, value, on: str = "/"):
    def edit(f):
        f[on].attrs[name] = value
    return edit


def _del_attr(name: str, on: str):
    def edit(f):
        del f[on].attrs[name]
    return edit


def _config(change):
    def edit(f):
        config = json.loads(f.attrs["config"])
        change(config)
        f.attrs["config"] = json.dumps(config)
    return edit


SURFACE_DAMAGE = {
    "done of another shape": (_replace("done", np.zeros((3, 2), bool)),
                              r"dataset done has shape \(3, 2\), expected \(3, 3\)"),
    "done of another dtype": (_replace("done", np.zeros((3, 3), np.uint8)), r"dataset done holds uint8, expected bool"),
    "done deleted": (_delete("done"), r"dataset done is missing"),
    "loss of another shape": (_replace("metrics/test/loss", np.zeros((2, 3))),
                              r"dataset metrics/test/loss has shape \(2, 3\)"),
    "acc in float32": (_replace("metrics/train/acc", np.zeros((3, 3), np.float32)),
                       r"metrics/train/acc holds float32, expected float64"),
    "acc deleted": (_delete("metrics/test/acc"), r"dataset metrics/test/acc is missing"),
    "a split deleted": (_delete("metrics/train"), r"split train is missing \(group metrics/train\)"),
    "all metrics deleted": (_delete("metrics"), r"group metrics is missing"),
    "x longer than the grid": (_replace("x", np.arange(4.0)),
                               r"datasets x and y have 4 and 3 points where its configuration's grid has 3"),
    "x of integers": (_replace("x", np.arange(3)), r"dataset x holds int64, expected float64"),
    "y decreasing": (_replace("y", np.array([2.0, 1.0, 0.0])), r"dataset y does not hold increasing finite numbers"),
    "y with a NaN": (_replace("y", np.array([0.0, np.nan, 2.0])), r"dataset y does not hold increasing finite numbers"),
    "y a matrix": (_replace("y", np.zeros((3, 1))), r"dataset y has shape \(3, 1\), expected \(any,\)"),
    "a point of three numbers": (_replace("points/A", np.zeros(3)),
                                 r"dataset points/A has shape \(3,\), expected \(2,\)"),
    "a point without its residual": (_del_attr("residual", on="points/B"),
                                     r"dataset points/B or its attribute residual"),
    "config not JSON": (_set_attr("config", "{"), r"attribute config is not JSON"),
    "config deleted": (_del_attr("config", on="/"), r"attribute config is missing"),
    "splits not a list": (_config(lambda c: c["identity"].update(splits="test")),
                          r"config identity.splits is not a list"),
    "identity not an object": (_config(lambda c: c.update(identity=[1])), r"attribute config is not a configuration"),
}

PATHS_DAMAGE = {
    "pairs beyond the names": (_replace("pairs", np.array([[0, 1], [1, 5]])),
                               r"dataset pairs holds indices outside the 3 names"),
    "negative pairs": (_replace("pairs", np.array([[0, 1], [-1, 2]])), r"dataset pairs holds indices outside"),
    "pairs of floats": (_replace("pairs", np.array([[0.0, 1.0], [1.0, 2.0]])),
                        r"dataset pairs holds float64, expected int64"),
    "pairs of three": (_replace("pairs", np.array([[0, 1, 2]])),
                       r"dataset pairs has shape \(1, 3\), expected \(any, 2\)"),
    "names not a list": (_set_attr("names", json.dumps("A")), r"attribute names is not a JSON list"),
    "names deleted": (_del_attr("names", on="/"), r"attribute names is missing"),
    "alpha deleted": (_delete("alpha"), r"dataset alpha is missing"),
    "done of another shape": (_replace("done", np.zeros((2, 4), bool)),
                              r"dataset done has shape \(2, 4\), expected \(2, 3\)"),
    "loss of another shape": (_replace("metrics/test/loss", np.zeros((1, 3))),
                              r"dataset metrics/test/loss has shape \(1, 3\)"),
    "a split deleted": (_delete("metrics/test"), r"split test is missing"),
}


def _one_line(exc: BaseException, path, pattern: str) -> None:
    message = str(exc)
    assert "\n" not in message and message.startswith(f"{path} is damaged: "), message
    assert re.search(pattern, message), message
    assert message.endswith("compute it again with --overwrite"), message  # a finished file: no journal


@pytest.mark.parametrize("case", SURFACE_DAMAGE, ids=list(SURFACE_DAMAGE))
def test_damaged_surface_file_is_one_line_naming_the_field(real, tmp_path, capsys, case):
    edit, pattern = SURFACE_DAMAGE[case]
    path = _damaged(real, tmp_path, "plane.h5", edit)
    for read in (read_surface, read_results):
        with pytest.raises(UserError) as info:
            read(path)
        _one_line(info.value, path, pattern)
    capsys.readouterr()
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and re.search(pattern, err), err


@pytest.mark.parametrize("case", PATHS_DAMAGE, ids=list(PATHS_DAMAGE))
def test_damaged_paths_file_is_one_line_naming_the_field(real, tmp_path, capsys, case):
    edit, pattern = PATHS_DAMAGE[case]
    path = _damaged(real, tmp_path, "paths.h5", edit)
    for read in (read_paths, read_results):
        with pytest.raises(UserError) as info:
            read(path)
        _one_line(info.value, path, pattern)
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and re.search(pattern, err), err


def test_report_on_a_damaged_plane_is_one_line(real, tmp_path, capsys):
    root = tmp_path / "demo"
    (root / "planes" / "sse").mkdir(parents=True)
    (root / "ensembles.json").write_text(json.dumps({"runs": [], "roles": {}}))
    shutil.copyfile(_damaged(real, tmp_path, "plane.h5", _replace("done", np.zeros((2, 2), bool))),
                    root / "planes" / "sse" / "plane.h5")
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "planes/sse/plane.h5 is damaged: dataset done has shape (2, 2)" in err, err
    assert not (root / "report.html").exists()


def test_a_finished_plane_with_a_split_deleted_is_not_finished(real, three_ckpts, tmp_path):
    path = _damaged(real, tmp_path, "plane.h5", _delete("metrics/train"))
    with h5py.File(path) as f:
        assert f["done"][...].all()  # its done mask still says finished
    before = path.read_bytes()
    with pytest.raises(UserError, match=r"split train is missing .*--overwrite"):
        plane(three_ckpts, out=path, config=PLANE)
    assert path.read_bytes() == before  # nothing written over it
    s = plane(three_ckpts, out=path, config=PLANE, overwrite=True)
    assert s.complete and s.splits == ["train", "test"]


RERUN_DAMAGE = {
    "done of another shape": (_replace("done", np.zeros((4, 4), bool)), r"dataset done has shape \(4, 4\)"),
    "loss of another shape": (_replace("metrics/test/loss", np.zeros((2, 3))),
                              r"dataset metrics/test/loss has shape \(2, 3\)"),
    "a split deleted": (_delete("metrics/train"), r"split train is missing"),
}


@pytest.mark.parametrize("case", RERUN_DAMAGE, ids=list(RERUN_DAMAGE))
def test_a_rerun_on_a_damaged_unfinished_plane_names_the_field_before_computing(real, three_ckpts, tmp_path,
                                                                                monkeypatch, case):
    from landscape.engine import evaluator as engine

    edit, pattern = RERUN_DAMAGE[case]
    path = _damaged(real, tmp_path, "part.h5", edit)
    before = path.read_bytes()

    def never(self, *args, **kwargs):
        raise AssertionError("a point was computed for a damaged file")

    monkeypatch.setattr(engine.GridEvaluator, "evaluate", never)
    with pytest.raises(UserError) as info:
        plane(three_ckpts, out=path, config=PLANE)
    _one_line(info.value, path, pattern)
    assert path.read_bytes() == before


def test_a_damaged_unfinished_file_with_a_journal_is_rebuilt_by_recover(real, tmp_path):
    from landscape.grid.journal import recover

    for suffix in ("", ".init", ".journal"):
        shutil.copyfile(f"{real / 'part.h5'}{suffix}", tmp_path / f"part.h5{suffix}")
    path = tmp_path / "part.h5"
    good = read_surface(path)
    with h5py.File(path, "r+") as f:
        _replace("metrics/test/loss", np.zeros((2, 3)))(f)
    advice = rf"loss has shape \(2, 3\), expected \(3, 3\); `landscape recover {re.escape(str(path))}`"
    with pytest.raises(UserError, match=advice):
        read_surface(path)
    assert recover(path)[0] == 4  # what the advice says works: the four finished points come back
    rebuilt = read_surface(path)
    for split in ("train", "test"):
        np.testing.assert_array_equal(rebuilt.loss(split), good.loss(split))
    np.testing.assert_array_equal(rebuilt.done, good.done)


def test_undamaged_real_files_read_exactly_as_stored(real):
    s = read_surface(real / "plane.h5")
    with h5py.File(real / "plane.h5") as f:
        np.testing.assert_array_equal(s.x, f["x"][...])
        np.testing.assert_array_equal(s.done, f["done"][...])
        for split in ("train", "test"):
            for name in ("loss", "acc"):
                np.testing.assert_array_equal(s.metrics[split][name], f[f"metrics/{split}/{name}"][...])
        assert s.points["C"].residual == f["points/C"].attrs["residual"] and s.complete
    ps = read_paths(real / "paths.h5")
    assert ps.pairs == [(0, 1), (1, 2)] and ps.names == ["A", "B", "C"] and ps.complete
    assert isinstance(read_results(real / "paths.h5"), type(ps))


# ---------------------------------------------------------------------------- property

EXPECTED = {  # the layout of the plane file: dtype and shape of each dataset
    "x": (np.float64, (3,)), "y": (np.float64, (3,)), "done": (np.bool_, (3, 3)),
    "metrics/test/loss": (np.float64, (3, 3)), "metrics/train/acc": (np.float64, (3, 3)),
    "points/A": (np.float64, (2,)),
}


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(EXPECTED)),
       dtype=st.sampled_from(["its own"] * 3 + [np.float64, np.float32, np.int64, np.int8, np.bool_]),
       shape=st.sampled_from(["its own"] * 4 + [(3,), (2,), (4,), (3, 3), (2, 3), (3, 4), (1, 3, 3)]),
       seed=st.integers(0, 2**32 - 1))
def test_a_replaced_array_is_refused_naming_it_or_read_exactly(real, tmp_path, name, dtype, shape, seed):
    """Any array put in place of one of the file's: refused naming it, unless it has the dtype and
    shape of the one it replaces (and axes stay increasing), when it is read back exactly."""
    dtype = EXPECTED[name][0] if dtype == "its own" else dtype
    shape = EXPECTED[name][1] if shape == "its own" else shape
    rng = np.random.default_rng(seed)
    value = rng.normal(size=shape).astype(dtype) if dtype != np.bool_ else rng.random(shape) < 0.5
    if name in ("x", "y") and rng.random() < 0.7:
        value = np.sort(value, axis=-1)  # often increasing, so that some replacements fit
    path = _damaged(real, tmp_path, "plane.h5", _replace(name, value))
    want_dtype, want_shape = EXPECTED[name]
    fits = value.dtype == want_dtype and value.shape == want_shape
    if name in ("x", "y"):
        fits = fits and bool(np.isfinite(value).all() and (np.diff(value) > 0).all())
    try:
        s = read_surface(path)
    except UserError as exc:
        assert not fits, exc
        named = rf"dataset {re.escape(name)} " + ("|datasets x and y have" if name in "xy" else "")
        assert "\n" not in str(exc) and str(exc).startswith(f"{path} is damaged: ") and re.search(named, str(exc)), exc
        return
    assert fits
    read_back = {"x": s.x, "y": s.y, "done": s.done, "metrics/test/loss": s.loss("test"),
                 "metrics/train/acc": s.acc("train"), "points/A": np.array([s.points["A"].x, s.points["A"].y])}
    assert read_back[name].dtype == want_dtype
    np.testing.assert_array_equal(read_back[name], value)
    good = read_surface(real / "plane.h5")
    for other in ("loss", "acc"):  # everything else as in the undamaged file
        if f"metrics/test/{other}" != name:
            np.testing.assert_array_equal(s.metrics["test"][other], good.metrics["test"][other])
