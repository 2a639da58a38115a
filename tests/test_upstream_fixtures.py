"""Every store written by the reference library (imgstore 0.4.0) reads back as its manifest says."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.testing.barcode import read_fixture_barcode

CLOSED = ["npy_grey", "png_color_outoforder", "jpg_grey", "bmp_grey", "tif_color", "mjpeg_avi_color",
          "avc1_mp4_grey", "h264_mkv_color"]


def _entry(manifest, name):
    return next(s for s in manifest["stores"] if s["name"] == name)


def _open(path):
    return imgstore.new_for_filename(path)


@pytest.fixture(params=CLOSED)
def closed_store(request, manifest, fixtures_dir):
    entry = _entry(manifest, request.param)
    with _open(str(fixtures_dir / request.param)) as store:
        yield entry, store


def test_metadata_matches_manifest(closed_store):
    entry, store = closed_store
    assert store.get_frame_metadata() == {"frame_number": entry["frame_numbers"], "frame_time": entry["frame_times"]}
    assert store.frame_count == len(entry["frame_numbers"])
    assert list(store.image_shape) == entry["imgshape"]
    assert store.image_dtype == np.dtype(entry["imgdtype"])
    assert store.chunksize == entry["chunksize"]
    assert store.user_metadata == entry["user_metadata"]
    assert store.lossless == entry["lossless"]
    assert store.frame_min == min(entry["frame_numbers"]) and store.frame_max == max(entry["frame_numbers"])
    assert store.frame_time_min == min(entry["frame_times"])
    assert store.duration == pytest.approx(max(entry["frame_times"]) - min(entry["frame_times"]))
    created, tz = store.created
    assert created.tzinfo is not None and str(tz) == "Etc/UTC"


def test_sequential_barcodes(closed_store):
    entry, store = closed_store
    got = []
    while True:
        try:
            img, (fn, _ft) = store.get_next_image()
        except EOFError:
            break
        assert img.shape == tuple(entry["imgshape"])
        assert read_fixture_barcode(img) == fn
        got.append(fn)
    assert got == entry["frame_numbers"]


def test_random_order_barcodes(closed_store):
    entry, store = closed_store
    numbers = entry["frame_numbers"]
    rng = np.random.default_rng(7)
    for i in rng.permutation(len(numbers)):
        img, (fn, ft) = store.get_image(numbers[i])
        assert (fn, ft) == (numbers[i], entry["frame_times"][i])
        assert read_fixture_barcode(img) == numbers[i]
        img2, (fn2, _) = store.get_image(None, frame_index=int(i))
        assert fn2 == numbers[i]
        if store.lossless:
            np.testing.assert_array_equal(img, img2)  # both access paths agree bit for bit


def test_nearest_time(closed_store):
    entry, store = closed_store
    for i in (0, len(entry["frame_times"]) // 2, len(entry["frame_times"]) - 1):
        img, (fn, ft) = store.get_nearest_image(entry["frame_times"][i] + 0.013)
        assert (fn, ft) == (entry["frame_numbers"][i], entry["frame_times"][i])
        assert read_fixture_barcode(img) == fn


def test_extra_data(closed_store):
    entry, store = closed_store
    df = store.get_extra_data()
    if not entry["extra_data"]:
        assert df is None
        return
    assert df[["frame_number", "temperature", "note"]].to_dict("records") == entry["extra_data"]
    assert list(df["frame_index"]) == [entry["frame_numbers"].index(r["frame_number"]) for r in entry["extra_data"]]


def test_extract_only_frame(closed_store):
    entry, store = closed_store
    for i in (0, entry["chunksize"] + 1):
        assert read_fixture_barcode(imgstore.extract_only_frame(store.full_path, i)) == entry["frame_numbers"][i]


@pytest.mark.parametrize("name", ["crashed_npy", "crashed_mjpeg_avi"])
def test_crashed_stores_open(manifest, fixtures_dir, name):
    entry = _entry(manifest, name)
    with pytest.warns(imgstore.ImgStoreWarning, match="chunk 2"):
        store = _open(str(fixtures_dir / name))
    with store:
        # as the reference: the two complete chunks, the chunk without an index skipped
        assert store.frame_count == 2 * entry["chunksize"] == 20
        assert store.get_frame_metadata()["frame_number"] == list(range(20))
        assert store.damaged_chunks.keys() == {2}
        for i in np.random.default_rng(3).permutation(20):
            img, (fn, _) = store.get_image(int(i))
            assert read_fixture_barcode(img) == fn == i
        with pytest.raises(errors.FrameNotFoundError):
            store.get_image(21)


def test_crashed_store_strict_raises(fixtures_dir):
    with pytest.raises(errors.IndexCorruptError, match="chunk 2"):
        imgstore.DirectoryImgStore(basedir=str(fixtures_dir / "crashed_npy"), mode="r", strict=True)


def test_motif_store(fixtures_dir):
    path = str(fixtures_dir / "motif_libx264_mp4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean Motif store opens without complaint
        store = _open(path)
    with store:
        assert isinstance(store, imgstore.VideoImgStore)
        assert store.frame_count == 179 and store.chunks == [0, 1]
        assert (store.frame_min, store.frame_max) == (0, 178)
        assert store.image_shape == (512, 512)
        md = store.get_frame_metadata()
        assert md["frame_number"] == list(range(179))
        assert md["frame_time"] == [fn + 1.0 for fn in range(179)]
        # no created_utc: derived from the file's mtime, in the local zone
        created, _tz = store.created
        assert created.timestamp() == pytest.approx(os.path.getmtime(store.full_path))
        for i in np.random.default_rng(5).permutation(179):
            img, (fn, ft) = store.get_image(int(i))
            assert fn == i and ft == i + 1.0
            assert read_fixture_barcode(img, bits=16) == i
        store.get_image(None, frame_index=0)
        for i in range(1, 179):
            img, (fn, _) = store.get_next_image()
            assert read_fixture_barcode(img, bits=16) == fn == i


def test_fixture_copy_appendable(fixture_copy):
    """Our writer can append to a store the reference wrote, and both parts read back."""
    path = fixture_copy("npy_grey")
    with imgstore.new_for_filename(path) as s:
        first = s.get_image(3)[0]
    with imgstore.new_for_filename(path, mode="a") as s:
        s.add_image(first, 1000, 1_800_000_000.0)
    with imgstore.new_for_filename(path) as s:
        assert s.frame_count == 26 and s.chunks == [0, 1, 2, 3]
        np.testing.assert_array_equal(s.get_image(1000)[0], first)


def test_vendored_fixtures_match_shared():
    """tests/data holds a copy of the shared fixtures for clean checkouts: it must not drift."""
    import hashlib

    from .conftest import SHARED_FIXTURES, VENDORED_FIXTURES

    if not (SHARED_FIXTURES / "manifest.json").exists():
        pytest.skip("no shared fixtures on this machine")

    def digest(root):
        out = {}
        for dirpath, _, files in os.walk(root):
            for f in files:
                p = os.path.join(dirpath, f)
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
        return out

    assert digest(VENDORED_FIXTURES) == digest(SHARED_FIXTURES)
