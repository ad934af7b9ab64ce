"""`landscape curve A B`: fits the bends, evaluates the curve and the line, and reports them;
a rerun reads everything back; `landscape plane A BEND B --curve` draws the curve; bad input is
one line with exit code 2."""

from __future__ import annotations

import json

import h5py
import pytest

from cli.main import main
from landscape import read_paths
from landscape.surfaces.barriers import barrier

FAST = ["--epochs", "2", "--points", "5", "--train-subset", "200", "--test-subset", "100", "--quiet"]


def _one_line(capsys, args) -> str:
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_curve_fits_evaluates_and_reports(three_ckpts, tmp_path, capsys):
    a, _, b = map(str, three_ckpts)
    out = tmp_path / "curve"
    assert main(["curve", a, b, "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "report.json").read_text())
    curve, line = read_paths(out / "curve.h5"), read_paths(out / "line.h5")
    rep = doc["report"]
    for ps, side in ((curve, "curve"), (line, "line")):
        assert ps.complete and ps.alpha.tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
        assert rep[side]["acc_barrier_test"] == barrier(ps.alpha, ps.curve(0, "test", "acc"), kind="acc").height
        assert doc[side]["test"]["loss"] == pytest.approx(ps.curve(0, "test", "loss").tolist())
    over = [rep[s]["acc_barrier_test"] >= rep["threshold"] for s in ("line", "curve")]
    assert rep["label"] == ("connected by the line" if not over[0] else
                            "connected by a curve" if not over[1] else "not connected")
    assert rep["label"] in printed and (out / "curve.png").stat().st_size > 0
    with h5py.File(out / "curve.h5") as f:
        identity = json.loads(f.attrs["config"])["identity"]
    assert identity["mode"] == "curve" and identity["curve_kind"] == "bezier"
    stamp = (out / "curve.safetensors").stat().st_mtime_ns
    assert main(["curve", a, b, "--out", str(out), *FAST]) == 0  # everything finished: read back
    assert (out / "curve.safetensors").stat().st_mtime_ns == stamp
    # the plane through A, the bend and B, with the curve drawn on it
    plane = tmp_path / "plane"
    assert main(["plane", a, str(out / "bend-1.safetensors"), b, "--curve", str(out / "curve.safetensors"),
                 "--grid", "5", "--train-subset", "200", "--test-subset", "100", "--quiet", "--out", str(plane)]) == 0
    html = (plane / "plane.html").read_text()
    assert '"name":"beziercurve"' in html.replace(" ", "") and (plane / "plane.png").stat().st_size > 0
    # a different recipe in the same folder is refused in one line
    err = _one_line(capsys, ["curve", a, b, "--out", str(out), *FAST[:-1], "--lr", "0.2", "--quiet"])
    assert "other settings" in err and "--overwrite" in err


def test_bad_curve_input_is_one_line(three_ckpts, tmp_path, capsys):
    a, _, b = map(str, three_ckpts)
    assert "--bends" in _one_line(capsys, ["curve", a, b, "--bends", "0", "--out", str(tmp_path / "x")])
    assert "bends must be" in _one_line(capsys, ["curve", a, b, "--bends", "9", "--out", str(tmp_path / "x")])
    assert "--kind" in _one_line(capsys, ["curve", a, b, "--kind", "spline", "--out", str(tmp_path / "x")])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    err = _one_line(capsys, ["plane", a, a, b, "--curve", str(bad), "--grid", "3", "--out", str(tmp_path / "p")])
    assert "bad.safetensors" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "p").exists()
