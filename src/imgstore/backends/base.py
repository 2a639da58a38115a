"""The store base class: everything but the frame payloads.

:class:`ImgStore` owns metadata, the frame index, the writer journal, extra data, the
lock and the whole public API (classic imgstore 0.4 calls and the array view). A backend
subclass declares what it can do (class attributes) and implements a handful of
``_``-prefixed hooks that read and write the frames of one chunk.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import logging
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from .. import ondisk
from .._lock import StoreLock
from ..errors import (
    ChunkReadError,
    FrameIndexError,
    ImgStoreError,
    IndexCorruptError,
    InvalidFrameMetadataError,
    InvalidImageError,
    MetadataError,
    ModeError,
    StoreClosedError,
    StoreExistsError,
    StoreNotFoundError,
    UnsupportedFormatError,
)
from ..frame_index import FrameIndex
from ..index import ImgStoreIndex
from ..imageops import check_encoding, encoding_decoder
from ..ondisk import FRAME_MD, STORE_INDEX_FILENAME, STORE_MD_FILENAME, StoreMetadata
from .compat import ReferencePrivates

log = logging.getLogger("imgstore")
_NO_DECODE = encoding_decoder(None)

FrameMetadata = tuple[int, float]


class ImgStoreWarning(UserWarning):
    """A store was opened but something in it needed attention (a chunk skipped or recovered)."""


class ImgStore(ReferencePrivates):
    """Base class of the store backends (the reference's ``_ImgStore``).

    Parameters
    ----------
    basedir
        The store's folder.
    mode
        ``'r'`` read, ``'w'`` write a new store, ``'a'`` append to an existing one.
    imgshape, imgdtype
        Shape ``(height, width[, 3])`` and dtype of the images given to :meth:`add_image`.
    chunksize
        Frames per chunk (default: the backend's ``DEFAULT_CHUNKSIZE``).
    metadata
        User metadata (a mapping) saved in ``metadata.yaml``.
    encoding
        Pixel encoding of the stored images (e.g. ``'cv_bayerbg'``), converted to BGR on read.
    format
        Storage format, one of the backend's :meth:`supported_formats`.
    overwrite
        In ``'w'`` mode, replace an existing store at ``basedir`` instead of refusing.
    strict
        In ``'r'`` mode, raise on a damaged chunk instead of warning and skipping it.
    index
        In ``'r'`` mode, an :class:`~imgstore.index.ImgStoreIndex` to use instead of reading
        the chunks' indexes (e.g. one saved by :meth:`save_index`), as in imgstore 0.4.
    """

    # ------------------------------------------------------------ capabilities
    #: name written to ``__store.class``
    class_name: ClassVar[str] = ""
    #: ``__store.class`` values this backend reads
    readable_class_names: ClassVar[frozenset[str]] = frozenset()
    #: default frames per chunk
    DEFAULT_CHUNKSIZE: ClassVar[int] = 200
    #: the backend can create stores
    supports_writing: ClassVar[bool] = True
    #: reading frames out of order is efficient
    supports_random_access: ClassVar[bool] = True
    #: extra per-frame fields the backend journals and indexes (name, numpy type)
    journal_fields: ClassVar[tuple[tuple[str, str], ...]] = ()

    _version: ClassVar[int] = ondisk.FORMAT_VERSION
    _supported_modes: ClassVar[str] = "rwa"
    FRAME_MD = FRAME_MD

    def __init__(
        self,
        basedir: str | os.PathLike | None = None,
        mode: str = "r",
        imgshape: Sequence[int] | None = None,
        imgdtype: Any = np.uint8,
        chunksize: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        encoding: str | None = None,
        format: str | None = None,  # noqa: A002 - the reference's keyword
        *,
        overwrite: bool = False,
        strict: bool = False,
        index: Any = None,
        **options: Any,
    ) -> None:
        if basedir is None:
            raise TypeError("basedir is required")
        if mode not in ("r", "w", "a") or mode not in self._supported_modes:
            raise ModeError(f"mode {mode!r} not supported (choose from {list(self._supported_modes)})")
        if index is not None and not isinstance(index, ImgStoreIndex):
            raise TypeError(f"index must be of type ImgStoreIndex, not {type(index).__name__}")
        if index is not None and mode != "r":
            raise ModeError(f"index= is for reading; a store opened in mode {mode!r} builds its own")
        for legacy in ("seek", "gpu_id", "videosize"):
            options.pop(legacy, None)  # accepted by the reference's constructors, meaningless here

        self._basedir = os.fspath(basedir)
        self._mode = mode
        self._strict = strict
        self._closed = False
        self._supplied_index: ImgStoreIndex | None = index
        self._listed_chunks: list[tuple[int, str]] | None = None
        self._decode = _NO_DECODE
        self._lock: StoreLock | None = None
        self.damaged_chunks: dict[int, str] = {}

        # the classic API's cursor: the last frame read, -1 before the first read
        self._cursor = -1
        self.frame_number: int | float = float("nan")
        self.frame_time: float = float("nan")

        if mode == "r":
            if options:
                raise TypeError(f"unexpected argument(s) for reading: {sorted(options)}")
            self._open_read()
        elif mode == "w":
            self._open_write(imgshape, imgdtype, chunksize, metadata, encoding, format, overwrite, options)
        else:
            self._open_append(options)

    # ================================================================== backend hooks

    @classmethod
    def supported_formats(cls) -> list[str]:
        """Formats this backend writes."""
        raise NotImplementedError

    @classmethod
    def supports_format(cls, fmt: str) -> bool:
        """True if this backend writes ``fmt`` (aliases included)."""
        return fmt in cls.supported_formats()

    def _prepare_write(self, fmt: str, imgshape: tuple[int, ...], imgdtype: np.dtype, encoding: str | None,
                       options: dict[str, Any]) -> StoreMetadata:
        """Validate a new store's parameters; return its metadata (without user keys)."""
        raise NotImplementedError

    def _configure(self) -> None:
        """Set backend state from ``self._smd`` (after reading or creating metadata)."""

    def _list_chunks(self) -> list[tuple[int, str]]:
        """``(chunk_n, index base path)`` of every chunk on disk, any order."""
        raise NotImplementedError

    def _chunk_base(self, chunk_n: int) -> str:
        """Path of chunk ``chunk_n``'s index without extension."""
        raise NotImplementedError

    def _open_write_chunk(self, chunk_n: int) -> None:
        """Prepare chunk ``chunk_n`` to receive frames."""
        raise NotImplementedError

    def _write_image(self, img: np.ndarray, frame_number: int, frame_time: float) -> Mapping[str, Any] | None:
        """Write one frame to the open chunk; return values of :attr:`journal_fields`."""
        raise NotImplementedError

    def _close_write_chunk(self, n_frames: int) -> Mapping[str, np.ndarray] | None:
        """Finish the open chunk; may return per-frame arrays to store in its index."""
        raise NotImplementedError

    def _remove_chunk_payload(self, chunk_n: int) -> None:
        """Delete the frame payload of chunk ``chunk_n`` (its index is removed by the base)."""
        raise NotImplementedError

    def _recover_chunk(self, chunk_n: int, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Given a crashed chunk's journal, return the part whose frames are really on disk."""
        return table

    def _read_image(self, chunk_n: int, position: int) -> np.ndarray:
        """The stored image at ``position`` in chunk ``chunk_n`` (before encoding conversion)."""
        raise NotImplementedError

    def _close_readers(self) -> None:
        """Release open files/decoders."""

    @classmethod
    def _extract_only_frame(cls, basedir: str, chunk_n: int, frame_n: int, smd: StoreMetadata) -> np.ndarray:
        raise NotImplementedError

    @property
    def lossless(self) -> bool:
        """True if frames read back exactly as written."""
        raise NotImplementedError

    # ================================================================== opening

    def _metadata_path(self) -> str:
        return os.path.join(self._basedir, STORE_MD_FILENAME)

    def _read_metadata(self) -> None:
        if not os.path.isdir(self._basedir):
            raise StoreNotFoundError(2, f"path '{self._basedir}' does not exist", self._basedir)
        smd, user = ondisk.read_metadata(self._metadata_path())
        readable = self.readable_class_names | {self.class_name}
        if smd.class_name not in readable:
            raise MetadataError(
                f"incompatible store: {self._metadata_path()} has class {smd.class_name!r}; "
                f"{type(self).__name__} reads {sorted(readable)}"
            )
        if smd.version != self._version:
            raise MetadataError(
                f"incompatible store version {smd.version!r} in {self._metadata_path()} (supported: {self._version})"
            )
        self._smd = smd
        self._user_metadata: dict[str, Any] = user
        self._created_utc, self._timezone_local = ondisk.resolve_created(
            smd, user, self._basedir, self._metadata_path())
        self._decode = encoding_decoder(self._checked_encoding(smd.encoding))
        self._configure()

    def _checked_encoding(self, encoding: str | None) -> str | None:
        try:
            return check_encoding(encoding)
        except UnsupportedFormatError as exc:
            raise MetadataError(f"{self._metadata_path()}: {exc}") from None

    def _open_read(self) -> None:
        self._read_metadata()
        if self._supplied_index is not None:
            self._frame_index = self._supplied_index.frame_index
        else:
            self._frame_index = self._load_index()

    def _load_index(self) -> FrameIndex:
        """The frame index of a store opened for reading."""
        # from the store's index cache where it is still valid (see imgstore.index_cache)
        from .. import index_cache

        return index_cache.load_index(self)

    def save_index(self, path: str | os.PathLike | None = None) -> str | None:
        """Save the frame index as imgstore 0.4 did: a SQLite ``.index.sqlite``; return its path.

        Readers only (for writers this does nothing and returns None, as in the reference;
        use ``close(save_index=True)``). ``path`` defaults to ``.index.sqlite`` in the store;
        open it with :meth:`imgstore.index.ImgStoreIndex.new_from_file` and pass it as
        ``index=``. Without ``path`` the index cache that makes big stores open instantly
        (:mod:`imgstore.index_cache`) is refreshed too.
        """
        if self._mode != "r":
            return None
        self._require_mode("r", "save_index")
        target = os.fspath(path) if path is not None else os.path.join(self._basedir, STORE_INDEX_FILENAME)
        ImgStoreIndex.from_frame_index(self._frame_index).to_file(target)
        if path is None:
            from .. import index_cache

            index_cache.save_index(self)
        return target

    def _build_index(self) -> FrameIndex:
        self._begin_scan()
        tables = [(chunk_n, table["frame_number"], table["frame_time"])
                  for chunk_n, table in self._iter_chunk_tables()]
        return FrameIndex.from_chunks(tables)

    def _begin_scan(self) -> None:
        """Reset what a scan of the chunks records: damaged chunks, and whether a writer is live."""
        from .._lock import is_locked

        self.damaged_chunks = {}
        # a live writer's open chunk has only a journal: expected, so not worth a warning
        self._writer_alive = self._mode == "r" and is_locked(self._basedir)

    def _iter_chunk_tables(self, keys: Sequence[str] = FRAME_MD) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        for chunk_n, base in sorted(self._list_chunks()):
            table = self._read_chunk_table(chunk_n, base, keys)
            if table is not None:
                yield chunk_n, table

    def _read_chunk_table(self, chunk_n: int, base: str, keys: Sequence[str] = FRAME_MD,
                          quiet: bool = False) -> dict[str, np.ndarray] | None:
        """A chunk's table; None if it has none or is damaged.

        A damaged chunk raises in strict mode, else it is recorded in ``damaged_chunks``
        with a warning; ``quiet`` returns None for it silently, recording nothing.
        """
        try:
            if not quiet:
                return self._load_chunk_table(chunk_n, base, keys)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self._load_chunk_table(chunk_n, base, keys)
        except (IndexCorruptError, ChunkReadError, OSError) as exc:
            if quiet:
                return None
            if self._strict:
                raise
            self._skip_chunk(chunk_n, str(exc))
            return None

    def _skip_chunk(self, chunk_n: int, why: str) -> None:
        self.damaged_chunks[chunk_n] = why
        warnings.warn(f"{self._basedir}: chunk {chunk_n} skipped: {why}", ImgStoreWarning, stacklevel=5)

    def _load_chunk_table(self, chunk_n: int, base: str, keys: Sequence[str] = FRAME_MD
                          ) -> dict[str, np.ndarray] | None:
        """The per-frame table of a chunk, from its index or (crashed writer) its journal."""
        journal = base + ondisk.JOURNAL_SUFFIX
        journal_table = None
        # a live writer closing this chunk writes its index, then removes the journal: look
        # again if the journal vanished between the two looks, so the chunk is never missed
        for _ in range(2):
            path = ondisk.find_index_file(base)
            if path is not None:
                return ondisk.read_chunk_index(path, keys)
            try:
                journal_table = ondisk.read_journal(journal)
                break
            except FileNotFoundError:
                continue
        if journal_table is not None:
            if not len(journal_table["frame_number"]):
                return journal_table  # opened, no frame yet: nothing to recover, nothing to check
            table = self._recover_chunk(chunk_n, journal_table)
            if not self._is_own_live_chunk(chunk_n) and not getattr(self, "_writer_alive", False):
                warnings.warn(
                    f"{self._basedir}: chunk {chunk_n} has no index (writer killed or still running); "
                    f"{len(table['frame_number'])} frames recovered from its journal",
                    ImgStoreWarning, stacklevel=6)
            return table
        if not self._chunk_has_payload(chunk_n):
            # a writer created the chunk but was killed (or is live) before its first frame:
            # nothing is lost, so the chunk is neither damaged nor worth a warning
            return None
        if self._strict:
            raise IndexCorruptError(f"missing index for chunk {chunk_n} ({base}.npz)")
        self._skip_chunk(chunk_n, f"missing index {base}.npz (writer died before closing the chunk)")
        return None

    def _chunk_has_payload(self, chunk_n: int) -> bool:
        """False if chunk ``chunk_n`` holds no frame data at all (created, then the writer died).

        Only asked for chunks with neither index nor journal; the default assumes frames.
        """
        return True

    def _is_own_live_chunk(self, chunk_n: int) -> bool:
        return self._mode != "r" and chunk_n == getattr(self, "_write_chunk_n", None)

    def _open_write(self, imgshape, imgdtype, chunksize, metadata, encoding, fmt, overwrite, options) -> None:
        if imgshape is None or imgdtype is None or fmt is None:
            raise TypeError("imgshape, imgdtype and format must be given to write a store")
        try:
            shape = tuple(int(x) for x in imgshape)
        except (TypeError, ValueError):
            raise InvalidImageError(f"imgshape {imgshape!r} must be a sequence of integers") from None
        if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3))) or min(shape) <= 0:
            raise InvalidImageError(f"imgshape {shape!r} must be (height, width) or (height, width, 3)")
        try:
            dtype = np.dtype(imgdtype)
        except TypeError:
            raise InvalidImageError(f"imgdtype {imgdtype!r} is not a numpy dtype") from None
        if chunksize is None:
            chunksize = self.DEFAULT_CHUNKSIZE
        if isinstance(chunksize, bool) or not isinstance(chunksize, (int, np.integer)) or chunksize <= 0:
            raise ValueError(f"chunksize {chunksize!r} must be a positive integer")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise MetadataError(f"metadata must be a mapping, got {type(metadata).__name__}")
        user = {k: v for k, v in (metadata or {}).items() if k != ondisk.STORE_MD_KEY}
        check_encoding(encoding)

        created_utc = options.pop("created_utc", None)
        timezone_local = options.pop("timezone_local", None)
        smd = self._prepare_write(fmt, shape, dtype, encoding, options)
        smd.chunksize = int(chunksize)
        if created_utc is not None:
            # e.g. a converted store keeps the recording's creation time
            smd.created_utc = _naive_utc_iso(created_utc)
        if timezone_local is not None:
            smd.timezone_local = str(timezone_local)
        if options:
            raise TypeError(f"unexpected argument(s) for format {fmt!r}: {sorted(options)}")
        if metadata and isinstance(metadata.get(ondisk.STORE_MD_KEY), Mapping):
            # the reference lets callers add keys to __store; the format's own keys win
            extra = {k: v for k, v in metadata[ondisk.STORE_MD_KEY].items() if k not in smd.to_mapping()}
            smd.other.update(extra)

        self._input_shape = shape
        self._input_dtype = dtype
        self._prepare_directory(overwrite)
        self._smd = smd
        self._user_metadata = user
        self._created_utc, self._timezone_local = ondisk.resolve_created(smd, user, self._basedir, "")
        try:
            ondisk.write_metadata(self._metadata_path(), smd, user)
        except BaseException:
            self._release_lock()
            raise
        self._configure()
        self._start_writing(first_chunk=0, frames_before=0)

    def _prepare_directory(self, overwrite: bool) -> None:
        exists = os.path.exists(self._metadata_path())
        if exists and not overwrite:
            raise StoreExistsError(
                17, f"a store already exists at '{self._basedir}' (pass overwrite=True to replace it, "
                    f"or mode='a' to append)", self._basedir)
        leftovers = [] if exists else _chunk_entries(self._basedir)
        if leftovers and not overwrite:
            # chunks without metadata.yaml (a damaged store?): new frames would mix with old indexes
            raise StoreExistsError(
                17, f"'{self._basedir}' holds chunk files ({', '.join(leftovers[:3])}) but no "
                    f"{STORE_MD_FILENAME}: pass overwrite=True to delete them", self._basedir)
        exists = exists or bool(leftovers)
        try:
            os.makedirs(self._basedir, exist_ok=True)
        except OSError as exc:
            raise ondisk.StoreWriteError(exc.errno, f"could not create store folder {self._basedir}: "
                                                    f"{exc.strerror}") from exc
        self._lock = StoreLock(self._basedir)
        self._lock.acquire()
        if exists:
            remove_store_files(self._basedir)

    def _open_append(self, options: dict[str, Any]) -> None:
        self._read_metadata()
        self._lock = StoreLock(self._basedir)
        self._lock.acquire()
        try:
            self._configure_append(options)
            index = self._load_index()
            if self.damaged_chunks:
                raise IndexCorruptError(
                    f"cannot append to {self._basedir}: damaged chunks {sorted(self.damaged_chunks)} "
                    f"(run repair first)")
            # journaled chunks of a crashed writer get a proper index before we add to the store
            for chunk_n in index.chunks:
                base = self._chunk_base(chunk_n)
                if ondisk.find_index_file(base) is None:
                    sl = index.chunk_slice(chunk_n)
                    ondisk.write_chunk_index(base, {"frame_number": index.frame_number[sl],
                                                    "frame_time": index.frame_time[sl]}, self._smd)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(base + ondisk.JOURNAL_SUFFIX)
            on_disk = [c for c, _ in self._list_chunks()]
            next_chunk = max(on_disk) + 1 if on_disk else 0
            self._input_shape = self._append_input_shape()
            self._input_dtype = np.dtype(self._smd.imgdtype)
            self._resume_after(index)
            self._start_writing(first_chunk=next_chunk, frames_before=len(index))
            if len(index):
                self._frame_min, self._frame_max = index.frame_min, index.frame_max
                self._t0, self._tN = index.frame_time_min, index.frame_time_max
        except BaseException:
            self._release_lock()
            raise

    def _append_input_shape(self) -> tuple[int, ...]:
        """Shape of the images ``add_image`` takes when appending to this store."""
        return tuple(self._smd.imgshape)

    def _configure_append(self, options: dict[str, Any]) -> None:
        if options:
            raise TypeError(f"unexpected argument(s) for appending: {sorted(options)}")

    def _resume_after(self, index: FrameIndex) -> None:
        """Hook: learn what a backend needs from the frames already in a store it appends to."""

    def _start_writing(self, first_chunk: int, frames_before: int) -> None:
        self._encode = self._write_encoder()
        self._frame_count = frames_before
        self._frame_min: int | float = float("nan")
        self._frame_max: int | float = float("nan")
        self._t0 = self._tN = float("nan")
        self._chunks_closed: list[int] = []
        self._write_failure: BaseException | None = None
        self._warned_cast = False
        self._open_chunk(first_chunk)

    def _write_encoder(self):
        """Conversion applied to images before writing (the '+color' formats)."""
        return lambda img: img

    # ================================================================== writing

    def _open_chunk(self, chunk_n: int) -> None:
        self._write_chunk_n = chunk_n
        base = self._chunk_base(chunk_n)
        # the new chunk's empty state comes first: if opening it fails (disk full), close()
        # must not write the previous chunk's frames as this chunk's index
        self._chunk_table: dict[str, list] = {name: [] for name, _ in self._journal_dtype_fields()}
        self._extra_writer = ondisk.ExtraDataWriter(base)
        self._journal: ondisk.ChunkJournal | None = None
        # the journal before the payload: a chunk whose payload exists always has a journal (or
        # an index), so a crash just after creating a video file is not a damaged chunk
        folder = os.path.dirname(base)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise ondisk.StoreWriteError(exc.errno, f"could not create {folder}: {exc.strerror}") from exc
        journal = ondisk.ChunkJournal(base + ondisk.JOURNAL_SUFFIX,
                                      ondisk.BASE_JOURNAL_FIELDS + tuple(self.journal_fields))
        try:
            self._open_write_chunk(chunk_n)
        except BaseException:
            journal.close(remove=True)
            raise
        self._journal = journal

    def _journal_dtype_fields(self) -> tuple[tuple[str, str], ...]:
        return ondisk.BASE_JOURNAL_FIELDS + tuple(self.journal_fields)

    def _finish_chunk(self, last: bool) -> None:
        """Close the open chunk: payload, index (atomically), extra data, journal."""
        n = len(self._chunk_table["frame_number"])
        base = self._chunk_base(self._write_chunk_n)
        if self._journal is None:
            # the chunk failed to open (write error): no frame or extra data reached it
            self._close_write_chunk(0)
            self._remove_chunk_payload(self._write_chunk_n)
            self._extra_writer.discard()
            return
        final_arrays = self._close_write_chunk(n) or {}
        if n == 0 and self._extra_writer.n_records == 0 and last:
            # an empty trailing chunk is dropped rather than left for readers to skip
            self._remove_chunk_payload(self._write_chunk_n)
            self._journal.close(remove=True)
            self._extra_writer.discard()
            return
        arrays: dict[str, np.ndarray] = {}
        for name, typ in self._journal_dtype_fields():
            arrays[name] = np.asarray(self._chunk_table[name], dtype=np.dtype(typ))
        arrays.update(final_arrays)
        ondisk.write_chunk_index(base, arrays, self._smd)
        self._extra_writer.finalize()
        self._journal.close(remove=True)
        self._chunks_closed.append(self._write_chunk_n)

    def _check_frame_metadata(self, frame_number: Any, frame_time: Any) -> tuple[int, float]:
        if isinstance(frame_number, (bool, np.bool_)):
            raise InvalidFrameMetadataError(f"frame_number {frame_number!r} is not an integer")
        try:
            fn = int(frame_number)
            ok = fn == frame_number
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise InvalidFrameMetadataError(f"frame_number {frame_number!r} is not an integer")
        if not -(2**63) <= fn < 2**63:
            # the index stores int64: a wider number would overflow after the frame was written
            raise InvalidFrameMetadataError(f"frame_number {frame_number!r} does not fit in 64 bits")
        if not ondisk.is_finite_number(frame_time):
            raise InvalidFrameMetadataError(f"frame_time {frame_time!r} is not a finite number")
        return fn, float(frame_time)

    def _check_image(self, img: Any) -> np.ndarray:
        if not isinstance(img, np.ndarray):
            raise InvalidImageError(f"image must be a numpy array, got {type(img).__name__}")
        shape = self._input_shape
        if img.shape != shape and not (len(shape) == 3 and shape[2] == 1 and img.shape == shape[:2]):
            raise InvalidImageError(f"image has shape {img.shape}, store {self._basedir!r} expects {shape}")
        if img.dtype != self._input_dtype:
            return self._cast_exactly(img)
        return img

    def _cast_exactly(self, img: np.ndarray) -> np.ndarray:
        """``img`` in the store's dtype if the cast changes no value, else :class:`InvalidImageError`.

        imgstore 0.4 cast whatever it was given (OpenCV and numpy writers did), so programs
        pass e.g. float64 frames of integral values to a uint8 store (SLEAP 1.4's export).
        """
        target = self._input_dtype
        if img.dtype.kind not in "biuf" or target.kind not in "biuf":
            raise InvalidImageError(f"image has dtype {img.dtype}, store {self._basedir!r} expects {target}")
        with np.errstate(invalid="ignore", over="ignore"):
            cast = img.astype(target)
        changed = cast != img  # fractions, values out of range and NaN (for integer stores) differ
        if target.kind == "f" and img.dtype.kind == "f":
            changed &= ~(np.isnan(cast) & np.isnan(img))
        if changed.any():
            bad = img[changed].flat[0]
            raise InvalidImageError(
                f"image of dtype {img.dtype} holds {bad.item()!r}, which {target} cannot hold exactly "
                f"(store {self._basedir!r} expects {target} images)")
        if not self._warned_cast:
            self._warned_cast = True
            warnings.warn(f"{self._basedir}: images of dtype {img.dtype} are converted to the store's {target} "
                          f"(their values fit exactly); pass {target} images to avoid the copy",
                          ImgStoreWarning, stacklevel=4)
        return cast

    def add_image(self, img: np.ndarray, frame_number: int, frame_time: float) -> None:
        """Append one frame.

        Parameters
        ----------
        img
            Image of the store's ``imgshape`` and ``imgdtype`` (BGR for colour).
        frame_number
            The camera's number for this frame (any integer; may repeat or have gaps).
        frame_time
            Seconds since the epoch.
        """
        self._require_mode("w", "add_image")
        fn, ft = self._check_frame_metadata(frame_number, frame_time)
        img = self._encode(self._check_image(img))
        self._check_no_write_failure()
        try:
            extra = self._write_image(img, fn, ft) or {}
            self._journal.append(frame_number=fn, frame_time=ft, **extra)
        except (InvalidImageError, InvalidFrameMetadataError, UnsupportedFormatError):
            raise  # rejected before anything was written
        except BaseException as exc:
            # the payload may hold this frame while the journal does not: further frames could
            # be filed under the wrong position, so this writer only closes from now on
            self._write_failure = exc
            raise
        table = self._chunk_table
        table["frame_number"].append(fn)
        table["frame_time"].append(ft)
        for name, _ in self.journal_fields:
            table[name].append(extra.get(name, 0))

        self._frame_min = fn if self._frame_count == 0 or fn < self._frame_min else self._frame_min
        self._frame_max = fn if self._frame_count == 0 or fn > self._frame_max else self._frame_max
        if self._frame_count == 0:
            self._t0 = ft
        self._tN = ft
        self.frame_number, self.frame_time = fn, ft
        self._frame_count += 1
        if len(table["frame_number"]) >= self._smd.chunksize:
            try:
                self._finish_chunk(last=False)
                self._open_chunk(self._write_chunk_n + 1)
            except ondisk.StoreWriteError as exc:
                # this frame is stored (journaled), so add_image returns as promised; the failed
                # chunk change stops the writer: the next write raises, close() tries it again
                self._write_failure = exc
                log.error("%s: changing from chunk %d failed: %s", self._basedir, self._write_chunk_n, exc)
            except BaseException as exc:
                self._write_failure = exc
                raise

    def _check_no_write_failure(self) -> None:
        failure = getattr(self, "_write_failure", None)
        if failure is not None:
            raise ondisk.StoreWriteError(
                getattr(failure, "errno", None) or errno.EIO,
                f"store {self._basedir!r} refuses further writes after a failed write ({failure}); the "
                f"frames added before it are kept: close() the store, then append with mode='a'")

    def add_extra_data(self, **data: Any) -> None:
        """Store extra data (sensor readings...) with the frame added last.

        The record gets ``frame_number``, ``frame_time`` and ``frame_index`` of that frame;
        :meth:`get_extra_data` returns all records as a DataFrame.
        """
        self._require_mode("w", "add_extra_data")
        if not data:
            return
        self._check_no_write_failure()
        reserved = {"frame_number", "frame_time", "frame_index"} & set(data)
        if reserved:
            # the reference silently overwrote them: keep old code working, but say so
            warnings.warn(f"extra data keys {sorted(reserved)} are set by the store; the values given "
                          f"are replaced", ImgStoreWarning, stacklevel=2)
        record = dict(data)
        record["frame_time"] = self.frame_time
        record["frame_number"] = self.frame_number
        record["frame_index"] = self._frame_count - 1
        self._extra_writer.append(ondisk.encode_extra_record(record))

    def empty(self) -> None:
        """Discard every frame written so far; the store stays open for writing."""
        self._require_mode("w", "empty")
        self._close_write_chunk(len(self._chunk_table["frame_number"]))
        if self._journal is not None:
            self._journal.close(remove=True)
        self._extra_writer.discard()
        for chunk_n, base in self._list_chunks():
            self._remove_chunk_files(chunk_n, base)
        self.frame_number, self.frame_time = float("nan"), float("nan")
        self._start_writing(first_chunk=0, frames_before=0)

    def _remove_chunk_files(self, chunk_n: int, base: str) -> None:
        self._remove_chunk_payload(chunk_n)
        for suffix in (*ondisk.INDEX_SUFFIXES, ondisk.JOURNAL_SUFFIX, ondisk.EXTRA_JSON_SUFFIX,
                       ondisk.EXTRA_JOURNAL_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(base + suffix)

    # ================================================================== reading

    def _require_mode(self, modes: str, what: str) -> None:
        if self._closed:
            raise StoreClosedError(f"{what}: store {self._basedir!r} is closed")
        if self._mode == "a" and "w" in modes:
            return
        if self._mode not in modes:
            kind = "writing" if "w" in modes else "reading"
            raise ModeError(f"{what} needs a store opened for {kind}; {self._basedir!r} is open in mode "
                            f"{self._mode!r}")

    def _read_at(self, frame_index: int, move_cursor: bool) -> tuple[np.ndarray, FrameMetadata]:
        self._require_mode("r", "reading frames")
        chunk_n, position = self._frame_index.locate(frame_index)
        # C-contiguous: programs draw on frames with OpenCV, which refuses strided views
        img = np.ascontiguousarray(self._decode(self._read_image(chunk_n, position)))
        fn = int(self._frame_index.frame_number[frame_index])
        ft = float(self._frame_index.frame_time[frame_index])
        if move_cursor:
            self._cursor = int(frame_index)
            self.frame_number, self.frame_time = fn, ft
        return img, (fn, ft)

    def get_next_image(self) -> tuple[np.ndarray, FrameMetadata]:
        """The frame after the last one read; raises ``EOFError`` after the last frame."""
        self._require_mode("r", "get_next_image")
        nxt = self._cursor + 1
        if nxt >= len(self._frame_index):
            raise EOFError(f"end of store {self._basedir!r} ({len(self._frame_index)} frames)")
        return self._read_at(nxt, move_cursor=True)

    def get_next_framenumber(self) -> int:
        """frame_number of the frame :meth:`get_next_image` would return."""
        self._require_mode("r", "get_next_framenumber")
        nxt = self._cursor + 1
        if nxt >= len(self._frame_index):
            raise EOFError(f"end of store {self._basedir!r} ({len(self._frame_index)} frames)")
        return int(self._frame_index.frame_number[nxt])

    def get_image(self, frame_number: int | None, exact_only: bool = True,
                  frame_index: int | None = None) -> tuple[np.ndarray, FrameMetadata]:
        """A frame by frame_number, or by frame_index if given.

        Parameters
        ----------
        frame_number
            The camera's frame number. With ``exact_only=False`` the frame with the nearest
            number is returned.
        exact_only
            Raise :class:`~imgstore.errors.FrameNotFoundError` (a ``ValueError``) if no frame
            has exactly this number.
        frame_index
            Position ``0 .. frame_count-1`` in the store; takes precedence.

        Returns
        -------
        (image, (frame_number, frame_time))
        """
        self._require_mode("r", "get_image")
        if frame_index is not None:
            i = self._frame_index.check_index(frame_index)
        elif exact_only:
            i = self._frame_index.find_number(frame_number)
        else:
            i = self._frame_index.nearest_number(frame_number)
        return self._read_at(i, move_cursor=True)

    def get_nearest_image(self, frame_time: float) -> tuple[np.ndarray, FrameMetadata]:
        """The frame whose frame_time is closest to ``frame_time`` (seconds since the epoch)."""
        self._require_mode("r", "get_nearest_image")
        return self._read_at(self._frame_index.nearest_time(frame_time), move_cursor=True)

    # ------------------------------------------------------------------ array view

    def __len__(self) -> int:
        return self.frame_count

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray) -> np.ndarray:
        """Images by frame_index: ``store[i]``, ``store[a:b:c]``, ``store[[i, j]]``.

        Does not move the classic API's cursor.
        """
        self._require_mode("r", "indexing")
        n = len(self._frame_index)
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            i = int(key)
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise FrameIndexError(f"frame_index {int(key)} out of range for a store of {n} frames")
            return self._read_at(i, move_cursor=False)[0]
        if isinstance(key, slice):
            indices = np.arange(n)[key]
        else:
            indices = np.asarray(key)
            if indices.dtype == bool:
                if indices.shape != (n,):
                    raise FrameIndexError(f"boolean mask of shape {indices.shape} for a store of {n} frames")
                indices = np.flatnonzero(indices)
            elif indices.dtype.kind not in "iu" or indices.ndim != 1:
                raise FrameIndexError(f"cannot index a store with {key!r}")
            bad = (indices < -n) | (indices >= n)
            if bad.any():
                raise FrameIndexError(f"frame_index {int(indices[bad][0])} out of range for a store of {n} frames")
            indices = np.where(indices < 0, indices + n, indices)
        out = np.empty((len(indices), *self.image_shape), dtype=self._output_dtype())
        for k, i in enumerate(indices):
            out[k] = self._read_at(int(i), move_cursor=False)[0]
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        """Images in store order (does not move the classic cursor)."""
        for i in range(len(self)):
            yield self._read_at(i, move_cursor=False)[0]

    def iter_frames(self, start: int = 0, stop: int | None = None
                    ) -> Iterator[tuple[np.ndarray, int, float]]:
        """``(image, frame_number, frame_time)`` for frame_index ``start .. stop-1``."""
        self._require_mode("r", "iter_frames")
        stop = len(self) if stop is None else min(stop, len(self))
        for i in range(max(start, 0), stop):
            img, (fn, ft) = self._read_at(i, move_cursor=False)
            yield img, fn, ft

    def _output_dtype(self) -> np.dtype:
        if self._smd.encoding and self._decode is not _NO_DECODE:
            return np.dtype(np.uint8)
        return np.dtype(self._smd.imgdtype)

    @property
    def index(self) -> FrameIndex:
        """The frame index: where each frame lives (:class:`~imgstore.frame_index.FrameIndex`)."""
        return self._index_or_written()

    @property
    def frame_numbers(self) -> np.ndarray:
        """frame_number of every frame in store order (read-only int64 array)."""
        return _readonly(self._index_or_written().frame_number)

    @property
    def frame_times(self) -> np.ndarray:
        """frame_time of every frame in store order (read-only float64 array)."""
        return _readonly(self._index_or_written().frame_time)

    def frame_index_of(self, frame_number: int, exact: bool = True) -> int:
        """frame_index of a frame_number (nearest if not ``exact``)."""
        index = self._index_or_written()
        return index.find_number(frame_number) if exact else index.nearest_number(frame_number)

    def frame_index_at_time(self, frame_time: float) -> int:
        """frame_index of the frame nearest to ``frame_time``."""
        return self._index_or_written().nearest_time(frame_time)

    def _index_or_written(self) -> FrameIndex:
        if self._mode == "r":
            return self._frame_index
        # a writer answers from what it has written: closed chunks from disk, the open one from memory
        tables = [(c, t["frame_number"], t["frame_time"]) for c, t in self._iter_chunk_tables()
                  if c != self._write_chunk_n]
        tables.append((self._write_chunk_n, np.asarray(self._chunk_table["frame_number"], dtype=np.int64),
                       np.asarray(self._chunk_table["frame_time"], dtype=np.float64)))
        return FrameIndex.from_chunks(tables)

    # ================================================================== metadata API

    def get_frame_metadata(self) -> dict[str, list]:
        """``{'frame_number': [...], 'frame_time': [...]}`` of every frame in store order."""
        index = self._index_or_written()
        return {"frame_number": index.frame_number.tolist(), "frame_time": index.frame_time.tolist()}

    @property
    def frame_count(self) -> int:
        """Number of frames in the store (written so far, when writing)."""
        return len(self._frame_index) if self._mode == "r" else self._frame_count

    @property
    def frame_min(self) -> int | float:
        """Smallest frame_number (nan when empty)."""
        return self._frame_index.frame_min if self._mode == "r" else self._frame_min

    @property
    def frame_max(self) -> int | float:
        """Largest frame_number (nan when empty)."""
        return self._frame_index.frame_max if self._mode == "r" else self._frame_max

    @property
    def frame_time_min(self) -> float:
        """Earliest frame_time."""
        return self._frame_index.frame_time_min if self._mode == "r" else self._t0

    @property
    def frame_time_max(self) -> float:
        """Latest frame_time."""
        return self._frame_index.frame_time_max if self._mode == "r" else self._tN

    @property
    def duration(self) -> float:
        """frame_time_max - frame_time_min in seconds (0 when empty)."""
        d = self.frame_time_max - self.frame_time_min
        return float(d) if d == d else 0.0

    @property
    def chunks(self) -> list[int]:
        """Numbers of the chunks that hold frames (when writing: the chunks closed so far)."""
        return self._frame_index.chunks if self._mode == "r" else list(self._chunks_closed)

    @property
    def user_metadata(self) -> dict[str, Any]:
        """The user metadata (top-level keys of ``metadata.yaml`` other than ``__store``)."""
        return self._user_metadata

    @property
    def filename(self) -> str:
        """The store's folder."""
        return self._basedir

    @property
    def full_path(self) -> str:
        """Path of ``metadata.yaml``."""
        return self._metadata_path()

    @property
    def mode(self) -> str:
        """``'r'``, ``'w'`` or ``'a'``."""
        return self._mode

    @property
    def format(self) -> str:
        """Storage format (``'png'``, ``'h264/mkv'``...)."""
        return self._smd.format

    @property
    def encoding(self) -> str | None:
        """Pixel encoding converted on read, or None."""
        return self._smd.encoding

    @property
    def chunksize(self) -> int:
        """Frames per chunk."""
        return self._smd.chunksize

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of the images returned (always colour when the store has an encoding)."""
        shape = tuple(self._smd.imgshape)
        if self._smd.encoding and self._decode is not _NO_DECODE:
            return shape[0], shape[1], 3
        return shape

    @property
    def image_dtype(self) -> np.dtype:
        """dtype of the images returned."""
        return self._output_dtype()

    @property
    def created(self) -> tuple[datetime.datetime, Any]:
        """``(creation datetime in UTC, the recording's local ZoneInfo)``."""
        return self._created_utc, self._timezone_local

    @property
    def uuid(self) -> str | None:
        """The store's unique id."""
        return self._smd.uuid

    @property
    def metadata(self) -> dict[str, Any]:
        """The ``__store`` mapping."""
        return self._smd.to_mapping()

    def convert_frame_time_to_datetime(self, frame_time: float, tz: Any = None) -> datetime.datetime:
        """frame_time as an aware datetime in the store's time zone (or ``tz``)."""
        return datetime.datetime.fromtimestamp(float(frame_time), tz=tz or self._timezone_local)

    def disable_decoding(self) -> None:
        """Return frames as stored, without converting the store's pixel encoding."""
        self._decode = _NO_DECODE

    # ================================================================== extra data

    def _iter_extra_data_files(self, extensions: Sequence[str] = ondisk.EXTRA_DATA_FILE_EXTENSIONS
                               ) -> Iterator[tuple[bool, str]]:
        """``(is_motif, path)`` of every extra-data file, chunk by chunk."""
        for chunk_n, base in sorted(self._list_chunks()):
            found = False
            # Motif's out-of-process writer puts extra data in the store root
            for ext in (".extra_data.h5", ".extra_data.json"):
                if ext in extensions:
                    path = os.path.join(self._basedir, ondisk.chunk_name(chunk_n) + ext)
                    if os.path.exists(path):
                        yield True, path
                        found = True
                        break
            if found:
                continue
            for ext in (".extra.json", ".extra_data.json"):
                if ext in extensions:
                    path = base + ext
                    if os.path.exists(path):
                        yield False, path
                        found = True
            if not found and ".extra.json" in extensions and os.path.exists(base + ondisk.EXTRA_JOURNAL_SUFFIX):
                yield False, base + ondisk.EXTRA_JOURNAL_SUFFIX

    @property
    def has_extra_data(self) -> bool:
        """True if any chunk has extra data."""
        return any(True for _ in self._iter_extra_data_files())

    def find_extra_data_files(self, extensions: Sequence[str] = ondisk.EXTRA_DATA_FILE_EXTENSIONS) -> list[str]:
        """Paths of the extra-data files."""
        return [p for _, p in self._iter_extra_data_files(extensions)]

    def get_extra_data_samplerate(self) -> float:
        """Sample rate of the sensor data in Motif ``.extra_data.h5`` files (one dataset only).

        Raises
        ------
        MetadataError
            No such file or dataset has a sample rate, or several datasets do (read them
            with :func:`imgstore.util.motif_extra_data_h5_attrs`).
        """
        from .. import _motif

        paths = self.find_extra_data_files(extensions=(".extra_data.h5",))
        for path in paths:
            attrs = _motif.read_motif_h5_attrs(path)
            datasets = attrs["_datasets"]
            if len(datasets) > 1:
                raise MetadataError(f"{path}: several datasets ({', '.join(datasets)}) with their own sample "
                                    f"rates: read them with imgstore.util.motif_extra_data_h5_attrs")
            if len(datasets) == 1 and "samplerate" in attrs.get(datasets[0], {}):
                return attrs[datasets[0]]["samplerate"]
        raise MetadataError(f"no sample rate in the extra data of {self._basedir!r} "
                            f"({len(paths)} .extra_data.h5 file(s) looked at)")

    def get_extra_data(self, ignore_corrupt_chunks: bool = False):
        """All extra data as a pandas DataFrame (None if there is none)."""
        import pandas as pd

        from .. import _motif

        frames = []
        for is_motif, path in self._iter_extra_data_files():
            try:
                if is_motif:
                    df = _motif.read_motif_extra_data(path)
                else:
                    df = pd.DataFrame(ondisk.read_extra_json(path))
            except Exception as exc:
                if ignore_corrupt_chunks:
                    warnings.warn(f"extra data {path} is corrupt: {exc}", ImgStoreWarning, stacklevel=2)
                    continue
                if isinstance(exc, ImgStoreError):
                    raise
                raise IndexCorruptError(f"{path}: unreadable extra data ({exc})") from exc
            if df is not None and not df.empty:
                frames.append(df)
        if frames:
            return pd.concat(frames, axis=0, ignore_index=True)
        return None

    # ================================================================== live reading

    def refresh(self) -> int:
        """Pick up frames a live writer added since this store was opened.

        Returns
        -------
        int
            The number of frames added. Frames of the chunk being written are included as
            soon as they are complete on disk (never half a frame).
        """
        self._require_mode("r", "refresh")
        before = len(self._frame_index)
        # decoders opened on a growing chunk only know the frames present when they opened
        self._close_readers()
        self._supplied_index = None  # it describes the store as it was
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImgStoreWarning)  # a live chunk is expected to lack an index
            self._frame_index = self._rescan_index()
        return len(self._frame_index) - before

    def _rescan_index(self) -> FrameIndex:
        """The index again, re-reading only chunks whose index file changed since the last rescan.

        A live reader refreshes often while the store grows by one chunk at a time: reading
        every chunk's index each time would cost O(chunks). A closed chunk's index is written
        once, atomically (a new inode), so an unchanged (inode, size, mtime) means unchanged
        frames; chunks without an index (the writer's open chunk) are always read again.
        """
        memo: dict[int, tuple[tuple, np.ndarray, np.ndarray]] = getattr(self, "_rescan_memo", {})
        fresh: dict[int, tuple[tuple, np.ndarray, np.ndarray]] = {}
        tables = []
        self._begin_scan()
        for chunk_n, base in sorted(self._list_chunks()):
            key = _index_file_key(base)
            seen = memo.get(chunk_n)
            if key is not None and seen is not None and seen[0] == key:
                fn, ft = seen[1], seen[2]
            else:
                table = self._read_chunk_table(chunk_n, base)
                if table is None:
                    continue
                fn, ft = table["frame_number"], table["frame_time"]
            if key is not None:
                fresh[chunk_n] = (key, fn, ft)
            tables.append((chunk_n, fn, ft))
        self._rescan_memo = fresh
        return FrameIndex.from_chunks(tables)

    @property
    def is_live(self) -> bool:
        """True while a writer process holds the store's lock."""
        from .._lock import is_locked

        return is_locked(self._basedir)

    # ================================================================== scale-out

    def to_dask(self, **kwargs: Any):
        """The frames as a lazy dask array (frames x height x width [x 3]); see :mod:`imgstore.parallel`."""
        from ..parallel import store_to_dask

        return store_to_dask(self, **kwargs)

    # ================================================================== maintenance

    def reindex(self) -> None:
        """Renumber frames before the one with frame_number 0 to negative numbers.

        Aborts unless exactly one frame has frame_number 0. The old numbers are kept in
        ``_frame_number_before_reindex`` in each index and in the extra data.
        """
        self._require_mode("r", "reindex")
        import pandas as pd

        fn = self._frame_index.frame_number
        zeros = np.flatnonzero(fn == 0)
        if len(zeros) != 1:
            raise ValueError(f"{len(zeros)} frame_number=0 found (should be 1)")
        zero_idx = int(zeros[0])
        new = fn.copy()
        new[:zero_idx] = np.arange(-zero_idx, 0)
        for chunk_n in self._frame_index.chunks:
            sl = self._frame_index.chunk_slice(chunk_n)
            base = self._chunk_base(chunk_n)
            path = ondisk.find_index_file(base)
            table = load_all_index_arrays(path) if path else {}
            table["frame_time"] = self._frame_index.frame_time[sl]
            table["_frame_number_before_reindex"] = fn[sl]
            table["frame_number"] = new[sl]
            ondisk.write_chunk_index(base, table)
            if path and not path.endswith(".npz"):
                os.unlink(path)
            for ext in (".extra.json", ".extra_data.json"):
                ed_path = base + ext
                if os.path.exists(ed_path):
                    df = pd.DataFrame(ondisk.read_extra_json(ed_path))
                    if "frame_index" not in df.columns:
                        raise ValueError(f"{ed_path}: cannot reindex extra data without frame_index")
                    df["_frame_number_before_reindex"] = df["frame_number"]
                    df["frame_number"] = new[df["frame_index"].astype(int).to_numpy()]
                    ondisk.atomic_write_bytes(ed_path, df.to_json(orient="records").encode())
        self._frame_index = self._build_index()

    def close(self, save_index: bool = False) -> None:
        """Finish writing (indexes, extra data, lock) or release readers. Idempotent.

        Parameters
        ----------
        save_index
            Writers only: also save the frame index as imgstore 0.4's ``.index.sqlite``
            (see :meth:`save_index`).
        """
        if self._closed:
            return
        try:
            if self._mode in "wa":
                self._finish_chunk(last=True)
                self._after_write_closed()
                if save_index:
                    ImgStoreIndex.new_from_chunks(self._list_chunks()).to_file(
                        os.path.join(self._basedir, STORE_INDEX_FILENAME))
            else:
                self._close_readers()
        finally:
            self._closed = True
            self._release_lock()

    def _after_write_closed(self) -> None:
        """Called once a writer has closed its last chunk (before the lock is released)."""
        # the writer holds the lock, so the index cache it leaves cannot race another writer
        from .. import index_cache

        index_cache.write_after_close(self)

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def __getstate__(self) -> dict[str, Any]:
        # a reader travels as its path and reopens where it lands (dask, multiprocessing)
        if self._mode != "r":
            raise TypeError(f"only stores opened for reading can be pickled ({self._basedir!r} is in mode "
                            f"{self._mode!r})")
        return {"basedir": self._basedir, "strict": self._strict,
                "decoding": self._decode is not _NO_DECODE, "closed": self._closed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImgStoreWarning)  # already reported where it was opened
            type(self).__init__(self, basedir=state["basedir"], mode="r", strict=state["strict"])
        if not state["decoding"]:
            self.disable_decoding()
        if state["closed"]:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        self.close()

    def __repr__(self) -> str:
        try:
            return (f"<{type(self).__name__} {self._basedir!r} mode={self._mode!r} format={self._smd.format!r} "
                    f"frames={self.frame_count}>")
        except AttributeError:  # not fully constructed
            return f"<{type(self).__name__}>"

    # ================================================================== classmethods

    @classmethod
    def extract_only_frame(cls, full_path: str, frame_index: int, _smd: StoreMetadata | None = None) -> np.ndarray:
        """Read one frame by frame_index without building the index (assumes full chunks)."""
        smd = _smd if _smd is not None else ondisk.read_metadata(full_path)[0]
        i = int(frame_index)
        if i != frame_index or i < 0:
            raise FrameIndexError(f"frame_index {frame_index!r} must be a non-negative integer")
        chunk_n, frame_n = divmod(i, int(smd.chunksize))
        return cls._extract_only_frame(os.path.dirname(full_path), chunk_n, frame_n, smd)


def _naive_utc_iso(value: datetime.datetime | str) -> str:
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


def _readonly(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view


def load_all_index_arrays(path: str) -> dict[str, np.ndarray]:
    """Every non-object array of an index file (to rewrite it without losing keys)."""
    if not path.endswith(".npz"):
        return ondisk.read_chunk_index(path)
    out = {}
    with np.load(path, allow_pickle=False) as npz:
        for k in npz.files:
            try:
                out[k] = npz[k]
            except ValueError:
                continue  # a pickled object: never load it
    return out


def _index_file_key(base: str) -> tuple | None:
    """Identity of a chunk's index file (suffix, inode, size, mtime), None without one."""
    for suffix in ondisk.INDEX_SUFFIXES:
        try:
            st = os.stat(base + suffix)
        except OSError:
            continue
        return suffix, st.st_ino, st.st_size, st.st_mtime_ns
    return None


def _chunk_entries(basedir: str) -> list[str]:
    """Names in ``basedir`` that look like a store's chunks (``000012``, ``000012.mkv``...), sorted."""
    import re

    pattern = re.compile(r"[0-9]+(\.(npz|journal|extra\.jsonl?|avi|mp4|mkv|mov))?")
    try:
        names = os.listdir(basedir)
    except OSError:  # missing (a new store) or unreadable (creating it will say why)
        return []
    return sorted(n for n in names if pattern.fullmatch(n))


def remove_store_files(basedir: str) -> None:
    """Delete the files of a store (metadata, chunks, indexes, extra data), keeping others."""
    for entry in os.scandir(basedir):
        name = entry.name
        stem = name.split(".", 1)[0]
        if name == STORE_MD_FILENAME or (stem.isdigit() and stem.isascii()) or name.startswith(".imgstore"):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
