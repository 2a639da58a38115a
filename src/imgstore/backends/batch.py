"""Batch reads: many frames by frame_index, each chunk's share planned and decoded once.

:func:`read_batch` turns frame_index values in any order, repeats allowed, into one
request per chunk (sorted, distinct positions and the rows of the result they fill) and
hands them to the backend's :meth:`~imgstore.backends.contract.Backend.read_batch`; a video
backend decodes each GOP's span once and, where cores allow, several chunks at a time.
Repeated frames are copied from their first occurrence.  This is what
``store.get_frames(...)``, ``store[[i, j, ...]]`` and every multi-frame read of the array
view go through.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..frame_index import FrameIndex
from .contract import Backend, ChunkRequest

__all__ = ["plan_batch", "read_batch"]


def plan_batch(index: FrameIndex, frame_indices: np.ndarray) -> tuple[list[ChunkRequest], np.ndarray]:
    """``(requests, source)``: one request per chunk, and for each row the row holding its frame.

    ``source[k] == k`` for the first occurrence of a frame; repeats name that first row.
    ``frame_indices`` must be valid (``0 .. len(index) - 1``).
    """
    unique, first, inverse = np.unique(frame_indices, return_index=True, return_inverse=True)
    source = first[inverse.reshape(-1)]
    rows, positions = index.locate_many(unique)
    # chunks are contiguous in frame_index order: split where the chunk row changes
    cuts = np.flatnonzero(np.diff(rows)) + 1
    requests = [ChunkRequest(int(index.chunk_numbers[int(r[0])]), p, d)
                for r, p, d in zip(np.split(rows, cuts), np.split(positions, cuts), np.split(first, cuts), strict=True)
                if len(r)]
    return requests, source


def read_batch(backend: Backend, index: FrameIndex, frame_indices: np.ndarray, out: np.ndarray,
               convert: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """Fill ``out[k]`` with the frame at ``frame_indices[k]`` (valid values, any order, repeats allowed).

    ``convert``: applied to each stored frame (a pixel encoding such as Bayer to BGR); the
    backend then reads into a stack of stored frames first.
    """
    requests, source = plan_batch(index, np.asarray(frame_indices, dtype=np.int64).reshape(-1))
    if convert is None:
        backend.read_batch(requests, out)
    else:
        n_unique = sum(len(r.positions) for r in requests)
        stored_shape = (n_unique, *backend.metadata.imgshape)
        stored = np.empty(stored_shape, dtype=np.dtype(backend.metadata.imgdtype))
        compact = []
        start = 0
        for r in requests:
            compact.append(ChunkRequest(r.chunk_n, r.positions, np.arange(start, start + len(r.positions))))
            start += len(r.positions)
        backend.read_batch(compact, stored)
        rows = np.concatenate([r.rows for r in requests]) if requests else np.zeros(0, np.int64)
        for k, row in enumerate(rows.tolist()):
            out[row] = convert(stored[k])
    repeats = np.flatnonzero(source != np.arange(len(source)))
    if len(repeats):
        out[repeats] = out[source[repeats]]
