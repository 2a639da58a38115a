"""Reading a store's extra data: the writer's ``.extra.json`` beside each chunk index (or its
``.extra.jsonl`` while a chunk is open) and Motif's ``NNNNNN.extra_data.json`` / ``.h5`` in
the store root."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import _motif, ondisk
from ..errors import ImgStoreError, ImgStoreWarning, IndexCorruptError
from .contract import Backend

__all__ = ["iter_extra_data_files", "read_extra_data"]


def iter_extra_data_files(backend: Backend, extensions: Sequence[str] = ondisk.EXTRA_DATA_FILE_EXTENSIONS
                          ) -> Iterator[tuple[bool, str]]:
    """``(is_motif, path)`` of every extra-data file, chunk by chunk."""
    storage = backend.storage
    for chunk_n, base in sorted(backend.list_chunks()):
        found = False
        # Motif's out-of-process writer puts extra data in the store root
        for ext in (".extra_data.h5", ".extra_data.json"):
            if ext in extensions:
                path = storage.join(backend.basedir, ondisk.chunk_name(chunk_n) + ext)
                if storage.exists(path):
                    yield True, path
                    found = True
                    break
        if found:
            continue
        for ext in (".extra.json", ".extra_data.json"):
            if ext in extensions:
                path = base + ext
                if storage.exists(path):
                    yield False, path
                    found = True
        if not found and ".extra.json" in extensions and storage.exists(base + ondisk.EXTRA_JOURNAL_SUFFIX):
            yield False, base + ondisk.EXTRA_JOURNAL_SUFFIX


def read_extra_data(backend: Backend, ignore_corrupt_chunks: bool = False,
                    frame_numbers: np.ndarray | None = None):
    """All extra data as a pandas DataFrame (None if there is none).

    With ``frame_numbers`` (the store's, by frame_index), records of chunks a writer left open
    (``.extra.jsonl``) whose frame is not in the store (lost in a crash) are left out, with a
    warning: they would name a frame_index that holds another frame, or none.
    """
    import pandas as pd

    frames = []
    for is_motif, path in iter_extra_data_files(backend):
        try:
            if is_motif:
                df = _motif.read_motif_extra_data(path, backend.storage)
            else:
                records = ondisk.read_extra_json(path, storage=backend.storage)
                if frame_numbers is not None and path.endswith(ondisk.EXTRA_JOURNAL_SUFFIX):
                    records = _with_their_frames(path, records, frame_numbers)
                df = pd.DataFrame(records)
        except Warning:
            raise  # a warning turned into an error by the caller's filters is not damage
        except Exception as exc:
            if ignore_corrupt_chunks:
                warnings.warn(f"extra data {path} is corrupt: {exc}", ImgStoreWarning, stacklevel=3)
                continue
            if isinstance(exc, ImgStoreError):
                raise
            raise IndexCorruptError(f"{path}: unreadable extra data ({exc})") from exc
        if df is not None and not df.empty:
            frames.append(df)
    if frames:
        return pd.concat(frames, axis=0, ignore_index=True)
    return None


def _with_their_frames(path: str, records: list[dict[str, Any]], frame_numbers: np.ndarray) -> list[dict[str, Any]]:
    kept = [r for r in records if _names_a_stored_frame(r, frame_numbers)]
    if len(kept) < len(records):
        warnings.warn(f"{path}: {len(records) - len(kept)} extra data record(s) were added with frames lost in "
                      f"a crash; left out (imgstore-repair keeps them in damaged/)", ImgStoreWarning, stacklevel=4)
    return kept


def _names_a_stored_frame(record: dict[str, Any], frame_numbers: np.ndarray) -> bool:
    frame_index, frame_number = record.get("frame_index"), record.get("frame_number")
    if isinstance(frame_index, bool) or not isinstance(frame_index, int):
        return False
    if frame_index < 0:
        return True  # added before the first frame
    return frame_index < len(frame_numbers) and (frame_number is None or frame_numbers[frame_index] == frame_number)
