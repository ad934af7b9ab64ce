"""The paper's claims, each a measured effect with its 95% interval and a verdict (never fixed
prose): *supported* when the interval lies on the claimed side of zero, *contradicted* when it
lies on the other, else *inconclusive*; a claim of several effects is supported when all are and
contradicted when any is (``ensembles.uncertainty``).

Inputs are plain records: each role's runs (one per replicate, ``ensembles.demo.ROLES``), each
run's per-sample arrays (``ensembles.judged.SAMPLE_FIELDS``, per ensemble size) and the pair
records of its linear paths (``a``, ``b``, ``acc_barrier_test``, ``label``).

Differences of accuracy are paired: the same resampled test samples for both sides and for every
replicate; their interval is the union of the bootstrap interval over test samples and Student's
t across replicates. Differences of barriers use the spread across pairs (Welch's t).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ensembles.uncertainty import (Interval, group_difference, mean_interval, overall_verdict, replicate_interval,
                                   replicated_difference, resample_indices, union)

Samples = Mapping[str, Mapping[str, Sequence[np.ndarray]]]
METRICS = {"correct": "ensemble accuracy", "soup_correct": "soup accuracy", "member_correct": "member accuracy",
           "ood_correct": "OOD ensemble accuracy", "ood_soup_correct": "OOD soup accuracy"}


def paper_claims(
    roles: Mapping[str, Sequence[str]],
    samples: Samples,
    pairs: Mapping[str, Sequence[Mapping[str, Any]]],
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Each claim as ``{"claim", "verdict", "effects", "evidence"}`` (``effects``: dicts with
    ``label``, ``value``, ``low``, ``high``, ``verdict``, ``text``, and the ``bootstrap`` and
    ``replicates`` bounds); claims whose runs are missing are left out."""
    m = _Measure(roles, samples, seed)
    claims = [
        ("Semi-local SSE shows an accuracy drop in the middle of the path between consecutive snapshots; "
         "local and optimal SSE do not.", _drop_in_the_middle(roles, pairs)),
        ("Optimal StarSSE outperforms both optimal SSE and Local DE.",
         [m.diff("starsse-optimal", "sse-optimal", "correct"), m.diff("starsse-optimal", "local-de", "correct")]),
        ("Semi-local StarSSE quality degrades less than semi-local SSE.",
         [m.diff("starsse-semilocal", "sse-semilocal", "correct")]),
        ("The optimal StarSSE soup outperforms both the optimal SSE soup and the Local DE soup.",
         [m.diff("starsse-optimal", "sse-optimal", "soup_correct"),
          m.diff("starsse-optimal", "local-de", "soup_correct")]),
        ("Out of distribution, optimal StarSSE and optimal SSE ensembles become inferior to Local DE.",
         [m.diff("local-de", "starsse-optimal", "ood_correct"), m.diff("local-de", "sse-optimal", "ood_correct")]),
        ("The optimal StarSSE soup has the best out-of-distribution accuracy of all soups.",
         [m.diff("starsse-optimal", other, "ood_soup_correct") for other in _others(roles, "starsse-optimal")]),
        ("Semi-local SSE members are less accurate than local SSE members (they leave the pre-train basin "
         "and lose the benefits of transfer).", [m.diff("sse-local", "sse-semilocal", "member_correct")]),
        ("Global DE (diverse networks from several pre-trained checkpoints) beats Local DE of the same size.",
         [m.diff("global-de", "local-de", "correct")]),
    ]
    out = []
    for text, effects in claims:
        effects = [e for e in effects if e is not None]
        if effects:
            out.append({"claim": text, "verdict": overall_verdict([e["verdict"] for e in effects]),
                        "effects": effects, "evidence": "; ".join(f"{e['label']}: {e['text']}" for e in effects)})
    return out


def _others(roles, role: str) -> list[str]:
    """The roles of other runs than ``role``'s, each set of runs once (a regime may share its runs)."""
    seen = [set(roles.get(role, ()))]
    out = []
    for other in roles:
        if role in roles and set(roles[other]) not in seen:
            seen.append(set(roles[other]))
            out.append(other)
    return out


class _Measure:
    """Paired differences between roles, on resamples cached per test-set size."""

    def __init__(self, roles, samples: Samples, seed: int) -> None:
        self.roles, self.samples, self.seed, self.idx = roles, samples, seed, {}

    def arrays(self, role: str, key: str) -> list[Sequence[np.ndarray]] | None:
        runs = self.roles.get(role)
        if not runs or any(run not in self.samples or not self.samples[run].get(key) for run in runs):
            return None
        return [self.samples[run][key] for run in runs]

    def resamples(self, n: int) -> np.ndarray:
        if n not in self.idx:
            self.idx[n] = resample_indices(n, seed=self.seed)
        return self.idx[n]

    def diff(self, a_role: str, b_role: str, key: str) -> dict[str, Any] | None:
        a, b = self.arrays(a_role, key), self.arrays(b_role, key)
        if a is None or b is None:
            return None
        k = min(len(x) for x in (*a, *b))
        boot, reps, both = replicated_difference([x[k - 1] for x in a], [y[k - 1] for y in b],
                                                 self.resamples(len(a[0][k - 1])))
        return effect(f"{a_role} minus {b_role}, {METRICS[key]} at size {k}", both, bootstrap=boot, replicates=reps)


def effect(label: str, interval: Interval, side: str = "greater", *, bootstrap: Interval | None = None,
           replicates: Interval | None = None) -> dict[str, Any]:
    """One measured effect as the claims and the report hold it."""
    def bounds(iv):
        return None if iv is None or not np.isfinite(iv.low) else [iv.low, iv.high]

    return {"label": label, **interval.to_dict(), "verdict": interval.verdict(side), "side": side,
            "text": interval.format(), "bootstrap": bounds(bootstrap), "replicates": bounds(replicates)}


def consecutive(pair_rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pairs of snapshots k and k + 1 (names ending in ``-<k>``; other names are left out)."""
    def idx(name: str) -> int | None:
        tail = name.rsplit("-", 1)[-1]
        return int(tail) if tail.isascii() and tail.isdigit() else None

    steps = ((idx(p["a"]), idx(p["b"]), p) for p in pair_rows)
    return [p for a, b, p in steps if a is not None and b is not None and b - a == 1]


def _barriers(roles, pairs, role: str) -> list[float] | None:
    """The test accuracy barriers between consecutive snapshots of every run of ``role``."""
    runs = roles.get(role)
    if not runs or any(run not in pairs for run in runs):
        return None
    # report.json writes a NaN barrier as null
    return [np.nan if p["acc_barrier_test"] is None else float(p["acc_barrier_test"])
            for run in runs for p in consecutive(pairs[run])]


def _drop_in_the_middle(roles, pairs) -> list[dict[str, Any] | None]:
    semi = _barriers(roles, pairs, "sse-semilocal")
    if semi is None:
        return []
    out = []
    for other in ("sse-local", "sse-optimal"):
        values = _barriers(roles, pairs, other)
        if values is None or set(roles[other]) == set(roles["sse-semilocal"]):
            continue  # the optimal rate may be the semi-local one: no contrast to measure
        if other == "sse-optimal" and set(roles[other]) == set(roles.get("sse-local", ())):
            continue  # the optimal rate is the local one: measured once
        out.append(effect(f"sse-semilocal minus {other}, mean test accuracy barrier between consecutive "
                          f"snapshots ({len(semi)} and {len(values)} pairs)", group_difference(semi, values)))
    return out


def role_interval(samples: Sequence[Sequence[np.ndarray]], size: int, seed: int = 0) -> Interval | None:
    """A role's mean over its replicates of a per-sample quantity at ensemble ``size`` (percent),
    with the union of its bootstrap interval over test samples and Student's t across replicates
    (what the report's tables and error bars show); None where a replicate lacks that size."""
    if not samples or any(len(s) < size for s in samples):
        return None
    values = [np.asarray(s[size - 1], dtype=np.float64) for s in samples]
    boot = mean_interval(np.mean(values, axis=0), resample_indices(len(values[0]), seed=seed), scale=100.0)
    return union(boot, replicate_interval([100.0 * float(v.mean()) for v in values]))
