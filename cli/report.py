"""``landscape report``: one self-contained HTML page from a demo directory (report.html), with
a PNG of every figure beside it (figures/*.png)."""

from __future__ import annotations

import argparse
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
    """Collect the demo's results, measure the paper's claims, render the page and the PNGs."""
    from ensembles.demo import read_demo
    from ensembles.demo.summary import summarize
    from landscape.atomic import write_text
    from viz import save_figure
    from viz.report import ReportInput, render_report, static_figures

    r = read_demo(root)  # every file checked: a damaged one is one line naming it
    first = {names[0] for names in r.roles.values()}  # the figures of paths: source 0's runs
    data = ReportInput(summarize(r), r.ensembles, {run: v for run, v in r.paths.items() if run in first}, r.planes,
                       subtitle=f"{root.name}: {r.config.data}, {r.config.sources} sources, OOD set {r.ood}",
                       validation=r.config.validation, curve=r.curve, simplex=r.geometry.get("simplex"))
    page = root / "report.html"
    write_text(page, render_report(data))
    pngs = [save_figure(fig, root / "figures" / f"{stem}.png")
            for stem, fig in static_figures(data).items()]
    return page, pngs
