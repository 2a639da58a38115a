"""URLs of stores on object storage: which strings are URLs, credential-free names, the fsspec file system.

fsspec and its implementations (s3fs, gcsfs...) are imported here, when a URL is opened, never at
``import imgstore``.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping
from typing import Any

from .errors import MissingDependencyError, StoreNotFoundError

__all__ = ["DEFAULT_TIMEOUT", "filesystem", "is_url", "scrub"]

#: seconds a request may take (connecting, or waiting for data) before it counts as failed
DEFAULT_TIMEOUT = 30.0

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_USERINFO_RE = re.compile(r"(://)[^/@\s'\"]*@")
_QUERY_RE = re.compile(r"\?[^\s'\"]*")


def is_url(path: Any) -> bool:
    """True for a URL fsspec opens (``s3://...``, ``simplecache::s3://...``), False for a local path."""
    return isinstance(path, str) and ("::" in path or bool(_URL_RE.match(path)))


def scrub(text: str) -> str:
    """``text`` without the credentials a URL may carry (``user:password@``, signed query strings)."""
    return _QUERY_RE.sub("", _USERINFO_RE.sub(r"\1", str(text)))


def _import_fsspec():
    try:
        import fsspec
        import fsspec.core
    except ImportError as exc:
        raise MissingDependencyError(f"reading stores from URLs needs fsspec ({exc}); install it with: "
                                     f"pip install 'imgstore[remote]'") from exc
    return fsspec


def _with_defaults(protocol: str, options: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """The caller's options over ours: one attempt per request (imgstore retries) and timeouts."""
    out = dict(options)
    if protocol in ("s3", "s3a"):
        config = dict(out.get("config_kwargs") or {})
        config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})  # one attempt: imgstore retries
        config.setdefault("connect_timeout", timeout)
        config.setdefault("read_timeout", timeout)
        out["config_kwargs"] = config
    elif protocol in ("http", "https"):
        import aiohttp

        client = dict(out.get("client_kwargs") or {})
        client.setdefault("timeout", aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout))
        out["client_kwargs"] = client
    return out


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None,
               timeout: float = DEFAULT_TIMEOUT) -> tuple[Any, str]:
    """``(fsspec file system, path)`` of ``url``, one attempt per request (the caller retries).

    Raises
    ------
    MissingDependencyError
        fsspec, or the implementation of the URL's protocol (s3fs...), is not installed.
    StoreNotFoundError
        The protocol is unknown or the URL malformed.
    """
    fsspec = _import_fsspec()
    protocol = url.split("::")[-1].split("://")[0] if "://" in url else "file"
    try:
        fs, root = fsspec.core.url_to_fs(url, **_with_defaults(protocol, dict(storage_options or {}), timeout))
    except ImportError as exc:
        raise MissingDependencyError(f"cannot open {scrub(url)}: {exc}; install the fsspec implementation "
                                     f"of {protocol!r} (pip install 'imgstore[remote]')") from exc
    except ValueError as exc:  # an unknown protocol, a malformed URL
        raise StoreNotFoundError(errno.EINVAL, f"cannot open {scrub(url)}: {scrub(str(exc))}",
                                 scrub(url)) from None
    if protocol in ("s3", "s3a") and isinstance(getattr(fs, "retries", None), int):
        fs.retries = 1  # s3fs's own retry loop (5 attempts, up to 15 s apart): imgstore's retries instead
    return fs, root
