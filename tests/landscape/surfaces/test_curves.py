"""Curves between two checkpoints (#20): the shapes' coefficients, points equal to the
endpoints and to straight lines where they must be, the engine along a curve against the naive
loop, the curve file, and drawing a curve onto a plane."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landscape import UserError, load_checkpoint
from landscape.assets.datasets import load_dataset
from landscape.assets.resident import ArrayDataset, as_tensors, subset_indices
from landscape.engine.layout import ParamLayout
from landscape.surfaces.curve_shape import coefficients, initial_positions
from landscape.surfaces.curve_files import load_curve, read_curve_doc, save_curve
from landscape.surfaces.curves import evaluate_curve, make_curve, project_curve, straight_bends
from landscape.surfaces.paths import PathConfig, interpolate
from landscape.surfaces.reference import naive_point

SUBSETS = dict(train_subset=200, test_subset=100)


def _moved(model: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """A bend off the segment: the model's weights moved by seeded noise."""
    import copy

    g = torch.Generator().manual_seed(seed)
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g) * p.abs().mean())
    return out


def test_coefficients_sum_to_one_and_are_bernstein_or_piecewise_linear():
    for t in np.linspace(0, 1, 13):
        b = coefficients("bezier", 2, float(t))  # degree 3
        assert b == pytest.approx([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3])
        p = coefficients("polychain", 2, float(t))
        assert p.sum() == pytest.approx(1.0) and (p >= 0).all() and np.count_nonzero(p) <= 2
    assert coefficients("polychain", 2, 0.5).tolist() == pytest.approx([0, 0.5, 0.5, 0])
    assert coefficients("polychain", 1, 1.0).tolist() == [0.0, 0.0, 1.0]
    assert initial_positions(3) == [0.25, 0.5, 0.75]
    for bad in (dict(kind="spline", bends=1, t=0.5), dict(kind="bezier", bends=0, t=0.5),
                dict(kind="bezier", bends=1, t=1.5)):
        with pytest.raises(UserError):
            coefficients(bad["kind"], bad["bends"], bad["t"])


def test_the_ends_are_the_endpoints_exactly_and_straight_bends_are_the_line(three_ckpts):
    a, b, _ = (load_checkpoint(p) for p in three_ckpts)
    for kind, k in (("bezier", 1), ("bezier", 3), ("polychain", 2)):
        curve = make_curve(kind, a, b, [_moved(m, i) for i, m in enumerate(straight_bends(a, b, k))])
        for t, end in ((0.0, a), (1.0, b)):
            w, own = curve.weights(t), end.model.state_dict()
            assert all(torch.equal(w[n], own[n]) for n in own), (kind, t)
        straight = make_curve(kind, a, b, straight_bends(a, b, k))
        sa, sb = a.model.state_dict(), b.model.state_dict()
        for t in (0.1, 0.37, 0.5, 0.9):
            w = straight.weights(t)
            for n, v in sa.items():
                if v.is_floating_point():
                    torch.testing.assert_close(w[n], ((1 - t) * v.double() + t * sb[n].double()).float(),
                                               atol=1e-6, rtol=0)


def _splits():
    out = {}
    for split, n in (("train", 200), ("test", 100)):
        ds = load_dataset("mnist1d", split)
        x, y = as_tensors(ds, subset_indices(len(ds), n, seed=0))
        out[split] = ArrayDataset(x, y)
    return out


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_the_engine_along_a_curve_equals_the_naive_loop(three_ckpts, tmp_path, kind):
    a, b, _ = (load_checkpoint(p) for p in three_ckpts)
    curve = make_curve(kind, a, b, [_moved(m, i) for i, m in enumerate(straight_bends(a, b, 2))])
    ps = evaluate_curve(curve, out=tmp_path / "c.h5", config=PathConfig(points=7, group_size=3, **SUBSETS))
    assert ps.pairs == [(0, 1)] and ps.complete and ps.alpha.tolist() == pytest.approx(np.linspace(0, 1, 7))
    layout, splits = ParamLayout.of(a.model), _splits()
    for k, t in enumerate(ps.alpha):
        ref = naive_point(a.model, layout.flatten(curve.weights(float(t))), splits, bn="recompute",
                          bn_train=splits["train"])
        for split in ("train", "test"):
            assert ps.curve(0, split, "loss")[k] == pytest.approx(ref[split]["loss"], abs=1e-5)
            assert ps.curve(0, split, "acc")[k] == pytest.approx(ref[split]["acc"], abs=1e-6)


def test_curve_ends_evaluate_as_the_endpoints_and_a_straight_bezier_as_the_line(three_ckpts, tmp_path):
    a, b, _ = (load_checkpoint(p) for p in three_ckpts)
    cfg = PathConfig(points=9, **SUBSETS)
    line = interpolate([a, b], out=tmp_path / "line.h5", config=cfg)
    straight = evaluate_curve(make_curve("bezier", a, b, straight_bends(a, b, 1)), out=tmp_path / "s.h5", config=cfg)
    bent = evaluate_curve(make_curve("bezier", a, b, [_moved(straight_bends(a, b, 1)[0], 7)]), out=tmp_path / "b.h5",
                          config=cfg)
    for split in ("train", "test"):
        for metric in ("loss", "acc"):
            np.testing.assert_allclose(straight.curve(0, split, metric), line.curve(0, split, metric), atol=1e-5)
            ends = bent.curve(0, split, metric)[[0, -1]]
            np.testing.assert_allclose(ends, line.curve(0, split, metric)[[0, -1]], atol=1e-6)
        assert np.abs(bent.curve(0, split, "loss") - line.curve(0, split, "loss")).max() > 1e-3  # it is bent


def test_a_polychain_is_the_straight_lines_between_its_control_points(three_ckpts, tmp_path):
    """Two bends: three segments, each the straight line between two control points."""
    a, b, _ = (load_checkpoint(p) for p in three_ckpts)
    bends = [_moved(m, i) for i, m in enumerate(straight_bends(a, b, 2))]
    curve = make_curve("polychain", a, b, bends)
    cfg = PathConfig(points=10, **SUBSETS)  # t = k/9: the knots 1/3 and 2/3 are grid points
    ps = evaluate_curve(curve, out=tmp_path / "c.h5", config=cfg)
    chain = interpolate(curve.controls(), out=tmp_path / "chain.h5", pairs="chain", config=PathConfig(points=4, **SUBSETS))
    for k in range(10):
        seg, s = min(k // 3, 2), k / 3 - min(k // 3, 2)  # segment and position along it (thirds)
        j = int(round(s * 3))
        for split in ("train", "test"):
            assert ps.curve(0, split, "loss")[k] == pytest.approx(chain.curve(seg, split, "loss")[j], abs=1e-5)


def test_a_curve_file_reads_back_and_damage_is_one_line(three_ckpts, tmp_path):
    a, b, c = (load_checkpoint(p) for p in three_ckpts)
    curve = make_curve("polychain", a, b, [_moved(m, 3) for m in straight_bends(a, b, 2)], {"epochs": 3})
    path = save_curve(curve, tmp_path / "curve.safetensors")
    back = load_curve(path)
    assert back.kind == "polychain" and len(back.bends) == 2 and back.record == {"epochs": 3}
    for t in (0.0, 0.3, 1.0):
        w, w0 = back.weights(t), curve.weights(t)
        assert all(torch.equal(w[n], w0[n]) for n in w0)
    doc = read_curve_doc(path)
    assert [e["sha256"] for e in doc["endpoints"]] == [a.sha256, b.sha256]
    with pytest.raises(UserError, match="endpoint B .* is not the checkpoint"):
        load_curve(path, endpoints=(a, c))
    (tmp_path / "torn.safetensors").write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="torn.safetensors is not a readable curve file"):
        load_curve(tmp_path / "torn.safetensors")
    with pytest.raises(UserError, match="not a curve file of this toolkit"):
        load_curve(three_ckpts[0])
    with pytest.raises(UserError, match="only"):
        evaluate_curve(back, out=tmp_path / "x.h5", config=PathConfig(points=3, extend=0.2))


def test_a_one_bend_curve_lies_in_the_plane_through_its_controls(three_ckpts):
    a, b, _ = (load_checkpoint(p) for p in three_ckpts)
    bend = _moved(straight_bends(a, b, 1)[0], 5)
    curve = make_curve("bezier", a, b, [bend])
    from landscape.assets.modules import as_checkpoint

    xy, residual = project_curve(curve, [a, as_checkpoint(bend), b], points=21)
    assert xy[0] == pytest.approx([0, 0], abs=1e-9) and residual < 1e-6
    from landscape.surfaces.geometry import three_point_basis

    layout = ParamLayout.of(a.model)
    basis = three_point_basis(*(layout.flatten(m.state_dict()) for m in (a.model, bend, b.model)))
    assert xy[-1] == pytest.approx(basis.project(layout.flatten(b.model.state_dict()))[:2], abs=1e-6)  # t = 1 is B
    assert math.hypot(*xy[-1]) > 0 and abs(xy[-1][1]) > 1e-6  # the bend is off the line: B is off the x axis


def test_the_connectivity_label_needs_defined_barriers_and_the_test_split():
    from landscape.results import PathSet
    from landscape.surfaces.curves import curve_report

    t = np.linspace(0, 1, 5)

    def paths(acc, splits=("train", "test")):
        m = {s: {"loss": np.ones((1, 5)), "acc": np.asarray([acc])} for s in splits}
        return PathSet(t, [(0, 1)], ["A", "B"], m, np.ones((1, 5), bool), {})

    dip = [90, 80, 70, 80, 90]
    assert curve_report(paths([90, 90, 90, 90, 90]), paths(dip)).label == "connected by a curve"
    assert curve_report(paths(dip), paths(dip)).label == "not connected"
    assert curve_report(paths(dip), paths([90, 89.9, 90, 90, 90])).label == "connected by the line"
    assert curve_report(paths([90, 90, 90, 90, 90]), paths([90, np.nan, np.nan, np.nan, np.nan])).label \
        .startswith("no verdict")
    with pytest.raises(UserError, match="needs the test split"):
        curve_report(paths(dip, ("train",)), paths(dip, ("train",)))
