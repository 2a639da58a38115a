"""Stores on object storage: the read-only :class:`FsspecStorage` behind ``new_for_filename(url)``.

Any fsspec URL works: ``s3://``, ``gs://``, ``http(s)://``, ``memory://``, ``file://`` and
chained caches (``simplecache::s3://...``); ``storage_options`` go to fsspec unchanged, so
credentials come from the usual fsspec/s3fs configuration (environment, ``~/.aws``...). They
are never logged: every message names the URL without its user, password and query string
(:func:`scrub`).

Requests, and what they cost
    * listings are fetched once per folder and kept (names, sizes, times), so ``stat`` of a
      file in a listed folder costs nothing; :meth:`FsspecStorage.forget` drops them
      (``refresh()`` does);
    * small files are read whole in one request; large ones through a :class:`~imgstore.remote_io.RangeFile`
      (range requests, read-ahead block cache shared by the store's files);
    * many files (every chunk index of a store without an index cache) are fetched
      concurrently (:meth:`~FsspecStorage.prefetch`, :meth:`~FsspecStorage.stat_tokens`).

Failures
    Every request is retried (:data:`DEFAULT_RETRIES` times, backing off from
    :data:`RETRY_BACKOFF` seconds); a missing file is not retried. When the retries are spent
    :class:`~imgstore.errors.StoreReadError` (an ``OSError``) names the URL and the last cause. A
    short or over-long answer to a range request is a failure, never data.

Never a write: this storage refuses every write (``EROFS``), takes no lock and leaves no file
on the remote (chained caches keep their copies locally, as fsspec does).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import errno
import io
import logging
import posixpath
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO, TypeVar

import xxhash

from .errors import MissingDependencyError, StoreReadError
from .remote_io import BlockCache, RangeFile, cached_range
from .remote_urls import DEFAULT_TIMEOUT, filesystem, is_url, scrub
from .storage import DirEntry, StatToken, Storage

__all__ = ["DEFAULT_RETRIES", "DEFAULT_TIMEOUT", "FsspecStorage", "filesystem", "is_url", "scrub"]

log = logging.getLogger("imgstore.remote")

#: retries of a failed request before giving up (so at most 4 attempts)
DEFAULT_RETRIES = 3
#: first pause between attempts (s); doubled each time: 0.2 + 0.4 + 0.8 s at most in all
RETRY_BACKOFF = 0.2
#: files up to this size are read whole at their first read (a 10 000-frame chunk index is ~330 kB)
WHOLE_FILE_BYTES = 1024 * 1024
#: concurrent requests of one batch (chunk indexes of a store opened without its cache)
MAX_CONCURRENCY = 32
#: bytes of small files (up to WHOLE_FILE_BYTES each) kept once read whole (until forget())
_SMALL_FILES_BYTES = 32 * 1024 * 1024
#: bytes of prefetched files kept until read (a batch of chunk indexes)
_PREFETCH_BYTES = 256 * 1024 * 1024
#: requests RequestStats.log keeps
_LOG_LENGTH = 10_000

T = TypeVar("T")


def _mtime_ns(info: Mapping[str, Any]) -> int:
    for key in ("LastModified", "mtime", "updated", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime.datetime):
            return int(value.timestamp() * 1e9)
        if isinstance(value, (int, float)):
            return int(float(value) * 1e9)
        if isinstance(value, str):
            try:
                return int(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
            except ValueError:
                continue
    return 0


def _token(info: Mapping[str, Any]) -> StatToken:
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or ""
    identity = xxhash.xxh3_64_intdigest(str(etag).encode()) & ((1 << 63) - 1) if etag else 0
    return StatToken(int(info.get("size") or 0), _mtime_ns(info), identity)


def _is_dir_info(info: Mapping[str, Any]) -> bool:
    return info.get("type") == "directory" or str(info.get("name", "")).endswith("/")


_DEFINITE = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, StoreReadError,
             MissingDependencyError, TypeError, AttributeError)


@dataclasses.dataclass
class RequestStats:
    """Requests made and bytes received by one storage (tests and benchmarks read them).

    ``log`` holds ``(kind, path, nbytes)`` of the last :data:`_LOG_LENGTH` requests, ``kind``
    one of ``'list'``, ``'stat'``, ``'read'`` (paths without credentials).
    """

    requests: int = 0
    bytes: int = 0
    retries: int = 0
    log: collections.deque[tuple[str, str, int]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=_LOG_LENGTH))

    def add(self, kind: str, path: str, nbytes: int = 0) -> None:
        self.requests += 1
        self.bytes += nbytes
        self.log.append((kind, path, nbytes))

    def reset(self) -> None:
        """Start counting again."""
        self.requests = self.bytes = self.retries = 0
        self.log.clear()


class FsspecStorage(Storage):
    """A store's files behind an fsspec URL, read-only (see the module documentation).

    Parameters
    ----------
    url
        The store's folder (``s3://bucket/stores/week1``); every path this storage is given
        lies under it.
    storage_options
        Passed to fsspec (``endpoint_url``, ``anon``, ``key``/``secret``...).
    retries
        Retries of a failed request before :class:`~imgstore.errors.StoreReadError`.
    timeout
        Seconds before a request that gets no answer counts as failed.
    cache_bytes
        Bytes of the read-ahead block cache (:mod:`imgstore.remote_io`).
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None, *,
                 retries: int = DEFAULT_RETRIES, timeout: float = DEFAULT_TIMEOUT,
                 cache_bytes: int | None = None) -> None:
        self.url = url.rstrip("/") if not url.endswith("://") else url
        self.storage_options = dict(storage_options or {})
        self.retries = int(retries)
        self.timeout = float(timeout)
        self._cache_bytes = cache_bytes
        protocol = url.split("::")[-1].split("://")[0] if "://" in url else "file"
        self._fs, root = filesystem(self.url, self.storage_options, self.timeout)
        self._root = root.rstrip("/") if root not in ("/", "") else root
        self._http = protocol in ("http", "https")
        self.blocks = BlockCache(cache_bytes) if cache_bytes else BlockCache()
        self.stats = RequestStats()
        self._lock = threading.RLock()
        self._listings: dict[str, dict[str, dict[str, Any]]] = {}
        self._tokens: dict[str, StatToken | None] = {}
        self._prefetched: dict[str, bytes] = {}
        self._small: collections.OrderedDict[str, bytes] = collections.OrderedDict()  # see _keep
        self._expected: dict[str, int] = {}  # see expect_read
        self._ignored_ranges: set[str] = set()  # files a server sent whole when asked for a range
        self._small_bytes = 0

    # ------------------------------------------------------------------ identity

    @property
    def is_remote(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"FsspecStorage({scrub(self.url)!r})"

    def __getstate__(self) -> dict[str, Any]:
        # travels as how to reopen it (dask workers): never the open connections
        return {"url": self.url, "storage_options": self.storage_options, "retries": self.retries,
                "timeout": self.timeout, "cache_bytes": self._cache_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).__init__(self, state["url"], state["storage_options"], retries=state["retries"],
                            timeout=state["timeout"], cache_bytes=state["cache_bytes"])

    # ------------------------------------------------------------------ paths

    def join(self, *parts: str) -> str:
        return posixpath.join(*parts)

    def dirname(self, path: str) -> str:
        return path.rstrip("/").rsplit("/", 1)[0]

    def basename(self, path: str) -> str:
        return path.rstrip("/").rsplit("/", 1)[-1]

    def _fs_path(self, path: str) -> str:
        """The fsspec path of ``path`` (a URL under this storage's :attr:`url`)."""
        if path == self.url or path.rstrip("/") == self.url:
            return self._root
        if not path.startswith(self.url + "/"):
            raise ValueError(f"{scrub(path)} is not under {scrub(self.url)}")
        rel = path[len(self.url) + 1:].strip("/")
        return f"{self._root.rstrip('/')}/{rel}" if self._root not in ("", "/") else f"{self._root}{rel}"

    def _name(self, path: str) -> str:
        return scrub(path)

    # ------------------------------------------------------------------ retries

    def _call(self, what: str, path: str, op: Callable[[], T]) -> T:
        """``op()`` with bounded retries; :class:`StoreReadError` when they are spent."""
        delay = RETRY_BACKOFF
        for attempt in range(self.retries + 1):
            try:
                return op()
            except _DEFINITE:
                raise
            except Exception as exc:
                if attempt == self.retries:
                    raise StoreReadError(errno.EIO, f"could not {what} {self._name(path)} after "
                                         f"{self.retries + 1} attempts: {type(exc).__name__}: "
                                         f"{scrub(str(exc)) or 'no detail'}", self._name(path)) from None
                self.stats.retries += 1
                log.debug("%s %s failed (%s), retrying", what, self._name(path), type(exc).__name__)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _batch(self, what: str, items: Sequence[T], run: Callable[[list[T]], list[Any]],
               name: Callable[[T], str]) -> list[Any]:
        """``run(items)`` (results or exceptions in place), failed items retried; :class:`StoreReadError` in place
        of those that kept failing, definite failures (a missing file) left as they are."""
        results: list[Any] = [None] * len(items)
        todo = list(range(len(items)))
        delay = RETRY_BACKOFF
        for attempt in range(self.retries + 1):
            try:
                got = run([items[i] for i in todo])
            except _DEFINITE:
                raise
            except Exception as exc:  # the whole batch failed (a dropped connection pool)
                got = [exc] * len(todo)
            again = []
            for i, value in zip(todo, got, strict=True):
                results[i] = value
                if isinstance(value, Exception) and not isinstance(value, _DEFINITE):
                    again.append(i)
            if not again:
                return results
            if attempt < self.retries:
                self.stats.retries += len(again)
                log.debug("%s of %d files failed, retrying", what, len(again))
                time.sleep(delay)
                delay *= 2
            todo = again
        for i in todo:
            cause, where = results[i], name(items[i])
            results[i] = StoreReadError(errno.EIO, f"could not {what} {where} after {self.retries + 1} attempts: "
                                        f"{type(cause).__name__}: {scrub(str(cause)) or 'no detail'}", where)
        return results

    def _cat_many(self, ranges: Sequence[tuple[str, int | None, int | None]]) -> list[Any]:
        """The bytes of each ``(path, start, stop)`` (None: the file's start / end), concurrently on async
        file systems (fsspec's ``cat_ranges``), retried; exceptions in place (a definite one or
        :class:`StoreReadError`). An answer of the wrong length is a failure, never data."""

        def run(batch: list[tuple[str, int | None, int | None]]) -> list[Any]:
            got = self._fs.cat_ranges([self._fs_path(p) for p, _, _ in batch], [a for _, a, _ in batch],
                                      [b for _, _, b in batch], on_error="return")
            out: list[Any] = []
            for (p, a, b), data in zip(batch, got, strict=True):
                if isinstance(data, Exception):
                    self.stats.add("read", self._name(p))
                    out.append(data)
                    continue
                self.stats.add("read", self._name(p), len(data))
                if a is not None and b is not None and len(data) != b - a:
                    whole = self._whole_answer(p, data)
                    out.append(whole[a:b] if whole is not None else
                               OSError(errno.EIO, f"asked for bytes {a}-{b}, got {len(data)} bytes"))
                else:
                    out.append(bytes(data))
            return out

        return self._batch("read", list(ranges), run, lambda item: self._name(item[0]))

    # ------------------------------------------------------------------ listings

    def list_dir(self, path: str) -> list[DirEntry]:
        listing = self._listing(path)
        return [DirEntry(name, _is_dir_info(info), not _is_dir_info(info)) for name, info in sorted(listing.items())]

    def _listing(self, path: str) -> dict[str, dict[str, Any]]:
        key = path.rstrip("/")
        with self._lock:
            cached = self._listings.get(key)
        if cached is not None:
            return cached
        fs_path = self._fs_path(key)

        def ls() -> list[dict[str, Any]]:
            self.stats.add("list", self._name(key))
            target = fs_path + "/" if self._http else fs_path
            return list(self._fs.ls(target, detail=True, **({} if self._http else {"refresh": True})))

        try:
            entries = self._call("list", key, ls)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "no such folder", self._name(key)) from None
        prefix = fs_path.rstrip("/") + "/"
        listing: dict[str, dict[str, Any]] = {}
        for info in entries:
            full = str(info.get("name", ""))
            if self._http and full.startswith(prefix):
                rel = full[len(prefix):]
            elif not self._http:
                rel = full.rstrip("/").rsplit("/", 1)[-1] if full.rstrip("/") != fs_path.rstrip("/") else ""
            else:
                continue  # a link out of the folder (parent, another site)
            if rel.endswith("/"):
                info = {**info, "type": "directory"}
            rel = rel.strip("/")
            if not rel or "/" in rel or rel in (".", ".."):
                continue
            listing[rel] = info
        if not listing and not self._http:
            # an object store answers an empty listing for a prefix that does not exist
            folder = self._info(key)
            if folder is None or not _is_dir_info(folder):
                raise FileNotFoundError(errno.ENOENT, "no such folder", self._name(key))
        with self._lock:
            self._listings[key] = listing
        return listing

    def _info(self, path: str) -> dict[str, Any] | None:
        fs_path = self._fs_path(path)

        def info() -> dict[str, Any]:
            self.stats.add("stat", self._name(path))
            return dict(self._fs.info(fs_path))

        try:
            return self._call("stat", path, info)
        except FileNotFoundError:
            return None

    def _from_listing(self, path: str) -> tuple[bool, StatToken | None]:
        """``(known, token)`` from a cached listing of the file's folder or an earlier stat."""
        with self._lock:
            if path in self._tokens:
                return True, self._tokens[path]
            parent = self._listings.get(self.dirname(path))
        if parent is None:
            return False, None
        info = parent.get(self.basename(path))
        if info is not None and info.get("size") is None and not _is_dir_info(info):
            return False, None  # listed without a size (a web server's index page): ask the file
        return True, None if info is None else _token(info)

    def stat_token(self, path: str) -> StatToken | None:
        known, token = self._from_listing(path)
        if known:
            return token
        info = self._info(path)
        token = None if info is None else _token(info)
        with self._lock:
            self._tokens[path] = token
        return token

    def stat_tokens(self, paths: Sequence[str]) -> list[StatToken | None]:
        answers: list[StatToken | None] = []
        unknown = []
        for p in paths:
            known, token = self._from_listing(p)
            answers.append(token)
            if not known:
                unknown.append(p)
        if unknown:

            def run(batch: list[str]) -> list[Any]:
                # concurrently: fsspec's synchronous calls from several threads share its event loop
                def one(p: str) -> Any:
                    self.stats.add("stat", self._name(p))
                    try:
                        return self._fs.info(self._fs_path(p))
                    except Exception as exc:
                        return exc

                if len(batch) == 1:
                    return [one(batch[0])]
                import concurrent.futures  # not at import: it costs ~10 ms

                with concurrent.futures.ThreadPoolExecutor(min(len(batch), MAX_CONCURRENCY)) as pool:
                    return list(pool.map(one, batch))

            got = self._batch("stat", unknown, run, self._name)
            for p, value in zip(unknown, got, strict=True):
                if isinstance(value, FileNotFoundError):
                    token = None
                elif isinstance(value, Exception):
                    raise value
                else:
                    token = _token(value)
                with self._lock:
                    self._tokens[p] = token
        return [self._from_listing(p)[1] for p in paths]

    def exists(self, path: str) -> bool:
        with self._lock:
            if path in self._prefetched or path in self._small:
                return True  # fetched: no need to ask
        return self.stat_token(path) is not None

    def is_dir(self, path: str) -> bool:
        with self._lock:
            parent = self._listings.get(self.dirname(path))
        if parent is not None:
            info = parent.get(self.basename(path))
            if info is None:
                return False
            if not _is_dir_info(info):
                return False
        try:
            return bool(self._listing(path)) or not self._http
        except (FileNotFoundError, NotADirectoryError):
            return False

    def forget(self) -> None:
        with self._lock:
            self._listings.clear()
            self._tokens.clear()
            self._prefetched.clear()
            self._small.clear()
            self._small_bytes = 0
        self.blocks.clear()
        invalidate = getattr(self._fs, "invalidate_cache", None)
        if invalidate is not None:
            invalidate()

    # ------------------------------------------------------------------ reading

    def _whole_answer(self, path: str, data: bytes) -> bytes | None:
        """``data`` if it is the whole file, sent by a server that ignores range requests (kept in the
        block cache: the next ranges of it cost nothing); None for any other wrong answer."""
        known, token = self._from_listing(path)
        if not known or token is None or len(data) != token.size:
            return None
        if path not in self._ignored_ranges:
            self._ignored_ranges.add(path)
            log.warning("%s: the server ignores range requests; the whole file was fetched", self._name(path))
        bs = self.blocks.block_size
        for i in range(0, len(data), bs):
            self.blocks.put(path, i // bs, bytes(data[i:i + bs]))
        return bytes(data)

    def _fetch(self, path: str, start: int | None, stop: int | None) -> bytes:
        """One (range) request, retried; exactly ``stop - start`` bytes when both are given."""
        return self._one(self._cat_many([(path, start, stop)])[0])

    @staticmethod
    def _one(value: Any) -> Any:
        if isinstance(value, Exception):
            raise value
        return value

    def _whole(self, path: str) -> bytes | None:
        """The whole file if it was fetched ahead or read whole before (None otherwise)."""
        with self._lock:
            data = self._prefetched.pop(path, None)
            if data is not None:
                self._keep(path, data)
                return data
            data = self._small.get(path)
            if data is not None:
                self._small.move_to_end(path)
            return data

    def _keep(self, path: str, data: bytes) -> None:
        """Keep a small file read whole (chunk indexes: read at open, again when their chunk is; metadata.yaml)."""
        if len(data) > WHOLE_FILE_BYTES:
            return
        with self._lock:
            self._small[path] = data
            self._small_bytes += len(data)
            while self._small_bytes > _SMALL_FILES_BYTES:
                _, dropped = self._small.popitem(last=False)
                self._small_bytes -= len(dropped)

    def read_bytes(self, path: str, start: int = 0, stop: int | None = None, limit: int | None = None) -> bytes:
        data = self._whole(path)
        if data is not None:
            if limit is not None and len(data) > limit:
                raise OSError(errno.EFBIG, f"{self._name(path)} is {len(data)} bytes, more than the {limit} read "
                                           f"here", self._name(path))
            return data[start:stop]
        known, token = self._from_listing(path)
        if not known and not start and stop is None:
            # a whole file whose size no listing gave (a frame file in a chunk folder): one GET, no HEAD first
            try:
                data = self._fetch(path, None, None)
            except FileNotFoundError:
                raise FileNotFoundError(errno.ENOENT, "no such file", self._name(path)) from None
            if limit is not None and len(data) > limit:
                raise OSError(errno.EFBIG, f"{self._name(path)} is {len(data)} bytes, more than the {limit} read "
                                           f"here", self._name(path))
            self._keep(path, data)
            return data
        if not known and (limit is not None or stop is None or start):
            token = self.stat_token(path)
        if (limit is not None or stop is None or start) and token is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", self._name(path))
        if token is not None:
            if limit is not None and token.size > limit:
                raise OSError(errno.EFBIG, f"{self._name(path)} is {token.size} bytes, more than the {limit} read "
                                           f"here", self._name(path))
            stop = token.size if stop is None else min(stop, token.size)
        if stop is not None and start >= stop:
            return b""
        data = self._fetch(path, start, stop)
        if not start and token is not None and stop == token.size:
            self._keep(path, data)
        return data

    def read_ranges(self, path: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        data = self._whole(path)
        if data is not None:
            return [data[a:b] for a, b in ranges]
        # ranges a RangeFile of this file already fetched (an index cache's chunk table, read with its header)
        out: list[bytes | None] = [cached_range(self.blocks, path, a, b) if b > a else b"" for a, b in ranges]
        todo = [i for i, v in enumerate(out) if v is None]
        if todo:
            for i, v in zip(todo, self._cat_many([(path, *ranges[i]) for i in todo]), strict=True):
                out[i] = self._one(v)
        return [v for v in out if v is not None]

    def prefetch(self, paths: Sequence[str]) -> None:
        with self._lock:
            paths = [p for p in paths if p not in self._prefetched]
        if len(paths) < 2 or not getattr(self._fs, "async_impl", False):
            return  # read one by one when asked: no gain from fetching ahead
        sizes = [self._from_listing(p) for p in paths]
        got = self._cat_many([(p, 0, t.size) if known and t is not None else (p, None, None)
                              for p, (known, t) in zip(paths, sizes, strict=True)])
        with self._lock:
            held = sum(len(v) for v in self._prefetched.values())
            for p, value in zip(paths, got, strict=True):
                if isinstance(value, FileNotFoundError):
                    self._tokens[p] = None
                elif isinstance(value, bytes) and held + len(value) <= _PREFETCH_BYTES:
                    self._prefetched[p] = value
                    held += len(value)
                # other failures: the read itself retries and reports them

    def open_read(self, path: str) -> BinaryIO:  # a RangeFile is a binary file object
        data = self._whole(path)
        if data is not None:
            return io.BytesIO(data)
        token = self.stat_token(path)
        if token is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", self._name(path))
        if token.size <= WHOLE_FILE_BYTES:
            # small files (chunk indexes, a small index cache) in one request, kept for the next reader
            return io.BytesIO(self.read_bytes(path))
        # video chunks, big index caches: by ranges, blocks shared by the decoder lanes
        return RangeFile(lambda a, b: self._fetch(path, a, b), token.size, self.blocks, path,  # type: ignore[return-value]
                         self._name(path), expected=lambda: self._expected.get(path, 0))

    def expect_read(self, path: str, nbytes: int) -> None:
        self._expected[path] = max(int(nbytes), 0)
