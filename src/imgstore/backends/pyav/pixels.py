"""Pixels: decoded video frames to numpy arrays, bit-identical to PyAV's conversions.

Owns the conversions a reader applies to every decoded frame: :class:`BgrConverter`
(colour: a pooled libavfilter graph instead of a fresh reformatter buffer per frame) and
:class:`GreyConverter` (grey: the Y plane as it sits in the decoder's buffer, through a
range lookup table where needed), and the pixel-format sets they choose by.  Both give the
pixels of ``frame.to_ndarray(format='bgr24' | 'gray')``.
"""

from __future__ import annotations

import logging
from typing import Any

import av
import av.error
import av.filter
import av.video.reformatter
import numpy as np

__all__ = ["BgrConverter", "GreyConverter"]

_log = logging.getLogger(__name__)

# limited-range ("TV", 16..235) luma -> full-range grey; bit-identical to what swscale
# (and hence PyAV's to_ndarray(format='gray')) computes, but a table lookup on the Y
# plane instead of a conversion pass
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_GREY_FORMATS: dict[str, Any] = {"gray": np.uint8, "gray8": np.uint8, "gray16le": np.dtype("<u2")}
_FULL_RANGE_YUV = {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p"}
_PLANAR_YUV8 = {"yuv420p", "yuv422p", "yuv444p", "yuv440p", "yuv411p", "yuv410p", "nv12", "nv21", "nv16"}

# a grey read takes plane 0 as is ("plane"), through the range LUT ("lut"), or converts
_GREY_PLANE, _GREY_LUT, _GREY_CONVERT = 0, 1, 2


class BgrConverter:
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
        self._src: Any = None  # the graph's "buffer" and "buffersink" filters
        self._sink: Any = None

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
            src = graph.add("buffer", video_size=f"{frame.width}x{frame.height}", pix_fmt=str(int(frame.format)),  # type: ignore[call-overload]
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


class GreyConverter:
    """Decoded frame -> grey ``ndarray``, the pixels of ``frame.to_ndarray(format='gray')``.

    Grey and full-range YUV frames give their Y plane as it is; limited-range 8-bit YUV
    goes through a lookup table (:data:`_LIMITED_TO_FULL`, bit-identical to swscale);
    other formats (RGB-like) are converted by swscale.  The method is chosen once per
    (pixel format, colour range).
    """

    def __init__(self, reformatter: av.video.reformatter.VideoReformatter) -> None:
        self._reformatter = reformatter
        self._grey_method: dict[tuple[str, int], int] = {}

    def __call__(self, frame: av.VideoFrame, h: int, w: int, out: np.ndarray | None = None) -> np.ndarray:
        """The grey pixels of `frame` cropped to `h` x `w` (no larger than the frame), a new array or `out`."""
        fh, fw = frame.height, frame.width
        fmt = frame.format.name
        key = (fmt, int(frame.color_range))
        method = self._grey_method.get(key)
        if method is None:
            method = self._grey_method[key] = self._choose_grey(fmt, key[1])
        if method == _GREY_CONVERT:
            arr = self._reformatter.reformat(frame, format="gray", threads=1).to_ndarray()
            if out is not None:
                out[...] = arr[:h, :w]
                return out
            return np.ascontiguousarray(arr[:h, :w]) if (fh != h or fw != w) else arr
        # the Y plane as it sits in the decoder's buffer (rows padded to line_size)
        plane = frame.planes[0]
        dt = np.dtype(_GREY_FORMATS.get(fmt, np.uint8))
        buf = np.frombuffer(plane, dtype=dt)  # type: ignore[call-overload]  # a plane is a buffer
        rows = buf.reshape(-1, plane.line_size // dt.itemsize)[:h, :w]
        if method == _GREY_LUT:
            return _LIMITED_TO_FULL.take(rows, out=out) if out is not None else _LIMITED_TO_FULL[rows]
        if out is not None:
            out[...] = rows
            return out
        return rows.copy()

    @staticmethod
    def _choose_grey(fmt: str, color_range: int) -> int:
        if fmt in _GREY_FORMATS or fmt in _FULL_RANGE_YUV:
            return _GREY_PLANE
        if fmt in _PLANAR_YUV8:
            # full range (AVCOL_RANGE_JPEG): Y is the grey value; otherwise 16..235
            return _GREY_PLANE if color_range == 2 else _GREY_LUT
        return _GREY_CONVERT  # RGB-like formats: let swscale compute luma

