"""A chunk's container timeline: strictly increasing integer pts from frame times.

The chunk index keeps every frame's exact ``frame_time``; the video file only needs a
timeline that increases and that its container can hold. :class:`Timeline` turns frame
times (seconds, any finite float) into pts (ticks of the stream's time base):

* the first frame gets the starting pts; each later one its distance in time from an
  *anchor* frame, rounded to ticks, so rounding never accumulates;
* a frame that does not advance by at least one tick is moved one tick after the previous
  one (jitter, repeated times); after a step back of more than :data:`REANCHOR_BACK_S`
  (a clock set back) the timeline continues from there with the frames' own spacing;
* a step forward longer than :data:`MAX_STEP_S` (a pause overnight, a month's gap, a clock
  jump) is *compressed* to :data:`MAX_STEP_S` in the file. Containers cannot hold
  arbitrary steps: MP4 stores sample durations and composition offsets in 32 bits (about
  6.6 h at 1/90000 s; FFmpeg then fails with "Not yet implemented"), and x264/x265 and the
  muxers' int64 arithmetic overflow far beyond. The compressed file plays the gap as 10
  minutes; imgstore reads frames by the chunk index, which keeps the true times;
* a step forward whose length in ticks does not fit a signed 64-bit integer (e.g. 1e18 s
  at 1/1000 s) is refused with :class:`~imgstore.errors.InvalidFrameMetadataError`
  before anything changes: such a frame time is not a clock's, and FFmpeg timestamps are
  64-bit.

Without frame times (``frame_time=None``), or for AVI (no timestamps at all: ``tick_only``),
pts count frames: each frame is `tick` after the previous one.
"""

from __future__ import annotations

import math
from fractions import Fraction

from ...errors import InvalidFrameMetadataError

__all__ = ["MAX_STEP_S", "REANCHOR_BACK_S", "Timeline"]

#: longest step between two frames the file keeps as it is (seconds); longer ones are compressed to it
MAX_STEP_S = 600.0
#: a step back longer than this (seconds) restarts the timeline's anchor at the frame
REANCHOR_BACK_S = 1.0
_INT64_MAX = 2**63 - 1


class Timeline:
    """pts for successive frames (see the module documentation).

    Parameters
    ----------
    time_base
        Seconds per tick.
    tick
        Ticks per frame when frames carry no time.
    tick_only
        Ignore frame times (AVI).
    """

    def __init__(self, time_base: Fraction, tick: int, tick_only: bool = False) -> None:
        self.time_base = time_base
        self.tick = int(tick)
        self.tick_only = tick_only
        self._tb = float(time_base)
        self._max_step = max(1, int(MAX_STEP_S / time_base))
        self._back = max(1, int(REANCHOR_BACK_S / time_base))
        self._next = 0  # pts of the next frame without a time
        self._anchor: tuple[float, int] | None = None  # (frame_time, pts)
        self._prev_time: float | None = None
        self.last: int | None = None
        #: largest step between two frames so far (ticks)
        self.largest_step = self.tick
        #: how many steps were compressed
        self.compressed = 0

    def plan(self, frame_time: float | None) -> tuple[int, tuple]:
        """The pts of the next frame and the state to :meth:`commit` once it is written.

        Raises :class:`~imgstore.errors.InvalidFrameMetadataError` (nothing changed) for a
        frame time that is not finite or a step the file's timestamps cannot hold.
        """
        anchor, prev_time, compressed = self._anchor, self._prev_time, self.compressed
        if self.tick_only or frame_time is None:
            pts = self._next
        else:
            ft = float(frame_time)
            if not math.isfinite(ft):
                raise InvalidFrameMetadataError(f"frame_time must be finite, not {frame_time!r}")
            if prev_time is not None and (ft - prev_time) / self._tb > _INT64_MAX:
                raise InvalidFrameMetadataError(
                    f"frame_time {frame_time!r} is {ft - prev_time:.3g} s after the previous frame's: a step "
                    f"of more than 2**63 ticks of {self.time_base} s cannot be a clock's (nor held by the "
                    f"video's 64-bit timestamps)")
            if anchor is None:
                anchor = (ft, self._next)
                pts = self._next
            else:
                ticks = (ft - anchor[0]) / self._tb
                # compare as floats first: a huge distance must not become a huge int
                limit = (self.last if self.last is not None else anchor[1]) + self._max_step - anchor[1]
                if ticks > limit:
                    pts = (self.last if self.last is not None else anchor[1]) + self._max_step
                    anchor = (ft, pts)
                    compressed += 1
                elif ticks < -_INT64_MAX:  # far back (handled below), too far to round
                    pts = anchor[1] - _INT64_MAX
                else:
                    pts = anchor[1] + round(ticks)
            prev_time = ft
        if self.last is not None and pts <= self.last:
            if frame_time is not None and not self.tick_only and pts < self.last - self._back:
                # the clock went back: go on from here with the frames' own spacing
                anchor = (float(frame_time), self.last + 1)
            pts = self.last + 1
        return pts, (pts, anchor, prev_time, compressed)

    def commit(self, state: tuple) -> None:
        """Make a planned frame the latest one."""
        pts, self._anchor, self._prev_time, self.compressed = state
        if self.last is not None:
            self.largest_step = max(self.largest_step, pts - self.last)
        self.last = pts
        self._next = pts + self.tick
