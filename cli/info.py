"""``landscape info``: what a checkpoint or a surface file holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import add_arch_for_pt

EXAMPLES = """examples:
  landscape info m1.safetensors
  landscape info runs/demo/planes/sse-semilocal/plane.h5
  landscape info runs/demo/planes/sse-semilocal/plane.h5 --json
  landscape info runs/demo/paths/sse-semilocal/paths.h5
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a checkpoint or a surface file",
                       description=__doc__, epilog=EXAMPLES)
    p.add_argument("file", help=".safetensors/.pt checkpoint or .h5 surface file")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_arch_for_pt(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from landscape.errors import UserError

    path = Path(args.file)
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if path.suffix in (".h5", ".hdf5"):
        doc = _paths_info(path) if _kind(path) == "paths" else _surface_info(path)
    else:
        doc = _checkpoint_info(args)
    print(json.dumps(doc, indent=2, sort_keys=True) if args.json else _text(doc))
    return 0


def _checkpoint_info(args: argparse.Namespace) -> dict:
    from dataclasses import asdict

    from landscape import load_checkpoint

    ckpt = load_checkpoint(args.file, arch=args.arch, num_classes=args.num_classes,
                           arch_kwargs=args.arch_kwargs)
    n_params = sum(p.numel() for p in ckpt.model.parameters())
    return {"kind": "checkpoint", "path": str(ckpt.path), "sha256": ckpt.sha256,
            "parameters": n_params, "tensors": len(ckpt.model.state_dict()),
            "metadata": asdict(ckpt.meta)}


def _surface_info(path: Path) -> dict:
    import numpy as np

    from landscape import read_surface

    s = read_surface(path)
    ranges = {
        split: {m: [float(np.nanmin(v)), float(np.nanmax(v))] if np.isfinite(v).any() else None
                for m, v in s.metrics[split].items()}
        for split in s.splits
    }
    return {"kind": "surface", "path": str(path), "grid": [int(s.y.size), int(s.x.size)],
            "x": [float(s.x[0]), float(s.x[-1])], "y": [float(s.y[0]), float(s.y[-1])],
            "done": f"{int(s.done.sum())}/{s.done.size}", "ranges": ranges,
            "points": {k: vars(v) for k, v in s.points.items()}, "config": s.config}


def _kind(path: Path) -> str | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("kind")
    except OSError:
        return None  # read_surface reports the unreadable file


def _paths_info(path: Path) -> dict:
    import numpy as np

    from landscape import read_paths

    ps = read_paths(path)
    return {"kind": "paths", "path": str(path), "names": ps.names,
            "pairs": [ps.pair_name(p) for p in range(len(ps.pairs))],
            "alpha": [float(ps.alpha[0]), float(ps.alpha[-1]), int(ps.alpha.size)],
            "done": f"{int(ps.done.sum())}/{ps.done.size}",
            "ranges": {s: {m: [float(np.nanmin(v)), float(np.nanmax(v))]
                           if np.isfinite(v).any() else None for m, v in ps.metrics[s].items()}
                       for s in ps.splits},
            "config": ps.config}


def _text(doc: dict, indent: int = 0) -> str:
    lines = []
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            lines.append(" " * indent + f"{key}:")
            lines.append(_text(value, indent + 2))
        else:
            lines.append(" " * indent + f"{key}: {json.dumps(value) if isinstance(value, (list, dict)) else value}")
    return "\n".join(lines)
