"""Video chunk layer built on PyAV: write and read one video chunk, frame-exactly.

A video store keeps its frames in *chunks*: one video file per chunk beside an ``.npz``
index holding the per-frame metadata.  This module knows nothing about stores; it writes
one chunk (:class:`VideoChunkWriter`) and reads frames back from one chunk by their
0-based position (:class:`VideoChunkReader`).

Random access is driven by a *frame table*, one row per frame in presentation order:

``pts``
    the presentation timestamp (int64, in the video stream's time base) of the frame as
    a demuxer reports it for this file;
``keyframe``
    whether the frame is a keyframe, i.e. a point where decoding can start after a seek.

The writer returns this table from :meth:`VideoChunkWriter.close` (the caller stores it in
the chunk's ``.npz``); for chunks written by other software, or whose writer died before
``close()``, :func:`build_frame_table` derives it by demuxing the file (packets only, no
decoding).  Reading never trusts a decoder's frame counter: every decoded frame's ``pts``
is compared with the table and a frame that cannot be found raises
:class:`imgstore.errors.ChunkReadError` rather than returning a neighbour.

See ``docs/video-notes.md`` for the measurements behind the defaults chosen here.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import functools
import io
import logging
import math
import os
import shutil
import tempfile
import threading
import types
from fractions import Fraction
from typing import Any, Iterator, Mapping

import av
import av.error
import av.filter
import av.video.reformatter
import numpy as np

from imgstore.errors import (
    ChunkReadError,
    FrameIndexError,
    IndexCorruptError,
    InvalidImageError,
    StoreWriteError,
    UnsupportedFormatError,
)

__all__ = [
    "VideoFormatSpec",
    "VIDEO_FORMATS",
    "FRAME_TABLE_KEYS",
    "get_format_spec",
    "coded_size",
    "written_size",
    "available_video_formats",
    "is_video_format_available",
    "build_frame_table",
    "VideoChunkWriter",
    "VideoChunkReader",
]

_log = logging.getLogger(__name__)

#: Keys of a frame table (see the module docstring).
FRAME_TABLE_KEYS = ("pts", "keyframe")

#: Frame rate used when the caller gives none; the reference library always wrote 25.
DEFAULT_FPS = 25.0

# Matroska and MP4 mux-level settings that keep a chunk readable after the writer is
# SIGKILLed.  Matroska keeps the current cluster in memory until it is closed and MP4
# keeps a whole fragment (moof+mdat) in memory, so both are bounded in time; and
# flush_packets makes libavformat hand every finished piece to the OS at once instead of
# sitting in its 32 KiB AVIO buffer (without it nothing at all reached the file for the
# first ~200 KB, see docs/video-notes.md).
_MKV_OPTIONS = {"flush_packets": "1", "cluster_time_limit": "250"}
_MP4_OPTIONS = {
    "flush_packets": "1",
    # empty_moov: the header is complete before the first frame; frag_keyframe +
    # frag_duration: a fragment is closed at every keyframe and at least every 250 ms.
    "movflags": "frag_keyframe+empty_moov+default_base_moof",
    "frag_duration": "250000",
}
_AVI_OPTIONS = {"flush_packets": "1"}


@dataclasses.dataclass(frozen=True)
class VideoFormatSpec:
    """How one imgstore video format is written.

    Attributes
    ----------
    name : str
        imgstore format name, e.g. ``'h264/mkv'``.
    codec : str
        FFmpeg encoder used for grey stores (and for colour unless `color_codec` is set).
    extension : str
        Chunk file extension including the dot, e.g. ``'.mkv'``.
    muxer : str
        FFmpeg muxer name (``'matroska'``, ``'mp4'``, ``'avi'``).
    lossless : bool
        Whether frames read back bit-identical (for the default pixel formats).
    grey_pix_fmt, color_pix_fmt : str
        Default encoder pixel format for grey and for colour stores.
    grey_native : bool
        True when `grey_pix_fmt` stores only luma (grey stays grey, no chroma planes).
    color_codec : str or None
        Encoder for colour stores when it differs from `codec`.
    container_options : Mapping[str, str]
        Muxer options (crash safety, see the module constants).
    codec_options : Mapping[str, str]
        Encoder options applied before the per-writer ones (quality, GOP...).
    quality_option : str or None
        What ``quality=`` means: ``'crf'`` (x264/x265), ``'qscale'`` (MJPEG, 2..31,
        lower is better) or None (lossless formats take no quality).
    default_quality : int or None
        Quality used when the caller gives none.
    default_keyframe_interval : int
        Frames between forced keyframes when the caller gives none.
    intra_only : bool
        Every frame is a keyframe, so a random read decodes exactly one frame.
    time_base : Fraction or None
        Stream time base requested from the muxer; None means ``1/fps`` with a frame
        counter as pts (AVI cannot store real timestamps).
    reference : bool
        The format exists in imgstore 0.4 (its files are named the same way).
    description : str
        One line for users.
    """

    name: str
    codec: str
    extension: str
    muxer: str
    lossless: bool
    grey_pix_fmt: str
    color_pix_fmt: str
    grey_native: bool
    color_codec: str | None = None
    container_options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    codec_options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    quality_option: str | None = None
    default_quality: int | None = None
    default_keyframe_interval: int = 25
    intra_only: bool = False
    time_base: Fraction | None = Fraction(1, 1000)
    reference: bool = False
    description: str = ""

    def encoder(self, color: bool) -> str:
        """Name of the FFmpeg encoder used for a grey or colour store."""
        return (self.color_codec or self.codec) if color else self.codec

    def default_pix_fmt(self, color: bool) -> str:
        """Default encoder pixel format for a grey or colour store."""
        return self.color_pix_fmt if color else self.grey_pix_fmt


def _ro(d: Mapping[str, str]) -> Mapping[str, str]:
    # specs are shared module-level objects: make their option dicts read-only
    return types.MappingProxyType(dict(d))


# x264 speed preset: 'veryfast' is the slowest preset that still encodes 1920x1080 colour
# at >= 30 frames/s on 2 cores (35-37/s measured) while its files are 2.5-4x smaller
# than 'superfast'/'ultrafast' ones (docs/video-notes.md).
_X264_PRESET = "veryfast"
# crf 23: x264's (and OpenCV's, hence the reference's) default
_X264_DEFAULT_CRF = 23
_X265_DEFAULT_CRF = 24
_MJPEG_DEFAULT_QSCALE = 3
#: Default GOP for inter-frame codecs: the measured size / random-access trade-off
#: (docs/video-notes.md) favours 25 (1 s at the default 25 fps).
_DEFAULT_GOP = 25
#: Default GOP for lossless H.264 (no B-frames, large frames: see its spec)
_LOSSLESS_GOP = 10

_H264_MKV = VideoFormatSpec(
    name="h264/mkv", codec="libx264", extension=".mkv", muxer="matroska", lossless=False,
    grey_pix_fmt="gray", color_pix_fmt="yuv420p", grey_native=True,
    container_options=_ro(_MKV_OPTIONS),
    # Random access is decode-bound, so the defaults favour decoding speed (measured in
    # docs/video-notes.md): tune=fastdecode (CAVLC, no deblocking / weighted
    # prediction) decodes 2-2.5x faster for ~18 % more bytes at the same PSNR; without
    # a B-pyramid every B-frame is a non-reference frame the reader skips on its way
    # to a target (+20-40 % random reads, size unchanged); and b-adapt=0 always puts
    # x264's 3 B-frames between reference frames, so a random read decodes at most
    # every 4th frame whatever the content (static scenes: identical files; moving
    # content that adaptive placement coded with more P-frames: -20 to -30 % bytes,
    # -0.1 to -0.3 dB PSNR, +50-60 % random reads)
    codec_options=_ro({"preset": _X264_PRESET, "tune": "fastdecode",
                       "x264-params": "b-pyramid=none:b-adapt=0"}),
    quality_option="crf", default_quality=_X264_DEFAULT_CRF,
    default_keyframe_interval=_DEFAULT_GOP, reference=True,
    description="H.264 (libx264) in Matroska; crash-safe; the best default for long recordings",
)
_AVC1_MP4 = dataclasses.replace(
    _H264_MKV, name="avc1/mp4", extension=".mp4", muxer="mp4",
    container_options=_ro(_MP4_OPTIONS), time_base=Fraction(1, 90000),
    description="H.264 (libx264) in fragmented MP4 (readable after a crash)",
)
_MJPEG_AVI = VideoFormatSpec(
    name="mjpeg/avi", codec="mjpeg", extension=".avi", muxer="avi", lossless=False,
    # MJPEG has no luma-only mode in FFmpeg; full-range 4:2:0 keeps grey values exact
    # up to JPEG quantisation (chroma is a constant 128 and costs almost nothing).
    grey_pix_fmt="yuvj420p", color_pix_fmt="yuvj420p", grey_native=False,
    container_options=_ro(_AVI_OPTIONS), quality_option="qscale",
    default_quality=_MJPEG_DEFAULT_QSCALE, default_keyframe_interval=1, intra_only=True,
    time_base=None, reference=True,
    description="Motion JPEG in AVI: every frame a keyframe, fastest random access, large files",
)
_FFV1_MKV = VideoFormatSpec(
    name="ffv1/mkv", codec="ffv1", extension=".mkv", muxer="matroska", lossless=True,
    grey_pix_fmt="gray", color_pix_fmt="bgr0", grey_native=True,
    container_options=_ro(_MKV_OPTIONS),
    # level 3 with slices: multithreaded encode/decode; slicecrc: every slice carries a
    # CRC so a damaged chunk is detected instead of decoded into garbage; g=1 (below):
    # every frame is a keyframe, which costs a few percent of size but makes random
    # access one decode and confines damage to a single frame.
    codec_options=_ro({"level": "3", "slices": "4", "slicecrc": "1"}),
    default_keyframe_interval=1, intra_only=True,
    description="FFV1 lossless in Matroska (grey 8/16 bit and BGR), bit-exact",
)
_HEVC_MP4 = VideoFormatSpec(
    name="hevc/mp4", codec="libx265", extension=".mp4", muxer="mp4", lossless=False,
    grey_pix_fmt="gray", color_pix_fmt="yuv420p", grey_native=True,
    container_options=_ro(_MP4_OPTIONS), codec_options=_ro({"preset": "veryfast"}),
    quality_option="crf", default_quality=_X265_DEFAULT_CRF,
    default_keyframe_interval=_DEFAULT_GOP, time_base=Fraction(1, 90000),
    description="H.265 (libx265) in fragmented MP4: smaller files, slower to write",
)
_H264_LOSSLESS_MKV = VideoFormatSpec(
    name="h264-lossless/mkv", codec="libx264", color_codec="libx264rgb", extension=".mkv",
    muxer="matroska", lossless=True,
    # grey: luma-only 4:0:0 at qp 0; colour: libx264rgb codes the BGR planes themselves
    # (H.264 High 4:4:4 with an identity matrix), so no lossy RGB->YUV step exists.
    grey_pix_fmt="gray", color_pix_fmt="bgr24", grey_native=True,
    container_options=_ro(_MKV_OPTIONS),
    # qp 0 is lossless whatever the tune; fastdecode (CAVLC instead of CABAC) decodes
    # lossless H.264 4.6x faster for 11 % more bytes (docs/video-notes.md)
    codec_options=_ro({"preset": _X264_PRESET, "qp": "0", "tune": "fastdecode",
                       "x264-params": "b-pyramid=none"}),
    # x264 codes no B-frames at qp 0, so a random read decodes every frame from the
    # keyframe; lossless inter prediction saves little on noisy footage: a keyframe
    # every 10 frames costs 0.5-2 % more bytes than every 25 for 2.3x faster random
    # reads (all-intra: +4 to +33 % bytes, 7-8x; docs/video-notes.md)
    default_keyframe_interval=_LOSSLESS_GOP,
    description="H.264 lossless (qp 0) in Matroska; grey and BGR bit-exact",
)

#: imgstore format name -> how it is written.  ``'mjpeg'`` is the reference's alias of
#: ``'mjpeg/avi'`` (same spec object).
VIDEO_FORMATS: dict[str, VideoFormatSpec] = {
    "mjpeg/avi": _MJPEG_AVI,
    "mjpeg": _MJPEG_AVI,
    "h264/mkv": _H264_MKV,
    "avc1/mp4": _AVC1_MP4,
    "ffv1/mkv": _FFV1_MKV,
    "hevc/mp4": _HEVC_MP4,
    "h264-lossless/mkv": _H264_LOSSLESS_MKV,
}


def get_format_spec(fmt: str) -> VideoFormatSpec:
    """Return the :class:`VideoFormatSpec` of an imgstore video format name.

    Raises
    ------
    UnsupportedFormatError
        `fmt` is not a video format known to this module.
    """
    try:
        return VIDEO_FORMATS[fmt]
    except (KeyError, TypeError):
        raise UnsupportedFormatError(
            f"unknown video format {fmt!r}; known: {sorted(VIDEO_FORMATS)}"
        ) from None


# ---------------------------------------------------------------------------------------
# availability probe
# ---------------------------------------------------------------------------------------

_probe_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _probe(fmt: str) -> bool:
    """Write two tiny grey and colour chunks in `fmt` and read them back exactly."""
    spec = VIDEO_FORMATS[fmt]
    needed = {spec.codec, spec.color_codec or spec.codec}
    if not needed <= av.codecs_available or spec.muxer not in av.formats_available:
        return False
    tmpdir = tempfile.mkdtemp(prefix="imgstore-probe-")
    try:
        for color in (False, True):
            path = os.path.join(tmpdir, f"probe{int(color)}{spec.extension}")
            shape = (48, 64, 3) if color else (48, 64)
            imgs = [np.full(shape, v, np.uint8) for v in (40, 200)]
            with VideoChunkWriter(path, fmt, height=48, width=64, color=color) as w:
                for img in imgs:
                    w.write(img)
            table = w.close()
            with VideoChunkReader(path, color=color, height=48, width=64, frame_table=table) as r:
                if len(r) != len(imgs):
                    return False
                for i, img in enumerate(imgs):
                    if np.abs(r.read(i).astype(int) - img).max() > 8:
                        return False
        return True
    except Exception as exc:  # any failure means "cannot be used here"
        _log.info("video format %s unavailable: %s", fmt, exc)
        return False
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def is_video_format_available(fmt: str) -> bool:
    """Whether this installation can write *and* read back format `fmt` (probed once)."""
    spec = get_format_spec(fmt)
    with _probe_lock:
        return _probe(spec.name)


def available_video_formats() -> list[str]:
    """Names of the video formats this installation can really write and read back.

    Each format is probed once per process by writing and decoding a two-frame grey and
    colour chunk in a temporary directory (a few ms per format); the result is cached.
    The alias ``'mjpeg'`` is listed when ``'mjpeg/avi'`` is available.
    """
    return [name for name in VIDEO_FORMATS if is_video_format_available(name)]


# ---------------------------------------------------------------------------------------
# frame tables
# ---------------------------------------------------------------------------------------


class _TruncatedView(io.RawIOBase):
    """The first `limit` bytes of a file, for demuxers that reject a partial last box."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__()
        self._f = open(path, "rb")
        self._limit = limit
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self._limit - self._pos)
        if n <= 0:
            return 0
        self._f.seek(self._pos)
        got = self._f.readinto(memoryview(buf)[:n]) or 0
        self._pos += got
        return got

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._limit}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._f.close()
        super().close()


def _complete_mp4_prefix(path: str) -> int | None:
    """Length of the MP4 file up to its last complete box (not a dangling 'moof').

    0 when the header ('moov') itself is incomplete; None when this is not an MP4.
    """
    size = os.path.getsize(path)
    pos = good = 0
    moov = False
    with open(path, "rb") as f:
        if f.read(8)[4:8] != b"ftyp":
            return None
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            length = int.from_bytes(head[:4], "big")
            if length == 1 and len(head) >= 16:  # 64-bit box size
                length = int.from_bytes(head[8:16], "big")
            if length < 8 or pos + length > size:
                break
            pos += length
            moov = moov or head[4:8] == b"moov"
            if head[4:8] != b"moof":  # a fragment's data follows its moof
                good = pos
    return good if moov else 0


def _open_input(path: str | os.PathLike[str]) -> av.container.InputContainer | None:
    """Open a chunk for reading; None for a file that holds no frame at all."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ChunkReadError(errno.ENOENT, "video chunk not found", path)
    try:
        container = av.open(path, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        container = _open_cut_short(path, exc)
        if container is None:
            return None
    if not container.streams.video:
        _close_input(container)
        raise ChunkReadError(errno.EIO, "video chunk has no video stream", path)
    return container


def _open_cut_short(path: str, exc: Exception) -> av.container.InputContainer | None:
    """Open what a writer killed mid-file left behind (None: no frame in it)."""
    limit = _complete_mp4_prefix(path)
    if limit is None:
        if isinstance(exc, av.error.EOFError):
            # a chunk that was created but never received a frame (the reference
            # leaves such 500-byte Matroska files behind): no frames, not an error
            return None
        raise ChunkReadError(errno.EIO, f"cannot open video chunk: {exc}", path) from exc
    if limit == 0:
        _log.warning("%s: MP4 header incomplete (writer killed before the first frame)", path)
        return None
    # FFmpeg's MP4 demuxer refuses a file whose last box is cut short (a writer killed
    # while writing a fragment): open only the complete boxes.  Some cuts still fail
    # while the demuxer probes the end of the file; read those as a non-seekable
    # stream (random access then decodes from the start, see VideoChunkReader).
    attempts = []
    if limit < os.path.getsize(path):
        attempts.append(lambda: av.open(_TruncatedView(path, limit), mode="r", format="mp4"))
    attempts.append(lambda: av.open(path, mode="r", options={"seekable": "0"}))
    for attempt in attempts:
        try:
            container = attempt()
        except (av.error.FFmpegError, OSError, ValueError):
            continue
        _log.warning("%s: unfinished MP4 (%s), reading its complete fragments", path, exc)
        return container
    raise ChunkReadError(errno.EIO, f"cannot open video chunk: {exc}", path) from exc


def _close_input(container: av.container.InputContainer) -> None:
    view = getattr(container, "file", None)
    container.close()
    if isinstance(view, _TruncatedView):
        view.close()


def _empty_table() -> dict[str, np.ndarray]:
    return {"pts": np.zeros(0, np.int64), "keyframe": np.zeros(0, bool)}


def _is_complete(container: av.container.InputContainer, path: str, n_packets: int, end: int) -> bool:
    """Whether the file holds every frame its muxer wrote (False: unknown or cut short).

    `end` is the largest ``pts + duration`` among the packets read, in stream time base.
    """
    stream = container.streams.video[0]
    if stream.frames:
        # AVI's idx1 / a classic MP4's sample table declare the frame count
        return n_packets >= stream.frames
    fmt = container.format.name
    if "matroska" in fmt:
        # Matroska's Duration (max pts + duration) is only written by the trailer; a
        # file cut short after it was finished ends before it
        if container.duration is None:
            return False
        end_us = float(end * stream.time_base) * 1e6
        start_us = container.start_time or 0
        return min(abs(end_us - container.duration), abs(end_us - start_us - container.duration)) <= 2000
    if "mp4" in fmt or "mov" in fmt:
        # a finished fragmented MP4 ends with the 16-byte 'mfro' box of its 'mfra'
        try:
            with open(path, "rb") as f:
                f.seek(-16, os.SEEK_END)
                return f.read(16)[4:8] == b"mfro"
        except OSError:
            return False
    return False


def _demux_table(container: av.container.InputContainer, path: str) -> dict[str, np.ndarray]:
    stream = container.streams.video[0]
    pts: list[int] = []
    key: list[bool] = []
    end = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the flushing packets PyAV appends at the end
                continue
            if packet.is_corrupt:
                # a packet cut short by a crash: it cannot decode into the right
                # picture, and nothing after it was written completely either
                _log.warning("%s: corrupt packet at pts %s, table ends there", path, packet.pts)
                break
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                raise ChunkReadError(errno.EIO, "video packet without timestamp", path)
            pts.append(int(ts))
            key.append(bool(packet.is_keyframe))
            e = int(ts) + int(packet.duration or 0)
            end = e if end is None or e > end else end
    except av.error.FFmpegError as exc:
        # a file cut short by a crash ends in a partial cluster / fragment / chunk
        _log.warning("%s: demuxing stopped after %d packets: %s", path, len(pts), exc)
    if not pts:
        return _empty_table()
    dec = np.asarray(pts, np.int64)  # decode order
    # packets come in decode order; the table is in presentation order
    order = np.argsort(dec, kind="stable")
    pts_a, key_a = dec[order], np.asarray(key, bool)[order]
    if np.any(np.diff(pts_a) <= 0):
        raise ChunkReadError(errno.EIO, "video chunk has duplicate presentation timestamps", path)

    # Reordered streams (B-frames) cut short by a crash can have holes at the end: a
    # frame whose packet had not been written yet although a later-shown frame's had.
    # A frame is delayed (decoded after frames shown later) by at most R positions, the
    # stream's reorder depth, so every frame missing from the file would be shown after
    # all but the last R frames present: the first n - R frames are complete, the last R
    # may hide a hole and are dropped unless the file is known to be complete.
    reorder = _reorder_depth(dec)
    if reorder:
        reorder = max(reorder, int(getattr(stream.codec_context, "reorder_depth", 0) or 0))
        if not _is_complete(container, path, len(pts), end):
            keep = max(0, len(pts_a) - reorder)
            _log.warning("%s: unfinished file with B-frames: keeping %d of %d frames (the last %d "
                         "may be preceded by frames that were never written)", path, keep, len(pts_a), reorder)
            pts_a, key_a = pts_a[:keep], key_a[:keep]
    return {"pts": pts_a, "keyframe": key_a}


def _reorder_depth(decode_order_pts: np.ndarray, window: int = 64) -> int:
    """Largest number of frames decoded before a frame but shown after it.

    Encoders reorder within a few frames (x264: 3 B-frames), so only the `window`
    frames decoded just before each frame are compared with it.
    """
    ranks = np.argsort(np.argsort(decode_order_pts, kind="stable"), kind="stable")
    n = len(ranks)
    if n < 2 or np.all(np.diff(ranks) > 0):
        return 0
    later_shown = np.zeros(n, np.int64)  # per frame: earlier-decoded, later-shown frames
    for k in range(1, min(window, n - 1) + 1):
        later_shown[k:] += ranks[:-k] > ranks[k:]
    return int(later_shown.max())


def build_frame_table(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Build a chunk's frame table by demuxing it (packets only, nothing is decoded).

    Parameters
    ----------
    path : str or os.PathLike
        The video chunk.

    Returns
    -------
    dict of str to numpy.ndarray
        ``'pts'`` (int64, strictly increasing: presentation order, stream time base) and
        ``'keyframe'`` (bool), one row per frame.  A chunk whose writer was killed yields
        the frames that were completely written; a chunk without any frame yields empty
        arrays.

    Raises
    ------
    imgstore.errors.ChunkReadError
        The file is missing, is not a video, or has packets without timestamps or with
        duplicate ones (no frame-exact access is possible then).
    """
    container = _open_input(path)
    if container is None:
        return _empty_table()
    try:
        return _demux_table(container, os.fspath(path))
    finally:
        _close_input(container)


def _check_table(table: Mapping[str, Any], path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        pts = np.asarray(table["pts"])
        key = np.asarray(table["keyframe"])
    except (KeyError, TypeError) as exc:
        raise IndexCorruptError(f"{path}: frame table needs keys {FRAME_TABLE_KEYS}") from exc
    if pts.ndim != 1 or key.shape != pts.shape:
        raise IndexCorruptError(f"{path}: frame table arrays have different shapes")
    if pts.size and not np.issubdtype(pts.dtype, np.integer):
        raise IndexCorruptError(f"{path}: frame table pts must be integers")
    pts = pts.astype(np.int64, copy=False)
    if np.any(np.diff(pts) <= 0):
        raise IndexCorruptError(f"{path}: frame table pts are not strictly increasing")
    return pts, key.astype(bool, copy=False)


# ---------------------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------------------

# chroma subsampling (log2 horizontal, log2 vertical) of the pixel formats whose encoders
# refuse odd sizes (libx264 / libx265 need whole chroma samples)
_SUBSAMPLING = {
    "yuv420p": (1, 1), "yuvj420p": (1, 1), "nv12": (1, 1), "nv21": (1, 1),
    "yuv422p": (1, 0), "yuvj422p": (1, 0), "nv16": (1, 0),
    "yuv420p10le": (1, 1), "yuv422p10le": (1, 0),
}
_PADDING_ENCODERS = {"libx264", "libx265"}


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


def coded_size(fmt: str, height: int, width: int, color: bool, pix_fmt: str | None = None) -> tuple[int, int]:
    """(height, width) of the picture stored in the file for frames of `height` x `width`.

    Equal to the frame size except where the encoder needs whole chroma samples
    (4:2:0 / 4:2:2 H.264 and H.265 colour): there odd sizes are padded to even.
    """
    spec = get_format_spec(fmt)
    pix = pix_fmt or spec.default_pix_fmt(bool(color))
    sub_w, sub_h = _SUBSAMPLING.get(pix, (0, 0)) if spec.encoder(bool(color)) in _PADDING_ENCODERS else (0, 0)
    return -(-int(height) // (1 << sub_h)) * (1 << sub_h), -(-int(width) // (1 << sub_w)) * (1 << sub_w)


def written_size(fmt: str, height: int, width: int, color: bool, pix_fmt: str | None = None) -> tuple[int, int]:
    """(height, width) of the frames a chunk in `fmt` gives back: always the input size.

    Unlike the reference, which truncated odd sizes to even, nothing is cropped: where the
    codec needs even sizes the writer pads the stored picture (:func:`coded_size`) and
    :class:`VideoChunkReader` crops the padding off again.
    """
    get_format_spec(fmt)  # unknown formats raise
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"invalid frame size {height}x{width}")
    return int(height), int(width)


class VideoChunkWriter:
    """Encode frames into one video chunk file.

    Parameters
    ----------
    path : str or os.PathLike
        File to create (overwritten if it exists).  The muxer comes from `fmt`, not from
        the file name.
    fmt : str
        A key of :data:`VIDEO_FORMATS`.
    height, width : int
        Frame size.  Odd sizes are accepted everywhere; where the encoder needs even
        dimensions (4:2:0 / 4:2:2 H.264 and H.265) the frame is padded by repeating its
        last row / column and :class:`VideoChunkReader` crops it off again
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

    Notes
    -----
    Timestamps are set explicitly and strictly increase: ``pts`` comes from
    `frame_time` (seconds) relative to the first one when given, otherwise from the
    frame counter at `fps`; a `frame_time` that does not advance by at least one tick
    is moved one tick after the previous frame (the chunk index keeps the exact
    `frame_time`, the video only needs a monotonic timeline).  AVI cannot store
    timestamps, so there ``pts`` is always the frame counter.

    A writer is not thread-safe.
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
    ) -> None:
        self._spec = spec = get_format_spec(fmt)
        self._path = os.fspath(path)
        self._color = bool(color)
        if int(height) != height or int(width) != width or height < 1 or width < 1:
            raise ValueError(f"invalid frame size {height}x{width}")
        self._height, self._width = int(height), int(width)
        self._dtype = np.dtype(dtype)
        self._fps = _as_fraction(DEFAULT_FPS if fps is None else fps)
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
        self._next_pts = 0
        self._t0: float | None = None
        self._pts0 = 0
        self._last_pts: int | None = None

        opts: dict[str, str] = dict(spec.codec_options)
        if codec_name in ("libx264", "libx264rgb"):
            if spec.quality_option == "crf":
                if bitrate is None:
                    opts["crf"] = str(spec.default_quality if quality is None else quality)
            # bounded encoder delay: x264 holds back rc-lookahead frames (40 at
            # 'medium'); <= 10 frames keeps a SIGKILL from losing more than ~1/3 s of
            # frames at 30 fps (the muxer adds <= 250 ms), and fewer at low frame rates
            opts.setdefault("rc-lookahead", str(max(3, min(10, int(self._fps // 3)))))
        elif codec_name == "libx265":
            # x265 defaults to open GOPs, whose leading frames cannot be decoded after
            # a seek; and it holds back more frames than x264 (17 at rc-lookahead 10):
            # lookahead 5 (its minimum with 4 B-frames) keeps a crash loss near 20
            params = ["log-level=error", "open-gop=0", "rc-lookahead=5"]
            if bitrate is None:
                opts["crf"] = str(spec.default_quality if quality is None else quality)
            opts["x265-params"] = ":".join(params)
        elif codec_name == "mjpeg":
            if bitrate is None:
                q = spec.default_quality if quality is None else int(quality)
                if not 2 <= q <= 31:
                    raise ValueError(f"MJPEG quality (qscale) must be 2..31, not {q}")
                # a fixed quantiser: qmin == qmax pins the rate control to it (the
                # 'qscale' flag alone would need a per-frame quality PyAV cannot set)
                opts["qmin"] = opts["qmax"] = str(q)
        for k, v in (codec_options or {}).items():
            if v is None:  # None removes a default, e.g. {'tune': None}
                opts.pop(str(k), None)
            else:
                opts[str(k)] = str(v)

        try:
            self._container = av.open(self._path, mode="w", format=spec.muxer,
                                      options=dict(spec.container_options))
        except (av.error.FFmpegError, OSError) as exc:
            raise StoreWriteError(_errno_of(exc), f"cannot create video chunk: {exc}", self._path) from exc
        try:
            stream = self._container.add_stream(codec_name, rate=self._fps)
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
            raise UnsupportedFormatError(
                f"cannot encode {spec.name} {self._pix_fmt} {self._coded_h}x{self._coded_w}: {exc}"
            ) from exc
        self._stream_tb = Fraction(self._stream.time_base)
        scale = self._tb / self._stream_tb
        if scale.denominator != 1:
            self._abort()
            raise UnsupportedFormatError(f"muxer time base {self._stream_tb} cannot hold {self._tb} exactly")
        self._scale = int(scale)
        self._frame_pts: list[int] = []  # encoder-side pts, write order
        self._packets: dict[int, bool] = {}  # encoder-side pts (codec time base) -> keyframe
        self._first_dts: int | None = None
        self._last_dts: int | None = None
        self._max_step = self._tick  # largest pts step so far (bounds plausible dts)
        self._table: dict[str, np.ndarray] | None = None
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

    # -- writing -----------------------------------------------------------------------
    def _next_timestamp(self, frame_time: float | None) -> int:
        if self._spec.time_base is None or frame_time is None:
            pts = self._next_pts
        else:
            ft = float(frame_time)
            if not math.isfinite(ft):
                raise ValueError(f"frame_time must be finite, not {frame_time!r}")
            if self._t0 is None:
                self._t0, self._pts0 = ft, self._next_pts
            pts = self._pts0 + round((ft - self._t0) / self._tb)
        if self._last_pts is not None:
            if pts <= self._last_pts:
                pts = self._last_pts + 1
            self._max_step = max(self._max_step, pts - self._last_pts)
        self._last_pts = pts
        self._next_pts = pts + self._tick
        return pts

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
        imgstore.errors.StoreWriteError
            Encoding or writing failed (e.g. disk full) or the writer is closed.
        """
        if self._table is not None:
            raise StoreWriteError(errno.EBADF, "video chunk writer is closed", self._path)
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
        pts = self._next_timestamp(frame_time)
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
        return pts * self._scale

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            pts, dts = packet.pts, packet.dts
            # encoders derive dts from the pts of frames a few positions earlier, so a
            # dts far before the whole timeline is garbage
            lowest = self._frame_pts[0] - 32 * self._max_step
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
            self._container.mux(packet)

    def close(self) -> dict[str, np.ndarray]:
        """Flush the encoder, finish the file and return its frame table.

        Returns
        -------
        dict of str to numpy.ndarray
            ``'pts'`` (int64, stream time base, as a demuxer reports it for this file)
            and ``'keyframe'`` (bool), one row per written frame in write order (which is
            presentation order).  Store both in the chunk index and hand them back to
            :class:`VideoChunkReader`.  Calling ``close()`` again returns the same table.

        Raises
        ------
        imgstore.errors.StoreWriteError
            Flushing or finishing the file failed, or the file does not hold every frame.
        """
        if self._table is not None:
            return self._table
        try:
            self._mux(self._stream.encode(None))
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
        if self._spec.muxer == "mp4" and pts.size:
            pts = self._mp4_timeline(pts, key)
        self._table = {"pts": pts, "keyframe": key}
        return self._table

    def _mp4_timeline(self, pts: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Apply the MP4 muxer's timeline shift and check it against the file."""
        # FFmpeg's fragmented MP4 makes the first decode timestamp 0 (tfdt cannot be
        # negative), shifting every pts by -first_dts.  Verify on the first fragment
        # rather than trust it: the first packets (decode order) must carry shifted pts.
        shifted = pts - int(self._first_dts or 0) * self._scale
        container = _open_input(self._path)
        if container is None:
            raise StoreWriteError(errno.EIO, "finished MP4 chunk holds no frame", self._path)
        try:
            seen: list[int] = []
            for packet in container.demux(container.streams.video[0]):
                if packet.size == 0 or len(seen) >= min(len(pts), 64):
                    break
                seen.append(int(packet.pts))
        finally:
            _close_input(container)
        if not seen or min(seen) != shifted[0] or not set(seen) <= set(shifted.tolist()):
            # unknown muxer behaviour: fall back to the (slower) full demux
            table = build_frame_table(self._path)
            if len(table["pts"]) != len(pts):
                raise StoreWriteError(errno.EIO, "MP4 chunk does not hold every frame", self._path)
            return table["pts"]
        return shifted

    def _abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # already failing: keep the first error
            pass

    def __enter__(self) -> "VideoChunkWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._table is None:
            if exc_info[0] is None:
                self.close()
            else:
                try:
                    self.close()
                except Exception:  # keep the original exception
                    pass

    def __repr__(self) -> str:
        return (f"<VideoChunkWriter {self._path!r} {self._spec.name} {self._pix_fmt} "
                f"{self._height}x{self._width} frames={self.frame_count}>")


# ---------------------------------------------------------------------------------------
# reader
# ---------------------------------------------------------------------------------------

# limited-range ("TV", 16..235) luma -> full-range grey; bit-identical to what swscale
# (and hence PyAV's to_ndarray(format='gray')) computes, but a table lookup on the Y
# plane instead of a conversion pass
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_GREY_FORMATS = {"gray": np.uint8, "gray8": np.uint8, "gray16le": np.dtype("<u2")}
_FULL_RANGE_YUV = {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p"}
_PLANAR_YUV8 = {"yuv420p", "yuv422p", "yuv444p", "yuv440p", "yuv411p", "yuv410p", "nv12", "nv21", "nv16"}

# a grey read takes plane 0 as is ("plane"), through the range LUT ("lut"), or converts
_GREY_PLANE, _GREY_LUT, _GREY_CONVERT = 0, 1, 2

# AV_CODEC_CAP_FRAME_THREADS: the decoder supports frame threading
_CAP_FRAME_THREADS = 1 << 12


class _BgrConverter:
    """Decoded frame -> BGR ``ndarray``, the pixels of ``frame.to_ndarray(format='bgr24')``.

    The conversion runs in a libavfilter graph (``scale=flags=bilinear,format=bgr24``):
    the same swscale conversion as PyAV's :class:`VideoReformatter` with its default
    bilinear flag (bit-identical, tested on every format the writer produces and on the
    reference fixtures), but its output frames come from a buffer pool.  A reformatter
    allocates a new output buffer per frame; at 1920x1080 (6 MB) that fresh memory
    page-faulted on every frame in some processes (~1000 faults, 2.5 ms: more than the
    conversion itself), depending on how glibc's heuristics happened to settle.  Pooled
    buffers are reused once the caller drops the array of an earlier frame.  Graphs
    that FFmpeg cannot build (old FFmpeg without the buffer's colour options) fall back
    to the reformatter.
    """

    def __init__(self, reformatter: av.video.reformatter.VideoReformatter) -> None:
        self._reformatter = reformatter
        self._key: tuple | None = None
        self._graph: av.filter.Graph | None = None
        self._src = self._sink = None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        key = (frame.width, frame.height, frame.format.name, int(frame.color_range), int(frame.colorspace))
        if key != self._key:
            self._key = key
            self._graph = self._build(frame)
        if self._graph is not None:
            try:
                self._src.push(frame)
                return self._sink.pull().to_ndarray()
            except (av.error.FFmpegError, ValueError) as exc:
                _log.info("BGR conversion graph failed (%s); using the reformatter", exc)
                self._graph = None
        return self._reformatter.reformat(frame, format="bgr24", threads=1).to_ndarray()

    def _build(self, frame: av.VideoFrame) -> av.filter.Graph | None:
        try:
            graph = av.filter.Graph()
            # one thread: slicing the conversion competes with the decoder's threads
            # (1920x1080 sequential: 580 frames/s with FFmpeg's default, 850 with one)
            graph.threads = 1
            src = graph.add("buffer", video_size=f"{frame.width}x{frame.height}", pix_fmt=str(int(frame.format)),
                            time_base="1/1000", pixel_aspect="1/1", colorspace=str(int(frame.colorspace)),
                            range=str(int(frame.color_range)))
            # flags=bilinear: PyAV's reformatter default (what to_ndarray() uses); it
            # matters only where the conversion resamples chroma (odd sizes)
            scale = graph.add("scale", "flags=bilinear:threads=1")
            fmt = graph.add("format", "pix_fmts=bgr24")
            sink = graph.add("buffersink")
            src.link_to(scale)
            scale.link_to(fmt)
            fmt.link_to(sink)
            graph.configure()
        except (av.error.FFmpegError, ValueError, TypeError) as exc:
            _log.info("cannot build a BGR conversion graph (%s); using the reformatter", exc)
            return None
        self._src, self._sink = src, sink
        return graph


class _Lane:
    """One demuxer + decoder of a chunk and the position it will output next."""

    __slots__ = ("adaptive", "cc", "container", "cursor", "eof", "fresh", "packets", "pending", "stream",
                 "threaded", "used")

    def __init__(self) -> None:
        self.container: av.container.InputContainer | None = None
        self.stream = self.cc = None
        self.packets: Iterator[av.Packet] | None = None
        self.pending: collections.deque[av.VideoFrame] = collections.deque()
        self.eof = False  # no more packets from the demuxer (or the decoder was drained)
        self.cursor: int | None = None  # position the decoder will output next (None: unknown)
        self.fresh = False  # nothing fed to the decoder yet (its threads can still change)
        self.threaded = False  # the decoder uses frame threading
        self.adaptive = False  # its threading follows the access pattern
        self.used = 0  # when it last served a read

    def close(self) -> None:
        if self.container is not None:
            _close_input(self.container)
        self.container = self.stream = self.cc = self.packets = None
        self.pending.clear()
        self.cursor = None


class VideoChunkReader:
    """Read frames of one video chunk by 0-based position, exactly.

    Parameters
    ----------
    path : str or os.PathLike
        The video chunk.
    color : bool
        True: frames come back ``(height, width, 3)`` BGR uint8 (as OpenCV returns
        them); False: ``(height, width)`` grey (the luma plane).
    height, width : int, optional
        Frame size to return.  Decoded frames larger than this are cropped (padding
        added by :class:`VideoChunkWriter` for odd sizes); smaller ones are an error.
        None: the decoded size.
    frame_table : Mapping, optional
        ``'pts'`` and ``'keyframe'`` as returned by :meth:`VideoChunkWriter.close`.
        None (chunks written by other software, or by a writer that crashed): the table
        is built once by demuxing the file (:func:`build_frame_table`).
    threads : int, optional
        Decoder threads.  None (default): chosen per access pattern.  Frames of at least
        :attr:`THREADED_PIXELS` pixels or :attr:`HEAVY_FRAME_BYTES` compressed bytes
        (on average) always use FFmpeg frame+slice threading (one thread per core);
        FFV1 always decodes its slices in parallel.  Smaller frames of codecs with
        frame threading (H.264, H.265) decode single-threaded for random access and
        switch to frame threading for sequential reading: when a reader's first read is
        position 0, or after :attr:`SEQUENTIAL_RUN` reads in a row of the next
        position, at a keyframe; the first jump switches back.  Measured on 2 cores
        with a consumer between reads (docs/video-notes.md): frame threading reads
        640x480 sequentially 40-70 % faster but random access 25-30 % slower.
        1: strictly single-threaded.  0 (one per core) or N > 1: frame+slice threading
        whatever the size and access pattern.

    Notes
    -----
    Random access in long GOPs is served by up to :attr:`MAX_LANES` decoders ("lanes")
    for frames below :attr:`THREADED_PIXELS` (about 4 MB each at 640x480): each stays
    where its last read left it, and a read decodes forward from the lane closest
    before the target in the same GOP instead of from the keyframe.  A reader is not
    thread-safe.
    """

    #: frame area from which the default decoder always uses frame threading (~1280x720)
    THREADED_PIXELS = 900_000
    #: mean compressed frame size from which the default decoder always uses frame
    #: threading, like large frames (decoding time grows with the bytes to decode)
    HEAVY_FRAME_BYTES = 32 * 1024
    #: reads of the next position in a row after which a small-frame reader switches to
    #: frame threading (at a keyframe, where a new decoder costs no extra decoding)
    SEQUENTIAL_RUN = 30
    #: decoders a reader may keep for random access in long GOPs (small frames only)
    MAX_LANES = 4
    #: a seek opens another lane only for targets at least this far after their keyframe
    LANE_MIN_RUN = 32

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        color: bool,
        height: int | None = None,
        width: int | None = None,
        frame_table: Mapping[str, Any] | None = None,
        threads: int | None = None,
    ) -> None:
        self._path = os.fspath(path)
        self._color = bool(color)
        self._height = None if height is None else int(height)
        self._width = None if width is None else int(width)
        self._threads = None if threads is None else int(threads)
        if self._threads is not None and self._threads < 0:
            raise ValueError(f"threads must be >= 0, not {threads}")
        if frame_table is None:
            table = build_frame_table(self._path)
        else:
            table = frame_table
        self._pts, self._key = _check_table(table, self._path)
        n = len(self._pts)
        # position of the last keyframe at or before each position (-1: none)
        idx = np.where(self._key, np.arange(n), -1)
        self._kf_before = np.maximum.accumulate(idx) if n else idx
        self._intra = bool(np.all(self._key))
        try:
            # many bytes per frame (lossless H.264: ~95 KiB at 640x480) mean slow frames,
            # where frame threading also pays off for random access
            self._heavy = bool(n) and os.path.getsize(self._path) >= self.HEAVY_FRAME_BYTES * n
        except OSError:
            self._heavy = False
        self._lanes: list[_Lane] = []
        self._max_lanes = 1  # set when the first lane opens (depends on the codec)
        self._can_skip = False
        self._tick = 0
        self._grey_method: dict[tuple[str, int], int] = {}
        self._reformatter = av.video.reformatter.VideoReformatter()
        self._bgr = _BgrConverter(self._reformatter)
        #: counters for tests and benchmarks: demuxer seeks, retries after a seek that
        #: did not reach the target, (re)opens of the file (one per lane and per
        #: threading switch), frames decoded, switches between single-threaded and
        #: frame-threaded decoding, and the most lanes open at once
        self.stats = {"seeks": 0, "retries": 0, "opens": 0, "decoded": 0, "mode_switches": 0, "lanes": 0}
        self._reset_pattern()
        if n:
            self._open_lane(None, threaded=False)

    # -- state -------------------------------------------------------------------------
    def _reset_pattern(self) -> None:
        """Forget the access history."""
        self._last: int | None = None  # position of the previous read
        self._prev_jump = False  # the previous read was a jump (not reachable forward)
        self._run = 0  # reads in a row of the next position

    def _open_lane(self, lane: _Lane | None, threaded: bool) -> _Lane:
        """(Re)open `lane` (or a new one): a new demuxer at the start and a new decoder.

        `threaded` asks for frame threading where the thread policy is adaptive (see
        `threads` in the class docstring); fixed policies ignore it.
        """
        if lane is not None:
            lane.close()
        container = _open_input(self._path)
        if container is None:
            raise ChunkReadError(errno.EIO, "video chunk holds no frame", self._path)
        if lane is None:
            lane = _Lane()
            self._lanes.append(lane)
            self.stats["lanes"] = max(self.stats["lanes"], len(self._lanes))
        lane.container = container
        lane.stream = container.streams.video[0]
        lane.cc = lane.stream.codec_context
        lane.eof = False
        self.stats["opens"] += 1
        cc = lane.cc
        # skipping non-reference frames on the way to a target only pays off for codecs
        # with inter prediction
        self._can_skip = (not self._intra) and cc.name in ("h264", "hevc")
        large = (cc.width or 0) * (cc.height or 0) >= self.THREADED_PIXELS or self._heavy
        self._max_lanes = self.MAX_LANES if (self._can_skip and not large and self._threads in (None, 1)) else 1
        self._set_threads(lane, threaded, large)
        lane.packets = container.demux(lane.stream)
        lane.cursor = 0  # a fresh demuxer starts at the first frame
        lane.fresh = True
        return lane

    def _set_threads(self, lane: _Lane, threaded: bool, large: bool) -> None:
        """Thread settings; they only take effect when the decoder opens (first decode)."""
        cc = lane.cc
        lane.adaptive = False
        if self._threads is None and cc.name == "ffv1":
            # FFV1 slices decode in parallel without delaying output
            cc.thread_type, cc.thread_count = "SLICE", 0
        elif self._threads is None and large:
            cc.thread_type, cc.thread_count = "AUTO", 0
        elif self._threads is not None and self._threads != 1:
            cc.thread_type, cc.thread_count = "AUTO", self._threads
        elif self._threads is None and not self._intra and cc.codec.capabilities & _CAP_FRAME_THREADS:
            lane.adaptive = True
            if threaded:
                cc.thread_type, cc.thread_count = "FRAME", 0
            else:
                cc.thread_type, cc.thread_count = "NONE", 1
        else:
            cc.thread_type, cc.thread_count = "NONE", 1
        lane.threaded = cc.thread_count != 1

    def _switch_threads(self, lane: _Lane, threaded: bool) -> None:
        """Continue with a decoder of the other threading mode in `lane` (a fresh one)."""
        self.stats["mode_switches"] += 1
        if lane.fresh:
            # nothing decoded yet: no need to reopen (adaptive lanes are never "large")
            self._set_threads(lane, threaded, large=False)
        else:
            self._open_lane(lane, threaded)

    def _choose_lane(self, position: int, kf: int) -> _Lane:
        """The lane that reaches `position` with the least decoding."""
        best = None
        for lane in self._lanes:
            c = lane.cursor
            if c is not None and kf <= c <= position and (best is None or c > best.cursor):
                best = lane
        if best is None:
            # a seek: another lane for targets far from their keyframe keeps the lanes
            # spread over a long GOP; otherwise reuse an idle or the least recent one
            if len(self._lanes) < self._max_lanes and position - kf >= self.LANE_MIN_RUN:
                best = self._open_lane(None, threaded=False)
            else:
                idle = [lane for lane in self._lanes if lane.cursor is None]
                best = idle[0] if idle else min(self._lanes, key=lambda lane: lane.used)
        self._tick += 1
        best.used = self._tick
        return best

    # -- public ------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return self._path

    @property
    def frame_table(self) -> dict[str, np.ndarray]:
        """The table in use (copies): ``'pts'`` and ``'keyframe'``."""
        return {"pts": self._pts.copy(), "keyframe": self._key.copy()}

    @property
    def keyframe_positions(self) -> np.ndarray:
        """Positions of the keyframes."""
        return np.flatnonzero(self._key)

    def __len__(self) -> int:
        return len(self._pts)

    def read(self, position: int) -> np.ndarray:
        """Return the frame at 0-based `position` (presentation order) in the chunk.

        Reading ``position == last + 1`` decodes the next frame without seeking.  Any
        other position either decodes forward from a decoder positioned before it in
        the same GOP (a seek could not save work) or seeks to the keyframe at or before
        it and decodes forward to the frame whose pts is the table's.  If that fails (a
        demuxer that seeks by decode time, an open GOP, a damaged file) it seeks one
        keyframe earlier and finally decodes from the start.

        Returns
        -------
        numpy.ndarray
            ``(height, width)`` grey or ``(height, width, 3)`` BGR, a new array.

        Raises
        ------
        imgstore.errors.FrameIndexError
            `position` is not in ``0 .. len(self) - 1``.
        imgstore.errors.ChunkReadError
            The frame cannot be decoded (never a wrong frame instead).
        """
        n = len(self._pts)
        if isinstance(position, (bool, np.bool_)) or not isinstance(position, (int, np.integer)):
            raise TypeError(f"position must be an integer, not {type(position).__name__}")
        position = int(position)
        if not 0 <= position < n:
            raise FrameIndexError(f"position {position} outside 0..{n - 1} of {self._path}")
        if not self._lanes:
            self._open_lane(None, threaded=False)
        target = int(self._pts[position])
        kf = int(self._kf_before[position])

        # a "jump" cannot be served by decoding on from the previous read
        last = self._last
        jump = last is not None and not (last < position and kf <= last + 1)
        # two jumps in a row look like random access: then drain the decoder right
        # after the target's packet instead of decoding the frames its reorder buffer
        # holds back (~2 frames for x264); a drained decoder cannot go on, so the
        # first jump after forward reading does not drain, nor does a read far into a
        # long GOP when lanes keep decoders there
        drain = jump and self._prev_jump and (self._max_lanes == 1 or position - kf < self.LANE_MIN_RUN)
        self._prev_jump = jump
        self._last = position
        self._run = self._run + 1 if (last is not None and position == last + 1) else 0

        lane = self._choose_lane(position, kf)
        if lane.adaptive:
            # frame threading for sequential reading, one thread for random access
            if lane.threaded:
                if jump:
                    self._switch_threads(lane, False)
            elif (lane.fresh and position == 0 and last is None) or (
                    self._run >= self.SEQUENTIAL_RUN and self._key[position]):
                # a reader started at the first frame, or a long run of next frames
                # reaching a keyframe (a new decoder starts there without extra work)
                self._switch_threads(lane, True)

        frame = None
        cursor = lane.cursor
        if cursor is not None and cursor <= position and kf <= cursor:
            # the decoder is at or before the target in the same GOP: decode on
            frame = self._decode_to(lane, target, drain=False)
        if frame is None:
            frame = self._seek_and_decode(lane, position, target, kf, drain)
        lane.cursor = None if lane.eof and not lane.pending else position + 1
        return self._to_array(frame)

    def _seek_and_decode(self, lane: _Lane, position: int, target: int, kf: int, drain: bool) -> av.VideoFrame:
        attempts: list[int | None] = []
        if kf >= 0:
            attempts.append(kf)
            prev = int(self._kf_before[kf - 1]) if kf > 0 else -1
            if prev >= 0:
                attempts.append(prev)
        attempts.append(None)  # from the very start
        last_error: Exception | None = None
        for i, start in enumerate(attempts):
            if i:
                self.stats["retries"] += 1
            try:
                if start is None:
                    self._open_lane(lane, lane.threaded)
                else:
                    self._seek(lane, start)
            except (av.error.FFmpegError, OSError) as exc:
                last_error = exc
                continue
            frame = self._decode_to(lane, target, drain=drain)
            if frame is not None:
                return frame
        lane.cursor = None
        raise ChunkReadError(
            errno.EIO,
            f"frame at position {position} (pts {target}) cannot be decoded"
            + (f": {last_error}" if last_error else ""),
            self._path,
        )

    def _seek(self, lane: _Lane, kf_position: int) -> None:
        lane.cursor = None
        lane.pending.clear()
        lane.eof = False
        self.stats["seeks"] += 1
        lane.container.seek(int(self._pts[kf_position]), stream=lane.stream, backward=True, any_frame=False)
        # PyAV flushes the decoders on seek; flushing again is cheap and also leaves
        # the draining state explicitly
        lane.cc.flush_buffers()
        lane.packets = lane.container.demux(lane.stream)

    def _decode_to(self, lane: _Lane, target: int, drain: bool) -> av.VideoFrame | None:
        """Decode forward to the frame with pts `target`; None if it is passed or absent."""
        pending = lane.pending
        while True:
            while not pending:
                if lane.eof:
                    return None
                self._feed(lane, target, drain)
            frame = pending.popleft()
            pts = frame.pts
            if pts is None:
                pts = frame.dts
                if pts is None:
                    raise ChunkReadError(errno.EIO, "decoded frame without timestamp", self._path)
            if pts == target:
                return frame
            if pts > target:
                # the target was skipped (not decodable from here): the caller seeks
                lane.cursor = None
                return None

    def _feed(self, lane: _Lane, target: int, drain: bool) -> None:
        """Demux and decode one packet into the lane's pending frames."""
        lane.fresh = False
        try:
            packet = next(lane.packets)
        except StopIteration:
            lane.eof = True
            return
        except av.error.FFmpegError as exc:
            # a truncated file: drain what the decoder holds and stop
            _log.warning("%s: demuxing failed: %s", self._path, exc)
            self._drain(lane)
            return
        cc = lane.cc
        pts = packet.pts
        if self._can_skip:
            # frames before the target that nothing else references need not be
            # decoded (the non-reference B-frames of an x264 GOP)
            skip = pts is not None and pts < target and not packet.is_keyframe
            cc.skip_frame = "NONREF" if skip else "DEFAULT"
        try:
            frames = cc.decode(packet)
        except av.error.FFmpegError as exc:
            # a damaged packet: its frame will be missing, which the pts check reports
            _log.warning("%s: decoding failed at pts %s: %s", self._path, pts, exc)
            return
        self.stats["decoded"] += len(frames)
        lane.pending.extend(frames)
        if drain and pts == target and packet.size:
            self._drain(lane)

    def _drain(self, lane: _Lane) -> None:
        """Flush every frame the decoder holds; it cannot take packets until a seek."""
        lane.eof = True
        try:
            frames = lane.cc.decode(None)
        except av.error.FFmpegError:
            return
        self.stats["decoded"] += len(frames)
        lane.pending.extend(frames)

    def _to_array(self, frame: av.VideoFrame) -> np.ndarray:
        fh, fw = frame.height, frame.width
        h = fh if self._height is None else self._height
        w = fw if self._width is None else self._width
        if fh < h or fw < w:
            raise ChunkReadError(errno.EIO, f"decoded frame {fh}x{fw} smaller than {h}x{w}", self._path)
        if self._color:
            arr = self._bgr(frame)
            if fh != h or fw != w:
                arr = np.ascontiguousarray(arr[:h, :w])
            return arr
        fmt = frame.format.name
        key = (fmt, int(frame.color_range))
        method = self._grey_method.get(key)
        if method is None:
            method = self._grey_method[key] = self._choose_grey(fmt, key[1])
        if method == _GREY_CONVERT:
            arr = self._reformatter.reformat(frame, format="gray", threads=1).to_ndarray()
            return np.ascontiguousarray(arr[:h, :w]) if (fh != h or fw != w) else arr
        # the Y plane as it sits in the decoder's buffer (rows padded to line_size)
        plane = frame.planes[0]
        dt = np.dtype(_GREY_FORMATS.get(fmt, np.uint8))
        buf = np.frombuffer(plane, dtype=dt)
        rows = buf.reshape(-1, plane.line_size // dt.itemsize)[:h, :w]
        if method == _GREY_LUT:
            return _LIMITED_TO_FULL[rows]  # fancy indexing makes the copy
        return rows.copy()

    @staticmethod
    def _choose_grey(fmt: str, color_range: int) -> int:
        if fmt in _GREY_FORMATS or fmt in _FULL_RANGE_YUV:
            return _GREY_PLANE
        if fmt in _PLANAR_YUV8:
            # full range (AVCOL_RANGE_JPEG): Y is the grey value; otherwise 16..235
            return _GREY_PLANE if color_range == 2 else _GREY_LUT
        return _GREY_CONVERT  # RGB-like formats: let swscale compute luma

    def close(self) -> None:
        """Release the file (reading again reopens it)."""
        for lane in self._lanes:
            lane.close()
        self._lanes = []
        self._reset_pattern()

    def __enter__(self) -> "VideoChunkReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<VideoChunkReader {self._path!r} frames={len(self)}>"
