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

import ctypes
import mmap
import sys
from collections.abc import Callable

import numpy as np

from ..frame_index import FrameIndex
from .contract import Backend, ChunkRequest

__all__ = ["plan_batch", "prefer_small_pages", "read_batch"]

#: numpy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) for arrays
#: from 4 MiB on; a batch's output below that keeps whatever pages it gets
_HUGE_PAGE_ARRAY_BYTES = 4 << 20
_MADV_NOHUGEPAGE = getattr(mmap, "MADV_NOHUGEPAGE", None)


def prefer_small_pages(arr: np.ndarray) -> bool:
    """Ask the kernel to back the untouched pages of `arr` with 4 KiB pages, not huge pages.

    A batch's output is fresh memory that the decoders fill page by page.  numpy advises
    huge pages for it, and a huge-page fault is usually cheap but sometimes very slow:
    touching a fresh 153 MB array (500 frames of 640x480) took 14 ms in 11 of 12 fresh
    processes and 310 ms in one (2 cores, Linux 6, THP "madvise"), which made a batch
    slower than a loop of single reads (whose 300 KB arrays never get huge pages) in 1-2
    of 10 fresh processes.  With 4 KiB pages the faults cost a steady ~90 ms of system
    time and the batch was faster than the loop in every run (10 runs each, interleaved:
    batch 2721-3161 frames/s, huge pages 1813-4316, loop 1950-2460; PERF_NOTES.md).
    Only a hint: nothing changes where the call is unavailable (returns False then).
    """
    if _MADV_NOHUGEPAGE is None or not sys.platform.startswith("linux") or arr.nbytes < _HUGE_PAGE_ARRAY_BYTES:
        return False
    page = mmap.PAGESIZE
    addr = int(arr.__array_interface__["data"][0])
    start = -(-addr // page) * page  # whole pages inside the array only
    end = (addr + arr.nbytes) // page * page
    if end <= start:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        libc.madvise.restype = ctypes.c_int
        return bool(libc.madvise(start, end - start, _MADV_NOHUGEPAGE) == 0)
    except (OSError, AttributeError):
        return False


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
        if out.flags.c_contiguous:
            prefer_small_pages(out)
        backend.read_batch(requests, out)
    else:
        n_unique = sum(len(r.positions) for r in requests)
        stored_shape = (n_unique, *backend.metadata.imgshape)
        stored = np.empty(stored_shape, dtype=np.dtype(backend.metadata.imgdtype))
        prefer_small_pages(stored)
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
