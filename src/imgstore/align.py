"""Reading several stores recorded together in step (multi-camera rigs).

:class:`MultiStore` aligns the frames of several stores by ``frame_time`` (nearest frame within a
tolerance) or by ``frame_number``, decides once and for all, with numpy, which frame of each
store belongs to each *step*, then reads the frames step by step. What happens when a store has
no frame for a step is the ``missing`` policy:

``'drop'``
    skip the step (only steps every store has are kept);
``'repeat'``
    show that store's previous frame again (a zero-order hold); a blank frame until it has one;
``'blank'``
    show a frame of zeros;
``'none'``
    give ``None`` for that store (nothing is read or allocated).

:class:`StoreAligner` is the reference library's class (same names and results) on top of it,
without the reference's bug of applying the previous call's policy on the first call.

>>> with MultiStore([left_path, right_path], by="frame_time", tolerance=0.005) as ms:  # doctest: +SKIP
...     for step in ms:
...         left, right = step.frames          # AlignedFrame(img, frame_number, frame_time, ...)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from .backends.base import ImgStore
from .errors import AlignmentError, InvalidImageError, ModeError, StoreClosedError
from .factory import new_for_filename

if TYPE_CHECKING:
    import pandas as pd

    from .backends.base import ImgStore

__all__ = ["MISSING_POLICIES", "AlignedFrame", "AlignedStep", "AlignmentError", "MultiStore", "StoreAligner"]

log = logging.getLogger("imgstore.align")

#: the ``missing`` policies of :class:`MultiStore`
MISSING_POLICIES = ("drop", "repeat", "blank", "none")
_OK, _REPEAT, _BLANK, _NONE = 0, 1, 2, 3
_STATUS_NAMES = ("ok", "repeat", "blank", "none")



class AlignedFrame(NamedTuple):
    """One store's frame at a step.

    ``status`` is ``'ok'`` (this store's frame for the step), ``'repeat'`` (its previous frame,
    shown again) or ``'blank'`` (zeros: ``frame_number`` None, ``frame_time`` nan,
    ``frame_index`` -1).
    """

    img: np.ndarray
    frame_number: int | None
    frame_time: float
    frame_index: int
    status: str


class AlignedStep(NamedTuple):
    """One step: its position, its key (a frame_time or frame_number) and a frame per store."""

    step: int
    key: int | float
    frames: tuple[AlignedFrame | None, ...]


# ============================================================================ vectorised matching


def _nearest(step_keys: np.ndarray, keys: np.ndarray, tolerance: float, keys_unique: bool | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """For each step, the sorted position of the nearest key within ``tolerance`` (-1: none) and its distance.

    ``step_keys`` and ``keys`` are sorted. On a tie the smaller key wins, and among equal keys the first (with a
    stable sort order: the earliest frame), as in :meth:`~imgstore.frame_index.FrameIndex.nearest_time`.
    """
    n = len(keys)
    out = np.full(len(step_keys), -1, dtype=np.int64)
    dist = np.full(len(step_keys), np.inf)
    if n == 0 or len(step_keys) == 0:
        return out, dist
    if keys_unique is None:
        keys_unique = len(_unique_sorted(keys)) == n
    # blocks of steps: the dozen temporary arrays then stay in the CPU cache
    for a in range(0, len(step_keys), _BLOCK):
        _nearest_block(step_keys[a:a + _BLOCK], keys, tolerance, keys_unique, out[a:a + _BLOCK],
                       dist[a:a + _BLOCK])
    return out, dist


_BLOCK = 1 << 16


def _nearest_block(step_keys: np.ndarray, all_keys: np.ndarray, tolerance: float, keys_unique: bool,
                   out: np.ndarray, dist: np.ndarray) -> None:
    # the steps are sorted: only the keys between the block's first and last step (and one
    # either side) can be nearest, so search that small window instead of the whole store
    first = max(int(np.searchsorted(all_keys, step_keys[0], side="left")) - 1, 0)
    last = int(np.searchsorted(all_keys, step_keys[-1], side="right")) + 1
    if not keys_unique:
        # a run of equal keys must be whole in the window so its first element is found
        first = int(np.searchsorted(all_keys, all_keys[first], side="left"))
    keys = all_keys[first:last]
    n = len(keys)
    pos = np.searchsorted(keys, step_keys, side="left")
    lo = np.clip(pos - 1, 0, n - 1)
    hi = np.minimum(pos, n - 1)
    # differences in the keys' own type first: exact for integers, then as float
    d_lo = np.where(pos > 0, (step_keys - keys[lo]).astype(np.float64), np.inf)
    d_hi = np.where(pos < n, (keys[hi] - step_keys).astype(np.float64), np.inf)
    take_lo = d_lo <= d_hi
    best = np.where(take_lo, lo, hi)
    best_d = np.where(take_lo, d_lo, d_hi)
    if not keys_unique:
        # 'lo' may be inside a run of equal keys: its first element is the earliest frame
        best = np.searchsorted(keys, keys[best], side="left")
    ok = best_d <= tolerance
    out[ok] = best[ok] + first
    dist[ok] = best_d[ok]


def _unique_sorted(keys: np.ndarray) -> np.ndarray:
    """The distinct values of an already sorted array, in O(n) (np.unique would sort again)."""
    if len(keys) < 2:
        return np.asarray(keys).copy()
    keep = np.empty(len(keys), dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def _one_to_one(positions: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Where several steps chose the same key position, keep the closest step (the earliest on ties)."""
    steps = np.flatnonzero(positions >= 0)
    if len(steps) < 2:
        return positions
    # nearest positions of sorted steps never decrease, so this stable sort is a linear pass
    order = steps[np.argsort(positions[steps], kind="stable")]
    p = positions[order]
    d = dist[order]
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    if len(starts) == len(p):
        return positions  # no conflict
    run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(p)]))
    best_d = np.minimum.reduceat(d, starts)
    candidates = np.flatnonzero(d == best_d[run])
    # the first candidate of each run: the closest step, the earliest one on ties
    winners = candidates[np.r_[True, run[candidates][1:] != run[candidates][:-1]]]
    out = positions.copy()
    losers = np.ones(len(p), dtype=bool)
    losers[winners] = False
    out[order[losers]] = -1
    return out


# ============================================================================ MultiStore


class MultiStore:
    """Several stores read in step, aligned by ``frame_time`` or ``frame_number``.

    Parameters
    ----------
    stores
        Stores opened for reading, or their paths (opened here and closed by :meth:`close`).
    by
        ``'frame_time'``: a store's frame belongs to the step whose time is nearest, if within
        ``tolerance`` seconds. ``'frame_number'``: the same with frame numbers (exact unless a
        ``tolerance`` is given).
    tolerance
        Largest distance between a frame and its step, inclusive. Default for ``frame_time``:
        half the shortest median frame interval of the stores (so a frame can only belong to
        one step); for ``frame_number``: 0.
    missing
        What a store shows at a step it has no frame for: ``'drop'``, ``'repeat'``, ``'blank'``
        or ``'none'`` (see :mod:`imgstore.align`).
    reference
        Index of the store whose frames define the steps. None (default): the steps are the
        frames of the first store plus those of the others that no earlier store has a frame
        within ``tolerance`` of, so every store may miss steps.
    names
        Names of the stores in :meth:`table` (default: their folder names, or their positions
        when those repeat).

    Notes
    -----
    Each store frame is used at most once: when several steps find the same frame nearest,
    the closest step keeps it and the others count as missing for that store. Within a store,
    repeated keys resolve to the earliest frame, as in ``get_image``.
    """

    def __init__(self, stores: Sequence[ImgStore | str | os.PathLike], by: str = "frame_time",
                 tolerance: float | None = None, missing: str = "drop", reference: int | None = None,
                 names: Sequence[str] | None = None) -> None:
        if by not in ("frame_time", "frame_number"):
            raise ValueError(f"by {by!r} must be 'frame_time' or 'frame_number'")
        if missing not in MISSING_POLICIES:
            raise ValueError(f"missing {missing!r} must be one of {list(MISSING_POLICIES)}")
        if isinstance(stores, (ImgStore, str, os.PathLike)):
            raise TypeError("stores must be a sequence of stores or paths")
        stores = list(stores)
        if not stores:
            raise ValueError("stores is empty: nothing to align")
        if reference is not None and not (isinstance(reference, (int, np.integer))
                                          and 0 <= reference < len(stores)):
            raise ValueError(f"reference {reference!r} must be the index of one of the {len(stores)} stores")

        self._owned: list[ImgStore] = []
        self._stores: list[ImgStore] = []
        try:
            for s in stores:
                if isinstance(s, ImgStore):
                    self._stores.append(s)
                elif isinstance(s, (str, os.PathLike)):
                    store = new_for_filename(s)
                    self._owned.append(store)
                    self._stores.append(store)
                else:
                    raise TypeError(f"expected a store or a path, got {type(s).__name__}: {s!r}")
            for s in self._stores:
                if s.closed:
                    raise StoreClosedError(f"MultiStore: store {s.filename!r} is closed")
                if s.mode != "r":
                    raise ModeError(f"MultiStore reads stores; {s.filename!r} is open in mode {s.mode!r}")
            self._by = by
            self._missing = missing
            self._reference = None if reference is None else int(reference)
            self._tolerance = self._check_tolerance(tolerance)
            self._names = self._check_names(names)
            self._align()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ set-up

    def _sorted_keys(self, store: ImgStore) -> tuple[np.ndarray | None, np.ndarray]:
        # FrameIndex's sorted views (computed once, or loaded with the index cache)
        index = store.index
        return index.by_time() if self._by == "frame_time" else index.by_number()

    def _check_tolerance(self, tolerance: float | None) -> float:
        if tolerance is None:
            if self._by == "frame_number":
                return 0.0
            intervals = []
            for s in self._stores:
                _, keys = self._sorted_keys(s)
                steps = np.diff(_unique_sorted(keys))
                if len(steps):
                    intervals.append(float(np.median(steps)))
            return min(intervals) / 2 if intervals else 0.0
        try:
            tol = float(tolerance)
        except (TypeError, ValueError):
            raise ValueError(f"tolerance {tolerance!r} is not a number") from None
        if not (tol >= 0 and math.isfinite(tol)):
            raise ValueError(f"tolerance {tolerance!r} must be a finite number >= 0")
        return tol

    def _check_names(self, names: Sequence[str] | None) -> list[str]:
        if names is None:
            base = [os.path.basename(os.path.normpath(s.filename)) for s in self._stores]
            return base if len(set(base)) == len(base) else [str(i) for i in range(len(base))]
        names = [str(n) for n in names]
        if len(names) != len(self._stores) or len(set(names)) != len(names):
            raise ValueError(f"names {names!r} must be {len(self._stores)} distinct names")
        return names

    def _align(self) -> None:
        sorted_keys = [self._sorted_keys(s) for s in self._stores]
        uniques = [_unique_sorted(keys) for _, keys in sorted_keys]
        tol = self._tolerance
        if self._reference is not None:
            steps = uniques[self._reference]
        else:
            steps = uniques[0]
            for uniq in uniques[1:]:
                # frames with no step within tolerance open steps of their own
                near, _ = _nearest(uniq, steps, tol, keys_unique=True)
                new = uniq[near < 0]
                if len(new):
                    # a merge of two sorted arrays: O(n + m log n), no sort of everything
                    steps = np.insert(steps, np.searchsorted(steps, new), new)
        matched = np.empty((len(steps), len(self._stores)), dtype=np.int64)
        for k, (order, keys) in enumerate(sorted_keys):
            positions, dist = _nearest(steps, keys, tol, keys_unique=len(uniques[k]) == len(keys))
            positions = _one_to_one(positions, dist)
            # sorted position -> frame_index (the stable order keeps equal keys in store order)
            frames = positions if order is None else np.where(positions >= 0, order[np.maximum(positions, 0)], -1)
            matched[:, k] = frames

        present = matched >= 0
        status = np.where(present, _OK, _BLANK if self._missing in ("blank", "repeat") else _NONE).astype(np.int8)
        shown = matched.copy()
        if self._missing == "drop":
            keep = present.all(axis=1)
            steps, shown, status = steps[keep], shown[keep], status[keep]
        elif self._missing == "repeat":
            # the last step at or before each step where the store had a frame (-1: none yet)
            rows = np.arange(len(steps))[:, None]
            last = np.maximum.accumulate(np.where(present, rows, -1), axis=0)
            held = np.take_along_axis(matched, np.maximum(last, 0), axis=0)
            repeat = ~present & (last >= 0)
            shown = np.where(present, matched, np.where(repeat, held, -1))
            status[repeat] = _REPEAT
        self._keys = steps
        self._shown = shown
        self._status = status

    # ------------------------------------------------------------------ results

    @property
    def stores(self) -> list[ImgStore]:
        """The aligned stores, in the order given."""
        return list(self._stores)

    @property
    def names(self) -> list[str]:
        """The stores' names in :meth:`table`."""
        return list(self._names)

    @property
    def by(self) -> str:
        """``'frame_time'`` or ``'frame_number'``."""
        return self._by

    @property
    def tolerance(self) -> float:
        """The tolerance in use (the computed default if none was given)."""
        return self._tolerance

    @property
    def missing(self) -> str:
        """The missing-frame policy."""
        return self._missing

    @property
    def keys(self) -> np.ndarray:
        """The key (frame_time or frame_number) of each step, ascending."""
        return self._keys.copy()

    @property
    def frame_indices(self) -> np.ndarray:
        """``(steps, stores)`` frame_index shown by each store at each step (-1: blank or None)."""
        return self._shown.copy()

    def __len__(self) -> int:
        return len(self._keys)

    def table(self) -> pd.DataFrame:
        """The alignment as a DataFrame: one row per step.

        Columns: ``step``, the step key (``frame_time`` or ``frame_number``), then for each store
        ``<name>.frame_index`` (-1 when nothing is shown), ``<name>.frame_number`` (nullable
        integer), ``<name>.frame_time`` (nan when nothing is shown) and ``<name>.status``
        (``ok``/``repeat``/``blank``/``none``).
        """
        import pandas as pd

        cols: dict[str, Any] = {"step": np.arange(len(self)), self._by: self._keys}
        for k, (name, store) in enumerate(zip(self._names, self._stores, strict=True)):
            fi = self._shown[:, k]
            ok = fi >= 0
            safe = np.where(ok, fi, 0)
            numbers = store.frame_numbers[safe] if len(store) else np.zeros(len(fi), np.int64)
            times = store.frame_times[safe] if len(store) else np.zeros(len(fi))
            cols[f"{name}.frame_index"] = fi
            cols[f"{name}.frame_number"] = pd.array(np.where(ok, numbers, 0), dtype="Int64")
            cols[f"{name}.frame_number"][~ok] = pd.NA
            cols[f"{name}.frame_time"] = np.where(ok, times, np.nan)
            cols[f"{name}.status"] = np.asarray(_STATUS_NAMES, dtype=object)[self._status[:, k]]
        return pd.DataFrame(cols)

    # ------------------------------------------------------------------ reading

    def _blank(self, k: int) -> np.ndarray:
        store = self._stores[k]
        return np.zeros(store.image_shape, dtype=store.image_dtype)

    def _step(self, i: int, cache: list[tuple[int, np.ndarray] | None]) -> AlignedStep:
        frames: list[AlignedFrame | None] = []
        for k, store in enumerate(self._stores):
            status = int(self._status[i, k])
            fi = int(self._shown[i, k])
            if status == _NONE:
                frames.append(None)
                continue
            if fi < 0:
                frames.append(AlignedFrame(self._blank(k), None, float("nan"), -1, "blank"))
                continue
            last = cache[k]
            if last is not None and last[0] == fi:
                img = last[1]  # repeated frames are not read again
            else:
                img = store[fi]
                cache[k] = (fi, img)
            frames.append(AlignedFrame(img, int(store.frame_numbers[fi]), float(store.frame_times[fi]), fi,
                                       _STATUS_NAMES[status]))
        key = self._keys[i]
        return AlignedStep(i, int(key) if self._by == "frame_number" else float(key), tuple(frames))

    def __iter__(self) -> Iterator[AlignedStep]:
        """Steps in order; each store's frames are read in order (sequential decoding)."""
        cache: list[tuple[int, np.ndarray] | None] = [None] * len(self._stores)
        for i in range(len(self)):
            yield self._step(i, cache)

    def __getitem__(self, step: int) -> AlignedStep:
        """One step by position (negative counts from the end)."""
        n = len(self)
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step {step!r} must be an integer")
        i = int(step) + n if step < 0 else int(step)
        if not 0 <= i < n:
            raise IndexError(f"step {int(step)} out of range for {n} steps")
        return self._step(i, [None] * len(self._stores))

    def close(self) -> None:
        """Close the stores this object opened from paths."""
        for s in self._owned:
            s.close()
        self._owned = []

    def __enter__(self) -> MultiStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<MultiStore {len(self._stores)} stores by={self._by!r} tolerance={self._tolerance!r} "
                f"missing={self._missing!r} steps={len(self)}>")


# ============================================================================ reference API


class StoreAligner:
    """The reference library's aligner: stores in step by ``frame_number``.

    ``extract_common_frames(policy)`` returns the frame numbers to iterate: those every store
    has (``'drop'``) or those any store has (``'zoh'``: hold the last frame, ``'black'``: zeros).
    Unlike the reference, the policy given is the one applied, on the first call too.
    """

    MISSING_POLICY_DROP = "drop"
    MISSING_POLICY_HOLD = "zoh"
    MISSING_POLICY_BLACK = "black"
    _POLICY: ClassVar[dict[str, str]] = {"drop": "drop", "zoh": "repeat", "black": "blank"}

    def __init__(self, *stores: ImgStore) -> None:
        if not stores:
            raise ValueError("StoreAligner needs at least one store")
        shapes = {tuple(s.image_shape) for s in stores}
        if len(shapes) != 1:
            raise InvalidImageError(f"stores have different image shapes {sorted(shapes)}: cannot be aligned")
        self._stores = stores
        self._store_shape = shapes.pop()
        self._fns: np.ndarray = np.zeros(0, dtype=np.int64)
        self._missing_policy: str | None = None
        self._aligned: MultiStore | None = None

    def extract_common_frames(self, policy: str) -> np.ndarray:
        """Choose the missing-frame policy; return the frame numbers :meth:`iter_imgs` will visit."""
        if policy not in self._POLICY:
            raise ValueError(f"policy {policy!r} must be one of {list(self._POLICY)}")
        # set first: the reference tested the previous call's policy here
        self._missing_policy = policy
        self._aligned = MultiStore(list(self._stores), by="frame_number", tolerance=0,
                                   missing=self._POLICY[policy])
        self._fns = self._aligned.keys.astype(np.int64)
        return self._fns

    def iter_imgs(self, return_times: bool = False) -> Iterator[tuple]:
        """``(frame_number, [img per store])`` (plus ``[frame_time per store]``, nan when missing)."""
        if self._aligned is None:
            raise AlignmentError("call extract_common_frames(policy) before iter_imgs()")
        for step in self._aligned:
            imgs = [f.img if f is not None else None for f in step.frames]
            if return_times:
                times = [f.frame_time if f is not None and f.status == "ok" else float("nan") for f in step.frames]
                yield step.key, imgs, times
            else:
                yield step.key, imgs
