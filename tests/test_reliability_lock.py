"""The writer lock means something: one live writer per store, across processes; dead writers'
locks are recognised as stale; an existing store is never written over by accident."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest

import imgstore
from imgstore import _lock, errors
from imgstore.repair import repair
from imgstore.testing.barcode import make_frame

from .test_crash_torture import make_plan

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks and signals")

#: a second writer in its own process; prints the name of the error it got (or 'opened')
SECOND_WRITER = r"""
import sys, imgstore
try:
    s = imgstore.new_for_filename(sys.argv[1], mode=sys.argv[2]) if sys.argv[2] == "a" else \
        imgstore.new_for_format("npy", basedir=sys.argv[1], imgshape=(96, 128), overwrite=True)
except Exception as exc:
    print(type(exc).__name__, exc)
else:
    print("opened")
    s.close()
"""


def _listing(path: str) -> dict[str, int]:
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            out[os.path.relpath(os.path.join(root, f), path)] = os.path.getsize(os.path.join(root, f))
    return out


@pytest.fixture
def live_writer(tmp_path):
    """A writer process holding a store, stopped (alive) after journaling its 8th frame."""
    dest = str(tmp_path / "s")
    plan = make_plan("npy", 0, "stop", "frame-journaled")
    proc = subprocess.Popen([*plan.argv(dest)[:-2], "--stop-at", "frame-journaled:8"], stdout=subprocess.PIPE,
                            text=True)
    for line in proc.stdout:
        if line.startswith("at "):
            break
    yield dest, proc
    proc.kill()
    proc.wait()
    proc.stdout.close()


def test_second_writer_refused_across_processes(live_writer):
    dest, proc = live_writer
    before = _listing(dest)
    assert _lock.is_locked(dest)
    assert _lock.read_lock_owner(dest)["pid"] == proc.pid
    # in this process ...
    with pytest.raises(errors.StoreLockedError, match=f"pid {proc.pid}") as info:
        imgstore.new_for_filename(dest, mode="a")
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(errors.StoreLockedError):
        imgstore.new_for_format("npy", basedir=dest, imgshape=(96, 128), overwrite=True)
    with pytest.raises(errors.StoreExistsError, match="already exists"):
        imgstore.new_for_format("npy", basedir=dest, imgshape=(96, 128))
    with pytest.raises(errors.StoreLockedError):
        repair(dest)
    with pytest.raises(errors.StoreLockedError):
        repair(dest, dry_run=True)
    # ... and in another one
    for mode in ("a", "w"):
        out = subprocess.run([sys.executable, "-c", SECOND_WRITER, dest, mode], capture_output=True, text=True)
        assert out.stdout.startswith("StoreLockedError"), out.stdout + out.stderr
    # nothing of the live writer's store was touched, and a reader sees it as live
    assert _listing(dest) == before
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a live writer's open chunk is expected: no warning
        with imgstore.new_for_filename(dest) as r:
            assert r.is_live and r.frame_count == 8


def test_lock_of_killed_writer_is_stale(live_writer):
    dest, proc = live_writer
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert os.path.exists(os.path.join(dest, ".lock"))  # left behind ...
    assert not _lock.is_locked(dest)  # ... but not obeyed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
        with imgstore.new_for_filename(dest) as r:
            assert not r.is_live and r.frame_count == 8
        with imgstore.new_for_filename(dest, mode="a") as w:  # appending takes the lock over
            assert _lock.read_lock_owner(dest)["pid"] == os.getpid()
            w.add_image(make_frame(8, 96, 128), 8, 1e9)
    assert not os.path.exists(os.path.join(dest, ".lock"))
    with imgstore.new_for_filename(dest) as r:
        assert r.frame_numbers.tolist() == list(range(9))


def test_stale_lock_files_are_not_obeyed(tmp_path):
    """A lock naming a dead pid, one naming a live pid that holds no OS lock (pid reuse), an empty
    one (imgstore 0.4) and garbage: none stops a writer."""
    path = str(tmp_path / "s")
    with imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8)) as s:
        s.add_image(np.zeros((8, 8), np.uint8), 0, 1.0)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    contents = [json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": 0}),
                json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "since": 0}),
                "", "\x00garbage{"]
    for text in contents:
        with open(os.path.join(path, ".lock"), "w") as f:
            f.write(text)
        assert not _lock.is_locked(path)
        with imgstore.new_for_filename(path, mode="a") as s:
            s.add_image(np.zeros((8, 8), np.uint8), 1, 2.0)
        assert not os.path.exists(os.path.join(path, ".lock"))


def test_lock_released_on_failed_open(tmp_path):
    """A writer that fails while opening leaves no lock behind."""
    path = str(tmp_path / "s")
    with pytest.raises(errors.MetadataError):
        imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8), metadata={"x": object()})
    assert not _lock.is_locked(path) and not os.path.exists(os.path.join(path, ".lock"))
    with imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8)) as s:
        s.add_image(np.zeros((8, 8), np.uint8), 0, 1.0)


def test_lock_taken_on_a_file_being_deleted_is_retaken(tmp_path, monkeypatch):
    """The owner unlinks .lock while releasing it; a writer that opened the old file just before
    must not lock that deleted file (a third writer would then get the new .lock too)."""
    path = str(tmp_path)
    first = _lock.StoreLock(path)
    first.acquire()
    real_open = os.open
    released = []

    def open_then_owner_releases(p, *a, **k):
        fd = real_open(p, *a, **k)
        if p == first.path and not released:
            released.append(True)
            first.release()  # between our open and our flock
        return fd

    monkeypatch.setattr(os, "open", open_then_owner_releases)
    second = _lock.StoreLock(path)
    second.acquire()
    monkeypatch.undo()
    assert released
    assert os.path.samestat(os.fstat(second._fd), os.stat(second.path))
    with pytest.raises(errors.StoreLockedError):
        _lock.StoreLock(path).acquire()
    second.release()


def test_momentary_probe_does_not_refuse_a_writer(tmp_path, monkeypatch):
    """Readers probe the lock with a brief shared flock (is_live); a writer starting just then waits
    it out instead of failing. A lock that stays held is still refused, promptly."""
    path = str(tmp_path)
    real_flock = fcntl.flock
    busy = [2]

    def flock(fd, op):
        if op & fcntl.LOCK_EX and busy[0]:
            busy[0] -= 1
            raise BlockingIOError(errno.EWOULDBLOCK, "held by a reader's probe")
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    lock = _lock.StoreLock(path)
    lock.acquire()
    assert busy == [0] and lock.held
    monkeypatch.undo()
    import time

    t0 = time.monotonic()
    with pytest.raises(errors.StoreLockedError):
        _lock.StoreLock(path).acquire()
    assert time.monotonic() - t0 < 2.0
    lock.release()


def test_existing_store_needs_overwrite_or_append(tmp_path):
    path = str(tmp_path / "s")
    with imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8)) as s:
        s.add_image(np.zeros((8, 8), np.uint8), 0, 1.0)
    with pytest.raises(errors.StoreExistsError, match=r"overwrite=True.*mode='a'") as info:
        imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8))
    assert isinstance(info.value, FileExistsError)
    with imgstore.new_for_filename(path) as r:
        assert r.frame_count == 1  # untouched


def test_chunks_without_metadata_are_not_mixed_into(tmp_path):
    """A folder with chunk files but no metadata.yaml (a damaged store) is refused unless
    overwrite=True, which deletes them: new frames never mix with old indexes."""
    path = str(tmp_path / "s")
    with imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8), chunksize=2) as s:
        for i in range(5):
            s.add_image(np.full((8, 8), i, np.uint8), i, float(i))
    os.unlink(os.path.join(path, "metadata.yaml"))
    with pytest.raises(errors.StoreExistsError, match=r"000000.*no metadata.yaml"):
        imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8))
    with imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8), chunksize=2, overwrite=True) as s:
        s.add_image(np.full((8, 8), 77, np.uint8), 77, 77.0)
    with imgstore.new_for_filename(path) as r:
        assert r.frame_numbers.tolist() == [77] and r.get_image(77)[0][0, 0] == 77
    # unrelated files do not count as chunks
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    (other / "2024-05-01.csv").write_text("x")
    with imgstore.new_for_format("npy", basedir=str(other), imgshape=(8, 8)) as s:
        s.add_image(np.zeros((8, 8), np.uint8), 0, 1.0)
    assert (other / "notes.txt").exists()


@pytest.mark.parametrize("options", [{"quality": -5}, {"keyframe_interval": 0}, {"pix_fmt": "nonsense"},
                                     {"fps": 1e-9}, {"bitrate": -1}])
def test_failed_constructor_leaves_no_lock(tmp_path, options):
    """A writer refused at construction holds nothing: the next writer of the folder starts at once."""
    path = str(tmp_path / "s")
    with pytest.raises(errors.ImgStoreError) as info:
        imgstore.new_for_format("h264/mkv", basedir=path, imgshape=(16, 16), **options)
    assert isinstance(info.value, ValueError) and str(next(iter(options.values()))) in str(info.value)
    assert not os.path.exists(os.path.join(path, ".lock")) and not os.path.exists(os.path.join(path, "metadata.yaml"))
    with imgstore.new_for_format("h264/mkv", basedir=path, imgshape=(16, 16)) as s:
        s.add_image(np.zeros((16, 16), np.uint8), 0, 1.0)


def test_writer_dropped_without_close_releases_the_lock(tmp_path):
    """A writer that is garbage-collected unclosed lets go of the lock; its frames read back (journal)."""
    import gc

    path = str(tmp_path / "s")
    s = imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8), chunksize=4)
    for i in range(6):
        s.add_image(np.full((8, 8), i, np.uint8), i, float(i))
    del s
    gc.collect()
    assert not os.path.exists(os.path.join(path, ".lock"))
    with imgstore.new_for_filename(path, mode="a") as a:  # would raise StoreLockedError if still held
        a.add_image(np.full((8, 8), 6, np.uint8), 6, 6.0)
    with imgstore.new_for_filename(path) as r:
        assert r.frame_numbers.tolist() == list(range(7))
