"""A user's own data (``landscape.Data``): the numbers of the same data through the registry,
the naive reference loop's numbers, and a rerun on other data refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from landscape import Data, PathConfig, PlaneConfig, UserError, interpolate, load_checkpoint, load_dataset, plane
from landscape.engine.layout import ParamLayout
from landscape.surfaces.geometry import three_point_basis
from landscape.surfaces.reference import naive_plane

N_TRAIN, N_TEST = 300, 200


def _tensors(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_dataset("mnist1d", split)
    return ds.inputs[:n].clone(), ds.labels[:n].clone()


@pytest.fixture(scope="module")
def mine():
    return Data(train=_tensors("train", N_TRAIN), test=_tensors("test", N_TEST), name="mine", num_classes=10)


def test_user_tensors_give_the_numbers_of_the_same_data_through_the_registry(three_ckpts, tmp_path, mine):
    cfg = dict(grid=3, engine="loop", group_size=4)
    ours = plane(three_ckpts, out=tmp_path / "ours.h5", data=mine, config=PlaneConfig(**cfg))
    # the registry's mnist1d, cut to the same first samples by a dataset of its own
    train, test = load_dataset("mnist1d", "train"), load_dataset("mnist1d", "test")
    same = Data(train=TensorDataset(train.inputs[:N_TRAIN], train.labels[:N_TRAIN]),
                test=DataLoader(TensorDataset(test.inputs[:N_TEST], test.labels[:N_TEST]), batch_size=7, shuffle=True))
    theirs = plane(three_ckpts, out=tmp_path / "theirs.h5", data=same, config=PlaneConfig(**cfg))
    for split in ("train", "test"):
        np.testing.assert_array_equal(ours.loss(split), theirs.loss(split))  # a loader's shuffling is ignored
        np.testing.assert_array_equal(ours.acc(split), theirs.acc(split))
    identity = ours.config["identity"]
    assert identity["dataset"] == "mine" and identity["data"]["train"]["size"] == N_TRAIN
    assert identity["data"] == theirs.config["identity"]["data"]  # the same contents, the same hash


def _assert_naive(surface, ckpts, data, bn) -> None:
    """The surface equals the naive per-point loop over the same checkpoints and data."""
    layout = ParamLayout.of(ckpts[0].model)
    basis = three_point_basis(*[layout.flatten(c.model.state_dict()) for c in ckpts])
    splits = {s: data.dataset(s) for s in ("train", "test")}
    ref = naive_plane(ckpts[0].model, basis, surface.x, surface.y, splits, bn=bn, bn_train=splits["train"],
                      buffer_states=[c.model.state_dict() for c in ckpts], batch_size=64)
    for split in ("train", "test"):
        np.testing.assert_allclose(surface.loss(split), ref[split]["loss"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(surface.acc(split), ref[split]["acc"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("bn", ["recompute", "keep", "interpolate"])
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_the_engine_on_user_data_equals_the_naive_reference(three_ckpts, tmp_path, mine, bn, strategy):
    surface = plane(three_ckpts, out=tmp_path / "p.h5", data=mine,
                    config=PlaneConfig(grid=3, bn=bn, engine=strategy, group_size=4, batch_size=64))
    ckpts = [load_checkpoint(p) for p in three_ckpts]
    _assert_naive(surface, ckpts, mine, bn)
    assert np.ptp(surface.loss("test")) > 1e-3


def test_a_rerun_on_other_data_is_refused(three_ckpts, tmp_path, mine):
    cfg = PathConfig(points=3, engine="loop")
    interpolate(three_ckpts, out=tmp_path / "paths.h5", data=mine, config=cfg)
    x, y = _tensors("test", N_TEST)
    y[0] = (y[0] + 1) % 10  # one label changed
    other = Data(train=mine.train, test=(x, y), name="mine")
    with pytest.raises(UserError, match="different configuration.*data"):
        interpolate(three_ckpts, out=tmp_path / "paths.h5", data=other, config=cfg)
    again = interpolate(three_ckpts, out=tmp_path / "paths.h5", data=Data(train=mine.train, test=mine.test,
                                                                            name="mine"), config=cfg)
    assert again.complete  # the same data resumes


class _Augmented(Dataset):
    def __len__(self):
        return 50

    def __getitem__(self, i):
        return torch.randn(40), 0


def test_bad_data_is_one_clear_error(three_ckpts, tmp_path, mine):
    with pytest.raises(UserError, match="must be a torch Dataset"):
        Data(train=5)
    with pytest.raises(UserError, match="needs a train or a test split"):
        Data()
    with pytest.raises(UserError, match="inputs but"):
        Data(test=(torch.zeros(3, 40), torch.zeros(2)))
    with pytest.raises(UserError, match="random augmentation"):
        plane(three_ckpts, out=tmp_path / "a.h5", data=Data(train=_Augmented(), test=mine.test),
              config=PlaneConfig(grid=2))
    with pytest.raises(UserError, match="has 10 classes but the data .data. has 3"):
        plane(three_ckpts, out=tmp_path / "b.h5", data=Data(train=mine.train, test=mine.test, num_classes=3),
              config=PlaneConfig(grid=2))
    x, y = mine.test
    with pytest.raises(UserError, match=r"class indices in \[0, 10\)"):
        plane(three_ckpts, out=tmp_path / "c.h5", data=Data(train=mine.train, test=(x, y + 10)),
              config=PlaneConfig(grid=2))
    with pytest.raises(UserError, match="no train split"):
        plane(three_ckpts, out=tmp_path / "d.h5", data=Data(test=mine.test), config=PlaneConfig(grid=2))
    assert not any((tmp_path / n).exists() for n in ("a.h5", "b.h5", "c.h5", "d.h5"))


class _Net(torch.nn.Module):
    """A user's own model with BatchNorm (not in any registry)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(40, 12), torch.nn.BatchNorm1d(12), torch.nn.ReLU())
        self.head = torch.nn.Linear(12, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.mark.parametrize("bn", ["recompute", "keep", "interpolate"])
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_a_users_model_on_user_data_equals_the_naive_reference(tmp_path, mine, bn, strategy):
    from landscape import as_checkpoint

    torch.manual_seed(0)
    models = {}
    for name in "abc":
        m = _Net()
        with torch.no_grad():  # distinct BN buffers, so that interpolate and keep differ
            m.body[1].running_mean.normal_()
            m.body[1].running_var.uniform_(0.5, 2.0)
        models[name] = m.eval()
    surface = plane(models, out=tmp_path / "p.h5", data=mine,
                    config=PlaneConfig(grid=3, bn=bn, engine=strategy, group_size=4, batch_size=64))
    ckpts = [as_checkpoint(m, name=n) for n, m in models.items()]
    _assert_naive(surface, ckpts, mine, bn)
    # interpolated BN variances can turn negative beyond the checkpoints (NaN in both): not flat elsewhere
    assert np.nanmax(surface.loss("test")) - np.nanmin(surface.loss("test")) > 1e-3
