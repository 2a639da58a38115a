"""Exceptions raised by imgstore.

Every error derives from :class:`ImgStoreError` *and* from the built-in exception
that the reference library (imgstore 0.4) raised in the same situation, so code
written as ``except ValueError:`` keeps working while new code can catch
``except imgstore.errors.ImgStoreError:``.
"""

from __future__ import annotations

__all__ = [
    "AlignmentError",
    "ArrayTooLargeError",
    "ChunkCorruptError",
    "ChunkReadError",
    "ExtraDataError",
    "FrameIndexError",
    "FrameNotFoundError",
    "ImgStoreError",
    "ImgStoreWarning",
    "IndexCorruptError",
    "IndexFileError",
    "InvalidFrameMetadataError",
    "InvalidImageError",
    "InvalidOptionError",
    "MetadataError",
    "MissingDependencyError",
    "ModeError",
    "StoreClosedError",
    "StoreExistsError",
    "StoreLockedError",
    "StoreNotFoundError",
    "StoreReadError",
    "StoreWriteError",
    "UnsupportedFormatError",
]


class ImgStoreError(Exception):
    """Base class of every error raised by imgstore."""


class StoreNotFoundError(ImgStoreError, FileNotFoundError, ValueError):
    """There is no store (no ``metadata.yaml``) at the given path.

    Also a ``ValueError`` because the reference raised one for a missing path.
    """


class StoreExistsError(ImgStoreError, FileExistsError):
    """A store already exists where a new one was to be written."""


class StoreLockedError(ImgStoreError, RuntimeError):
    """Another live process holds the store's writer lock."""


class MetadataError(ImgStoreError, ValueError):
    """``metadata.yaml`` is malformed, or names an unknown class or version."""


class UnsupportedFormatError(ImgStoreError, ValueError):
    """The format (or dtype/encoding for it) is not supported by this installation."""


class FrameNotFoundError(ImgStoreError, ValueError):
    """No frame with the requested frame_number (``exact_only=True``)."""


class FrameIndexError(ImgStoreError, IndexError, ValueError):
    """A frame_index outside ``0 .. frame_count-1`` (or a negative one in the classic API)."""


class IndexCorruptError(ImgStoreError, ValueError):
    """A chunk index exists but cannot be used (arrays of different lengths, bad dtype...)."""


class IndexFileError(IndexCorruptError, OSError):
    """An index file (the reference's ``.index.sqlite``) is missing, not an index, or of another version.

    Also an ``OSError``: the reference raised ``IOError`` here.
    """


class ChunkReadError(ImgStoreError, OSError):
    """A chunk's frame file is missing, truncated or cannot be decoded."""


class ChunkCorruptError(ChunkReadError):
    """A frame's stored bytes fail the checksum recorded when they were written (damaged since).

    The message names the chunk, the frame and the file.
    """


class StoreReadError(ImgStoreError, OSError):
    """Reading a store's files failed for good (a remote store: the server kept failing or timing out).

    Raised after bounded retries; the message names the (credential-free) URL and the last cause.
    """


class StoreWriteError(ImgStoreError, OSError):
    """Writing to the store failed (disk full, read-only file system...)."""


class InvalidOptionError(ImgStoreError, ValueError):
    """An option with a value that cannot be used: a writing option the format cannot take (``fps``,
    ``quality``, ``keyframe_interval``...), ``storage_options=`` without a URL..."""


class InvalidImageError(ImgStoreError, ValueError):
    """An image given to ``add_image`` does not match the store's shape or dtype."""


class InvalidFrameMetadataError(ImgStoreError, ValueError):
    """A frame_number that is not an integer or a frame_time that is not finite."""


class ExtraDataError(ImgStoreError, TypeError):
    """Extra data that cannot be stored as JSON."""


class ModeError(ImgStoreError, ValueError):
    """The operation is not possible in the store's mode (e.g. writing to a read store)."""


class StoreClosedError(ImgStoreError, ValueError):
    """The store was closed."""


class ArrayTooLargeError(ImgStoreError, MemoryError):
    """``np.asarray(store)`` on a store bigger than its ``max_array_bytes`` (slice it, or use ``to_dask``)."""


class MissingDependencyError(ImgStoreError, ImportError):
    """An optional dependency is needed for this operation."""


class AlignmentError(ImgStoreError, ValueError):
    """Stores cannot be aligned as asked (or the aligner is used out of order)."""


class ImgStoreWarning(UserWarning):
    """A store was opened or written, but something in it needed attention (a chunk skipped or recovered)."""
