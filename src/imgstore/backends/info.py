"""What a store says about itself: frame counts and ranges, metadata, time zones, extra data."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import ondisk
from ..errors import MetadataError
from .extra import iter_extra_data_files, read_extra_data

if TYPE_CHECKING:
    from ..frame_index import FrameIndex
    from ..ondisk import StoreMetadata
    from ..storage import Storage
    from .contract import Backend
    from .scan import ChunkScanner
    from .writing import WriteSession

__all__ = ["StoreInfo"]


class StoreInfo:
    """Mixin of :class:`~imgstore.backends.base.ImgStore`: its metadata API (imgstore 0.4's names)."""

    if TYPE_CHECKING:
        _frame_index: FrameIndex
        _session: WriteSession | None
        _smd: StoreMetadata
        _user_metadata: dict[str, Any]
        _basedir: str
        _mode: str
        _backend: Backend
        _scanner: ChunkScanner
        _storage: Storage
        _created_utc: datetime.datetime
        _timezone_local: Any

        def _current_index(self) -> FrameIndex: ...
        def _metadata_path(self) -> str: ...
        def _output_dtype(self) -> np.dtype: ...
        def _decoding(self) -> bool: ...

    def get_frame_metadata(self) -> dict[str, list]:
        """``{'frame_number': [...], 'frame_time': [...]}`` of every frame in store order."""
        index = self._current_index()
        return {"frame_number": index.frame_number.tolist(), "frame_time": index.frame_time.tolist()}

    @property
    def frame_count(self) -> int:
        """Number of frames in the store (written so far, when writing)."""
        return len(self._frame_index) if self._session is None else self._session.frame_count

    @property
    def frame_min(self) -> int | float:
        """Smallest frame_number (nan when empty)."""
        return self._frame_index.frame_min if self._session is None else self._session.frame_min

    @property
    def frame_max(self) -> int | float:
        """Largest frame_number (nan when empty)."""
        return self._frame_index.frame_max if self._session is None else self._session.frame_max

    @property
    def frame_time_min(self) -> float:
        """Earliest frame_time."""
        return self._frame_index.frame_time_min if self._session is None else self._session.time_first

    @property
    def frame_time_max(self) -> float:
        """Latest frame_time."""
        return self._frame_index.frame_time_max if self._session is None else self._session.time_last

    @property
    def duration(self) -> float:
        """frame_time_max - frame_time_min in seconds (0 when empty)."""
        d = self.frame_time_max - self.frame_time_min
        return float(d) if d == d else 0.0

    @property
    def chunks(self) -> list[int]:
        """Numbers of the chunks that hold frames (when writing: the chunks closed so far)."""
        return self._frame_index.chunks if self._session is None else list(self._session.chunks_closed)

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
        if self._smd.encoding and self._decoding():
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

    @property
    def lossless(self) -> bool:
        """True if frames read back exactly as written."""
        return self._backend.lossless

    @property
    def storage(self) -> Storage:
        """Where the store's files are."""
        return self._storage

    def convert_frame_time_to_datetime(self, frame_time: float, tz: Any = None) -> datetime.datetime:
        """frame_time as an aware datetime in the store's time zone (or ``tz``)."""
        return datetime.datetime.fromtimestamp(float(frame_time), tz=tz or self._timezone_local)

    # ------------------------------------------------------------------ chunks

    def chunk_payload_path(self, chunk_n: int) -> str:
        """Where chunk ``chunk_n``'s frames are: its video file, or its folder of images."""
        return self._backend.payload_path(int(chunk_n))

    def read_chunk_table(self, chunk_n: int, keys: Sequence[str] = ondisk.FRAME_MD) -> dict[str, np.ndarray] | None:
        """The per-frame arrays ``keys`` of chunk ``chunk_n`` as on disk (its index, else its journal).

        None if the chunk has neither; raises if they are damaged. Keys the chunk's index
        lacks (``pts`` of a directory store) are left out.
        """
        return self._scanner.read_table(int(chunk_n), self._backend.chunk_base(int(chunk_n)), keys, quiet=False,
                                        record=False)

    # ------------------------------------------------------------------ extra data

    def _iter_extra_data_files(self, extensions: Sequence[str] = ondisk.EXTRA_DATA_FILE_EXTENSIONS):
        """``(is_motif, path)`` of every extra-data file, chunk by chunk."""
        return iter_extra_data_files(self._backend, extensions)

    @property
    def has_extra_data(self) -> bool:
        """True if any chunk has extra data."""
        return any(True for _ in iter_extra_data_files(self._backend))

    def find_extra_data_files(self, extensions: Sequence[str] = ondisk.EXTRA_DATA_FILE_EXTENSIONS) -> list[str]:
        """Paths of the extra-data files."""
        return [p for _, p in iter_extra_data_files(self._backend, extensions)]

    def get_extra_data(self, ignore_corrupt_chunks: bool = False):
        """All extra data as a pandas DataFrame (None if there is none)."""
        # records of a crashed writer's open chunk are checked against the frames that survived
        frame_numbers = self._frame_index.frame_number if self._session is None else None
        return read_extra_data(self._backend, ignore_corrupt_chunks, frame_numbers=frame_numbers)

    def get_extra_data_samplerate(self) -> float:
        """Sample rate of the sensor data in Motif ``.extra_data.h5`` files (one dataset only).

        Raises
        ------
        MetadataError
            No such file or dataset has a sample rate, or several datasets do (read them
            with :func:`imgstore.util.motif_extra_data_h5_attrs`).
        """
        from .._motif import read_motif_h5_attrs

        paths = self.find_extra_data_files(extensions=(".extra_data.h5",))
        for path in paths:
            attrs = read_motif_h5_attrs(path, self._storage)
            datasets = attrs["_datasets"]
            if len(datasets) > 1:
                raise MetadataError(f"{path}: several datasets ({', '.join(datasets)}) with their own sample "
                                    f"rates: read them with imgstore.util.motif_extra_data_h5_attrs")
            if len(datasets) == 1 and "samplerate" in attrs.get(datasets[0], {}):
                return attrs[datasets[0]]["samplerate"]
        raise MetadataError(f"no sample rate in the extra data of {self._basedir!r} "
                            f"({len(paths)} .extra_data.h5 file(s) looked at)")

