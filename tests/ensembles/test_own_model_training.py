"""Training from Python on a researcher's own model objects and data, and the image transform a
model is trained with carried on to its evaluation."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_MODEL, gray_by_hand, gray_imagefolder, tiny8
from safetensors.torch import load_file
from torch import nn

from cli.main import main
from ensembles import RunConfig, train
from ensembles.evaluate import evaluate
from landscape import Data, load_checkpoint, load_dataset, read_paths, register_model, save_checkpoint, trust_arch
from landscape.assets.imports import import_object


@pytest.fixture
def own(tmp_path, monkeypatch):
    """A TinyCNN of the user's file, saved as pre.safetensors, and 300/200 samples as ``Data``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodel.py").write_text(TINY_MODEL)
    torch.manual_seed(0)
    model = import_object("mymodel.py:TinyCNN", what="--arch")(num_classes=10)
    save_checkpoint(model, "pre.safetensors")
    train_set, test_set = load_dataset("mnist1d", "train"), load_dataset("mnist1d", "test")
    data = Data(train=(train_set.inputs[:300], train_set.labels[:300]),
                test=torch.utils.data.TensorDataset(test_set.inputs[:200], test_set.labels[:200]), name="mine")
    return model, data


def _config(pretrained, data) -> RunConfig:
    return RunConfig("starsse", (pretrained,), data, members=3, epochs=1, lr=0.05, cycle_epochs=1,
                     cycle_lr=0.05, batch_size=64)


def test_a_module_and_data_objects_train_the_members_of_the_same_weights_in_a_file(own, tmp_path):
    model, data = own
    from_object = train(_config(model, data), tmp_path / "obj")  # the model's class may load its members
    trust_arch("mymodel.py:TinyCNN")  # a file's recorded arch is imported only when the user says so
    train(_config("pre.safetensors", data), tmp_path / "file")
    assert from_object.config.pretrained[0].startswith("module:")
    for i in (1, 2, 3):
        a = load_file(tmp_path / "obj" / f"member-{i}.safetensors")
        b = load_file(tmp_path / "file" / f"member-{i}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert train(_config(model, data), tmp_path / "obj").members == from_object.members  # resumed, not retrained
    # the members as objects judge as the run directory does (its saved probabilities)
    members = [load_checkpoint(tmp_path / "obj" / f"member-{i}.safetensors").model for i in (1, 2, 3)]
    by_run, by_objects = evaluate(tmp_path / "obj", data=data), evaluate(members, data=data)
    assert by_objects.method == "members" and by_run.method == "starsse"
    for a, b in zip(by_run.rows, by_objects.rows):
        assert a.accuracy == b.accuracy and a.nll == pytest.approx(b.nll, abs=1e-5)
    assert by_run.soup_accuracy == by_objects.soup_accuracy


# ----------------------------------------------------------------------------- image transforms

FLAGS = ["--img-size", "8", "--img-channels", "1", "--mean", "0.5", "--std", "0.25"]
RECORDED = {"size": 8, "resize": 8, "mean": [0.5], "std": [0.25], "channels": 1, "interpolation": "bilinear"}


def _own_accuracy(path, root) -> float:
    model = load_checkpoint(path).model.eval()
    x, y = gray_by_hand(root, "test")
    with torch.no_grad():
        return 100.0 * int((model(x).argmax(-1) == y).sum()) / len(y)


def test_a_model_is_evaluated_with_the_transform_it_was_trained_with(tmp_path, capsys):
    register_model("tiny8", tiny8)
    root = gray_imagefolder(tmp_path / "imgs", n=12)
    data = f"imagefolder:{root}"
    pre, ft = tmp_path / "pre.safetensors", tmp_path / "ft.safetensors"
    assert main(["pretrain", "--data", data, "--arch", "tiny8", *FLAGS, "--epochs", "3", "--lr", "0.1",
                 "--batch-size", "8", "--out", str(pre), "--quiet"]) == 0, capsys.readouterr().err
    assert load_checkpoint(pre).meta.extra["image"] == RECORDED
    # no image flags from here on: 8 x 8 greyscale is what the checkpoints record (the default for
    # an ImageFolder tree would be 224 px RGB, which this model cannot even take)
    assert main(["finetune", str(pre), "--data", data, "--epochs", "2", "--batch-size", "8", "--out", str(ft),
                 "--quiet"]) == 0, capsys.readouterr().err
    assert load_checkpoint(ft).meta.extra["image"] == RECORDED
    out = tmp_path / "paths"
    assert main(["interp", str(pre), str(ft), "--points", "2", "--data", data, "--out", str(out), "--quiet",
                 "--engine", "loop", "--no-plots", "--bn", "keep"]) == 0, capsys.readouterr().err
    ps = read_paths(out / "paths.h5")
    assert ps.config["identity"]["image"] == RECORDED
    assert ps.curve(0, "test", "acc")[-1] == pytest.approx(_own_accuracy(ft, root))
    run = tmp_path / "run"
    assert main(["train", "--method", "local-de", "--pretrained", str(pre), "--data", data, "--members", "2",
                 "--epochs", "1", "--batch-size", "8", "--out", str(run), "--quiet"]) == 0, capsys.readouterr().err
    record = json.loads((run / "member-1.json").read_text())
    assert record["test_acc"] == pytest.approx(_own_accuracy(run / "member-1.safetensors", root))
    assert load_checkpoint(run / "member-2.safetensors").meta.extra["image"] == RECORDED


def test_only_checkpoints_trained_on_the_data_give_its_default_transform(tmp_path):
    """pre was trained on tree A at mean 0.5, ft on tree B at mean 0.2: on B both are evaluated at
    ft's 0.2 whatever their order; two different transforms on the same data need flags."""
    from dataclasses import replace

    from landscape import GridSettings, ImageTransform, as_checkpoint
    from landscape.grid.prepare import image_transform

    a, b = gray_imagefolder(tmp_path / "a", n=1), gray_imagefolder(tmp_path / "b", n=1)
    on_a, on_b = f"imagefolder:{a}", f"imagefolder:{b}"

    def ckpt(data, mean, name):
        c = as_checkpoint(tiny8(), name=name)
        tf = {"size": 8, "mean": [mean], "std": [0.25], "channels": 1}
        return replace(c, meta=replace(c.meta, dataset=data, extra={"image": tf}))

    pre, ft = ckpt(on_a, 0.5, "pre"), ckpt(on_b, 0.2, "ft")
    for order in ([pre, ft], [ft, pre]):
        assert image_transform(on_b, GridSettings(), order).mean == (0.2,)
    other = ckpt(on_b, 0.7, "other")
    with pytest.raises(Exception, match="different image transforms"):
        image_transform(on_b, GridSettings(), [ft, other])
    assert image_transform(on_b, GridSettings(image=ImageTransform(mean=(0.3,))), [ft, other]).mean == (0.3,)


def test_a_model_object_whose_class_cannot_be_rebuilt_is_refused_before_training(own, tmp_path):
    from landscape.errors import UserError

    _, data = own

    class Local(nn.Module):  # defined in a function: no import path rebuilds it
        def __init__(self, num_classes=10):
            super().__init__()
            self.head = nn.Linear(40, num_classes)

        def forward(self, x):
            return self.head(x)

    with pytest.raises(UserError, match="refusing to write"):
        train(_config(Local(), data), tmp_path / "local")
    assert not list((tmp_path / "local").glob("member-*"))
