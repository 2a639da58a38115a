"""Reading one video chunk by frame position: decoder lanes, seeks and the thread policy.

Owns :class:`VideoChunkReader`.  Every decoded frame's ``pts`` is compared with the chunk's
frame table (:mod:`.frame_table`): a frame that cannot be found raises
:class:`imgstore.errors.ChunkReadError` rather than returning a neighbour.  Random access
in long GOPs keeps up to :attr:`VideoChunkReader.MAX_LANES` decoders ("lanes") where their
last reads left them; small frames switch between single-threaded decoding (random
access) and frame threading (sequential reading) as the access pattern changes.  Turning a
decoded frame into an array is :mod:`.pixels`' job.

See ``docs/video-notes.md`` for the measurements behind the defaults chosen here.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import av
import av.error
import av.video.reformatter
import numpy as np

from ...checksums import payload_digest
from ...errors import ChunkCorruptError, ChunkReadError, FrameIndexError
from .frame_cache import FrameCache, frame_nbytes
from .frame_table import (
    PACKET_DIGESTS,
    Opener,
    build_frame_table,
    check_table,
    open_input,
    packet_digest_seed,
)
from .lane import DecoderLane
from .pixels import BgrConverter, GreyConverter

__all__ = ["PACKET_DIGESTS", "VideoChunkReader"]

_log = logging.getLogger(__name__)

# AV_CODEC_CAP_FRAME_THREADS: the decoder supports frame threading
_CAP_FRAME_THREADS = 1 << 12


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
        added by :class:`~.writer.VideoChunkWriter` for odd sizes); smaller ones are an error.
        None: the decoded size.
    frame_table : Mapping, optional
        ``'pts'`` and ``'keyframe'`` as returned by :meth:`.writer.VideoChunkWriter.close`,
        and optionally ``'payload_xxh3'``, each frame's packet checksum: every packet fed to
        the decoder is checked against it (:class:`~imgstore.errors.ChunkCorruptError`).
        None (chunks written by other software, or by a writer that crashed): the table
        is built once by demuxing the file (:func:`build_frame_table`).
    threads : int, optional
        Decoder threads.  None (default): chosen per access pattern.  Frames of at least
        :attr:`THREADED_PIXELS` pixels or :attr:`HEAVY_FRAME_BYTES` compressed bytes
        (on average) use one thread per core: frame+slice threading, or for H.264 of
        several slices per frame (not heavy) slice threads for random access and frame
        threads for sequential reading, switching like small frames (below).  FFV1
        decodes its slices in parallel.  Smaller frames of codecs with frame
        threading (H.264, H.265) decode single-threaded for random access and
        switch to frame threading for sequential reading: when a reader's first read is
        position 0, or after :attr:`SEQUENTIAL_RUN` reads in a row of the next
        position, at a keyframe; the first jump switches back.  Measured on 2 cores
        with a consumer between reads (docs/video-notes.md): frame threading reads
        640x480 sequentially 40-70 % faster but random access 25-30 % slower.
        1: strictly single-threaded.  0 (one per core) or N > 1: frame+slice threading
        whatever the size and access pattern.
    opener : callable, optional
        Returns a new seekable binary file object of the chunk (a chunk on remote storage,
        read by range requests); `path` then only names it.  Each decoder lane opens its own.
    size : int, optional
        The chunk's size in bytes (with `opener`; None: from the file system).
    cache : FrameCache, optional
        Decoded frames shared by the readers of a store, under ``(cache_key, position)``:
        looked up before decoding, filled while reads step backwards (the window before
        the target), so that stepping backwards and scrubbing over a window decode once
        (see :mod:`.frame_cache`).
    cache_key : hashable, optional
        This chunk's key in `cache` (default: the path).

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
    #: a read at most this many frames before the previous one is a step back (scrubbing):
    #: the frames before it are kept in the frame cache for the next steps
    STEP_BACK = 16

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        color: bool,
        height: int | None = None,
        width: int | None = None,
        frame_table: Mapping[str, Any] | None = None,
        threads: int | None = None,
        opener: Opener | None = None,
        size: int | None = None,
        cache: FrameCache | None = None,
        cache_key: Hashable | None = None,
    ) -> None:
        self._path = os.fspath(path)
        self._opener = opener
        self._cache = cache
        self._cache_key = self._path if cache_key is None else cache_key
        self._color = bool(color)
        self._height = None if height is None else int(height)
        self._width = None if width is None else int(width)
        self._threads = None if threads is None else int(threads)
        if self._threads is not None and self._threads < 0:
            raise ValueError(f"threads must be >= 0, not {threads}")
        table = build_frame_table(self._path, opener) if frame_table is None else frame_table
        self._pts, self._key = check_table(table, self._path)
        n = len(self._pts)
        # the checksum of each frame's packet as written (chunks written by this package)
        digests = table.get(PACKET_DIGESTS)
        self._digests = None if digests is None or len(digests) != n else np.asarray(digests, dtype=np.uint64)
        # position of the last keyframe at or before each position (-1: none)
        idx = np.where(self._key, np.arange(n), -1)
        self._kf_before = np.maximum.accumulate(idx) if n else idx
        self._intra = bool(np.all(self._key))
        try:
            # many bytes per frame (lossless H.264: ~95 KiB at 640x480) mean slow frames,
            # where frame threading also pays off for random access
            nbytes = os.path.getsize(self._path) if size is None else int(size)
            self._heavy = bool(n) and nbytes >= self.HEAVY_FRAME_BYTES * n
        except OSError:
            self._heavy = False
        self._lanes: list[DecoderLane] = []
        self._large = False  # frames decoded with every core whatever the access pattern (set with the first lane)
        self._slices: int | None = None  # slices per frame of large H.264 frames (0: unknown or not used)
        self._max_lanes = 1  # set when the first lane opens (depends on the codec)
        self._can_skip = False
        self._tick = 0
        # one reformatter: the grey conversion and the colour fallback share it
        reformatter = av.video.reformatter.VideoReformatter()
        self._bgr = BgrConverter(reformatter)
        self._grey = GreyConverter(reformatter)
        #: counters for tests and benchmarks: demuxer seeks, retries after a seek that
        #: did not reach the target, (re)opens of the file (one per lane and per
        #: threading switch), frames decoded, switches between single-threaded and
        #: frame-threaded decoding, and the most lanes open at once
        self.stats = {"seeks": 0, "retries": 0, "opens": 0, "decoded": 0, "mode_switches": 0, "lanes": 0}
        self._batch_threads: bool | None = None  # threading asked for by read_many
        # frames from this pts on are decoded (and cached) even if nothing references them
        self._keep_from_pts = 0
        # frames decoded go to the cache only while reads step back and forth over a window: a
        # cached frame keeps its buffer from FFmpeg's pool, so caching every frame made the
        # decoder page-fault fresh buffers (a 100-frame batch at keyframe 250 took 170 ms, now 80)
        self._scrubbing = False
        self._frame_bytes = 1  # decoded size of a frame (known after the first)
        self._reset_pattern()
        if n:
            self._open_lane(None, threaded=False)

    # -- state -------------------------------------------------------------------------
    def _reset_pattern(self) -> None:
        """Forget the access history."""
        self._last: int | None = None  # position of the previous read
        self._prev_jump = False  # the previous read was a jump (not reachable forward)
        self._run = 0  # reads in a row of the next position

    def _open_lane(self, lane: DecoderLane | None, threaded: bool) -> DecoderLane:
        """(Re)open `lane` (or a new one): a new demuxer at the start and a new decoder.

        `threaded` asks for frame threading where the thread policy is adaptive (see
        `threads` in the class docstring); fixed policies ignore it.
        """
        if lane is not None:
            lane.close()
        container = open_input(self._path, self._opener)
        if container is None:
            raise ChunkReadError(errno.EIO, "video chunk holds no frame", self._path)
        if lane is None:
            lane = DecoderLane()
            self._lanes.append(lane)
            self.stats["lanes"] = max(self.stats["lanes"], len(self._lanes))
        lane.container = container
        lane.stream = container.streams.video[0]
        lane.cc = lane.stream.codec_context
        lane.digest_seed = packet_digest_seed(lane.stream) if self._digests is not None else 0
        lane.eof = False
        self.stats["opens"] += 1
        cc = lane.cc
        # skipping non-reference frames on the way to a target: codecs with inter prediction
        self._can_skip = (not self._intra) and cc.name in ("h264", "hevc")
        self._large = large = (cc.width or 0) * (cc.height or 0) >= self.THREADED_PIXELS or self._heavy
        self._max_lanes = self.MAX_LANES if (self._can_skip and not large and self._threads in (None, 1)) else 1
        lane.packets = container.demux(lane.stream)
        if self._slices is None:  # slices per frame: they decide the threads for random access
            self._slices = lane.peek_slices() if (large and cc.name == "h264") else 0
        self._set_threads(lane, threaded, large)
        lane.cursor, lane.fresh = 0, True  # a fresh demuxer starts at the first frame
        return lane

    def _set_threads(self, lane: DecoderLane, threaded: bool, large: bool) -> None:
        """Thread settings; they only take effect when the decoder opens (first decode)."""
        cc = lane.cc
        lane.adaptive = False
        frame_threads = self._threads is None and not self._intra and cc.codec.capabilities & _CAP_FRAME_THREADS
        if self._threads is None and cc.name == "ffv1":
            # FFV1 slices decode in parallel without delaying output
            cc.thread_type, cc.thread_count = "SLICE", 0
        elif large and frame_threads and self._can_skip and not self._heavy and (self._slices or 0) > 1:
            # large frames of several slices (ours): slice threads for random access, where
            # the non-reference frames before the target are skipped and frame threads
            # restart their pipeline after each seek (1080p, keyframe 250, 2 cores: 52-59
            # ms per read with frame threads, 31-37 with slices; one slice per frame would
            # decode on one thread, 5 % slower; PERF_NOTES.md).  Heavy frames (lossless:
            # nothing to skip) keep frame threads, which pay off there (docs/video-notes.md)
            lane.adaptive = True
            cc.thread_type, cc.thread_count = ("AUTO" if threaded else "SLICE"), 0
        elif self._threads is None and large:
            cc.thread_type, cc.thread_count = "AUTO", 0
        elif self._threads is not None and self._threads != 1:
            cc.thread_type, cc.thread_count = "AUTO", self._threads
        elif frame_threads:
            lane.adaptive = True
            cc.thread_type, cc.thread_count = ("FRAME", 0) if threaded else ("NONE", 1)
        else:
            cc.thread_type, cc.thread_count = "NONE", 1
        # "threaded": frame threads (an adaptive lane's sequential mode)
        lane.threaded = bool(threaded) if lane.adaptive else cc.thread_count != 1

    def _switch_threads(self, lane: DecoderLane, threaded: bool) -> None:
        """Continue with a decoder of the other threading mode in `lane` (a fresh one)."""
        self.stats["mode_switches"] += 1
        if lane.fresh:
            # nothing decoded yet: no need to reopen
            self._set_threads(lane, threaded, self._large)
        else:
            self._open_lane(lane, threaded)

    def _choose_lane(self, position: int, kf: int) -> DecoderLane:
        """The lane that reaches `position` with the least decoding."""
        best = None
        for lane in self._lanes:
            c = lane.cursor
            if c is not None and kf <= c <= position and (best is None or c > best.cursor):  # type: ignore[operator]
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
        cached = self._cached(position)
        if cached is not None:
            self._run = self._run + 1 if (self._last is not None and position == self._last + 1) else 0
            self._last = position
            return self._to_array(cached)
        return self._to_array(self._decode_position(position))

    def _cached(self, position: int) -> av.VideoFrame | None:
        return None if self._cache is None else self._cache.get((self._cache_key, position))

    def _decode_position(self, position: int, drain: bool | None = None) -> av.VideoFrame:
        """Decode the frame at `position`; `drain` None: decided from the access history."""
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
        if drain is None:
            drain = jump and self._prev_jump and (self._max_lanes == 1 or position - kf < self.LANE_MIN_RUN)
        self._keep_from_pts = target
        if self._cache is not None and last is not None and 0 < last - position <= self.STEP_BACK:
            # stepping backwards: decode every frame of the window before the target too
            # (none skipped), so that the next steps back find them in the cache
            window = self._cache.max_bytes * 3 // 4 // max(1, self._frame_bytes)
            self._keep_from_pts = int(self._pts[max(kf, position - window + 1)])
            self._scrubbing = True
        elif last is not None and abs(position - last) > self.STEP_BACK:
            self._scrubbing = False
        self._prev_jump = jump
        self._last = position
        self._run = self._run + 1 if (last is not None and position == last + 1) else 0

        lane = self._choose_lane(position, kf)
        if lane.adaptive and self._batch_threads is not None:
            if lane.threaded != self._batch_threads:
                self._switch_threads(lane, self._batch_threads)
        elif lane.adaptive:
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
        return frame

    def read_many(self, positions: Sequence[int] | np.ndarray, out: np.ndarray, rows: Sequence[int] | None = None,
                  threaded: bool | None = None) -> None:
        """Write the frames at strictly increasing `positions` into ``out[rows]``, each decoded once.

        A GOP's frames are decoded in one forward pass from its keyframe (or from a decoder
        already in it), draining the decoder only after the last one when the next needs a
        seek.  `rows`: default ``0 .. len(positions) - 1``.  `threaded`: frame threading for
        small-frame decoders (False when the caller decodes other chunks on the other
        cores); None: when the batch decodes on average at least :attr:`LANE_MIN_RUN`
        frames per seek (frame threading reads runs 40-70 % faster, docs/video-notes.md).
        """
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        n = len(self._pts)
        if len(pos) and (pos[0] < 0 or pos[-1] >= n or np.any(pos[1:] <= pos[:-1])):
            raise FrameIndexError(f"positions must be strictly increasing within 0..{n - 1} of {self._path}")
        kfs = self._kf_before[pos]
        if threaded is None and len(pos):
            # frames decoded per GOP visited: from the keyframe to the last target in it
            last_in_gop = np.r_[kfs[1:] != kfs[:-1], True]
            threaded = bool(np.sum(pos[last_in_gop] - kfs[last_in_gop] + 1) >= self.LANE_MIN_RUN * last_in_gop.sum())
        self._batch_threads = threaded
        self._scrubbing = False
        try:
            for k, p in enumerate(pos.tolist()):
                frame = self._cached(p)
                if frame is None:
                    nxt = k + 1 < len(pos)
                    drain = not nxt or (kfs[k + 1] != kfs[k] and kfs[k + 1] > p + 1)
                    frame = self._decode_position(p, drain=bool(drain))
                self._to_array(frame, out[k if rows is None else rows[k]])
        finally:
            self._batch_threads = None

    @property
    def parallel_decoding(self) -> bool:
        """True if this reader's decoders use several cores whatever the access pattern."""
        if self._lanes and self._lanes[0].cc is not None:
            lane = self._lanes[0]
            return self._large or (not lane.adaptive and lane.cc.thread_count != 1)
        return self._threads not in (None, 1)

    def _seek_and_decode(self, lane: DecoderLane, position: int, target: int, kf: int, drain: bool) -> av.VideoFrame:
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

    def _seek(self, lane: DecoderLane, kf_position: int) -> None:
        lane.cursor = None
        lane.pending.clear()
        lane.eof = False
        self.stats["seeks"] += 1
        lane.container.seek(int(self._pts[kf_position]), stream=lane.stream, backward=True, any_frame=False)
        # PyAV flushes the decoders on seek; flushing again is cheap and also leaves
        # the draining state explicitly
        lane.cc.flush_buffers()
        lane.packets = lane.container.demux(lane.stream)

    def _decode_to(self, lane: DecoderLane, target: int, drain: bool) -> av.VideoFrame | None:
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
            if self._scrubbing and self._cache is not None:
                position = int(np.searchsorted(self._pts, pts))
                if position < len(self._pts) and self._pts[position] == pts:
                    self._cache.put((self._cache_key, position), frame)
            if pts == target:
                return frame
            if pts > target:
                # the target was skipped (not decodable from here): the caller seeks
                lane.cursor = None
                return None

    def _feed(self, lane: DecoderLane, target: int, drain: bool) -> None:
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
        if self._digests is not None and packet.size:
            try:
                self._check_packet(packet, pts, lane.digest_seed)
            except ChunkCorruptError:
                # the decoder never sees the packet: frames after it cannot be decoded on
                # from this lane (they would reference a frame it lacks); the next read seeks
                lane.cursor = None
                lane.pending.clear()
                raise
        if self._can_skip:
            # frames before the target that nothing else references need not be
            # decoded (the non-reference B-frames of an x264 GOP)
            skip = pts is not None and pts < min(target, self._keep_from_pts) and not packet.is_keyframe
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

    def _check_packet(self, packet: av.Packet, pts: int | None, seed: int) -> None:
        """Raise :class:`ChunkCorruptError` unless the packet's bytes are those written for its frame."""
        assert self._digests is not None
        position = int(np.searchsorted(self._pts, pts)) if pts is not None else -1
        if not 0 <= position < len(self._pts) or self._pts[position] != pts:
            return  # not a frame of the table: the pts check reports what is missing
        got = payload_digest(packet, seed)
        want = int(self._digests[position])
        if got != want:
            raise ChunkCorruptError(
                f"{self._path}: the packet of frame {position} (pts {pts}) fails its checksum: its bytes changed "
                f"after they were written (xxh3 {got:016x}, recorded {want:016x})")

    def _drain(self, lane: DecoderLane) -> None:
        """Flush every frame the decoder holds; it cannot take packets until a seek."""
        lane.eof = True
        try:
            frames = lane.cc.decode(None)
        except av.error.FFmpegError:
            return
        self.stats["decoded"] += len(frames)
        lane.pending.extend(frames)

    def _to_array(self, frame: av.VideoFrame, out: np.ndarray | None = None) -> np.ndarray:
        fh, fw = frame.height, frame.width
        self._frame_bytes = frame_nbytes(frame)
        h = fh if self._height is None else self._height
        w = fw if self._width is None else self._width
        if fh < h or fw < w:
            raise ChunkReadError(errno.EIO, f"decoded frame {fh}x{fw} smaller than {h}x{w}", self._path)
        if self._color:
            arr = self._bgr(frame)
            if out is not None:
                out[...] = arr[:h, :w]
                return out
            if fh != h or fw != w:
                arr = np.ascontiguousarray(arr[:h, :w])
            return arr
        return self._grey(frame, h, w, out)

    def close(self) -> None:
        """Release the file (reading again reopens it)."""
        for lane in self._lanes:
            lane.close()
        self._lanes = []
        self._reset_pattern()

    def __enter__(self) -> VideoChunkReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<VideoChunkReader {self._path!r} frames={len(self)}>"
