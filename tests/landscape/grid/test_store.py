"""The HDF5 surface file: round trip, resume after interruption, refusal of a different config."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from landscape import PlaneConfig, UserError, plane, read_surface
from landscape.results import PointInfo
from landscape.grid.store import SurfaceStore

CFG = dict(grid=4, train_subset=200, test_subset=100, engine="loop", group_size=3)


def test_round_trip(tmp_path):
    x, y = np.linspace(0, 1, 3), np.linspace(-1, 2, 3)
    config = {"identity": {"mode": "three_point", "grid": 3}, "runtime": {"device": "cpu"}}
    points = {"A": PointInfo(0.0, 0.0, 0.0), "D": PointInfo(0.5, 0.25, 0.125)}
    with SurfaceStore.open(tmp_path / "s.h5", x=x, y=y, splits=("test",), config=config,
                           points=points) as store:
        assert len(store.missing()) == 9
        store.write([(0, 1), (2, 2)], {"test": {"loss": np.array([1.5, 2.5]),
                                                "acc": np.array([50.0, 75.0])}})
        assert store.missing()[:2] == [(0, 0), (0, 2)] and len(store.missing()) == 7
    s = read_surface(tmp_path / "s.h5")
    np.testing.assert_array_equal(s.x, x)
    np.testing.assert_array_equal(s.y, y)
    assert s.loss("test")[0, 1] == 1.5 and s.acc("test")[2, 2] == 75.0
    assert np.isnan(s.loss("test")[1, 1])
    assert s.done.sum() == 2 and s.done[0, 1] and s.done[2, 2]
    assert s.points == points and s.config == config
    with h5py.File(tmp_path / "s.h5") as f:  # the contract, read with plain h5py
        assert f["metrics/test/loss"].shape == (3, 3) and f["done"].dtype == bool
        assert f["points/D"].attrs["residual"] == 0.125
        assert f.attrs["format_version"] == 1 and f.attrs["mode"] == "three_point"


def test_file_records_the_full_configuration(three_ckpts, tmp_path):
    s = plane(three_ckpts, out=tmp_path / "p.h5", config=PlaneConfig(**CFG))
    ident = s.config["identity"]
    assert ident["bn"] == "recompute" and ident["dataset"] == "mnist1d"
    assert ident["grid"] == 4 and ident["margin"] == 0.2 and ident["bn_batch_size"] == 128
    assert ident["train_subset"] == 200 and ident["splits"] == ["train", "test"]
    assert s.splits == ["train", "test"]  # in the order asked for, not HDF5's alphabetical one
    assert [c["name"] for c in ident["checkpoints"]] == ["A", "B", "C"]
    assert all(len(c["sha256"]) == 64 for c in ident["checkpoints"])
    runtime = s.config["runtime"]
    assert runtime["device"] == "cpu" and "torch" in runtime["versions"]
    assert runtime["engine"]["path"] == "loop"


def test_interrupted_run_resumes_to_identical_arrays(three_ckpts, tmp_path, monkeypatch):
    full = plane(three_ckpts, out=tmp_path / "full.h5", config=PlaneConfig(**CFG))
    from landscape.engine import evaluator as engine

    calls = {"n": 0}
    original = engine.GridEvaluator.evaluate

    def dies_after_two_groups(self, *args, **kwargs):
        if calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(engine.GridEvaluator, "evaluate", dies_after_two_groups)
    with pytest.raises(KeyboardInterrupt):
        plane(three_ckpts, out=tmp_path / "part.h5", config=PlaneConfig(**CFG))
    partial = read_surface(tmp_path / "part.h5")
    assert partial.done.sum() == 6  # two groups of three were saved
    monkeypatch.setattr(engine.GridEvaluator, "evaluate", original)
    evaluated = []
    monkeypatch.setattr(engine.GridEvaluator, "evaluate",
                        lambda self, w, *a, **k: evaluated.append(len(w)) or original(self, w, *a, **k))
    resumed = plane(three_ckpts, out=tmp_path / "part.h5", config=PlaneConfig(**CFG))
    assert sum(evaluated) == 16 - 6  # only the missing points were computed
    for split in ("train", "test"):
        np.testing.assert_array_equal(resumed.loss(split), full.loss(split))
        np.testing.assert_array_equal(resumed.acc(split), full.acc(split))


def _kill_after(proc: subprocess.Popen, points: int, total: int) -> None:
    """SIGKILL ``proc`` once its progress bar reports at least ``points`` of ``total``."""
    seen, deadline = b"", time.time() + 120
    while time.time() < deadline:
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        done = [int(n) for n in re.findall(rb"(\d+)/%d" % total, seen)]
        if done and max(done) >= points:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill: {seen[-300:]!r}"


@pytest.mark.slow  # three CLI subprocesses, one killed: about 10 s
def test_killed_cli_run_resumes_to_identical_arrays(three_ckpts, tmp_path):
    args = [sys.executable, "-m", "cli", "plane", *map(str, three_ckpts), "--grid", "7",
            "--train-subset", "300", "--test-subset", "200", "--engine", "loop",
            "--group-size", "1", "--no-plots"]
    subprocess.run([*args, "--out", str(tmp_path / "full"), "--quiet"], check=True,
                   capture_output=True)
    proc = subprocess.Popen([*args, "--out", str(tmp_path / "killed")], stderr=subprocess.PIPE)
    _kill_after(proc, 5, 49)
    part = read_surface(tmp_path / "killed" / "plane.h5")
    assert 0 < part.done.sum() < 49
    subprocess.run([*args, "--out", str(tmp_path / "killed"), "--quiet"], check=True,
                   capture_output=True)
    full, resumed = (read_surface(tmp_path / d / "plane.h5") for d in ("full", "killed"))
    assert resumed.complete
    for split in ("train", "test"):
        np.testing.assert_array_equal(resumed.loss(split), full.loss(split))
        np.testing.assert_array_equal(resumed.acc(split), full.acc(split))


def test_different_configuration_is_refused_unless_overwrite(three_ckpts, tmp_path):
    out = tmp_path / "p.h5"
    plane(three_ckpts, out=out, config=PlaneConfig(**CFG))
    other = PlaneConfig(**{**CFG, "margin": 0.5})
    with pytest.raises(UserError, match="margin.*--overwrite"):
        plane(three_ckpts, out=out, config=other)
    assert read_surface(out).config["identity"]["margin"] == 0.2  # untouched
    s = plane(three_ckpts, out=out, config=other, overwrite=True)
    assert s.config["identity"]["margin"] == 0.5 and s.complete
    # engine knobs are not part of the identity: a rerun with another batch size resumes
    plane(three_ckpts, out=out, config=PlaneConfig(**{**CFG, "margin": 0.5, "batch_size": 64}))
    # nor are settings that cannot change the numbers: the BN batch size under `keep`
    keep = dict(CFG, bn="keep", margin=0.5)
    plane(three_ckpts, out=tmp_path / "k.h5", config=PlaneConfig(**keep))
    plane(three_ckpts, out=tmp_path / "k.h5", config=PlaneConfig(**keep, bn_batch_size=64))


def test_overwrite_never_merges_parts_of_an_earlier_run(three_ckpts, tmp_path):
    from landscape.grid.parts import write_part

    out = tmp_path / "p.h5"
    parts = tmp_path / "p.h5.parts"
    parts.mkdir()
    write_part(parts / "part-0.npz", [(0, 0), (9, 9)],  # a stale part, even off this grid
                {"train": {"loss": np.ones(2), "acc": np.ones(2)},
                 "test": {"loss": np.ones(2), "acc": np.ones(2)}})
    s = plane(three_ckpts, out=out, config=PlaneConfig(**CFG), overwrite=True)
    assert s.complete and s.loss("test")[0, 0] != 1.0 and not parts.exists()


def test_read_surface_rejects_other_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_surface(tmp_path / "nope.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="readable"):
        read_surface(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(UserError, match="not a surface"):
        read_surface(tmp_path / "other.h5")


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(three_ckpts, tmp_path):
    import json as _json
    import os as _os

    out = tmp_path / "p.h5"
    lock = tmp_path / "p.h5.lock"
    lock.write_text(_json.dumps({"pid": _os.getpid(), "host": __import__("socket").gethostname()}))
    with pytest.raises(UserError, match=f"pid {_os.getpid()}.*is writing"):
        plane(three_ckpts, out=out, config=PlaneConfig(**CFG))
    assert not out.exists()  # nothing was written, nothing corrupted
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    lock.write_text(_json.dumps({"pid": int(dead.stdout), "host":
                                 __import__("socket").gethostname()}))
    s = plane(three_ckpts, out=out, config=PlaneConfig(**CFG))  # the holder is gone: take over
    assert s.complete and not lock.exists()  # released when done
