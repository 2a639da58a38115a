"""Scale-out: stores as lazy dask arrays, and functions mapped over frames on a dask cluster.

Every unit of work here is a *block*: a run of consecutive frames of one chunk (a whole chunk,
or part of one when chunks are big). A block travels as a tiny picklable :class:`BlockReader`
(store path, identity, chunk number, positions); the frame index never leaves the client. On a
worker, the store is opened once per thread and kept (:func:`open_cached`), so thousands of
blocks cost one open, which the index cache (:mod:`imgstore.index_cache`) makes fast even for
week-long stores.

dask is optional (``pip install 'imgstore[dask]'``): :func:`map_frames` and :func:`map_chunks`
run serially without it; :func:`store_to_dask` and running on a ``distributed.Client`` need it.

>>> arr = store.to_dask()                                    # doctest: +SKIP
>>> means = arr.mean(axis=(1, 2)).compute()                  # doctest: +SKIP
>>> df = map_frames(lambda img: img.mean(), [path_a, path_b], client=client)  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ChunkReadError, ImgStoreError, MissingDependencyError, ModeError
from .factory import new_for_filename

if TYPE_CHECKING:
    import pandas as pd

    from .backends.base import ImgStore

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "BlockReader",
    "StoreRef",
    "clear_store_cache",
    "iter_blocks",
    "map_chunks",
    "map_frames",
    "open_cached",
    "store_to_dask",
]

#: default upper bound of the bytes of one block of frames (dask recommends ~100 MB chunks)
DEFAULT_BLOCK_BYTES = 128 * 2**20
#: stores kept open per worker thread
_MAX_OPEN_STORES = 16
_INSTALL_HINT = "pip install 'imgstore[dask]'"


def _require_dask_array():
    try:
        import dask.array as da
        from dask.highlevelgraph import HighLevelGraph
    except ImportError as exc:
        raise MissingDependencyError(f"dask arrays need dask ({exc}); install it with: {_INSTALL_HINT}") from exc
    return da, HighLevelGraph


# ============================================================================ opening on workers


@dataclasses.dataclass(frozen=True)
class StoreRef:
    """How a worker finds (and recognises) a store: its folder (or URL), uuid and read options.

    A store on object storage also carries its storage (which pickles as its URL and
    ``storage_options``): each worker opens the store from the URL itself.
    """

    basedir: str
    uuid: str | None
    decoding: bool = True
    strict: bool = False
    storage: Any = dataclasses.field(default=None, compare=False)

    @classmethod
    def of(cls, store: ImgStore) -> StoreRef:
        """The reference of an open reader (writers cannot be read elsewhere)."""
        if store.mode != "r":
            raise ModeError(f"store {store.filename!r} is open in mode {store.mode!r}: only stores opened for "
                            f"reading can be read in parallel")
        # the store's own pickled state says how it was opened (decoding disabled or not...)
        state = store.__getstate__()
        storage = state.get("storage")
        if getattr(storage, "is_remote", False):
            return cls(state["basedir"], store.uuid, bool(state["decoding"]), bool(state["strict"]), storage)
        return cls(os.path.abspath(state["basedir"]), store.uuid, bool(state["decoding"]), bool(state["strict"]))


_local = threading.local()


def _open_stores() -> collections.OrderedDict[StoreRef, ImgStore]:
    # per thread: readers hold decoders and a cursor, which threads must not share
    stores = getattr(_local, "stores", None)
    if stores is None:
        stores = _local.stores = collections.OrderedDict()
    return stores


def open_cached(ref: StoreRef, refresh: bool = False) -> ImgStore:
    """The store ``ref`` opened for reading, kept open for later calls in this thread.

    Parameters
    ----------
    ref
        Which store.
    refresh
        Reopen even if open already (the store changed on disk since).

    Raises
    ------
    ChunkReadError
        The folder now holds another store (different uuid).
    """
    stores = _open_stores()
    store = stores.get(ref)
    if store is not None and (refresh or store.closed):
        stores.pop(ref)
        _close_unless_lent(store)
        store = None
    if store is None:
        remote = {} if ref.storage is None else {"storage_options": ref.storage.storage_options,
                                                  "retries": ref.storage.retries, "timeout": ref.storage.timeout}
        store = new_for_filename(ref.basedir, strict=ref.strict, **remote)
        if not ref.decoding:
            store.disable_decoding()
        if store.uuid != ref.uuid:
            store.close()
            raise ChunkReadError(f"{ref.basedir!r} now holds store {store.uuid!r}, not {ref.uuid!r} "
                                 f"(replaced since the work was planned)")
        stores[ref] = store
        while len(stores) > _MAX_OPEN_STORES:
            _, old = stores.popitem(last=False)
            _close_unless_lent(old)
    else:
        stores.move_to_end(ref)
    return store


def _close_unless_lent(store: ImgStore) -> None:
    # a store lent by the caller (serial runs) is theirs to close
    if id(store) not in getattr(_local, "lent", ()):
        store.close()


def clear_store_cache() -> None:
    """Close the stores :func:`open_cached` keeps open in this thread."""
    stores = _open_stores()
    while stores:
        _, store = stores.popitem()
        _close_unless_lent(store)


# ============================================================================ blocks


@dataclasses.dataclass(frozen=True)
class BlockReader:
    """Frames ``start .. stop-1`` (positions in chunk ``chunk_n``) of a store; call it to read them.

    Small and picklable: this is what a dask task carries.
    """

    ref: StoreRef
    chunk_n: int
    start: int
    stop: int
    shape: tuple[int, ...]
    dtype: str

    def __len__(self) -> int:
        return self.stop - self.start

    def _first_index(self) -> tuple[ImgStore, int]:
        """The open store and the frame_index of the block's first frame, checked against the store."""
        for attempt in range(2):
            store = open_cached(self.ref, refresh=attempt > 0)
            sl = store.index.chunk_slice(self.chunk_n)
            if sl.stop - sl.start >= self.stop:
                return store, sl.start + self.start
        # chunks do not shrink while a store is recorded: the store was rewritten or damaged
        raise ChunkReadError(f"chunk {self.chunk_n} of {self.ref.basedir!r} has {sl.stop - sl.start} frames; "
                             f"frames {self.start}..{self.stop - 1} were planned (the store changed since)")

    def iter_images(self) -> Iterator[np.ndarray]:
        """The block's images in order (read sequentially: cheap for video chunks)."""
        store, first = self._first_index()
        for i in range(first, first + len(self)):
            yield store[i]

    def metadata(self) -> tuple[np.ndarray, np.ndarray]:
        """``(frame_number, frame_time)`` of the block's frames, from the worker's store."""
        store, first = self._first_index()
        return (store.frame_numbers[first:first + len(self)].copy(),
                store.frame_times[first:first + len(self)].copy())

    def __call__(self) -> np.ndarray:
        out = np.empty((len(self), *self.shape), dtype=self.dtype)
        for k, img in enumerate(self.iter_images()):
            out[k] = img
        return out


def _frame_layout(store: ImgStore, ref: StoreRef) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the frames the store returns as it is opened."""
    if store.encoding and not ref.decoding:
        # image_shape describes decoded (colour) frames; undecoded ones are as stored
        return tuple(int(x) for x in store.metadata["imgshape"]), np.dtype(store.metadata["imgdtype"])
    return tuple(int(x) for x in store.image_shape), np.dtype(store.image_dtype)


def _frames_per_block(store: ImgStore, frames_per_block: int | None) -> int:
    if frames_per_block is None:
        shape, dtype = _frame_layout(store, StoreRef.of(store))
        nbytes = math.prod(shape) * dtype.itemsize
        return max(1, DEFAULT_BLOCK_BYTES // max(nbytes, 1))
    if isinstance(frames_per_block, bool) or not isinstance(frames_per_block, (int, np.integer)) \
            or frames_per_block <= 0:
        raise ValueError(f"frames_per_block {frames_per_block!r} must be a positive integer")
    return int(frames_per_block)


def iter_blocks(store: ImgStore, frames_per_block: int | None = None) -> Iterator[tuple[slice, BlockReader]]:
    """``(frame_index slice, BlockReader)`` covering the store in order, never spanning chunks.

    Parameters
    ----------
    store
        A store opened for reading.
    frames_per_block
        Split chunks into blocks of at most this many frames (default: as many as fit in
        :data:`DEFAULT_BLOCK_BYTES`; whole chunks for small frames).
    """
    ref = StoreRef.of(store)
    per = _frames_per_block(store, frames_per_block)
    index = store.index
    shape, dtype_ = _frame_layout(store, ref)
    dtype = dtype_.str
    for k, chunk_n in enumerate(index.chunk_numbers):
        first, end = int(index.chunk_starts[k]), int(index.chunk_starts[k + 1])
        for a in range(0, end - first, per):
            b = min(a + per, end - first)
            yield slice(first + a, first + b), BlockReader(ref, int(chunk_n), a, b, shape, dtype)


# ============================================================================ dask array


def store_to_dask(store: ImgStore, frames_per_block: int | None = None):
    """The frames of a store as a lazy dask array (frames x height x width [x channels]).

    Blocks follow the store's chunks (or parts of them, see ``frames_per_block``), so a block
    is read by decoding one chunk sequentially. Tasks carry only a :class:`BlockReader`.

    Parameters
    ----------
    store
        A store opened for reading.
    frames_per_block
        At most this many frames per dask block (default: :data:`DEFAULT_BLOCK_BYTES` worth).

    Returns
    -------
    dask.array.Array
        dtype and frame shape are ``store.image_dtype`` and ``store.image_shape``.

    Raises
    ------
    MissingDependencyError
        dask is not installed.
    """
    da, HighLevelGraph = _require_dask_array()
    from dask.base import tokenize

    ref = StoreRef.of(store)
    shape, dtype = _frame_layout(store, ref)
    blocks = [reader for _, reader in iter_blocks(store, frames_per_block)]
    # the name changes whenever what the blocks would read changes
    name = "imgstore-" + tokenize(ref, shape, dtype.str, [(b.chunk_n, b.start, b.stop) for b in blocks])
    zeros = (0,) * len(shape)
    dsk: dict[tuple, Any] = {(name, i, *zeros): (reader,) for i, reader in enumerate(blocks)}
    if not blocks:
        # dask needs at least one block along every axis
        dsk = {(name, 0, *zeros): (np.empty, (0, *shape), dtype)}
        chunks: tuple[tuple[int, ...], ...] = ((0,), *((d,) for d in shape))
    else:
        chunks = (tuple(len(r) for r in blocks), *((d,) for d in shape))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(graph, name, chunks, dtype=dtype)


# ============================================================================ mapping


@dataclasses.dataclass(frozen=True)
class _FrameTask:
    reader: BlockReader
    func: Callable[[np.ndarray], Any]

    def __call__(self) -> list[Any]:
        return [self.func(img) for img in self.reader.iter_images()]


@dataclasses.dataclass(frozen=True)
class _ChunkTask:
    reader: BlockReader
    func: Callable[[np.ndarray, np.ndarray, np.ndarray], Any]

    def __call__(self) -> Any:
        frame_number, frame_time = self.reader.metadata()
        return self.func(self.reader(), frame_number, frame_time)


def _run(task: Callable[[], Any]) -> Any:
    return task()


def _is_store(obj: Any) -> bool:
    # by what it can do, not by class: this module is below the store class (it serves to_dask)
    return hasattr(obj, "get_frame_at") and hasattr(obj, "frame_numbers")


def _as_stores(stores: Any) -> tuple[list[ImgStore], list[ImgStore]]:
    """(stores, the ones we opened and must close)."""
    if _is_store(stores) or isinstance(stores, (str, os.PathLike)):
        stores = [stores]
    out, opened = [], []
    for s in stores:
        if _is_store(s):
            out.append(s)
        elif isinstance(s, (str, os.PathLike)):
            store = new_for_filename(s)
            out.append(store)
            opened.append(store)
        else:
            raise TypeError(f"expected a store or a path, got {type(s).__name__}: {s!r}")
    return out, opened


@contextlib.contextmanager
def _lent(stores: list[ImgStore]) -> Iterator[None]:
    """Let this thread's blocks read from these open stores instead of opening their own."""
    cache = _open_stores()
    saved = {}
    lent = getattr(_local, "lent", None)
    if lent is None:
        lent = _local.lent = set()
    before = set(lent)
    lent.update(id(s) for s in stores)
    for store in stores:
        ref = StoreRef.of(store)
        if ref in cache:
            saved[ref] = cache[ref]
        cache[ref] = store
    try:
        yield
    finally:
        for store in stores:
            ref = StoreRef.of(store)
            if ref in saved:
                cache[ref] = saved[ref]
            elif cache.get(ref) is store:
                del cache[ref]
        lent.intersection_update(before)


def _execute(tasks: list[Callable[[], Any]], client: Any, stores: list[ImgStore]) -> list[Any]:
    if client is None:
        # here, serially: the caller's open stores are used (reading does not move their cursor)
        with _lent(stores):
            return [task() for task in tasks]
    if not hasattr(client, "map") or not hasattr(client, "gather"):
        raise TypeError(f"client must be a dask.distributed.Client (or None to run here), got {client!r}")
    # pure=False: results depend on files, not only on the (hashable) task
    futures = client.map(_run, tasks, pure=False)
    return client.gather(futures)


def _results_frame(columns: dict[str, np.ndarray], values: list[Any]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(columns)
    if values and all(isinstance(v, dict) for v in values):
        extra = pd.DataFrame.from_records(values)
        clash = sorted(set(extra.columns) & set(df.columns))
        if clash:
            raise ValueError(f"results use reserved column name(s) {clash}")
        return pd.concat([df, extra], axis=1)
    scalars = all(np.isscalar(v) for v in values)
    df["value"] = pd.Series(values, index=df.index, dtype=None if scalars else object)
    return df


def map_frames(func: Callable[[np.ndarray], Any], stores: Any, client: Any = None, *,
               frames_per_task: int | None = None) -> pd.DataFrame:
    """Apply ``func`` to every frame of one or more stores; gather one row per frame.

    Parameters
    ----------
    func
        ``func(img)`` returning a scalar (column ``value``) or a dict (one column per key).
        Runs on the workers: it must be picklable (lambdas and closures are, by cloudpickle).
    stores
        A store opened for reading, a store path, or a sequence of them.
    client
        A ``dask.distributed.Client`` to run on, or None to run here, serially.
    frames_per_task
        At most this many frames per task (default: one task per chunk).

    Returns
    -------
    pandas.DataFrame
        Columns ``store`` (position in ``stores``), ``frame_index``, ``frame_number``,
        ``frame_time``, then the results; rows in store order.
    """
    stores_, opened = _as_stores(stores)
    try:
        plan = []
        for s_i, store in enumerate(stores_):
            # frames are streamed through func one by one: whole chunks fit in any memory
            per = frames_per_task if frames_per_task is not None else _whole_chunks(store)
            for sl, reader in iter_blocks(store, per):
                plan.append((s_i, store, sl, _FrameTask(reader, func)))
        results = _execute([p[3] for p in plan], client, stores_)
        cols: dict[str, list[np.ndarray]] = {"store": [], "frame_index": [], "frame_number": [], "frame_time": []}
        values: list[Any] = []
        for (s_i, store, sl, _), res in zip(plan, results, strict=True):
            n = sl.stop - sl.start
            if len(res) != n:  # pragma: no cover - a task returns one value per frame
                raise ImgStoreError(f"a task returned {len(res)} results for {n} frames")
            cols["store"].append(np.full(n, s_i, dtype=np.int64))
            cols["frame_index"].append(np.arange(sl.start, sl.stop, dtype=np.int64))
            cols["frame_number"].append(store.frame_numbers[sl])
            cols["frame_time"].append(store.frame_times[sl])
            values.extend(res)
        return _results_frame(_concat_columns(cols), values)
    finally:
        for s in opened:
            s.close()


def map_chunks(func: Callable[[np.ndarray, np.ndarray, np.ndarray], Any], stores: Any, client: Any = None, *,
               frames_per_task: int | None = None) -> pd.DataFrame:
    """Apply ``func`` to the frames of every chunk (or part of one) at once; one row per call.

    Parameters
    ----------
    func
        ``func(frames, frame_number, frame_time)`` with ``frames`` an array of shape
        ``(n, *image_shape)`` and the two per-frame metadata arrays; returns a scalar (column
        ``value``) or a dict (one column per key).
    stores
        A store opened for reading, a store path, or a sequence of them.
    client
        A ``dask.distributed.Client`` to run on, or None to run here, serially.
    frames_per_task
        At most this many frames per call (default: a whole chunk, split only where it would
        exceed :data:`DEFAULT_BLOCK_BYTES` of pixels).

    Returns
    -------
    pandas.DataFrame
        Columns ``store``, ``chunk``, ``frame_index``, ``frame_number`` and ``frame_time`` (of the
        first frame of the call), ``n_frames``, then the results.
    """
    stores_, opened = _as_stores(stores)
    try:
        plan = []
        for s_i, store in enumerate(stores_):
            for sl, reader in iter_blocks(store, frames_per_task):
                plan.append((s_i, store, sl, reader))
        results = _execute([_ChunkTask(p[3], func) for p in plan], client, stores_)
        cols = {
            "store": np.array([p[0] for p in plan], dtype=np.int64),
            "chunk": np.array([p[3].chunk_n for p in plan], dtype=np.int64),
            "frame_index": np.array([p[2].start for p in plan], dtype=np.int64),
            "frame_number": np.array([p[1].frame_numbers[p[2].start] for p in plan], dtype=np.int64),
            "frame_time": np.array([p[1].frame_times[p[2].start] for p in plan], dtype=np.float64),
            "n_frames": np.array([p[2].stop - p[2].start for p in plan], dtype=np.int64),
        }
        return _results_frame(cols, list(results))
    finally:
        for s in opened:
            s.close()


def _whole_chunks(store: ImgStore) -> int:
    index = store.index
    lengths = np.diff(index.chunk_starts)
    return max(1, int(lengths.max()) if len(lengths) else 1)


def _concat_columns(cols: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    dtypes = {"store": np.int64, "frame_index": np.int64, "frame_number": np.int64, "frame_time": np.float64}
    return {k: (np.concatenate(v) if v else np.zeros(0, dtypes[k])) for k, v in cols.items()}

