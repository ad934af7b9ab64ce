"""Ensemble runs: the methods' definitions, the run directory contract, resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import make_model, meta

from ensembles import run as run_mod
from ensembles import training as train_mod
from ensembles.run import RunConfig, read_run, train
from landscape import UserError, load_checkpoint, save_checkpoint

BASE = dict(data="mnist1d", members=3, epochs=2, lr=0.05, batch_size=256)


@pytest.fixture(scope="module")
def pre(tmp_path_factory):
    path = tmp_path_factory.mktemp("pre") / "pre.safetensors"
    save_checkpoint(make_model(0), path, meta())
    return str(path)


def _cosine(lr, epochs):
    return [lr * 0.5 * (1 + math.cos(math.pi * (k - 1) / epochs)) for k in range(1, epochs + 1)]


@pytest.mark.parametrize("method", ["sse", "starsse"])
def test_cyclical_methods_follow_their_definition(pre, tmp_path, monkeypatch, method):
    starts, opt_states, lrs = [], [], []
    real_fit, real_epoch = run_mod.fit, train_mod.train_epoch

    def spy_fit(model, *args, **kwargs):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_fit(model, *args, **kwargs)

    def spy_epoch(model, opt, batches, *rest):
        opt_states.append(len(opt.state))
        lrs.append(opt.param_groups[0]["lr"])
        return real_epoch(model, opt, batches, *rest)

    monkeypatch.setattr(run_mod, "fit", spy_fit)
    monkeypatch.setattr(train_mod, "train_epoch", spy_epoch)
    cfg = RunConfig(method, (pre,), cycle_epochs=3, cycle_lr=0.1, **BASE)
    run = train(cfg, tmp_path / method)
    # learning rate at every epoch: E epochs of cosine from lr, then F epochs from cycle_lr each
    expected = _cosine(0.05, 2) + _cosine(0.1, 3) + _cosine(0.1, 3)
    assert lrs == pytest.approx(expected)
    assert [m["lrs"] for m in run.members] == [pytest.approx(_cosine(0.05, 2))] + \
        [pytest.approx(_cosine(0.1, 3))] * 2
    # a fresh optimizer (empty state) at the first epoch of every member
    assert [opt_states[i] for i in (0, 2, 5)] == [0, 0, 0] and opt_states[1] > 0
    members = [load_checkpoint(run.checkpoint_path(i)).model.state_dict() for i in (1, 2, 3)]
    origin_of_3 = members[0] if method == "starsse" else members[1]
    for k, v in members[0].items():  # member 2 starts from member 1 (weights and BN buffers)
        assert torch.equal(starts[1][k], v), k
    for k, v in origin_of_3.items():  # member 3: from member 1 (StarSSE) or member 2 (SSE)
        assert torch.equal(starts[2][k], v), k
    assert [m["start"] for m in run.members] == \
        ["pretrained:0", "member:1", "member:1" if method == "starsse" else "member:2"]


def test_run_directory_contract(pre, tmp_path):
    run = train(RunConfig("local-de", (pre,), **BASE), tmp_path / "r")
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["method"] == "local-de" and manifest["config"]["lr"] == 0.05
    assert [m["seed"] for m in run.members] == [0, 1, 2]
    assert "torch" in manifest["versions"]
    from landscape.assets.datasets import load_dataset

    labels = load_dataset("mnist1d", "test").labels.numpy()
    for m in run.members:
        probs = np.load(tmp_path / "r" / m["probs"])
        assert probs.dtype == np.float32 and probs.shape == (1000, 10)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        ckpt = load_checkpoint(tmp_path / "r" / m["file"])
        assert ckpt.meta.method == "local-de" and ckpt.meta.member == m["index"]
        assert ckpt.sha256 == m["sha256"] and ckpt.meta.parent == load_checkpoint(pre).sha256
        assert m["test_acc"] == pytest.approx(100 * np.mean(probs.argmax(1) == labels))
    # local DE members differ (seeded heads and data order)
    w = [load_checkpoint(tmp_path / "r" / m["file"]).model.head.weight for m in run.members]
    assert not torch.equal(w[0], w[1])


def test_global_de_starts_each_member_from_its_own_checkpoint(tmp_path):
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"p{i}.safetensors"))
        save_checkpoint(make_model(10 + i), paths[-1], meta())
    run = train(RunConfig("global-de", tuple(paths), **{**BASE, "members": 2}), tmp_path / "g")
    parents = [load_checkpoint(run.checkpoint_path(i)).meta.parent for i in (1, 2)]
    assert parents == [load_checkpoint(p).sha256 for p in paths]
    with pytest.raises(UserError, match="one member per pre-trained"):
        RunConfig("global-de", tuple(paths), **BASE)


def test_interrupted_run_resumes_to_the_same_members(pre, tmp_path, monkeypatch):
    cfg = RunConfig("starsse", (pre,), cycle_epochs=1, cycle_lr=0.1, **BASE)
    full = train(cfg, tmp_path / "full")
    real_fit, calls = run_mod.fit, []

    def dies_at_member_3(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(run_mod, "fit", dies_at_member_3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "part")
    assert len(read_run(tmp_path / "part").members) == 2
    trained = []
    monkeypatch.setattr(run_mod, "fit", lambda *a, **k: trained.append(1) or real_fit(*a, **k))
    resumed = train(cfg, tmp_path / "part")
    assert len(trained) == 1  # only member 3 was trained again
    for a, b in zip(full.members, resumed.members):
        assert a["sha256"] == b["sha256"]  # bit-identical checkpoint files
        np.testing.assert_array_equal(np.load(full.probs_path(a["index"])),
                                      np.load(resumed.probs_path(b["index"])))


def test_other_configuration_is_refused(pre, tmp_path):
    train(RunConfig("local-de", (pre,), **{**BASE, "members": 1}), tmp_path / "r")
    with pytest.raises(UserError, match="lr.*--overwrite"):
        train(RunConfig("local-de", (pre,), **{**BASE, "members": 1, "lr": 0.1}), tmp_path / "r")
    with pytest.raises(UserError, match="unknown method"):
        RunConfig("snapshot", (pre,), **BASE)
    with pytest.raises(UserError, match="--cycle-epochs"):
        RunConfig("sse", (pre,), **BASE)


@pytest.mark.slow  # torchrun with two processes: about 9 s
def test_torchrun_with_two_processes_gives_the_same_members(pre, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train", "--method", "starsse", "--pretrained", pre, "--members", "3", "--epochs",
            "1", "--cycle-epochs", "1", "--cycle-lr", "0.05", "--batch-size", "256", "--quiet"]
    one = subprocess.run([sys.executable, "-m", "cli", *args, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node", "2", "-m", "cli", *args, "--out",
                          str(tmp_path / "two")], env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    r1, r2 = read_run(tmp_path / "one"), read_run(tmp_path / "two")
    assert [m["sha256"] for m in r1.members] == [m["sha256"] for m in r2.members]
    assert len(r2.members) == 3
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert [m["index"] for m in manifest["members"]] == [1, 2, 3]


def test_a_second_training_process_on_the_same_directory_is_refused(pre, tmp_path):
    import os
    import socket

    out = tmp_path / "r"
    out.mkdir()
    (out / "manifest.json.lock").write_text(json.dumps({"pid": os.getpid(),
                                                        "host": socket.gethostname()}))
    with pytest.raises(UserError, match="is writing"):
        train(RunConfig("local-de", (pre,), **{**BASE, "members": 1}), out)
    assert not (out / "manifest.json").exists()
