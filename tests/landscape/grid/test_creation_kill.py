"""A kill at the moment the results file is created (issue #18, family 4): SIGKILL or SIGTERM
while `plane.h5` / `paths.h5` is being written for the first time, or the instant it appears,
leaves a state the rerun continues from: the file is absent or whole (it is written complete
under a temporary name and renamed into place), and the rerun's arrays equal an uninterrupted
run's exactly, with no temporary, lock or journal left over."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from small_runs import CLI, COMMANDS, argv, assert_same, reference  # noqa: F401 - reference: a fixture

from cli.main import main
from landscape import read_surface


def _appears(out: Path, name: str, moment: str):
    """True once the results file appears (``moment`` "file") or once its first temporary does,
    the file being written (``moment`` "temporary")."""
    if moment == "file":
        return lambda: (out / name).exists()
    return lambda: out.is_dir() and any(f.startswith(f".{name}.") and ".tmp" in f for f in os.listdir(out))


def _kill_when(cmd: list[str], ready, sig: int) -> int:
    """Run ``cmd``; send ``sig`` the moment ``ready()`` is true; its exit code."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if ready():
            proc.send_signal(sig)
            break
        time.sleep(0.0002)
    return proc.wait(timeout=120)


def _kill_and_rerun(three_ckpts, reference, out: Path, command: str, sig: int, moment: str) -> None:
    _, name, read = COMMANDS[command]
    code = _kill_when([*CLI, *argv(command, three_ckpts, out)], _appears(out, name, moment), sig)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 3), f"not stopped by the signal: {code}"
    if (out / name).exists():  # a results file that exists is whole
        assert read(out / name).done.sum() < reference[command].done.size
    assert main(argv(command, three_ckpts, out)) == 0
    assert_same(read(out / name), reference[command])
    reports = ["report.csv", "report.json", "report.md"] if command == "interp" else []
    assert sorted(os.listdir(out)) == [name, *reports]  # no temporary, lock, recovery copy or journal


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_kill_as_the_results_file_appears_reruns_to_the_uninterrupted_result(three_ckpts, reference, tmp_path,
                                                                                command, sig):
    _kill_and_rerun(three_ckpts, reference, tmp_path / "out", command, sig, "file")


@pytest.mark.slow  # ten CLI subprocesses: about 40 s
@pytest.mark.parametrize("command", list(COMMANDS))
def test_kills_while_the_results_file_is_written_rerun_to_the_uninterrupted_result(three_ckpts, reference,
                                                                                   tmp_path, command):
    for k, (sig, moment) in enumerate([(signal.SIGKILL, "temporary"), (signal.SIGTERM, "temporary"),
                                       (signal.SIGKILL, "file"), (signal.SIGTERM, "file"),
                                       (signal.SIGKILL, "temporary")]):
        _kill_and_rerun(three_ckpts, reference, tmp_path / str(k), command, sig, moment)


def test_an_empty_results_file_counts_as_absent(three_ckpts, reference, tmp_path):
    """An empty file (what an older version left when killed as it created the file) holds
    nothing: the run starts afresh instead of asking for --overwrite."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "plane.h5").write_bytes(b"")
    assert main(argv("plane", three_ckpts, out)) == 0
    resumed, full = read_surface(out / "plane.h5"), reference["plane"]
    for split in full.splits:
        np.testing.assert_array_equal(resumed.loss(split), full.loss(split))
    assert resumed.complete
