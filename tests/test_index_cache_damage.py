"""Damage inside the index cache's frame arrays and sorted views: never a wrong frame, never trusted.

The cache is read by page and checked lazily (chunk digests, keys a search lands on): every
lookup below is compared with the answer of the same store opened without any cache.
"""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import pytest

import imgstore
from imgstore import errors, index_cache
from imgstore.backends import scan
from imgstore.testing.synthetic import make_synthetic_store, synthetic_frame

N_CHUNKS = index_cache.READER_WRITE_MIN_CHUNKS + 4
PER_CHUNK = 4
N = N_CHUNKS * PER_CHUNK


@pytest.fixture(autouse=True)
def no_spot_checks(monkeypatch):
    """Open from the cache alone: the spot checks (first, last, one random chunk) are what the
    lazy checks must not rely on, so they are pointed at chunk 0, which is never damaged here."""
    monkeypatch.setattr(scan, "RACY_WINDOW_NS", 0)
    monkeypatch.setattr(random, "choice", lambda seq: seq[0])


def store_with_cache(tmp_path, name="s", shuffled=False) -> str:
    rng = np.random.default_rng(1)
    numbers = np.arange(N) * 3 + 7
    times = 1_700_000_000.0 + np.arange(N) / 10
    if shuffled:  # unsorted numbers and times: the cache keeps sorted views
        numbers = rng.permutation(numbers)
        times = rng.permutation(times)
    path = make_synthetic_store(str(tmp_path / name), N, PER_CHUNK, frames="all", frame_numbers=numbers,
                                frame_times=times, imgshape=(4, 4))
    with imgstore.new_for_filename(path):
        pass  # a reader of a big store writes its cache
    assert os.path.exists(index_cache.cache_path(path))
    return path


def damage(path: str, array: str, item: int, value=None, byte: int | None = None) -> None:
    """Overwrite one item of a cache array (or flip one of its bytes)."""
    cache = index_cache.cache_path(path)
    spec = index_cache.read_cache_header(cache)["arrays"][array]
    size = np.dtype(spec["dtype"]).itemsize
    with open(cache, "r+b") as f:
        if byte is None:
            f.seek(spec["offset"] + item * size)
            f.write(np.array([value], dtype=spec["dtype"]).tobytes())
        else:
            f.seek(spec["offset"] + item * size + byte)
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 0x10]))


def truth(path: str):
    os.environ["IMGSTORE_INDEX_CACHE"] = "0"
    try:
        with imgstore.new_for_filename(path) as s:
            return s.frame_numbers.copy(), s.frame_times.copy()
    finally:
        del os.environ["IMGSTORE_INDEX_CACHE"]


def test_damaged_frame_number_never_gives_another_frame(tmp_path):
    """The issue's case: frame 57 asked for, frame 52's pixels came back."""
    path = store_with_cache(tmp_path)
    numbers, _ = truth(path)
    i57 = int(np.flatnonzero(numbers == 7 + 3 * 57)[0])
    damage(path, "frame_number", 52, numbers[i57])  # chunk 13 now claims frame 57's number
    with pytest.warns(imgstore.ImgStoreWarning, match=r"frames of chunk 13 fail their checksum.*rebuilt"), \
            imgstore.new_for_filename(path) as s:
        img, (fn, _) = s.get_image(int(numbers[i57]))
        assert fn == numbers[i57]
        np.testing.assert_array_equal(img, synthetic_frame(int(numbers[i57]), (4, 4)))
        assert s.frame_numbers.tolist() == numbers.tolist()
    # the damaged cache was replaced: the next reader opens it without a word
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imgstore.new_for_filename(path) as s:
            assert s.get_image(int(numbers[52]))[1][0] == numbers[52]


def test_damaged_sorted_view_never_misleads_nearest(tmp_path):
    """get_nearest_image through a damaged time view: the true nearest frame, or a rebuild."""
    path = store_with_cache(tmp_path, shuffled=True)
    numbers, times = truth(path)
    header = index_cache.read_cache_header(index_cache.cache_path(path))
    assert header["time_sorted"] is False and header["number_sorted"] is False
    order = np.argsort(times, kind="stable")
    damage(path, "time_keys", 100, times[order[100]] + 1.2)  # 12 frames later, as in the issue
    query = float(times[order[100]]) + 0.01
    with pytest.warns(imgstore.ImgStoreWarning, match="sorted frame times disagree"), \
            imgstore.new_for_filename(path) as s:
        _, (fn, ft) = s.get_nearest_image(query)
        assert ft == times[order[100]] and fn == numbers[order[100]]


@pytest.mark.parametrize("array", ["number_order", "time_order"])
def test_sort_order_out_of_range(tmp_path, array):
    path = store_with_cache(tmp_path, shuffled=True)
    numbers, times = truth(path)
    keys = np.sort(numbers) if array == "number_order" else np.sort(times)
    damage(path, array, 77, 10**12)
    with pytest.warns(imgstore.ImgStoreWarning, match="rebuilt"), imgstore.new_for_filename(path) as s:
        if array == "number_order":
            assert s.get_image(int(keys[77]))[1][0] == keys[77]
        else:
            assert s.get_nearest_image(float(keys[77]))[1][1] == keys[77]


def test_every_flipped_byte_in_the_arrays_is_caught(tmp_path):
    """A bit-flip matrix over every array of the cache: all lookups agree with the store read without cache."""
    path = store_with_cache(tmp_path, shuffled=True)
    numbers, times = truth(path)
    cache = index_cache.cache_path(path)
    with open(cache, "rb") as f:
        pristine = f.read()
    header = index_cache.read_cache_header(cache)
    rng = random.Random(3)
    trials = 0
    for array, spec in sorted(header["arrays"].items()):
        if array.startswith("_") or not spec["length"]:
            continue
        size = np.dtype(spec["dtype"]).itemsize
        for _ in range(6):
            item, byte = rng.randrange(spec["length"]), rng.randrange(size)
            with open(cache, "wb") as f:
                f.write(pristine)
            damage(path, array, item, byte=byte)
            trials += 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
                with imgstore.new_for_filename(path) as s:
                    probe = rng.sample(range(N), 12)
                    for i in probe:  # by number, by time, by index: always the frame asked for
                        assert s.get_image(int(numbers[i]))[1] == (numbers[i], times[i]), (array, item)
                        assert s.get_nearest_image(float(times[i]) + 1e-3)[1][1] == times[i], (array, item)
                        assert s.get_image(None, frame_index=i)[1] == (numbers[i], times[i]), (array, item)
                    with pytest.raises(errors.FrameNotFoundError):
                        s.get_image(int(numbers.max()) + 1)
                    assert s.frame_numbers.tolist() == numbers.tolist()
                    assert s.frame_times.tolist() == times.tolist()
    assert trials >= 40


def test_checks_without_a_rebuild_callback_raise(tmp_path):
    """A checked index on its own (no scanner to rebuild from) raises a named error."""
    from imgstore.checked_index import CheckedFrameIndex
    from imgstore.checksums import frames_digest

    fn, ft = np.arange(6), np.arange(6) * 0.5
    digests = [frames_digest(fn[:3], ft[:3]), frames_digest(fn[3:], ft[3:])]
    damaged = fn.copy()
    damaged[4] = 99
    index = CheckedFrameIndex([0, 1], [3, 3], damaged, ft, chunk_digests=digests, origin="test.cache")
    assert index.metadata_at(1) == (1, 0.5)  # chunk 0 is intact
    with pytest.raises(errors.IndexCorruptError, match=r"test.cache is damaged: the frames of chunk 1"):
        index.metadata_at(4)
