"""Pre-training and fine-tuning: schedule, seeding, lineage, and the caller's model untouched."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_model, meta

from ensembles import TrainConfig, cosine_lr, finetune, pretrain
from landscape import UserError, load_checkpoint, save_checkpoint


def test_cosine_schedule_matches_the_design_formula():
    lrs = [cosine_lr(0.1, k, 4) for k in range(1, 5)]
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * (k - 1) / 4)) for k in range(1, 5)]
    assert lrs == pytest.approx(expected)
    assert lrs[0] == pytest.approx(0.1) and lrs[2] == pytest.approx(0.05)
    with pytest.raises(ValueError):
        cosine_lr(0.1, 0, 4)


def test_finetune_is_seeded_records_lineage_and_leaves_the_parent_alone(tmp_path, monkeypatch):
    sha = save_checkpoint(make_model(0), tmp_path / "pre.safetensors", meta())
    pre = load_checkpoint(tmp_path / "pre.safetensors")
    before = {k: v.clone() for k, v in pre.model.state_dict().items()}
    seen_lrs = []
    from ensembles import training as train_mod

    original = train_mod.train_epoch

    def spy(model, opt, batches, *rest):
        seen_lrs.append(opt.param_groups[0]["lr"])
        return original(model, opt, batches, *rest)

    monkeypatch.setattr(train_mod, "train_epoch", spy)
    cfg = TrainConfig(epochs=2, lr=0.05, seed=3, batch_size=256)
    r1, r2 = finetune(pre, "mnist1d", cfg), finetune(pre, "mnist1d", cfg)
    r3 = finetune(pre, "mnist1d", TrainConfig(epochs=2, lr=0.05, seed=4, batch_size=256))
    assert seen_lrs[:2] == [pytest.approx(0.05), pytest.approx(0.025)]
    for k, v in r1.model.state_dict().items():
        assert torch.equal(v, r2.model.state_dict()[k]), k  # same seed: bit-identical
    assert not torch.equal(r1.model.head.weight, r3.model.head.weight)
    assert r1.meta.parent == sha and r1.meta.seed == 3 and r1.meta.dataset == "mnist1d"
    for k, v in pre.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # training moved the backbone, and the accuracy is far above chance (10%)
    assert not torch.equal(r1.model.features[0][0].weight, pre.model.features[0][0].weight)
    assert r1.test_acc > 30


def test_pretrain_learns_and_validates_config():
    res = pretrain("mnist1d_cnn", "mnist1d", TrainConfig(epochs=2, lr=0.05, batch_size=256),
                   arch_kwargs={"width": 8})
    assert res.meta.method == "pretrain" and res.meta.arch_kwargs == {"width": 8}
    assert res.test_acc > 30
    with pytest.raises(UserError, match="epochs"):
        TrainConfig(epochs=0, lr=0.1)
    with pytest.raises(UserError, match="lr"):
        TrainConfig(epochs=1, lr=-1.0)
