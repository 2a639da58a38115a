"""Checking each frame's stored bytes against the checksum recorded when they were written.

Writers record :func:`~imgstore.checksums.payload_digest` of every frame's payload (a frame
file; an encoded packet for video) in the chunk's journal and then its index, as the array
``payload_xxh3`` (one per frame, in frame order; the reference library reads only
``frame_number``/``frame_time`` and ignores it). Readers check the bytes before decoding them
and raise :class:`~imgstore.errors.ChunkCorruptError` on a mismatch. Stores written without
checksums (imgstore 0.4, Motif) have no such array and read as before.
"""

from __future__ import annotations

import collections
import contextlib

import numpy as np

from .. import ondisk
from ..checksums import payload_digest
from ..errors import ChunkCorruptError, IndexCorruptError
from .contract import Backend

__all__ = ["PAYLOAD_DIGEST_FIELD", "PayloadDigests"]

#: the per-frame array of payload checksums in chunk indexes and journals
PAYLOAD_DIGEST_FIELD = "payload_xxh3"
#: journal field of the checksums (an unsigned 64-bit integer per frame)
PAYLOAD_DIGEST_JOURNAL_FIELD = (PAYLOAD_DIGEST_FIELD, "<u8")
#: chunks whose checksums are kept in memory (8 bytes a frame: 2 MB at 256 chunks of 1 000 frames)
_MAX_CHUNKS = 256


class PayloadDigests:
    """The recorded payload checksums of a store's chunks, loaded per chunk on first use."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        # chunk_n -> (digests or None when the chunk has none, True if read from a live journal)
        self._chunks: collections.OrderedDict[int, tuple[np.ndarray | None, bool]] = collections.OrderedDict()

    def clear(self) -> None:
        """Forget what was loaded (the store may have changed)."""
        self._chunks.clear()

    def expected(self, chunk_n: int, position: int) -> int | None:
        """The checksum recorded for frame ``position`` of chunk ``chunk_n`` (None: none recorded)."""
        entry = self._chunks.get(chunk_n)
        if entry is None or (entry[1] and (entry[0] is None or position >= len(entry[0]))):
            # not loaded yet, or a journal that has grown since (a live writer)
            entry = self._load(chunk_n)
            self._chunks[chunk_n] = entry
            while len(self._chunks) > _MAX_CHUNKS:
                self._chunks.popitem(last=False)
        else:
            self._chunks.move_to_end(chunk_n)
        digests = entry[0]
        if digests is None or position >= len(digests):
            return None
        return int(digests[position])

    def check(self, chunk_n: int, position: int, data: bytes | bytearray | memoryview | np.ndarray, path: str) -> None:
        """Raise :class:`ChunkCorruptError` if ``data`` is not what was written for this frame."""
        want = self.expected(chunk_n, position)
        if want is None:
            return
        got = payload_digest(data)
        if got != want:
            raise ChunkCorruptError(
                f"frame {position} of chunk {chunk_n} ({path}) fails its checksum: its bytes changed after "
                f"they were written (xxh3 {got:016x}, recorded {want:016x})")

    def _load(self, chunk_n: int) -> tuple[np.ndarray | None, bool]:
        storage = self._backend.storage
        base = self._backend.chunk_base(chunk_n)
        path = ondisk.find_index_file(base, storage=storage)
        if path is not None:
            names = ondisk.npz_member_names(path, storage) if path.endswith(".npz") else None
            if names is not None and PAYLOAD_DIGEST_FIELD not in names:
                # no checksums recorded (a store of imgstore 0.4, Motif...): its end says so, the
                # rest need not be read (a lookup per chunk in an 18 M-frame store: +0.06 ms)
                return None, False
            try:
                arrays = ondisk.read_chunk_index(path, (*ondisk.FRAME_MD, PAYLOAD_DIGEST_FIELD), storage=storage)
            except (IndexCorruptError, OSError):
                return None, False  # the scanner reports a damaged index; frames are read unchecked
            digests = arrays.get(PAYLOAD_DIGEST_FIELD)
            if digests is None or len(digests) != len(arrays["frame_number"]) or digests.dtype.kind not in "iu":
                return None, False
            return digests.astype(np.uint64), False
        with contextlib.suppress(IndexCorruptError, OSError):
            table = ondisk.read_journal(base + ondisk.JOURNAL_SUFFIX, storage=storage)
            if PAYLOAD_DIGEST_FIELD in table:
                return table[PAYLOAD_DIGEST_FIELD].astype(np.uint64), True
        return None, True
