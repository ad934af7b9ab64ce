"""The paper's claims are measured effects whose verdicts follow the numbers (#19): synthetic
per-sample arrays with a known difference give supported, contradicted or inconclusive."""

from __future__ import annotations

import numpy as np
import pytest

from ensembles.claims import consecutive, paper_claims, role_interval
from ensembles.demo.config import ROLES

N, SIZES, REPLICATES = 2000, 3, 3
FIELDS = ("correct", "soup_correct", "member_correct", "ood_correct", "ood_soup_correct")


def _base(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(N) < 0.8).astype(np.float32)


def _shifted(base: np.ndarray, pp: float) -> np.ndarray:
    """``base`` with ``pp`` percent points more (or fewer) samples right, on the same samples."""
    out = base.copy()
    k = int(round(abs(pp) * N / 100))
    out[np.flatnonzero(base == (0 if pp > 0 else 1))[:k]] = 1.0 if pp > 0 else 0.0
    return out


def _demo(gains: dict[str, float], barriers: dict[str, list[float]]):
    """Every role's runs (Global DE one run, the others one per replicate) with accuracy ``gains``
    (pp over a common base, every field and size) and consecutive-snapshot barriers."""
    roles, samples, pairs = {}, {}, {}
    for role in ROLES:
        roles[role] = ["global-de"] if role == "global-de" else [f"source-{r}/{role}" for r in range(REPLICATES)]
        for r, run in enumerate(roles[role]):
            arr = _shifted(_base(r), gains.get(role, 0.0))
            samples[run] = {f: [arr] * SIZES for f in FIELDS}
            if role in barriers:
                pairs[run] = [{"a": f"member-{i}", "b": f"member-{i + 1}", "acc_barrier_test": b,
                               "label": "same basin" if b < 1 else "different basin"}
                              for i, b in enumerate(barriers[role], 1)]
                pairs[run].append({"a": "member-1", "b": "member-3", "acc_barrier_test": 99.0, "label": "x"})
    return roles, samples, pairs


def _by_start(claims) -> dict[str, dict]:
    return {c["claim"].split(" ")[0] + " " + c["claim"].split(" ")[1]: c for c in claims}


BARRIERS = {"sse-local": [0.1, 0.2, 0.0], "sse-optimal": [0.3, 0.1, 0.2], "sse-semilocal": [4.0, 6.0, 5.0]}


def test_clear_effects_are_supported():
    gains = {"starsse-optimal": 12.0, "starsse-semilocal": 2.0, "global-de": 6.0, "sse-semilocal": -6.0,
             "starsse-local": -3.0}
    claims = paper_claims(*_demo(gains, BARRIERS))
    assert len(claims) == 8
    by = {c["claim"]: c for c in claims}
    for text, c in by.items():
        if not text.startswith("Out of distribution"):  # there StarSSE is better: contradicted
            assert c["verdict"] == "supported", (text, c["evidence"])
    ood = by["Out of distribution, optimal StarSSE and optimal SSE ensembles become inferior to Local DE."]
    assert [e["verdict"] for e in ood["effects"]] == ["contradicted", "inconclusive"]  # local-de = sse-optimal
    assert ood["verdict"] == "contradicted"
    star = by["Optimal StarSSE outperforms both optimal SSE and Local DE."]
    first = star["effects"][0]
    assert first["label"] == "starsse-optimal minus sse-optimal, ensemble accuracy at size 3"
    assert first["value"] == pytest.approx(12.0) and first["text"].startswith("+12")
    assert first["replicates"] == [pytest.approx(12.0), pytest.approx(12.0)]  # the same gain on every source
    drop = by["Semi-local SSE shows an accuracy drop in the middle of the path between consecutive snapshots; "
              "local and optimal SSE do not."]
    assert [e["value"] for e in drop["effects"]] == [pytest.approx(5.0 - 0.1), pytest.approx(5.0 - 0.2)]
    assert "(9 and 9 pairs)" in drop["effects"][0]["label"]  # 3 consecutive pairs of 3 sources; member-1/3 left out
    soup = by["The optimal StarSSE soup has the best out-of-distribution accuracy of all soups."]
    assert len(soup["effects"]) == len(ROLES) - 1  # every other role, each once


def test_the_same_numbers_the_other_way_are_contradicted_and_equal_ones_inconclusive():
    worse = paper_claims(*_demo({"starsse-optimal": -4.0, "global-de": -3.0}, BARRIERS))
    by = {c["claim"]: c for c in worse}
    assert by["Optimal StarSSE outperforms both optimal SSE and Local DE."]["verdict"] == "contradicted"
    assert by["Global DE (diverse networks from several pre-trained checkpoints) beats Local DE of the same size."][
        "verdict"] == "contradicted"
    flat = {"sse-local": [1.0, 2.0, 3.0], "sse-optimal": [2.0, 1.0, 3.0], "sse-semilocal": [3.0, 1.0, 2.0]}
    same = paper_claims(*_demo({}, flat))
    assert all(c["verdict"] == "inconclusive" for c in same), [(c["claim"], c["verdict"]) for c in same]
    for c in same:
        for e in c["effects"]:
            assert e["low"] <= 0 <= e["high"]


def test_an_optimal_rate_shared_with_a_regime_is_measured_once():
    roles, samples, pairs = _demo({}, BARRIERS)
    roles["sse-optimal"] = roles["sse-local"]
    drop = paper_claims(roles, samples, pairs)[0]
    assert [e["label"].split(",")[0] for e in drop["effects"]] == ["sse-semilocal minus sse-local"]
    del roles["starsse-optimal"]
    texts = [c["claim"] for c in paper_claims(roles, samples, pairs)]
    assert not any("Optimal StarSSE" in t or "optimal StarSSE soup" in t for t in texts)  # its runs missing


def test_a_roles_interval_holds_the_test_sample_and_the_source_spread():
    runs = [[_shifted(_base(r), g)] for r, g in enumerate([0.0, 5.0, 10.0])]
    iv = role_interval(runs, 1)
    values = [100 * float(r[0].mean()) for r in runs]
    assert iv.value == pytest.approx(np.mean(values))
    half = 4.302653 * np.std(values, ddof=1) / np.sqrt(3)
    assert iv.low == pytest.approx(iv.value - half) and iv.high == pytest.approx(iv.value + half)
    assert role_interval(runs, 2) is None  # no replicate has size 2


def test_consecutive_pairs_are_found_by_their_names():
    rows = [{"a": "member-1", "b": "member-2"}, {"a": "member-2", "b": "member-3"}, {"a": "member-1", "b": "member-3"},
            {"a": "pre", "b": "member-1"}]
    assert consecutive(rows) == rows[:2]
