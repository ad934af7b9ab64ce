"""A demo directory read back for the report (``read_demo``), every file checked: a damaged one
is one ``UserError`` naming the file and the field."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.demo.config import METHODS, ROLES, DemoConfig, flat
from ensembles.judged import read_samples
from ensembles.rundir import is_int, is_number, read_json, short_repr
from landscape import read_paths, read_surface
from landscape.errors import UserError
from landscape.results import PathSet, Surface
from landscape.surfaces.basins import PairReport


@dataclass(frozen=True)
class DemoResults:
    """A demo directory read back (``read_demo``): what the report shows.

    Attributes:
        config: the settings the demo was made with.
        ensembles: per judged run, ``{"name", "method", "table"}`` (the rows of ``RunReport.table``).
        roles: role (``ensembles.demo.ROLES``) -> its runs, one per replicate.
        samples: run name -> its per-sample arrays (``ensembles.judged.read_samples``).
        ood: the out-of-distribution set the runs were judged on.
        sweep: ``sweep.json`` (validation accuracies per method, rate and replicate; the chosen rates).
        baseline: ``baseline.json`` (the target trained from scratch, per replicate).
        paths: run name -> (its paths, its pair records as ``report.json`` holds them).
        planes: role -> its plane (``curve``: the plane through the curve's ends and its bend).
        curve: the curve between two semi-local SSE members: ``report`` (``CurveReport`` fields
            and the ``run``), ``curve`` and ``line`` (their paths over t), ``xy`` (the curve's
            points in the curve plane's coordinates); None before that step.
        geometry: ``sharpness`` and ``distances`` (one document per run, as
            ``ensembles.demo.geometry`` writes them) and ``simplex`` (a Surface); what exists.
    """

    config: DemoConfig
    ensembles: list[dict[str, Any]]
    roles: dict[str, list[str]]
    samples: dict[str, dict[str, list[np.ndarray]]]
    ood: str | None
    sweep: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    paths: dict[str, tuple[PathSet, list[dict[str, Any]]]] = field(default_factory=dict)
    planes: dict[str, Surface] = field(default_factory=dict)
    curve: dict[str, Any] | None = None
    geometry: dict[str, Any] = field(default_factory=dict)


def read_demo(root: str | os.PathLike) -> DemoResults:
    """The results of the demo in ``root``, every file checked.

    Raises:
        UserError: the runs are not judged yet, or a damaged file (named, with the field).
    """
    root = Path(root)
    if not (root / "ensembles.json").is_file():
        raise UserError(f"{root} has no ensembles.json; run `landscape demo --out {root}` first")
    config = read_config(root)
    ensembles, ood, roles = read_ensembles(root / "ensembles.json")
    fix = f"delete it and rerun `landscape demo --out {root}` to judge the run again"
    samples = {e["name"]: read_samples(root / "judged" / f"{flat(e['name'])}.npz", len(e["table"]), fix)
               for e in ensembles}
    _same_test_sets(samples, root, fix)
    sweep = read_sweep(root / "sweep.json", config) if (root / "sweep.json").exists() else None
    baseline = _read_baseline(root / "baseline.json") if (root / "baseline.json").exists() else None
    paths = {}
    for names in roles.values():
        for run in names:
            d = root / "paths" / flat(run)
            if (d / "paths.h5").exists() and (d / "report.json").exists():
                paths[run] = (read_paths(d / "paths.h5"), read_pairs(d / "report.json"))
    planes = {d.name: read_surface(d / "plane.h5") for d in _subfolders(root / "planes") if (d / "plane.h5").exists()}
    return DemoResults(config, ensembles, roles, samples, ood, sweep, baseline, paths, planes, _read_curve(root / "curve"),
                       _read_geometry(root / "geometry"))


def _read_geometry(folder: Path) -> dict[str, Any]:
    """The geometry step's files, each checked to hold its run, its role and its numbers."""
    out: dict[str, Any] = {}
    fix = f"delete it and rerun `landscape demo --out {folder.parent}`"
    for kind, key in (("sharpness", "members"), ("distances", "from_pretrained")):
        docs = []
        for path in sorted(folder.glob(f"{kind}-*.json")):
            doc = read_json(path, f"{kind} result", fix)
            if not (isinstance(doc, dict) and isinstance(doc.get("run"), str) and doc.get("role") in ROLES
                    and _geometry_ok(kind, doc.get(key))):
                raise UserError(f"{path}: fields 'run', 'role' and {key!r} must hold the {kind} of a run; {fix}")
            docs.append(doc)
        if docs:
            out[kind] = docs
    if (folder / "simplex.h5").exists():
        out["simplex"] = read_surface(folder / "simplex.h5")
    return out


def _geometry_ok(kind: str, value: Any) -> bool:
    """Sharpness: member -> {eigenvalues: [numbers], trace: number, ...}; distances: a list of
    {block, a, l2} records."""
    if kind == "sharpness":
        return isinstance(value, dict) and all(
            isinstance(m, dict) and isinstance(m.get("eigenvalues"), list) and m["eigenvalues"]
            and all(is_number(v) for v in m["eigenvalues"]) and is_number(m.get("trace")) for m in value.values())
    return isinstance(value, list) and all(
        isinstance(d, dict) and isinstance(d.get("block"), str) and isinstance(d.get("a"), str)
        and (d.get("l2") is None or is_number(d.get("l2"))) for d in value)


def _read_curve(folder: Path) -> dict[str, Any] | None:
    """The demo's curve step, when it finished (its report and projection are written last)."""
    names = ("report.json", "projection.json", "curve.h5", "line.h5")
    if not all((folder / n).exists() for n in names):
        return None
    fix = f"delete {folder} and rerun `landscape demo --out {folder.parent}`"
    report = read_json(folder / "report.json", "curve report", fix)
    if not (isinstance(report, dict) and isinstance(report.get("label"), str) and isinstance(report.get("line"), dict)
            and isinstance(report.get("curve"), dict)):
        raise UserError(f"{folder / 'report.json'}: fields 'label', 'line' and 'curve' must hold the curve's report; {fix}")
    proj = read_json(folder / "projection.json", "curve projection", fix)
    xy = np.asarray(proj.get("xy") if isinstance(proj, dict) else None, dtype=object)
    if xy.ndim != 2 or xy.shape[1:] != (2,) or not all(is_number(v) for v in xy.ravel()):
        raise UserError(f"{folder / 'projection.json'}: field 'xy' must be a list of [x, y] points; {fix}")
    return {"report": report, "curve": read_paths(folder / "curve.h5"), "line": read_paths(folder / "line.h5"),
            "xy": xy.astype(float)}


def _same_test_sets(samples: dict[str, dict[str, list[np.ndarray]]], root: Path, fix: str) -> None:
    """Every run's arrays of one family hold one sample count (one test set, one OOD set)."""
    for family in (("correct", "soup_correct", "member_correct"), ("ood_correct", "ood_soup_correct")):
        counts = {run: len(arrays[k][0]) for run, arrays in samples.items() for k in family if arrays.get(k)}
        if len(set(counts.values())) > 1:
            first = next(iter(counts))
            other = next(r for r, n in counts.items() if n != counts[first])
            raise UserError(f"{root}/judged: {first} and {other} were judged on {counts[first]} and {counts[other]} "
                            f"samples; {fix}")


def read_config(root: Path, expected: DemoConfig | None = None) -> DemoConfig:
    """The settings in ``root/demo.json`` (none yet: ``expected`` or the defaults); with
    ``expected``, a directory of other settings is refused.

    Raises:
        UserError: a damaged demo.json, or other settings than ``expected``.
    """
    path = root / "demo.json"
    if not path.exists():
        return expected or DemoConfig()
    fix = f"delete {path} if the directory holds no demo, or use another --out"
    doc = read_json(path, "demo settings", fix)
    cfg = doc.get("config") if isinstance(doc, dict) else None
    try:
        config = DemoConfig.from_dict(cfg) if isinstance(cfg, dict) else None
    except (TypeError, UserError):
        config = None
    if config is None:
        raise UserError(f"{path}: field 'config' must hold the demo's settings; {fix}")
    if expected is not None and config != expected:
        changed = [f.name for f in fields(DemoConfig) if getattr(config, f.name) != getattr(expected, f.name)]
        raise UserError(f"{root} holds a demo made with other settings ({', '.join(changed)}); "
                        f"use another --out, or delete {root} to start again")
    return config


def read_ensembles(path: Path) -> tuple[list[dict[str, Any]], str | None, dict[str, list[str]]]:
    """``ensembles.json``: per run its name, method and table; the OOD set; each role's runs.

    Raises:
        UserError: a damaged file (the field named).
    """
    fix = f"delete it and rerun `landscape demo --out {path.parent}` to judge the runs again"
    doc = read_json(path, "demo result", fix)
    runs = doc.get("runs") if isinstance(doc, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise UserError(f"{path}: field 'runs' must be a list of runs; {fix}")
    if not (doc.get("ood") is None or isinstance(doc["ood"], str)):
        raise UserError(f"{path}: field 'ood' must be a string or null, got {short_repr(doc['ood'])}; {fix}")
    out = [_run_doc(run, f"{path}: runs[{i}]", fix) for i, run in enumerate(runs)]
    roles = doc.get("roles")
    names = {r["name"] for r in out}
    if not (isinstance(roles, dict) and set(roles) <= set(ROLES) and all(
            isinstance(v, list) and v and all(n in names for n in v) for v in roles.values())):
        raise UserError(f"{path}: field 'roles' must map roles ({', '.join(ROLES)}) to lists of the judged runs; {fix}")
    return out, doc.get("ood"), roles


def read_judged(path: Path, name: str) -> dict[str, Any]:
    """``judged/<run>.json``: the run's name, method and table."""
    fix = f"delete it and rerun `landscape demo --out {path.parents[1]}` to judge the run again"
    doc = read_json(path, "judged run", fix)
    if not isinstance(doc, dict):
        raise UserError(f"{path} must hold a judged run; {fix}")
    run = _run_doc(doc, str(path), fix)
    if run["name"] != name:
        raise UserError(f"{path}: field 'name' must be {name!r}, got {short_repr(run['name'])}; {fix}")
    return run


def _run_doc(run: dict[str, Any], where: str, fix: str) -> dict[str, Any]:
    for key in ("name", "method"):
        if not isinstance(run.get(key), str):
            raise UserError(f"{where}: field {key!r} must be a string, got {short_repr(run.get(key))}; {fix}")
    if problem := _table_problem(run.get("table")):
        raise UserError(f"{where}: field 'table' {problem}; {fix}")
    return {"name": run["name"], "method": run["method"], "table": run["table"]}


def _table_problem(table: Any) -> str | None:
    """What makes ``table`` other than rows by ensemble size 1..K, each with the same numbers."""
    if not isinstance(table, list) or not table or not all(isinstance(r, dict) for r in table):
        return "must be a non-empty list of rows"
    for k, row in enumerate(table, 1):
        if row.get("size") != k or not is_int(row["size"]):
            return f"row {k} must have size {k}, got {short_repr(row.get('size'))}"
        if set(row) != set(table[0]):
            return f"row {k} has the fields {sorted(row)}, row 1 {sorted(table[0])}"
        for key, v in row.items():
            named = key in ("run", "method")
            if not (isinstance(v, str) if named else v is None or is_number(v)):
                return (f"row {k}: {key} must be {'a string' if named else 'a number or null'}, "
                        f"got {short_repr(v)}")
    return None


def read_sweep(path: Path, config: DemoConfig) -> dict[str, Any]:
    """``sweep.json``: validation accuracies [method][rate][replicate] and the chosen rates."""
    fix = f"delete it and rerun `landscape demo --out {path.parent}` to judge the sweep again"
    doc = read_json(path, "sweep result", fix)
    shape = (len(config.cycle_lrs), config.sources)
    if not isinstance(doc, dict):
        raise UserError(f"{path} must hold the sweep; {fix}")
    for key in ("accuracy", "member_accuracy"):
        table = doc.get(key)
        ok = isinstance(table, dict) and set(table) == set(METHODS) and all(
            np.shape(table[m]) == shape and all(is_number(v) for row in table[m] for v in row) for m in METHODS)
        if not ok:
            raise UserError(f"{path}: field {key!r} must hold {shape[0]} rates x {shape[1]} sources of numbers "
                            f"per method; {fix}")
    chosen = doc.get("chosen")
    if not (isinstance(chosen, dict) and set(chosen) == set(METHODS)
            and all(chosen[m] in config.cycle_lrs for m in METHODS)):
        raise UserError(f"{path}: field 'chosen' must give each of {', '.join(METHODS)} a rate of the sweep; {fix}")
    return doc


def _read_baseline(path: Path) -> dict[str, Any]:
    fix = f"delete it and rerun `landscape demo --out {path.parent}`"
    doc = read_json(path, "baseline result", fix)
    accs = doc.get("scratch_accuracy") if isinstance(doc, dict) else None
    if not (isinstance(accs, list) and accs and all(is_number(a) for a in accs)):
        raise UserError(f"{path}: field 'scratch_accuracy' must be a list of accuracies; {fix}")
    return doc


def _subfolders(path: Path) -> list[Path]:
    return sorted(d for d in path.iterdir() if d.is_dir()) if path.is_dir() else []


def read_pairs(path: Path) -> list[dict[str, Any]]:
    """A paths ``report.json``'s pair records (``PairReport`` fields; NaN written as null).

    Raises:
        UserError: a damaged file (the field named).
    """
    fix = f"delete it and rerun `landscape demo --out {path.parents[2]}` to write it again"
    doc = read_json(path, "paths report", fix)
    pairs = doc.get("pairs") if isinstance(doc, dict) else None
    if not isinstance(pairs, list) or not all(isinstance(p, dict) for p in pairs):
        raise UserError(f"{path}: field 'pairs' must be a list of pair records; {fix}")
    kinds = {"str": (str, "a string"), "bool": (bool, "true or false")}
    for i, pair in enumerate(pairs):
        for f in fields(PairReport):
            cls, what = kinds.get(getattr(f.type, "__name__", f.type), (None, "a number or null"))
            v = pair.get(f.name)
            ok = isinstance(v, cls) if cls else v is None or is_number(v)
            if f.name not in pair or not ok:
                raise UserError(f"{path}: pairs[{i}]: field {f.name!r} must be {what}, got "
                                f"{short_repr(v)}; {fix}")
    return pairs
