"""``--data path/to/file.py:factory``: a user's own splits from the command line, and a dataset
factory recorded in a checkpoint never imported on the checkpoint's word."""

from __future__ import annotations

import numpy as np
from conftest import make_model, meta

from cli.main import main
from landscape import CheckpointMeta, Data, PlaneConfig, load_dataset, plane, read_surface, save_checkpoint

FACTORY = '''
from landscape import load_dataset


def make():
    train, test = load_dataset("mnist1d", "train"), load_dataset("mnist1d", "test")
    return {"train": (train.inputs[:300], train.labels[:300]), "test": (test.inputs[:200], test.labels[:200])}
'''


def test_data_from_a_users_file_gives_the_plane_of_the_same_data_from_python(three_ckpts, tmp_path, capsys):
    (tmp_path / "mydata.py").write_text(FACTORY)
    code = main(["plane", *map(str, three_ckpts), "--data", f"{tmp_path / 'mydata.py'}:make", "--grid", "3",
                 "--engine", "loop", "--out", str(tmp_path / "cli"), "--no-plots", "--quiet"])
    assert code == 0, capsys.readouterr().err
    train, test = load_dataset("mnist1d", "train"), load_dataset("mnist1d", "test")
    data = Data(train=(train.inputs[:300], train.labels[:300]), test=(test.inputs[:200], test.labels[:200]),
                name="make")
    ours = plane(three_ckpts, out=tmp_path / "py.h5", data=data,
                 config=PlaneConfig(grid=3, engine="loop", batch_size=512))
    cli = read_surface(tmp_path / "cli" / "plane.h5")
    for split in ("train", "test"):
        np.testing.assert_array_equal(cli.loss(split), ours.loss(split))
    assert cli.config["identity"]["data"] == ours.config["identity"]["data"]


def test_a_dataset_factory_recorded_in_a_checkpoint_is_not_imported(tmp_path, capsys):
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n\ndef make():\n    return {{}}\n")
    spec = f"{tmp_path / 'evil.py'}:make"
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"m{i}.safetensors")
        save_checkpoint(make_model(i), paths[-1], CheckpointMeta("mnist1d_cnn", 10, meta().arch_kwargs, spec))
    code = main(["plane", *map(str, paths), "--grid", "2", "--out", str(tmp_path / "out"), "--no-plots", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pass --data" in err
    assert not marker.exists()


def test_a_broken_data_factory_is_one_line(three_ckpts, tmp_path, capsys):
    (tmp_path / "broken.py").write_text("raise ImportError('no such thing')\n")
    for spec, says in ((f"{tmp_path / 'broken.py'}:make", "importing"), (f"{tmp_path / 'none.py'}:make", "does not exist"),
                       ("json:dumps", "failed: TypeError"), ("string:digits", "not a function"), ("string:capwords", "failed")):
        code = main(["plane", *map(str, three_ckpts), "--data", spec, "--grid", "2",
                     "--out", str(tmp_path / "o"), "--no-plots", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err
