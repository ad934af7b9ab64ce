"""Small `plane` and `interp` runs through the CLI, shared by the tests of interrupted and failed
writes: the commands, their arguments, the arrays of uninterrupted runs, and their comparison."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from landscape import read_paths, read_surface

CLI = [sys.executable, "-m", "cli"]
SMALL = ["--train-subset", "200", "--test-subset", "100", "--engine", "loop", "--quiet"]
COMMANDS = {"plane": (["--grid", "4", "--group-size", "3"], "plane.h5", read_surface),
            "interp": (["--points", "5", "--group-size", "2"], "paths.h5", read_paths)}


def argv(command: str, ckpts, out: Path, *, plots: bool = False) -> list[str]:
    extra, _, _ = COMMANDS[command]
    return [command, *map(str, ckpts), *extra, *SMALL, *([] if plots else ["--no-plots"]), "--out", str(out)]


@pytest.fixture(scope="module")
def reference(three_ckpts, tmp_path_factory):
    """The arrays of uninterrupted runs, by command."""
    out = {}
    for command, (_, name, read) in COMMANDS.items():
        folder = tmp_path_factory.mktemp(command)
        assert main(argv(command, three_ckpts, folder)) == 0
        out[command] = read(folder / name)
    return out


def assert_same(a, b) -> None:
    """The same metrics, bit for bit, and the same done mask."""
    assert a.metrics.keys() == b.metrics.keys()
    for split in a.metrics:
        for name in a.metrics[split]:
            np.testing.assert_array_equal(a.metrics[split][name], b.metrics[split][name])
    np.testing.assert_array_equal(a.done, b.done)
