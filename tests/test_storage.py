"""The storage seam: what every layer reads and writes through (imgstore.storage)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.storage import LocalStorage
from imgstore.testing.conformance import snapshot_files
from imgstore.testing.synthetic import make_synthetic_store


def test_read_only_storage_refuses_every_write(tmp_path):
    storage = LocalStorage(read_only=True)
    target = str(tmp_path / "f")
    refusals = [
        lambda: storage.write_bytes(target, b"x"),
        lambda: storage.makedirs(str(tmp_path / "d")),
        lambda: storage.open_append(target),
        lambda: storage.remove(target),
        lambda: storage.remove_tree(str(tmp_path)),
        lambda: storage.lock(str(tmp_path)),
        lambda: storage.adopt_file(__file__, target),
    ]
    for refuse in refusals:
        with pytest.raises(errors.StoreWriteError, match="read-only") as info:
            refuse()
        assert info.value.errno == errno.EROFS and str(tmp_path) in str(info.value)
    assert not storage.writable and LocalStorage().writable
    assert os.listdir(tmp_path) == []


def test_read_only_store_writes_nothing(tmp_path):
    """A big store without a cache: a normal reader writes the cache, a read-only one writes nothing."""
    path = make_synthetic_store(str(tmp_path / "big"), 60 * 3, 3, frames="all")
    before = snapshot_files(path)
    with imgstore.new_for_filename(path, read_only=True) as s:
        assert s.frame_count == 180 and s.get_image(None, frame_index=100).frame_number == 100
        with pytest.raises(errors.StoreWriteError, match="read-only"):  # even an explicit request
            s.save_index_cache()
    assert snapshot_files(path) == before
    with imgstore.new_for_filename(path, read_only=True) as s, pytest.raises(errors.StoreWriteError, match="read-only"):
        s.save_index()
    assert snapshot_files(path) == before
    with imgstore.new_for_filename(path) as s:  # a normal reader of a big store leaves the cache behind
        assert s.frame_count == 180
    assert snapshot_files(path) != before
    with pytest.raises(errors.ModeError, match="read_only"):
        imgstore.new_for_format("npy", basedir=str(tmp_path / "w"), imgshape=(4, 4), read_only=True)


def test_atomic_write_never_writes_through_a_planted_link(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    store = tmp_path / "store"
    store.mkdir()
    os.symlink(outside, store / "f.partial")
    LocalStorage().write_bytes(str(store / "f"), b"new")
    assert outside.read_bytes() == b"precious" and (store / "f").read_bytes() == b"new"
    assert not (store / "f.partial").exists()


def test_journals_are_never_opened_through_a_link(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    os.symlink(outside, tmp_path / "c.extra.jsonl")
    with pytest.raises(errors.StoreWriteError) as info:
        LocalStorage().open_append(str(tmp_path / "c.extra.jsonl"))
    assert info.value.errno == errno.ELOOP
    assert outside.read_bytes() == b"precious"


def test_the_lock_is_never_taken_through_a_link(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    store = tmp_path / "s"
    store.mkdir()
    os.symlink(outside, store / ".lock")
    with pytest.raises(errors.StoreWriteError, match="lock"):
        imgstore.new_for_format("npy", basedir=str(store), imgshape=(4, 4), imgdtype=np.uint8)
    assert outside.read_bytes() == b"precious"


def test_stat_token_changes_when_a_file_is_replaced(tmp_path):
    storage = LocalStorage()
    path = str(tmp_path / "f")
    assert storage.stat_token(path) is None
    storage.write_bytes(path, b"abc")
    first = storage.stat_token(path)
    storage.write_bytes(path, b"xyz")  # same size, maybe the same clock tick: a new file all the same
    second = storage.stat_token(path)
    assert first is not None and second is not None and first.size == second.size == 3
    assert first != second


@pytest.mark.parametrize("fmt", ["npy", "h264/mkv"])
def test_writer_never_writes_a_chunk_through_a_planted_link(tmp_path, fmt):
    """A link planted where the next chunk goes: the writer stops there, outside stays untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"precious")
    path = tmp_path / "s"
    s = imgstore.new_for_format(fmt, basedir=str(path), imgshape=(8, 8), chunksize=3)
    name = "000001" if fmt == "npy" else "000001.mkv"
    os.symlink(outside if fmt == "npy" else outside / "precious", path / name)
    for i in range(3):
        s.add_image(np.full((8, 8), 40 * i, np.uint8), i, float(i))  # the third frame closes chunk 0
    with pytest.raises(errors.StoreWriteError, match="symbolic link"):
        s.add_image(np.zeros((8, 8), np.uint8), 3, 3.0)
    s.close()
    assert sorted(os.listdir(outside)) == ["precious"] and (outside / "precious").read_bytes() == b"precious"
    os.unlink(path / name)
    with imgstore.new_for_filename(str(path)) as r:
        assert r.frame_numbers.tolist() == [0, 1, 2]
