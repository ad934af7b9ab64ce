"""``landscape sweep``: the paper's grid of SSE/StarSSE cycle settings.

Every cell trains a run with cycle LR = r x base LR and cycle epochs = r x base epochs into
OUT/<method>-lr<r>-ep<r>/ (finished cells are skipped; member 1 is trained once and shared), then
writes OUT/sweep.csv, sweep.json and sweep.png (a heatmap of the full ensemble's accuracy).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import add_data, add_device, finite_float, positive_int, seed_int
from cli.train import add_recipe

EXAMPLES = """examples:
  landscape sweep --method starsse --pretrained pre.safetensors --preset mnist1d --out runs/sweep
  landscape sweep --method sse --pretrained pre.safetensors --members 3 --epochs 10 --lr 0.02 \\
      --cycle-lr-ratios 0.5,4 --cycle-epoch-ratios 0.5,1 --soups --out runs/sse-sweep
"""


def _ratios(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.25,0.5,1, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="grid of SSE/StarSSE cycle settings, with a heatmap",
                       description=__doc__, epilog=EXAMPLES)
    p.add_argument("--method", required=True, help="sse or starsse")
    p.add_argument("--pretrained", required=True, help="pre-trained checkpoint")
    p.add_argument("--preset", default=None, help="settings from a preset (flags override it)")
    add_data(p, default=None, unset="the preset's, else mnist1d")
    p.add_argument("--members", type=positive_int, default=None)
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--lr", type=finite_float, default=None)
    p.add_argument("--wd", type=finite_float, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--seed", type=seed_int, default=0)
    add_recipe(p)
    p.add_argument("--arch", default=None, help="architecture of a plain .pt pre-trained file")
    p.add_argument("--num-classes", type=positive_int, default=None,
                   help="classes of a plain .pt pre-trained file's head")
    p.add_argument("--cycle-lr-ratios", type=_ratios, default=(0.25, 0.5, 1.0, 2.0, 4.0),
                   help="cycle LR / base LR (default 0.25,0.5,1,2,4)")
    p.add_argument("--cycle-epoch-ratios", type=_ratios, default=(0.5, 1.0, 2.0, 4.0),
                   help="cycle epochs / base epochs (default 0.5,1,2,4)")
    p.add_argument("--soups", action="store_true", help="also the uniform soup of every cell")
    p.add_argument("--out", required=True, help="sweep directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device(p)
    p.set_defaults(run=run, cycle_epochs=None, cycle_lr=None)


def run(args: argparse.Namespace) -> int:
    from cli.ensemble import write_csv
    from cli.train import settings
    from ensembles.config import RunConfig
    from ensembles.sweep import cell_name, sweep
    from landscape import resolve_device
    from landscape.atomic import write_json
    from viz import plot_sweep_heatmap, save_figure

    s = settings(args)
    s.update(cycle_epochs=1, cycle_lr=s["lr"])  # placeholders: every cell sets its own
    base = RunConfig(method=args.method, pretrained=(args.pretrained,), seed=args.seed,
                     pretrained_arch=args.arch, pretrained_num_classes=args.num_classes, **s)
    res = sweep(base, args.cycle_lr_ratios, args.cycle_epoch_ratios, args.out, soups=args.soups,
                data_root=args.data_root, device=resolve_device(args.device))
    out = Path(args.out)
    records = []
    for i, r_lr in enumerate(res.lr_ratios):
        for j, r_ep in enumerate(res.epoch_ratios):
            rec = {"cell": cell_name(res.method, r_lr, r_ep), "cycle_lr_ratio": r_lr,
                   "cycle_epoch_ratio": r_ep, "accuracy": float(res.accuracy[i, j])}
            if res.soup_accuracy is not None:
                rec["soup_accuracy"] = float(res.soup_accuracy[i, j])
            records.append(rec)
            print("  ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in rec.items()))
    write_csv(out / "sweep.csv", records)
    write_json(out / "sweep.json", {"method": res.method, "cells": records}, indent=2, strict=True)
    fig = plot_sweep_heatmap(res.accuracy, res.lr_ratios, res.epoch_ratios,
                             title=f"{res.method}: ensemble accuracy (%), K={base.members}")
    save_figure(fig, out / "sweep.png")
    print(f"wrote {out}/sweep.csv, sweep.json, sweep.png")
    return 0
