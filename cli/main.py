"""The ``landscape`` command: thin subcommands over the library.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 3 interrupted by Ctrl-C
or SIGTERM (rerun the same command to resume; finetune and pretrain start again), 1 internal error.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence

from cli import demo as demo_cmd
from cli import ensemble as ensemble_cmd
from cli import finetune as finetune_cmd
from cli import info as info_cmd
from cli import curve as curve_cmd
from cli import distances as distances_cmd
from cli import interp as interp_cmd
from cli import plane as plane_cmd
from cli import pretrain as pretrain_cmd
from cli import recover as recover_cmd
from cli import report as report_cmd
from cli import sharpness as sharpness_cmd
from cli import simplex as simplex_cmd
from cli import sweep as sweep_cmd
from cli import train as train_cmd
from cli.common import Parser

SUBCOMMANDS = (demo_cmd, pretrain_cmd, finetune_cmd, train_cmd, sweep_cmd, ensemble_cmd,
               plane_cmd, interp_cmd, curve_cmd, simplex_cmd, sharpness_cmd, distances_cmd, report_cmd, info_cmd, recover_cmd)

EPILOG = """examples:
  landscape demo --out runs/demo
  landscape pretrain --data mnist1d-source --arch mnist1d_cnn --epochs 6 --out pre.safetensors
  landscape finetune pre.safetensors --data mnist1d --epochs 10 --seed 1 --out m1.safetensors
  landscape train --method starsse --pretrained pre.safetensors --preset mnist1d --out runs/starsse
  landscape ensemble runs/starsse --ood mnist1d-c
  landscape plane m1.safetensors m2.safetensors m3.safetensors
  landscape interp runs/starsse
  landscape info runs/demo/planes/sse-semilocal/plane.h5
  landscape recover runs/plane/plane.h5
"""


def build_parser() -> Parser:
    parser = Parser(prog="landscape", epilog=EPILOG,
                    description="Loss landscapes of ensembles fine-tuned from a pre-trained "
                    "checkpoint.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"landscape {version('landscape-toolkit')}"
    except PackageNotFoundError:
        return "landscape (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``landscape`` command; returns its exit code. Output into a pipe that closed
    early (``landscape info FILE | head -1``) ends quietly with exit code 141, as a command
    stopped by SIGPIPE does."""
    try:
        try:
            return _main(argv)
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()  # the broken pipe shows here when the output was buffered
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe() -> int:
    """The reader of stdout is gone: point stdout at devnull, so that Python's own flush at exit
    does not fail again (the recipe of the Python docs, "Note on SIGPIPE"), and exit 128 + 13."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a file (tests capture it)
        pass
    return 141


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from landscape.progress import enable_progress, interrupt_requested

    enable_progress(not getattr(args, "quiet", False))
    _sigterm_interrupts()
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        return _interrupted(args.command)
    except BrokenPipeError:
        raise
    except Exception as exc:
        if interrupt_requested():  # a native call (safetensors, h5py) turned Ctrl-C into another error
            return _interrupted(args.command)
        message = _bad_input(exc)
        if message is None:
            raise
        print(f"landscape {args.command}: error: {message}", file=sys.stderr)
        return 2


def _bad_input(exc: Exception) -> str | None:
    """The one-line message of an error caused by the user's input, or None for a bug."""
    from landscape.errors import UserError

    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError):  # a missing file, an --out that is a file, no permission, a full disk
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    return None


ONE_PIECE = ("finetune", "pretrain")  # commands that write one model at the end: nothing to resume


def _interrupted(command: str) -> int:
    if command in ONE_PIECE:
        print(f"\nlandscape {command}: interrupted before the model was written; rerun the command to train "
              "it again from the start (it does not resume)", file=sys.stderr)
    else:
        print(f"\nlandscape {command}: interrupted; finished work is saved, rerun the same command "
              "to resume", file=sys.stderr)
    return 3


def _sigterm_interrupts() -> None:
    """SIGINT (Ctrl-C) and SIGTERM (a scheduler's time limit, torchrun stopping a job) end the
    run with finished work saved and exit code 3. The request is also remembered, so the next
    progress update stops the run even if Python dropped the first KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        return
    from landscape.progress import request_interrupt

    request_interrupt(False)  # a new command starts uninterrupted

    def interrupt(signum, frame):
        if signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not break the clean-up
        request_interrupt()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    if not getattr(sys.unraisablehook, "quiet_interrupts", False):  # main() may run again in-process
        sys.unraisablehook = _quiet_dropped_interrupts(sys.unraisablehook)


def _quiet_dropped_interrupts(previous):
    """An unraisable-exception hook that keeps quiet about a KeyboardInterrupt that Python
    dropped (the signal came while a finalizer or weakref callback ran: Python prints it with
    a traceback and goes on); the request it stands for stops the run at the next progress
    update. Anything else goes to ``previous``."""
    from landscape.progress import interrupt_requested

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and interrupt_requested():
            return
        previous(unraisable)

    hook.quiet_interrupts = True
    return hook


if __name__ == "__main__":
    sys.exit(main())
