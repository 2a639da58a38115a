"""The storage seam: the only module that touches the file system.

Every other layer (the on-disk format, the chunk scanner, the writers, the index cache,
repair) reads and writes a store's files through a :class:`Storage`:

read side (every storage)
    ``list_dir`` (names and kinds), ``read_bytes`` (whole or a byte range), ``open_read``
    (a seekable file object), ``stat_token`` (the freshness key of a file: size and mtime;
    None when missing), ``local_path`` (a real path for libraries that need one: PyAV; None
    for remote storage) and ``open_ranges`` (a local file held open for reads by byte range:
    :class:`RangeFile`; None for remote storage, whose ``read_ranges`` does that).

write side (:class:`LocalStorage` unless opened read-only)
    ``makedirs``, ``atomic_write`` (temporary sibling, flush, optional fsync, rename: a crash
    leaves the old file or the new one, never half a file), ``open_append`` (the append-only
    journals: one unbuffered write per record, cut back to the last whole record when a
    write fails), ``remove`` / ``remove_tree`` / ``adopt_file``, and ``lock`` (the writer's
    ``.lock``). Files are created with ``O_NOFOLLOW`` / ``O_EXCL`` where the call creates
    them, so a symlink planted in a store is never written through.

A storage opened with ``read_only=True`` refuses every write (:class:`StoreWriteError`
with ``EROFS``): a store opened that way takes no lock and writes no cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import mmap
import os
import shutil
import stat
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import IO, BinaryIO

import numpy as np

from ._lock import StoreLock, is_locked
from .errors import IndexCorruptError, StoreWriteError

__all__ = ["LOCAL", "PARTIAL_SUFFIX", "AppendFile", "DirEntry", "LocalStorage", "RangeFile", "StatToken", "Storage",
           "unique_temporary_name"]

#: suffix of temporary files; the chunk scanners of both libraries skip them
PARTIAL_SUFFIX = ".partial"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def unique_temporary_name(path: str) -> str:
    """A temporary sibling of ``path`` no other process uses (pid and a random tag)."""
    return f"{path}.{os.getpid()}-{os.urandom(4).hex()}{PARTIAL_SUFFIX}"


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | _NOFOLLOW, 0o644)


@dataclasses.dataclass(frozen=True)
class DirEntry:
    """One name in a folder."""

    name: str
    is_dir: bool
    is_file: bool


@dataclasses.dataclass(frozen=True)
class StatToken:
    """What tells whether a file changed: size, modification time (ns) and file identity.

    ``inode`` is the file's identity where the storage has one (0 otherwise): a file
    replaced by rename is a new inode even within one tick of a coarse clock.
    """

    size: int
    mtime_ns: int
    inode: int = 0


class Storage(ABC):
    """Where a store's files live (see the module documentation)."""


    @property
    def writable(self) -> bool:
        """True if the storage can write (a read-only local storage, or a remote one, cannot)."""
        return False

    # ------------------------------------------------------------------ paths

    def join(self, *parts: str) -> str:
        """Join path components."""
        return os.path.join(*parts)

    def dirname(self, path: str) -> str:
        """The folder of ``path``."""
        return os.path.dirname(path)

    def basename(self, path: str) -> str:
        """The last component of ``path``."""
        return os.path.basename(path)

    # ------------------------------------------------------------------ reading

    @abstractmethod
    def list_dir(self, path: str) -> list[DirEntry]:
        """The entries of a folder (``FileNotFoundError`` if it does not exist)."""

    @abstractmethod
    def read_bytes(self, path: str, start: int = 0, stop: int | None = None, limit: int | None = None) -> bytes:
        """The bytes ``[start, stop)`` of a file (all of it by default).

        With ``limit``, a file larger than ``limit`` bytes is refused (``EFBIG``) unread.
        """

    def read_buffer(self, path: str) -> np.ndarray:
        """A whole file in a new, writable ``uint8`` array (frames are decoded in place from it)."""
        return np.frombuffer(bytearray(self.read_bytes(path)), dtype=np.uint8)

    @abstractmethod
    def open_read(self, path: str) -> BinaryIO:
        """A seekable binary file object (``FileNotFoundError`` if missing)."""

    @abstractmethod
    def stat_token(self, path: str) -> StatToken | None:
        """The freshness key of a file or folder, None if it does not exist."""

    def exists(self, path: str) -> bool:
        """True if ``path`` exists."""
        return self.stat_token(path) is not None

    def is_link(self, path: str) -> bool:
        """True if ``path`` is a symbolic link (writers never write through one)."""
        return False

    def is_dir(self, path: str) -> bool:
        """True if ``path`` is a folder."""
        parent, name = os.path.split(os.path.normpath(path))
        try:
            return any(e.name == name and e.is_dir for e in self.list_dir(parent or "."))
        except OSError:
            return False

    def local_path(self, path: str) -> str | None:
        """A path on the local file system for ``path`` (None when there is none)."""
        return None

    def open_ranges(self, path: str) -> RangeFile | None:
        """``path`` held open for reads by byte range, or None where :meth:`read_ranges` is the way (remote).

        Raises
        ------
        OSError
            The file cannot be opened.
        """
        return None

    # ------------------------------------------------------------------ writing

    def _refuse(self, what: str, path: str) -> StoreWriteError:
        return StoreWriteError(errno.EROFS, f"cannot {what} {path}: the store is opened read-only", path)

    def makedirs(self, path: str) -> None:
        """Create a folder and its parents."""
        raise self._refuse("create", path)

    @contextlib.contextmanager
    def atomic_write(self, path: str, fsync: bool = False, unique: bool = False) -> Iterator[IO[bytes]]:
        """Write ``path`` through a temporary sibling renamed into place on success."""
        raise self._refuse("write", path)
        yield  # pragma: no cover - a generator for contextmanager

    def write_bytes(self, path: str, data: bytes, fsync: bool = False) -> None:
        """Write ``data`` to ``path`` atomically."""
        self.write_parts(path, [data], fsync)

    def write_parts(self, path: str, parts: Sequence[bytes | memoryview], fsync: bool = False) -> None:
        """Write the concatenation of ``parts`` to ``path`` atomically, without joining them first."""
        with self.atomic_write(path, fsync=fsync) as f:
            for part in parts:
                f.write(part)

    def open_append(self, path: str, header: bytes | None = None) -> AppendFile:
        """An append-only file; with ``header`` a new file starting with it (atomically)."""
        raise self._refuse("append to", path)

    def remove(self, path: str) -> None:
        """Delete a file (nothing if it does not exist)."""
        raise self._refuse("remove", path)

    def remove_tree(self, path: str) -> None:
        """Delete a folder and everything in it (nothing if it does not exist)."""
        raise self._refuse("remove", path)

    def adopt_file(self, source: str, path: str, move: bool = True) -> None:
        """Move (or copy) a local file ``source`` into the store at ``path``."""
        raise self._refuse("write", path)

    def move(self, path: str, destination: str) -> None:
        """Rename a file or folder inside the store; refuses to replace an existing ``destination``."""
        raise self._refuse("move", path)

    def can_write(self, path: str) -> bool:
        """True if files can be created in folder ``path``."""
        return False

    def free_bytes(self, path: str) -> int | None:
        """Bytes an unprivileged writer can still use on the file system of ``path`` (None: unknown)."""
        return None

    def reserve(self, path: str, nbytes: int) -> None:
        """Create ``path`` holding ``nbytes`` of allocated space (released by removing it)."""
        raise self._refuse("write", path)

    def lock(self, basedir: str):
        """The writer lock of the store in ``basedir`` (not yet acquired)."""
        raise self._refuse("lock", basedir)

    def is_locked(self, basedir: str) -> bool:
        """True if a live writer holds the store's lock."""
        return False

    # ------------------------------------------------------------------ remote storage (imgstore.remote)

    @property
    def is_remote(self) -> bool:
        """True for object storage reached over a network: every request costs a round trip.

        The chunk scanner then keeps the keys of a saved state instead of asking for each chunk's
        (see :mod:`imgstore.backends.scan`), and a chunk without an index is one still being uploaded.
        """
        return False

    def stat_tokens(self, paths: Sequence[str]) -> list[StatToken | None]:
        """:meth:`stat_token` of many files (remote storage asks for them concurrently)."""
        return [self.stat_token(p) for p in paths]

    def prefetch(self, paths: Sequence[str]) -> None:
        """Hint that these whole files are read next (remote storage fetches them concurrently)."""
        return None  # local files: read when asked

    def read_ranges(self, path: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes of each ``(start, stop)`` range of a file (remote storage: concurrently)."""
        return [self.read_bytes(path, start, stop) for start, stop in ranges]

    def expect_read(self, path: str, nbytes: int) -> None:
        """Hint that reading ``path`` from its next jump on will take about ``nbytes`` (remote storage asks
        for that much at once: a video frame's keyframe-to-frame bytes)."""
        return None  # local files: the OS reads ahead

    def forget(self) -> None:
        """Drop what was cached about the files (listings, sizes): the store may have changed."""
        return None  # local files: nothing is cached


class RangeFile:
    """A local file held open for reading by byte range (``pread``) and, for whole arrays, by memory map.

    The descriptor stays on the file that was opened: a cache replaced on disk (written to a
    temporary name and renamed) leaves this one's pages consistent, as a memory map would.
    It is closed when the last array reading from it is gone.

    Parameters
    ----------
    path
        The file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))
        self._finalizer = weakref.finalize(self, os.close, self._fd)
        self._lock = threading.Lock()
        self._map: mmap.mmap | None = None
        self.size = os.fstat(self._fd).st_size

    def close(self) -> None:
        """Close the descriptor now (arrays read from it can no longer fetch pages)."""
        self._finalizer()

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Those byte ranges of the file, exactly.

        Raises
        ------
        IndexCorruptError
            The file is shorter than a range (truncated in place while open).
        """
        return [self._read(start, stop) for start, stop in ranges]

    def _read(self, start: int, stop: int) -> bytes:
        parts: list[bytes] = []
        at = start
        while at < stop:
            if hasattr(os, "pread"):
                data = os.pread(self._fd, stop - at, at)
            else:  # pragma: no cover - Windows: no pread, so the offset is shared
                with self._lock:
                    os.lseek(self._fd, at, os.SEEK_SET)
                    data = os.read(self._fd, stop - at)
            if not data:
                raise IndexCorruptError(f"{self.path} ends at byte {at}, before {stop}: truncated while open")
            parts.append(data)
            at += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def mapped(self, offset: int, length: int, dtype: np.dtype) -> np.ndarray:
        """``length`` items of ``dtype`` at ``offset``, memory-mapped (nothing read or copied now)."""
        with self._lock:
            if self._map is None:
                self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
        if offset + length * dtype.itemsize > len(self._map):
            raise IndexCorruptError(f"{self.path}: an array runs past the end of the file ({len(self._map)} bytes)")
        return np.frombuffer(self._map, dtype=dtype, count=length, offset=offset)


class AppendFile:
    """An append-only file written one whole record at a time (the writers' journals).

    Each :meth:`append` is one unbuffered ``write``; if it fails (disk full) the file is
    cut back to the last whole record, so a reader never sees a torn record followed by
    more. :meth:`sync` flushes to stable storage.
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self.size = os.fstat(fd).st_size

    def append(self, data: bytes) -> None:
        """Append ``data`` whole, or raise :class:`StoreWriteError` leaving the file as it was."""
        if self._fd is None:
            raise StoreWriteError(errno.EBADF, f"{self.path} is closed", self.path)
        try:
            if os.write(self._fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write (disk full?)")
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise StoreWriteError(exc.errno, f"could not append to {self.path}: {exc.strerror}", self.path) \
                from exc
        self.size += len(data)

    def sync(self) -> None:
        """Flush to stable storage (errors ignored: the data is with the OS already)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


class LocalStorage(Storage):
    """Files on a local (or mounted) file system.

    Parameters
    ----------
    read_only
        Refuse every write: no lock, no cache, no temporary file is ever created.
    """

    def __init__(self, read_only: bool = False) -> None:
        self.read_only = bool(read_only)

    @property
    def writable(self) -> bool:
        return not self.read_only

    def __repr__(self) -> str:
        return f"LocalStorage(read_only={self.read_only})"

    # ------------------------------------------------------------------ reading

    def list_dir(self, path: str) -> list[DirEntry]:
        with os.scandir(path) as it:
            return [DirEntry(e.name, e.is_dir(), e.is_file()) for e in it]

    def read_bytes(self, path: str, start: int = 0, stop: int | None = None, limit: int | None = None) -> bytes:
        with self.open_read(path) as f:
            size = os.fstat(f.fileno()).st_size
            if limit is not None and size > limit:
                raise OSError(errno.EFBIG, f"{path} is {size} bytes, more than the {limit} read here", path)
            if start:
                f.seek(start)
            return f.read() if stop is None else f.read(max(0, stop - start))

    def read_buffer(self, path: str) -> np.ndarray:
        # read straight into the array the frame is made of: read_bytes plus a copy to make it
        # writable cost 3.4x a 640x480 npy frame's np.load (1 171-1 589 vs 5 862-6 030 reads/s);
        # np.empty, not bytearray, which zero-fills first (0.05-0.1 ms of a 6 MB frame)
        with self.open_read(path) as f:
            size = os.fstat(f.fileno()).st_size
            buf = np.empty(size, dtype=np.uint8)
            got = 0
            while got < size:
                n = f.readinto(buf[got:])  # type: ignore[attr-defined]  # a BufferedReader
                if not n:
                    break  # shorter than fstat said (truncated meanwhile): what is there
                got += n
            return buf[:got]

    def open_read(self, path: str) -> BinaryIO:
        # non-blocking: a FIFO planted where a store file belongs must not hang the reader;
        # only regular files are read (a device such as /dev/zero would never end)
        fd = os.open(path, os.O_RDONLY | _NONBLOCK)
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", path)
            if not stat.S_ISREG(mode):
                raise OSError(errno.EINVAL, "not a regular file", path)
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    def stat_token(self, path: str) -> StatToken | None:
        try:
            st = os.stat(path)
        except (OSError, ValueError):  # missing, a parent that is not a folder, a NUL in the name
            return None
        return StatToken(int(st.st_size), int(st.st_mtime_ns), int(st.st_ino))

    def stat_tokens(self, paths: Sequence[str]) -> list[StatToken | None]:
        # one tight loop: a cached open of 1 800 chunks is mostly this (~3 µs per stat here)
        out: list[StatToken | None] = []
        append, stat_, token = out.append, os.stat, StatToken
        for path in paths:
            try:
                st = stat_(path)
            except (OSError, ValueError):
                append(None)
                continue
            append(token(st.st_size, st.st_mtime_ns, st.st_ino))
        return out

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def is_link(self, path: str) -> bool:
        return os.path.islink(path)

    def local_path(self, path: str) -> str | None:
        return path

    def open_ranges(self, path: str) -> RangeFile | None:
        return RangeFile(path)

    # ------------------------------------------------------------------ writing

    def _check_writable(self, what: str, path: str) -> None:
        if self.read_only:
            raise self._refuse(what, path)

    def makedirs(self, path: str) -> None:
        self._check_writable("create", path)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise StoreWriteError(exc.errno, f"could not create folder {path}: {exc.strerror}", path) from exc

    @contextlib.contextmanager
    def atomic_write(self, path: str, fsync: bool = False, unique: bool = False) -> Iterator[IO[bytes]]:
        self._check_writable("write", path)
        # a unique temporary name where several processes may write the same file at once
        tmp = unique_temporary_name(path) if unique else path + PARTIAL_SUFFIX
        try:
            if not unique:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)  # a leftover of an interrupted write (never followed if a link)
            # 'x': created here (O_EXCL), never through a link planted at the temporary name
            with open(tmp, "xb", opener=_nofollow) as f:
                yield f
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StoreWriteError(exc.errno, f"could not write {path}: {exc.strerror or exc}", path) from exc
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def open_append(self, path: str, header: bytes | None = None) -> AppendFile:
        self._check_writable("append to", path)
        if header is not None:
            self.write_bytes(path, header)
            flags = os.O_WRONLY | os.O_APPEND | _NOFOLLOW
        else:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise StoreWriteError(exc.errno, f"could not open {path}: {exc.strerror}", path) from exc
        return AppendFile(path, fd)

    def remove(self, path: str) -> None:
        self._check_writable("remove", path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreWriteError(exc.errno, f"could not remove {path}: {exc.strerror}", path) from exc

    def remove_tree(self, path: str) -> None:
        self._check_writable("remove", path)
        if os.path.islink(path):
            self.remove(path)  # a link to a folder: remove the link, never what it points to
            return
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreWriteError(exc.errno, f"could not remove {path}: {exc.strerror}", path) from exc

    def adopt_file(self, source: str, path: str, move: bool = True) -> None:
        self._check_writable("write", path)
        try:
            (shutil.move if move else shutil.copyfile)(source, path)
        except OSError as exc:
            raise StoreWriteError(exc.errno, f"could not {'move' if move else 'copy'} {source} to {path}: "
                                             f"{exc.strerror}", path) from exc

    def move(self, path: str, destination: str) -> None:
        self._check_writable("move", path)
        try:
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            # rename never follows a link at either end; the check keeps a file from being replaced
            if os.path.lexists(destination):
                raise FileExistsError(errno.EEXIST, "destination exists", destination)
            os.rename(path, destination)
        except OSError as exc:
            raise StoreWriteError(exc.errno, f"could not move {path} to {destination}: {exc.strerror or exc}",
                                  path) from exc

    def can_write(self, path: str) -> bool:
        return not self.read_only and os.access(path, os.W_OK)

    def free_bytes(self, path: str) -> int | None:
        try:
            st = os.statvfs(path)
        except (OSError, AttributeError):  # gone, or no statvfs (Windows)
            return None
        return int(st.f_bavail) * int(st.f_frsize)

    def reserve(self, path: str, nbytes: int) -> None:
        with self.atomic_write(path) as f:
            try:
                # blocks allocated now, so that removing the file frees them for whoever needs them
                os.posix_fallocate(f.fileno(), 0, nbytes)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                block = b"\0" * (1 << 20)  # a file system without fallocate: zeros do the same
                for start in range(0, nbytes, len(block)):
                    f.write(block[: nbytes - start])
            except AttributeError:  # no posix_fallocate (macOS, Windows)
                f.truncate(nbytes)

    def lock(self, basedir: str):
        self._check_writable("lock", basedir)
        return StoreLock(basedir)

    def is_locked(self, basedir: str) -> bool:
        return is_locked(basedir)

    def mtime(self, path: str) -> float:
        """Modification time of ``path`` in seconds since the epoch."""
        token = self.stat_token(path)
        if token is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return token.mtime_ns / 1e9


#: the storage of local paths (what ``new_for_filename('/some/folder')`` uses)
LOCAL = LocalStorage()

_ = time  # re-exported for the journals' fsync clock in tests that patch it
