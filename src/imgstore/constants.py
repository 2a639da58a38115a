"""The reference's ``imgstore.constants``: file names and keys of the on-disk format.

The values live in :mod:`imgstore.ondisk`, which owns the format; this module keeps the
reference's import path.
"""

from subprocess import DEVNULL

from .ondisk import (
    EXTRA_DATA_FILE_EXTENSIONS,
    FRAME_MD,
    STORE_INDEX_FILENAME,
    STORE_LOCK_FILENAME,
    STORE_MD_FILENAME,
    STORE_MD_KEY,
)

__all__ = [
    "DEVNULL",
    "EXTRA_DATA_FILE_EXTENSIONS",
    "FRAME_MD",
    "STORE_INDEX_FILENAME",
    "STORE_LOCK_FILENAME",
    "STORE_MD_FILENAME",
    "STORE_MD_KEY",
]
