"""The steps of ``landscape demo``: every step writes its files and is skipped when they exist,
so an interrupted demo resumes (the JSON files are written atomically: a kill leaves the old file
or the new one, never a torn one).

1. Pre-train one source checkpoint per replicate on ``mnist1d-source``, and train the same model
   from scratch on the target (the worth of pre-training, one of the target's criteria).
2. From every source: Local DE, and SSE and StarSSE at every cycle rate of the sweep (member 1,
   the same fine-tune in every cell of a method, is trained once and copied); Global DE takes
   one member from each source.
3. The sweep: every cell's ensemble judged on the validation split; the optimal rate chosen.
4. Judge every run of a role on the test set (sizes, soups, the corrupted set), keeping the
   per-sample arrays that intervals and claims resample (``judged/``).
5. Linear paths (consecutive SSE snapshots, StarSSE's star) and two planes, from source 0 for
   the planes.
6. A Bezier curve between the two most distant semi-local SSE members of source 0, beside the
   straight line, and the plane through its ends and its bend with the curve drawn on it.
7. Basin geometry (``ensembles.demo.geometry``): sharpness, per-block distances, a simplex and a
   PCA plane of source 0's SSE and StarSSE runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ensembles.config import RunConfig
from ensembles.curves import CURVE_FILE, fit_curve
from ensembles.demo.config import (CURVE_ROLE, GLOBAL_RUN, METHODS, PLANE_ROLES, DemoConfig, cell_run, flat,
                                   local_de_run, role_runs, run_path, source_name)
from ensembles.demo.geometry import geometry
from ensembles.demo.read import read_config, read_judged, read_sweep
from ensembles.evaluate import evaluate
from ensembles.judged import save_samples
from ensembles.manifest import read_run
from ensembles.run import train
from ensembles.rundir import RunDir
from ensembles.training import TrainConfig, pretrain
from landscape.assets.checkpoint import load_checkpoint, save_checkpoint
from landscape.atomic import write_json
from landscape.surfaces.basins import path_report
from landscape.surfaces.curves import curve_report, evaluate_curve, project_curve
from landscape.surfaces.paths import PathConfig, interpolate
from landscape.surfaces.planes import PlaneConfig, plane

ARCH = "mnist1d_cnn"
SOURCE_DATA = "mnist1d-source"


def run_demo(
    out: str | os.PathLike,
    config: DemoConfig = DemoConfig(),
    *,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """Run (or finish) every step of the demo into ``out``; returns ``out``.

    ``log`` receives one line per step (the CLI prints them).

    Raises:
        UserError: ``out`` holds a demo of other settings, or a damaged file.
    """
    out = Path(out)
    read_config(out, config)  # a demo of other settings is refused before anything is trained
    write_json(out / "demo.json", {"config": config.to_dict()}, indent=2, strict=True)
    sources = _sources(out, config, device, log)
    _baseline(out, config, device, log)
    for r, source in enumerate(sources):
        log(f"train the runs from {source_name(r)}")
        _runs_from(out, r, source, config, device)
    log("train global-de")
    train(_config("global-de", tuple(sources), config, members=len(sources)), run_path(out, GLOBAL_RUN), device=device)
    chosen = _sweep(out, config, device, log)
    roles = role_runs(config, chosen)
    _judge(out, config, roles, device, log)
    for role in (f"{m}-{r}" for m in METHODS for r in ("local", "optimal", "semilocal")):
        for run in roles[role]:
            _paths(out, run, "chain" if role.startswith("sse") else "star", config, device, log)
    for role in PLANE_ROLES:
        log(f"plane {role}")
        members = [read_run(run_path(out, roles[role][0])).checkpoint_path(i) for i in (1, 2, 3)]
        plane(members, out=out / "planes" / role / "plane.h5", device=device,
              config=PlaneConfig(grid=config.grid, train_subset=config.plane_train_subset))
    _curve(out, roles[CURVE_ROLE][0], config, device, log)
    geometry(out, roles, config, device, log)
    return out


def _curve(out: Path, run: str, config: DemoConfig, device, log) -> None:
    """A Bezier curve with one bend between the two most distant members of ``run``, evaluated
    beside the straight line, and the plane through its ends and its bend with the curve on it."""
    target = out / "curve"
    members = read_run(run_path(out, run))
    files = [members.checkpoint_path(m["index"]) for m in members.members]
    a, b = _most_distant([load_checkpoint(f) for f in files])
    if not (target / CURVE_FILE).exists():
        log(f"fit a curve between {a.name} and {b.name} of {run}")
    fit = fit_curve(a, b, target, config=TrainConfig(epochs=config.curve_epochs, lr=config.curve_lr, seed=0),
                    device=device)
    if (target / "report.json").exists() and (target / "projection.json").exists():
        return
    log("evaluate the curve and the line")
    cfg = PathConfig(points=config.points)
    bent = evaluate_curve(fit.curve, out=target / "curve.h5", config=cfg, device=device)
    line = interpolate([a, b], out=target / "line.h5", config=cfg, device=device)
    bend = target / "bend-1.safetensors"
    plane([a, bend, b], out=out / "planes" / "curve" / "plane.h5", device=device,
          config=PlaneConfig(grid=config.grid, train_subset=config.plane_train_subset))
    xy, residual = project_curve(fit.curve, [a, load_checkpoint(bend), b])
    write_json(target / "projection.json", {"xy": xy.tolist(), "residual": residual}, indent=2, strict=True)
    report = curve_report(bent, line, kind="bezier", bends=1)
    write_json(target / "report.json", {"run": run, **asdict(report)}, indent=2, strict=True)


def _most_distant(ckpts):
    """The two checkpoints farthest apart in weight space (L2 over the parameters)."""
    vecs = [torch.cat([p.detach().reshape(-1).double() for p in c.model.parameters()]) for c in ckpts]
    pairs = [(float(torch.linalg.vector_norm(vecs[i] - vecs[j])), i, j)
             for i in range(len(vecs)) for j in range(i + 1, len(vecs))]
    _, i, j = max(pairs)
    return ckpts[i], ckpts[j]


def _config(method: str, sources: tuple[str, ...], c: DemoConfig, **kw) -> RunConfig:
    base = dict(data=c.data, members=c.members, epochs=c.epochs, lr=c.lr)
    return RunConfig(method, sources, **{**base, **kw})


def _sources(out: Path, config: DemoConfig, device, log) -> list[str]:
    paths = []
    for seed in range(config.sources):
        path = out / "sources" / f"{source_name(seed)}.safetensors"
        if not path.exists():
            log(f"pretrain {source_name(seed)} on {SOURCE_DATA}")
            res = pretrain(ARCH, SOURCE_DATA, TrainConfig(epochs=config.pre_epochs, lr=config.pre_lr, seed=seed),
                           arch_kwargs={"width": config.width}, device=device)
            res.meta.extra["test_acc"] = res.test_acc
            save_checkpoint(res.model, path, res.meta)
        paths.append(str(path))
    return paths


def _baseline(out: Path, config: DemoConfig, device, log) -> None:
    """The same model trained from scratch on the target with the fine-tuning recipe, per seed."""
    path = out / "baseline.json"
    if path.exists():
        return
    log("train from scratch on the target (the worth of pre-training)")
    accs = [pretrain(ARCH, config.data, TrainConfig(epochs=config.epochs, lr=config.lr, seed=seed),
                     arch_kwargs={"width": config.width}, device=device).test_acc
            for seed in range(config.sources)]
    write_json(path, {"scratch_accuracy": accs, "epochs": config.epochs, "lr": config.lr}, indent=2, strict=True)


def _runs_from(out: Path, r: int, source: str, config: DemoConfig, device) -> None:
    train(_config("local-de", (source,), config), run_path(out, local_de_run(r)), device=device)
    for method in METHODS:
        first = None
        for cycle_lr in config.cycle_lrs:
            path = run_path(out, cell_run(r, method, cycle_lr))
            if first is not None and not RunDir(path).finished(1):
                RunDir(first).copy_member(1, RunDir(path))  # member 1 does not depend on the cycle rate
            train(_config(method, (source,), config, cycle_epochs=config.cycle_epochs, cycle_lr=cycle_lr),
                  path, device=device)
            first = first or path


def _sweep(out: Path, config: DemoConfig, device, log) -> dict[str, float]:
    """The validation accuracy of every cell's full ensemble; the optimal rate of each method."""
    path = out / "sweep.json"
    if path.exists():
        return read_sweep(path, config)["chosen"]
    log(f"judge the sweep of cycle rates on {config.validation}")
    doc = {"validation_data": config.validation, "cycle_lrs": list(config.cycle_lrs),
           "accuracy": {}, "member_accuracy": {}, "chosen": {}}
    for method in METHODS:
        for key in ("accuracy", "member_accuracy"):
            doc[key][method] = [[0.0] * config.sources for _ in config.cycle_lrs]
        for i, cycle_lr in enumerate(config.cycle_lrs):
            for r in range(config.sources):
                run = read_run(run_path(out, cell_run(r, method, cycle_lr)))
                files = [run.checkpoint_path(m["index"]) for m in run.members]
                row = evaluate(files, data=config.validation, soups=False, device=device).rows[-1]
                doc["accuracy"][method][i][r] = row.accuracy
                doc["member_accuracy"][method][i][r] = row.member_accuracy
        means = [float(np.mean(accs)) for accs in doc["accuracy"][method]]
        doc["chosen"][method] = config.cycle_lrs[int(np.argmax(means))]  # the first maximum: the smaller rate
    write_json(path, doc, indent=2, strict=True)
    return doc["chosen"]


def _judge(out: Path, config: DemoConfig, roles: dict[str, list[str]], device, log) -> None:
    """Every run of a role judged on the test set into judged/<run>.json and .npz; then
    ensembles.json, the tables of them all and each role's runs."""
    runs = list(dict.fromkeys(run for names in roles.values() for run in names))
    docs = []
    for run in runs:
        doc, arrays = (out / "judged" / f"{flat(run)}{suffix}" for suffix in (".json", ".npz"))
        if not (doc.exists() and arrays.exists()):
            log(f"judge {run} (soups, out of distribution)")
            report = evaluate(run_path(out, run), soups=True, ood=config.ood, device=device)
            report = replace(report, name=run)
            save_samples(report, arrays)  # the arrays first: the JSON says both are there
            write_json(doc, report.to_dict(), indent=2, strict=True)
        docs.append(read_judged(doc, run))
    write_json(out / "ensembles.json", {"ood": config.ood, "roles": roles, "runs": docs}, indent=2, strict=True)


def _paths(out: Path, run: str, pairs: str, config: DemoConfig, device, log) -> None:
    target = out / "paths" / flat(run)
    if (target / "report.json").exists() and (target / "paths.h5").exists():
        return
    log(f"paths {run} ({pairs})")
    members = read_run(run_path(out, run))
    files = [members.checkpoint_path(m["index"]) for m in members.members]
    ps = interpolate(files, out=target / "paths.h5", pairs=pairs, device=device,
                     config=PathConfig(points=config.points))
    source = load_checkpoint(out / "sources" / f"{run.split('/')[0]}.safetensors")
    report = path_report(ps, [load_checkpoint(f) for f in files], pretrained=[source])
    write_json(target / "report.json", {"pairs": [asdict(r) for r in report]}, indent=2, strict=True)

