"""Training on a researcher's own model, data and checkpoint files through the CLI: `pretrain`,
`finetune`, `train` and `ensemble` with `--arch file.py:factory`, `--data file.py:factory` and a
Lightning-style `.ckpt`, checked against the same weights given as `.safetensors` and against the
members' own evaluation loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL
from safetensors.torch import load_file

from cli.main import main
from landscape import load_checkpoint, load_dataset

FACTORY = '''
import torch
from landscape import load_dataset


def make():
    train, test = load_dataset("mnist1d", "train"), load_dataset("mnist1d", "test")
    return {"train": (train.inputs[:300], train.labels[:300]), "test": (test.inputs[:200], test.labels[:200])}


def shuffled():
    """The same inputs with random labels: nothing can be learnt."""
    g = torch.Generator().manual_seed(0)
    d = make()
    return {s: (x, torch.randint(0, 10, (len(y),), generator=g)) for s, (x, y) in d.items()}
'''
ARCH = "mymodel.py:TinyCNN"
ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["--method", "local-de", "--members", "2", "--epochs", "1", "--lr", "0.05", "--batch-size", "64",
         "--quiet"]


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodel.py").write_text(TINY_MODEL)
    (tmp_path / "mydata.py").write_text(FACTORY)
    return tmp_path


def _test_split():
    test = load_dataset("mnist1d", "test")
    return test.inputs[:200], test.labels[:200]


def _probs(path) -> np.ndarray:
    model = load_checkpoint(path, trust_arch=True).model.eval()
    x, _ = _test_split()
    with torch.no_grad():
        return torch.softmax(model(x), -1).numpy()


def _pretrain(capsys) -> None:
    code = main(["pretrain", "--data", "mydata.py:make", "--arch", ARCH, "--epochs", "1", "--out", "pre.safetensors",
                 "--quiet"])
    assert code == 0, capsys.readouterr().err


def test_a_lightning_ckpt_trains_the_members_of_the_same_weights_as_safetensors(work, capsys):
    _pretrain(capsys)
    pre = load_checkpoint("pre.safetensors", trust_arch=True)
    assert pre.meta.dataset == "make" and pre.meta.arch == ARCH
    state = {f"model.{k}": v for k, v in pre.model.state_dict().items()}
    torch.save({"state_dict": state, "optimizer_states": [{"lr": 0.1}], "epoch": 3, "hyper_parameters": {"w": 3}},
               "pre.ckpt")
    common = [*TRAIN, "--data", "mydata.py:make", "--arch", ARCH]
    assert main(["train", *common, "--pretrained", "pre.safetensors", "--out", "run_st"]) == 0
    assert main(["train", *common, "--pretrained", "pre.ckpt", "--num-classes", "10", "--strip-prefix", "model.",
                 "--out", "run_ckpt"]) == 0, capsys.readouterr().err
    for i in (1, 2):
        a, b = load_file(f"run_st/member-{i}.safetensors"), load_file(f"run_ckpt/member-{i}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    manifest = json.loads((work / "run_ckpt" / "manifest.json").read_text())
    assert manifest["config"]["data"] == "make" and set(manifest["config"]["data_content"]) == {"train", "test"}
    # the recorded test accuracy and the ensemble's are those of the members' own evaluation loop
    _, y = _test_split()
    probs = [_probs(f"run_ckpt/member-{i}.safetensors") for i in (1, 2)]
    for i, p in enumerate(probs, 1):
        record = json.loads((work / "run_ckpt" / f"member-{i}.json").read_text())
        assert record["test_acc"] == pytest.approx(100 * np.mean(p.argmax(1) == y.numpy()))
    code = main(["ensemble", "run_ckpt", "run_st", "--data", "mydata.py:make", "--arch", ARCH, "--out", "rep",
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((work / "rep" / "ensemble.json").read_text())
    table = doc["runs"][0]["table"]
    acc = 100 * np.mean((probs[0] + probs[1]).argmax(1) == y.numpy())
    assert table[1]["accuracy"] == pytest.approx(acc)
    assert table[1]["accuracy_low"] < acc < table[1]["accuracy_high"]
    # the same members: a paired difference of exactly zero, which decides nothing
    (same,) = doc["comparisons"]
    assert (same["a"], same["b"], same["size"]) == ("run_ckpt", "run_st", 2)
    assert same["accuracy"]["value"] == same["accuracy"]["low"] == same["accuracy"]["high"] == 0
    assert same["accuracy"]["verdict"] == "inconclusive"


def test_a_rerun_on_other_data_of_the_same_name_is_refused(work, capsys):
    _pretrain(capsys)
    common = [*TRAIN, "--members", "1", "--arch", ARCH, "--pretrained", "pre.safetensors", "--out", "run"]
    assert main(["train", *common, "--data", "mydata.py:make"]) == 0
    (work / "otherdata.py").write_text(FACTORY.replace("[:300]", "[:290]"))  # also named "make"
    capsys.readouterr()
    assert main(["train", *common, "--data", "otherdata.py:make"]) == 2
    assert "data_content" in capsys.readouterr().err
    # and its saved probabilities are never scored against the other data's labels
    assert main(["ensemble", "run", "--data", "otherdata.py:make", "--no-soups", "--out", "rep", "--quiet"]) == 2
    assert "other data named 'make'" in capsys.readouterr().err


def test_finetune_of_a_users_model_on_users_data(work, capsys):
    _pretrain(capsys)
    code = main(["finetune", "pre.safetensors", "--arch", ARCH, "--data", "mydata.py:make", "--epochs", "1",
                 "--seed", "3", "--out", "ft.safetensors", "--quiet"])
    out = capsys.readouterr()
    assert code == 0, out.err
    ft = load_checkpoint("ft.safetensors", trust_arch=True)
    assert ft.meta.dataset == "make" and ft.meta.seed == 3 and ft.meta.parent is not None
    _, y = _test_split()
    acc = 100 * np.mean(_probs("ft.safetensors").argmax(1) == y.numpy())
    assert f"test acc {acc:.2f}%" in out.out


def test_ensemble_warns_when_the_members_are_near_chance(work, capsys):
    _pretrain(capsys)
    assert main(["train", *TRAIN, "--data", "mydata.py:shuffled", "--arch", ARCH, "--pretrained", "pre.safetensors",
                 "--out", "run"]) == 0
    capsys.readouterr()
    assert main(["ensemble", "run", "--data", "mydata.py:shuffled", "--no-soups", "--out", "rep", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "near chance (10.0% for 10 classes)" in err and "members of run" in err


def test_ensemble_of_a_run_on_users_data_needs_that_data(work, capsys):
    _pretrain(capsys)
    assert main(["train", *TRAIN, "--members", "1", "--data", "mydata.py:make", "--arch", ARCH,
                 "--pretrained", "pre.safetensors", "--out", "run"]) == 0
    capsys.readouterr()
    fresh = subprocess.run([sys.executable, "-m", "cli", "ensemble", "run", "--no-soups", "--out", "rep", "--quiet"],
                           capture_output=True, text=True, cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert fresh.returncode == 2 and fresh.stderr.count("\n") == 1, fresh.stderr
    assert "'make'" in fresh.stderr and "--data" in fresh.stderr
    assert main(["ensemble", "run", "--data", "mydata.py:shuffled", "--no-soups", "--out", "rep", "--quiet"]) == 2
    assert "trained on 'make'" in capsys.readouterr().err
