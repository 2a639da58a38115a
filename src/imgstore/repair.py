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
* ``<chunk>.extra.jsonl`` becomes ``<chunk>.extra.json`` (a torn last record is dropped), its
  records pointing at the frames they were added with;
* journals of chunks that have an index, ``.partial`` temporary files and a stale ``.lock``
  are removed; chunks that provably hold nothing (no frame, no extra data) are deleted.

Nothing repair cannot interpret is deleted: a journal that fails its checksum, an unreadable
index without a journal, frames neither index nor journal describe (a crashed imgstore 0.4
writer leaves them), extra-data records whose frame is gone -- all go into the store's
``damaged/`` folder and are listed in :attr:`RepairReport.moved`. (imgstore 0.4 cannot open a
*directory* store holding that folder: inspect it, then move it out of the store.) A lock
held by a live writer is never broken: :class:`~imgstore.errors.StoreLockedError`. Every
step is atomic and repair is idempotent, so a repair that is itself interrupted is simply
run again.

>>> report = imgstore.repair("/data/mouse1")          # doctest: +SKIP
>>> print(report)                                     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import socket
import warnings

from . import ondisk
from ._lock import read_lock_owner
from .backends.recovery import RecoveryLog, finish_chunks
from .backends.registry import class_for_name
from .errors import MetadataError, StoreLockedError
from .factory import resolve_store_path
from .storage import LOCAL

__all__ = ["RepairReport", "repair"]


@dataclasses.dataclass
class RepairReport(RecoveryLog):
    """What :func:`repair` did (or, with ``dry_run``, would do) to a store.

    The attributes of :class:`~imgstore.backends.recovery.RecoveryLog` (``dry_run``, ``actions``,
    ``recovered``, ``dropped``, ``moved``, ``left``), and:

    Attributes
    ----------
    path
        The store's folder.
    frame_count
        Frames a reader sees after the repair (with ``dry_run``: sees now).
    """

    path: str = ""
    frame_count: int = 0

    @property
    def changed(self) -> bool:
        """True if the store needed (with ``dry_run``: needs) a change."""
        return bool(self.actions)

    @property
    def clean(self) -> bool:
        """True if nothing had to be set aside and nothing is left that repair could not fix."""
        return not self.left and not self.moved

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
        if self.moved:
            summary += (f"; {len(self.moved)} item(s) {'would be ' if self.dry_run else ''}set aside in "
                        f"{os.path.join(self.path, ondisk.DAMAGED_FOLDER)} (unreadable, never deleted)")
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
            finish_chunks(backend, smd, report)
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
