"""The paper's diagnosis on MNIST-1D: fine-tunes of one checkpoint share a basin, models
trained from scratch with different seeds do not. Fails if either label is wrong."""

from __future__ import annotations

import pytest

from ensembles import TrainConfig, finetune, pretrain
from landscape import load_checkpoint, save_checkpoint
from landscape.surfaces.basins import path_report
from landscape.surfaces.paths import PathConfig, interpolate


@pytest.mark.slow
def test_same_basin_for_finetunes_and_different_basin_for_scratch_models(tmp_path):
    def save(res, name):
        path = tmp_path / f"{name}.safetensors"
        save_checkpoint(res.model, path, res.meta)
        return path

    scratch = [save(pretrain("mnist1d_cnn", "mnist1d", TrainConfig(epochs=12, lr=0.05, seed=s)),
                    f"scratch{s}") for s in (1, 2)]
    pre = load_checkpoint(scratch[0])
    tuned = [save(finetune(pre, "mnist1d", TrainConfig(epochs=3, lr=0.005, seed=s)), f"ft{s}")
             for s in (3, 4)]
    cfg = PathConfig(points=11)
    reports = {}
    for name, pair in (("scratch", scratch), ("tuned", tuned)):
        ps = interpolate(pair, out=tmp_path / f"{name}.h5", config=cfg)
        ckpts = [load_checkpoint(p) for p in pair]
        reports[name] = path_report(ps, ckpts, pretrained=[pre])[0]
    assert reports["tuned"].same_basin, reports["tuned"]
    assert not reports["scratch"].same_basin, reports["scratch"]
    assert reports["scratch"].acc_barrier_test > 10 * reports["tuned"].acc_barrier_test + 1
    assert reports["tuned"].a_from_pretrained > 0  # lineage found: distance over the backbone
