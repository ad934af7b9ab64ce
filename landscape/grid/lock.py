"""One writer at a time: a lock file beside the output, naming the process that holds it.

A second process that wants to write the same output is refused with a message naming the
holder. A lock left by a process that no longer runs (killed, machine rebooted) is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
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
            if self._create():
                self.held = True
                return self
            self._refuse_or_clear_stale()
        raise UserError(f"could not take the lock {self.path}; remove it if no process is writing")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _create(self) -> bool:
        """Create the lock file whole, naming this process, or return False if it exists.

        The record is written to a temporary file first and hard-linked into place, which is
        atomic and fails if the lock exists: another process never reads an empty lock (which it
        would take for one left behind). Where the file system has no hard links, the lock file
        is created exclusively and then written."""
        owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(owner)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some network and FAT file systems)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(owner)
            return True
        finally:
            tmp.unlink(missing_ok=True)

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
