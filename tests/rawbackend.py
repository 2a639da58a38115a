"""A store backend in one file, for the tests: frames as raw bytes, one file per chunk.

Chunk ``n`` is ``NNNNNN.raw`` (the frames' bytes back to back, each ``prod(imgshape) *
itemsize`` long) beside ``NNNNNN.npz`` (its index). It is made known with one line::

    imgstore.backends.registry.register("RawImgStore", "tests.rawbackend:RawImgStore")

after which ``new_for_format("raw", ...)``, ``new_for_filename`` and
``get_supported_formats()`` know it. :class:`RawReadOnlyImgStore` reads the same layout
but cannot write (``supports_writing = False``) nor read out of order cheaply
(``supports_random_access = False``): the conformance suite skips by those flags.
:func:`write_raw_store` and :func:`write_raw_payload` write such stores and payloads
without imgstore (the conformance suite's direct writer and payload writer).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from imgstore import ondisk
from imgstore.backends.base import ImgStore
from imgstore.backends.contract import Backend, ChunkWriter
from imgstore.errors import ChunkReadError, InvalidFrameMetadataError, UnsupportedFormatError
from imgstore.ondisk import StoreMetadata
from imgstore.storage import Storage
from imgstore.testing import synthetic

EXTENSION = ".raw"


def _frame_bytes(smd: StoreMetadata) -> int:
    return int(np.prod(smd.imgshape)) * np.dtype(smd.imgdtype).itemsize


def _decode(data: bytes, smd: StoreMetadata, path: str, position: int) -> np.ndarray:
    size = _frame_bytes(smd)
    if len(data) != size:
        raise ChunkReadError(f"{path}: frame {position} lies beyond the end of the file")
    return np.frombuffer(data, dtype=np.dtype(smd.imgdtype)).reshape(tuple(smd.imgshape))


class RawBackend(Backend):
    """Frames as raw bytes appended to one ``.raw`` file per chunk."""

    class_name: ClassVar[str] = "RawImgStore"
    readable_class_names: ClassVar[frozenset[str]] = frozenset({"RawImgStore"})
    supports_adopting: ClassVar[bool] = True
    default_chunksize: ClassVar[int] = 100

    # ------------------------------------------------------------------ formats

    @classmethod
    def supported_formats(cls) -> list[str]:
        return ["raw"]

    # ------------------------------------------------------------------ layout

    def configure(self, smd: StoreMetadata) -> None:
        super().configure(smd)
        self.extension = EXTENSION

    def chunk_base(self, chunk_n: int) -> str:
        return self.storage.join(self.basedir, ondisk.chunk_name(chunk_n))

    def payload_path(self, chunk_n: int) -> str:
        return self.chunk_base(chunk_n) + EXTENSION

    def list_chunks(self) -> list[tuple[int, str]]:
        out = []
        for entry in self.storage.list_dir(self.basedir):
            stem, ext = os.path.splitext(entry.name)
            n = ondisk.parse_chunk_name(stem)
            if n is not None and ext == EXTENSION and entry.is_file:
                out.append((n, self.storage.join(self.basedir, stem)))
        return out

    def layout_problems(self) -> dict[int, str]:
        payloads = {n for n, _ in self.list_chunks()}
        problems = {}
        for entry in self.storage.list_dir(self.basedir):
            stem, ext = os.path.splitext(entry.name)
            n = ondisk.parse_chunk_name(stem)
            if n is not None and ext in ondisk.INDEX_SUFFIXES and n not in payloads:
                problems[n] = f"index {entry.name} has no payload {stem}{EXTENSION}"
        return problems

    # ------------------------------------------------------------------ writing

    def prepare_write(self, fmt: str, imgshape: tuple[int, ...], imgdtype: np.dtype, encoding: str | None,
                      options: dict[str, Any]) -> StoreMetadata:
        if fmt not in self.supported_formats():
            raise UnsupportedFormatError(f"format {fmt!r} is not a raw format; choose from {self.supported_formats()}")
        if imgdtype.kind not in "uif":
            raise UnsupportedFormatError(f"dtype {imgdtype.name} is not an image dtype")
        return StoreMetadata.new(self.class_name, fmt, 1, imgshape, imgdtype.name, encoding, extension=EXTENSION)

    def open_chunk_writer(self, chunk_n: int) -> ChunkWriter:
        # a new, empty file (a leftover of a dead writer is replaced)
        return _RawChunkWriter(self.storage.open_append(self.payload_path(chunk_n), header=b""))

    def remove_chunk_payload(self, chunk_n: int) -> None:
        self.storage.remove(self.payload_path(chunk_n))

    def inspect_payload(self, source: str, n_frames: int) -> Mapping[str, np.ndarray]:
        source = os.fspath(source)
        if not source.endswith(EXTENSION):
            raise UnsupportedFormatError(f"{source} must have the extension {EXTENSION}")
        size, frame = os.path.getsize(source), _frame_bytes(self.metadata)
        if size != n_frames * frame:
            raise InvalidFrameMetadataError(f"{source} holds {size / frame:g} frames but {n_frames} frame_numbers "
                                            f"were given")
        return {}

    def adopt_payload(self, source: str, chunk_n: int, move: bool) -> None:
        self.storage.adopt_file(os.fspath(source), self.payload_path(chunk_n), move=move)

    # ------------------------------------------------------------------ reading

    def read_frame(self, chunk_n: int, position: int) -> np.ndarray:
        return self._read(self.storage, self.payload_path(chunk_n), position, self.metadata)

    @classmethod
    def _read(cls, storage: Storage, path: str, position: int, smd: StoreMetadata) -> np.ndarray:
        size = _frame_bytes(smd)
        try:
            data = storage.read_bytes(path, position * size, (position + 1) * size)
        except FileNotFoundError:
            raise ChunkReadError(f"chunk file {path} is missing") from None
        return _decode(data, smd, path, position)

    @classmethod
    def extract_only_frame(cls, storage: Storage, basedir: str, chunk_n: int, frame_n: int,
                           smd: StoreMetadata) -> np.ndarray:
        path = storage.join(basedir, ondisk.chunk_name(chunk_n) + EXTENSION)
        return cls._read(storage, path, frame_n, smd)

    @property
    def lossless(self) -> bool:
        return True

    # ------------------------------------------------------------------ recovery

    def recover_chunk(self, chunk_n: int, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        token = self.storage.stat_token(self.payload_path(chunk_n))
        n = min(len(table["frame_number"]), (token.size if token else 0) // _frame_bytes(self.metadata))
        return {k: v[:n] for k, v in table.items()}

    def chunk_has_payload(self, chunk_n: int) -> bool:
        token = self.storage.stat_token(self.payload_path(chunk_n))
        return token is not None and token.size > 0


class _RawChunkWriter(ChunkWriter):
    def __init__(self, file: Any) -> None:
        self._file = file

    def write(self, img: np.ndarray, frame_number: int, frame_time: float) -> None:
        self._file.append(np.ascontiguousarray(img).tobytes())

    def close(self) -> None:
        self._file.close()


class RawImgStore(ImgStore):
    """A store of raw frames (see :class:`RawBackend`)."""

    backend_class = RawBackend


class RawReadOnlyBackend(RawBackend):
    """:class:`RawBackend` that cannot write and declares no cheap random access."""

    class_name: ClassVar[str] = "RawReadOnlyImgStore"
    readable_class_names: ClassVar[frozenset[str]] = frozenset({"RawReadOnlyImgStore"})
    supports_writing: ClassVar[bool] = False
    supports_random_access: ClassVar[bool] = False


class RawReadOnlyImgStore(ImgStore):
    """Reads raw stores written by someone else (see :class:`RawReadOnlyBackend`)."""

    backend_class = RawReadOnlyBackend


# ----------------------------------------------------------------------------- writing without imgstore


def write_raw_payload(path: str | os.PathLike, fmt: str, images: Sequence[np.ndarray]) -> None:
    """One chunk payload: the images' bytes back to back."""
    with open(path, "wb") as f:
        for img in images:
            f.write(np.ascontiguousarray(img).tobytes())


def write_raw_store(path: str | os.PathLike, fmt: str, images: Sequence[np.ndarray], frame_numbers: Sequence[int],
                    frame_times: Sequence[float], chunksize: int, *, metadata: Mapping[str, Any] | None = None,
                    extra_data: Mapping[int, Mapping[str, Any]] | None = None,
                    class_name: str = "RawImgStore") -> str:
    """A raw store written without imgstore's writer (the suite's direct writer)."""
    path = os.fspath(path)
    first = np.asarray(images[0])
    store_md = synthetic.new_store_mapping(class_name, fmt, chunksize, first.shape, first.dtype.name,
                                           extension=EXTENSION)
    synthetic.begin_store(path, store_md, metadata)
    for chunk_n, rows in enumerate(synthetic.chunk_rows(len(images), chunksize)):
        base = os.path.join(path, f"{chunk_n:06d}")
        write_raw_payload(base + EXTENSION, fmt, [images[i] for i in rows])
        synthetic.write_chunk_tables(base, rows, frame_numbers, frame_times, extra_data)
    return path
