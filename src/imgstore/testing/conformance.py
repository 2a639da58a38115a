"""A test suite every store format must pass.

Subclass :class:`StoreConformance` in a test module and set ``fmt`` (and optionally
``color``, ``dtype``, ``shape``); pytest then runs every ``test_*`` method against that
format. Lossless formats must read back bit-exact, lossy ones barcode-exact.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, ClassVar

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.testing.barcode import make_frame, read_barcode

#: frame numbers with a gap, a run out of order and a repeat (the first one must win)
FRAME_NUMBERS: list[int] = [*range(0, 12), *range(30, 20, -1), 40, 41, 41, *range(50, 57)]


def frame_times_for(numbers: list[int]) -> list[float]:
    """Increasing frame times 1/25 s apart starting at 1.7e9."""
    return [1_700_000_000.0 + 0.04 * i for i in range(len(numbers))]


class StoreConformance:
    """Shared checks for one store format (see module docstring)."""

    fmt: ClassVar[str] = ""
    color: ClassVar[bool] = False
    dtype: ClassVar[str] = "uint8"
    shape: ClassVar[tuple[int, int]] = (96, 128)
    chunksize: ClassVar[int] = 7
    write_options: ClassVar[dict[str, Any]] = {}

    # ------------------------------------------------------------- helpers

    @property
    def imgshape(self) -> tuple[int, ...]:
        return (*self.shape, 3) if self.color else tuple(self.shape)

    def frame(self, frame_number: int) -> np.ndarray:
        h, w = self.shape
        return make_frame(frame_number, h, w, color=self.color, dtype=self.dtype)

    def write(self, path: str, numbers: list[int] | None = None, extra_every: int = 0, **kwargs) -> str:
        numbers = FRAME_NUMBERS if numbers is None else numbers
        times = frame_times_for(numbers)
        kwargs.setdefault("chunksize", self.chunksize)
        store = imgstore.new_for_format(self.fmt, basedir=path, imgshape=self.imgshape, imgdtype=self.dtype,
                                        metadata={"experimenter": "conformance", "nested": {"a": [1, 2]}},
                                        **self.write_options, **kwargs)
        with store:
            for i, (fn, ft) in enumerate(zip(numbers, times)):
                store.add_image(self.frame(fn), fn, ft)
                if extra_every and i % extra_every == 0:
                    store.add_extra_data(temperature=20.0 + i, note=f"n{i}")
        return path

    def assert_frame(self, store, img: np.ndarray, frame_number: int) -> None:
        assert img.shape == store.image_shape, (img.shape, store.image_shape)
        assert img.dtype == np.dtype(self.dtype)
        if store.lossless:
            np.testing.assert_array_equal(img, self.frame(frame_number))
        else:
            assert read_barcode(img) == frame_number

    @pytest.fixture
    def store_path(self, tmp_path) -> str:
        return self.write(str(tmp_path / "store"), extra_every=5)

    @pytest.fixture
    def store(self, store_path):
        with imgstore.new_for_filename(store_path) as s:
            yield s

    # ------------------------------------------------------------- reading

    def test_metadata(self, store):
        assert store.frame_count == len(FRAME_NUMBERS) == len(store)
        assert store.format in (self.fmt, self.fmt.replace("+color", ""), "mjpeg/avi")
        assert store.image_shape == self.imgshape
        assert store.frame_min == min(FRAME_NUMBERS)
        assert store.frame_max == max(FRAME_NUMBERS)
        times = frame_times_for(FRAME_NUMBERS)
        assert store.frame_time_min == times[0] and store.frame_time_max == times[-1]
        assert store.duration == pytest.approx(times[-1] - times[0])
        n_chunks = -(-len(FRAME_NUMBERS) // self.chunksize)
        assert store.chunks == list(range(n_chunks))
        assert store.user_metadata == {"experimenter": "conformance", "nested": {"a": [1, 2]}}
        md = store.get_frame_metadata()
        assert md["frame_number"] == FRAME_NUMBERS
        assert md["frame_time"] == times
        np.testing.assert_array_equal(store.frame_numbers, FRAME_NUMBERS)
        assert len(store.uuid) == 32
        created, tz = store.created
        assert created.tzinfo is not None and tz is not None

    def test_sequential(self, store):
        seen = []
        while True:
            try:
                img, (fn, ft) = store.get_next_image()
            except EOFError:
                break
            self.assert_frame(store, img, fn)
            seen.append((fn, ft))
        assert seen == list(zip(FRAME_NUMBERS, frame_times_for(FRAME_NUMBERS)))
        with pytest.raises(EOFError):
            store.get_next_image()

    def test_random_by_number(self, store):
        rng = np.random.default_rng(1)
        for fn in rng.choice(sorted(set(FRAME_NUMBERS)), size=40):
            img, (got, _) = store.get_image(fn)  # numpy integers are valid arguments
            assert got == fn
            self.assert_frame(store, img, int(fn))

    def test_repeated_number_first_wins(self, store):
        _, (fn, ft) = store.get_image(41)
        assert ft == frame_times_for(FRAME_NUMBERS)[FRAME_NUMBERS.index(41)]

    def test_random_by_index(self, store):
        rng = np.random.default_rng(2)
        for i in rng.integers(0, len(FRAME_NUMBERS), size=40):
            img, (fn, _) = store.get_image(None, frame_index=i)
            assert fn == FRAME_NUMBERS[i]
            self.assert_frame(store, img, fn)

    def test_nearest(self, store):
        times = frame_times_for(FRAME_NUMBERS)
        for i in (0, 5, 13, len(times) - 1):
            img, (fn, ft) = store.get_nearest_image(times[i] + 0.011)
            assert (fn, ft) == (FRAME_NUMBERS[i], times[i])
            self.assert_frame(store, img, fn)
        _, (fn, _) = store.get_image(15, exact_only=False)
        assert fn == min(FRAME_NUMBERS, key=lambda n: (abs(n - 15), FRAME_NUMBERS.index(n)))

    def test_next_continues_after_seek(self, store):
        store.get_image(None, frame_index=10)
        assert store.get_next_framenumber() == FRAME_NUMBERS[11]
        _, (fn, _) = store.get_next_image()
        assert fn == FRAME_NUMBERS[11]
        assert store.frame_number == fn

    def test_missing_frame_raises(self, store):
        with pytest.raises(errors.FrameNotFoundError, match="#17"):
            store.get_image(17)
        with pytest.raises(ValueError):  # old code catches ValueError
            store.get_image(10_000)

    def test_bad_index_raises(self, store):
        for bad in (-1, len(FRAME_NUMBERS), np.int64(10_000)):
            with pytest.raises(errors.FrameIndexError, match=str(int(bad))):
                store.get_image(None, frame_index=bad)
        with pytest.raises(ValueError):
            store.get_image(0, frame_index=-5)

    def test_array_view(self, store):
        n = len(FRAME_NUMBERS)
        block = store[3:9:2]
        assert block.shape == (3, *self.imgshape)
        for img, i in zip(block, range(3, 9, 2)):
            self.assert_frame(store, img, FRAME_NUMBERS[i])
        self.assert_frame(store, store[-1], FRAME_NUMBERS[-1])
        picked = store[np.array([20, 2, 20])]
        assert [read_barcode(x) for x in picked] == [FRAME_NUMBERS[20], FRAME_NUMBERS[2], FRAME_NUMBERS[20]]
        with pytest.raises(IndexError):
            store[n]
        assert sum(1 for _ in store) == n
        # the array view does not move the classic cursor
        _, (fn, _) = store.get_next_image()
        assert fn == FRAME_NUMBERS[0]

    def test_extra_data(self, store):
        df = store.get_extra_data()
        expected_rows = list(range(0, len(FRAME_NUMBERS), 5))
        assert list(df["frame_index"]) == expected_rows
        assert list(df["frame_number"]) == [FRAME_NUMBERS[i] for i in expected_rows]
        assert list(df["note"]) == [f"n{i}" for i in expected_rows]
        assert df["temperature"].tolist() == [20.0 + i for i in expected_rows]

    def test_extract_only_frame(self, store_path, store):
        img = imgstore.extract_only_frame(store_path, 9)
        fn = FRAME_NUMBERS[9]
        if store.lossless:
            np.testing.assert_array_equal(img, self.frame(fn))
        else:
            assert read_barcode(img) == fn

    def test_reading_changes_nothing(self, store_path):
        before = snapshot_files(store_path)
        with imgstore.new_for_filename(store_path) as s:
            for i in range(len(s)):
                s.get_image(None, frame_index=i)
        assert snapshot_files(store_path) == before

    # ------------------------------------------------------------- writing

    def test_refuses_existing_store(self, store_path):
        with pytest.raises(errors.StoreExistsError, match="already exists"):
            self.write(store_path)
        with imgstore.new_for_filename(store_path) as s:
            assert s.frame_count == len(FRAME_NUMBERS)

    def test_overwrite(self, store_path):
        self.write(store_path, numbers=[5, 6, 7], overwrite=True)
        with imgstore.new_for_filename(store_path) as s:
            assert s.get_frame_metadata()["frame_number"] == [5, 6, 7]
            assert s.get_extra_data() is None

    def test_append(self, tmp_path):
        path = self.write(str(tmp_path / "s"), numbers=list(range(10)))
        with imgstore.new_for_filename(path, mode="a") as s:
            for fn in range(10, 16):
                s.add_image(self.frame(fn), fn, 1_800_000_000.0 + fn)
        with imgstore.new_for_filename(path) as s:
            assert s.get_frame_metadata()["frame_number"] == list(range(16))
            self.assert_frame(s, s.get_image(14)[0], 14)

    def test_second_writer_refused(self, tmp_path):
        path = str(tmp_path / "s")
        first = imgstore.new_for_format(self.fmt, basedir=path, imgshape=self.imgshape, imgdtype=self.dtype,
                                        **self.write_options)
        try:
            with pytest.raises(errors.StoreLockedError):
                imgstore.new_for_filename(path, mode="a")
        finally:
            first.close()
        assert not os.path.exists(os.path.join(path, ".lock"))

    def test_bad_images_rejected(self, tmp_path):
        path = str(tmp_path / "s")
        with imgstore.new_for_format(self.fmt, basedir=path, imgshape=self.imgshape, imgdtype=self.dtype,
                                     chunksize=self.chunksize, **self.write_options) as s:
            s.add_image(self.frame(0), 0, 1.0)
            wrong_shape = np.zeros((self.shape[0] + 2, self.shape[1]) + self.imgshape[2:], dtype=self.dtype)
            with pytest.raises(errors.InvalidImageError, match="shape"):
                s.add_image(wrong_shape, 1, 2.0)
            # another dtype is cast only when no value changes (imgstore 0.4 cast blindly)
            inexact = self.frame(1).astype(np.float64)
            bad_value = 1e-300 if np.dtype(self.dtype).kind == "f" else 0.5
            inexact.flat[7] = bad_value
            with pytest.raises(errors.InvalidImageError, match=f"float64 holds {bad_value!r}"):
                s.add_image(inexact, 1, 2.0)
            with pytest.raises(errors.InvalidFrameMetadataError, match="nan"):
                s.add_image(self.frame(1), 1, float("nan"))
            with pytest.raises(errors.InvalidFrameMetadataError, match="1.5"):
                s.add_image(self.frame(1), 1.5, 2.0)
            with pytest.raises(errors.ExtraDataError):
                s.add_extra_data(bad=object())
            s.add_image(self.frame(1), np.int64(1), np.float32(2.0))
            with pytest.warns(imgstore.ImgStoreWarning, match="converted"):
                s.add_image(self.frame(2).astype(np.float64), 2, 3.0)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # one warning per store
                s.add_image(self.frame(3).astype(np.float64), 3, 4.0)
        with imgstore.new_for_filename(path) as s:
            assert s.get_frame_metadata()["frame_number"] == [0, 1, 2, 3]
            for frame_number in (2, 3):
                self.assert_frame(s, s.get_image(frame_number)[0], frame_number)

    def test_unclosed_writer_recovered(self, tmp_path):
        """A writer that never closes (crash): closed chunks and the journaled chunk read back."""
        path = str(tmp_path / "s")
        s = imgstore.new_for_format(self.fmt, basedir=path, imgshape=self.imgshape, imgdtype=self.dtype,
                                    chunksize=self.chunksize, **self.write_options)
        n = self.chunksize * 2 + 3
        for fn in range(n):
            s.add_image(self.frame(fn), fn, 100.0 + fn)
            s.add_extra_data(i=fn)
        # no close(): the open chunk only exists as journal + partial payload
        s.flush()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with imgstore.new_for_filename(path) as r:
                got = r.get_frame_metadata()["frame_number"]
                # closed chunks are complete; the open one loses at most what the encoder still held
                assert got == list(range(len(got)))
                assert len(got) >= self.chunksize * 2
                for i in range(len(got)):
                    self.assert_frame(r, r.get_image(None, frame_index=i)[0], i)
                assert r.get_extra_data()["i"].tolist() == list(range(n))
        s.close()
        with imgstore.new_for_filename(path) as r:
            assert r.get_frame_metadata()["frame_number"] == list(range(n))


def snapshot_files(path: str) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file below ``path`` (to show that reading changed nothing)."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns)
    return out
