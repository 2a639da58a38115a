"""What the read calls return: frames with their metadata, as named tuples.

``get_image`` and friends return a :class:`Frame`, which unpacks as imgstore 0.4's
``img, (frame_number, frame_time)`` and also has names: ``frame.image``,
``frame.frame_number``, ``frame.frame_time``.

Naming rule of the read API (as torchcodec's ``get_frame_at`` / ``get_frame_played_at``):
a call that takes a position ``0..N-1`` ends in ``_at`` (:meth:`get_frame_at`), one that
takes the camera's ``frame_number`` says ``by_number``, one that takes a ``frame_time``
(seconds since the epoch) says ``played_at``. The classic names stay as they were.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Frame", "FrameBatch", "FrameMetadata"]


class FrameMetadata(NamedTuple):
    """The camera's number of a frame and its time (seconds since the epoch)."""

    frame_number: int
    frame_time: float


class Frame(NamedTuple):
    """A frame and its metadata; unpacks as ``img, (frame_number, frame_time)``."""

    image: np.ndarray
    metadata: FrameMetadata

    @property
    def frame_number(self) -> int:
        """The camera's number of this frame."""
        return self.metadata.frame_number

    @property
    def frame_time(self) -> float:
        """When it was taken, in seconds since the epoch."""
        return self.metadata.frame_time


class FrameBatch(NamedTuple):
    """Frames read together (:meth:`~imgstore.backends.base.ImgStore.get_frames`), in the order asked for.

    ``images[k]`` is the frame at ``frame_index[k]``, whose metadata is ``frame_number[k]``
    and ``frame_time[k]``.
    """

    images: np.ndarray
    frame_index: np.ndarray
    frame_number: np.ndarray
    frame_time: np.ndarray
