"""Access by position that leaves the classic cursor alone: the array view and the named API.

``len(store)``, ``store[i]``, slices, index arrays and iteration take positions
(``frame_index``, 0 .. N-1); the named calls follow one rule (see :mod:`imgstore.results`):
``get_frame_at`` (a position), ``get_frame_by_number`` (the camera's frame_number),
``get_frame_played_at`` (a frame_time).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import FrameIndexError

if TYPE_CHECKING:
    from ..frame_index import FrameIndex
    from ..results import Frame

__all__ = ["ArrayView"]


class ArrayView:
    """Mixin of :class:`~imgstore.backends.base.ImgStore`: access by frame_index, number and time."""

    if TYPE_CHECKING:
        frame_count: int
        image_shape: tuple[int, ...]

        def _require_mode(self, modes: str, what: str) -> None: ...
        def _read_at(self, frame_index: int, move_cursor: bool) -> Frame: ...
        def _output_dtype(self) -> np.dtype: ...
        def _current_index(self) -> FrameIndex: ...

        _frame_index: FrameIndex

    def __len__(self) -> int:
        return self.frame_count

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray) -> np.ndarray:
        """Images by frame_index: ``store[i]``, ``store[a:b:c]``, ``store[[i, j]]``, ``store[mask]``."""
        self._require_mode("r", "indexing")
        n = len(self._current_index())
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            i = int(key)
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise FrameIndexError(f"frame_index {int(key)} out of range for a store of {n} frames")
            return self._read_at(i, move_cursor=False).image
        if isinstance(key, slice):
            indices = np.arange(n)[key]
        else:
            indices = np.asarray(key)
            if indices.dtype == bool:
                if indices.shape != (n,):
                    raise FrameIndexError(f"boolean mask of shape {indices.shape} for a store of {n} frames")
                indices = np.flatnonzero(indices)
            elif indices.dtype.kind not in "iu" or indices.ndim != 1:
                raise FrameIndexError(f"cannot index a store with {key!r}")
            bad = (indices < -n) | (indices >= n)
            if bad.any():
                raise FrameIndexError(f"frame_index {int(indices[bad][0])} out of range for a store of {n} frames")
            indices = np.where(indices < 0, indices + n, indices)
        out = np.empty((len(indices), *self.image_shape), dtype=self._output_dtype())
        for k, i in enumerate(indices):
            out[k] = self._read_at(int(i), move_cursor=False).image
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        """Images in store order (does not move the classic cursor)."""
        for i in range(len(self)):
            yield self._read_at(i, move_cursor=False).image

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[np.ndarray, int, float]]:
        """``(image, frame_number, frame_time)`` for frame_index ``start .. stop-1``."""
        self._require_mode("r", "iter_frames")
        stop = len(self) if stop is None else min(stop, len(self))
        for i in range(max(start, 0), stop):
            img, (fn, ft) = self._read_at(i, move_cursor=False)
            yield img, fn, ft

    def get_frame_at(self, frame_index: int) -> Frame:
        """The frame at position ``frame_index`` (0 .. N-1; negative counts from the end)."""
        self._require_mode("r", "get_frame_at")
        if isinstance(frame_index, (int, np.integer)) and frame_index < 0:
            frame_index = int(frame_index) + len(self._frame_index)
        return self._read_at(self._frame_index.check_index(frame_index), move_cursor=False)

    def get_frame_by_number(self, frame_number: int, exact: bool = True) -> Frame:
        """The frame with this frame_number (the nearest one unless ``exact``)."""
        return self.get_frame_at(self.index_of_number(frame_number, exact=exact))

    def get_frame_played_at(self, frame_time: float) -> Frame:
        """The frame whose frame_time is nearest ``frame_time`` (seconds since the epoch)."""
        return self.get_frame_at(self.index_played_at(frame_time))

    def index_of_number(self, frame_number: int, exact: bool = True) -> int:
        """frame_index of a frame_number (nearest if not ``exact``)."""
        index = self._current_index()
        return index.find_number(frame_number) if exact else index.nearest_number(frame_number)

    def index_played_at(self, frame_time: float) -> int:
        """frame_index of the frame nearest to ``frame_time``."""
        return self._current_index().nearest_time(frame_time)

    #: earlier names of :meth:`index_of_number` and :meth:`index_played_at`
    frame_index_of = index_of_number
    frame_index_at_time = index_played_at

    @property
    def index(self) -> FrameIndex:
        """The frame index: where each frame lives (:class:`~imgstore.frame_index.FrameIndex`)."""
        return self._current_index()

    @property
    def frame_numbers(self) -> np.ndarray:
        """frame_number of every frame in store order (read-only int64 array)."""
        return _readonly(self._current_index().frame_number)

    @property
    def frame_times(self) -> np.ndarray:
        """frame_time of every frame in store order (read-only float64 array)."""
        return _readonly(self._current_index().frame_time)


def _readonly(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view
