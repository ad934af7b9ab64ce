"""Checkpoints written by other tools load to the very tensors that were saved, and nothing in
their pickles is ever constructed or called."""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import make_model
from safetensors.torch import save_file

from landscape import UserError, load_checkpoint
from landscape.assets.checkpoint import read_state_dicts
from landscape.assets.pickles import StandIn
from landscape.assets.state_dicts import fit_prefix

ARCH = {"arch": "mnist1d_cnn", "num_classes": 10, "arch_kwargs": {"width": 4}}


@dataclasses.dataclass
class TrainConfig:  # the StarSSE paper's config dataclass, saved inside its checkpoints
    lr: float = 0.1
    epochs: int = 10
    name: str = "starsse"


def _prefixed(state: dict, prefix: str) -> OrderedDict:
    return OrderedDict((prefix + k, v) for k, v in state.items())


def _optimizer_state(model: torch.nn.Module) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 40)).sum().backward()
    opt.step()
    model.zero_grad()
    return opt.state_dict()


def layouts(model: torch.nn.Module) -> dict[str, tuple[str, object]]:
    """File name and saved object of every layout of issue 17, item 4."""
    sd = model.state_dict()
    lightning = {
        "epoch": 9, "global_step": 90, "pytorch-lightning_version": "2.4.0",
        "state_dict": OrderedDict(_prefixed(sd, "model."),
                                  **{"loss_fn.weight": torch.ones(10)}),  # another submodule
        "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 10}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.3),
                                                                 "dirpath": "/runs/ckpts"}},
        "optimizer_states": [_optimizer_state(make_model(9))],
        "lr_schedulers": [{"T_max": 10, "last_epoch": 9}],
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": np.float64(0.1), "width": np.int64(4), "config": TrainConfig(),
                             "args": argparse.Namespace(seed=1), "root": pathlib.Path("/data")},
    }
    paper = {"model_state": sd, "optimizer": _optimizer_state(make_model(9)),
             "scaler": torch.amp.GradScaler("cpu").state_dict(), "config": TrainConfig(),
             "best_acc": np.float32(91.5)}
    return {
        "lightning": ("epoch=9-step=90.ckpt", lightning),
        "ddp": ("ddp.pt", {"state_dict": _prefixed(sd, "module."), "epoch": 3}),
        "compile": ("compiled.pth", _prefixed(sd, "_orig_mod.")),
        "ddp+compile": ("ddp_compiled.pt", {"model": _prefixed(sd, "module._orig_mod.")}),
        "paper": ("starsse.pt", paper),
        "ema": ("ema.pth", {"state_dict_ema": sd, "epoch": 5, "arch": "mnist1d_cnn"}),
        "tutorial": ("tutorial.pt", {"model_state_dict": sd, "optimizer_state_dict": paper["optimizer"],
                                     "epoch": 2, "loss": 0.4}),
        "module": ("deepspeed.bin", {"module": sd, "ds_version": "0.14"}),
    }


def _assert_identical(model: torch.nn.Module, original: dict) -> None:
    loaded = model.state_dict()
    assert list(loaded) == list(original)
    for k, v in original.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v), k


@pytest.mark.parametrize("layout", ["lightning", "ddp", "compile", "ddp+compile", "paper", "ema",
                                    "tutorial", "module"])
def test_every_layout_loads_bit_identical(tmp_path, layout):
    model = make_model(1)
    name, obj = layouts(model)[layout]
    torch.save(obj, tmp_path / name)
    ckpt = load_checkpoint(tmp_path / name, **ARCH)
    _assert_identical(ckpt.model, model.state_dict())
    assert not ckpt.model.training


def test_safetensors_of_another_tool_has_its_prefix_removed(tmp_path):
    model = make_model(2)
    save_file(dict(_prefixed(model.state_dict(), "model.")), str(tmp_path / "hf.safetensors"))
    _assert_identical(load_checkpoint(tmp_path / "hf.safetensors", **ARCH).model, model.state_dict())


def test_state_dict_key_chooses_and_strip_prefix_forces(tmp_path):
    model, ema = make_model(3), make_model(4)
    torch.save({"state_dict": model.state_dict(), "state_dict_ema": ema.state_dict()}, tmp_path / "t.pt")
    _assert_identical(load_checkpoint(tmp_path / "t.pt", **ARCH).model, model.state_dict())
    chosen = load_checkpoint(tmp_path / "t.pt", **ARCH, state_dict_key="state_dict_ema")
    _assert_identical(chosen.model, ema.state_dict())
    torch.save({"outer": {"weights": _prefixed(model.state_dict(), "net.")}}, tmp_path / "n.pt")
    with pytest.raises(UserError, match="holds no state dict.*'outer'"):
        load_checkpoint(tmp_path / "n.pt", **ARCH)
    with pytest.raises(UserError, match="does not fit.*--strip-prefix"):
        load_checkpoint(tmp_path / "n.pt", **ARCH, state_dict_key="outer/weights")
    forced = load_checkpoint(tmp_path / "n.pt", **ARCH, state_dict_key="outer/weights", strip_prefix="net.")
    _assert_identical(forced.model, model.state_dict())
    with pytest.raises(UserError, match="no entry 'missing'.*'outer'"):
        load_checkpoint(tmp_path / "n.pt", **ARCH, state_dict_key="missing")
    with pytest.raises(UserError, match="--strip-prefix body.: no tensor name"):
        load_checkpoint(tmp_path / "n.pt", **ARCH, state_dict_key="outer/weights", strip_prefix="body.")


def test_prefix_is_removed_only_when_that_makes_the_names_fit():
    want = ["model.weight", "bias"]  # an architecture whose own names start with "model."
    assert fit_prefix(want, want) == ""
    assert fit_prefix(["module.model.weight", "module.bias"], want) == "module."
    assert fit_prefix(["_orig_mod.a", "_orig_mod.b"], ["x"]) == "_orig_mod."  # reported as it fits
    assert fit_prefix(["a", "b"], ["x"]) == ""
    assert fit_prefix(["a"], ["x"], forced="net.") == "net."


def test_read_state_dicts_lists_tensors_without_an_architecture(tmp_path):
    model = make_model(5)
    name, obj = layouts(model)["paper"]
    torch.save(obj, tmp_path / name)
    found, meta = read_state_dicts(tmp_path / name)
    assert meta is None and found[0].where == "'model_state'"
    _assert_identical_dict(found[0].tensors, model.state_dict())


def _assert_identical_dict(got: dict, want: dict) -> None:
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_non_tensor_entries_become_inert_stand_ins(tmp_path, monkeypatch):
    """A config class the file names is never imported: what it would build is an inert record."""
    model = make_model(6)
    name, obj = layouts(model)["paper"]
    torch.save(obj, tmp_path / name)
    seen = []
    monkeypatch.setattr(TrainConfig, "__setstate__", lambda self, s: seen.append(s), raising=False)
    before = set(torch.serialization.get_safe_globals())
    loaded = torch.load(tmp_path / name, weights_only=False)  # ground truth: what pickle would do
    assert isinstance(loaded["config"], TrainConfig) and seen  # the real class runs code here ...
    seen.clear()
    load_checkpoint(tmp_path / name, **ARCH)
    assert not seen  # ... and never under load_checkpoint
    assert set(torch.serialization.get_safe_globals()) == before  # the stand-ins outlive no load


def _writes(path):
    """Payloads that would write ``path`` when unpickled."""

    class Open:
        def __reduce__(self):
            return (open, (str(path), "w"))

    class System:
        def __reduce__(self):
            return (os.system, (f"touch {path}",))

    class Touch:  # a method: pickled through builtins.getattr
        def __reduce__(self):
            return (pathlib.Path.touch, (pathlib.Path(path),))

    class Setstate:  # a class of "the tool" whose __setstate__ writes
        def __reduce__(self):
            return (_touching_class, (str(path),))

    return {"open": Open(), "os.system": System(), "getattr": Touch(), "class": Setstate()}


class _touching_class:  # noqa: N801 - the kind of class a payload may name
    def __init__(self, path):
        pathlib.Path(path).touch()


@pytest.mark.parametrize("payload", ["open", "os.system", "getattr", "class"])
@pytest.mark.parametrize("where", ["top", "nested", "legacy", "plain-pickle"])
def test_a_pickle_that_would_write_a_file_never_does(tmp_path, payload, where):
    marker = tmp_path / "pwned"
    evil = _writes(marker)[payload]
    obj = evil if where == "top" else {"state_dict": make_model(0).state_dict(), "extra": evil}
    path = tmp_path / "evil.ckpt"
    if where == "plain-pickle":
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=where != "legacy")
    try:
        ckpt = load_checkpoint(path, **ARCH)
    except UserError as exc:
        message = str(exc)
        assert "\n" not in message and "\x1b" not in message and path.name in message
        assert message.startswith(("refusing", f"{path.name} holds no state dict",
                                   f"{path.name} is not a readable")), message
    else:  # only an unknown class, never a function of builtins/os, may load: as an inert stand-in
        assert payload == "class" and where == "nested"
        _assert_identical(ckpt.model, make_model(0).state_dict())
    assert not marker.exists()


class HParams(dict):  # a dict subclass: its items cannot be given to an inert stand-in
    pass


def test_a_refusal_is_one_complete_line_naming_the_object(tmp_path):
    torch.save({"state_dict": make_model(0).state_dict(), "hparams": HParams(lr=0.1)}, tmp_path / "h.ckpt")
    with pytest.raises(UserError) as exc:
        load_checkpoint(tmp_path / "h.ckpt", **ARCH)
    message = str(exc.value)
    assert "HParams" in message and "\n" not in message and "\x1b" not in message
    assert message.endswith("or as .safetensors")  # complete, not cut
    torch.save({"model": make_model(0), "epoch": 1}, tmp_path / "whole.pt")
    with pytest.raises(UserError, match=r"'model' \(a pickled landscape.assets.models.Mnist1dCNN object\)"):
        load_checkpoint(tmp_path / "whole.pt", **ARCH)


def test_stand_ins_record_without_running():
    cls = type("X", (StandIn,), {"target": "pkg.X"})
    obj = cls.__new__(cls, 1, 2)
    obj.__setstate__({"a": 1})
    assert obj.args == (1, 2) and obj.state == {"a": 1} and "pkg.X" in repr(obj)
