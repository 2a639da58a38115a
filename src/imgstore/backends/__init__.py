"""Store backends: one module per storage kind behind :class:`~imgstore.backends.base.ImgStore`.

Backends are found through :func:`store_classes`; the video backend is imported lazily so
that ``import imgstore`` stays fast.
"""

from __future__ import annotations

from .base import ImgStore, ImgStoreWarning
from .directory import DirectoryImgStore

__all__ = ["ImgStore", "ImgStoreWarning", "DirectoryImgStore", "store_classes", "class_for_name"]

#: ``__store.class`` names written by other software, mapped to the backend that reads them
_CLASS_ALIASES = {"VideoImgStoreFFMPEG": "VideoImgStore"}


def store_classes() -> list[type[ImgStore]]:
    """The backends, in the order they are asked whether they support a format."""
    from .video import VideoImgStore

    return [DirectoryImgStore, VideoImgStore]


def class_for_name(name: str) -> type[ImgStore] | None:
    """The backend for a ``__store.class`` value, or None."""
    name = _CLASS_ALIASES.get(name, name)
    for cls in store_classes():
        if cls.__name__ == name or cls.class_name == name:
            return cls
    return None
