"""Live reading: a reader in another process follows a store while a writer process records it.

The reader never sees half a frame or a wrong frame, its frame count never goes down, and it
sees frames as they are written: with the writer held at a known frame count (``--step``),
``refresh()`` shows exactly the frames written so far (directory stores; video may lag by
what its encoder still holds).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

import imgstore

from .test_crash_torture import DIRECTORY_FORMATS, HEIGHT, WIDTH, is_video, torture_formats

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

#: the reader process: checks every frame it can see and reports its frame count
READER = r"""
import sys, warnings
import numpy as np
import imgstore
from imgstore.testing.barcode import make_frame, read_barcode
from imgstore.testing.crashwriter import frame_time

path, mode, h, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
warnings.simplefilter("ignore")
store = imgstore.new_for_filename(path)
lossless = store.lossless
checked = 0


def check_new():
    global checked
    n = store.frame_count
    if n < checked:
        print(f"shrunk {checked} {n}", flush=True)
    numbers = store.frame_numbers
    for i in range(checked, n):
        img, (fn, ft) = store.get_image(None, frame_index=i)
        exact = np.array_equal(img, make_frame(i, h, w)) if lossless else read_barcode(img) == i
        if not (fn == i == numbers[i] and ft == frame_time(i) and exact):
            print(f"bad {i} {fn} {ft}", flush=True)
    checked = n
    return n


if mode == "step":
    print(f"count {check_new()} {int(store.is_live)}", flush=True)
    for line in sys.stdin:
        store.refresh()
        print(f"count {check_new()} {int(store.is_live)}", flush=True)
else:  # follow until the writer has closed
    last = -1
    while True:
        # looked at before refreshing: if the writer had closed by then, this refresh sees all
        live = store.is_live
        store.refresh()
        n = check_new()
        if n != last:
            print(f"count {n}", flush=True)
            last = n
        if not live:
            break
    print(f"done {n}", flush=True)
"""

WATCHDOG_S = 120.0


def _writer(dest: str, fmt: str, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "imgstore.testing.crashwriter", dest, fmt, "--height", str(HEIGHT),
            "--width", str(WIDTH), *extra]
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _reader(dest: str, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", READER, dest, mode, str(HEIGHT), str(WIDTH)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


class _Watchdog:
    """Kills the processes if the test hangs (a bug), so it fails instead of blocking CI."""

    def __init__(self, *procs: subprocess.Popen) -> None:
        self._timer = threading.Timer(WATCHDOG_S, lambda: [p.kill() for p in procs])
        self._procs = procs

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        for p in self._procs:
            p.kill()
            p.wait()
            for f in (p.stdin, p.stdout):
                if f:
                    f.close()


def _read_frames(writer: subprocess.Popen, n: int) -> None:
    """Wait until the writer reports ``n`` more frames (its report comes after add_image returned)."""
    got = 0
    while got < n:
        line = writer.stdout.readline()
        assert line, "writer died"
        if line.startswith("frame "):
            got += 1


def _ask(reader: subprocess.Popen) -> tuple[int, bool]:
    reader.stdin.write("refresh\n")
    reader.stdin.flush()
    line = reader.stdout.readline()
    assert line.startswith("count "), f"reader said {line!r}"
    _, count, live = line.split()
    return int(count), live == "1"


@pytest.mark.parametrize("fmt", torture_formats())
def test_reader_sees_frames_as_written(tmp_path, fmt):
    """Writer held at known counts; a reader process refreshes and must see exactly those frames."""
    dest = str(tmp_path / "live")
    writer = _writer(dest, fmt, "--step", "--chunksize", "5", "--extra-every", "0")
    steps = [1, 3, 1, 4, 6, 1, 9]
    with _Watchdog(writer) as _:
        writer.stdin.write(f"{steps[0]}\n")
        writer.stdin.flush()
        _read_frames(writer, steps[0])
        reader = _reader(dest, "step")
        with _Watchdog(reader):
            first = reader.stdout.readline().split()
            assert first[0] == "count" and int(first[1]) <= steps[0] and first[2] == "1"
            written, seen = steps[0], []
            for n in steps[1:]:
                writer.stdin.write(f"{n}\n")
                writer.stdin.flush()
                _read_frames(writer, n)
                written += n
                count, live = _ask(reader)
                assert live
                if is_video(fmt):
                    assert count <= written  # the encoder may still hold the newest frames
                else:
                    # every frame whose add_image returned is visible, across chunk changes too
                    assert count == written
                seen.append(count)
            assert seen == sorted(seen)
            writer.stdin.write("0\n")  # close the store
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "closed"
            writer.wait()
            count, live = _ask(reader)
            assert (count, live) == (written, False)
            reader.stdin.close()
            assert reader.stdout.read() == ""  # no 'bad' or 'shrunk' line


@pytest.mark.parametrize("fmt", DIRECTORY_FORMATS[:1] + [f for f in torture_formats() if is_video(f)][:1])
def test_reader_follows_free_running_writer(tmp_path, fmt):
    """Writer and reader run freely (chunk changes every 7 frames): counts only grow, frames are exact."""
    dest = str(tmp_path / "live")
    total = 160
    writer = _writer(dest, fmt, "--chunksize", "7", "--frames", str(total), "--fps", "400", "--extra-every", "1")
    with _Watchdog(writer):
        _read_frames(writer, 1)  # the store exists and the writer holds its lock
        reader = _reader(dest, "follow")
        with _Watchdog(reader):
            rest = writer.stdout.read()
            assert rest.rstrip().endswith("closed")
            writer.wait()
            out = reader.stdout.read().splitlines()
    reader_lines = [line for line in out if not line.startswith(("count", "done"))]
    assert reader_lines == [], reader_lines  # no 'bad' frame, no count that went down
    counts = [int(line.split()[1]) for line in out if line.startswith("count")]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert out[-1] == f"done {total}"


def test_refresh_is_incremental(tmp_path, monkeypatch):
    """refresh() re-reads only the chunk being written, not every closed chunk's index."""
    from imgstore import ondisk

    dest = str(tmp_path / "s")
    img = np.zeros((8, 8), np.uint8)
    writer = imgstore.new_for_format("npy", basedir=dest, imgshape=(8, 8), chunksize=2)
    try:
        for i in range(200):
            writer.add_image(img, i, 1e9 + i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = imgstore.new_for_filename(dest)
        assert reader.refresh() == 0  # the first rescan reads everything once
        reads = []
        real = ondisk.read_chunk_index
        monkeypatch.setattr(ondisk, "read_chunk_index", lambda path, *a, **k: reads.append(path) or real(path, *a, **k))
        for i in range(200, 205):
            writer.add_image(img, i, 1e9 + i)
            assert reader.refresh() == 1
        # 5 frames closed at most 3 chunks: only those indexes were read (the open chunk has a journal)
        assert len(reads) <= 3, reads
        assert reader.frame_count == 205
        assert reader.get_image(204)[1] == (204, 1e9 + 204)
    finally:
        writer.close()
    assert reader.refresh() == 0 and reader.frame_count == 205
    # a chunk's index rewritten (same size!) is noticed: a new file means a new inode
    base = os.path.join(dest, "000000", "index")
    ondisk.write_chunk_index(base, {"frame_number": np.array([7, 8]), "frame_time": np.array([1.0, 2.0])})
    reader.refresh()
    assert reader.frame_numbers[:2].tolist() == [7, 8]
    reader.close()


def test_refresh_survives_chunk_closing_between_looks(tmp_path, monkeypatch):
    """The writer may write a chunk's index and drop its journal between the reader's two looks."""
    from imgstore import ondisk

    dest = str(tmp_path / "s")
    img = np.zeros((8, 8), np.uint8)
    writer = imgstore.new_for_format("npy", basedir=dest, imgshape=(8, 8), chunksize=3)
    for i in range(2):
        writer.add_image(img, i, 1e9 + i)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = imgstore.new_for_filename(dest)
    assert reader.frame_count == 2
    real = ondisk.read_journal_contents

    def close_chunk_first(path, **kwargs):
        # the reader saw no index; before it opens the journal the writer closes the chunk
        if not writer.chunks:
            writer.add_image(img, 2, 1e9 + 2)
        return real(path, **kwargs)

    monkeypatch.setattr(ondisk, "read_journal_contents", close_chunk_first)
    assert reader.refresh() == 1
    assert reader.damaged_chunks == {} and reader.frame_numbers.tolist() == [0, 1, 2]
    writer.close()
    reader.close()
