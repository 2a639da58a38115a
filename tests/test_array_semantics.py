"""A store is a lazy array: same answers as numpy on a materialised copy, for any key (hypothesis)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import imgstore
from imgstore.backends.arrayview import plan_indexing
from imgstore.errors import ArrayTooLargeError, FrameIndexError, ImgStoreError, MissingDependencyError

GREY = (7, 5, 6)
COLOUR = (6, 4, 5, 3)


def _write(path, shape, first_number=100):
    rng = np.random.default_rng(len(shape))
    frames = rng.integers(0, 256, shape, dtype=np.uint8)
    with imgstore.new_for_format("npy", basedir=str(path), imgshape=shape[1:], chunksize=3) as s:
        for i, img in enumerate(frames):
            s.add_image(img, first_number + 2 * i, 1_700_000_000.0 + i / 10)
    return frames


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    out = {}
    for name, shape in (("grey", GREY), ("colour", COLOUR)):
        path = tmp_path_factory.mktemp(name) / "s"
        frames = _write(path, shape)
        out[name] = (imgstore.new_for_filename(str(path)), frames)
    yield out
    for store, _ in out.values():
        store.close()


def _entry(shape_axis: int):
    """One index entry for an axis of this size: int (in or just out of range), slice, array or mask."""
    return st.one_of(
        st.integers(-shape_axis - 1, shape_axis),
        st.slices(shape_axis),
        hnp.arrays(np.intp, st.integers(0, 4), elements=st.integers(-shape_axis, shape_axis - 1)),
        hnp.arrays(np.bool_, shape_axis),
        st.lists(st.integers(-shape_axis, shape_axis - 1), max_size=3),
    )


@st.composite
def keys(draw, shape):
    kind = draw(st.sampled_from(["basic", "advanced", "mixed", "mask"]))
    if kind == "basic":
        return draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    if kind == "advanced":
        return draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(min_dims=0, max_dims=2,
                                                                                     max_side=3)))
    if kind == "mask":
        k = draw(st.integers(1, len(shape)))
        return draw(hnp.arrays(np.bool_, shape[:k]))
    n = draw(st.integers(1, len(shape)))
    entries = [draw(_entry(shape[axis])) for axis in range(n)]
    if draw(st.booleans()):
        entries.insert(draw(st.integers(0, n)), Ellipsis)
    if draw(st.booleans()):
        entries.insert(draw(st.integers(0, len(entries))), None)
    return tuple(entries)


def _numpy_answer(frames, key):
    try:
        return frames[key], None
    except IndexError as exc:
        return None, exc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), which=st.sampled_from(["grey", "colour"]))
def test_indexing_equals_numpy_on_a_materialised_copy(stores, data, which):
    store, frames = stores[which]
    key = data.draw(keys(frames.shape), label="key")
    expected, error = _numpy_answer(frames, key)
    if error is not None:
        with pytest.raises(FrameIndexError):
            store[key]
        return
    got = store[key]
    assert type(got) is type(expected)
    assert np.shape(got) == np.shape(expected)
    assert np.asarray(got).dtype == np.asarray(expected).dtype
    assert np.array_equal(got, expected)


def test_array_attributes(stores):
    for store, frames in stores.values():
        assert store.shape == frames.shape
        assert store.dtype == frames.dtype
        assert store.ndim == frames.ndim
        assert store.size == frames.size
        assert store.nbytes == frames.nbytes
        assert len(store) == len(frames)
        np.testing.assert_array_equal(np.asarray(store), frames)
        np.testing.assert_array_equal(np.asarray(store, dtype=np.float32), frames.astype(np.float32))


def test_examples_from_the_issue(stores):
    store, frames = stores["grey"]
    assert store[3, 2, 4] == frames[3, 2, 4] and isinstance(store[3, 2, 4], np.uint8)
    np.testing.assert_array_equal(store[0, :3, :3], frames[0, :3, :3])
    np.testing.assert_array_equal(store[::-2, ..., 1], frames[::-2, ..., 1])
    mask = frames.mean(axis=(1, 2)) > frames.mean()
    np.testing.assert_array_equal(store[mask], frames[mask])


def test_only_the_selected_frames_are_read(stores, monkeypatch):
    store, _ = stores["grey"]
    plan = plan_indexing((np.array([[5, 1], [5, -1]]), slice(None), 2), store.shape)
    assert plan.frames.tolist() == [1, 5, 6]
    read = []
    real = type(store).read_frames_at

    def spy(self, frame_indices):
        read.append(list(frame_indices))
        return real(self, frame_indices)

    monkeypatch.setattr(type(store), "read_frames_at", spy)
    store[[5, 1, 5], 2:4]
    store[-1:2:-2, 0, 0]
    assert read == [[1, 5], [4, 6]]


def test_errors_name_the_bad_value(stores):
    store, _ = stores["grey"]
    with pytest.raises(FrameIndexError, match="frame_index 7 out of range for a store of 7 frames"):
        store[7, 0]
    with pytest.raises(FrameIndexError, match="index 9 is out of bounds for axis 2 with size 6"):
        store[:, 0, 9]
    with pytest.raises(FrameIndexError, match=r"boolean mask of shape \(3,\)"):
        store[np.ones(3, bool)]
    with pytest.raises(FrameIndexError, match=r"boolean index did not match indexed array along axis 0"):
        store[np.ones((6, 5), bool)]  # a mask over frames and rows, one frame short
    with pytest.raises(FrameIndexError, match=r"1\.5"):
        store[1.5]
    with pytest.raises(FrameIndexError, match="too many indices"):
        store[0, 0, 0, 0]
    for key in (slice(None, None, 0), (0, slice(2, 4, 0)), (slice(None), 0, slice(None, None, 0))):
        with pytest.raises(FrameIndexError, match=r"slice step cannot be zero.*slice\(.*0\)"):
            store[key]
    err = FrameIndexError("x")
    assert isinstance(err, ImgStoreError) and isinstance(err, IndexError)


def test_asarray_refuses_a_store_above_the_limit(stores):
    store, frames = stores["grey"]
    store.max_array_bytes = frames.nbytes - 1
    try:
        with pytest.raises(ArrayTooLargeError, match=rf"holds {frames.nbytes} bytes.*max_array_bytes="
                                                      rf"{frames.nbytes - 1}") as info:
            np.asarray(store)
        assert isinstance(info.value, MemoryError) and isinstance(info.value, ImgStoreError)
        np.testing.assert_array_equal(store[:2], frames[:2])  # slicing is not limited
    finally:
        del store.max_array_bytes
    with pytest.raises(ValueError, match="without copying"):
        store.__array__(copy=False)


def test_to_xarray_labels_frames_with_number_and_time(stores):
    pytest.importorskip("xarray")
    pytest.importorskip("dask")
    store, frames = stores["colour"]
    arr = store.to_xarray()
    assert arr.dims == ("frame", "y", "x", "channel")
    assert arr.coords["channel"].values.tolist() == ["b", "g", "r"]
    np.testing.assert_array_equal(arr.coords["frame_number"].values, store.frame_numbers)
    np.testing.assert_array_equal(arr.coords["frame_time"].values, store.frame_times)
    by_number = arr.swap_dims(frame="frame_number")
    np.testing.assert_array_equal(by_number.sel(frame_number=104).values, frames[2])
    np.testing.assert_array_equal(arr.isel(frame=slice(1, 4)).values, frames[1:4])


def test_to_xarray_without_xarray_names_the_extra(stores, monkeypatch):
    monkeypatch.setitem(sys.modules, "xarray", None)
    with pytest.raises(MissingDependencyError, match=r"imgstore\[xarray\]"):
        stores["grey"][0].to_xarray()


def test_import_imgstore_loads_no_integration():
    code = ("import sys, imgstore; s = imgstore.new_for_filename; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('xarray', 'napari', 'npe2', 'pynwb', 'hdmf', "
            "'sleap_io', 'torch', 'dask') or m.startswith('imgstore.integrations')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
