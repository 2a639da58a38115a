"""Frame tables: what a video chunk holds, frame by frame, read from its packets.

A *frame table* has one row per frame in presentation order:

``pts``
    the presentation timestamp (int64, in the video stream's time base) of the frame as
    a demuxer reports it for this file;
``keyframe``
    whether the frame is a keyframe, i.e. a point where decoding can start after a seek.

:class:`~.writer.VideoChunkWriter` returns this table from ``close()`` (the caller stores it
in the chunk's ``.npz``); for chunks written by other software, or whose writer died before
``close()``, :func:`build_frame_table` derives it by demuxing the file (packets only, no
decoding).

This module owns opening a chunk for reading (:func:`open_input` / :func:`close_input`),
including what a writer killed mid-file left behind (an MP4 cut inside a fragment is
opened up to its last complete box; a reordered stream cut short keeps only the frames
that cannot hide a hole), demuxing the table, and checking a table handed in by a caller
(:func:`check_table`).
"""

from __future__ import annotations

import errno
import io
import logging
import os
from collections.abc import Callable, Mapping
from typing import IO, Any

import av
import av.error
import av.video.stream
import numpy as np

from ...checksums import payload_digest
from ...errors import ChunkReadError, IndexCorruptError

__all__ = ["FRAME_TABLE_KEYS", "PACKET_DIGESTS", "build_frame_table", "check_table", "close_input", "open_input",
           "packet_digest_seed"]

#: the frame-table key of each frame's packet checksum, as the demuxer returns the packet
#: (see imgstore.backends.payload_checks)
PACKET_DIGESTS = "payload_xxh3"


def packet_digest_seed(stream: av.video.stream.VideoStream) -> int:
    """The seed of a stream's packet checksums: the digest of what decoding also depends on.

    That is the codec header (SPS/PPS...) and the picture parameters the demuxer reports
    (size, pixel format, range, colour space): some decoders take them from the container
    (FFV1's width from Matroska's PixelWidth), so damage there would change every frame
    while no packet changed. Covering them fails every packet's checksum instead.
    """
    cc = stream.codec_context
    params = (f"{cc.width}x{cc.height}:{cc.pix_fmt}:{cc.color_range}:"
              f"{getattr(cc, 'colorspace', '')}").encode()
    return payload_digest(bytes(cc.extradata or b"") + params)


_log = logging.getLogger(__name__)

#: returns a new seekable binary file object of a chunk (remote storage)
Opener = Callable[[], IO[bytes]]

#: Keys of a frame table (see the module docstring).
FRAME_TABLE_KEYS = ("pts", "keyframe")


class _TruncatedView(io.RawIOBase):
    """The first `limit` bytes of a file, for demuxers that reject a partial last box."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__()
        self._f = open(path, "rb")  # noqa: SIM115  (closed by close(), with the view)
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


def open_input(path: str | os.PathLike[str], opener: Opener | None = None) -> av.container.InputContainer | None:
    """Open a chunk for reading; None for a file that holds no frame at all.

    With ``opener`` (a chunk on remote storage) the chunk is read from the seekable file
    object it returns, ``path`` only names it.
    """
    path = os.fspath(path)
    if opener is not None:
        return _open_file_object(path, opener)
    if not os.path.exists(path):
        raise ChunkReadError(errno.ENOENT, "video chunk not found", path)
    container: av.container.InputContainer | None
    try:
        container = av.open(path, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        container = _open_cut_short(path, exc)
        if container is None:
            return None
    if not container.streams.video:
        close_input(container)
        raise ChunkReadError(errno.EIO, "video chunk has no video stream", path)
    return container


def _open_file_object(path: str, opener: Opener) -> av.container.InputContainer:
    """Open a chunk from a file object (remote storage holds only complete chunks: no recovery)."""
    try:
        container = av.open(opener(), mode="r")
    except ChunkReadError:
        raise
    except (av.error.FFmpegError, ValueError) as exc:
        raise ChunkReadError(errno.EIO, f"cannot open video chunk: {exc}", path) from exc
    if not container.streams.video:
        close_input(container)
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


def close_input(container: av.container.InputContainer) -> None:
    """Close a container from :func:`open_input` (and the truncated view it may read from)."""
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
        end_us = float(end * stream.time_base) * 1e6  # type: ignore[operator]  # demuxed: has a time base
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
        if not _is_complete(container, path, len(pts), end):  # type: ignore[arg-type]  # set: pts is not empty
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


def build_frame_table(path: str | os.PathLike[str], opener: Opener | None = None) -> dict[str, np.ndarray]:
    """Build a chunk's frame table by demuxing it (packets only, nothing is decoded).

    Parameters
    ----------
    path : str or os.PathLike
        The video chunk.
    opener : callable, optional
        Returns a seekable binary file object of the chunk (remote storage); ``path`` then
        only names it.

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
    container = open_input(path, opener)
    if container is None:
        return _empty_table()
    try:
        return _demux_table(container, os.fspath(path))
    finally:
        close_input(container)


def check_table(table: Mapping[str, Any], path: str) -> tuple[np.ndarray, np.ndarray]:
    """A caller's frame table as (pts int64, keyframe bool) arrays; IndexCorruptError if malformed."""
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
