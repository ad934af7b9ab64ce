"""Models of one's own: import-path archs, the rule that a checkpoint alone never imports code,
nn.Module objects wherever checkpoints are taken, and one-line errors (landscape.assets.modules)."""

from __future__ import annotations

import copy
import textwrap

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, make_model, meta, perturbed

import landscape
from landscape import CheckpointMeta, UserError, as_checkpoint, create_model, load_checkpoint
from landscape.assets import checkpoint as files
from landscape.assets.modules import allowing_archs

TINY = TINY_MODEL + """
import os

def not_a_model(num_classes=10):
    return 3

def broken(num_classes=10):
    raise ValueError("broken factory\\nsecond line")

NOT_CALLABLE = 7
"""


def write(path, text=TINY):
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """tmp/mymodel.py, with the current directory at tmp."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "mymodel.py")
    return tmp_path


def test_file_arch_builds_only_when_named(tiny):
    with pytest.raises(UserError, match="refusing to import arch 'mymodel.py:TinyCNN'.*--arch"):
        create_model("mymodel.py:TinyCNN", 4)
    assert not (tiny / "mymodel.imported").exists()
    model = create_model("mymodel.py:TinyCNN", 4, trust_arch=True, width=5)
    assert model.head.out_features == 4 and model.conv.out_channels == 5
    with allowing_archs("./mymodel.py:TinyCNN"):  # the same file, spelt otherwise
        assert create_model(f"{tiny}/mymodel.py:TinyCNN", 4).head.out_features == 4


def test_package_module_factory(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg_models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write(pkg / "nets.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = create_model("userpkg_models.nets:TinyCNN", 3, trust_arch=True)
    assert type(model).__module__ == "userpkg_models.nets" and model.head.out_features == 3


@pytest.mark.parametrize("arch, message", [
    ("missing.py:TinyCNN", "model file missing.py does not exist"),
    ("mymodel.py:Nope", "has no 'Nope'"),
    ("mymodel.py:NOT_CALLABLE", "names a int, not a callable"),
    ("mymodel.py:not_a_model", "returned int, not a torch nn.Module"),
    ("mymodel.py:broken", "failed: ValueError: broken factory$"),
    ("no_such_package_xyz.mod:f", "ModuleNotFoundError: No module named 'no_such_package_xyz'"),
    ("bad_import.py:f", r"importing \S*bad_import.py failed: NameError: name 'undefined_name' is not defined"),
])
def test_errors_are_one_line(tiny, arch, message):
    write(tiny / "bad_import.py", "undefined_name\n")
    with pytest.raises(UserError, match=message) as exc:
        create_model(arch, 2, trust_arch=True)
    assert "\n" not in str(exc.value)


def test_timm_model_without_pretrained_cfg_is_one_line():
    from timm.models import register_model

    @register_model
    def landscape_test_no_cfg(pretrained=False, num_classes=10):
        return torch.nn.Linear(4, num_classes)

    with pytest.raises(UserError, match="pretrained_cfg.*register_model") as exc:
        create_model("timm:landscape_test_no_cfg", 3)
    assert "\n" not in str(exc.value)


def test_checkpoint_metadata_alone_never_imports(tmp_path, monkeypatch):
    """A file naming evil.py:Net is refused until the user names the arch; the import's side
    effect (a marker file) does not happen before."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "evil.py", TINY.replace("class TinyCNN", "class Net"))
    model = torch.nn.Module()  # the file is written without building anything
    ckpt = tmp_path / "ckpts" / "m.safetensors"
    ckpt.parent.mkdir()
    files.save_checkpoint(model, ckpt, CheckpointMeta("evil.py:Net", 10, {}, "mnist1d"))
    for attempt in (lambda: load_checkpoint(ckpt), lambda: landscape.plane([ckpt], out=tmp_path / "p.h5"),
                    lambda: landscape.interpolate([ckpt, ckpt], out=tmp_path / "i.h5"),
                    lambda: load_checkpoint(ckpt, arch="other.py:Net")):
        with pytest.raises(UserError, match="refusing to import arch 'evil.py:Net'.*--arch evil.py:Net"):
            attempt()
    assert not (tmp_path / "evil.imported").exists()


def test_relative_arch_found_beside_the_checkpoint(tiny, tmp_path_factory, monkeypatch):
    net = create_model("mymodel.py:TinyCNN", 10, trust_arch=True)
    path = tiny / "a.safetensors"
    landscape.save_checkpoint(net, path, CheckpointMeta("mymodel.py:TinyCNN", 10, {}, "mnist1d"))
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    loaded = load_checkpoint(path, arch="mymodel.py:TinyCNN")  # recorded as given, found beside it
    assert loaded.meta.arch == "mymodel.py:TinyCNN"
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v)


def test_as_checkpoint_copies_and_describes_a_module(tiny, monkeypatch):
    pkg = tiny / "userpkg_desc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write(pkg / "nets.py")
    monkeypatch.syspath_prepend(str(tiny))
    net = create_model("userpkg_desc.nets:TinyCNN", 7, trust_arch=True).train()
    before = copy.deepcopy(net.state_dict())
    ckpt = as_checkpoint(net, name="mine", dataset="mnist1d")
    assert (ckpt.meta.arch, ckpt.meta.num_classes, ckpt.name) == ("userpkg_desc.nets:TinyCNN", 7, "mine")
    assert ckpt.sha256.startswith("weights:") and not ckpt.model.training and net.training
    assert ckpt.model is not net and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    out = tiny / "net.safetensors"  # an importable class: the file reads back, bit-identical
    landscape.save_checkpoint(net, out)
    back = load_checkpoint(out, arch="userpkg_desc.nets:TinyCNN")
    assert all(torch.equal(back.model.state_dict()[k], v) for k, v in before.items())
    assert as_checkpoint(torch.nn.Sequential(torch.nn.Linear(2, 5))).meta.num_classes == 5


def test_save_refuses_what_cannot_be_read_back(tiny):
    class Local(torch.nn.Module):  # defined in a function: no import path rebuilds it
        def __init__(self, num_classes=3):
            super().__init__()
            self.fc = torch.nn.Linear(2, num_classes)

    with pytest.raises(UserError, match="refusing to write x.safetensors: its arch 'module:.*Local"):
        landscape.save_checkpoint(Local(), tiny / "x.safetensors")
    net = create_model("mymodel.py:TinyCNN", 10, trust_arch=True, width=6)
    with pytest.raises(UserError, match="builds other tensors.*arch_kwargs"):
        landscape.save_checkpoint(net, tiny / "y.safetensors", CheckpointMeta("mymodel.py:TinyCNN", 10))
    assert not (tiny / "x.safetensors").exists() and not (tiny / "y.safetensors").exists()


SMALL = landscape.PlaneConfig(grid=3, train_subset=256, test_subset=128, engine="loop")


def _members():
    base = make_model(0)
    return [base, perturbed(base, 1), perturbed(base, 2)]


def test_modules_give_the_numbers_of_files(tmp_path):
    models = _members()
    paths = []
    for i, m in enumerate(models):
        paths.append(tmp_path / f"m{i}.safetensors")
        landscape.save_checkpoint(m, paths[-1], meta())
    from_files = landscape.plane(paths, out=tmp_path / "f.h5", config=SMALL)
    from_modules = landscape.plane(models, out=tmp_path / "m.h5", config=SMALL, data="mnist1d")
    for split in ("train", "test"):
        np.testing.assert_array_equal(from_files.loss(split), from_modules.loss(split))
    cfg = landscape.PathConfig(points=3, train_subset=256, test_subset=128, engine="loop")
    pf = landscape.interpolate(paths[:2], out=tmp_path / "pf.h5", config=cfg)
    pm = landscape.interpolate({"a": models[0], "b": models[1]}, out=tmp_path / "pm.h5", config=cfg, data="mnist1d")
    assert pm.names == ["a", "b"]
    np.testing.assert_array_equal(pf.curve(0, "test", "loss"), pm.curve(0, "test", "loss"))
    rf = landscape.path_report(pf, [load_checkpoint(p) for p in paths[:2]])[0]
    rm = landscape.path_report(pm, models[:2])[0]
    assert (rf.distance, rf.acc_barrier_test, rf.label) == (rm.distance, rm.acc_barrier_test, rm.label)


def test_vit_given_other_input_size_is_one_line(tmp_path):
    """A timm ViT built for 32 px given 224 px inputs: one line naming the input size."""
    vit = create_model("timm:vit_tiny_patch16_224", 2, img_size=32, depth=1, embed_dim=16, num_heads=2)
    data = landscape.Data(train=(torch.randn(8, 3, 224, 224), torch.arange(8) % 2),
                          test=(torch.randn(4, 3, 224, 224), torch.arange(4) % 2), name="big", num_classes=2)
    with pytest.raises(UserError, match=r"cannot take inputs .*224, 224\)\): AssertionError: Input height") as exc:
        landscape.plane([vit], out=tmp_path / "v.h5", data=data, config=landscape.PlaneConfig(grid=2, bn="keep"))
    assert "\n" not in str(exc.value)
