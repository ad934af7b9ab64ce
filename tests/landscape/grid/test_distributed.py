"""Planes and paths sharded across torchrun processes: identical to one process, resumable
after a process is killed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from landscape import read_paths, read_surface

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(nproc), "-m", "cli", *args]


@pytest.mark.slow  # two torchrun jobs and two single-process CLI runs: about 16 s
def test_two_processes_give_the_plane_and_paths_of_one(three_ckpts, tmp_path):
    common = ["--train-subset", "200", "--test-subset", "100", "--engine", "loop",
              "--group-size", "2", "--quiet"]
    plane_args = ["plane", *map(str, three_ckpts), "--grid", "4", "--no-plots", *common]
    one = subprocess.run([sys.executable, "-m", "cli", *plane_args, "--out", str(tmp_path / "one")],
                         env=ENV, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(_torchrun(2, *plane_args, "--out", str(tmp_path / "two")), env=ENV,
                         capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = (read_surface(tmp_path / d / "plane.h5") for d in ("one", "two"))
    assert b.complete and not (tmp_path / "two" / "plane.h5.parts").exists()
    for split in ("train", "test"):
        np.testing.assert_array_equal(a.loss(split), b.loss(split))
        np.testing.assert_array_equal(a.acc(split), b.acc(split))
    interp_args = ["interp", *map(str, three_ckpts), "--pairs", "all", "--points", "5",
                   "--no-plots", *common]
    p1 = subprocess.run([sys.executable, "-m", "cli", *interp_args, "--out", str(tmp_path / "i1")],
                        env=ENV, capture_output=True, text=True)
    p2 = subprocess.run(_torchrun(2, *interp_args, "--out", str(tmp_path / "i2")), env=ENV,
                        capture_output=True, text=True)
    assert p1.returncode == 0 and p2.returncode == 0, p2.stderr[-3000:]
    r1, r2 = (read_paths(tmp_path / d / "paths.h5") for d in ("i1", "i2"))
    np.testing.assert_array_equal(r1.metrics["test"]["acc"], r2.metrics["test"]["acc"])
    assert (tmp_path / "i2" / "report.json").read_text() == \
        (tmp_path / "i1" / "report.json").read_text()


@pytest.mark.slow  # torchrun jobs killed and rerun: about 11 s
def test_killed_job_resumes_without_losing_finished_points(three_ckpts, tmp_path):
    args = ["plane", *map(str, three_ckpts), "--grid", "6", "--train-subset", "300",
            "--test-subset", "200", "--engine", "loop", "--group-size", "1", "--no-plots"]
    full = subprocess.run([sys.executable, "-m", "cli", *args, "--quiet", "--out",
                           str(tmp_path / "full")], env=ENV, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen(_torchrun(2, *args, "--out", str(tmp_path / "killed")), env=ENV,
                            stderr=subprocess.PIPE, start_new_session=True)
    seen, deadline = b"", time.time() + 180
    while time.time() < deadline:
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        done = [int(n) for n in re.findall(rb"(\d+)/36", seen)]
        if done and max(done) >= 6:
            break
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job: launcher and both workers
    proc.wait()
    assert proc.returncode != 0, seen[-500:]
    rerun = subprocess.run(_torchrun(2, *args, "--quiet", "--out", str(tmp_path / "killed")),
                           env=ENV, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    a, b = (read_surface(tmp_path / d / "plane.h5") for d in ("full", "killed"))
    assert b.complete
    for split in ("train", "test"):
        np.testing.assert_array_equal(a.loss(split), b.loss(split))


def _worker_pid(launcher: int, rank: int) -> int | None:
    """The pid of the torchrun worker of ``rank`` started by ``launcher`` (from /proc)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            env = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if ppid == launcher and f"RANK={rank}".encode() in env:
            return int(entry)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("rank", [1])  # a worker that is not the writer (killing all is tested above)
def test_one_killed_rank_then_a_rerun_completes_with_identical_values(three_ckpts, tmp_path, rank):
    args = ["plane", *map(str, three_ckpts), "--grid", "6", "--train-subset", "300",
            "--test-subset", "200", "--engine", "loop", "--group-size", "1", "--no-plots"]
    full = subprocess.run([sys.executable, "-m", "cli", *args, "--quiet", "--out",
                           str(tmp_path / "full")], env=ENV, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen(_torchrun(2, *args, "--out", str(tmp_path / "cut")), env=ENV,
                            stderr=subprocess.PIPE, start_new_session=True)
    seen, deadline = b"", time.time() + 180
    while time.time() < deadline:
        seen += os.read(proc.stderr.fileno(), 4096)
        done = [int(n) for n in re.findall(rb"(\d+)/36", seen)]
        if done and max(done) >= 6:
            break
    pid = _worker_pid(proc.pid, rank)
    assert pid is not None, seen[-500:]
    os.kill(pid, signal.SIGKILL)  # one worker only: torchrun's agent stops the other
    proc.stderr.read()
    assert proc.wait(timeout=120) != 0
    part = read_surface(tmp_path / "cut" / "plane.h5")
    assert part.done.sum() < 36
    rerun = subprocess.run(_torchrun(2, *args, "--quiet", "--out", str(tmp_path / "cut")),
                           env=ENV, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    a, b = (read_surface(tmp_path / d / "plane.h5") for d in ("full", "cut"))
    assert b.complete
    for split in ("train", "test"):
        np.testing.assert_array_equal(a.loss(split), b.loss(split))
        np.testing.assert_array_equal(a.acc(split), b.acc(split))


@pytest.mark.slow  # a curve fitted on one process, its points shared by two: about 15 s
def test_a_curve_under_torchrun_is_fitted_once_and_evaluated_as_by_one_process(three_ckpts, tmp_path):
    args = ["curve", str(three_ckpts[0]), str(three_ckpts[2]), "--epochs", "2", "--points", "6",
            "--train-subset", "200", "--test-subset", "100", "--engine", "loop", "--group-size", "2",
            "--no-plots", "--quiet"]
    one = subprocess.run([sys.executable, "-m", "cli", *args, "--out", str(tmp_path / "one")], env=ENV,
                         capture_output=True, text=True)
    two = subprocess.run(_torchrun(2, *args, "--out", str(tmp_path / "two")), env=ENV, capture_output=True, text=True)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    for name in ("curve.h5", "line.h5"):
        a, b = (read_paths(tmp_path / d / name) for d in ("one", "two"))
        assert b.complete
        np.testing.assert_array_equal(a.metrics["test"]["loss"], b.metrics["test"]["loss"])
    assert (tmp_path / "one" / "curve.safetensors").read_bytes() == (tmp_path / "two" / "curve.safetensors").read_bytes()
