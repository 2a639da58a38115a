"""Access by position that leaves the classic cursor alone: the array view and the named API.

A store is a lazy array of shape ``(frame_count, *image_shape)``: ``store.shape``, ``dtype``,
``ndim``, ``size``, ``nbytes``, numpy indexing over every axis (the first one is frame_index,
0 .. N-1), ``np.asarray(store)`` up to a documented size, ``to_xarray()``. Indexing decodes only
the frames the key selects: :func:`plan_indexing` turns a key into those frames and the key to
apply to their stack. The named calls follow one rule (see :mod:`imgstore.results`):
``get_frame_at`` (a position), ``get_frame_by_number`` (the camera's frame_number),
``get_frame_played_at`` (a frame_time).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ArrayTooLargeError, FrameIndexError, FrameNotFoundError, InvalidOptionError, MissingDependencyError
from ..results import FrameBatch

if TYPE_CHECKING:
    from ..frame_index import FrameIndex
    from ..results import Frame
    from .contract import Backend

__all__ = ["DEFAULT_MAX_ARRAY_BYTES", "ArrayView", "IndexPlan", "plan_indexing"]

#: the largest store ``np.asarray(store)`` decodes, in bytes (4 GiB); see ``ArrayView.max_array_bytes``
DEFAULT_MAX_ARRAY_BYTES = 4 * 2**30


@dataclasses.dataclass(frozen=True)
class IndexPlan:
    """What a key reads: ``frames`` (sorted, distinct frame_index values) and the ``key`` that
    gives numpy's answer when applied to the stack of those frames."""

    frames: np.ndarray
    key: tuple


def _axes_taken(entry: Any) -> int:
    """How many array axes an index entry consumes (numpy's rules)."""
    if entry is None or entry is Ellipsis or isinstance(entry, (bool, np.bool_)):
        return 0
    if isinstance(entry, np.ndarray) and entry.dtype == bool:
        return entry.ndim
    return 1


def _as_entry(entry: Any) -> Any:
    """Lists and other sequences become arrays, as numpy makes them (``[]`` is an empty intp index)."""
    if entry is None or entry is Ellipsis or isinstance(entry, (int, np.integer, slice, np.ndarray, bool, np.bool_)):
        return entry
    if isinstance(entry, (list, tuple)):
        arr = np.asarray(entry)
        return arr.astype(np.intp) if arr.size == 0 and arr.dtype.kind == "f" else arr
    return entry


def plan_indexing(key: Any, shape: tuple[int, ...]) -> IndexPlan:
    """Which frames ``key`` needs from an array of ``shape``, and the key for their stack.

    ``np.stack([full[i] for i in plan.frames])[plan.key]`` equals ``full[key]`` (numpy's
    basic and advanced indexing); only the entry that indexes the first axis is rewritten.

    Raises
    ------
    FrameIndexError
        An index out of range, a mask of the wrong shape, too many indices, or an entry
        numpy does not index with.
    """
    n = shape[0]
    entries = [_as_entry(e) for e in (key if isinstance(key, tuple) else (key,))]
    # a boolean array over several axes is its nonzero() arrays, one per axis (numpy's rule)
    split: list[Any] = []
    for e in entries:
        if isinstance(e, np.ndarray) and e.dtype == bool and e.ndim > 1:
            split.extend(e.nonzero())
        else:
            split.append(e)
    taken = sum(_axes_taken(e) for e in split)
    if taken > len(shape) or sum(e is Ellipsis for e in split) > 1:
        raise FrameIndexError(f"too many indices for a store of shape {shape}: {key!r}")
    frames: np.ndarray = np.arange(n)  # the first axis taken whole (implicitly or by the ellipsis)
    where = next((k for k, e in enumerate(split) if e is Ellipsis or _axes_taken(e)), None)
    if where is not None and split[where] is Ellipsis and taken == len(shape):
        # an ellipsis standing for no axis: the next entry that takes an axis takes the first one
        where = next(k for k in range(where + 1, len(split)) if _axes_taken(split[k]))
    if where is not None and split[where] is not Ellipsis:
        frames, split[where] = _plan_first_axis(split[where], n, shape, key)
    try:
        # numpy checks the whole key on a free stand-in of the store (zero strides: no frame decoded)
        np.broadcast_to(np.zeros((), np.uint8), shape)[tuple(entries)]
    except (IndexError, ValueError) as exc:  # out of range, wrong type; a zero slice step
        raise FrameIndexError(f"{exc}: store of shape {shape} indexed with {key!r}") from None
    return IndexPlan(frames, tuple(split))


def _plan_first_axis(entry: Any, n: int, shape: tuple[int, ...], key: Any) -> tuple[np.ndarray, Any]:
    """(frames to read, the entry that replaces ``entry`` on their stack)."""
    if isinstance(entry, slice):
        if entry.step == 0:
            raise FrameIndexError(f"slice step cannot be zero: store of shape {shape} indexed with {key!r}")
        picked = np.arange(n)[entry]
        if entry.step is not None and entry.step < 0:
            return picked[::-1], slice(None, None, -1)
        return picked, slice(None)
    if isinstance(entry, (int, np.integer)):
        i = int(entry)
        if not -n <= i < n:
            raise FrameIndexError(f"frame_index {i} out of range for a store of {n} frames")
        return np.array([i % n]), 0
    arr = np.asarray(entry)
    if arr.dtype == bool:  # one-dimensional here: several-axis masks were split
        if arr.shape != (n,):
            raise FrameIndexError(f"boolean mask of shape {arr.shape} for a store of shape {shape}")
        arr = np.flatnonzero(arr)
    elif arr.dtype.kind not in "iu":
        raise FrameIndexError(f"cannot index a store with {key!r}: only integers, slices, ..., None and integer "
                              f"or boolean arrays are valid indices")
    bad = (arr < -n) | (arr >= n)
    if bad.any():
        raise FrameIndexError(f"frame_index {int(arr[bad].flat[0])} out of range for a store of {n} frames")
    arr = np.where(arr < 0, arr + n, arr)
    frames = np.unique(arr)
    return frames, np.asarray(np.searchsorted(frames, arr)).reshape(arr.shape)


class ArrayView:
    """Mixin of :class:`~imgstore.backends.base.ImgStore`: access by frame_index, number and time."""

    if TYPE_CHECKING:
        frame_count: int
        image_shape: tuple[int, ...]

        def _require_mode(self, modes: str, what: str) -> None: ...
        def _read_at(self, frame_index: int, move_cursor: bool) -> Frame: ...
        def _read_many(self, frame_indices: np.ndarray) -> np.ndarray: ...
        def _output_dtype(self) -> np.dtype: ...
        def _current_index(self) -> FrameIndex: ...
        def to_dask(self, **kwargs: Any) -> Any: ...

        _frame_index: FrameIndex
        _backend: Backend
        filename: str
        uuid: str | None
        format: str

    def __len__(self) -> int:
        return self.frame_count

    # ------------------------------------------------------------------ the array protocol

    #: ``np.asarray(store)`` refuses stores bigger than this many bytes (default 4 GiB) with
    #: :class:`~imgstore.errors.ArrayTooLargeError` instead of filling the memory; set it on a
    #: store (``store.max_array_bytes = 16 * 2**30``) or slice the store, or use :meth:`to_dask`.
    max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES

    @property
    def frame_cache_mb(self) -> float:
        """Size bound of the decoded-frame cache, in MiB (video stores; 256 by default).

        A video store keeps the frames its decoders output, up to this size, shared by its
        chunks: stepping backwards through a long GOP, or scrubbing back and forth over a
        window, decodes each frame once (docs/performance.md). Set it on an open store
        (``store.frame_cache_mb = 1024``; 0 keeps nothing); stores whose frames are files
        keep no cache (0).
        """
        return self._backend.frame_cache_bytes / 2**20

    @frame_cache_mb.setter
    def frame_cache_mb(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value) or value < 0:
            raise InvalidOptionError(f"frame_cache_mb {value!r} must be a non-negative number of MiB")
        self._backend.set_frame_cache_bytes(int(value * 2**20))

    @property
    def shape(self) -> tuple[int, ...]:
        """``(frame_count, *image_shape)``, as numpy's ``shape``."""
        return (len(self._current_index()), *self.image_shape)

    @property
    def dtype(self) -> np.dtype:
        """dtype of the frames returned."""
        return self._output_dtype()

    @property
    def ndim(self) -> int:
        """``len(shape)``: 3 for grey frames, 4 for colour ones."""
        return 1 + len(self.image_shape)

    @property
    def size(self) -> int:
        """Number of elements (pixel values) of the whole store."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the whole store takes once decoded (``size * dtype.itemsize``)."""
        return self.size * self.dtype.itemsize

    def __getitem__(self, key: Any) -> Any:
        """numpy indexing over every axis; the first one is frame_index.

        ``store[i]`` is frame ``i``; ``store[3, 20, 40]`` is the value of frame 3 at row 20,
        column 40; slices (negative steps too), ``...``, ``None``, integer arrays and boolean
        masks work as on ``np.asarray(store)``, reading only the frames the key selects.

        Raises
        ------
        FrameIndexError
            An index out of range or of a type numpy does not index with (an ``IndexError``).
        """
        self._require_mode("r", "indexing")
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            # the common case, without a copy: one frame
            n = len(self._current_index())
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise FrameIndexError(f"frame_index {int(key)} out of range for a store of {n} frames")
            return self._read_at(i, move_cursor=False).image
        plan = plan_indexing(key, self.shape)
        first = plan.key[0] if len(plan.key) == 1 else None
        if isinstance(first, np.ndarray) and first.ndim == 1 and first.dtype.kind in "iu":
            # store[[i, j, ...]]: the frames straight into the order asked for (no second copy)
            return self.read_frames_at(plan.frames[first])
        return self.read_frames_at(plan.frames)[plan.key]

    def read_frames_at(self, frame_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The frames at these positions (0 .. N-1, any order, repeats allowed), stacked.

        Shape ``(len(frame_indices), *image_shape)``. Every multi-frame read goes through
        the batch reader (:mod:`~imgstore.backends.batch`): each chunk's frames are decoded
        once, in file order, several chunks at a time where cores allow.
        """
        self._require_mode("r", "reading frames")
        indices = np.asarray(frame_indices)
        if indices.size and indices.dtype.kind not in "iu":
            raise FrameIndexError(f"frame_index values must be integers, not {indices.dtype}")
        indices = indices.astype(np.int64, copy=False).reshape(-1)
        n = len(self._current_index())
        bad = (indices < 0) | (indices >= n)
        if bad.any():
            raise FrameIndexError(f"frame_index {int(indices[bad][0])} out of range for a store of {n} frames")
        return self._read_many(indices)

    def get_frames(self, frame_indices: Sequence[int] | np.ndarray | None = None, *,
                   frame_numbers: Sequence[int] | np.ndarray | None = None,
                   frame_times: Sequence[float] | np.ndarray | None = None) -> FrameBatch:
        """Many frames at once, in the order asked for, with their metadata.

        Give exactly one of ``frame_indices`` (positions ``0 .. N-1``; negative ones count
        from the end), ``frame_numbers`` (exact camera numbers) or ``frame_times`` (the
        nearest frame to each time, seconds since the epoch). Any order, repeats allowed:
        the frames are sorted and de-duplicated, each chunk's share is decoded once (each
        GOP's span in one pass), several chunks at a time where cores allow, and the result
        is put back in the order asked for. Faster than a loop of single reads for any list.

        Returns
        -------
        FrameBatch
            ``images`` (``(k, *image_shape)``), ``frame_index``, ``frame_number`` and
            ``frame_time`` arrays, row ``i`` for the ``i``-th frame asked for.

        Raises
        ------
        FrameIndexError
            A frame_index out of range, or not exactly one of the three given.
        FrameNotFoundError
            A frame_number no frame has (a ``ValueError``).
        """
        self._require_mode("r", "get_frames")
        given = [x is not None for x in (frame_indices, frame_numbers, frame_times)]
        if sum(given) != 1:
            raise FrameIndexError("get_frames takes exactly one of frame_indices, frame_numbers and frame_times")
        index = self._current_index()
        n = len(index)
        if frame_indices is not None:
            indices = np.asarray(frame_indices).reshape(-1)
            if indices.size and indices.dtype.kind not in "iu":
                raise FrameIndexError(f"frame_indices must be integers, not {indices.dtype}")
            indices = indices.astype(np.int64, copy=False)
            bad = (indices < -n) | (indices >= n)
            if bad.any():  # named as given, before negative values are counted from the end
                raise FrameIndexError(f"frame_index {int(indices[bad][0])} out of range for a store of {n} frames")
            indices = np.where(indices < 0, indices + n, indices)
        elif frame_numbers is not None:
            numbers = np.asarray(frame_numbers).reshape(-1)
            if numbers.size and numbers.dtype.kind not in "iu":
                raise FrameNotFoundError(f"frame_numbers must be integers, not {numbers.dtype}")
            indices = index.positions_for_numbers(numbers.astype(np.int64, copy=False))
            if (indices < 0).any():
                raise FrameNotFoundError(f"frame #{int(numbers[indices < 0][0])} not found in any chunk")
        else:
            times = np.asarray(frame_times, dtype=np.float64).reshape(-1)
            indices = np.fromiter((index.nearest_time(t) for t in times.tolist()), np.int64, len(times))
        images = self.read_frames_at(indices)
        numbers_out, times_out = index.metadata_of(indices)
        return FrameBatch(images, indices, numbers_out, times_out)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """Every frame as one array (``np.asarray(store)``), up to :attr:`max_array_bytes`.

        Raises
        ------
        ArrayTooLargeError
            The store holds more than :attr:`max_array_bytes` bytes of frames (a ``MemoryError``).
        ValueError
            ``copy=False``: frames are always decoded into a new array.
        """
        if copy is False:
            raise ValueError("a store cannot be viewed as an array without copying (its frames are decoded)")
        if self.nbytes > self.max_array_bytes:
            raise ArrayTooLargeError(
                f"the store {self.shape} {self.dtype} holds {_human(self.nbytes)} of frames, above "
                f"max_array_bytes={self.max_array_bytes} ({_human(self.max_array_bytes)}): read a slice "
                f"(store[a:b]), use store.to_dask(), or raise store.max_array_bytes")
        out = self.read_frames_at(np.arange(len(self._current_index())))
        return out if dtype is None else out.astype(dtype, copy=False)

    def to_xarray(self, **kwargs: Any):
        """The store as a lazy, labelled ``xarray.DataArray`` over :meth:`to_dask`.

        Dimensions ``frame, y, x`` (and ``channel`` = ``b, g, r`` for colour frames); the
        ``frame`` dimension carries ``frame_index``, ``frame_number`` and ``frame_time``
        coordinates, so ``arr.sel(frame=...)`` and ``arr.swap_dims(frame="frame_number")``
        select by number. ``kwargs`` go to :meth:`to_dask`.

        Raises
        ------
        MissingDependencyError
            xarray (or dask) is not installed: ``pip install 'imgstore[xarray]'``.
        """
        try:
            import xarray as xr
        except ImportError as exc:
            raise MissingDependencyError(f"to_xarray needs xarray ({exc}); install it with: "
                                         f"pip install 'imgstore[xarray]'") from exc
        data = self.to_dask(**kwargs)
        dims = ["frame", "y", "x", "channel"][: data.ndim]
        coords: dict[str, Any] = {"frame_index": ("frame", np.arange(data.shape[0])),
                                  "frame_number": ("frame", np.array(self.frame_numbers)),
                                  "frame_time": ("frame", np.array(self.frame_times))}
        if data.ndim == 4 and data.shape[3] == 3:
            coords["channel"] = ["b", "g", "r"]  # the store's frames are BGR, as OpenCV's
        attrs = {"store": self.filename, "uuid": self.uuid or "", "format": self.format}
        return xr.DataArray(data, dims=dims, coords=coords, attrs=attrs, name=os.path.basename(self.filename))

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


def _human(nbytes: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} bytes"


def _readonly(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view
