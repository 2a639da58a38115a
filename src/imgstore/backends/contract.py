"""The backend contract: what a storage kind (image folders, video files, ...) implements.

A :class:`Backend` keeps the frame *payloads* of one store; everything else (metadata, the
frame index, journals, extra data, the lock) belongs to the layers above it. Its hooks come
in four groups:

layout
    :meth:`~Backend.list_chunks`, :meth:`~Backend.chunk_base`, :meth:`~Backend.payload_path`,
    :meth:`~Backend.layout_problems`
write
    :meth:`~Backend.prepare_write` (validate a new store, return its metadata),
    :meth:`~Backend.configure_append`, :meth:`~Backend.input_converter`,
    :meth:`~Backend.open_chunk_writer` (a :class:`ChunkWriter` per chunk),
    :meth:`~Backend.remove_chunk_payload`, optionally :meth:`~Backend.inspect_payload` and
    :meth:`~Backend.adopt_payload`
read
    :meth:`~Backend.read_frame`, :meth:`~Backend.close_readers`,
    :meth:`~Backend.extract_only_frame`, :attr:`~Backend.lossless`
recovery
    :meth:`~Backend.recover_chunk` (which journaled frames are really on disk),
    :meth:`~Backend.chunk_has_payload`

Capability flags are class attributes and are read: the factory refuses ``mode='w'`` for
a backend without ``supports_writing``, the CLI asks :meth:`~Backend.write_options` which
options a format takes, and the conformance suite skips by capability. Backends are found
through :mod:`imgstore.backends.registry`; adding one is one module and one registry line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ..ondisk import StoreMetadata
from ..storage import Storage

__all__ = ["Backend", "ChunkFinishedEarly", "ChunkRequest", "ChunkWriter", "FrameConverter"]

#: a conversion applied to every image before it is written (``+color`` formats) or after it is read
FrameConverter = Callable[[np.ndarray], np.ndarray]


class ChunkRequest(NamedTuple):
    """One chunk's share of a batch read: strictly increasing ``positions`` in chunk ``chunk_n``,
    and the ``rows`` of the output their frames go to."""

    chunk_n: int
    positions: np.ndarray
    rows: np.ndarray


class ChunkFinishedEarly(Exception):
    """Raised by :meth:`ChunkWriter.write` when the writer finished its chunk by itself (a video
    writer does so when a frame would otherwise wait too long in memory, see
    docs/reliability.md); nothing of the frame was written: the session closes the chunk,
    opens the next one and writes the frame there."""


class ChunkWriter(ABC):
    """Writes the frame payloads of one chunk (opened by :meth:`Backend.open_chunk_writer`)."""

    @abstractmethod
    def write(self, img: np.ndarray, frame_number: int, frame_time: float) -> Mapping[str, Any] | None:
        """Store one frame; return the values of :attr:`Backend.journal_fields` for it."""

    @abstractmethod
    def close(self) -> Mapping[str, np.ndarray] | None:
        """Finish the chunk; may return per-frame arrays to keep in its index (e.g. pts)."""


class Backend(ABC):
    """Keeps the frame payloads of one store (see the module documentation).

    Parameters
    ----------
    storage
        Where the store's files are.
    basedir
        The store's folder.
    mode
        ``'r'``, ``'w'`` or ``'a'``.
    """

    # ------------------------------------------------------------------ capabilities
    #: name written to ``__store.class``
    class_name: ClassVar[str] = ""
    #: what a user calls this kind of store in messages (``'video'``, ``'directory'``)
    kind: ClassVar[str] = ""
    #: ``__store.class`` values this backend reads
    readable_class_names: ClassVar[frozenset[str]] = frozenset()
    #: default frames per chunk
    default_chunksize: ClassVar[int] = 200
    #: the backend can create stores
    supports_writing: ClassVar[bool] = True
    #: reading frames out of order costs about as much as in order
    supports_random_access: ClassVar[bool] = True
    #: existing payloads (video files) can become chunks (``insert_chunk``): see :meth:`inspect_payload`
    supports_adopting: ClassVar[bool] = False
    #: per-frame fields (name, numpy type) the writer journals and keeps in the chunk index
    journal_fields: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, storage: Storage, basedir: str, mode: str) -> None:
        self.storage = storage
        self.basedir = basedir
        self.mode = mode
        self.smd: StoreMetadata | None = None
        #: suffix of the payload files (``.mkv``; ``.png`` for each frame of an image folder)
        self.extension = ""

    def configure(self, smd: StoreMetadata) -> None:
        """Take the store's metadata (read, or made by :meth:`prepare_write`)."""
        self.smd = smd

    @property
    def metadata(self) -> StoreMetadata:
        """The store metadata (after :meth:`configure`)."""
        if self.smd is None:
            raise RuntimeError(f"{type(self).__name__} used before configure()")
        return self.smd

    # ------------------------------------------------------------------ formats

    @classmethod
    @abstractmethod
    def supported_formats(cls) -> list[str]:
        """Formats this backend writes (and reads back) in this installation."""

    @classmethod
    def supports_format(cls, fmt: str) -> bool:
        """True if this backend writes ``fmt`` (aliases included)."""
        return cls.canonical_format(fmt) in cls.supported_formats()

    @classmethod
    def canonical_format(cls, fmt: str) -> str:
        """The name ``fmt`` is written under (an alias resolved: ``'mjpeg'`` -> ``'mjpeg/avi'``)."""
        return fmt

    @classmethod
    def write_options(cls, fmt: str) -> frozenset[str]:
        """Names of the writing options ``fmt`` takes (e.g. ``fps``, ``quality``)."""
        return frozenset()

    # ------------------------------------------------------------------ layout

    @abstractmethod
    def list_chunks(self) -> list[tuple[int, str]]:
        """``(chunk_n, index base path)`` of every chunk on disk, any order."""

    @abstractmethod
    def chunk_base(self, chunk_n: int) -> str:
        """Path of chunk ``chunk_n``'s index without extension."""

    def payload_path(self, chunk_n: int) -> str:
        """Where chunk ``chunk_n``'s frames are (a video file, a folder of images)."""
        return self.storage.join(self.basedir, f"{int(chunk_n):06d}")

    def layout_problems(self) -> dict[int, str]:
        """Chunks the layout shows to be damaged beyond a missing index (e.g. an orphan index)."""
        return {}

    def chunks_and_problems(self) -> tuple[list[tuple[int, str]], dict[int, str]]:
        """:meth:`list_chunks` and :meth:`layout_problems` together, from one look at the folder
        where the backend can (opening a store needs both)."""
        return self.list_chunks(), self.layout_problems()

    # ------------------------------------------------------------------ writing

    @abstractmethod
    def prepare_write(self, fmt: str, imgshape: tuple[int, ...], imgdtype: np.dtype, encoding: str | None,
                      options: dict[str, Any]) -> StoreMetadata:
        """Validate a new store's parameters, taking the options it knows out of ``options``.

        Returns the store metadata (without user keys); the caller sets its chunk size.
        """

    def configure_append(self, options: dict[str, Any]) -> None:
        """Take the writing options given when appending (those it knows, out of ``options``)."""
        return None

    def resume_after(self, frame_times: np.ndarray) -> None:
        """Learn what it needs from the frame times already in a store it appends to."""
        return None

    def input_converter(self) -> FrameConverter | None:
        """A conversion of each image before it is written, or None."""
        return None

    @abstractmethod
    def open_chunk_writer(self, chunk_n: int) -> ChunkWriter:
        """Prepare chunk ``chunk_n`` to receive frames."""

    def finish_reserve_bytes(self, frame_bytes: int) -> int:
        """Disk space kept free for finishing an open chunk beyond its index and extra data.

        Writers holding frames in memory (a video encoder) need room to write them out when
        the disk fills (see :mod:`imgstore.backends.disk_guard`); ``frame_bytes`` is the size
        of one raw frame.
        """
        return 0

    @abstractmethod
    def remove_chunk_payload(self, chunk_n: int) -> None:
        """Delete the frame payload of chunk ``chunk_n`` (its index is removed by the caller)."""

    def inspect_payload(self, source: str, n_frames: int) -> Mapping[str, np.ndarray]:
        """Check that an existing payload (a video file) can become a chunk of ``n_frames`` frames.

        Returns the per-frame arrays its index needs; raises if it cannot be adopted.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot adopt existing chunk payloads")

    def adopt_payload(self, source: str, chunk_n: int, move: bool) -> None:
        """Make a payload checked by :meth:`inspect_payload` the payload of chunk ``chunk_n``."""
        raise NotImplementedError(f"{type(self).__name__} cannot adopt existing chunk payloads")

    # ------------------------------------------------------------------ reading

    @abstractmethod
    def read_frame(self, chunk_n: int, position: int) -> np.ndarray:
        """The stored image at ``position`` in chunk ``chunk_n`` (before encoding conversion)."""

    def read_batch(self, requests: Sequence[ChunkRequest], out: np.ndarray) -> None:
        """Write each request's frames into ``out``: ``out[rows[k]]`` = the frame at ``positions[k]``.

        Each request is one chunk's share of a batch (:mod:`~imgstore.backends.batch`), its
        positions strictly increasing. The default reads them one by one with
        :meth:`read_frame`; backends with costlier reads plan them (a video backend decodes
        each GOP's span once, several chunks at a time).
        """
        for request in requests:
            for position, row in zip(request.positions.tolist(), request.rows.tolist(), strict=True):
                out[row] = self.read_frame(request.chunk_n, position)

    @property
    def frame_cache_bytes(self) -> int:
        """Bound of the decoded-frame cache shared by this store's readers (0: none kept)."""
        return 0

    def set_frame_cache_bytes(self, max_bytes: int) -> None:
        """Bound the decoded-frame cache (backends whose reads decode nothing keep none: ignored)."""
        return None

    def close_readers(self) -> None:
        """Release open files and decoders."""
        return None

    @classmethod
    @abstractmethod
    def extract_only_frame(cls, storage: Storage, basedir: str, chunk_n: int, frame_n: int,
                           smd: StoreMetadata) -> np.ndarray:
        """One frame read straight from its chunk, without opening the store."""

    @property
    @abstractmethod
    def lossless(self) -> bool:
        """True if frames read back exactly as written."""

    # ------------------------------------------------------------------ recovery

    def recover_chunk(self, chunk_n: int, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Given a crashed chunk's journal, return the part whose frames are really on disk."""
        return table

    def payload_frame_count(self, chunk_n: int) -> int | None:
        """How many frames chunk ``chunk_n``'s payload holds, None when that cannot be told.

        After a crash it tells the frame being written when the writer died (payload written,
        journal record not: never acknowledged) from frames a journal should have described.
        """
        return None

    def chunk_has_payload(self, chunk_n: int) -> bool:
        """False if chunk ``chunk_n`` provably holds no frame data (created, then the writer died).

        Asked for chunks with neither index nor journal, and for crashed chunks none of whose
        journaled frames could be recovered (before deleting them); when in doubt, True.
        """
        return True

