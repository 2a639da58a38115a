"""A decoder lane: one demuxer + decoder of a video chunk and the position it will output next.

:class:`~.reader.VideoChunkReader` keeps several for random access in long GOPs, each left
where its last read stopped.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator
from typing import Any

import av
import av.error

from .frame_table import close_input

__all__ = ["DecoderLane", "h264_slices"]


def h264_slices(payload: bytes, extradata: bytes | None) -> int:
    """Slices (NAL units of types 1 and 5) in one H.264 packet as MP4 and Matroska store it.

    Those containers hold length-prefixed NAL units, the prefix size given by the ``avcC``
    header (`extradata`); 0 when the packet is not in that form (no ``avcC`` header, a
    length that runs past the end).
    """
    if not extradata or len(extradata) < 5 or extradata[0] != 1:
        return 0
    size = (extradata[4] & 3) + 1
    k, slices = 0, 0
    while k + size < len(payload):
        length = int.from_bytes(payload[k:k + size], "big")
        if length == 0 or k + size + length > len(payload):
            return 0
        slices += (payload[k + size] & 0x1F) in (1, 5)
        k += size + length
    return slices if k == len(payload) else 0


def _raising(exc: Exception) -> Iterator[Any]:
    raise exc
    yield  # a generator: it raises on first use, as the demuxer would have


class DecoderLane:
    """One demuxer + decoder of a chunk and the position it will output next."""

    __slots__ = ("adaptive", "cc", "container", "cursor", "digest_seed", "eof", "fresh", "packets", "pending",
                 "stream", "threaded", "used")

    def __init__(self) -> None:
        # the open demuxer and decoder, None while closed (every use follows an open)
        self.container: Any = None  # av.container.InputContainer
        self.stream: Any = None  # av.VideoStream
        self.cc: Any = None  # av.VideoCodecContext
        self.packets: Any = None  # Iterator[av.Packet] from container.demux()
        self.pending: collections.deque[av.VideoFrame] = collections.deque()
        self.eof = False  # no more packets from the demuxer (or the decoder was drained)
        self.cursor: int | None = None  # position the decoder will output next (None: unknown)
        self.fresh = False  # nothing fed to the decoder yet (its threads can still change)
        self.threaded = False  # the decoder uses frame threading
        self.adaptive = False  # its threading follows the access pattern
        self.used = 0  # when it last served a read
        self.digest_seed = 0  # seed of the packet checksums (the stream's codec header)

    def peek_slices(self) -> int:
        """Slices of the next packet's frame (:func:`h264_slices`); the packet stays next."""
        try:
            first = next(self.packets)
        except StopIteration:
            return 0
        except av.error.FFmpegError as exc:
            self.packets = _raising(exc)
            return 0
        self.packets = itertools.chain([first], self.packets)
        return h264_slices(bytes(first), self.cc.extradata)

    def close(self) -> None:
        if self.container is not None:
            close_input(self.container)
        self.container = self.stream = self.cc = self.packets = None
        self.pending.clear()
        self.cursor = None
