"""A decoder lane: one demuxer + decoder of a video chunk and the position it will output next.

:class:`~.reader.VideoChunkReader` keeps several for random access in long GOPs, each left
where its last read stopped.
"""

from __future__ import annotations

import collections
from typing import Any

import av

from .frame_table import close_input

__all__ = ["DecoderLane"]


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

    def close(self) -> None:
        if self.container is not None:
            close_input(self.container)
        self.container = self.stream = self.cc = self.packets = None
        self.pending.clear()
        self.cursor = None
