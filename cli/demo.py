"""``landscape demo``: the paper in miniature on an MNIST-1D transfer task, on CPU, then its
HTML report.

Pre-trains three source checkpoints on mnist1d-source (the replicates) and trains the same model
from scratch on the target, mnist1d-transfer; from every source trains Local DE, and SSE and
StarSSE at every cycle learning rate of a sweep; Global DE takes one member from each source.
The optimal cycle rate of each method is chosen on the validation split (mnist1d-transfer-val).
Judges the local, optimal and semi-local runs (sizes 1..K, soups, the corrupted test set
mnist1d-transfer-c), evaluates linear paths (consecutive SSE snapshots, StarSSE's star) and
planes through three SSE and three StarSSE members; writes DIR/report.html, where every claim of
the paper is a measured effect with its 95% interval and a verdict. Finished steps are skipped
on a rerun.
"""

from __future__ import annotations

import argparse
import time

from cli.common import add_device
from cli.outputs import writable_dir

EXAMPLES = """examples:
  landscape demo --out runs/demo
  landscape demo --out runs/tiny --tiny      # every step with tiny sizes (about a minute)
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the paper in miniature on an MNIST-1D transfer task, with its report",
                       description=__doc__, epilog=EXAMPLES)
    p.add_argument("--out", default="runs/demo", help="demo directory (default runs/demo)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes, to check the pipeline")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device(p)
    p.set_defaults(run=run)


TINY = dict(sources=2, pre_epochs=1, width=4, members=3, epochs=1, cycle_epochs=1, cycle_lrs=(0.02, 0.7), grid=3,
            points=3, plane_train_subset=500)


def run(args: argparse.Namespace) -> int:
    from cli.report import build_report
    from ensembles.demo import DemoConfig, run_demo
    from landscape import resolve_device

    start = time.perf_counter()
    config = DemoConfig(**TINY) if args.tiny else DemoConfig()
    writable_dir(args.out)  # before the first pre-training, not after
    run_demo(args.out, config, device=resolve_device(args.device),
             log=lambda m: print(f"[{time.perf_counter() - start:6.0f}s] {m}", flush=True))
    page, _ = build_report(__import__("pathlib").Path(args.out))
    print(f"demo finished in {time.perf_counter() - start:.0f}s; open {page}")
    return 0
