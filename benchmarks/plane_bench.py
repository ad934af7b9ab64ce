#!/usr/bin/env python
"""Points per second of the plane engine against the naive per-point reference loop.

Measures, in one run and on one sample of grid points of the demo's plane (21 x 21 grid through
three fine-tuned MNIST-1D members, BN recompute, 4000 train / 1000 test samples):

- the engine (``landscape.engine.GridEvaluator``) on its ``loop`` and ``vmap`` paths, and which
  one ``choose_path`` (what ``landscape plane --engine auto`` uses) picks;
- the naive reference (``landscape.reference.naive_point``: a fresh model copy, ``update_bn``
  over a DataLoader and a DataLoader pass per split, for every point);
- the ratio engine / naive and the largest absolute difference of their loss and accuracy.

The naive loop takes about a second per point on a CPU, so both are timed on the same seeded
sample of ``--naive-points`` grid points; ``--full`` also times the engine over the whole grid.

Usage:
    python benchmarks/plane_bench.py                      # the demo's members (runs/demo)
    python benchmarks/plane_bench.py --json bench.json    # also write the figures as JSON
    python benchmarks/plane_bench.py --checkpoints A.safetensors B.safetensors C.safetensors
    python benchmarks/plane_bench.py --grid 3 --train-subset 200 --test-subset 100 \
        --naive-points 2                                  # a smoke run in seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import landscape
from landscape import PlaneConfig, UserError, load_checkpoint, resolve_device, save_checkpoint
from landscape.data import ArrayDataset
from landscape.engine import GridEvaluator
from landscape.geometry import ParamLayout, PlaneBasis
from landscape.plane import _geometry, _resident_data, check_compatible, common_dataset
from landscape.reference import naive_point

REPO = Path(__file__).resolve().parents[1]
DEMO_MEMBERS = [REPO / "runs" / "demo" / f"member-{i}.safetensors" for i in (1, 2, 3)]
ENGINE_PATHS = ("loop", "vmap")
BN = "recompute"


@dataclass(frozen=True)
class Timing:
    """Wall time of one method over the sampled points, and its metrics there.

    ``metrics[split][name]`` is an (N,) float64 array in sample order."""

    points: int
    seconds: float
    metrics: dict[str, dict[str, np.ndarray]]

    @property
    def points_per_s(self) -> float:
        return self.points / self.seconds


# ----------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Points per second of the plane engine (loop and vmap paths) against the "
                    "naive per-point reference loop, on the demo's plane.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoints", nargs=3, metavar=("A", "B", "C"), default=None,
                   help="three checkpoints spanning the plane (default: runs/demo/member-{1,2,3}."
                        "safetensors if present, else three quick ones trained into a temp dir)")
    p.add_argument("--grid", type=int, default=21, help="points per axis of the plane")
    p.add_argument("--train-subset", type=int, default=None,
                   help="seeded subset of the train split (default: all 4000)")
    p.add_argument("--test-subset", type=int, default=None,
                   help="seeded subset of the test split (default: all 1000)")
    p.add_argument("--naive-points", type=int, default=12,
                   help="seeded sample of grid points that both engine and naive loop evaluate")
    p.add_argument("--full", action="store_true",
                   help="also time the engine (the path auto picks) over the whole grid")
    p.add_argument("--group-size", type=int, default=8,
                   help="points the engine evaluates together (plane's default)")
    p.add_argument("--batch-size", type=int, default=1024, help="engine evaluation batch size")
    p.add_argument("--naive-batch-size", type=int, default=128,
                   help="DataLoader batch size of the naive loop's evaluation passes")
    p.add_argument("--seed", type=int, default=0, help="seeds the point sample and the subsets")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--device", default="cpu",
                   help="engine device: auto, cpu, cuda or cuda:N (the naive loop runs on CPU)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the figures and the environment to this JSON file")
    args = p.parse_args(argv)
    for name in ("naive_points", "group_size", "batch_size", "naive_batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, "
                    f"got {getattr(args, name)}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be a positive integer, got {args.threads}")
    return args


# ----------------------------------------------------------------------------- checkpoints


def quick_members(out_dir: Path) -> list[Path]:
    """Pre-train mnist1d_cnn on MNIST-1D for 2 epochs, fine-tune 3 seeds for 2 epochs each."""
    from ensembles.training import TrainConfig, finetune, pretrain

    pre = pretrain("mnist1d_cnn", "mnist1d", TrainConfig(epochs=2, lr=0.05, seed=0))
    save_checkpoint(pre.model, out_dir / "pre.safetensors", pre.meta)
    parent = load_checkpoint(out_dir / "pre.safetensors")
    paths = []
    for seed in (1, 2, 3):
        res = finetune(parent, "mnist1d", TrainConfig(epochs=2, lr=0.02, seed=seed), member=seed)
        path = out_dir / f"member-{seed}.safetensors"
        save_checkpoint(res.model, path, res.meta)
        paths.append(path)
    return paths


def pick_checkpoints(given: list[str] | None, tmp: Path) -> tuple[list[Path], str]:
    """The checkpoints to use and where they came from (given, demo or created)."""
    if given:
        return [Path(p) for p in given], "given"
    if all(p.is_file() for p in DEMO_MEMBERS):
        return DEMO_MEMBERS, "demo"
    log("no --checkpoints and no runs/demo members: training three quick ones "
        "(pretrain 2 epochs, finetune 3 seeds x 2 epochs) into a temp dir")
    return quick_members(tmp), "created"


# ----------------------------------------------------------------------------- measuring


def sample_points(grid: int, n: int, *, seed: int) -> list[tuple[int, int]]:
    """A seeded sample of min(n, grid^2) distinct grid indices (j, i), in row-major order."""
    flat = np.random.default_rng(seed).choice(grid * grid, size=min(n, grid * grid),
                                              replace=False)
    return [(int(k) // grid, int(k) % grid) for k in np.sort(flat)]


def time_engine(evaluator: GridEvaluator, basis: PlaneBasis, x: np.ndarray, y: np.ndarray,
                points: list[tuple[int, int]], *, path: str, group_size: int) -> Timing:
    """Warm up once on one point, then evaluate ``points`` in groups as ``plane`` does."""
    def weights(group):  # (K, P) float64
        return basis.points(torch.tensor([[x[i], y[j]] for j, i in group], dtype=torch.float64))

    evaluator.evaluate(weights(points[:1]), path=path)  # warm-up
    parts = []
    start = time.perf_counter()
    for g in range(0, len(points), group_size):
        parts.append(evaluator.evaluate(weights(points[g : g + group_size]), path=path).metrics)
    seconds = time.perf_counter() - start
    metrics = {s: {m: np.concatenate([p[s][m] for p in parts]) for m in parts[0][s]}
               for s in parts[0]}
    return Timing(len(points), seconds, metrics)


def time_naive(model: torch.nn.Module, basis: PlaneBasis, x: np.ndarray, y: np.ndarray,
               points: list[tuple[int, int]], splits: dict[str, ArrayDataset],
               bn_train: ArrayDataset, *, bn_batch_size: int, batch_size: int) -> Timing:
    """The reference loop, one ``naive_point`` per point, after one warm-up point."""
    def one(j, i):
        return naive_point(model, basis.point(float(x[i]), float(y[j])), splits, bn=BN,
                           bn_train=bn_train, bn_batch_size=bn_batch_size, batch_size=batch_size)

    one(*points[0])  # warm-up
    results = []
    start = time.perf_counter()
    for j, i in points:
        results.append(one(j, i))
    seconds = time.perf_counter() - start
    metrics = {s: {m: np.array([r[s][m] for r in results]) for m in ("loss", "acc")}
               for s in splits}
    return Timing(len(points), seconds, metrics)


def max_abs_diff(a: Timing, b: Timing) -> dict[str, float]:
    """Largest |a - b| of loss and of accuracy (%) over all splits and points."""
    return {m: max(float(np.max(np.abs(a.metrics[s][m] - b.metrics[s][m]))) for s in a.metrics)
            for m in ("loss", "acc")}


# ----------------------------------------------------------------------------- environment


def environment(device: torch.device) -> dict[str, Any]:
    def git(*cmd: str) -> str | None:
        try:
            out = subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True,
                                 check=False, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain")  # untracked files count: peers add modules
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "load_average_1m_at_start": (round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg")
                                     else None),
        "versions": {"landscape": landscape.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------------- run


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    device = resolve_device(args.device)
    env = environment(device)
    paths, source = pick_checkpoints(args.checkpoints, tmp)
    ckpts = [load_checkpoint(p) for p in paths]
    check_compatible(ckpts)
    dataset = common_dataset(ckpts)
    config = PlaneConfig(grid=args.grid, bn=BN, train_subset=args.train_subset,
                         test_subset=args.test_subset, seed=args.seed,
                         batch_size=args.batch_size, group_size=args.group_size)
    layout = ParamLayout.of(ckpts[0].model)
    vecs = [layout.flatten(c.model.state_dict()) for c in ckpts]
    basis, x, y, _ = _geometry(ckpts, vecs, layout, config)
    points = sample_points(args.grid, args.naive_points, seed=args.seed)

    resident = _resident_data(dataset, config, BN, None, device)  # exactly what plane() uses
    evaluator = GridEvaluator(ckpts[0].model, layout, resident, bn_policy=BN,
                              bn_batch_size=config.bn_batch_size, batch_size=config.batch_size)
    group = points[: config.group_size]
    xy = torch.tensor([[x[i], y[j]] for j, i in group], dtype=torch.float64)
    choice = evaluator.choose_path(basis.points(xy))
    log(f"auto picks {choice.path}; timing the engine on {len(points)} points")
    engine = {path: time_engine(evaluator, basis, x, y, points, path=path,
                                group_size=config.group_size) for path in ENGINE_PATHS}

    cpu = _resident_data(dataset, config, BN, None, torch.device("cpu"))
    splits = {s: ArrayDataset(*cpu.splits[s]) for s in config.splits}
    bn_train = ArrayDataset(cpu.bn_inputs, torch.zeros(len(cpu.bn_inputs), dtype=torch.long))
    log(f"timing the naive reference loop on {len(points)} points")
    naive = time_naive(ckpts[0].model, basis, x, y, points, splits, bn_train,
                       bn_batch_size=config.bn_batch_size, batch_size=args.naive_batch_size)

    full = None
    if args.full:
        every = [(j, i) for j in range(args.grid) for i in range(args.grid)]
        log(f"timing the engine ({choice.path}) on the whole {args.grid}x{args.grid} grid")
        t = time_engine(evaluator, basis, x, y, every, path=choice.path,
                        group_size=config.group_size)
        full = {"path": choice.path, "points": t.points, "seconds": t.seconds,
                "points_per_s": t.points_per_s}

    diffs = {path: max_abs_diff(engine[path], naive) for path in ENGINE_PATHS}
    chosen = engine[choice.path]
    return {
        "benchmark": "plane",
        "environment": env,
        "setup": {
            "checkpoints": [str(p) for p in paths],
            "checkpoints_source": source,
            "dataset": dataset,
            "samples": {s: len(resident.splits[s][1]) for s in config.splits},
            "bn": BN,
            "bn_batch_size": config.bn_batch_size,
            "grid": args.grid,
            "group_size": config.group_size,
            "batch_size": config.batch_size,
            "naive_batch_size": args.naive_batch_size,
            "seed": args.seed,
            "sample": [list(p) for p in points],
        },
        "engine": {path: _timing_json(t, naive) for path, t in engine.items()},
        "auto": {"path": choice.path, "seconds_per_point": choice.seconds_per_point,
                 "note": choice.note},
        "naive": _timing_json(naive, naive),
        "engine_points_per_s": chosen.points_per_s,
        "naive_points_per_s": naive.points_per_s,
        "ratio": chosen.points_per_s / naive.points_per_s,
        "max_abs_diff": {**diffs, "overall": max(v for d in diffs.values() for v in d.values())},
        "full_grid": full,
    }


def _timing_json(t: Timing, naive: Timing) -> dict[str, float]:
    return {"points": t.points, "seconds": t.seconds, "points_per_s": t.points_per_s,
            "ratio_to_naive": t.points_per_s / naive.points_per_s}


# ----------------------------------------------------------------------------- output


def table(r: dict[str, Any]) -> str:
    env, setup = r["environment"], r["setup"]
    samples = ", ".join(f"{s} {n}" for s, n in setup["samples"].items())
    lines = [
        (f"plane benchmark: {setup['grid']}x{setup['grid']} grid, {setup['dataset']} "
         f"({samples}), BN {setup['bn']}, {len(setup['sample'])} sampled points "
         f"(seed {setup['seed']})"),
        f"checkpoints ({setup['checkpoints_source']}): " + " ".join(setup["checkpoints"]),
        (f"device {env['device']} ({env['device_name']}), torch {env['versions']['torch']}, "
         f"{env['cpu_count']} CPUs, torch.get_num_threads() = {env['torch_threads']}, "
         f"load avg {env['load_average_1m_at_start']}, "
         f"commit {(env['git_commit'] or '?')[:10]}{' (dirty)' if env['git_dirty'] else ''}, "
         f"{env['date']}"),
        "",
        (f"{'method':<18}{'points':>7}{'seconds':>10}{'points/s':>11}{'x naive':>9}"
         f"{'max|dloss|':>12}{'max|dacc|':>11}"),
    ]
    rows = [(f"engine {p}" + (" *" if p == r["auto"]["path"] else ""), r["engine"][p],
             r["max_abs_diff"][p]) for p in ENGINE_PATHS]
    rows.append(("naive reference", r["naive"], None))
    for name, t, d in rows:
        dl, da = ("", "") if d is None else (f"{d['loss']:.2e}", f"{d['acc']:.2e}")
        lines.append(f"{name:<18}{t['points']:>7}{t['seconds']:>10.3f}{t['points_per_s']:>11.2f}"
                     f"{t['ratio_to_naive']:>8.1f}x{dl:>12}{da:>11}")
    spp = ", ".join(f"{p} {s * 1e3:.1f} ms" for p, s in r["auto"]["seconds_per_point"].items())
    note = f"; {r['auto']['note']}" if r["auto"]["note"] else ""
    lines += [
        "",
        f"auto picks: {r['auto']['path']} (* above; its probe, per point: {spp}){note}",
        (f"engine/naive ratio (auto path): {r['ratio']:.1f}x "
         f"({r['engine_points_per_s']:.2f} vs {r['naive_points_per_s']:.2f} points/s)"),
        (f"max abs diff engine vs naive (loss and acc %, both paths): "
         f"{r['max_abs_diff']['overall']:.2e}"),
    ]
    if r["full_grid"]:
        f = r["full_grid"]
        lines.append(f"full grid, engine {f['path']}: {f['points']} points in {f['seconds']:.2f} s "
                     f"= {f['points_per_s']:.2f} points/s")
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"[plane_bench] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        with tempfile.TemporaryDirectory(prefix="plane-bench-") as tmp:
            result = run(args, Path(tmp))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
