"""Issue 17, items 6 and 7: default output names from the checkpoints' display names; JSON
outputs are standard JSON (NaN as null); a closed pipe ends quietly; diverged paths are reported,
not a traceback."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model, meta, perturbed

from cli.interp import default_out as interp_out
from cli.main import main
from cli.plane import default_out as plane_out
from landscape import barrier, save_checkpoint
from landscape.atomic import finite_json, write_json

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--train-subset", "100", "--test-subset", "100", "--quiet", "--no-plots"]


def _strict_load(path: Path):
    """json.load that refuses NaN / Infinity, as a strict parser (JavaScript, jq) does."""
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_default_out_dirs():
    assert plane_out(["a.safetensors", "b.pt", "c.pt"], 0) == Path("plane-a-b-c")  # as before
    assert plane_out(["x/m.pt"], 3) == Path("plane-m-random-s3")
    assert plane_out(["run1/model.pt", "run2/model.pt", "run3/model.pt", "d.pt"], 0) == \
        Path("plane-run1-model-run2-model-run3-model")
    assert interp_out(["a.pt", "b.pt"]) == Path("interp-a-b")
    assert interp_out(["run1/model.pt", "run2/model.pt"]) == Path("interp-run1-model-run2-model")
    assert interp_out(["m.pt", "m.pt"]) == Path("interp-m-m_")


def test_write_json_strict(tmp_path):
    doc = {"a": float("nan"), "b": [1.5, float("inf"), (np.float32(-np.inf), np.float64(2.0))],
           "c": {"d": np.nan, "e": "x", "f": None, "g": 3}, "h": np.float32(0.5)}
    write_json(tmp_path / "x.json", doc, strict=True, indent=2)
    assert _strict_load(tmp_path / "x.json") == {"a": None, "b": [1.5, None, [None, 2.0]],
                                                 "c": {"d": None, "e": "x", "f": None, "g": 3},
                                                 "h": 0.5}
    # finite documents are written byte for byte as before
    plain = {"x": [1.0, 0.1, 2], "y": {"z": "w"}}
    write_json(tmp_path / "a.json", plain, indent=2, sort_keys=True)
    write_json(tmp_path / "b.json", plain, indent=2, sort_keys=True, strict=True)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert finite_json(plain) == plain
    with pytest.raises(TypeError):  # what json cannot write is still refused
        write_json(tmp_path / "c.json", {"s": {1, 2}}, strict=True)


def test_barrier_of_a_diverged_path_is_nan():
    b = barrier(np.linspace(0, 1, 3), np.array([1.0, np.nan, np.nan]), kind="loss")
    assert math.isnan(b.height) and math.isnan(b.alpha)


@pytest.fixture()
def diverged(tmp_path):
    """A checkpoint whose weights are finite but whose logits overflow (NaN loss)."""
    model = perturbed(make_model(0), 3)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e30)
    path = tmp_path / "big.safetensors"
    save_checkpoint(model, path, meta())
    return path


def test_interp_reports_are_json_with_null(capsys, three_ckpts, diverged, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for k, src in enumerate(three_ckpts[:2], 1):  # same stem in two folders
        (tmp_path / f"run{k}").mkdir()
        shutil.copyfile(src, tmp_path / f"run{k}" / "model.safetensors")
    code = main(["interp", "run1/model.safetensors", "run2/model.safetensors", str(diverged),
                 "--points", "3", "--pairs", "all", *SMALL])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = _strict_load(tmp_path / "interp-run1-model-run2-model-big" / "report.json")
    assert doc["names"] == ["run1/model", "run2/model", "big"]
    pairs = {(p["a"], p["b"]): p for p in doc["pairs"]}
    assert pairs["run1/model", "run2/model"]["a_from_pretrained"] is None  # NaN: no pre-trained
    assert pairs["run1/model", "run2/model"]["distance"] > 0
    assert pairs["run1/model", "big"]["loss_barrier_test"] is None       # the path diverged
    assert None in doc["curves"]["run1/model -> big"]["test"]["loss"]
    assert "| run1/model | big |" in out


def test_plane_of_a_diverged_checkpoint_is_quiet(capsys, diverged, tmp_path):
    code = main(["plane", str(diverged), "--grid", "3", "--out", str(tmp_path / "p"), *SMALL])
    out, err = capsys.readouterr()
    assert code == 0 and "diverged" in out and "loss nan..nan" in out
    assert "Warning" not in err
    code = main(["info", str(tmp_path / "p" / "plane.h5"), "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out, parse_constant=pytest.fail)


def test_closed_pipe_ends_quietly(three_ckpts):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "info", str(three_ckpts[0])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    proc.stdout.close()  # the reader is gone before the first line is written (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""
    shell = subprocess.run(f"{sys.executable} -m cli info {three_ckpts[0]} --json | head -1",
                           shell=True, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert shell.returncode == 0 and shell.stdout == "{\n" and shell.stderr == ""
