"""Smoke test of benchmarks/plane_bench.py: a tiny run whose JSON must be self-consistent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import landscape

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "plane_bench.py"


def _checkpoints(root: Path) -> list[str]:
    """A random width-4 mnist1d_cnn and two seeded perturbations of it (not collinear)."""
    meta = landscape.CheckpointMeta("mnist1d_cnn", 10, {"width": 4}, "mnist1d")
    torch.manual_seed(0)
    base = landscape.create_model("mnist1d_cnn", 10, width=4)
    gen = torch.Generator().manual_seed(1)
    paths = []
    for name in ("A", "B", "C"):
        model = landscape.create_model("mnist1d_cnn", 10, width=4)
        model.load_state_dict(base.state_dict())
        if name != "A":
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.1 * torch.randn(p.shape, generator=gen))
        path = root / f"{name}.safetensors"
        landscape.save_checkpoint(model, path, meta)
        paths.append(str(path))
    return paths


def test_plane_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(SCRIPT), "--checkpoints", *_checkpoints(tmp_path),
           "--grid", "3", "--train-subset", "200", "--test-subset", "100",
           "--naive-points", "2", "--threads", "1", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "torch.get_num_threads() = 1" in proc.stdout

    r = json.loads(out.read_text())
    assert r["setup"]["checkpoints_source"] == "given"
    assert r["setup"]["samples"] == {"train": 200, "test": 100}
    assert len(r["setup"]["sample"]) == 2
    assert r["environment"]["torch_threads"] == 1
    assert r["auto"]["path"] in ("loop", "vmap")
    for path in ("loop", "vmap"):
        assert r["engine"][path]["points_per_s"] > 0
        assert r["max_abs_diff"][path]["loss"] < 1e-5
        assert r["max_abs_diff"][path]["acc"] < 1e-5
    assert r["max_abs_diff"]["overall"] < 1e-5
    assert r["engine_points_per_s"] == r["engine"][r["auto"]["path"]]["points_per_s"]
    assert r["engine_points_per_s"] > 0 and r["naive_points_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["engine_points_per_s"] / r["naive_points_per_s"])


def test_plane_bench_help():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, check=False,
                          text=True, timeout=60)
    assert proc.returncode == 0
    assert "--naive-points" in proc.stdout and "--full" in proc.stdout
