"""A frame index read from a file that may have been damaged since it was written.

The index cache (:mod:`imgstore.index_cache`) is read by page so that a week-long store opens
without reading its arrays; checking them all at open would read them all. Instead each
chunk's frame numbers and times carry a digest (in the cache's checksummed chunk table) and
are checked the first time a lookup uses them, and a lookup through a sorted view checks the
keys it lands on against the (checked) frames they name. A binary search over a sorted array
is right exactly when the keys on both sides of its answer are right, so damage anywhere in a
view can misdirect a search only into a contradiction that is caught.

Damage found: the index is rebuilt from the chunk indexes (a callback supplied by the
scanner), the lookup answered from the rebuilt index, and a warning says so; without a
callback :class:`~imgstore.errors.IndexCorruptError` is raised. Never a wrong frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .checksums import frames_digest
from .errors import IndexCorruptError
from .frame_index import FrameIndex, SortedView

__all__ = ["CheckedFrameIndex"]


class _Rebuilt(Exception):
    """The arrays were replaced by a rebuilt index: the lookup starts again."""


class CheckedFrameIndex(FrameIndex):
    """A :class:`FrameIndex` whose arrays are checked lazily against per-chunk digests.

    Parameters
    ----------
    chunk_digests
        :func:`~imgstore.checksums.frames_digest` of each chunk's frames (non-empty chunks).
    origin
        Where the arrays come from (for messages).
    on_damage
        Called with a description of the damage; returns an index built from the chunks'
        own files. None: damage raises :class:`IndexCorruptError`.
    """

    def __init__(self, chunk_numbers: ArrayLike, chunk_lengths: ArrayLike, frame_number: np.ndarray,
                 frame_time: np.ndarray, *, chunk_digests: ArrayLike, origin: str,
                 by_number: SortedView | None = None, by_time: SortedView | None = None,
                 on_damage: Callable[[str], FrameIndex] | None = None) -> None:
        super().__init__(chunk_numbers, chunk_lengths, frame_number, frame_time, by_number=by_number,
                         by_time=by_time)
        digests = np.asarray(chunk_digests, dtype=np.uint64)
        if len(digests) != len(self.chunk_numbers):
            raise ValueError("one digest per chunk is needed")
        self._digests: np.ndarray | None = digests
        self._verified = np.zeros(len(digests), dtype=bool)
        self._unverified = len(digests)
        self._origin = origin
        self.on_damage = on_damage

    @property
    def checked(self) -> bool:
        """False once the arrays were replaced by an index rebuilt from the chunks' files."""
        return self._digests is not None

    # ------------------------------------------------------------------ whole arrays

    @property
    def frame_number(self) -> np.ndarray:
        self._verify_all()
        return self._frame_number

    @property
    def frame_time(self) -> np.ndarray:
        self._verify_all()
        return self._frame_time

    def _verify_all(self) -> None:
        with contextlib.suppress(_Rebuilt):  # after a rebuild the arrays are the rebuilt ones
            self._verify_rows(np.flatnonzero(~self._verified))

    # ------------------------------------------------------------------ lookups (retried after a rebuild)

    def _retry(self, lookup: Callable[..., Any], *args: Any) -> Any:
        try:
            return lookup(*args)
        except _Rebuilt:
            return lookup(*args)

    def metadata_at(self, frame_index: int) -> tuple[int, float]:
        return self._retry(super().metadata_at, frame_index)

    def metadata_of(self, frame_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._retry(super().metadata_of, frame_indices)

    def find_number(self, frame_number: Any) -> int:
        return self._retry(super().find_number, frame_number)

    def nearest_number(self, frame_number: Any) -> int:
        return self._retry(super().nearest_number, frame_number)

    def nearest_time(self, frame_time: float) -> int:
        return self._retry(super().nearest_time, frame_time)

    def positions_for_numbers(self, frame_numbers: np.ndarray) -> np.ndarray:
        return self._retry(super().positions_for_numbers, frame_numbers)

    # ------------------------------------------------------------------ the checks

    def _check_frames(self, frame_indices: np.ndarray) -> None:
        if self._digests is None or not self._unverified or not len(frame_indices):
            return  # every read pays this test only, once each chunk was checked
        if len(frame_indices) <= 4:
            # a lookup's frame or two: one search each costs less than the vector way (measured:
            # the lookups of a 36 M-frame store spent a third of their time in np.unique here)
            for i in np.asarray(frame_indices).tolist():
                row = int(np.searchsorted(self.chunk_starts, i, side="right")) - 1
                if not self._verified[row]:
                    self._verify_rows(np.array([row]))
            return
        rows = np.searchsorted(self.chunk_starts, frame_indices, side="right") - 1
        self._verify_rows(np.unique(rows))

    def _check_view(self, which: str, positions: np.ndarray) -> None:
        if self._digests is None:
            return
        n = len(self._frame_number)
        if len(positions) <= 4:
            positions = np.array(sorted({p for p in positions.tolist() if 0 <= p < n}), dtype=np.int64)
        else:
            positions = np.unique(positions[(positions >= 0) & (positions < n)])
        if not len(positions):
            return
        order, keys = self._number_order, self._number_sorted
        values: np.ndarray = self._frame_number
        if which == "time":
            order, keys, values = self._time_order, self._time_sorted, self._frame_time
        if keys is None:
            return  # computed here from checked arrays
        if order is None:
            frames = positions  # the view is the array itself
            if keys is values:
                self._check_frames(frames)
                return  # the keys are the checked values
        else:
            frames = np.asarray(order[positions], dtype=np.int64)
            if np.any((frames < 0) | (frames >= n)):
                self._damaged(f"its {which} sort order names frames that do not exist")
        self._check_frames(frames)
        if not np.array_equal(np.asarray(keys[positions]), values[frames]):
            self._damaged(f"its sorted frame {which}s disagree with the frames they name")

    def _verify_rows(self, rows: np.ndarray) -> None:
        if self._digests is None:
            return
        for row in rows:
            row = int(row)
            if self._verified[row]:
                continue
            a, b = int(self.chunk_starts[row]), int(self.chunk_starts[row + 1])
            if frames_digest(self._frame_number[a:b], self._frame_time[a:b]) != int(self._digests[row]):
                self._damaged(f"the frames of chunk {int(self.chunk_numbers[row])} fail their checksum")
            self._verified[row] = True
            self._unverified -= 1

    def _damaged(self, why: str) -> None:
        message = f"{self._origin} is damaged: {why}"
        if self.on_damage is None:
            raise IndexCorruptError(message)
        fresh = self.on_damage(message)
        # become the rebuilt index: whoever holds this object now reads the chunks' own frames
        vars(self).update({k: v for k, v in vars(fresh).items()})
        self._digests = None
        raise _Rebuilt
