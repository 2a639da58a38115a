"""The conformance suite's reading tests (run on writer- and directly-written stores)."""

from __future__ import annotations

import contextlib
import os
import pickle
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.testing.barcode import read_barcode

if TYPE_CHECKING:
    from imgstore.backends.base import ImgStore

from .cases import (
    BARCODE_BITS,
    EXTRA_EVERY,
    FRAME_NUMBERS,
    USER_METADATA,
    FormatCase,
    _index_summary,
    _open,
    age_files,
    frame_times_for,
    snapshot_tree,
)


class ReadTests:
    """Mixin of :class:`StoreConformance`: reading."""

    if TYPE_CHECKING:  # provided by StoreConformance
        chunksize: ClassVar[int]

        @classmethod
        def get_store_class(cls) -> type[ImgStore]: ...
        @classmethod
        def get_payload_writer(cls) -> Callable[..., Any] | None: ...
        @classmethod
        def require(cls, capability: str) -> None: ...
        @classmethod
        def new_writer(cls, case: FormatCase, path: str, **kwargs: Any) -> Any: ...
        @classmethod
        def write_store(cls, case: FormatCase, path: str, numbers: Sequence[int] | None = None,
                        **kwargs: Any) -> str: ...

    def test_metadata(self, case: FormatCase, store: Any) -> None:
        assert store.frame_count == len(FRAME_NUMBERS) == len(store)
        base = case.fmt.replace("+color", "")  # '<fmt>+color' stores are plain '<fmt>' stores
        assert store.format == {"mjpeg": "mjpeg/avi"}.get(base, base)
        assert store.image_shape == case.imgshape
        assert store.image_dtype == np.dtype(case.dtype)
        if case.lossless is not None:
            assert store.lossless is case.lossless
        assert store.frame_min == min(FRAME_NUMBERS)
        assert store.frame_max == max(FRAME_NUMBERS)
        times = frame_times_for(FRAME_NUMBERS)
        assert store.frame_time_min == times[0] and store.frame_time_max == times[-1]
        assert store.duration == pytest.approx(times[-1] - times[0])
        n_chunks = -(-len(FRAME_NUMBERS) // self.chunksize)
        assert store.chunks == list(range(n_chunks))
        assert store.chunksize == self.chunksize
        assert store.user_metadata == USER_METADATA
        assert store.metadata["class"] == type(store).class_name
        md = store.get_frame_metadata()
        assert md["frame_number"] == FRAME_NUMBERS
        assert md["frame_time"] == times
        np.testing.assert_array_equal(store.frame_numbers, FRAME_NUMBERS)
        np.testing.assert_array_equal(store.frame_times, times)
        assert len(store.uuid) == 32
        created, tz = store.created
        assert created.tzinfo is not None and tz is not None
        assert store.damaged_chunks == {}
        assert not store.is_live

    def test_sequential(self, case: FormatCase, store: Any) -> None:
        seen = []
        while True:
            try:
                img, (fn, ft) = store.get_next_image()
            except EOFError:
                break
            case.assert_frame(store, img, fn)
            assert (store.frame_number, store.frame_time) == (fn, ft)
            seen.append((fn, ft))
        assert seen == list(zip(FRAME_NUMBERS, frame_times_for(FRAME_NUMBERS), strict=True))
        with pytest.raises(EOFError):
            store.get_next_image()
        with pytest.raises(EOFError):
            store.get_next_framenumber()

    def test_next_continues_after_seek(self, store: Any) -> None:
        store.get_image(None, frame_index=10)
        assert store.get_next_framenumber() == FRAME_NUMBERS[11]
        _, (fn, _) = store.get_next_image()
        assert fn == FRAME_NUMBERS[11]
        assert store.frame_number == fn
        store.get_image(FRAME_NUMBERS[20])
        assert store.get_next_image().frame_number == FRAME_NUMBERS[21]

    def _n_random(self) -> int:
        return 40 if self.get_store_class().supports_random_access else 6

    def test_random_by_index(self, case: FormatCase, store: Any) -> None:
        rng = np.random.default_rng(2)
        for i in rng.integers(0, len(FRAME_NUMBERS), size=self._n_random()):
            img, (fn, _) = store.get_image(None, frame_index=i)  # numpy integers are valid arguments
            assert fn == FRAME_NUMBERS[i]
            case.assert_frame(store, img, fn)
            frame = store.get_frame_at(int(i))
            np.testing.assert_array_equal(frame.image, img)  # one decoder, one answer

    def test_random_by_number(self, case: FormatCase, store: Any) -> None:
        rng = np.random.default_rng(1)
        for fn in rng.choice(sorted(set(FRAME_NUMBERS)), size=self._n_random()):
            img, (got, _) = store.get_image(fn)
            assert got == fn
            case.assert_frame(store, img, int(fn))
            assert store.get_frame_by_number(fn).frame_number == fn

    def test_repeated_number_first_wins(self, store: Any) -> None:
        first = FRAME_NUMBERS.index(41)
        time_first = frame_times_for(FRAME_NUMBERS)[first]
        assert store.get_image(41)[1] == (41, time_first)
        assert store.get_frame_by_number(41).frame_time == time_first
        assert store.index_of_number(41) == first

    def test_by_time(self, case: FormatCase, store: Any) -> None:
        times = frame_times_for(FRAME_NUMBERS)
        for i in (0, 5, 13, len(times) - 1):
            img, (fn, ft) = store.get_nearest_image(times[i] + 0.011)
            assert (fn, ft) == (FRAME_NUMBERS[i], times[i])
            case.assert_frame(store, img, fn)
            frame = store.get_frame_played_at(times[i] - 0.013)
            assert (frame.frame_number, frame.frame_time) == (FRAME_NUMBERS[i], times[i])
            np.testing.assert_array_equal(frame.image, img)
            assert store.index_played_at(times[i] + 0.019) == i
        # before the first and after the last frame: the nearest is the first or last
        assert store.get_frame_played_at(times[0] - 3600).frame_number == FRAME_NUMBERS[0]
        assert store.get_frame_played_at(times[-1] + 3600).frame_number == FRAME_NUMBERS[-1]
        _, (fn, _) = store.get_image(15, exact_only=False)
        assert fn == min(FRAME_NUMBERS, key=lambda n: (abs(n - 15), FRAME_NUMBERS.index(n)))

    def test_named_api(self, case: FormatCase, store: Any) -> None:
        from imgstore.results import Frame, FrameMetadata

        times = frame_times_for(FRAME_NUMBERS)
        frame = store.get_frame_at(4)
        assert isinstance(frame, Frame)
        img, (fn, ft) = frame
        assert img is frame.image
        assert (frame.frame_number, frame.frame_time) == (fn, ft) == (FRAME_NUMBERS[4], times[4])
        assert frame.metadata == FrameMetadata(fn, ft) and isinstance(frame.metadata, FrameMetadata)
        assert isinstance(frame.frame_number, int) and isinstance(frame.frame_time, float)
        case.assert_frame(store, img, fn)
        assert img.flags.c_contiguous
        last = store.get_frame_at(-1)
        assert last.frame_number == FRAME_NUMBERS[-1]
        case.assert_frame(store, last.image, FRAME_NUMBERS[-1])
        assert store.get_frame_at(np.int64(2)).frame_number == FRAME_NUMBERS[2]
        near = store.get_frame_by_number(19, exact=False)
        assert near.frame_number == 21 and store.index_of_number(19, exact=False) == FRAME_NUMBERS.index(21)
        # the classic results are the same named tuples
        classic = store.get_image(None, frame_index=4)
        assert isinstance(classic, Frame) and classic.metadata == frame.metadata
        # the named API does not move the classic cursor
        store.get_frame_at(9)
        store.get_frame_by_number(50)
        store.get_frame_played_at(times[20])
        assert store.get_next_image().frame_number == FRAME_NUMBERS[5]

    def test_lookup_errors(self, store: Any) -> None:
        n = len(FRAME_NUMBERS)
        with pytest.raises(errors.FrameNotFoundError, match="#17"):
            store.get_image(17)
        with pytest.raises(errors.FrameNotFoundError, match="#17"):
            store.get_frame_by_number(17)
        with pytest.raises(ValueError, match="10000"):  # old code catches ValueError
            store.get_image(10_000)
        for bad in (-1, n, np.int64(10_000)):
            with pytest.raises(errors.FrameIndexError, match=str(int(bad))):
                store.get_image(None, frame_index=bad)
        with pytest.raises(errors.FrameIndexError, match=str(n)):
            store.get_frame_at(n)
        with pytest.raises(errors.FrameIndexError, match=r"1\.5"):
            store.get_frame_at(1.5)
        with pytest.raises(ValueError):
            store.get_image(0, frame_index=-5)
        # a failed lookup leaves the cursor where it was
        assert store.get_next_image().frame_number == FRAME_NUMBERS[0]

    def test_array_view(self, case: FormatCase, store: Any) -> None:
        n = len(FRAME_NUMBERS)
        block = store[3:9:2]
        assert block.shape == (3, *case.imgshape) and block.dtype == np.dtype(case.dtype)
        for img, i in zip(block, range(3, 9, 2), strict=True):
            case.assert_frame(store, img, FRAME_NUMBERS[i])
        case.assert_frame(store, store[-1], FRAME_NUMBERS[-1])
        picked = store[np.array([20, 2, 20])]
        assert [read_barcode(x, bits=BARCODE_BITS) for x in picked] == [FRAME_NUMBERS[20], FRAME_NUMBERS[2],
                                                                         FRAME_NUMBERS[20]]
        with pytest.raises(IndexError):
            store[n]
        assert sum(1 for _ in store) == n
        # the array view does not move the classic cursor
        _, (fn, _) = store.get_next_image()
        assert fn == FRAME_NUMBERS[0]

    def test_extra_data(self, store: Any) -> None:
        df = store.get_extra_data()
        rows = list(range(0, len(FRAME_NUMBERS), EXTRA_EVERY))
        assert list(df["frame_index"]) == rows
        assert list(df["frame_number"]) == [FRAME_NUMBERS[i] for i in rows]
        assert list(df["frame_time"]) == [frame_times_for(FRAME_NUMBERS)[i] for i in rows]
        assert list(df["note"]) == [f"n{i}" for i in rows]
        assert df["temperature"].tolist() == [20.0 + i for i in rows]
        assert store.has_extra_data

    def test_extract_only_frame(self, case: FormatCase, shared_store: str, store: Any) -> None:
        for i in (0, 9, len(FRAME_NUMBERS) - 1):
            case.assert_frame(store, imgstore.extract_only_frame(shared_store, i), FRAME_NUMBERS[i])

    def test_verify(self, store: Any) -> None:
        report = store.verify()
        assert report.ok, str(report)
        assert report.frame_count == len(FRAME_NUMBERS)
        # each chunk checked on its own: the verifier found every chunk's index and payload
        assert [c.chunk for c in report.chunks] == store.chunks
        assert sum(c.frames_read for c in report.chunks) == len(FRAME_NUMBERS)

    def test_pickle_reader(self, case: FormatCase, shared_store: str, store: Any) -> None:
        store.get_image(None, frame_index=3)
        clone = pickle.loads(pickle.dumps(store))
        try:
            assert type(clone) is type(store) and clone.mode == "r" and not clone.closed
            assert clone.filename == store.filename and clone.metadata == store.metadata
            assert clone.user_metadata == USER_METADATA
            np.testing.assert_array_equal(clone.frame_numbers, store.frame_numbers)
            np.testing.assert_array_equal(clone.frame_times, store.frame_times)
            for i in (0, 9, len(FRAME_NUMBERS) - 1):
                got, want = clone.get_frame_at(i), store.get_frame_at(i)
                assert got.metadata == want.metadata
                np.testing.assert_array_equal(got.image, want.image)
                case.assert_frame(clone, got.image, FRAME_NUMBERS[i])
        finally:
            clone.close()
        store.close()
        closed = pickle.loads(pickle.dumps(store))
        assert closed.closed
        with pytest.raises(errors.StoreClosedError, match="closed"):
            closed.get_frame_at(0)

    def test_read_only(self, case: FormatCase, shared_store: str, store_copy: str) -> None:
        """A plain open of a small store and a ``read_only=True`` open change nothing at all,
        with the index cache its writer left and without one."""
        from imgstore import index_cache

        with contextlib.suppress(FileNotFoundError):
            os.remove(index_cache.cache_path(store_copy))  # the one its writer left
        for path in (shared_store, store_copy):
            before = snapshot_tree(path)
            for kwargs in ({}, {"read_only": True}):
                with _open(path, self.get_store_class(), **kwargs) as s:
                    for i in range(len(s)):
                        case.assert_frame(s, s.get_image(None, frame_index=i)[0], FRAME_NUMBERS[i])
                    s.get_extra_data()
                    if kwargs:
                        with pytest.raises(errors.StoreWriteError, match="read-only"):
                            s.save_index_cache()
                assert snapshot_tree(path) == before, f"opened with {kwargs}"
            with pytest.raises(errors.ModeError, match="mode 'a'"):
                imgstore.new_for_filename(path, mode="a", read_only=True)
            assert snapshot_tree(path) == before

    def test_index_cache(self, case: FormatCase, store_copy: str, monkeypatch: Any) -> None:
        """A reopen from the index cache equals a plain open, and so does one with the cache disabled."""
        from imgstore import index_cache, ondisk

        store_class = self.get_store_class()
        path = store_copy
        cache = index_cache.cache_path(path)
        with contextlib.suppress(FileNotFoundError):
            os.remove(cache)  # the writer's, made when it closed
        # index files older than the racy window: a cache entry for them is believed after a stat
        age_files(path, seconds=3600)
        monkeypatch.setenv("IMGSTORE_INDEX_CACHE", "0")
        with _open(path, store_class) as plain:
            expected = _index_summary(plain)
            images = [plain.get_frame_at(i).image for i in (0, 12, len(plain) - 1)]
        assert not os.path.exists(cache)
        monkeypatch.delenv("IMGSTORE_INDEX_CACHE")
        with _open(path, store_class) as s:
            assert s.save_index_cache() == cache
        header = index_cache.read_cache_header(cache)
        assert isinstance(header, dict) and header

        reads: list[str] = []
        real = ondisk.read_chunk_index

        def counting(index_path: str, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
            reads.append(index_path)
            return real(index_path, *args, **kwargs)

        monkeypatch.setattr(ondisk, "read_chunk_index", counting)
        for env in ("1", "0"):
            monkeypatch.setenv("IMGSTORE_INDEX_CACHE", env)
            reads.clear()
            with _open(path, store_class) as s:
                opened_with = len(reads)
                assert _index_summary(s) == expected
                for img, i in zip(images, (0, 12, len(s) - 1), strict=True):
                    np.testing.assert_array_equal(s.get_frame_at(i).image, img)
            n_chunks = len(expected["chunks"])
            if env == "1":
                # from the cache: only spot checks read chunk indexes
                assert opened_with < n_chunks, f"{opened_with} of {n_chunks} chunk indexes read: cache unused"
            else:
                assert opened_with >= n_chunks

    def test_append(self, case: FormatCase, source: str, store_copy: str) -> None:
        """Frames appended to a store (with an index cache) read back after the old ones."""
        self.require("write")
        path = store_copy
        with _open(path, self.get_store_class()) as s:
            s.save_index_cache()
        added = [100, 101, 102, 103, 104, 105, 106, 107, 108]
        times = [1_800_000_000.0 + k for k in range(len(added))]
        with _open(path, self.get_store_class(), mode="a") as a:
            assert a.frame_count == len(FRAME_NUMBERS)
            for k, (fn, ft) in enumerate(zip(added, times, strict=True)):
                a.add_image(case.frame(fn), fn, ft)
                if k == 2:
                    a.add_extra_data(temperature=-1.0, note="appended")
            assert a.frame_count == len(FRAME_NUMBERS) + len(added)
        with warnings.catch_warnings():
            warnings.simplefilter("error", imgstore.ImgStoreWarning)
            s = _open(path, self.get_store_class())
        with s:
            assert s.get_frame_metadata()["frame_number"] == FRAME_NUMBERS + added
            assert s.frame_times[-1] == times[-1]
            assert s.chunks == list(range(-(-len(FRAME_NUMBERS) // self.chunksize) + 2))
            for fn in (FRAME_NUMBERS[-1], *added):
                case.assert_frame(s, s.get_image(fn)[0], fn)
            df = s.get_extra_data()
            assert df["note"].tolist()[-1] == "appended"
            assert df["frame_number"].tolist()[-1] == added[2]
            assert df["frame_index"].tolist()[-1] == len(FRAME_NUMBERS) + 2
