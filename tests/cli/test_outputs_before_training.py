"""A trained model is never thrown away because its output cannot be written (#18 family 2): every
output location is checked before training, and a model that still cannot be written (the disk
filled during training) is kept in a rescue file the error names. Also seeds out of range, and
what an interrupted `finetune` says."""

from __future__ import annotations

import subprocess

import pytest
import torch

import ensembles.training
from cli.main import main
from landscape import PlaneConfig, load_checkpoint
from landscape.errors import UserError

FT = ["--epochs", "1", "--quiet", "--batch-size", "256"]


@pytest.fixture
def no_training(monkeypatch):
    """Training would fail the test: every refusal must come before it."""
    def fit(*args, **kwargs):
        raise AssertionError("trained before checking the output")

    monkeypatch.setattr(ensembles.training, "fit", fit)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(options) -> a tmpfs folder (unmounted afterwards)."""
    mounted = []

    def mount(options: str):
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)]).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)])


def _one_line(capsys, argv) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("command", ["finetune", "pretrain"])
def test_an_unwritable_output_is_refused_before_training(command, three_ckpts, tmp_path, tmpfs, capsys, no_training):
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "DIR").mkdir()
    read_only, full = tmpfs("size=64k,ro"), tmpfs("size=16k")
    (full / "filler").write_bytes(b"\0" * 12_000)
    base = ["finetune", str(three_ckpts[0])] if command == "finetune" else ["pretrain", "--data", "mnist1d"]
    cases = {"f.pt": "must end in .safetensors", "FILE/x.safetensors": "is a file",
             "DIR": "must end in .safetensors",
             f"{'a' * 300}.safetensors": "this file system leaves",
             f"{'b' * 230}.safetensors": "this file system leaves",  # fits, but its temporary would not
             f"{read_only}/m.safetensors": "Read-only file system", f"{full}/m.safetensors": "free"}
    (tmp_path / "DIR.safetensors").mkdir()
    cases["DIR.safetensors"] = "is a directory"
    for out, expected in cases.items():
        err = _one_line(capsys, [*base, *FT, "--out", str(tmp_path / out) if not out.startswith("/") else out])
        assert expected in err, (out, err)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".safetensors") == ["DIR.safetensors"]


def test_a_model_that_cannot_be_written_after_training_is_rescued(three_ckpts, tmp_path, monkeypatch, capsys):
    import landscape

    target = tmp_path / "m.safetensors"
    real = landscape.save_checkpoint

    def save(model, path, meta=None):
        if str(path) == str(target):
            raise OSError(28, "No space left on device")
        return real(model, path, meta)

    monkeypatch.setattr(landscape, "save_checkpoint", save)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "rescue"))
    (tmp_path / "rescue").mkdir()
    err = _one_line(capsys, ["finetune", str(three_ckpts[0]), *FT, "--seed", "7", "--out", str(target)])
    assert "No space left on device" in err and "saved as" in err
    rescued = list((tmp_path / "rescue").glob("landscape-rescued-*-m.safetensors"))
    assert len(rescued) == 1 and str(rescued[0]) in err and not target.exists()
    ckpt = load_checkpoint(rescued[0])
    assert ckpt.meta.seed == 7 and ckpt.meta.method == "finetune"
    assert all(torch.isfinite(p).all() for p in ckpt.model.parameters())


def test_train_and_demo_refuse_a_file_as_their_directory_at_once(tmp_path, three_ckpts, capsys, no_training):
    (tmp_path / "FILE").write_text("x")
    err = _one_line(capsys, ["train", "--method", "local-de", "--pretrained", str(three_ckpts[0]), "--members", "1",
                             *FT, "--out", str(tmp_path / "FILE")])
    assert "is a file, not a directory" in err
    err = _one_line(capsys, ["demo", "--tiny", "--quiet", "--out", str(tmp_path / "FILE")])
    assert "is a file, not a directory" in err
    assert (tmp_path / "FILE").read_text() == "x"


@pytest.mark.parametrize("seed", ["-1", str(2**63), "1.5"])
def test_seeds_out_of_range_are_refused_before_any_file(seed, three_ckpts, tmp_path, capsys):
    out = tmp_path / "p"
    err = _one_line(capsys, ["plane", *map(str, three_ckpts), "--seed", seed, "--grid", "3", "--out", str(out)])
    assert "seed" in err and not out.exists()
    _one_line(capsys, ["finetune", str(three_ckpts[0]), *FT, "--seed", seed, "--out", str(tmp_path / "m.safetensors")])
    with pytest.raises(UserError, match="seed"):
        PlaneConfig(seed=int(float(seed)) if seed != "1.5" else 1.5)


def test_an_interrupted_finetune_says_it_does_not_resume(three_ckpts, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ensembles.training, "fit", interrupted)
    code = main(["finetune", str(three_ckpts[0]), *FT, "--out", str(tmp_path / "m.safetensors")])
    err = capsys.readouterr().err
    assert code == 3 and "does not resume" in err and "finished work is saved" not in err


def test_an_architecture_that_does_not_fit_the_data_is_one_line_before_training(tmp_path, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("an epoch ran before the model was checked against the data")

    monkeypatch.setattr(ensembles.training, "train_epoch", never)
    err = _one_line(capsys, ["pretrain", "--data", "mnist1d", "--arch", "resnet20", *FT,
                             "--out", str(tmp_path / "r.safetensors")])
    assert "CifarResNet cannot take the inputs of 'mnist1d' (shape (40,))" in err
    assert not (tmp_path / "r.safetensors").exists()


def test_a_member_that_cannot_be_written_is_rescued_and_the_earlier_ones_kept(three_ckpts, tmp_path, monkeypatch,
                                                                             capsys):
    from ensembles.rundir import RunDir

    real = RunDir.write_member

    def full_at_two(self, index, *args, **kwargs):
        if index == 2:
            raise OSError(28, "No space left on device")
        return real(self, index, *args, **kwargs)

    monkeypatch.setattr(RunDir, "write_member", full_at_two)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    out = tmp_path / "run"
    err = _one_line(capsys, ["train", "--method", "local-de", "--pretrained", str(three_ckpts[0]), "--members", "2",
                             *FT, "--out", str(out)])
    (kept,) = tmp_path.glob("landscape-rescued-*-member-2.safetensors")
    assert str(kept) in err and "No space left on device" in err
    assert load_checkpoint(kept).meta.member == 2
    assert (out / "member-1.json").exists() and not (out / "member-2.safetensors").exists()


def test_a_real_full_disk_after_training_rescues_the_model(tmp_path, tmpfs, monkeypatch, capsys):
    """The free-space check passed, then the disk filled: a real ENOSPC from the real writer."""
    import cli.pretrain

    full = tmpfs("size=16k")
    (full / "filler").write_bytes(b"\0" * 14_000)
    monkeypatch.setattr(cli.pretrain, "output_file", lambda *a, **k: None)  # as if it filled during training
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    err = _one_line(capsys, ["pretrain", "--data", "mnist1d", *FT, "--out", str(full / "pre.safetensors")])
    (kept,) = tmp_path.glob("landscape-rescued-*-pre.safetensors")
    assert "No space left on device" in err and str(kept) in err
    assert load_checkpoint(kept).meta.method == "pretrain"
    assert sorted(p.name for p in full.iterdir()) == ["filler"]  # no temporary left
