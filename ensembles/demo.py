"""The paper in miniature on MNIST-1D (``landscape demo``): every step writes its files and is
skipped when they exist, so an interrupted demo resumes.

Steps: pre-train source checkpoints on ``mnist1d-source``; train Local DE, Global DE, and SSE and
StarSSE at a local and a semi-local cycle learning rate; judge every run (ensembles by size,
soups, the corrupted test set); evaluate linear paths between consecutive snapshots and star
pairs; evaluate planes through three SSE and three StarSSE members.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ensembles.config import RunConfig
from ensembles.evaluate import evaluate
from ensembles.manifest import read_run
from ensembles.run import train
from ensembles.training import TrainConfig, pretrain
from landscape.assets.checkpoint import load_checkpoint, save_checkpoint
from landscape.atomic import write_json
from landscape.surfaces.basins import path_report
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
        return
    log("judge ensembles (soups, out of distribution)")
    reports = [evaluate(out / "runs" / name, soups=True, ood=config.ood, device=device)
               for name in RUNS]
    doc = {"ood": config.ood, "runs": [{**asdict(r), "table": r.table()} for r in reports]}
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
