"""``landscape sharpness``: how sharp each checkpoint's minimum is (PyHessian's measures for any
model): the top Hessian eigenvalues of the training loss (Lanczos with Hessian-vector products,
each with its residual |Hy - ly|) and the Hutchinson estimate of the Hessian's trace with its
standard error, on a seeded subset of the train split with BatchNorm in eval mode.

Writes DIR/sharpness.json (each checkpoint as it finishes: a rerun skips those done with the same
settings), DIR/sharpness.csv and DIR/sharpness.png (the runs compared, coloured by run).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

from cli.common import (
    add_arch_for_pt,
    add_data,
    add_device,
    expand_runs,
    fetch_data,
    load_kwargs,
    positive_int,
    seed_int,
    write_atomically,
)
from cli.grid_flags import add_image_flags, image_transform

EXAMPLES = """examples:
  landscape sharpness runs/demo/runs/source-0/sse-lr0.02 runs/demo/runs/source-0/sse-lr0.7 --out runs/sharp
  landscape sharpness m1.safetensors m2.safetensors --top 5 --iterations 50 --subset 2000 --out runs/sharp
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sharpness", help="top Hessian eigenvalues and trace of checkpoints",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="checkpoints, or run directories (their members)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--top", type=positive_int, default=3, help="largest eigenvalues to find (default 3)")
    p.add_argument("--iterations", type=positive_int, default=30, help="Lanczos steps (default 30)")
    p.add_argument("--trace-samples", type=positive_int, default=50, help="Hutchinson probes (default 50)")
    p.add_argument("--subset", type=positive_int, default=1000, help="train samples used, seeded (default 1000)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="samples per forward pass (default 256)")
    p.add_argument("--seed", type=seed_int, default=0, help="seeds the subset, the start vector and the probes")
    p.add_argument("--loss", default="ce", help="ce (default), mse, or a per-sample loss path/to/file.py:name")
    p.add_argument("--overwrite", action="store_true", help="replace results of other settings in DIR")
    p.add_argument("--no-plots", action="store_true", help="the JSON and CSV only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data(p)
    add_image_flags(p)
    add_device(p)
    add_arch_for_pt(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    fetch_data(args, args.data)
    from landscape import load_checkpoint, resolve_device
    from landscape.atomic import write_json, write_text
    from landscape.surfaces.sharpness import Sharpness, SharpnessConfig, measure_sharpness

    config = SharpnessConfig(top=args.top, iterations=args.iterations, trace_samples=args.trace_samples,
                             subset=args.subset, batch_size=args.batch_size, seed=args.seed)
    files, groups = expand_runs(args.checkpoints)
    ckpts = [load_checkpoint(f, **load_kwargs(args)) for f in files]
    out = Path(args.out)
    path = out / "sharpness.json"
    settings = {**asdict(config), "loss": str(args.loss), "data": args.data, "data_root": args.data_root,
                "image": None if image_transform(args) is None else image_transform(args).to_dict()}
    done = _previous(path, settings, args.overwrite)
    results = dict(done)

    def save(name, sha, result):
        results[sha] = {"name": name, **asdict(result)}
        write_json(path, {"settings": settings, "results": results}, indent=2, strict=True)

    def skip(name, sha):
        r = done.get(sha)
        if r is None:
            return None
        try:
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in r.items() if k != "name"}
            values = {k: float("nan") if v is None else v for k, v in values.items()}  # NaN is stored as null
            return Sharpness(**values)
        except TypeError:
            from landscape.errors import UserError

            raise UserError(f"{path}: the result of {name} is damaged; delete the file to measure again") from None

    out.mkdir(parents=True, exist_ok=True)
    measured = measure_sharpness(ckpts, data=args.data, data_root=args.data_root, loss=args.loss, config=config,
                                 image=image_transform(args), device=resolve_device(args.device), skip=skip,
                                 on_result=save)
    rows = [{"name": n, "group": g, **{f"eig{i + 1}": v for i, v in enumerate(s.eigenvalues)},
             **{f"residual{i + 1}": v for i, v in enumerate(s.residuals)}, "trace": s.trace,
             "trace_stderr": s.trace_stderr, "loss": s.loss, "samples": s.samples, "parameters": s.parameters}
            for (n, s), g in zip(measured, groups)]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    written = [path, write_text(out / "sharpness.csv", table.getvalue())]
    if not args.no_plots:
        from viz import save_figure
        from viz.basin import plot_sharpness

        fig = plot_sharpness([r["name"] for r in rows], [r["eig1"] for r in rows], [r["trace"] for r in rows],
                             [r["trace_stderr"] for r in rows], groups)
        written.append(write_atomically(save_figure, fig, out / "sharpness.png"))
    print(_table(rows, args.top))
    print("wrote " + ", ".join(map(str, written)))
    return 0


def _previous(path: Path, settings: dict, overwrite: bool) -> dict:
    """The results of an earlier run with the same settings, by sha256; other settings are
    refused unless ``overwrite`` (nothing is dropped silently)."""
    from landscape.errors import UserError

    if not path.exists() or overwrite:
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} is not a readable sharpness result; delete it to measure again") from None
    if not isinstance(doc, dict) or doc.get("settings") != json.loads(json.dumps(settings)):
        raise UserError(f"{path} holds results of other settings; pass --overwrite to replace them, or another --out")
    results = doc.get("results")
    return results if isinstance(results, dict) else {}


def _table(rows: list[dict], top: int) -> str:
    head = "| name | " + " | ".join(f"eig{i + 1}" for i in range(top)) + " | trace | loss |"
    lines = [head, "|" + "---|" * (top + 3)]
    for r in rows:
        eigs = " | ".join(f"{r[f'eig{i + 1}']:.4g}" for i in range(top) if f"eig{i + 1}" in r)
        lines.append(f"| {r['name']} | {eigs} | {r['trace']:.4g} +- {float(r['trace_stderr']):.2g} | {r['loss']:.4g} |")
    return "\n".join(lines)
