"""One writer at a time: a lock file beside the output, naming the process that holds it.

A second process that wants to write the same output is refused with a message naming the
holder. A lock left by a process that no longer runs (killed, machine rebooted) is taken over.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from landscape.errors import UserError


class WriterLock:
    """Exclusive right to write ``target`` (a file or a directory); use as a context manager or
    call ``acquire``/``release``."""

    def __init__(self, target: str | os.PathLike) -> None:
        target = Path(target)
        self.path = target / ".lock" if target.is_dir() else Path(f"{target}.lock")
        self.held = False

    def acquire(self) -> "WriterLock":
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._refuse_or_clear_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
            self.held = True
            return self
        raise UserError(f"could not take the lock {self.path}; remove it if no process is writing")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _refuse_or_clear_stale(self) -> None:
        try:
            owner = json.loads(self.path.read_text())
            pid, host = int(owner["pid"]), str(owner["host"])
        except (OSError, ValueError, KeyError, TypeError):
            pid, host = -1, socket.gethostname()  # unreadable: treat as left behind
        if host == socket.gethostname() and not _alive(pid):
            self.path.unlink(missing_ok=True)  # its writer is gone: take over
            return
        raise UserError(
            f"another landscape process (pid {pid} on {host}) is writing {self.path.with_suffix('')}"
            f"; wait for it to finish, or remove {self.path} if that process no longer runs"
        )


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
