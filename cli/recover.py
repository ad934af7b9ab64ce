"""``landscape recover``: rebuild a damaged plane or paths file from its journal.

While a results file is unfinished, every finished group of points is also appended to
``<file>.journal`` beside a copy of the file as created (``<file>.init``). If the HDF5 file is
damaged (killed during a flush, a full disk, a truncated copy), this rebuilds it from the two and
keeps the damaged file as ``<file>.damaged-<time>``; rerun the original command to finish it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  landscape recover runs/plane/plane.h5
  landscape recover runs/plane             # the plane.h5 or paths.h5 in a directory
"""
NAMES = ("plane.h5", "paths.h5")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recover", help="rebuild a damaged plane/paths file from its journal",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="a plane.h5 or paths.h5 file, or a directory holding one")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from landscape.grid.store import recover

    path = _resolve(Path(args.file))
    done, moved = recover(path)
    kept = f"; the damaged file is kept as {moved}" if moved else ""
    print(f"rebuilt {path} with {done} finished points{kept}; rerun the original command to finish it")
    return 0


def _resolve(path: Path) -> Path:
    from landscape.errors import UserError

    if path.is_dir():
        found = [path / n for n in NAMES if (path / n).exists() or (path / f"{n}.init").exists()]
        if len(found) != 1:
            raise UserError(f"{path} holds {'no' if not found else 'several'} results files "
                            f"({', '.join(NAMES)}); name the file")
        return found[0]
    if not path.exists() and not Path(f"{path}.init").exists():
        raise UserError(f"{path} does not exist")
    return path
