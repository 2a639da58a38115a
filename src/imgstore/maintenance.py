"""Changes to a closed store's indexes: ``reindex`` (frame numbers relative to the frame numbered 0)."""

from __future__ import annotations

import numpy as np

from . import ondisk
from .backends.contract import Backend
from .errors import IndexCorruptError
from .frame_index import FrameIndex

__all__ = ["reindex_store"]


def _index_arrays(backend: Backend, path: str) -> dict[str, np.ndarray]:
    """Every non-object array of an index file (to rewrite it without losing keys)."""
    if not path.endswith(".npz"):
        return ondisk.read_chunk_index(path, storage=backend.storage)
    out = {}
    with backend.storage.open_read(path) as f, np.load(f, allow_pickle=False) as npz:
        for k in npz.files:
            try:
                out[k] = npz[k]
            except ValueError:
                continue  # a pickled object (the reference's 'encoding'): never load it
    return out


def reindex_store(backend: Backend, index: FrameIndex) -> None:
    """Renumber the frames before the one with frame_number 0 to negative numbers.

    Aborts (``ValueError``) unless exactly one frame has frame_number 0. The old numbers are
    kept as ``_frame_number_before_reindex`` in each index and in the extra data. Indexes
    and extra data are rewritten atomically, one chunk at a time.
    """
    import pandas as pd

    storage = backend.storage
    fn = index.frame_number
    zeros = np.flatnonzero(fn == 0)
    if len(zeros) != 1:
        raise ValueError(f"{len(zeros)} frame_number=0 found (should be 1)")
    zero_idx = int(zeros[0])
    new = fn.copy()
    new[:zero_idx] = np.arange(-zero_idx, 0)
    for chunk_n in index.chunks:
        sl = index.chunk_slice(chunk_n)
        base = backend.chunk_base(chunk_n)
        path = ondisk.find_index_file(base, storage=storage)
        table = _index_arrays(backend, path) if path else {}
        table["frame_time"] = index.frame_time[sl]
        table["_frame_number_before_reindex"] = fn[sl]
        table["frame_number"] = new[sl]
        ondisk.write_chunk_index(base, table, storage=storage)
        if path and not path.endswith(".npz"):
            storage.remove(path)
        for ext in (".extra.json", ".extra_data.json"):
            ed_path = base + ext
            if storage.exists(ed_path):
                df = pd.DataFrame(ondisk.read_extra_json(ed_path, storage=storage))
                if "frame_index" not in df.columns:
                    raise IndexCorruptError(f"{ed_path}: cannot reindex extra data without frame_index")
                df["_frame_number_before_reindex"] = df["frame_number"]
                df["frame_number"] = new[df["frame_index"].astype(int).to_numpy()]
                storage.write_bytes(ed_path, df.to_json(orient="records").encode())
