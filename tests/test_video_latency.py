"""Video writers bound in wall-clock time how long a frame stays in memory; long frame_time gaps.

Item 1 (loss bounded in wall clock): a frame ``add_image`` took reaches the file within
``MAX_LATENCY_S`` without any further frame (at a low rate, across a pause), whether the muxer
holds it (flushed) or the encoder does (the chunk is finished early and the next frame opens
a new one). The tests wait for that condition (polling the file); the crash torture
(``test_crash_torture.py``) checks the 1 s bound against SIGKILL at random moments.

Item 2 (long gaps): frame times hours, days and a month apart, jitter and clock steps back are
accepted by every format and read back exactly; a step no 64-bit timestamp can hold is refused
by name before anything is written, and the writer goes on.
"""

from __future__ import annotations

import os
import shutil
import time
from fractions import Fraction

import numpy as np
import pytest

import imgstore
from imgstore.backends.pyav import (
    SealedChunkError,
    VideoChunkReader,
    VideoChunkWriter,
    available_video_formats,
    build_frame_table,
)
from imgstore.backends.pyav.encoding import encoder_settings
from imgstore.backends.pyav.formats import get_format_spec
from imgstore.backends.pyav.latency import MuxerFlush
from imgstore.backends.pyav.timeline import MAX_STEP_S, Timeline
from imgstore.errors import InvalidFrameMetadataError
from imgstore.testing.barcode import make_frame, read_barcode

FORMATS = [f for f in ["h264/mkv", "avc1/mp4", "hevc/mp4", "ffv1/mkv", "mjpeg/avi", "h264-lossless/mkv"]
           if f in available_video_formats()]
H, W = 48, 64
#: how long a test waits for a condition that should hold within a second (a loaded machine)
PATIENCE_S = 20.0


def frames_in_file(path: str, scratch: str) -> int:
    """Frames a crash-recovery would find in `path` now (read from a copy: the writer goes on)."""
    if not os.path.exists(path):
        return 0
    shutil.copyfile(path, scratch)
    return len(build_frame_table(scratch)["pts"])


def wait_for(condition, what: str) -> None:
    """Wait until ``condition()`` holds (the writer's own thread makes it true)."""
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {PATIENCE_S} s: {what}"
        time.sleep(0.01)


# ------------------------------------------------------------------------------ the writer


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_written_frame_reaches_the_file_without_a_next_frame(tmp_path, fmt):
    """Today's muxers hold the last packet until the next one, encoders several frames: at a low
    rate or in a pause a frame stayed in memory until more frames came."""
    path = str(tmp_path / ("c" + get_format_spec(fmt).extension))
    scratch = str(tmp_path / ("copy" + get_format_spec(fmt).extension))
    # frame_interval 1 s: frames come slowly, the writer chooses its low-latency settings
    w = VideoChunkWriter(path, fmt, height=H, width=W, color=False, max_latency=0.3, frame_interval=1.0)
    assert w.low_latency == (fmt not in ("mjpeg/avi", "ffv1/mkv"))
    for i in range(3):
        w.write(make_frame(i, H, W), frame_time=1.7e9 + i)
        wait_for(lambda i=i: frames_in_file(path, scratch) == i + 1, f"{fmt}: frame {i} in the file")
    assert not w.sealed  # the muxer was flushed; the file goes on
    assert w.latency_stats["held_frames_max"] == 0 and w.latency_stats["flushes"] >= (fmt != "mjpeg/avi") * 3
    table = w.close()
    with VideoChunkReader(path, color=False, frame_table=table) as r:
        assert [read_barcode(r.read(i)) for i in range(3)] == [0, 1, 2]


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f in ("h264/mkv", "avc1/mp4", "hevc/mp4")])
def test_a_pause_with_frames_in_the_encoder_finishes_the_chunk(tmp_path, fmt):
    path = str(tmp_path / ("c" + get_format_spec(fmt).extension))
    # frames expected fast: B-frames and lookahead, the encoder holds frames back
    w = VideoChunkWriter(path, fmt, height=H, width=W, color=False, fps=60, max_latency=0.3,
                         frame_interval=1 / 200)
    assert not w.low_latency
    for i in range(30):
        w.write(make_frame(i, H, W), frame_time=1.7e9 + i / 60)
    assert w.latency_stats["held_frames_max"] > 0
    wait_for(lambda: w.sealed, f"{fmt}: the writer finishes its file in the pause")
    with pytest.raises(SealedChunkError):
        w.write(make_frame(30, H, W))
    table = w.close()
    on_disk = build_frame_table(path)  # a complete file: nothing dropped
    np.testing.assert_array_equal(on_disk["pts"], table["pts"])
    with VideoChunkReader(path, color=False, frame_table=table) as r:
        assert [read_barcode(r.read(i)) for i in range(30)] == list(range(30))


def test_the_muxer_flush_is_found_in_this_pyav(tmp_path):
    """MuxerFlush reaches PyAV's AVFormatContext; a PyAV whose layout changed must fail here, not
    fall back silently to a chunk per frame at low rates."""
    for fmt in ("h264/mkv", "avc1/mp4"):
        w = VideoChunkWriter(str(tmp_path / ("c" + get_format_spec(fmt).extension)), fmt, height=H, width=W,
                             color=False, max_latency=0.5)
        assert w.latency_stats["muxer_flush"], fmt
        w.close()


def test_without_a_muxer_flush_the_chunk_is_finished_instead(tmp_path, monkeypatch):
    monkeypatch.setattr(MuxerFlush, "attach", classmethod(lambda cls, container: None))
    path = str(tmp_path / "c.mkv")
    w = VideoChunkWriter(path, "ffv1/mkv", height=H, width=W, color=False, max_latency=0.2)
    w.write(make_frame(0, H, W), frame_time=0.0)
    wait_for(lambda: w.sealed, "the writer finishes its file")
    assert len(w.close()["pts"]) == len(build_frame_table(path)["pts"]) == 1


def test_no_deadline_thread_without_max_latency(tmp_path):
    w = VideoChunkWriter(str(tmp_path / "c.mkv"), "h264/mkv", height=H, width=W, color=False)
    w.write(make_frame(0, H, W))
    assert w.latency_stats["flushes"] == 0
    assert len(w.close()["pts"]) == 1


@pytest.mark.parametrize("interval, low", [(None, False), (1 / 60, False), (1 / 25, False), (1 / 15, True),
                                           (2.0, True), (float("inf"), True)])
def test_encoder_settings_follow_the_frame_interval(interval, low):
    spec = get_format_spec("h264/mkv")
    s = encoder_settings(spec, "libx264", 480, 640, 25.0, None, None, None, interval)
    assert s.low_latency == low
    assert ("zerolatency" in s.options["tune"]) == low and "fastdecode" in s.options["tune"]
    # the caller's tune is kept and still made low-latency
    s = encoder_settings(spec, "libx264", 480, 640, 25.0, None, None, {"tune": None}, 2.0)
    assert s.options["tune"] == "zerolatency"


# ------------------------------------------------------------------------------ the store


@pytest.mark.parametrize("fmt", FORMATS)
def test_store_frames_reach_the_file_at_a_low_rate(tmp_path, fmt):
    """A store's frames are on disk within its MAX_LATENCY_S without any next frame (the first
    chunk may be finished early: its encoder expected 25 frames/s)."""
    dest = str(tmp_path / "s")
    scratch = str(tmp_path / "copy")
    store = imgstore.new_for_format(fmt, basedir=dest, imgshape=(H, W), chunksize=100)
    ext = get_format_spec(fmt).extension

    def on_disk() -> int:
        names = sorted(n for n in os.listdir(dest) if n.endswith(ext))
        return sum(frames_in_file(os.path.join(dest, n), scratch + ext) for n in names)

    for i in range(3):
        store.add_image(make_frame(i, H, W), i, 1.7e9 + 2 * i)
        wait_for(lambda i=i: on_disk() == i + 1, f"{fmt}: frame {i} in the store's files")
    store.close()
    with imgstore.new_for_filename(dest) as s:
        assert s.frame_count == 3 and len(s.chunks) <= 2
        assert [read_barcode(s.get_frame_at(i).image) for i in range(3)] == [0, 1, 2]


def test_store_after_a_pause_goes_on_in_a_new_chunk(tmp_path):
    dest = str(tmp_path / "s")
    store = imgstore.new_for_format("h264/mkv", basedir=dest, imgshape=(H, W), chunksize=1000, fps=100)
    for i in range(40):  # fast: the chunk's encoder holds frames back
        store.add_image(make_frame(i, H, W), i, 1.7e9 + i / 100)
    first = os.path.join(dest, "000000.mkv")
    wait_for(lambda: frames_in_file(first, str(tmp_path / "copy.mkv")) == 40, "40 frames in the paused chunk")
    for i in range(40, 50):
        store.add_image(make_frame(i, H, W), i, 1.7e9 + i / 100)
    store.close()
    with imgstore.new_for_filename(dest) as s:
        assert s.chunks == [0, 1]
        np.testing.assert_array_equal(s.frame_numbers, np.arange(50))
        assert [read_barcode(s.get_frame_at(i).image) for i in range(50)] == list(range(50))


# ------------------------------------------------------------------------------ long gaps

T0 = 1.7e9
#: frame times: regular, 7 h (beyond MP4's 32-bit 6.6 h at 1/90000 s), 30 days, jitter back,
#: a repeated time, a clock set back an hour, 6.6 h, and a month again
GAPPY_TIMES = np.cumsum([T0, 0.04, 0.04, 7 * 3600, 0.04, 30 * 86400, -0.01, 0.0, 0.05, -3600, 0.04,
                         6.6 * 3600, 0.04, 30 * 86400, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04])


@pytest.mark.parametrize("fmt", FORMATS)
def test_long_gaps_in_frame_time(tmp_path, fmt):
    """Before: avc1/mp4 and hevc/mp4 failed with "Not yet implemented in FFmpeg" after a gap of
    more than ~6.6 h, and the frames added before it were lost."""
    dest = str(tmp_path / "s")
    n = len(GAPPY_TIMES)
    with imgstore.new_for_format(fmt, basedir=dest, imgshape=(H, W), chunksize=12) as store:
        for i, t in enumerate(GAPPY_TIMES):
            store.add_image(make_frame(i, H, W), i, float(t))
    with imgstore.new_for_filename(dest) as s:
        np.testing.assert_array_equal(s.frame_times, GAPPY_TIMES)  # the index keeps the true times
        np.testing.assert_array_equal(s.frame_numbers, np.arange(n))
        for i in np.random.default_rng(1).permutation(n):
            frame = s.get_frame_at(int(i))
            assert read_barcode(frame.image) == i and frame.frame_time == GAPPY_TIMES[i]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_jump_no_timestamp_can_hold_is_refused_and_the_writer_goes_on(tmp_path, fmt):
    """Before: OverflowError from PyAV, after which the store refused every further frame."""
    dest = str(tmp_path / "s")
    times = [T0, T0 + 0.04]
    with imgstore.new_for_format(fmt, basedir=dest, imgshape=(H, W), chunksize=5) as store:
        for i, t in enumerate(times):
            store.add_image(make_frame(i, H, W), i, t)
        if fmt != "mjpeg/avi":  # AVI has no timestamps: it stores any time (in the index only)
            with pytest.raises(InvalidFrameMetadataError, match="64-bit"):
                store.add_image(make_frame(99, H, W), 99, T0 + 1e18)
        for i in range(2, 8):
            times.append(T0 + 0.04 * i)
            store.add_image(make_frame(i, H, W), i, times[-1])
    with imgstore.new_for_filename(dest) as s:
        np.testing.assert_array_equal(s.frame_numbers, np.arange(8))
        np.testing.assert_array_equal(s.frame_times, times)
        assert [read_barcode(s.get_frame_at(i).image) for i in range(8)] == list(range(8))


def test_timeline_compresses_long_steps_and_keeps_short_ones():
    tl = Timeline(Fraction(1, 1000), 40)
    got = []
    for t in [0.0, 0.04, 0.08, 0.08, 0.07, 5000.0, 5000.04, 4000.0, 4000.04, 4000.08]:
        pts, state = tl.plan(t)
        tl.commit(state)
        got.append(pts)
    step = int(MAX_STEP_S * 1000)
    assert got == [0, 40, 80, 81, 82, 82 + step, 82 + step + 40,
                   # an hour back: one tick on, then the frames' own spacing again
                   82 + step + 41, 82 + step + 81, 82 + step + 121]
    assert tl.compressed == 1
    before = (tl.last, tl.compressed)
    with pytest.raises(InvalidFrameMetadataError):
        tl.plan(4000.08 + 1e18)
    with pytest.raises(InvalidFrameMetadataError):
        tl.plan(float("nan"))
    assert (tl.last, tl.compressed) == before
    # a far step back (the first frame was garbage) is not refused: the next frame goes on
    pts, state = tl.plan(-1e300)
    assert pts == before[0] + 1
