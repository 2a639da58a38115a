"""A consolidated, versioned cache of a store's frame index, so that week-long stores open instantly.

Without it, opening a store reads every chunk's index (one small file per chunk: 1800 files
for a week at 30 frames/s in 10000-frame chunks, 90000 in 200-frame chunks) and checks that
frame numbers and times are sorted, which costs seconds on a warm disk and minutes on a cold
network share. The cache is one file in the store, ``.imgstore-index.cache``, holding the
per-frame arrays of every chunk plus, per chunk, the size and modification time of the index
file they were read from.

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
      system opens normally (without writing a cache).

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

The big arrays are memory-mapped read-only: opening does not read or copy them, lookups touch
only the pages a binary search visits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import struct
import time
import weakref
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import ondisk
from .errors import IndexCorruptError, StoreWriteError
from .frame_index import FrameIndex

if TYPE_CHECKING:
    from .backends.base import ImgStore

__all__ = [
    "CACHE_FILENAME",
    "CACHE_VERSION",
    "READER_WRITE_MIN_CHUNKS",
    "RACY_WINDOW_NS",
    "cache_path",
    "load_index",
    "save_index",
    "write_after_close",
    "read_cache_header",
    "cache_enabled",
    "CacheInvalid",
]

log = logging.getLogger("imgstore.index_cache")

#: name of the cache file in the store folder (``remove_store_files`` deletes ``.imgstore*``)
CACHE_FILENAME = ".imgstore-index.cache"
#: bumped whenever the layout or meaning of the file changes; other versions are ignored
CACHE_VERSION = 1
#: a reader writes a missing or stale cache only for stores with at least this many chunks
READER_WRITE_MIN_CHUNKS = 50
#: index files modified within this window before the cache took their stat are re-verified
RACY_WINDOW_NS = 2_000_000_000
#: a reader rewrites a big store's valid cache once this many racy entries have aged out
_REFRESH_MIN_RACY = 8

_MAGIC = b"\x93IMGSTORE-INDEX\n"
_PREFIX = struct.Struct("<QI")  # header length, header CRC-32
_ALIGN = 64
_MAX_HEADER = 1 << 20
_FORMAT_NAME = "imgstore-index-cache"
_ENV = "IMGSTORE_INDEX_CACHE"

# (name, dtype) of the per-chunk table and the optional per-frame arrays
_TABLE_FIELDS = (("chunk_number", "<i8"), ("chunk_kind", "<i1"), ("chunk_size", "<i8"),
                 ("chunk_mtime_ns", "<i8"), ("chunk_length", "<i8"))
_FRAME_FIELDS = {"frame_number": "<i8", "frame_time": "<f8", "number_order": "<i8", "number_keys": "<i8",
                 "time_order": "<i8", "time_keys": "<f8"}

#: what each opened store's index was built from, for :func:`save_index` (no attribute on the store)
_STATE: weakref.WeakKeyDictionary[Any, _Cached] = weakref.WeakKeyDictionary()


class CacheInvalid(IndexCorruptError):
    """The cache file cannot be used (the message says why). Opening logs it and rebuilds."""


def cache_enabled() -> bool:
    """False when ``IMGSTORE_INDEX_CACHE`` is set to ``0``/``false``/``no``/``off``."""
    return os.environ.get(_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_path(basedir: str | os.PathLike) -> str:
    """Path of the index cache of the store in ``basedir``."""
    return os.path.join(os.fspath(basedir), CACHE_FILENAME)


# ============================================================================ chunk stats


@dataclasses.dataclass(frozen=True)
class _OnDisk:
    """A chunk as listed now: its index file's kind (-1: no index), size and mtime."""

    chunk_n: int
    base: str
    kind: int
    size: int
    mtime_ns: int


def _stat_index(base: str) -> tuple[int, int, int]:
    # same precedence as ondisk.find_index_file: .npz before .yaml
    for kind, suffix in enumerate(ondisk.INDEX_SUFFIXES):
        try:
            st = os.stat(base + suffix)
        except OSError:  # missing, or a parent that is not a folder
            continue
        return kind, int(st.st_size), int(st.st_mtime_ns)
    return -1, 0, 0


def _scan(store: ImgStore) -> list[_OnDisk]:
    return [_OnDisk(chunk_n, base, *_stat_index(base)) for chunk_n, base in sorted(store._list_chunks())]


# ============================================================================ cached data


@dataclasses.dataclass
class _Cached:
    """Frame data of a set of chunks with the index stats it was read under.

    ``start``/``length`` locate each chunk's frames in ``frame_number``/``frame_time``.
    ``by_number``/``by_time`` are FrameIndex's ``(order or None, sorted keys)`` when known and
    valid for exactly these arrays.
    """

    chunk_number: np.ndarray
    kind: np.ndarray
    size: np.ndarray
    mtime_ns: np.ndarray
    length: np.ndarray
    start: np.ndarray
    frame_number: np.ndarray
    frame_time: np.ndarray
    stat_time_ns: int
    by_number: tuple[np.ndarray | None, np.ndarray] | None = None
    by_time: tuple[np.ndarray | None, np.ndarray] | None = None
    origin: str = "memory"

    def frames(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        a = int(self.start[row])
        b = a + int(self.length[row])
        return self.frame_number[a:b], self.frame_time[a:b]

    def is_contiguous(self) -> bool:
        """True if the chunks' frames are exactly the arrays, in order."""
        ends = np.cumsum(self.length)
        return (len(self.frame_number) == (int(ends[-1]) if len(ends) else 0)
                and bool(np.all(self.start == ends - self.length)))


def _cached_from_entries(entries: Sequence[tuple[_OnDisk, np.ndarray, np.ndarray]], stat_time_ns: int) -> _Cached:
    lengths = np.array([len(fn) for _, fn, _ in entries], dtype=np.int64)
    starts = np.zeros(len(entries), dtype=np.int64)
    if len(entries):
        np.cumsum(lengths[:-1], out=starts[1:])
    fns = [np.asarray(fn, dtype=np.int64) for _, fn, _ in entries]
    fts = [np.asarray(ft, dtype=np.float64) for _, _, ft in entries]
    return _Cached(
        chunk_number=np.array([d.chunk_n for d, _, _ in entries], dtype=np.int64),
        kind=np.array([d.kind for d, _, _ in entries], dtype=np.int8),
        size=np.array([d.size for d, _, _ in entries], dtype=np.int64),
        mtime_ns=np.array([d.mtime_ns for d, _, _ in entries], dtype=np.int64),
        length=lengths, start=starts,
        frame_number=np.concatenate(fns) if fns else np.zeros(0, np.int64),
        frame_time=np.concatenate(fts) if fts else np.zeros(0, np.float64),
        stat_time_ns=stat_time_ns)


# ============================================================================ the file


def _store_identity(store: ImgStore) -> dict[str, Any]:
    smd = store._smd
    return {"uuid": smd.uuid, "class": smd.class_name, "format": smd.format}


def _table_crc(arrays: dict[str, np.ndarray]) -> int:
    crc = 0
    for name, dtype in _TABLE_FIELDS:
        crc = zlib.crc32(np.ascontiguousarray(arrays[name], dtype=dtype).tobytes(), crc)
    return crc


def _write_file(path: str, identity: dict[str, Any], cached: _Cached) -> None:
    """Write ``cached`` (contiguous, sortedness filled in) to ``path`` atomically."""
    arrays: dict[str, np.ndarray] = {
        "chunk_number": cached.chunk_number, "chunk_kind": cached.kind, "chunk_size": cached.size,
        "chunk_mtime_ns": cached.mtime_ns, "chunk_length": cached.length,
        "frame_number": cached.frame_number, "frame_time": cached.frame_time,
    }
    header: dict[str, Any] = {
        "format": _FORMAT_NAME, "version": CACHE_VERSION, "store": identity,
        "stat_time_ns": int(cached.stat_time_ns), "n_frames": len(cached.frame_number),
        "n_chunks": len(cached.chunk_number), "written_by": f"imgstore {_imgstore_version()}",
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
            new_layout[name] = {"dtype": dtypes[name], "length": int(len(arr)), "offset": offset}
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
    with ondisk.atomic_write(path, unique=True) as f:
        f.write(_MAGIC + _PREFIX.pack(len(header_bytes), zlib.crc32(header_bytes)) + header_bytes)
        for name, arr in arrays.items():
            f.write(b"\0" * (layout[name]["offset"] - f.tell()))
            data = np.ascontiguousarray(arr, dtype=dtypes[name])
            f.write(memoryview(data).cast("B"))
        f.write(b"\0" * (file_size - f.tell()))


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _imgstore_version() -> str:
    from . import __version__

    return __version__


def read_cache_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a cache file, for inspection.

    Raises
    ------
    CacheInvalid
        Not a cache file, or its header is damaged (an :class:`~imgstore.errors.IndexCorruptError`).
    """
    with open(os.fspath(path), "rb") as f:
        return _read_header(f, os.fstat(f.fileno()).st_size, os.fspath(path))


def _read_header(f, file_size: int, path: str) -> dict[str, Any]:
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


def _open_file(path: str, store: ImgStore) -> _Cached:
    """Map a cache file, checking everything that can be checked without reading the arrays."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise CacheInvalid(f"{path}: no cache") from None
    except OSError as exc:
        raise CacheInvalid(f"{path}: unreadable ({exc.strerror})") from None
    with f:
        file_size = os.fstat(f.fileno()).st_size
        header = _read_header(f, file_size, path)
        version = header.get("version")
        if version != CACHE_VERSION:
            raise CacheInvalid(f"{path}: cache version {version!r}, this imgstore reads {CACHE_VERSION}")
        if header.get("store") != _store_identity(store):
            raise CacheInvalid(f"{path}: cache is of store {header.get('store')!r}, not {_store_identity(store)!r}")
        layout = header.get("arrays")
        if not isinstance(layout, dict) or layout.get("_end", {}).get("offset") != file_size:
            raise CacheInvalid(f"{path}: file size {file_size} differs from the header's layout (truncated?)")
        raw = np.memmap(f, dtype=np.uint8, mode="r") if file_size else np.zeros(0, np.uint8)

    dtypes = {name: dtype for name, dtype in _TABLE_FIELDS} | _FRAME_FIELDS
    arrays: dict[str, np.ndarray] = {}
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
        # plain ndarray views of the mapping: np.memmap's subclass hooks slow every lookup down
        arrays[name] = np.asarray(raw[offset:offset + nbytes].view(dtypes[name]))

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
    return _Cached(chunk_number=chunks, kind=arrays["chunk_kind"], size=arrays["chunk_size"],
                   mtime_ns=arrays["chunk_mtime_ns"], length=lengths, start=starts,
                   frame_number=arrays["frame_number"], frame_time=arrays["frame_time"],
                   stat_time_ns=stat_time, by_number=by["number"], by_time=by["time"], origin=path)


# ============================================================================ building


@dataclasses.dataclass
class _Result:
    index: FrameIndex
    cached: _Cached  # the cacheable chunks (all with an index), as they are now
    cache_current: bool  # the source already holds exactly these chunks (no write needed)
    refresh_racy: bool  # racy entries verified; a rewrite now would make them non-racy


def _same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    return bool(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True))


def _read_table(store: ImgStore, disk: _OnDisk, quiet: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """A chunk's frames read the normal way (journal recovery, warnings, damaged_chunks)."""
    table = store._read_chunk_table(disk.chunk_n, disk.base, quiet=quiet)
    if table is None:
        return None
    return (np.asarray(table["frame_number"], dtype=np.int64), np.asarray(table["frame_time"], dtype=np.float64))


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """True if ``a`` and ``b`` are the same memory (a memmap and its ndarray view, say)."""
    return (len(a) == len(b) and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _build(store: ImgStore, source: _Cached | None, quiet: bool = False) -> _Result:
    """The store's index from ``source`` where it still holds, reading the rest.

    Raises ``CacheInvalid`` if a re-read chunk contradicts ``source`` although its index file
    looks unchanged (a damaged cache): the caller then builds again without it.
    """
    stat_time = time.time_ns()
    # stats first, reads after: a chunk changing in between is then seen as changed next time
    listing = _scan(store)
    n = len(listing)
    kinds = np.fromiter((d.kind for d in listing), dtype=np.int64, count=n)
    matched = np.zeros(n, dtype=bool)
    rows = np.zeros(n, dtype=np.int64)
    if source is not None and n and len(source.chunk_number):
        chunk_ns = np.fromiter((d.chunk_n for d in listing), dtype=np.int64, count=n)
        sizes = np.fromiter((d.size for d in listing), dtype=np.int64, count=n)
        mtimes = np.fromiter((d.mtime_ns for d in listing), dtype=np.int64, count=n)
        rows = np.minimum(np.searchsorted(source.chunk_number, chunk_ns), len(source.chunk_number) - 1)
        matched = ((source.chunk_number[rows] == chunk_ns) & (kinds >= 0) & (source.kind[rows] == kinds)
                   & (source.size[rows] == sizes) & (source.mtime_ns[rows] == mtimes))

    verify: set[int] = set()  # positions in listing whose cached frames are re-read and compared
    n_racy = 0
    if source is not None and matched.any():
        positions = np.flatnonzero(matched)
        verify = {int(positions[0]), int(positions[-1]), int(random.choice(positions))}
        racy = positions[source.mtime_ns[rows[positions]] >= source.stat_time_ns - RACY_WINDOW_NS]
        n_racy = len(racy)
        verify.update(int(p) for p in racy)

    for pos in sorted(verify):
        assert source is not None
        row = int(rows[pos])
        disk = listing[pos]
        got = _read_table(store, disk, quiet=True)
        if got is not None and _same(got, source.frames(row)):
            continue
        if not source.mtime_ns[row] >= source.stat_time_ns - RACY_WINDOW_NS:
            raise CacheInvalid(f"{source.origin}: chunk {disk.chunk_n} differs from its index although "
                               f"the index file looks unchanged")
        # a racy entry really changed under an unchanged mtime: read it as new
        matched[pos] = False

    n_source = len(source.chunk_number) if source is not None else -1
    all_indexed = bool(np.all(kinds >= 0))
    if source is not None and all_indexed and n == n_source and bool(matched.all()):
        # the fast path: the cache's (memory-mapped) arrays are the index, nothing is read or copied;
        # every entry is now known good as of this stat (racy ones were just re-read)
        cached = dataclasses.replace(source, stat_time_ns=stat_time)
        if not cached.is_contiguous():
            _fill_sorted(cached, None)
        nonempty = cached.length > 0
        index = FrameIndex(cached.chunk_number[nonempty], cached.length[nonempty], cached.frame_number,
                           cached.frame_time)
        _adopt_sorted(index, cached)
        # rewriting the cache with a later stat time ends the re-reading of racy entries; worth
        # it for many (a store made in a burst), not for a writer's last chunk or two
        refresh = n_racy >= _REFRESH_MIN_RACY and int(cached.mtime_ns.max()) < time.time_ns() - RACY_WINDOW_NS
        return _Result(index=index, cached=cached, cache_current=True, refresh_racy=refresh)

    tables: list[tuple[int, np.ndarray, np.ndarray]] = []
    entries: list[tuple[_OnDisk, np.ndarray, np.ndarray]] = []
    fresh = 0
    for pos, disk in enumerate(listing):
        if matched[pos]:
            assert source is not None
            frames = source.frames(int(rows[pos]))
        else:
            got = _read_table(store, disk, quiet)
            if got is None:
                continue
            frames = got
            if disk.kind < 0:
                # journaled (or otherwise unindexed) chunks are read every time, never cached
                tables.append((disk.chunk_n, *frames))
                continue
            fresh += 1
        tables.append((disk.chunk_n, *frames))
        entries.append((disk, *frames))
    cached = _cached_from_entries(entries, stat_time)
    if len(tables) == len(entries):
        nonempty = cached.length > 0
        index = FrameIndex(cached.chunk_number[nonempty], cached.length[nonempty], cached.frame_number,
                           cached.frame_time)
    else:
        index = FrameIndex.from_chunks(tables)
    cache_current = source is not None and fresh == 0 and len(entries) == n_source
    return _Result(index=index, cached=cached, cache_current=cache_current, refresh_racy=False)


def _adopt_sorted(index: FrameIndex, cached: _Cached) -> None:
    # FrameIndex computes these lazily with an O(n) check (O(n log n) sort when unsorted); the
    # cache saved them, so the 18-million-frame arrays need not be touched at all
    if cached.by_number is not None:
        index._number_order, index._number_sorted = cached.by_number
    if cached.by_time is not None:
        index._time_order, index._time_sorted = cached.by_time


def _fill_sorted(cached: _Cached, index: FrameIndex | None) -> None:
    """Make ``cached`` contiguous and give it FrameIndex's sorted orders (from ``index`` if same data)."""
    if not cached.is_contiguous():
        parts = [cached.frames(r) for r in range(len(cached.chunk_number))]
        cached.frame_number = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        cached.frame_time = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float64)
        cached.start = np.cumsum(cached.length) - cached.length
        cached.by_number = cached.by_time = None
        index = None
    if cached.by_number is not None and cached.by_time is not None:
        return
    if index is None or not (_same_buffer(index.frame_number, cached.frame_number)
                             and _same_buffer(index.frame_time, cached.frame_time)):
        nonempty = cached.length > 0
        index = FrameIndex(cached.chunk_number[nonempty], cached.length[nonempty], cached.frame_number,
                           cached.frame_time)
    cached.by_number = index._by_number()
    cached.by_time = index._by_time()


def _may_write_as_reader(store: ImgStore, n_chunks: int) -> bool:
    """Big and writable (the caller checked that no live writer is changing the store)."""
    if n_chunks < READER_WRITE_MIN_CHUNKS:
        return False  # reading a small store must never change a file
    return os.access(store._basedir, os.W_OK)


def _try_write(store: ImgStore, result: _Result, path: str | None = None, raise_errors: bool = False) -> bool:
    target = path or cache_path(store._basedir)
    try:
        _fill_sorted(result.cached, result.index)
        _write_file(target, _store_identity(store), result.cached)
    except StoreWriteError as exc:
        if raise_errors:
            raise
        log.debug("%s: index cache not written: %s", store._basedir, exc)
        return False
    except Exception:
        if raise_errors:
            raise
        # the cache is an optimisation: a bug in writing it must not stop a store from opening
        log.warning("%s: index cache not written (unexpected error)", store._basedir, exc_info=True)
        return False
    log.debug("%s: index cache written (%d chunks, %d frames)", target, len(result.cached.chunk_number),
              len(result.cached.frame_number))
    return True


def _source_from_file(store: ImgStore) -> _Cached | None:
    path = cache_path(store._basedir)
    try:
        return _open_file(path, store)
    except CacheInvalid as exc:
        log.debug("index cache ignored: %s", exc)
    except Exception as exc:  # whatever a damaged file provokes: the cache is only ever an optimisation
        log.debug("index cache ignored: %s: %s: %s", path, type(exc).__name__, exc)
    return None


def _build_checked(store: ImgStore, source: _Cached | None, quiet: bool) -> _Result:
    if source is None:
        return _build(store, None, quiet)
    try:
        return _build(store, source, quiet)
    except CacheInvalid as exc:
        log.debug("index cache ignored: %s", exc)
        if not quiet:
            store.damaged_chunks = {}
        return _build(store, None, quiet)


# ============================================================================ entry points


def load_index(store: ImgStore) -> FrameIndex:
    """The frame index of a store being opened (``ImgStore._load_index``).

    Uses the store's cache where it is valid, reads what changed, and (for big stores whose
    cache was missing or stale, not locked, writable) writes the cache back.
    """
    if not cache_enabled():
        return store._build_index()
    store._begin_scan()
    source = _source_from_file(store)
    result = _build_checked(store, source, quiet=False)
    _STATE[store] = result.cached
    if (not result.cache_current or result.refresh_racy) and len(result.cached.chunk_number) \
            and store._mode == "r" and not store._writer_alive and _may_write_as_reader(store, len(result.cached.chunk_number)):
        _try_write(store, result)
    return result.index


def save_index(store: ImgStore, path: str | os.PathLike | None = None) -> str | None:
    """Write the index cache of a store opened for reading; return its path.

    Parameters
    ----------
    store
        A store opened with ``mode='r'``. Writers save it when they close; for them this does
        nothing and returns None (as the reference's ``save_index``).
    path
        Where to write (default: ``.imgstore-index.cache`` in the store, where it is used).
        An explicit request: written even when ``IMGSTORE_INDEX_CACHE=0`` or the store is small.

    Raises
    ------
    StoreWriteError
        The file could not be written (read-only store...).
    """
    if store._mode != "r":
        log.debug("%s: save_index() ignored in mode %r (the writer saves the index when it closes)",
                  store._basedir, store._mode)
        return None
    store._require_mode("r", "save_index")
    target = os.fspath(path) if path is not None else cache_path(store._basedir)
    # re-validate against the disk: what was loaded at open may have changed since
    source = _STATE.get(store)
    result = _build_checked(store, source, quiet=True)
    _try_write(store, result, target, raise_errors=True)
    if path is None:
        _STATE[store] = result.cached
    return target


def write_after_close(store: ImgStore) -> None:
    """Write the cache of a store whose writer just closed (``ImgStore._after_write_closed``).

    Never raises for cache problems: the store itself is complete whatever happens here.
    """
    if not cache_enabled():
        return
    path = cache_path(store._basedir)
    try:
        chunks = store._list_chunks()
        if not chunks:
            # nothing to cache; a cache from before empty() would only be ignored later
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        # an appending writer reuses the cache of what was there before it
        source = _source_from_file(store)
        result = _build_checked(store, source, quiet=True)
        if result.cache_current and not result.refresh_racy:
            return
        if len(result.cached.chunk_number):
            _try_write(store, result)
    except (OSError, ValueError) as exc:  # ImgStoreError subclasses are among these
        log.debug("%s: index cache not written at close: %s", store._basedir, exc)
    except Exception:
        # the recording is complete and closed: a bug here must not turn close() into a failure
        log.warning("%s: index cache not written at close (unexpected error)", store._basedir, exc_info=True)
