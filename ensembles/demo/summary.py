"""What the demo's report says, as plain records (the renderer, ``viz.report``, only draws them):
the task and its criteria, the claims (``ensembles.claims``), the sweep, each role's numbers by
ensemble size with their intervals, and the barriers of each role's pairs."""

from __future__ import annotations

from typing import Any

import numpy as np

from ensembles.claims import consecutive, paper_claims, role_interval
from ensembles.demo.config import METHODS, ROLES
from ensembles.demo.read import DemoResults
from ensembles.uncertainty import replicate_interval
from landscape.assets.datasets import load_dataset

# per-sample field -> the table column it gives
COLUMNS = {"correct": "accuracy", "soup_correct": "soup_accuracy", "member_correct": "member_accuracy",
           "ood_correct": "ood_accuracy", "ood_soup_correct": "ood_soup_accuracy"}
PLAIN = ("nll", "ece", "diversity")  # shown as means over the replicates
MIN_GAIN_PP, TUNED_RANGE, MIN_TEST = 8.0, (80.0, 92.0), 10_000  # the target's criteria (README)


def summarize(r: DemoResults) -> dict[str, Any]:
    """The report's records: ``task``, ``claims``, ``sweep``, ``roles``, ``barriers``, ``geometry``."""
    pairs = {run: rows for run, (_, rows) in r.paths.items()}
    return {"task": task(r), "claims": paper_claims(r.roles, r.samples, pairs),
            "sweep": sweep_rows(r), "roles": role_rows(r), "barriers": barrier_rows(r),
            "geometry": geometry_rows(r)}


def task(r: DemoResults) -> dict[str, Any]:
    """The target, its split sizes and each criterion with what this demo measured."""
    c = r.config
    sizes = {split: len(load_dataset(c.data, split)) for split in ("train", "test")}
    sizes["validation"] = len(load_dataset(c.validation, "test"))
    tables = {e["name"]: e["table"] for e in r.ensembles}
    tuned = [tables[run][0]["accuracy"] for run in r.roles.get("local-de", []) if run in tables]
    scratch = (r.baseline or {}).get("scratch_accuracy", [])
    criteria = [{"criterion": "a validation split of the target's distribution, apart from the test set, "
                              "for every choice the demo makes",
                 "measured": f"{c.validation}: {sizes['validation']} samples", "met": True},
                {"criterion": f"at least {MIN_TEST:,} test samples".replace(",", " "),
                 "measured": f"{sizes['test']}", "met": sizes["test"] >= MIN_TEST}]
    if tuned:
        lo, hi = TUNED_RANGE
        criteria.append({"criterion": f"a single fine-tune's test accuracy between {lo:g}% and {hi:g}%",
                         "measured": f"{np.mean(tuned):.2f}% (from {min(tuned):.2f} to {max(tuned):.2f}, "
                                     f"{len(tuned)} sources)", "met": all(lo <= a <= hi for a in tuned)})
    if tuned and scratch:
        gain = float(np.mean(tuned) - np.mean(scratch))
        criteria.append({"criterion": f"pre-training worth at least {MIN_GAIN_PP:g} pp over the same model "
                                      f"trained from scratch with the same recipe",
                         "measured": f"{gain:+.2f} pp (fine-tunes {np.mean(tuned):.2f}%, from scratch "
                                     f"{np.mean(scratch):.2f}%)", "met": gain >= MIN_GAIN_PP})
    return {"data": c.data, "sizes": sizes, "ood": r.ood, "sources": c.sources, "criteria": criteria}


def sweep_rows(r: DemoResults) -> dict[str, list[dict[str, Any]]]:
    """Per method, per cycle rate: validation accuracy across the sources, and its regime."""
    if r.sweep is None:
        return {}
    lrs = r.config.cycle_lrs
    out = {}
    for method in METHODS:
        rows = []
        for i, lr in enumerate(lrs):
            regime = [name for name, rate in (("local", lrs[0]), ("semi-local", lrs[-1]),
                                              ("optimal", r.sweep["chosen"][method])) if rate == lr]
            rows.append({"cycle_lr": lr, "regime": ", ".join(regime),
                         "accuracy": replicate_interval(r.sweep["accuracy"][method][i]).to_dict(),
                         "member_accuracy": float(np.mean(r.sweep["member_accuracy"][method][i]))})
        out[method] = rows
    return out


def role_rows(r: DemoResults) -> dict[str, list[dict[str, Any]]]:
    """Per role, per ensemble size: each column's mean over the replicates with its interval
    (``ensembles.claims.role_interval``), and the plain columns' means."""
    tables = {e["name"]: e["table"] for e in r.ensembles}
    out = {}
    for role in (role for role in ROLES if role in r.roles):
        runs = r.roles[role]
        sizes = min(len(tables[run]) for run in runs)
        rows = []
        for k in range(1, sizes + 1):
            row: dict[str, Any] = {"size": k}
            for key, column in COLUMNS.items():
                iv = role_interval([r.samples[run][key] for run in runs], k)
                if iv is not None:
                    row[column] = iv.to_dict()
            for column in PLAIN:
                values = [tables[run][k - 1].get(column) for run in runs]
                if all(v is not None for v in values):
                    row[column] = float(np.mean(values))
            rows.append(row)
        out[role] = rows
    return out


def barrier_rows(r: DemoResults) -> list[dict[str, Any]]:
    """Per role with paths: the mean test accuracy barrier of its pairs (consecutive snapshots for
    SSE, member 1 to each other for StarSSE) with Student's t across the pairs."""
    out = []
    for role in (role for role in ROLES if role in r.roles):
        runs = [run for run in r.roles[role] if run in r.paths]
        if not runs or len(runs) < len(r.roles[role]):
            continue
        rows = [p for run in runs for p in (consecutive(r.paths[run][1]) if role.startswith("sse")
                                            else r.paths[run][1])]
        values = [np.nan if p["acc_barrier_test"] is None else p["acc_barrier_test"] for p in rows]
        finite = [v for v in values if np.isfinite(v)]
        if not finite:
            continue
        out.append({"role": role, "pairs": len(rows), "kind": "consecutive" if role.startswith("sse") else "star",
                    "acc_barrier_test": replicate_interval(finite).to_dict(),
                    "different_basin": sum(p["label"] == "different basin" for p in rows)})
    return out


def geometry_rows(r: DemoResults) -> dict[str, Any]:
    """Per role: its members' top eigenvalue and trace (mean with Student's t across members 2..K,
    member 1, the shared fine-tune, apart), and the mean distance from the pre-trained checkpoint
    per block over the same members."""
    out: dict[str, Any] = {"sharpness": [], "members": [], "distances": {}}
    for doc in r.geometry.get("sharpness", []):
        members = list(doc["members"].items())
        for name, m in members:
            out["members"].append({"role": doc["role"], "name": name, "top": m["eigenvalues"][0], "trace": m["trace"],
                                   "trace_stderr": m.get("trace_stderr")})
        later = [m for _, m in members[1:]] or [m for _, m in members]
        out["sharpness"].append({"role": doc["role"], "run": doc["run"], "members": len(later),
                                 "top": replicate_interval([m["eigenvalues"][0] for m in later]).to_dict(),
                                 "trace": replicate_interval([m["trace"] for m in later]).to_dict(),
                                 "member_1_top": members[0][1]["eigenvalues"][0]})
    for doc in r.geometry.get("distances", []):
        first = doc["from_pretrained"][0]["a"] if doc["from_pretrained"] else None
        by_block: dict[str, list[float]] = {}
        for d in doc["from_pretrained"]:
            if d["a"] != first and d["l2"] is not None:  # members 2..K: the cycles
                by_block.setdefault(d["block"], []).append(d["l2"])
        out["distances"][doc["role"]] = {b: float(np.mean(v)) for b, v in by_block.items()}
    return out
