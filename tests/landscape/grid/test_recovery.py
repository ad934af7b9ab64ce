"""Nothing computed is lost: a damaged results file is detected and rebuilt from its journal,
and a full disk gives one clear line with the earlier points intact."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from cli.main import main
from landscape import PlaneConfig, UserError, plane, read_surface
from landscape.grid import store as store_mod
from landscape.grid.journal import append_journal, read_journal
from landscape.grid.store import init_path, journal_path, recover

CFG = dict(grid=4, train_subset=200, test_subset=100, engine="loop", group_size=3)
ARGS = ["--grid", "4", "--train-subset", "200", "--test-subset", "100", "--engine", "loop",
        "--group-size", "3", "--no-plots", "--quiet"]


@pytest.fixture(scope="module")
def full(three_ckpts, tmp_path_factory):
    return plane(three_ckpts, out=tmp_path_factory.mktemp("full") / "plane.h5", config=PlaneConfig(**CFG))


def _assert_equal(a, b):
    for split in ("train", "test"):
        np.testing.assert_array_equal(a.loss(split), b.loss(split))
        np.testing.assert_array_equal(a.acc(split), b.acc(split))


def _partial(three_ckpts, out, monkeypatch, groups=2):
    """A plane run interrupted after ``groups`` groups of three points were written."""
    original, calls = store_mod.GridStore.write, {"n": 0}

    def write_then_stop(self, index, metrics):
        original(self, index, metrics)
        calls["n"] += 1
        if calls["n"] == groups:
            raise KeyboardInterrupt

    monkeypatch.setattr(store_mod.GridStore, "write", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        plane(three_ckpts, out=out, config=PlaneConfig(**CFG))
    monkeypatch.setattr(store_mod.GridStore, "write", original)


def test_finished_file_leaves_no_journal(full):
    assert full.complete
    assert not journal_path(full.path).exists() and not init_path(full.path).exists()


def test_damaged_file_is_detected_and_rebuilt_from_the_journal(three_ckpts, full, tmp_path,
                                                               monkeypatch, capsys):
    out = tmp_path / "plane.h5"
    _partial(three_ckpts, out, monkeypatch)
    assert journal_path(out).is_file() and init_path(out).is_file()
    with open(out, "r+b") as fh:  # a torn write: the superblock and the first metadata gone
        fh.write(b"\0" * 4096)
    with pytest.raises(UserError, match=r"is damaged .*landscape recover .*\(2 finished groups\)"):
        plane(three_ckpts, out=out, config=PlaneConfig(**CFG))

    assert main(["recover", str(tmp_path)]) == 0
    said = capsys.readouterr().out
    assert "with 6 finished points" in said and "damaged file is kept as" in said
    assert len(list(tmp_path.glob("plane.h5.damaged-*"))) == 1
    rebuilt = read_surface(out)
    assert rebuilt.done.sum() == 6
    for split in ("train", "test"):
        np.testing.assert_array_equal(rebuilt.loss(split)[rebuilt.done], full.loss(split)[rebuilt.done])
    resumed = plane(three_ckpts, out=out, config=PlaneConfig(**CFG))
    assert resumed.complete
    _assert_equal(resumed, full)
    assert not journal_path(out).exists()


def test_truncated_file_and_a_torn_journal_line(three_ckpts, full, tmp_path, monkeypatch):
    out = tmp_path / "plane.h5"
    _partial(three_ckpts, out, monkeypatch, groups=3)
    os.truncate(out, os.path.getsize(out) // 2)
    with open(journal_path(out), "ab") as fh:
        fh.write(b'{"index":[[3,3]],"metrics":{"train":{"loss":[0.1')  # killed mid-append
    done, moved = recover(out)
    assert done == 9 and moved is not None and moved.is_file()
    resumed = plane(three_ckpts, out=out, config=PlaneConfig(**CFG))
    _assert_equal(resumed, full)


def test_recover_refuses_what_it_cannot_or_need_not_rebuild(full, tmp_path, capsys):
    with pytest.raises(UserError, match="is finished: nothing to recover"):
        recover(full.path)
    assert main(["recover", str(tmp_path / "nope.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    old = tmp_path / "old.h5"
    old.write_bytes(b"not hdf5 at all")
    with pytest.raises(UserError, match="no recovery copy"):
        recover(old)


@pytest.mark.parametrize("where", ["hdf5", "journal"])
def test_full_disk_is_one_line_and_earlier_points_survive(three_ckpts, full, tmp_path, monkeypatch,
                                                          capsys, where):
    target = "write_arrays" if where == "hdf5" else "append_journal"
    original, calls = getattr(store_mod, target), {"n": 0}

    def fills_up(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(*args)

    monkeypatch.setattr(store_mod, target, fills_up)
    out = tmp_path / "p"
    code = main(["plane", *map(str, three_ckpts), *ARGS, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "No space left on device" in err[0]
    partial = read_surface(out / "plane.h5")  # readable, the two earlier groups intact
    assert partial.done.sum() == 6
    for split in ("train", "test"):
        np.testing.assert_array_equal(partial.loss(split)[partial.done], full.loss(split)[partial.done])
    monkeypatch.setattr(store_mod, target, original)
    assert main(["plane", *map(str, three_ckpts), *ARGS, "--out", str(out)]) == 0
    _assert_equal(read_surface(out / "plane.h5"), full)


def test_a_torn_journal_line_does_not_swallow_the_next_one(tmp_path):
    path = tmp_path / "x.h5"
    init_path(path).write_bytes(b"")  # journaling is on while .init exists
    records = [{"index": [[0, k]], "metrics": {"test": {"loss": [float(k)], "acc": [1.0]}}} for k in range(3)]
    append_journal(path, records[0])
    with open(journal_path(path), "ab") as fh:
        fh.write(b'{"index":[[9,9]],"metrics":{"te')  # killed mid-append, no newline
    append_journal(path, records[1])
    append_journal(path, records[2])
    assert read_journal(journal_path(path)) == records


def test_recover_never_replaces_a_readable_unfinished_file(three_ckpts, tmp_path, monkeypatch):
    out = tmp_path / "plane.h5"
    _partial(three_ckpts, out, monkeypatch)
    journal_path(out).unlink()  # even with its journal gone, the file's 6 points are safe
    with pytest.raises(UserError, match="unfinished but readable: nothing to recover"):
        recover(out)
    assert read_surface(out).done.sum() == 6
