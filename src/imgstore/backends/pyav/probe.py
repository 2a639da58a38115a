"""Availability probe: which video formats this installation can really write and read back.

A codec listed by FFmpeg may still fail here (a build without the encoder's pixel format,
a muxer that refuses the options...), so a format counts as available only after a
two-frame grey and colour chunk written with :class:`~.writer.VideoChunkWriter` reads back
right with :class:`~.reader.VideoChunkReader`.  Each format is probed once per process.

The probe is the one module that needs both the writer and the reader, so it sits above
them; nothing in the package imports it but ``__init__``.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import threading

import av
import numpy as np

from .formats import VIDEO_FORMATS, get_format_spec
from .reader import VideoChunkReader
from .writer import VideoChunkWriter

__all__ = ["available_video_formats", "is_video_format_available", "is_video_format_listed"]

_log = logging.getLogger(__name__)

_probe_lock = threading.Lock()


def is_video_format_listed(fmt: str) -> bool:
    """Whether this FFmpeg build lists the codecs and the muxer of format `fmt` (no probe).

    The write path checks only this: probing writes and decodes four chunks per format
    (0.2 s for all formats in a fresh process, measured on 2 cores, the fixed cost of
    every short store a new process writes), while a build that lists a codec it cannot
    use makes the chunk writer itself fail, naming the format.
    """
    spec = get_format_spec(fmt)
    needed = {spec.codec, spec.color_codec or spec.codec}
    return needed <= av.codecs_available and spec.muxer in av.formats_available


@functools.cache
def _probe(fmt: str) -> bool:
    """Write two tiny grey and colour chunks in `fmt` and read them back exactly."""
    spec = VIDEO_FORMATS[fmt]
    if not is_video_format_listed(fmt):
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
