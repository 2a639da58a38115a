"""A local index cache is read by page (pread), not memory-mapped: lookups keep few pages resident."""
from __future__ import annotations

import gc
import os
import random
import threading

import numpy as np
import pytest

import imgstore
from imgstore import errors, index_cache, lazy_index
from imgstore.backends import scan
from imgstore.checked_index import CheckedFrameIndex
from imgstore.storage import RangeFile
from imgstore.testing.synthetic import make_synthetic_store


@pytest.fixture(autouse=True)
def _old_enough(monkeypatch):
    """Index files as old as a finished recording's: opening re-reads only the spot checks' chunks."""
    monkeypatch.setattr(scan, "RACY_WINDOW_NS", 0)


N_FRAMES = 400_000  # 3.2 MB per array: above lazy_index.EAGER_BYTES, so read by page
CHUNK = 10_000


@pytest.fixture(scope="module")
def cached_store(tmp_path_factory) -> str:
    path = make_synthetic_store(str(tmp_path_factory.mktemp("pages") / "s"), N_FRAMES, CHUNK, frames="none",
                                frame_numbers=np.arange(N_FRAMES) + np.arange(N_FRAMES) // 1000)
    with imgstore.new_for_filename(path) as s:
        s.save_index_cache()
    return path


@pytest.fixture(scope="module")
def truth(cached_store) -> tuple[np.ndarray, np.ndarray]:
    """The frame numbers and times read from the chunks' own indexes (no cache)."""
    old = os.environ.get("IMGSTORE_INDEX_CACHE")
    os.environ["IMGSTORE_INDEX_CACHE"] = "0"
    try:
        with imgstore.new_for_filename(cached_store) as s:
            return s.frame_numbers.copy(), s.frame_times.copy()
    finally:
        if old is None:
            del os.environ["IMGSTORE_INDEX_CACHE"]
        else:
            os.environ["IMGSTORE_INDEX_CACHE"] = old


def _lazy_arrays(store: imgstore.ImgStore) -> tuple[lazy_index.RangeArray, lazy_index.RangeArray]:
    index = store.index
    assert isinstance(index, CheckedFrameIndex) and index.checked
    fn, ft = index._frame_number, index._frame_time
    assert lazy_index.is_lazy(fn) and lazy_index.is_lazy(ft)
    return fn, ft


def test_lookups_read_a_few_pages_and_answer_as_the_chunks_do(cached_store, truth):
    numbers, times = truth
    rng = random.Random(3)
    picks = [rng.randrange(N_FRAMES) for _ in range(25)]
    with imgstore.new_for_filename(cached_store) as s:
        fn, ft = _lazy_arrays(s)
        # opening compared three chunks (first, last, one at random) with their own indexes: a
        # chunk's 80 KB of numbers lie on two or three 64 KiB pages
        opened = fn.pages_fetched
        assert opened <= 3 * 3 and ft.pages_fetched <= 3 * 3
        for i in picks:
            assert s.index.find_number(int(numbers[i])) == i
            assert s.index.nearest_time(float(times[i]) + 1e-4) == i
            assert s.index.metadata_at(i) == (int(numbers[i]), float(times[i]))
        # per lookup: the chunk checked against its digest (up to 3 pages) and a search's few probes
        assert fn.pages_fetched - opened <= 2 + 6 * len(picks)
        assert ft.pages_fetched - opened <= 2 + 6 * len(picks)
        assert fn.pages_fetched < N_FRAMES * 8 // lazy_index.PAGE_BYTES  # not the whole array


def test_pages_kept_are_bounded(cached_store, truth, monkeypatch):
    monkeypatch.setattr(lazy_index, "MAX_LOCAL_PAGES", 4)
    numbers, _ = truth
    with imgstore.new_for_filename(cached_store) as s:
        fn, ft = _lazy_arrays(s)
        for i in range(0, N_FRAMES, CHUNK // 2):
            assert s.index.find_number(int(numbers[i])) == i
        assert len(fn._pages) <= 4 and len(ft._pages) <= 4
        assert fn.pages_fetched > 4  # pages were dropped and read again


def test_whole_arrays_equal_the_chunks(cached_store, truth):
    with imgstore.new_for_filename(cached_store) as s:
        np.testing.assert_array_equal(s.frame_numbers, truth[0])
        np.testing.assert_array_equal(s.frame_times, truth[1])
        # and lookups after that use the whole arrays
        assert s.index.find_number(int(truth[0][-1])) == N_FRAMES - 1


def test_a_cache_replaced_while_open_is_read_as_opened(cached_store, truth, tmp_path):
    numbers, _ = truth
    cache = index_cache.cache_path(cached_store)
    with imgstore.new_for_filename(cached_store) as s:
        _lazy_arrays(s)
        saved = tmp_path / "saved.cache"
        os.replace(cache, saved)
        try:
            # a different file under the same name: written atomically, as every cache is
            with open(cache + ".new", "wb") as f:
                f.write(b"\0" * os.path.getsize(saved))
            os.replace(cache + ".new", cache)
            for i in (0, N_FRAMES // 2, N_FRAMES - 1):
                assert s.index.find_number(int(numbers[i])) == i
        finally:
            os.replace(saved, cache)


def test_a_cache_truncated_in_place_while_open_raises(tmp_path, truth):
    path = make_synthetic_store(str(tmp_path / "t"), N_FRAMES, CHUNK, frames="none",
                                frame_numbers=truth[0], frame_times=truth[1])
    with imgstore.new_for_filename(path) as s:
        s.save_index_cache()
    cache = index_cache.cache_path(path)
    with imgstore.new_for_filename(path) as s:
        _lazy_arrays(s)
        with open(cache, "r+b") as f:
            f.truncate(4096)
        with pytest.raises(errors.IndexCorruptError, match=r"\.imgstore-index\.cache ends at byte \d+"):
            for i in range(0, N_FRAMES, CHUNK):  # the chunks opening did not spot-check need reading
                s.index.metadata_at(i)


def test_the_file_is_closed_with_the_store(cached_store):
    s = imgstore.new_for_filename(cached_store)
    fn, ft = _lazy_arrays(s)
    held = fn.fetch_ranges.__self__  # the RangeFile the pages are read from
    assert isinstance(held, RangeFile)
    closed = held._finalizer
    assert closed.alive
    del held, fn, ft
    s.close()
    del s
    gc.collect()
    assert not closed.alive  # the descriptor was closed when the last array reading from it went


def test_range_file_reads_exact_ranges(tmp_path):
    data = bytes(range(256)) * 1000
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    f = RangeFile(str(p))
    assert f.size == len(data)
    assert f.read_ranges([(0, 10), (1000, 70_000), (len(data) - 3, len(data))]) == \
        [data[:10], data[1000:70_000], data[-3:]]
    np.testing.assert_array_equal(f.mapped(8, 4, np.dtype("<u2")), np.frombuffer(data[8:16], "<u2"))
    with pytest.raises(errors.IndexCorruptError, match=r"f\.bin ends at byte 256000"):
        f.read_ranges([(len(data) - 1, len(data) + 5)])
    f.close()
    f.close()  # twice is harmless


def test_threads_looking_up_while_pages_are_dropped_and_the_whole_array_is_had(cached_store, truth,
                                                                               monkeypatch):
    monkeypatch.setattr(lazy_index, "MAX_LOCAL_PAGES", 2)  # every thread pushes the others' pages out
    numbers, times = truth
    with imgstore.new_for_filename(cached_store) as s:
        fn, _ = _lazy_arrays(s)
        errors_seen: list[BaseException] = []
        start = threading.Barrier(5)

        def look(seed: int) -> None:
            rng = random.Random(seed)
            start.wait()
            try:
                for _ in range(150):
                    i = rng.randrange(N_FRAMES)
                    assert s.index.metadata_at(i) == (int(numbers[i]), float(times[i]))
                    assert fn[i] == numbers[i]
            except BaseException as exc:  # reported below, with the thread's failure
                errors_seen.append(exc)

        def load_whole() -> None:
            start.wait()
            fn.load()  # the pages go; lookups in flight must still answer

        threads = [threading.Thread(target=look, args=(k,)) for k in range(4)]
        threads.append(threading.Thread(target=load_whole))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert not errors_seen, errors_seen[0]


def _array_of(cached_store: str) -> tuple[imgstore.ImgStore, lazy_index.RangeArray]:
    s = imgstore.new_for_filename(cached_store)
    fn, _ = _lazy_arrays(s)
    return s, fn


def test_a_page_pushed_out_before_it_is_taken_is_read_again(cached_store, truth, monkeypatch):
    s, fn = _array_of(cached_store)
    with s:
        real = lazy_index.RangeArray.ensure
        pushed = []

        def ensure_then_pushed_out(self, start, stop):
            real(self, start, stop)
            if not pushed:  # another thread's pages take its place, once
                pushed.append(start)
                self._pages.clear()

        monkeypatch.setattr(lazy_index.RangeArray, "ensure", ensure_then_pushed_out)
        i = N_FRAMES // 2 + 17
        assert fn[i] == truth[0][i] and pushed


def test_a_page_asked_while_the_whole_array_is_had_comes_from_it(cached_store, truth, monkeypatch):
    s, fn = _array_of(cached_store)
    with s:
        real = lazy_index.RangeArray.ensure

        def whole_array_meanwhile(self, start, stop):
            self.load()  # another thread needed the whole array: the pages are gone
            real(self, start, stop)

        monkeypatch.setattr(lazy_index.RangeArray, "ensure", whole_array_meanwhile)
        i = N_FRAMES // 3 + 5
        assert fn._page(i // fn._per_page)[i % fn._per_page] == truth[0][i]
