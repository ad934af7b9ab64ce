"""Real signals sent to real `landscape` processes: SIGINT (Ctrl-C), SIGTERM (a cluster's time
limit) and SIGKILL during plane, interp and train. An interrupted run exits with 3 and one line;
the rerun resumes and its final files equal an uninterrupted run's. (Only the interrupted runs
are separate processes; the references and reruns run in-process to save start-up time.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_model, meta
from safetensors.numpy import load_file

from cli.main import main
from landscape import read_paths, read_surface, save_checkpoint

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "cli"]
SUBSETS = ["--train-subset", "300", "--test-subset", "200", "--engine", "loop", "--group-size", "1",
           "--no-plots"]


def _interrupt(cmd: list[str], sig: int, ready) -> subprocess.CompletedProcess:
    """Start ``cmd``, send ``sig`` once ``ready(stderr so far)`` is true, wait for the end."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    os.set_blocking(proc.stderr.fileno(), False)
    seen, deadline = b"", time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        seen += proc.stderr.read() or b""
        if ready(seen):
            proc.send_signal(sig)
            break
        time.sleep(0.05)
    proc.wait(timeout=120)
    os.set_blocking(proc.stderr.fileno(), True)
    seen += proc.stderr.read() or b""
    return subprocess.CompletedProcess(cmd, proc.returncode, b"", seen)


def _progress_at_least(points: int, total: int):
    return lambda seen: any(int(n) >= points for n in re.findall(rb"(\d+)/%d" % total, seen))


def _check_exit(proc: subprocess.CompletedProcess, sig: int, command: str) -> None:
    err = proc.stderr.decode(errors="replace")
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, err[-500:]
        return
    assert proc.returncode == 3, err[-800:]
    last = err.strip().splitlines()[-1]
    assert last == (f"landscape {command}: interrupted; finished work is saved, rerun the same "
                    "command to resume")
    assert "Traceback" not in err


def test_an_interrupt_dropped_in_a_weakref_callback_prints_no_traceback():
    """A signal that comes while Python runs a weakref callback or a finalizer: Python drops
    the KeyboardInterrupt and prints it with a traceback. The CLI keeps quiet about it (the
    request stops the run at the next progress update); other such errors are still printed."""
    code = """if True:
        import weakref
        from cli.main import _sigterm_interrupts
        from landscape.progress import request_interrupt

        class Thing:
            pass

        def callback(exc):
            def raise_it(_):
                raise exc
            return raise_it

        _sigterm_interrupts()
        _sigterm_interrupts()  # main() may run twice in one process: one hook, not two
        a, b = Thing(), Thing()
        refs = [weakref.ref(a, callback(KeyboardInterrupt())), weakref.ref(b, callback(ValueError("other")))]
        request_interrupt()
        del a, b
    """
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stderr
    assert "KeyboardInterrupt" not in err
    assert err.count("Traceback") == 1 and "ValueError: other" in err


def _run(argv: list[str]) -> None:
    assert main([*argv, "--quiet"]) == 0


@pytest.fixture(scope="module")
def plane_args(three_ckpts, tmp_path_factory):
    args = ["plane", *map(str, three_ckpts), "--grid", "9", *SUBSETS]
    full = tmp_path_factory.mktemp("plane") / "full"
    _run([*args, "--out", str(full)])
    return args, read_surface(full / "plane.h5")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_plane_interrupted_by_a_signal_resumes_to_identical_arrays(plane_args, tmp_path, sig):
    args, full = plane_args
    proc = _interrupt([*CLI, *args, "--out", str(tmp_path)], sig, _progress_at_least(4, 81))
    _check_exit(proc, sig, "plane")
    assert 0 < read_surface(tmp_path / "plane.h5").done.sum() < 81
    _run([*args, "--out", str(tmp_path)])
    resumed = read_surface(tmp_path / "plane.h5")
    for split in ("train", "test"):
        np.testing.assert_array_equal(resumed.loss(split), full.loss(split))
        np.testing.assert_array_equal(resumed.acc(split), full.acc(split))


POINTS = 25


@pytest.fixture(scope="module")
def interp_args(three_ckpts, tmp_path_factory):
    # 3 pairs x 25 points: the progress bar (refreshed every 0.1 s) shows 4 done while most are left
    args = ["interp", *map(str, three_ckpts), "--pairs", "all", "--points", str(POINTS), *SUBSETS]
    full = tmp_path_factory.mktemp("interp") / "full"
    _run([*args, "--out", str(full)])
    return args, full


@pytest.mark.parametrize("sig", [signal.SIGKILL], ids=["SIGKILL"])  # Ctrl-C: the plane tests (same runner)
def test_interp_interrupted_resumes_to_identical_arrays(interp_args, tmp_path, sig):
    args, full = interp_args
    proc = _interrupt([*CLI, *args, "--out", str(tmp_path)], sig, _progress_at_least(4, 3 * POINTS))
    _check_exit(proc, sig, "interp")
    assert 0 < read_paths(tmp_path / "paths.h5").done.sum() < 3 * POINTS
    _run([*args, "--out", str(tmp_path)])
    a, b = read_paths(full / "paths.h5"), read_paths(tmp_path / "paths.h5")
    for split in ("train", "test"):
        np.testing.assert_array_equal(b.metrics[split]["loss"], a.metrics[split]["loss"])
    assert (tmp_path / "report.json").read_text() == (full / "report.json").read_text()


@pytest.fixture(scope="module")
def train_args(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    save_checkpoint(make_model(0), root / "pre.safetensors", meta())
    args = ["train", "--method", "sse", "--pretrained", str(root / "pre.safetensors"), "--preset",
            "mnist1d", "--members", "3", "--epochs", "2", "--cycle-epochs", "2", "--batch-size", "128"]
    _run([*args, "--out", str(root / "full")])
    return args, root / "full"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_train_interrupted_resumes_to_identical_members(train_args, tmp_path, sig):
    args, full = train_args
    cut = tmp_path / "cut"
    proc = _interrupt([*CLI, *args, "--out", str(cut)], sig,
                      lambda seen: (cut / "member-1.safetensors").is_file())
    _check_exit(proc, sig, "train")
    assert (cut / "member-1.safetensors").is_file() and not (cut / "member-3.safetensors").is_file()
    _run([*args, "--out", str(cut)])
    for i in (1, 2, 3):
        a, b = (load_file(Path(d) / f"member-{i}.safetensors") for d in (full, cut))
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"member {i} {k}")
        np.testing.assert_array_equal(np.load(full / f"member-{i}.test-probs.npy"),
                                      np.load(cut / f"member-{i}.test-probs.npy"))
