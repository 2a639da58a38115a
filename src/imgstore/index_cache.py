"""A consolidated, versioned cache of a store's frame index, so that week-long stores open instantly.

The cache persists a :class:`~imgstore.backends.scan.ScanState`: the chunk scanner starts
from it and reads only what changed. Without it, opening a store reads every chunk's index
(one small file per chunk: 1800 files for a week at 30 frames/s in 10000-frame chunks, 90000
in 200-frame chunks) and checks that frame numbers and times are sorted, which costs seconds
on a warm disk and minutes on a cold network share. The cache is one file in the store,
``.imgstore-index.cache``, holding the per-frame arrays of every chunk plus, per chunk, the
size and modification time of the index file they were read from.

Trust
    The cache is never believed blindly. On open, imgstore lists the chunks and ``stat()``\\ s
    each chunk's index (cheap: no file is read). A chunk is taken from the cache only if its
    index file has the same kind (``.npz``/``.yaml``), size and ``mtime_ns`` as when cached;
    changed, new or removed chunks are re-read (an *incremental* rebuild). Chunks without an
    index (a crashed or live writer's journal, a missing index) are never cached and always read
    the normal way, so their warnings and ``damaged_chunks`` are unchanged. A cache with a wrong
    magic, version, store identity, checksum, length or layout is ignored (debug log) and
    rebuilt. Index files modified less than :data:`RACY_WINDOW_NS` before the cache took their
    ``stat`` could have been modified again without a visible mtime change (coarse file system
    clocks), so they are re-read and compared on every open until a later cache supersedes
    them; the first, last and one random cached chunk are also re-read and compared as a spot
    check.

Who writes it
    * a writer, when it closes (it holds the lock, so nothing else is changing the store);
    * :func:`save_index` (``store.save_index()``), on request;
    * a reader, only for stores of at least :data:`READER_WRITE_MIN_CHUNKS` chunks whose cache
      is missing or stale, that no live writer has locked and whose folder is writable.
      Reading a small store therefore never changes a file, and a read-only store or file
      system opens normally (without writing a cache). From :data:`BACKGROUND_WRITE_MIN_FRAMES`
      frames on, the reader's open returns while a thread writes the file; the store's
      ``close()``, a later open of the same store in the process, and the process's exit wait
      for it (:func:`wait_for_write`).

Set the environment variable ``IMGSTORE_INDEX_CACHE=0`` to neither read nor write caches.

File layout (all integers little-endian)::

    16 bytes   magic b"\\x93IMGSTORE-INDEX\\n"
    8 bytes    header length H (uint64)
    4 bytes    CRC-32 of the header
    H bytes    header: UTF-8 JSON (format version, store identity, stat time, sortedness,
               and for each array its dtype, length and byte offset)
    ...        zero padding; every array starts at a multiple of 64 bytes
    arrays     chunk_number, chunk_kind, chunk_size, chunk_mtime_ns, chunk_length (one entry per
               cached chunk, empty chunks included; CRC-32 in the header), frame_number (int64),
               frame_time (float64), and when they are not already sorted the stable sort order
               and sorted values of each (``number_order``/``number_keys``,
               ``time_order``/``time_keys``), so lookups stay O(log n) without an O(n log n) sort.

The big arrays are read by page when a lookup needs them (:mod:`imgstore.lazy_index`):
opening does not read them, lookups read only the pages a search visits and keep a few MB.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

from . import ondisk
from ._version import __version__
from .backends.scan import ChunkScanner, ScanResult, ScanState, StateMismatch
from .checksums import frames_digest
from .errors import StoreWriteError
from .lazy_index import local_arrays, remote_arrays
from .run_array import RunArray
from .storage import Storage

__all__ = [
    "CACHE_FILENAME",
    "CACHE_VERSION",
    "READER_WRITE_MIN_CHUNKS",
    "CacheInvalid",
    "cache_enabled",
    "cache_path",
    "open_index",
    "read_cache_header",
    "save",
    "save_index",
    "wait_for_write",
    "write_after_close",
]

log = logging.getLogger("imgstore.index_cache")

#: name of the cache file in the store folder (``remove_store_files`` deletes ``.imgstore*``)
CACHE_FILENAME = ".imgstore-index.cache"
#: bumped whenever the layout or meaning of the file changes; other versions are ignored
CACHE_VERSION = 2
#: a reader writes a missing or stale cache only for stores with at least this many chunks
READER_WRITE_MIN_CHUNKS = 50
#: a reader writes the cache of a store of at least this many frames from a background thread,
#: so that the first open returns before the file is on disk: writing the 290 MB cache of
#: 18.1 M frames took 0.40 s of a 0.9 s first open here (~22 ns per frame); below 1 M frames
#: the write takes < 25 ms and a thread would not pay
BACKGROUND_WRITE_MIN_FRAMES = 1_000_000

_MAGIC = b"\x93IMGSTORE-INDEX\n"
_PREFIX = struct.Struct("<QI")  # header length, header CRC-32
_ALIGN = 64
_MAX_HEADER = 1 << 20
_FORMAT_NAME = "imgstore-index-cache"
_BLOCK = 1 << 20  # items per write of an array made on the fly
_ENV = "IMGSTORE_INDEX_CACHE"

# (name, dtype) of the per-chunk table and the optional per-frame arrays
_TABLE_FIELDS = (("chunk_number", "<i8"), ("chunk_kind", "<i1"), ("chunk_size", "<i8"),
                 ("chunk_mtime_ns", "<i8"), ("chunk_length", "<i8"), ("chunk_digest", "<u8"))
_FRAME_FIELDS = {"frame_number": "<i8", "frame_time": "<f8", "number_order": "<i8", "number_keys": "<i8",
                 "time_order": "<i8", "time_keys": "<f8"}

Identity = Mapping[str, Any]


class CacheInvalid(StateMismatch):
    """The cache file cannot be used (the message says why). Opening logs it and rebuilds."""


def cache_enabled() -> bool:
    """False when ``IMGSTORE_INDEX_CACHE`` is set to ``0``/``false``/``no``/``off``."""
    return os.environ.get(_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_path(basedir: str | os.PathLike, storage: Storage | None = None) -> str:
    """Path of the index cache of the store in ``basedir``."""
    return storage.join(os.fspath(basedir), CACHE_FILENAME) if storage else os.path.join(basedir, CACHE_FILENAME)


# ============================================================================ the file


def _table_crc(arrays: dict[str, np.ndarray]) -> int:
    crc = 0
    for name, dtype in _TABLE_FIELDS:
        crc = zlib.crc32(np.ascontiguousarray(arrays[name], dtype=dtype).tobytes(), crc)
    return crc


def _write_file(storage: Storage, path: str, identity: Identity, cached: ScanState) -> None:
    """Write ``cached`` (contiguous, sortedness filled in) to ``path`` atomically."""
    # a state read from a file keeps the digests it was read with: damage is never re-certified
    digest = cached.digest if cached.digest is not None else np.array(
        [frames_digest(*cached.frames(r)) for r in range(len(cached.chunk_number))], dtype=np.uint64)
    arrays: dict[str, np.ndarray] = {
        "chunk_number": cached.chunk_number, "chunk_kind": cached.kind, "chunk_size": cached.size,
        "chunk_mtime_ns": cached.mtime_ns, "chunk_length": cached.length, "chunk_digest": digest,
        "frame_number": cached.frame_number, "frame_time": cached.frame_time,
    }
    header: dict[str, Any] = {
        "format": _FORMAT_NAME, "version": CACHE_VERSION, "store": dict(identity),
        "stat_time_ns": int(cached.stat_time_ns), "n_frames": len(cached.frame_number),
        "n_chunks": len(cached.chunk_number), "written_by": f"imgstore {__version__}",
        "number_sorted": None, "time_sorted": None,
    }
    for what, by in (("number", cached.by_number), ("time", cached.by_time)):
        if by is not None:
            order, keys = by
            header[f"{what}_sorted"] = order is None
            if order is not None:
                arrays[f"{what}_order"] = order
                arrays[f"{what}_keys"] = keys
    dtypes = {name: dtype for name, dtype in _TABLE_FIELDS} | _FRAME_FIELDS
    header["table_crc32"] = _table_crc(arrays)

    # offsets depend on the header length, which depends on the offsets: iterate to a fixed point
    # (the slack after the header makes the second pass stable in practice)
    layout: dict[str, dict[str, Any]] = {}
    for _ in range(10):
        header["arrays"] = layout
        header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
        offset = _align(len(_MAGIC) + _PREFIX.size + len(header_bytes) + 256)
        new_layout = {}
        for name, arr in arrays.items():
            new_layout[name] = {"dtype": dtypes[name], "length": len(arr), "offset": offset}
            offset = _align(offset + len(arr) * np.dtype(dtypes[name]).itemsize)
        new_layout["_end"] = {"dtype": "|u1", "length": 0, "offset": offset}
        if new_layout == layout:
            break
        layout = new_layout
    header["arrays"] = layout
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    first_offset = min(spec["offset"] for spec in layout.values())
    if len(_MAGIC) + _PREFIX.size + len(header_bytes) > first_offset:  # pragma: no cover - cannot converge
        raise StoreWriteError(0, f"could not lay out index cache {path}")
    file_size = layout["_end"]["offset"]

    # a unique temporary name: several readers (dask workers) may build the same cache at once
    with storage.atomic_write(path, unique=True) as f:
        f.write(_MAGIC + _PREFIX.pack(len(header_bytes), zlib.crc32(header_bytes)) + header_bytes)
        for name, arr in arrays.items():
            f.write(b"\0" * (layout[name]["offset"] - f.tell()))
            if isinstance(arr, RunArray):
                # made into values a block at a time: the whole array would stay in the RunArray
                for a in range(0, len(arr), _BLOCK):
                    f.write(memoryview(arr[a:a + _BLOCK]).cast("B"))
                continue
            data = np.ascontiguousarray(arr, dtype=dtypes[name])
            f.write(memoryview(data.data).cast("B"))
        f.write(b"\0" * (file_size - f.tell()))


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def read_cache_header(path: str | os.PathLike, storage: Storage | None = None) -> dict[str, Any]:
    """The JSON header of a cache file, for inspection.

    Raises
    ------
    CacheInvalid
        Not a cache file, or its header is damaged (an :class:`~imgstore.errors.IndexCorruptError`).
    """
    from .storage import LOCAL

    storage = storage or LOCAL
    path = os.fspath(path)
    token = storage.stat_token(path)
    with storage.open_read(path) as f:
        return _read_header(f, token.size if token else 0, path)


def _read_header(f: IO[bytes], file_size: int, path: str) -> dict[str, Any]:
    prefix = f.read(len(_MAGIC) + _PREFIX.size)
    if len(prefix) < len(_MAGIC) + _PREFIX.size or not prefix.startswith(_MAGIC):
        raise CacheInvalid(f"{path}: not an imgstore index cache (bad magic)")
    hlen, hcrc = _PREFIX.unpack(prefix[len(_MAGIC):])
    if hlen > min(_MAX_HEADER, file_size):
        raise CacheInvalid(f"{path}: header length {hlen} is impossible for a file of {file_size} bytes")
    header_bytes = f.read(hlen)
    if len(header_bytes) != hlen or zlib.crc32(header_bytes) != hcrc:
        raise CacheInvalid(f"{path}: header checksum mismatch")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheInvalid(f"{path}: header is not JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != _FORMAT_NAME:
        raise CacheInvalid(f"{path}: header format {header.get('format') if isinstance(header, dict) else header!r}"
                           f" is not {_FORMAT_NAME!r}")
    return header


def _open_file(storage: Storage, path: str, identity: Identity) -> ScanState:
    """Map a cache file, checking everything that can be checked without reading the arrays."""
    token = storage.stat_token(path)
    if token is None:
        raise CacheInvalid(f"{path}: no cache")
    try:
        f = storage.open_read(path)
    except FileNotFoundError:
        raise CacheInvalid(f"{path}: no cache") from None
    except OSError as exc:
        raise CacheInvalid(f"{path}: unreadable ({exc.strerror})") from None
    with f:
        file_size = token.size
        header = _read_header(f, file_size, path)
        version = header.get("version")
        if version != CACHE_VERSION:
            raise CacheInvalid(f"{path}: cache version {version!r}, this imgstore reads {CACHE_VERSION}")
        if header.get("store") != dict(identity):
            raise CacheInvalid(f"{path}: cache is of store {header.get('store')!r}, not {dict(identity)!r}")
        layout = header.get("arrays")
        if not isinstance(layout, dict) or layout.get("_end", {}).get("offset") != file_size:
            raise CacheInvalid(f"{path}: file size {file_size} differs from the header's layout (truncated?)")
        raw = None
        local_file = storage.open_ranges(path) if file_size else None
        if not file_size:
            raw = np.zeros(0, np.uint8)
        elif local_file is not None:
            # read by page when a lookup needs them: opening touches none of the big arrays
            if local_file.size != file_size:
                local_file.close()
                raise CacheInvalid(f"{path}: changed while being read")
        elif not storage.is_remote:
            f.seek(0)
            raw = np.frombuffer(f.read(), dtype=np.uint8)
        if raw is not None and len(raw) != file_size:
            raise CacheInvalid(f"{path}: changed while being read")

    dtypes = {name: dtype for name, dtype in _TABLE_FIELDS} | _FRAME_FIELDS
    specs: dict[str, tuple[int, int, str]] = {}
    for name, spec in layout.items():
        if name == "_end":
            continue
        if name not in dtypes or not isinstance(spec, dict) or spec.get("dtype") != dtypes[name]:
            raise CacheInvalid(f"{path}: unexpected array {name!r} ({spec!r})")
        offset, length = spec.get("offset"), spec.get("length")
        if not (isinstance(offset, int) and isinstance(length, int) and offset % _ALIGN == 0 and length >= 0):
            raise CacheInvalid(f"{path}: bad layout of {name!r}: {spec!r}")
        nbytes = length * np.dtype(dtypes[name]).itemsize
        if offset + nbytes > file_size:
            raise CacheInvalid(f"{path}: array {name!r} runs past the end of the file")
        specs[name] = (offset, length, dtypes[name])
    eager = [n for n, _ in _TABLE_FIELDS]
    if local_file is not None:
        # the chunk table now (one pread), the per-frame arrays page by page when a lookup needs
        # them (imgstore.lazy_index: a memory map would leave 2 MiB resident per page touched)
        arrays: dict[str, Any] = local_arrays(local_file, specs, eager)
    elif raw is None:
        # remote storage: the chunk table now (one request), the per-frame arrays page by page when
        # a lookup needs them (imgstore.lazy_index)
        arrays = remote_arrays(lambda ranges: storage.read_ranges(path, ranges), specs, eager)
    else:
        # a file system that is neither local nor remote (read whole above)
        arrays = {name: np.asarray(raw[offset:offset + length * np.dtype(dtype).itemsize].view(dtype))
                  for name, (offset, length, dtype) in specs.items()}

    missing = [n for n, _ in _TABLE_FIELDS if n not in arrays] + [n for n in ("frame_number", "frame_time")
                                                                   if n not in arrays]
    if missing:
        raise CacheInvalid(f"{path}: arrays {missing} missing")
    n_chunks = len(arrays["chunk_number"])
    if any(len(arrays[n]) != n_chunks for n, _ in _TABLE_FIELDS) or header.get("n_chunks") != n_chunks:
        raise CacheInvalid(f"{path}: chunk table columns have different lengths")
    if _table_crc(arrays) != header.get("table_crc32"):
        raise CacheInvalid(f"{path}: chunk table checksum mismatch")
    chunks, lengths = arrays["chunk_number"], arrays["chunk_length"]
    if n_chunks and (np.any(np.diff(chunks) <= 0) or np.any(lengths < 0)
                     or np.any((arrays["chunk_kind"] < 0) | (arrays["chunk_kind"] >= len(ondisk.INDEX_SUFFIXES)))):
        raise CacheInvalid(f"{path}: chunk table is not sorted, or has negative lengths or unknown kinds")
    n_frames = int(lengths.sum()) if n_chunks else 0
    if not (len(arrays["frame_number"]) == len(arrays["frame_time"]) == n_frames == header.get("n_frames")):
        raise CacheInvalid(f"{path}: {len(arrays['frame_number'])} frame numbers, {len(arrays['frame_time'])} "
                           f"frame times, but the chunk table counts {n_frames} frames")
    stat_time = header.get("stat_time_ns")
    if not isinstance(stat_time, int):
        raise CacheInvalid(f"{path}: stat_time_ns {stat_time!r} is not an integer")

    by: dict[str, tuple[np.ndarray | None, np.ndarray] | None] = {}
    for what, values in (("number", arrays["frame_number"]), ("time", arrays["frame_time"])):
        flag = header.get(f"{what}_sorted")
        if flag is True:
            by[what] = (None, values)
        elif flag is False:
            order, keys = arrays.get(f"{what}_order"), arrays.get(f"{what}_keys")
            if order is None or keys is None or len(order) != n_frames or len(keys) != n_frames:
                raise CacheInvalid(f"{path}: {what} sort order missing or of the wrong length")
            if n_frames and not (0 <= int(order[0]) < n_frames and 0 <= int(order[-1]) < n_frames):
                raise CacheInvalid(f"{path}: {what} sort order out of range")
            by[what] = (order, keys)
        elif flag is None:
            by[what] = None
        else:
            raise CacheInvalid(f"{path}: {what}_sorted {flag!r} is not a boolean")
    starts = np.zeros(n_chunks, dtype=np.int64)
    if n_chunks:
        np.cumsum(lengths[:-1], out=starts[1:])
    return ScanState(chunk_number=chunks, kind=arrays["chunk_kind"], size=arrays["chunk_size"],
                     mtime_ns=arrays["chunk_mtime_ns"], length=lengths, start=starts,
                     frame_number=arrays["frame_number"], frame_time=arrays["frame_time"],
                     stat_time_ns=stat_time, by_number=by["number"], by_time=by["time"], origin=path,
                     digest=arrays["chunk_digest"])


# ============================================================================ entry points


def _may_write_as_reader(storage: Storage, basedir: str, n_chunks: int) -> bool:
    """Big and writable (the caller checked that no live writer is changing the store)."""
    if n_chunks < READER_WRITE_MIN_CHUNKS:
        return False  # reading a small store must never change a file
    return storage.can_write(basedir)


def _try_write(storage: Storage, basedir: str, identity: Identity, result: ScanResult, path: str | None = None,
               raise_errors: bool = False) -> bool:
    target = path or cache_path(basedir, storage)
    try:
        result.state.complete(result.index)
        _write_file(storage, target, identity, result.state)
    except StoreWriteError as exc:
        if raise_errors:
            raise
        log.debug("%s: index cache not written: %s", basedir, exc)
        return False
    except Exception:
        if raise_errors:
            raise
        # the cache is an optimisation: a bug in writing it must not stop a store from opening
        log.warning("%s: index cache not written (unexpected error)", basedir, exc_info=True)
        return False
    log.debug("%s: index cache written (%d chunks, %d frames)", target, len(result.state.chunk_number),
              len(result.state.frame_number))
    return True


# cache path -> the thread writing it (one at a time per file; see _write_soon)
_pending: dict[str, threading.Thread] = {}
_pending_lock = threading.Lock()


def wait_for_write(basedir: str, storage: Storage | None = None) -> None:
    """Return once no background thread of this process is writing the store's cache.

    A reader's :meth:`close` waits, so that a closed store has no file still being written.
    """
    path = cache_path(basedir, storage)
    with _pending_lock:
        thread = _pending.get(path)
    if thread is not None and thread is not threading.current_thread():
        thread.join()


def _write_soon(storage: Storage, basedir: str, identity: Identity, result: ScanResult) -> None:
    """Write a reader's cache: now for small stores, from a background thread for big ones.

    The thread is not a daemon: a process that exits right after opening still finishes the
    file (written atomically, so an interrupted write leaves no partial cache either way).
    """
    if len(result.state.frame_number) < BACKGROUND_WRITE_MIN_FRAMES:
        _try_write(storage, basedir, identity, result)
        return
    # the sorted views are filled in here, not in the thread: the store reads them
    result.state.complete(result.index)
    path = cache_path(basedir, storage)

    def write() -> None:
        try:
            _try_write(storage, basedir, identity, result)
        finally:
            with _pending_lock:
                if _pending.get(path) is thread:
                    del _pending[path]

    thread = threading.Thread(target=write, name=f"imgstore index cache {basedir}", daemon=False)
    wait_for_write(basedir, storage)
    with _pending_lock:
        _pending[path] = thread
    thread.start()


def load_state(storage: Storage, basedir: str, identity: Identity) -> ScanState | None:
    """The scan state saved in the store's cache, or None (missing, stale version, damaged...)."""
    # a cache this process is still writing is read once it is complete, not rebuilt again
    wait_for_write(basedir, storage)
    path = cache_path(basedir, storage)
    try:
        return _open_file(storage, path, identity)
    except CacheInvalid as exc:
        log.debug("index cache ignored: %s", exc)
    except Exception as exc:  # whatever a damaged file provokes: the cache is only ever an optimisation
        log.debug("index cache ignored: %s: %s: %s", path, type(exc).__name__, exc)
    return None


def open_index(scanner: ChunkScanner, storage: Storage, basedir: str, identity: Identity,
               may_write: bool) -> ScanResult:
    """Scan a store being opened, from its cache where the cache is still valid.

    With ``may_write`` (a reader, no live writer), a big store whose cache was missing or
    stale gets it written back (if its folder is writable).
    """
    if not cache_enabled():
        return scanner.scan()

    def rewrite(result: ScanResult) -> None:
        # the damaged file would only be found damaged again by the next reader
        if may_write and not storage.is_locked(basedir) and storage.can_write(basedir):
            _try_write(storage, basedir, identity, result)

    scanner.after_damage = rewrite
    result = scanner.scan_from(load_state(storage, basedir, identity), quiet=False, logger=log)
    n_chunks = len(result.state.chunk_number)
    if (not result.unchanged or result.refresh_racy) and n_chunks and may_write \
            and _may_write_as_reader(storage, basedir, n_chunks):
        _write_soon(storage, basedir, identity, result)
    return result


def save(scanner: ChunkScanner, storage: Storage, basedir: str, identity: Identity, previous: ScanState | None,
         path: str | os.PathLike | None = None) -> tuple[str, ScanState]:
    """Write a store's index cache on request; return its path and the state written.

    Re-validates against the disk first: what was loaded at open may have changed since.
    An explicit request: written even when ``IMGSTORE_INDEX_CACHE=0`` or the store is small.

    Raises
    ------
    StoreWriteError
        The file could not be written (read-only store...).
    """
    target = os.fspath(path) if path is not None else cache_path(basedir, storage)
    wait_for_write(basedir, storage)
    result = scanner.scan_from(previous, quiet=True, logger=log)
    _try_write(storage, basedir, identity, result, target, raise_errors=True)
    return target, result.state


def save_index(store: Any, path: str | os.PathLike | None = None) -> str | None:
    """``store.save_index_cache(path)``: write the index cache of a store opened for reading."""
    return store.save_index_cache(path)


def write_after_close(scanner: ChunkScanner, storage: Storage, basedir: str, identity: Identity) -> None:
    """Write the cache of a store whose writer just closed.

    Never raises for cache problems: the store itself is complete whatever happens here.
    """
    if not cache_enabled():
        return
    path = cache_path(basedir, storage)
    try:
        if not scanner.backend.list_chunks():
            # nothing to cache; a cache from before empty() would only be ignored later
            storage.remove(path)
            return
        # an appending writer reuses the cache of what was there before it
        result = scanner.scan_from(load_state(storage, basedir, identity), quiet=True, logger=log)
        if result.unchanged and not result.refresh_racy:
            return
        if len(result.state.chunk_number):
            _try_write(storage, basedir, identity, result)
    except (OSError, ValueError) as exc:  # ImgStoreError subclasses are among these
        log.debug("%s: index cache not written at close: %s", basedir, exc)
    except Exception:
        # the recording is complete and closed: a bug here must not turn close() into a failure
        log.warning("%s: index cache not written at close (unexpected error)", basedir, exc_info=True)
