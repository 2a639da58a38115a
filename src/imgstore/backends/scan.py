"""The chunk scanner: from the files of a store to its frame index.

For each chunk the :class:`ChunkScanner` reads, in this order,

1. its **index** (``<chunk>.npz`` or the reference's ``.yaml``);
2. else its **journal** (a crashed or live writer), keeping only the frames the backend
   finds really on disk (:meth:`~imgstore.backends.contract.Backend.recover_chunk`);
3. else applies the **damage policy**: a chunk with frames but neither index nor journal is
   skipped with an :class:`~imgstore.errors.ImgStoreWarning` and listed in
   ``damaged_chunks`` (or raises in strict mode); a chunk created by a writer that died
   before its first frame holds nothing and is silently ignored.

A scan can start from a **previous state** (:class:`ScanState`: per chunk, the freshness
key of its index file and its frames): chunks whose key is unchanged are taken from it
without reading a file. The freshness key (:class:`FreshnessKey`: the index file's kind,
size, mtime and inode) is the *one* rule by which opening a store (from the index cache),
``refresh()`` (from the last scan) and the index cache itself decide that a chunk did
not change. imgstore replaces an index by rename, so a rewrite is a new inode even within
one tick of a coarse clock. A state saved in a file (the index cache) keeps no inodes
(a copied store would never match), so for it two more guards apply: index files modified
within :data:`RACY_WINDOW_NS` of when their key was taken could have been rewritten in place
without a visible change (coarse clocks) and are re-read and compared until a later state
supersedes them, and the first, last and one random chunk are re-read as a spot check; a
chunk that contradicts the state although its key is unchanged raises
:class:`StateMismatch` (the caller then scans without the state). Chunks without an index
are never part of a state: they are read every time.

On remote storage (:attr:`~imgstore.storage.Storage.is_remote`: object storage, where every
``stat`` is a round trip) a chunk that a previous state holds keeps that state's key without a
request: objects there are written whole, a chunk's index after its payload, and imgstore-sync
removes the remote index cache before it replaces anything (:mod:`imgstore.remote_sync`), so a
listed chunk that a state describes is the chunk it describes (and it uploads a cache only
when it is fresh). The spot checks above still apply; racy entries are not re-read (a store
made in a burst would cost a request per chunk at every open, and no reader can rewrite a
remote cache). Other chunks' keys and indexes are fetched concurrently, and a chunk without an index
is one still being uploaded: left out silently until its index arrives.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import ondisk
from ..checked_index import CheckedFrameIndex
from ..checksums import frames_digest
from ..errors import ChunkReadError, ImgStoreWarning, IndexCorruptError
from ..frame_index import FrameIndex, SortedView
from ..lazy_index import LazyCheckedFrameIndex, is_lazy, load_together
from ..ondisk import FRAME_MD
from ..run_array import FrameStack, RunArray
from ..storage import Storage
from .contract import Backend

__all__ = ["RACY_WINDOW_NS", "ChunkScanner", "FreshnessKey", "ScanResult", "ScanState", "StateMismatch"]

log = logging.getLogger("imgstore.scan")

#: index files modified within this window before their key was taken are re-verified
RACY_WINDOW_NS = 2_000_000_000
#: a stale-but-valid state is worth rewriting once this many racy entries have aged out
REFRESH_MIN_RACY = 8
#: chunk indexes fetched ahead at once from remote storage
_PREFETCH_BATCH = 256


class StateMismatch(IndexCorruptError):
    """A previous scan state contradicts the chunks it describes (a damaged index cache)."""


@dataclasses.dataclass(frozen=True)
class FreshnessKey:
    """Identity of a chunk's index file: kind (0 ``.npz``, 1 ``.yaml``, -1 none), size, mtime, inode."""

    kind: int
    size: int
    mtime_ns: int
    inode: int = 0

    @property
    def indexed(self) -> bool:
        """True if the chunk has an index file."""
        return self.kind >= 0


_NO_INDEX = FreshnessKey(-1, 0, 0, 0)


@dataclasses.dataclass(frozen=True)
class ListedChunk:
    """A chunk as listed now."""

    chunk_n: int
    base: str
    key: FreshnessKey


@dataclasses.dataclass
class ScanState:
    """Frames of a set of indexed chunks with the freshness keys they were read under.

    ``start``/``length`` locate each chunk's frames in ``frame_number``/``frame_time``;
    ``by_number``/``by_time`` are the index's sorted views when known and valid for exactly
    these arrays. ``inode`` is None for a state read from a file; such states are not
    ``trusted`` (see the module documentation).
    """

    chunk_number: np.ndarray
    kind: np.ndarray
    size: np.ndarray
    mtime_ns: np.ndarray
    length: np.ndarray
    start: np.ndarray
    frame_number: np.ndarray
    frame_time: np.ndarray
    stat_time_ns: int
    by_number: SortedView | None = None
    by_time: SortedView | None = None
    origin: str = "memory"
    inode: np.ndarray | None = None
    #: per chunk row, the digest of its frames as written to the file this state was read from
    #: (None: read from the chunks themselves, nothing to check)
    digest: np.ndarray | None = None

    @property
    def trusted(self) -> bool:
        """True for a state of this process's own reads (with inodes): no racy or spot re-reads."""
        return self.inode is not None

    def frames(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """``(frame_number, frame_time)`` of the chunk in ``row``."""
        a = int(self.start[row])
        b = a + int(self.length[row])
        return self.frame_number[a:b], self.frame_time[a:b]

    def is_contiguous(self) -> bool:
        """True if the chunks' frames are exactly the arrays, in order."""
        ends = np.cumsum(self.length)
        return (len(self.frame_number) == (int(ends[-1]) if len(ends) else 0)
                and bool(np.all(self.start == ends - self.length)))

    def frame_index(self) -> FrameIndex:
        """The frame index of these chunks (contiguous states only); checked lazily if read from a file."""
        nonempty = self.length > 0
        if self.digest is not None:
            # arrays of an index cache stay in the file until a lookup needs them (imgstore.lazy_index)
            checked = LazyCheckedFrameIndex if is_lazy(self.frame_number) else CheckedFrameIndex
            return checked(self.chunk_number[nonempty], self.length[nonempty], self.frame_number,
                                     self.frame_time, chunk_digests=self.digest[nonempty], origin=self.origin,
                                     by_number=self.by_number, by_time=self.by_time)
        return FrameIndex(self.chunk_number[nonempty], self.length[nonempty], self.frame_number, self.frame_time,
                          by_number=self.by_number, by_time=self.by_time)

    def checked_frames(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`frames` of ``row``, checked against its digest (raises :class:`StateMismatch`)."""
        frames = self.frames(row)
        if self.digest is not None and frames_digest(*frames) != int(self.digest[row]):
            raise StateMismatch(f"{self.origin}: the frames of chunk {int(self.chunk_number[row])} fail their "
                                f"checksum")
        return frames

    def complete(self, index: FrameIndex | None = None) -> None:
        """Make the arrays contiguous and fill in the sorted views (from ``index`` if it holds the same data)."""
        if not self.is_contiguous():
            parts = [self.checked_frames(r) for r in range(len(self.chunk_number))]
            self.frame_number = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
            self.frame_time = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float64)
            self.start = np.cumsum(self.length) - self.length
            self.by_number = self.by_time = None
            self.digest = None  # checked above: these are copies
            index = None
        if self.by_number is not None and self.by_time is not None:
            return
        if index is None or not (_same_buffer(index.frame_number, self.frame_number)
                                 and _same_buffer(index.frame_time, self.frame_time)):
            index = self.frame_index()
        self.by_number = index.by_number()
        self.by_time = index.by_time()

    @classmethod
    def of_chunks(cls, chunks: Sequence[ListedChunk], lengths: Sequence[int], stat_time_ns: int,
                  frame_number: Any, frame_time: np.ndarray) -> ScanState:
        """A state of ``chunks`` whose frames are ``frame_number``/``frame_time`` (used as they
        are: arrays, or numbers held as runs), ``lengths[i]`` frames for chunk ``i``, in order."""
        length = np.asarray(lengths, dtype=np.int64).reshape(-1)
        starts = np.zeros(len(length), dtype=np.int64)
        if len(length):
            np.cumsum(length[:-1], out=starts[1:])
        return cls(
            chunk_number=np.array([c.chunk_n for c in chunks], dtype=np.int64),
            kind=np.array([c.key.kind for c in chunks], dtype=np.int8),
            size=np.array([c.key.size for c in chunks], dtype=np.int64),
            mtime_ns=np.array([c.key.mtime_ns for c in chunks], dtype=np.int64),
            inode=np.array([c.key.inode for c in chunks], dtype=np.uint64),
            length=length, start=starts, frame_number=frame_number, frame_time=frame_time,
            stat_time_ns=stat_time_ns)

    @classmethod
    def from_entries(cls, entries: Sequence[tuple[ListedChunk, np.ndarray, np.ndarray]],
                     stat_time_ns: int) -> ScanState:
        """A state of the given chunks and their frames (concatenated)."""
        fns = [np.asarray(fn, dtype=np.int64) for _, fn, _ in entries]
        fts = [np.asarray(ft, dtype=np.float64) for _, _, ft in entries]
        return cls.of_chunks([c for c, _, _ in entries], [len(fn) for fn in fns], stat_time_ns,
                             np.concatenate(fns) if fns else np.zeros(0, np.int64),
                             np.concatenate(fts) if fts else np.zeros(0, np.float64))


@dataclasses.dataclass
class ScanResult:
    """What a scan found.

    ``state`` holds the indexed chunks as they are now; ``unchanged`` says it equals the
    previous state (nothing new to save); ``refresh_racy`` says saving it now would end
    the re-reading of racy entries.
    """

    index: FrameIndex
    state: ScanState
    unchanged: bool
    refresh_racy: bool


class ChunkScanner:
    """Reads a store's chunk tables (see the module documentation).

    Parameters
    ----------
    backend
        The store's backend (layout and recovery hooks).
    storage
        Where the store's files are.
    strict
        Raise on a damaged chunk instead of skipping it with a warning.
    writer_alive
        A live writer holds the store: its open chunk lacking an index is expected (no warning).
    """

    def __init__(self, backend: Backend, storage: Storage, *, strict: bool = False,
                 writer_alive: bool = False) -> None:
        self.backend = backend
        self.storage = storage
        self.strict = strict
        self.writer_alive = writer_alive
        #: ``{chunk_n: why}`` of the chunks the last scan skipped
        self.damaged_chunks: dict[int, str] = {}
        #: called with the result of the rescan that replaced a damaged saved state (index cache)
        self.after_damage: Callable[[ScanResult], None] | None = None
        self._distrust_saved = False  # a saved state was found damaged: ignore saved states from now on

    # ------------------------------------------------------------------ one chunk

    def freshness_key(self, base: str) -> FreshnessKey:
        """The freshness key of a chunk's index (same precedence as reading: ``.npz`` first)."""
        for kind, suffix in enumerate(ondisk.INDEX_SUFFIXES):
            token = self.storage.stat_token(base + suffix)
            if token is not None:
                return FreshnessKey(kind, token.size, token.mtime_ns, token.inode)
        return _NO_INDEX

    def listing(self, previous: ScanState | None = None,
                chunks: list[tuple[int, str]] | None = None) -> list[ListedChunk]:
        """Every chunk on disk (or of ``chunks``, a :meth:`Backend.list_chunks` answer), sorted,
        with the freshness key of its index.

        On remote storage the keys of chunks ``previous`` holds are taken from it (see the
        module documentation) and the others are asked for concurrently.
        """
        chunks = sorted(self.backend.list_chunks() if chunks is None else chunks)
        if not self.storage.is_remote:
            # the usual kind (.npz) for all in one batch; the precedence walk only where it is missing
            tokens = self.storage.stat_tokens([base + ondisk.INDEX_SUFFIXES[0] for _, base in chunks])
            return [ListedChunk(n, base, FreshnessKey(0, t.size, t.mtime_ns, t.inode) if t is not None
                                else self.freshness_key(base)) for (n, base), t in zip(chunks, tokens, strict=True)]
        saved: dict[int, FreshnessKey] = {}
        if previous is not None:
            inodes = previous.inode if previous.inode is not None else np.zeros(len(previous.chunk_number), np.uint64)
            saved = {int(c): FreshnessKey(int(k), int(z), int(m), int(i)) for c, k, z, m, i in
                     zip(previous.chunk_number, previous.kind, previous.size, previous.mtime_ns, inodes, strict=True)}
        asked = [(n, base) for n, base in chunks if n not in saved]
        keys = dict.fromkeys((n for n, _ in asked), _NO_INDEX)
        for kind, suffix in enumerate(ondisk.INDEX_SUFFIXES):
            todo = [(n, base) for n, base in asked if not keys[n].indexed]
            for (n, _), token in zip(todo, self.storage.stat_tokens([b + suffix for _, b in todo]), strict=True):
                if token is not None:
                    keys[n] = FreshnessKey(kind, token.size, token.mtime_ns, token.inode)
        return [ListedChunk(n, base, saved[n] if n in saved else keys[n]) for n, base in chunks]

    def _prefetch(self, chunks: Sequence[ListedChunk]) -> None:
        """Remote storage: fetch the indexes of ``chunks`` concurrently before they are read one by one."""
        if self.storage.is_remote:
            self.storage.prefetch([c.base + ondisk.INDEX_SUFFIXES[c.key.kind] for c in chunks if c.key.indexed])

    def read_table(self, chunk_n: int, base: str, keys: Sequence[str] = FRAME_MD,
                   quiet: bool = False, record: bool = True) -> dict[str, np.ndarray] | None:
        """A chunk's table; None if it has none or is damaged.

        A damaged chunk raises in strict mode, else it is recorded in ``damaged_chunks``
        with a warning; ``quiet`` returns None for it silently, recording nothing; without
        ``record`` its error is raised to the caller.
        """
        if not record:
            return self._load_table(chunk_n, base, keys)
        try:
            if not quiet:
                return self._load_table(chunk_n, base, keys)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self._load_table(chunk_n, base, keys)
        except (IndexCorruptError, ChunkReadError, OSError) as exc:
            if quiet:
                return None
            if self.strict:
                raise
            self.skip(chunk_n, str(exc))
            return None

    def skip(self, chunk_n: int, why: str) -> None:
        """Record a damaged chunk and warn."""
        self.damaged_chunks[chunk_n] = why
        warnings.warn(f"{self.backend.basedir}: chunk {chunk_n} skipped: {why}", ImgStoreWarning, stacklevel=6)

    def _load_table(self, chunk_n: int, base: str, keys: Sequence[str]) -> dict[str, np.ndarray] | None:
        journal = base + ondisk.JOURNAL_SUFFIX
        journal_table = None
        damaged_records = 0
        # a live writer closing this chunk writes its index, then removes the journal: look
        # again if the journal vanished between the two looks, so the chunk is never missed
        for _ in range(2):
            path = ondisk.find_index_file(base, storage=self.storage)
            if path is not None:
                return ondisk.read_chunk_index(path, keys, storage=self.storage)
            try:
                contents = ondisk.read_journal_contents(journal, storage=self.storage)
                journal_table, damaged_records = contents.table, contents.damaged_records
                break
            except FileNotFoundError:
                continue
        if journal_table is not None:
            if damaged_records:
                # complete records failing their checksum: the file was damaged after writing,
                # so the frames they describe are dropped rather than guessed at
                why = (f"journal {journal} has {damaged_records} damaged record(s) after "
                       f"{len(journal_table['frame_number'])} good one(s); their frames are not read")
                if self.strict:
                    raise IndexCorruptError(why)
                warnings.warn(f"{self.backend.basedir}: chunk {chunk_n}: {why}", ImgStoreWarning, stacklevel=7)
            if not len(journal_table["frame_number"]):
                return journal_table  # opened, no frame yet: nothing to recover, nothing to check
            table = self.backend.recover_chunk(chunk_n, journal_table)
            if not self.writer_alive:
                warnings.warn(
                    f"{self.backend.basedir}: chunk {chunk_n} has no index (writer killed or still running); "
                    f"{len(table['frame_number'])} frames recovered from its journal", ImgStoreWarning, stacklevel=7)
            return table
        if self.storage.is_remote:
            # object storage gets a chunk's index after its payload (imgstore-sync): a chunk without
            # one is still being uploaded, not damaged; it appears once its index does (refresh())
            log.debug("%s: chunk %d has no index yet (being uploaded)", self.backend.basedir, chunk_n)
            return None
        if not self.backend.chunk_has_payload(chunk_n):
            # a writer created the chunk but was killed (or is live) before its first frame:
            # nothing is lost, so the chunk is neither damaged nor worth a warning
            return None
        if self.strict:
            raise IndexCorruptError(f"missing index for chunk {chunk_n} ({base}.npz)")
        self.skip(chunk_n, f"missing index {base}.npz (writer died before closing the chunk)")
        return None

    def tables(self, keys: Sequence[str] = FRAME_MD, quiet: bool = False
               ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(chunk_n, table)`` of every readable chunk, in chunk order."""
        for chunk_n, base in sorted(self.backend.list_chunks()):
            table = self.read_table(chunk_n, base, keys, quiet=quiet)
            if table is not None:
                yield chunk_n, table

    # ------------------------------------------------------------------ the whole store

    def scan(self, previous: ScanState | None = None, quiet: bool = False) -> ScanResult:
        """The store's index, taking unchanged chunks from ``previous``.

        Raises
        ------
        StateMismatch
            ``previous`` (read from a file) contradicts the disk: scan again without it.
        """
        chunks = None
        if not quiet:
            self.damaged_chunks = {}
            chunks, problems = self.backend.chunks_and_problems()
            for chunk_n, why in sorted(problems.items()):
                self._layout_problem(chunk_n, why)
        return self._scan(previous, quiet, chunks)

    def _layout_problem(self, chunk_n: int, why: str) -> None:
        if self.strict:
            raise IndexCorruptError(f"chunk {chunk_n}: {why}")
        self.skip(chunk_n, why)

    def scan_from(self, previous: ScanState | None, quiet: bool = False,
                  logger: logging.Logger = log) -> ScanResult:
        """:meth:`scan` from ``previous``, or without it if it turns out to contradict the disk
        (said at debug level on ``logger``)."""
        if previous is not None:
            try:
                return self.scan(previous, quiet)
            except StateMismatch as exc:
                logger.debug("saved index state ignored: %s", exc)
        return self.scan(None, quiet)

    def _rebuild(self, why: str) -> FrameIndex:
        """The index from the chunks' own files, after a saved state was found damaged."""
        warnings.warn(f"{why}; the frame index is rebuilt from the chunk indexes", ImgStoreWarning, stacklevel=2)
        self._distrust_saved = True
        result = self.scan(None, quiet=True)
        if self.after_damage is not None:
            self.after_damage(result)
        return result.index

    def _scan(self, previous: ScanState | None, quiet: bool, chunks: list[tuple[int, str]] | None = None
              ) -> ScanResult:
        if previous is not None and previous.digest is not None and self._distrust_saved:
            previous = None
        stat_time = time.time_ns()
        # keys first, reads after: a chunk changing in between is then seen as changed next time
        listing = self.listing(previous, chunks)
        n = len(listing)
        kinds = np.fromiter((c.key.kind for c in listing), dtype=np.int64, count=n)
        matched = np.zeros(n, dtype=bool)
        rows = np.zeros(n, dtype=np.int64)
        if previous is not None and n and len(previous.chunk_number):
            chunk_ns = np.fromiter((c.chunk_n for c in listing), dtype=np.int64, count=n)
            sizes = np.fromiter((c.key.size for c in listing), dtype=np.int64, count=n)
            mtimes = np.fromiter((c.key.mtime_ns for c in listing), dtype=np.int64, count=n)
            rows = np.minimum(np.searchsorted(previous.chunk_number, chunk_ns), len(previous.chunk_number) - 1)
            matched = ((previous.chunk_number[rows] == chunk_ns) & (kinds >= 0) & (previous.kind[rows] == kinds)
                       & (previous.size[rows] == sizes) & (previous.mtime_ns[rows] == mtimes))
            if previous.inode is not None:
                inodes = np.fromiter((c.key.inode for c in listing), dtype=np.uint64, count=n)
                matched &= previous.inode[rows] == inodes

        verify: set[int] = set()  # positions in listing whose previous frames are re-read and compared
        n_racy = 0
        if previous is not None and not previous.trusted and matched.any():
            positions = np.flatnonzero(matched)
            verify = {int(positions[0]), int(positions[-1]), int(random.choice(positions))}
            racy = positions[previous.mtime_ns[rows[positions]] >= previous.stat_time_ns - RACY_WINDOW_NS]
            n_racy = len(racy)
            if not self.storage.is_remote:
                # remote copies are whole objects, uploaded after the state was saved and checked by
                # their digests when used: re-reading a store made in a burst would cost a request per chunk
                verify.update(int(p) for p in racy)

        self._prefetch([listing[p] for p in sorted(verify)])
        if verify and previous is not None and is_lazy(previous.frame_number):
            # a cache file: the spot-checked chunks' frames of both arrays in one batch of reads
            spans = [(int(previous.start[r]), int(previous.start[r]) + int(previous.length[r]))
                     for r in (int(rows[p]) for p in verify)]
            arrays: tuple[Any, ...] = (previous.frame_number, previous.frame_time)
            load_together([(arr, a, b) for a, b in spans for arr in arrays])
        for pos in sorted(verify):
            assert previous is not None
            row = int(rows[pos])
            chunk = listing[pos]
            got = self._frames_of(chunk, quiet=True)
            if got is not None and _same(got, previous.frames(row)):
                continue
            if not previous.mtime_ns[row] >= previous.stat_time_ns - RACY_WINDOW_NS:
                raise StateMismatch(f"{previous.origin}: chunk {chunk.chunk_n} differs from its index although "
                                    f"the index file looks unchanged")
            # a racy entry really changed under an unchanged mtime: read it as new
            matched[pos] = False

        n_previous = len(previous.chunk_number) if previous is not None else -1
        if previous is not None and bool(np.all(kinds >= 0)) and n == n_previous and bool(matched.all()):
            # the fast path: the previous arrays (read by page from a cache file) are the index;
            # nothing is read or copied, and every entry is known good as of this listing
            inodes = np.fromiter((c.key.inode for c in listing), dtype=np.uint64, count=n)
            state = dataclasses.replace(previous, stat_time_ns=stat_time, inode=inodes)
            if not state.is_contiguous():
                state.complete()
            index = state.frame_index()
            if isinstance(index, CheckedFrameIndex):
                index.on_damage = self._rebuild
            # rewriting a file state with a later stat time ends the re-reading of racy entries;
            # worth it for many (a store made in a burst), not for a writer's last chunk or two
            refresh = n_racy >= REFRESH_MIN_RACY and int(state.mtime_ns.max()) < time.time_ns() - RACY_WINDOW_NS
            return ScanResult(index=index, state=state, unchanged=True, refresh_racy=refresh)

        # every chunk's frames go straight into one pair of arrays (no per-chunk arrays kept
        # for a concatenation at the end): 16 bytes per frame at the peak instead of 32
        stack = FrameStack(n)
        read: list[tuple[ListedChunk, slice, bool]] = []  # chunk, its frames in stack, kept in the state
        fresh = 0
        if previous is not None and matched.any() and is_lazy(previous.frame_number) and self.storage.is_remote:
            # many chunks from a remote cache: its arrays in one go, not a request per chunk (a local
            # cache is read chunk by chunk: mapping it whole would keep it resident beside the new arrays)
            previous = dataclasses.replace(previous, frame_number=np.asarray(previous.frame_number),
                                           frame_time=np.asarray(previous.frame_time))
        unread = [p for p in range(n) if not matched[p]]
        batches = {unread[i]: [listing[p] for p in unread[i:i + _PREFETCH_BATCH]]
                   for i in range(0, len(unread), _PREFETCH_BATCH)}
        for pos, chunk in enumerate(listing):
            if pos in batches:
                self._prefetch(batches[pos])
            if matched[pos]:
                assert previous is not None
                frames = previous.checked_frames(int(rows[pos]))
                kept = True
            else:
                got = self._frames_of(chunk, quiet)
                if got is None:
                    continue
                frames = got
                # journaled (or otherwise unindexed) chunks are read every time, never kept
                kept = chunk.key.indexed
                fresh += kept
            read.append((chunk, stack.append(*frames), kept))
        frame_number, frame_time = stack.arrays()
        if all(kept for _, _, kept in read):
            # the stacked arrays as they are (frame numbers held as runs stay runs)
            state = ScanState.of_chunks([chunk for chunk, _, _ in read],
                                        [part.stop - part.start for _, part, _ in read],
                                        stat_time, frame_number, frame_time)
            index = state.frame_index()
        else:
            state = ScanState.from_entries([(chunk, frame_number[part], frame_time[part])
                                            for chunk, part, kept in read if kept], stat_time)
            index = FrameIndex.from_chunks([(chunk.chunk_n, frame_number[part], frame_time[part])
                                            for chunk, part, _ in read])
        unchanged = previous is not None and fresh == 0 and len(state.chunk_number) == n_previous
        return ScanResult(index=index, state=state, unchanged=unchanged, refresh_racy=False)

    def _frames_of(self, chunk: ListedChunk, quiet: bool) -> tuple[np.ndarray, np.ndarray] | None:
        table = self.read_table(chunk.chunk_n, chunk.base, quiet=quiet)
        if table is None:
            return None
        return (np.asarray(table["frame_number"], dtype=np.int64),
                np.asarray(table["frame_time"], dtype=np.float64))


def _same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    return bool(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True))


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """True if ``a`` and ``b`` are the same memory (a memmap and its ndarray view, say)."""
    if a is b:
        return True  # a RunArray, say, which has no buffer of its own
    if isinstance(a, RunArray) or isinstance(b, RunArray):
        return False
    return (len(a) == len(b) and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])
