"""A failing object store: bounded retries, then StoreReadError naming the URL; never a wrong frame.

The faults are real: moto's S3 server behind a layer that answers 500, drops the connection,
cuts a body short, changes a byte of it, or answers late (imgstore.testing.servers).
"""

from __future__ import annotations

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.testing.barcode import read_barcode

from .remote_util import s3, s3_server, upload, write_store

__all__ = ["s3", "s3_server"]  # fixtures


@pytest.fixture
def remote_store(s3, tmp_path):
    numbers = write_store(str(tmp_path / "s"), n=120, chunksize=40)
    url = upload(s3, str(tmp_path / "s"), "faulty")
    return url, numbers


def _open(s3, url, **kwargs):
    return imgstore.new_for_filename(url, storage_options=s3.storage_options, **kwargs)


@pytest.mark.parametrize("kind", ["500", "drop", "cut"])
def test_transient_faults_are_retried(s3, remote_store, kind):
    url, numbers = remote_store
    with _open(s3, url) as store:
        s3.faults(**{kind: 2, "match": ".mkv"})
        img, (got, _) = store.get_image(numbers[50])
        assert got == numbers[50] and read_barcode(img) == numbers[50]
        # aiohttp itself retries a request once when a kept-alive connection drops
        assert store.storage.stats.retries >= (1 if kind == "drop" else 2)
        assert s3.faults()["counts"]["faults"] == 2


def test_faults_at_open_are_retried(s3, remote_store):
    url, numbers = remote_store
    s3.faults(**{"500": 3})
    with _open(s3, url) as store:
        assert store.frame_count == 120 and read_barcode(store[7]) == numbers[7]


@pytest.mark.parametrize("kind", ["500", "drop"])
def test_a_server_that_keeps_failing_gives_store_read_error(s3, remote_store, kind):
    url, numbers = remote_store
    with _open(s3, url, retries=2) as store:
        s3.faults(**{kind: -1, "match": "000001.mkv"})
        with pytest.raises(errors.StoreReadError, match=r"000001\.mkv.*after 3 attempts") as info:
            store.get_image(numbers[45])
        assert isinstance(info.value, OSError) and isinstance(info.value, errors.ImgStoreError)
        assert info.value.filename.endswith("/faulty/000001.mkv")
        # other chunks still read; the failing one reads once the server recovers
        assert read_barcode(store.get_image(numbers[5])[0]) == numbers[5]
        s3.clear_faults()
        img, (got, _) = store.get_image(numbers[45])
        assert got == numbers[45] and read_barcode(img) == numbers[45]


def test_open_against_a_dead_server_gives_store_read_error(s3, remote_store):
    url, _ = remote_store
    s3.faults(**{"500": -1})
    with pytest.raises(errors.StoreReadError, match="faulty"):
        _open(s3, url, retries=1)


def test_a_slow_server_times_out(s3, remote_store):
    url, numbers = remote_store
    with _open(s3, url, retries=1, timeout=2.0) as store:
        s3.faults(slow=-1, slow_seconds=8.0, match=".mkv")
        with pytest.raises(errors.StoreReadError, match=r"\.mkv"):
            store.get_image(numbers[100])
        s3.clear_faults()
        assert read_barcode(store.get_image(numbers[100])[0]) == numbers[100]


def test_added_latency_changes_nothing_but_time(s3, remote_store):
    url, numbers = remote_store
    s3.faults(latency=0.02)
    with _open(s3, url) as store:
        assert [read_barcode(store.get_image(fn)[0]) for fn in numbers[::17]] == numbers[::17]
        assert store.storage.stats.retries == 0


def test_a_changed_byte_once_is_retried(s3, remote_store):
    """S3's response checksum (moto sends one for whole objects) catches it; the retry reads it right."""
    url, numbers = remote_store
    with _open(s3, url) as store:
        s3.faults(flip=1, match="000002.mkv")
        img, (got, _) = store.get_image(numbers[100])
        assert got == numbers[100] and read_barcode(img) == numbers[100]
        assert store.storage.stats.retries == 1


def test_a_changed_byte_is_never_a_wrong_frame(s3, remote_store):
    """Every answer with one byte changed: a named error (the response checksum, or the packet digests
    on range requests, which carry no checksum), never a wrong frame."""
    url, numbers = remote_store
    with _open(s3, url, retries=1, cache_bytes=64 * 1024) as store:
        s3.faults(flip=-1, match="000002.mkv")
        wrong = 0
        for fn in numbers[80:120]:
            try:
                img, (got, _) = store.get_image(fn)
            except (errors.ChunkReadError, errors.StoreReadError):
                continue
            wrong += got != fn or read_barcode(img) != fn
        assert wrong == 0
        assert s3.faults()["counts"]["faults"] >= 1


def test_random_faults_give_right_frames_or_named_errors(s3, remote_store):
    """30 % of requests fail in one way or another: each answer is the frame asked for or a StoreReadError."""
    url, numbers = remote_store
    rng = np.random.default_rng(3)
    with _open(s3, url, retries=4) as store:
        s3.faults(rate=0.3, kinds=["500", "drop", "cut"], seed=11)
        answered = failed = 0
        for i in rng.integers(0, len(numbers), 60):
            fn = numbers[int(i)]
            try:
                store.refresh()  # forget what is cached: every read goes to the server
                img, (got, _) = store.get_image(fn)
            except errors.StoreReadError:
                failed += 1
                continue
            assert got == fn and read_barcode(img) == fn
            answered += 1
        assert answered >= 50 and store.storage.stats.retries > 0
