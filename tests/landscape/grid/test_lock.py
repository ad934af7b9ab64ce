"""The writer lock admits one holder at a time, however processes race for it; readers and a
running writer do not get in each other's way.

The race: worker processes released together by a barrier (and then spinning to one common
moment, so that they really start together) each try to take the same lock (free, or left behind
by a dead process), hold it a moment and release it; each pauses at random between lines of the
lock's code, as a busy machine would. Every holder appends "in" and "out" lines to one shared
log (O_APPEND, one write each): the log is the order in which holds began and ended, so two
holders at once show as two "in" lines without an "out" between.
"""

from __future__ import annotations

import errno
import inspect
import json
import multiprocessing
import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from landscape import UserError, read_surface
from landscape.grid import lock as lock_module
from landscape.grid.lock import WriterLock

WORKERS = 6
TRIALS = 300  # per kind of trial (a free lock, a stale lock): 600 races of 6 processes
CHANCE = 0.2  # of a pause after a line of the lock's code. With it the lock before flock (hard
# links) had two holders in 2 of 3 stale-lock races here, the one before it in 1 of 3 free ones.


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def _stale(path: Path, pid: int) -> None:
    Path(f"{path}.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def _log(log: Path, line: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _preempt_at_random(source: str, rng: random.Random) -> None:
    """Pause this process now and then between two lines of the lock's code, as a busy machine
    would preempt it: the interleavings where one process acts on what it read just before
    another changed it come up often, instead of once in hundreds of races."""
    def line(frame, event, arg):
        if event == "line" and rng.random() < CHANCE:
            time.sleep(rng.uniform(0, 0.0003))
        return line

    sys.settrace(lambda frame, event, arg: line if frame.f_code.co_filename == source else None)


def _contend(root: Path, log: Path, barrier, start, trials: int) -> None:
    """One worker: in every trial, take the trial's lock (or be refused), hold it briefly."""
    me = os.getpid()
    _preempt_at_random(inspect.getfile(WriterLock), random.Random(me))
    for t in range(trials):
        barrier.wait(timeout=60)
        while time.monotonic() < start.value:  # all start at one moment, not as each wakes
            pass
        lock = WriterLock(root / f"t{t}.h5")
        try:
            lock.acquire()
        except UserError as exc:
            _log(log, f"refused {t} {me} {exc}")
            continue
        _log(log, f"in {t} {me}")
        time.sleep(0.002)  # long enough for every competitor to try meanwhile
        try:
            names_me = json.loads(lock.path.read_text())["pid"] == me
        except (OSError, ValueError):  # removed or rewritten by another
            names_me = False
        _log(log, f"out {t} {me} {names_me}")
        lock.release()


def _race(root: Path, trials: int) -> list[list[str]]:
    """Run the workers over ``trials`` trials; the log's lines per trial, in order."""
    ctx = multiprocessing.get_context("fork")
    start = ctx.Value("d", 0.0, lock=False)  # the moment a trial starts, set as the barrier opens
    barrier, log = ctx.Barrier(WORKERS, action=lambda: setattr(start, "value", time.monotonic() + 0.002)), root / "log"
    workers = [ctx.Process(target=_contend, args=(root, log, barrier, start, trials)) for _ in range(WORKERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
    by_trial: list[list[str]] = [[] for _ in range(trials)]
    for line in log.read_text().splitlines():
        by_trial[int(line.split()[1])].append(line)
    return by_trial


def _check_one_holder_at_a_time(by_trial: list[list[str]], stale_pid: int | None) -> None:
    for t, lines in enumerate(by_trial):
        holding, holders, refused_by = None, set(), set()
        for line in lines:
            kind, _, pid, *rest = line.split(maxsplit=3)
            if kind == "in":
                assert holding is None, f"trial {t}: {pid} took the lock {holding} held: {lines}"
                holding = pid
                holders.add(pid)
            elif kind == "out":
                assert holding == pid and rest == ["True"], f"trial {t}: {lines}"
                holding = None
            else:  # refused, naming a worker that held it in this trial: never the dead one
                named = re.search(r"\(pid (\d+) on (\S+)\) is writing", rest[0])
                assert named and named[2] == socket.gethostname(), line
                refused_by.add(named[1])
        assert holding is None and holders, f"trial {t}: {lines}"
        assert refused_by <= holders and str(stale_pid) not in refused_by, f"trial {t}: {lines}"
        assert len(lines) == WORKERS + len([x for x in lines if x.startswith("out")]), lines


def test_processes_released_together_never_hold_a_free_lock_together(tmp_path):
    by_trial = _race(tmp_path, TRIALS)
    _check_one_holder_at_a_time(by_trial, None)
    assert not list(tmp_path.glob("*.lock"))  # every holder removed it


def test_processes_released_together_never_both_take_over_a_stale_lock(tmp_path):
    dead = _dead_pid()
    for t in range(TRIALS):
        _stale(tmp_path / f"t{t}.h5", dead)
    by_trial = _race(tmp_path, TRIALS)
    _check_one_holder_at_a_time(by_trial, dead)
    assert not list(tmp_path.glob("*.lock"))


def test_refusal_names_the_holder_and_release_frees_it(tmp_path):
    target = tmp_path / "p.h5"
    with WriterLock(target) as first:
        assert first.holder() == {"pid": os.getpid(), "host": socket.gethostname()}
        names = rf"pid {os.getpid()} on {re.escape(socket.gethostname())}\) is writing {re.escape(str(target))}; "
        with pytest.raises(UserError, match=names + rf".*remove {re.escape(str(first.path))}"):
            WriterLock(target).acquire()  # a second open of the file: refused even in one process
    assert not first.path.exists() and WriterLock(target).holder() is None
    with WriterLock(target):  # free again
        pass
    folder = tmp_path / "run"
    folder.mkdir()
    with WriterLock(folder) as lock:
        assert lock.path == folder / ".lock" and lock.path.exists()


def test_a_holding_process_is_refused_by_name_and_its_lock_taken_over_once_killed(tmp_path):
    target = tmp_path / "p.h5"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from landscape.grid.lock import WriterLock; "
         "WriterLock(sys.argv[1]).acquire(); print('held', flush=True); sys.stdin.read()", str(target)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[3])
    try:
        assert holder.stdout.readline() == "held\n"
        assert WriterLock(target).holder() == {"pid": holder.pid, "host": socket.gethostname()}
        with pytest.raises(UserError, match=f"pid {holder.pid} on"):
            WriterLock(target).acquire()
    finally:
        holder.kill()
        holder.wait()
    assert json.loads(Path(f"{target}.lock").read_text())["pid"] == holder.pid  # left behind
    assert WriterLock(target).holder() is None
    with WriterLock(target) as lock:  # taken over
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_lock_files_that_name_no_live_process_are_taken_over(tmp_path):
    target = tmp_path / "p.h5"
    lock = Path(f"{target}.lock")
    for content in ("", "{\"pid\": 12", "[1, 2]", b"\xff", json.dumps({"pid": "1", "host": 3}),
                    json.dumps({"pid": 2**70, "host": socket.gethostname()}),
                    json.dumps({"pid": _dead_pid(), "host": socket.gethostname()})):
        lock.write_bytes(content if isinstance(content, bytes) else content.encode())
        assert WriterLock(target).holder() is None
        with WriterLock(target) as held:
            assert json.loads(lock.read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
        assert not held.path.exists()
    # a name written by a process that takes no flock (an earlier version) is respected
    for owner in ({"pid": os.getpid(), "host": socket.gethostname()}, {"pid": 1, "host": "elsewhere"}):
        lock.write_text(json.dumps(owner))
        assert WriterLock(target).holder() == owner
        with pytest.raises(UserError, match=f"pid {owner['pid']} on {owner['host']}"):
            WriterLock(target).acquire()
        assert json.loads(lock.read_text()) == owner  # left as it was


def test_without_file_locks_the_file_alone_is_the_lock(tmp_path, monkeypatch):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module.fcntl, "flock", no_locks)
    target = tmp_path / "p.h5"
    with WriterLock(target) as first:
        with pytest.raises(UserError, match=f"pid {os.getpid()}"):
            WriterLock(target).acquire()
    assert not first.path.exists()
    _stale(target, _dead_pid())
    with WriterLock(target) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not lock.path.exists()


# ---------------------------------------------------------------------------- readers and a writer

WRITER = """
import sys
import numpy as np
from landscape.grid.store import SurfaceStore

with SurfaceStore.open(sys.argv[1], x=np.arange(3.0), y=np.arange(3.0), splits=("test",),
                       config={"identity": {"mode": "three_point", "grid": 3}, "runtime": {}}, points={}) as store:
    print("open", flush=True)
    for line in sys.stdin:  # one point per line: j i loss
        j, i, loss = line.split()
        store.write([(int(j), int(i))], {"test": {"loss": np.array([float(loss)]), "acc": np.array([50.0])}})
        print("written", flush=True)
"""


def _info(capsys, path) -> dict:
    from cli.main import main

    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_info_reads_the_progress_of_a_file_being_written(tmp_path, capsys):
    path = tmp_path / "p.h5"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[3])
    try:
        assert writer.stdout.readline() == "open\n"
        expected = np.full((3, 3), np.nan)
        for n, (j, i, loss) in enumerate([(0, 0, 1.5), (2, 1, 2.25)], 1):
            writer.stdin.write(f"{j} {i} {loss}\n")
            writer.stdin.flush()
            assert writer.stdout.readline() == "written\n"
            expected[j, i] = loss
            doc = _info(capsys, path)
            assert doc["done"] == f"{n}/9" and doc["writing"] == {"pid": writer.pid, "host": socket.gethostname()}
            assert doc["ranges"]["test"]["loss"] == [1.5, float(np.nanmax(expected))]
            s = read_surface(path)  # the same picture through the library
            np.testing.assert_array_equal(s.loss("test"), expected)
            np.testing.assert_array_equal(s.done, ~np.isnan(expected))
    finally:
        writer.stdin.close()
        assert writer.wait(timeout=60) == 0
    doc = _info(capsys, path)  # finished writing (the file itself is unfinished): read from the file
    assert doc["done"] == "2/9" and "writing" not in doc
    np.testing.assert_array_equal(read_surface(path).loss("test"), expected)


def test_a_reader_holding_the_file_open_does_not_stop_a_rerun(tmp_path):
    from landscape.grid.store import SurfaceStore

    path = tmp_path / "p.h5"
    grid = dict(x=np.arange(3.0), y=np.arange(3.0), splits=("test",), points={},
                config={"identity": {"mode": "three_point", "grid": 3}, "runtime": {}})
    with SurfaceStore.open(path, **grid) as store:
        store.write([(0, 0)], {"test": {"loss": np.array([1.5]), "acc": np.array([50.0])}})
    reader = subprocess.Popen(  # plain h5py, with HDF5's own file locks, as a notebook would
        [sys.executable, "-c", "import sys, h5py; f = h5py.File(sys.argv[1], 'r'); print(f['done'][0, 0], "
         "flush=True); sys.stdin.read()", str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "True\n"
        with SurfaceStore.open(path, **grid) as store:  # the rerun resumes
            assert len(store.missing()) == 8
            store.write([(1, 1)], {"test": {"loss": np.array([2.5]), "acc": np.array([60.0])}})
        s = read_surface(path)  # and our reader reads while the other still holds it open
        assert s.done.sum() == 2 and s.loss("test")[1, 1] == 2.5 and s.loss("test")[0, 0] == 1.5
    finally:
        reader.stdin.close()
        reader.wait(timeout=60)
