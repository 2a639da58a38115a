"""Keeping a store up to date and in shape: live refresh, checks, saved indexes, dask."""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any, cast

from .. import index_cache
from ..errors import ImgStoreWarning
from ..index import ImgStoreIndex
from ..maintenance import reindex_store
from ..ondisk import STORE_INDEX_FILENAME
from ..parallel import store_to_dask
from ..verify import verify as verify_store

if TYPE_CHECKING:
    from ..frame_index import FrameIndex
    from ..storage import Storage
    from .base import ImgStore
    from .contract import Backend
    from .scan import ChunkScanner, ScanState

__all__ = ["Upkeep"]


class Upkeep:
    """Mixin of :class:`~imgstore.backends.base.ImgStore`: refresh, verify, reindex, saved indexes."""

    if TYPE_CHECKING:
        _frame_index: FrameIndex
        _scan_state: ScanState | None
        _scanner: ChunkScanner
        _storage: Storage
        _backend: Backend
        _basedir: str
        _mode: str
        _supplied_index: ImgStoreIndex | None

        def _require_mode(self, modes: str, what: str) -> None: ...
        def _cache_identity(self) -> dict[str, Any]: ...

    def refresh(self) -> int:
        """Pick up frames a live writer added since this store was opened.

        Returns
        -------
        int
            The number of frames added. Frames of the chunk being written are included as
            soon as they are complete on disk (never half a frame). Only chunks whose
            index changed (or that have none yet) are read again.
        """
        self._require_mode("r", "refresh")
        before = len(self._frame_index)
        # decoders opened on a growing chunk only know the frames present when they opened
        self._backend.close_readers()
        self._supplied_index = None  # it describes the store as it was
        self._storage.forget()  # remote storage: listings and sizes fetched before are stale now
        self._scanner.writer_alive = self._storage.is_locked(self._basedir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImgStoreWarning)  # a live chunk is expected to lack an index
            result = self._scanner.scan_from(self._scan_state)
        self._frame_index, self._scan_state = result.index, result.state
        return len(self._frame_index) - before

    @property
    def is_live(self) -> bool:
        """True while a writer process holds the store's lock."""
        return self._storage.is_locked(self._basedir)

    def to_dask(self, **kwargs: Any):
        """The frames as a lazy dask array (frames x height x width [x 3]); see :mod:`imgstore.parallel`."""
        return store_to_dask(cast("ImgStore", self), **kwargs)

    def verify(self, **kwargs: Any):
        """Read every frame and compare with the index; see :func:`imgstore.verify.verify`."""
        return verify_store(self, **kwargs)

    def reindex(self) -> None:
        """Renumber frames before the one with frame_number 0 to negative numbers.

        Aborts unless exactly one frame has frame_number 0. The old numbers are kept in
        ``_frame_number_before_reindex`` in each index and in the extra data.
        """
        self._require_mode("r", "reindex")
        reindex_store(self._backend, self._frame_index)
        self._frame_index = self._scanner.scan().index

    def save_index(self, path: str | os.PathLike | None = None) -> str | None:
        """Save the frame index as imgstore 0.4 did: a SQLite ``.index.sqlite``; return its path.

        Readers only (for writers this does nothing and returns None, as in the reference;
        use ``close(save_index=True)``). ``path`` defaults to ``.index.sqlite`` in the store;
        open it with :meth:`imgstore.index.ImgStoreIndex.new_from_file` and pass it as
        ``index=``. Without ``path`` the index cache that makes big stores open instantly
        (:mod:`imgstore.index_cache`) is refreshed too.
        """
        if self._mode != "r":
            return None
        self._require_mode("r", "save_index")
        target = os.fspath(path) if path is not None else self._storage.join(self._basedir, STORE_INDEX_FILENAME)
        ImgStoreIndex.from_frame_index(self._frame_index).to_file(target, storage=self._storage)
        if path is None:
            self.save_index_cache()
        return target

    def save_index_cache(self, path: str | os.PathLike | None = None) -> str | None:
        """Write the index cache that makes big stores open instantly (:mod:`imgstore.index_cache`).

        Readers only (a writer saves it when it closes; then this returns None). ``path``
        defaults to ``.imgstore-index.cache`` in the store, where it is used.
        """
        if self._mode != "r":
            return None
        self._require_mode("r", "save_index_cache")
        target, self._scan_state = index_cache.save(self._scanner, self._storage, self._basedir,
                                                    self._cache_identity(), self._scan_state, path)
        return target
