"""``landscape info``: what a checkpoint or a surface file holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from landscape.results import PathSet, Surface

from cli.common import add_arch_for_pt, load_kwargs

EXAMPLES = """examples:
  landscape info m1.safetensors
  landscape info lightning_logs/version_0/checkpoints/epoch=9-step=90.ckpt
  landscape info paper_run.pt --state-dict-key model_state --json
  landscape info runs/demo/planes/sse-semilocal/plane.h5
  landscape info runs/demo/planes/sse-semilocal/plane.h5 --json
  landscape info runs/demo/paths/sse-semilocal/paths.h5
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a checkpoint or a surface file",
                       description=__doc__, epilog=EXAMPLES)
    p.add_argument("file", help="checkpoint (.safetensors, .pt, .pth, .bin, .ckpt: its tensors, "
                   "and with metadata or --arch its model) or .h5 surface or paths file (also while it is "
                   "being computed: its progress so far and the process writing it)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_arch_for_pt(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from landscape.errors import UserError

    path = Path(args.file)
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if path.suffix in (".h5", ".hdf5"):
        doc = _results_info(path)
    else:
        doc = _checkpoint_info(args)
    if args.json:  # standard JSON: NaN and inf as null
        from landscape.atomic import finite_json

        print(json.dumps(finite_json(doc), indent=2, sort_keys=True, allow_nan=False))
    else:
        print(_text(doc))
    return 0


def _checkpoint_info(args: argparse.Namespace) -> dict:
    """The tensors (name, shape, dtype, count) of the file's state dict; with metadata or --arch,
    those of the model it loads into, with the metadata."""
    from dataclasses import asdict

    from landscape import load_checkpoint
    from landscape.assets.checkpoint import file_sha256, read_state_dicts
    from landscape.assets.state_dicts import strip

    kwargs = load_kwargs(args)
    found, meta = read_state_dicts(args.file, state_dict_key=kwargs["state_dict_key"])
    doc = {"kind": "checkpoint", "path": str(args.file), "sha256": file_sha256(args.file)}
    if meta is None and args.arch is None:
        tensors = strip(found[0].tensors, args.strip_prefix or "")
        doc["state_dict"] = found[0].where
        if len(found) > 1:
            doc["other_state_dicts"] = [f.where for f in found[1:]]
    else:
        ckpt = load_checkpoint(args.file, **kwargs)
        tensors = ckpt.model.state_dict()
        doc["parameters"] = sum(p.numel() for p in ckpt.model.parameters())
        doc["metadata"] = asdict(ckpt.meta)
    doc["values"] = sum(t.numel() for t in tensors.values())
    doc["tensors"] = [{"name": k, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."),
                       "count": t.numel()} for k, t in tensors.items()]
    return doc


def _results_info(path: Path) -> dict:
    """A surface or paths file's grid, progress and ranges; while a process writes it, its
    progress so far (from its journal) and which process that is."""
    from landscape.grid.lock import WriterLock
    from landscape.grid.reading import read_results
    from landscape.results import Surface

    result = read_results(path)
    doc = _surface_info(result) if isinstance(result, Surface) else _paths_info(result)
    writer = WriterLock(path).holder()
    if writer is not None:
        doc["writing"] = writer
    return doc


def _ranges(result: Surface | PathSet) -> dict:
    import numpy as np

    return {split: {m: [float(np.nanmin(v)), float(np.nanmax(v))] if np.isfinite(v).any() else None
                    for m, v in result.metrics[split].items()}
            for split in result.splits}


def _surface_info(s: Surface) -> dict:
    return {"kind": "surface", "path": str(s.path), "grid": [int(s.y.size), int(s.x.size)],
            "x": [float(s.x[0]), float(s.x[-1])], "y": [float(s.y[0]), float(s.y[-1])],
            "done": f"{int(s.done.sum())}/{s.done.size}", "ranges": _ranges(s),
            "points": {k: vars(v) for k, v in s.points.items()}, "config": s.config}


def _paths_info(ps: PathSet) -> dict:
    return {"kind": "paths", "path": str(ps.path), "names": ps.names,
            "pairs": [ps.pair_name(p) for p in range(len(ps.pairs))],
            "alpha": [float(ps.alpha[0]), float(ps.alpha[-1]), int(ps.alpha.size)],
            "done": f"{int(ps.done.sum())}/{ps.done.size}", "ranges": _ranges(ps), "config": ps.config}


def _text(doc: dict, indent: int = 0) -> str:
    lines = []
    for key, value in doc.items():
        if key == "tensors" and isinstance(value, list):  # one line per tensor
            lines.append(" " * indent + f"tensors: {len(value)}")
            lines.extend(" " * (indent + 2) + f"{t['name']}  {tuple(t['shape'])}  {t['dtype']}  "
                         f"{t['count']}" for t in value)
        elif isinstance(value, dict) and value:
            lines.append(" " * indent + f"{key}:")
            lines.append(_text(value, indent + 2))
        else:
            lines.append(" " * indent + f"{key}: {json.dumps(value) if isinstance(value, (list, dict)) else value}")
    return "\n".join(lines)
