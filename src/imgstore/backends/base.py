"""The store: imgstore 0.4's API over a backend, a chunk scanner and (when writing) a write session.

:class:`ImgStore` is the facade programs use. Opening a store reads ``metadata.yaml``
through the :mod:`~imgstore.storage` seam, builds the frame index with the
:class:`~imgstore.backends.scan.ChunkScanner` (from the :mod:`~imgstore.index_cache` where it
is still valid) and answers reads in two steps: :class:`~imgstore.frame_index.FrameIndex`
finds the chunk and position, the :class:`~imgstore.backends.contract.Backend` reads the
frame. A store opened for writing hands frames to a
:class:`~imgstore.backends.writing.WriteSession`. Backends subclass :class:`ImgStore` only
to name their :class:`~imgstore.backends.contract.Backend` (``backend_class``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from .. import index_cache, ondisk
from ..errors import (
    ChunkCorruptError,
    FrameIndexError,
    ImgStoreWarning,
    IndexCorruptError,
    MetadataError,
    ModeError,
    StoreClosedError,
    StoreNotFoundError,
    UnsupportedFormatError,
)
from ..frame_index import FrameIndex
from ..imageops import check_encoding, encoding_decoder
from ..index import ImgStoreIndex
from ..ondisk import FRAME_MD, STORE_INDEX_FILENAME, STORE_MD_FILENAME, StoreMetadata
from ..results import Frame, FrameMetadata
from ..storage import LOCAL, LocalStorage, Storage
from .arrayview import ArrayView
from .batch import read_batch
from .compat import ReferencePrivates
from .contract import Backend
from .info import StoreInfo
from .recovery import RecoveryLog, finish_chunks, has_unfinished_chunks
from .scan import ChunkScanner, ScanState
from .upkeep import Upkeep
from .writing import WriteSession, check_frame_metadata, plan_new_store, prepare_folder, remove_store_files

__all__ = ["ImgStore", "ImgStoreWarning"]

log = logging.getLogger("imgstore")
_NO_DECODE = encoding_decoder(None)
_MODES = ("r", "w", "a")


class ImgStore(ArrayView, StoreInfo, Upkeep, ReferencePrivates):
    """A store of frames; the reference's ``_ImgStore`` (subclassed per backend).

    Parameters
    ----------
    basedir
        The store's folder.
    mode
        ``'r'`` read, ``'w'`` write a new store, ``'a'`` append to an existing one.
    imgshape, imgdtype
        Shape ``(height, width[, 3])`` and dtype of the images given to :meth:`add_image`.
    chunksize
        Frames per chunk (default: the backend's ``default_chunksize``).
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
    read_only
        In ``'r'`` mode, never write a file (no index cache), e.g. on read-only media.
    storage
        Where the store's files are (default: the local file system).
    """

    #: the backend that keeps this kind of store's frames
    backend_class: ClassVar[type[Backend]]
    # copied from the backend by __init_subclass__, as the reference had them on the store class
    class_name: ClassVar[str] = ""
    readable_class_names: ClassVar[frozenset[str]] = frozenset()
    DEFAULT_CHUNKSIZE: ClassVar[int] = 200
    supports_writing: ClassVar[bool] = False
    supports_random_access: ClassVar[bool] = True
    supports_adopting: ClassVar[bool] = False

    _version: ClassVar[int] = ondisk.FORMAT_VERSION
    FRAME_MD = FRAME_MD

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        backend = cls.__dict__.get("backend_class")
        if backend is not None:
            cls.class_name = backend.class_name
            cls.readable_class_names = backend.readable_class_names
            cls.DEFAULT_CHUNKSIZE = backend.default_chunksize
            cls.supports_writing = backend.supports_writing
            cls.supports_random_access = backend.supports_random_access
            cls.supports_adopting = backend.supports_adopting

    def __init__(
        self,
        basedir: str | os.PathLike | None = None,
        mode: str = "r",
        imgshape: Sequence[int] | None = None,
        imgdtype: Any = np.uint8,
        chunksize: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        encoding: str | None = None,
        format: str | None = None,
        *,
        overwrite: bool = False,
        strict: bool = False,
        index: ImgStoreIndex | None = None,
        read_only: bool = False,
        storage: Storage | None = None,
        **options: Any,
    ) -> None:
        if basedir is None:
            raise TypeError("basedir is required")
        if not hasattr(type(self), "backend_class"):
            raise TypeError(f"{type(self).__name__} has no backend: open stores with imgstore.new_for_filename")
        writable_modes = ("w", "a") if self.supports_writing else ()
        if mode not in _MODES or (mode != "r" and mode not in writable_modes):
            raise ModeError(f"mode {mode!r} not supported by {type(self).__name__} (choose from "
                            f"{['r', *writable_modes]})")
        if index is not None and not isinstance(index, ImgStoreIndex):
            raise TypeError(f"index must be of type ImgStoreIndex, not {type(index).__name__}")
        if (index is not None or read_only) and mode != "r":
            raise ModeError(f"index= and read_only= are for reading, not mode {mode!r}")
        for legacy in ("seek", "gpu_id", "videosize"):
            options.pop(legacy, None)  # accepted by the reference's constructors, meaningless here

        self._basedir = os.fspath(basedir)
        self._mode = mode
        self._strict = strict
        self._closed = False
        self._storage: Storage = storage if storage is not None else (
            LocalStorage(read_only=True) if read_only else LOCAL)
        self._backend: Backend = self.backend_class(self._storage, self._basedir, mode)
        self._supplied_index = index
        self._listed_chunks: list[tuple[int, str]] | None = None
        self._decode = _NO_DECODE
        self._lock: Any = None
        self._session: WriteSession | None = None
        self._scanner = ChunkScanner(self._backend, self._storage, strict=strict)
        self._scan_state: ScanState | None = None
        self._frame_index = FrameIndex.empty()
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

    # ================================================================== formats

    @classmethod
    def supported_formats(cls) -> list[str]:
        """Formats this kind of store writes."""
        return cls.backend_class.supported_formats()

    @classmethod
    def supports_format(cls, fmt: str) -> bool:
        """True if this kind of store writes ``fmt`` (aliases included)."""
        return cls.backend_class.supports_format(fmt)

    # ================================================================== opening

    def _metadata_path(self) -> str:
        return self._storage.join(self._basedir, STORE_MD_FILENAME)

    def _read_metadata(self) -> None:
        if not self._storage.is_dir(self._basedir):
            raise StoreNotFoundError(errno.ENOENT, f"path '{self._basedir}' does not exist", self._basedir)
        path = self._metadata_path()
        smd, user = ondisk.read_metadata(path, storage=self._storage)
        self._readability_check(smd.class_name, smd.version)
        self._smd = smd
        self._user_metadata: dict[str, Any] = user
        self._created_utc, self._timezone_local = ondisk.resolve_created(
            smd, user, self._basedir, path, storage=self._storage)
        try:
            self._decode = encoding_decoder(check_encoding(smd.encoding))
        except UnsupportedFormatError as exc:
            raise MetadataError(f"{path}: {exc}") from None
        self._backend.configure(smd)

    def _open_read(self) -> None:
        self._read_metadata()
        if self._supplied_index is not None:
            self._frame_index = self._supplied_index.frame_index
            return
        self._scanner.writer_alive = self._storage.is_locked(self._basedir)
        result = index_cache.open_index(self._scanner, self._storage, self._basedir, self._cache_identity(),
                                        may_write=self._mode == "r" and not self._scanner.writer_alive)
        self._frame_index, self._scan_state = result.index, result.state

    def _cache_identity(self) -> dict[str, Any]:
        return {"uuid": self._smd.uuid, "class": self._smd.class_name, "format": self._smd.format}

    @property
    def damaged_chunks(self) -> dict[int, str]:
        """``{chunk_n: why}`` of the chunks skipped when the store was (re)scanned."""
        return self._scanner.damaged_chunks

    def _open_write(self, imgshape, imgdtype, chunksize, metadata, encoding, fmt, overwrite, options) -> None:
        smd, user, shape, dtype = plan_new_store(self._backend, fmt, imgshape, imgdtype,
                                                 self.DEFAULT_CHUNKSIZE if chunksize is None else chunksize,
                                                 metadata, encoding, options)
        self._lock = prepare_folder(self._storage, self._basedir, overwrite)
        try:
            self._smd = smd
            self._user_metadata = user
            self._created_utc, self._timezone_local = ondisk.resolve_created(smd, user, self._basedir, "",
                                                                             storage=self._storage)
            ondisk.write_metadata(self._metadata_path(), smd, user, storage=self._storage)
            self._backend.configure(smd)
            self._session = WriteSession(self._backend, shape, dtype)
            self._session.start(first_chunk=0)
        except BaseException:
            # no frame was written: leave no half-made store behind (and no lock)
            with contextlib.suppress(OSError):
                remove_store_files(self._storage, self._basedir)
            self._release_lock()
            raise

    def _open_append(self, options: dict[str, Any]) -> None:
        self._read_metadata()
        self._lock = self._storage.lock(self._basedir)
        self._lock.acquire()
        try:
            self._backend.configure_append(options)
            if options:
                raise TypeError(f"unexpected argument(s) for appending: {sorted(options)}")
            index = index_cache.open_index(self._scanner, self._storage, self._basedir, self._cache_identity(),
                                           may_write=False).index
            if self.damaged_chunks:
                raise IndexCorruptError(
                    f"cannot append to {self._basedir}: damaged chunks {sorted(self.damaged_chunks)} "
                    f"(run repair first)")
            if has_unfinished_chunks(self._backend):
                # a crashed writer's chunks are finished first (as repair does), so that its extra
                # data keeps pointing at its own frames and not at the frames appended now
                log = RecoveryLog()
                finish_chunks(self._backend, self._smd, log)
                if log.moved:
                    warnings.warn(f"{self._basedir}: opening for appending set aside in "
                                  f"{ondisk.DAMAGED_FOLDER}/ what a crashed writer left unreadable: "
                                  f"{'; '.join(log.moved)}", ImgStoreWarning, stacklevel=4)
                index = index_cache.open_index(self._scanner, self._storage, self._basedir,
                                               self._cache_identity(), may_write=False).index
            # the reference's saved SQLite index describes the store before this append
            self._storage.remove(self._storage.join(self._basedir, STORE_INDEX_FILENAME))
            on_disk = [c for c, _ in self._backend.list_chunks()]
            next_chunk = max(on_disk) + 1 if on_disk else 0
            self._session = WriteSession(self._backend, tuple(self._smd.imgshape), np.dtype(self._smd.imgdtype))
            self._session.start(first_chunk=next_chunk, resume=index)
        except BaseException:
            self._release_lock()
            raise

    # ================================================================== writing

    def _writing(self, what: str) -> WriteSession:
        self._require_mode("w", what)
        assert self._session is not None
        return self._session

    def add_image(self, img: np.ndarray, frame_number: int, frame_time: float) -> None:
        """Append one frame.

        Parameters
        ----------
        img
            Image of the store's ``imgshape`` and ``imgdtype`` (BGR for colour). Another
            dtype is accepted when every value fits it exactly (with one warning).
        frame_number
            The camera's number for this frame (any integer; may repeat or have gaps).
        frame_time
            Seconds since the epoch.
        """
        session = self._writing("add_image")
        session.add_image(img, frame_number, frame_time)
        self.frame_number, self.frame_time = session.frame_number, session.frame_time

    def add_extra_data(self, **data: Any) -> None:
        """Store extra data (sensor readings...) with the frame added last.

        The record gets ``frame_number``, ``frame_time`` and ``frame_index`` of that frame;
        :meth:`get_extra_data` returns all records as a DataFrame.
        """
        self._writing("add_extra_data").add_extra_data(**data)

    def insert_chunk(self, video_path: str | os.PathLike, frame_numbers: Sequence[int],
                     frame_times: Sequence[float], move: bool = True) -> None:
        """Adopt an existing payload (a video file) as the next chunk of the store being written.

        Parameters
        ----------
        video_path
            A file the backend can adopt (video: the store's extension, frame size and colour).
        frame_numbers, frame_times
            One per frame of the payload, in presentation order.
        move
            Move the file into the store (else copy it).
        """
        session = self._writing("insert_chunk")
        if not self.supports_adopting:
            raise UnsupportedFormatError(f"{type(self).__name__} cannot adopt existing payloads as chunks")
        session.adopt_chunk(os.fspath(video_path), frame_numbers, frame_times, move=move)
        self.frame_number, self.frame_time = session.frame_number, session.frame_time

    def flush(self) -> None:
        """Hand every frame added so far to stable storage (the journal is otherwise synced once a second)."""
        self._writing("flush").sync()

    def empty(self) -> None:
        """Discard every frame written so far; the store stays open for writing."""
        session = self._writing("empty")
        session.discard()
        self.frame_number, self.frame_time = float("nan"), float("nan")
        session.start(first_chunk=0)

    def _check_frame_metadata(self, frame_number: Any, frame_time: Any) -> tuple[int, float]:
        return check_frame_metadata(frame_number, frame_time)

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

    def _read_at(self, frame_index: int, move_cursor: bool) -> Frame:
        self._require_mode("r", "reading frames")
        chunk_n, position = self._frame_index.locate(frame_index)
        meta = FrameMetadata(*self._frame_index.metadata_at(frame_index))
        try:
            stored = self._backend.read_frame(chunk_n, position)
        except ChunkCorruptError as exc:
            raise ChunkCorruptError(f"frame_index {frame_index} (frame_number {meta.frame_number}): {exc}") from None
        # C-contiguous: programs draw on frames with OpenCV, which refuses strided views
        img = np.ascontiguousarray(self._decode(stored))
        if move_cursor:
            self._cursor = int(frame_index)
            self.frame_number, self.frame_time = meta
        return Frame(img, meta)

    def _read_many(self, frame_indices: np.ndarray) -> np.ndarray:
        """The frames at valid frame_index values in this order (repeats allowed), stacked."""
        self._require_mode("r", "reading frames")
        out = np.empty((len(frame_indices), *self.image_shape), dtype=self._output_dtype())
        convert = self._decode if (self._smd.encoding and self._decoding()) else None
        read_batch(self._backend, self._frame_index, frame_indices, out, convert)
        return out

    def get_next_image(self) -> Frame:
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
        return self._frame_index.metadata_at(nxt)[0]

    def get_image(self, frame_number: int | None, exact_only: bool = True,
                  frame_index: int | None = None) -> Frame:
        """A frame by frame_number, or by frame_index if given (moves the cursor).

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
        Frame
            Unpacks as ``image, (frame_number, frame_time)``.
        """
        self._require_mode("r", "get_image")
        if frame_index is not None:
            i = self._frame_index.check_index(frame_index)
        elif exact_only:
            i = self._frame_index.find_number(frame_number)
        else:
            i = self._frame_index.nearest_number(frame_number)
        return self._read_at(i, move_cursor=True)

    def get_nearest_image(self, frame_time: float) -> Frame:
        """The frame whose frame_time is closest to ``frame_time`` (seconds since the epoch)."""
        self._require_mode("r", "get_nearest_image")
        return self._read_at(self._frame_index.nearest_time(frame_time), move_cursor=True)

    def _decoding(self) -> bool:
        """True unless :meth:`disable_decoding` was called."""
        return self._decode is not _NO_DECODE

    def disable_decoding(self) -> None:
        """Return frames as stored, without converting the store's pixel encoding."""
        self._decode = _NO_DECODE

    def _output_dtype(self) -> np.dtype:
        if self._smd.encoding and self._decoding():
            return np.dtype(np.uint8)
        return np.dtype(self._smd.imgdtype)

    def _current_index(self) -> FrameIndex:
        """The index of a reader; for a writer, what it has written (closed chunks and the open one)."""
        if self._session is None:
            return self._frame_index
        session = self._session
        tables = [(c, t["frame_number"], t["frame_time"]) for c, t in self._scanner.tables(quiet=True)
                  if c != session.open_chunk_n]
        tables.append((session.open_chunk_n, *session.open_chunk_table()))
        return FrameIndex.from_chunks(tables)

    # the compatibility layer's name for it
    _index_or_written = _current_index

    # ================================================================== closing

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
            if self._session is not None:
                self._session.close()
                # the writer holds the lock, so the index cache it leaves cannot race another writer
                index_cache.write_after_close(self._scanner, self._storage, self._basedir, self._cache_identity())
                if save_index:
                    ImgStoreIndex.new_from_chunks(self._backend.list_chunks()).to_file(
                        self._storage.join(self._basedir, STORE_INDEX_FILENAME), storage=self._storage)
            else:
                self._backend.close_readers()
                # a closed store leaves no file of its own still being written
                index_cache.wait_for_write(self._basedir, self._storage)
        finally:
            self._closed = True
            self._release_lock()

    def __del__(self) -> None:
        # a writer dropped without close(): let go of the lock and the files; the open chunk
        # stays journaled, as after a crash, and readers recover it
        try:
            session = getattr(self, "_session", None)
            if not getattr(self, "_closed", True) and session is not None:
                session.abandon()
            self._release_lock()
        except Exception:  # never raise from the garbage collector
            log.debug("%s: releasing an unclosed store failed", getattr(self, "_basedir", "?"), exc_info=True)

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
        return {"basedir": self._basedir, "strict": self._strict, "storage": self._storage,
                "decoding": self._decode is not _NO_DECODE, "closed": self._closed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImgStoreWarning)  # already reported where it was opened
            type(self).__init__(self, basedir=state["basedir"], mode="r", strict=state["strict"],
                                storage=state.get("storage"))
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
        return cls.backend_class.extract_only_frame(LOCAL, os.path.dirname(full_path), chunk_n, frame_n, smd)

    @classmethod
    def _extract_only_frame(cls, basedir: str, chunk_n: int, frame_n: int, smd: StoreMetadata) -> np.ndarray:
        return cls.backend_class.extract_only_frame(LOCAL, basedir, chunk_n, frame_n, smd)


