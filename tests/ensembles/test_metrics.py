"""Ensemble metrics against direct numpy references and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_model

from ensembles.metrics import accuracy, brier, diversity, ece, ensemble_rows, nll
from ensembles.soup import uniform_soup


def _probs(n=50, c=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 2
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), rng.integers(0, c, n)


def test_nll_and_brier_against_direct_numpy():
    p, y = _probs()
    assert nll(p, y) == pytest.approx(np.mean([-np.log(p[i, y[i]]) for i in range(len(y))]))
    onehot = np.eye(p.shape[1])[y]
    assert brier(p, y) == pytest.approx(np.mean([((p[i] - onehot[i]) ** 2).sum()
                                                 for i in range(len(y))]))
    assert accuracy(p, y) == pytest.approx(100 * np.mean(p.argmax(1) == y))


def test_ece_hand_computed():
    # confidences 0.9 (one right, one wrong) and 0.6 (both right), 2 classes
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    # bin of 0.9: |0.5 - 0.9| * 2/4 = 0.2; bin of 0.6: |1.0 - 0.6| * 2/4 = 0.2
    assert ece(p, y) == pytest.approx(40.0)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert ece(perfect, np.array([0, 1])) == pytest.approx(0.0)


def test_diversity_hand_computed():
    y = np.zeros(10, dtype=int)
    onehot = lambda preds: np.eye(3)[preds]  # noqa: E731
    m1 = onehot([0] * 8 + [1, 1])        # error 0.2
    m2 = onehot([0] * 9 + [2])           # error 0.1; disagrees with m1 on 2 of 10
    assert diversity([m1, m2], y) == pytest.approx(100 * 0.2 / 0.2)
    m3 = onehot([1] + [0] * 9)           # error 0.1; vs m1: 3 of 10, vs m2: 2 of 10
    expected = 100 * np.mean([0.2 / 0.2, 0.3 / 0.2, 0.2 / 0.1])
    assert diversity([m1, m2, m3], y) == pytest.approx(expected)
    assert diversity([m1], y) == 0.0


def test_identical_members_equal_one_member():
    p, y = _probs(seed=3)
    rows = ensemble_rows([p, p, p], y)
    for row in rows:
        assert row.accuracy == pytest.approx(rows[0].accuracy)
        assert row.nll == pytest.approx(rows[0].nll) and row.brier == pytest.approx(rows[0].brier)
        assert row.ece == pytest.approx(rows[0].ece) and row.diversity == 0.0
    q, _ = _probs(seed=4)
    two = ensemble_rows([p, q], y)[1]
    assert two.nll == pytest.approx(nll((p + q) / 2, y))
    assert two.member_accuracy == pytest.approx((accuracy(p, y) + accuracy(q, y)) / 2)


def test_soup_of_identical_members_is_the_member_and_soup_averages():
    a, b = make_model(0), make_model(1)
    soup = uniform_soup([a, a, a])
    for k, v in a.state_dict().items():
        torch.testing.assert_close(soup.state_dict()[k], v, rtol=0, atol=1e-7)
    mix = uniform_soup([a, b])
    w = "features.0.0.weight"
    torch.testing.assert_close(mix.state_dict()[w], (a.state_dict()[w] + b.state_dict()[w]) / 2)
    x = torch.randn(300, 40)
    recomputed = uniform_soup([a, a], x)
    assert not torch.equal(recomputed.state_dict()["features.0.1.running_mean"],
                           a.state_dict()["features.0.1.running_mean"])
    assert torch.equal(a.state_dict()[w], make_model(0).state_dict()[w])  # member untouched
