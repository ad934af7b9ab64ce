"""Shared measuring code of the benchmarks: one plane case, timed for our engine and for the
naive per-point reference loop in the same run, with FLOP counts and the machine's matmul rate.

The naive reference is what peers do: for every point a fresh model copy with the point's
weights, BN statistics recomputed with ``update_bn`` over a DataLoader, and a DataLoader pass per
split. Its datasets apply their transform per sample, as torchvision datasets do (``PerSample``),
while the engine transforms the data once and keeps it resident on the device.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from torch.utils.flop_counter import FlopCounterMode

import landscape
from landscape.engine.evaluator import EvalData, GridEvaluator
from landscape.engine.layout import ParamLayout
from landscape.surfaces.geometry import PlaneBasis, axis, three_point_basis
from landscape.engine.numerics import numerics
from landscape.surfaces.reference import naive_point

REPO = Path(__file__).resolve().parents[1]
Transform = Callable[[np.ndarray], torch.Tensor]


# ----------------------------------------------------------------------------- data


class PerSample(Dataset):
    """Raw samples transformed one at a time in ``__getitem__``, as torchvision datasets do."""

    def __init__(self, raw: np.ndarray, labels: np.ndarray, transform: Transform) -> None:
        self.raw, self.labels, self.transform = raw, labels, transform

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.raw[i]), int(self.labels[i])


def vector_transform(mean: float = 0.0, std: float = 1.0) -> Transform:
    """ToTensor + Normalize for 1-D float samples (MNIST-1D)."""
    def tf(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32).sub(mean).div(std)

    return tf


def image_transform(mean: Sequence[float], std: Sequence[float]) -> Transform:
    """What torchvision's CIFAR datasets do per sample: uint8 HWC array -> PIL image ->
    ToTensor -> Normalize."""
    from PIL import Image
    from torchvision import transforms as T

    tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    return lambda a: tf(Image.fromarray(a))


def resident(ds: PerSample, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset transformed once, stacked and moved to the device (what the engine uses)."""
    x = torch.stack([ds.transform(r) for r in ds.raw])
    return x.to(device), torch.as_tensor(ds.labels, dtype=torch.long, device=device)


# ----------------------------------------------------------------------------- a plane case


@dataclass
class PlaneCase:
    """One benchmark case: the plane through three models, evaluated on a train and a test set
    with BN recompute (or another policy for models without BN statistics to recompute)."""

    name: str
    models: tuple[nn.Module, nn.Module, nn.Module]
    train: PerSample
    test: PerSample
    grid: int = 21
    naive_points: int = 8
    engine_points: int = 32
    bn_batch_size: int = 128
    naive_batch_size: int = 128
    batch_size: int = 1024
    group_size: int = 8
    device: str = "cpu"
    seed: int = 0
    options: tuple[str, ...] | None = None  # engine options to time (None: all that apply)
    other_path: bool = True  # also time the path the tuner did not choose
    notes: list[str] = field(default_factory=list)
    report: Callable[[dict[str, Any]], None] | None = None  # gets the headline figures first


@dataclass(frozen=True)
class Timing:
    points: int
    seconds: float
    metrics: dict[str, dict[str, np.ndarray]]

    @property
    def points_per_s(self) -> float:
        return self.points / self.seconds


def plane_geometry(models, grid: int) -> tuple[ParamLayout, PlaneBasis, np.ndarray, np.ndarray]:
    """The Garipov plane through three models and its default grid (margins 0.2)."""
    layout = ParamLayout.of(models[0])
    basis = three_point_basis(*[layout.flatten(m.state_dict()) for m in models])
    x = axis(min(0.0, basis.c_u), max(basis.norm_b, basis.c_u), 0.2, grid)
    y = axis(0.0, basis.norm_c_perp, 0.2, grid)
    return layout, basis, x, y


def sample_points(grid: int, n: int, *, seed: int) -> list[tuple[int, int]]:
    """A seeded sample of min(n, grid^2) distinct grid indices (j, i), in row-major order."""
    flat = np.random.default_rng(seed).choice(grid * grid, size=min(n, grid * grid), replace=False)
    return [(int(k) // grid, int(k) % grid) for k in np.sort(flat)]


def engine_points(naive: list, others: list, n: int, group: int) -> list:
    """The engine's timed points: the naive loop's, then others, in whole groups (about ``n``
    points), so every timed group has the shape the warm-up compiled and benchmarked."""
    count = max(group, -(-max(n, len(naive)) // group) * group)
    return naive + others[: count - len(naive)]


def measure(case: PlaneCase) -> dict[str, Any]:
    """Engine (tuned as ``landscape plane --engine auto``) and naive loop on the same points.
    The headline figures go to ``case.report`` before the extras (options, the path not chosen,
    the BN share) are timed, so that a run cut short by a time limit keeps them."""
    device = torch.device(case.device)
    layout, basis, x, y = plane_geometry(case.models, case.grid)
    data = EvalData({"train": resident(case.train, device), "test": resident(case.test, device)})
    data = EvalData(data.splits, data.splits["train"][0])
    evaluator = GridEvaluator(case.models[0], layout, data, bn_policy="recompute",
                              bn_batch_size=case.bn_batch_size, batch_size=case.batch_size)

    def weights(points):
        return basis.points(torch.tensor([[x[i], y[j]] for j, i in points], dtype=torch.float64))

    naive_sample = sample_points(case.grid, case.naive_points, seed=case.seed)
    order = np.random.default_rng(case.seed + 1).permutation(case.grid**2)  # the other points, seeded
    others = [p for k in order if (p := (int(k) // case.grid, int(k) % case.grid)) not in naive_sample]
    start = time.perf_counter()
    tuned = evaluator.tune(weights(others[: case.group_size]),
                           group_sizes=(case.group_size // 2, case.group_size, 2 * case.group_size))
    tuning = tuned.settings
    tune_seconds = time.perf_counter() - start
    log(f"{case.name}: tuned in {tune_seconds:.1f} s ({tuning.strategy}, batch {tuning.batch_size}, group "
        f"{tuning.group_size}, {tuning.workers} worker(s)); timing the engine and the naive loop")
    engine_sample = engine_points(naive_sample, others, case.engine_points, tuning.group_size)
    engine, naive = time_interleaved(case, evaluator, weights, engine_sample, naive_sample, tuning, device)
    flops = flops_per_point(evaluator, weights(engine_sample[:1]))
    at = [engine_sample.index(p) for p in naive_sample]
    diff = {m: max(float(np.max(np.abs(engine.metrics[s][m][at] - naive.metrics[s][m])))
                   for s in naive.metrics) for m in ("loss", "acc")}
    result = {
        "case": case.name, "device": str(device), "grid": case.grid,
        "samples": {"train": len(case.train), "test": len(case.test)},
        "bn": "recompute", "bn_batch_size": case.bn_batch_size,
        "tuning": {"path": tuning.strategy, "batch_size": tuning.batch_size,
                   "group_size": tuning.group_size, "workers": tuning.workers, "bn_ghosts": tuning.bn_ghosts,
                   "note": tuned.note,
                   "seconds": tune_seconds,
                   "seconds_per_point": tuned.seconds_per_point, "backoffs": evaluator.backoffs,
                   "cuda_graph": evaluator.graph_note or None},
        "engine": _timing(engine), "naive": _timing(naive),
        "ratio": engine.points_per_s / naive.points_per_s,
        "max_abs_diff": diff,
        "flops_per_point": flops,
        "engine_flops_per_s": flops * engine.points_per_s,
        "notes": case.notes,
    }
    log(f"{case.name}: engine {engine.points_per_s:.3g} points/s, naive {naive.points_per_s:.3g}, ratio "
        f"{result['ratio']:.1f}x, {result['engine_flops_per_s'] / 1e9:.1f} GFLOP/s, max |dloss| {diff['loss']:.1e}")
    if case.report is not None:
        case.report({**result, "partial": "the extras (options, other path, BN share) were not timed yet"})
    w = weights(engine_sample[: max(2, tuning.workers)])  # as many points as the workers run at once
    result["engine_seconds_per_point_without_bn"] = time_without_bn(case, layout, data, tuning, w)
    other = "vmap" if tuning.strategy == "loop" else "loop"  # the path not chosen, at full size
    other_path = (time_engine(evaluator, weights, engine_sample[: tuning.group_size], other, tuning.group_size)
                  if case.other_path else None)
    result["other_path"] = None if other_path is None else {"path": other, **_timing(other_path)}
    result["options"] = time_options(case, layout, data, tuning, weights, engine, engine_sample)
    return result


def time_options(case, layout, data, tuning, weights, engine: Timing, engine_sample) -> dict:
    """The engine with TF32 (GPU), bf16 autocast, (for image models) channels-last, and on a
    GPU the other choice of ghost batches in the loop path's BN pass (one fixed batch a forward
    if the tuner chose several, else evaluation batch // BN batch of them, at least 2) and cuDNN's
    autotuner, on the first group of the engine's points: points per second, speed-up over the
    engine as tuned, and the largest difference from it."""
    points = engine_sample[: tuning.group_size]
    at = list(range(len(points)))
    image = data.splits["test"][0].dim() == 4
    gpu = data.splits["test"][0].device.type == "cuda"
    out = {}
    ghosts = 1 if tuning.bn_ghosts > 1 else max(2, tuning.batch_size // case.bn_batch_size)
    for name, kw in (("tf32", {"precision": "tf32"}), ("bf16", {"precision": "bf16"}),
                     ("channels_last", {"channels_last": True}),
                     ("bf16+cl", {"precision": "bf16", "channels_last": True}),
                     ("ghost-bn", {"bn_ghosts": ghosts}), ("cudnn-benchmark", {"cudnn_benchmark": True})):
        if ("channels_last" in kw and not image) or (name in ("tf32", "ghost-bn", "cudnn-benchmark") and not gpu):
            continue  # channels-last is for images; TF32 and the GPU's BN pass exist on GPUs only
        if name == "ghost-bn" and tuning.strategy != "loop":
            continue
        if case.options is not None and name not in case.options:
            continue
        try:
            ev = GridEvaluator(case.models[0], layout, data, bn_policy="recompute",
                               bn_batch_size=case.bn_batch_size, batch_size=tuning.batch_size,
                               workers=tuning.workers, **{"bn_ghosts": tuning.bn_ghosts, **kw})
            t = time_engine(ev, weights, points, tuning.strategy, tuning.group_size)
        except (RuntimeError, ValueError, NotImplementedError) as exc:  # report, go on
            out[name] = {"error": str(exc).splitlines()[0][:200]}
            log(f"{case.name}: option {name} failed: {out[name]['error']}")
            continue
        diff = {m: max(float(np.max(np.abs(t.metrics[s][m] - engine.metrics[s][m][at]))) for s in t.metrics)
                for m in ("loss", "acc")}
        out[name] = {"points_per_s": t.points_per_s, "speedup": t.points_per_s / engine.points_per_s,
                     "max_abs_diff": diff}
        if "bn_ghosts" in kw:
            out[name].update(bn_ghosts=ghosts, note=ev.ghost_note)
    return out


def time_without_bn(case, layout, data, tuning, w: torch.Tensor) -> float:
    """Seconds per point of the evaluation passes alone (BN statistics kept, not recomputed):
    the rest of the engine's time per point is the BN statistics pass."""
    ev = GridEvaluator(case.models[0], layout, data, bn_policy="keep", batch_size=tuning.batch_size,
                       workers=tuning.workers)
    keep = [{k: v for k, v in case.models[0].state_dict().items() if k in dict(ev.model.named_buffers())}] * len(w)
    ev.evaluate(w, keep, strategy="loop")  # warm-up: every worker's replica made and run once
    sync(ev)
    start = time.perf_counter()
    ev.evaluate(w, keep, strategy="loop")
    sync(ev)
    return (time.perf_counter() - start) / len(w)


def time_interleaved(case, evaluator, weights, engine_points, naive_points, tuning, device):
    """Engine and naive loop timed in alternating rounds (a share of the engine's points, then
    one naive point), so that both see the same machine: the speed of a shared or virtual CPU
    drifts by up to 2x over minutes, which would otherwise decide the ratio."""
    rounds, group = len(naive_points), tuning.group_size
    groups = [engine_points[g : g + group] for g in range(0, len(engine_points), group)]
    chunks = [[p for grp in groups[r::rounds] for p in grp] for r in range(rounds)]  # whole groups
    engine_parts, naive_parts = [], []
    time_engine(evaluator, weights, engine_points[:group], tuning.strategy, group)  # warm-up
    time_naive(case, weights, naive_points[:1], device)  # warm-up
    for r in range(rounds):
        if chunks[r]:  # fewer groups than naive points: some rounds time the naive loop alone
            engine_parts.append(time_engine(evaluator, weights, chunks[r], tuning.strategy, group, warm_up=False))
        naive_parts.append(time_naive(case, weights, naive_points[r : r + 1], device, warm_up=False))
    return _join(engine_parts, [p for c in chunks for p in c], engine_points), _join(naive_parts)


def _join(parts: list[Timing], order=None, target=None) -> Timing:
    """One timing from several; metrics put back in ``target`` order when given."""
    metrics = {s: {m: np.concatenate([p.metrics[s][m] for p in parts]) for m in parts[0].metrics[s]}
               for s in parts[0].metrics}
    if order is not None:
        where = [order.index(p) for p in target]
        metrics = {s: {m: v[where] for m, v in ms.items()} for s, ms in metrics.items()}
    return Timing(sum(p.points for p in parts), sum(p.seconds for p in parts), metrics)


def time_engine(evaluator: GridEvaluator, weights, points, path: str, group: int, *,
                warm_up: bool = True) -> Timing:
    if warm_up:  # a whole group: the shapes the timed groups have
        evaluator.evaluate(weights(points[:group]), strategy=path)
    sync(evaluator)
    parts, start = [], time.perf_counter()
    for g in range(0, len(points), group):
        parts.append(evaluator.evaluate(weights(points[g : g + group]), strategy=path).metrics)
    sync(evaluator)
    seconds = time.perf_counter() - start
    metrics = {s: {m: np.concatenate([p[s][m] for p in parts]) for m in parts[0][s]}
               for s in parts[0]}
    return Timing(len(points), seconds, metrics)


def time_naive(case: PlaneCase, weights, points, device: torch.device, *, warm_up: bool = True) -> Timing:
    splits = {"train": case.train, "test": case.test}

    def one(point):
        return naive_point(case.models[0], weights([point])[0], splits, bn="recompute",
                           bn_train=case.train, bn_batch_size=case.bn_batch_size,
                           batch_size=case.naive_batch_size, device=device)

    if warm_up:
        one(points[0])
    results, start = [], time.perf_counter()
    for p in points:
        results.append(one(p))
    seconds = time.perf_counter() - start
    metrics = {s: {m: np.array([r[s][m] for r in results]) for m in ("loss", "acc")} for s in splits}
    return Timing(len(points), seconds, metrics)


def flops_per_point(evaluator: GridEvaluator, w: torch.Tensor) -> float:
    """Forward FLOPs of one point (BN recompute pass and the evaluation passes), as counted
    by ``torch.utils.flop_counter`` (convolutions and matrix products)."""
    graphs, evaluator.loop.bn.cuda_graphs = evaluator.loop.bn.cuda_graphs, False  # a graph replay is not counted
    try:
        with FlopCounterMode(display=False) as counter:
            evaluator.evaluate(w, strategy="loop")
    finally:
        evaluator.loop.bn.cuda_graphs = graphs
    return float(counter.get_total_flops())


def sync(evaluator: GridEvaluator) -> None:
    device = next(evaluator.model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timing(t: Timing) -> dict[str, float]:
    return {"points": t.points, "seconds": t.seconds, "points_per_s": t.points_per_s}


# ----------------------------------------------------------------------------- the machine


def matmul_flops_per_s(device: str = "cpu", n: int | None = None, repeats: int = 5,
                       precision: str = "fp32") -> float:
    """Dense matmul throughput of this device with the current thread settings (best of
    ``repeats``): IEEE fp32 by default, the yardstick of the engine's FLOP/s; ``tf32`` or
    ``bf16`` (GPU) for the options."""
    dev = torch.device(device)
    n = n or (8192 if dev.type == "cuda" else 2048)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    best = float("inf")
    with numerics("tf32" if precision == "tf32" else "fp32", dev):
        a @ b
        for _ in range(repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            a @ b
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def environment(device: str) -> dict[str, Any]:
    def git(*cmd: str) -> str | None:
        try:
            out = subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True,
                                 check=False, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    dev = torch.device(device)
    status = git("status", "--porcelain")
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "device": str(dev),
        "device_name": (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                        else platform.processor() or platform.machine()),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "versions": {"landscape": landscape.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
