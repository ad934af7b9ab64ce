"""Linear paths: barriers on analytic cases, endpoints, pairs, the engine against the naive loop,
resume, and the basin label on MNIST-1D."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cli.main import main
from landscape import UserError, load_checkpoint
from landscape.surfaces.barriers import barrier, same_basin
from landscape.assets.datasets import load_dataset
from landscape.assets.resident import ArrayDataset, as_tensors, subset_indices
from landscape.surfaces.basins import path_report
from landscape.surfaces.paths import PathConfig, interpolate, make_pairs
from landscape.surfaces.reference import naive_point
from landscape.grid.store import read_paths


def test_barrier_of_a_convex_path_is_zero():
    a = np.linspace(0, 1, 11)
    loss = 1.0 + (a - 0.4) ** 2 - 2.0 * a * (1 - a)  # below the chord everywhere inside
    b = barrier(a, loss)
    assert b.height == 0.0 and np.isnan(b.alpha)
    acc = 90 + 5 * a * (1 - a)  # above the chord
    assert barrier(a, acc, kind="acc").height == 0.0


def test_barrier_of_a_known_bump():
    a = np.linspace(0, 1, 21)
    loss = 0.5 + 0.2 * a + 0.3 * np.exp(-((a - 0.35) ** 2) / 0.001)
    b = barrier(a, loss)
    assert b.alpha == pytest.approx(0.35) and b.height == pytest.approx(0.3, rel=1e-9)
    acc = 95 - 2 * a - 10 * (np.abs(a - 0.6) < 1e-9)
    ba = barrier(a, acc, kind="acc")
    assert ba.alpha == pytest.approx(0.6) and ba.height == pytest.approx(10.0)
    # extended paths: values outside [0, 1] are ignored
    ext = np.arange(-3, 24) / 20
    vals = np.where((ext < 0) | (ext > 1), 100.0, 1.0)
    assert barrier(ext, vals).height == 0.0
    with pytest.raises(UserError, match="endpoints"):
        barrier(np.linspace(0.1, 1, 5), np.ones(5))
    assert same_basin(0.1) and not same_basin(0.6) and same_basin(0.9, threshold=1.0)


def test_pairs():
    assert make_pairs(4, "chain") == [(0, 1), (1, 2), (2, 3)]
    assert make_pairs(4, "star") == [(0, 1), (0, 2), (0, 3)]
    assert make_pairs(3, "all") == [(0, 1), (0, 2), (1, 2)]
    assert make_pairs(4, "chain,star") == [(0, 1), (1, 2), (2, 3), (0, 2), (0, 3)]
    with pytest.raises(UserError, match="unknown pairs"):
        make_pairs(3, "ring")
    with pytest.raises(UserError, match="two checkpoints"):
        make_pairs(1, "chain")


def test_alpha_grid_has_exact_endpoints():
    alpha = PathConfig(points=11, extend=0.2).alpha()
    assert alpha[0] == pytest.approx(-0.2) and alpha[-1] == pytest.approx(1.2)
    assert 0.0 in alpha and 1.0 in alpha and len(alpha) == 15


@pytest.mark.parametrize("bn", ["recompute", "interpolate", "keep"])
def test_paths_equal_the_naive_loop_and_endpoints_their_checkpoints(three_ckpts, tmp_path, bn):
    cfg = PathConfig(points=3, bn=bn, train_subset=200, test_subset=100, group_size=2)
    ps = interpolate(three_ckpts, out=tmp_path / "p.h5", pairs="chain", config=cfg)
    ckpts = [load_checkpoint(p) for p in three_ckpts]
    splits = {}
    for split, n in (("train", 200), ("test", 100)):
        ds = load_dataset("mnist1d", split)
        x, y = as_tensors(ds, subset_indices(len(ds), n, seed=0))
        splits[split] = ArrayDataset(x, y)
    from landscape.engine.layout import ParamLayout

    layout = ParamLayout.of(ckpts[0].model)
    vec = [layout.flatten(c.model.state_dict()) for c in ckpts]
    for p, (i, j) in enumerate(ps.pairs):
        for k, a in enumerate(ps.alpha):
            bufs = None
            if bn != "recompute":
                si, sj = ckpts[i].model.state_dict(), ckpts[j].model.state_dict()
                bufs = {n: ((1 - a) * si[n] + a * sj[n]) if bn == "interpolate" else si[n]
                        for n in si if "running" in n}
            ref = naive_point(ckpts[0].model, vec[i] + a * (vec[j] - vec[i]), splits, bn=bn,
                              bn_train=splits["train"], buffers=bufs)
            for split in ("train", "test"):
                assert ps.curve(p, split, "loss")[k] == pytest.approx(ref[split]["loss"], abs=1e-5)
                assert ps.curve(p, split, "acc")[k] == pytest.approx(ref[split]["acc"], abs=1e-6)
    if bn == "keep":  # the endpoints are the checkpoints themselves, evaluated as they are
        with torch.no_grad():
            logits = ckpts[1].model(splits["test"].inputs)
        own = float(torch.nn.functional.cross_entropy(logits, splits["test"].labels))
        assert ps.curve(1, "test", "loss")[0] == pytest.approx(own, abs=1e-5)


def test_interrupted_paths_resume(three_ckpts, tmp_path, monkeypatch):
    cfg = PathConfig(points=5, train_subset=200, test_subset=100, group_size=3, engine="loop")
    full = interpolate(three_ckpts, out=tmp_path / "full.h5", pairs="all", config=cfg)
    from landscape.engine import evaluator as engine

    real, calls = engine.GridEvaluator.evaluate, []

    def dies(self, *a, **k):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(engine.GridEvaluator, "evaluate", dies)
    with pytest.raises(KeyboardInterrupt):
        interpolate(three_ckpts, out=tmp_path / "part.h5", pairs="all", config=cfg)
    assert read_paths(tmp_path / "part.h5").done.sum() == 6
    monkeypatch.setattr(engine.GridEvaluator, "evaluate", real)
    resumed = interpolate(three_ckpts, out=tmp_path / "part.h5", pairs="all", config=cfg)
    for split in ("train", "test"):
        np.testing.assert_array_equal(resumed.metrics[split]["loss"], full.metrics[split]["loss"])


def test_cli_report_equals_the_h5_file(three_ckpts, tmp_path, capsys):
    out = tmp_path / "interp"
    code = main(["interp", *map(str, three_ckpts), "--pairs", "all", "--points", "5",
                 "--train-subset", "200", "--test-subset", "100", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    ps = read_paths(out / "paths.h5")
    doc = json.loads((out / "report.json").read_text())
    assert [(r["a"], r["b"]) for r in doc["pairs"]] == [("A", "B"), ("A", "C"), ("B", "C")]
    for p, rec in enumerate(doc["pairs"]):
        b = barrier(ps.alpha, ps.curve(p, "test", "acc"), kind="acc")
        assert rec["acc_barrier_test"] == b.height
        assert rec["loss_barrier_train"] == barrier(ps.alpha, ps.curve(p, "train", "loss")).height
        assert rec["label"] == ("same basin" if b.height < 0.5 else "different basin")
    ckpts = [load_checkpoint(p) for p in three_ckpts]
    report = path_report(ps, ckpts)
    from landscape.engine.layout import ParamLayout

    layout = ParamLayout.of(ckpts[0].model)
    d = float(torch.linalg.vector_norm(layout.flatten(ckpts[0].model.state_dict())
                                       - layout.flatten(ckpts[1].model.state_dict())))
    assert report[0].distance == pytest.approx(d)
    # the per-block distances of each pair: their total is the pair's whole-model distance
    blocks = doc["block_distances"]["A -> B"]["between"]
    total = next(x for x in blocks if x["block"] == "total")
    assert total["l2"] == pytest.approx(d, rel=1e-6)
    assert sum(x["l2"] ** 2 for x in blocks if x["block"] != "total") == pytest.approx(d**2, rel=1e-6)
    assert (out / "barriers.png").exists() and (out / "paths.png").exists()
    capsys.readouterr()
    assert main(["info", str(out / "paths.h5"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "paths" and info["done"] == "15/15" and info["pairs"][0] == "A -> B"
    assert "different basin" in (out / "report.md").read_text() or \
        "same basin" in (out / "report.md").read_text()
