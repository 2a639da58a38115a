"""Stopping a recording before the disk is full, so that no acknowledged frame is lost to it.

A video encoder holds frames it has accepted (encoder delay) and a muxer buffers what it has
encoded; when a write of theirs fails for lack of space those bytes are gone, along with
frames whose ``add_image`` returned long ago. The writer therefore never lets the disk fill:

* while it records, a *reserve* file (``.imgstore-reserve``, allocated space, no data) holds
  room for finishing the open chunk -- draining the encoder, the index, the extra data;
* before each frame it checks the space left; when the frame might not fit, it frees the
  reserve, finishes the chunk into it (every frame added so far stays readable) and refuses
  the frame with :class:`~imgstore.errors.StoreWriteError` (``ENOSPC``).

Another process filling the disk between two checks is what the reserve is for: it is space
nobody else can take. Storage without a notion of free space (object stores) is not guarded.
"""

from __future__ import annotations

import errno

from ..errors import StoreWriteError
from ..storage import Storage

__all__ = ["RESERVE_FILENAME", "DiskFullSoon", "DiskGuard"]

#: the reserve file in the store folder (``remove_store_files`` and repair delete ``.imgstore*`` files)
RESERVE_FILENAME = ".imgstore-reserve"
#: room kept beyond the next frame and the chunk's pending index and extra data
_SLACK_BYTES = 256 * 1024


class DiskFullSoon(StoreWriteError):
    """The next frame might not fit on the disk (raised before anything of it is written)."""


class DiskGuard:
    """The reserve and the free-space check of one writer.

    Parameters
    ----------
    storage, basedir
        Where the store is written.
    frame_bytes
        An upper bound of the bytes one frame adds (its payload, a journal record).
    reserve_bytes
        Room kept for finishing a chunk (0: none needed beyond the free-space check).
    """

    def __init__(self, storage: Storage, basedir: str, frame_bytes: int, reserve_bytes: int) -> None:
        self._storage = storage
        self._path = storage.join(basedir, RESERVE_FILENAME)
        self._basedir = basedir
        self.frame_bytes = int(frame_bytes)
        self.reserve_bytes = int(reserve_bytes)
        self._held = False
        self.enabled = storage.free_bytes(basedir) is not None

    def start(self) -> None:
        """Take the reserve; :class:`StoreWriteError` (ENOSPC) if the disk cannot hold it."""
        if not self.enabled or not self.reserve_bytes:
            return
        free = self._storage.free_bytes(self._basedir) or 0
        needed = self.reserve_bytes + self.frame_bytes + _SLACK_BYTES
        if free < needed:
            raise StoreWriteError(errno.ENOSPC, f"not enough free space in {self._basedir} to record: {free} bytes "
                                                f"free, {needed} needed (room to finish a chunk, and one frame)",
                                  self._basedir)
        self._storage.reserve(self._path, self.reserve_bytes)
        self._held = True

    def check(self, pending_bytes: int) -> None:
        """Raise :class:`DiskFullSoon` unless the next frame and ``pending_bytes`` (still to be written
        to finish the open chunk) fit beside the reserve."""
        if not self.enabled:
            return
        free = self._storage.free_bytes(self._basedir)
        if free is None:
            return
        needed = self.frame_bytes + int(pending_bytes) + _SLACK_BYTES
        if free < needed:
            raise DiskFullSoon(errno.ENOSPC, f"the disk of {self._basedir} is full: {free} bytes free, the next "
                                             f"frame may need {needed}", self._basedir)

    def release(self) -> None:
        """Free the reserve (to finish the chunk into it)."""
        if self._held:
            self._held = False
            self._storage.remove(self._path)
