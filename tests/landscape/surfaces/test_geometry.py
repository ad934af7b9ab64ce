"""Plane geometry: analytic cases and invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_model, meta, perturbed
from torch import nn

from landscape import PlaneConfig, UserError, load_checkpoint, plane, save_checkpoint
from landscape.engine.evaluator import EvalData, GridEvaluator
from landscape.engine.layout import ParamLayout
from landscape.surfaces.geometry import axis, filter_normalized_direction, random_basis, three_point_basis


class Quadratic(nn.Module):
    """A model whose cross-entropy on label 0 is exactly q(w) = q0 + sum h (w - c)^2:
    logits (-q, log(1 - e^-q)) have logsumexp 0, so CE = q."""

    def __init__(self, p: int = 12, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(p, generator=g))
        self.register_buffer("c", torch.randn(p, generator=g))
        self.register_buffer("h", torch.rand(p, generator=g) + 0.5)
        self.q0 = 0.25

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q0 + ((self.w - self.c) ** 2 * self.h).sum()
        logits = torch.stack([-q, torch.log(-torch.expm1(-q))])
        return logits.expand(x.shape[0], 2)


@pytest.mark.parametrize("path", ["loop", "vmap"])
def test_quadratic_loss_gives_the_analytic_paraboloid(path):
    model = Quadratic()
    layout = ParamLayout.of(model)
    g = torch.Generator().manual_seed(1)
    a = layout.flatten(dict(model.named_parameters()))
    b, c = a + torch.randn(a.shape, generator=g, dtype=torch.float64), a + torch.randn(
        a.shape, generator=g, dtype=torch.float64)
    basis = three_point_basis(a, b, c)
    xs = axis(0, basis.norm_b, 0.3, 5)
    ys = axis(0, basis.norm_c_perp, 0.3, 4)
    data = EvalData({"test": (torch.zeros(6, 1), torch.zeros(6, dtype=torch.long))})
    ev = GridEvaluator(model, layout, data, bn_policy="keep", batch_size=4)
    xy = torch.tensor([[x, y] for y in ys for x in xs], dtype=torch.float64)
    got = ev.evaluate(basis.points(xy), strategy=path).metrics["test"]["loss"].reshape(len(ys), len(xs))
    # the paraboloid in plane coordinates, from the formula, in float64 numpy
    A, U, V = (t.numpy() for t in (basis.origin, basis.u, basis.v))
    cc, hh = model.c.double().numpy(), model.h.double().numpy()
    X, Y = np.meshgrid(xs, ys)
    W = A + X[..., None] * U + Y[..., None] * V
    expected = model.q0 + ((W - cc) ** 2 * hh).sum(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)  # float32 weights and sums against a float64 formula


def test_three_point_basis_is_orthonormal_and_reproduces_checkpoints():
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(3))
    basis = three_point_basis(a, b, c)
    assert float(basis.u @ basis.u) == pytest.approx(1.0)
    assert float(basis.v @ basis.v) == pytest.approx(1.0)
    assert float(basis.u @ basis.v) == pytest.approx(0.0, abs=1e-12)
    nb = float(torch.linalg.vector_norm(b - a))
    assert basis.norm_b == pytest.approx(nb)
    torch.testing.assert_close(basis.point(nb, 0.0), b)
    torch.testing.assert_close(basis.point(basis.c_u, basis.norm_c_perp), c)
    for xv, yv in [(0.3, -0.7), (2.0, 1.5)]:
        al, be, ga = basis.coefficients(xv, yv)
        assert al + be + ga == pytest.approx(1.0)
        torch.testing.assert_close(basis.point(xv, yv), al * a + be * b + ga * c)


def test_checkpoints_sit_at_analytic_coordinates_and_fourth_is_projected(three_ckpts, tmp_path):
    a, b, c = (load_checkpoint(p) for p in three_ckpts)
    layout = ParamLayout.of(a.model)
    A, B, C = (layout.flatten(k.model.state_dict()).numpy() for k in (a, b, c))
    # D: a known combination plus a component orthogonal to the plane
    rng = np.random.default_rng(0)
    e = rng.normal(size=A.shape)
    Q, _ = np.linalg.qr(np.stack([B - A, C - A], 1))
    e -= Q @ (Q.T @ e)
    e *= 0.7 / np.linalg.norm(e)
    D = A + 0.3 * (B - A) + 0.4 * (C - A) + e
    d_model = perturbed(a.model, 9, scale=0.0)
    with torch.no_grad():
        for name, t in layout.unflatten(torch.from_numpy(D)).items():
            dict(d_model.named_parameters())[name].copy_(t)
    d_path = tmp_path / "D.safetensors"
    save_checkpoint(d_model, d_path, meta())
    s = plane([*three_ckpts, d_path], out=tmp_path / "p.h5",
              config=PlaneConfig(grid=2, splits=("test",), test_subset=50, train_subset=50,
                                 bn="keep"))
    nb = np.linalg.norm(B - A)
    u = (B - A) / nb
    cu = (C - A) @ u
    ncp = np.linalg.norm(C - A - cu * u)
    v = (C - A - cu * u) / ncp
    assert (s.points["A"].x, s.points["A"].y, s.points["A"].residual) == (0.0, 0.0, 0.0)
    assert s.points["B"].x == pytest.approx(nb, rel=1e-9) and abs(s.points["B"].y) < 1e-6
    assert s.points["C"].x == pytest.approx(cu, rel=1e-9)
    assert s.points["C"].y == pytest.approx(ncp, rel=1e-9)
    assert s.points["B"].residual < 1e-6 and s.points["C"].residual < 1e-6
    assert s.points["D"].x == pytest.approx((D - A) @ u, rel=1e-6)
    assert s.points["D"].y == pytest.approx((D - A) @ v, rel=1e-6)
    assert s.points["D"].residual == pytest.approx(0.7, rel=1e-5)
    # the grid covers all three with margins of 0.2 of the span
    span = max(0, nb, cu) - min(0, nb, cu)
    assert s.x[0] == pytest.approx(min(0, cu) - 0.2 * span)
    assert s.y[-1] == pytest.approx(ncp * 1.2)


def test_value_at_a_equals_a_own_evaluation(three_ckpts, tmp_path):
    from landscape.assets.datasets import load_dataset
    from landscape.assets.resident import as_tensors

    s = plane(three_ckpts, out=tmp_path / "p.h5",
              config=PlaneConfig(grid=3, margin=0.0, bn="keep", splits=("test",)))
    assert s.x[0] == 0.0 and s.y[0] == 0.0  # with no margin, A is grid node [0, 0]
    a = load_checkpoint(three_ckpts[0]).model
    x, y = as_tensors(load_dataset("mnist1d", "test"))
    with torch.no_grad():
        logits = a(x)
    loss = float(torch.nn.functional.cross_entropy(logits, y))
    acc = 100.0 * float((logits.argmax(-1) == y).double().mean())
    assert s.loss("test")[0, 0] == pytest.approx(loss, abs=1e-5)
    assert s.acc("test")[0, 0] == pytest.approx(acc, abs=1e-9)


@pytest.mark.parametrize("which", ["identical", "collinear"])
def test_degenerate_planes_are_refused(tmp_path, which):
    a = make_model(0)
    b = perturbed(a, 1)
    layout = ParamLayout.of(a)
    A, B = (layout.flatten(m.state_dict()) for m in (a, b))
    C = A.clone() if which == "identical" else A + 2.5 * (B - A)
    with pytest.raises(UserError, match=which):
        three_point_basis(A, B, C)


def test_filter_normalised_directions():
    model = make_model(0, width=8)
    params = dict(model.named_parameters())
    layout = ParamLayout.of(model)
    d = filter_normalized_direction(params, layout, generator=torch.Generator().manual_seed(3))
    parts = layout.unflatten(d, dtype=torch.float64)
    for name, w in params.items():
        if w.dim() <= 1:
            assert torch.count_nonzero(parts[name]) == 0, name
        else:
            wn = w.detach().double().reshape(w.shape[0], -1).norm(dim=1)
            dn = parts[name].reshape(w.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(dn, wn, rtol=1e-10, atol=0)
    b1 = random_basis(params, layout, seed=5)
    b2 = random_basis(params, layout, seed=5)
    b3 = random_basis(params, layout, seed=6)
    assert torch.equal(b1.u, b2.u) and torch.equal(b1.v, b2.v)
    assert not torch.equal(b1.u, b3.u)
    assert abs(float(b1.u @ b1.v)) < 1e-9 * float(b1.u.norm() * b1.v.norm())


def test_random_plane_is_reproducible_and_centred(three_ckpts, tmp_path):
    cfg = PlaneConfig(grid=3, seed=4, splits=("test",), test_subset=100, train_subset=100,
                      bn="keep", engine="loop")  # auto may tune another batch: equal to 1e-7 only
    s1 = plane(three_ckpts[:1], out=tmp_path / "r1.h5", config=cfg)
    s2 = plane(three_ckpts[:1], out=tmp_path / "r2.h5", config=cfg)
    np.testing.assert_array_equal(s1.loss("test"), s2.loss("test"))
    assert s1.x[1] == 0.0 and s1.config["identity"]["mode"] == "random"
    a = load_checkpoint(three_ckpts[0]).model
    from landscape.assets.datasets import load_dataset
    from landscape.assets.resident import as_tensors, subset_indices
    ds = load_dataset("mnist1d", "test")
    x, y = as_tensors(ds, subset_indices(len(ds), 100, seed=4))
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(a(x), y))
    assert s1.loss("test")[1, 1] == pytest.approx(loss, abs=1e-5)  # the centre is A itself


def test_model_that_cannot_take_the_data_is_one_clear_error(tmp_path):
    import landscape

    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = landscape.create_model("resnet20", 10, width=4)
        paths.append(tmp_path / f"r{seed}.safetensors")
        save_checkpoint(model, paths[-1], landscape.CheckpointMeta("resnet20", 10, {"width": 4}))
    with pytest.raises(UserError, match="cannot take inputs of dataset mnist1d"):
        plane(paths, out=tmp_path / "p.h5", data="mnist1d",
              config=PlaneConfig(grid=2, train_subset=10, test_subset=10))
    assert not (tmp_path / "p.h5").exists()  # nothing half-made is left behind
