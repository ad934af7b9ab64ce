"""Thin 1-D convolutions computed as one matrix product give the convolution's numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

from landscape.engine.thin_conv import MatmulConv1d, use_matmul_convs


@pytest.mark.parametrize("cin, k, stride, padding, bias", [
    (1, 5, 1, 2, False), (1, 5, 2, 0, True), (2, 3, 1, 1, True), (1, 1, 1, 0, True), (4, 2, 3, 1, False)])
def test_matmul_conv_equals_the_convolution(cin, k, stride, padding, bias):
    torch.manual_seed(0)
    conv = nn.Conv1d(cin, 7, k, stride=stride, padding=padding, bias=bias)
    x = torch.randn(6, cin, 23)
    expected = conv(x)
    conv.__class__ = MatmulConv1d
    got = conv(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(conv(x[0]), expected[0], rtol=0, atol=1e-5)  # unbatched: the usual way


def test_matmul_conv_under_vmap_over_weight_sets():
    """The engine's vmap path maps the model over stacked weights."""
    torch.manual_seed(0)
    conv = nn.Conv1d(1, 4, 5, padding=2)
    x = torch.randn(3, 1, 16)
    weights = {"weight": torch.randn(5, 4, 1, 5), "bias": torch.randn(5, 4)}
    expected = vmap(lambda p: functional_call(conv, p, (x,)))(weights)
    conv.__class__ = MatmulConv1d
    got = vmap(lambda p: functional_call(conv, p, (x,)))(weights)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_only_thin_plain_convolutions_are_switched():
    model = nn.Sequential(nn.Conv1d(1, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 8, 3, padding=1),
                          nn.Conv1d(8, 8, 1, groups=8), nn.Conv1d(8, 2, 1, padding="same"))
    assert use_matmul_convs(model, torch.randn(4, 1, 12)) == 1
    assert [type(m).__name__ for m in model if isinstance(m, nn.Conv1d)] == [
        "MatmulConv1d", "Conv1d", "Conv1d", "Conv1d"]  # 8 x 3 inputs per output; groups; 'same'


def test_a_switch_that_changes_the_outputs_is_undone(monkeypatch):
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.Flatten())
    monkeypatch.setattr(MatmulConv1d, "_conv_forward", lambda self, x, w, b: torch.zeros(x.shape[0], 4, 10))
    assert use_matmul_convs(model, torch.randn(2, 1, 12)) == 0
    assert type(model[0]) is nn.Conv1d
