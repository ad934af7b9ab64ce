"""``landscape interp``: loss and accuracy along straight lines between checkpoints, barriers,
and the same-basin / different-basin label.

For each pair (A, B): (1-a)A + aB on a grid of a over [0, 1] (optionally extended), train and
test loss and accuracy, the loss and accuracy barriers with the a where each peaks, the label
(same basin when the test accuracy barrier is below --threshold percentage points), the L2
distance between A and B, and each model's distance from its pre-trained checkpoint over the
backbone. Writes DIR/paths.h5 (resumable), report.md, report.csv, report.json, paths.png and,
with --pairs all, barriers.png.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import asdict
from pathlib import Path

from cli.common import (
    fetch_data,
    finite_float,
    load_kwargs,
    positive_int,
    process_group,
    run_members,
    warn,
    write_atomically,
)
from cli.grid_flags import add_grid_flags, grid_settings

EXAMPLES = """examples:
  landscape interp runs/sse                         # chain and star pairs of a run's members
  landscape interp m1.safetensors m2.safetensors m3.safetensors --pairs all --out runs/interp
  landscape interp a.safetensors b.safetensors --points 41 --extend 0.2 --bn interpolate
  torchrun --standalone --nproc-per-node 2 -m cli interp runs/sse
  landscape interp m1.safetensors m2.safetensors --pretrained pre.safetensors --threshold 1.0
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from landscape.surfaces.barriers import DEFAULT_THRESHOLD_PP

    p = sub.add_parser("interp", help="linear paths, barriers and basin labels",
                       description=__doc__, epilog=EXAMPLES)
    p.add_argument("checkpoints", nargs="+", help="two or more checkpoints, or one run directory")
    p.add_argument("--out", default=None, help="output directory (default: interp-<names>)")
    p.add_argument("--points", type=positive_int, default=21, help="points on [0, 1] (21)")
    p.add_argument("--extend", type=finite_float, default=0.0,
                   help="extend the path beyond both ends by this fraction (0)")
    p.add_argument("--pairs", default=None,
                   help="chain, star, all, or a comma list (default chain; chain,star for a run)")
    p.add_argument("--threshold", type=finite_float, default=DEFAULT_THRESHOLD_PP,
                   help="same basin when the test accuracy barrier is below this many "
                        f"percentage points (default {DEFAULT_THRESHOLD_PP})")
    p.add_argument("--pretrained", nargs="*", default=[],
                   help="pre-trained checkpoint(s) for distances (default: from the lineage)")
    add_grid_flags(p, seed_help="seeds the subsets", output="paths.h5")
    p.set_defaults(run=run)


def _inputs(args: argparse.Namespace) -> tuple[list[str], list[str], str]:
    """Checkpoint paths, pre-trained paths and the pair modes (a run directory expands)."""
    first = Path(args.checkpoints[0])
    if len(args.checkpoints) == 1 and first.is_dir():
        files, known = run_members(first)
        return files, list(args.pretrained) or known, args.pairs or "chain,star"
    return list(args.checkpoints), list(args.pretrained), args.pairs or "chain"


def run(args: argparse.Namespace) -> int:
    from landscape import load_checkpoint
    from landscape.surfaces.basins import chance_warnings, endpoint_accuracies, path_report
    from landscape.surfaces.paths import PathConfig, interpolate

    fetch_data(args, args.data)
    files, pre_files, pairs = _inputs(args)
    config = PathConfig(points=args.points, extend=args.extend, **grid_settings(args))
    ckpts = [load_checkpoint(f, **load_kwargs(args)) for f in files]
    pretrained = [load_checkpoint(f, **{**load_kwargs(args), "num_classes": None, "arch": None})
                  if f.endswith(".safetensors") else load_checkpoint(f, **load_kwargs(args))
                  for f in pre_files]
    out = Path(args.out) if args.out else default_out(files)
    with process_group(args.device) as (group, device):
        paths = interpolate(ckpts, out=out / "paths.h5", pairs=pairs, config=config,
                            data=args.data, data_root=args.data_root, device=device,
                            overwrite=args.overwrite, group=group)
    if not group.is_main:
        return 0
    report = path_report(paths, ckpts, threshold=args.threshold, pretrained=pretrained)
    warn(chance_warnings(endpoint_accuracies(paths), ckpts[0].meta.num_classes))
    written = _write_reports(out, report, paths, _block_distances(paths, ckpts, pretrained))
    if not args.no_plots:
        written += _plots(out, paths, report, "all" in pairs)
    print(_markdown(report))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def default_out(files: list[str]) -> Path:
    """interp-<names of the first three checkpoints>, the names as the paths file has them
    (``display_names``) with ``/`` as ``-``."""
    from landscape.grid.identity import display_names

    return Path("interp-" + "-".join(n.replace("/", "-") for n in display_names(files)[:3]))


FIELDS = ("a", "b", "acc_barrier_test", "acc_barrier_test_alpha", "acc_barrier_train",
          "loss_barrier_test", "loss_barrier_train", "label", "distance", "a_from_pretrained",
          "b_from_pretrained")


def _markdown(report) -> str:
    head = "| " + " | ".join(FIELDS) + " |\n|" + "---|" * len(FIELDS)
    rows = ["| " + " | ".join(_fmt(getattr(r, f)) for f in FIELDS) + " |" for r in report]
    return "\n".join([head, *rows])


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _block_distances(paths, ckpts, pretrained) -> dict:
    """Per pair, the per-block distances between its ends and each end's from its pre-trained
    checkpoint (``landscape.surfaces.distances``), for report.json."""
    from landscape.surfaces.distances import layer_distances

    d = layer_distances(ckpts, pretrained)  # one lineage search over every checkpoint
    out = {}
    for p, (i, j) in enumerate(paths.pairs):
        a, b = d.members[i], d.members[j]
        out[paths.pair_name(p)] = {"between": [asdict(x) for x in d.pairs if {x.a, x.b} == {a, b}],
                                   "from_pretrained": [asdict(x) for x in d.from_pretrained if x.a in (a, b)]}
    return out


def _write_reports(out: Path, report, paths, blocks: dict) -> list[Path]:
    """report.md, report.csv and report.json beside paths.h5, each written atomically."""
    import io

    from landscape.atomic import write_json, write_text

    records = [asdict(r) for r in report]
    write_text(out / "report.md", f"# Linear paths ({paths.config['identity']['dataset']}, BN "
               f"{paths.config['identity']['bn']}, threshold {report[0].threshold} pp)\n\n" + _markdown(report) + "\n")
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)
    write_text(out / "report.csv", table.getvalue())
    doc = {"pairs": records, "alpha": paths.alpha.tolist(), "names": paths.names, "block_distances": blocks,
           "curves": {paths.pair_name(p): {s: {m: paths.curve(p, s, m).tolist()
                                               for m in paths.metrics[s]} for s in paths.splits}
                      for p in range(len(paths.pairs))}}
    write_json(out / "report.json", doc, indent=2, strict=True)
    return [out / "paths.h5", out / "report.md", out / "report.csv", out / "report.json"]


def _plots(out: Path, paths, report, matrix: bool) -> list[Path]:
    import numpy as np

    from viz import plot_barrier_matrix, plot_paths, save_figure

    written = [write_atomically(save_figure, plot_paths(paths), out / "paths.png")]
    if matrix:
        n = len(paths.names)
        m = np.full((n, n), np.nan)
        index = {name: k for k, name in enumerate(paths.names)}
        for r in report:
            m[index[r.a], index[r.b]] = m[index[r.b], index[r.a]] = r.acc_barrier_test
        written.append(write_atomically(save_figure, plot_barrier_matrix(paths.names, m), out / "barriers.png"))
    return written
