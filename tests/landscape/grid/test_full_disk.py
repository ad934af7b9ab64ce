"""A full disk while `plane` or `interp` writes (issue #18, family 3): one line and exit code 2, no
crash, no temporary file left behind, the results file readable or absent, and a rerun that
finishes with the arrays of an uninterrupted run once there is space again.

Two ways to fill the disk: a real tmpfs a few KB large (root only: skipped elsewhere), run in a
subprocess because the crash this guards against was a segfault of HDF5 at exit; and a simulated
ENOSPC at each write site (every fsync of a regular file), in-process."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from small_runs import CLI, COMMANDS, argv, assert_same, reference  # noqa: F401 - reference: a fixture

from cli.main import main


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _check_failure(code: int, err: str, folder: Path, command: str) -> None:
    """One line, exit code 2, only the results file and its journal left (no temporary, no
    lock), and the results file, if there is one, readable."""
    _, name, read = COMMANDS[command]
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]  # near chance
    assert code == 2, err[-2000:]
    said = f"landscape {command}: error: No space left on device: "
    assert len(lines) == 1 and lines[0].startswith(said), err[-2000:]
    assert "Traceback" not in err
    left = _files(folder)
    assert left <= {name, f"{name}.init", f"{name}.journal", "report.md", "report.csv", "report.json",
                    "paths.png", "plane.png"}, left
    if name in left:
        part = read(folder / name)  # whole: a results file that exists always reads
        assert part.done.sum() < part.done.size or not {f"{name}.init", f"{name}.journal"} & left


# ---------------------------------------------------------------------------- a real tmpfs


@contextlib.contextmanager
def _tmpfs(folder: Path, kb: int):
    """A tmpfs of ``kb`` KB mounted at ``folder``; unmounted whatever happens."""
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


# sizes that run out while the new file, its recovery copy, the engine record and the first
# group are written (tmpfs counts whole 4 KiB pages: the file takes 16 KiB, the lock 4);
# with plots, while the plots and reports are written
SLOW = pytest.mark.slow  # a CLI subprocess each: about 5 s
CASES = [pytest.param(command, kb, plots, id=f"{command}-{kb}k{'-plots' * plots}",
                      marks=() if fast else SLOW)
         for command, kb, plots, fast in [("plane", 8, False, True), ("plane", 24, False, False),
                                          ("plane", 40, False, False), ("plane", 52, False, True),
                                          ("plane", 100, True, False), ("interp", 8, False, False),
                                          ("interp", 24, False, True), ("interp", 40, False, False),
                                          ("interp", 60, True, False)]]


@pytest.mark.parametrize(("command", "kb", "plots"), CASES)
def test_a_full_tmpfs_is_one_line_and_the_rerun_finishes_identically(three_ckpts, reference, tmp_path,
                                                                      command, kb, plots):
    _, name, read = COMMANDS[command]
    with _tmpfs(tmp_path / "fs", kb) as fs:
        out = fs / "out"
        run = subprocess.run([*CLI, *argv(command, three_ckpts, out, plots=plots)], capture_output=True,
                             text=True, timeout=300)
        assert run.returncode not in (-11, 139), run.stderr[-3000:]  # the old segfault at exit
        _check_failure(run.returncode, run.stderr, out, command)
        subprocess.run(["mount", "-o", "remount,size=64m", str(fs)], check=True)  # space freed
        assert main(argv(command, three_ckpts, out, plots=plots)) == 0
        assert_same(read(out / name), reference[command])
        assert not {f"{name}.init", f"{name}.journal", f"{name}.lock"} & _files(out)
        assert not [f for f in _files(out) if ".tmp" in f]


# ---------------------------------------------------------------------------- simulated ENOSPC


class FullAt:
    """``os.fsync`` that fails with ENOSPC at the ``n``-th flush of a regular file named ``name``
    (for a file written atomically, of its temporary file; any file: ``name`` None)."""

    def __init__(self, n: int, name: str | None = None) -> None:
        self.n, self.name, self.seen, self.hit = n, name, 0, False
        self.real = os.fsync

    def __call__(self, fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode) and self.name in (None, _target(fd)):
            self.seen += 1
            if self.seen == self.n:
                self.hit = True
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.real(fd)


def _target(fd: int) -> str:
    """The name of the file open as ``fd``; for a temporary ``.<name>.<pid>.<thread>.tmp<suffix>``
    of ``landscape.atomic``, the name of the file it will replace."""
    base = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    temporary = re.fullmatch(r"\.(.+)\.\d+\.\d+\.tmp.*", base)
    return temporary.group(1) if temporary else base


def _full_disk_run(monkeypatch, capsys, argv: list[str], full: FullAt) -> tuple[int, str]:
    capsys.readouterr()
    monkeypatch.setattr(os, "fsync", full)
    try:
        code = main(argv)
    finally:
        monkeypatch.setattr(os, "fsync", full.real)
    return code, capsys.readouterr().err


# (command, file, n): the n-th flush of that file. plane (six groups): the new file (1), its
# recovery copy, the engine record (2), the first group's journal line and file (3), the last
# group's journal line (6) and file (8); interp: the same sites and its report files
SITES = [("plane", "plane.h5", 1), ("plane", "plane.h5.init", 1), ("plane", "plane.h5", 2),
         ("plane", "plane.h5.journal", 1), ("plane", "plane.h5", 3), ("plane", "plane.h5.journal", 6),
         ("plane", "plane.h5", 8), ("interp", "paths.h5", 1), ("interp", "paths.h5.init", 1),
         ("interp", "paths.h5.journal", 2), ("interp", "paths.h5", 4), ("interp", "report.md", 1),
         ("interp", "report.json", 1)]


@pytest.mark.parametrize(("command", "name", "n"), SITES, ids=[f"{c}-{f}-{n}" for c, f, n in SITES])
def test_enospc_at_each_write_site_is_one_line_and_the_rerun_finishes_identically(
        three_ckpts, reference, tmp_path, monkeypatch, capsys, command, name, n):
    _, results, read = COMMANDS[command]
    full = FullAt(n, name)
    code, err = _full_disk_run(monkeypatch, capsys, argv(command, three_ckpts, tmp_path), full)
    assert full.hit, f"the run flushed {name} only {full.seen} times"
    _check_failure(code, err, tmp_path, command)
    assert main(argv(command, three_ckpts, tmp_path)) == 0
    assert_same(read(tmp_path / results), reference[command])
    assert _files(tmp_path) <= {results, "report.md", "report.csv", "report.json"}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_enospc_at_every_flush_in_turn(three_ckpts, reference, tmp_path, monkeypatch, capsys, command):
    _, results, read = COMMANDS[command]
    n = 0
    while True:
        n += 1
        out = tmp_path / str(n)
        full = FullAt(n)
        code, err = _full_disk_run(monkeypatch, capsys, argv(command, three_ckpts, out), full)
        if not full.hit:  # past the last flush: this run finished
            assert code == 0 and n > 5
            break
        _check_failure(code, err, out, command)
        assert main(argv(command, three_ckpts, out)) == 0
        assert_same(read(out / results), reference[command])
