"""``landscape report``: one self-contained HTML page from a demo directory (report.html), with
a PNG of every figure beside it (figures/*.png)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = """examples:
  landscape report runs/demo          # writes runs/demo/report.html and runs/demo/figures/*.png
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the HTML report of a demo directory",
                       description=__doc__, epilog=EXAMPLES)
    p.add_argument("dir", help="a directory written by `landscape demo`")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    page, pngs = build_report(Path(args.dir))
    print(f"wrote {page} and {len(pngs)} figures in {page.parent / 'figures'}")
    return 0


def build_report(root: Path) -> tuple[Path, list[Path]]:
    """Collect the demo's results, check the paper's claims, render the page and the PNGs."""
    from ensembles.claims import paper_claims
    from landscape import read_paths, read_surface
    from landscape.atomic import write_text
    from landscape.errors import UserError
    from viz import save_figure
    from viz.report import ReportInput, render_report, static_figures

    if not (root / "ensembles.json").is_file():
        raise UserError(f"{root} has no ensembles.json; run `landscape demo --out {root}` first")
    doc = json.loads((root / "ensembles.json").read_text())
    ensembles = [{"name": r["name"], "method": r["method"], "table": r["table"]}
                 for r in doc["runs"]]
    paths = {}
    for d in sorted((root / "paths").glob("*/")) if (root / "paths").is_dir() else []:
        if (d / "paths.h5").exists() and (d / "report.json").exists():
            paths[d.name] = (read_paths(d / "paths.h5"),
                             json.loads((d / "report.json").read_text())["pairs"])
    planes = {d.name: read_surface(d / "plane.h5")
              for d in sorted((root / "planes").glob("*/")) if (d / "plane.h5").exists()} \
        if (root / "planes").is_dir() else {}
    claims = paper_claims({e["name"]: e["table"] for e in ensembles},
                          {name: pairs for name, (_, pairs) in paths.items()})
    data = ReportInput(ensembles, paths, planes, claims,
                       subtitle=f"{root.name}: MNIST-1D, OOD set {doc.get('ood')}")
    page = root / "report.html"
    write_text(page, render_report(data))
    pngs = [save_figure(fig, root / "figures" / f"{stem}.png")
            for stem, fig in static_figures(data).items()]
    return page, pngs
