"""Frames for training: a map-style dataset over stores, for PyTorch-style loaders in worker processes.

:class:`FrameDataset` holds only references (each store's folder, uuid and read options) and
the per-frame metadata, so it pickles small; each process, and each thread in it, opens its own
readers on first use (a reader holds decoders and file handles that must not be shared: after a
``fork`` the inherited ones are left alone and new ones are opened). torch is not a dependency:
the dataset has the ``__len__``/``__getitem__`` protocol ``torch.utils.data.DataLoader`` uses,
and its samples are named tuples, which the default collate function batches field by field.

>>> from torch.utils.data import DataLoader                           # doctest: +SKIP
>>> ds = FrameDataset(["cam0", "cam1"], transform=lambda s: s.image[None] / 255.0)  # doctest: +SKIP
>>> loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=4)             # doctest: +SKIP

Shuffled reads from H.264 stores seek to a keyframe per frame (~400 random 640x480 frames/s per
worker with the default keyframe interval); lossless or ``mjpeg/avi`` stores read faster.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import ChunkReadError, FrameIndexError
from ..factory import new_for_filename
from ..parallel import StoreRef

__all__ = ["FrameDataset", "FrameSample"]


class FrameSample(NamedTuple):
    """One frame and where it comes from."""

    image: np.ndarray
    store: int  # position of the store in the dataset's list
    frame_index: int
    frame_number: int
    frame_time: float


class FrameDataset:
    """The frames of one or more stores as one indexable sequence of :class:`FrameSample`.

    Parameters
    ----------
    stores
        Stores opened for reading, or their paths (opened here to read their metadata).
    frame_indices
        Per store, the frame_index values to include (None: every frame), e.g. the labelled ones.
    transform
        Applied to each sample before it is returned (e.g. to a tensor); must be picklable
        to be used in worker processes.
    """

    def __init__(self, stores: Sequence[Any] | Any, frame_indices: Sequence[Any] | None = None,
                 transform: Callable[[FrameSample], Any] | None = None) -> None:
        if isinstance(stores, (str, os.PathLike)) or hasattr(stores, "get_frame_at"):
            stores = [stores]
        if frame_indices is not None and len(frame_indices) != len(stores):
            raise ValueError(f"frame_indices has {len(frame_indices)} entries for {len(stores)} stores")
        self.refs: list[StoreRef] = []
        store_of, index_of, numbers, times = [], [], [], []
        for k, given in enumerate(stores):
            store = new_for_filename(given) if isinstance(given, (str, os.PathLike)) else given
            try:
                self.refs.append(StoreRef.of(store))
                n = len(store)
                picked = np.arange(n) if frame_indices is None or frame_indices[k] is None \
                    else np.asarray(frame_indices[k], dtype=np.int64)
                if picked.size and (picked.min() < 0 or picked.max() >= n):
                    bad = picked[(picked < 0) | (picked >= n)][0]
                    raise FrameIndexError(f"frame_index {int(bad)} out of range for store {k} "
                                          f"({store.filename}, {n} frames)")
                store_of.append(np.full(len(picked), k, dtype=np.int64))
                index_of.append(picked)
                numbers.append(np.asarray(store.frame_numbers)[picked])
                times.append(np.asarray(store.frame_times)[picked])
            finally:
                if store is not given:
                    store.close()
        def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        self.store_of = cat(store_of, np.int64)
        self.frame_index = cat(index_of, np.int64)
        self.frame_number = cat(numbers, np.int64)
        self.frame_time = cat(times, np.float64)
        self.transform = transform
        self._local = threading.local()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.frame_index)

    def __getitem__(self, i: int) -> Any:
        n = len(self)
        if not isinstance(i, (int, np.integer)) or isinstance(i, (bool, np.bool_)):
            raise TypeError(f"dataset indices are integers, not {type(i).__name__}")
        if not -n <= i < n:
            raise FrameIndexError(f"sample {int(i)} out of range for a dataset of {n} frames")
        i = int(i) % n
        k = int(self.store_of[i])
        sample = FrameSample(self.store(k)[int(self.frame_index[i])], k, int(self.frame_index[i]),
                             int(self.frame_number[i]), float(self.frame_time[i]))
        return self.transform(sample) if self.transform is not None else sample

    def store(self, k: int) -> Any:
        """Store ``k`` opened for reading in this process and thread (opened on first use).

        Raises
        ------
        ChunkReadError
            The folder now holds another store than the one the dataset was made from.
        """
        if os.getpid() != self._pid:
            # a forked child: the parent's readers (and their file offsets) stay the parent's
            self._local = threading.local()
            self._pid = os.getpid()
        opened = getattr(self._local, "stores", None)
        if opened is None:
            opened = self._local.stores = {}
        if k not in opened:
            ref = self.refs[k]
            store = new_for_filename(ref.basedir, strict=ref.strict)
            if not ref.decoding:
                store.disable_decoding()
            if store.uuid != ref.uuid:
                store.close()
                raise ChunkReadError(f"{ref.basedir!r} now holds store {store.uuid!r}, not {ref.uuid!r}")
            opened[k] = store
        return opened[k]

    def close(self) -> None:
        """Close the readers this thread opened."""
        for store in getattr(self._local, "stores", {}).values():
            store.close()
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        # references and metadata travel; open readers do not
        state = dict(self.__dict__)
        state.pop("_local")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._pid = os.getpid()
