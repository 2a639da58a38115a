"""A file system that fills up or turns read-only: named errors, nothing written before is lost.

Two ways to get such a file system:

* :class:`FaultyFS` monkeypatches the calls imgstore writes with (``open``, ``os.open``,
  ``os.write``, ``os.replace``, ``os.mkdir``, ``os.unlink``...) for paths under one folder: a
  read-only file system (``EROFS``) or a disk that is full after N more bytes (a short write,
  then ``ENOSPC``). Portable, deterministic, works as root (where ``chmod`` restricts nothing).
* a real tmpfs mounted for the test (only where the test runs with the right to mount, e.g.
  as root in CI): a really full disk and a real ``remount,ro``, also for video payloads, which
  are written by FFmpeg and so invisible to monkeypatching.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import shutil
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.backends.disk_guard import RESERVE_FILENAME
from imgstore.repair import repair
from imgstore.testing.barcode import make_frame, read_barcode

from .test_crash_torture import is_video, torture_formats

SHAPE = (24, 32)


class FaultyFS:
    """Make the file system under ``root`` read-only or full, for this process.

    Parameters
    ----------
    monkeypatch
        pytest's fixture (undone at the end of the test, or by :meth:`lift`).
    root
        Only paths under this folder are affected.
    mode
        ``'readonly'`` or ``'full'``.
    budget
        For ``'full'``: bytes that can still be written.
    """

    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: str, mode: str, budget: int = 0) -> None:
        self.root = os.path.realpath(root)
        self.mode = mode
        self.budget = budget
        self.active = True
        self.written = 0
        self._fds: set[int] = set()
        self._real = {name: getattr(os, name) for name in ("open", "write", "replace", "rename", "mkdir",
                                                           "unlink", "remove", "rmdir")}
        self._real_open = builtins.open
        mp = monkeypatch
        mp.setattr(builtins, "open", self._open_file)
        mp.setattr(os, "open", self._os_open)
        mp.setattr(os, "write", self._os_write)
        for name in ("replace", "rename"):
            mp.setattr(os, name, self._guard2(name))
        for name in ("mkdir", "unlink", "remove", "rmdir"):
            mp.setattr(os, name, self._guard1(name))

    def lift(self) -> None:
        """The file system works again (space freed, remounted read-write)."""
        self.active = False

    def _under(self, path) -> bool:
        if isinstance(path, int):
            return False
        return os.path.realpath(os.fspath(path)).startswith(self.root + os.sep) or \
            os.path.realpath(os.fspath(path)) == self.root

    def _refuse(self, path) -> OSError:
        if self.mode == "readonly":
            return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))

    def _spend(self, n: int) -> int:
        """Bytes of an ``n``-byte write that fit."""
        if not self.active:
            return n
        if self.mode == "readonly":
            return -1
        take = min(n, self.budget)
        self.budget -= take
        self.written += take
        return take

    # --------------------------------------------------------------- patched calls

    def _open_file(self, file, mode="r", *args, **kwargs):
        writing = any(c in mode for c in "wax+") and self._under(file)
        if writing and self.active and self.mode == "readonly":
            raise self._refuse(file)
        f = self._real_open(file, mode, *args, **kwargs)
        return _BudgetFile(f, self, file) if writing else f

    def _os_open(self, path, flags, mode=0o777, *args, **kwargs):
        if self.active and self.mode == "readonly" and self._under(path) and flags & self._WRITE_FLAGS:
            raise self._refuse(path)
        fd = self._real["open"](path, flags, mode, *args, **kwargs)
        if self._under(path) and flags & self._WRITE_FLAGS:
            self._fds.add(fd)
        return fd

    def _os_write(self, fd, data):
        if fd not in self._fds or not self.active:
            return self._real["write"](fd, data)
        take = self._spend(len(data))
        if take < 0:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        if take == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._real["write"](fd, bytes(data[:take]))  # a short write, as the kernel does

    def _guard1(self, name):
        def call(path, *args, **kwargs):
            # removing files frees space: only a read-only file system refuses it
            if self.active and self._under(path) and (
                    self.mode == "readonly" or (name == "mkdir" and self.budget <= 0)):
                raise self._refuse(path)
            return self._real[name](path, *args, **kwargs)

        return call

    def _guard2(self, name):
        def call(src, dst, *args, **kwargs):
            if self.active and self.mode == "readonly" and (self._under(src) or self._under(dst)):
                raise self._refuse(dst)
            return self._real[name](src, dst, *args, **kwargs)

        return call


class _BudgetFile:
    """A file object whose writes spend the :class:`FaultyFS` budget."""

    def __init__(self, f, fs: FaultyFS, path) -> None:
        self._f, self._fs, self._path = f, fs, path

    def write(self, data):
        take = self._fs._spend(len(data))
        if take < 0:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(self._path))
        if take < len(data):
            self._f.write(data[:take])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(self._path))
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


# ------------------------------------------------------------------------------ helpers


def frame(i: int) -> np.ndarray:
    return make_frame(i, *SHAPE, bits=8)


def check_store(path: str, n_frames: int, n_extra: int, fmt: str = "npy") -> None:
    """The store holds exactly frames 0..n_frames-1 (exact) and the first n_extra extra records."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
        store = imgstore.new_for_filename(path)
    with store:
        assert store.damaged_chunks == {}
        assert store.frame_numbers.tolist() == list(range(n_frames))
        assert store.frame_times.tolist() == [100.0 + i for i in range(n_frames)]
        for i in range(n_frames):
            img = store.get_image(i)[0]
            if store.lossless:
                np.testing.assert_array_equal(img, frame(i))
            else:
                assert read_barcode(img, bits=8) == i
        df = store.get_extra_data()
        got = [] if df is None else df["i"].tolist()
        assert got == list(range(n_extra))


def record(path: str, fmt: str, n: int, chunksize: int = 3, **kw):
    """Write up to ``n`` frames (+ one extra record each); stop at the first StoreWriteError.

    Returns ``(store or None, frames added, extra records added, the error or None, where)``.
    """
    added = extras = 0
    try:
        store = imgstore.new_for_format(fmt, basedir=path, imgshape=SHAPE, chunksize=chunksize, **kw)
    except errors.StoreWriteError as exc:
        return None, 0, 0, exc, "open"
    for i in range(n):
        try:
            store.add_image(frame(i), i, 100.0 + i)
        except errors.StoreWriteError as exc:
            return store, added, extras, exc, "add_image"
        added += 1
        try:
            store.add_extra_data(i=extras)
        except errors.StoreWriteError as exc:
            return store, added, extras, exc, "add_extra_data"
        extras += 1
    return store, added, extras, None, None


# ------------------------------------------------------------------------------ disk full


@pytest.mark.parametrize("close_while_full", [False, True])
def test_disk_full_at_every_point(tmp_path, monkeypatch, close_while_full):
    """The disk fills up after N bytes, for N across a whole recording: every frame and extra record
    added before the failure reads back exact, the writer refuses to go on after a failed frame,
    it can be closed, and repair leaves a clean store."""
    # how many bytes a complete recording writes
    probe = FaultyFS(monkeypatch, str(tmp_path), "full", budget=10**9)
    store, *_ = record(str(tmp_path / "probe"), "npy", 10)
    store.close()
    total = probe.written
    monkeypatch.undo()
    failures = set()
    for k, budget in enumerate(sorted(set(np.linspace(0, total, 20).astype(int)) | {1, 100, 300})):
        path = str(tmp_path / f"s{k}")
        fs = FaultyFS(monkeypatch, str(tmp_path), "full", budget=int(budget))
        store, added, extras, exc, where = record(path, "npy", 10)
        if exc is None:
            try:
                store.close()
            except errors.StoreWriteError as e:  # the recording fitted, its closing did not
                exc, where = e, "close"
        if exc is not None:
            failures.add(where)
            # a named error that says what failed and where
            assert exc.errno == errno.ENOSPC, exc
            assert str(tmp_path) in str(exc), f"error does not say where: {exc}"
        if store is not None and not store.closed:
            if close_while_full:
                with contextlib.suppress(errors.StoreWriteError):
                    store.close()
            else:
                fs.lift()  # space was freed
                if where == "add_image":
                    # the writer does not go on after a failed frame, even with space again ...
                    with pytest.raises(errors.StoreWriteError, match="refuses further writes"):
                        store.add_image(frame(99), 99, 1.0)
                    with pytest.raises(errors.StoreWriteError, match="refuses further writes"):
                        store.add_extra_data(i=99)
                store.close()  # ... but closes cleanly
        monkeypatch.undo()
        if store is None:
            assert not os.path.exists(os.path.join(path, ".lock"))
        if not os.path.exists(os.path.join(path, "metadata.yaml")):
            assert added == 0
            continue
        assert store.closed and not os.path.exists(os.path.join(path, ".lock"))
        check_store(path, added, extras)
        report = repair(path)
        assert report.clean
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_store(path, added, extras)
        # and recording goes on after the repair
        with imgstore.new_for_filename(path, mode="a") as s:
            s.add_image(frame(added), added, 100.0 + added)
        check_store(path, added + 1, extras)
    # the sweep met the disk filling up in each place a recording writes
    assert failures == {"open", "add_image", "add_extra_data", "close"}


def test_short_journal_write_is_cut_back(tmp_path, monkeypatch):
    """A journal record written half (disk full) is removed, so records stay aligned."""
    from imgstore import ondisk

    path = str(tmp_path / "j.journal")
    fs = FaultyFS(monkeypatch, str(tmp_path), "full", budget=10**6)
    journal = ondisk.ChunkJournal(path)
    journal.append(frame_number=1, frame_time=1.0)
    fs.budget = 5  # 5 of the next record's 16 bytes fit
    with pytest.raises(errors.StoreWriteError, match=r"j.journal"):
        journal.append(frame_number=2, frame_time=2.0)
    fs.lift()
    journal.append(frame_number=3, frame_time=3.0)
    journal.close()
    assert ondisk.read_journal(path)["frame_number"].tolist() == [1, 3]


def test_short_extra_write_is_cut_back(tmp_path, monkeypatch):
    from imgstore import ondisk

    fs = FaultyFS(monkeypatch, str(tmp_path), "full", budget=10**6)
    writer = ondisk.ExtraDataWriter(str(tmp_path / "c"))
    writer.append(ondisk.encode_extra_record({"a": 1}))
    fs.budget = 4
    with pytest.raises(errors.StoreWriteError, match=r"extra.jsonl"):
        writer.append(ondisk.encode_extra_record({"a": 2}))
    fs.lift()
    writer.append(ondisk.encode_extra_record({"a": 3}))
    assert [r["a"] for r in ondisk.read_extra_json(writer.journal_path)] == [1, 3]
    writer.finalize()
    assert [r["a"] for r in ondisk.read_extra_json(writer.final_path)] == [1, 3]


# ------------------------------------------------------------------------------ read-only


def test_readonly_filesystem(tmp_path, monkeypatch):
    """Creating, appending and repairing fail with StoreWriteError naming the path; reading works
    and writes nothing, even where a reader would otherwise save the index cache."""
    path = str(tmp_path / "s")
    with imgstore.new_for_format("npy", basedir=path, imgshape=SHAPE, chunksize=1) as s:
        for i in range(60):  # >= 50 chunks: a reader would write the index cache
            s.add_image(frame(i), i, 100.0 + i)
    os.unlink(os.path.join(path, ".imgstore-index.cache"))
    crashed = str(tmp_path / "crashed")
    w = imgstore.new_for_format("npy", basedir=crashed, imgshape=SHAPE, chunksize=4)
    for i in range(6):
        w.add_image(frame(i), i, 100.0 + i)
        w.add_extra_data(i=i)
    before = sorted(os.listdir(path)), sorted(os.listdir(crashed))

    FaultyFS(monkeypatch, str(tmp_path), "readonly")
    with pytest.raises(errors.StoreWriteError, match=str(tmp_path / "new")) as info:
        imgstore.new_for_format("npy", basedir=str(tmp_path / "new"), imgshape=SHAPE)
    assert info.value.errno == errno.EROFS
    with pytest.raises(errors.StoreWriteError, match="lock"):
        imgstore.new_for_filename(path, mode="a")
    with imgstore.new_for_filename(path) as s:
        assert s.frame_count == 60 and s.get_image(59)[1][0] == 59
    with pytest.raises(errors.StoreWriteError):
        repair(crashed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
        check_store(crashed, 6, 6)
    monkeypatch.undo()
    assert (sorted(os.listdir(path)), sorted(os.listdir(crashed))) == before
    w.close()


def test_filesystem_turns_readonly_while_recording(tmp_path, monkeypatch):
    """As an SD card remounted read-only after an I/O error: the frames before stay readable."""
    path = str(tmp_path / "s")
    store = imgstore.new_for_format("png", basedir=path, imgshape=SHAPE, chunksize=4)
    for i in range(6):
        store.add_image(frame(i), i, 100.0 + i)
        store.add_extra_data(i=i)
    fs = FaultyFS(monkeypatch, str(tmp_path), "readonly")
    with pytest.raises(errors.StoreWriteError) as info:
        store.add_image(frame(6), 6, 106.0)
    assert info.value.errno == errno.EROFS and path in str(info.value)
    with pytest.raises(errors.StoreWriteError):
        store.close()
    assert store.closed
    check_store(path, 6, 6, "png")  # read on the read-only file system, from the journal
    fs.lift()
    monkeypatch.undo()
    assert repair(path).recovered == {1: 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_store(path, 6, 6, "png")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="chmod does not restrict root (FaultyFS covers this case)")
def test_readonly_folder_by_chmod(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    os.chmod(parent, stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(errors.StoreWriteError, match=str(parent)):
            imgstore.new_for_format("npy", basedir=str(parent / "s"), imgshape=SHAPE)
    finally:
        os.chmod(parent, stat.S_IRWXU)


# ------------------------------------------------------------------------------ real file systems


def _mounted_tmpfs(tmp_path, size: str):
    """A tmpfs of `size` mounted for the test (skipped where mounting is not allowed)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if sys.platform != "linux" or shutil.which("mount") is None:
        pytest.skip("needs Linux mount")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """A 1 MiB tmpfs."""
    yield from _mounted_tmpfs(tmp_path, "1m")


@pytest.fixture
def tmpfs_16m(tmp_path):
    """A 16 MiB tmpfs: room for a video writer's reserve (4 MiB) and a few chunks."""
    yield from _mounted_tmpfs(tmp_path, "16m")


def _ballast(mnt, size: int) -> str:
    p = os.path.join(mnt, "ballast")
    with open(p, "wb") as f:
        f.write(os.urandom(size))
    return p


@pytest.mark.parametrize("fmt", ["npy", "png", *[f for f in torture_formats() if is_video(f)]])
def test_real_disk_full(tmpfs_16m, fmt):
    """A tmpfs that really fills up, video payloads included: the writer stops before it is full, with
    ENOSPC naming the frame it refused, and every frame whose add_image returned reads back."""
    tmpfs = tmpfs_16m
    ballast = _ballast(tmpfs, 5 << 20)  # freed after the recording, it is room to append
    path = str(tmpfs / "s")
    big = (240, 320)
    store = imgstore.new_for_format(fmt, basedir=path, imgshape=big, chunksize=25)
    added, exc = 0, None
    for i in range(100_000):
        # incompressible frames fill the disk within a few hundred frames in every format
        img = np.random.default_rng(i).integers(0, 256, big, dtype=np.uint8)
        img[:16] = make_frame(i, 16, big[1])
        try:
            store.add_image(img, i, 100.0 + i / 30)
        except errors.StoreWriteError as e:
            exc = e
            break
        added += 1
    assert exc is not None and exc.errno == errno.ENOSPC, exc
    assert str(tmpfs) in str(exc) and f"frame_number {added} was not stored" in str(exc), exc
    assert added > 0
    with pytest.raises(errors.StoreWriteError, match="refuses further writes"):
        store.add_image(img, added, 1e6)
    store.close()
    assert not os.path.exists(os.path.join(path, RESERVE_FILENAME))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to recover: the chunk was finished before the disk filled
        with imgstore.new_for_filename(path) as r:
            assert r.damaged_chunks == {}
            assert r.frame_numbers.tolist() == list(range(added))
            for i in range(0, added, max(1, added // 20)):
                assert read_barcode(r.get_image(i)[0][:16]) == i
    os.unlink(ballast)  # space freed
    assert repair(path).clean
    with imgstore.new_for_filename(path, mode="a") as s:  # and the recording goes on
        s.add_image(img, added, 1e6)
    with imgstore.new_for_filename(path) as r:
        assert r.frame_count == added + 1


def test_real_readonly_mount_after_crash(tmpfs):
    """A writer killed, then its file system remounted read-only (as after an I/O error): the store
    reads back from its journal; appending and repairing fail with StoreWriteError (EROFS)."""
    from .test_crash_torture import make_plan, run_and_kill

    path = str(tmpfs / "s")
    plan = make_plan("npy", 0, "stop", "frame-journaled")
    plan.stop_at = "frame-journaled:8"
    crash = run_and_kill(path, plan)
    n = len(crash.frames)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
            with imgstore.new_for_filename(path) as r:
                # the 8th frame was journaled when the writer died: readable although add_image never returned
                assert r.frame_numbers.tolist() == list(range(n + 1))
                assert all(read_barcode(r.get_image(i)[0]) == i for i in range(n + 1))
        with pytest.raises(errors.StoreWriteError) as info:
            imgstore.new_for_filename(path, mode="a")
        assert info.value.errno == errno.EROFS
        with pytest.raises(errors.StoreWriteError) as info:
            repair(path)
        assert info.value.errno == errno.EROFS
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
    assert repair(path).clean
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imgstore.new_for_filename(path) as r:
            assert r.frame_count == n + 1
