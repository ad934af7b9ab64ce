"""``landscape ensemble``: judge ensemble runs by ensemble size.

For every size 1..K: accuracy, NLL, ECE (15 bins), Brier, mean member accuracy, diversity
(100 * mean over pairs of disagreement / max(err1, err2)) and the uniform soup's accuracy (BN
recomputed on the train split), the accuracies and the NLL with 95% intervals from a bootstrap
over test samples (columns <metric>_low, <metric>_high); with --ood, the same on a corrupted
test set. With several runs, the paired difference of every two runs' accuracy at their largest
common size, with its interval and verdict. Prints the table and writes DIR/ensemble.csv,
ensemble.json (with "comparisons") and ensemble.png (quality against size, all runs).
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

from cli.common import add_device, warn

EXAMPLES = """examples:
  landscape ensemble runs/local-de runs/sse runs/starsse --out runs/compare
  landscape ensemble runs/starsse --ood mnist1d-c
  landscape ensemble runs/r50-starsse --ood cifar100c:~/data/CIFAR-100-C --data-root ~/data
  landscape ensemble runs/mine --data nets/data.py:splits --arch nets/tiny.py:TinyCNN
"""

COLUMNS = ("size", "accuracy", "nll", "ece", "brier", "member_accuracy", "diversity",
           "soup_accuracy", "ood_accuracy", "ood_soup_accuracy")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ensemble", help="ensemble metrics, diversity, soups and OOD by size",
                       description=__doc__, epilog=EXAMPLES)
    p.add_argument("runs", nargs="+", help="run directories written by `landscape train`")
    p.add_argument("--out", default="ensemble-report", help="output directory (default: ensemble-report)")
    p.add_argument("--ood", default=None, help="mnist1d-c, mnist1d-transfer-c or cifar100c:PATH")
    p.add_argument("--no-soups", action="store_true", help="skip the uniform soups")
    p.add_argument("--data", default=None,
                   help="the runs' data when it is your own (path/to/file.py:factory, as given to train); "
                        "default: the dataset the runs record")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--arch", default=None,
                   help="an import-path architecture (path/to/file.py:factory) the members record, allowed "
                        "to be imported to load them (for soups and --ood)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ensembles.evaluate import compare, evaluate
    from landscape import resolve_device
    from landscape.atomic import write_json
    from viz import plot_size_curves, save_figure

    device = resolve_device(args.device)
    reports = [evaluate(r, soups=not args.no_soups, ood=args.ood, data=args.data, data_root=args.data_root,
                        device=device, arch=args.arch) for r in args.runs]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = [rec for rep in reports for rec in rep.table()]
    for rep in reports:
        print(_format(rep.name, rep.method, rep.table()))
    for run, rep in zip(args.runs, reports):
        _warn_if_near_chance(run, rep)
    comparisons = compare(reports) if len(reports) > 1 else []
    for c in comparisons:
        print(f"{c['a']} minus {c['b']} at size {c['size']}: accuracy {c['accuracy']['text']} "
              f"({c['accuracy']['verdict']} that {c['a']} is better)")
    write_csv(out / "ensemble.csv", records)
    write_json(out / "ensemble.json", {"runs": [rep.to_dict() for rep in reports], "ood": args.ood,
                                       "comparisons": comparisons}, indent=2, strict=True)
    drawn = ("accuracy", "soup_accuracy", "ood_accuracy", "ood_soup_accuracy")
    series = {rep.name: {k: [r[k] for r in rep.table() if k in r]
                         for m in drawn for k in (m, f"{m}_low", f"{m}_high")}
              for rep in reports}
    save_figure(plot_size_curves(series, ("accuracy", "soup_accuracy", "ood_accuracy",
                                          "ood_soup_accuracy")), out / "ensemble.png")
    print(f"wrote {out}/ensemble.csv, ensemble.json, ensemble.png")
    return 0


def _format(name: str, method: str, table: list[dict]) -> str:
    cols = [c for c in COLUMNS if c in table[0]]
    widths = [max(8, len(c)) for c in cols]
    lines = [f"{name} ({method})", "  ".join(f"{c:>{w}}" for c, w in zip(cols, widths))]
    for rec in table:
        lines.append("  ".join(f"{rec[c]:>{w}.4g}" if c != "size" else f"{rec[c]:>{w}d}"
                               for c, w in zip(cols, widths)))
    return "\n".join(lines)


def write_csv(path: str | os.PathLike, records: list[dict]) -> None:
    """Write ``records`` as a CSV file (the columns: every key, in first-seen order), atomically."""
    from landscape.atomic import atomic_path

    fields = list(dict.fromkeys(k for rec in records for k in rec))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)


def _warn_if_near_chance(run: str, rep) -> None:
    """The members' mean test accuracy near chance: the inputs probably do not match."""
    from landscape.surfaces.basins import chance_warnings

    classes = rep.classes
    warn(chance_warnings({f"the members of {rep.name} (mean)": rep.rows[-1].member_accuracy}, classes))
