"""A recording stops before the disk is full: the frame that might not fit is refused with ENOSPC,
everything acknowledged before it is finished and reads back (see ``backends/disk_guard.py``).

The free space is simulated here (``LocalStorage.free_bytes``), so every format and the exact
moment are covered deterministically; ``test_reliability_fs.py::test_real_disk_full`` fills a
real tmpfs.
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import imgstore
from imgstore import errors, ondisk
from imgstore.backends.disk_guard import RESERVE_FILENAME
from imgstore.repair import repair
from imgstore.storage import LocalStorage
from imgstore.testing.barcode import make_frame, read_barcode

SHAPE = (48, 64)
FORMATS = ["npy", "png", "mjpeg/avi", "h264/mkv", "avc1/mp4", "ffv1/mkv"]
PLENTY = 1 << 40


@pytest.fixture
def free_space(monkeypatch):
    """The free bytes every store sees, settable by the test (``free_space["bytes"] = n``)."""
    state = {"bytes": PLENTY}
    monkeypatch.setattr(LocalStorage, "free_bytes", lambda self, path: state["bytes"])
    return state


def reserve_path(path: str) -> str:
    return os.path.join(path, RESERVE_FILENAME)


@pytest.mark.parametrize("fmt", FORMATS)
def test_recording_stops_before_the_disk_fills(tmp_path, free_space, fmt):
    path = str(tmp_path / "s")
    store = imgstore.new_for_format(fmt, basedir=path, imgshape=SHAPE, imgdtype="uint8", chunksize=12)
    video = "/" in fmt
    # a video writer holds room for finishing its chunk; image files need none
    assert os.path.exists(reserve_path(path)) == video
    if video:
        assert os.path.getsize(reserve_path(path)) == 4 << 20
    for i in range(30):
        store.add_image(make_frame(i, *SHAPE), 1000 + i, 1e9 + i / 25)
        store.add_extra_data(sensor=i)
    free_space["bytes"] = 100_000  # another program filled the disk
    with pytest.raises(errors.StoreWriteError) as info:
        store.add_image(make_frame(30, *SHAPE), 1030, 1e9 + 30 / 25)
    assert info.value.errno == errno.ENOSPC
    assert "frame_number 1030 was not stored; the 30 frames before it are" in str(info.value)
    assert path in str(info.value) and "100000 bytes free" in str(info.value)
    # the chunk was finished at once: nothing waits in memory, the reserve is given back
    assert not os.path.exists(reserve_path(path))
    index = os.path.join(path, "000002.npz") if video else os.path.join(path, "000002", "index.npz")
    assert os.path.exists(index)
    journals = [n for _, _, names in os.walk(path) for n in names if n.endswith(ondisk.JOURNAL_SUFFIX)]
    assert journals == []
    with pytest.raises(errors.StoreWriteError, match="refuses further writes") as again:
        store.add_image(make_frame(31, *SHAPE), 1031, 1e9 + 31 / 25)
    assert again.value.errno == errno.ENOSPC
    with pytest.raises(errors.StoreWriteError, match="refuses further writes"):
        store.add_extra_data(sensor=31)
    store.close()
    with imgstore.new_for_filename(path) as r:
        assert r.damaged_chunks == {}
        assert r.frame_numbers.tolist() == list(range(1000, 1030))
        for i in range(30):
            assert read_barcode(r.get_image(None, frame_index=i)[0]) == i
        assert r.get_extra_data()["sensor"].tolist() == list(range(30))
    assert repair(path).clean


@pytest.mark.parametrize("fmt", ["h264/mkv", "mjpeg/avi"])
def test_no_room_for_the_reserve_refuses_to_start(tmp_path, free_space, fmt):
    path = str(tmp_path / "s")
    free_space["bytes"] = 3 << 20  # less than the 4 MiB a video writer keeps for finishing a chunk
    with pytest.raises(errors.StoreWriteError, match="not enough free space") as info:
        imgstore.new_for_format(fmt, basedir=path, imgshape=SHAPE, imgdtype="uint8")
    assert info.value.errno == errno.ENOSPC and path in str(info.value)
    assert "3145728 bytes free" in str(info.value)
    # nothing of a store is left, and the folder is not locked
    assert sorted(os.listdir(path)) == []
    free_space["bytes"] = PLENTY
    with imgstore.new_for_format(fmt, basedir=path, imgshape=SHAPE, imgdtype="uint8") as s:
        s.add_image(make_frame(0, *SHAPE), 0, 1.0)


def test_appending_takes_the_reserve_again(tmp_path, free_space):
    path = str(tmp_path / "s")
    with imgstore.new_for_format("h264/mkv", basedir=path, imgshape=SHAPE, imgdtype="uint8") as s:
        s.add_image(make_frame(0, *SHAPE), 0, 1.0)
    assert not os.path.exists(reserve_path(path))
    free_space["bytes"] = 1 << 20
    with pytest.raises(errors.StoreWriteError, match="not enough free space"):
        imgstore.new_for_filename(path, mode="a")
    free_space["bytes"] = PLENTY
    with imgstore.new_for_filename(path, mode="a") as s:
        assert os.path.exists(reserve_path(path))
        s.add_image(make_frame(1, *SHAPE), 1, 2.0)
    assert not os.path.exists(reserve_path(path))
    with imgstore.new_for_filename(path) as r:
        assert [read_barcode(r.get_image(None, frame_index=i)[0]) for i in range(2)] == [0, 1]


def test_the_disk_filling_while_the_encoder_holds_frames(tmp_path, free_space):
    """Frames the encoder still holds (B-frames, lookahead) are written into the reserve."""
    path = str(tmp_path / "s")
    store = imgstore.new_for_format("h264/mkv", basedir=path, imgshape=SHAPE, imgdtype="uint8", chunksize=1000)
    for i in range(40):  # fast and steady: the encoder keeps B-frames and lookahead
        store.add_image(make_frame(i, *SHAPE), i, 1e9 + i / 100)
    free_space["bytes"] = 0
    with pytest.raises(errors.StoreWriteError, match="frame_number 40 was not stored"):
        store.add_image(make_frame(40, *SHAPE), 40, 1e9 + 0.4)
    store.close()
    with imgstore.new_for_filename(path) as r:
        assert [read_barcode(r.get_image(None, frame_index=i)[0]) for i in range(r.frame_count)] == list(range(40))


def test_a_left_reserve_is_ignored_by_readers_and_removed_by_repair(tmp_path):
    """A writer that died leaves its reserve: readers do not mind it, repair removes it."""
    path = str(tmp_path / "s")
    with imgstore.new_for_format("h264/mkv", basedir=path, imgshape=SHAPE, imgdtype="uint8") as s:
        for i in range(5):
            s.add_image(make_frame(i, *SHAPE), i, 1.0 + i)
    with open(reserve_path(path), "wb") as f:
        f.truncate(4 << 20)
    with imgstore.new_for_filename(path) as r:
        assert r.frame_count == 5 and r.damaged_chunks == {}
    report = repair(path)
    assert not os.path.exists(reserve_path(path))
    assert any(RESERVE_FILENAME in action for action in report.actions), report.actions


def test_directory_stores_without_free_space_information(tmp_path, monkeypatch):
    """Storage that cannot tell its free space (None) is not guarded: recording goes on."""
    monkeypatch.setattr(LocalStorage, "free_bytes", lambda self, path: None)
    path = str(tmp_path / "s")
    with imgstore.new_for_format("h264/mkv", basedir=path, imgshape=SHAPE, imgdtype="uint8") as s:
        assert not os.path.exists(reserve_path(path))
        for i in range(3):
            s.add_image(make_frame(i, *SHAPE), i, 1.0 + i)
    with imgstore.new_for_filename(path) as r:
        assert r.frame_count == 3
        np.testing.assert_array_equal(r.frame_numbers, [0, 1, 2])


def test_no_room_for_the_next_chunk_stops_at_the_chunk_boundary(tmp_path, free_space):
    """Room for the frame that fills a chunk, not for the reserve of the next: the frame is stored and
    the chunk finished (add_image returns), the next frame is refused with ENOSPC."""
    path = str(tmp_path / "s")
    store = imgstore.new_for_format("h264/mkv", basedir=path, imgshape=SHAPE, imgdtype="uint8", chunksize=12)
    for i in range(11):
        store.add_image(make_frame(i, *SHAPE), i, 1e9 + i / 25)
    free_space["bytes"] = 1 << 20  # enough for a frame, not for another 4 MiB reserve
    store.add_image(make_frame(11, *SHAPE), 11, 1e9 + 11 / 25)  # fills chunk 0: stored
    assert os.path.exists(os.path.join(path, "000000.npz")) and not os.path.exists(reserve_path(path))
    with pytest.raises(errors.StoreWriteError, match="recording stopped before the disk filled") as info:
        store.add_image(make_frame(12, *SHAPE), 12, 1e9 + 12 / 25)
    assert info.value.errno == errno.ENOSPC
    assert "frame_number 12 was not stored; the 12 frames before it are kept" in str(info.value)
    store.close()
    with imgstore.new_for_filename(path) as r:
        assert [read_barcode(r.get_image(None, frame_index=i)[0]) for i in range(r.frame_count)] == list(range(12))
    assert repair(path).clean
