""".npy frame files are decoded in place from the bytes read, exactly as np.load reads them."""
from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from imgstore.backends.directory import decode_frame_file, read_image_file
from imgstore.errors import ChunkReadError
from imgstore.storage import LOCAL


def _npy(arr: np.ndarray, version: tuple[int, int] | None = None) -> bytearray:
    buf = io.BytesIO()
    if version is None:
        np.save(buf, arr, allow_pickle=False)
    else:
        np.lib.format.write_array(buf, arr, version=version, allow_pickle=False)
    return bytearray(buf.getvalue())


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.dtype(">u2"), np.float32, np.int64, np.bool_]),
                  hnp.array_shapes(min_dims=1, max_dims=3, max_side=9)),
       st.booleans(), st.sampled_from([None, (1, 0), (2, 0)]))
def test_decoded_like_np_load(arr, fortran, version):
    if fortran:
        arr = np.asfortranarray(arr)
    data = _npy(arr, version)
    got = decode_frame_file(data, "f.npy", "npy", color=False)
    want = np.load(io.BytesIO(bytes(data)), allow_pickle=False)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert got.flags.writeable  # a frame is the caller's to change, as np.load's is
    got[...] = 0  # and changing it touches only its own buffer
    np.testing.assert_array_equal(np.load(io.BytesIO(bytes(_npy(arr, version))), allow_pickle=False), want)


def test_truncated_payload_is_named_damage(tmp_path):
    data = _npy(np.arange(100, dtype=np.uint8).reshape(10, 10))
    with pytest.raises(ChunkReadError, match=r"frame file f\.npy is damaged .*bytes of data for an array of 100"):
        decode_frame_file(data[:-7], "f.npy", "npy", color=False)


def test_object_arrays_and_bad_magic_are_refused():
    obj = io.BytesIO()
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ChunkReadError, match=r"damaged .*Object arrays"):
        decode_frame_file(bytearray(obj.getvalue()), "o.npy", "npy", color=False)
    with pytest.raises(ChunkReadError, match=r"frame file x\.npy is damaged"):
        decode_frame_file(bytearray(b"NOTNUMPY" + bytes(100)), "x.npy", "npy", color=False)


def test_read_from_disk_equals_the_array_saved(tmp_path):
    arr = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / "000001.npy"
    np.save(path, arr)
    np.testing.assert_array_equal(read_image_file(LOCAL, str(path), "npy", color=True), arr)
    assert LOCAL.read_buffer(str(path)).tobytes() == path.read_bytes()


@pytest.mark.parametrize(("shape", "dtype"), [((48, 64, 3), np.uint8), ((30, 20), np.uint16), ((7, 5), np.float32)])
def test_written_frame_files_are_what_np_save_writes(tmp_path, shape, dtype):
    import imgstore
    from imgstore.checksums import payload_digest

    img = (np.arange(np.prod(shape)) % 250).astype(dtype).reshape(shape)
    path = str(tmp_path / "s")
    with imgstore.new_for_format("npy", basedir=path, imgshape=shape, imgdtype=dtype, chunksize=10) as s:
        s.add_image(img, 0, 1.0)
        s.add_image(np.asfortranarray(img), 1, 2.0)  # written C-ordered, as before
    want = io.BytesIO()
    np.save(want, img)
    for i in (0, 1):
        assert (tmp_path / "s" / "000000" / f"00000{i}.npy").read_bytes() == want.getvalue()
    with np.load(tmp_path / "s" / "000000" / "index.npz") as index:
        assert index["payload_xxh3"].tolist() == [payload_digest(want.getvalue())] * 2
    with imgstore.new_for_filename(path) as s:
        np.testing.assert_array_equal(s.get_image(0)[0], img)
