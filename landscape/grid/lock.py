"""One writer at a time: a lock file beside the output, naming the process that holds it.

The lock is an exclusive ``flock`` on ``<file>.lock`` (or ``<dir>/.lock``), held while the output
is written; the file's content names the holder (pid, host) for the refusal message. The kernel
drops a flock when its process dies, so a lock left by a killed process is free to take, and
however many processes race for it (a stale lock or none), one holds it at a time: whoever gets
the flock decides alone whether the file names a live holder, and rewrites it in place.

The name in the file is respected too: a lock naming a live process of this host, or a process of
another host (whose flock may not reach us over a network file system), refuses, as lock files of
earlier versions (without flock) did. A lock naming a dead process of this host is taken over.
Where the file system has no file locks, the lock is the file itself, created exclusively: there,
taking over a stale lock is not atomic.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

from landscape.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX: the file alone is the lock
    fcntl = None

READ_WAIT = 1.0  # seconds a refused process waits for the holder's name while it is written
PEEK_WAIT = 0.1  # the same for ``holder``, which must not hold up a reader
BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL)


class WriterLock:
    """Exclusive right to write ``target`` (a file or a directory); use as a context manager or
    call ``acquire``/``release``."""

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = Path(target)
        self.path = self.target / ".lock" if self.target.is_dir() else Path(f"{self.target}.lock")
        self.held = False
        self._fd: int | None = None  # the open lock file, while held
        self._flocked = False  # held by its flock (else, without file locks, by the file alone)

    def acquire(self) -> "WriterLock":
        """Take the lock.

        Raises:
            UserError: another process holds it (the message names it).
        """
        if self.held:
            return self
        for _ in range(100):  # again only when the holder removed the file as we opened it
            fd, created = _open(self.path)
            try:
                outcome = self._claim(fd, created)
            except BaseException:
                os.close(fd)
                raise
            if outcome == "held":
                self._fd, self.held = fd, True
                return self
            os.close(fd)
            if outcome == "no locks":
                return self._acquire_exclusive()
        raise UserError(f"could not take the lock {self.path}; remove it if no process is writing {self.target}")

    def _claim(self, fd: int, created: bool) -> str:
        """Take the lock through the open lock file ``fd``: "held", "moved" (its holder removed it:
        open it again) or "no locks" (the file system has none); raises the refusal."""
        state = _flock(fd)
        if state is False:
            raise self._refusal(_owner(lambda: os.pread(fd, 4096, 0), until_live=True))
        if state is True and not _same_file(fd, self.path):
            return "moved"
        if state is None and not created:  # without file locks, only a file we created is ours
            return "no locks"
        if not created and (owner := _parse(os.pread(fd, 4096, 0))) is not None and _live(owner):
            raise self._refusal(owner)  # named by a process that takes no flock
        _write(fd, _me())
        self._flocked = state is True
        return "held"

    def release(self) -> None:
        if not self.held:
            return
        try:  # removed while still locked: whoever opens the name next gets a new file
            ours = _same_file(self._fd, self.path) if self._flocked else _parse(_read(self.path)) == _me_parsed()
            if ours:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd, self._flocked, self.held = None, False, False

    def holder(self) -> dict | None:
        """The process that holds the lock now (``{"pid": ..., "host": ...}``), or None.

        Takes nothing, so asking never gets in a writer's way."""
        if not self.path.exists():
            return None
        owner = _owner(lambda: _read(self.path), until_live=False, wait=PEEK_WAIT)
        return owner if owner is not None and _live(owner) else None

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _acquire_exclusive(self) -> "WriterLock":
        """Without file locks: the lock is the file, created exclusively; a lock naming a dead
        process is removed and created again (two processes may both do that)."""
        for _ in range(2):
            try:
                fd, _created = _open(self.path, exclusive=True)
            except FileExistsError:
                owner = _owner(lambda: _read(self.path), until_live=True)
                if owner is not None and _live(owner):
                    raise self._refusal(owner) from None
                self.path.unlink(missing_ok=True)
                continue
            _write(fd, _me())
            self._fd, self._flocked, self.held = fd, False, True
            return self
        raise UserError(f"could not take the lock {self.path}; remove it if no process is writing {self.target}")

    def _refusal(self, owner: dict | None) -> UserError:
        pid, host = (owner["pid"], owner["host"]) if owner else ("unknown", "an unknown host")
        return UserError(f"another landscape process (pid {pid} on {host}) is writing {self.target}; "
                         f"wait for it to finish, or remove {self.path} if that process no longer runs")


def _open(path: Path, exclusive: bool = False) -> tuple[int, bool]:
    """The lock file opened for reading and writing, and whether this call created it."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
        if exclusive:
            raise
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644), False


def _flock(fd: int) -> bool | None:
    """True: we hold the flock; False: another open file holds it; None: no file locks here."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in BUSY:
            return False
        if exc.errno in NO_LOCKS:
            return None
        raise


def _same_file(fd: int, path: Path) -> bool:
    """The open file ``fd`` is still the one named ``path`` (not removed by its last holder)."""
    try:
        at, mine = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (at.st_dev, at.st_ino) == (mine.st_dev, mine.st_ino)


def _me_parsed() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _me() -> str:
    return json.dumps(_me_parsed())


def _write(fd: int, text: str) -> None:
    """Replace the lock file's content in place (it is never empty while rewritten)."""
    data = text.encode()
    os.lseek(fd, 0, os.SEEK_SET)
    rest = memoryview(data)
    while rest:
        rest = rest[os.write(fd, rest):]
    os.ftruncate(fd, len(data))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _parse(data: bytes) -> dict | None:
    """The holder a lock file names, or None if it names none (empty, half-written, damaged)."""
    try:
        doc = json.loads(data)
        pid, host = doc["pid"], doc["host"]
    except (ValueError, KeyError, TypeError):
        return None
    if type(pid) is not int or not isinstance(host, str):
        return None
    return {"pid": pid, "host": host}


def _owner(read, *, until_live: bool, wait: float = READ_WAIT) -> dict | None:
    """The holder named by ``read()``, waiting up to ``wait`` seconds while the name is being
    written (and, with ``until_live``, while it names a dead process, which its taker overwrites)."""
    deadline = time.monotonic() + wait
    while True:
        owner = _parse(read())
        if (owner is not None and (not until_live or _live(owner))) or time.monotonic() > deadline:
            return owner
        time.sleep(0.01)


def _live(owner: dict) -> bool:
    """The named process may be writing: it runs on this host, or it is on another host (which
    cannot be asked)."""
    return owner["host"] != socket.gethostname() or _alive(owner["pid"])


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: beyond any pid
        return False
    except PermissionError:
        return True
    return True
