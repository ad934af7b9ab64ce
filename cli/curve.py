"""``landscape curve``: fit a curve of low loss between two checkpoints (Bezier or polygonal
chain, Garipov et al. 2018), evaluate it and the straight line on the batched engine, and say
whether a curve connects what the line does not.

The bends start on the straight segment and are trained with the endpoints fixed: t ~ U(0, 1)
for every batch, the training loss at the curve's point at t, BatchNorm in train mode, SGD with
momentum and weight decay on the bends, the per-epoch cosine. The fit resumes after an
interruption (its state is written after every epoch). Writes DIR/curve.safetensors (the bends,
the kind, the endpoints by path and sha256), DIR/curve.h5 and DIR/line.h5 (resumable paths
files over t), DIR/report.json and DIR/curve.png.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from cli.common import fetch_data, finite_float, load_kwargs, positive_int, process_group
from cli.grid_flags import add_grid_flags, grid_settings, image_transform

EXAMPLES = """examples:
  landscape curve runs/sse/member-2.safetensors runs/sse/member-3.safetensors --out runs/curve
  landscape curve a.safetensors b.safetensors --kind polychain --bends 3 --epochs 20 --lr 0.05
  landscape curve a.pt b.pt --arch nets/tiny.py:TinyCNN --num-classes 10 --data nets/data.py:splits --out runs/c
  landscape plane a.safetensors runs/curve/bend-1.safetensors b.safetensors --curve runs/curve/curve.safetensors
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from landscape.surfaces.barriers import DEFAULT_THRESHOLD_PP
    from landscape.surfaces.curve_shape import KINDS, MAX_BENDS

    p = sub.add_parser("curve", help="fit a low-loss curve between two checkpoints, against the line",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="first endpoint")
    p.add_argument("b", help="second endpoint")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--kind", choices=KINDS, default="bezier", help="curve kind (default bezier)")
    p.add_argument("--bends", type=positive_int, default=1, help=f"number of bends, 1..{MAX_BENDS} (default 1)")
    p.add_argument("--epochs", type=positive_int, default=10, help="training epochs of the bends (default 10)")
    p.add_argument("--lr", type=finite_float, default=0.05, help="peak learning rate, cosine (default 0.05)")
    p.add_argument("--wd", type=finite_float, default=5e-4, help="weight decay on the bends (default 5e-4)")
    p.add_argument("--momentum", type=finite_float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd", help="optimizer (default sgd)")
    p.add_argument("--train-batch-size", type=positive_int, default=128, help="training batch size (default 128)")
    p.add_argument("--points", type=positive_int, default=21, help="points of t on [0, 1] evaluated (default 21)")
    p.add_argument("--threshold", type=finite_float, default=DEFAULT_THRESHOLD_PP,
                   help=f"connected below this test accuracy barrier in pp (default {DEFAULT_THRESHOLD_PP})")
    add_grid_flags(p, seed_help="seeds the training (data order, t) and the subsets", output="curve.h5/line.h5")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    fetch_data(args, args.data)
    from ensembles import TrainConfig
    from ensembles.curves import fit_curve
    from landscape import load_checkpoint
    from landscape.surfaces.curve_shape import check_shape
    from landscape.surfaces.curves import curve_report, evaluate_curve
    from landscape.surfaces.paths import PathConfig, interpolate

    check_shape(args.kind, args.bends)
    config = PathConfig(points=args.points, **grid_settings(args))  # checked before any training
    from cli.common import require

    require("test" in config.splits, "landscape curve labels connectivity by the test split; keep test in --splits")
    train = TrainConfig(epochs=args.epochs, lr=args.lr, wd=args.wd, momentum=args.momentum,
                        batch_size=args.train_batch_size, seed=args.seed, optimizer=args.optimizer)
    a, b = (load_checkpoint(f, **load_kwargs(args)) for f in (args.a, args.b))
    out = Path(args.out)
    with process_group(args.device) as (group, device):
        if group.is_main:  # training is one process; the evaluation is shared
            fit_curve(a, b, out, config=train, kind=args.kind, bends=args.bends, data=args.data,
                      data_root=args.data_root, loss=args.loss, device=device, image=image_transform(args),
                      overwrite=args.overwrite)
        group.barrier()
        from ensembles.curves import CURVE_FILE
        from landscape.surfaces.curve_files import load_curve

        curve = load_curve(out / CURVE_FILE, endpoints=(a, b))
        common = dict(config=config, data=args.data, data_root=args.data_root, device=device,
                      overwrite=args.overwrite, group=group)
        bent = evaluate_curve(curve, out=out / "curve.h5", **common)
        line = interpolate([a, b], out=out / "line.h5", **common)
    if not group.is_main:
        return 0
    report = curve_report(bent, line, kind=args.kind, bends=args.bends, threshold=args.threshold)
    written = _write(out, report, bent, line, args.no_plots)
    print(_summary(report))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _write(out: Path, report, bent, line, no_plots: bool) -> list[Path]:
    from landscape.atomic import write_json

    doc = {"report": asdict(report), "t": bent.alpha.tolist(),
           "curve": {s: {m: bent.curve(0, s, m).tolist() for m in bent.metrics[s]} for s in bent.splits},
           "line": {s: {m: line.curve(0, s, m).tolist() for m in line.metrics[s]} for s in line.splits}}
    written = [out / "curve.safetensors", out / "curve.h5", out / "line.h5",
               write_json(out / "report.json", doc, indent=2, strict=True)]
    if not no_plots:
        from cli.common import write_atomically
        from viz import plot_line_and_curve, save_figure

        fig = plot_line_and_curve(line, bent, title=f"{report.a} -> {report.b}: {report.kind}, {report.bends} bend(s)")
        written.append(write_atomically(save_figure, fig, out / "curve.png"))
    return written


def _summary(report) -> str:
    rows = [f"| {k} | {report.line.get(k, float('nan')):.4g} | {report.curve.get(k, float('nan')):.4g} |"
            for k in sorted(set(report.line) | set(report.curve))]
    return "\n".join([f"{report.a} -> {report.b} ({report.kind}, {report.bends} bend(s)): {report.label}",
                      "| barrier | line | curve |", "|---|---|---|", *rows])
