"""Extra data on disk: sensor readings and the like, one JSON record per ``add_extra_data`` call.

While a chunk is written its records go to ``<chunk>.extra.jsonl``, one JSON object per
line handed to the OS as it is added (a torn last line from a killed writer is ignored on
read); when the chunk closes they become ``<chunk>.extra.json``, the JSON array the
reference writes. :mod:`imgstore.ondisk` re-exports these names as part of the format.
"""

from __future__ import annotations

import datetime
import json
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import ExtraDataError, IndexCorruptError
from .storage import LOCAL, AppendFile, Storage

__all__ = [
    "EXTRA_DATA_FILE_EXTENSIONS",
    "EXTRA_JOURNAL_SUFFIX",
    "EXTRA_JSON_SUFFIX",
    "ExtraDataWriter",
    "JsonCustomEncoder",
    "encode_extra_record",
    "read_extra_json",
    "read_extra_lines",
]

#: Suffixes of extra-data files, in the reference's order.
EXTRA_DATA_FILE_EXTENSIONS = (".extra.json", ".extra_data.json", ".extra_data.h5")
EXTRA_JSON_SUFFIX = ".extra.json"
EXTRA_JOURNAL_SUFFIX = ".extra.jsonl"


class JsonCustomEncoder(json.JSONEncoder):
    """JSON encoder that also accepts numpy values, sets, bytes and datetimes."""

    def default(self, obj: Any) -> Any:
        if isinstance(obj, (np.ndarray, np.generic)):
            return obj.tolist()
        if isinstance(obj, complex):
            return [obj.real, obj.imag]
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if isinstance(obj, bytes):
            return obj.decode()
        if isinstance(obj, (datetime.datetime, datetime.date)):
            return obj.isoformat()
        return super().default(obj)


def encode_extra_record(data: Mapping[str, Any]) -> str:
    """Encode one extra-data record as a line of JSON, or raise :class:`ExtraDataError`."""
    try:
        return json.dumps(data, cls=JsonCustomEncoder, allow_nan=True)
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        bad = [k for k, v in data.items() if not _json_ok(v)]
        raise ExtraDataError(f"extra data key(s) {bad or list(data)} cannot be stored as JSON: {exc}") from None


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value, cls=JsonCustomEncoder)
        return True
    except (TypeError, ValueError, UnicodeDecodeError):
        return False


class ExtraDataWriter:
    """Extra data of one chunk: JSON lines while recording, a JSON array once closed."""

    def __init__(self, base: str, *, storage: Storage = LOCAL) -> None:
        self.base = base
        self.journal_path = base + EXTRA_JOURNAL_SUFFIX
        self.final_path = base + EXTRA_JSON_SUFFIX
        self._storage = storage
        self._file: AppendFile | None = None
        self._lines: list[str] = []
        self._nbytes = 0

    @property
    def n_records(self) -> int:
        """Number of records written to this chunk."""
        return len(self._lines)

    @property
    def nbytes(self) -> int:
        """Bytes of the records written to this chunk (what :meth:`finalize` writes again)."""
        return self._nbytes

    def append(self, line: str) -> None:
        """Append one encoded record (see :func:`encode_extra_record`)."""
        if self._file is None:
            self._file = self._storage.open_append(self.journal_path)
        encoded = (line + "\n").encode("utf-8")
        self._file.append(encoded)
        self._lines.append(line)
        self._nbytes += len(encoded)

    def finalize(self) -> None:
        """Write ``<base>.extra.json`` (the reference's format) and drop the JSON lines."""
        if self._file is None and not self._lines:
            return
        if self._file is not None:  # None on a second try after a failed finalize
            self._file.close()
            self._file = None
        # flushed: the JSON lines are deleted next (see write_chunk_index)
        self._storage.write_bytes(self.final_path, ("[" + ", ".join(self._lines) + "]").encode("utf-8"), fsync=True)
        self._storage.remove(self.journal_path)

    def close(self) -> None:
        """Close the JSON lines file, leaving it as it is."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        """Forget everything written to this chunk."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for p in (self.journal_path, self.final_path):
            self._storage.remove(p)
        self._lines.clear()
        self._nbytes = 0


def read_extra_lines(path: str, *, storage: Storage = LOCAL) -> tuple[list[dict[str, Any]], list[int]]:
    """Read an ``.extra.jsonl`` journal line by line: ``(records, numbers of unreadable lines)``.

    Every record ends with a newline, so a torn last piece (a killed writer) is not a record
    and not counted as unreadable; any other line that is not a JSON object is.
    """
    raw = storage.read_bytes(path)
    records: list[dict[str, Any]] = []
    bad: list[int] = []
    lines = raw.split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, too deep
            if i < len(lines) - 1:
                bad.append(i + 1)
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad.append(i + 1)
    return records, bad


def read_extra_json(path: str, *, storage: Storage = LOCAL) -> list[dict[str, Any]]:
    """Read an ``.extra.json`` array or an ``.extra.jsonl`` journal (torn last line ignored)."""
    if path.endswith(EXTRA_JOURNAL_SUFFIX):
        records, bad = read_extra_lines(path, storage=storage)
        if bad:
            raise IndexCorruptError(f"{path}: line {bad[0]} is not a JSON record")
        return records
    raw = storage.read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IndexCorruptError(f"{path}: extra data is not UTF-8 ({exc})") from None
    try:
        records = json.loads(text)
    except RecursionError:
        raise IndexCorruptError(f"{path}: extra data nested too deeply to read") from None
    except json.JSONDecodeError:
        # the reference leaves '[{...}, {...}' behind when its writer dies: recover the records
        stripped = text.rstrip().rstrip(",")
        try:
            records = json.loads(stripped + "]")
        except json.JSONDecodeError as exc:
            raise IndexCorruptError(f"{path}: extra data is not valid JSON ({exc})") from None
        warnings.warn(f"{path}: unterminated extra data (writer did not close); recovered "
                      f"{len(records)} records", stacklevel=2)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise IndexCorruptError(f"{path}: extra data must be a JSON array of objects")
    return records
