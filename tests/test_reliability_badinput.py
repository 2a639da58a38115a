"""Bad input: each case gives a named error that says what and where, loses nothing already
written, and never returns a wrong frame. (Cases already covered by tests/test_ondisk.py and the
conformance suite are not repeated here.)"""

from __future__ import annotations

import errno
import gc
import os
import shutil
import warnings

import numpy as np
import pytest
import yaml

import imgstore
from imgstore import errors
from imgstore.repair import repair
from imgstore.testing.barcode import make_frame, read_barcode

from .test_crash_torture import is_video, torture_formats

SHAPE = (16, 24)


def frame(i: int) -> np.ndarray:
    return make_frame(i, *SHAPE, bits=6)


def write(path, n=9, fmt="npy", chunksize=3, **kw) -> str:
    with imgstore.new_for_format(fmt, basedir=str(path), imgshape=SHAPE, chunksize=chunksize, **kw) as s:
        for i in range(n):
            s.add_image(frame(i), i, 10.0 + i)
            s.add_extra_data(i=i)
    return str(path)


def open_quietly(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
        return imgstore.new_for_filename(path, **kw)


def assert_frames_exact(store, numbers) -> None:
    """The store holds exactly ``numbers``, each frame showing its own number."""
    assert store.frame_numbers.tolist() == list(numbers)
    for i, fn in enumerate(numbers):
        img, (got, ft) = store.get_image(None, frame_index=i)
        assert got == fn and ft == 10.0 + fn
        np.testing.assert_array_equal(img, frame(fn))


# ------------------------------------------------------------------------------ metadata.yaml


def _md(path, **store_keys) -> None:
    doc = {"__store": {"class": "DirectoryImgStore", "format": "npy", "imgshape": [2, 2], "imgdtype": "uint8",
                       "chunksize": 2, "version": 2, **store_keys}}
    (path / "metadata.yaml").write_text(yaml.safe_dump(doc))


@pytest.mark.parametrize("content, error, match", [
    (b"", errors.MetadataError, "top level must be a mapping"),
    (b"\xff\xfe\x00\x01garbage", errors.MetadataError, "not valid YAML"),
    (b"__store: [1, 2]", errors.MetadataError, "must be a mapping"),
    (b"- a\n- b", errors.MetadataError, "top level must be a mapping"),
])
def test_malformed_metadata_bytes(tmp_path, content, error, match):
    (tmp_path / "metadata.yaml").write_bytes(content)
    with pytest.raises(error, match=match) as info:
        imgstore.new_for_filename(str(tmp_path))
    assert str(tmp_path) in str(info.value)  # says where


@pytest.mark.parametrize("keys, error, match", [
    ({"imgshape": [2, 2, 3, 4]}, errors.MetadataError, "imgshape"),
    ({"imgshape": [0, 2]}, errors.MetadataError, "imgshape"),
    ({"created_utc": "not a date"}, errors.MetadataError, "created_utc"),
    ({"encoding": "cv_nonsense"}, errors.MetadataError, "nonsense"),
    ({"encoding": 7}, errors.MetadataError, "encoding"),
    ({"format": "xyz"}, errors.UnsupportedFormatError, "xyz"),
    ({"version": "two"}, errors.MetadataError, "version"),
    ({"class": ["DirectoryImgStore"]}, errors.MetadataError, "must be strings"),
])
def test_invalid_store_metadata(tmp_path, keys, error, match):
    _md(tmp_path, **keys)
    with pytest.raises(error, match=match) as info:
        imgstore.new_for_filename(str(tmp_path))
    assert "metadata.yaml" in str(info.value)
    # repair refuses the same way: it never guesses what a store is
    with pytest.raises(errors.ImgStoreError):
        repair(str(tmp_path))


def test_unreadable_metadata(tmp_path, monkeypatch):
    path = write(tmp_path / "s")
    md = os.path.join(path, "metadata.yaml")
    real_open = os.open

    def deny(file, *a, **k):
        if os.fspath(file) == md:
            raise PermissionError(errno.EACCES, "Permission denied", md)
        return real_open(file, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(errors.MetadataError, match=r"cannot be read.*Permission denied") as info:
        imgstore.new_for_filename(path)
    assert md in str(info.value)


def test_metadata_is_a_folder(tmp_path):
    (tmp_path / "metadata.yaml").mkdir()
    with pytest.raises(errors.StoreNotFoundError):
        imgstore.new_for_filename(str(tmp_path / "metadata.yaml"))


# ------------------------------------------------------------------------------ chunks and frames


def test_truncated_index_of_a_closed_chunk(tmp_path):
    path = write(tmp_path / "s")
    idx = os.path.join(path, "000001", "index.npz")
    with open(idx, "r+b") as f:
        f.truncate(40)
    with pytest.warns(imgstore.ImgStoreWarning, match="000001"):
        s = imgstore.new_for_filename(path)
    with s:
        assert list(s.damaged_chunks) == [1] and "index.npz" in s.damaged_chunks[1]
        assert_frames_exact(s, [0, 1, 2, 6, 7, 8])  # the rest still reads; nothing is guessed
    with pytest.raises(errors.IndexCorruptError, match="000001"):
        imgstore.new_for_filename(path, strict=True)
    with open(idx, "rb") as f:
        damaged = f.read()
    report = repair(path)  # no journal describes that chunk: set aside whole, and said so
    assert not report.clean and "chunk 1 cannot be read" in str(report)
    # chunk 2's first record was added with frame 5, which went aside with chunk 1: kept aside too
    assert report.moved == ["damaged/000001", "damaged/000002/index.extra.json"]
    with open(os.path.join(path, "damaged", "000001", "index.npz"), "rb") as f:
        assert f.read() == damaged  # kept byte for byte
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imgstore.new_for_filename(path) as s:
            assert not s.damaged_chunks
            assert_frames_exact(s, [0, 1, 2, 6, 7, 8])
            extra = s.get_extra_data()  # every record still names the frame it was added with
            # frame 2's record (filed with chunk 1) stays with frame 2; frame 5's went aside with frame 5
            assert extra["i"].tolist() == [0, 1, 2, 6, 7, 8]
            assert extra["frame_index"].tolist() == [0, 1, 2, 3, 4, 5]


def test_index_longer_than_the_frames_on_disk(tmp_path):
    path = write(tmp_path / "s")
    os.unlink(os.path.join(path, "000001", "000002.npy"))
    with open_quietly(path) as s:
        with pytest.raises(errors.ChunkReadError, match=r"000002.npy is missing"):
            s.get_image(5)
        with pytest.raises(errors.ChunkReadError):
            s[5]
        img, (fn, _) = s.get_image(4)
        assert fn == 4 and np.array_equal(img, frame(4))


@pytest.mark.parametrize("replacement", ["colour", "dtype", "shape", "empty", "text"])
def test_foreign_frame_file_is_not_returned(tmp_path, replacement):
    """A frame file that is not a frame of this store raises instead of being returned."""
    path = write(tmp_path / "s")
    target = os.path.join(path, "000001", "000000.npy")
    bad = {"colour": np.zeros((*SHAPE, 3), np.uint8), "dtype": frame(3).astype(np.float64),
           "shape": np.zeros((5, 5), np.uint8)}.get(replacement)
    if bad is not None:
        np.save(target, bad)
    else:
        with open(target, "wb") as f:
            f.write(b"" if replacement == "empty" else b"hello")
    with open_quietly(path) as s:
        with pytest.raises(errors.ChunkReadError, match=r"000001/000000.npy"):
            s.get_image(3)
        assert np.array_equal(s.get_image(4)[0], frame(4))


def test_deleted_chunk_with_an_index_cache(tmp_path):
    """A chunk folder removed after the index cache was saved: its frames are gone, not invented."""
    path = write(tmp_path / "s")
    with imgstore.new_for_filename(path) as s:
        s.save_index()
    shutil.rmtree(os.path.join(path, "000001"))
    with open_quietly(path) as s:
        assert_frames_exact(s, [0, 1, 2, 6, 7, 8])


def test_stray_chunk_like_entries(tmp_path):
    """An empty chunk folder (a writer killed right after creating its next chunk), a numeric folder
    that is not a chunk name, a numeric file: none is a damaged chunk, no frame is lost."""
    path = write(tmp_path / "s")
    os.mkdir(os.path.join(path, "000007"))
    os.mkdir(os.path.join(path, "2024"))
    with open(os.path.join(path, "2024", "notes.txt"), "w") as f:
        f.write("x")
    with open(os.path.join(path, "000005"), "w") as f:
        f.write("x")
    os.mkdir(os.path.join(path, "١٢"))  # Arabic-Indic digits: not a chunk name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imgstore.new_for_filename(path) as s:
            assert s.damaged_chunks == {}
            assert_frames_exact(s, range(9))
    report = repair(path)
    assert report.dropped == [7] and report.clean
    assert os.path.exists(os.path.join(path, "000005"))  # not a folder: not a chunk, not touched


@pytest.mark.parametrize("fmt", [f for f in torture_formats() if is_video(f)])
def test_truncated_video_chunk(tmp_path, fmt):
    """A video chunk cut short: the frames before the cut read back exact, the others raise."""
    with imgstore.new_for_format(fmt, basedir=str(tmp_path / "s"), imgshape=(64, 96), chunksize=30) as s:
        for i in range(60):
            s.add_image(make_frame(i, 64, 96), i, 10.0 + i)
        ext = s._ext
    video = str(tmp_path / "s" / f"000001{ext}")
    with open(video, "r+b") as f:
        f.truncate(os.path.getsize(video) // 2)
    with open_quietly(str(tmp_path / "s")) as r:
        ok = bad = 0
        for i in range(r.frame_count):
            try:
                img, (fn, _) = r.get_image(None, frame_index=i)
            except errors.ChunkReadError:
                bad += 1
                continue
            assert read_barcode(img) == fn  # never a wrong frame
            ok += 1
        assert ok >= 30 and bad + ok == r.frame_count


# ------------------------------------------------------------------------------ add_image / extra data


BAD_FRAMES = [
    ("frame_time", float("inf"), errors.InvalidFrameMetadataError, "inf"),
    ("frame_time", -float("inf"), errors.InvalidFrameMetadataError, "inf"),
    ("frame_time", None, errors.InvalidFrameMetadataError, "None"),
    ("frame_time", "12.5", errors.InvalidFrameMetadataError, "12.5"),
    ("frame_time", 10**400, errors.InvalidFrameMetadataError, "finite"),
    ("frame_time", np.float32("nan"), errors.InvalidFrameMetadataError, "nan"),
    ("frame_number", 2**70, errors.InvalidFrameMetadataError, "64 bits"),
    ("frame_number", -(2**63) - 1, errors.InvalidFrameMetadataError, "64 bits"),
    ("frame_number", None, errors.InvalidFrameMetadataError, "None"),
    ("frame_number", "7", errors.InvalidFrameMetadataError, "'7'"),
    ("frame_number", np.float64("nan"), errors.InvalidFrameMetadataError, "nan"),
    ("img", [[0] * 24] * 16, errors.InvalidImageError, "numpy array"),
    ("img", np.zeros((*SHAPE, 3), np.uint8), errors.InvalidImageError, "shape"),
    ("img", np.zeros(SHAPE[::-1], np.uint8), errors.InvalidImageError, "shape"),
    # other dtypes are cast only where no value changes (as imgstore 0.4 cast them, minus the damage)
    ("img", np.full(SHAPE, -1, np.int8), errors.InvalidImageError, "int8 holds -1"),
    ("img", np.full(SHAPE, 0.5), errors.InvalidImageError, "float64 holds 0.5"),
]


@pytest.mark.parametrize("fmt", ["npy", "png"])
def test_rejected_frames_change_nothing(tmp_path, fmt):
    """Every rejected add_image says why and where; the frames around it are stored exactly, at the
    right positions (a frame rejected half-way must not shift the ones after it)."""
    path = str(tmp_path / "s")
    with imgstore.new_for_format(fmt, basedir=path, imgshape=SHAPE, chunksize=4) as s:
        for k, (what, value, error, match) in enumerate(BAD_FRAMES):
            s.add_image(frame(k), k, 10.0 + k)
            fn = k + 1
            args = {"img": frame(fn), "frame_number": fn, "frame_time": 10.0 + fn, what: value}
            with pytest.raises(error, match=match) as info:
                s.add_image(args["img"], args["frame_number"], args["frame_time"])
            assert isinstance(info.value, ValueError)
            if what == "img" and match != "numpy array":
                assert path in str(info.value)
    with imgstore.new_for_filename(path) as r:
        assert_frames_exact(r, range(len(BAD_FRAMES)))


def test_extra_data_that_is_not_json(tmp_path):
    path = str(tmp_path / "s")
    loop: list = []
    loop.append(loop)
    with imgstore.new_for_format("npy", basedir=path, imgshape=SHAPE, chunksize=2) as s:
        s.add_image(frame(0), 0, 10.0)
        s.add_extra_data(ok=1)
        for bad, match in [({"x": object()}, "'x'"), ({"loop": loop}, "loop"), ({"b": b"\xff\xfe"}, "'b'")]:
            with pytest.raises(errors.ExtraDataError, match=match) as info:
                s.add_extra_data(**bad)
            assert isinstance(info.value, TypeError)
        s.add_image(frame(1), 1, 11.0)
        # as the reference: the store's own keys win over the caller's (with a warning here)
        with pytest.warns(imgstore.ImgStoreWarning, match="frame_number"):
            s.add_extra_data(frame_number=99, ok=3)
        s.add_extra_data(ok=2, nan=float("nan"), arr=np.arange(3), when=np.datetime64("2024-01-01"))
    with imgstore.new_for_filename(path) as r:
        df = r.get_extra_data()
        assert df["ok"].tolist() == [1, 3, 2] and df["arr"].iloc[2] == [0, 1, 2]
        assert df["frame_number"].tolist() == [0, 1, 1]
        assert r.frame_count == 2


def test_writes_on_a_closed_or_read_store(tmp_path):
    path = write(tmp_path / "s", n=2)
    with imgstore.new_for_filename(path) as r:
        with pytest.raises(errors.ModeError, match="mode 'r'"):
            r.add_image(frame(0), 0, 1.0)
        with pytest.raises(errors.ModeError):
            r.add_extra_data(a=1)
    s = imgstore.new_for_filename(path, mode="a")
    s.close()
    with pytest.raises(errors.StoreClosedError, match="closed"):
        s.add_image(frame(0), 0, 1.0)
    s.close()  # idempotent


def test_journal_and_extra_files_damaged_in_the_middle(tmp_path):
    """Damage that is not a torn tail is reported (named, with the file), not silently cut."""
    s = imgstore.new_for_format("npy", basedir=str(tmp_path / "s"), imgshape=SHAPE, chunksize=10)
    for i in range(4):
        s.add_image(frame(i), i, 10.0 + i)
        s.add_extra_data(i=i)
    jsonl = os.path.join(str(tmp_path / "s"), "000000", "index.extra.jsonl")
    with open(jsonl, "rb") as f:
        lines = f.read().split(b"\n")
    lines[1] = b'{"i": 1, "frame_'  # damaged, but not the last line
    with open(jsonl, "wb") as f:
        f.write(b"\n".join(lines))
    with open_quietly(str(tmp_path / "s")) as r:
        assert_frames_exact(r, range(4))  # frames are unaffected
        with pytest.raises(errors.IndexCorruptError, match=r"index.extra.jsonl: line 2"):
            r.get_extra_data()
        with pytest.warns(imgstore.ImgStoreWarning, match="line 2"):
            assert r.get_extra_data(ignore_corrupt_chunks=True) is None
    del s  # never closed, as if its process died: dropping it lets go of the lock
    gc.collect()


def test_video_index_without_video_file_is_reported(tmp_path):
    import warnings as _w

    import imgstore as _i
    from imgstore.testing.barcode import make_frame as _mf

    path = str(tmp_path / "v")
    with _i.new_for_format("mjpeg/avi", basedir=path, imgshape=(32, 48), chunksize=3) as s:
        for fn in range(7):
            s.add_image(_mf(fn, 32, 48), fn, float(fn))
    os.unlink(os.path.join(path, "000001.avi"))
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        with _i.new_for_filename(path) as s:
            assert s.get_frame_metadata()["frame_number"] == [0, 1, 2, 6]
            assert set(s.damaged_chunks) == {1}
    assert any("000001.npz has no video file 000001.avi" in str(w.message) for w in caught)
