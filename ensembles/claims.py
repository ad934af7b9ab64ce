"""The paper's claims, checked against the numbers of a demo (never fixed prose).

Inputs are plain records: ensemble tables by run name (rows per size with ``accuracy``,
``soup_accuracy``, ``member_accuracy``, ``ood_accuracy``, ``ood_soup_accuracy``) and, per run,
the pair records of its linear paths (``a``, ``b``, ``acc_barrier_test``, ``label``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def paper_claims(
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    pairs: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """Each claim as ``{"claim", "holds", "evidence"}``; claims whose runs are missing are
    left out."""
    out = []
    for check in (_drop_in_the_middle, _starsse_vs_sse_and_local_de, _semilocal_degrades_less,
                  _starsse_soup, _ood_soup, _semilocal_members_worse):
        claim = check(tables, pairs)
        if claim is not None:
            out.append(claim)
    return out


def _last(tables, run: str, key: str) -> float | None:
    rows = tables.get(run)
    return None if not rows or rows[-1].get(key) is None else float(rows[-1][key])


def _consecutive(pair_rows) -> list[Mapping[str, Any]]:
    """The pairs of snapshots k and k + 1 (names ending in ``-<k>``; other names are left out)."""
    def idx(name: str) -> int | None:
        tail = name.rsplit("-", 1)[-1]
        return int(tail) if tail.isascii() and tail.isdigit() else None

    steps = ((idx(p["a"]), idx(p["b"]), p) for p in pair_rows)
    return [p for a, b, p in steps if a is not None and b is not None and b - a == 1]


def _drop_in_the_middle(tables, pairs):
    if not {"sse-local", "sse-semilocal"} <= set(pairs):
        return None
    # report.json writes a NaN barrier as null
    local = [np.nan if p["acc_barrier_test"] is None else p["acc_barrier_test"]
             for p in _consecutive(pairs["sse-local"])]
    semi = [np.nan if p["acc_barrier_test"] is None else p["acc_barrier_test"]
            for p in _consecutive(pairs["sse-semilocal"])]
    local_same = sum(p["label"] == "same basin" for p in _consecutive(pairs["sse-local"]))
    semi_diff = sum(p["label"] == "different basin" for p in _consecutive(pairs["sse-semilocal"]))
    # a real drop: some semi-local pair crosses the basin threshold while every local pair
    # stays in the same basin (a larger mean alone could be sampling noise)
    holds = bool(semi_diff > 0 and local_same == len(local) and np.mean(semi) > np.mean(local))
    return {
        "claim": "Semi-local SSE shows an accuracy drop in the middle of the path between "
                 "consecutive snapshots; local SSE does not.",
        "holds": holds,
        "evidence": f"mean test accuracy barrier between consecutive snapshots: semi-local "
                    f"{np.mean(semi):.2f} pp ({semi_diff}/{len(semi)} pairs in different basins) "
                    f"vs local {np.mean(local):.2f} pp ({local_same}/{len(local)} pairs in the "
                    "same basin)",
    }


def _best(tables, prefix: str, key: str) -> tuple[str, float] | None:
    cands = [(name, _last(tables, name, key)) for name in tables if name.startswith(prefix)]
    cands = [(n, v) for n, v in cands if v is not None]
    return max(cands, key=lambda nv: nv[1]) if cands else None


def _starsse_vs_sse_and_local_de(tables, pairs):
    star, sse = _best(tables, "starsse", "accuracy"), _best(tables, "sse", "accuracy")
    lde = _last(tables, "local-de", "accuracy")
    if star is None or sse is None or lde is None:
        return None
    return {
        "claim": "The best StarSSE ensemble beats the best SSE ensemble and Local DE of the "
                 "same size.",
        "holds": star[1] > sse[1] and star[1] > lde,
        "evidence": f"accuracy at the largest size: {star[0]} {star[1]:.2f}%, {sse[0]} "
                    f"{sse[1]:.2f}%, local-de {lde:.2f}%",
    }


def _semilocal_degrades_less(tables, pairs):
    star, sse = _last(tables, "starsse-semilocal", "accuracy"), _last(tables, "sse-semilocal",
                                                                     "accuracy")
    if star is None or sse is None:
        return None
    return {
        "claim": "Semi-local StarSSE degrades less than semi-local SSE.",
        "holds": star >= sse,
        "evidence": f"ensemble accuracy: starsse-semilocal {star:.2f}% vs sse-semilocal "
                    f"{sse:.2f}%",
    }


def _starsse_soup(tables, pairs):
    star, sse = _best(tables, "starsse", "soup_accuracy"), _best(tables, "sse", "soup_accuracy")
    lde = _last(tables, "local-de", "soup_accuracy")
    if star is None or sse is None or lde is None:
        return None
    return {
        "claim": "The best StarSSE soup beats the best SSE soup and the Local DE soup.",
        "holds": star[1] > sse[1] and star[1] > lde,
        "evidence": f"soup accuracy: {star[0]} {star[1]:.2f}%, {sse[0]} {sse[1]:.2f}%, "
                    f"local-de {lde:.2f}%",
    }


def _ood_soup(tables, pairs):
    cands = [(n, _last(tables, n, "ood_soup_accuracy")) for n in tables]
    cands = [(n, v) for n, v in cands if v is not None]
    if not cands:
        return None
    best = max(cands, key=lambda nv: nv[1])
    return {
        "claim": "A StarSSE soup has the best out-of-distribution accuracy of all soups.",
        "holds": best[0].startswith("starsse"),
        "evidence": "OOD soup accuracy: " + ", ".join(f"{n} {v:.2f}%" for n, v in cands),
    }


def _semilocal_members_worse(tables, pairs):
    semi, local = (_last(tables, n, "member_accuracy") for n in ("sse-semilocal", "sse-local"))
    if semi is None or local is None:
        return None
    return {
        "claim": "Semi-local SSE members are less accurate than local SSE members (they leave "
                 "the pre-train basin and lose the benefits of transfer).",
        "holds": semi < local,
        "evidence": f"mean member accuracy: sse-semilocal {semi:.2f}% vs sse-local {local:.2f}%",
    }
