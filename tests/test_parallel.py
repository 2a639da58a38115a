"""Stores as dask arrays and functions mapped over frames, serially and on a LocalCluster."""

from __future__ import annotations

import pickle
import sys

# distributed (and dask) are test dependencies (imgstore[test]): missing, they fail the module rather than skip it
import distributed
import numpy as np
import pandas as pd
import pytest

import imgstore
from imgstore import errors, parallel
from imgstore.testing.barcode import make_frame, read_barcode
from imgstore.testing.synthetic import make_synthetic_store


@pytest.fixture(scope="module")
def client():
    """One two-process cluster for the module: starting one takes a while."""
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as c:
        yield c


def _frame(i: int, shape) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Two stores written by the real writer: grey npy (chunks of 4) and colour png (chunks of 3)."""
    out = []
    for name, fmt, shape, chunksize, n, first in (("grey", "npy", (6, 5), 4, 11, 100),
                                                   ("colour", "png", (4, 6, 3), 3, 8, 500)):
        path = str(tmp_path_factory.mktemp("stores") / name)
        with imgstore.new_for_format(fmt, basedir=path, imgshape=shape, imgdtype=np.uint8,
                                     chunksize=chunksize) as s:
            for i in range(n):
                s.add_image(_frame(first + i, shape), first + i, 1000.0 + i / 10)
        out.append(path)
    return out


def _serial_frames(path: str) -> np.ndarray:
    with imgstore.new_for_filename(path) as s:
        return np.stack([s.get_image(None, frame_index=i)[0] for i in range(len(s))])


# ----------------------------------------------------------------------------- dask arrays


@pytest.mark.parametrize("frames_per_block", [None, 3, 1])
def test_dask_array_equals_serial_frames(stores, frames_per_block):
    for path in stores:
        expected = _serial_frames(path)
        with imgstore.new_for_filename(path) as s:
            arr = s.to_dask(frames_per_block=frames_per_block)
            assert arr.shape == (len(s), *s.image_shape) and arr.dtype == s.image_dtype
            # blocks never straddle chunks
            bounds = set(np.cumsum((0,) + arr.chunks[0]).tolist())
            assert set(s.index.chunk_starts.tolist()) <= bounds
            if frames_per_block:
                assert max(arr.chunks[0]) <= frames_per_block
            else:
                assert arr.chunks[0] == tuple(np.diff(s.index.chunk_starts).tolist())
            np.testing.assert_array_equal(arr.compute(scheduler="threads"), expected)
            np.testing.assert_array_equal(arr[2:7].compute(scheduler="sync"), expected[2:7])


def test_dask_array_on_the_cluster(stores, client):
    for path in stores:
        with imgstore.new_for_filename(path) as s:
            arr = s.to_dask(frames_per_block=2)
            got = client.compute(arr).result()
            np.testing.assert_array_equal(got, _serial_frames(path))
            means = client.compute(arr.mean(axis=tuple(range(1, arr.ndim)))).result()
            np.testing.assert_allclose(means, _serial_frames(path).reshape(len(s), -1).mean(axis=1))


def test_blocks_do_not_carry_the_frame_index(tmp_path):
    big = make_synthetic_store(str(tmp_path / "big"), 200_000, 10_000, frames="none")
    small = make_synthetic_store(str(tmp_path / "small"), 20, 10, frames="none")
    sizes = []
    for path in (big, small):
        with imgstore.new_for_filename(path) as s:
            arr = s.to_dask()
            task = next(iter(arr.dask.values()))
            sizes.append(len(pickle.dumps(task)))
    assert sizes[0] < 1000 and abs(sizes[0] - sizes[1]) < 50


def test_empty_store_gives_an_empty_array(tmp_path):
    path = str(tmp_path / "empty")
    imgstore.new_for_format("npy", basedir=path, imgshape=(3, 4), imgdtype=np.uint16).close()
    with imgstore.new_for_filename(path) as s:
        arr = s.to_dask()
        assert arr.shape == (0, 3, 4) and arr.dtype == np.uint16
        assert arr.compute().shape == (0, 3, 4)


def test_disabled_decoding_travels_with_the_array(tmp_path):
    path = str(tmp_path / "bayer")
    raw = [np.random.default_rng(i).integers(0, 256, (6, 8), dtype=np.uint8) for i in range(5)]
    with imgstore.new_for_format("npy", basedir=path, imgshape=(6, 8), imgdtype=np.uint8, encoding="cv_bayerbg",
                                 chunksize=2) as s:
        for i, img in enumerate(raw):
            s.add_image(img, i, float(i))
    with imgstore.new_for_filename(path) as s:
        decoded = s.to_dask().compute(scheduler="sync")
        assert decoded.shape == (5, 6, 8, 3)
        s.disable_decoding()
        undecoded = s.to_dask().compute(scheduler="threads")
    np.testing.assert_array_equal(undecoded, np.stack(raw))


def test_changed_store_is_refused(tmp_path):
    path = make_synthetic_store(str(tmp_path / "s"), 30, 10, frames="all")
    with imgstore.new_for_filename(path) as s:
        arr = s.to_dask()
    parallel.clear_store_cache()
    make_synthetic_store(path, 30, 10, frames="all", overwrite=True)  # same shape, another store
    with pytest.raises(errors.ChunkReadError, match="replaced"):
        arr.compute(scheduler="sync")
    # a reader on a store that lost frames since planning
    with imgstore.new_for_filename(path) as s:
        arr = s.to_dask()
    parallel.clear_store_cache()
    import shutil

    shutil.rmtree(f"{path}/000002")
    with pytest.raises(errors.ChunkReadError, match="chunk 2"):
        arr.compute(scheduler="sync")


def test_writers_and_bad_arguments_are_refused(tmp_path):
    w = imgstore.new_for_format("npy", basedir=str(tmp_path / "w"), imgshape=(2, 2), imgdtype=np.uint8)
    try:
        with pytest.raises(errors.ModeError, match="mode 'w'"):
            w.to_dask()
    finally:
        w.close()
    with imgstore.new_for_filename(str(tmp_path / "w")) as s:
        for bad in (0, -3, 2.5, True):
            with pytest.raises(ValueError, match=str(bad)):
                s.to_dask(frames_per_block=bad)
    with pytest.raises(TypeError, match="42"):
        parallel.map_frames(np.mean, [42])


def test_missing_dask_names_the_extra(stores, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.array", None)  # "import dask.array" now raises ImportError
    with imgstore.new_for_filename(stores[0]) as s:
        with pytest.raises(errors.MissingDependencyError, match=r"imgstore\[dask\]"):
            s.to_dask()
        # serial mapping needs no dask
        assert len(parallel.map_frames(np.mean, s)) == len(s)


@pytest.mark.parametrize("fmt", ["ffv1/mkv", "h264/mkv"])
def test_video_store_to_dask(tmp_path, client, fmt):
    """Video stores as dask arrays, serially and in worker processes that reopen the store."""
    # PyAV is a dependency and its wheels carry both codecs: a missing format is a regression
    assert fmt in imgstore.get_supported_formats()
    path = str(tmp_path / "v")
    numbers = [10, 11, 12, 20, 21, 22, 23]
    frames = [make_frame(n, 32, 64, bits=8) for n in numbers]
    with imgstore.new_for_format(fmt, basedir=path, imgshape=(32, 64), imgdtype=np.uint8, chunksize=3) as s:
        for n, img in zip(numbers, frames, strict=True):
            s.add_image(img, n, float(n))
    expected = _serial_frames(path)
    if fmt == "ffv1/mkv":  # lossless
        np.testing.assert_array_equal(expected, np.stack(frames))
    else:
        assert [read_barcode(img, bits=8) for img in expected] == numbers
    with imgstore.new_for_filename(path) as s:
        arr = s.to_dask(frames_per_block=2)
        assert arr.chunks[0] == (2, 1, 2, 1, 1)
        np.testing.assert_array_equal(arr.compute(scheduler="threads"), expected)
        np.testing.assert_array_equal(client.compute(arr[::-1]).result(), expected[::-1])


# ----------------------------------------------------------------------------- mapping


def _expected_frame_table(paths, func) -> pd.DataFrame:
    rows = []
    for k, path in enumerate(paths):
        with imgstore.new_for_filename(path) as s:
            for i in range(len(s)):
                img, (fn, ft) = s.get_image(None, frame_index=i)
                rows.append({"store": k, "frame_index": i, "frame_number": fn, "frame_time": ft, **func(img)})
    return pd.DataFrame(rows)


def test_map_frames_serial_and_on_the_cluster(stores, client):
    def stats(img):
        return {"mean": float(img.mean()), "max": int(img.max())}

    expected = _expected_frame_table(stores, stats)
    serial = parallel.map_frames(stats, stores)
    pd.testing.assert_frame_equal(serial, expected, check_dtype=False)
    on_cluster = parallel.map_frames(stats, stores, client=client, frames_per_task=2)
    pd.testing.assert_frame_equal(on_cluster, serial)
    # scalar results land in 'value'; open stores work as well as paths
    with imgstore.new_for_filename(stores[1]) as s:
        df = parallel.map_frames(lambda img: img.sum(), s, client=client)
        assert df["value"].tolist() == [int(s[i].sum()) for i in range(len(s))]
        assert df["frame_number"].tolist() == s.frame_numbers.tolist()


def test_map_chunks_serial_and_on_the_cluster(stores, client):
    def per_chunk(frames, frame_number, frame_time):
        return {"n": len(frames), "first": int(frame_number[0]), "last_time": float(frame_time[-1]),
                "mean": float(frames.mean())}

    serial = parallel.map_chunks(per_chunk, stores)
    on_cluster = parallel.map_chunks(per_chunk, stores, client=client)
    pd.testing.assert_frame_equal(on_cluster, serial)
    expected = []
    for k, path in enumerate(stores):
        with imgstore.new_for_filename(path) as s:
            for chunk_n in s.chunks:
                sl = s.index.chunk_slice(chunk_n)
                frames = s[sl]
                expected.append({"store": k, "chunk": chunk_n, "frame_index": sl.start,
                                 "frame_number": int(s.frame_numbers[sl.start]),
                                 "frame_time": float(s.frame_times[sl.start]), "n_frames": sl.stop - sl.start,
                                 "n": sl.stop - sl.start, "first": int(s.frame_numbers[sl.start]),
                                 "last_time": float(s.frame_times[sl.stop - 1]), "mean": float(frames.mean())})
    pd.testing.assert_frame_equal(serial, pd.DataFrame(expected), check_dtype=False)
    split = parallel.map_chunks(per_chunk, stores[0], frames_per_task=3)
    assert split["n_frames"].max() == 3 and split["n_frames"].sum() == serial.query("store == 0")["n"].sum()


def test_map_reports_worker_errors(stores, client):
    def fails(img):
        raise ZeroDivisionError("frame too dark")

    with pytest.raises(ZeroDivisionError, match="too dark"):
        parallel.map_frames(fails, stores[0], client=client)


def test_reserved_result_names_are_refused(stores):
    with pytest.raises(ValueError, match="frame_time"):
        parallel.map_frames(lambda img: {"frame_time": 1.0}, stores[0])


def test_serial_runs_use_the_callers_open_stores(stores, monkeypatch):
    import imgstore.factory

    parallel.clear_store_cache()
    opened = []
    real = imgstore.factory.new_for_filename
    monkeypatch.setattr(imgstore.factory, "new_for_filename", lambda *a, **k: opened.append(a) or real(*a, **k))
    with imgstore.new_for_filename(stores[0]) as s:
        s.get_image(None, frame_index=3)
        df = parallel.map_chunks(lambda f, n, t: f.shape[0], s)
        assert df["value"].sum() == len(s)
        assert not s.closed and s.frame_number == s.frame_numbers[3]  # cursor untouched
    assert opened == [] and len(parallel._open_stores()) == 0
