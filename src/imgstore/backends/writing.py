"""The write session: everything a store holds only while it is being written.

A :class:`WriteSession` takes frames from ``add_image`` to disk: it checks them, hands the
payload to the backend's :class:`~imgstore.backends.contract.ChunkWriter`, appends each
frame to the chunk's journal (after the payload: a journaled frame is always on disk),
keeps extra data as JSON lines, rolls over to a new chunk every ``chunksize`` frames and
closes a chunk by writing its index atomically, then its extra data, then removing its
journal. A failed write latches: the session then only closes, so frames already stored
are never filed under the wrong position. Appending resumes after the chunks on disk.

Stores opened for reading have no write session.
"""

from __future__ import annotations

import errno
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import ondisk
from ..errors import (
    ImgStoreWarning,
    InvalidFrameMetadataError,
    InvalidImageError,
    MetadataError,
    StoreExistsError,
    StoreWriteError,
    UnsupportedFormatError,
)
from ..frame_index import FrameIndex
from ..imageops import check_encoding
from ..ondisk import STORE_MD_FILENAME, StoreMetadata
from ..storage import Storage
from .contract import Backend, ChunkFinishedEarly, ChunkWriter
from .disk_guard import DiskFullSoon, DiskGuard

__all__ = ["WriteSession", "check_frame_metadata", "plan_new_store", "prepare_folder", "remove_chunk_files",
           "remove_store_files"]

log = logging.getLogger("imgstore")

#: bytes a frame may add beyond its raw size (a PNG of noise, TIFF tags, journal record)
_FRAME_OVERHEAD_BYTES = 8192
#: a chunk index's bytes per frame (frame_number, frame_time, payload_xxh3, pts, keyframe
#: uncompressed in the npz) and per chunk (zip and npy headers), with margin
_INDEX_BYTES_PER_FRAME = 64
_INDEX_BYTES_FIXED = 64 * 1024

#: names in a store folder that belong to a store (chunks, their indexes, journals, extra data)
_CHUNK_ENTRY = re.compile(r"[0-9]+(\..*)?")


def check_frame_metadata(frame_number: Any, frame_time: Any) -> tuple[int, float]:
    """``(frame_number, frame_time)`` as int and float, or :class:`InvalidFrameMetadataError`."""
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


def remove_chunk_files(backend: Backend, chunk_n: int, base: str) -> None:
    """Delete a chunk: payload first (an interrupted delete leaves files a repair still finds),
    then its index, journals and extra data."""
    backend.remove_chunk_payload(chunk_n)
    for suffix in (*ondisk.INDEX_SUFFIXES, ondisk.JOURNAL_SUFFIX, ondisk.EXTRA_JSON_SUFFIX,
                   ondisk.EXTRA_JOURNAL_SUFFIX):
        backend.storage.remove(base + suffix)


def _store_entries(storage: Storage, basedir: str) -> list[str]:
    """Names in ``basedir`` that look like a store's chunks (``000012``, ``000012.mkv``...), sorted."""
    try:
        names = [e.name for e in storage.list_dir(basedir)]
    except OSError:  # missing (a new store) or unreadable (creating it will say why)
        return []
    return sorted(n for n in names if _CHUNK_ENTRY.fullmatch(n))


def remove_store_files(storage: Storage, basedir: str) -> None:
    """Delete the files of a store (metadata, chunks, indexes, extra data), keeping others."""
    for entry in storage.list_dir(basedir):
        name = entry.name
        stem = name.split(".", 1)[0]
        if name == STORE_MD_FILENAME or (stem.isdigit() and stem.isascii()) or name.startswith(".imgstore") \
                or name == ondisk.STORE_INDEX_FILENAME:
            path = storage.join(basedir, name)
            if entry.is_dir:
                storage.remove_tree(path)
            else:
                storage.remove(path)


def plan_new_store(backend: Backend, fmt: Any, imgshape: Any, imgdtype: Any, chunksize: Any,
                   metadata: Mapping[str, Any] | None, encoding: str | None, options: dict[str, Any]
                   ) -> tuple[StoreMetadata, dict[str, Any], tuple[int, ...], np.dtype]:
    """Check a new store's parameters; return its metadata, user metadata, input shape and dtype.

    ``options`` are the writing options: the backend takes those it knows, as do
    ``created_utc`` / ``timezone_local`` (a converted store keeps its recording's); any
    left is an error.
    """
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
    if isinstance(chunksize, bool) or not isinstance(chunksize, (int, np.integer)) or chunksize <= 0:
        raise ValueError(f"chunksize {chunksize!r} must be a positive integer")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise MetadataError(f"metadata must be a mapping, got {type(metadata).__name__}")
    user = {k: v for k, v in (metadata or {}).items() if k != ondisk.STORE_MD_KEY}
    check_encoding(encoding)

    created_utc = options.pop("created_utc", None)
    timezone_local = options.pop("timezone_local", None)
    smd = backend.prepare_write(fmt, shape, dtype, encoding, options)
    smd.chunksize = int(chunksize)
    if created_utc is not None:
        smd.created_utc = ondisk.naive_utc_iso(created_utc)
    if timezone_local is not None:
        smd.timezone_local = str(timezone_local)
    if options:
        raise TypeError(f"unexpected argument(s) for format {fmt!r}: {sorted(options)}")
    if metadata and isinstance(metadata.get(ondisk.STORE_MD_KEY), Mapping):
        # the reference lets callers add keys to __store; the format's own keys win
        extra = {k: v for k, v in metadata[ondisk.STORE_MD_KEY].items() if k not in smd.to_mapping()}
        smd.other.update(extra)
    return smd, user, shape, dtype


def prepare_folder(storage: Storage, basedir: str, overwrite: bool):
    """Make ``basedir`` ready for a new store; return its writer lock, held.

    Refuses (:class:`StoreExistsError`) a folder holding a store or chunk files unless
    ``overwrite``, which deletes them (after taking the lock).
    """
    metadata_path = storage.join(basedir, STORE_MD_FILENAME)
    exists = storage.exists(metadata_path)
    if exists and not overwrite:
        raise StoreExistsError(
            errno.EEXIST, f"a store already exists at '{basedir}' (pass overwrite=True to replace it, "
                          f"or mode='a' to append)", basedir)
    leftovers = [] if exists else _store_entries(storage, basedir)
    if leftovers and not overwrite:
        # chunks without metadata.yaml (a damaged store?): new frames would mix with old indexes
        raise StoreExistsError(
            errno.EEXIST, f"'{basedir}' holds chunk files ({', '.join(leftovers[:3])}) but no "
                          f"{STORE_MD_FILENAME}: pass overwrite=True to delete them", basedir)
    storage.makedirs(basedir)
    lock = storage.lock(basedir)
    lock.acquire()
    if exists or leftovers:
        try:
            remove_store_files(storage, basedir)
        except BaseException:
            lock.release()
            raise
    return lock


class WriteSession:
    """Writes frames, journals and extra data chunk by chunk (see the module documentation).

    Parameters
    ----------
    backend
        The store's backend, configured.
    input_shape, input_dtype
        What ``add_image`` takes.
    """

    def __init__(self, backend: Backend, input_shape: tuple[int, ...], input_dtype: np.dtype) -> None:
        self.backend = backend
        self.storage = backend.storage
        self.basedir = backend.basedir
        self.smd: StoreMetadata = backend.metadata
        self.input_shape = input_shape
        self.input_dtype = np.dtype(input_dtype)
        self._convert = backend.input_converter()
        self._fields = ondisk.BASE_JOURNAL_FIELDS + tuple(backend.journal_fields)
        self._writer: ChunkWriter | None = None
        self._journal: ondisk.ChunkJournal | None = None
        self._failure: BaseException | None = None
        self._warned_cast = False
        self._guard: DiskGuard | None = None
        #: the open chunk was finished before the disk filled: nothing more is written
        self._stopped = False
        self.open_chunk_n = 0
        self.chunks_closed: list[int] = []
        self.frame_count = 0
        self.frame_min: int | float = float("nan")
        self.frame_max: int | float = float("nan")
        self.time_first = self.time_last = float("nan")
        #: metadata of the frame added last (what extra data is attached to)
        self.frame_number: int | float = float("nan")
        self.frame_time: float = float("nan")
        self._table: dict[str, list] = {}
        self._extra = ondisk.ExtraDataWriter(self.backend.chunk_base(0), storage=self.storage)

    # ------------------------------------------------------------------ lifecycle

    def start(self, first_chunk: int, resume: FrameIndex | None = None) -> None:
        """Begin writing at chunk ``first_chunk``, after the frames of ``resume`` (appending)."""
        self.frame_count = len(resume) if resume is not None else 0
        self.frame_min = self.frame_max = float("nan")
        self.time_first = self.time_last = float("nan")
        self.chunks_closed = []
        self._failure = None
        self._warned_cast = False
        if resume is not None and len(resume):
            self.frame_min, self.frame_max = resume.frame_min, resume.frame_max
            self.time_first, self.time_last = resume.frame_time_min, resume.frame_time_max
            self.backend.resume_after(resume.frame_time)
        self._start_guard()
        self._stopped = False
        self._open_chunk(first_chunk)

    def _start_guard(self) -> None:
        if self._guard is not None:
            self._guard.release()
        shape = self.smd.imgshape if np.prod(self.smd.imgshape) >= np.prod(self.input_shape) else self.input_shape
        raw = int(np.prod(shape)) * max(np.dtype(self.smd.imgdtype).itemsize, self.input_dtype.itemsize)
        self._guard = DiskGuard(self.storage, self.basedir, frame_bytes=raw + raw // 16 + _FRAME_OVERHEAD_BYTES,
                                reserve_bytes=self.backend.finish_reserve_bytes(raw))
        self._guard.start()

    def _pending_bytes(self) -> int:
        """Bytes still to be written to finish the open chunk (its index; extra data written again)."""
        n = len(self._table["frame_number"])
        return _INDEX_BYTES_FIXED + _INDEX_BYTES_PER_FRAME * n + 2 * self._extra.nbytes

    def close(self) -> None:
        """Finish the open chunk, giving it the reserved disk space first."""
        if self._guard is not None:
            self._guard.release()
        self.finish_chunk(last=True)

    def _open_chunk(self, chunk_n: int) -> None:
        self.open_chunk_n = chunk_n
        base = self.backend.chunk_base(chunk_n)
        # the new chunk's empty state comes first: if opening it fails (disk full), finish()
        # must not write the previous chunk's frames as this chunk's index
        self._table = {name: [] for name, _ in self._fields}
        self._extra = ondisk.ExtraDataWriter(base, storage=self.storage)
        self._writer = None
        self._journal = None
        # the journal before the payload: a chunk whose payload exists always has a journal (or
        # an index), so a crash just after creating a video file is not a damaged chunk
        payload = self.backend.payload_path(chunk_n)
        if self.storage.is_link(payload) or self.storage.is_link(self.storage.dirname(base)):
            # a link planted where the new chunk goes: its frames would land outside the store
            raise StoreWriteError(errno.EEXIST, f"{payload} is a symbolic link: not writing chunk {chunk_n} "
                                                f"through it", payload)
        self.storage.makedirs(self.storage.dirname(base))
        journal = ondisk.ChunkJournal(base + ondisk.JOURNAL_SUFFIX, self._fields, storage=self.storage)
        try:
            self._writer = self.backend.open_chunk_writer(chunk_n)
        except BaseException:
            journal.close(remove=True)
            raise
        self._journal = journal

    def finish_chunk(self, last: bool) -> None:
        """Close the open chunk: payload, index (atomically), extra data, journal."""
        if self._stopped:
            return  # finished when the disk filled
        n = len(self._table["frame_number"])
        base = self.backend.chunk_base(self.open_chunk_n)
        writer, self._writer = self._writer, None
        if self._journal is None:
            # the chunk failed to open (write error): no frame or extra data reached it; what it
            # left is removed, unless the payload path is a link planted there (not ours)
            if writer is not None:
                writer.close()
            if not self.storage.is_link(self.backend.payload_path(self.open_chunk_n)):
                self.backend.remove_chunk_payload(self.open_chunk_n)
            self._extra.discard()
            return
        final_arrays = (writer.close() if writer is not None else None) or {}
        if n == 0 and self._extra.n_records == 0 and last:
            # an empty trailing chunk is dropped rather than left for readers to skip
            self.backend.remove_chunk_payload(self.open_chunk_n)
            self._journal.close(remove=True)
            self._journal = None
            self._extra.discard()
            return
        arrays: dict[str, np.ndarray] = {}
        for name, typ in self._fields:
            arrays[name] = np.asarray(self._table[name], dtype=np.dtype(typ))
        arrays.update(final_arrays)
        ondisk.write_chunk_index(base, arrays, self.smd, storage=self.storage)
        self._extra.finalize()
        self._journal.close(remove=True)
        self._journal = None
        self.chunks_closed.append(self.open_chunk_n)

    def sync(self) -> None:
        """Flush the open chunk's journal to stable storage now."""
        if self._journal is not None:
            self._journal.sync()

    def abandon(self) -> None:
        """Let go of open files without finishing anything (the chunk stays journaled, as after a crash)."""
        if self._guard is not None:
            self._guard.release()
        self._writer = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self._extra.close()

    def discard(self) -> None:
        """Forget everything written (``empty()``): the open chunk and every chunk on disk."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._journal is not None:
            self._journal.close(remove=True)
            self._journal = None
        self._extra.discard()
        for chunk_n, base in self.backend.list_chunks():
            remove_chunk_files(self.backend, chunk_n, base)
        self.frame_number, self.frame_time = float("nan"), float("nan")

    # ------------------------------------------------------------------ frames

    def check_image(self, img: Any) -> np.ndarray:
        """``img`` as the store takes it, or :class:`InvalidImageError` naming what is wrong."""
        if not isinstance(img, np.ndarray):
            raise InvalidImageError(f"image must be a numpy array, got {type(img).__name__}")
        shape = self.input_shape
        if img.shape != shape and not (len(shape) == 3 and shape[2] == 1 and img.shape == shape[:2]):
            raise InvalidImageError(f"image has shape {img.shape}, store {self.basedir!r} expects {shape}")
        if img.dtype != self.input_dtype:
            return self._cast_exactly(img)
        return img

    def _cast_exactly(self, img: np.ndarray) -> np.ndarray:
        """``img`` in the store's dtype if the cast changes no value, else :class:`InvalidImageError`.

        imgstore 0.4 cast whatever it was given (OpenCV and numpy writers did), so programs
        pass e.g. float64 frames of integral values to a uint8 store (SLEAP 1.4's export).
        """
        target = self.input_dtype
        if img.dtype.kind not in "biuf" or target.kind not in "biuf":
            raise InvalidImageError(f"image has dtype {img.dtype}, store {self.basedir!r} expects {target}")
        with np.errstate(invalid="ignore", over="ignore"):
            cast = img.astype(target)
        changed = cast != img  # fractions, values out of range and NaN (for integer stores) differ
        if target.kind == "f" and img.dtype.kind == "f":
            changed &= ~(np.isnan(cast) & np.isnan(img))
        if changed.any():
            bad = img[changed].flat[0]
            raise InvalidImageError(
                f"image of dtype {img.dtype} holds {bad.item()!r}, which {target} cannot hold exactly "
                f"(store {self.basedir!r} expects {target} images)")
        if not self._warned_cast:
            self._warned_cast = True
            warnings.warn(f"{self.basedir}: images of dtype {img.dtype} are converted to the store's {target} "
                          f"(their values fit exactly); pass {target} images to avoid the copy",
                          ImgStoreWarning, stacklevel=4)
        return cast

    def check_no_failure(self, frame_number: int | None = None) -> None:
        """Raise if an earlier write failed (the session then only closes)."""
        if self._failure is not None and self._stopped:
            refused = "" if frame_number is None else f"frame_number {frame_number} was not stored; "
            raise StoreWriteError(
                errno.ENOSPC,
                f"store {self.basedir!r} refuses further writes: recording stopped before the disk filled "
                f"({getattr(self._failure, 'strerror', None) or self._failure}); {refused}the {self.frame_count} "
                f"frames before it are kept: close() the store, make room, then append with mode='a'")
        if self._failure is not None:
            raise StoreWriteError(
                getattr(self._failure, "errno", None) or errno.EIO,
                f"store {self.basedir!r} refuses further writes after a failed write ({self._failure}); the "
                f"frames added before it are kept: close() the store, then append with mode='a'")

    def add_image(self, img: Any, frame_number: Any, frame_time: Any) -> None:
        """Append one frame (see :meth:`imgstore.backends.base.ImgStore.add_image`)."""
        fn, ft = check_frame_metadata(frame_number, frame_time)
        img = self.check_image(img)
        if self._convert is not None:
            img = self._convert(img)
        self.check_no_failure(fn)
        if self._writer is None or self._journal is None:
            raise StoreWriteError(errno.EIO, f"store {self.basedir!r} has no open chunk (a failed chunk change)")
        if self._guard is not None:
            try:
                self._guard.check(self._pending_bytes())
            except DiskFullSoon as exc:
                self._stop_before_full(exc, fn)
        try:
            try:
                extra = self._writer.write(img, fn, ft) or {}
            except ChunkFinishedEarly:
                # the chunk writer finished its chunk by itself (a pause): this frame opens the next
                self._next_chunk()
                assert self._writer is not None and self._journal is not None
                extra = self._writer.write(img, fn, ft) or {}
            self._journal.append(frame_number=fn, frame_time=ft, **extra)
        except (InvalidImageError, InvalidFrameMetadataError, UnsupportedFormatError):
            raise  # rejected before anything was written
        except BaseException as exc:
            # the payload may hold this frame while the journal does not: further frames could
            # be filed under the wrong position, so this session only closes from now on
            self._failure = exc
            raise
        table = self._table
        table["frame_number"].append(fn)
        table["frame_time"].append(ft)
        for name, _ in self.backend.journal_fields:
            table[name].append(extra.get(name, 0))
        self._count(np.array([fn]), np.array([ft]))
        if len(table["frame_number"]) >= self.smd.chunksize:
            try:
                self._next_chunk()
            except Exception as exc:
                # this frame is stored (journaled), so add_image returns as promised; the failed
                # chunk change stops the session: the next write raises, close() tries it again
                log.error("%s: changing from chunk %d failed: %s", self.basedir, self.open_chunk_n, exc)

    def _stop_before_full(self, exc: DiskFullSoon, frame_number: int) -> None:
        """The disk is about to fill: finish the open chunk into the reserve, refuse the frame."""
        assert self._guard is not None
        self._guard.release()
        stored = self.frame_count
        try:
            self.finish_chunk(last=True)
        except BaseException as finish_exc:
            # close() tries again; the frames journaled so far stay recoverable meanwhile
            self._failure = finish_exc
            raise StoreWriteError(errno.ENOSPC, f"{exc.strerror}; finishing chunk {self.open_chunk_n} "
                                                f"failed too: {finish_exc}", self.basedir) from finish_exc
        self._stopped = True
        self._failure = exc
        raise StoreWriteError(errno.ENOSPC, f"{exc.strerror}: frame_number {frame_number} was not stored; the "
                                            f"{stored} frames before it are (recording stopped: close() the "
                                            f"store)", self.basedir) from exc

    def _next_chunk(self) -> None:
        """Close the open chunk and open the next (a failure latches: only close() is left)."""
        try:
            if self._guard is not None:
                # finishing a video chunk drains its encoder: the reserve is for that
                self._guard.release()
            self.finish_chunk(last=False)
            if self._guard is not None:
                try:
                    self._guard.start()
                except StoreWriteError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    # no room left to finish another chunk: stop here, with every frame finished
                    self._stopped = True
                    raise
            self._open_chunk(self.open_chunk_n + 1)
        except BaseException as exc:
            self._failure = exc
            raise

    def _count(self, numbers: np.ndarray, times: np.ndarray) -> None:
        if not len(numbers):
            return
        lo, hi = int(numbers.min()), int(numbers.max())
        first = self.frame_count == 0
        self.frame_min = lo if first or lo < self.frame_min else self.frame_min
        self.frame_max = hi if first or hi > self.frame_max else self.frame_max
        if first:
            self.time_first = float(times[0])
        self.time_last = float(times[-1])
        self.frame_number, self.frame_time = int(numbers[-1]), float(times[-1])
        self.frame_count += len(numbers)

    def add_extra_data(self, **data: Any) -> None:
        """Store extra data with the frame added last."""
        if not data:
            return
        self.check_no_failure()
        reserved = {"frame_number", "frame_time", "frame_index"} & set(data)
        if reserved:
            # the reference silently overwrote them: keep old code working, but say so
            warnings.warn(f"extra data keys {sorted(reserved)} are set by the store; the values given "
                          f"are replaced", ImgStoreWarning, stacklevel=3)
        record = dict(data)
        record["frame_time"] = self.frame_time
        record["frame_number"] = self.frame_number
        record["frame_index"] = self.frame_count - 1
        self._extra.append(ondisk.encode_extra_record(record))

    def adopt_chunk(self, source: str, frame_numbers: Sequence[int], frame_times: Sequence[float],
                    move: bool = True) -> None:
        """Make an existing payload (e.g. a video file) the next chunk, with its frame metadata."""
        if len(frame_numbers) != len(frame_times):
            raise InvalidFrameMetadataError(
                f"{len(frame_numbers)} frame_numbers but {len(frame_times)} frame_times")
        checked = [check_frame_metadata(fn, ft) for fn, ft in zip(frame_numbers, frame_times, strict=True)]
        self.check_no_failure()
        arrays: Mapping[str, np.ndarray] = self.backend.inspect_payload(source, len(checked))
        # the open (possibly empty) chunk is closed first so the adopted payload gets the next number
        self.finish_chunk(last=True)
        chunk_n = self.open_chunk_n if self.open_chunk_n not in self.chunks_closed else self.open_chunk_n + 1
        self.backend.adopt_payload(source, chunk_n, move)
        fn = np.array([c[0] for c in checked], dtype=np.int64)
        ft = np.array([c[1] for c in checked], dtype=np.float64)
        ondisk.write_chunk_index(self.backend.chunk_base(chunk_n), {"frame_number": fn, "frame_time": ft,
                                                                     **arrays}, self.smd, storage=self.storage)
        self.chunks_closed.append(chunk_n)
        self._count(fn, ft)
        self._open_chunk(chunk_n + 1)

    # ------------------------------------------------------------------ what was written

    def open_chunk_table(self) -> tuple[np.ndarray, np.ndarray]:
        """``(frame_number, frame_time)`` of the frames of the open chunk."""
        return (np.asarray(self._table["frame_number"], dtype=np.int64),
                np.asarray(self._table["frame_time"], dtype=np.float64))
