"""`landscape train` and `landscape ensemble` end to end on MNIST-1D with small sizes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import make_model, meta

from cli.main import main
from landscape import save_checkpoint


def test_train_then_ensemble_with_soups_and_ood(tmp_path, capsys):
    pre = tmp_path / "pre.safetensors"
    save_checkpoint(make_model(0), pre, meta())
    runs = []
    for method in ("local-de", "starsse"):
        out = tmp_path / method
        code = main(["train", "--method", method, "--pretrained", str(pre), "--preset", "mnist1d",
                     "--members", "3", "--epochs", "1", "--cycle-epochs", "1", "--lr", "0.05",
                     "--batch-size", "256", "--out", str(out), "--quiet"])
        assert code == 0, capsys.readouterr().err
        runs.append(out)
    manifest = json.loads((runs[1] / "manifest.json").read_text())
    assert manifest["config"]["cycle_lr"] == 0.04  # from the preset
    assert manifest["config"]["lr"] == 0.05        # the flag overrides the preset
    assert len(manifest["members"]) == 3
    report = tmp_path / "report"
    code = main(["ensemble", *map(str, runs), "--ood", "mnist1d-c", "--out", str(report),
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "local-de" in out and "starsse" in out
    rows = list(csv.DictReader(open(report / "ensemble.csv")))
    assert [(r["run"], r["size"]) for r in rows] == [(m, str(k)) for m in ("local-de", "starsse")
                                                      for k in (1, 2, 3)]
    doc = json.loads((report / "ensemble.json").read_text())
    # the table's numbers are the saved probabilities' numbers
    from ensembles.metrics import accuracy
    from landscape.assets.datasets import load_dataset

    labels = load_dataset("mnist1d", "test").labels.numpy()
    probs = [np.load(runs[1] / f"member-{i}.test-probs.npy") for i in (1, 2, 3)]
    star = doc["runs"][1]["table"]
    assert star[2]["accuracy"] == pytest.approx(accuracy(np.mean(probs, 0), labels))
    assert star[0]["diversity"] == 0.0
    for rec in star:
        assert 0 <= rec["ood_accuracy"] <= 100 and 0 <= rec["soup_accuracy"] <= 100
    assert len(doc["runs"][1]["ood_by_corruption"]) == 8
    assert (report / "ensemble.png").stat().st_size > 0


def test_train_bad_input(tmp_path, capsys):
    code = main(["train", "--method", "snapshot", "--pretrained", str(tmp_path / "x.safetensors"),
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "unknown method" in err[0]
    code = main(["train", "--method", "sse", "--pretrained", str(tmp_path / "x.safetensors"),
                 "--preset", "nope", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "unknown preset" in err[0] and "mnist1d" in err[0]
    code = main(["ensemble", str(tmp_path)])
    assert code == 2 and "not a run directory" in capsys.readouterr().err
