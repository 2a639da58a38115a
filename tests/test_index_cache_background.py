"""A reader's cache of a big store is written by a background thread: the open does not wait for it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import imgstore
from imgstore import errors, index_cache
from imgstore.backends import scan
from imgstore.checked_index import CheckedFrameIndex
from imgstore.testing.synthetic import make_synthetic_store

N_CHUNKS = index_cache.READER_WRITE_MIN_CHUNKS + 2
PER_CHUNK = 4
HOUR_NS = 3600 * 10**9
WAIT = 60  # seconds: a bound on a hang, never a synchronisation


def _big(tmp_path) -> str:
    path = make_synthetic_store(str(tmp_path / "big"), N_CHUNKS * PER_CHUNK, PER_CHUNK, frames="none")
    for root, _, files in os.walk(path):
        for name in files:
            if name.startswith("index."):
                f = os.path.join(root, name)
                st = os.stat(f)
                os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns - HOUR_NS))  # a finished recording
    return path


def _cache(path: str) -> str:
    return index_cache.cache_path(path)


def _uncached(path: str, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    with monkeypatch.context() as m:
        m.setenv("IMGSTORE_INDEX_CACHE", "0")
        with imgstore.new_for_filename(path) as s:
            return np.asarray(s.frame_numbers).copy(), np.asarray(s.frame_times).copy()


@pytest.fixture
def in_background(monkeypatch):
    """Every reader-written cache goes through the thread; writes wait for ``release``."""
    monkeypatch.setattr(index_cache, "BACKGROUND_WRITE_MIN_FRAMES", 1)
    release = threading.Event()
    writers: list[threading.Thread] = []
    original = index_cache._write_file

    def held_write(*args, **kwargs):
        writers.append(threading.current_thread())
        assert release.wait(WAIT), "the test never released the cache write"
        return original(*args, **kwargs)

    monkeypatch.setattr(index_cache, "_write_file", held_write)
    yield release, writers
    release.set()  # a failed test must not leave a thread waiting


def test_open_returns_while_the_cache_is_written_and_close_waits(tmp_path, monkeypatch, in_background):
    release, writers = in_background
    path = _big(tmp_path)
    expected = _uncached(path, monkeypatch)
    s = imgstore.new_for_filename(path)
    # the write is held: the store is open and answers from what it read
    assert not os.path.exists(_cache(path))
    assert len(writers) <= 1 and all(t is not threading.current_thread() for t in writers)
    np.testing.assert_array_equal(s.frame_numbers, expected[0])
    np.testing.assert_array_equal(s.frame_times, expected[1])
    assert s.get_frame_metadata()["frame_number"] == list(expected[0])
    release.set()
    s.close()
    assert len(writers) == 1 and not writers[0].is_alive()
    assert os.path.exists(_cache(path))
    with imgstore.new_for_filename(path) as again:
        assert isinstance(again.index, CheckedFrameIndex) and again.index.checked
        np.testing.assert_array_equal(again.frame_numbers, expected[0])


def test_a_second_open_waits_for_the_pending_write_instead_of_rebuilding(tmp_path, monkeypatch, in_background):
    release, writers = in_background
    path = _big(tmp_path)
    first = imgstore.new_for_filename(path)
    second_waits = threading.Event()
    original_wait = index_cache.wait_for_write
    opener: list[threading.Thread] = []

    def wait_spy(basedir, storage=None):
        if opener and threading.current_thread() is opener[0]:
            second_waits.set()
        return original_wait(basedir, storage)

    monkeypatch.setattr(index_cache, "wait_for_write", wait_spy)
    reads: list[int] = []
    original_load = scan.ChunkScanner._load_table

    def load_spy(self, *args, **kwargs):
        if threading.current_thread() is opener[0]:
            reads.append(args[0])
        return original_load(self, *args, **kwargs)

    monkeypatch.setattr(scan.ChunkScanner, "_load_table", load_spy)
    opened: list[imgstore.ImgStore] = []
    opener.append(threading.Thread(target=lambda: opened.append(imgstore.new_for_filename(path))))
    opener[0].start()
    assert second_waits.wait(WAIT)
    release.set()
    opener[0].join(WAIT)
    assert opened, "the second open did not finish"
    second = opened[0]
    try:
        # it read the cache the first open wrote (spot checks only), not every chunk again
        assert isinstance(second.index, CheckedFrameIndex) and second.index.checked
        assert len(reads) <= 3
        assert len(writers) == 1
        np.testing.assert_array_equal(second.frame_numbers, first.frame_numbers)
    finally:
        second.close()
        first.close()


def test_a_failed_background_write_leaves_no_file_and_the_store_works(tmp_path, monkeypatch):
    monkeypatch.setattr(index_cache, "BACKGROUND_WRITE_MIN_FRAMES", 1)

    def failing_write(storage, path, identity, cached):
        raise errors.StoreWriteError(0, f"cannot write {path}: disk full (test)")

    monkeypatch.setattr(index_cache, "_write_file", failing_write)
    path = _big(tmp_path)
    before = sorted(os.listdir(path))
    with imgstore.new_for_filename(path) as s:
        assert len(s) == N_CHUNKS * PER_CHUNK
    assert sorted(os.listdir(path)) == before


def test_a_process_that_exits_right_after_opening_still_finishes_the_cache(tmp_path):
    path = _big(tmp_path)
    # the write starts only once the main code has run its last statement
    code = (
        "import sys, threading\n"
        "from imgstore import index_cache\n"
        "index_cache.BACKGROUND_WRITE_MIN_FRAMES = 1\n"
        "main_done = threading.Event()\n"
        "original = index_cache._write_file\n"
        "def late_write(*args):\n"
        "    assert main_done.wait(60)\n"
        "    original(*args)\n"
        "index_cache._write_file = late_write\n"
        "import imgstore\n"
        "s = imgstore.new_for_filename(sys.argv[1])\n"
        "main_done.set()\n"
    )
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    header = index_cache.read_cache_header(_cache(path))
    assert header["n_frames"] == N_CHUNKS * PER_CHUNK
    assert not [f for f in os.listdir(path) if f.endswith(".partial")]
    with imgstore.new_for_filename(path) as s:
        assert isinstance(s.index, CheckedFrameIndex) and s.index.checked


def test_small_stores_are_written_before_the_open_returns(tmp_path):
    path = _big(tmp_path)  # far fewer frames than BACKGROUND_WRITE_MIN_FRAMES
    s = imgstore.new_for_filename(path)
    try:
        assert os.path.exists(_cache(path))
    finally:
        s.close()
