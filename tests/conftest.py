"""Shared fixtures: tiny MNIST-1D checkpoints made in seconds, without pre-training."""

from __future__ import annotations

import pytest
import torch

from landscape import CheckpointMeta, create_model, load_dataset, save_checkpoint
from landscape.engine.bn import recompute_bn_

WIDTH = 4


def make_model(seed: int, *, width: int = WIDTH) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("mnist1d_cnn", 10, width=width).eval()


def perturbed(model: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """A copy with every float tensor (BN buffers too) moved a little, seeded."""
    import copy

    gen = torch.Generator().manual_seed(seed)
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, t in out.state_dict().items():
            if t.is_floating_point():
                noise = scale * torch.randn(t.shape, generator=gen)
                t.add_(noise.abs() if name.endswith("running_var") else noise)
    return out


def meta(width: int = WIDTH, **kw) -> CheckpointMeta:
    return CheckpointMeta("mnist1d_cnn", 10, {"width": width}, "mnist1d", **kw)


@pytest.fixture(scope="session")
def three_ckpts(tmp_path_factory) -> list:
    """Paths of three related checkpoints A, B, C with real (recomputed) BN statistics."""
    root = tmp_path_factory.mktemp("ckpts")
    x = load_dataset("mnist1d", "train").inputs[:512]
    base = make_model(0)
    paths = []
    for name, model in (("A", base), ("B", perturbed(base, 1)), ("C", perturbed(base, 2))):
        recompute_bn_(model, x + 0.1 * len(paths), batch_size=128)  # distinct BN buffers
        path = root / f"{name}.safetensors"
        save_checkpoint(model, path, meta())
        paths.append(path)
    return paths
