"""The conformance suite's writing tests (backends that write)."""

from __future__ import annotations

import gc
import json
import os
import pickle
import re
import shutil
import socket
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pytest

import imgstore
from imgstore import errors, ondisk

if TYPE_CHECKING:
    from imgstore.backends.base import ImgStore

from .cases import (
    FormatCase,
    _add,
    _all_files,
    _assert_frames,
    _open,
)


class WriteTests:
    """Mixin of :class:`StoreConformance`: writing."""

    if TYPE_CHECKING:  # provided by StoreConformance
        chunksize: ClassVar[int]

        @classmethod
        def get_store_class(cls) -> type[ImgStore]: ...
        @classmethod
        def get_payload_writer(cls) -> Callable[..., Any] | None: ...
        @classmethod
        def require(cls, capability: str) -> None: ...
        @classmethod
        def new_writer(cls, case: FormatCase, path: str, **kwargs: Any) -> Any: ...
        @classmethod
        def write_store(cls, case: FormatCase, path: str, numbers: Sequence[int] | None = None,
                        **kwargs: Any) -> str: ...

    def test_refuses_existing_store(self, case: FormatCase, tmp_path: Any) -> None:
        self.require("write")
        path = self.write_store(case, str(tmp_path / "s"), numbers=[1, 2, 3])
        with pytest.raises(errors.StoreExistsError, match="already exists"):
            self.write_store(case, path, numbers=[7])
        with _open(path, self.get_store_class()) as s:
            assert s.get_frame_metadata()["frame_number"] == [1, 2, 3]
        # overwrite replaces it, extra data included
        self.write_store(case, path, numbers=[5, 6, 7], overwrite=True)
        with _open(path, self.get_store_class()) as s:
            assert s.get_frame_metadata()["frame_number"] == [5, 6, 7]
            assert s.get_extra_data() is None
            case.assert_frame(s, s.get_image(6)[0], 6)

    def test_leftover_chunks_refused(self, case: FormatCase, tmp_path: Any) -> None:
        """A folder holding chunk payloads but no ``metadata.yaml`` (a damaged store) is not written over."""
        self.require("write")
        path = self.write_store(case, str(tmp_path / "s"), numbers=[1, 2, 3])
        for name in _all_files(path):
            if name == "metadata.yaml" or name.endswith((".npz", ".json", ".cache")):
                os.remove(os.path.join(path, name))
        payloads = _all_files(path)
        assert payloads, "the chunks' payloads are gone with their indexes"
        with pytest.raises(errors.StoreExistsError, match=r"but no metadata\.yaml"):
            self.new_writer(case, path)
        assert _all_files(path) == payloads

    def test_second_writer_refused(self, case: FormatCase, tmp_path: Any, monkeypatch: Any) -> None:
        self.require("write")
        from imgstore import _lock

        monkeypatch.setattr(_lock, "_PROBE_GRACE", 0.0)  # the lock is held: no need to wait for it
        path = str(tmp_path / "s")
        first = self.new_writer(case, path)
        try:
            with pytest.raises(errors.StoreLockedError, match=f"pid {os.getpid()}"):
                imgstore.new_for_filename(path, mode="a")
            with pytest.raises(errors.StoreLockedError):
                self.new_writer(case, path, overwrite=True)
        finally:
            first.close()
        assert not os.path.exists(os.path.join(path, ".lock"))

    def test_writer_not_picklable(self, case: FormatCase, tmp_path: Any) -> None:
        self.require("write")
        path = str(tmp_path / "s")
        with self.new_writer(case, path) as w:
            w.add_image(case.frame(0), 0, 1.0)
            with pytest.raises(TypeError, match="mode 'w'"):
                pickle.dumps(w)
        with _open(path, self.get_store_class(), mode="a") as a, pytest.raises(TypeError, match="mode 'a'"):
            pickle.dumps(a)

    def test_bad_images_rejected(self, case: FormatCase, tmp_path: Any) -> None:
        self.require("write")
        path = str(tmp_path / "s")
        with self.new_writer(case, path) as s:
            s.add_image(case.frame(0), 0, 1.0)
            wrong_shape = np.zeros((case.shape[0] + 2, case.shape[1], *case.imgshape[2:]), dtype=case.dtype)
            with pytest.raises(errors.InvalidImageError, match=rf"shape \({case.shape[0] + 2}, "):
                s.add_image(wrong_shape, 1, 2.0)
            # another dtype is cast only when no value changes (imgstore 0.4 cast blindly)
            inexact = case.frame(1).astype(np.float64)
            bad_value = 1e-300 if np.dtype(case.dtype).kind == "f" else 0.5
            inexact.flat[7] = bad_value
            with pytest.raises(errors.InvalidImageError, match=re.escape(f"float64 holds {bad_value!r}")):
                s.add_image(inexact, 1, 2.0)
            with pytest.raises(errors.InvalidFrameMetadataError, match="nan"):
                s.add_image(case.frame(1), 1, float("nan"))
            with pytest.raises(errors.InvalidFrameMetadataError, match=r"1\.5"):
                s.add_image(case.frame(1), 1.5, 2.0)
            with pytest.raises(errors.ExtraDataError):
                s.add_extra_data(bad=object())
            s.add_image(case.frame(1), np.int64(1), np.float32(2.0))
            with pytest.warns(imgstore.ImgStoreWarning, match="converted"):
                s.add_image(case.frame(2).astype(np.float64), 2, 3.0)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # one warning per store
                s.add_image(case.frame(3).astype(np.float64), 3, 4.0)
        with _open(path, self.get_store_class()) as s:
            assert s.get_frame_metadata()["frame_number"] == [0, 1, 2, 3]
            for frame_number in (0, 1, 2, 3):
                case.assert_frame(s, s.get_image(frame_number)[0], frame_number)

    def test_refresh_live_writer(self, case: FormatCase, tmp_path: Any) -> None:
        """``refresh()`` of readers in the writer's process picks up its frames as they land."""
        self.require("write")
        cs = self.chunksize
        path = str(tmp_path / "s")
        w = self.new_writer(case, path)
        try:
            _add(w, case, range(0, 2 * cs + 2))
            w.flush()
            with warnings.catch_warnings():
                warnings.simplefilter("error", imgstore.ImgStoreWarning)  # a live writer's chunk is no damage
                readers = [_open(path, self.get_store_class()),
                           _open(path, self.get_store_class(), read_only=True)]
            for r in readers:
                assert r.is_live
                # closed chunks whole; of the open one what is on disk already
                assert 2 * cs <= r.frame_count <= 2 * cs + 2
                _assert_frames(case, r, range(r.frame_count))
            _add(w, case, range(2 * cs + 2, 4 * cs + 1))
            w.flush()
            for r in readers:
                before = r.frame_count
                added = r.refresh()
                assert added == r.frame_count - before
                assert 4 * cs <= r.frame_count <= 4 * cs + 1
                _assert_frames(case, r, range(r.frame_count))
        finally:
            w.close()
        for r in readers:
            with r:
                before = r.frame_count
                assert r.refresh() == 4 * cs + 1 - before
                assert not r.is_live
                _assert_frames(case, r, range(4 * cs + 1))
                assert r.chunks == list(range(5))
                assert r.refresh() == 0

    def test_unclosed_writer_recovered_and_repaired(self, case: FormatCase, tmp_path: Any) -> None:
        """A writer that never closes: readers recover what is on disk; ``imgstore.repair`` finishes the store."""
        self.require("write")
        cs = self.chunksize
        path = str(tmp_path / "s")
        n = 2 * cs + 3
        w = self.new_writer(case, path)
        for fn in range(n):
            w.add_image(case.frame(fn), fn, 100.0 + fn)
            w.add_extra_data(i=fn)
        w.flush()
        del w  # dropped without close(), as by a crash: the open chunk stays journaled
        gc.collect()
        lock = os.path.join(path, ".lock")
        assert not os.path.exists(lock), "an abandoned writer kept its lock"
        # what a killed process leaves: a lock file nobody holds
        with open(lock, "w") as f:
            json.dump({"pid": 2**31 - 7, "host": socket.gethostname(), "since": 0.0}, f)

        with pytest.warns(imgstore.ImgStoreWarning, match="chunk 2"):
            r = _open(path, self.get_store_class())
        with r:
            got = r.get_frame_metadata()["frame_number"]
            # closed chunks are complete; the open one loses at most what the encoder still held
            assert got == list(range(len(got))) and 2 * cs <= len(got) <= n
            _assert_frames(case, r, range(len(got)))
            # records added with frames the encoder still held are left out with those frames
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
                assert r.get_extra_data()["i"].tolist() == list(range(len(got)))
        recovered = len(got)

        report = imgstore.repair(path)
        assert report.changed and not report.left, str(report)
        # only those records are set aside (in damaged/, never deleted), and only if frames were lost
        assert len(report.moved) == (recovered < n), str(report)
        assert all(m.startswith("damaged/") and m.endswith(".extra.jsonl") for m in report.moved), str(report)
        assert report.recovered == {2: recovered - 2 * cs}
        assert report.frame_count == recovered
        assert "stale lock" in str(report)
        leftovers = [f for f in _all_files(path) if f.endswith((".journal", ".jsonl", ".partial", ".lock"))
                     and not f.startswith(f"{ondisk.DAMAGED_FOLDER}{os.sep}")]
        assert leftovers == []
        with warnings.catch_warnings():
            warnings.simplefilter("error", imgstore.ImgStoreWarning)  # a finished store
            r = _open(path, self.get_store_class())
        with r:
            assert r.get_frame_metadata()["frame_number"] == list(range(recovered))
            _assert_frames(case, r, range(recovered))
            assert r.get_extra_data()["i"].tolist() == list(range(recovered))
        again = imgstore.repair(path)
        assert not again.changed and again.frame_count == recovered
        # a repaired store takes appended frames
        with _open(path, self.get_store_class(), mode="a") as a:
            _add(a, case, range(recovered, recovered + 3))
        with _open(path, self.get_store_class()) as r:
            assert r.get_frame_metadata()["frame_number"] == list(range(recovered + 3))
            _assert_frames(case, r, range(recovered, recovered + 3))

    def test_insert_chunk(self, case: FormatCase, tmp_path: Any) -> None:
        """An existing payload becomes a chunk between frames added before and after it."""
        self.require("adopt")
        payload_writer = self.get_payload_writer()
        assert payload_writer is not None, f"{type(self).__name__} needs a payload_writer"
        path = str(tmp_path / "s")
        inserted = [100, 101, 102, 103, 104]
        with self.new_writer(case, path) as w:
            ext = w.metadata.get("extension") or ""
            payload = str(tmp_path / ("payload" + ext))
            payload_writer(payload, case.fmt, [case.frame(fn) for fn in inserted])
            _add(w, case, range(3))
            with pytest.raises(errors.InvalidFrameMetadataError, match="4"):
                w.insert_chunk(payload, inserted[:4], [200.0 + k for k in range(4)], move=False)
            wrong = str(tmp_path / "payload.wrong")
            shutil.copyfile(payload, wrong)
            with pytest.raises(errors.UnsupportedFormatError, match=ext.replace(".", r"\.") or "payload"):
                w.insert_chunk(wrong, inserted, [200.0 + k for k in range(5)])
            w.insert_chunk(payload, inserted, [200.0 + k for k in range(5)], move=False)
            assert os.path.exists(payload)  # copied, not moved
            assert w.frame_count == 8
            _add(w, case, range(300, 302))
        with _open(path, self.get_store_class()) as r:
            assert r.get_frame_metadata()["frame_number"] == [0, 1, 2, *inserted, 300, 301]
            assert r.get_frame_metadata()["frame_time"][3:8] == [200.0 + k for k in range(5)]
            assert r.chunks == [0, 1, 2]
            for i, fn in enumerate(r.frame_numbers):
                case.assert_frame(r, r.get_frame_at(i).image, int(fn))
