"""Frame numbers held as runs answer exactly as the int64 array they stand for."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import imgstore
from imgstore.checked_index import CheckedFrameIndex
from imgstore.frame_index import FrameIndex
from imgstore.run_array import FrameStack, RunArray
from imgstore.testing.synthetic import make_synthetic_store


def _numbers(steps: list[int], first: int) -> np.ndarray:
    """Frame numbers from steps between neighbours (1: consecutive; 0: repeated; >1: dropped; <0: back)."""
    return np.cumsum(np.array([first, *steps], dtype=np.int64))


numbers = st.builds(_numbers, st.lists(st.sampled_from([1, 1, 1, 1, 2, 5, 0, -3]), max_size=60),
                    st.integers(-1000, 10**12))


@settings(max_examples=300, deadline=None)
@given(numbers, st.data())
def test_items_slices_and_fancy_indexes(values, data):
    runs = RunArray.from_array(values)
    n = len(values)
    assert len(runs) == n and runs.shape == (n,) and runs.dtype == np.int64
    for i in range(-n, n):
        assert runs[i] == values[i] and isinstance(runs[i], np.int64)
    a = data.draw(st.integers(-n - 2, n + 2))
    b = data.draw(st.integers(-n - 2, n + 2))
    step = data.draw(st.sampled_from([1, 2, -1, 3]))
    np.testing.assert_array_equal(runs[a:b:step], values[a:b:step])
    if n:
        picks = np.array(data.draw(st.lists(st.integers(-n, n - 1), max_size=12)), dtype=np.int64)
        np.testing.assert_array_equal(runs[picks], values[picks])
        assert runs.min() == values.min() and runs.max() == values.max()
    np.testing.assert_array_equal(np.asarray(runs), values)
    assert runs.is_sorted() == bool(np.all(values[1:] >= values[:-1]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([1, 1, 1, 2, 7, 0]), max_size=60), st.integers(-50, 50), st.data())
def test_sorted_search_left_and_right(steps, first, data):
    values = _numbers(steps, first)
    runs = RunArray.from_array(values)
    assert runs.is_sorted()
    probes = data.draw(st.lists(st.one_of(st.integers(first - 3, int(values[-1]) + 3),
                                          st.floats(first - 3, int(values[-1]) + 3, allow_nan=False)),
                                min_size=1, max_size=10))
    for v in probes:
        for side in ("left", "right"):
            assert np.searchsorted(runs, v, side=side) == np.searchsorted(values, v, side=side), (v, side)
    arr = np.array([p for p in probes if isinstance(p, int)], dtype=np.int64)
    np.testing.assert_array_equal(np.searchsorted(runs, arr), np.searchsorted(values, arr))


def test_search_of_unsorted_runs_is_refused_or_answered_by_the_array():
    values = np.array([5, 6, 7, 1, 2, 3], dtype=np.int64)
    runs = RunArray.from_array(values)
    assert not runs.is_sorted() and runs.n_runs == 2
    with pytest.raises(ValueError, match="sorted values"):
        runs.searchsorted(6)
    # numpy's own function falls back to the whole array (its answer for unsorted input)
    assert np.searchsorted(runs, 6) == np.searchsorted(values, 6)


def test_other_numpy_calls_get_the_whole_array_once():
    values = np.arange(10, 30, dtype=np.int64)
    runs = RunArray.from_array(values)
    assert runs.n_runs == 1 and runs.nbytes < values.nbytes
    assert (runs == values).all() and np.diff(runs).tolist() == [1] * 19 and runs.tolist() == values.tolist()
    full = np.asarray(runs)
    assert np.asarray(runs) is full and not full.flags.writeable


def test_pickles_without_the_whole_array():
    runs = RunArray.from_array(np.array([3, 4, 5, 9, 10], dtype=np.int64))
    np.asarray(runs)
    back = pickle.loads(pickle.dumps(runs))
    assert back.n_runs == 2 and back._full is None
    np.testing.assert_array_equal(back[:], [3, 4, 5, 9, 10])


def test_bad_runs_are_refused():
    with pytest.raises(ValueError, match="first at position 0"):
        RunArray([1], [5], 3)
    with pytest.raises(ValueError, match="one value per start"):
        RunArray([0, 2], [5], 3)


def test_frame_stack_keeps_runs_until_gaps_are_too_many():
    stack = FrameStack(3)
    stack.append(np.arange(0, 1000), np.arange(1000.0))
    stack.append(np.arange(1000, 2000), np.arange(1000.0, 2000.0))
    fn, ft = stack.arrays()
    assert isinstance(fn, RunArray) and fn.n_runs == 1  # a chunk continuing the last one adds no run
    np.testing.assert_array_equal(ft, np.arange(2000.0))
    every_other = np.arange(2000, 6000, 2)  # a run per frame: runs would cost three times the array
    stack.append(every_other, np.zeros(len(every_other)))
    fn, _ = stack.arrays()
    assert isinstance(fn, np.ndarray)
    np.testing.assert_array_equal(fn, np.concatenate([np.arange(2000), every_other]))


def test_an_index_over_runs_answers_as_one_over_the_array():
    values = np.concatenate([np.arange(0, 500), np.arange(600, 900), np.arange(900, 1000)])
    times = 1000.0 + values / 30
    plain = FrameIndex([0, 1], [500, 400], values, times)
    runs = FrameIndex([0, 1], [500, 400], RunArray.from_array(values), times)
    assert isinstance(runs.frame_number, RunArray)
    assert (runs.frame_min, runs.frame_max) == (plain.frame_min, plain.frame_max) == (0, 999)
    for number in (0, 499, 600, 750, 999):
        assert runs.find_number(number) == plain.find_number(number)
    for number in (-5, 550, 599.5, 1200):
        assert runs.nearest_number(number) == plain.nearest_number(number)
    np.testing.assert_array_equal(runs.positions_for_numbers(np.array([3, 550, 700])),
                                  plain.positions_for_numbers(np.array([3, 550, 700])))
    np.testing.assert_array_equal(runs.metadata_of(np.array([899, 0, 500]))[0],
                                  plain.metadata_of(np.array([899, 0, 500]))[0])


def test_stores_opened_without_a_cache_hold_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSTORE_INDEX_CACHE", "0")
    fn = np.concatenate([np.arange(0, 40), np.arange(45, 100)])
    path = make_synthetic_store(str(tmp_path / "s"), len(fn), 10, frames="none", frame_numbers=fn)
    with imgstore.new_for_filename(path) as s:
        held = s.index._frame_number
        assert isinstance(held, RunArray) and held.n_runs == 2
        np.testing.assert_array_equal(s.frame_numbers, fn)
        assert s.index_of_number(45) == 40
        assert s.get_frame_metadata()["frame_number"] == fn.tolist()


def test_the_cache_written_from_runs_holds_the_numbers(tmp_path):
    fn = np.concatenate([np.arange(0, 300), np.arange(310, 600)])
    path = make_synthetic_store(str(tmp_path / "s"), len(fn), 10, frames="none", frame_numbers=fn)
    with imgstore.new_for_filename(path) as s:
        assert isinstance(s.index._frame_number, RunArray)
        s.save_index_cache()
    with imgstore.new_for_filename(path) as s:
        assert isinstance(s.index, CheckedFrameIndex) and s.index.checked
        np.testing.assert_array_equal(s.frame_numbers, fn)


@pytest.mark.parametrize("side", ["left", "right"])
def test_sorted_search_of_floats_that_round_against_the_items(side):
    # 4e-194 - (-1) is 1.0 in float64: the offset from the difference alone was one short
    values = np.array([-1, 0, 1], dtype=np.int64)
    runs = RunArray.from_array(values)
    for v in (4.410542066697209e-194, -4e-300, 0.0, -0.0, 0.5, 1.0, 1e-16, 1 - 1e-16, -1 - 1e-16, 2.0**60, -2.0**70):
        assert np.searchsorted(runs, v, side=side) == np.searchsorted(values, v, side=side), v
    near = np.arange(2**53 - 5, 2**53 + 5, dtype=np.int64)  # where float64 stops telling integers apart
    runs = RunArray.from_array(near)
    for v in (float(2**53), float(2**53 - 3), 2**53 + 1, float(2**53 + 2)):
        assert np.searchsorted(runs, v, side=side) == np.searchsorted(near, v, side=side), v
