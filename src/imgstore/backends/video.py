"""Video stores: one video file per chunk, encoded and decoded with PyAV (FFmpeg)."""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from .. import ondisk
from ..errors import (
    ChunkReadError,
    ImgStoreWarning,
    InvalidFrameMetadataError,
    InvalidOptionError,
    MetadataError,
    StoreReadError,
    UnsupportedFormatError,
)
from ..ondisk import StoreMetadata
from ..storage import Storage
from .base import ImgStore
from .contract import Backend, ChunkFinishedEarly, ChunkRequest, ChunkWriter
from .directory import DirectoryBackend
from .payload_checks import PAYLOAD_DIGEST_FIELD

__all__ = ["VideoBackend", "VideoImgStore"]

#: the reference's aliases
_FORMAT_ALIASES = {"mjpeg": "mjpeg/avi"}
#: writing options of the video formats
_WRITE_OPTIONS = frozenset({"fps", "quality", "bitrate", "keyframe_interval", "pix_fmt"})
#: open chunk readers kept per store: random access over several chunks keeps each chunk's
#: decoders (and their positions) instead of reopening (measured: 123 -> 219 reads/s at GOP 250)
_MAX_OPEN_READERS = 6
#: chunks a batch read decodes at once: one per core (each decoder single-threaded); small
#: frames decode ~1.9x faster on 2 cores this way than one frame-threaded decoder at a time
#: (measured in benchmarks/peers.py, batch rows)
_BATCH_WORKERS = max(1, min(os.cpu_count() or 1, _MAX_OPEN_READERS - 1))
#: wall-clock seconds after which a frame add_image took is in its video file, safe from a
#: SIGKILL (the guarantee is 1 s: the rest is for the drain; docs/reliability.md)
MAX_LATENCY_S = 0.5
#: disk space kept for finishing a video chunk when the disk fills (docs/reliability.md)
_RESERVE_MIN_BYTES = 4 << 20
_RESERVE_MAX_BYTES = 64 << 20


#: frame rates a chunk can be encoded at (frames/s): 0.001 is one frame in 17 minutes
_FPS_RANGE = (1e-3, 1e6)
#: quality values per quality option (x264/x265 crf; MJPEG qscale)
_QUALITY_RANGE = {"crf": (0, 51), "qscale": (2, 31)}


def _check_writer_options(options: Mapping[str, Any], spec: Any) -> None:
    """Refuse option values the encoder cannot take, before anything is created."""
    fps = options.get("fps")
    if fps is not None and not (ondisk.is_finite_number(fps) and _FPS_RANGE[0] <= float(fps) <= _FPS_RANGE[1]):
        raise InvalidOptionError(f"fps {fps!r} must be a number from {_FPS_RANGE[0]} to {_FPS_RANGE[1]:g}")
    for name in ("keyframe_interval", "bitrate"):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise InvalidOptionError(f"{name} {value!r} must be a positive integer")
    quality = options.get("quality")
    if quality is not None:
        if spec.quality_option is None:
            raise InvalidOptionError(f"{spec.name} takes no quality (it is lossless), not {quality!r}")
        low, high = _QUALITY_RANGE[spec.quality_option]
        if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not low <= quality <= high:
            raise InvalidOptionError(f"quality {quality!r} of {spec.name} must be an integer from {low} to {high} "
                                     f"({spec.quality_option}, lower is better)")
    pix_fmt = options.get("pix_fmt")
    if pix_fmt is not None and not isinstance(pix_fmt, str):
        raise InvalidOptionError(f"pix_fmt {pix_fmt!r} must be a string (an FFmpeg pixel format name)")


def _pyav():
    # PyAV is imported on first use, so that ``import imgstore`` stays fast
    from . import pyav as module

    return module


class VideoBackend(Backend):
    """Frames as video chunks (``mjpeg/avi``, ``h264/mkv``, ``avc1/mp4``, ``ffv1/mkv``...).

    Writing options (all optional): ``fps`` (default: estimated from the frame times of
    the previous chunk, else 25), ``quality`` (crf for x264/x265, q for mjpeg),
    ``bitrate``, ``keyframe_interval`` and ``pix_fmt``.
    """

    class_name: ClassVar[str] = "VideoImgStore"
    kind: ClassVar[str] = "video"
    supports_adopting: ClassVar[bool] = True
    readable_class_names: ClassVar[frozenset[str]] = frozenset({"VideoImgStore", "VideoImgStoreFFMPEG"})
    default_chunksize: ClassVar[int] = 10000
    journal_fields: ClassVar[tuple[tuple[str, str], ...]] = (("pts", "<i8"),)

    def __init__(self, storage: Storage, basedir: str, mode: str) -> None:
        super().__init__(storage, basedir, mode)
        self.extension = ""
        self._color = False
        self._writer_options: dict[str, Any] = {}
        self._readers: collections.OrderedDict[int, Any] = collections.OrderedDict()
        #: remote chunks: (keyframe positions, bytes per frame), to announce a frame's bytes (Storage.expect_read)
        self._remote_gops: dict[int, tuple[np.ndarray, float]] = {}
        self._readers_lock = threading.Lock()  # batch reads open readers from worker threads
        self._batch_chunks: collections.Counter[int] = collections.Counter()  # chunks batch workers read
        self._frame_cache: Any = None  # pyav.FrameCache, made on first read
        self._frame_cache_bytes: int | None = None  # None: pyav.DEFAULT_FRAME_CACHE_BYTES
        # frame times of the latest frames written, for estimated_fps()
        self._recent_times: collections.deque[float] = collections.deque(maxlen=200)
        # when (time.monotonic()) the latest frames were written: the encoder's latency settings
        self._recent_walls: collections.deque[float] = collections.deque(maxlen=65)
        self._previous_sealed = False  # the previous chunk was finished early (a pause)

    # ------------------------------------------------------------------ formats

    @classmethod
    def supported_formats(cls) -> list[str]:
        """Video formats this installation can write and read back."""
        # the reference lists 'mjpeg/avi' once, not its alias
        return [f for f in _pyav().available_video_formats() if f not in _FORMAT_ALIASES]

    @classmethod
    def supports_format(cls, fmt: str) -> bool:
        # the write path: FFmpeg lists the codecs and muxer, without the availability probe
        # (supported_formats), which costs 0.2 s per process (see is_video_format_listed)
        fmt = cls.canonical_format(fmt)
        return isinstance(fmt, str) and fmt in _pyav().VIDEO_FORMATS and _pyav().is_video_format_listed(fmt)

    @classmethod
    def canonical_format(cls, fmt: str) -> str:
        return _FORMAT_ALIASES.get(fmt, fmt)

    @classmethod
    def write_options(cls, fmt: str) -> frozenset[str]:
        return _WRITE_OPTIONS

    def prepare_write(self, fmt: str, imgshape: tuple[int, ...], imgdtype: np.dtype, encoding: str | None,
                      options: dict[str, Any]) -> StoreMetadata:
        fmt = self.canonical_format(fmt)
        pyav = _pyav()
        if not self.supports_format(fmt):
            raise UnsupportedFormatError(f"video format {fmt!r} is not available; choose from "
                                         f"{self.supported_formats()}")
        spec = pyav.VIDEO_FORMATS[fmt]
        if imgdtype != np.uint8:
            raise UnsupportedFormatError(f"video format {fmt!r} stores uint8 images, not {imgdtype.name} "
                                         f"(use 'npy', 'png' or 'tif' for 16-bit)")
        color = len(imgshape) == 3 and imgshape[2] == 3
        self._writer_options = {k: options.pop(k) for k in sorted(_WRITE_OPTIONS) if k in options}
        _check_writer_options(self._writer_options, spec)
        height, width = imgshape[:2]
        smd = StoreMetadata.new(self.class_name, fmt, 1, imgshape, "uint8", encoding, extension=spec.extension)
        if pyav.coded_size(fmt, height, width, color, self._writer_options.get("pix_fmt")) != (height, width):
            # the codec needs even sizes: the file holds a padded picture that readers crop
            # (the reference instead cropped frames to even sizes and said nothing)
            smd.other["odd_size_padded"] = True
        if self._writer_options:
            smd.other["video_options"] = dict(self._writer_options)
        return smd

    def configure_append(self, options: dict[str, Any]) -> None:
        self._writer_options = dict(self.metadata.other.get("video_options") or {})
        for k in sorted(_WRITE_OPTIONS):
            if k in options:
                self._writer_options[k] = options.pop(k)

    def configure(self, smd: StoreMetadata) -> None:
        if smd.format.replace("+color", "") in DirectoryBackend.supported_formats():
            # a folder of images labelled as a video store would read as an empty store
            raise MetadataError(f"{self.storage.join(self.basedir, ondisk.STORE_MD_FILENAME)}: class "
                                f"{smd.class_name!r} is a video store, but format {smd.format!r} is an image format")
        super().configure(smd)
        if smd.extension:
            self.extension = smd.extension if smd.extension.startswith(".") else "." + smd.extension
        else:
            # stores from before the 'extension' key: mjpeg wrote .avi, everything else .mp4
            self.extension = ".avi" if smd.format == "mjpeg" else ".mp4"
        shape = tuple(smd.imgshape)
        self._color = len(shape) == 3 and shape[-1] == 3
        if (shape[0] % 2 or shape[1] % 2) and not smd.other.get("odd_size_padded") and self.mode == "r":
            self._check_odd_shape(shape)
        if self.mode == "r":
            _pyav()  # import PyAV now, not on the first frame read (~50 ms)

    def _check_odd_shape(self, shape: tuple[int, ...]) -> None:
        # the reference recorded odd sizes in metadata but wrote frames cut to even: believe the file
        import av

        chunks = sorted(self.list_chunks())
        if not chunks:
            return
        path = self.storage.local_path(self.payload_path(chunks[0][0]))
        try:
            with av.open(path if path is not None else self.storage.open_read(self.payload_path(chunks[0][0]))) \
                    as container:
                stream = container.streams.video[0]
                size = (stream.codec_context.height, stream.codec_context.width)
        except Exception:  # an unreadable chunk is reported when it is read
            return
        even = (shape[0] & -2, shape[1] & -2)
        if size == even:
            warnings.warn(f"{self.basedir}: store records image shape {shape} but its video holds "
                          f"{even[0]}x{even[1]} frames (written by imgstore 0.4); reading them as such",
                          ImgStoreWarning, stacklevel=6)
            self.metadata.imgshape = (*even, *shape[2:])

    # ------------------------------------------------------------------ layout

    def chunk_base(self, chunk_n: int) -> str:
        return self.storage.join(self.basedir, ondisk.chunk_name(chunk_n))

    def payload_path(self, chunk_n: int) -> str:
        return self.chunk_base(chunk_n) + self.extension

    def _local_payload(self, chunk_n: int) -> str:
        path = self.payload_path(chunk_n)
        local = self.storage.local_path(path)
        if local is None:
            raise UnsupportedFormatError(f"{path}: video chunks are read from local files only")
        return local

    def list_chunks(self) -> list[tuple[int, str]]:
        return self.chunks_and_problems()[0]

    def layout_problems(self) -> dict[int, str]:
        return self.chunks_and_problems()[1]

    def chunks_and_problems(self) -> tuple[list[tuple[int, str]], dict[int, str]]:
        # one listing for both, names parsed without splitext (an open of 1 800 chunks listed the
        # folder three times: 36 of its 50 ms)
        videos: dict[int, str] = {}
        indexes: dict[int, str] = {}
        ext = self.extension
        for entry in self.storage.list_dir(self.basedir):
            name = entry.name
            stem, dot, suffix = name.rpartition(".")
            if not dot or not stem.isdigit() or not stem.isascii():
                continue
            if "." + suffix == ext:
                if entry.is_file:
                    videos[int(stem)] = stem
            elif "." + suffix in ondisk.INDEX_SUFFIXES:
                indexes[int(stem)] = name
        chunks = [(n, self.storage.join(self.basedir, stem)) for n, stem in videos.items()]
        # chunks are found by their video files: an index whose video is gone would go unnoticed
        problems = {n: f"index {name} has no video file {name.rpartition('.')[0]}{ext}"
                    for n, name in indexes.items() if n not in videos}
        return chunks, problems

    # ------------------------------------------------------------------ writing

    def resume_after(self, frame_times: np.ndarray) -> None:
        # appended chunks get the rate the recording had, not the default
        maxlen = self._recent_times.maxlen or 0
        self._recent_times.extend(np.asarray(frame_times)[-maxlen:].tolist())

    def open_chunk_writer(self, chunk_n: int) -> ChunkWriter:
        h, w = self.metadata.imgshape[:2]
        options = dict(self._writer_options)
        if "fps" not in options:
            options["fps"] = self.estimated_fps()
        writer = _pyav().VideoChunkWriter(self._local_payload(chunk_n), self.metadata.format, height=h, width=w,
                                          color=self._color, max_latency=MAX_LATENCY_S,
                                          frame_interval=self.recent_frame_interval(), **options)
        return _VideoChunkWriter(self, writer)

    def finish_reserve_bytes(self, frame_bytes: int) -> int:
        # the encoder's delay (<= 16 frames for x264/x265 defaults), the muxer's cluster or
        # fragment and the trailer; compressed frames are smaller than raw ones
        return min(_RESERVE_MAX_BYTES, max(_RESERVE_MIN_BYTES, 16 * int(frame_bytes)))

    def recent_frame_interval(self) -> float | None:
        """Wall-clock seconds between the latest frames (a high percentile, and the time since
        the last one: a chunk opened after a pause expects a pause; infinite after a chunk its
        writer had to finish early), None before any frame.

        It chooses the encoder's settings for the next chunk: B-frames and lookahead when
        frames come fast and steadily, low latency otherwise (``backends/pyav/encoding.py``).
        """
        if self._previous_sealed:
            # frames paused while the last chunk's encoder held some: this recording pauses, so
            # the next chunk holds none (rather than a chunk finished early at every pause)
            return float("inf")
        walls = np.asarray(self._recent_walls, dtype=np.float64)
        if not len(walls):
            return None
        since_last = time.monotonic() - float(walls[-1])
        return max(float(np.percentile(np.diff(walls), 90)), since_last) if len(walls) > 1 else since_last

    def estimated_fps(self) -> float:
        """Frame rate for the next chunk when none was given: from recent frame times, else 25.

        Timestamps in the file follow the frame times anyway; the nominal rate tells the
        encoder how many frames make a second (rate control, keyframe spacing in time).
        """
        times = np.asarray(self._recent_times, dtype=np.float64)
        if len(times) >= 3:
            step = float(np.median(np.diff(times)))
            if step > 0:
                return float(min(max(1.0 / step, 0.1), 1000.0))
        return float(_pyav().DEFAULT_FPS)

    def note_chunk_finished(self, finished_early: bool) -> None:
        """Remember whether the chunk just closed had been finished early by its writer."""
        self._previous_sealed = finished_early

    def note_frame_time(self, frame_time: float) -> None:
        """Remember a written frame's time (for :meth:`estimated_fps`) and when it was written."""
        self._recent_times.append(frame_time)
        self._recent_walls.append(time.monotonic())

    def remove_chunk_payload(self, chunk_n: int) -> None:
        self.storage.remove(self.payload_path(chunk_n))

    def inspect_payload(self, source: str, n_frames: int) -> Mapping[str, np.ndarray]:
        if not os.fspath(source).endswith(self.extension):
            raise UnsupportedFormatError(f"{source} must have the store's extension {self.extension}")
        table = _pyav().build_frame_table(os.fspath(source))
        if len(table["pts"]) != n_frames:
            raise InvalidFrameMetadataError(
                f"{source} holds {len(table['pts'])} frames but {n_frames} frame_numbers were given")
        return table

    def adopt_payload(self, source: str, chunk_n: int, move: bool) -> None:
        self.storage.adopt_file(os.fspath(source), self.payload_path(chunk_n), move=move)

    # ------------------------------------------------------------------ recovery

    def recover_chunk(self, chunk_n: int, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # the encoder may not have flushed the last journaled frames into the file
        path = self.payload_path(chunk_n)
        try:
            on_disk = _pyav().build_frame_table(self._local_payload(chunk_n))
        except Exception as exc:  # a file cut before its header is unreadable
            raise ChunkReadError(f"{path}: unreadable after a crash ({exc})") from None
        n = min(len(table["frame_number"]), len(on_disk["pts"]))
        # the file's own timestamps: journaled ones may differ by a muxer shift (MP4)
        return {"frame_number": table["frame_number"][:n], "frame_time": table["frame_time"][:n],
                "pts": on_disk["pts"][:n], "keyframe": on_disk["keyframe"][:n]}

    def chunk_has_payload(self, chunk_n: int) -> bool:
        # an unreadable file (None) may still hold frames a person can rescue
        return self.payload_frame_count(chunk_n) != 0

    def payload_frame_count(self, chunk_n: int) -> int | None:
        token = self.storage.stat_token(self.payload_path(chunk_n))
        if token is None or token.size == 0:
            return 0  # the muxer writes nothing before the first encoded packet
        try:
            return len(_pyav().build_frame_table(self._local_payload(chunk_n))["pts"])
        except Exception:
            return None

    # ------------------------------------------------------------------ reading

    @property
    def frame_cache(self) -> Any:
        """The decoded-frame cache shared by this store's chunk readers (:class:`~.pyav.FrameCache`)."""
        if self._frame_cache is None:
            pyav = _pyav()
            size = pyav.DEFAULT_FRAME_CACHE_BYTES if self._frame_cache_bytes is None else self._frame_cache_bytes
            self._frame_cache = pyav.FrameCache(size)
        return self._frame_cache

    @property
    def frame_cache_bytes(self) -> int:
        return _pyav().DEFAULT_FRAME_CACHE_BYTES if self._frame_cache_bytes is None else self._frame_cache_bytes

    def set_frame_cache_bytes(self, max_bytes: int) -> None:
        """Bound the decoded-frame cache (0: no cache)."""
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 0:
            raise InvalidOptionError(f"frame cache size {max_bytes!r} must be a non-negative number of bytes")
        self._frame_cache_bytes = int(max_bytes)
        if self._frame_cache is not None:
            self._frame_cache.resize(int(max_bytes))

    def _reader(self, chunk_n: int) -> Any:
        with self._readers_lock:
            return self._open_reader(chunk_n)

    def _open_reader(self, chunk_n: int) -> Any:
        reader = self._readers.get(chunk_n)
        if reader is not None:
            self._readers.move_to_end(chunk_n)
            return reader
        base = self.chunk_base(chunk_n)
        table = None
        index_path = ondisk.find_index_file(base, storage=self.storage)
        if index_path is not None:
            saved = ondisk.read_chunk_index(index_path, ("frame_number", "frame_time", "pts", "keyframe",
                                                         PAYLOAD_DIGEST_FIELD), storage=self.storage)
            if "pts" in saved and "keyframe" in saved and len(saved["pts"]) == len(saved["frame_number"]):
                table = {"pts": saved["pts"], "keyframe": saved["keyframe"].astype(bool)}
                if PAYLOAD_DIGEST_FIELD in saved:
                    table[PAYLOAD_DIGEST_FIELD] = saved[PAYLOAD_DIGEST_FIELD]
        h, w = self.metadata.imgshape[:2]
        path, remote = self.payload_path(chunk_n), dict[str, Any]()
        local = self.storage.local_path(path)
        if local is not None:
            path = local
        else:
            # remote storage: PyAV reads the chunk by range requests (imgstore.remote_io)
            token = self.storage.stat_token(path)
            if token is None:
                raise ChunkReadError(f"video chunk {path} is missing")
            storage, payload = self.storage, path
            remote = {"opener": lambda: storage.open_read(payload), "size": token.size}
            if table is not None and len(table["pts"]):
                # a random frame's bytes, estimated: frames from its keyframe x the chunk's bytes per frame
                self._remote_gops[chunk_n] = (np.flatnonzero(table["keyframe"]), token.size / len(table["pts"]))
        try:
            reader = _pyav().VideoChunkReader(path, color=self._color, height=h, width=w, frame_table=table,
                                              cache=self.frame_cache, cache_key=(self.basedir, chunk_n), **remote)
        except (ChunkReadError, StoreReadError):
            raise
        except Exception as exc:
            raise ChunkReadError(f"cannot open video chunk {path}: {exc}") from None
        self._readers[chunk_n] = reader
        # the least recently used readers are closed, never one a batch worker is reading with
        # (a batch over more chunks than _MAX_OPEN_READERS keeps them open until it is done)
        idle = [n for n in self._readers if n not in self._batch_chunks and n != chunk_n]
        for n in idle[:max(0, len(self._readers) - _MAX_OPEN_READERS)]:
            self._readers.pop(n).close()
        return reader

    def read_frame(self, chunk_n: int, position: int) -> np.ndarray:
        reader = self._reader(chunk_n)
        gops = self._remote_gops.get(chunk_n)
        if gops is not None and len(gops[0]):
            keyframes, per_frame = gops
            kf = int(keyframes[max(int(np.searchsorted(keyframes, position, side="right")) - 1, 0)])
            self.storage.expect_read(self.payload_path(chunk_n), int((position - kf + 1) * per_frame * 1.25))
        try:
            return reader.read(position)
        except StoreReadError:
            # a remote read failed under the demuxer: its state is unknown (a packet may be missing),
            # so the next read of this chunk starts with a fresh decoder
            if self._readers.get(chunk_n) is reader:
                del self._readers[chunk_n]
            reader.close()
            raise

    def read_batch(self, requests: Sequence[ChunkRequest], out: np.ndarray) -> None:
        if not requests:
            return
        first = self._reader(requests[0].chunk_n)
        # decoders that use every core already (large frames) read one chunk at a time
        workers = 1 if first.parallel_decoding else min(_BATCH_WORKERS, len(requests))
        if workers == 1:
            for r in requests:
                self._reader(r.chunk_n).read_many(r.positions, out, r.rows)
            return

        def read(request: ChunkRequest) -> None:
            with self._readers_lock:
                self._batch_chunks[request.chunk_n] += 1
                reader = self._open_reader(request.chunk_n)
            try:
                # single-threaded decoders: the other workers use the other cores
                reader.read_many(request.positions, out, request.rows, threaded=False)
            finally:
                with self._readers_lock:
                    self._batch_chunks[request.chunk_n] -= 1
                    if not self._batch_chunks[request.chunk_n]:
                        del self._batch_chunks[request.chunk_n]

        # the biggest shares first, so that no core is left with a long one at the end
        ordered = sorted(requests, key=lambda r: -len(r.positions))
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="imgstore-batch") as pool:
            for future in [pool.submit(read, r) for r in ordered]:
                future.result()

    def close_readers(self) -> None:
        with self._readers_lock:
            while self._readers:
                _, reader = self._readers.popitem()
                reader.close()
        if self._frame_cache is not None:
            self._frame_cache.clear()

    @classmethod
    def extract_only_frame(cls, storage: Storage, basedir: str, chunk_n: int, frame_n: int,
                           smd: StoreMetadata) -> np.ndarray:
        ext = smd.extension or (".avi" if smd.format == "mjpeg" else ".mp4")
        shape = tuple(smd.imgshape)
        path = storage.join(basedir, ondisk.chunk_name(chunk_n) + ext)
        local = storage.local_path(path)
        if local is None or not storage.exists(path):
            raise ChunkReadError(f"video chunk {path} is missing")
        reader = _pyav().VideoChunkReader(local, color=len(shape) == 3 and shape[-1] == 3,
                                          height=shape[0], width=shape[1], frame_table=None)
        try:
            return reader.read(frame_n)
        finally:
            reader.close()

    @property
    def lossless(self) -> bool:
        """True for the lossless codecs (ffv1, lossless H.264)."""
        spec = _pyav().VIDEO_FORMATS.get(self.metadata.format)
        return bool(spec and spec.lossless)


class _VideoChunkWriter(ChunkWriter):
    """One chunk's video file (a :class:`~imgstore.backends.pyav.VideoChunkWriter`)."""

    def __init__(self, backend: VideoBackend, writer: Any) -> None:
        self._backend = backend
        self._writer = writer

    def write(self, img: np.ndarray, frame_number: int, frame_time: float) -> dict[str, Any]:
        try:
            pts = self._writer.write(img, frame_time=frame_time)
        except _pyav().SealedChunkError:
            # the writer finished its file by itself to keep frames within MAX_LATENCY_S
            raise ChunkFinishedEarly(self._writer.path) from None
        self._backend.note_frame_time(frame_time)
        return {"pts": pts}

    def close(self) -> dict[str, np.ndarray]:
        self._backend.note_chunk_finished(bool(self._writer.sealed))
        return self._writer.close()


class VideoImgStore(ImgStore):
    """A store of video chunks, one file per chunk (see :class:`VideoBackend`)."""

    backend_class = VideoBackend

    def estimated_fps(self) -> float:
        """The frame rate the next chunk will be encoded at when no ``fps`` was given."""
        backend = self._backend
        assert isinstance(backend, VideoBackend)
        return backend.estimated_fps()

    @staticmethod
    def _get_chunk_extension(metadata: Mapping[str, Any]) -> str:
        """The chunk file extension a ``__store`` mapping implies (imgstore 0.4's helper)."""
        if metadata.get("extension"):
            return str(metadata["extension"])
        # stores from before the 'extension' key: mjpeg wrote .avi, everything else (Motif) .mp4
        return ".avi" if metadata.get("format") == "mjpeg" else ".mp4"

    @property
    def _capfn(self) -> str | None:
        """imgstore 0.4's name for the video file in use: the chunk being written, or read last."""
        if self._mode == "r" and self._cursor < 0:
            return None
        return self._backend.payload_path(self._chunk_n)
