"""`train --overwrite` never destroys before the new run has started (#18 family 1), and a start
that failed leaves nothing that refuses the corrected rerun (family 7)."""

from __future__ import annotations

import json

import pytest

from cli.main import main

RUN = ["train", "--method", "local-de", "--members", "2", "--epochs", "1", "--batch-size", "256", "--quiet"]


@pytest.fixture
def finished(tmp_path, three_ckpts, capsys):
    out = tmp_path / "run"
    assert main([*RUN, "--pretrained", str(three_ckpts[0]), "--out", str(out)]) == 0, capsys.readouterr().err
    return out, {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def _same(out, files) -> None:
    now = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert now == files
    assert not [p for p in out.iterdir() if p.name.startswith(".replaced")]


@pytest.mark.parametrize("bad", ["missing", "wrong-arch", "no-root", "seed"])
def test_a_failing_overwrite_leaves_the_old_run_intact(bad, finished, tmp_path, three_ckpts, capsys):
    out, files = finished
    args = {"missing": ["--pretrained", str(tmp_path / "nope.safetensors")],
            "wrong-arch": ["--pretrained", str(three_ckpts[0]), "--data", "cifar10", "--data-root", str(tmp_path)],
            "no-root": ["--pretrained", str(three_ckpts[0]), "--data", "cifar10"],
            "seed": ["--pretrained", str(three_ckpts[0]), "--seed", "-3"]}[bad]
    capsys.readouterr()
    try:
        code = main([*RUN, *args, "--out", str(out), "--overwrite"])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    _same(out, files)


def test_an_overwrite_that_starts_replaces_the_old_run(finished, three_ckpts, capsys):
    out, files = finished
    assert main([*RUN, "--members", "1", "--pretrained", str(three_ckpts[1]), "--out", str(out),
                 "--overwrite"]) == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["members"] == 1 and len(manifest["members"]) == 1
    assert not (out / "member-2.safetensors").exists()
    assert (out / "member-1.safetensors").read_bytes() != files["member-1.safetensors"]
    assert not [p for p in out.iterdir() if p.name.startswith(".replaced")]


def test_a_start_that_failed_does_not_refuse_the_corrected_rerun(tmp_path, three_ckpts, capsys, monkeypatch):
    import ensembles.run
    from landscape.errors import UserError

    out = tmp_path / "run"

    def diverged(*args, **kwargs):
        raise UserError("training diverged (simulated)")

    with monkeypatch.context() as m:
        m.setattr(ensembles.run, "fit", diverged)
        assert main([*RUN, "--pretrained", str(three_ckpts[0]), "--lr", "50", "--out", str(out)]) == 2
    assert (out / "manifest.json").exists() and not list(out.glob("member-*"))
    capsys.readouterr()
    assert main([*RUN, "--pretrained", str(three_ckpts[0]), "--out", str(out)]) == 0, capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["config"]["lr"] == 0.02
