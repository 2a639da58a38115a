"""A directory-store writer killed with SIGKILL loses no frame whose add_image returned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest

import imgstore
from imgstore.testing.barcode import make_frame, read_barcode

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def record_and_kill(dest: str, fmt: str, kill_after: int, chunksize: int) -> tuple[int, list[int]]:
    """Run a writer, SIGKILL it once it reported ``kill_after`` frames; return (frames reported, extras)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgstore.testing.crashwriter", dest, fmt, "--chunksize", str(chunksize)],
        stdout=subprocess.PIPE, text=True)
    reported, extras = -1, []
    try:
        for line in proc.stdout:
            kind, fn, *_ = line.split()
            if kind == "frame":
                reported = int(fn)
            else:
                extras.append(int(fn))
            if reported + 1 >= kill_after:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return reported + 1, extras


@pytest.mark.parametrize("fmt", ["npy", "png"])
@pytest.mark.parametrize("kill_after", [1, 4, 5, 6, 13])
def test_sigkill_loses_nothing_returned(tmp_path, fmt, kill_after):
    dest = str(tmp_path / "store")
    reported, extras = record_and_kill(dest, fmt, kill_after, chunksize=5)
    assert os.path.exists(os.path.join(dest, ".lock"))  # the writer never closed
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        store = imgstore.new_for_filename(dest)
    with store:
        numbers = store.get_frame_metadata()["frame_number"]
        # every frame whose add_image returned is there (the writer may have added more before dying)
        assert numbers == list(range(len(numbers))) and len(numbers) >= reported
        assert store.get_frame_metadata()["frame_time"] == [1_700_000_000.0 + i / 30.0 for i in numbers]
        for i in numbers:
            img, (_fn, _) = store.get_image(i)
            np.testing.assert_array_equal(img, make_frame(i, 96, 128))
            assert read_barcode(img) == i
        df = store.get_extra_data()
        got = [] if df is None else df["frame_number"].tolist()
        assert got[: len(extras)] == extras
        assert set(got) <= set(numbers)


def test_crashed_store_can_be_appended(tmp_path):
    dest = str(tmp_path / "store")
    _reported, _ = record_and_kill(dest, "npy", 7, chunksize=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with imgstore.new_for_filename(dest, mode="a") as s:  # the dead writer's lock is stale
            start = s.frame_count
            s.add_image(make_frame(500, 96, 128), 500, 2e9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the journaled chunk got a proper index: no warning now
        with imgstore.new_for_filename(dest) as s:
            assert s.get_frame_metadata()["frame_number"] == [*range(start), 500]
