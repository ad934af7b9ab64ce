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


@pytest.fixture(autouse=True)
def _registries_restored():
    """What a test registers (models, datasets, trusted archs, user data) is gone after it: tests
    must not see each other's."""
    from landscape.assets import datasets as datasets_mod
    from landscape.assets import models as models_mod
    from landscape.assets import modules as modules_mod
    from landscape.assets import resolve as resolve_mod

    registries = [datasets_mod._DATASETS, models_mod._MODELS]
    saved = [(dict(r._entries), dict(r._usages)) for r in registries]
    trusted, user_data = set(modules_mod._TRUSTED), dict(resolve_mod._USER_DATA)
    yield
    modules_mod._TRUSTED.clear()
    modules_mod._TRUSTED.update(trusted)
    resolve_mod._USER_DATA.clear()
    resolve_mod._USER_DATA.update(user_data)
    for r, (entries, usages) in zip(registries, saved):
        r._entries.clear()
        r._entries.update(entries)
        r._usages.clear()
        r._usages.update(usages)


# A user's model file: importing it leaves a <name>.imported file beside it.
TINY_MODEL = """
from pathlib import Path
import torch
from torch import nn

Path(__file__).with_suffix(".imported").write_text("imported")  # the import's side effect

class TinyCNN(nn.Module):
    def __init__(self, num_classes=10, width=3):
        super().__init__()
        self.conv = nn.Conv1d(1, width, 5, padding=2)
        self.bn = nn.BatchNorm1d(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = x.unsqueeze(1) if x.dim() == 2 else x
        return self.head(torch.relu(self.bn(self.conv(x))).mean(-1))
"""


# 8 x 8 greyscale ImageFolder trees and a model for them (the image tests of issue #17).


def gray_imagefolder(root, n=20):
    """Three classes of 8 x 8 greyscale PNGs under root/{train,test}/c<k>/: noise plus a bright
    left, right or top half."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, half in enumerate([np.s_[:, :4], np.s_[:, 4:], np.s_[:4, :]]):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                px = rng.integers(0, 90, size=(8, 8))
                px[half] += 140
                Image.fromarray(px.astype(np.uint8), mode="L").save(root / split / f"c{c}" / f"{i}.png")
    return root


def gray_by_hand(root, split):
    """A split of a ``gray_imagefolder`` tree read with a hand-written transform (mean 0.5, std 0.25)."""
    from torchvision import datasets
    from torchvision import transforms as T

    from landscape.assets.resident import as_tensors

    steps = T.Compose([T.Grayscale(1), T.ToTensor(), T.Normalize([0.5], [0.25])])
    return as_tensors(datasets.ImageFolder(str(root / split), steps))


def tiny8(num_classes: int = 3) -> torch.nn.Module:
    """A model of 8 x 8 greyscale inputs."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, num_classes))
