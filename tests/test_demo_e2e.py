"""The README's `make demo`, end to end with tiny settings (slow: pre-trains on the source set),
and the report's numbers against the files it was built from."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from landscape import load_checkpoint, read_paths, read_surface

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_pipeline_with_tiny_settings(tmp_path):
    demo = tmp_path / "demo"
    args = ["make", "-C", str(ROOT), "demo", f"DEMO={demo}", "DEMO_ARGS=--tiny --quiet"]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sources = [load_checkpoint(demo / "sources" / f"source-{i}.safetensors") for i in (0, 1)]
    assert all(s.meta.dataset == "mnist1d-source" and s.meta.method == "pretrain"
               for s in sources)
    doc = json.loads((demo / "ensembles.json").read_text())
    names = [r["name"] for r in doc["runs"]]
    assert names == ["local-de", "global-de", "sse-local", "sse-semilocal", "starsse-local",
                     "starsse-semilocal"]
    for run in doc["runs"]:
        assert [r["size"] for r in run["table"]] == list(range(1, len(run["table"]) + 1))
        assert all(0 <= r["ood_accuracy"] <= 100 for r in run["table"])
    ps = read_paths(demo / "paths" / "sse-semilocal" / "paths.h5")
    assert ps.complete and ps.pairs == [(0, 1), (1, 2), (0, 2)]
    s = read_surface(demo / "planes" / "starsse-semilocal" / "plane.h5")
    assert s.complete and s.config["identity"]["bn"] == "recompute"
    # the report's numbers are the files' numbers
    page = (demo / "report.html").read_text()
    for run in doc["runs"]:
        last = run["table"][-1]
        assert f"<td>{last['accuracy']:.4g}</td>" in page
        assert f"<td>{last['soup_accuracy']:.4g}</td>" in page
    pairs = json.loads((demo / "paths" / "sse-semilocal" / "report.json").read_text())["pairs"]
    from landscape.surfaces.barriers import barrier

    for p, rec in enumerate(pairs):
        assert rec["acc_barrier_test"] == barrier(ps.alpha, ps.curve(p, "test", "acc"),
                                                  kind="acc").height
        assert f"<td>{rec['acc_barrier_test']:.4g}</td>" in page
    assert len(list((demo / "figures").glob("*.png"))) == 9
    assert not re.search(r"<script[^>]+src=", page)  # nothing loaded from elsewhere
    assert np.isfinite(s.loss("test")).all()
    # a second `make demo` has every step finished: no checkpoint or result is written again
    stamps = {p: p.stat().st_mtime_ns for p in demo.rglob("*")
              if p.suffix in (".safetensors", ".h5", ".npy")}
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
