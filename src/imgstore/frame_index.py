"""The frame index: where every frame of a store lives, as numpy arrays.

Frames are kept in *store order* (chunk by chunk, in the order they were written); a
frame's position in that order is its ``frame_index`` (0 .. N-1). Per frame we hold only
``frame_number`` (int64) and ``frame_time`` (float64); the chunk of a frame is found from
the chunk start offsets. Every lookup is O(log n): sorted orders for numbers and times are
computed once (lazily, and only when the values are not already sorted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .errors import FrameIndexError, FrameNotFoundError
from .run_array import RunArray

#: ``(order or None, sorted keys)`` of a per-frame array (see :meth:`FrameIndex.by_number`)
SortedView = tuple[np.ndarray | None, np.ndarray]
#: per-frame values of a chunk: an array or a list
FrameValues = np.ndarray | Sequence[Any]


class FrameIndex:
    """Index of all frames of a store.

    Parameters
    ----------
    chunk_numbers
        The chunk number of each non-empty chunk, ascending.
    chunk_lengths
        Number of frames in each of those chunks.
    frame_number, frame_time
        Per-frame values in store order (concatenated chunk by chunk).
    """

    def __init__(self, chunk_numbers: ArrayLike, chunk_lengths: ArrayLike,
                 frame_number: np.ndarray, frame_time: np.ndarray, *,
                 by_number: SortedView | None = None, by_time: SortedView | None = None) -> None:
        self.chunk_numbers = np.asarray(chunk_numbers, dtype=np.int64)
        lengths = np.asarray(chunk_lengths, dtype=np.int64)
        self.chunk_starts = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.chunk_starts[1:])
        # frame numbers held as runs (imgstore.run_array) stay so: 8 bytes per frame saved
        self._frame_number = frame_number if isinstance(frame_number, RunArray) else np.asarray(frame_number,
                                                                                                 dtype=np.int64)
        self._frame_time = np.asarray(frame_time, dtype=np.float64)
        if len(self._frame_number) != len(self._frame_time) or len(self._frame_number) != self.chunk_starts[-1]:
            raise ValueError("frame_number, frame_time and chunk lengths disagree")
        self._number_order: np.ndarray | None = None
        self._number_sorted: np.ndarray | None = None
        self._time_order: np.ndarray | None = None
        self._time_sorted: np.ndarray | None = None
        if by_number is not None:  # known already (the index cache saved them)
            self._number_order, self._number_sorted = by_number
        if by_time is not None:
            self._time_order, self._time_sorted = by_time
        self._stats: dict[str, int | float] = {}

    @classmethod
    def from_chunks(cls, chunks: Iterable[tuple[int, FrameValues, FrameValues]]) -> FrameIndex:
        """Build from ``(chunk_n, frame_number, frame_time)`` per chunk; empty chunks are dropped."""
        items = sorted((int(c), fn, ft) for c, fn, ft in chunks if len(fn))
        if not items:
            return cls.empty()
        return cls(
            [c for c, _, _ in items],
            [len(fn) for _, fn, _ in items],
            np.concatenate([np.asarray(fn, dtype=np.int64) for _, fn, _ in items]),
            np.concatenate([np.asarray(ft, dtype=np.float64) for _, _, ft in items]),
        )

    @classmethod
    def empty(cls) -> FrameIndex:
        """An index without frames."""
        return cls([], [], np.zeros(0, np.int64), np.zeros(0, np.float64))

    # ----------------------------------------------------------------- summary

    @property
    def frame_number(self) -> np.ndarray:
        """frame_number of every frame, by frame_index (int64)."""
        return self._frame_number

    @property
    def frame_time(self) -> np.ndarray:
        """frame_time of every frame, by frame_index (float64)."""
        return self._frame_time

    def metadata_at(self, frame_index: int) -> tuple[int, float]:
        """``(frame_number, frame_time)`` of one frame (``frame_index`` checked by the caller)."""
        self._check_frames(np.array([frame_index]))
        return int(self._frame_number[frame_index]), float(self._frame_time[frame_index])

    def metadata_of(self, frame_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(frame_number, frame_time)`` arrays of many frames (``frame_indices`` checked by the caller)."""
        frame_indices = np.asarray(frame_indices, dtype=np.int64)
        self._check_frames(np.unique(frame_indices))
        return self._frame_number[frame_indices], self._frame_time[frame_indices]

    def __len__(self) -> int:
        return int(self.chunk_starts[-1])

    @property
    def chunks(self) -> list[int]:
        """Chunk numbers that hold frames."""
        return [int(c) for c in self.chunk_numbers]

    def _stat(self, name: str, compute) -> int | float:
        # computed once: a week-long store has 18 million frames to scan
        if name not in self._stats:
            self._stats[name] = compute() if len(self) else float("nan")
        return self._stats[name]

    @property
    def frame_min(self) -> int | float:
        """Smallest frame_number (nan when empty)."""
        return self._stat("frame_min", lambda: int(self.frame_number.min()))

    @property
    def frame_max(self) -> int | float:
        """Largest frame_number (nan when empty)."""
        return self._stat("frame_max", lambda: int(self.frame_number.max()))

    @property
    def frame_time_min(self) -> float:
        """Earliest frame_time (nan when empty)."""
        return self._stat("frame_time_min", lambda: float(np.nanmin(self.frame_time)))

    @property
    def frame_time_max(self) -> float:
        """Latest frame_time (nan when empty)."""
        return self._stat("frame_time_max", lambda: float(np.nanmax(self.frame_time)))

    def chunk_slice(self, chunk_n: int) -> slice:
        """The frame_index range of chunk ``chunk_n`` (empty slice if it has no frames)."""
        i = int(np.searchsorted(self.chunk_numbers, chunk_n))
        if i < len(self.chunk_numbers) and self.chunk_numbers[i] == chunk_n:
            return slice(int(self.chunk_starts[i]), int(self.chunk_starts[i + 1]))
        return slice(0, 0)

    # ----------------------------------------------------------------- lookups

    def check_index(self, frame_index: int) -> int:
        """Return ``frame_index`` as int, or raise :class:`FrameIndexError` if outside 0..N-1."""
        try:
            i = int(frame_index)
        except (TypeError, ValueError):
            raise FrameIndexError(f"frame_index {frame_index!r} is not an integer") from None
        if i != frame_index:
            raise FrameIndexError(f"frame_index {frame_index!r} is not an integer")
        if i < 0:
            raise FrameIndexError(f"frame_index {i} is negative (seeking to a negative index is not supported)")
        if i >= len(self):
            raise FrameIndexError(f"frame_index {i} not found in index: the store has {len(self)} frames")
        return i

    def locate(self, frame_index: int) -> tuple[int, int]:
        """Return ``(chunk_n, position in chunk)`` of a frame_index."""
        i = self.check_index(frame_index)
        k = int(np.searchsorted(self.chunk_starts, i, side="right")) - 1
        return int(self.chunk_numbers[k]), i - int(self.chunk_starts[k])

    def locate_many(self, frame_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(chunk row, position in chunk)`` arrays of valid frame_index values (vectorised).

        The chunk row ``r`` is chunk number ``chunk_numbers[r]``, starting at ``chunk_starts[r]``.
        """
        frame_indices = np.asarray(frame_indices, dtype=np.int64)
        rows = np.searchsorted(self.chunk_starts, frame_indices, side="right") - 1
        return rows, frame_indices - self.chunk_starts[rows]

    @property
    def sorted_views_known(self) -> tuple[bool, bool]:
        """Whether the (number, time) sorted views are computed already (they are made lazily)."""
        return self._number_sorted is not None, self._time_sorted is not None

    def by_number(self) -> SortedView:
        """``(order, keys)``: ``keys`` are the frame_numbers sorted (stable), ``frame_number[order]``.

        ``order`` is None when the frame_numbers are sorted already (``keys`` is then the
        array itself). Computed once, on first use.
        """
        if self._number_sorted is None:
            fn = self.frame_number
            if len(fn) < 2 or _is_sorted(fn):
                self._number_order, self._number_sorted = None, fn
            else:
                # stable: among repeated frame_numbers the first in store order wins
                order = np.argsort(fn, kind="stable")
                self._number_order, self._number_sorted = order, fn[order]
        return self._number_order, self._number_sorted

    def by_time(self) -> SortedView:
        """``(order, keys)`` of the frame_times, as :meth:`by_number`."""
        if self._time_sorted is None:
            ft = self.frame_time
            if len(ft) < 2 or _is_sorted(ft):
                self._time_order, self._time_sorted = None, ft
            else:
                order = np.argsort(ft, kind="stable")
                self._time_order, self._time_sorted = order, ft[order]
        return self._time_order, self._time_sorted

    def find_number(self, frame_number: Any) -> int:
        """frame_index of the first frame with exactly this frame_number."""
        value = _as_int(frame_number, "frame_number")
        order, keys = self.by_number()
        pos = int(np.searchsorted(keys, value, side="left"))
        # the first match and the key before it decide both the answer and its absence
        self._check_view("number", np.array([pos - 1, pos]))
        if pos < len(keys) and keys[pos] == value:
            return int(order[pos]) if order is not None else pos
        raise FrameNotFoundError(f"frame #{frame_number} not found in any chunk")

    def nearest_number(self, frame_number: Any) -> int:
        """frame_index of the frame whose frame_number is closest (the earlier one on ties)."""
        return self._nearest("number", _as_real(frame_number, "frame_number"), "frame_number")

    def nearest_time(self, frame_time: float) -> int:
        """frame_index of the frame whose frame_time is closest (the earlier one on ties)."""
        return self._nearest("time", _as_real(frame_time, "frame_time"), "frame_time")

    def _nearest(self, which: str, value: float, what: str) -> int:
        order, keys = self.by_number() if which == "number" else self.by_time()
        n = len(keys)
        if n == 0:
            raise FrameNotFoundError(f"{what} {value!r}: the store has no frames")
        pos = int(np.searchsorted(keys, value, side="left"))
        self._check_view(which, np.array([pos - 1, pos]))
        best: tuple[float, int] | None = None
        for p in (pos - 1, pos):
            if not 0 <= p < n:
                continue
            # first of a run of equal keys: with a stable order that is the earliest frame
            p = int(np.searchsorted(keys, keys[p], side="left"))
            self._check_view(which, np.array([p - 1, p]))
            candidate = (abs(float(keys[p]) - value), int(order[p]) if order is not None else p)
            if best is None or candidate < best:
                best = candidate
        assert best is not None
        return best[1]

    # ----------------------------------------------------------------- checks (see CheckedFrameIndex)

    def _check_frames(self, frame_indices: np.ndarray) -> None:
        """Called with the frames whose values a lookup is about to use; nothing to check here."""

    def _check_view(self, which: str, positions: np.ndarray) -> None:
        """Called with the positions of a sorted view a lookup relies on; nothing to check here."""

    # ----------------------------------------------------------------- bulk

    def positions_for_numbers(self, frame_numbers: np.ndarray) -> np.ndarray:
        """frame_index for each frame_number (vectorised); -1 where missing."""
        order, keys = self.by_number()
        values = np.asarray(frame_numbers, dtype=np.int64)
        pos = np.searchsorted(keys, values, side="left")
        self._check_view("number", np.concatenate([pos - 1, pos]))
        ok = pos < len(keys)
        ok[ok] = keys[pos[ok]] == values[ok]
        out = np.full(values.shape, -1, dtype=np.int64)
        out[ok] = order[pos[ok]] if order is not None else pos[ok]
        return out


def _as_int(value, what: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise FrameNotFoundError(f"{what} {value!r} is not an integer")
    try:
        i = int(value)
    except (TypeError, ValueError, OverflowError):
        raise FrameNotFoundError(f"{what} {value!r} is not an integer") from None
    if i != value:
        raise FrameNotFoundError(f"frame #{value} not found in any chunk ({what} must be an integer)")
    return i


def _as_real(value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise FrameNotFoundError(f"{what} {value!r} is not a number") from None
    if v != v:
        raise FrameNotFoundError(f"{what} {value!r} is not a number")
    return v


def _is_sorted(values: Any) -> bool:
    """True if ``values`` never decrease (runs answer from their ends, without an array)."""
    if isinstance(values, RunArray):
        return values.is_sorted()
    return bool(np.all(values[1:] >= values[:-1]))
