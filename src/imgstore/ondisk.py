"""The on-disk format of an imgstore (version 2, as written by imgstore 0.4 and Motif).

This module owns every file a store is made of; backends only write frame payloads.

A store is a directory holding::

    metadata.yaml            # {'__store': {...store metadata...}, **user_metadata}
    .lock                    # present while a writer has the store open
    000000/                  # directory stores: one folder per chunk ...
        000000.png           #   ... one file per frame, named by its position in the chunk
        index.npz            #   frame_number (int64), frame_time (float64) per frame
        index.extra.json     #   extra data records (a JSON array)
    000000.mkv               # video stores: one video file per chunk ...
    000000.npz               #   ... with a sibling index
    000000.extra.json

While a chunk is being written its index does not exist yet. imgstore then keeps an
append-only *journal* beside it (``<chunk>.journal``: a small header followed by
fixed-size binary records) and extra data as JSON lines (``<chunk>.extra.jsonl``); both
are turned into the normal files when the chunk closes and are read back if the writer
died. The reference library ignores these files.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import errno
import math
import os
import re
import time
import uuid as uuid_module
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import yaml

from . import stored_npz
from ._lock import STORE_LOCK_FILENAME as STORE_LOCK_FILENAME
from .bounded import load_yaml
from .errors import (
    IndexCorruptError,
    MetadataError,
    StoreNotFoundError,
)

# the extra-data files are part of the format: their names are re-exported here
from .extradata import EXTRA_DATA_FILE_EXTENSIONS as EXTRA_DATA_FILE_EXTENSIONS
from .extradata import EXTRA_JOURNAL_SUFFIX as EXTRA_JOURNAL_SUFFIX
from .extradata import EXTRA_JSON_SUFFIX as EXTRA_JSON_SUFFIX
from .extradata import ExtraDataWriter as ExtraDataWriter
from .extradata import JsonCustomEncoder as JsonCustomEncoder
from .extradata import encode_extra_record as encode_extra_record
from .extradata import read_extra_json as read_extra_json
from .extradata import read_extra_lines as read_extra_lines
from .journal import BASE_JOURNAL_FIELDS as BASE_JOURNAL_FIELDS
from .journal import ChunkJournal as ChunkJournal
from .journal import JournalContents as JournalContents
from .journal import read_journal as read_journal
from .journal import read_journal_contents as read_journal_contents
from .storage import LOCAL, Storage

STORE_MD_KEY = "__store"
STORE_MD_FILENAME = "metadata.yaml"
#: the reference's optional SQLite frame index (``close(save_index=True)``, ``save_index()``)
STORE_INDEX_FILENAME = ".index.sqlite"
FORMAT_VERSION = 2
FRAME_MD = ("frame_number", "frame_time")

JOURNAL_SUFFIX = ".journal"
#: Folder of a store where repair puts what it cannot interpret (never deleted by imgstore).
DAMAGED_FOLDER = "damaged"
INDEX_SUFFIXES = (".npz", ".yaml")

_REQUIRED_STORE_KEYS = ("class", "format", "imgshape", "imgdtype", "chunksize", "version")


def chunk_name(chunk_n: int) -> str:
    """Return the file/folder name of chunk ``chunk_n`` (``000012``)."""
    return f"{int(chunk_n):06d}"


def parse_chunk_name(name: str) -> int | None:
    """Return the chunk number encoded in ``name`` or None if it is not a chunk name."""
    if name.isdigit() and name.isascii():
        return int(name)
    return None


# --------------------------------------------------------------------------- metadata.yaml


def local_timezone_name() -> str:
    """IANA name of this machine's time zone (``Etc/UTC`` when it cannot be determined)."""
    try:
        import tzlocal

        name = tzlocal.get_localzone_name()
    except Exception:  # tzlocal raises many kinds of errors on odd systems
        name = None
    return name or "Etc/UTC"


def _zoneinfo(name: str | None):
    from zoneinfo import ZoneInfo

    if name:
        try:
            return ZoneInfo(str(name))
        except Exception:
            warnings.warn(f"unknown time zone {name!r}; using the local time zone", stacklevel=3)
    return ZoneInfo(local_timezone_name())


@dataclasses.dataclass
class StoreMetadata:
    """The ``__store`` mapping of ``metadata.yaml``.

    Unknown keys are kept in ``other`` and written back unchanged.
    """

    class_name: str
    format: str
    chunksize: int
    imgshape: tuple[int, ...]
    imgdtype: str
    encoding: str | None = None
    version: int = FORMAT_VERSION
    uuid: str | None = None
    created_utc: str | None = None
    timezone_local: str | None = None
    extension: str | None = None
    other: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the mapping as read from ``metadata.yaml`` (None for metadata made here)
    source: dict[str, Any] | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def new(
        cls,
        class_name: str,
        fmt: str,
        chunksize: int,
        imgshape: Sequence[int],
        imgdtype: str,
        encoding: str | None = None,
        extension: str | None = None,
    ) -> StoreMetadata:
        """Metadata for a store created now on this machine."""
        now = datetime.datetime.now(datetime.timezone.utc)
        return cls(
            class_name=class_name,
            format=fmt,
            chunksize=int(chunksize),
            imgshape=tuple(int(x) for x in imgshape),
            imgdtype=str(imgdtype),
            encoding=encoding or None,
            uuid=uuid_module.uuid4().hex,
            # written naive, as the reference does: it is known to be UTC
            created_utc=now.replace(tzinfo=None).isoformat(),
            timezone_local=local_timezone_name(),
            extension=extension,
        )

    @classmethod
    def from_mapping(cls, smd: Any, where: str = STORE_MD_FILENAME) -> StoreMetadata:
        """Validate and parse a ``__store`` mapping."""
        if not isinstance(smd, Mapping):
            raise MetadataError(f"{where}: '{STORE_MD_KEY}' must be a mapping, got {type(smd).__name__}")
        missing = [k for k in _REQUIRED_STORE_KEYS if k not in smd]
        if missing:
            raise MetadataError(f"{where}: '{STORE_MD_KEY}' lacks required key(s) {missing}")
        rest = dict(smd)

        def _take(key, default=None):
            return rest.pop(key, default)

        raw_shape = _take("imgshape")
        if not isinstance(raw_shape, (list, tuple)) or not all(_is_int(x) for x in raw_shape):
            raise MetadataError(f"{where}: imgshape {_brief(raw_shape)} is not a list of integers")
        imgshape = tuple(int(x) for x in raw_shape)
        if not 2 <= len(imgshape) <= 3 or any(x <= 0 for x in imgshape):
            raise MetadataError(f"{where}: imgshape {list(imgshape)!r} must be (height, width[, channels]) > 0")
        raw_chunksize = _take("chunksize")
        if not _is_int(raw_chunksize):
            raise MetadataError(f"{where}: chunksize {_brief(raw_chunksize)} is not an integer")
        chunksize = int(raw_chunksize)
        if chunksize <= 0:
            raise MetadataError(f"{where}: chunksize {chunksize} must be positive")
        raw_dtype = _take("imgdtype")
        try:
            dtype = np.dtype(str(raw_dtype))
        except TypeError:
            raise MetadataError(f"{where}: imgdtype {_brief(raw_dtype)} is not a numpy dtype") from None
        if dtype.kind not in "biuf" or dtype.shape != () or dtype.itemsize > 8:
            raise MetadataError(f"{where}: imgdtype {_brief(raw_dtype)} is not an image dtype "
                                f"(integers, floats or bool)")
        imgdtype = dtype.name
        version = _take("version")
        class_name = _take("class")
        fmt = _take("format")
        if not isinstance(class_name, str) or not isinstance(fmt, str):
            raise MetadataError(f"{where}: class {_brief(class_name)} and format {_brief(fmt)} must be strings")
        encoding = _take("encoding")
        if encoding is not None and not isinstance(encoding, str):
            raise MetadataError(f"{where}: encoding {_brief(encoding)} must be a string or null")
        return cls(
            class_name=class_name,
            format=fmt,
            chunksize=chunksize,
            imgshape=imgshape,
            imgdtype=imgdtype,
            encoding=encoding or None,
            version=version,
            uuid=_str_or_none(_take("uuid")),
            created_utc=_str_or_none(_take("created_utc")),
            timezone_local=_str_or_none(_take("timezone_local")),
            extension=_str_or_none(_take("extension")),
            other=rest,
            source=copy.deepcopy(dict(smd)),
        )

    def to_mapping(self) -> dict[str, Any]:
        """The ``__store`` mapping as written to ``metadata.yaml``."""
        out: dict[str, Any] = dict(self.other)
        out.update(
            {
                "class": self.class_name,
                "format": self.format,
                "chunksize": int(self.chunksize),
                "imgshape": [int(x) for x in self.imgshape],
                "imgdtype": self.imgdtype,
                "encoding": self.encoding,
                "version": self.version,
            }
        )
        for key in ("uuid", "created_utc", "timezone_local", "extension"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def to_index_fields(self) -> dict[str, np.ndarray]:
        """Store metadata as npz-friendly arrays (the reference copies it into every index)."""
        out: dict[str, np.ndarray] = {}
        for key, value in self.to_mapping().items():
            if value is None:
                continue  # None would need a pickled object array
            arr = np.asarray(value)
            if arr.dtype.kind in "iufbU":
                out[key] = arr
        return out


def _is_int(value: Any) -> bool:
    """True for an integer (python or numpy), not a bool or a float that happens to be whole."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _brief(value: Any, limit: int = 80) -> str:
    """``repr`` of a value cut to ``limit`` characters (hostile metadata can be huge)."""
    text = repr(value) if not isinstance(value, (list, dict)) or len(value) < 20 else f"<{type(value).__name__} " \
        f"of {len(value)}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


#: largest ``metadata.yaml`` read: the reference's and Motif's are a few kB; a hostile or broken
#: file must not take an open for minutes (300 000 floats, 6 MB, take ~1.5 s to parse)
MAX_METADATA_BYTES = 2 << 20
#: largest ``.yaml`` chunk index (a 10 000-frame chunk is ~0.4 MB)
MAX_YAML_INDEX_BYTES = 64 << 20
def read_metadata(path: str | os.PathLike, *, storage: Storage = LOCAL) -> tuple[StoreMetadata, dict[str, Any]]:
    """Read ``metadata.yaml``; return the store metadata and the user metadata."""
    path = os.fspath(path)
    try:
        text = storage.read_bytes(path, limit=MAX_METADATA_BYTES)
    except FileNotFoundError:
        raise StoreNotFoundError(errno.ENOENT, f"no store metadata at {path}", path) from None
    except IsADirectoryError:
        raise StoreNotFoundError(errno.ENOENT, f"{path} is a directory, not a {STORE_MD_FILENAME}", path) from None
    except OSError as exc:  # permissions, I/O error, not a regular file, too large
        raise MetadataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    allmd = load_yaml(text, path)
    if not isinstance(allmd, dict):
        raise MetadataError(f"{path}: top level must be a mapping, got {type(allmd).__name__}")
    if STORE_MD_KEY not in allmd:
        raise MetadataError(f"{path}: no '{STORE_MD_KEY}' key: not an imgstore")
    smd = StoreMetadata.from_mapping(allmd.pop(STORE_MD_KEY), where=path)
    return smd, allmd


def _yaml_safe(value: Any, where: str) -> Any:
    """Convert numpy scalars/arrays to plain Python so ``yaml.safe_dump`` accepts them."""
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, (int, float, bool)) else k: _yaml_safe(v, f"{where}.{k}")
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_yaml_safe(v, where) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise MetadataError(f"metadata value at {where!r} of type {type(value).__name__} cannot be stored in YAML")


def write_metadata(path: str | os.PathLike, smd: StoreMetadata, user_metadata: Mapping[str, Any], *,
                   storage: Storage = LOCAL) -> None:
    """Write ``metadata.yaml`` atomically (safe YAML only)."""
    if STORE_MD_KEY in user_metadata:
        raise MetadataError(f"user metadata must not use the reserved key {STORE_MD_KEY!r}")
    doc = {str(k): _yaml_safe(v, str(k)) for k, v in user_metadata.items()}
    doc[STORE_MD_KEY] = smd.to_mapping()
    text = yaml.safe_dump(doc)
    storage.write_bytes(os.fspath(path), text.encode("utf-8"))


def naive_utc_iso(value: datetime.datetime | str) -> str:
    """``created_utc`` as written: ISO format, UTC, without a zone suffix (as the reference)."""
    if isinstance(value, str):
        import dateutil.parser

        try:
            value = dateutil.parser.parse(value)
        except (ValueError, OverflowError):
            raise MetadataError(f"created_utc {value!r} is not a date") from None
    if not isinstance(value, datetime.datetime):
        raise MetadataError(f"created_utc {value!r} must be a datetime or an ISO date string")
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value.isoformat()


_FOLDER_DATE_RE = re.compile(r"(.*)(20\d{6}_\d{6}).*")


def resolve_created(smd: StoreMetadata, user_metadata: Mapping[str, Any], basedir: str,
                    metadata_path: str, *, storage: Storage = LOCAL) -> tuple[datetime.datetime, Any]:
    """Return (created datetime in UTC, local ZoneInfo) as the reference derives them.

    Old stores (Motif) lack ``created_utc``: the time then comes from a ``YYYYMMDD_HHMMSS``
    in the folder name (local time of the user metadata's ``timezone``, else this machine's),
    else from the modification time of ``metadata.yaml``.
    """
    if smd.created_utc:
        import dateutil.parser

        try:
            dt = dateutil.parser.parse(smd.created_utc)
        except (ValueError, OverflowError):
            raise MetadataError(f"{metadata_path}: created_utc {smd.created_utc!r} is not a date") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        return dt.astimezone(datetime.timezone.utc), _zoneinfo(smd.timezone_local)

    tz = _zoneinfo(user_metadata.get("timezone") if isinstance(user_metadata.get("timezone"), str) else None)
    m = _FOLDER_DATE_RE.match(os.path.basename(os.path.normpath(basedir)))
    if m:
        local = datetime.datetime.strptime(m.group(2), "%Y%m%d_%H%M%S").replace(tzinfo=tz)
        return local.astimezone(datetime.timezone.utc), tz
    token = storage.stat_token(metadata_path)
    mtime_ns = token.mtime_ns if token is not None else time.time_ns()
    # the float os.path.getmtime gives (seconds + nanoseconds * 1e-9, as CPython makes
    # st_mtime), which the reference converts: mtime_ns / 1e9 rounds differently, and one
    # time in a few the microseconds differed by one
    seconds, nanoseconds = divmod(mtime_ns, 10**9)
    return datetime.datetime.fromtimestamp(seconds + nanoseconds * 1e-9, tz=datetime.timezone.utc), tz


# --------------------------------------------------------------------------- chunk index


def find_index_file(base: str, *, storage: Storage = LOCAL) -> str | None:
    """Path of the index of the chunk whose path without extension is ``base``."""
    for ext in INDEX_SUFFIXES:
        if storage.exists(base + ext):
            return base + ext
    return None


def _as_frame_numbers(values: Any, where: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind == "u" and arr.size and arr.dtype.itemsize >= 8 and int(arr.max()) >= 2**63:
        # would wrap around to negative numbers in int64: another frame's number
        raise IndexCorruptError(f"{where}: frame_number {int(arr.max())} does not fit in 64 signed bits")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)) or np.any(np.abs(arr) >= 2.0**63):
            raise IndexCorruptError(f"{where}: frame_number holds non-integer values")
        return arr.astype(np.int64)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    raise IndexCorruptError(f"{where}: frame_number has dtype {arr.dtype}, expected integers")


def _as_frame_times(values: Any, where: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size == 0:
        return np.zeros(0, dtype=np.float64)
    if arr.dtype.kind not in "iuf":
        raise IndexCorruptError(f"{where}: frame_time has dtype {arr.dtype}, expected numbers")
    return arr.astype(np.float64, copy=False)


def read_chunk_index(path: str, keys: Sequence[str] = FRAME_MD, *, storage: Storage = LOCAL
                     ) -> dict[str, np.ndarray]:
    """Read the arrays ``keys`` from a chunk index file (``.npz`` or ``.yaml``).

    ``frame_number`` and ``frame_time`` are required and must have equal lengths; other
    keys are returned when present. Object arrays (the reference pickles ``encoding``) are
    never loaded.
    """
    try:
        fast = _read_local_npz(path, keys, storage) if path.endswith(".npz") else None
        if fast is not None:
            raw = fast
        elif path.endswith(".npz"):
            # through a file object: only the members asked for are read (ranges, when remote)
            with storage.open_read(path) as f, np.load(f, allow_pickle=False) as npz:
                raw = {k: npz[k] for k in keys if k in npz.files}
        else:
            doc = load_yaml(storage.read_bytes(path, limit=MAX_YAML_INDEX_BYTES), path)
            if not isinstance(doc, Mapping):
                raise IndexCorruptError(f"{path}: index must be a mapping")
            raw = {k: np.asarray(doc[k]) for k in keys if k in doc}
    except IndexCorruptError:
        raise
    except MetadataError as exc:  # a .yaml index refused by load_yaml
        raise IndexCorruptError(str(exc)) from None
    except (OSError, ValueError, EOFError, KeyError, yaml.YAMLError) as exc:
        # zipfile.BadZipFile is a ValueError-free Exception subclass, handled below
        raise IndexCorruptError(f"{path}: unreadable chunk index ({exc})") from None
    except Exception as exc:  # BadZipFile and friends
        raise IndexCorruptError(f"{path}: unreadable chunk index ({type(exc).__name__}: {exc})") from None
    for k in FRAME_MD:
        if k in keys and k not in raw:
            raise IndexCorruptError(f"{path}: chunk index lacks {k!r}")
    out = dict(raw)
    if "frame_number" in out:
        out["frame_number"] = _as_frame_numbers(out["frame_number"], path)
    if "frame_time" in out:
        out["frame_time"] = _as_frame_times(out["frame_time"], path)
    if "frame_number" in out and "frame_time" in out and len(out["frame_number"]) != len(out["frame_time"]):
        raise IndexCorruptError(
            f"{path}: frame_number has {len(out['frame_number'])} entries but frame_time has {len(out['frame_time'])}"
        )
    return out


#: chunk indexes larger than this are read member by member (np.load), not whole
_WHOLE_NPZ_LIMIT = 64 << 20


def _read_local_npz(path: str, keys: Sequence[str], storage: Storage) -> dict[str, np.ndarray] | None:
    """A local chunk index written by np.savez, read whole and parsed directly (5x faster than
    np.load: see imgstore.stored_npz); None when it is remote, large or anything but plain."""
    if storage.local_path(path) is None:
        return None
    try:
        data = storage.read_bytes(path, limit=_WHOLE_NPZ_LIMIT)
    except OSError:
        return None  # np.load reports what is wrong
    return stored_npz.read_members(data, keys)


def npz_member_names(path: str, storage: Storage = LOCAL) -> list[str] | None:
    """The array names in a local ``.npz`` chunk index, from its last 4 KiB (None: unknown).

    Cheaper than reading the index when only the presence of a member matters (whether a
    chunk recorded its frames' checksums: one ``pread`` instead of the whole file).
    """
    if storage.local_path(path) is None:
        return None
    token = storage.stat_token(path)
    if token is None:
        return None
    start = max(0, token.size - 4096)
    try:
        tail = storage.read_bytes(path, start=start)
    except OSError:
        return None
    names = stored_npz.member_names(tail, start)
    return None if names is None else [n[:-4] if n.endswith(".npy") else n for n in names]


def write_chunk_index(base: str, arrays: Mapping[str, np.ndarray], smd: StoreMetadata | None = None,
                      fsync: bool = True, *, storage: Storage = LOCAL) -> str:
    """Write ``<base>.npz`` atomically with ``arrays`` plus the store metadata fields.

    Flushed to stable storage by default: the writer deletes the chunk's journal right after,
    so after a power loss the index must not be an empty file where the journal was.
    """
    fields: dict[str, np.ndarray] = smd.to_index_fields() if smd is not None else {}
    fields["frame_number"] = np.asarray(arrays["frame_number"], dtype=np.int64)
    fields["frame_time"] = np.asarray(arrays["frame_time"], dtype=np.float64)
    for k, v in arrays.items():
        if k not in FRAME_MD:
            fields[k] = np.asarray(v)
    path = base + ".npz"
    with storage.atomic_write(path, fsync=fsync) as f:
        np.savez(f, **cast(dict[str, Any], fields))
    return path


def is_finite_number(value: Any) -> bool:
    """True for a real, finite number (python or numpy)."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        return False  # float("12.5") would parse: a string is a caller's mistake, not a time
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False
