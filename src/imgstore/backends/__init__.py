"""Store backends: one module per storage kind, behind :class:`~imgstore.backends.base.ImgStore`.

:mod:`.contract` says what a backend implements, :mod:`.registry` which exist (the video
backend is imported lazily so that ``import imgstore`` stays fast), :mod:`.scan` and
:mod:`.writing` read and write chunks for every backend.
"""

from __future__ import annotations

from ..errors import ImgStoreWarning
from .base import ImgStore
from .directory import DirectoryImgStore
from .registry import class_for_name, store_classes

__all__ = ["DirectoryImgStore", "ImgStore", "ImgStoreWarning", "class_for_name", "store_classes"]
