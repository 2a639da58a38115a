"""Reading remote files by range: a read-ahead block cache and the seekable file object over it.

A remote file is read in *blocks* of :data:`BLOCK_SIZE` bytes, fetched by range requests
and kept in a :class:`BlockCache` shared by every :class:`RangeFile` of one store (the
decoder lanes of a video chunk read the same GOPs). Each file object detects sequential
reading: a read that starts where the previous one ended doubles the next request (from
one block up to :data:`MAX_READAHEAD`), a jump starts again at one block, or at the bytes
the caller expects to read from there (``expected``: the video backend's estimate of a
frame's keyframe-to-frame bytes), and a file's first request is :data:`HEAD_BYTES`. So

* a random frame of a video chunk costs about the bytes from its keyframe to the frame:
  FFmpeg seeks to the keyframe and reads forward; the first request is sized by the
  estimate and, if that falls short, the next ones grow 64, 128, 256 KiB... (measured:
  median 1.5x in 1-2 requests, see docs/remote.md);
* sequential reading streams in requests of up to :data:`MAX_READAHEAD` bytes, so the
  per-request latency is paid once per 4 MiB, not once per frame.
"""

from __future__ import annotations

import collections
import io
import threading
from collections.abc import Callable

__all__ = ["BLOCK_SIZE", "CACHE_BYTES", "HEAD_BYTES", "MAX_READAHEAD", "BlockCache", "RangeFile", "cached_range"]

#: bytes per cached block: the smallest range request. 64 KiB is 1-3 frames of a 640x480 H.264 chunk
#: and FFmpeg's 32 KiB reads fit twice; smaller blocks only add requests (benchmarks/remote.py)
BLOCK_SIZE = 64 * 1024
#: largest read-ahead of sequential reading: at 20 ms per request and ~100 MB/s that is ~60 %
#: of the time moving bytes rather than waiting for the first one
MAX_READAHEAD = 4 * 1024 * 1024
#: the first request at the start of a file: a Matroska header and first cluster, an index cache's
#: header and chunk table of up to ~3000 chunks (each needed two requests with 64 KiB)
HEAD_BYTES = 256 * 1024
#: bytes of blocks a store keeps (least recently used dropped first): a few GOPs of each open chunk
CACHE_BYTES = 64 * 1024 * 1024

#: ``fetch(start, stop)``: the bytes ``[start, stop)`` of one file, exactly
Fetch = Callable[[int, int], bytes]


class BlockCache:
    """Blocks of remote files, least recently used dropped first, shared by threads.

    Parameters
    ----------
    capacity
        Bytes to keep.
    block_size
        Bytes per block.
    """

    def __init__(self, capacity: int = CACHE_BYTES, block_size: int = BLOCK_SIZE) -> None:
        self.capacity = int(capacity)
        self.block_size = int(block_size)
        self._blocks: collections.OrderedDict[tuple[str, int], bytes] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str, block: int) -> bytes | None:
        """A cached block (None when not cached)."""
        with self._lock:
            data = self._blocks.get((key, block))
            if data is not None:
                self._blocks.move_to_end((key, block))
            return data

    def put(self, key: str, block: int, data: bytes) -> None:
        """Keep a block."""
        with self._lock:
            old = self._blocks.pop((key, block), None)
            if old is not None:
                self._bytes -= len(old)
            self._blocks[(key, block)] = data
            self._bytes += len(data)
            while self._bytes > self.capacity and len(self._blocks) > 1:
                _, dropped = self._blocks.popitem(last=False)
                self._bytes -= len(dropped)

    def clear(self) -> None:
        """Forget every block (the files may have changed)."""
        with self._lock:
            self._blocks.clear()
            self._bytes = 0


def cached_range(cache: BlockCache, key: str, start: int, stop: int) -> bytes | None:
    """The bytes ``[start, stop)`` of file ``key`` if every block of them is cached (else None)."""
    bs = cache.block_size
    parts = []
    for b in range(start // bs, (stop - 1) // bs + 1):
        data = cache.get(key, b)
        if data is None:
            return None
        parts.append(data)
    joined = b"".join(parts)
    offset = start - (start // bs) * bs
    out = joined[offset:offset + stop - start]
    return out if len(out) == stop - start else None


class RangeFile(io.RawIOBase):
    """A read-only, seekable file object over range requests (what PyAV and ``np.load`` read).

    Parameters
    ----------
    fetch
        Returns the bytes ``[start, stop)`` of the file (raising on failure, never short).
    size
        The file's size in bytes.
    cache
        The block cache (shared with the store's other files).
    key
        The file's key in the cache (its path).
    name
        The file's name for messages (without credentials).
    whole
        Fetch the whole file at the first read (small files: one request).
    expected
        Returns the bytes the caller expects to read from the next jump on (0: no idea): the
        first request after a jump asks for that much (a video frame's keyframe-to-frame bytes,
        estimated), so a random frame takes one request instead of a growing series.
    """

    def __init__(self, fetch: Fetch, size: int, cache: BlockCache, key: str, name: str, whole: bool = False,
                 expected: Callable[[], int] | None = None) -> None:
        super().__init__()
        self._whole = whole
        self._expected = expected
        self._fetch = fetch
        self._size = int(size)
        self._cache = cache
        self._key = key
        self.name = name
        self._pos = 0
        self._next = -1  # where the previous read ended (sequential reading continues there)
        self._readahead = cache.block_size
        self._sequential = False
        self._fetched = False  # a fetch was made since the last jump
        self._hinted = False  # the read-ahead since the last jump is the caller's estimate

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        start = self._pos
        stop = min(start + len(view), self._size)
        if stop <= start:
            return 0
        bs = self._cache.block_size
        self._sequential = start == self._next
        if not self._sequential:
            # a file's first bytes hold its header and what follows it (a container's header and first
            # cluster, an index cache's header and chunk table): one request of HEAD_BYTES for them
            self._readahead = max(bs, HEAD_BYTES) if start < HEAD_BYTES else bs
            self._hinted = False
            if self._expected is not None:
                expected = min(self._expected(), MAX_READAHEAD)
                if expected > self._readahead:
                    self._readahead, self._hinted = expected, True
            self._fetched = False
        blocks = self._blocks(start // bs, (stop - 1) // bs)
        out = 0
        for first, data in blocks:
            lo = max(start - first, 0)
            hi = min(stop - first, len(data))
            view[out:out + hi - lo] = data[lo:hi]
            out += hi - lo
        self._pos = start + out
        self._next = self._pos
        return out

    def _blocks(self, first: int, last: int) -> list[tuple[int, bytes]]:
        """``(offset, bytes)`` of blocks ``first..last``, fetching the missing ones (with read-ahead)."""
        bs = self._cache.block_size
        found: dict[int, bytes] = {}
        missing = []
        for b in range(first, last + 1):
            data = self._cache.get(self._key, b)
            if data is None:
                missing.append(b)
            else:
                found[b] = data
        if missing:
            if self._hinted and self._fetched:
                # the estimate fell short (the demuxer started before the keyframe): grow from one block again
                self._readahead, self._hinted = bs, False
            elif self._sequential and self._fetched:
                # reading on where the last fetch was used: twice as much as last time (per fetch, not per read:
                # FFmpeg reads 32 KiB at a time, mostly from blocks already fetched)
                self._readahead = min(self._readahead * 2, MAX_READAHEAD)
            self._fetched = True
            fetch_from = 0 if self._whole else missing[0] * bs
            # one request from the first missing block to the last needed one, extended by the read-ahead
            fetch_to = min(max((missing[-1] + 1) * bs, fetch_from + self._readahead), self._size)
            if self._whole:
                fetch_to = self._size
            fetch_to = min(-(-fetch_to // bs) * bs, self._size)
            data = self._fetch(fetch_from, fetch_to)
            for i in range(0, len(data), bs):
                b = (fetch_from + i) // bs
                block = bytes(data[i:i + bs])
                self._cache.put(self._key, b, block)
                if first <= b <= last:
                    found[b] = block
        return [(b * bs, found[b]) for b in range(first, last + 1)]

    def __repr__(self) -> str:
        return f"<RangeFile {self.name!r} size={self._size}>"
