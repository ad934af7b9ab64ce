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


def test_members_without_a_manifest_are_kept(finished, three_ckpts, capsys):
    """A lost manifest (or a sweep's seeded member 1) never costs the members there."""
    out, files = finished
    (out / "manifest.json").unlink()
    assert main([*RUN, "--pretrained", str(three_ckpts[0]), "--out", str(out)]) == 0, capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in files if name != "manifest.json"} == \
        {name: data for name, data in files.items() if name != "manifest.json"}


def test_an_overwrite_onto_data_without_a_train_split_leaves_the_old_run(finished, three_ckpts, tmp_path, capsys):
    out, files = finished
    (tmp_path / "testonly.py").write_text(
        "from landscape import load_dataset\n"
        "def make():\n"
        "    t = load_dataset('mnist1d', 'test')\n"
        "    return {'test': (t.inputs[:100], t.labels[:100])}\n")
    capsys.readouterr()
    code = main([*RUN, "--pretrained", str(three_ckpts[0]), "--data", f"{tmp_path / 'testonly.py'}:make",
                 "--out", str(out), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and "no train split" in err, err
    _same(out, files)


def test_a_rerun_whose_config_lacks_a_recorded_setting_names_it(tmp_path, three_ckpts):
    """The manifest records data_content (your own data); the rerun on a registered dataset of that
    name has none: a one-line refusal naming the setting, not a StopIteration."""
    from ensembles import RunConfig, train
    from landscape import Data, load_dataset, register_dataset
    from landscape.errors import UserError

    t, s = load_dataset("mnist1d", "train"), load_dataset("mnist1d", "test")
    data = Data(train=(t.inputs[:200], t.labels[:200]), test=(s.inputs[:100], s.labels[:100]), name="mine")
    cfg = dict(members=1, epochs=1, lr=0.02, batch_size=128)
    train(RunConfig("local-de", (str(three_ckpts[0]),), data, **cfg), tmp_path / "run")
    from landscape.assets import resolve

    resolve._USER_DATA.pop("mine")
    register_dataset("mine", lambda split, **_: load_dataset("mnist1d", split), num_classes=10, overwrite=True)
    with pytest.raises(UserError, match="data_content"):
        train(RunConfig("local-de", (str(three_ckpts[0]),), "mine", **cfg), tmp_path / "run")
