"""The paper in miniature on MNIST-1D (``landscape demo``): every step writes its files and is
skipped when they exist, so an interrupted demo resumes.

Steps: pre-train source checkpoints on ``mnist1d-source``; train Local DE, Global DE, and SSE and
StarSSE at a local and a semi-local cycle learning rate; judge every run (ensembles by size,
soups, the corrupted test set); evaluate linear paths between consecutive snapshots and star
pairs; evaluate planes through three SSE and three StarSSE members.

``read_demo`` reads a demo directory back for the report, every JSON file checked: a damaged
one is one ``UserError`` naming the file and the field. The JSON files are written atomically
(``landscape.atomic.write_json``), so a kill leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ensembles.config import RunConfig
from ensembles.evaluate import evaluate
from ensembles.manifest import read_run
from ensembles.run import train
from ensembles.rundir import is_int, is_number, read_json, short_repr
from ensembles.training import TrainConfig, pretrain
from landscape import read_paths, read_surface
from landscape.assets.checkpoint import load_checkpoint, save_checkpoint
from landscape.atomic import write_json
from landscape.errors import UserError
from landscape.results import PathSet, Surface
from landscape.surfaces.basins import PairReport, path_report
from landscape.surfaces.paths import PathConfig, interpolate
from landscape.surfaces.planes import PlaneConfig, plane


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo (the defaults are the measured 2-core CPU setting; tests shrink them).

    The local/semi-local contrast is the cycle learning rate: ``local_cycle_lr`` (equal to the
    fine-tuning rate) keeps SSE and StarSSE snapshots in the basin of member 1;
    ``semilocal_cycle_lr`` (35 times larger) leaves it. Measured on this setting: a cycle rate of
    0.5 still stays (barrier 0.3 pp), 0.7 moves the first SSE snapshot to a neighbouring basin
    (test accuracy barrier about 2.4 pp, members 1-1.5 points less accurate), 0.8 and above jump
    far away (barriers of 20-60 pp).
    """

    sources: int = 3
    pre_epochs: int = 6
    pre_lr: float = 0.05
    width: int = 16
    members: int = 5
    epochs: int = 10
    lr: float = 0.02
    cycle_epochs: int = 10
    local_cycle_lr: float = 0.02
    semilocal_cycle_lr: float = 0.7
    grid: int = 15
    points: int = 11
    plane_train_subset: int | None = None
    ood: str = "mnist1d-c"


RUNS = ("local-de", "global-de", "sse-local", "sse-semilocal", "starsse-local",
        "starsse-semilocal")
PLANES = ("sse-semilocal", "starsse-semilocal")


def run_demo(
    out: str | os.PathLike,
    config: DemoConfig = DemoConfig(),
    *,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """Run (or finish) every step of the demo into ``out``; returns ``out``.

    ``log`` receives one line per step (the CLI prints them).
    """
    out = Path(out)
    sources = _sources(out, config, device, log)
    for name in RUNS:
        log(f"train {name}")
        train(_run_config(name, sources, config), out / "runs" / name, device=device)
    _judge(out, config, device, log)
    for name in RUNS[2:]:
        log(f"paths {name}")
        _paths(out, name, sources[0], config, device)
    for name in PLANES:
        log(f"plane {name}")
        members = [read_run(out / "runs" / name).checkpoint_path(i) for i in (1, 2, 3)]
        plane(members, out=out / "planes" / name / "plane.h5", device=device,
              config=PlaneConfig(grid=config.grid, train_subset=config.plane_train_subset))
    write_json(out / "demo.json", {"config": asdict(config), "runs": list(RUNS),
                                   "planes": list(PLANES)}, indent=2, strict=True)
    return out


def _sources(out: Path, config: DemoConfig, device, log) -> list[str]:
    paths = []
    for seed in range(config.sources):
        path = out / "sources" / f"source-{seed}.safetensors"
        if not path.exists():
            log(f"pretrain source {seed}")
            res = pretrain("mnist1d_cnn", "mnist1d-source",
                           TrainConfig(epochs=config.pre_epochs, lr=config.pre_lr, seed=seed),
                           arch_kwargs={"width": config.width}, device=device)
            res.meta.extra["test_acc"] = res.test_acc
            save_checkpoint(res.model, path, res.meta)
        paths.append(str(path))
    return paths


def _run_config(name: str, sources: list[str], c: DemoConfig) -> RunConfig:
    method, _, regime = name.partition("-")
    method = {"local": "local-de", "global": "global-de"}.get(method, method)
    base = dict(data="mnist1d", members=c.members, epochs=c.epochs, lr=c.lr)
    if method == "global-de":
        return RunConfig(method, tuple(sources), **{**base, "members": len(sources)})
    if method == "local-de":
        return RunConfig(method, (sources[0],), **base)
    cycle_lr = c.local_cycle_lr if regime == "local" else c.semilocal_cycle_lr
    return RunConfig(method, (sources[0],), cycle_epochs=c.cycle_epochs, cycle_lr=cycle_lr,
                     **base)


def _judge(out: Path, config: DemoConfig, device, log) -> None:
    path = out / "ensembles.json"
    if path.exists():
        read_ensembles(path)  # judged before: refuse a damaged file rather than build on it
        return
    log("judge ensembles (soups, out of distribution)")
    reports = [evaluate(out / "runs" / name, soups=True, ood=config.ood, device=device)
               for name in RUNS]
    doc = {"ood": config.ood, "runs": [r.to_dict() for r in reports]}
    write_json(path, doc, indent=2, strict=True)


def _paths(out: Path, name: str, pretrained: str, config: DemoConfig, device) -> None:
    run = read_run(out / "runs" / name)
    files = [run.checkpoint_path(m["index"]) for m in run.members]
    target = out / "paths" / name
    ps = interpolate(files, out=target / "paths.h5", pairs="chain,star", device=device,
                     config=PathConfig(points=config.points))
    ckpts = [load_checkpoint(f) for f in files]
    report = path_report(ps, ckpts, pretrained=[load_checkpoint(pretrained)])
    write_json(target / "report.json", {"pairs": [asdict(r) for r in report]}, indent=2, strict=True)


# ----------------------------------------------------------------------------- reading back


@dataclass(frozen=True)
class DemoResults:
    """A demo directory read back (``read_demo``): what the report shows.

    Attributes:
        ensembles: per run, ``{"name", "method", "table"}`` (the rows of ``RunReport.table``).
        ood: the out-of-distribution set the runs were judged on.
        paths: run name -> (its paths, its pair records as ``report.json`` holds them).
        planes: run name -> its plane.
    """

    ensembles: list[dict[str, Any]]
    ood: str | None
    paths: dict[str, tuple[PathSet, list[dict[str, Any]]]] = field(default_factory=dict)
    planes: dict[str, Surface] = field(default_factory=dict)


def read_demo(root: str | os.PathLike) -> DemoResults:
    """The results of the demo in ``root`` (the steps finished so far), every file checked.

    Raises:
        UserError: no ``ensembles.json`` yet, or a damaged file (named, with the field).
    """
    root = Path(root)
    if not (root / "ensembles.json").is_file():
        raise UserError(f"{root} has no ensembles.json; run `landscape demo --out {root}` first")
    ensembles, ood = read_ensembles(root / "ensembles.json")
    paths = {d.name: (read_paths(d / "paths.h5"), read_pairs(d / "report.json"))
             for d in _subfolders(root / "paths")
             if (d / "paths.h5").exists() and (d / "report.json").exists()}
    planes = {d.name: read_surface(d / "plane.h5") for d in _subfolders(root / "planes")
              if (d / "plane.h5").exists()}
    return DemoResults(ensembles, ood, paths, planes)


def _subfolders(path: Path) -> list[Path]:
    return sorted(d for d in path.iterdir() if d.is_dir()) if path.is_dir() else []


def read_ensembles(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """``ensembles.json``: per run its name, method and table; and the OOD set.

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
    out = []
    for i, run in enumerate(runs):
        where = f"{path}: runs[{i}]"
        for key in ("name", "method"):
            if not isinstance(run.get(key), str):
                raise UserError(f"{where}: field {key!r} must be a string, got {short_repr(run.get(key))}; {fix}")
        if problem := _table_problem(run.get("table")):
            raise UserError(f"{where}: field 'table' {problem}; {fix}")
        out.append({"name": run["name"], "method": run["method"], "table": run["table"]})
    return out, doc.get("ood")


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
