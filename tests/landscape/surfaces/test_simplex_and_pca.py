"""The simplex view and the PCA plane (#21): a simplex's corners and edges are the models and
the linear paths between them, and a quadratic's simplex is its closed form; a PCA plane of three
checkpoints is the plane through them, its explained variances sum to at most 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import landscape
from cli.main import main
from landscape import UserError, load_checkpoint
from landscape.assets.modules import as_checkpoint
from landscape.engine.layout import ParamLayout
from landscape.surfaces.geometry import three_point_basis
from landscape.surfaces.paths import PathConfig, interpolate
from landscape.surfaces.planes import PlaneConfig, plane
from landscape.surfaces.simplex import simplex, simplex_extremes

SUBSETS = dict(train_subset=200, test_subset=100)


def test_corners_and_edges_are_the_models_and_the_lines_between_them(three_ckpts, tmp_path):
    s = simplex(three_ckpts, out=tmp_path / "s.h5", config=PlaneConfig(grid=5, **SUBSETS))
    ps = interpolate(three_ckpts, out=tmp_path / "p.h5", pairs="all", config=PathConfig(points=5, **SUBSETS))
    assert s.complete and s.config["identity"]["mode"] == "simplex" and list(s.points) == ["A", "B", "C"]
    for split in ("train", "test"):
        loss = s.loss(split)
        assert np.isnan(loss[np.add.outer(np.arange(5), np.arange(5)) > 4]).all()  # outside: never computed
        ab, ac, bc = (ps.curve(p, split, "loss") for p in range(3))  # pairs (A,B), (A,C), (B,C)
        for k in range(5):
            assert loss[0, k] == pytest.approx(ab[k], abs=1e-5)  # c = 0: A -> B
            assert loss[k, 0] == pytest.approx(ac[k], abs=1e-5)  # b = 0: A -> C
            assert loss[k, 4 - k] == pytest.approx(bc[k], abs=1e-5)  # a = 0: B -> C


class Point(nn.Module):
    def __init__(self, x: float, y: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([float(x), float(y)]))

    def forward(self, inputs):
        return self.w.expand(len(inputs), 2)


def _norm2(out, target):
    return (out**2).sum(1)


def test_a_quadratics_simplex_is_its_closed_form(tmp_path):
    corners = [(2.0, 0.0), (0.0, 2.0), (-1.0, -1.0)]
    ckpts = [as_checkpoint(Point(*c), num_classes=2, name=n) for c, n in zip(corners, "ABC")]
    data = landscape.Data(train=(torch.zeros(8, 1), torch.zeros(8, dtype=torch.long)),
                          test=(torch.zeros(8, 1), torch.zeros(8, dtype=torch.long)), name="point", num_classes=2)
    s = simplex(ckpts, out=tmp_path / "q.h5", data=data, config=PlaneConfig(grid=9, loss=_norm2, bn="keep"))
    pts = np.asarray(corners)
    for j, c in enumerate(s.y):
        for i, b in enumerate(s.x):
            if b + c <= 1 + 1e-9:
                w = (1 - b - c) * pts[0] + b * pts[1] + c * pts[2]
                assert s.loss("test")[j, i] == pytest.approx(float(w @ w), abs=1e-5)
    low = simplex_extremes(s, "test", "loss")["lowest"]
    w = low.a * pts[0] + low.b * pts[1] + low.c * pts[2]
    assert low.value == pytest.approx(float(w @ w), abs=1e-5) and low.value < 0.3  # near the origin, inside
    assert simplex_extremes(s, "test", "loss")["highest"].value == pytest.approx(4.0, abs=1e-5)  # a corner
    with pytest.raises(UserError, match="three checkpoints"):
        simplex(ckpts[:2], out=tmp_path / "x.h5", data=data)


def test_a_pca_plane_of_three_checkpoints_is_their_plane(three_ckpts, tmp_path):
    s = plane(three_ckpts, out=tmp_path / "pca.h5", config=PlaneConfig(grid=5, **SUBSETS), pca=True)
    ratios = s.config["pca"]["explained_variance_ratio"]
    assert s.config["identity"]["mode"] == "pca" and sum(ratios) == pytest.approx(1.0) and ratios[0] >= ratios[1]
    assert all(p.residual < 1e-6 for p in s.points.values())  # three points span two directions exactly
    ckpts = [load_checkpoint(p) for p in three_ckpts]
    layout = ParamLayout.of(ckpts[0].model)
    vecs = [layout.flatten(c.model.state_dict()) for c in ckpts]
    three = three_point_basis(*vecs)
    from landscape.surfaces.geometry import pca_basis

    basis, _ = pca_basis(vecs)
    for x, y in ((s.x[1], s.y[3]), (s.x[4], s.y[0])):  # every PCA-plane point lies in the three-point plane
        assert three.project(basis.point(float(x), float(y)))[2] < 1e-6
    # the same weights give the same values: a PCA-plane point against the naive loop at its weights,
    # and the centre of the three-point plane's grid evaluated in both planes' files the same way
    from landscape.assets.datasets import load_dataset
    from landscape.assets.resident import ArrayDataset, as_tensors, subset_indices
    from landscape.surfaces.reference import naive_point

    splits = {}
    for split, n in (("train", 200), ("test", 100)):
        ds = load_dataset("mnist1d", split)
        splits[split] = ArrayDataset(*as_tensors(ds, subset_indices(len(ds), n, seed=0)))
    ref = naive_point(ckpts[0].model, basis.point(float(s.x[2]), float(s.y[2])), splits, bn="recompute",
                      bn_train=splits["train"])
    assert s.loss("test")[2, 2] == pytest.approx(ref["test"]["loss"], abs=1e-5)
    fourth = as_checkpoint(_moved(ckpts[1].model), num_classes=10, name="D", dataset="mnist1d",
                           arch=ckpts[1].meta.arch, arch_kwargs=ckpts[1].meta.arch_kwargs)
    more = plane([*ckpts, fourth], out=tmp_path / "4.h5", config=PlaneConfig(grid=3, **SUBSETS), pca=True)
    ratios = more.config["pca"]["explained_variance_ratio"]
    four = torch.stack([*vecs, layout.flatten(fourth.model.state_dict())]).double()
    sv = torch.linalg.svdvals(four - four.mean(0)) ** 2  # the variances of the principal directions, another way
    assert ratios == pytest.approx((sv[:2] / sv.sum()).tolist(), rel=1e-6) and sum(ratios) < 1
    with pytest.raises(UserError, match="at least three"):
        plane(three_ckpts[:1], out=tmp_path / "1.h5", pca=True)


def _moved(model):
    import copy

    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return out


def test_the_simplex_and_pca_commands(three_ckpts, tmp_path, capsys):
    files = list(map(str, three_ckpts))
    common = ["--train-subset", "200", "--test-subset", "100", "--quiet"]
    assert main(["simplex", *files, "--grid", "4", "--out", str(tmp_path / "s"), *common]) == 0
    printed = capsys.readouterr().out
    assert "test acc: lowest" in printed and "highest" in printed
    assert (tmp_path / "s" / "simplex.png").stat().st_size > 0 and "a=" in (tmp_path / "s" / "simplex.html").read_text()
    assert main(["plane", "--pca", *files, "--grid", "3", "--out", str(tmp_path / "p"), *common]) == 0
    assert "% of variance" in (tmp_path / "p" / "plane.html").read_text()
    capsys.readouterr()
    assert main(["plane", "--pca", *files, "--curve", files[0], "--grid", "3", "--out", str(tmp_path / "c"), *common]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a --pca plane" in err
