"""The README's `make demo`, end to end with tiny settings (slow: pre-trains on the source set)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from landscape import load_checkpoint, read_surface

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_pipeline_with_tiny_settings(tmp_path):
    demo = tmp_path / "demo"
    args = ["make", "-C", str(ROOT), "demo", f"DEMO={demo}", "PRE_EPOCHS=1", "FT_EPOCHS=1",
            'ARCH_KWARGS={"width": 4}', "PLANE_ARGS=--grid 4 --train-subset 500 --quiet"]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("pre.safetensors", "member-1.safetensors", "member-2.safetensors",
                 "member-3.safetensors", "plane.h5", "plane.png", "plane.html"):
        assert (demo / name).stat().st_size > 0, name
    pre = load_checkpoint(demo / "pre.safetensors")
    members = [load_checkpoint(demo / f"member-{i}.safetensors") for i in (1, 2, 3)]
    assert pre.meta.dataset == "mnist1d-source" and pre.meta.method == "pretrain"
    assert [m.meta.seed for m in members] == [1, 2, 3]
    assert all(m.meta.parent == pre.sha256 and m.meta.dataset == "mnist1d" for m in members)
    s = read_surface(demo / "plane.h5")
    assert s.complete and s.loss("train").shape == (4, 4)
    assert s.config["identity"]["bn"] == "recompute" and s.config["identity"]["train_subset"] == 500
    assert set(s.points) == {"member-1", "member-2", "member-3"}
    assert np.isfinite(s.loss("test")).all() and np.nanmax(s.acc("test")) > 20  # above chance
    # a second `make demo` has nothing left to do
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 0 and "landscape" not in again.stdout
