"""The numpy frame index against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgstore import errors
from imgstore.frame_index import FrameIndex


def _index(chunks):
    return FrameIndex.from_chunks(
        (c, np.asarray(fn, dtype=np.int64), np.asarray(ft, dtype=np.float64)) for c, fn, ft in chunks)


chunk_lists = st.lists(
    # times on a 1/4 s grid: distances are then exact, so "earlier on ties" is well defined
    st.lists(st.tuples(st.integers(-50, 50), st.integers(0, 4000).map(lambda x: x / 4)), max_size=8),
    min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(chunk_lists, st.integers(-60, 60), st.floats(-10, 1010, allow_nan=False))
def test_lookups_match_brute_force(chunks, number, time):
    idx = _index((c * 2, [r[0] for r in rows], [r[1] for r in rows]) for c, rows in enumerate(chunks))
    flat = [(c * 2, p, fn, ft) for c, rows in enumerate(chunks) for p, (fn, ft) in enumerate(rows)]
    assert len(idx) == len(flat)
    for i, (c, p, _fn, _ft) in enumerate(flat):
        assert idx.locate(i) == (c, p)
    numbers = [r[2] for r in flat]
    times = [r[3] for r in flat]
    if number in numbers:
        assert idx.find_number(number) == numbers.index(number)  # first wins
    else:
        with pytest.raises(errors.FrameNotFoundError, match=str(number)):
            idx.find_number(number)
    if flat:
        best = min(range(len(flat)), key=lambda i: (abs(numbers[i] - number), i))
        assert idx.nearest_number(number) == best
        best_t = min(range(len(flat)), key=lambda i: (abs(times[i] - time), i))
        assert idx.nearest_time(time) == best_t
        got = idx.positions_for_numbers(np.array([number, numbers[0]]))
        assert got[1] == 0 and got[0] == (numbers.index(number) if number in numbers else -1)


def test_bounds_and_types():
    idx = _index([(0, [5, 6, 7], [1.0, 2.0, 3.0]), (3, [8], [4.0])])
    assert idx.chunks == [0, 3]
    assert idx.locate(np.int32(3)) == (3, 0)
    assert idx.chunk_slice(3) == slice(3, 4) and idx.chunk_slice(1) == slice(0, 0)
    for bad in (-1, 4, 2.5, "x"):
        with pytest.raises(errors.FrameIndexError, match=str(bad)):
            idx.locate(bad)
    with pytest.raises(errors.FrameNotFoundError, match=r"5.5"):
        idx.find_number(5.5)
    assert idx.find_number(np.uint8(7)) == 2
    assert (idx.frame_min, idx.frame_max, idx.frame_time_min, idx.frame_time_max) == (5, 8, 1.0, 4.0)


def test_empty():
    idx = FrameIndex.empty()
    assert len(idx) == 0 and idx.chunks == []
    assert np.isnan(idx.frame_min)
    with pytest.raises(errors.FrameNotFoundError):
        idx.nearest_time(1.0)
    with pytest.raises(errors.FrameIndexError):
        idx.locate(0)


def test_two_million_frames_do_not_scan():
    n = 2_000_000
    fn = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(0)
    fn[::1000] = rng.integers(0, n, size=len(fn[::1000]))  # not sorted: forces the argsort path
    idx = FrameIndex([0, 1], [n // 2, n // 2], fn, np.arange(n) * 0.04)
    target = int(fn[1_234_567])
    assert fn[idx.find_number(target)] == target
    assert idx.nearest_time(0.04 * 1_999_999 + 0.001) == n - 1
