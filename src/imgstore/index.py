"""The reference's ``imgstore.index``: :class:`ImgStoreIndex` and its SQLite file.

imgstore 0.4 kept the frame index of an open store in an in-memory SQLite database
(``store._index``) and could save it as ``.index.sqlite`` (``close(save_index=True)``,
``store.save_index()``) to pass back later (``new_for_filename(path, index=...)``). Here the
index is a :class:`~imgstore.frame_index.FrameIndex` (numpy arrays, O(log n) lookups);
:class:`ImgStoreIndex` is the reference's interface over it. SQLite is used only for the
file, in the reference's schema, so files written by either library open in both.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import ondisk
from .errors import ImgStoreError, IndexCorruptError, IndexFileError, StoreWriteError
from .frame_index import FrameIndex
from .ondisk import FRAME_MD
from .storage import LOCAL, Storage

if TYPE_CHECKING:
    import sqlite3

__all__ = ["ImgStoreIndex"]

log = logging.getLogger("imgstore.index")


def _load_index(path_without_extension: str) -> dict[str, list]:
    """A chunk index (``.npz`` or ``.yaml``) as ``{'frame_number': [...], 'frame_time': [...]}``."""
    path = ondisk.find_index_file(path_without_extension)
    if path is None:
        raise IndexFileError(errno.ENOENT, f"could not find index {path_without_extension}")
    table = ondisk.read_chunk_index(path)
    return {k: table[k].tolist() for k in FRAME_MD}


class ImgStoreIndex:
    """The frame index of a store, with imgstore 0.4's methods.

    Parameters
    ----------
    db
        An open SQLite connection holding an index in the reference's schema (as
        :meth:`new_from_file` opens). Use :meth:`new_from_chunks`, :meth:`new_from_file` or
        :meth:`from_frame_index` rather than calling this directly.
    frame_index
        The index itself (instead of ``db``).
    """

    VERSION = "1"
    log = log

    def __init__(self, db: sqlite3.Connection | None = None, *, frame_index: FrameIndex | None = None) -> None:
        if (db is None) == (frame_index is None):
            raise TypeError("ImgStoreIndex needs either a SQLite connection (db) or a frame_index")
        if frame_index is None:
            assert db is not None
            frame_index = _read_database(db)
        self._frame_index = frame_index
        fi = self._frame_index
        self.frame_count = len(fi)
        if self.frame_count:
            self.frame_min: int | float = fi.frame_min
            self.frame_max: int | float = fi.frame_max
            self.frame_time_min: float = fi.frame_time_min
            self.frame_time_max: float = fi.frame_time_max
        else:
            # the reference's values for an empty store
            self.frame_min = self.frame_max = float("nan")
            self.frame_time_min = self.frame_time_max = 0.0
        self._chunks = tuple(fi.chunks)

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_frame_index(cls, frame_index: FrameIndex) -> ImgStoreIndex:
        """The reference's interface over an existing :class:`FrameIndex` (no copy)."""
        return cls(frame_index=frame_index)

    @classmethod
    def create_database(cls, conn: sqlite3.Connection) -> None:
        """Create the reference's tables in an empty SQLite database."""
        c = conn.cursor()
        c.execute("CREATE TABLE frames (chunk INTEGER, frame_idx INTEGER, frame_number INTEGER, frame_time REAL)")
        c.execute("CREATE TABLE chunks (chunk INTEGER, chunk_path TEXT)")
        c.execute("CREATE TABLE index_information (name TEXT, value TEXT)")
        c.execute("CREATE TABLE summary (name TEXT, value REAL)")
        c.execute("INSERT into index_information VALUES (?, ?)", ("version", cls.VERSION))
        c.execute("CREATE INDEX chunk_index ON frames (chunk, frame_idx);")
        conn.commit()

    @classmethod
    def new_from_chunks(cls, chunk_n_and_chunk_paths: Iterable[tuple[int, str]]) -> ImgStoreIndex:
        """Build from ``(chunk_n, chunk path without extension)`` pairs, reading each chunk's index.

        A chunk without an index, or with a damaged one, is skipped with a warning (as the
        reference did).
        """
        tables = []
        for chunk_n, chunk_path in sorted(chunk_n_and_chunk_paths, key=lambda item: int(item[0])):
            try:
                idx = _load_index(chunk_path)
            except IndexFileError:
                warnings.warn(f"missing index for chunk {chunk_n} ({chunk_path})", stacklevel=2)
                continue
            except (IndexCorruptError, OSError) as exc:
                warnings.warn(f"corrupt index for chunk {chunk_n}: {exc}", stacklevel=2)
                continue
            tables.append((int(chunk_n), idx["frame_number"], idx["frame_time"]))
        return cls(frame_index=FrameIndex.from_chunks(tables))

    @classmethod
    def new_from_file(cls, path: str | os.PathLike, storage: Storage = LOCAL) -> ImgStoreIndex:
        """Open an index saved by :meth:`to_file` (by this library or imgstore 0.4)."""
        import sqlite3  # only for the file: ~4 ms that ``import imgstore`` need not pay

        path = os.fspath(path)
        local = storage.local_path(path)
        if local is None or not storage.exists(path):
            raise IndexFileError(errno.ENOENT, f"no index file at {path!r}", path)
        try:
            db = sqlite3.connect(f"file:{local}?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise IndexFileError(errno.EIO, f"{path}: not an index file ({exc})", path) from exc
        try:
            return cls(db)
        finally:
            db.close()

    # ----------------------------------------------------------------- the reference's API

    @property
    def chunks(self) -> tuple[int, ...]:
        """Numbers of the chunks that hold frames."""
        return self._chunks

    @property
    def frame_index(self) -> FrameIndex:
        """The underlying :class:`~imgstore.frame_index.FrameIndex`."""
        return self._frame_index

    def get_all_metadata(self) -> dict[str, list]:
        """``{'frame_number': [...], 'frame_time': [...]}`` of every frame, in store order."""
        fi = self._frame_index
        return {"frame_number": fi.frame_number.tolist(), "frame_time": fi.frame_time.tolist()}

    def get_chunk_metadata(self, chunk_n: int) -> dict[str, list]:
        """Like :meth:`get_all_metadata`, for the frames of one chunk (empty lists if none)."""
        fi = self._frame_index
        sl = fi.chunk_slice(int(chunk_n))
        return {"frame_number": fi.frame_number[sl].tolist(), "frame_time": fi.frame_time[sl].tolist()}

    def find_chunk(self, what: str, value: Any) -> tuple[int, int]:
        """``(chunk_n, position in chunk)`` of the first frame whose ``what`` equals ``value``.

        ``what`` is ``'frame_number'``, ``'frame_time'`` or ``'index'`` (a frame_index);
        ``(-1, -1)`` if there is none.
        """
        fi = self._frame_index
        try:
            if what == "index":
                frame_index = fi.check_index(value)
            elif what == "frame_number":
                frame_index = fi.find_number(value)
            elif what == "frame_time":
                frame_index = fi.nearest_time(value)
                if fi.frame_time[frame_index] != value:
                    return -1, -1
            else:
                raise ValueError(f"what must be 'frame_number', 'frame_time' or 'index', not {what!r}")
        except ImgStoreError:
            return -1, -1
        return fi.locate(frame_index)

    def find_chunk_nearest(self, what: str, value: Any) -> tuple[int, int]:
        """``(chunk_n, position in chunk)`` of the frame whose ``what`` is nearest ``value``."""
        fi = self._frame_index
        if what == "frame_number":
            frame_index = fi.nearest_number(value)
        elif what == "frame_time":
            frame_index = fi.nearest_time(value)
        else:
            raise ValueError(f"what must be 'frame_number' or 'frame_time', not {what!r}")
        return fi.locate(frame_index)

    def to_file(self, path: str | os.PathLike, storage: Storage = LOCAL) -> None:
        """Save as a SQLite file in the reference's schema (replacing ``path`` atomically)."""
        import sqlite3
        import tempfile

        path = os.fspath(path)
        # SQLite writes a file of its own: made in a scratch folder, then copied into place
        # through the storage's atomic write, so the store only ever sees the whole file
        with tempfile.TemporaryDirectory(prefix="imgstore-index-") as scratch:
            tmp = os.path.join(scratch, "index.sqlite")
            try:
                db = sqlite3.connect(tmp)
                try:
                    self._write_database(db)
                finally:
                    db.close()
            except sqlite3.Error as exc:
                raise StoreWriteError(errno.EIO, f"could not write index {path}: {exc}") from exc
            # unique: several readers may save the same store's index at once
            with open(tmp, "rb") as src, storage.atomic_write(path, unique=True) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)

    def _write_database(self, db: sqlite3.Connection) -> None:
        self.create_database(db)
        fi = self._frame_index
        cur = db.cursor()
        for k, chunk_n in enumerate(fi.chunk_numbers.tolist()):
            start, stop = int(fi.chunk_starts[k]), int(fi.chunk_starts[k + 1])
            rows = zip([chunk_n] * (stop - start), range(stop - start),
                       fi.frame_number[start:stop].tolist(), fi.frame_time[start:stop].tolist(), strict=False)
            cur.executemany("INSERT INTO frames VALUES (?,?,?,?)", rows)
            # the reference stored the chunk's path; readers never used it
            cur.execute("INSERT INTO chunks VALUES (?, ?)", (chunk_n, ondisk.chunk_name(chunk_n)))
        empty = self.frame_count == 0
        summary = {"frame_time_min": float("inf") if empty else self.frame_time_min,
                   "frame_time_max": float("-inf") if empty else self.frame_time_max,
                   "frame_min": float("inf") if empty else float(self.frame_min),
                   "frame_max": float("-inf") if empty else float(self.frame_max)}
        cur.executemany("INSERT INTO summary VALUES (?,?)", list(summary.items()))
        db.commit()

    def __len__(self) -> int:
        return self.frame_count

    def __repr__(self) -> str:
        return f"<ImgStoreIndex frames={self.frame_count} chunks={len(self._chunks)}>"


def _read_database(db: sqlite3.Connection) -> FrameIndex:
    """The frames of a SQLite index in the reference's schema."""
    import sqlite3

    try:
        cur = db.cursor()
        row = cur.execute("SELECT value FROM index_information WHERE name = ?", ("version",)).fetchone()
        if row is None or row[0] != ImgStoreIndex.VERSION:
            raise IndexFileError(errno.EINVAL, f"incorrect index version: {None if row is None else row[0]!r} "
                                               f"vs {ImgStoreIndex.VERSION!r}")
        rows = cur.execute("SELECT chunk, frame_number, frame_time FROM frames ORDER BY rowid").fetchall()
    except sqlite3.Error as exc:
        raise IndexFileError(errno.EINVAL, f"not an imgstore index database ({exc})") from exc
    if not rows:
        return FrameIndex.empty()
    chunk = np.array([r[0] for r in rows], dtype=np.int64)
    number = np.array([r[1] for r in rows], dtype=np.int64)
    time = np.array([r[2] for r in rows], dtype=np.float64)
    if np.any(np.diff(chunk) < 0):
        raise IndexFileError(errno.EINVAL, "index database lists frames out of chunk order")
    numbers, starts = np.unique(chunk, return_index=True)
    lengths = np.diff(np.append(starts, len(chunk)))
    return FrameIndex(numbers, lengths, number, time)
