"""Checkpoints of other tools from the command line: ``landscape info`` lists their tensors
without --arch, and every command that reads checkpoints refuses a pickle that would write a file,
in one line with exit code 2, without the file ever being written."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections import OrderedDict

import pytest
import torch
from conftest import make_model, meta

from cli.main import main
from landscape import save_checkpoint

ARCH = ["--arch", "mnist1d_cnn", "--num-classes", "10", "--arch-kwargs", '{"width": 4}']
SMALL = ["--train-subset", "64", "--test-subset", "64", "--quiet", "--no-plots"]


@dataclasses.dataclass
class TrainConfig:  # a training script's config, saved beside the weights
    lr: float = 0.1


def _run(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _layouts(sd: dict) -> dict[str, tuple[str, object, str, str]]:
    """name: (file, saved object, entry holding the state dict, prefix of its names)."""
    def pre(p):
        return OrderedDict((p + k, v) for k, v in sd.items())
    return {
        "lightning": ("e.ckpt", {"state_dict": pre("model."), "hyper_parameters": {"c": TrainConfig()},
                                 "optimizer_states": [{"state": {}, "param_groups": []}]},
                      "'state_dict'", "model."),
        "ddp": ("ddp.pt", {"state_dict": pre("module.")}, "'state_dict'", "module."),
        "compile": ("c.pth", pre("_orig_mod."), "the top level", "_orig_mod."),
        "paper": ("p.pt", {"model_state": sd, "optimizer": {"state": {}}, "config": TrainConfig(),
                           "scaler": {"scale": 65536.0}}, "'model_state'", ""),
        "ema": ("ema.pt", {"state_dict_ema": sd, "epoch": 3}, "'state_dict_ema'", ""),
    }


@pytest.mark.parametrize("layout", ["lightning", "ddp", "compile", "paper", "ema"])
def test_info_lists_the_tensors_of_any_checkpoint_without_arch(capsys, tmp_path, layout):
    sd = make_model(0).state_dict()
    name, obj, where, prefix = _layouts(sd)[layout]
    torch.save(obj, tmp_path / name)
    code, out, err = _run(capsys, ["info", str(tmp_path / name), "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["state_dict"] == where and "metadata" not in doc
    assert [t["name"] for t in doc["tensors"]] == [prefix + k for k in sd]
    for t, v in zip(doc["tensors"], sd.values()):
        assert t["shape"] == list(v.shape) and t["count"] == v.numel()
        assert t["dtype"] == str(v.dtype).removeprefix("torch.")
    code, out, _ = _run(capsys, ["info", str(tmp_path / name)])  # text: one line per tensor
    assert code == 0 and f"{prefix}features.0.0.weight  (4, 1, 5)  float32  20" in out
    code, out, err = _run(capsys, ["info", str(tmp_path / name), "--json", *ARCH])  # as a model
    assert code == 0, err
    doc = json.loads(out)
    assert doc["metadata"]["arch"] == "mnist1d_cnn" and [t["name"] for t in doc["tensors"]] == list(sd)


def test_flags_choose_the_entry_and_prefix(capsys, tmp_path):
    sd = make_model(0).state_dict()
    torch.save({"weights": OrderedDict(("net." + k, v) for k, v in sd.items())}, tmp_path / "n.pt")
    code, _, err = _run(capsys, ["info", str(tmp_path / "n.pt")])
    assert code == 2 and "--state-dict-key" in err and len(err.strip().splitlines()) == 1
    code, out, err = _run(capsys, ["info", str(tmp_path / "n.pt"), "--json", "--state-dict-key", "weights",
                                   "--strip-prefix", "net.", *ARCH])
    assert code == 0, err
    assert [t["name"] for t in json.loads(out)["tensors"]] == list(sd)


def _evil(marker, payload: str):
    """A Lightning-like checkpoint whose hyper-parameters would write ``marker`` when unpickled."""

    class Payload:
        def __reduce__(self):
            if payload == "open":
                return (open, (str(marker), "w"))
            return (os.system, (f"touch {marker}",))

    return {"state_dict": OrderedDict(("model." + k, v) for k, v in make_model(0).state_dict().items()),
            "hyper_parameters": {"lr": 0.1, "logger": Payload()}}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A pre-trained checkpoint A, a second B, and a one-member run directory."""
    root = tmp_path_factory.mktemp("good")
    a, b = root / "A.safetensors", root / "B.safetensors"
    save_checkpoint(make_model(0), a, meta())
    save_checkpoint(make_model(1), b, meta())
    code = main(["train", "--method", "local-de", "--pretrained", str(a), "--members", "1", "--epochs", "1",
                 "--out", str(root / "run"), "--quiet", "--device", "cpu"])
    assert code == 0
    return a, b, root / "run"


def _commands(evil: str, good, out) -> dict[str, list[str]]:
    a, b, run = map(str, good)
    return {
        "plane": ["plane", evil, a, b, *ARCH, *SMALL, "--grid", "2", "--out", f"{out}/plane"],
        "interp": ["interp", a, evil, *ARCH, *SMALL, "--points", "2", "--out", f"{out}/interp"],
        "interp --pretrained": ["interp", a, b, "--pretrained", evil, *ARCH, *SMALL, "--points", "2",
                                "--out", f"{out}/interp2"],
        "info": ["info", evil],
        "finetune": ["finetune", evil, *ARCH, "--epochs", "1", "--quiet", "--out", f"{out}/m.safetensors"],
        "train --pretrained": ["train", "--method", "local-de", "--pretrained", evil, "--arch", "mnist1d_cnn",
                               "--num-classes", "10", "--members", "1", "--epochs", "1", "--quiet",
                               "--out", f"{out}/run-pre"],
        "train --init": ["train", "--method", "fge", "--init", evil, "--members", "2", "--cycle-epochs", "1",
                         "--cycle-lr", "0.01", "--quiet", "--out", f"{out}/run-init"],
        "ensemble": ["ensemble", f"{out}/run", "--out", f"{out}/report", "--quiet"],
    }


@pytest.mark.parametrize("payload", ["open", "os.system"])
@pytest.mark.parametrize("command", ["plane", "interp", "interp --pretrained", "info", "finetune",
                                     "train --pretrained", "train --init", "ensemble"])
def test_every_command_refuses_a_pickle_that_would_write_a_file(capsys, tmp_path, good, payload, command,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save(_evil(marker, payload), evil)
    if command == "ensemble":  # a run directory whose member file was replaced by the pickle
        shutil.copytree(good[2], tmp_path / "run")
        shutil.copy(evil, tmp_path / "run" / "member-1.safetensors")
    code, out, err = _run(capsys, _commands(str(evil), good, tmp_path)[command])
    lines = err.strip().splitlines()
    assert code == 2, (command, out, err)
    assert len(lines) == 1 and "\x1b" not in err and "Traceback" not in err, err
    if command == "ensemble":  # run directories hold safetensors, which are never unpickled, checked by hash
        assert "member-1.safetensors does not match member-1.json" in lines[0], lines[0]
    else:
        assert "refusing evil.ckpt: its pickle calls" in lines[0], lines[0]
    assert not marker.exists()
