"""Copy a store to object storage, so that the copy is a valid (growing) store at every moment: :func:`sync`.

Order of the uploads (each file is one PUT: object stores show a file whole or not at all)::

    metadata.yaml                 first: the remote folder is a store from then on
    000000.mkv  000000.extra.json    each complete chunk: its payload (a directory chunk's frame
    000000.npz                       files), its extra data, then its index; readers of the remote
    000001.mkv ...                   copy see a chunk only once its index is there
    .index.sqlite, other files
    .imgstore-index.cache         last, only when every chunk it may describe is uploaded, and
                                  only when it is fresh (rewritten first if a chunk file is newer;
                                  never while a writer is live: it writes one when it closes)

A chunk is *complete* once its writer wrote its index; the chunk being recorded (no index yet),
journals, the writer's lock and reserve, temporary files and ``damaged/`` are never uploaded.

Idempotent and resumable: a file already on the remote with the same size and content (its
MD5, from the object's ETag when it is a plain MD5, else read back) is skipped, so a rerun after
a failure uploads only what is missing. A remote chunk file that differs from the local one (a
store repaired since) is replaced, but the remote index cache is removed first, so no reader
trusts a cache that describes the old chunk. Every uploaded file is checked after the upload
(``verify``): its remote size and MD5 must be the local ones.

``follow=True`` keeps going while a writer holds the store's lock: each pass uploads the chunks
closed since the last one; when the writer is gone a last pass uploads the rest (and the index
cache the writer left) and :func:`sync` returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .errors import StoreNotFoundError, StoreWriteError
from .index_cache import CACHE_FILENAME
from .ondisk import DAMAGED_FOLDER, INDEX_SUFFIXES, JOURNAL_SUFFIX, STORE_INDEX_FILENAME, STORE_MD_FILENAME
from .remote import filesystem, scrub
from .storage import LOCAL, PARTIAL_SUFFIX

__all__ = ["SyncReport", "sync"]

log = logging.getLogger("imgstore.sync")

#: attempts of one upload before :class:`~imgstore.errors.StoreWriteError`
UPLOAD_ATTEMPTS = 4
#: first pause between attempts (s), doubled each time
RETRY_BACKOFF = 0.5
#: seconds between passes with ``follow=True`` (a chunk is uploaded at most this long after it closes)
FOLLOW_INTERVAL = 2.0
_HASH_BLOCK = 4 * 1024 * 1024
_CHUNK_RE = re.compile(r"^(\d{6})(\..+)?$")
_MD5_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')


@dataclasses.dataclass
class SyncReport:
    """What :func:`sync` did (summed over the passes of ``follow=True``)."""

    #: files uploaded, relative to the store
    uploaded: list[str] = dataclasses.field(default_factory=list)
    #: files already on the remote (same size and content)
    skipped: int = 0
    #: bytes uploaded
    bytes: int = 0
    #: complete chunks on the remote after the last pass
    chunks: int = 0
    #: passes made
    passes: int = 0
    #: the remote index cache was removed before a chunk was replaced
    removed_cache: bool = False


@dataclasses.dataclass
class _Plan:
    """The files of one pass, in upload order (relative names), and the local chunks seen complete."""

    files: list[str]
    complete_chunks: set[str]


def _plan(src: str) -> _Plan:
    """The local store's files to upload, in order (see the module documentation)."""
    head: list[str] = []
    chunks: dict[str, list[str]] = {}
    indexes: dict[str, list[str]] = {}
    tail: list[str] = []
    cache: list[str] = []
    for entry in sorted(LOCAL.list_dir(src), key=lambda e: e.name):
        name = entry.name
        if name == STORE_MD_FILENAME:
            head.append(name)
        elif name == CACHE_FILENAME:
            cache.append(name)
        elif name == STORE_INDEX_FILENAME:
            tail.append(name)
        elif _skipped(name) or name == DAMAGED_FOLDER:
            continue
        elif (m := _CHUNK_RE.match(name)) is not None:
            chunk = m.group(1)
            if entry.is_dir:
                for inner in sorted(LOCAL.list_dir(LOCAL.join(src, name)), key=lambda e: e.name):
                    if inner.is_file and not _skipped(inner.name):
                        rel = f"{name}/{inner.name}"
                        is_index = inner.name in tuple("index" + s for s in INDEX_SUFFIXES)
                        (indexes if is_index else chunks).setdefault(chunk, []).append(rel)
            elif entry.is_file:
                (indexes if m.group(2) in INDEX_SUFFIXES else chunks).setdefault(chunk, []).append(name)
        elif entry.is_file:
            tail.append(name)
    files = list(head)
    for chunk in sorted(indexes):
        files += chunks.get(chunk, []) + indexes[chunk]  # payload and extra data, then the index
    return _Plan(files + tail + cache, set(indexes))


def _skipped(name: str) -> bool:
    """Never uploaded: hidden files (the lock, the reserve, temporaries), journals, partial writes."""
    return name.startswith(".") or name.endswith((JOURNAL_SUFFIX, PARTIAL_SUFFIX))


def _md5_of_file(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with LOCAL.open_read(path) as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class _Remote:
    """The remote store's folder: listing, upload with retries, checks."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = filesystem(self.url, storage_options)
        self.root = self.root.rstrip("/")
        #: files found equal to the local ones: (local size, local mtime, remote ETag) when checked
        self.known: dict[str, tuple[int, int, str]] = {}

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def listing(self) -> dict[str, dict[str, Any]]:
        """Every file under the store: ``{relative name: info}``."""
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        prefix = self.root + "/"
        return {str(name)[len(prefix):]: dict(info) for name, info in found.items() if str(name).startswith(prefix)}

    def md5(self, rel: str, info: Mapping[str, Any]) -> str:
        """The remote file's MD5: from its ETag when that is one (single-part uploads), else read back."""
        etag = str(info.get("ETag") or info.get("etag") or "")
        match = _MD5_ETAG.match(etag)
        if match:
            return match.group(1).lower()
        digest = hashlib.md5(usedforsecurity=False)
        with self.fs.open(self.path(rel), "rb", block_size=_HASH_BLOCK) as f:
            while block := f.read(_HASH_BLOCK):
                digest.update(block)
        return digest.hexdigest()

    def same(self, local: str, rel: str, info: Mapping[str, Any] | None) -> bool:
        """The remote file is the local one (size, then content; known matches are not hashed again)."""
        if info is None:
            return False
        token = LOCAL.stat_token(local)
        if token is None or int(info.get("size") or 0) != token.size:
            return False
        key = (token.size, token.mtime_ns, str(info.get("ETag") or info.get("etag") or ""))
        if self.known.get(rel) == key:
            return True
        if self.md5(rel, info) != _md5_of_file(local):
            return False
        self.known[rel] = key
        return True

    def upload(self, local: str, rel: str, verify: bool) -> None:
        """One file, retried; checked afterwards when ``verify``; StoreWriteError when it keeps failing."""
        where = scrub(f"{self.url}/{rel}")
        delay = RETRY_BACKOFF
        for attempt in range(UPLOAD_ATTEMPTS):
            try:
                self.fs.put_file(local, self.path(rel))
                if verify:
                    self.fs.invalidate_cache(self.path(rel))
                    info = dict(self.fs.info(self.path(rel)))
                    if not self.same(local, rel, info):
                        raise OSError(errno.EIO, "the uploaded copy differs from the local file (size or MD5)")
                return
            except (FileNotFoundError, PermissionError) as exc:
                raise StoreWriteError(exc.errno or errno.EIO, f"cannot upload {rel} to {where}: "
                                      f"{scrub(str(exc))}", where) from None
            except Exception as exc:
                if attempt == UPLOAD_ATTEMPTS - 1:
                    raise StoreWriteError(errno.EIO, f"could not upload {rel} to {where} after {UPLOAD_ATTEMPTS} "
                                          f"attempts: {type(exc).__name__}: {scrub(str(exc)) or 'no detail'}",
                                          where) from None
                log.debug("uploading %s failed (%s), retrying", where, type(exc).__name__)
                time.sleep(delay)
                delay *= 2

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(rel))


def _cache_ready(src: str, plan: _Plan, writer_alive: bool) -> bool:
    """True when the local index cache may go up: it describes the chunks as they are now.

    A writer writes the cache when it closes, after every chunk index. A cache older than a chunk
    file (the store was repaired, or appended to, since) is rewritten first, by opening the store
    as a reader (:meth:`~imgstore.ImgStore.save_index_cache`); never while a writer is live
    (it writes its own when it closes: the next pass uploads it).
    """
    if writer_alive or CACHE_FILENAME not in plan.files:
        return False
    cache = LOCAL.stat_token(LOCAL.join(src, CACHE_FILENAME))
    tokens = [LOCAL.stat_token(LOCAL.join(src, rel)) for rel in plan.files if rel != CACHE_FILENAME]
    newest = max((t.mtime_ns for t in tokens if t is not None), default=0)
    if cache is not None and cache.mtime_ns >= newest:
        return True
    from .factory import new_for_filename

    with new_for_filename(src) as store:
        store.save_index_cache()
    return True


def _one_pass(src: str, remote: _Remote, verify: bool, report: SyncReport,
              progress: Callable[[str, int], None] | None, writer_alive: bool) -> None:
    listing = remote.listing()
    plan = _plan(src)
    if not _cache_ready(src, plan, writer_alive):
        plan.files = [f for f in plan.files if f != CACHE_FILENAME]
    todo: list[str] = []
    replaced = False
    for rel in plan.files:
        local = LOCAL.join(src, rel)
        info = listing.get(rel)
        if remote.same(local, rel, info):
            report.skipped += 1
            continue
        todo.append(rel)
        if info is not None and rel != CACHE_FILENAME and rel != STORE_MD_FILENAME:
            replaced = True
    if replaced and CACHE_FILENAME in listing and CACHE_FILENAME in plan.files and CACHE_FILENAME not in todo:
        todo.append(CACHE_FILENAME)  # removed below: it goes up again after the replaced files
    if replaced and CACHE_FILENAME in listing:
        # a chunk is replaced (the local store was repaired): no reader may trust the old cache meanwhile
        remote.remove(CACHE_FILENAME)
        report.removed_cache = True
    for rel in todo:
        if rel == CACHE_FILENAME and _plan(src).complete_chunks != plan.complete_chunks:
            continue  # chunks closed during this pass: the cache goes up after them, next pass
        local = LOCAL.join(src, rel)
        token = LOCAL.stat_token(local)
        remote.upload(local, rel, verify)
        report.uploaded.append(rel)
        size = token.size if token is not None else 0
        report.bytes += size
        if progress is not None:
            progress(rel, size)
        log.info("uploaded %s", rel)
    report.chunks = len(plan.complete_chunks)
    report.passes += 1


def sync(src: str, url: str, *, storage_options: Mapping[str, Any] | None = None, follow: bool = False,
         interval: float = FOLLOW_INTERVAL, verify: bool = True, progress: Callable[[str, int], None] | None = None,
         stop: threading.Event | None = None, after_pass: Callable[[SyncReport], None] | None = None) -> SyncReport:
    """Copy the store ``src`` to ``url`` (any fsspec URL), idempotently (see the module documentation).

    Parameters
    ----------
    src
        The local store's folder.
    url
        Where the copy goes (``s3://bucket/stores/mouse1``); created if needed.
    storage_options
        Passed to fsspec (credentials come from the usual fsspec/s3fs configuration).
    follow
        Keep uploading closed chunks while a writer records into ``src``; return once it is gone
        and everything is uploaded.
    interval
        Seconds between passes with ``follow``.
    verify
        Check each uploaded file's size and MD5 on the remote.
    progress
        Called with the name (relative to the store) and the size of each uploaded file.
    stop
        With ``follow``: set it to stop after the current pass.
    after_pass
        Called with the report after each pass.

    Returns
    -------
    SyncReport

    Raises
    ------
    StoreNotFoundError
        ``src`` is not a store.
    StoreWriteError
        An upload kept failing (an ``OSError``); the remote copy is still a valid store (chunks
        whose index was not uploaded are invisible to readers) and a rerun finishes the job.
    """
    src = str(src).rstrip("/") or "/"
    if LOCAL.stat_token(LOCAL.join(src, STORE_MD_FILENAME)) is None:
        raise StoreNotFoundError(errno.ENOENT, f"{src} is not a store (no {STORE_MD_FILENAME})", src)
    remote = _Remote(url, storage_options)
    report = SyncReport()
    while True:
        writer_alive = LOCAL.is_locked(src)
        _one_pass(src, remote, verify, report, progress, writer_alive)
        writer_alive = writer_alive and follow
        if after_pass is not None:
            after_pass(report)
        if not writer_alive or (stop is not None and stop.is_set()):
            return report  # the writer was gone before this pass began: it uploaded everything
        if stop is not None:
            if stop.wait(interval):
                return report
        else:
            time.sleep(interval)  # the polling interval of --follow
