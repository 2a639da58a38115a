"""Finishing the chunks a killed writer left open, without destroying anything unreadable.

Shared by :func:`imgstore.repair` (every chunk, with a report) and by opening a crashed store
for appending (its journaled chunks get an index before new frames are added). The rules:

* a chunk's frames are those its journal (or index) describes *and* the payload holds: the
  backend's ``recover_chunk`` decides, exactly as a reader of the crashed store does;
* a chunk is deleted only when it provably holds nothing: no frame the backend can find, no
  extra data;
* anything that cannot be interpreted (a journal whose header fails its checksum, an index
  that cannot be read and has no journal, frames neither index nor journal describe, journal
  records or extra-data lines that fail their check) is moved into the store's ``damaged/``
  folder, never deleted, and listed;
* extra-data records keep pointing at the frames they were added with: the writer's
  ``frame_index`` is mapped onto the frames that survived (records whose frame is gone are
  kept in ``damaged/`` instead).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import errno
import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import ondisk
from ..errors import ChunkReadError, IndexCorruptError, StoreWriteError
from ..ondisk import StoreMetadata
from ..storage import PARTIAL_SUFFIX
from .contract import Backend
from .disk_guard import RESERVE_FILENAME
from .writing import remove_chunk_files

__all__ = ["RecoveryLog", "finish_chunks", "has_unfinished_chunks"]

_CHUNK_FILE_SUFFIXES = (*ondisk.INDEX_SUFFIXES, ondisk.JOURNAL_SUFFIX, ondisk.EXTRA_JSON_SUFFIX,
                        ondisk.EXTRA_JOURNAL_SUFFIX)

#: what a chunk whose payload is gone may leave behind (its index is a layout problem, handled first)
_STRAY_SUFFIXES = (ondisk.JOURNAL_SUFFIX, ondisk.EXTRA_JOURNAL_SUFFIX, ondisk.EXTRA_JSON_SUFFIX)


@dataclasses.dataclass
class RecoveryLog:
    """What finishing a store's chunks did (or, with ``dry_run``, would do).

    Attributes
    ----------
    dry_run
        True if nothing is changed.
    actions
        One line per change, in the order made.
    recovered
        ``{chunk number: frames}`` for every chunk whose index was written from its journal.
    dropped
        Chunks deleted because they held nothing (no frame, no extra data).
    moved
        Paths (relative to the store) of what was put into its ``damaged/`` folder.
    left
        Problems that could not be handled; the files concerned are untouched.
    """

    dry_run: bool = False
    actions: list[str] = dataclasses.field(default_factory=list)
    recovered: dict[int, int] = dataclasses.field(default_factory=dict)
    dropped: list[int] = dataclasses.field(default_factory=list)
    moved: list[str] = dataclasses.field(default_factory=list)
    left: list[str] = dataclasses.field(default_factory=list)

    def do(self, what: str, action: Callable[[], Any]) -> None:
        """Record ``what`` and, unless this is a dry run, do it."""
        self.actions.append(what)
        if not self.dry_run:
            action()


def has_unfinished_chunks(backend: Backend) -> bool:
    """True if a chunk of the store lacks its index (a writer died with it open)."""
    return any(ondisk.find_index_file(base, storage=backend.storage) is None for _, base in backend.list_chunks())


def finish_chunks(backend: Backend, smd: StoreMetadata, log: RecoveryLog) -> None:
    """Give every chunk an index and its extra data their closed form; set aside what cannot be read.

    The caller holds the store's lock (or, for a dry run, knows no writer is alive).
    """
    _Finisher(backend, smd, log).run()


# ---------------------------------------------------------------------------- where frames went


class _FrameMap:
    """Where the frames a writer counted ended up: its ``frame_index`` to the store's, chunk by chunk."""

    def __init__(self) -> None:
        # (writer's first frame_index, frames it counted, the store's first frame_index, frame numbers kept)
        self._chunks: list[tuple[int | None, int, int, np.ndarray]] = []
        self._homes: list[str | None] = []  # where each chunk's extra data lives (None: set aside)
        self._writer_pos: int | None = 0
        self._reader_pos = 0
        self.shifted = False  # some frame a writer counted is not where it counted it
        self._saved: tuple[int | None, int, bool] = (0, 0, False)

    def add(self, writer_n: int | None, frame_numbers: np.ndarray, home: str | None = None) -> None:
        """Add the next chunk: ``writer_n`` frames counted by its writer (None: unknown), those kept."""
        self._saved = (self._writer_pos, self._reader_pos, self.shifted)
        first = self._writer_pos
        self._chunks.append((first, writer_n or 0, self._reader_pos, frame_numbers))
        self._homes.append(home)
        if first is None or writer_n is None:
            self._writer_pos = None
        else:
            self._writer_pos = first + writer_n
        self._reader_pos += len(frame_numbers)
        self.shifted |= writer_n != len(frame_numbers) or first != self._reader_pos - len(frame_numbers)

    def forget_last(self) -> None:
        """Undo the last :meth:`add`."""
        self._chunks.pop()
        self._homes.pop()
        self._writer_pos, self._reader_pos, self.shifted = self._saved

    def home_of(self, frame_index: int) -> str | None:
        """The base of the chunk holding the store's frame ``frame_index`` (None: no such frame)."""
        for (_, _, reader_first, numbers), home in zip(self._chunks, self._homes, strict=True):
            if reader_first <= frame_index < reader_first + len(numbers):
                return home
        return None

    def place(self, record: dict[str, Any]) -> int | None:
        """The store's frame_index of the frame ``record`` was added with (None: that frame is gone)."""
        frame_index, frame_number = record.get("frame_index"), record.get("frame_number")
        if isinstance(frame_index, bool) or not isinstance(frame_index, int):
            return None
        if frame_index < 0:
            return frame_index  # added before the store's first frame
        known = [(first, n, reader_first, numbers) for first, n, reader_first, numbers in self._chunks
                 if first is not None]
        at = bisect.bisect_right([c[0] for c in known], frame_index) - 1
        if at >= 0:
            writer_first, writer_n, reader_first, numbers = known[at]
            offset = frame_index - writer_first
            if offset < writer_n:
                if offset >= len(numbers) or (frame_number is not None and numbers[offset] != frame_number):
                    return None
                return reader_first + offset
        if len(known) == len(self._chunks) or isinstance(frame_number, bool) or not isinstance(frame_number, int):
            return None
        # behind a chunk of unknown length: only an unambiguous frame_number says where
        hits = [reader_first + int(i) for _, _, reader_first, numbers in self._chunks
                for i in np.flatnonzero(numbers == frame_number)]
        return hits[0] if len(hits) == 1 else None


# ---------------------------------------------------------------------------- the walk


class _Finisher:
    def __init__(self, backend: Backend, smd: StoreMetadata, log: RecoveryLog) -> None:
        self.backend, self.smd, self.log = backend, smd, log
        self.storage = backend.storage
        self.frames = _FrameMap()
        self._rehomed: dict[str, list[dict[str, Any]]] = {}

    def run(self) -> None:
        listed = dict(self.backend.list_chunks())
        orphans = {n: self.backend.chunk_base(n) for n in self.backend.layout_problems() if n not in listed}
        for chunk_n in sorted({*listed, *orphans}):
            if chunk_n in orphans:
                self._orphan_index(chunk_n, orphans[chunk_n])
            else:
                self._chunk(chunk_n, listed[chunk_n])
        self._leftovers(listed)
        self._write_rehomed()

    # ------------------------------------------------------------------ one chunk

    def _chunk(self, chunk_n: int, base: str) -> None:
        storage = self.storage
        journal = base + ondisk.JOURNAL_SUFFIX
        has_journal = storage.exists(journal)
        index_path = ondisk.find_index_file(base, storage=storage)
        if index_path is not None:
            try:
                table = ondisk.read_chunk_index(index_path, storage=storage)
            except IndexCorruptError as exc:
                if not has_journal:
                    self._set_aside_chunk(chunk_n, base, f"its index cannot be read ({exc})")
                    return
                # the journal still describes the chunk: the index is rebuilt from it, the bad one kept
                self._keep_copy(index_path, f"the unreadable index of chunk {chunk_n}", remove=True)
            else:
                if has_journal:
                    # the writer died after writing the index, before removing the journal
                    self.log.do(f"remove the journal of closed chunk {chunk_n}: {journal}",
                                functools.partial(storage.remove, journal))
                n = len(table["frame_number"])
                self.frames.add(n, np.asarray(table["frame_number"]), home=base)
                self._extra(chunk_n, base, journaled=False)
                return
        if not has_journal:
            if self.backend.chunk_has_payload(chunk_n):
                self._set_aside_chunk(chunk_n, base, "it holds frames but neither an index nor a journal (a writer "
                                                     "that keeps no journal, such as imgstore 0.4, died): their "
                                                     "frame numbers and times are unknown")
            else:
                self._drop(chunk_n, base, "created, but the writer died before its first frame")
            return
        self._journaled_chunk(chunk_n, base, journal)

    def _journaled_chunk(self, chunk_n: int, base: str, journal: str) -> None:
        try:
            contents = ondisk.read_journal_contents(journal, storage=self.storage)
        except IndexCorruptError as exc:
            # garbage is never turned into frame numbers: the whole chunk is kept as it is
            self._set_aside_chunk(chunk_n, base, f"its journal cannot be read ({exc})")
            return
        journaled = len(contents.table["frame_number"])
        table: dict[str, np.ndarray] | None
        try:
            table = self.backend.recover_chunk(chunk_n, contents.table) if journaled else dict(contents.table)
        except ChunkReadError as exc:
            if self.backend.chunk_has_payload(chunk_n):
                self._set_aside_chunk(chunk_n, base, f"its frames cannot be read ({exc})",
                                      writer_n=journaled + contents.damaged_records)
                return
            table = None  # an empty payload: nothing was stored
        if table is None:
            table = {"frame_number": np.zeros(0, np.int64), "frame_time": np.zeros(0, np.float64)}
        n = len(table["frame_number"])
        writer_n = journaled + contents.damaged_records
        self.frames.add(writer_n, np.asarray(table["frame_number"]), home=base)
        kept_extra = self._extra(chunk_n, base, journaled=True, dry_count=True)
        if n == 0 and kept_extra == 0:
            payload = self.backend.chunk_has_payload(chunk_n)
            # a frame's payload is written before its journal record: one frame and not a single
            # record is the frame being written when the writer died, never acknowledged
            in_flight = payload and journaled == 0 and not contents.damaged_records \
                and self.backend.payload_frame_count(chunk_n) == 1
            if payload and not in_flight:
                self.frames.forget_last()
                self._set_aside_chunk(chunk_n, base, "its payload holds data no journal record describes",
                                      writer_n=writer_n)
            else:
                self._extra(chunk_n, base, journaled=True)  # lines that cannot be placed are kept aside
                self._drop(chunk_n, base, "its only frame was being written when the writer died (never "
                                          "acknowledged)" if in_flight else "no recoverable frame")
            return
        what = f"write the index of chunk {chunk_n} from its journal ({n} frames"
        if n < journaled:
            what += f" of {journaled} journaled; the others are not in its payload"
        what += f", keeping its {kept_extra} extra data records)" if n == 0 else ")"
        self.log.do(what, functools.partial(ondisk.write_chunk_index, base, table, self.smd, storage=self.storage))
        self.log.recovered[chunk_n] = n
        self._extra(chunk_n, base, journaled=True)
        if contents.damaged_records:
            self._keep_copy(journal, f"the journal of chunk {chunk_n} ({contents.damaged_records} record(s) "
                                     f"fail their checksum)", remove=True)
        else:
            self.log.do(f"remove the journal {journal}", functools.partial(self.storage.remove, journal))

    def _orphan_index(self, chunk_n: int, base: str) -> None:
        """An index (and perhaps extra data) whose payload is gone: nothing reads it; keep it aside."""
        writer_n = None
        path = ondisk.find_index_file(base, storage=self.storage)
        if path is not None:
            with contextlib.suppress(IndexCorruptError):
                writer_n = len(ondisk.read_chunk_index(path, storage=self.storage)["frame_number"])
        self._set_aside_chunk(chunk_n, base, "its payload is missing", writer_n=writer_n)

    def _drop(self, chunk_n: int, base: str, why: str) -> None:
        self.log.do(f"delete chunk {chunk_n}: {why}",
                    functools.partial(remove_chunk_files, self.backend, chunk_n, base))
        self.log.dropped.append(chunk_n)

    # ------------------------------------------------------------------ extra data

    def _extra(self, chunk_n: int, base: str, journaled: bool, dry_count: bool = False) -> int:
        """Bring a chunk's extra data to its closed form; the number of records it keeps.

        With ``dry_count`` only count what would be kept, changing nothing.
        """
        storage, log = self.storage, self.log
        lines, final = base + ondisk.EXTRA_JOURNAL_SUFFIX, base + ondisk.EXTRA_JSON_SUFFIX
        if storage.exists(final):
            if storage.exists(lines) and not dry_count:
                # written (atomically) at the chunk's close; only the removal of the lines was missed
                log.do(f"remove the extra-data journal of chunk {chunk_n}: {lines}",
                       functools.partial(storage.remove, lines))
            try:
                records = ondisk.read_extra_json(final, storage=storage)
            except IndexCorruptError as exc:
                if not dry_count:
                    self._keep_copy(final, f"the extra data of chunk {chunk_n}, unreadable ({exc})", remove=True)
                return 0
            if not (journaled or self.frames.shifted):
                return len(records)  # nothing moved under these records: the file is left as it is
            bad_lines: list[int] = []
        elif storage.exists(lines):
            records, bad_lines = ondisk.read_extra_lines(lines, storage=storage)
        else:
            return 0
        placed, unplaced = self._place(records)
        if dry_count:
            return len(placed)
        source = final if storage.exists(final) else lines
        if source == final and not unplaced and placed == records:
            return len(placed)  # every record points where it did
        if unplaced or bad_lines:
            why = []
            if unplaced:
                why.append(f"{len(unplaced)} record(s) whose frame is not in the store")
            if bad_lines:
                why.append(f"unreadable line(s) {bad_lines[:5]}")
            self._keep_copy(source, f"the extra data of chunk {chunk_n} ({'; '.join(why)})", remove=False)
        if placed:
            text = "[" + ", ".join(ondisk.encode_extra_record(r) for r in placed) + "]"
            log.do(f"write the extra data of chunk {chunk_n} ({len(placed)} records) to {final}",
                   functools.partial(storage.write_bytes, final, text.encode("utf-8")))
        elif source == final:
            log.do(f"remove the extra data of chunk {chunk_n}: no record has its frame",
                   functools.partial(storage.remove, final))
        if source == lines:
            log.do(f"remove the extra-data journal {lines}", functools.partial(storage.remove, lines))
        return len(placed)

    def _place(self, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        placed, unplaced = [], []
        for record in records:
            frame_index = self.frames.place(record)
            if frame_index is None:
                unplaced.append(record)
            elif frame_index != record.get("frame_index"):
                placed.append({**record, "frame_index": frame_index})
            else:
                placed.append(record)
        return placed, unplaced

    # ------------------------------------------------------------------ damaged/

    def _relative(self, path: str) -> str:
        return os.path.relpath(path, self.backend.basedir)

    def _aside(self, path: str) -> str:
        """A free name in ``damaged/`` for ``path``."""
        relative = self._relative(path)
        folder = self.storage.join(self.backend.basedir, ondisk.DAMAGED_FOLDER)
        for part in ["", *relative.split(os.sep)[:-1]]:
            folder = self.storage.join(folder, part) if part else folder
            if self.storage.is_link(folder):
                # moving through a link would put the store's files wherever it points
                raise StoreWriteError(errno.ELOOP, f"{folder} is a symbolic link: not moving {path} into it",
                                      folder)
        target = self.storage.join(self.backend.basedir, ondisk.DAMAGED_FOLDER, relative)
        candidate, k = target, 0
        while self.storage.exists(candidate) or self.storage.is_link(candidate):
            k += 1
            candidate = f"{target}.{k}"
        return candidate

    def _set_aside_chunk(self, chunk_n: int, base: str, why: str, writer_n: int | None = None) -> None:
        """Move every file of chunk ``chunk_n`` into ``damaged/`` (its frames leave the store).

        Its extra-data records that name frames of earlier chunks stay in the store (with the
        chunk holding their frame): the writer files a record with the chunk open when it was
        added, which after a chunk's last frame is already the next one.
        """
        self.frames.add(writer_n, np.zeros(0, np.int64))
        for suffix in (ondisk.EXTRA_JSON_SUFFIX, ondisk.EXTRA_JOURNAL_SUFFIX):
            if self.storage.exists(base + suffix):
                self._rehome(base + suffix)
                break
        payload = self.backend.payload_path(chunk_n)
        paths = [payload] if self.storage.exists(payload) or self.storage.is_link(payload) else []
        inside = payload.rstrip("/") + "/"
        paths += [base + s for s in _CHUNK_FILE_SUFFIXES
                  if not (base + s).startswith(inside) and self.storage.exists(base + s)]
        for path in paths:
            target = self._aside(path)
            self.log.do(f"move {self._relative(path)} to {self._relative(target)}: chunk {chunk_n} "
                        f"cannot be read, {why}", functools.partial(self.storage.move, path, target))
            self.log.moved.append(self._relative(target))

    def _rehome(self, path: str) -> None:
        """Note the records of extra-data file ``path`` that name frames still in the store."""
        try:
            if path.endswith(ondisk.EXTRA_JOURNAL_SUFFIX):
                records, _ = ondisk.read_extra_lines(path, storage=self.storage)
            else:
                records = ondisk.read_extra_json(path, storage=self.storage)
        except IndexCorruptError:
            return
        placed, _ = self._place(records)
        for record in placed:
            home = self.frames.home_of(record["frame_index"])
            if home is not None:
                self._rehomed.setdefault(home, []).append(record)

    def _write_rehomed(self) -> None:
        for home, records in self._rehomed.items():
            final = home + ondisk.EXTRA_JSON_SUFFIX

            def append(final: str = final, records: list[dict[str, Any]] = records) -> None:
                existing = ondisk.read_extra_json(final, storage=self.storage) if self.storage.exists(final) else []
                text = "[" + ", ".join(ondisk.encode_extra_record(r) for r in [*existing, *records]) + "]"
                self.storage.write_bytes(final, text.encode("utf-8"))

            self.log.do(f"add {len(records)} extra data record(s) of a chunk set aside to {final}, the extra "
                        f"data of the chunk holding their frames", append)

    def _keep_copy(self, path: str, what: str, remove: bool) -> None:
        """Put ``path`` (or, without ``remove``, a copy of it) into ``damaged/``."""
        target = self._aside(path)
        if remove:
            self.log.do(f"move {what} to {self._relative(target)}", functools.partial(self.storage.move, path, target))
        else:
            # a copy first: if this repair is interrupted, the next one still finds every record
            def copy() -> None:
                self.storage.makedirs(self.storage.dirname(target))
                self.storage.write_bytes(target, self.storage.read_bytes(path))
            self.log.do(f"keep {what} in {self._relative(target)}", copy)
        self.log.moved.append(self._relative(target))

    # ------------------------------------------------------------------ leftovers

    def _leftovers(self, listed: dict[int, str]) -> None:
        """Delete ``.partial`` files; set aside journals that belong to no chunk."""
        storage, basedir = self.storage, self.backend.basedir
        bases = {os.path.normpath(base) for base in listed.values()}
        folders = [basedir, *sorted(storage.join(basedir, e.name) for e in storage.list_dir(basedir)
                                     if e.is_dir and ondisk.parse_chunk_name(e.name) is not None)]
        for folder in folders:
            try:
                entries = sorted(storage.list_dir(folder), key=lambda e: e.name)
            except FileNotFoundError:
                continue  # a chunk dropped or set aside above
            for entry in entries:
                path = storage.join(folder, entry.name)
                if entry.name.endswith(PARTIAL_SUFFIX) and entry.is_file:
                    # the temporary file of a write that never completed: never acknowledged
                    self.log.do(f"remove the unfinished temporary file {path}",
                                functools.partial(storage.remove, path))
                elif folder == basedir and entry.name == RESERVE_FILENAME and entry.is_file:
                    # space a writer kept for finishing its chunk (it did not close): no data
                    self.log.do(f"remove the disk space reserve {path} of a writer that did not close",
                                functools.partial(storage.remove, path))
                else:
                    suffix = next((s for s in _STRAY_SUFFIXES if entry.name.endswith(s)), None)
                    if suffix and entry.is_file and os.path.normpath(path[: -len(suffix)]) not in bases:
                        self._stray(path)

    def _stray(self, path: str) -> None:
        """A journal or extra data of a chunk whose payload is gone (a video file deleted)."""
        try:
            if path.endswith(ondisk.JOURNAL_SUFFIX):
                empty = not len(ondisk.read_journal(path, storage=self.storage)["frame_number"])
            else:
                empty = not ondisk.read_extra_json(path, storage=self.storage)
        except IndexCorruptError:
            empty = False
        if empty:
            self.log.do(f"remove {path}: it describes nothing, of a chunk that does not exist",
                        functools.partial(self.storage.remove, path))
        else:
            if not path.endswith(ondisk.JOURNAL_SUFFIX):
                self._rehome(path)
            self._keep_copy(path, f"{self._relative(path)} of a chunk that does not exist", remove=True)
