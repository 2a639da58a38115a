"""The reference's ``imgstore.stores``: every name imgstore 0.4 defined there.

Thin re-exports; the implementations live in :mod:`imgstore.factory`,
:mod:`imgstore.backends` and :mod:`imgstore.ondisk`.
"""

from __future__ import annotations

import importlib
import os
from typing import Any
from zoneinfo import ZoneInfo

from .backends.base import ImgStore
from .backends.directory import DirectoryImgStore
from .constants import DEVNULL
from .factory import extract_only_frame, get_supported_formats, new_for_filename, new_for_format, resolve_store_path
from .imageops import FourCC, ImageCodecProcessor, ensure_color, ensure_grayscale
from .index import ImgStoreIndex
from .ondisk import (
    EXTRA_DATA_FILE_EXTENSIONS,
    FRAME_MD,
    STORE_INDEX_FILENAME,
    STORE_LOCK_FILENAME,
    STORE_MD_FILENAME,
    STORE_MD_KEY,
    JsonCustomEncoder,
    read_metadata,
)
from .util import (
    get_local_timezone_zoneinfo,
    motif_extra_data_h5_attrs,
    motif_extra_data_h5_to_df,
    motif_extra_data_json_to_df,
)

__all__ = [
    "DEVNULL",
    "EXTRA_DATA_FILE_EXTENSIONS",
    "STORE_INDEX_FILENAME",
    "STORE_LOCK_FILENAME",
    "STORE_MD_FILENAME",
    "STORE_MD_KEY",
    "DirectoryImgStore",
    "FourCC",
    "ImageCodecProcessor",
    "ImgStoreIndex",
    "JsonCustomEncoder",
    "VideoImgStore",  # noqa: F822 - imported lazily by __getattr__
    "ZoneInfo",
    "ensure_color",
    "ensure_grayscale",
    "extract_only_frame",
    "get_local_timezone_zoneinfo",
    "get_supported_formats",
    "motif_extra_data_h5_attrs",
    "motif_extra_data_h5_to_df",
    "motif_extra_data_json_to_df",
    "new_for_filename",
    "new_for_format",
]

_FRAME_MD = FRAME_MD
#: the reference's name of the store base class
_ImgStore = ImgStore
# the reference's debug switches (this package logs through the 'imgstore' logger instead)
_VERBOSE_DEBUG_GETS = False
_VERBOSE_DEBUG_CHUNKS = False
_VERBOSE_VERY = False
#: the reference's optional bloscpack ('bpk') format is not supported
bloscpack = None


def _extract_store_metadata(full_path: str | os.PathLike) -> dict[str, Any]:
    """The ``__store`` mapping of a ``metadata.yaml``."""
    return read_metadata(full_path)[0].to_mapping()


def _parse_basedir_fullpath(path: str | os.PathLike | None, basedir: str | os.PathLike | None,
                            read: bool) -> tuple[str, str]:
    """``(basedir, metadata.yaml path)`` from either argument, as the reference resolved them."""
    return resolve_store_path(path, basedir, read)


def _extract_ranges(data: Any) -> list[tuple[int, int]]:
    """Contiguous runs of integers: ``[2, 3, 4, 12, 13, 20]`` -> ``[(2, 4), (12, 13), (20, 20)]``."""
    values = sorted(int(v) for v in data)
    ranges: list[tuple[int, int]] = []
    for v in values:
        if ranges and v == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], v)
        else:
            ranges.append((v, v))
    return ranges


def __getattr__(name: str):
    # the video backend imports PyAV: only pay for it when it is used
    if name == "VideoImgStore":
        return importlib.import_module(".backends.video", __package__).VideoImgStore
    raise AttributeError(f"module 'imgstore.stores' has no attribute {name!r}")
