"""BN folding: the fused copy computes what the model computes, and follows its weights."""

from __future__ import annotations

import torch
from conftest import perturbed
from torch import nn

from landscape import create_model
from landscape.engine.fold import fold_pairs, try_fold


def _with_stats(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, in eval mode."""
    return perturbed(model, seed, scale=0.3).eval()


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_mnist1d_cnn_folds_every_conv_bn_pair_and_tracks_new_weights():
    torch.manual_seed(0)
    model = _with_stats(create_model("mnist1d_cnn", 10, width=4), 1)
    x = torch.randn(32, 40)
    folded = try_fold(model, x[:8])
    assert folded is not None and len(folded.pairs) == 5
    assert all(c.endswith(".0") and b.endswith(".1") for c, b in folded.pairs)
    _close(folded.refresh()(x), model(x))
    with torch.no_grad():  # new weights and statistics in the source: refresh follows
        model.load_state_dict(_with_stats(model, 2).state_dict())
    _close(folded.refresh()(x), model(x))
    shared = dict(folded.model.named_parameters())["head.weight"]
    assert shared is dict(model.named_parameters())["head.weight"]  # unfused layers are shared


def test_resnet_blocks_and_shortcuts_fold():
    torch.manual_seed(0)
    model = _with_stats(create_model("resnet20", 10, width=4), 3)
    x = torch.randn(4, 3, 16, 16)
    pairs = fold_pairs(model, x)
    assert ("stem.0", "stem.1") in pairs and ("layers.0.conv1", "layers.0.bn1") in pairs
    assert ("layers.3.shortcut.0", "layers.3.shortcut.1") in pairs
    assert len(pairs) == 1 + 9 * 2 + 2  # stem, two per block, two projection shortcuts
    _close(try_fold(model, x).refresh()(x), model(x))


class _Reuses(nn.Module):
    """The convolution's output feeds the BN layer and, unnormalised, the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv1d(1, 3, 3, padding=1), nn.BatchNorm1d(3)

    def forward(self, x):
        h = self.conv(x.unsqueeze(1))
        return (self.bn(h) + h).flatten(1)


def test_a_conv_output_used_twice_is_not_folded():
    model = _with_stats(_Reuses(), 4)
    assert fold_pairs(model, torch.randn(4, 5)) == [("conv", "bn")]  # adjacent, but ...
    assert try_fold(model, torch.randn(4, 5)) is None  # ... the check refuses the fused copy


def test_linear_then_batchnorm1d_folds():
    model = _with_stats(nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)), 5)
    x = torch.randn(16, 6)
    folded = try_fold(model, x)
    assert folded is not None and folded.pairs == [("0", "1")]
    _close(folded.refresh()(x), model(x))


class _Tied(nn.Module):
    """Two convolutions sharing one weight, each with its own BN layer."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv1d(2, 2, 3, padding=1, bias=False), nn.BatchNorm1d(2)
        self.b, self.bn_b = nn.Conv1d(2, 2, 3, padding=1, bias=False), nn.BatchNorm1d(2)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.bn_b(self.b(torch.relu(self.bn_a(self.a(x))))).flatten(1)


def test_layers_sharing_weights_are_not_folded():
    model = _Tied().eval()  # default statistics: a wrong fold would pass the build-time check
    x = torch.randn(4, 2, 6)
    assert fold_pairs(model, x) == []
    assert try_fold(model, x) is None
