"""``landscape distances``: which layers moved. Per block of the backbone (each top-level module,
e.g. a ResNet's conv1, layer1..layer4; the classifier as head) and in total, the L2 distance and
the cosine similarity of the weights between every two members and from each member's pre-trained
checkpoint (found through the parent hashes; a run directory supplies its own). Writes
DIR/distances.csv, DIR/distances.json and DIR/distances.png (heatmaps)."""

from __future__ import annotations

import argparse
import csv
import io
from dataclasses import asdict
from pathlib import Path

from cli.common import add_arch_for_pt, load_kwargs, positive_int, run_members, write_atomically

EXAMPLES = """examples:
  landscape distances runs/demo/runs/source-0/sse-lr0.7 --out runs/dist
  landscape distances m1.safetensors m2.safetensors m3.safetensors --pretrained pre.safetensors --out runs/dist
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distances", help="per-block distances between members and from pre-training",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="checkpoints, or one run directory (its members)")
    p.add_argument("--pretrained", nargs="*", default=[], help="pre-trained checkpoint(s) (default: a run's own)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--depth", type=positive_int, default=None,
                   help="blocks are the modules this many levels down (default: the shallowest with 3 or more)")
    p.add_argument("--no-plots", action="store_true", help="the CSV and JSON only")
    add_arch_for_pt(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from landscape import load_checkpoint
    from landscape.atomic import write_json, write_text
    from landscape.surfaces.distances import layer_distances

    files, pre_files = _inputs(args)
    members = [load_checkpoint(f, **load_kwargs(args)) for f in files]
    pretrained = [load_checkpoint(f) for f in pre_files]
    report = layer_distances(members, pretrained, depth=args.depth)
    out = Path(args.out)
    rows = [{"kind": "pair", **asdict(d)} for d in report.pairs] + \
           [{"kind": "from_pretrained", **asdict(d)} for d in report.from_pretrained]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=["kind", "block", "a", "b", "l2", "cosine", "parameters"])
    writer.writeheader()
    writer.writerows(rows)
    written = [write_text(out / "distances.csv", table.getvalue()),
               write_json(out / "distances.json", asdict(report), indent=2, strict=True)]
    if not args.no_plots and rows:
        from viz import save_figure
        from viz.basin import plot_block_distances

        written.append(write_atomically(save_figure, plot_block_distances(_panels(report)), out / "distances.png"))
    print(_summary(report))
    print("wrote " + ", ".join(map(str, written)))
    return 0


def _inputs(args) -> tuple[list[str], list[str]]:
    first = Path(args.checkpoints[0])
    if len(args.checkpoints) == 1 and first.is_dir():
        files, known = run_members(first)
        return files, list(args.pretrained) or known
    return list(args.checkpoints), list(args.pretrained)


def _panels(report):
    import numpy as np

    def matrix(items, key):
        labels = list(dict.fromkeys(key(d) for d in items))
        m = np.full((len(labels), len(report.blocks)), np.nan)
        for d in items:
            m[labels.index(key(d)), report.blocks.index(d.block)] = d.l2
        return labels, report.blocks, m

    panels = {}
    if report.from_pretrained:
        panels["L2 distance from the pre-trained checkpoint"] = matrix(report.from_pretrained, lambda d: d.a)
    if report.pairs:
        panels["L2 distance between members"] = matrix(report.pairs, lambda d: f"{d.a} / {d.b}")
    return panels


def _summary(report) -> str:
    lines = ["| block | " + " | ".join(report.blocks) + " |", "|---|" + "---|" * len(report.blocks)]
    for title, items, key in (("from pre-trained", report.from_pretrained, lambda d: d.a),
                              ("pair", report.pairs, lambda d: f"{d.a} / {d.b}")):
        by = {}
        for d in items:
            by.setdefault(key(d), {})[d.block] = d.l2
        for label, vals in by.items():
            lines.append(f"| {title}: {label} | " + " | ".join(f"{vals.get(b, float('nan')):.4g}" for b in report.blocks) + " |")
    return "\n".join(lines)
