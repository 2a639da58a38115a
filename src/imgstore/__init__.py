"""imgstore: houses long video recordings.

Frames are stored in chunks (video files or folders of images) beside per-frame metadata
(``frame_number``, ``frame_time``), user metadata and extra data. The API and on-disk
format are those of imgstore 0.4 (loopbio), so existing code and stores keep working.

>>> import imgstore
>>> store = imgstore.new_for_filename("/path/to/store")      # doctest: +SKIP
>>> img, (frame_number, frame_time) = store.get_image(1234)  # doctest: +SKIP
>>> frames = store[100:200]                                  # doctest: +SKIP
"""

from __future__ import annotations

from . import errors
from ._version import __version__
from .backends import DirectoryImgStore, ImgStore, ImgStoreWarning
from .errors import FrameNotFoundError, ImgStoreError
from .factory import extract_only_frame, get_supported_formats, new_for_filename, new_for_format, open_store
from .imageops import FourCC, ensure_color, ensure_grayscale
from .repair import repair

__all__ = [
    "DirectoryImgStore",
    "FourCC",
    "FrameNotFoundError",
    "ImgStore",
    "ImgStoreError",
    "ImgStoreWarning",
    "VideoImgStore",
    "__version__",
    "ensure_color",
    "ensure_grayscale",
    "errors",
    "extract_only_frame",
    "get_supported_formats",
    "main_test",
    "new_for_filename",
    "new_for_format",
    "open_store",
    "repair",
    "sync",
    "test",
]

#: submodules that ``import imgstore`` makes reachable as attributes (``imgstore.stores.X``, as
#: with the reference) without importing them up front
_LAZY_MODULES = frozenset({"stores", "util", "constants", "index", "apps", "align", "parallel", "cli", "testing",
                           "timezones"})


def __getattr__(name: str):
    import importlib

    # the video backend imports PyAV: only pay for it when it is used
    if name == "VideoImgStore":
        return importlib.import_module(".backends.video", __name__).VideoImgStore
    if name == "sync":
        return importlib.import_module(".remote_sync", __name__).sync
    if name in ("main_test", "test"):
        return importlib.import_module(".apps", __name__).main_test
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'imgstore' has no attribute {name!r}")
