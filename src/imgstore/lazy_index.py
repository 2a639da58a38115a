"""A frame index whose arrays stay in the index cache file until a lookup needs them.

Opening a week-long store (18 M frames, 288 MB of frame numbers and times) reads none of
the cache's big arrays: they become :class:`RangeArray` s, 1-D arrays that read the pages a
lookup touches and keep the most recent ones. On object storage a page is a range request;
on a local disk it is a ``pread`` of the open file (:func:`local_arrays`,
:class:`~imgstore.storage.RangeFile`). A memory map
would need no code, but on Linux the first touch of a mapped file maps a whole page-cache
folio into the process (2 MiB on ext4: reading one int of a fresh mapping adds 2 048 KiB of
RSS), so 1 000 random lookups in an 18 M-frame store left 317 MB resident; read by page
they leave the pages kept (a few MB). A lookup by frame_index reads the page of
that frame (and, once per chunk, the chunk's frames to check their digest); a lookup by
frame_number or frame_time searches the sorted values page by page, interpolating (frame
numbers and times grow about linearly, so one or two probes land on the right page) and
falling back to bisection. Anything else (``frame_number.min()``, ``np.asarray(...)``) needs
the whole array: fetched once, concurrently in parts (remote), or memory-mapped (local).

:class:`LazyCheckedFrameIndex` is the :class:`~imgstore.checked_index.CheckedFrameIndex` over
such arrays: every chunk's frames are still checked against their digest before use.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .checked_index import CheckedFrameIndex
from .frame_index import FrameIndex, SortedView
from .lazy_array import LazyArray
from .storage import RangeFile

__all__ = ["PAGE_BYTES", "LazyCheckedFrameIndex", "RangeArray", "is_lazy", "load_together",
           "local_arrays", "remote_arrays"]

#: bytes per page of a lazy array: 8192 frame numbers, about one 10 000-frame chunk
PAGE_BYTES = 64 * 1024
#: pages a lazy array of a remote cache keeps (least recently used dropped first): 32 MiB
MAX_PAGES = 512
#: pages a lazy array of a local cache keeps: 8 MiB (a page dropped is read again from the
#: page cache by one ``pread``, ~15 µs for 64 KiB here)
MAX_LOCAL_PAGES = 128
#: parts of a whole-array fetch (fetched concurrently)
_PART_BYTES = 8 * 1024 * 1024
#: arrays up to this size are read with the chunk table at open (one request)
EAGER_BYTES = 1024 * 1024

#: ``fetch_ranges([(start, stop), ...])``: those byte ranges of the file, exactly
FetchRanges = Callable[[Sequence[tuple[int, int]]], list[bytes]]
#: ``load_full(offset, length, dtype)``: a whole array of the file, another way than by pages
LoadFull = Callable[[int, int, np.dtype], np.ndarray]


class RangeArray(LazyArray):
    """A read-only 1-D array of a file's bytes, read a page at a time.

    Parameters
    ----------
    fetch_ranges
        Returns byte ranges of the file.
    offset
        Where the array starts in the file.
    length
        Number of items.
    dtype
        Item type (little-endian, as the cache stores it).
    max_pages
        Pages kept, least recently used dropped first.
    load_full
        How the whole array is had when a caller needs it; default: fetched in parts.
    """

    def __init__(self, fetch_ranges: FetchRanges, offset: int, length: int, dtype: Any, *,
                 max_pages: int = MAX_PAGES, load_full: LoadFull | None = None) -> None:
        self._fetch = fetch_ranges
        self._offset = int(offset)
        self._length = int(length)
        self.dtype = np.dtype(dtype)
        self._max_pages = max(int(max_pages), 2)
        self._load_full = load_full
        self._per_page = max(PAGE_BYTES // self.dtype.itemsize, 1)
        self._pages: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        #: the first and last pages, which bracket every search: kept apart from the LRU pages
        self._pinned: dict[int, np.ndarray] = {}
        self._full: np.ndarray | None = None
        self._lock = threading.Lock()
        #: pages fetched (for tests and benchmarks)
        self.pages_fetched = 0

    # ------------------------------------------------------------------ numpy's view of it

    @property
    def fetch_ranges(self) -> FetchRanges:
        """How this array's pages are fetched (the arrays of one file share it)."""
        return self._fetch

    def __repr__(self) -> str:
        return f"<RangeArray {self.dtype} x {self._length}, {len(self._pages)} pages loaded>"

    def _search(self, v: Any, side: str) -> Any:
        return self._searchsorted(v, side)

    # ------------------------------------------------------------------ reading

    def load(self) -> np.ndarray:
        """The whole array (had once: fetched in concurrent parts, or as ``load_full`` gives it)."""
        if self._full is None:
            if self._load_full is not None:
                full = self._load_full(self._offset, self._length, self.dtype)
            else:
                nbytes = self._length * self.dtype.itemsize
                parts = [(a, min(a + _PART_BYTES, nbytes)) for a in range(0, nbytes, _PART_BYTES)]
                data = b"".join(self._fetch([(self._offset + a, self._offset + b) for a, b in parts])) if parts else b""
                full = np.frombuffer(data, dtype=self.dtype)
            full.flags.writeable = False
            self._full = full
            self._pages.clear()
            self._pinned = {}
        return self._full

    def missing_ranges(self, start: int, stop: int) -> list[tuple[int, int]]:
        """Byte ranges (in the file) of the pages of items ``[start, stop)`` not loaded yet, coalesced."""
        if self._full is not None or stop <= start:
            return []
        per = self._per_page
        runs: list[list[int]] = []
        for p in range(start // per, (stop - 1) // per + 1):
            if p in self._pages or p in self._pinned:
                continue
            if runs and runs[-1][1] == p:
                runs[-1][1] = p + 1
            else:
                runs.append([p, p + 1])
        size = self.dtype.itemsize
        return [(self._offset + a * per * size, self._offset + min(b * per, self._length) * size) for a, b in runs]

    def store(self, start_byte: int, data: bytes) -> None:
        """Keep the pages in ``data`` (fetched from ``start_byte``, page-aligned)."""
        per, size = self._per_page, self.dtype.itemsize
        first = (start_byte - self._offset) // size // per
        values = np.frombuffer(data, dtype=self.dtype)
        with self._lock:
            for i in range(0, len(values), per):
                page = values[i:i + per]
                page.flags.writeable = False
                self._pages[first + i // per] = page
                self.pages_fetched += 1
            while len(self._pages) > self._max_pages:
                self._pages.popitem(last=False)

    def ensure(self, start: int, stop: int) -> None:
        """Fetch the pages of items ``[start, stop)`` (one request per run of missing pages)."""
        load_together([(self, start, stop)])

    def _page(self, p: int) -> np.ndarray:
        pinned = self._pinned.get(p)
        if pinned is not None:
            return pinned
        while True:
            with self._lock:
                page = self._pages.get(p)
                if page is not None:
                    self._pages.move_to_end(p)
                    return page
            full = self._full
            if full is not None:  # another thread had the whole array meanwhile: no pages any more
                return full[p * self._per_page:(p + 1) * self._per_page]
            # read it (again, should other threads' pages have pushed it out meanwhile)
            self.ensure(p * self._per_page, min((p + 1) * self._per_page, self._length))

    def _range(self, start: int, stop: int) -> np.ndarray:
        if self._full is not None:
            return self._full[start:stop]
        if stop <= start:
            return np.zeros(0, self.dtype)
        self.ensure(start, stop)
        per = self._per_page
        pieces = [self._page(p) for p in range(start // per, (stop - 1) // per + 1)]
        base = (start // per) * per
        return np.concatenate(pieces)[start - base:stop - base]

    def __getitem__(self, key: Any) -> Any:
        if self._full is not None:
            return self._full[key]
        n = self._length
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {int(key)} is out of bounds for an array of {n} items")
            return self._page(i // self._per_page)[i % self._per_page]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return self._range(start, max(start, stop)).copy()
            return self._take(np.arange(start, stop, step))
        index = np.asarray(key)
        if index.dtype.kind not in "iu":
            return self.load()[key]
        return self._take(index)

    def _take(self, index: np.ndarray) -> np.ndarray:
        n = self._length
        flat = index.astype(np.int64).ravel()
        flat = np.where(flat < 0, flat + n, flat)
        if flat.size and (flat.min() < 0 or flat.max() >= n):
            raise IndexError(f"index out of bounds for an array of {n} items")
        per = self._per_page
        if flat.size <= 8:
            # a search's neighbours or a frame or two: item by item costs less than the vector way
            wanted = {i // per for i in flat.tolist()}
            if any(p not in self._pinned and p not in self._pages for p in wanted):
                load_together([(self, p * per, min((p + 1) * per, n)) for p in sorted(wanted)])
            small = np.empty(flat.shape, dtype=self.dtype)
            for k, i in enumerate(flat.tolist()):
                small[k] = self._page(i // per)[i % per]
            return small.reshape(index.shape)
        pages = np.unique(flat // per)
        load_together([(self, int(p) * per, min((int(p) + 1) * per, n)) for p in pages])
        out = np.empty(flat.shape, dtype=self.dtype)
        for p in pages:
            hit = flat // per == p
            out[hit] = self._page(int(p))[flat[hit] - int(p) * per]
        return out.reshape(index.shape)

    # ------------------------------------------------------------------ sorted search

    def _searchsorted(self, v: ArrayLike, side: str = "left") -> Any:
        values = np.asarray(v)
        if values.ndim == 0:
            return self._search_one(values[()], side)
        if values.size > 256:
            return np.searchsorted(self.load(), values, side=side)  # type: ignore[call-overload]
        out = np.array([self._search_one(x, side) for x in values.ravel()], dtype=np.intp)
        return out.reshape(values.shape)

    def _search_one(self, value: Any, side: str) -> int:
        """Where ``value`` goes in these (sorted) values, as ``np.searchsorted``, reading few pages."""
        if self._full is not None:
            return int(np.searchsorted(self._full, value, side=side))  # type: ignore[call-overload]
        n, per = self._length, self._per_page
        lo, hi = 0, n  # the answer lies in [lo, hi]
        below = above = None  # the values just before lo and at hi, once known
        n_pages = -(-n // per)
        if n_pages > 2 and len(self._pinned) < 2:
            # the first and last pages bracket every search (fetched together, kept)
            load_together([(self, 0, per), (self, (n_pages - 1) * per, n)])
            self._pinned = {0: self._page(0), n_pages - 1: self._page(n_pages - 1)}
        probes = 0
        while hi - lo > per:
            p = self._probe_page(lo, hi, below, above, value, probes)
            probes += 1
            page = self._page(p)
            start = p * per
            first, last = page[0], page[-1]
            if (first >= value) if side == "left" else (first > value):
                hi, above = start, first
            elif (last < value) if side == "left" else (last <= value):
                lo, below = start + len(page), last
            else:
                return start + int(np.searchsorted(page, value, side=side))  # type: ignore[call-overload]
        return lo + int(np.searchsorted(self._range(lo, hi), value, side=side))  # type: ignore[call-overload]

    def _probe_page(self, lo: int, hi: int, below: Any, above: Any, value: Any, probes: int) -> int:
        """The page to look at next: interpolated between known values for a few probes, then halving."""
        per = self._per_page
        if probes == 0:
            return 0
        if probes == 1:
            return (self._length - 1) // per
        mid = (lo + hi) // 2
        if probes < 6 and below is not None and above is not None:
            try:
                span = float(above) - float(below)
                frac = (float(value) - float(below)) / span if span > 0 else math.nan
            except (TypeError, ValueError, OverflowError):
                frac = math.nan
            if math.isfinite(frac):
                mid = lo + int(frac * (hi - lo))
        mid = min(max(mid, lo), hi - 1)
        return mid // per


def load_together(parts: Sequence[tuple[RangeArray, int, int]]) -> None:
    """Fetch the missing pages of items ``[start, stop)`` of several arrays of one file in one batch."""
    wanted: list[tuple[RangeArray, tuple[int, int]]] = []
    for array, start, stop in parts:
        wanted.extend((array, r) for r in array.missing_ranges(start, stop))
    if not wanted:
        return
    by_fetch: dict[int, list[tuple[RangeArray, tuple[int, int]]]] = {}
    for item in wanted:
        by_fetch.setdefault(id(item[0].fetch_ranges), []).append(item)
    for items in by_fetch.values():
        datas = items[0][0].fetch_ranges([r for _, r in items])
        for (array, (start, _stop)), data in zip(items, datas, strict=True):
            array.store(start, data)


def is_lazy(array: Any) -> bool:
    """True for a :class:`RangeArray`."""
    return isinstance(array, RangeArray)


def remote_arrays(fetch_ranges: FetchRanges, specs: Mapping[str, tuple[int, int, str]],
                  eager: Sequence[str]) -> dict[str, np.ndarray | RangeArray]:
    """The arrays of a remote index cache: ``eager`` ones (and small ones) read now in one batch, others lazy.

    ``specs`` maps a name to ``(offset, length, dtype)``.
    """
    return _paged_arrays(fetch_ranges, specs, eager, MAX_PAGES, None)


def local_arrays(file: RangeFile, specs: Mapping[str, tuple[int, int, str]],
                 eager: Sequence[str]) -> dict[str, np.ndarray | RangeArray]:
    """The arrays of a local index cache, read from ``file`` by page; whole arrays are memory-mapped.

    ``specs`` maps a name to ``(offset, length, dtype)``.
    """
    return _paged_arrays(file.read_ranges, specs, eager, MAX_LOCAL_PAGES, file.mapped)


def _paged_arrays(fetch_ranges: FetchRanges, specs: Mapping[str, tuple[int, int, str]], eager: Sequence[str],
                  max_pages: int, load_full: LoadFull | None) -> dict[str, np.ndarray | RangeArray]:
    out: dict[str, Any] = {}
    now = [name for name, (_, length, dtype) in specs.items()
           if name in eager or length * np.dtype(dtype).itemsize <= EAGER_BYTES]
    ranges = [(specs[name][0], specs[name][0] + specs[name][1] * np.dtype(specs[name][2]).itemsize) for name in now]
    # one request for the lot when they lie together (the chunk table does, at the start of the file)
    if ranges:
        lo, hi = min(a for a, _ in ranges), max(b for _, b in ranges)
        if hi - lo <= 4 * EAGER_BYTES + sum(b - a for a, b in ranges):
            block = fetch_ranges([(lo, hi)])[0]
            datas = [block[a - lo:b - lo] for a, b in ranges]
        else:
            datas = fetch_ranges(ranges)
        for name, data in zip(now, datas, strict=True):
            arr = np.frombuffer(data, dtype=specs[name][2])
            arr.flags.writeable = False
            out[name] = arr
    for name, (offset, length, dtype) in specs.items():
        if name not in out:
            out[name] = RangeArray(fetch_ranges, offset, length, dtype, max_pages=max_pages, load_full=load_full)
    return out


class LazyCheckedFrameIndex(CheckedFrameIndex):
    """A :class:`~imgstore.checked_index.CheckedFrameIndex` over :class:`RangeArray` s (an index cache file).

    Parameters are those of :class:`~imgstore.checked_index.CheckedFrameIndex`; the per-frame
    arrays and sorted views may be :class:`RangeArray` s.
    """

    def __init__(self, chunk_numbers: ArrayLike, chunk_lengths: ArrayLike, frame_number: Any, frame_time: Any, *,
                 chunk_digests: ArrayLike, origin: str, by_number: SortedView | None = None,
                 by_time: SortedView | None = None, on_damage: Callable[[str], FrameIndex] | None = None) -> None:
        n = len(frame_number)
        # zero-stride stand-ins of the right length (no memory) pass the base class's checks;
        # the lazy arrays take their place right after
        super().__init__(chunk_numbers, chunk_lengths, np.broadcast_to(np.int64(0), (n,)),
                         np.broadcast_to(np.float64(0), (len(frame_time),)), chunk_digests=chunk_digests,
                         origin=origin, on_damage=on_damage)
        self._frame_number = frame_number
        self._frame_time = frame_time
        if by_number is not None:
            self._number_order, self._number_sorted = by_number
        if by_time is not None:
            self._time_order, self._time_sorted = by_time

    def _verify_all(self) -> None:
        # whole arrays wanted: fetch them in one go rather than chunk by chunk
        self._load_all()
        super()._verify_all()

    def _load_all(self) -> None:
        loaded: dict[int, np.ndarray] = {}

        def concrete(value: Any) -> Any:
            if isinstance(value, RangeArray):
                if id(value) not in loaded:
                    loaded[id(value)] = value.load()
                return loaded[id(value)]
            return value

        self._frame_number = concrete(self._frame_number)
        self._frame_time = concrete(self._frame_time)
        self._number_order, self._number_sorted = concrete(self._number_order), concrete(self._number_sorted)
        self._time_order, self._time_sorted = concrete(self._time_order), concrete(self._time_sorted)

    def _verify_rows(self, rows: np.ndarray) -> None:
        # both arrays of the chunks about to be checked, in one batch of requests
        arrays: tuple[Any, ...] = (self._frame_number, self._frame_time)
        lazy = [a for a in arrays if isinstance(a, RangeArray)]
        rows = np.asarray(rows).ravel()
        if lazy and self.checked:
            rows = rows[~self._verified[rows]]  # a checked chunk needs no read
            parts: list[tuple[RangeArray, int, int]] = []
            for row in rows:
                a, b = int(self.chunk_starts[int(row)]), int(self.chunk_starts[int(row) + 1])
                parts.extend((arr, a, b) for arr in lazy)
            load_together(parts)
        super()._verify_rows(rows)
