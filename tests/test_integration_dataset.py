"""Frame datasets for training: picklable, each worker process (and thread) reads with its own readers."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys

import pytest

import imgstore
from imgstore.errors import ChunkReadError, FrameIndexError
from imgstore.integrations.dataset import FrameDataset, FrameSample
from imgstore.testing.barcode import make_frame, read_barcode

H, W = 32, 48
T0 = 1_700_000_000.0


def _store(path, fmt, numbers):
    with imgstore.new_for_format(fmt, basedir=str(path), imgshape=(H, W), chunksize=10) as s:
        for i, fn in enumerate(numbers):
            s.add_image(make_frame(fn, H, W), fn, T0 + i)
    return str(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    return [_store(root / "a", "h264/mkv", range(100, 125)), _store(root / "b", "npy", range(7, 12))]


def _barcodes(ds, items):
    return [(os.getpid(), read_barcode(ds[i].image), ds[i].frame_number) for i in items]


def test_samples_carry_frame_and_metadata(stores):
    ds = FrameDataset(stores)
    assert len(ds) == 30
    s = ds[27]
    assert isinstance(s, FrameSample) and s.store == 1 and s.frame_index == 2 and s.frame_number == 9
    assert s.frame_time == T0 + 2 and read_barcode(s.image) == 9
    assert [read_barcode(ds[i].image) for i in (0, 24, -1)] == [100, 124, 11]
    picked = FrameDataset(stores, frame_indices=[[3, 20], None], transform=lambda s: (s.image.mean(), s.frame_number))
    assert len(picked) == 7 and picked[1][1] == 120
    with pytest.raises(FrameIndexError, match="frame_index 25 out of range for store 0"):
        FrameDataset(stores, frame_indices=[[25], None])
    with pytest.raises(FrameIndexError, match="sample 30 out of range"):
        ds[30]


def test_workers_reopen_after_pickling(stores):
    ds = FrameDataset(stores)
    ds[0]  # the parent has readers open
    assert len(pickle.dumps(ds)) < 10_000  # references and metadata only
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_barcodes, [(ds, [0, 13, 24]), (ds, [25, 29, 5])])
    assert [r[1:] for part in results for r in part] == [(100, 100), (113, 113), (124, 124), (7, 7), (11, 11),
                                                         (105, 105)]
    assert all(r[0] != os.getpid() for part in results for r in part)


#: run in a fresh interpreter: forking a process that has other threads (a test suite's dask
#: clients, servers...) can deadlock the child on a lock some thread held, whatever the dataset does
_FORK_SCRIPT = """
import multiprocessing, os, sys
from imgstore.integrations.dataset import FrameDataset
from imgstore.testing.barcode import read_barcode

ds = FrameDataset([sys.argv[1]])
parent_store = id(ds.store(0))
assert read_barcode(ds[3].image) == 103


def inherited_read(i):
    # under fork the dataset is the parent's object, with the parent's open readers
    return os.getpid(), id(ds.store(0)), read_barcode(ds[i].image), ds[i].frame_number


with multiprocessing.get_context("fork").Pool(2) as pool:
    results = pool.map(inherited_read, [1, 22, 10, 17])
assert [(r[2], r[3]) for r in results] == [(101, 101), (122, 122), (110, 110), (117, 117)], results
assert all(pid != os.getpid() and store_id != parent_store for pid, store_id, _, _ in results), results
# the parent's readers still read right after the children used the same files
assert [read_barcode(ds[i].image) for i in (4, 21)] == [104, 121]
assert id(ds.store(0)) == parent_store
print("ok")
"""


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_forked_workers_do_not_share_the_parents_readers(stores):
    out = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, stores[0]], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_threads_get_their_own_readers(stores):
    import threading

    ds = FrameDataset(stores[:1])
    both_open = threading.Barrier(2)
    got = {}

    def read(name, items):
        store = ds.store(0)
        both_open.wait()  # both threads hold a reader at once
        got[name] = (id(store), [read_barcode(ds[i].image) for i in items])

    threads = [threading.Thread(target=read, args=(n, items)) for n, items in (("a", range(0, 25, 2)),
                                                                                ("b", range(1, 25, 2)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got["a"][0] != got["b"][0]
    assert got["a"][1] == list(range(100, 125, 2)) and got["b"][1] == list(range(101, 125, 2))
    ds.close()


def test_a_replaced_store_is_refused(stores, tmp_path):
    path = _store(tmp_path / "c", "npy", range(5))
    ds = FrameDataset([path])
    shutil.rmtree(path)
    _store(path, "npy", range(5))  # same place, another store (new uuid)
    with pytest.raises(ChunkReadError, match="now holds store"):
        ds[0]
