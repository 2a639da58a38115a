"""Chunk journals: the append-only record of the frames of the chunk being written.

``<chunk>.journal`` is a header line (magic, the record fields as JSON, its CRC-32) followed
by fixed-size binary records, each ending with its own CRC-32. A killed writer leaves at most
a torn last record, which is ignored; a record failing its check is damage, and nothing after
it is turned into frame numbers. :mod:`imgstore.ondisk` re-exports these names as part of
the format.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import struct
import time
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import IndexCorruptError, StoreWriteError
from .storage import LOCAL, AppendFile, Storage

__all__ = ["BASE_JOURNAL_FIELDS", "ChunkJournal", "JournalContents", "read_journal", "read_journal_contents"]

_FRAME_MD = ("frame_number", "frame_time")
_JOURNAL_MAGIC_V1 = b"IMGSTORE-JOURNAL 1\n"
#: version 2: the header line carries its CRC-32 and every record its own, so a damaged
#: journal is refused rather than turned into frame numbers
_JOURNAL_MAGIC = b"IMGSTORE-JOURNAL 2\n"
BASE_JOURNAL_FIELDS: tuple[tuple[str, str], ...] = (("frame_number", "<i8"), ("frame_time", "<f8"))
_RECORD_CRC = ("_crc32", "<u4")


class ChunkJournal:
    """Append-only record of the frames of the chunk being written.

    Records are fixed-size and written with one unbuffered write each, so a killed writer
    loses no record the OS has accepted; a torn last record is ignored on read. Each record
    ends with the CRC-32 of its fields. ``fsync`` runs at most every ``fsync_interval``
    seconds to bound loss on power failure.
    """

    def __init__(self, path: str, fields: Sequence[tuple[str, str]] = BASE_JOURNAL_FIELDS,
                 fsync_interval: float | None = 1.0, *, storage: Storage = LOCAL) -> None:
        self.path = path
        self.dtype = np.dtype([(name, fmt) for name, fmt in fields])
        header_json = json.dumps({"fields": [list(f) for f in fields]}).encode()
        header = _JOURNAL_MAGIC + header_json + b"\t%08x\n" % zlib.crc32(header_json)
        self._file: AppendFile | None = storage.open_append(path, header=header)
        self._storage = storage
        self._fsync_interval = fsync_interval
        self._last_sync = time.monotonic()
        self._record = np.zeros(1, dtype=self.dtype)

    def append(self, **values: Any) -> None:
        """Append one record (missing fields are zero)."""
        if self._file is None:
            raise StoreWriteError(errno.EBADF, f"journal {self.path} is closed", self.path)
        rec = self._record
        rec[0] = tuple(values.get(name, 0) for name in self.dtype.names or ())
        data = rec.tobytes()
        self._file.append(data + struct.pack("<I", zlib.crc32(data)))
        if self._fsync_interval is not None:
            now = time.monotonic()
            if now - self._last_sync >= self._fsync_interval:
                self.sync()
                self._last_sync = now

    def sync(self) -> None:
        """Flush the journal to stable storage."""
        if self._file is not None:
            self._file.sync()

    def close(self, remove: bool = False) -> None:
        """Close the journal, deleting it if ``remove`` (its chunk got a real index)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if remove:
            self._storage.remove(self.path)


@dataclasses.dataclass
class JournalContents:
    """A journal's trustworthy records, and how many complete records after them failed their check."""

    table: dict[str, np.ndarray]
    damaged_records: int = 0


def read_journal(path: str, *, storage: Storage = LOCAL) -> dict[str, np.ndarray]:
    """Read the trustworthy records of a chunk journal as a dict of arrays (see :func:`read_journal_contents`)."""
    return read_journal_contents(path, storage=storage).table


def read_journal_contents(path: str, *, storage: Storage = LOCAL) -> JournalContents:
    """Read a chunk journal: its records up to the first that fails its checksum.

    A torn last record (the writer killed mid-write) is ignored; complete records after one
    that fails its check are counted in ``damaged_records`` (a damaged file: the frames they
    describe cannot be placed). A damaged header raises :class:`IndexCorruptError`.
    """
    data = storage.read_bytes(path)
    if data.startswith(_JOURNAL_MAGIC):
        checked = True
        start = len(_JOURNAL_MAGIC)
    elif data.startswith(_JOURNAL_MAGIC_V1):
        checked = False  # written by an earlier version of this package
        start = len(_JOURNAL_MAGIC_V1)
    else:
        raise IndexCorruptError(f"{path}: not an imgstore journal")
    try:
        end = data.index(b"\n", start)
        line = data[start:end]
        if checked:
            line, _, crc = line.rpartition(b"\t")
            if len(crc) != 8 or int(crc, 16) != zlib.crc32(line):
                raise IndexCorruptError(f"{path}: journal header fails its checksum")
        header = json.loads(line)
        fields = [(str(n), str(t)) for n, t in header["fields"]]
        dtype = np.dtype(fields)
    except IndexCorruptError:
        raise
    except Exception as exc:  # json, unpacking and numpy raise many kinds for a damaged header
        raise IndexCorruptError(f"{path}: bad journal header ({type(exc).__name__}: {exc})") from None
    # only plain numeric fields, frame_number an integer and frame_time a float, can be trusted
    names = dtype.names or ()
    plain = dtype.itemsize > 0 and all(dtype[n].shape == () and dtype[n].kind in "iuf" for n in names)
    if not plain or names[:2] != _FRAME_MD or dtype["frame_number"].kind not in "iu" \
            or dtype["frame_time"].kind != "f":
        raise IndexCorruptError(f"{path}: bad journal header (fields {fields})")
    body = data[end + 1:]
    size = dtype.itemsize + (4 if checked else 0)
    n = len(body) // size
    damaged = 0
    if checked:
        good = n
        for i in range(n):
            record = body[i * size: (i + 1) * size]
            if struct.unpack("<I", record[-4:])[0] != zlib.crc32(record[:-4]):
                good, damaged = i, n - i
                break
        n = good
        recs = np.frombuffer(body[: n * size], dtype=np.dtype([*fields, _RECORD_CRC]))
    else:
        recs = np.frombuffer(body[: n * size], dtype=dtype)
    out = {name: np.array(recs[name]) for name in names}
    out["frame_number"] = out["frame_number"].astype(np.int64)
    out["frame_time"] = out["frame_time"].astype(np.float64)
    return JournalContents(out, damaged)
