"""Batch reads (``store.get_frames``, ``store[list]``) and the decoded-frame cache.

A batch is sorted, de-duplicated and decoded chunk by chunk (each GOP's span once, several
chunks at a time); the frames come back in the order asked for, with their metadata. The
cache keeps what the decoders output so that stepping backwards and scrubbing over a window
decode each frame once. Every answer is checked by its barcode (lossy) or bit for bit
(lossless) against a plain ``get_image`` read.
"""

from __future__ import annotations

import os

import av
import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.backends.pyav import FrameCache, VideoChunkReader, VideoChunkWriter, available_video_formats
from imgstore.testing.barcode import make_frame, read_barcode

H, W = 48, 64
T0 = 1_700_000_000.0
AVAILABLE = set(available_video_formats())


def need(fmt: str) -> None:
    if fmt not in AVAILABLE:
        pytest.skip(f"{fmt} cannot be written here")


def numbers_of(n: int) -> list[int]:
    """Camera frame numbers with gaps (not the frame_index)."""
    return [1000 + 2 * i for i in range(n)]


def write(path: str, fmt: str, n: int, chunksize: int, color: bool = False, **options) -> str:
    with imgstore.new_for_format(fmt, basedir=path, imgshape=(H, W, 3) if color else (H, W), chunksize=chunksize,
                                 **options) as s:
        for i, fn in enumerate(numbers_of(n)):
            s.add_image(make_frame(fn, H, W, color), fn, T0 + i / 30)
    return path


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory) -> str:
    """h264 with B-frames, keyframe interval 100, four chunks of 150 frames (the last one 100)."""
    need("h264/mkv")
    return write(str(tmp_path_factory.mktemp("batch") / "s"), "h264/mkv", 550, chunksize=150, keyframe_interval=100)


def check_batch(store, batch, asked: list[int]) -> None:
    """Rows in the order asked for: images, frame_index, frame_number and frame_time agree."""
    n = len(store)
    expected = [i + n if i < 0 else i for i in asked]
    assert batch.frame_index.tolist() == expected
    assert batch.images.shape == (len(asked), *store.image_shape)
    for k, i in enumerate(expected):
        fn = numbers_of(n)[i]
        assert batch.frame_number[k] == fn and batch.frame_time[k] == T0 + i / 30
        assert read_barcode(batch.images[k]) == fn, f"row {k} (frame_index {i})"


def test_unsorted_list_with_repeats_comes_back_in_the_order_asked(long_gop):
    rng = np.random.default_rng(7)
    asked = [*rng.integers(0, 550, 200).tolist(), 5, 5, 549, 0, -1, -550, 149, 150, 150]
    with imgstore.new_for_filename(long_gop) as s:
        batch = s.get_frames(asked)
        check_batch(s, batch, asked)
        # the same pixels as single reads, and store[list] is the same batch
        for k in (0, 3, len(asked) - 1):
            np.testing.assert_array_equal(batch.images[k], s.get_image(None, frame_index=batch.frame_index[k])[0])
        np.testing.assert_array_equal(s[asked[:50]], batch.images[:50])
        np.testing.assert_array_equal(s[np.array(asked[:50])], batch.images[:50])
        # a batch does not move the classic cursor
        s.get_image(None, frame_index=10)
        s.get_frames([400, 300])
        assert s.get_next_image()[1][0] == numbers_of(550)[11]


def test_sorted_list_and_every_frame(long_gop):
    with imgstore.new_for_filename(long_gop) as s:
        every = s.get_frames(np.arange(550))
        check_batch(s, every, list(range(550)))
        sorted_subset = list(range(3, 550, 7))
        check_batch(s, s.get_frames(sorted_subset), sorted_subset)
        np.testing.assert_array_equal(s[::-5], every.images[::-1][::5])


def test_by_frame_number_and_by_time(long_gop):
    numbers = numbers_of(550)
    with imgstore.new_for_filename(long_gop) as s:
        asked = [numbers[300], numbers[2], numbers[300], numbers[549]]
        batch = s.get_frames(frame_numbers=asked)
        assert batch.frame_number.tolist() == asked
        assert batch.frame_index.tolist() == [300, 2, 300, 549]
        assert [read_barcode(img) for img in batch.images] == asked
        # the nearest frame to each time
        batch = s.get_frames(frame_times=[T0 + 10 / 30 + 0.004, T0 - 5, T0 + 1e6, T0 + 151 / 30 - 0.004])
        assert batch.frame_index.tolist() == [10, 0, 549, 151]
        assert [read_barcode(img) for img in batch.images] == [numbers[i] for i in (10, 0, 549, 151)]


def test_empty_batch(long_gop):
    with imgstore.new_for_filename(long_gop) as s:
        batch = s.get_frames([])
        assert batch.images.shape == (0, H, W) and batch.frame_number.shape == (0,)
        assert s[[]].shape == (0, H, W)


def test_errors_name_the_bad_value(long_gop):
    with imgstore.new_for_filename(long_gop) as s:
        with pytest.raises(errors.FrameNotFoundError, match="#1001"):
            s.get_frames(frame_numbers=[1000, 1001])
        with pytest.raises(errors.FrameIndexError, match="frame_index 550 out of range"):
            s.get_frames([3, 550])
        with pytest.raises(errors.FrameIndexError, match="frame_index -551 out of range"):
            s.get_frames([-551])
        with pytest.raises(errors.FrameIndexError, match="must be integers, not float64"):
            s.get_frames([1.5])
        with pytest.raises(errors.FrameNotFoundError, match="must be integers, not float64"):
            s.get_frames(frame_numbers=[1000.5])
        with pytest.raises(errors.FrameNotFoundError, match="nan"):
            s.get_frames(frame_times=[T0, float("nan")])
        with pytest.raises(errors.FrameIndexError, match="exactly one"):
            s.get_frames()
        with pytest.raises(errors.FrameIndexError, match="exactly one"):
            s.get_frames([1], frame_numbers=[1000])
        with pytest.raises(errors.FrameIndexError, match="frame_index 600"):
            _ = s[[1, 600]]


@pytest.mark.parametrize("fmt", ["ffv1/mkv", "h264-lossless/mkv"])
def test_lossless_colour_batch_is_bit_exact(tmp_path, fmt):
    need(fmt)
    path = write(str(tmp_path / "s"), fmt, 90, chunksize=40, color=True, keyframe_interval=15)
    asked = [89, 3, 41, 3, 0, 40, 39, 77]
    with imgstore.new_for_filename(path) as s:
        batch = s.get_frames(asked)
        for k, i in enumerate(asked):
            np.testing.assert_array_equal(batch.images[k], make_frame(numbers_of(90)[i], H, W, True))


@pytest.mark.parametrize("fmt", ["png", "npy"])
def test_directory_stores_batch_through_the_same_api(tmp_path, fmt):
    path = write(str(tmp_path / "s"), fmt, 30, chunksize=7)
    with imgstore.new_for_filename(path) as s:
        asked = [29, 0, 7, 7, 13]
        batch = s.get_frames(asked)
        for k, i in enumerate(asked):
            np.testing.assert_array_equal(batch.images[k], make_frame(numbers_of(30)[i], H, W))
        assert s.frame_cache_mb == 0  # files are not decoded by a video decoder: nothing to cache
        s.frame_cache_mb = 10  # accepted, no effect


def test_batch_decodes_each_gop_span_once(tmp_path):
    """Scattered targets in two GOPs: one seek per GOP, nothing decoded past the last target in it."""
    need("h264/mkv")
    path = str(tmp_path / "c.mkv")
    with VideoChunkWriter(path, "h264/mkv", height=H, width=W, color=False, keyframe_interval=50) as wr:
        for i in range(100):
            wr.write(make_frame(i, H, W))
    table = wr.close()
    positions = np.array([3, 17, 18, 40, 55, 60, 61])
    out = np.zeros((len(positions), H, W), np.uint8)
    with VideoChunkReader(path, height=H, width=W, color=False, frame_table=table) as r:
        r.read_many(positions, out)
        assert [read_barcode(img) for img in out] == positions.tolist()
        assert r.stats["seeks"] <= 1  # the first GOP from the start of the file, the second by one seek
        # frames 0..40 and 50..61 decoded at most once each (the encoder's reordering delay aside)
        assert r.stats["decoded"] <= 41 + 12 + 4
        with pytest.raises(errors.FrameIndexError, match="strictly increasing"):
            r.read_many([5, 5], out)
        with pytest.raises(errors.FrameIndexError, match="strictly increasing"):
            r.read_many([99, 100], out)


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def test_corrupt_packet_in_a_batch_raises(tmp_path):
    """A damaged packet on a batch's decoding path is caught by its checksum, never returned."""
    need("mjpeg/avi")
    path = str(tmp_path / "c.avi")
    with VideoChunkWriter(path, "mjpeg/avi", height=H, width=W, color=False) as wr:
        for i in range(40):
            wr.write(make_frame(i, H, W))
    table = dict(wr.close())  # the writer's table holds each packet's checksum
    assert len(table["payload_xxh3"]) == 40
    with av.open(path) as c:
        packets = sorted((p.pts, p.pos, p.size) for p in c.demux(video=0) if p.size)
    _, pos, size = packets[25]
    _flip(path, pos + size // 2)
    out = np.zeros((40, H, W), np.uint8)
    with VideoChunkReader(path, height=H, width=W, color=False, frame_table=table) as r:
        r.read_many(np.arange(25), out)  # the frames before it read exactly
        assert [read_barcode(img) for img in out[:25]] == list(range(25))
        with pytest.raises(errors.ChunkCorruptError):
            r.read_many(np.arange(20, 40), out)


def test_corrupt_packet_in_a_store_batch_raises(tmp_path):
    """The same through the store: the writer recorded each packet's digest (H.264, B-frames)."""
    need("h264/mkv")
    path = write(str(tmp_path / "s"), "h264/mkv", 60, chunksize=60, keyframe_interval=30)
    video = os.path.join(path, "000000.mkv")
    with av.open(video) as c:
        packet = next(p for p in c.demux(video=0) if p.size > 40 and p.pts is not None and not p.is_keyframe
                      and p.pts > 10)
        offset, size = packet.pos, packet.size
    _flip(video, offset + size // 2)
    with imgstore.new_for_filename(path) as s:
        with pytest.raises(errors.ChunkCorruptError):
            s.get_frames(np.arange(60)[::-1])
        # nothing after it is returned from a decoder that skipped the damaged packet
        with pytest.raises(errors.ChunkCorruptError):
            s.get_frames(np.arange(30))


def test_corrupt_frame_file_in_a_batch_raises(tmp_path):
    path = write(str(tmp_path / "s"), "png", 20, chunksize=10)
    name = sorted(f for f in os.listdir(os.path.join(path, "000001")) if f.endswith(".png"))[3]
    target = os.path.join(path, "000001", name)
    _flip(target, os.path.getsize(target) // 2)
    with imgstore.new_for_filename(path) as s, pytest.raises(errors.ChunkCorruptError):
        s.get_frames([19, 0, 13, 2])


def _gop_chunk(tmp_path, n=120, gop=120):
    need("h264/mkv")
    path = str(tmp_path / "long.mkv")
    with VideoChunkWriter(path, "h264/mkv", height=H, width=W, color=False, keyframe_interval=gop) as wr:
        for i in range(n):
            wr.write(make_frame(i, H, W))
    return path, wr.close()


def test_stepping_backwards_decodes_each_frame_about_once(tmp_path):
    path, table = _gop_chunk(tmp_path)
    cache = FrameCache(64 * 2**20)
    with VideoChunkReader(path, height=H, width=W, color=False, frame_table=table, cache=cache) as r:
        got = [read_barcode(r.read(p)) for p in range(119, -1, -1)]
        assert got == list(range(119, -1, -1))
        # without the cache: 120 + 119 + ... + 1 = 7260 frames decoded
        assert r.stats["decoded"] <= 2 * 120
        decoded = r.stats["decoded"]
        # scrubbing back and forth over the window again decodes nothing
        for p in list(range(30, 90)) + list(range(89, 29, -1)):
            assert read_barcode(r.read(p)) == p
        assert r.stats["decoded"] == decoded


def test_cache_bound_is_kept_and_zero_disables(tmp_path):
    path, table = _gop_chunk(tmp_path)
    one = H * W * 3 // 2  # a 4:2:0 frame, padded by FFmpeg's buffers to a little more
    small = FrameCache(10 * one)
    with VideoChunkReader(path, height=H, width=W, color=False, frame_table=table, cache=small) as r:
        for p in range(119, 59, -1):
            assert read_barcode(r.read(p)) == p
            assert small.nbytes <= small.max_bytes
        assert 0 < len(small) <= 10 and small.stats["evictions"] > 0
    small.resize(0)
    assert len(small) == 0 and small.nbytes == 0
    with pytest.raises(ValueError, match="non-negative"):
        FrameCache(-1)


def test_store_frame_cache_size(long_gop):
    with imgstore.new_for_filename(long_gop) as s:
        assert s.frame_cache_mb == 256
        s.frame_cache_mb = 0.5
        assert s.frame_cache_mb == 0.5
        for i in range(140, 100, -1):  # still exact with a cache smaller than the window
            assert read_barcode(s[i]) == numbers_of(550)[i]
        s.frame_cache_mb = 0
        assert read_barcode(s[99]) == numbers_of(550)[99]
        for bad in (-1, float("nan"), "10", True):
            with pytest.raises(errors.InvalidOptionError, match="frame_cache_mb"):
                s.frame_cache_mb = bad


def test_batch_over_more_chunks_than_open_readers(tmp_path):
    """Workers on two cores read 12 chunks: a reader in use is never closed to make room."""
    need("h264/mkv")
    path = write(str(tmp_path / "s"), "h264/mkv", 240, chunksize=20, keyframe_interval=10)
    asked = [*range(239, -1, -3), 0, 239]
    with imgstore.new_for_filename(path) as s:
        for _ in range(3):
            check_batch(s, s.get_frames(asked), asked)


def _vm_flags(addr: int) -> set[str]:
    """The VmFlags of the mapping holding `addr` (Linux /proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= addr < hi
            elif inside and head == "VmFlags:":
                return set(line.split()[1:])
    return set()


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux only")
def test_batch_output_is_advised_small_pages():
    """The batch output's untouched pages are advised 4 KiB pages (not huge pages, whose
    faults were sometimes slow enough to make a batch slower than single reads); small
    arrays are left alone, and the array keeps working."""
    from imgstore.backends.batch import prefer_small_pages

    big = np.empty((40, 480, 640), np.uint8)  # 12 MB: numpy advises huge pages
    assert prefer_small_pages(big)
    assert "nh" in _vm_flags(big.ctypes.data + big.nbytes // 2)
    big[...] = 7
    assert int(big.sum()) == 7 * big.size
    small = np.empty((4, 48, 64), np.uint8)
    assert not prefer_small_pages(small)


def test_store_batch_reads_into_small_pages(long_gop, monkeypatch):
    """A store's batch read advises its output before decoding into it (same frames)."""
    from imgstore.backends import batch

    advised = []
    real = batch.prefer_small_pages
    monkeypatch.setattr(batch, "prefer_small_pages", lambda arr: advised.append(arr.shape) or real(arr))
    with imgstore.new_for_filename(long_gop) as s:
        asked = [5, 1, 5, 30]
        check_batch(s, s.get_frames(asked), asked)
        assert advised == [(4, H, W)]
