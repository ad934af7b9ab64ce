"""``landscape simplex``: loss and accuracy over the triangle of convex combinations
a A + b B + c C of three checkpoints (a barycentric grid of --grid points per edge), on the
batched engine with the BN policies, resumable like a plane; drawn as a triangle with the models
at its corners; the lowest and highest values inside and where they are. Writes DIR/simplex.h5,
DIR/simplex.png and DIR/simplex.html."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import fetch_data, load_kwargs, positive_int, process_group, write_atomically
from cli.grid_flags import add_grid_flags, grid_settings

EXAMPLES = """examples:
  landscape simplex m1.safetensors m2.safetensors m3.safetensors --out runs/simplex
  landscape simplex m1.safetensors m2.safetensors m3.safetensors --grid 21 --bn interpolate
  torchrun --standalone --nproc-per-node 2 -m cli simplex m1.safetensors m2.safetensors m3.safetensors --out runs/s
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simplex", help="the triangle of convex combinations of three checkpoints",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs=3, help="A B C")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--grid", type=positive_int, default=11, help="points per edge (default 11)")
    add_grid_flags(p, seed_help="seeds the subsets", output="simplex.h5")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    fetch_data(args, args.data)
    from landscape import PlaneConfig, load_checkpoint
    from landscape.surfaces.simplex import simplex, simplex_extremes

    config = PlaneConfig(grid=args.grid, **grid_settings(args))
    ckpts = [load_checkpoint(c, **load_kwargs(args)) for c in args.checkpoints]
    out = Path(args.out)
    with process_group(args.device) as (group, device):
        surface = simplex(ckpts, out=out / "simplex.h5", config=config, data=args.data, data_root=args.data_root,
                          device=device, overwrite=args.overwrite, group=group)
    if not group.is_main:
        return 0
    written = [out / "simplex.h5"]
    if not args.no_plots:
        from viz import save_figure, write_html
        from viz.simplex import plot_simplex, simplex_figure

        written += [write_atomically(save_figure, plot_simplex(surface), out / "simplex.png"),
                    write_atomically(write_html, simplex_figure(surface), out / "simplex.html")]
    for split in surface.splits:
        for metric in ("loss", "acc") if surface.has_acc else ("loss",):
            ex = simplex_extremes(surface, split, metric)
            print(f"{split} {metric}: " + "; ".join(
                f"{k} {e.value:.4g} at a={e.a:.2f} b={e.b:.2f} c={e.c:.2f}" for k, e in ex.items()))
    print("wrote " + ", ".join(map(str, written)))
    return 0
