"""imgstore 0.4's private store attributes that real programs use, as read-only views.

Programs written for imgstore 0.4 (SLEAP, Tierpsy, ethoscope, FlyHostel, pinpoint, ...)
reach for a handful of private names: ``store._index.get_all_metadata()``,
``store._chunk_paths``, ``store._imgshape``, ``store._metadata``... They are kept here, with
the reference's shapes and types, computed from the store's real state; nothing in this
package uses them. The names stay private in spirit: new code should use the public API
(``store.frame_numbers``, ``store.image_shape``, ``store.metadata`` ...).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import yaml

from .. import ondisk
from ..errors import FrameIndexError, MetadataError, UnsupportedFormatError
from ..index import ImgStoreIndex
from ..ondisk import STORE_MD_FILENAME
from ..storage import LOCAL
from . import registry

if TYPE_CHECKING:
    from ..frame_index import FrameIndex
    from ..ondisk import StoreMetadata
    from ..results import Frame
    from .contract import Backend
    from .writing import WriteSession

__all__ = ["ReferencePrivates"]


class ReferencePrivates:
    """Mixin of :class:`~imgstore.backends.base.ImgStore`: the reference's private attributes."""

    # provided by ImgStore
    _smd: StoreMetadata
    _mode: str
    _basedir: str
    _cursor: int
    _supplied_index: ImgStoreIndex | None
    _listed_chunks: list[tuple[int, str]] | None
    class_name: ClassVar[str]
    readable_class_names: ClassVar[frozenset[str]]
    _version: ClassVar[int]

    _backend: Backend
    _session: WriteSession | None

    if TYPE_CHECKING:
        def _current_index(self) -> FrameIndex: ...
        def _read_at(self, frame_index: int, move_cursor: bool) -> Frame: ...
        def get_image(self, frame_number: Any, exact_only: bool = True,
                      frame_index: int | None = None) -> Frame: ...
        def get_next_framenumber(self) -> int: ...

    _log = logging.getLogger("imgstore")

    # ----------------------------------------------------------------- store metadata

    @property
    def _format(self) -> str:
        return self._smd.format

    @property
    def _imgshape(self) -> tuple[int, ...]:
        return tuple(self._smd.imgshape)

    @property
    def _imgdtype(self) -> str:
        return str(self._smd.imgdtype)

    @property
    def _chunksize(self) -> int:
        return int(self._smd.chunksize)

    @property
    def _encoding(self) -> str | None:
        return self._smd.encoding

    @property
    def _uuid(self) -> str | None:
        return self._smd.uuid

    @property
    def _metadata(self) -> dict[str, Any]:
        """The ``__store`` mapping as read from ``metadata.yaml`` (or written); a copy."""
        if self._smd.source is not None:
            return copy.deepcopy(self._smd.source)
        return self._smd.to_mapping()

    # ----------------------------------------------------------------- the frame index

    @property
    def _index(self) -> ImgStoreIndex:
        """The reference's index object (the one passed as ``index=``, if any)."""
        if self._supplied_index is not None:
            return self._supplied_index
        frame_index = self._current_index()
        view = self.__dict__.get("_index_view")
        if view is None or view.frame_index is not frame_index:
            view = ImgStoreIndex.from_frame_index(frame_index)
            self.__dict__["_index_view"] = view
        return view

    def _get_chunk_metadata(self, chunk_n: int) -> dict[str, list]:
        """``{'frame_number': [...], 'frame_time': [...]}`` of one chunk."""
        return self._index.get_chunk_metadata(chunk_n)

    # ----------------------------------------------------------------- chunks

    @property
    def _chunk_n_and_chunk_paths(self) -> list[tuple[int, str]] | None:
        """``(chunk_n, chunk path without extension)`` of every chunk on disk.

        None when the store was opened with ``index=`` and has not listed its chunks yet
        (the reference's behaviour: a supplied index saves listing the folder).
        """
        if self._listed_chunks is None and self._supplied_index is None:
            self._listed_chunks = sorted(self._backend.list_chunks())
        return self._listed_chunks

    def _iter_chunk_n_and_chunk_paths(self) -> Iterator[tuple[int, str]]:
        if self._listed_chunks is None:
            self._listed_chunks = sorted(self._backend.list_chunks())
        yield from self._listed_chunks

    @property
    def _ext(self) -> str:
        """Suffix of the chunk payload files (``.mkv``; ``.png`` for the frames of directory stores)."""
        return str(self._backend.extension)

    @property
    def _chunk_paths(self) -> list[str]:
        """Path of each chunk's payload: the video file, or the folder of images."""
        listed = self._chunk_n_and_chunk_paths or sorted(self._backend.list_chunks())
        return [self._backend.payload_path(chunk_n) for chunk_n, _ in listed]

    @property
    def _chunk_n(self) -> int:
        """The chunk being written, or the chunk of the frame read last (0 before the first)."""
        if self._session is not None:
            return self._session.open_chunk_n
        loaded = self._loaded_chunk()
        if loaded is not None:
            return loaded
        if self._cursor < 0 or not len(self._current_index()):
            return 0
        return self._current_index().locate(self._cursor)[0]

    @property
    def _chunk_current_frame_idx(self) -> int:
        """Position in its chunk of the frame read last (-1 before the first, or after :meth:`_load_chunk`)."""
        if self._mode != "r" or self._cursor < 0 or self._loaded_chunk() is not None:
            return -1
        return self._current_index().locate(self._cursor)[1]

    def _loaded_chunk(self) -> int | None:
        """The chunk :meth:`_load_chunk` made current, while no frame has been read since."""
        loaded = self.__dict__.get("_chunk_loaded_at")
        if loaded is not None and loaded[1] == self._cursor:
            return int(loaded[0])
        return None

    @property
    def _chunk_md(self) -> dict[str, list]:
        """Frame metadata of the current chunk (see :attr:`_chunk_n`)."""
        return self._get_chunk_metadata(self._chunk_n)

    # ----------------------------------------------------------------- the reference's read path
    # Kept for programs that drive the reader chunk by chunk; each maps onto the cursor that
    # get_next_image() follows (the frame_index of the frame read last).

    def _find_chunks(self, chunk_numbers: Any) -> list[tuple[int, str]]:
        """``(chunk_n, chunk path without extension)`` of the given chunks (all on disk if None)."""
        listed = sorted(self._backend.list_chunks())
        if chunk_numbers is None:
            return listed
        wanted = {int(n) for n in chunk_numbers}
        return [item for item in listed if item[0] in wanted]

    def _load_chunk(self, n: int) -> None:
        """Make chunk ``n`` current: the next :meth:`get_next_image` returns its first frame."""
        index = self._current_index()
        sl = index.chunk_slice(int(n))
        if sl.stop == sl.start:
            raise FrameIndexError(f"chunk {n!r} holds no frames (chunks with frames: {index.chunks})")
        self._cursor = sl.start - 1
        self.__dict__["_chunk_loaded_at"] = (int(n), self._cursor)

    def _frame_index_in_chunk(self, chunk_n: int, frame_idx: int) -> int:
        sl = self._current_index().chunk_slice(int(chunk_n))
        if not 0 <= int(frame_idx) < sl.stop - sl.start:
            raise FrameIndexError(f"frame {frame_idx!r} not in chunk {chunk_n} ({sl.stop - sl.start} frames)")
        return sl.start + int(frame_idx)

    def _load_image(self, idx: int) -> tuple[np.ndarray, tuple[int, float]]:
        """Frame ``idx`` of the current chunk as stored (before encoding conversion)."""
        frame_index = self._frame_index_in_chunk(self._chunk_n, idx)
        index = self._current_index()
        chunk_n, position = index.locate(frame_index)
        img = self._backend.read_frame(chunk_n, position)
        return img, index.metadata_at(frame_index)

    def _get_image(self, chunk_n: int | None, frame_idx: int) -> tuple[np.ndarray, tuple[int, float]]:
        """Frame ``frame_idx`` of chunk ``chunk_n`` (the current chunk if None); moves the cursor."""
        frame_index = self._frame_index_in_chunk(self._chunk_n if chunk_n is None else chunk_n, frame_idx)
        return self._read_at(frame_index, move_cursor=True)

    def _get_image_by_frame_index(self, frame_index: int) -> tuple[np.ndarray, tuple[int, float]]:
        return self.get_image(None, frame_index=frame_index)

    def _get_image_by_frame_number(self, frame_number: int, exact_only: bool) -> tuple[np.ndarray, tuple[int, float]]:
        return self.get_image(frame_number, exact_only=exact_only)

    def _get_next_framenumber_and_chunk_frame_idx(self) -> tuple[int, int]:
        """``(frame_number, position in its chunk)`` of the next frame; ``EOFError`` at the end."""
        frame_number = self.get_next_framenumber()
        return frame_number, self._current_index().locate(self._cursor + 1)[1]

    # ----------------------------------------------------------------- the reference's static helpers

    @staticmethod
    def _save_index(path_with_extension: str, data_dict: dict[str, Any]) -> str:
        """Write a chunk index (``.npz`` or ``.yaml``) atomically; return its path."""
        path = os.fspath(path_with_extension)
        extension = os.path.splitext(path)[1]
        if extension == ".npz":
            with LOCAL.atomic_write(path) as f:
                np.savez(f, **cast(dict[str, Any], {k: np.asarray(v) for k, v in data_dict.items()}))
        elif extension == ".yaml":
            LOCAL.write_bytes(path, yaml.safe_dump(dict(data_dict)).encode("utf-8"))
        else:
            raise UnsupportedFormatError(f"unknown index format {extension!r} (use .npz or .yaml)")
        return path

    @staticmethod
    def _remove_index(path_without_extension: str) -> str | None:
        """Delete a chunk's index file; return its path (None if there was none)."""
        path = ondisk.find_index_file(os.fspath(path_without_extension))
        if path is not None:
            LOCAL.remove(path)
        return path

    def _readability_check(self, smd_class: str, smd_version: int) -> bool:
        """Raise :class:`MetadataError` (a ``ValueError``) unless this backend reads such a store."""
        readable = {*self.readable_class_names, self.class_name, *registry.aliases_of(type(self))}
        where = self.__dict__.get("_basedir", "store")
        if smd_class not in readable:
            raise MetadataError(f"incompatible store: {where}/{STORE_MD_FILENAME} has class {smd_class!r}; "
                                f"{type(self).__name__} reads {sorted(readable)}")
        if smd_version != self._version:
            raise MetadataError(f"incompatible store version {smd_version!r} in {where}/{STORE_MD_FILENAME} "
                                f"(supported: {self._version})")
        return True

    def _calculate_written_image_shape(self, imgshape: Any, fmt: str) -> tuple[int, ...]:
        # the reference cut video frames to even sizes; this package keeps the shape (see README)
        return tuple(int(x) for x in imgshape)
