"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from landscape.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) and examples kept verbatim in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="auto (CUDA if available, else CPU), cpu, cuda or cuda:N (default: auto)")


def add_data(p: argparse.ArgumentParser, default: str | None = None,
             unset: str = "the one recorded in the checkpoints") -> None:
    """--data (``unset`` says what None means), --data-root and --download."""
    p.add_argument("--data", default=default,
                   help="dataset: mnist1d, mnist1d-source, cifar10, cifar100, imagefolder:PATH, or your own "
                   "splits from path/to/file.py:factory (returning landscape.Data or a dict of splits)"
                   + f" (default: {default or unset})")
    p.add_argument("--data-root", default=None,
                   help="folder holding the dataset files (CIFAR) or the MNIST-1D cache")
    p.add_argument("--download", action="store_true",
                   help="let torchvision download CIFAR into --data-root first (never by default)")


def fetch_data(args: argparse.Namespace, name: str | None) -> None:
    """With --download, fetch both splits of ``name`` into --data-root before any work."""
    if getattr(args, "download", False) and name:
        from landscape import load_dataset

        for split in ("train", "test"):
            load_dataset(name, split, args.data_root, download=True)


def add_arch_for_pt(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("checkpoints of other tools (.pt/.pth/.ckpt, no metadata)")
    g.add_argument("--arch", default=None, help="architecture, e.g. resnet20 or timm:resnet18")
    g.add_argument("--num-classes", type=int, default=None, help="size of the classifier head")
    g.add_argument("--arch-kwargs", type=json_dict, default=None,
                   help='JSON keyword arguments for the architecture, e.g. \'{"width": 32}\'')
    g.add_argument("--state-dict-key", default=None, metavar="KEY",
                   help="the entry holding the state dict, 'a/b' when nested (default: the top "
                        "level, or the first of state_dict, model_state_dict, model_state, "
                        "model, module, state_dict_ema that fits --arch)")
    g.add_argument("--strip-prefix", default=None, metavar="PREFIX",
                   help="remove PREFIX from the tensor names, e.g. 'net.' (default: module., "
                        "model., _orig_mod. or none, whichever makes the names fit --arch)")


def json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object like '{\"width\": 32}'")
    return value


def csv_names(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list like train,test")
    return names


def bounded_int(minimum: int, expected: str) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum`` (``expected`` names it in errors)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


SEED_LIMIT = 2**63  # what torch's and numpy's generators both take (0 <= seed < 2**63)


def seed_int(text: str) -> int:
    """An argparse type: a seed, an integer in 0 .. 2**63 - 1."""
    value = bounded_int(0, "a seed, an integer >= 0")(text)
    if value >= SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"expected a seed below 2**63, got {value}")
    return value


positive_int = bounded_int(1, "a positive integer")
non_negative_int = bounded_int(0, "an integer >= 0")


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def load_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``load_checkpoint`` from the flags of ``add_arch_for_pt``."""
    return {"arch": args.arch, "num_classes": args.num_classes, "arch_kwargs": args.arch_kwargs,
            "dataset": getattr(args, "data", None),
            "state_dict_key": getattr(args, "state_dict_key", None),
            "strip_prefix": getattr(args, "strip_prefix", None)}


def require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


@contextlib.contextmanager
def process_group(device_spec: str):
    """Resolve the device and, under torchrun, join the process group (one GPU per process);
    yields (group, device) and leaves the group afterwards."""
    from landscape import resolve_device
    from landscape.grid.distributed import init_from_env, local_device, shutdown

    device = resolve_device(device_spec)
    group = init_from_env(device)
    try:
        yield group, local_device(device, group)
    finally:
        shutdown()


def write_atomically(write: Callable[[Any, Path], Any], obj: Any, path: Path) -> Path:
    """``write(obj, file)`` (a renderer's saver, e.g. ``viz.save_figure``) into a temporary file
    beside ``path`` that then replaces it (``landscape.atomic``): a plot appears whole or not at all."""
    from landscape.atomic import atomic_path

    with atomic_path(path) as tmp:
        write(obj, tmp)
    return path


def warn(lines: list[str]) -> None:
    """Print each line to stderr as a warning (the results are written all the same)."""
    import sys

    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def run_members(path: str | Path) -> tuple[list[str], list[str]]:
    """A run directory's member files, in order, and its pre-trained files still on disk (they
    serve distances and lineages only)."""
    from ensembles.run import read_run

    run = read_run(path)
    return ([str(run.checkpoint_path(m["index"])) for m in run.members],
            [p for p in run.config.pretrained if Path(p).is_file()])


def expand_runs(items: list[str]) -> tuple[list[str], list[str]]:
    """Checkpoint files with every run directory among ``items`` standing for its members, and
    the group of each file (its run directory's name, or "" for a file given as such)."""
    files, groups = [], []
    for item in items:
        members = run_members(item)[0] if Path(item).is_dir() else [item]
        files += members
        groups += [Path(item).name if Path(item).is_dir() else ""] * len(members)
    return files, groups
