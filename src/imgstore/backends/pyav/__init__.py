"""Video chunk layer built on PyAV: write and read one video chunk, frame-exactly.

A video store keeps its frames in *chunks*: one video file per chunk beside an ``.npz``
index holding the per-frame metadata.  This package knows nothing about stores; it writes
one chunk (:class:`VideoChunkWriter`) and reads frames back from one chunk by their
0-based position (:class:`VideoChunkReader`).

Random access is driven by a *frame table*, one row per frame in presentation order
(``pts`` and ``keyframe``, see :mod:`.frame_table`).  The writer returns it from
:meth:`VideoChunkWriter.close` (the caller stores it in the chunk's ``.npz``); for chunks
written by other software, or whose writer died before ``close()``,
:func:`build_frame_table` derives it by demuxing the file.  Reading never trusts a
decoder's frame counter: every decoded frame's ``pts`` is compared with the table and a
frame that cannot be found raises :class:`imgstore.errors.ChunkReadError` rather than
returning a neighbour.

Modules, each importing only those listed before it:

``formats``
    :class:`VideoFormatSpec`, the table :data:`VIDEO_FORMATS` and size helpers (no PyAV).
``frame_cache``
    :class:`FrameCache`, the bounded cache of decoded frames a store's readers share.
``pixels``
    decoded frames to BGR / grey arrays.
``frame_table``
    opening a chunk (also one a crash cut short) and demuxing its frame table.
``writer``
    :class:`VideoChunkWriter`.
``reader``
    :class:`VideoChunkReader`: decoder lanes, seeks, the thread policy.
``probe``
    which formats this installation can write and read back (uses writer and reader).

Importing this package imports PyAV; ``imgstore.backends.video`` imports it lazily so that
``import imgstore`` does not.  See ``docs/video-notes.md`` for the measurements behind the
defaults chosen here.
"""

from __future__ import annotations

from .formats import DEFAULT_FPS, VIDEO_FORMATS, VideoFormatSpec, coded_size, get_format_spec, written_size
from .frame_cache import DEFAULT_FRAME_CACHE_BYTES, FrameCache
from .frame_table import FRAME_TABLE_KEYS, build_frame_table
from .probe import available_video_formats, is_video_format_available, is_video_format_listed
from .reader import VideoChunkReader
from .writer import SealedChunkError, VideoChunkWriter

__all__ = [
    "DEFAULT_FPS",
    "DEFAULT_FRAME_CACHE_BYTES",
    "FRAME_TABLE_KEYS",
    "VIDEO_FORMATS",
    "FrameCache",
    "SealedChunkError",
    "VideoChunkReader",
    "VideoChunkWriter",
    "VideoFormatSpec",
    "available_video_formats",
    "build_frame_table",
    "coded_size",
    "get_format_spec",
    "is_video_format_available",
    "is_video_format_listed",
    "written_size",
]
