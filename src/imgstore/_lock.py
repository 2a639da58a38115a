"""The writer lock: ``.lock`` in the store, held with an OS file lock while a writer lives.

The reference only creates an empty ``.lock``. Here the file also names its owner (pid,
host, start time) and, where the OS supports it, is held with ``flock``, so a lock left by
a dead process is recognised as stale (the OS released it) instead of being obeyed forever.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

from .errors import StoreLockedError, StoreWriteError
from .ondisk import STORE_LOCK_FILENAME

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def read_lock_owner(basedir: str) -> dict | None:
    """The owner recorded in a store's ``.lock`` (None if absent or written by the reference)."""
    try:
        with open(os.path.join(basedir, STORE_LOCK_FILENAME), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    try:
        owner = json.loads(text)
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def is_locked(basedir: str) -> bool:
    """True if a live writer holds the store's lock."""
    path = os.path.join(basedir, STORE_LOCK_FILENAME)
    if not os.path.exists(path):
        return False
    if fcntl is not None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)
    owner = read_lock_owner(basedir)
    return bool(owner and owner.get("host") == socket.gethostname() and _pid_alive(int(owner.get("pid", -1))))


class StoreLock:
    """Exclusive writer lock on a store directory."""

    def __init__(self, basedir: str) -> None:
        self.path = os.path.join(basedir, STORE_LOCK_FILENAME)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StoreLockedError` naming the live owner."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreWriteError(exc.errno, f"could not create lock {self.path}: {exc.strerror}") from exc
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise StoreLockedError(self._describe_owner()) from None
        else:
            owner = read_lock_owner(os.path.dirname(self.path))
            if owner and owner.get("pid") != os.getpid() and owner.get("host") == socket.gethostname() \
                    and _pid_alive(int(owner.get("pid", -1))):
                os.close(fd)
                raise StoreLockedError(self._describe_owner())
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        os.ftruncate(fd, 0)
        os.write(fd, info.encode())
        self._fd = fd

    def _describe_owner(self) -> str:
        owner = read_lock_owner(os.path.dirname(self.path)) or {}
        who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
        return f"store {os.path.dirname(self.path)!r} is being written by another process ({who})"

    def release(self) -> None:
        """Remove the lock file and release the lock."""
        if self._fd is None:
            return
        # unlink before unlocking so no other writer can lock the file we are deleting
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None
