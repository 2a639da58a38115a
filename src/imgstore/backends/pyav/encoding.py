"""Encoder settings of one chunk: the format's defaults, the caller's options, and latency.

:func:`encoder_settings` turns a :class:`~.formats.VideoFormatSpec`, the caller's quality /
bitrate / codec options and the expected wall-clock time between frames into the FFmpeg
encoder options, and says how many frames the encoder may hold back and reorder.

Two configurations per inter-frame encoder (x264, x265):

*delay* (the measured defaults of ``docs/video-notes.md``: B-frames, lookahead)
    the encoder holds back :attr:`EncoderSettings.held_frames` frames and reorders up to
    :attr:`EncoderSettings.reorder` (a crash-recovered file drops that many trailing
    frames); chosen when that many frame intervals fit in :data:`DELAY_BUDGET_S`;
*low latency* (no B-frames, no lookahead, sliced instead of frame threads)
    a packet comes out for every frame at once; chosen when frames come slowly or
    irregularly, where the delay configuration would keep frames in memory for seconds.

Intra-only encoders (MJPEG, FFV1) hold nothing back: both configurations are the same.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping

from .formats import VideoFormatSpec

__all__ = ["DELAY_BUDGET_S", "EncoderSettings", "encoder_settings"]

#: wall-clock seconds the frames an encoder holds back plus those a recovery drops may span
#: for the delay configuration to be used (the writer's deadline, 0.5 s in a store, must
#: rarely be reached: reaching it with frames still in the encoder finishes the chunk)
DELAY_BUDGET_S = 0.3

#: pictures smaller than this (pixels, height or width) get 16x16 x265 coding tree units
_X265_SMALL_PICTURE = 96
#: x264's B-frames in the delay configuration (b-adapt=0: always 3)
_X264_BFRAMES = 3
#: frames x265 (veryfast, rc-lookahead 5, 4 B-frames) holds back: 11 + its frame threads
#: (measured 12, 13, 14, 19, 27 with 1, 2, 3, 8, 16), so the delay settings pin them to 2 at most
_X265_HELD = 11
_X265_BFRAMES = 4


@dataclasses.dataclass(frozen=True)
class EncoderSettings:
    """What :func:`encoder_settings` chose."""

    options: dict[str, str]
    #: no B-frames, no lookahead: every frame's packet comes out of ``encode()`` at once
    low_latency: bool
    #: frames the encoder may hold back (estimate; the writer measures the real count)
    held_frames: int
    #: reorder depth: trailing frames a recovery of the unfinished file may drop
    reorder: int


def _x264_lookahead(fps: float, interval: float | None) -> int | None:
    """x264 rc-lookahead for the delay configuration, None when even the shortest is too long."""
    # measured: x264 (b-adapt 0) holds back max(lookahead, 3) + 1 frames; the recovery drops 3
    fitting = 10 if interval is None or interval <= 0 else math.floor(DELAY_BUDGET_S / interval) - 4
    # at a nominal rate, about 1/3 s of lookahead (fewer frames mean less delay at low rates)
    by_rate = max(3, min(10, int(fps // 3)))
    lookahead = min(by_rate, fitting)
    return lookahead if lookahead >= _X264_BFRAMES else None


def encoder_settings(spec: VideoFormatSpec, codec_name: str, coded_h: int, coded_w: int, fps: float,
                     quality: int | None, bitrate: int | None, codec_options: Mapping[str, str | None] | None,
                     frame_interval: float | None) -> EncoderSettings:
    """Encoder options for one chunk (see the module documentation).

    `frame_interval` is the expected wall-clock time between frames (None: unknown, taken
    as ``1/fps``); an infinite one (frames after a pause) chooses the low-latency settings.
    """
    opts: dict[str, str] = dict(spec.codec_options)
    interval = frame_interval if frame_interval is not None else 1.0 / fps
    low_latency = False
    held = reorder = 0
    if codec_name in ("libx264", "libx264rgb"):
        if spec.quality_option == "crf" and bitrate is None:
            opts["crf"] = str(spec.default_quality if quality is None else quality)
        if spec.lossless:
            # qp 0 codes no B-frames; x264 still holds back one frame (measured)
            low_latency = interval * 2 > DELAY_BUDGET_S
            held = 0 if low_latency else 1
            if not low_latency:
                opts["rc-lookahead"] = str(max(3, min(10, int(fps // 3))))
        else:
            lookahead = _x264_lookahead(fps, interval)
            low_latency = lookahead is None
            if lookahead is not None:
                opts["rc-lookahead"] = str(lookahead)
                held, reorder = lookahead + 1, _X264_BFRAMES
    elif codec_name == "libx265":
        # x265 defaults to open GOPs, whose leading frames cannot be decoded after a seek
        params = ["log-level=error", "open-gop=0"]
        # x265 chooses 1 frame thread below 4 cores (as before), we choose 2 above
        frame_threads = 1 if (os.cpu_count() or 1) < 4 else 2
        low_latency = (_X265_HELD + frame_threads + _X265_BFRAMES) * interval > DELAY_BUDGET_S
        if low_latency:
            params += ["bframes=0", "rc-lookahead=0", "frame-threads=1", "cutree=0"]
        else:
            # lookahead 5 (its minimum with 4 B-frames) keeps the delay near 12 frames
            params += ["rc-lookahead=5", f"frame-threads={frame_threads}"]
            held, reorder = _X265_HELD + frame_threads, _X265_BFRAMES
        if min(coded_h, coded_w) < _X265_SMALL_PICTURE:
            # with its default 32x32 coding tree units such a picture has < 3 CTU rows:
            # x265's wavefront threads then give run-to-run different output, and at
            # crf 24 0-76 of 1000 32x32 barcode frames decoded as another number;
            # 16x16 units were deterministic and exact (at >= 96 px the default is
            # both, and 16x16 would cost +40 % bytes; docs/compatibility.md)
            params.append("ctu=16")
        if bitrate is None:
            opts["crf"] = str(spec.default_quality if quality is None else quality)
        opts["x265-params"] = ":".join(params)
    elif codec_name == "mjpeg" and bitrate is None:
        q = spec.default_quality if quality is None else int(quality)
        if not 2 <= q <= 31:  # type: ignore[operator]  # MJPEG's spec has a default quality
            raise ValueError(f"MJPEG quality (qscale) must be 2..31, not {q}")
        # a fixed quantiser: qmin == qmax pins the rate control to it (the 'qscale' flag
        # alone would need a per-frame quality PyAV cannot set)
        opts["qmin"] = opts["qmax"] = str(q)
    for k, v in (codec_options or {}).items():
        if v is None:  # None removes a default, e.g. {'tune': None}
            opts.pop(str(k), None)
        else:
            opts[str(k)] = str(v)
    if low_latency and codec_name in ("libx264", "libx264rgb") and "zerolatency" not in opts.get("tune", ""):
        # zerolatency: no B-frames, no lookahead (nor mb-tree), sliced threads; added to the
        # caller's tune, if any (x264 takes several, comma-separated)
        opts["tune"] = ",".join(t for t in (opts.get("tune"), "zerolatency") if t)
    return EncoderSettings(opts, low_latency, held, reorder)
