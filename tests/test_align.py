"""Multi-store alignment: every missing-frame policy (first use included), by number and by time."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import imgstore
from imgstore import errors
from imgstore.align import AlignmentError, MultiStore, StoreAligner
from imgstore.backends.directory import DirectoryBackend
from imgstore.testing.synthetic import make_synthetic_store, synthetic_frame

T0 = 1_700_000_000.0  # multiples of 1/4 s are exact at this magnitude


def _store(tmp_path, name, numbers, times=None, chunksize=3):
    numbers = np.asarray(numbers, dtype=np.int64)
    times = T0 + numbers.astype(float) if times is None else T0 + np.asarray(times, dtype=float)
    return make_synthetic_store(str(tmp_path / name), len(numbers), chunksize, frames="all", frame_numbers=numbers,
                                frame_times=times, imgshape=(3, 4))


@pytest.fixture
def three(tmp_path):
    """Three cameras by frame number: a misses 4 and 7, b misses 0 and 5, c has 0, 2, 3, 6."""
    paths = [_store(tmp_path, "a", [0, 1, 2, 3, 5, 6]), _store(tmp_path, "b", [1, 2, 3, 4, 6, 7]),
             _store(tmp_path, "c", [0, 2, 3, 6])]
    stores = [imgstore.new_for_filename(p) for p in paths]
    yield stores
    for s in stores:
        s.close()


def _numbers(step):
    return [None if f is None else f.frame_number for f in step.frames]


def _statuses(step):
    return [None if f is None else f.status for f in step.frames]


def _check_images(step):
    for f in step.frames:
        if f is None:
            continue
        expected = np.zeros((3, 4), np.uint8) if f.frame_number is None else synthetic_frame(f.frame_number, (3, 4))
        np.testing.assert_array_equal(f.img, expected)


# ----------------------------------------------------------------------------- by frame_number


def test_drop_keeps_only_common_numbers(three):
    ms = MultiStore(three, by="frame_number", missing="drop")
    assert ms.keys.tolist() == [2, 3, 6] and len(ms) == 3
    steps = list(ms)
    assert [s.key for s in steps] == [2, 3, 6]
    assert [_numbers(s) for s in steps] == [[2, 2, 2], [3, 3, 3], [6, 6, 6]]
    for s in steps:
        _check_images(s)
        assert [f.frame_time for f in s.frames] == [T0 + s.key] * 3


def test_repeat_holds_the_previous_frame_and_starts_blank(three):
    ms = MultiStore(three, by="frame_number", missing="repeat")
    assert ms.keys.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    steps = list(ms)
    assert [_numbers(s) for s in steps] == [
        [0, None, 0], [1, 1, 0], [2, 2, 2], [3, 3, 3], [3, 4, 3], [5, 4, 3], [6, 6, 6], [6, 7, 6]]
    assert _statuses(steps[0]) == ["ok", "blank", "ok"]
    assert _statuses(steps[1]) == ["ok", "ok", "repeat"]
    assert _statuses(steps[7]) == ["repeat", "ok", "repeat"]
    for s in steps:
        _check_images(s)
    blank = steps[0].frames[1]
    assert blank.frame_index == -1 and np.isnan(blank.frame_time)


def test_blank_and_none(three):
    steps = list(MultiStore(three, by="frame_number", missing="blank"))
    assert [_numbers(s) for s in steps][:3] == [[0, None, 0], [1, 1, None], [2, 2, 2]]
    assert _statuses(steps[4]) == ["blank", "ok", "blank"]
    for s in steps:
        _check_images(s)
    steps = list(MultiStore(three, by="frame_number", missing="none"))
    assert [_numbers(s) for s in steps][4] == [None, 4, None]
    assert steps[4].frames[0] is None and steps[4].frames[1].status == "ok"


def test_repeated_frames_are_read_once_and_in_order(three, monkeypatch):
    reads = []
    original = DirectoryBackend.read_frame

    def spy(self, chunk_n, position):
        reads.append((os.path.basename(self.basedir), chunk_n * 3 + position))
        return original(self, chunk_n, position)

    monkeypatch.setattr(DirectoryBackend, "read_frame", spy)
    list(MultiStore(three, by="frame_number", missing="repeat"))
    for name, n in (("a", 6), ("b", 6), ("c", 4)):
        assert [i for s, i in reads if s == name] == list(range(n))


def test_table_and_random_access(three):
    ms = MultiStore(three, by="frame_number", missing="repeat", names=["left", "right", "top"])
    df = ms.table()
    assert list(df.columns[:2]) == ["step", "frame_number"]
    assert df["frame_number"].tolist() == list(range(8))
    assert df["right.frame_number"].isna().tolist() == [True] + [False] * 7
    assert df["right.frame_index"].tolist() == [-1, 0, 1, 2, 3, 3, 4, 5]
    assert df["top.status"].tolist() == ["ok", "repeat", "ok", "ok", "repeat", "repeat", "ok", "repeat"]
    assert df["left.frame_time"].tolist()[:2] == [T0, T0 + 1]
    assert np.isnan(df["right.frame_time"][0])
    for i in (0, 5, -1):
        assert _numbers(ms[i]) == _numbers(list(ms)[i])
    with pytest.raises(IndexError, match="8"):
        ms[8]
    assert ms.frame_indices.shape == (8, 3)


def test_number_tolerance(tmp_path):
    a = _store(tmp_path, "a", [10, 20, 30])
    b = _store(tmp_path, "b", [11, 22, 29])
    with MultiStore([a, b], by="frame_number", tolerance=1, missing="drop", reference=0) as ms:
        assert [_numbers(s) for s in ms] == [[10, 11], [30, 29]]
    with MultiStore([a, b], by="frame_number", tolerance=2, missing="drop", reference=0) as ms:
        assert [_numbers(s) for s in ms] == [[10, 11], [20, 22], [30, 29]]


# ----------------------------------------------------------------------------- by frame_time


def test_time_tolerance_is_inclusive_and_ties_go_to_the_earlier(tmp_path):
    a = _store(tmp_path, "a", [0, 1, 2, 3], times=[0, 1, 2, 3])
    b = _store(tmp_path, "b", [100, 101, 102], times=[0.25, 1.5, 2.75])
    with MultiStore([a, b], tolerance=0.5, missing="none") as ms:
        # 1.5 is 0.5 from steps 1 and 2: the earlier step keeps it, step 2 has no frame from b
        assert ms.keys.tolist() == [T0, T0 + 1, T0 + 2, T0 + 3]
        assert [_numbers(s) for s in ms] == [[0, 100], [1, 101], [2, None], [3, 102]]
    with MultiStore([a, b], tolerance=0.25, missing="none") as ms:
        # 0.25 away is still within; 1.5 is too far from every step of a: a step of its own
        assert ms.keys.tolist() == [T0, T0 + 1, T0 + 1.5, T0 + 2, T0 + 3]
        assert [_numbers(s) for s in ms] == [[0, 100], [1, None], [None, 101], [2, None], [3, 102]]
    with MultiStore([a, b], tolerance=0.24, missing="none") as ms:
        assert next(_numbers(s) for s in ms) == [0, None]
    with MultiStore([a, b], tolerance=0.25, missing="drop") as ms:
        assert [_numbers(s) for s in ms] == [[0, 100], [3, 102]]
    # with a as the clock, frames only b has are not steps
    with MultiStore([a, b], tolerance=0.25, missing="repeat", reference=0) as ms:
        assert [_numbers(s) for s in ms] == [[0, 100], [1, 100], [2, 100], [3, 102]]
        assert [s.frames[1].status for s in ms] == ["ok", "repeat", "repeat", "ok"]


def test_default_time_tolerance_is_half_the_frame_interval(tmp_path):
    a = _store(tmp_path, "a", range(8), times=np.arange(8) * 0.5)
    b = _store(tmp_path, "b", range(4), times=np.arange(4) + 0.25)
    with MultiStore([a, b], missing="blank") as ms:
        assert ms.tolerance == 0.25
        assert [_numbers(s) for s in ms][:4] == [[0, 0], [1, None], [2, 1], [3, None]]


def test_unsorted_times_and_duplicate_numbers(tmp_path):
    # a camera whose clock stepped back; b repeats a frame number (the first one counts, like get_image)
    a = _store(tmp_path, "a", [0, 1, 2, 3], times=[2, 3, 0, 1])
    b = _store(tmp_path, "b", [5, 5, 6, 7], times=[0, 1, 2, 3])
    with MultiStore([a, b], tolerance=0.1) as ms:
        assert [_numbers(s) for s in ms] == [[2, 5], [3, 5], [0, 6], [1, 7]]
        assert [s.frames[1].frame_index for s in ms] == [0, 1, 2, 3]
    with MultiStore([a, b], by="frame_number", missing="none") as ms:
        assert [_numbers(s) for s in ms] == [[0, None], [1, None], [2, None], [3, None], [None, 5], [None, 6],
                                             [None, 7]]
        assert ms[4].frames[1].frame_index == 0


@pytest.mark.parametrize("block", [1, 2, 1 << 16])
def test_repeated_times_resolve_to_the_earliest_frame_across_search_windows(tmp_path, monkeypatch, block):
    from imgstore import align

    monkeypatch.setattr(align, "_BLOCK", block)
    a = _store(tmp_path, "a", [0, 1, 2, 3], times=[0, 1.25, 2, 3])
    b = _store(tmp_path, "b", [10, 11, 12, 13, 14], times=[0, 1, 1, 1, 3])
    with MultiStore([a, b], tolerance=0.25, missing="none", reference=0) as ms:
        assert [_numbers(s) for s in ms] == [[0, 10], [1, 11], [2, None], [3, 14]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40), min_size=0, max_size=12), min_size=2, max_size=3),
       st.sampled_from(["drop", "repeat", "blank", "none"]), st.sampled_from([0.0, 0.25, 0.5, 1.0]),
       st.sampled_from([1, 2, 3, 1 << 16]))
def test_time_alignment_against_brute_force(offsets, missing, tol, block):
    """With the first store as clock: nearest within tolerance, one frame per step, then the policy.

    Times may repeat within a store (the earliest frame counts); small ``block`` sizes exercise
    the windowed search that big stores use.
    """
    from imgstore import align

    times = [sorted(x / 4 for x in o) for o in offsets]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k, ts in enumerate(times):
            paths.append(make_synthetic_store(os.path.join(tmp, str(k)), len(ts), 5, frames="none",
                                              frame_numbers=np.arange(len(ts)) + 1000 * k,
                                              frame_times=T0 + np.asarray(ts, dtype=float)))
        saved, align._BLOCK = align._BLOCK, block
        try:
            with MultiStore(paths, tolerance=tol, missing=missing, reference=0) as ms:
                got = ms.table()
        finally:
            align._BLOCK = saved
    steps = sorted(set(times[0]))
    chosen = []
    for ts in times:
        pick = []
        for step in steps:
            cands = [(abs(t - step), t, i) for i, t in enumerate(ts) if abs(t - step) <= tol]
            pick.append(min(cands)[2] if cands else -1)
        # one step per frame: the closest, then the earliest
        for i in set(p for p in pick if p >= 0):
            users = [j for j, p in enumerate(pick) if p == i]
            keep = min(users, key=lambda j: (abs(ts[i] - steps[j]), j))
            for j in users:
                if j != keep:
                    pick[j] = -1
        chosen.append(pick)
    rows = list(zip(*chosen, strict=False)) if steps else []
    if missing == "drop":
        keep_rows = [(j, r) for j, r in enumerate(rows) if all(p >= 0 for p in r)]
    else:
        keep_rows = list(enumerate(rows))
    expected = []
    last = [-1] * len(times)
    for _j, r in keep_rows:
        shown = []
        for k, p in enumerate(r):
            if p >= 0:
                last[k] = p
                shown.append(p)
            elif missing == "repeat":
                shown.append(last[k])
            else:
                shown.append(-1)
        expected.append(shown)
    assert got["frame_time"].tolist() == [T0 + steps[j] for j, _ in keep_rows]
    for k in range(len(times)):
        assert got[f"{k}.frame_index"].tolist() == [e[k] for e in expected]


# ----------------------------------------------------------------------------- StoreAligner (reference API)


@pytest.mark.parametrize("policy,fns", [
    (StoreAligner.MISSING_POLICY_DROP, [2, 3, 6]),
    (StoreAligner.MISSING_POLICY_HOLD, [0, 1, 2, 3, 4, 5, 6, 7]),
    (StoreAligner.MISSING_POLICY_BLACK, [0, 1, 2, 3, 4, 5, 6, 7]),
])
def test_store_aligner_applies_the_policy_on_first_use(three, policy, fns):
    aligner = StoreAligner(*three)
    assert aligner.extract_common_frames(policy).tolist() == fns  # the reference got 'drop' wrong here
    out = list(aligner.iter_imgs(return_times=True))
    assert [fn for fn, _, _ in out] == fns
    for fn, imgs, ts in out:
        assert len(imgs) == 3 and len(ts) == 3
        for k, (img, t) in enumerate(zip(imgs, ts, strict=False)):
            has = fn in three[k].frame_numbers
            if has:
                assert t == T0 + fn
                np.testing.assert_array_equal(img, synthetic_frame(fn, (3, 4)))
            else:
                assert np.isnan(t)
                if policy == StoreAligner.MISSING_POLICY_BLACK or fn < three[k].frame_numbers.min():
                    assert not img.any()
                else:
                    held = three[k].frame_numbers[three[k].frame_numbers < fn].max()
                    np.testing.assert_array_equal(img, synthetic_frame(held, (3, 4)))
    assert [fn for fn, _ in aligner.iter_imgs()] == fns


def test_store_aligner_policy_changes_take_effect(three):
    aligner = StoreAligner(*three)
    assert len(aligner.extract_common_frames("zoh")) == 8
    assert aligner.extract_common_frames("drop").tolist() == [2, 3, 6]
    assert [fn for fn, _ in aligner.iter_imgs()] == [2, 3, 6]


def test_store_aligner_errors(three, tmp_path):
    aligner = StoreAligner(*three)
    with pytest.raises(AlignmentError, match="extract_common_frames"):
        next(aligner.iter_imgs())
    with pytest.raises(ValueError, match="'hold'"):
        aligner.extract_common_frames("hold")
    other = make_synthetic_store(str(tmp_path / "other"), 3, 3, frames="all", imgshape=(5, 5))
    with imgstore.new_for_filename(other) as s, pytest.raises(errors.InvalidImageError, match=r"\(5, 5\)"):
        StoreAligner(three[0], s)


# ----------------------------------------------------------------------------- arguments


def test_bad_arguments_name_the_value(three, tmp_path):
    for kwargs, match in (({"by": "time"}, "'time'"), ({"missing": "hold"}, "'hold'"),
                          ({"tolerance": -1}, "-1"), ({"tolerance": float("nan")}, "nan"),
                          ({"tolerance": "x"}, "'x'"), ({"reference": 3}, "3"),
                          ({"names": ["a", "a", "b"]}, "'a'")):
        with pytest.raises(ValueError, match=match):
            MultiStore(three, **kwargs)
    with pytest.raises(ValueError, match="empty"):
        MultiStore([])
    with pytest.raises(TypeError, match="42"):
        MultiStore([three[0], 42])
    w = imgstore.new_for_format("npy", basedir=str(tmp_path / "w"), imgshape=(2, 2), imgdtype=np.uint8)
    try:
        with pytest.raises(errors.ModeError):
            MultiStore([three[0], w])
    finally:
        w.close()


def test_paths_are_opened_and_closed(tmp_path):
    a = _store(tmp_path, "a", [1, 2])
    b = _store(tmp_path, "b", [2, 3])
    ms = MultiStore([a, b], by="frame_number", missing="blank")
    stores = ms.stores
    assert [_numbers(s) for s in ms] == [[1, None], [2, 2], [None, 3]]
    assert isinstance(ms.table(), pd.DataFrame) and ms.names == ["a", "b"]
    ms.close()
    assert all(s.closed for s in stores)


def test_empty_store_in_the_group(tmp_path):
    a = _store(tmp_path, "a", [1, 2])
    empty = str(tmp_path / "empty")
    imgstore.new_for_format("npy", basedir=empty, imgshape=(3, 4), imgdtype=np.uint8).close()
    with MultiStore([a, empty], by="frame_number", missing="repeat") as ms:
        assert [_statuses(s) for s in ms] == [["ok", "blank"], ["ok", "blank"]]
        assert ms.table()["empty.frame_number"].isna().all()
    with MultiStore([a, empty], by="frame_number", missing="drop") as ms:
        assert len(ms) == 0 and list(ms) == []
