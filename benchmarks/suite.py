#!/usr/bin/env python
"""The benchmark suite: every case of issue #6 in one command, one table.

Cases (each measured in one run against its reference):

- ``demo``: the demo's plane (21 x 21, BN recompute, MNIST-1D 4000 train / 1000 test): our engine
  against the naive per-point loop (DataLoader with per-sample transforms, ``update_bn``).
- ``peer``: the ``loss-landscapes`` package's ``planar_interpolation`` on the same plane with
  frozen BN, against our engine on exactly the points it visits.
- ``resnet20``: a CIFAR-shaped ResNet-20 plane on synthetic CIFAR-sized uint8 images (50 000 /
  10 000 on GPU; small sizes on CPU keep the code tested).
- ``resnet50``: a timm ResNet-50 plane at 224 px on a subset (small sizes and 64 px on CPU).
- ``scaling``: ``landscape plane`` end to end: cost against grid size, and points per second
  against torchrun processes.

Every case prints points per second of both sides, their ratio, the largest difference of their
values, the FLOP/s the engine achieves (``torch.utils.flop_counter``) and its fraction of the
dense fp32 matmul throughput measured in the same run.

Usage:
    python benchmarks/suite.py                          # every case, CPU sizes
    python benchmarks/suite.py --cases demo peer        # some cases
    python benchmarks/suite.py --device cuda --json gpu.json
    python benchmarks/suite.py --smoke                  # tiny sizes, a minute (CI)
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lib import (  # noqa: E402
    REPO,
    PerSample,
    PlaneCase,
    environment,
    image_transform,
    log,
    matmul_flops_per_s,
    measure,
    resident,
    vector_transform,
)

import landscape  # noqa: E402
from landscape.assets.datasets import load_dataset  # noqa: E402
from landscape.engine.evaluator import EvalData, GridEvaluator  # noqa: E402
from landscape.engine.layout import ParamLayout  # noqa: E402

CASES = ("demo", "peer", "resnet20", "resnet50", "scaling")
DEMO_MEMBERS = [REPO / "runs" / "demo" / "runs" / "source-0" / "local-de" / f"member-{i}.safetensors" for i in (1, 2, 3)]
CIFAR_MEAN, CIFAR_STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)


# ----------------------------------------------------------------------------- sizes


# On a GPU the naive loop takes 10 s or more a point, so the extras are trimmed to what matters
# (ResNet-50: the autotuner would benchmark 53 convolutions per shape and thread, minutes).
GPU_EXTRAS = dict(options=("tf32", "bf16+cl", "ghost-bn", "cudnn-benchmark"), other_path=False)
GPU_EXTRAS_LARGE = dict(options=("tf32", "bf16+cl"), other_path=False)
CPU_OPTIONS = ("bf16", "channels_last")  # bf16 alone already runs at a few % of fp32 on a CPU
CPU_IMAGE_OPTIONS = ("channels_last",)  # bf16 ResNets on a CPU: 0.01 points/s, 15 min a group


def sizes(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Per-case sizes: full on GPU, reduced on CPU, tiny under --smoke."""
    gpu = torch.device(args.device).type == "cuda"
    if args.smoke:
        return {"demo": dict(train=200, test=100, grid=5, naive=2, engine=6, group=2, options=("bf16",)),
                "peer": dict(train=200, test=100, steps=3),
                "resnet20": dict(train=64, test=32, grid=3, naive=1, engine=2, px=16, group=2,
                                 options=("channels_last",)),
                # timm's smallest ResNet stands in: the same code path, a fifth of the weights
                "resnet50": dict(train=8, test=8, grid=3, naive=1, engine=2, px=32, group=2, options=(),
                                 other_path=False, arch="timm:resnet10t"),
                "scaling": dict(grids=(3,), procs=(2,), train=100, test=50)}
    if gpu:
        resnet20 = dict(train=50000, test=10000, grid=21, naive=1, engine=16, px=32, batch=1024, group=8,
                        **GPU_EXTRAS)
        resnet50 = dict(train=5000, test=1000, grid=21, naive=1, engine=4, px=224, batch=512, group=4,
                        **GPU_EXTRAS_LARGE)
    else:  # a ResNet-50 point takes about 7 s on 2 cores: its group is as small as its sample
        resnet20 = dict(train=2000, test=500, grid=21, naive=2, engine=8, px=32, options=CPU_IMAGE_OPTIONS)
        resnet50 = dict(train=64, test=32, grid=21, naive=1, engine=2, px=128, group=2,
                        options=CPU_IMAGE_OPTIONS)
    return {"demo": dict(train=None, test=None, grid=21, naive=8, engine=48),
            "peer": dict(train=None, test=None, steps=6),
            "resnet20": resnet20,
            "resnet50": resnet50,
            "scaling": dict(grids=(5, 9, 15, 21), procs=(1, 2), train=None, test=None)}


# ----------------------------------------------------------------------------- models and data


def demo_models(tmp: Path) -> tuple[list[Path], str]:
    if all(p.is_file() for p in DEMO_MEMBERS):
        return DEMO_MEMBERS, "runs/demo local-de members 1-3"
    log("runs/demo not found: training three quick MNIST-1D members (about a minute)")
    from ensembles.training import TrainConfig, finetune, pretrain

    pre = pretrain("mnist1d_cnn", "mnist1d", TrainConfig(epochs=2, lr=0.05, seed=0))
    landscape.save_checkpoint(pre.model, tmp / "pre.safetensors", pre.meta)
    parent = landscape.load_checkpoint(tmp / "pre.safetensors")
    paths = []
    for seed in (1, 2, 3):
        res = finetune(parent, "mnist1d", TrainConfig(epochs=2, lr=0.02, seed=seed), member=seed)
        paths.append(tmp / f"member-{seed}.safetensors")
        landscape.save_checkpoint(res.model, paths[-1], res.meta)
    return paths, "3 quick members (pretrain 2 + finetune 2 epochs)"


def mnist1d_split(split: str, n: int | None, seed: int = 0) -> PerSample:
    ds = load_dataset("mnist1d", split)
    idx = np.arange(len(ds)) if n is None else np.random.default_rng(seed).permutation(len(ds))[:n]
    return PerSample(ds.inputs.numpy()[idx], ds.labels.numpy()[idx], vector_transform())


def synthetic_images(n: int, px: int, classes: int, seed: int) -> PerSample:
    """Random uint8 HWC images with a class-dependent mean, so accuracy is not trivial
    (made in chunks of float32 noise: 6000 images at 224 px would need 7 GB in float64)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    base = rng.integers(0, 256, (classes, 1, 1, 3)).astype(np.float32)
    raw = np.empty((n, px, px, 3), dtype=np.uint8)
    for s in range(0, n, 512):
        noise = rng.standard_normal((min(512, n - s), px, px, 3), dtype=np.float32)
        raw[s : s + 512] = np.clip(base[labels[s : s + 512]] + 60 * noise, 0, 255)
    return PerSample(raw, labels, image_transform(CIFAR_MEAN, CIFAR_STD))


def related_models(arch: str, classes: int, **kw) -> tuple[torch.nn.Module, ...]:
    """A random model and two seeded perturbations of it, with BN statistics of their own."""
    torch.manual_seed(0)
    base = landscape.create_model(arch, classes, **kw).eval()
    out = [base]
    for seed in (1, 2):
        m = landscape.create_model(arch, classes, **kw).eval()
        m.load_state_dict(base.state_dict())
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.02 * p.abs().mean() * torch.randn(p.shape, generator=gen))
        out.append(m)
    return tuple(out)


# ----------------------------------------------------------------------------- cases


def case_demo(args, size, tmp) -> dict[str, Any]:
    paths, source = demo_models(tmp)
    models = tuple(landscape.load_checkpoint(p).model for p in paths)
    case = PlaneCase("demo", models, mnist1d_split("train", size["train"]),
                     mnist1d_split("test", size["test"]), grid=size["grid"],
                     naive_points=size["naive"], engine_points=size["engine"], device=args.device,
                     group_size=size.get("group", 8), options=size.get("options", CPU_OPTIONS),
                     other_path=size.get("other_path", True), notes=[f"checkpoints: {source}"],
                     report=args.report)
    return measure(case)


def case_image(name, arch, classes, args, size, tmp, **kw) -> dict[str, Any]:
    models = related_models(arch, classes, **kw)
    train = synthetic_images(size["train"], size["px"], classes, seed=1)
    test = synthetic_images(size["test"], size["px"], classes, seed=2)
    case = PlaneCase(name, models, train, test, grid=size["grid"], naive_points=size["naive"],
                     engine_points=size["engine"], batch_size=size.get("batch", 256),
                     group_size=size.get("group", 8), device=args.device,
                     options=size.get("options", CPU_OPTIONS), other_path=size.get("other_path", True),
                     notes=[f"{arch}, random weights, synthetic {size['px']} px uint8 images"],
                     report=args.report)
    return measure(case)


def case_peer(args, size, tmp) -> dict[str, Any]:
    """loss-landscapes' planar_interpolation against our engine on the points it visits."""
    try:
        import loss_landscapes
        from loss_landscapes.metrics import Metric
    except ImportError:
        return {"case": "peer", "skipped": "pip install loss-landscapes (in the test extra)"}
    paths, source = demo_models(tmp)
    models = [landscape.load_checkpoint(p).model.eval() for p in paths]
    device = torch.device(args.device)
    splits = {"train": resident(mnist1d_split("train", size["train"]), device),
              "test": resident(mnist1d_split("test", size["test"]), device)}
    layout = ParamLayout.of(models[0])
    a, b, c = (layout.flatten(m.state_dict()) for m in models)
    d = torch.stack([b - a, c - a], 1)  # (P, 2)
    gram = d.T @ d
    visited, values = [], []

    class TrainAndTest(Metric):
        """Loss and accuracy on both splits, in batches of 1024 of resident tensors (the most
        favourable data handling for the peer), frozen BN."""

        def __call__(self, wrapper):
            m = wrapper.modules[0]
            w = torch.cat([p.detach().flatten().double().cpu() for p in m.parameters()])
            visited.append(torch.linalg.solve(gram, d.T @ (w - a)))
            values.append({s: _eval(m, *xy) for s, xy in splits.items()})
            return values[-1]["train"]["loss"]

    for m in models:
        m.to(device)
    start = time.perf_counter()
    loss_landscapes.planar_interpolation(models[0], models[1], models[2], TrainAndTest(),
                                         steps=size["steps"], deepcopy_model=True)
    peer_seconds = time.perf_counter() - start
    coef = torch.stack(visited)  # (N, 2): the affine coordinates of every point it visited
    weights = a + coef @ d.T
    keep = {k: v for k, v in models[0].state_dict().items() if "running" in k or "num_batches" in k}
    ev = GridEvaluator(models[0], layout, EvalData(splits), bn_policy="keep", batch_size=1024)
    tuning = ev.tune(weights[:8], [keep] * min(8, len(weights))).settings
    ev.evaluate(weights[:1], [keep], strategy=tuning.strategy)
    start = time.perf_counter()
    ours = [ev.evaluate(weights[g : g + tuning.group_size], [keep] * len(weights[g : g + tuning.group_size]),
                        strategy=tuning.strategy).metrics for g in range(0, len(weights), tuning.group_size)]
    seconds = time.perf_counter() - start
    flat = {s: {m: np.concatenate([o[s][m] for o in ours]) for m in ("loss", "acc")} for s in splits}
    diff = {m: max(abs(float(flat[s][m][i]) - v[s][m]) for i, v in enumerate(values) for s in splits)
            for m in ("loss", "acc")}
    n = len(weights)
    steps = size["steps"]
    visited_b = np.round(coef[:, 1].numpy() * steps, 3).reshape(steps, steps).tolist()
    return {
        "case": "peer", "device": str(device), "grid": steps,
        "samples": {s: len(xy[1]) for s, xy in splits.items()}, "bn": "keep",
        "tuning": {"path": tuning.strategy, "batch_size": tuning.batch_size, "group_size": tuning.group_size},
        "engine": {"points": n, "seconds": seconds, "points_per_s": n / seconds},
        "naive": {"points": n, "seconds": peer_seconds, "points_per_s": n / peer_seconds},
        "ratio": peer_seconds / seconds, "max_abs_diff": diff,
        "flops_per_point": None, "engine_flops_per_s": None,
        "peer_visited_b_steps": visited_b,
        "notes": [f"checkpoints: {source}", "reference = loss-landscapes planar_interpolation",
                  "steps of b it visits, per column: " + "; ".join(map(str, visited_b[:2])) +
                  " (odd columns are returned reversed, so its even and odd columns are offset by "
                  "one step)"],
    }


@torch.no_grad()
def _eval(model, x, y) -> dict[str, float]:
    loss, correct = 0.0, 0
    for s in range(0, len(x), 1024):
        logits = model(x[s : s + 1024]).float()
        loss += float(torch.nn.functional.cross_entropy(logits, y[s : s + 1024], reduction="sum"))
        correct += int((logits.argmax(-1) == y[s : s + 1024]).sum())
    return {"loss": loss / len(x), "acc": 100.0 * correct / len(x)}


def case_scaling(args, size, tmp) -> dict[str, Any]:
    """``landscape plane`` end to end (HDF5 writes included): seconds against grid size, and
    points per second against torchrun processes (process start-up included)."""
    paths, source = demo_models(tmp)
    subset = []
    if size["train"]:
        subset = ["--train-subset", str(size["train"]), "--test-subset", str(size["test"])]
    common = [*map(str, paths), "--no-plots", *subset, "--device", args.device]
    grid_rows = []
    for g in size["grids"]:
        seconds = _run([sys.executable, "-m", "cli", "plane", *common, "--grid", str(g),
                        "--out", str(tmp / f"grid-{g}")])
        grid_rows.append({"grid": g, "points": g * g, "seconds": seconds, "points_per_s": g * g / seconds})
    g = max(size["grids"])
    proc_rows = []
    for n in size["procs"]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
               "-m", "cli", "plane", *common, "--grid", str(g), "--out", str(tmp / f"procs-{n}")]
        seconds = _run(cmd, threads=max(1, (os.cpu_count() or 1) // n))
        proc_rows.append({"processes": n, "grid": g, "seconds": seconds, "points_per_s": g * g / seconds})
    return {"case": "scaling", "device": args.device, "grid_rows": grid_rows, "process_rows": proc_rows,
            "notes": [f"checkpoints: {source}", "wall time of the whole command, start-up included"]}


def _run(cmd: list[str], threads: int | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- output


def table(result: dict[str, Any]) -> str:
    env = result["environment"]
    mm = result["matmul_flops_per_s"]
    lines = [
        f"device {env['device']} ({env['device_name']}), torch {env['versions']['torch']}, "
        f"{env['torch_threads']} threads, commit {(env['git_commit'] or '?')[:10]}"
        f"{' (dirty)' if env['git_dirty'] else ''}, {env['date']}",
        f"dense fp32 matmul: {mm / 1e9:.1f} GFLOP/s",
        "",
        f"{'case':<10}{'grid':>5}{'train/test':>13}{'engine pt/s':>13}{'ref pt/s':>10}{'ratio':>8}"
        f"{'max|dloss|':>12}{'max|dacc|':>11}{'GFLOP/s':>9}{'of mm':>7}  engine",
    ]
    for r in result["cases"]:
        if "skipped" in r:
            lines.append(f"{r['case']:<10}  skipped: {r['skipped']}")
            continue
        if r["case"] == "scaling":
            continue
        fl = r["engine_flops_per_s"]
        frac = "" if fl is None else f"{100 * fl / mm:.0f}%"
        gf = "" if fl is None else f"{fl / 1e9:.1f}"
        t = r["tuning"]
        lines.append(
            f"{r['case']:<10}{r['grid']:>5}{r['samples']['train']:>7}/{r['samples']['test']:<5}"
            f"{r['engine']['points_per_s']:>13.2f}{r['naive']['points_per_s']:>10.2f}{r['ratio']:>7.1f}x"
            f"{r['max_abs_diff']['loss']:>12.1e}{r['max_abs_diff']['acc']:>11.1e}{gf:>9}{frac:>7}"
            f"  {t['path']}{_workers(t, r['device'])}, batch {t['batch_size']}, group {t['group_size']}"
            f"{_ghosts(t)}{_bn_share(r)}")
    by_precision = result.get("matmul_flops_per_s_by_precision")
    if by_precision:
        lines[1] += "; " + ", ".join(f"{p} {v / 1e12:.1f} TFLOP/s" for p, v in by_precision.items())
    opts = [(r, f"{name} x{o['bn_ghosts']}" if "bn_ghosts" in o else name, o)
            for r in result["cases"] for name, o in r.get("options", {}).items()]
    if opts:
        lines += ["", f"{'case':<10}{'option':<15}{'pt/s':>9}{'vs fp32':>9}{'max|dloss|':>12}{'max|dacc|':>11}"
                      f"{'of its mm':>11}"]
        lines += [f"{r['case']:<10}{n:<15}{o['points_per_s']:>9.2f}{o['speedup']:>8.2f}x"
                  f"{o['max_abs_diff']['loss']:>12.1e}{o['max_abs_diff']['acc']:>11.1e}"
                  f"{_option_fraction(r, n, o, by_precision):>11}" if "error" not in o
                  else f"{r['case']:<10}{n:<15}failed: {o['error']}" for r, n, o in opts]
    for r in result["cases"]:
        if r["case"] == "scaling" and "skipped" not in r:
            lines += ["", "scaling (landscape plane end to end):"]
            lines += [f"  grid {x['grid']:>3}: {x['points']:>4} points in {x['seconds']:7.1f} s "
                      f"= {x['points_per_s']:.2f} points/s" for x in r["grid_rows"]]
            lines += [f"  {x['processes']} process(es), grid {x['grid']}: {x['seconds']:7.1f} s "
                      f"= {x['points_per_s']:.2f} points/s" for x in r["process_rows"]]
    return "\n".join(lines)


def _workers(tuning: dict[str, Any], device: str) -> str:
    unit = "streams" if device.startswith("cuda") else "threads"
    return f" x{tuning['workers']} {unit}" if tuning.get("workers", 1) > 1 else ""


def _ghosts(tuning: dict[str, Any]) -> str:
    k = tuning.get("bn_ghosts", 1)
    return f", BN pass {k} fixed batches a forward" if k > 1 else ""


def _bn_share(case: dict[str, Any]) -> str:
    """The share of the engine's time per point spent on BN statistics."""
    rest = case.get("engine_seconds_per_point_without_bn")
    if rest is None:
        return ""
    other = case.get("other_path")
    other = f"; {other['path']} {other['points_per_s']:.2f} pt/s" if other else ""
    return f"; BN pass {max(0.0, 1 - rest * case['engine']['points_per_s']):.0%} of the time{other}"


def _option_fraction(case: dict[str, Any], name: str, option: dict[str, Any], by_precision) -> str:
    """The option's FLOP/s as a fraction of the matmul rate at its own precision (GPU only)."""
    precision = "bf16" if name.startswith("bf16") else "tf32" if name.startswith("tf32") else "fp32"
    if not by_precision or not case.get("flops_per_point"):
        return ""
    return f"{100 * case['flops_per_point'] * option['points_per_s'] / by_precision[precision]:.0f}%"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scaling = next((r for r in result["cases"] if r["case"] == "scaling" and "skipped" not in r), None)
    if scaling is None:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    rows = scaling["grid_rows"]
    left.plot([r["points"] for r in rows], [r["seconds"] for r in rows], "o-")
    left.set(xlabel="grid points (G x G)", ylabel="seconds, landscape plane",
             title="cost against grid size")
    rows = scaling["process_rows"]
    right.plot([r["processes"] for r in rows], [r["points_per_s"] for r in rows], "o-", label="measured")
    one = rows[0]["points_per_s"] / rows[0]["processes"]  # per process, at the fewest processes
    right.plot([r["processes"] for r in rows], [one * r["processes"] for r in rows],
               "--", color="grey", label="linear")
    right.set(xlabel="torchrun processes", ylabel="points / s", title="points per second against processes",
              xticks=[r["processes"] for r in rows])
    right.legend()
    fig.suptitle(f"{result['environment']['device_name']}, {result['environment']['date'][:10]}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- main


def write_json(result: dict[str, Any], path: Path | None) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=float) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES), help="cases to run")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code, not the speed")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG", help="scaling plot (needs the scaling case)")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be a positive integer, got {args.threads}")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here; use --device cpu")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.environ.get("BENCH_STACKS_AFTER"):  # a run that stalls shows where, before it is killed
        faulthandler.dump_traceback_later(float(os.environ["BENCH_STACKS_AFTER"]), exit=False)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    size = sizes(args)
    runners = {"demo": case_demo, "peer": case_peer, "scaling": case_scaling,
               "resnet20": lambda a, s, t: case_image("resnet20", "resnet20", 10, a, s, t),
               "resnet50": lambda a, s, t: case_image("resnet50", s.get("arch", "timm:resnet50"), 100, a, s, t)}
    result = {"environment": environment(args.device), "smoke": args.smoke,
              "matmul_flops_per_s": matmul_flops_per_s(args.device), "cases": []}
    if torch.device(args.device).type == "cuda":
        result["matmul_flops_per_s_by_precision"] = {
            p: matmul_flops_per_s(args.device, precision=p) for p in ("fp32", "tf32", "bf16")}
    # a case's headline figures are written as soon as they exist, marked partial until it ends
    args.report = lambda case: write_json({**result, "cases": [*result["cases"], case]}, args.json)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name in args.cases:
            log(f"case {name}")
            result["cases"].append(runners[name](args, size[name], Path(tmp)))
            write_json(result, args.json)  # after every case: a run cut short keeps what it measured
    print(table(result))
    write_json(result, args.json)
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
