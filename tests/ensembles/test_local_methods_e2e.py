"""`landscape train --method fge|csgld|swag|kfac-laplace|spro`, then `landscape ensemble` on all
five runs, end to end on MNIST-1D with small sizes (slow: about half a minute)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import make_model, meta

from cli.main import main
from ensembles.metrics import accuracy
from landscape import load_checkpoint, load_dataset, save_checkpoint

METHODS = ("fge", "csgld", "swag", "kfac-laplace", "spro")


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_every_local_method_trains_a_run_that_ensemble_judges(device, tmp_path, capsys):
    pre = tmp_path / "pre.safetensors"
    save_checkpoint(make_model(0, width=8), pre, meta(width=8))
    common = ["--preset", "mnist1d", "--members", "3", "--epochs", "3", "--lr", "0.05",
              "--cycle-epochs", "1", "--batch-size", "256", "--device", device, "--quiet"]
    own = {"fge": [], "csgld": ["--csgld-exploration", "0.5"], "swag": ["--swag-collect", "4"],
           "kfac-laplace": ["--laplace-prior-precision", "100"], "spro": ["--spro-vertices", "3"]}
    runs = {}
    for method in METHODS:
        runs[method] = tmp_path / method
        start = ["--pretrained", str(pre)] if method == "fge" else \
            ["--init", str(runs["fge"] / "member-1.safetensors")]  # member 1 shared, as in the paper
        code = main(["train", "--method", method, *start, *common, *own[method],
                     "--out", str(runs[method])])
        assert code == 0, capsys.readouterr().err
    labels = load_dataset("mnist1d", "test").labels.numpy()
    for method, path in runs.items():
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["method"] == method and [m["index"] for m in manifest["members"]] == [1, 2, 3]
        for m in manifest["members"]:
            ckpt = load_checkpoint(path / m["file"])
            assert ckpt.meta.method == method and ckpt.meta.member == m["index"]
            assert ckpt.meta.seed == m["index"] - 1 and ckpt.meta.epochs is not None
            assert ckpt.sha256 == m["sha256"]
            probs = np.load(path / m["probs"])
            assert probs.shape == (1000, 10) and m["test_acc"] == pytest.approx(accuracy(probs, labels))
        shas = [m["sha256"] for m in manifest["members"]]
        assert len(set(shas[1:])) == 2 and shas[0] not in shas[1:]  # members 2, 3 are new models
        if method != "fge":
            assert manifest["members"][0]["start"] == "init"
            assert load_checkpoint(path / "member-2.safetensors").meta.parent == shas[0]
    assert all(json.loads((p / "member-1.json").read_text())["test_acc"] > 40 for p in runs.values())
    pre_sha = load_checkpoint(pre).sha256  # member 1 of fge was fine-tuned from --pretrained,
    assert all(load_checkpoint(p / "member-1.safetensors").meta.parent == pre_sha  # and kept its
               for p in runs.values())                                          # lineage as --init
    for method, state in (("swag", "swag-state.safetensors"), ("kfac-laplace", "kfac-laplace-state.safetensors"),
                          ("spro", "spro-state.safetensors")):  # each sampler keeps its state in its run
        assert (runs[method] / state).is_file(), state
        assert not any((runs[m] / state).exists() for m in METHODS if m != method), state
    for method in ("fge", "csgld"):  # a finished trajectory leaves no state behind
        assert not list(runs[method].glob(f"{method}-state*")), method

    report = tmp_path / "report"
    code = main(["ensemble", *map(str, runs.values()), "--out", str(report), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and all(f"({m})" in out for m in METHODS)
    rows = list(csv.DictReader(open(report / "ensemble.csv")))
    assert [(r["method"], r["size"]) for r in rows] == [(m, str(k)) for m in METHODS for k in (1, 2, 3)]
    for r in rows:
        assert float(r["accuracy"]) > 40 and float(r["soup_accuracy"]) > 10  # chance is 10%
    for m in METHODS:
        probs = [np.load(runs[m] / f"member-{i}.test-probs.npy") for i in (1, 2, 3)]
        last = [r for r in rows if r["method"] == m][-1]
        assert float(last["accuracy"]) == pytest.approx(accuracy(np.mean(probs, 0), labels))
        assert float(last["diversity"]) > 0
    assert (report / "ensemble.png").stat().st_size > 0
