"""The transformer recipe's ingredients: warm-up, AdamW, soft targets, mixup/cutmix, clipping,
mixed precision; and the presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_model

from ensembles import RunConfig, TrainConfig, cosine_lr, fit, load_preset, preset_names
from ensembles.recipe import Recipe, Stepper, mix_batch, soft_targets
from ensembles.training import make_optimizer
from landscape import UserError


def test_warmup_then_cosine():
    lrs = [cosine_lr(1.0, k, 6, warmup=2) for k in range(1, 7)]
    assert lrs[:2] == [0.5, 1.0]
    assert lrs[2:] == pytest.approx([0.5 * (1 + np.cos(np.pi * j / 4)) for j in range(4)])
    assert cosine_lr(1.0, 1, 6) == 1.0  # no warm-up: the design's formula


def test_optimizer_choice_and_validation():
    model = make_model(0)
    assert isinstance(make_optimizer(model, TrainConfig(1, 0.1, optimizer="adamw")),
                      torch.optim.AdamW)
    sgd = make_optimizer(model, TrainConfig(1, 0.1))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    with pytest.raises(UserError, match="optimizer"):
        TrainConfig(1, 0.1, optimizer="lion")
    with pytest.raises(UserError, match="warmup"):
        TrainConfig(3, 0.1, warmup_epochs=3)


def test_soft_targets_and_mixup():
    y = torch.tensor([0, 2, 1, 2])
    t = soft_targets(y, 4, 0.1)
    torch.testing.assert_close(t.sum(1), torch.ones(4))
    assert t[0, 0] == pytest.approx(0.925) and t[0, 1] == pytest.approx(0.025)
    x = torch.randn(4, 40)
    mixed, mt, lam = mix_batch(x, t, mixup=0.8, cutmix=0.0, rng=np.random.default_rng(0))
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x.flip(0))
    torch.testing.assert_close(mt, lam * t + (1 - lam) * t.flip(0))
    torch.testing.assert_close(mt.sum(1), torch.ones(4))


@pytest.mark.parametrize("shape", [(6, 40), (6, 3, 16, 16)])
def test_cutmix_lambda_is_the_kept_fraction(shape):
    x = torch.zeros(shape)
    x[: shape[0] // 2] = 1.0  # the flipped batch differs everywhere from the original
    t = soft_targets(torch.arange(6) % 3, 3, 0.0)
    mixed, _, lam = mix_batch(x, t, mixup=0.0, cutmix=1.0, rng=np.random.default_rng(3))
    changed = (mixed != x).float().reshape(shape[0], -1).mean(1)
    assert changed.tolist() == pytest.approx([1 - lam] * shape[0])


def test_grad_clip_bounds_the_step():
    model = make_model(0).train()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    Stepper(model, opt, Recipe(10, grad_clip=1e-3), torch.device("cpu"), 0).step(
        torch.randn(32, 40), torch.randint(0, 10, (32,)))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert float((after - before).norm()) == pytest.approx(1e-3, rel=1e-3)


def test_amp_and_recipe_train_on_cpu():
    cfg = TrainConfig(epochs=2, lr=1e-3, wd=0.05, batch_size=256, optimizer="adamw",
                      warmup_epochs=1, label_smoothing=0.1, mixup=0.8, cutmix=1.0,
                      grad_clip=5.0, amp=True)
    res = fit(make_model(0), "mnist1d", cfg)
    assert np.isfinite(res.train_loss) and res.lrs == (1e-3, 1e-3)
    assert all(p.dtype == torch.float32 for p in res.model.parameters())


def test_presets_are_valid_run_configs():
    assert {"mnist1d", "byol-resnet50-cifar100", "supervised-resnet50-cifar100",
            "swin-t-cifar100"} <= set(preset_names())
    for name in preset_names():
        cfg = RunConfig("starsse", ("p.safetensors",), **load_preset(name))
        assert cfg.members == 5
    swin = load_preset("swin-t-cifar100")
    assert swin["optimizer"] == "adamw" and swin["warmup_epochs"] == 10 and swin["amp"] is True
    assert swin["lr"] == 1e-4 and swin["wd"] == 0.25 and swin["grad_clip"] == 5.0
    assert load_preset("byol-resnet50-cifar100")["lr"] == 0.05
