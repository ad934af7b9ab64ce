"""`--overwrite` never destroys before the new run has started (issue #18, family 1, planes and
paths): the old results stay in place, untouched, until the new run's inputs are checked and its
file is written; a run that fails before that (a dataset without its root, a missing checkpoint)
leaves every old file byte for byte as it was, finished or not, and the old run still resumes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from landscape import read_paths, read_surface
from landscape.grid import store as store_mod

CLI = [sys.executable, "-m", "cli"]
SMALL = ["--train-subset", "200", "--test-subset", "100", "--engine", "loop", "--no-plots", "--quiet"]
PLANE = ["--grid", "4", "--group-size", "3", *SMALL]
INTERP = ["--points", "5", "--group-size", "2", *SMALL]


def _state(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fails_in_one_line(argv: list[str], command: str, expected: str) -> None:
    run = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=300)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr[-2000:]
    assert lines[0].startswith(f"landscape {command}: error: ") and expected in lines[0], lines[0]


@pytest.fixture(scope="module")
def finished(three_ckpts, tmp_path_factory):
    """A finished plane and a finished set of paths (with their reports), in-process."""
    root = tmp_path_factory.mktemp("finished")
    assert main(["plane", *map(str, three_ckpts), *PLANE, "--out", str(root / "plane")]) == 0
    assert main(["interp", *map(str, three_ckpts), *INTERP, "--out", str(root / "interp")]) == 0
    return root


@pytest.mark.parametrize("command", ["plane", "interp"])
def test_a_failing_overwrite_leaves_finished_results_untouched(three_ckpts, finished, tmp_path, command):
    out = tmp_path / command
    out.mkdir()
    for name, data in _state(finished / command).items():
        (out / name).write_bytes(data)
    before = _state(out)
    assert (f"{'plane' if command == 'plane' else 'paths'}.h5") in before
    flags = PLANE if command == "plane" else INTERP
    _fails_in_one_line([command, *map(str, three_ckpts), *flags, "--out", str(out), "--overwrite",
                        "--data", "cifar10"], command, "--data-root")  # found only once the data loads
    assert _state(out) == before
    missing = tmp_path / "missing.safetensors"
    _fails_in_one_line([command, *map(str, three_ckpts[:2]), str(missing), *flags, "--out", str(out),
                        "--overwrite"], command, "does not exist")
    assert _state(out) == before


def test_a_failing_overwrite_leaves_an_unfinished_run_resumable(three_ckpts, finished, tmp_path, monkeypatch):
    out = tmp_path / "plane"
    original, calls = store_mod.GridStore.write, {"n": 0}

    def write_then_stop(self, index, metrics):  # interrupted after two groups of three points
        original(self, index, metrics)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(store_mod.GridStore, "write", write_then_stop)
    argv = ["plane", *map(str, three_ckpts), *PLANE, "--out", str(out)]
    assert main(argv) == 3
    monkeypatch.setattr(store_mod.GridStore, "write", original)
    before = _state(out)
    assert set(before) == {"plane.h5", "plane.h5.init", "plane.h5.journal"}
    assert read_surface(out / "plane.h5").done.sum() == 6

    _fails_in_one_line([*argv, "--overwrite", "--data", "cifar10"], "plane", "--data-root")
    assert _state(out) == before  # the file, its recovery copy and its journal
    assert main(argv) == 0  # the old run resumes
    resumed, full = read_surface(out / "plane.h5"), read_surface(finished / "plane" / "plane.h5")
    for split in full.splits:
        np.testing.assert_array_equal(resumed.loss(split), full.loss(split))
        np.testing.assert_array_equal(resumed.acc(split), full.acc(split))
    assert set(_state(out)) == {"plane.h5"}


def test_an_overwrite_that_starts_replaces_the_old_results(three_ckpts, finished, tmp_path):
    out = tmp_path / "paths"
    out.mkdir()
    for name, data in _state(finished / "interp").items():
        (out / name).write_bytes(data)
    (out / "paths.h5.parts").mkdir()
    (out / "paths.h5.parts" / "part-0.npz").write_bytes(b"a part of the old run")
    old = read_paths(out / "paths.h5")
    assert main(["interp", *map(str, three_ckpts), *INTERP, "--points", "3", "--out", str(out), "--overwrite"]) == 0
    new = read_paths(out / "paths.h5")
    assert new.complete and new.alpha.size == 3 and old.alpha.size == 5
    assert new.config["identity"]["points"] == 3
    assert not (out / "paths.h5.parts").exists() and not (out / "paths.h5.init").exists()
