"""Writing one video chunk: frames in, a crash-safe file and its frame table out.

Owns :class:`VideoChunkWriter`: the encoder options derived from a format's
:class:`~.formats.VideoFormatSpec` and the caller's quality / bitrate / GOP, odd sizes
padded to what the encoder accepts, strictly increasing timestamps from frame times,
encoder dts repair, and the frame table returned by ``close()`` (for fragmented MP4,
checked against the file: its muxer shifts the whole timeline).

See ``docs/video-notes.md`` for the measurements behind the defaults chosen here.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import av
import av.error
import numpy as np

from ...checksums import payload_digest
from ...errors import InvalidImageError, StoreWriteError, UnsupportedFormatError
from .encoding import encoder_settings
from .formats import DEFAULT_FPS, VideoFormatSpec, coded_size, get_format_spec
from .frame_table import PACKET_DIGESTS, build_frame_table, close_input, open_input, packet_digest_seed
from .latency import DeadlineThread, MuxerFlush
from .timeline import Timeline

__all__ = ["SealedChunkError", "VideoChunkWriter"]

#: muxers that keep packets in memory (Matroska: the cluster, MP4: the fragment) until the
#: next packet, a flush or the end of the file; AVI writes each packet as it comes
_BUFFERING_MUXERS = frozenset({"matroska", "mp4"})
#: encoded packets compared with each new one for the reorder depth (as the recovery does)
_REORDER_WINDOW = 64
#: errors of the file system, not of the encoder's settings
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG, errno.EACCES, errno.EPERM})

_log = logging.getLogger(__name__)

class SealedChunkError(StoreWriteError):
    """:meth:`VideoChunkWriter.write` on a writer that finished its file early (:attr:`~VideoChunkWriter.sealed`):
    nothing of the frame was written; write it into a new chunk."""


def _errno_of(exc: BaseException, default: int = errno.EIO) -> int:
    """The POSIX errno behind an exception (ENOSPC for a full disk...), else `default`.

    FFmpeg errors carry either a negated POSIX errno or an FFmpeg tag (e.g. 1094995529
    for "Invalid data"); only the former is meaningful to callers.
    """
    code = getattr(exc, "errno", None)
    return code if isinstance(code, int) and code in errno.errorcode else default


def _as_fraction(fps: float) -> Fraction:
    if not (isinstance(fps, (int, float, Fraction)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive finite number, not {fps!r}")
    # 29.97 -> 2997/100 would do, but NTSC rates are 30000/1001: keep such denominators
    return Fraction(fps).limit_denominator(1001)


class VideoChunkWriter:
    """Encode frames into one video chunk file.

    Parameters
    ----------
    path : str or os.PathLike
        File to create (overwritten if it exists).  The muxer comes from `fmt`, not from
        the file name.
    fmt : str
        A key of :data:`~.formats.VIDEO_FORMATS`.
    height, width : int
        Frame size.  Odd sizes are accepted everywhere; where the encoder needs even
        dimensions (4:2:0 / 4:2:2 H.264 and H.265) the frame is padded by repeating its
        last row / column and :class:`~.reader.VideoChunkReader` crops it off again
        (:attr:`coded_shape` tells the stored size).
    color : bool
        True: frames are ``(height, width, 3)`` BGR (OpenCV order); False: ``(height,
        width)`` grey.
    fps : float, optional
        Nominal frame rate (default 25).  Sets the encoder's rate control, the frame
        duration when `frame_time` is not given, and AVI's fixed frame rate.
    quality : int, optional
        ``crf`` for H.264 (default 23) and H.265 (default 24), lower is better;
        ``qscale`` 2..31 for MJPEG (default 3).  Lossless formats refuse it.
    bitrate : int, optional
        Target bits per second instead of constant quality (lossy formats only).
    keyframe_interval : int, optional
        Maximum frames between keyframes (default: the format's, 25 for H.264/H.265, 10 for
        lossless H.264).
        Encoders may insert extra keyframes at scene cuts.
    pix_fmt : str, optional
        Encoder pixel format instead of the format's default (e.g. ``'yuv444p'``).
    dtype : numpy dtype, optional
        ``uint8`` (default); ``uint16`` only for grey ``'ffv1/mkv'`` (``gray16le``).
    codec_options : Mapping[str, str or None], optional
        Extra encoder options (FFmpeg/AVOption names), applied last; a None value removes
        one of the format's defaults (e.g. ``{'tune': None}`` for x264 without
        ``fastdecode``).
    max_latency : float, optional
        Wall-clock seconds after which a written frame must be in the file (handed to the
        operating system, so that a SIGKILL cannot lose it), whatever the frame rate and
        across pauses; None (default): no such bound.  A background thread watches the
        oldest frame not yet safe: when it has waited `max_latency`, the muxer is flushed
        or, when the encoder still holds that frame, the file is finished early
        (:attr:`sealed`: write no more frames, start a new chunk).
    frame_interval : float, optional
        Expected wall-clock seconds between frames (default ``1/fps``; ``inf`` after a
        pause).  Chooses between the encoder's delay settings (B-frames, lookahead) and
        its low-latency ones (see :mod:`.encoding`), so that `max_latency` is rarely
        reached with frames in the encoder.

    Notes
    -----
    Timestamps are set explicitly and strictly increase: ``pts`` comes from
    `frame_time` (seconds) relative to an earlier frame when given, otherwise from the
    frame counter at `fps`; a `frame_time` that does not advance by at least one tick
    is moved one tick after the previous frame, and a step forward of more than 10
    minutes is compressed to 10 minutes (see :mod:`.timeline`; the chunk index keeps the
    exact `frame_time`, the video only needs a monotonic timeline).  AVI cannot store
    timestamps, so there ``pts`` is always the frame counter.

    A writer is not thread-safe (its own deadline thread takes a lock).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: str,
        *,
        height: int,
        width: int,
        color: bool,
        fps: float | None = None,
        quality: int | None = None,
        bitrate: int | None = None,
        keyframe_interval: int | None = None,
        pix_fmt: str | None = None,
        dtype: Any = np.uint8,
        codec_options: Mapping[str, str] | None = None,
        max_latency: float | None = None,
        frame_interval: float | None = None,
    ) -> None:
        self._spec = spec = get_format_spec(fmt)
        self._path = os.fspath(path)
        self._color = bool(color)
        if int(height) != height or int(width) != width or height < 1 or width < 1:
            raise ValueError(f"invalid frame size {height}x{width}")
        self._height, self._width = int(height), int(width)
        self._dtype = np.dtype(dtype)
        self._fps = _as_fraction(DEFAULT_FPS if fps is None else fps)
        if max_latency is not None and not (math.isfinite(max_latency) and max_latency > 0):
            raise ValueError(f"max_latency must be a positive number of seconds, not {max_latency!r}")
        codec_name = spec.encoder(self._color)
        self._pix_fmt = pix_fmt or spec.default_pix_fmt(self._color)

        if self._dtype == np.uint16:
            if spec.name != "ffv1/mkv" or self._color:
                raise UnsupportedFormatError(f"uint16 frames need grey 'ffv1/mkv', not {fmt!r}")
            self._pix_fmt = pix_fmt or "gray16le"
        elif self._dtype != np.uint8:
            raise UnsupportedFormatError(f"video chunks store uint8 (or uint16 ffv1) frames, not {self._dtype}")
        if spec.lossless and (quality is not None or bitrate is not None):
            raise UnsupportedFormatError(f"{spec.name} is lossless: quality/bitrate do not apply")

        # odd sizes: pad where the encoder needs whole chroma samples
        self._coded_h, self._coded_w = coded_size(spec.name, self._height, self._width, self._color,
                                                  self._pix_fmt)

        gop = spec.default_keyframe_interval if keyframe_interval is None else int(keyframe_interval)
        if gop < 1:
            raise ValueError(f"keyframe_interval must be >= 1, not {keyframe_interval}")

        # pts clock
        if spec.time_base is None:  # AVI: one tick per frame
            self._tb = 1 / self._fps
            self._tick = 1
        else:
            self._tb = spec.time_base
            self._tick = max(1, round(1 / (self._fps * self._tb)))
        self._timeline = Timeline(self._tb, self._tick, tick_only=spec.time_base is None)

        settings = encoder_settings(spec, codec_name, self._coded_h, self._coded_w, float(self._fps), quality,
                                    bitrate, codec_options, frame_interval)
        self._settings = settings
        opts = settings.options

        try:
            self._container = av.open(self._path, mode="w", format=spec.muxer,
                                      options=dict(spec.container_options))
        except (av.error.FFmpegError, OSError) as exc:
            raise StoreWriteError(_errno_of(exc), f"cannot create video chunk: {exc}", self._path) from exc
        try:
            stream: av.VideoStream = self._container.add_stream(codec_name, rate=self._fps)  # type: ignore[assignment]
            stream.width = self._coded_w
            stream.height = self._coded_h
            stream.pix_fmt = self._pix_fmt
            cc = stream.codec_context
            cc.time_base = self._tb
            cc.gop_size = gop
            if bitrate is not None:
                cc.bit_rate = int(bitrate)
            if not self._color:
                # grey pixel values are full range (0..255); tagging them so keeps
                # them exact through YUV (x264 'gray' decodes as 4:2:0 with a Y plane
                # equal to the input) and shows them correctly in players
                cc.color_range = 2  # AVCOL_RANGE_JPEG
            cc.options = opts
            self._stream = stream
            # write the header now: the file is a valid (empty) container from the
            # start, and the stream time base the muxer settles on is known
            self._container.start_encoding()
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self._abort()
            if _errno_of(exc, 0) in _WRITE_ERRNOS:  # writing the header failed (disk full...)
                raise StoreWriteError(_errno_of(exc), f"cannot write video chunk header: {exc}", self._path) from exc
            raise UnsupportedFormatError(
                f"cannot encode {spec.name} {self._pix_fmt} {self._coded_h}x{self._coded_w}: {exc}"
            ) from exc
        self._stream_tb = Fraction(self._stream.time_base)  # type: ignore[arg-type]  # set by start_encoding()
        scale = self._tb / self._stream_tb
        if scale.denominator != 1:
            self._abort()
            raise UnsupportedFormatError(f"muxer time base {self._stream_tb} cannot hold {self._tb} exactly")
        self._scale = int(scale)
        self._frame_pts: list[int] = []  # encoder-side pts, write order
        self._packets: dict[int, bool] = {}  # encoder-side pts (codec time base) -> keyframe
        self._first_dts: int | None = None
        self._last_dts: int | None = None
        self._table: dict[str, np.ndarray] | None = None
        # -- the wall-clock bound (see max_latency) --------------------------------------
        self._lock = threading.RLock()
        self._max_latency = max_latency
        self._written_at: list[float] = []  # time.monotonic() of each frame's write(), write order
        self._safe = 0  # frames (a prefix) a crash can no longer lose
        self._recent_pts: list[int] = []  # the last packets' pts, decode order
        self._reorder = max(settings.reorder, int(getattr(self._stream.codec_context, "reorder_depth", 0) or 0))
        self._held_max = 0
        self._flushes = 0
        self._sealed = False
        self._closing = False
        self._seal_error: BaseException | None = None
        self._buffering = spec.muxer in _BUFFERING_MUXERS
        self._flusher = MuxerFlush.attach(self._container) if self._buffering else None
        self._deadlines: DeadlineThread | None = None
        if max_latency is not None:
            if self._buffering and self._flusher is None:
                _log.warning("%s: cannot flush the %s muxer of this PyAV build: chunks are finished early "
                             "instead to keep frames within %.2f s", self._path, spec.muxer, max_latency)
            self._deadlines = DeadlineThread(self._on_deadline, name=f"imgstore-latency {os.path.basename(self._path)}")
        if self._color:
            self._input_format = "bgr24"
        else:
            self._input_format = "gray16le" if self._dtype == np.uint16 else "gray"

    # -- properties --------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The chunk file."""
        return self._path

    @property
    def spec(self) -> VideoFormatSpec:
        """The format being written."""
        return self._spec

    @property
    def pix_fmt(self) -> str:
        """Encoder pixel format."""
        return self._pix_fmt

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of the frames accepted by :meth:`write` (and returned when read)."""
        return (self._height, self._width, 3) if self._color else (self._height, self._width)

    @property
    def coded_shape(self) -> tuple[int, int]:
        """(height, width) stored in the file: `frame_shape` padded to even if needed."""
        return self._coded_h, self._coded_w

    @property
    def time_base(self) -> Fraction:
        """Time base of the pts returned by :meth:`write` and :meth:`close`."""
        return self._stream_tb

    @property
    def frame_count(self) -> int:
        """Frames written so far."""
        return len(self._frame_pts)

    @property
    def closed(self) -> bool:
        return self._table is not None

    @property
    def sealed(self) -> bool:
        """True once the writer finished its file early to keep `max_latency`: close() it
        (which returns its table) and write further frames into a new chunk."""
        return self._sealed

    @property
    def low_latency(self) -> bool:
        """True when the encoder runs without B-frames and lookahead (see :mod:`.encoding`)."""
        return self._settings.low_latency

    @property
    def latency_stats(self) -> dict[str, Any]:
        """How the wall-clock bound was kept: muxer flushes, encoder delay (frames), sealing."""
        return {"low_latency": self._settings.low_latency, "flushes": self._flushes,
                "held_frames_max": self._held_max, "reorder": self._reorder, "sealed": self._sealed,
                "muxer_flush": self._flusher is not None, "compressed_gaps": self._timeline.compressed}

    # -- writing -----------------------------------------------------------------------
    def write(self, img: np.ndarray, frame_time: float | None = None) -> int:
        """Encode one frame.

        Parameters
        ----------
        img : numpy.ndarray
            ``frame_shape`` array of the writer's dtype (BGR for colour).
        frame_time : float, optional
            Capture time in seconds; gives the frame's timestamp (variable frame rate).

        Returns
        -------
        int
            The frame's pts in :attr:`time_base` as handed to the muxer.  For Matroska
            and AVI this is the pts in the file; fragmented MP4 shifts the whole
            timeline by a constant (its first decode timestamp becomes 0), so the table
            from :meth:`close` is the authoritative one.

        Raises
        ------
        imgstore.errors.InvalidImageError
            Wrong shape or dtype.
        imgstore.errors.InvalidFrameMetadataError
            A frame time that is not finite, or a step forward the timestamps cannot hold
            (nothing was written; the writer goes on).
        imgstore.errors.StoreWriteError
            Encoding or writing failed (e.g. disk full) or the writer is closed;
            :class:`SealedChunkError` (nothing written) when it was :attr:`sealed`.
        """
        img = np.asarray(img)
        if img.dtype != self._dtype:
            raise InvalidImageError(f"frame dtype {img.dtype} != {self._dtype}")
        if not self._color and img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]
        if img.shape != self.frame_shape:
            raise InvalidImageError(f"frame shape {img.shape} != {self.frame_shape}")
        if self._coded_h != self._height or self._coded_w != self._width:
            pad = ((0, self._coded_h - self._height), (0, self._coded_w - self._width))
            img = np.pad(img, pad + ((0, 0),) * (img.ndim - 2), mode="edge")
        with self._lock:
            if self._sealed:
                raise SealedChunkError(errno.EBADF, "video chunk writer finished its file early (sealed): "
                                       "write the frame into a new chunk", self._path)
            if self._table is not None:
                raise StoreWriteError(errno.EBADF, "video chunk writer is closed", self._path)
            pts, planned = self._timeline.plan(frame_time)  # may refuse the frame: nothing changed yet
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=self._input_format)
            frame.pts = pts
            frame.time_base = self._tb
            if not self._color:
                frame.color_range = 2
            self._frame_pts.append(pts)
            try:
                self._mux(self._stream.encode(frame))
            except (av.error.FFmpegError, OSError) as exc:
                self._frame_pts.pop()
                raise StoreWriteError(_errno_of(exc), f"cannot write frame: {exc}", self._path) from exc
            self._timeline.commit(planned)
            self._written_at.append(time.monotonic())
            self._held_max = max(self._held_max, len(self._frame_pts) - len(self._packets))
            if not self._buffering:
                self._safe = self._recoverable()
            self._arm()
        return pts * self._scale

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            pts: int = packet.pts  # type: ignore[assignment]  # encoders time every packet
            dts = packet.dts
            # encoders derive dts from the pts of frames a few positions earlier, so a
            # dts far before the whole timeline is garbage
            lowest = self._frame_pts[0] - 32 * self._timeline.largest_step
            if dts is None or dts > pts or (self._last_dts is not None and dts <= self._last_dts) \
                    or dts < lowest:
                # FFmpeg's libx265 wrapper hands out garbage dts (uninitialised, e.g.
                # -9e13) for streams of two frames; MP4 then refuses the packet.  Any
                # dts in (last dts, pts] is valid when pts also increases.
                fixed = pts if self._last_dts is None or pts > self._last_dts else None
                if fixed is None:
                    raise StoreWriteError(errno.EIO, f"encoder produced invalid timestamps "
                                          f"(pts {pts}, dts {dts})", self._path)
                _log.debug("%s: replacing encoder dts %s by %s", self._path, dts, fixed)
                packet.dts = dts = fixed
            self._last_dts = dts
            if self._first_dts is None:
                self._first_dts = dts
            # keyed by the encoder-side pts (mux() may rebase the packet in place)
            self._packets[int(pts)] = bool(packet.is_keyframe)
            # the reorder depth as the recovery measures it: earlier packets shown later
            self._reorder = max(self._reorder, sum(1 for p in self._recent_pts if p > pts))
            self._recent_pts.append(int(pts))
            del self._recent_pts[:-_REORDER_WINDOW]
            self._container.mux(packet)

    # -- the wall-clock bound ----------------------------------------------------------
    def _recoverable(self) -> int:
        """Frames a crash could not lose once the muxer has written out what it holds.

        A file cut short keeps the frames of its packets, less the last `reorder` ones
        when the stream reorders (a recovery cannot tell them from frames before a hole).
        """
        n = len(self._packets)
        return max(0, n - self._reorder) if self._reorder else n

    def _arm(self) -> None:
        """Set the deadline thread to the moment the oldest frame not yet safe is due."""
        if self._deadlines is not None and self._max_latency is not None:
            pending = self._safe < len(self._written_at) and not self._sealed and self._table is None
            self._deadlines.set_deadline(self._written_at[self._safe] + self._max_latency if pending else None)

    def _on_deadline(self) -> None:
        """The oldest frame not yet safe has waited `max_latency`: flush the muxer, or seal."""
        with self._lock:
            if self._table is not None or self._sealed or self._max_latency is None or self._closing:
                return
            due = bisect.bisect_right(self._written_at, time.monotonic() - self._max_latency)
            if due > self._safe:
                if self._flusher is not None and self._recoverable() >= due:
                    ret = self._flusher.flush()
                    self._flushes += 1
                    if ret < 0:  # the write failed (disk full...): close() reports it
                        _log.warning("%s: flushing the muxer failed (%d)", self._path, ret)
                        self._seal()
                        return
                    self._safe = self._recoverable()
                elif not self._buffering and self._recoverable() >= due:
                    self._safe = self._recoverable()
                else:
                    # the encoder still holds a due frame (or the muxer cannot be flushed)
                    self._seal()
                    return
            self._arm()

    def _seal(self) -> None:
        """Finish the file now (encoder drained, trailer written); close() returns its table."""
        self._sealed = True
        try:
            self._finish()
        except BaseException as exc:  # reported by close(); the frames written so far stay readable
            self._seal_error = exc
            _log.warning("%s: finishing the chunk early failed: %s", self._path, exc)
        else:
            _log.debug("%s: finished early after %d frames to keep them within %.2f s", self._path,
                       len(self._frame_pts), self._max_latency)
        self._safe = len(self._written_at)
        self._arm()

    def _finish(self) -> dict[str, np.ndarray]:
        """Flush the encoder, write the trailer, build the table (see :meth:`close`)."""
        if self._table is not None:
            return self._table
        self._closing = True  # whatever happens now, the deadline thread leaves the file alone
        try:
            self._mux(self._stream.encode(None))
            self._flusher = None  # its AVFormatContext is freed by close()
            self._container.close()
        except (av.error.FFmpegError, OSError) as exc:
            self._abort()
            raise StoreWriteError(_errno_of(exc), f"cannot finish video chunk: {exc}", self._path) from exc
        try:
            key = np.asarray([self._packets[p] for p in self._frame_pts], bool)
        except KeyError:
            raise StoreWriteError(errno.EIO, "encoder lost frames", self._path) from None
        if len(self._packets) != len(self._frame_pts):
            raise StoreWriteError(errno.EIO, "encoder produced extra frames", self._path)
        pts = np.asarray(self._frame_pts, np.int64) * self._scale
        table = {"pts": pts, "keyframe": key}
        if pts.size:
            # one demux of the file just written (measured: see docs/reliability.md, "Checksums")
            table["pts"], digests = self._read_back(pts)
            if digests is not None:
                table[PACKET_DIGESTS] = digests
        self._table = table
        return self._table

    def close(self) -> dict[str, np.ndarray]:
        """Flush the encoder, finish the file and return its frame table.

        Returns
        -------
        dict of str to numpy.ndarray
            ``'pts'`` (int64, stream time base, as a demuxer reports it for this file)
            and ``'keyframe'`` (bool), one row per written frame in write order (which is
            presentation order).  Store both in the chunk index and hand them back to
            :class:`~.reader.VideoChunkReader`.  Calling ``close()`` again returns the same table.

        Raises
        ------
        imgstore.errors.StoreWriteError
            Flushing or finishing the file failed (now, or when the writer was sealed), or
            the file does not hold every frame.
        """
        with self._lock:
            if self._deadlines is not None:
                self._deadlines.stop()
            if self._seal_error is not None and self._table is None:
                err = self._seal_error
                raise StoreWriteError(getattr(err, "errno", None) or errno.EIO,
                                      f"finishing the chunk early failed: {err}", self._path) from err
            return self._finish()

    def _read_back(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Demux the finished file once: the pts a reader will see and each frame's packet checksum.

        The checksums are taken from the file as a reader demuxes it, not from the encoder:
        Matroska and MP4 rewrite H.264/H.265 packets (start codes become length prefixes).
        FFmpeg's fragmented MP4 makes the first decode timestamp 0 (tfdt cannot be negative),
        shifting every pts by -first_dts; the file shows whether it did.
        """
        shift = int(self._first_dts or 0) * self._scale if self._spec.muxer == "mp4" else 0
        expected = (pts - shift).tolist()
        container = open_input(self._path)
        if container is None:
            raise StoreWriteError(errno.EIO, "finished video chunk holds no frame", self._path)
        seen: dict[int, int] = {}
        try:
            stream = container.streams.video[0]
            seed = packet_digest_seed(stream)
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    seen[int(packet.pts)] = payload_digest(packet, seed)
        finally:
            close_input(container)
        if len(seen) != len(expected) or not all(p in seen for p in expected):
            if self._spec.muxer != "mp4":
                _log.warning("%s: the finished file's packets do not match the frames written: no checksums "
                             "recorded", self._path)
                return pts, None
            # unknown muxer behaviour: take the timeline from a full frame table
            table = build_frame_table(self._path)
            if len(table["pts"]) != len(pts):
                raise StoreWriteError(errno.EIO, "MP4 chunk does not hold every frame", self._path)
            expected = table["pts"].tolist()
            if not all(p in seen for p in expected):
                return table["pts"], None
        digests = np.fromiter((seen[p] for p in expected), dtype=np.uint64, count=len(expected))
        return np.asarray(expected, dtype=np.int64), digests

    def _abort(self) -> None:
        self._flusher = None  # never flush a freed AVFormatContext
        with contextlib.suppress(Exception):  # already failing: keep the first error
            self._container.close()

    def __enter__(self) -> VideoChunkWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._table is None:
            if exc_info[0] is None:
                self.close()
            else:
                with contextlib.suppress(Exception):  # keep the original exception
                    self.close()

    def __repr__(self) -> str:
        return (f"<VideoChunkWriter {self._path!r} {self._spec.name} {self._pix_fmt} "
                f"{self._height}x{self._width} frames={self.frame_count}>")
