"""Opening and creating stores: ``new_for_filename``, ``new_for_format`` and friends."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from . import ondisk
from .backends.registry import class_for_format, class_for_name, store_classes
from .errors import InvalidOptionError, MetadataError, ModeError, StoreNotFoundError, UnsupportedFormatError
from .ondisk import STORE_MD_FILENAME
from .remote import is_url
from .storage import LOCAL, Storage

if TYPE_CHECKING:
    from .backends.base import ImgStore

__all__ = ["extract_only_frame", "get_supported_formats", "new_for_filename", "new_for_format", "open_store"]


def _is_metadata_path(path: str) -> bool:
    return os.path.basename(path) == STORE_MD_FILENAME


def resolve_store_path(path: str | os.PathLike | None, basedir: str | os.PathLike | None,
                       read: bool, storage: Storage = LOCAL) -> tuple[str, str]:
    """``(basedir, metadata.yaml path)`` from a folder or a ``metadata.yaml`` path."""
    if path is not None and basedir is not None:
        raise ValueError("path and basedir are mutually exclusive")
    if basedir is not None:
        basedir = os.fspath(basedir)
        if _is_metadata_path(basedir):
            raise ValueError(f"basedir should be a directory (not a file ending with {STORE_MD_FILENAME})")
        return basedir, os.path.join(basedir, STORE_MD_FILENAME)
    if path is None:
        raise ValueError(f"should be a path to a store {STORE_MD_FILENAME} file or a directory containing one")
    path = os.fspath(path)
    if _is_metadata_path(path):
        return os.path.dirname(path) or ".", path
    if read and not (storage.is_dir(path) and storage.exists(storage.join(path, STORE_MD_FILENAME))):
        raise StoreNotFoundError(errno.ENOENT, f"path '{path}' does not exist or is not a store", path)
    return path, os.path.join(path, STORE_MD_FILENAME)


def _class_of_store(metadata_path: str, storage: Storage = LOCAL) -> type[ImgStore]:
    smd, _ = ondisk.read_metadata(metadata_path, storage=storage)
    cls = class_for_name(smd.class_name)
    if cls is None:
        raise MetadataError(f"{metadata_path}: store class {smd.class_name!r} not supported")
    return cls


def new_for_filename(path: str | os.PathLike, **kwargs: Any) -> ImgStore:
    """Open an existing store (a folder or its ``metadata.yaml``); read mode by default.

    Parameters
    ----------
    path
        The store's folder or its ``metadata.yaml``; or a URL fsspec opens (``s3://bucket/store``,
        ``https://...``, ``simplecache::s3://...``): such stores are read-only (:mod:`imgstore.remote`).
    **kwargs
        ``mode`` (``'r'`` or ``'a'``) and backend options. For URLs: ``storage_options``
        (passed to fsspec), ``retries``, ``timeout`` (seconds) and ``cache_bytes`` (the
        read-ahead block cache) of :class:`~imgstore.remote.FsspecStorage`.
    """
    mode = kwargs.setdefault("mode", "r")
    storage_options = kwargs.pop("storage_options", None)
    url = os.fspath(path) if path is not None else None
    if is_url(url) or storage_options is not None:
        return _open_url(str(url), mode, storage_options, kwargs)
    basedir, metadata_path = resolve_store_path(path, kwargs.pop("basedir", None), read=mode in "ra")
    kwargs["basedir"] = basedir
    return _class_of_store(metadata_path)(**kwargs)


def _open_url(url: str, mode: str, storage_options: dict[str, Any] | None, kwargs: dict[str, Any]) -> ImgStore:
    """A store on object storage (read-only): see :mod:`imgstore.remote`."""
    from .remote import FsspecStorage, scrub

    if not is_url(url):
        raise InvalidOptionError(f"storage_options= is for URLs (s3://, gs://, https://...), not the local path "
                                 f"{url!r}")
    if mode != "r":
        raise ModeError(f"stores at URLs are read-only: mode {mode!r} is not possible for {scrub(url)}")
    if kwargs.pop("basedir", None) is not None:
        raise InvalidOptionError(f"basedir= cannot be combined with a URL ({scrub(url)})")
    if scrub(url) != url:
        # a URL travels into messages, reprs and pickles: credentials go where fsspec keeps them
        raise InvalidOptionError(f"{scrub(url)}: give credentials in storage_options= or the usual fsspec/s3fs "
                                 f"configuration, not in the URL (user:password@ or a query string)")
    url = url.rstrip("/")
    if url.rsplit("/", 1)[-1] == STORE_MD_FILENAME:
        url = url.rsplit("/", 1)[0]
    remote = {k: kwargs.pop(k) for k in ("retries", "timeout", "cache_bytes") if k in kwargs}
    storage = FsspecStorage(url, storage_options, **remote)
    if not (storage.is_dir(url) and storage.exists(storage.join(url, STORE_MD_FILENAME))):
        raise StoreNotFoundError(errno.ENOENT, f"{scrub(url)} does not exist or is not a store", scrub(url))
    kwargs["basedir"] = url
    kwargs["storage"] = storage
    return _class_of_store(storage.join(url, STORE_MD_FILENAME), storage)(**kwargs)


open_store = new_for_filename


def new_for_format(fmt: str, path: str | os.PathLike | None = None, **kwargs: Any) -> ImgStore:
    """Create a store of format ``fmt`` (or open one when ``mode='r'``).

    Parameters
    ----------
    fmt
        One of :func:`get_supported_formats`.
    path
        The store's folder (or pass ``basedir=``).
    **kwargs
        ``imgshape``, ``imgdtype``, ``chunksize``, ``metadata``, ``encoding``, ``overwrite``
        and backend options (e.g. ``fps``, ``quality`` for video).
    """
    mode = kwargs.setdefault("mode", "w")
    if mode in "ra":
        basedir = kwargs.pop("basedir", None)
        if path is not None and basedir is not None:
            raise ValueError("path and basedir are mutually exclusive")
        if path is None and basedir is None:
            raise ValueError(f"should be a path to a store {STORE_MD_FILENAME} file or a directory containing one")
        kwargs.pop("format", None)  # a store's format is read from its metadata
        return new_for_filename(path if path is not None else basedir, **kwargs)
    basedir, _ = resolve_store_path(path, kwargs.pop("basedir", None), read=False)
    kwargs["basedir"] = basedir
    kwargs.setdefault("imgdtype", np.uint8)
    # the reference set kwargs['format'] = fmt itself: callers that pass both (its own tests
    # and many programs build one kwargs dict with format= in it) get fmt, as there
    if not isinstance(fmt, str):
        raise UnsupportedFormatError(f"format {fmt!r} must be a string; supported: {get_supported_formats()}")
    kwargs["format"] = fmt
    cls = class_for_format(fmt)
    if cls is not None:
        return cls(**kwargs)
    raise UnsupportedFormatError(
        f"store class not found which supports format {fmt!r}; supported: {get_supported_formats()}")


def get_supported_formats() -> list[str]:
    """Every format this installation can write and read back."""
    formats: list[str] = []
    for cls in store_classes():
        if cls.supports_writing:
            formats.extend(cls.supported_formats())
    return formats


def extract_only_frame(path: str | os.PathLike, frame_index: int) -> np.ndarray:
    """One frame by frame_index, read straight from its chunk without opening the store."""
    _, metadata_path = resolve_store_path(path, None, read=True)
    smd, _ = ondisk.read_metadata(metadata_path)
    cls = class_for_name(smd.class_name)
    if cls is None:
        raise MetadataError(f"{metadata_path}: store class {smd.class_name!r} not supported")
    return cls.extract_only_frame(metadata_path, frame_index, _smd=smd)
