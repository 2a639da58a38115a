"""Finalise a store whose writer crashed, so that every reader sees it as a closed store.

A writer killed mid-recording leaves its store readable as it is: readers recover the open
chunk from its journal (``<chunk>.journal``) and its extra data from ``<chunk>.extra.jsonl``.
What it leaves is not *finished*, though: the reference library (imgstore 0.4) ignores
journals, so it does not see the last chunk; an append refuses a store with damaged chunks;
and the ``.lock`` of the dead writer stays behind. :func:`repair` finishes the job the writer
could not:

* a chunk with a journal but no index gets its index, written from the journal and holding
  only the frames that are really on disk (for video: decodable; the backend's
  ``recover_chunk`` decides, exactly as when the store is opened for reading);
* ``<chunk>.extra.jsonl`` becomes ``<chunk>.extra.json`` (a torn last record is dropped);
* journals of chunks that have an index, ``.partial`` temporary files and a stale ``.lock``
  are removed;
* chunks without any recoverable frame (nor extra data) are deleted.

A lock held by a live writer is never broken: :class:`~imgstore.errors.StoreLockedError`.
Chunks repair cannot make sense of (frames but neither index nor journal, as a crashed
imgstore 0.4 writer leaves them; an unreadable index without a journal) are left in place
and listed in :attr:`RepairReport.left`. Every step is atomic (indexes are written to a
temporary file and renamed) and repair is idempotent, so a repair that is itself interrupted
is simply run again.

>>> report = imgstore.repair("/data/mouse1")          # doctest: +SKIP
>>> print(report)                                     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import ondisk
from ._lock import read_lock_owner
from .backends.contract import Backend
from .backends.registry import class_for_name
from .backends.writing import remove_chunk_files
from .errors import ChunkReadError, IndexCorruptError, MetadataError, StoreLockedError
from .factory import resolve_store_path
from .ondisk import StoreMetadata
from .storage import LOCAL, PARTIAL_SUFFIX, Storage

__all__ = ["RepairReport", "repair"]


@dataclasses.dataclass
class RepairReport:
    """What :func:`repair` did (or, with ``dry_run``, would do) to a store.

    Attributes
    ----------
    path
        The store's folder.
    dry_run
        True if nothing was changed.
    actions
        One line per change, in the order made.
    recovered
        ``{chunk number: frames}`` for every chunk whose index was written from its journal.
    dropped
        Chunks deleted because they held no recoverable frame.
    left
        Problems repair cannot fix; the files concerned are left untouched.
    frame_count
        Frames a reader sees after the repair (with ``dry_run``: sees now).
    """

    path: str
    dry_run: bool = False
    actions: list[str] = dataclasses.field(default_factory=list)
    recovered: dict[int, int] = dataclasses.field(default_factory=dict)
    dropped: list[int] = dataclasses.field(default_factory=list)
    left: list[str] = dataclasses.field(default_factory=list)
    frame_count: int = 0

    @property
    def changed(self) -> bool:
        """True if the store needed (with ``dry_run``: needs) a change."""
        return bool(self.actions)

    @property
    def clean(self) -> bool:
        """True if nothing is left that repair could not fix."""
        return not self.left

    def __str__(self) -> str:
        verb = "would " if self.dry_run else ""
        lines = [f"{verb}{a}" for a in self.actions]
        lines += [f"left as is: {p}" for p in self.left]
        if self.actions:
            summary = (f"{self.path}: {'would be ' if self.dry_run else ''}repaired; "
                       f"{self.frame_count} frames")
        else:
            summary = f"{self.path}: nothing to repair; {self.frame_count} frames"
        if self.recovered:
            summary += (f" ({sum(self.recovered.values())} recovered from the journal of chunk(s) "
                        f"{sorted(self.recovered)})")
        return "\n".join([*lines, summary])


def repair(path: str | os.PathLike, dry_run: bool = False, force: bool = False) -> RepairReport:
    """Finalise a store whose writer crashed (see the module documentation).

    Parameters
    ----------
    path
        The store's folder or its ``metadata.yaml``.
    dry_run
        Only report what would be done; change nothing (not even the lock).
    force
        Treat a lock that names *another machine* as stale. Such a lock cannot be checked
        from here (the writer may be alive there), so it is refused without ``force``.

    Returns
    -------
    RepairReport
        What was done; :attr:`RepairReport.left` lists what could not be fixed.

    Raises
    ------
    StoreNotFoundError
        No store at ``path``.
    MetadataError
        ``metadata.yaml`` is unreadable or names an unknown store class.
    StoreLockedError
        A live writer holds the store.
    StoreWriteError
        A change could not be written (read-only or full file system); what was done
        before stays valid and repair can be run again.
    """
    basedir, md_path = resolve_store_path(path, None, read=True)
    storage = LOCAL
    smd, _ = ondisk.read_metadata(md_path, storage=storage)
    cls = class_for_name(smd.class_name)
    if cls is None:
        raise MetadataError(f"{md_path}: store class {smd.class_name!r} not supported")
    report = RepairReport(path=basedir, dry_run=dry_run)

    lock_path = storage.join(basedir, ondisk.STORE_LOCK_FILENAME)
    had_lock = storage.exists(lock_path)
    owner = read_lock_owner(basedir) if had_lock else None
    if had_lock and owner and owner.get("host") not in (None, socket.gethostname()) and not force:
        raise StoreLockedError(
            f"store {basedir!r} is locked by pid {owner.get('pid', '?')} on {owner.get('host')!r}, another "
            f"machine: cannot tell whether that writer is alive (use force if it is not)")
    lock = None
    if dry_run:
        if storage.is_locked(basedir):
            raise StoreLockedError(f"store {basedir!r} is being written by a live process: not repairing it")
    else:
        # held for the whole repair: no writer may start while indexes are written
        lock = storage.lock(basedir)
        lock.acquire()
    try:
        backend = cls.backend_class(storage, basedir, "r")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # every chunk that needs attention is reported below
            backend.configure(smd)
        try:
            _repair_chunks(backend, smd, report, dry_run)
            _remove_leftovers(backend, report, dry_run)
        finally:
            backend.close_readers()
        if had_lock:
            who = f" (pid {owner.get('pid', '?')} on {owner.get('host', '?')})" if owner else ""
            report.actions.append(f"remove the stale lock {lock_path}{who}")
    finally:
        if lock is not None:
            lock.release()  # also deletes .lock, stale or ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with cls(basedir=basedir, mode="r") as after:
            report.frame_count = after.frame_count
    return report


# ---------------------------------------------------------------------------- chunks


def _do(report: RepairReport, dry_run: bool, what: str, action: Callable[[], Any]) -> None:
    report.actions.append(what)
    if not dry_run:
        action()


def _repair_chunks(backend: Backend, smd: StoreMetadata, report: RepairReport, dry_run: bool) -> None:
    storage = backend.storage
    for chunk_n, base in sorted(backend.list_chunks()):
        journal = base + ondisk.JOURNAL_SUFFIX
        has_journal = storage.exists(journal)
        index_path = ondisk.find_index_file(base, storage=storage)
        if index_path is not None:
            try:
                ondisk.read_chunk_index(index_path, storage=storage)
            except IndexCorruptError as exc:
                if not has_journal:
                    report.left.append(f"chunk {chunk_n}: {exc}")
                    continue
                # the journal still describes the chunk: rebuild the index from it
                index_path = None
        if index_path is not None:
            if has_journal:
                # the writer died after writing the index, before removing the journal
                _do(report, dry_run, f"remove the journal of closed chunk {chunk_n}: {journal}",
                    functools.partial(storage.remove, journal))
            _finish_extra_data(storage, chunk_n, base, report, dry_run)
            continue

        if not has_journal:
            if backend.chunk_has_payload(chunk_n):
                report.left.append(
                    f"chunk {chunk_n} holds frames but neither an index nor a journal (a writer that keeps no "
                    f"journal, such as imgstore 0.4, died): their frame numbers and times are unknown")
            else:
                _do(report, dry_run, f"delete chunk {chunk_n}: created, but the writer died before its first frame",
                    functools.partial(remove_chunk_files, backend, chunk_n, base))
                report.dropped.append(chunk_n)
            continue

        try:
            table = backend.recover_chunk(chunk_n, ondisk.read_journal(journal, storage=storage))
        except (IndexCorruptError, ChunkReadError) as exc:
            # an unreadable journal or payload: no frame of this chunk can be trusted
            table = None
            why = str(exc)
        n = 0 if table is None else len(table["frame_number"])
        n_extra = _count_extra(storage, base)
        if n == 0 and n_extra == 0:
            reason = "no recoverable frame" + (f" ({why})" if table is None else "")
            _do(report, dry_run, f"delete chunk {chunk_n}: {reason}",
                functools.partial(remove_chunk_files, backend, chunk_n, base))
            report.dropped.append(chunk_n)
            continue
        if table is None:
            table = {"frame_number": np.zeros(0, np.int64), "frame_time": np.zeros(0, np.float64)}
        what = f"write the index of chunk {chunk_n} from its journal ({n} frames"
        what += f", keeping its {n_extra} extra data records)" if n == 0 else ")"
        _do(report, dry_run, what,
            functools.partial(ondisk.write_chunk_index, base, table, smd, storage=storage))
        report.recovered[chunk_n] = n
        _finish_extra_data(storage, chunk_n, base, report, dry_run)
        _do(report, dry_run, f"remove the journal {journal}", functools.partial(storage.remove, journal))


def _count_extra(storage: Storage, base: str) -> int:
    for path in (base + ondisk.EXTRA_JSON_SUFFIX, base + ondisk.EXTRA_JOURNAL_SUFFIX):
        if storage.exists(path):
            try:
                return len(ondisk.read_extra_json(path, storage=storage))
            except IndexCorruptError:
                return 0
    return 0


def _finish_extra_data(storage: Storage, chunk_n: int, base: str, report: RepairReport, dry_run: bool) -> None:
    jsonl = base + ondisk.EXTRA_JOURNAL_SUFFIX
    final = base + ondisk.EXTRA_JSON_SUFFIX
    if not storage.exists(jsonl):
        return
    if storage.exists(final):
        # written (atomically) at the chunk's close; only the removal of the lines was missed
        _do(report, dry_run, f"remove the extra-data journal of chunk {chunk_n}: {jsonl}",
            functools.partial(storage.remove, jsonl))
        return
    try:
        records = ondisk.read_extra_json(jsonl, storage=storage)
    except IndexCorruptError as exc:
        report.left.append(f"chunk {chunk_n}: {exc}")
        return

    def convert() -> None:
        # records as the writer encoded them (one JSON object each), in the reference's array form
        text = "[" + ", ".join(ondisk.encode_extra_record(r) for r in records) + "]"
        storage.write_bytes(final, text.encode("utf-8"))
        storage.remove(jsonl)

    _do(report, dry_run, f"write the extra data of chunk {chunk_n} ({len(records)} records) to {final}", convert)


# ---------------------------------------------------------------------------- leftovers


def _remove_leftovers(backend: Backend, report: RepairReport, dry_run: bool) -> None:
    """Delete ``.partial`` temporary files and journals that belong to no chunk."""
    storage, basedir = backend.storage, backend.basedir
    listed = {os.path.normpath(base) for _, base in backend.list_chunks()}
    folders = [basedir, *sorted(storage.join(basedir, e.name) for e in storage.list_dir(basedir)
                                 if e.is_dir and ondisk.parse_chunk_name(e.name) is not None)]
    for folder in folders:
        try:
            entries = sorted(storage.list_dir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            continue  # a chunk dropped above
        for entry in entries:
            path = storage.join(folder, entry.name)
            if entry.name.endswith(PARTIAL_SUFFIX) and entry.is_file:
                _do(report, dry_run, f"remove the unfinished temporary file {path}",
                    functools.partial(storage.remove, path))
            elif entry.name.endswith(ondisk.JOURNAL_SUFFIX) and os.path.normpath(
                    path[: -len(ondisk.JOURNAL_SUFFIX)]) not in listed:
                # e.g. the journal of a video chunk whose file is gone: nothing it describes exists
                _do(report, dry_run, f"remove the journal {path} of a chunk that does not exist",
                    functools.partial(storage.remove, path))
