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
    expand_runs,
    fetch_data,
    finite_float,
    load_kwargs,
    positive_int,
    process_group,
    require,
    warn,
    write_atomically,
)
from cli.grid_flags import add_grid_flags, grid_settings

EXAMPLES = """examples:
  landscape plane m1.safetensors m2.safetensors m3.safetensors
  landscape plane m1.safetensors m2.safetensors m3.safetensors --grid 31 --out runs/plane
  landscape plane m1.safetensors m2.safetensors m3.safetensors m4.safetensors   # m4 projected
  landscape plane m1.safetensors --seed 0 --range 1.0          # random filter-normalised plane
  landscape plane --pca runs/sse                               # the members' PCA (trajectory) plane
  landscape plane a.safetensors runs/curve/bend-1.safetensors b.safetensors --curve runs/curve/curve.safetensors
  torchrun --standalone --nproc-per-node 4 -m cli plane m1.safetensors m2.safetensors m3.safetensors
  landscape plane a.pt b.pt c.pt --arch timm:resnet18 --num-classes 10 --data cifar10 --data-root ~/data
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plane", help="evaluate a 2-D plane through 3 checkpoints (or around 1)",
                       description=__doc__, epilog=EXAMPLES)
    p.add_argument("checkpoints", nargs="+", help="A [B C [more to project]]")
    p.add_argument("--out", default=None,
                   help="output directory (default: plane-<names> in the current directory)")
    p.add_argument("--grid", type=positive_int, default=21, help="points per axis (default 21)")
    p.add_argument("--margin", type=finite_float, default=0.2,
                   help="margin on every side as a fraction of the span (default 0.2)")
    p.add_argument("--range", type=finite_float, default=1.0,
                   help="random plane: coordinates in [-range, range] (default 1.0)")
    p.add_argument("--include-1d", action="store_true",
                   help="random plane: perturb biases and norm parameters too")
    p.add_argument("--pca", action="store_true",
                   help="the plane through the checkpoints' mean along their top two principal directions "
                        "(three or more checkpoints, or a run directory: its members)")
    p.add_argument("--curve", default=None,
                   help="a curve file (landscape curve) to draw onto the plane, e.g. through A, its bend and B")
    add_grid_flags(p, seed_help="seeds the random plane's directions and the subsets", output="plane.h5")
    p.set_defaults(run=run)


def default_out(checkpoints: list[str], seed: int, pca: bool = False) -> Path:
    """plane-<names of the first three checkpoints>[-random-s<seed>|-pca], the names as the
    plane's points have them (``display_names``) with ``/`` as ``-`` (run1/model: run1-model)."""
    from landscape.grid.identity import display_names

    names = [n.replace("/", "-") for n in display_names(checkpoints)[:3]]
    suffix = "-pca" if pca else f"-random-s{seed}" if len(checkpoints) == 1 else ""
    return Path("plane-" + "-".join(names) + suffix)


def run(args: argparse.Namespace) -> int:
    fetch_data(args, args.data)
    from landscape import PlaneConfig, load_checkpoint, plane

    config = PlaneConfig(grid=args.grid, margin=args.margin, range=args.range, ignore_1d=not args.include_1d,
                         **grid_settings(args))
    files = expand_runs(args.checkpoints)[0] if args.pca else list(args.checkpoints)
    out = Path(args.out) if args.out else default_out(files, args.seed, pca=args.pca)
    ckpts = [load_checkpoint(c, **load_kwargs(args)) for c in files]
    curves = _curve(args.curve, ckpts, args.pca) if args.curve else {}  # a bad curve file fails before the evaluation
    start = time.perf_counter()
    with process_group(args.device) as (group, device):
        surface = plane(ckpts, out=out / "plane.h5", config=config, data=args.data,
                        data_root=args.data_root, device=device, overwrite=args.overwrite,
                        group=group, pca=args.pca)
    if not group.is_main:
        return 0
    elapsed = time.perf_counter() - start
    written = [out / "plane.h5"]
    if not args.no_plots:
        written += _plots(surface, out, curves)
    print(_summary(surface, elapsed))
    _warn_if_near_chance(surface, ckpts[0].meta.num_classes)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _plots(surface, out: Path, curves) -> list[Path]:
    from viz import plane_figure, plot_plane, save_figure, write_html

    png = write_atomically(save_figure, plot_plane(surface, curves=curves), out / "plane.png")
    html = write_atomically(write_html, plane_figure(surface, curves=curves), out / "plane.html")
    return [png, html]


def _curve(path: str, ckpts, pca: bool) -> dict:
    """The curve file's points in the plane's coordinates, by its name; its endpoints are those
    it records, or the plane's checkpoints of the same sha256."""
    from landscape.grid.identity import CheckpointRef
    from landscape.surfaces.curve_files import load_curve, read_curve_doc
    from landscape.surfaces.curves import project_curve

    require(len(ckpts) >= 3, "--curve draws onto a plane through three checkpoints (A B C)")
    require(not pca, "--curve draws onto the plane through three checkpoints, not a --pca plane; drop one of them")
    doc = read_curve_doc(path)
    by_sha = {CheckpointRef.of(c).sha256: c for c in ckpts}
    given = [by_sha.get(e["sha256"]) for e in doc["endpoints"]]
    curve = load_curve(path, endpoints=given if all(given) else None)
    xy, residual = project_curve(curve, ckpts)
    if residual > 1e-3 * max(1.0, float(abs(xy).max())):
        warn([f"the curve leaves the plane by up to {residual:.3g} (its projection is drawn)"])
    return {f"{doc['kind']} curve": xy}


def _summary(surface, elapsed: float) -> str:
    import numpy as np

    parts = [f"{surface.x.size}x{surface.y.size} plane ({surface.config['identity']['mode']}, "
             f"BN {surface.config['identity']['bn']}) in {elapsed:.1f}s"]
    if surface.diverged.any():
        parts.append(f"{int(surface.diverged.sum())} points diverged (non-finite loss; stored "
                     "as such, colours clipped)")
    for split in surface.splits:
        loss = surface.loss(split)
        loss = loss[np.isfinite(loss)]  # all diverged: nan, quietly
        lo, hi = (loss.min(), loss.max()) if loss.size else (np.nan, np.nan)
        text = f"{split}: loss {lo:.4g}..{hi:.4g}"
        if surface.has_acc:
            acc = surface.acc(split)
            acc = acc[np.isfinite(acc)]
            text += ", " + (f"acc {acc.min():.1f}..{acc.max():.1f}%" if acc.size else "acc nan")
        parts.append(text)
    return "; ".join(parts)


def _warn_if_near_chance(surface, num_classes: int) -> None:
    """The best accuracy anywhere on the plane near chance: the inputs probably do not match."""
    import numpy as np

    from landscape.surfaces.basins import chance_warnings

    for split in surface.splits if surface.has_acc else ():
        acc = surface.acc(split)
        if np.isfinite(acc).any():
            warn(chance_warnings({"the best point": float(np.nanmax(acc))}, num_classes, split))
