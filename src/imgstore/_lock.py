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

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: the writer lock's file name in a store folder (imgstore 0.4's ``STORE_LOCK_FILENAME``)
STORE_LOCK_FILENAME = ".lock"

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
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
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


#: how long a writer retries a lock held by someone else before it reports it held (seconds)
_PROBE_GRACE = 0.2


class StoreLock:
    """Exclusive writer lock on a store directory."""

    def __init__(self, basedir: str) -> None:
        self.path = os.path.join(basedir, STORE_LOCK_FILENAME)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StoreLockedError` naming the live owner."""
        fd = self._open_locked() if fcntl is not None else self._open()
        if fcntl is None:
            owner = read_lock_owner(os.path.dirname(self.path))
            if owner and owner.get("pid") != os.getpid() and owner.get("host") == socket.gethostname() \
                    and _pid_alive(int(owner.get("pid", -1))):
                os.close(fd)
                raise StoreLockedError(self._describe_owner())
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        try:
            os.ftruncate(fd, 0)
            os.write(fd, info.encode())
        except OSError as exc:
            # the lock itself is held; only its owner note is missing. Still give it up: a
            # store on a full or failing disk is no place to start writing
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(fd)
            raise StoreWriteError(exc.errno, f"could not write lock {self.path}: {exc.strerror}") from exc
        self._fd = fd

    def _open(self) -> int:
        try:
            # never through a link planted at .lock: the lock note would overwrite its target
            return os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)
        except OSError as exc:
            raise StoreWriteError(exc.errno, f"could not create lock {self.path}: {exc.strerror}") from exc

    def _open_locked(self) -> int:
        """Open ``.lock`` and hold an exclusive flock on the file that is at that path now."""
        deadline = time.monotonic() + _PROBE_GRACE
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                # readers probe the lock with a momentary shared flock (is_locked): only a
                # lock still held after a short grace belongs to a writer
                if time.monotonic() < deadline:
                    time.sleep(0.002)
                    continue
                raise StoreLockedError(self._describe_owner()) from None
            # the previous owner unlinks .lock while releasing it: a lock taken on that
            # unlinked file would not exclude the next writer, so check it is still the path's
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except OSError:
                same = False
            if same:
                return fd
            os.close(fd)

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
