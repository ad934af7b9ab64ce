"""The interval and verdict logic on synthetic predictions with a known answer (#19)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ensembles.uncertainty import (
    Interval,
    correct,
    group_difference,
    mean_interval,
    overall_verdict,
    paired_difference,
    replicate_interval,
    replicated_difference,
    resample_indices,
    union,
)


def _probs(right: np.ndarray, labels: np.ndarray, classes: int = 10) -> np.ndarray:
    """Probabilities whose argmax is the label where ``right``, another class elsewhere."""
    pred = np.where(right, labels, (labels + 1) % classes)
    probs = np.full((len(labels), classes), 0.5 / (classes - 1))
    probs[np.arange(len(labels)), pred] = 0.5
    return probs


def test_two_identical_ensembles_are_inconclusive():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    p = _probs(rng.random(2000) < 0.87, labels)
    diff = paired_difference(correct(p, labels), correct(p.copy(), labels), resample_indices(2000))
    assert (diff.value, diff.low, diff.high) == (0.0, 0.0, 0.0)
    assert diff.verdict("greater") == diff.verdict("less") == "inconclusive"


def test_a_clear_difference_is_supported_and_the_other_way_contradicted():
    rng = np.random.default_rng(1)
    n = 5000
    labels = rng.integers(0, 10, n)
    u = rng.random(n)
    better, worse = correct(_probs(u < 0.90, labels), labels), correct(_probs(u < 0.85, labels), labels)
    idx = resample_indices(n)
    diff = paired_difference(better, worse, idx)
    assert diff.value == pytest.approx(100 * (better.mean() - worse.mean()))
    d = better.mean() - worse.mean()  # nested: the difference is a Bernoulli proportion itself
    assert (diff.high - diff.low) / 2 == pytest.approx(100 * 1.96 * math.sqrt(d * (1 - d) / n), rel=0.15)
    assert 0 < diff.low < diff.value < diff.high
    assert diff.verdict("greater") == "supported"
    assert paired_difference(worse, better, idx).verdict("greater") == "contradicted"
    assert paired_difference(worse, better, idx).verdict("less") == "supported"


def test_pairing_makes_a_small_consistent_difference_visible():
    """A 1 pp gain on the same samples (b right wherever a is, plus 1%) is supported paired, while
    the two accuracies' own intervals overlap."""
    rng = np.random.default_rng(2)
    n = 4000
    a = (rng.random(n) < 0.85).astype(float)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:40]] = 1.0  # 40 more right: +1 pp
    idx = resample_indices(n)
    ia, ib = mean_interval(a, idx, scale=100), mean_interval(b, idx, scale=100)
    assert ia.high > ib.low  # unpaired, the intervals overlap
    assert paired_difference(b, a, idx).verdict("greater") == "supported"


@pytest.mark.parametrize("p", [0.87, 0.5, 0.97])
def test_the_bootstrap_interval_of_a_proportion_matches_its_analytic_interval(p):
    n = 10_000
    values = (np.random.default_rng(3).random(n) < p).astype(float)
    got = mean_interval(values, resample_indices(n, resamples=2000), scale=100)
    phat = values.mean()
    half = 100 * 1.959964 * math.sqrt(phat * (1 - phat) / n)  # the normal (Wald) interval
    assert got.value == pytest.approx(100 * phat)
    assert (got.high - got.low) / 2 == pytest.approx(half, rel=0.1)  # within sampling error of 2000 resamples
    assert got.low < 100 * phat < got.high


def test_replicates_give_students_t_interval():
    got = replicate_interval([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert got.value == 2.0 and got.low == pytest.approx(2 - half) and got.high == pytest.approx(2 + half)
    one = replicate_interval([5.0])
    assert one.value == 5.0 and math.isnan(one.low) and one.verdict() == "inconclusive"


def test_resampling_is_seeded_and_paired_across_calls():
    a, b = resample_indices(100, seed=4), resample_indices(100, seed=4)
    assert np.array_equal(a, b) and a.shape == (1000, 100) and a.min() >= 0 and a.max() < 100
    assert not np.array_equal(a, resample_indices(100, seed=5))


def test_format_and_bad_sides():
    assert Interval(0.6, 0.2, 1.0).format() == "+0.6 pp [+0.2, +1.0]"
    assert Interval(87.04, 86.3, 87.7).format(unit="%", signed=False) == "87.0 % [86.3, 87.7]"
    with pytest.raises(ValueError):
        Interval(1, 0, 2).verdict("bigger")


def test_the_size_figure_draws_each_interval_as_a_band():
    from viz import plot_size_curves

    series = {"a": {"accuracy": [80.0, 82.0], "accuracy_low": [79.0, 81.5], "accuracy_high": [81.0, 82.5]},
              "b": {"accuracy": [70.0, 71.0]}}
    ax = plot_size_curves(series, ("accuracy",)).axes[0]
    (band,) = ax.collections  # b has no interval: no band
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == 79.0 and ys.max() == 82.5


def test_values_are_rounded_to_the_precision_of_their_interval():
    assert Interval(0.6123, 0.2, 1.0).digits() == 1  # +-0.4
    assert Interval(87.043, 87.0, 87.09).digits() == 2  # +-0.045
    assert Interval(12.3, 9.3, 15.3).digits() == 0  # +-3
    assert Interval(1.0, -0.4, 2.4).digits() == 1  # +-1.4: a leading 1 keeps a second digit
    assert Interval(1.0, 0.85, 1.15).digits() == 2  # +-0.15
    assert Interval(0.001, math.nan, math.nan).digits() == 2 and Interval(1, 1, 1).digits() == 2
    assert Interval(-0.001, -0.3, 0.2).format() == "+0.0 pp [-0.3, +0.2]"  # a rounded zero has no minus
    assert Interval(0.001, math.nan, math.nan).format() == "+0.00 pp [n/a]"


def test_a_replicated_difference_pairs_samples_and_replicates():
    rng = np.random.default_rng(6)
    n = 3000
    base = [(rng.random(n) < 0.8).astype(float) for _ in range(3)]
    better = []
    for b in base:  # every replicate: 60 more samples right on the same test set (+2 pp)
        x = b.copy()
        x[np.flatnonzero(b == 0)[:60]] = 1.0
        better.append(x)
    idx = resample_indices(n)
    boot, reps, both = replicated_difference(better, base, idx)
    assert boot.value == pytest.approx(2.0) and reps.value == pytest.approx(2.0) and both.value == pytest.approx(2.0)
    assert reps.low == reps.high == pytest.approx(2.0)  # the same gain in every replicate: no spread
    assert both.low == min(boot.low, reps.low) and both.high == max(boot.high, reps.high)
    assert both.verdict("greater") == "supported"
    # replicates that disagree: supported on test samples, but not across the sources
    worse1 = base[1].copy()
    worse1[np.flatnonzero(base[1] == 1)[:150]] = 0.0  # replicate 2: -5 pp
    boot, reps, both = replicated_difference([better[0], worse1, better[2]], base, idx)
    assert reps.value == pytest.approx((2 + 2 - 5) / 3) and both.verdict("greater") == "inconclusive"
    # a single run on one side is compared with every replicate of the other
    boot1, reps1, _ = replicated_difference([better[0]], base, idx)
    assert reps1.value == pytest.approx(np.mean([100 * (better[0] - b).mean() for b in base]))


def test_a_group_difference_is_welchs_t():
    a, b = [3.0, 4.0, 5.0, 4.0], [0.5, 1.5, 1.0]
    got = group_difference(a, b)
    from scipy import stats

    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert got.value == pytest.approx(3.0) and got.low == pytest.approx(ref.low) and got.high == pytest.approx(ref.high)
    assert got.verdict("greater") == "supported" and group_difference(b, a).verdict("greater") == "contradicted"
    assert math.isnan(group_difference([1.0], b).low)  # one pair: no spread, no verdict
    assert group_difference([1.0, math.nan, 2.0], [1.0, 2.0]).value == pytest.approx(0.0)  # NaN left out


def test_a_claim_of_several_effects():
    assert overall_verdict(["supported", "supported"]) == "supported"
    assert overall_verdict(["supported", "inconclusive"]) == "inconclusive"
    assert overall_verdict(["supported", "contradicted"]) == "contradicted"
    assert overall_verdict([]) == "inconclusive"
    u = union(Interval(1, 0.5, 1.5), Interval(1, math.nan, math.nan), Interval(1, 0.8, 2.0))
    assert (u.low, u.high) == (0.5, 2.0)
