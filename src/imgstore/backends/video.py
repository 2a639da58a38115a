"""Video stores: one video file per chunk, encoded and decoded with PyAV (FFmpeg)."""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from .. import ondisk
from ..errors import ChunkReadError, InvalidFrameMetadataError, UnsupportedFormatError
from ..frame_index import FrameIndex
from ..ondisk import StoreMetadata
from .base import ImgStore, ImgStoreWarning

#: the reference's aliases
_FORMAT_ALIASES = {"mjpeg": "mjpeg/avi"}
#: formats of stores written by Motif recorders (read only), by codec family
_MOTIF_FORMAT_PREFIXES = ("libx264", "h264", "nvenc-", "libx265", "hevc", "mjpeg")
#: open chunk readers kept per store: random access over several chunks keeps each chunk's
#: decoders (and their positions) instead of reopening (measured: 123 -> 219 reads/s at GOP 250)
_MAX_OPEN_READERS = 6


def _pyav():
    from . import pyav as module

    return module


class VideoImgStore(ImgStore):
    """A store of video chunks (``mjpeg/avi``, ``h264/mkv``, ``avc1/mp4``, ``ffv1/mkv``...).

    Writing options (all optional): ``fps`` (default: 25, or estimated from frame times
    when the writer is closed... the container needs it up front, so give it when you know
    it), ``quality`` (crf for x264/x265, q for mjpeg), ``bitrate``, ``keyframe_interval``
    and ``pix_fmt``.
    """

    class_name: ClassVar[str] = "VideoImgStore"
    readable_class_names: ClassVar[frozenset[str]] = frozenset({"VideoImgStore", "VideoImgStoreFFMPEG"})
    DEFAULT_CHUNKSIZE: ClassVar[int] = 10000
    journal_fields: ClassVar[tuple[tuple[str, str], ...]] = (("pts", "<i8"),)

    # ------------------------------------------------------------------ formats

    @classmethod
    def supported_formats(cls) -> list[str]:
        """Video formats this installation can write and read back."""
        # the reference lists 'mjpeg/avi' once, not its alias
        return [f for f in _pyav().available_video_formats() if f not in _FORMAT_ALIASES]

    @classmethod
    def supports_format(cls, fmt: str) -> bool:
        """True for a supported format or one of its aliases (``'mjpeg'``)."""
        return _FORMAT_ALIASES.get(fmt, fmt) in cls.supported_formats()

    def _prepare_write(self, fmt: str, imgshape: tuple[int, ...], imgdtype: np.dtype, encoding: str | None,
                       options: dict[str, Any]) -> StoreMetadata:
        fmt = _FORMAT_ALIASES.get(fmt, fmt)
        pyav = _pyav()
        if fmt not in self.supported_formats():
            raise UnsupportedFormatError(f"video format {fmt!r} is not available; choose from "
                                         f"{self.supported_formats()}")
        spec = pyav.VIDEO_FORMATS[fmt]
        if imgdtype != np.uint8:
            raise UnsupportedFormatError(f"video format {fmt!r} stores uint8 images, not {imgdtype.name} "
                                         f"(use 'npy', 'png' or 'tif' for 16-bit)")
        color = len(imgshape) == 3 and imgshape[2] == 3
        self._writer_options = {k: options.pop(k) for k in ("fps", "quality", "bitrate", "keyframe_interval",
                                                             "pix_fmt") if k in options}
        fps = self._writer_options.get("fps")
        if fps is not None and not (ondisk.is_finite_number(fps) and float(fps) > 0):
            raise InvalidFrameMetadataError(f"fps {fps!r} must be a positive number")
        height, width = imgshape[:2]
        smd = StoreMetadata.new(self.class_name, fmt, 1, imgshape, "uint8", encoding, extension=spec.extension)
        if pyav.coded_size(fmt, height, width, color, self._writer_options.get("pix_fmt")) != (height, width):
            # the codec needs even sizes: the file holds a padded picture that readers crop
            # (the reference instead cropped frames to even sizes and said nothing)
            smd.other["odd_size_padded"] = True
        if self._writer_options:
            smd.other["video_options"] = {k: v for k, v in self._writer_options.items()}
        return smd

    def _configure_append(self, options: dict[str, Any]) -> None:
        self._writer_options = dict(self._smd.other.get("video_options") or {})
        for k in ("fps", "quality", "bitrate", "keyframe_interval", "pix_fmt"):
            if k in options:
                self._writer_options[k] = options.pop(k)
        super()._configure_append(options)

    def _configure(self) -> None:
        smd = self._smd
        if smd.extension:
            self._ext = smd.extension if smd.extension.startswith(".") else "." + smd.extension
        else:
            # stores from before the 'extension' key: mjpeg wrote .avi, everything else .mp4
            self._ext = ".avi" if smd.format == "mjpeg" else ".mp4"
        shape = tuple(smd.imgshape)
        self._color = len(shape) == 3 and shape[-1] == 3
        if (shape[0] % 2 or shape[1] % 2) and not smd.other.get("odd_size_padded") and self._mode == "r":
            self._check_odd_shape(shape)
        self._readers: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self._writer = None
        # frame times of the latest frames written, for estimated_fps()
        self._recent_times: collections.deque[float] = collections.deque(maxlen=200)
        if self._mode == "r":
            _pyav()  # import PyAV now, not on the first frame read (~50 ms)

    def _check_odd_shape(self, shape: tuple[int, ...]) -> None:
        # the reference recorded odd sizes in metadata but wrote frames cut to even: believe the file
        import av

        chunks = sorted(self._list_chunks())
        if not chunks:
            return
        try:
            with av.open(self._video_path(chunks[0][0])) as container:
                stream = container.streams.video[0]
                size = (stream.codec_context.height, stream.codec_context.width)
        except Exception:  # an unreadable chunk is reported when it is read
            return
        even = (shape[0] & -2, shape[1] & -2)
        if size == even:
            warnings.warn(f"{self._basedir}: store records image shape {shape} but its video holds "
                          f"{even[0]}x{even[1]} frames (written by imgstore 0.4); reading them as such",
                          ImgStoreWarning, stacklevel=5)
            self._smd.imgshape = (*even, *shape[2:])

    # ------------------------------------------------------------------ layout

    def _chunk_base(self, chunk_n: int) -> str:
        return os.path.join(self._basedir, ondisk.chunk_name(chunk_n))

    def _video_path(self, chunk_n: int) -> str:
        return self._chunk_base(chunk_n) + self._ext

    _chunk_payload_path = _video_path

    @property
    def _capfn(self) -> str | None:
        """imgstore 0.4's name for the video file in use: the chunk being written, or last read."""
        if self._mode != "r":
            return self._video_path(self._chunk_n)
        return self._video_path(self._chunk_n) if self._cursor >= 0 else None

    def _list_chunks(self) -> list[tuple[int, str]]:
        out = []
        with os.scandir(self._basedir) as it:
            for entry in it:
                stem, ext = os.path.splitext(entry.name)
                n = ondisk.parse_chunk_name(stem)
                if n is not None and ext == self._ext and entry.is_file():
                    out.append((n, os.path.join(self._basedir, stem)))
        return out

    def _load_index(self):
        index = super()._load_index()
        # chunks are found by their video files: an index whose video is gone would go unnoticed
        videos = {n for n, _ in self._list_chunks()}
        with os.scandir(self._basedir) as it:
            for entry in it:
                stem, ext = os.path.splitext(entry.name)
                n = ondisk.parse_chunk_name(stem)
                if n is not None and ext in ondisk.INDEX_SUFFIXES and n not in videos:
                    self._skip_chunk(n, f"index {entry.name} has no video file {stem}{self._ext}")
        return index

    # ------------------------------------------------------------------ writing

    def _resume_after(self, index: FrameIndex) -> None:
        # appended chunks get the rate the recording had, not the default
        self._recent_times.extend(index.frame_time[-self._recent_times.maxlen:].tolist())

    def _open_write_chunk(self, chunk_n: int) -> None:
        h, w = self._smd.imgshape[:2]
        options = dict(self._writer_options)
        if "fps" not in options:
            options["fps"] = self.estimated_fps()
        self._writer = _pyav().VideoChunkWriter(
            self._video_path(chunk_n), self._smd.format, height=h, width=w, color=self._color, **options)

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
        return _pyav().DEFAULT_FPS

    def _write_image(self, img: np.ndarray, frame_number: int, frame_time: float) -> dict[str, Any]:
        pts = self._writer.write(img, frame_time=frame_time)
        self._recent_times.append(frame_time)
        return {"pts": pts}

    def _close_write_chunk(self, n_frames: int) -> dict[str, np.ndarray] | None:
        writer, self._writer = self._writer, None
        if writer is None:
            return None
        return writer.close()

    def _remove_chunk_payload(self, chunk_n: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._video_path(chunk_n))

    def _recover_chunk(self, chunk_n: int, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # the encoder may not have flushed the last journaled frames into the file
        try:
            on_disk = _pyav().build_frame_table(self._video_path(chunk_n))
        except Exception as exc:  # a file cut before its header is unreadable
            raise ChunkReadError(f"{self._video_path(chunk_n)}: unreadable after a crash ({exc})") from None
        n = min(len(table["frame_number"]), len(on_disk["pts"]))
        # the file's own timestamps: journaled ones may differ by a muxer shift (MP4)
        return {"frame_number": table["frame_number"][:n], "frame_time": table["frame_time"][:n],
                "pts": on_disk["pts"][:n], "keyframe": on_disk["keyframe"][:n]}

    def insert_chunk(self, video_path: str, frame_numbers: Sequence[int], frame_times: Sequence[float],
                     move: bool = True) -> None:
        """Adopt an existing video file as the next chunk of the store being written.

        Parameters
        ----------
        video_path
            A video with the store's extension, frame size and colour.
        frame_numbers, frame_times
            One per frame of the video, in presentation order.
        move
            Move the file into the store (else copy it).
        """
        self._require_mode("w", "insert_chunk")
        if len(frame_numbers) != len(frame_times):
            raise InvalidFrameMetadataError(
                f"{len(frame_numbers)} frame_numbers but {len(frame_times)} frame_times")
        if not os.fspath(video_path).endswith(self._ext):
            raise UnsupportedFormatError(f"{video_path} must have the store's extension {self._ext}")
        checked = [self._check_frame_metadata(fn, ft) for fn, ft in zip(frame_numbers, frame_times)]
        table = _pyav().build_frame_table(os.fspath(video_path))
        if len(table["pts"]) != len(checked):
            raise InvalidFrameMetadataError(
                f"{video_path} holds {len(table['pts'])} frames but {len(checked)} frame_numbers were given")
        # the open (possibly empty) chunk is closed first so the adopted file gets the next number
        self._finish_chunk(last=True)
        chunk_n = self._write_chunk_n if self._write_chunk_n not in self._chunks_closed else self._write_chunk_n + 1
        dest = self._video_path(chunk_n)
        (shutil.move if move else shutil.copyfile)(os.fspath(video_path), dest)
        fn = np.array([c[0] for c in checked], dtype=np.int64)
        ft = np.array([c[1] for c in checked], dtype=np.float64)
        ondisk.write_chunk_index(self._chunk_base(chunk_n), {"frame_number": fn, "frame_time": ft, **table},
                                 self._smd)
        self._chunks_closed.append(chunk_n)
        if len(fn):
            if self._frame_count == 0:
                self._t0 = float(ft[0])
                self._frame_min = self._frame_max = int(fn[0])
            self._frame_min = min(self._frame_min, int(fn.min()))
            self._frame_max = max(self._frame_max, int(fn.max()))
            self._tN = float(ft[-1])
            self._frame_count += len(fn)
        self._open_chunk(chunk_n + 1)

    # ------------------------------------------------------------------ reading

    def _reader(self, chunk_n: int):
        reader = self._readers.get(chunk_n)
        if reader is not None:
            self._readers.move_to_end(chunk_n)
            return reader
        base = self._chunk_base(chunk_n)
        table = None
        index_path = ondisk.find_index_file(base)
        if index_path is not None:
            saved = ondisk.read_chunk_index(index_path, ("frame_number", "frame_time", "pts", "keyframe"))
            if "pts" in saved and "keyframe" in saved and len(saved["pts"]) == len(saved["frame_number"]):
                table = {"pts": saved["pts"], "keyframe": saved["keyframe"].astype(bool)}
        h, w = self._smd.imgshape[:2]
        try:
            reader = _pyav().VideoChunkReader(self._video_path(chunk_n), color=self._color, height=h, width=w,
                                              frame_table=table)
        except ChunkReadError:
            raise
        except Exception as exc:
            raise ChunkReadError(f"cannot open video chunk {self._video_path(chunk_n)}: {exc}") from None
        self._readers[chunk_n] = reader
        while len(self._readers) > _MAX_OPEN_READERS:
            _, old = self._readers.popitem(last=False)
            old.close()
        return reader

    def _read_image(self, chunk_n: int, position: int) -> np.ndarray:
        return self._reader(chunk_n).read(position)

    def _close_readers(self) -> None:
        while self._readers:
            _, reader = self._readers.popitem()
            reader.close()

    @staticmethod
    def _get_chunk_extension(metadata: Mapping[str, Any]) -> str:
        """The chunk file extension a ``__store`` mapping implies (imgstore 0.4's helper)."""
        if metadata.get("extension"):
            return str(metadata["extension"])
        # stores from before the 'extension' key: mjpeg wrote .avi, everything else (Motif) .mp4
        return ".avi" if metadata.get("format") == "mjpeg" else ".mp4"

    @classmethod
    def _extract_only_frame(cls, basedir: str, chunk_n: int, frame_n: int, smd: StoreMetadata) -> np.ndarray:
        ext = smd.extension or (".avi" if smd.format == "mjpeg" else ".mp4")
        shape = tuple(smd.imgshape)
        path = os.path.join(basedir, ondisk.chunk_name(chunk_n) + ext)
        if not os.path.exists(path):
            raise ChunkReadError(f"video chunk {path} is missing")
        reader = _pyav().VideoChunkReader(path, color=len(shape) == 3 and shape[-1] == 3,
                                          height=shape[0], width=shape[1], frame_table=None)
        try:
            return reader.read(frame_n)
        finally:
            reader.close()

    @property
    def lossless(self) -> bool:
        """True for the lossless codecs (ffv1, lossless H.264)."""
        spec = _pyav().VIDEO_FORMATS.get(self._smd.format)
        return bool(spec and spec.lossless)

    def close(self, save_index: bool = False) -> None:
        """Finish writing (or release decoders)."""
        try:
            super().close(save_index=save_index)
        finally:
            if getattr(self, "_readers", None):
                self._close_readers()
