"""Stores read in place on object storage: a real S3 server (moto) and a real HTTP server on 127.0.0.1.

The whole read API by URL (number, index, time, next, array view, extra data, metadata, refresh),
read-only (no write, lock or cache file on the remote), requests proportional to the work.
"""

from __future__ import annotations

import errno
import os
import pickle

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.testing.barcode import make_frame, read_barcode

from .remote_util import T0, H, HttpServer, W, remote_keys, s3, s3_server, same_frames, upload, write_store

__all__ = ["s3", "s3_server"]  # fixtures


def _check_read_api(remote, numbers, local):
    """Every way of reading a frame gives the frame asked for, as the local store does."""
    assert remote.frame_count == len(numbers) == local.frame_count
    assert remote.get_frame_metadata() == local.get_frame_metadata()
    rng = np.random.default_rng(7)
    for i in rng.permutation(len(numbers))[:25]:
        fn = numbers[int(i)]
        img, (got, t) = remote.get_image(fn)
        assert got == fn and read_barcode(img) == fn and t == pytest.approx(T0 + int(i) / 30)
        img, (got, _) = remote.get_image(None, frame_index=int(i))
        assert got == fn and read_barcode(img) == fn
        img, (got, _) = remote.get_nearest_image(T0 + int(i) / 30 + 0.001)
        assert got == fn and read_barcode(img) == fn
    remote.get_image(numbers[10])
    for fn in numbers[11:40]:
        img, (got, _) = remote.get_next_image()
        assert got == fn and read_barcode(img) == fn
    # the array view
    assert [read_barcode(f) for f in remote[5:9]] == numbers[5:9]
    assert read_barcode(remote[-1]) == numbers[-1]
    np.testing.assert_array_equal(remote[3], local[3])
    with pytest.raises(errors.FrameNotFoundError, match="1001"):
        remote.get_image(1001)


def test_s3_store_reads_like_the_local_one(s3, tmp_path):
    local_path = str(tmp_path / "s")
    numbers = write_store(local_path, "h264/mkv", n=250, chunksize=100, extra_every=7)
    url = upload(s3, local_path, "stores/week1")
    before = remote_keys(s3, url)
    with imgstore.new_for_filename(local_path) as local, \
            imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        _check_read_api(remote, numbers, local)
        extra_remote, extra_local = remote.get_extra_data(), local.get_extra_data()
        assert len(extra_remote) == 36
        assert extra_remote.equals(extra_local)
        assert remote.metadata == local.metadata
        same_frames(remote, local, lossless=False)
        with pytest.raises(errors.StoreWriteError, match="read-only") as info:
            remote.save_index_cache()  # a reader's explicit request: refused on the remote
        assert info.value.errno == errno.EROFS
    # read-only: nothing written, locked or cached on the remote
    assert remote_keys(s3, url) == before


def test_metadata_yaml_url_and_trailing_slash(s3, tmp_path):
    numbers = write_store(str(tmp_path / "s"), n=20, chunksize=10)
    url = upload(s3, str(tmp_path / "s"), "st")
    for u in (url + "/metadata.yaml", url + "/"):
        with imgstore.new_for_filename(u, storage_options=s3.storage_options) as remote:
            assert remote.frame_count == 20 and read_barcode(remote[19]) == numbers[19]


@pytest.mark.parametrize("fmt", ["ffv1/mkv", "png"])
def test_lossless_and_directory_stores_are_bit_exact(s3, tmp_path, fmt):
    local_path = str(tmp_path / "s")
    write_store(local_path, fmt, n=40, chunksize=15)
    url = upload(s3, local_path, "s")
    with imgstore.new_for_filename(local_path) as local, \
            imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        same_frames(remote, local, lossless=True)


def test_store_without_index_cache_reads_every_chunk_index_concurrently(s3, tmp_path):
    local_path = str(tmp_path / "s")
    numbers = write_store(local_path, n=120, chunksize=10)
    names = [n for n in os.listdir(local_path) if n != ".imgstore-index.cache"]
    url = upload(s3, local_path, "nocache", names)
    with imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        assert remote.frame_count == 120 and read_barcode(remote.get_image(numbers[77])[0]) == numbers[77]
    assert remote_keys(s3, url).keys() == {f"{url[5:]}/{n}" for n in names}  # no cache written there


def test_open_with_the_index_cache_takes_a_handful_of_requests(s3, tmp_path):
    local_path = str(tmp_path / "s")
    write_store(local_path, n=300, chunksize=10)
    url = upload(s3, local_path, "cached")
    with imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        stats = remote.storage.stats
        kinds = [k for k, _, _ in stats.log]
        # one listing, metadata.yaml, the cache (header, then its chunk table), the scanner's spot checks
        assert kinds.count("list") == 1
        assert stats.requests <= 8, list(stats.log)
        assert not [p for _, p, _ in stats.log if p.endswith((".mkv", ".mp4"))]


def test_http_server_store(tmp_path):
    local_path = str(tmp_path / "www" / "s")
    numbers = write_store(local_path, n=60, chunksize=25, extra_every=10)
    with HttpServer(tmp_path / "www") as http, imgstore.new_for_filename(local_path) as local, \
            imgstore.new_for_filename(http.url + "/s") as remote:
        _check_read_api(remote, numbers, local)
        assert remote.get_extra_data().equals(local.get_extra_data())
    assert sorted(os.listdir(local_path)) == sorted(os.listdir(tmp_path / "www" / "s"))


def test_memory_file_and_chained_cache_urls(s3, tmp_path):
    import fsspec

    local_path = str(tmp_path / "s")
    numbers = write_store(local_path, n=30, chunksize=10)
    mem = fsspec.filesystem("memory")
    mem.put(local_path, "/mem-store", recursive=True)
    url = upload(s3, local_path, "chained")
    cache_dir = tmp_path / "local-cache"
    options = {"s3": s3.storage_options, "simplecache": {"cache_storage": str(cache_dir)}}
    for u, opts in (("memory://mem-store", None), ("file://" + local_path, None), ("simplecache::" + url, options)):
        with imgstore.new_for_filename(u, storage_options=opts) as remote:
            assert remote.frame_count == 30
            assert [read_barcode(remote.get_image(fn)[0]) for fn in numbers[::7]] == numbers[::7]
    mem.rm("/mem-store", recursive=True)


def test_read_only_and_bad_urls(s3, tmp_path):
    write_store(str(tmp_path / "s"), n=5, chunksize=5)
    url = upload(s3, str(tmp_path / "s"), "ro")
    for mode in ("a", "w"):
        with pytest.raises(errors.ModeError, match="read-only"):
            imgstore.new_for_filename(url, mode=mode, storage_options=s3.storage_options)
    with pytest.raises(errors.StoreNotFoundError, match="nothing-here"):
        imgstore.new_for_filename(url + "-nothing-here", storage_options=s3.storage_options)
    with pytest.raises(errors.InvalidOptionError, match="storage_options"):
        imgstore.new_for_filename(str(tmp_path / "s"), storage_options={"anon": True})
    with pytest.raises(errors.StoreNotFoundError, match="nosuchproto"):
        imgstore.new_for_filename("nosuchproto://x/y")


def test_credentials_never_in_messages(tmp_path):
    with HttpServer(tmp_path) as http:
        for url in (http.url.replace("http://", "http://alice:s3cret@") + "/store",
                    http.url + "/store?X-Amz-Signature=topsecret"):
            with pytest.raises(errors.InvalidOptionError, match="not in the URL") as info:
                imgstore.new_for_filename(url)
            assert "s3cret" not in str(info.value) and "topsecret" not in str(info.value)
            assert "127.0.0.1" in str(info.value)


def test_remote_messages_name_the_url_without_credentials():
    from imgstore.remote import scrub

    assert scrub("cannot read http://bob:pw@host/x?sig=1 now") == "cannot read http://host/x now"


def test_refresh_sees_chunks_uploaded_later(s3, tmp_path):
    """A store being synced: chunks appear payload first, index after; refresh() picks up complete ones."""
    local_path = str(tmp_path / "s")
    numbers = write_store(local_path, n=50, chunksize=10)
    first = ["metadata.yaml", "000000.mkv", "000000.npz", "000001.mkv", "000001.npz"]
    url = upload(s3, local_path, "growing", first)
    with imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        assert remote.frame_count == 20
        upload(s3, local_path, "growing", ["000002.mkv"])  # payload without its index: not there yet
        assert remote.refresh() == 0 and remote.frame_count == 20
        upload(s3, local_path, "growing", ["000002.npz", "000003.mkv", "000003.npz"])
        assert remote.refresh() == 20 and remote.frame_count == 40
        assert read_barcode(remote.get_image(numbers[35])[0]) == numbers[35]
        assert read_barcode(remote.get_image(numbers[5])[0]) == numbers[5]


def test_pickled_remote_store_reopens_from_the_url(s3, tmp_path):
    numbers = write_store(str(tmp_path / "s"), n=30, chunksize=10)
    url = upload(s3, str(tmp_path / "s"), "pickled")
    with imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        remote.get_image(numbers[3])
        data = pickle.dumps(remote)
    assert b"mkv" not in data  # how to reopen it, not frames or file contents
    again = pickle.loads(data)
    assert read_barcode(again.get_image(numbers[25])[0]) == numbers[25]
    again.close()


def test_colour_frames_by_range(s3, tmp_path):
    local_path = str(tmp_path / "s")
    with imgstore.new_for_format("h264-lossless/mkv", basedir=local_path, imgshape=(H, W, 3), chunksize=10) as s:
        for i in range(25):
            s.add_image(make_frame(i, H, W, color=True), i, T0 + i)
    url = upload(s3, local_path, "colour")
    with imgstore.new_for_filename(local_path) as local, \
            imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        same_frames(remote, local, lossless=True)


def test_big_index_cache_read_by_pages(s3, tmp_path):
    """A 300 000-frame store's cache (~5 MiB) stays remote: lookups fetch 64 KiB pages of it, exactly."""
    from imgstore.testing.synthetic import make_synthetic_store

    n = 300_000
    numbers = np.arange(n, dtype=np.int64) * 3 + (np.arange(n) // 7000) * 11  # gapped, not a constant stride
    times = T0 + np.arange(n) / 30 + (np.arange(n) // 50_000) * 5.0  # pauses
    path = make_synthetic_store(str(tmp_path / "big"), n, chunksize=10_000, frame_numbers=numbers,
                                frame_times=times)
    with imgstore.new_for_filename(path) as local:
        local.save_index_cache()
    cache_bytes = os.path.getsize(os.path.join(path, ".imgstore-index.cache"))
    url = upload(s3, path, "big")
    with imgstore.new_for_filename(path) as local, \
            imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        opened = remote.storage.stats.bytes
        firsts = list(range(0, n, 10_000))
        for k, i in enumerate(np.random.default_rng(2).permutation(firsts)):
            i = int(i)
            if k == 5:
                # five chunks touched: each chunk's rows of the cache (checked against its digest before use),
                # its chunk index (the frame checksums) and a few pages of the sorted views
                # (measured: ~530 KB per chunk, i.e. ~3.3x a chunk's 160 KB of frame numbers and times)
                assert remote.storage.stats.bytes - opened < 5 * 4 * 10_000 * 16
            for got in (remote.get_image(int(numbers[i])), remote.get_image(None, frame_index=i),
                        remote.get_nearest_image(float(times[i]) + 0.001)):
                np.testing.assert_array_equal(got[0], local.get_image(None, frame_index=i)[0])
                assert got[1] == (int(numbers[i]), float(times[i]))
        with pytest.raises(errors.FrameNotFoundError, match=str(int(numbers[5]) + 1)):
            remote.get_image(int(numbers[5]) + 1)
        assert remote.get_image(int(numbers[10_000]) - 1, exact_only=False)[1][0] == int(numbers[10_000])
        assert opened < cache_bytes / 3, (opened, cache_bytes)
        assert remote.get_frame_metadata() == local.get_frame_metadata()
