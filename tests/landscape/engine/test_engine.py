"""The batched engine against the naive per-point reference loop, and its invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_model
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader

from landscape import PlaneConfig, load_checkpoint, load_dataset, plane
from landscape.engine.bn import recompute_bn_
from landscape.assets.resident import ArrayDataset, subset_indices
from landscape.engine.evaluator import EvalData, GridEvaluator
from landscape.engine.layout import ParamLayout
from landscape.surfaces.geometry import three_point_basis
from landscape.surfaces.reference import naive_plane

TRAIN_N, TEST_N, GRID = 300, 200, 3


def _subset(split: str, n: int, seed: int = 0) -> ArrayDataset:
    ds = load_dataset("mnist1d", split)
    idx = torch.as_tensor(subset_indices(len(ds), n, seed=seed))
    return ArrayDataset(ds.inputs[idx], ds.labels[idx])


def _naive(paths, surface, bn):
    ckpts = [load_checkpoint(p) for p in paths]
    layout = ParamLayout.of(ckpts[0].model)
    basis = three_point_basis(*[layout.flatten(c.model.state_dict()) for c in ckpts])
    train = _subset("train", TRAIN_N)
    return naive_plane(
        ckpts[0].model, basis, surface.x, surface.y, {"train": train, "test": _subset("test", TEST_N)},
        bn=bn, bn_train=train, buffer_states=[c.model.state_dict() for c in ckpts],
        batch_size=64,
    )


@pytest.mark.parametrize("bn", ["recompute", "keep", "interpolate"])
@pytest.mark.parametrize("path, workers", [("loop", None), ("loop", 3), ("vmap", None)],
                         ids=["loop", "loop-3-workers", "vmap"])
def test_engine_equals_naive_reference(three_ckpts, tmp_path, bn, path, workers):
    """Groups of 4 points: with 3 worker threads one of them takes two points of a group, and
    the last group (one point) runs without threads."""
    config = PlaneConfig(grid=GRID, bn=bn, train_subset=TRAIN_N, test_subset=TEST_N,
                         engine=path, group_size=4, batch_size=128, workers=workers)
    surface = plane(three_ckpts, out=tmp_path / "p.h5", config=config)
    ref = _naive(three_ckpts, surface, bn)
    assert surface.complete and surface.config["runtime"]["engine"]["data"] == "on the device"
    for split in ("train", "test"):
        np.testing.assert_allclose(surface.loss(split), ref[split]["loss"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(surface.acc(split), ref[split]["acc"], rtol=0, atol=1e-4)
    # the surface is not flat: the test would notice a constant answer
    assert np.ptp(surface.loss("test")) > 1e-3


def test_bn_policies_give_different_surfaces(three_ckpts, tmp_path):
    losses = {}
    for bn in ("recompute", "keep", "interpolate"):
        config = PlaneConfig(grid=GRID, bn=bn, train_subset=TRAIN_N, test_subset=TEST_N,
                             splits=("test",), engine="loop")
        losses[bn] = plane(three_ckpts, out=tmp_path / f"{bn}.h5", config=config).loss("test")
    assert not np.allclose(losses["recompute"], losses["keep"], atol=1e-4)
    assert not np.allclose(losses["keep"], losses["interpolate"], atol=1e-4)


def test_recompute_matches_update_bn_and_ignores_engine_batching():
    model = make_model(3)
    x = load_dataset("mnist1d", "train").inputs[:700]  # 5 full batches + a partial one
    ours = make_model(3)
    recompute_bn_(ours, x, batch_size=128)
    update_bn(DataLoader(x, batch_size=128, shuffle=False), model)
    for (name, a), b in zip(ours.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    # the vmap path computes the same statistics functionally, for several points at once
    layout = ParamLayout.of(ours)
    w = layout.flatten(ours.state_dict()).repeat(2, 1)
    ev = GridEvaluator(ours, layout, EvalData({"test": (x[:10], torch.zeros(10).long())}, x),
                       bn_policy="recompute", bn_batch_size=128, batch_size=50)
    stats = ev.vmap.bn_stats(layout.unflatten(w), None)
    for name, value in stats.items():
        torch.testing.assert_close(value[1].to(model.state_dict()[name].dtype),
                                   model.state_dict()[name], rtol=1e-5, atol=1e-6, msg=name)


def test_eval_batch_size_and_group_size_do_not_change_numbers(three_ckpts, tmp_path):
    base = dict(grid=GRID, train_subset=TRAIN_N, test_subset=TEST_N)
    a = plane(three_ckpts, out=tmp_path / "a.h5",
              config=PlaneConfig(**base, batch_size=7, group_size=2, engine="vmap"))
    b = plane(three_ckpts, out=tmp_path / "b.h5",
              config=PlaneConfig(**base, batch_size=1000, group_size=9, engine="loop"))
    c = plane(three_ckpts, out=tmp_path / "c.h5", config=PlaneConfig(**base, engine="auto"))
    for split in ("train", "test"):
        np.testing.assert_allclose(a.loss(split), b.loss(split), atol=1e-5, rtol=0)
        np.testing.assert_allclose(c.loss(split), b.loss(split), atol=1e-5, rtol=0)
    engine = c.config["runtime"]["engine"]
    assert engine["chosen_by"] == "measured" and engine["path"] in ("loop", "vmap")
    assert {"loop", "vmap"} <= set(engine["seconds_per_point"])
    threads = torch.get_num_threads()  # the loop path with a worker thread per intra-op thread
    assert (f"loop, {threads} workers" in engine["seconds_per_point"]) is (threads > 1)
    assert engine["workers"] in ({1, threads} if engine["path"] == "loop" else {1})
    assert engine["batch_size"] in (1024 // 4, TEST_N, TRAIN_N) and engine["group_size"] in (4, 8, 16)


def test_callers_model_is_bit_identical_after_evaluation(three_ckpts, tmp_path):
    ckpts = [load_checkpoint(p) for p in three_ckpts]
    before = [{k: v.clone() for k, v in c.model.state_dict().items()} for c in ckpts]
    for path in ("loop", "vmap"):
        plane(ckpts, out=tmp_path / f"{path}.h5",
              config=PlaneConfig(grid=2, train_subset=TRAIN_N, test_subset=TEST_N, engine=path))
    for c, b in zip(ckpts, before):
        assert not c.model.training
        for k, v in c.model.state_dict().items():
            assert torch.equal(v, b[k]), k
        assert all(m.momentum == 0.1 for m in c.model.modules() if hasattr(m, "momentum"))


class _ReorderedBN(torch.nn.Module):
    """BN layers registered in one order, run in another, and one of them run twice."""

    def __init__(self) -> None:
        super().__init__()
        self.bn_late = torch.nn.BatchNorm1d(3)
        self.bn_early = torch.nn.BatchNorm1d(3)
        self.bn_unused = torch.nn.BatchNorm1d(3)
        self.lin = torch.nn.Linear(3, 3)
        self.head = torch.nn.Linear(3, 10)

    def forward(self, x):
        h = self.bn_early(x[:, :3] * 2 + 1)
        h = self.bn_late(self.lin(torch.relu(h)))
        h = self.bn_late(h * 3)
        return self.head(h)


def test_vmap_bn_statistics_follow_layers_not_call_order():
    torch.manual_seed(0)
    model = _ReorderedBN().eval()
    x = torch.randn(300, 40)
    y = torch.randint(0, 10, (300,))
    layout = ParamLayout.of(model)
    w = layout.flatten(dict(model.named_parameters())).repeat(2, 1)
    ev = GridEvaluator(model, layout, EvalData({"test": (x, y)}, x), bn_policy="recompute",
                       bn_batch_size=64, batch_size=100)
    loop, vm = (ev.evaluate(w, strategy=p).metrics["test"]["loss"] for p in ("loop", "vmap"))
    np.testing.assert_allclose(vm, loop, atol=1e-5, rtol=0)
    ref = _ReorderedBN()
    ref.load_state_dict(model.state_dict())
    update_bn(DataLoader(x, batch_size=64), ref)
    stats = ev.vmap.bn_stats(layout.unflatten(w), None)
    for name in ("bn_late.running_mean", "bn_late.running_var", "bn_early.running_var"):
        torch.testing.assert_close(stats[name][0], ref.state_dict()[name], rtol=1e-5, atol=1e-6)
    assert int(stats["bn_late.num_batches_tracked"][0]) == 10  # 5 batches, called twice each
    assert "bn_unused.running_mean" not in stats


@pytest.mark.parametrize("model_fn", [lambda: make_model(3), lambda: _ReorderedBN().eval()],
                         ids=["mnist1d_cnn", "reordered"])
def test_bn_statistics_summed_on_the_device_equal_bns_own_average(model_fn):
    """The loop path's GPU way of gathering BN statistics (device sums, no host sync), run here
    on the CPU: the same buffers as ``recompute_bn_``, for layers run twice or never too."""
    torch.manual_seed(0)
    model = model_fn()
    x = load_dataset("mnist1d", "train").inputs[:300]
    layout = ParamLayout.of(model)
    data = EvalData({"test": (x[:50], torch.zeros(50).long())}, x)
    buffers = {}
    for sums in (False, True):
        ev = GridEvaluator(model, layout, data, bn_policy="recompute", bn_batch_size=64, batch_size=100)
        ev.loop.bn.device_sums = sums
        ev.loop.replicas[0].load(ev.core.layout, layout.flatten(dict(model.named_parameters())), None, ev.core.device)
        ev.loop.bn.run_(ev.loop.replicas[0], None)  # 4 full batches and a short one
        buffers[sums] = {k: v.clone() for k, v in ev.model.named_buffers()}
        assert all(m.training is False and m.track_running_stats for _, m in ev.loop.replicas[0].bn_layers)
    for name, value in buffers[False].items():
        torch.testing.assert_close(buffers[True][name], value, rtol=1e-5, atol=1e-6, msg=name)
    if "bn_late.num_batches_tracked" in buffers[True]:
        assert int(buffers[True]["bn_late.num_batches_tracked"]) == 10  # called twice a batch
        assert int(buffers[True]["bn_unused.num_batches_tracked"]) == 0
