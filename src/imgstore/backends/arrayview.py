"""The array view of a store: ``len(store)``, ``store[i]``, slices, index arrays, iteration.

Positions are ``frame_index`` (0 .. N-1); the classic API's cursor is not moved.
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
    """Mixin of :class:`~imgstore.backends.base.ImgStore`: NumPy-style access by frame_index."""

    if TYPE_CHECKING:
        frame_count: int
        image_shape: tuple[int, ...]

        def _require_mode(self, modes: str, what: str) -> None: ...
        def _read_at(self, frame_index: int, move_cursor: bool) -> Frame: ...
        def _output_dtype(self) -> np.dtype: ...
        def _current_index(self) -> FrameIndex: ...

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
