"""The index cache: written, used, invalidated, never trusted blindly, never required."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import struct
import tempfile
import threading
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import imgstore
from imgstore import _lock, errors, index_cache, ondisk
from imgstore.backends import scan
from imgstore.checked_index import CheckedFrameIndex
from imgstore.testing.conformance import snapshot_files
from imgstore.testing.synthetic import make_synthetic_store, synthetic_frame

BIG = index_cache.READER_WRITE_MIN_CHUNKS  # chunks from which a reader writes the cache itself
HOUR_NS = 3600 * 10**9


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def reads(monkeypatch):
    """Chunk numbers whose index (or journal) is read, in order."""
    seen: list[int] = []
    original = scan.ChunkScanner._load_table

    def spy(self, chunk_n, base, keys=ondisk.FRAME_MD):
        seen.append(chunk_n)
        return original(self, chunk_n, base, keys)

    monkeypatch.setattr(scan.ChunkScanner, "_load_table", spy)
    return seen


def _index_files(path: str) -> list[str]:
    out = []
    for root, _, files in os.walk(path):
        out += [os.path.join(root, f) for f in files if f.startswith("index.")]
    return sorted(out)


def _age(path: str, ns: int = HOUR_NS) -> None:
    """Date every chunk index back, as in a recording made long ago (no racy entries)."""
    for f in _index_files(path):
        st_ = os.stat(f)
        os.utime(f, ns=(st_.st_atime_ns, st_.st_mtime_ns - ns))


def _cache(path: str) -> str:
    return index_cache.cache_path(path)


def _from_cache(store: imgstore.ImgStore) -> bool:
    """True if the store's frame index is the cache's arrays (checked against their digests, not rebuilt)."""
    return isinstance(store.index, CheckedFrameIndex) and store.index.checked


def _open(path: str, **kwargs) -> imgstore.ImgStore:
    return imgstore.new_for_filename(path, **kwargs)


def _uncached(path: str, monkeypatch) -> tuple[np.ndarray, np.ndarray, list[int]]:
    with monkeypatch.context() as m:
        m.setenv("IMGSTORE_INDEX_CACHE", "0")
        with _open(path) as s:
            return s.frame_numbers.copy(), s.frame_times.copy(), s.chunks


def _rewrite_header(path: str, **changes) -> None:
    """Change header fields of a cache file, keeping it otherwise valid (same header length)."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    start = len(b"\x93IMGSTORE-INDEX\n")
    hlen, _ = struct.unpack("<QI", data[start:start + 12])
    header = json.loads(bytes(data[start + 12:start + 12 + hlen]))
    header.update(changes)
    new = json.dumps(header, sort_keys=True).encode()
    new = new.ljust(hlen) if len(new) <= hlen else new
    assert len(new) == hlen, "test helper: the change must keep the header length"
    data[start:start + 12] = struct.pack("<QI", hlen, zlib.crc32(new))
    data[start + 12:start + 12 + hlen] = new
    with open(path, "wb") as f:
        f.write(data)


def _write_store(path: str, n: int = 10, chunksize: int = 3, **kw) -> str:
    with imgstore.new_for_format("npy", basedir=path, imgshape=(4, 4), imgdtype=np.uint8, chunksize=chunksize,
                                 **kw) as s:
        for i in range(n):
            s.add_image(np.full((4, 4), i, np.uint8), i, 1000.0 + i)
    return path


def _big(tmp_path, name="big", n_chunks=BIG + 4, per_chunk=4, **kw) -> str:
    path = make_synthetic_store(str(tmp_path / name), n_chunks * per_chunk, per_chunk, frames="none", **kw)
    _age(path)
    return path


# ----------------------------------------------------------------------------- writing


def test_writer_leaves_a_cache_the_reader_uses(tmp_path, reads, monkeypatch):
    path = _write_store(str(tmp_path / "s"), n=10, chunksize=3)
    header = index_cache.read_cache_header(_cache(path))
    assert (header["version"], header["n_frames"], header["n_chunks"]) == (index_cache.CACHE_VERSION, 10, 4)
    assert header["number_sorted"] is True and header["time_sorted"] is True
    # just written, every index is younger than the racy window: re-read and compared on open
    reads.clear()
    with _open(path) as s:
        assert s.frame_numbers.tolist() == list(range(10))
    assert sorted(set(reads)) == [0, 1, 2, 3]
    # once old enough the cache alone answers, but for the spot checks (first, last, one random)
    monkeypatch.setattr(scan, "RACY_WINDOW_NS", 0)
    reads.clear()
    with _open(path) as s:
        assert s.frame_numbers.tolist() == list(range(10))
        assert s.frame_times.tolist() == [1000.0 + i for i in range(10)]
        assert s.chunks == [0, 1, 2, 3]
        assert _from_cache(s)
        # sortedness came from the cache: no O(n) check, no sort
        assert s.index.sorted_views_known[0] and s.index.by_number()[0] is None
        np.testing.assert_array_equal(s.get_image(7)[0], np.full((4, 4), 7, np.uint8))
    assert {0, 3} <= set(reads) and len(reads) <= 3


def test_overwrite_and_empty_store_leave_no_stale_cache(tmp_path):
    path = _write_store(str(tmp_path / "s"), n=7)
    with imgstore.new_for_format("npy", basedir=path, imgshape=(4, 4), imgdtype=np.uint8, overwrite=True):
        pass
    assert not os.path.exists(_cache(path))
    with _open(path) as s:
        assert len(s) == 0


def test_appending_writer_reads_only_its_new_chunks(tmp_path, reads):
    path = _big(tmp_path)
    with _open(path) as s:  # big: the reader writes the cache
        n0 = len(s)
    assert os.path.exists(_cache(path))
    with _open(path, mode="a") as s:
        for i in range(6):
            s.add_image(synthetic_frame(10_000 + i), 10_000 + i, 2e9 + i)
        reads.clear()
    # at close the writer re-read only the two chunks it wrote (plus the cache's spot checks)
    new = [BIG + 4, BIG + 5]
    assert set(new) <= set(reads) and len(set(reads) - set(new)) <= 3
    header = index_cache.read_cache_header(_cache(path))
    assert header["n_frames"] == n0 + 6
    with _open(path) as s:
        assert s.frame_numbers[-6:].tolist() == list(range(10_000, 10_006))
        assert s.chunks[-2:] == new


# ----------------------------------------------------------------------------- readers


def test_reading_a_small_store_changes_no_file(tmp_path):
    path = _write_store(str(tmp_path / "s"), n=10)
    os.unlink(_cache(path))  # no cache: still none after reading
    before = snapshot_files(path)
    with _open(path) as s:
        for i in range(len(s)):
            s.get_image(None, frame_index=i)
    assert snapshot_files(path) == before
    # a stale cache is ignored, but not rewritten either
    small = make_synthetic_store(str(tmp_path / "small"), 40, 4, frames="none")
    with _open(small) as s:
        s.save_index()
    ondisk.write_chunk_index(os.path.join(small, "000003", "index"),
                             {"frame_number": np.arange(4) + 500, "frame_time": np.arange(4.0)})
    before = snapshot_files(small)
    with _open(small) as s:
        assert s.frame_numbers[12:16].tolist() == [500, 501, 502, 503]
    assert snapshot_files(small) == before


def test_big_store_reader_writes_cache_then_uses_it(tmp_path, reads, monkeypatch):
    path = _big(tmp_path)
    expected = _uncached(path, monkeypatch)
    assert not os.path.exists(_cache(path))
    reads.clear()
    with _open(path) as s:
        first = (s.frame_numbers.copy(), s.frame_times.copy(), s.chunks)
    assert len(reads) == BIG + 4
    assert os.path.exists(_cache(path))
    reads.clear()
    with _open(path) as s:
        assert _from_cache(s)
        second = (s.frame_numbers.copy(), s.frame_times.copy(), s.chunks)
    assert 2 <= len(reads) <= 3  # spot checks only
    for got in (first, second):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        assert got[2] == expected[2]


def test_modified_chunk_index_is_reread_and_cache_rebuilt(tmp_path, reads, monkeypatch):
    path = _big(tmp_path)
    with _open(path):
        pass
    base = os.path.join(path, "000007", "index")
    ondisk.write_chunk_index(base, {"frame_number": np.array([70, 71, 72, 73]) * 100,
                                    "frame_time": np.arange(4.0)})
    reads.clear()
    with _open(path) as s:
        assert s.frame_numbers[28:32].tolist() == [7000, 7100, 7200, 7300]
        assert s.frame_index_of(7100) == 29
    # only the changed chunk (and spot checks) was read; the rewritten cache has the new values
    assert 7 in reads and len(reads) <= 4
    reads.clear()
    monkeypatch.setattr(scan, "RACY_WINDOW_NS", 0)
    with _open(path) as s:
        assert s.frame_numbers[28:32].tolist() == [7000, 7100, 7200, 7300]
    assert len(reads) <= 3


def test_same_size_same_mtime_change_is_caught_while_racy(tmp_path):
    """An index rewritten within the file system's timestamp granularity looks unchanged; re-verified."""
    path = make_synthetic_store(str(tmp_path / "s"), 40, 4, frames="none")
    with _open(path) as s:
        s.save_index()  # indexes were written just now: within the racy window
    f = os.path.join(path, "000005", "index.npz")
    st_ = os.stat(f)
    smd, _ = ondisk.read_metadata(os.path.join(path, ondisk.STORE_MD_FILENAME))
    ondisk.write_chunk_index(f[:-4], {"frame_number": np.array([1, 2, 3, 4]) + 900,
                                      "frame_time": np.arange(4.0) + 5}, smd)
    os.utime(f, ns=(st_.st_atime_ns, st_.st_mtime_ns))
    assert os.stat(f).st_size == st_.st_size  # the cache cannot tell from the stat
    with _open(path) as s:
        assert s.frame_numbers[20:24].tolist() == [901, 902, 903, 904]


def test_added_and_removed_chunks(tmp_path, reads):
    path = _big(tmp_path)
    with _open(path):
        pass
    # a chunk added by another program and one removed
    extra = os.path.join(path, f"{200:06d}")
    os.makedirs(extra)
    ondisk.write_chunk_index(os.path.join(extra, "index"),
                             {"frame_number": np.array([9000, 9001]), "frame_time": np.array([9e9, 9e9 + 1])})
    shutil.rmtree(os.path.join(path, "000003"))
    reads.clear()
    with _open(path) as s:
        assert s.chunks[-1] == 200 and 3 not in s.chunks
        assert s.frame_numbers[-2:].tolist() == [9000, 9001]
        assert len(s) == (BIG + 3) * 4 + 2
    assert 200 in reads and len(reads) <= 4
    reads.clear()
    with _open(path) as s:
        assert s.chunks[-1] == 200 and 3 not in s.chunks
    assert len(reads) <= 3


def test_index_kind_change_is_noticed(tmp_path):
    path = make_synthetic_store(str(tmp_path / "s"), 12, 4, frames="none", index_format="yaml")
    with _open(path) as s:
        s.save_index()
    base = os.path.join(path, "000001", "index")
    ondisk.write_chunk_index(base, {"frame_number": np.array([40, 41, 42, 43]), "frame_time": np.arange(4.0)})
    # both exist now: the .npz wins, as it does without a cache
    with _open(path) as s:
        assert s.frame_numbers[4:8].tolist() == [40, 41, 42, 43]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "header_byte", "table_byte"])
def test_corrupt_cache_is_ignored_and_rebuilt(tmp_path, damage, caplog, monkeypatch):
    path = _big(tmp_path)
    expected = _uncached(path, monkeypatch)
    with _open(path):
        pass
    c = _cache(path)
    with open(c, "rb") as f:
        data = bytearray(f.read())
    if damage == "garbage":
        data = bytearray(os.urandom(4096))
    elif damage == "truncated":
        data = data[: len(data) - 100]
    elif damage == "empty":
        data = bytearray()
    elif damage == "header_byte":
        data[40] ^= 0x55
    else:
        header = index_cache.read_cache_header(c)
        data[header["arrays"]["chunk_length"]["offset"] + 8] ^= 0x01
    with open(c, "wb") as f:
        f.write(data)
    with caplog.at_level(logging.DEBUG, logger="imgstore.index_cache"), _open(path) as s:
        np.testing.assert_array_equal(s.frame_numbers, expected[0])
        np.testing.assert_array_equal(s.frame_times, expected[1])
    assert "index cache ignored" in caplog.text
    index_cache.read_cache_header(c)  # a big store's reader wrote a good one back
    with _open(path) as s:
        assert _from_cache(s)


def test_damaged_frame_data_in_cache_caught_by_spot_check(tmp_path, caplog):
    """Data the table checksum does not cover: the first and last chunks are always compared."""
    path = _big(tmp_path)
    with _open(path):
        pass
    c = _cache(path)
    header = index_cache.read_cache_header(c)
    with open(c, "r+b") as f:
        f.seek(header["arrays"]["frame_number"]["offset"])  # chunk 0, frame 0
        f.write(np.array([123456], dtype="<i8").tobytes())
    with caplog.at_level(logging.DEBUG, logger="imgstore.index_cache"), _open(path) as s:
        assert s.frame_numbers[0] == 0
    assert "differs from its index" in caplog.text


def test_version_mismatch_or_foreign_cache_is_ignored(tmp_path, caplog):
    path = _big(tmp_path)
    with _open(path):
        pass
    _rewrite_header(_cache(path), version=9)
    with caplog.at_level(logging.DEBUG, logger="imgstore.index_cache"), _open(path) as s:
        assert len(s) == (BIG + 4) * 4
    assert "cache version 9" in caplog.text
    assert index_cache.read_cache_header(_cache(path))["version"] == index_cache.CACHE_VERSION
    # a cache copied from another store (same chunk stats, other uuid) is not believed
    other = _big(tmp_path, "other", first_frame_number=10**6)
    shutil.copy(_cache(path), _cache(other))
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="imgstore.index_cache"), _open(other) as s:
        assert s.frame_numbers[0] == 10**6
    assert "cache is of store" in caplog.text


def test_read_only_store_opens_without_writing(tmp_path, monkeypatch, reads):
    path = _big(tmp_path)
    expected = _uncached(path, monkeypatch)
    os.chmod(path, 0o555)
    try:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # root ignores permissions: make the file system refuse as a read-only mount would
            def refuse(*args, **kwargs):
                raise errors.StoreWriteError(errno.EROFS, "Read-only file system")

            monkeypatch.setattr(index_cache, "_write_file", refuse)
        with _open(path) as s:
            np.testing.assert_array_equal(s.frame_numbers, expected[0])
            with pytest.raises(errors.StoreWriteError, match=r"Read-only|Permission"):
                s.save_index()
        assert not os.path.exists(_cache(path))
    finally:
        os.chmod(path, 0o755)


def test_live_writer_lock_blocks_reader_writes(tmp_path):
    path = _big(tmp_path)
    lock = _lock.StoreLock(path)
    lock.acquire()
    try:
        with _open(path) as s:
            assert len(s) == (BIG + 4) * 4
        assert not os.path.exists(_cache(path))
    finally:
        lock.release()
    with _open(path):
        pass
    assert os.path.exists(_cache(path))


def test_journaled_chunk_is_never_cached(tmp_path, reads):
    path = str(tmp_path / "s")
    w = imgstore.new_for_format("npy", basedir=path, imgshape=(4, 4), imgdtype=np.uint8, chunksize=4)
    try:
        for i in range(10):  # chunks 0 and 1 closed, chunk 2 only journaled
            w.add_image(np.full((4, 4), i, np.uint8), i, 10.0 + i)
        w.flush()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with _open(path) as s:
                assert s.frame_numbers.tolist() == list(range(10))
                s.save_index()
            header = index_cache.read_cache_header(_cache(path))
            assert (header["n_chunks"], header["n_frames"]) == (2, 8)
            reads.clear()
            with _open(path) as s:
                assert s.frame_numbers.tolist() == list(range(10))
            assert 2 in reads  # the journal is read every time
        # the writer is alive: its journaled chunk is expected, as without a cache
        assert not [c for c in caught if issubclass(c.category, imgstore.ImgStoreWarning)]
    finally:
        w.close()
    with _open(path) as s:
        assert s.frame_numbers.tolist() == list(range(10))
    assert index_cache.read_cache_header(_cache(path))["n_chunks"] == 3


def test_damaged_chunk_warns_every_open(tmp_path):
    path = _big(tmp_path)
    with _open(path):
        pass
    with open(os.path.join(path, "000004", "index.npz"), "wb") as f:
        f.write(b"not a zip")
    for _ in range(2):
        with pytest.warns(imgstore.ImgStoreWarning, match="chunk 4 skipped"), _open(path) as s:
            assert 4 in s.damaged_chunks and 4 not in s.chunks
    with pytest.raises(errors.IndexCorruptError):
        _open(path, strict=True)


def test_unsorted_orders_come_from_the_cache(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    n = 64
    fn = rng.permutation(n) + 100
    ft = 5000.0 + rng.permutation(n) / 4
    path = make_synthetic_store(str(tmp_path / "s"), n, 4, frames="none", frame_numbers=fn, frame_times=ft)
    with _open(path) as s:
        s.save_index()
    header = index_cache.read_cache_header(_cache(path))
    assert header["number_sorted"] is False and header["time_sorted"] is False

    def no_sorting(*args, **kwargs):
        raise AssertionError("the sort order should come from the cache")

    with _open(path) as s:
        monkeypatch.setattr(np, "argsort", no_sorting)
        assert s.index.sorted_views_known == (True, True)
        assert s.index.by_number()[0] is not None and s.index.by_time()[0] is not None
        assert s.frame_index_of(int(fn[37])) == 37
        assert s.frame_index_at_time(float(ft[11]) + 0.1) == 11


def test_save_index_to_a_path_and_in_write_mode(tmp_path):
    path = _write_store(str(tmp_path / "s"))
    elsewhere = str(tmp_path / "copy.cache")
    with _open(path) as s:
        assert index_cache.save_index(s, elsewhere) == elsewhere
    assert index_cache.read_cache_header(elsewhere)["n_frames"] == 10
    w = imgstore.new_for_format("npy", basedir=str(tmp_path / "w"), imgshape=(4, 4), imgdtype=np.uint8)
    try:
        assert w.save_index() is None
    finally:
        w.close()
    s = _open(path)
    s.close()
    with pytest.raises(errors.StoreClosedError):
        s.save_index()


def test_disabled_by_environment(tmp_path, monkeypatch, reads):
    monkeypatch.setenv("IMGSTORE_INDEX_CACHE", "0")
    path = _write_store(str(tmp_path / "s"))
    assert not os.path.exists(_cache(path))
    big = _big(tmp_path)
    with _open(big):
        pass
    assert not os.path.exists(_cache(big))


def test_concurrent_builders_leave_a_valid_cache(tmp_path):
    path = _big(tmp_path)
    stores = [_open(path) for _ in range(4)]
    errors_seen = []

    def save(s):
        try:
            for _ in range(3):
                s.save_index()
        except Exception as exc:  # pragma: no cover - reported below
            errors_seen.append(exc)

    threads = [threading.Thread(target=save, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert not errors_seen
    assert not [f for f in os.listdir(path) if f.endswith(".partial")]
    index_cache.read_cache_header(_cache(path))
    with _open(path) as s:
        assert _from_cache(s) and len(s) == (BIG + 4) * 4


def test_cache_file_name_is_safe_for_both_libraries(tmp_path):
    path = _big(tmp_path)
    with _open(path):
        pass
    names = os.listdir(path)
    extra = [n for n in names if not n.isdigit() and n != ondisk.STORE_MD_FILENAME]
    # one plain file, no folder (the reference turns every folder name into a chunk number)
    assert extra == [index_cache.CACHE_FILENAME]
    assert os.path.isfile(_cache(path))


# ----------------------------------------------------------------------------- against a cache-less open


_chunk = st.lists(st.tuples(st.integers(-20, 20), st.integers(0, 400).map(lambda x: 100.0 + x / 4)),
                  max_size=6)


@settings(max_examples=25, deadline=None)
@given(st.lists(_chunk, min_size=1, max_size=8), st.data())
def test_lookups_equal_a_cacheless_open(chunks, data):
    rows = [r for c in chunks for r in c]
    fn = np.array([r[0] for r in rows], dtype=np.int64)
    ft = np.array([r[1] for r in rows], dtype=np.float64)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_synthetic_store(os.path.join(tmp, "s"), len(rows), 6, frames="none", frame_numbers=fn,
                                    frame_times=ft, chunk_lengths=[len(c) for c in chunks])
        with _no_cache():
            plain = _open(path)
        with plain:
            plain.save_index()  # an explicit request: written even with the cache disabled
            # half of the time a chunk changes after the cache was written: the incremental path
            if data.draw(st.booleans()) and len(chunks) > 1:
                victim = data.draw(st.integers(0, len(chunks) - 1))
                base = os.path.join(path, f"{victim:06d}", "index")
                ondisk.write_chunk_index(base, {"frame_number": np.array([77], dtype=np.int64),
                                                "frame_time": np.array([150.5])})
                plain.close()
                with _no_cache():
                    plain = _open(path)
            with _open(path) as cached:
                a, b = plain.index, cached.index
                np.testing.assert_array_equal(a.frame_number, b.frame_number)
                np.testing.assert_array_equal(a.frame_time, b.frame_time)
                assert a.chunks == b.chunks
                probes_n = data.draw(st.lists(st.integers(-25, 25), min_size=1, max_size=5))
                probes_t = data.draw(st.lists(st.floats(90, 220, allow_nan=False), min_size=1, max_size=5))
                for v in probes_n:
                    assert _outcome(a.find_number, v) == _outcome(b.find_number, v)
                    assert _outcome(a.nearest_number, v) == _outcome(b.nearest_number, v)
                for v in probes_t:
                    assert _outcome(a.nearest_time, v) == _outcome(b.nearest_time, v)
                for i in range(len(a)):
                    assert a.locate(i) == b.locate(i)
            plain.close()


@contextlib.contextmanager
def _no_cache():
    old = os.environ.get("IMGSTORE_INDEX_CACHE")
    os.environ["IMGSTORE_INDEX_CACHE"] = "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["IMGSTORE_INDEX_CACHE"]
        else:
            os.environ["IMGSTORE_INDEX_CACHE"] = old


def _outcome(fn, value):
    try:
        return fn(value)
    except errors.ImgStoreError as exc:
        return type(exc)


def test_failed_cache_write_neither_breaks_opening_nor_leaves_files(tmp_path, monkeypatch):
    path = _big(tmp_path)

    def boom(*args):
        raise RuntimeError("simulated failure half-way through writing the cache")

    # shadow the builtin inside index_cache only: fails after the temporary file was created
    monkeypatch.setattr(index_cache, "memoryview", boom, raising=False)
    with _open(path) as s:
        assert len(s) == (BIG + 4) * 4
    assert sorted(f for f in os.listdir(path) if not f.isdigit()) == [ondisk.STORE_MD_FILENAME]
    with _open(path) as s, pytest.raises(RuntimeError, match="simulated"):
        s.save_index()


def test_store_of_empty_chunks(tmp_path, reads, monkeypatch):
    path = make_synthetic_store(str(tmp_path / "s"), 3, 4, frames="none", chunk_lengths=[0, 3, 0, 0])
    with _open(path) as s:
        s.save_index()
    assert index_cache.read_cache_header(_cache(path))["n_chunks"] == 4
    monkeypatch.setattr(scan, "RACY_WINDOW_NS", 0)
    reads.clear()
    with _open(path) as s:
        assert s.chunks == [1] and s.frame_numbers.tolist() == [0, 1, 2]
        assert _from_cache(s)
    assert len(reads) <= 3  # empty chunks are cached too, not re-read
    nothing = make_synthetic_store(str(tmp_path / "nothing"), 0, 4, frames="none", chunk_lengths=[0, 0])
    with _open(nothing) as s:
        assert len(s) == 0 and s.save_index() == os.path.join(nothing, ".index.sqlite")
        assert os.path.exists(_cache(nothing))
    with _open(nothing) as s:
        assert len(s) == 0 and s.chunks == []


def test_racy_entries_are_verified_then_refreshed_once_old(tmp_path, reads, monkeypatch):
    """A store made in a burst: every index is racy at first, re-read on each open until rewritten."""
    path = make_synthetic_store(str(tmp_path / "s"), (BIG + 4) * 2, 2, frames="none")
    with _open(path):
        pass  # big: the reader writes the cache right away, all entries racy
    reads.clear()
    with _open(path):
        pass
    assert len(reads) == BIG + 4  # all verified; too young to refresh yet
    real = scan.time

    class Later:
        @staticmethod
        def time_ns():
            return real.time_ns() + 10 * 10**9  # ten seconds on, without waiting for them

    monkeypatch.setattr(scan, "time", Later)
    reads.clear()
    with _open(path):
        pass
    assert len(reads) == BIG + 4  # verified once more, and the cache rewritten with the later stat time
    reads.clear()
    with _open(path) as s:
        assert len(s) == (BIG + 4) * 2
    assert len(reads) <= 3
