"""Compatibility module: the reference's ``imgstore.stores`` names."""

from .backends.base import ImgStore as _ImgStore  # noqa: F401 - the reference's private base name
from .backends.directory import DirectoryImgStore
from .factory import extract_only_frame, get_supported_formats, new_for_filename, new_for_format
from .ondisk import EXTRA_DATA_FILE_EXTENSIONS, STORE_LOCK_FILENAME, STORE_MD_FILENAME, STORE_MD_KEY

__all__ = [
    "new_for_filename",
    "new_for_format",
    "extract_only_frame",
    "get_supported_formats",
    "DirectoryImgStore",
    "VideoImgStore",  # noqa: F822 - imported lazily by __getattr__
    "STORE_MD_KEY",
    "STORE_MD_FILENAME",
    "STORE_LOCK_FILENAME",
    "EXTRA_DATA_FILE_EXTENSIONS",
]


def __getattr__(name: str):
    if name == "VideoImgStore":
        from .backends.video import VideoImgStore

        return VideoImgStore
    raise AttributeError(f"module 'imgstore.stores' has no attribute {name!r}")
