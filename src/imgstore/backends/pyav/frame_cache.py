"""A bounded cache of decoded video frames, shared by the chunk readers of a store.

Stepping backwards through a long GOP (a viewer, napari, a person pressing the left arrow)
would otherwise decode from the keyframe again for every step: at keyframe interval 250
that is up to 249 frames decoded per frame shown.  A :class:`~.reader.VideoChunkReader`
given a cache, once it sees a step back, decodes the window before the target (up to 3/4
of the cache) and puts every frame its decoders output into it, so the next steps back find
them there, and scrubbing back and forth over a window decodes it once.  Reads that do not
step back (forward, random, batches) look frames up but put none: a cached frame keeps its
buffer out of FFmpeg's pool, and fresh buffers cost page faults on every frame.

The cache holds the decoder's own frames (``av.VideoFrame``, YUV: 1.5 bytes per pixel for
4:2:0, half of what BGR arrays take), not arrays: nothing a caller gets can change a
cached frame, and a hit costs one conversion (about 3 ms for 1920x1080 BGR, a copy of the
luma plane for grey).  Least recently used frames are evicted first once the decoded size
passes ``max_bytes``; evicted frames go back to FFmpeg's buffer pools.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Hashable
from typing import Any

__all__ = ["DEFAULT_FRAME_CACHE_BYTES", "FrameCache", "frame_nbytes"]

#: default size of a store's decoded-frame cache: 256 MiB holds 85 frames of 1920x1080
#: (4:2:0), enough for a step back through a keyframe-250 chunk to decode from the keyframe
#: once per 85 steps (measured 2 cores: > 100 frames/s backwards, docs/video-notes.md), and
#: 570 frames of 640x480 (a whole GOP of 250)
DEFAULT_FRAME_CACHE_BYTES = 256 * 2**20


def frame_nbytes(frame: Any) -> int:
    """Bytes a decoded frame holds (its planes' buffers)."""
    return sum(plane.buffer_size for plane in frame.planes)


class FrameCache:
    """Decoded frames by key, least recently used evicted beyond ``max_bytes``; thread-safe.

    Parameters
    ----------
    max_bytes : int
        Upper bound of the decoded bytes kept; 0 keeps nothing.
    """

    def __init__(self, max_bytes: int = DEFAULT_FRAME_CACHE_BYTES) -> None:
        self._frames: collections.OrderedDict[Hashable, tuple[Any, int]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._nbytes = 0
        self._max_bytes = 0
        self.resize(max_bytes)
        #: lookups answered and not answered, frames put and evicted (for tests and benchmarks)
        self.stats = {"hits": 0, "misses": 0, "puts": 0, "evictions": 0}

    @property
    def max_bytes(self) -> int:
        """The bound on the decoded bytes kept."""
        return self._max_bytes

    @property
    def nbytes(self) -> int:
        """Decoded bytes held now."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._frames)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._frames

    def resize(self, max_bytes: int) -> None:
        """Change the bound (evicting at once what no longer fits)."""
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative integer, not {max_bytes!r}")
        with self._lock:
            self._max_bytes = max_bytes
            self._evict()

    def get(self, key: Hashable) -> Any:
        """The frame stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            item = self._frames.get(key)
            if item is None:
                self.stats["misses"] += 1
                return None
            self._frames.move_to_end(key)
            self.stats["hits"] += 1
            return item[0]

    def put(self, key: Hashable, frame: Any) -> None:
        """Keep ``frame`` under ``key`` unless it alone is larger than the cache."""
        nbytes = frame_nbytes(frame)
        if nbytes > self._max_bytes:
            return
        with self._lock:
            old = self._frames.pop(key, None)
            if old is not None:
                self._nbytes -= old[1]
            self._frames[key] = (frame, nbytes)
            self._nbytes += nbytes
            self.stats["puts"] += 1
            self._evict()

    def discard(self, prefix: Hashable) -> None:
        """Forget every frame whose key is a tuple starting with ``prefix`` (a chunk's frames)."""
        with self._lock:
            for key in [k for k in self._frames if isinstance(k, tuple) and k and k[0] == prefix]:
                self._nbytes -= self._frames.pop(key)[1]

    def clear(self) -> None:
        """Forget every frame."""
        with self._lock:
            self._frames.clear()
            self._nbytes = 0

    def _evict(self) -> None:
        while self._nbytes > self._max_bytes and self._frames:
            _, (_, nbytes) = self._frames.popitem(last=False)
            self._nbytes -= nbytes
            self.stats["evictions"] += 1
