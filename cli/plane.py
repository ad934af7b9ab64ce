"""``landscape plane``: loss and accuracy over a 2-D plane of weight space.

With three checkpoints A B C: the plane through them (origin A, u toward B, v from C by
Gram-Schmidt), in weight-space units, with margins; further checkpoints are projected onto it.
With one checkpoint: a filter-normalised random plane around it (Li et al. 2018).
Writes DIR/plane.h5 (resumable: rerun the same command to finish it), plane.png and plane.html.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cli.common import (
    add_arch_for_pt,
    add_data,
    add_device,
    add_precision,
    csv_names,
    fetch_data,
    finite_float,
    load_kwargs,
    positive_int,
    process_group,
)

EXAMPLES = """examples:
  landscape plane m1.safetensors m2.safetensors m3.safetensors
  landscape plane m1.safetensors m2.safetensors m3.safetensors --grid 31 --out runs/plane
  landscape plane m1.safetensors m2.safetensors m3.safetensors m4.safetensors   # m4 projected
  landscape plane m1.safetensors --seed 0 --range 1.0          # random filter-normalised plane
  torchrun --standalone --nproc-per-node 4 -m cli plane m1.safetensors m2.safetensors m3.safetensors
  landscape plane a.pt b.pt c.pt --arch timm:resnet18 --num-classes 10 --data cifar10 --data-root ~/data
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plane", help="evaluate a 2-D plane through 3 checkpoints (or around 1)",
                       description=__doc__, epilog=EXAMPLES)
    p.add_argument("checkpoints", nargs="+", help="A [B C [more to project]]")
    add_data(p)
    p.add_argument("--out", default=None,
                   help="output directory (default: plane-<names> in the current directory)")
    p.add_argument("--grid", type=positive_int, default=21, help="points per axis (default 21)")
    p.add_argument("--margin", type=finite_float, default=0.2,
                   help="margin on every side as a fraction of the span (default 0.2)")
    p.add_argument("--range", type=finite_float, default=1.0,
                   help="random plane: coordinates in [-range, range] (default 1.0)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the random plane's directions and the subsets (default 0)")
    p.add_argument("--bn", default=None,
                   help="BN policy: recompute (default for BN models), interpolate or keep")
    p.add_argument("--bn-batch-size", type=positive_int, default=128,
                   help="fixed batch size of BN statistics (default 128)")
    p.add_argument("--splits", type=csv_names, default=("train", "test"),
                   help="splits to evaluate (default train,test)")
    p.add_argument("--train-subset", type=positive_int, default=None,
                   help="use a seeded random subset of N train samples (also for BN statistics)")
    p.add_argument("--test-subset", type=positive_int, default=None,
                   help="use a seeded random subset of N test samples")
    p.add_argument("--batch-size", type=positive_int, default=512,
                   help="evaluation batch size (speed only; default 512)")
    p.add_argument("--engine", default="auto", choices=("auto", "loop", "vmap"),
                   help="evaluation path; auto measures both (default)")
    p.add_argument("--group-size", type=positive_int, default=None,
                   help="points evaluated together (default 8)")
    add_precision(p)
    p.add_argument("--include-1d", action="store_true",
                   help="random plane: perturb biases and norm parameters too")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing plane.h5 computed with another configuration")
    p.add_argument("--no-plots", action="store_true", help="write plane.h5 only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(p)
    add_arch_for_pt(p)
    p.set_defaults(run=run)


def default_out(checkpoints: list[str], seed: int) -> Path:
    names = [Path(c).stem for c in checkpoints[:3]]
    suffix = f"-random-s{seed}" if len(checkpoints) == 1 else ""
    return Path("plane-" + "-".join(names) + suffix)


def run(args: argparse.Namespace) -> int:
    fetch_data(args, args.data)
    from landscape import PlaneConfig, load_checkpoint, plane

    config = PlaneConfig(
        grid=args.grid, margin=args.margin, range=args.range, bn=args.bn,
        bn_batch_size=args.bn_batch_size, splits=args.splits, train_subset=args.train_subset,
        test_subset=args.test_subset, seed=args.seed, ignore_1d=not args.include_1d,
        batch_size=args.batch_size, engine=args.engine, group_size=args.group_size,
        precision=args.precision, channels_last=args.channels_last, workers=args.workers,
        data_on=args.data_on,
    )
    out = Path(args.out) if args.out else default_out(args.checkpoints, args.seed)
    ckpts = [load_checkpoint(c, **load_kwargs(args)) for c in args.checkpoints]
    start = time.perf_counter()
    with process_group(args.device) as (group, device):
        surface = plane(ckpts, out=out / "plane.h5", config=config, data=args.data,
                        data_root=args.data_root, device=device, overwrite=args.overwrite,
                        group=group)
    if not group.is_main:
        return 0
    elapsed = time.perf_counter() - start
    written = [out / "plane.h5"]
    if not args.no_plots:
        written += _plots(surface, out)
    print(_summary(surface, elapsed))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _plots(surface, out: Path) -> list[Path]:
    from viz import plane_figure, plot_plane, save_figure, write_html

    png = save_figure(plot_plane(surface), out / "plane.png")
    html = write_html(plane_figure(surface), out / "plane.html")
    return [png, html]


def _summary(surface, elapsed: float) -> str:
    import numpy as np

    parts = [f"{surface.x.size}x{surface.y.size} plane ({surface.config['identity']['mode']}, "
             f"BN {surface.config['identity']['bn']}) in {elapsed:.1f}s"]
    if surface.diverged.any():
        parts.append(f"{int(surface.diverged.sum())} points diverged (non-finite loss; stored "
                     "as such, colours clipped)")
    for split in surface.splits:
        loss, acc = surface.loss(split), surface.acc(split)
        parts.append(f"{split}: loss {np.nanmin(loss):.4g}..{np.nanmax(loss):.4g}, "
                     f"acc {np.nanmin(acc):.1f}..{np.nanmax(acc):.1f}%")
    return "; ".join(parts)
