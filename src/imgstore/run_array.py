"""Frame numbers held as runs of consecutive values: 8 bytes per frame become ~16 bytes per run.

A camera numbers its frames 0, 1, 2...; a recording drops a few now and then. Held as an
int64 array, the frame numbers of a week at 30 frames/s take 145 MB; held as runs (where
each run starts and its first value) they take a few kB plus 16 bytes per dropped-frame gap.
:class:`RunArray` answers what the frame index asks of its frame numbers (an item, a slice,
a fancy index, a sorted search, min/max, sortedness) from the runs; anything else gets the
whole array, made once and kept.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .lazy_array import LazyArray

__all__ = ["FrameStack", "RunArray", "RunBuilder"]

_INT64 = np.dtype(np.int64)
#: runs cost 24 bytes each (position, first and last value) against 8 per frame number: frame
#: numbers are kept as runs while there is at most one run per four frames
_MAX_RUN_SHARE = 0.25


class RunArray(LazyArray):
    """A read-only 1-D int64 array stored as runs of consecutive values (``v, v+1, v+2, ...``).

    Parameters
    ----------
    starts
        Position of the first item of each run (ascending, ``starts[0] == 0``).
    values
        Value of the first item of each run.
    length
        Number of items.
    """

    dtype = _INT64

    def __init__(self, starts: ArrayLike, values: ArrayLike, length: int) -> None:
        self._starts = np.ascontiguousarray(starts, dtype=np.int64)
        self._values = np.ascontiguousarray(values, dtype=np.int64)
        self._length = int(length)
        if len(self._starts) != len(self._values) or (self._length and (not len(self._starts)
                                                                         or self._starts[0] != 0)):
            raise ValueError("runs need one value per start, the first at position 0")
        run_lengths = np.diff(np.append(self._starts, self._length))
        self._ends = self._values + run_lengths - 1  # last value of each run
        self._full: np.ndarray | None = None
        self._sorted: bool | None = None  # the runs never change: checked once

    @classmethod
    def from_array(cls, values: ArrayLike) -> RunArray:
        """The runs of ``values`` (any 1-D integer array)."""
        builder = RunBuilder()
        builder.append(np.asarray(values, dtype=np.int64))
        return builder.finish()

    # ------------------------------------------------------------------ numpy's view of it

    @property
    def n_runs(self) -> int:
        """Number of runs."""
        return len(self._starts)

    @property
    def nbytes(self) -> int:
        """Bytes held by the runs (and by the whole array, once made)."""
        return (self._starts.nbytes + self._values.nbytes + self._ends.nbytes
                + (self._full.nbytes if self._full is not None else 0))

    def __repr__(self) -> str:
        return f"<RunArray int64 x {self._length} in {self.n_runs} runs>"

    def __getstate__(self) -> dict[str, Any]:
        return {"starts": self._starts, "values": self._values, "length": self._length}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["starts"], state["values"], state["length"])  # type: ignore[misc]

    def _search(self, v: Any, side: str) -> Any:
        return self.searchsorted(v, side) if self.is_sorted() else None

    def load(self) -> np.ndarray:
        """The whole array (made once, kept, read-only)."""
        if self._full is None:
            full = self._slice(0, self._length)
            full.flags.writeable = False
            self._full = full
        return self._full

    # ------------------------------------------------------------------ items

    def _slice(self, start: int, stop: int) -> np.ndarray:
        """Items ``[start, stop)``: one offset per run repeated over its items (no search per item)."""
        if stop <= start:
            return np.zeros(0, np.int64)
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        last = int(np.searchsorted(self._starts, stop - 1, side="right")) - 1
        bounds = np.concatenate([[start], self._starts[first + 1:last + 1], [stop]])
        offsets = self._values[first:last + 1] - self._starts[first:last + 1]
        out = np.arange(start, stop, dtype=np.int64)
        out += np.repeat(offsets, np.diff(bounds))
        return out

    def _values_at(self, positions: np.ndarray) -> np.ndarray:
        run = np.searchsorted(self._starts, positions, side="right") - 1
        return self._values[run] + (positions - self._starts[run])

    def __getitem__(self, key: Any) -> Any:
        if self._full is not None:
            return self._full[key]
        n = self._length
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {int(key)} is out of bounds for an array of {n} items")
            run = int(np.searchsorted(self._starts, i, side="right")) - 1
            return np.int64(self._values[run] + (i - self._starts[run]))
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return self._slice(start, max(start, stop))
            return self._values_at(np.arange(start, stop, step, dtype=np.int64))
        index = np.asarray(key)
        if index.dtype.kind not in "iu":
            return self.load()[key]
        flat = index.astype(np.int64).ravel()
        flat = np.where(flat < 0, flat + n, flat)
        if flat.size and (flat.min() < 0 or flat.max() >= n):
            raise IndexError(f"index out of bounds for an array of {n} items")
        return self._values_at(flat).reshape(index.shape)

    def min(self) -> np.int64:
        """Smallest value (values rise within a run: the smallest first value)."""
        if not self._length:
            raise ValueError("zero-size array to reduction operation minimum which has no identity")
        return np.int64(self._values.min())

    def max(self) -> np.int64:
        """Largest value (the largest last value of a run)."""
        if not self._length:
            raise ValueError("zero-size array to reduction operation maximum which has no identity")
        return np.int64(self._ends.max())

    def is_sorted(self) -> bool:
        """True if the values never decrease (each run rises; a run starts at or above the last's end)."""
        if self._sorted is None:
            self._sorted = bool(np.all(self._values[1:] >= self._ends[:-1]))
        return self._sorted

    def searchsorted(self, v: ArrayLike, side: str = "left") -> Any:
        """As ``np.searchsorted`` on the (sorted) values, from the runs.

        Raises
        ------
        ValueError
            The values are not sorted.
        """
        if not self.is_sorted():
            raise ValueError("searchsorted needs sorted values")
        values = np.asarray(v)
        if values.ndim == 0:
            return self._search_one(values[()], side)
        out = np.array([self._search_one(x, side) for x in values.ravel().tolist()], dtype=np.intp)
        return out.reshape(values.shape)

    def _search_one(self, value: Any, side: str) -> int:
        # left: the first item >= value; right: the first item > value. The first run whose last
        # value passes the test holds it: at its start, or as far in as the value is above its first
        if isinstance(value, (float, np.floating)) and math.isnan(value):
            return self._length  # numpy sorts nan last
        run = int(np.searchsorted(self._ends, value, side=side))  # type: ignore[call-overload]
        if run == len(self._ends):
            return self._length
        first = int(self._values[run])
        if isinstance(value, (int, np.integer)):
            # integers compare exactly: the offset is the difference (a lookup by frame_number)
            step = int(value) - first + (0 if side == "left" else 1)
            return int(self._starts[run]) + max(0, step)
        if isinstance(value, (float, np.floating)):
            # compared as numpy compares int64 items with a float: both as float64
            target: float | int = float(value)

            def passes(k: int) -> bool:
                item = float(first + k)
                return item >= target if side == "left" else item > target
        else:
            target = int(value)

            def passes(k: int) -> bool:
                return first + k >= target if side == "left" else first + k > target
        # the offset from the difference, then corrected item by item: a float difference can
        # round (0 - -1 + 4e-194 is 1.0), and the run's last item passes, so this ends
        above = target - first
        k = max(0, math.ceil(above) if side == "left" else math.floor(above) + 1)
        while k > 0 and passes(k - 1):
            k -= 1
        while not passes(k):
            k += 1
        return int(self._starts[run]) + k


class RunBuilder:
    """Values appended piece by piece (a chunk's frame numbers at a time) into runs."""

    def __init__(self) -> None:
        self._starts: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self.n_runs = 0
        self.length = 0
        self._last: int | None = None  # the last value appended

    def append(self, values: np.ndarray) -> None:
        """Add the next values (1-D int64)."""
        values = np.asarray(values, dtype=np.int64)
        if not len(values):
            return
        breaks = np.flatnonzero(np.diff(values) != 1) + 1
        if self._last is None or int(values[0]) != self._last + 1:
            breaks = np.concatenate([np.zeros(1, np.int64), breaks])
        self._starts.append(breaks + self.length)
        self._values.append(values[breaks])
        self.n_runs += len(breaks)
        self.length += len(values)
        self._last = int(values[-1])

    def finish(self) -> RunArray:
        """The values appended."""
        return RunArray(np.concatenate(self._starts) if self._starts else np.zeros(0, np.int64),
                        np.concatenate(self._values) if self._values else np.zeros(0, np.int64), self.length)


class FrameStack:
    """Chunks' frame numbers and times appended into one growing pair of arrays.

    Room is made for the chunks still to come at the length of the latest one (pages of
    ``np.empty`` never written are never resident), so a store of equal chunks is read with
    one allocation and no copy: building the index of 18.1 M frames peaked at 588 MB (per-chunk
    arrays plus their concatenation) before. Frame numbers are kept as runs of consecutive
    values (:class:`RunArray`: 8 bytes per frame become ~24 per dropped-frame
    gap) unless there are more than one run per :data:`_MAX_RUN_SHARE` frames.
    """

    def __init__(self, n_chunks: int) -> None:
        self._left = n_chunks
        self._runs: RunBuilder | None = RunBuilder()
        self._fn = np.zeros(0, np.int64)
        self._ft = np.zeros(0, np.float64)
        self._size = 0

    def append(self, frame_number: np.ndarray, frame_time: np.ndarray) -> slice:
        """Add one chunk's frames; returns where they are in :meth:`arrays`."""
        n = len(frame_number)
        self._left -= 1
        a, b = self._size, self._size + n
        if b > len(self._ft):
            room = max(b + max(n, 1) * max(self._left, 0), 2 * len(self._ft))
            ft = np.empty(room, np.float64)
            ft[:a] = self._ft[:a]
            self._ft = ft
            if self._runs is None:
                fn = np.empty(room, np.int64)
                fn[:a] = self._fn[:a]
                self._fn = fn
        self._ft[a:b] = frame_time
        if self._runs is not None:
            self._runs.append(frame_number)
            if self._runs.n_runs > 64 and self._runs.n_runs > b * _MAX_RUN_SHARE:
                # too many gaps for runs to pay: a plain array from here on
                self._fn = np.empty(len(self._ft), np.int64)
                self._fn[:b] = self._runs.finish().load()
                self._runs = None
        else:
            self._fn[a:b] = frame_number
        self._size = b
        return slice(a, b)

    def arrays(self) -> tuple[np.ndarray | RunArray, np.ndarray]:
        """The frames appended, in order."""
        numbers = self._runs.finish() if self._runs is not None else self._fn[:self._size]
        return numbers, self._ft[:self._size]

