"""Chunk indexes read straight from their bytes (imgstore.stored_npz), np.load for anything else."""

from __future__ import annotations

import io

import numpy as np
import pytest

from imgstore import ondisk, stored_npz
from imgstore.errors import IndexCorruptError

ARRAYS = {"frame_number": np.arange(5, 105, dtype=np.int64), "frame_time": np.linspace(1.7e9, 1.7e9 + 3, 100),
          "keyframe": np.arange(100) % 25 == 0, "payload_xxh3": np.arange(100, dtype=np.uint64) * 2**60,
          "pts": np.arange(100, dtype=np.int64) * 40, "empty": np.zeros(0, np.int32)}


def savez(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_members_equal_np_load():
    data = savez(**ARRAYS, format=np.array("h264/mkv"))
    got = stored_npz.read_members(data, [*ARRAYS, "missing"])
    assert got is not None and set(got) == set(ARRAYS)
    for k, v in ARRAYS.items():
        assert got[k].dtype == v.dtype and got[k].flags.writeable
        np.testing.assert_array_equal(got[k], v)


@pytest.mark.parametrize("case", ["deflated", "two-dimensional", "fortran", "not a zip", "truncated"])
def test_anything_else_is_left_to_np_load(case):
    if case == "deflated":
        buf = io.BytesIO()
        np.savez_compressed(buf, frame_number=ARRAYS["frame_number"])
        data = buf.getvalue()
    elif case == "two-dimensional":
        data = savez(frame_number=np.zeros((4, 5), np.int64))
    elif case == "fortran":
        data = savez(frame_number=np.asfortranarray(np.zeros((4, 5), np.int64)))
    elif case == "not a zip":
        data = b"frame_number" * 100
    else:
        data = savez(frame_number=ARRAYS["frame_number"])[:-30]
    assert stored_npz.read_members(data, ["frame_number"]) is None


def test_damaged_member_fails_its_crc_and_np_load_names_the_file(tmp_path):
    data = bytearray(savez(frame_number=ARRAYS["frame_number"], frame_time=ARRAYS["frame_time"]))
    at = data.find(np.int64(50).tobytes())
    data[at] ^= 0x01
    assert stored_npz.read_members(data, ["frame_number", "frame_time"]) is None
    path = tmp_path / "000000.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match=r"000000\.npz"):
        ondisk.read_chunk_index(str(path))


def test_read_chunk_index_uses_it(tmp_path):
    path = tmp_path / "000000.npz"
    path.write_bytes(savez(**ARRAYS))
    got = ondisk.read_chunk_index(str(path), ("frame_number", "frame_time", "pts", "keyframe"))
    np.testing.assert_array_equal(got["pts"], ARRAYS["pts"])
    np.testing.assert_array_equal(got["frame_time"], ARRAYS["frame_time"])
    assert got["keyframe"].dtype == bool


def test_member_names_from_the_tail(tmp_path):
    big = {"frame_number": np.arange(5000), "frame_time": np.arange(5000.0), "payload_xxh3": np.zeros(5000, "u8")}
    np.savez(tmp_path / "a.npz", **big)
    data = (tmp_path / "a.npz").read_bytes()
    assert stored_npz.member_names(data[-4096:], len(data) - 4096) == [f"{k}.npy" for k in big]
    # a tail that stops short of the central directory cannot say
    assert stored_npz.member_names(data[-60:], len(data) - 60) is None
    assert stored_npz.member_names(b"not a zip", 0) is None
    assert ondisk.npz_member_names(str(tmp_path / "a.npz")) == list(big)


def test_frames_of_a_store_without_checksums_do_not_read_the_chunk_index_again(tmp_path, monkeypatch):
    import imgstore
    from imgstore.testing.synthetic import make_synthetic_store

    path = make_synthetic_store(str(tmp_path / "s"), 40, 10, frames="all")  # no checksums, as 0.4 writes
    with imgstore.new_for_filename(path) as s:
        read = []
        real = ondisk.read_chunk_index
        monkeypatch.setattr(ondisk, "read_chunk_index", lambda *a, **k: read.append(a[0]) or real(*a, **k))
        for i in (3, 15, 27, 39):
            s.get_image(None, frame_index=i)
        assert read == []  # each chunk's index tail said: no checksums to check
    # a store that records them still has every frame checked (the index is read for them)
    ours = str(tmp_path / "ours")
    with imgstore.new_for_format("npy", basedir=ours, imgshape=(4, 4), imgdtype=np.uint8, chunksize=10) as w:
        for i in range(20):
            w.add_image(np.full((4, 4), i, np.uint8), i, 1000.0 + i)
    with imgstore.new_for_filename(ours) as s:
        read.clear()
        s.get_image(None, frame_index=15)
        assert len(read) == 1 and read[0].endswith(".npz")
