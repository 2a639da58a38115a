"""The video format table: how each imgstore video format is written, and size helpers.

Owns :class:`VideoFormatSpec`, the table :data:`VIDEO_FORMATS` (format name -> codec,
container, pixel formats, crash-safety muxer options and the measured encoder defaults),
:data:`DEFAULT_FPS`, and the helpers that answer questions about a format without
touching a file: :func:`get_format_spec`, :func:`coded_size` (the picture size stored in
the file, padded to even where the encoder needs it) and :func:`written_size`.

This module does not import PyAV: the table is plain data.

See ``docs/video-notes.md`` for the measurements behind the defaults chosen here.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from fractions import Fraction

from ...errors import UnsupportedFormatError

__all__ = [
    "DEFAULT_FPS",
    "VIDEO_FORMATS",
    "VideoFormatSpec",
    "coded_size",
    "get_format_spec",
    "written_size",
]

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


# chroma subsampling (log2 horizontal, log2 vertical) of the pixel formats whose encoders
# refuse odd sizes (libx264 / libx265 need whole chroma samples)
_SUBSAMPLING = {
    "yuv420p": (1, 1), "yuvj420p": (1, 1), "nv12": (1, 1), "nv21": (1, 1),
    "yuv422p": (1, 0), "yuvj422p": (1, 0), "nv16": (1, 0),
    "yuv420p10le": (1, 1), "yuv422p10le": (1, 0),
}
_PADDING_ENCODERS = {"libx264", "libx265"}


#: (exclusive) range of picture widths x265 cannot encode safely, and the width it pads them to
_X265_BAD_WIDTHS = (32, 64)


def coded_size(fmt: str, height: int, width: int, color: bool, pix_fmt: str | None = None) -> tuple[int, int]:
    """(height, width) of the picture stored in the file for frames of `height` x `width`.

    Equal to the frame size except where the encoder needs whole chroma samples
    (4:2:0 / 4:2:2 H.264 and H.265 colour): there odd sizes are padded to even; and x265
    pictures 33 to 63 px wide are padded to 64 px (see below).
    """
    spec = get_format_spec(fmt)
    pix = pix_fmt or spec.default_pix_fmt(bool(color))
    encoder = spec.encoder(bool(color))
    sub_w, sub_h = _SUBSAMPLING.get(pix, (0, 0)) if encoder in _PADDING_ENCODERS else (0, 0)
    coded_h = -(-int(height) // (1 << sub_h)) * (1 << sub_h)
    coded_w = -(-int(width) // (1 << sub_w)) * (1 << sub_w)
    if encoder == "libx265" and _X265_BAD_WIDTHS[0] < coded_w < _X265_BAD_WIDTHS[1]:
        # the x265 of the PyAV wheels corrupts its heap on pictures 33-48 px wide, whatever the
        # height or options (a glibc abort in 2 of 5 to 5 of 5 runs of 20 frames; 56 and 64 px
        # never did in 60 runs): such pictures are padded to 64 px and cropped again on read
        coded_w = _X265_BAD_WIDTHS[1]
    return coded_h, coded_w


def written_size(fmt: str, height: int, width: int, color: bool, pix_fmt: str | None = None) -> tuple[int, int]:
    """(height, width) of the frames a chunk in `fmt` gives back: always the input size.

    Unlike the reference, which truncated odd sizes to even, nothing is cropped: where the
    codec needs even sizes the writer pads the stored picture (:func:`coded_size`) and
    :class:`~.reader.VideoChunkReader` crops the padding off again.
    """
    get_format_spec(fmt)  # unknown formats raise
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"invalid frame size {height}x{width}")
    return int(height), int(width)
