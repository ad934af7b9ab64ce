"""Losses other than cross-entropy: an MSE plane of a linear model is its analytic paraboloid;
without accuracy, files hold the loss only and basin labels come from the loss barrier."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape import Data, PathConfig, PlaneConfig, UserError, interpolate, path_report, plane

D, N = 5, 300


@pytest.fixture(scope="module")
def regression():
    g = torch.Generator().manual_seed(0)
    x, xt = torch.randn(N, D, generator=g), torch.randn(200, D, generator=g)
    w = torch.randn(D, generator=g)
    data = Data(train=(x, x @ w + 0.1 * torch.randn(N, generator=g)), test=(xt, xt @ w), name="linear")
    torch.manual_seed(1)
    models = {n: nn.Linear(D, 1, bias=False) for n in "abc"}
    return data, models


def _weights(m: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in m.parameters()])


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_the_mse_plane_of_a_linear_model_is_its_paraboloid(tmp_path, regression, strategy):
    from landscape.surfaces.geometry import three_point_basis

    data, models = regression
    s = plane(models, out=tmp_path / "p.h5", data=data,
              config=PlaneConfig(grid=5, loss="mse", bn="keep", engine=strategy))
    basis = three_point_basis(*[_weights(models[n]) for n in "abc"])
    for split in ("train", "test"):
        x, t = (v.double() for v in data.tensors(split))
        exact = np.array([[float((x @ basis.point(float(a), float(b)) - t).pow(2).mean()) for a in s.x] for b in s.y])
        np.testing.assert_allclose(s.loss(split), exact, rtol=1e-5, atol=1e-7)
    assert s.config["identity"]["loss"] == "mse" and s.config["identity"]["metrics"] == ["loss"]
    assert not s.has_acc and np.ptp(s.loss("test")) > 1.0
    with pytest.raises(UserError, match="loss only"):
        s.acc("test")


def test_without_accuracy_the_label_comes_from_the_loss_barrier(tmp_path, regression):
    data, models = regression
    far = nn.Linear(D, 1, bias=False)
    with torch.no_grad():
        far.weight.copy_(-models["a"].weight)  # the straight line passes the true weights' side
    paths = interpolate({"a": models["a"], "b": models["b"], "far": far}, out=tmp_path / "paths.h5", data=data,
                        config=PathConfig(points=11, loss=nn.L1Loss(reduction="none"), bn="keep"), pairs="chain")
    assert paths.config["identity"]["loss"] == "L1Loss" and not paths.has_acc
    report = path_report(paths, [models["a"], models["b"], far])
    for p, r in enumerate(report):
        loss = paths.curve(p, "test", "loss")
        line = (1 - paths.alpha) * loss[0] + paths.alpha * loss[-1]
        assert r.loss_barrier_test == pytest.approx(max(0.0, float(np.max(loss - line))))
        assert np.isnan(r.acc_barrier_test) and r.threshold == 0.1
        assert r.same_basin == (r.loss_barrier_test < 0.1 * 0.5 * (loss[0] + loss[-1]))


def test_a_loss_that_is_not_per_sample_is_one_clear_error(tmp_path, regression):
    data, models = regression
    with pytest.raises(UserError, match="one value per sample"):
        plane(models, out=tmp_path / "p.h5", data=data, config=PlaneConfig(grid=2, loss=nn.MSELoss(), bn="keep"))
    with pytest.raises(UserError, match="unknown loss 'hinge'"):
        PlaneConfig(loss="hinge")


def test_a_rerun_with_another_loss_is_refused(tmp_path, regression):
    data, models = regression
    interpolate(models, out=tmp_path / "paths.h5", data=data, config=PathConfig(points=3, loss="mse", bn="keep"))
    with pytest.raises(UserError, match="different configuration"):
        interpolate(models, out=tmp_path / "paths.h5", data=data,
                    config=PathConfig(points=3, loss=nn.L1Loss(reduction="none"), bn="keep"))
