"""imgstore-save: test pattern, video files, options, clean stop on SIGINT/SIGTERM, bad arguments."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest

import imgstore
from imgstore.cli import save
from imgstore.cli._common import default_format
from imgstore.testing.barcode import make_frame, read_barcode

from .cli_util import one_error_line


def make_video(path, n: int, fps: int = 25, shape=(96, 160)) -> None:
    """A lossless grey video of barcode frames 0..n-1 (FFV1 in Matroska)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=Fraction(fps))
        stream.height, stream.width = shape
        stream.pix_fmt = "gray"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(make_frame(i, *shape), format="gray")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_default_is_testsrc_demo(tmp_path, monkeypatch, capsys):
    """``imgstore-save DEST`` alone records 300 test frames into the default format."""
    fmt = default_format()
    monkeypatch.setattr(save, "camera_present", lambda index=0: False)
    monkeypatch.setattr(save, "DEFAULT_TESTSRC_SIZE", (160, 96))  # the 640x480 default only costs time
    dest = str(tmp_path / "demo")
    t = time.time()
    assert save.main([dest]) == 0
    out = capsys.readouterr().out
    assert "recorded 300 frames" in out
    assert re.search(r"^frame_number\s+0 \.\. 299$", out, re.M)  # the summary of imgstore-info
    with imgstore.new_for_filename(dest) as store:
        assert store.format == fmt
        assert store.image_shape == (96, 160)
        assert list(store.frame_numbers) == list(range(300))
        # full speed, but stamped as a 30 fps recording that started now
        np.testing.assert_allclose(np.diff(store.frame_times), 1 / 30, atol=1e-6)
        assert t - 1 <= store.frame_times[0] <= time.time()
        for i in (0, 150, 299):
            assert read_barcode(store[i]) == i


def test_testsrc_options(tmp_path, capsys):
    dest = str(tmp_path / "s")
    argv = [dest, "--source", "testsrc", "--format", "png", "--frames", "12", "--size", "96x64", "--color",
            "--chunksize", "5", "--metadata", "genotype=wt", "--metadata", "temperature=21.5",
            "--metadata", 'tags=["a", "b"]', "--start-time", "2024-05-01T12:00:00+00:00"]
    assert save.main(argv) == 0
    assert "recorded 12 frames" in capsys.readouterr().out
    with imgstore.new_for_filename(dest) as store:
        assert store.image_shape == (64, 96, 3)
        assert store.chunks == [0, 1, 2]
        assert store.user_metadata == {"genotype": "wt", "temperature": 21.5, "tags": ["a", "b"]}
        assert store.frame_times[0] == 1714564800.0
        np.testing.assert_array_equal(store[11], make_frame(11, 64, 96, color=True))


def test_testsrc_paced_duration(tmp_path, capsys):
    dest = str(tmp_path / "paced")
    t = time.time()
    assert save.main([dest, "--source", "testsrc", "--format", "npy", "--size", "64x48", "--fps", "40",
                      "--duration", "0.4875"]) == 0
    elapsed = time.time() - t
    with imgstore.new_for_filename(dest) as store:
        # wall-clock stamps 25 ms apart; the duration falls half-way between frames 19 and 20
        # so timer jitter of up to 12 ms cannot change the count
        assert len(store) == 20
        assert store.frame_times[0] >= t - 0.01
        assert store.frame_times[-1] - store.frame_times[0] < 0.4875
        assert np.median(np.diff(store.frame_times)) == pytest.approx(1 / 40, abs=0.01)
    assert elapsed >= 0.47


def test_from_video_file(tmp_path, capsys):
    video = tmp_path / "in.mkv"
    make_video(video, 25, fps=25)
    dest = str(tmp_path / "from_file")
    assert save.main([dest, "--source", str(video), "--format", "npy", "--grey", "--start-time",
                      "1700000000"]) == 0
    out = capsys.readouterr().out
    assert "recorded 25 frames" in out
    with imgstore.new_for_filename(dest) as store:
        assert list(store.frame_numbers) == list(range(25))
        # start time + each frame's presentation time (Matroska keeps milliseconds)
        np.testing.assert_allclose(store.frame_times, 1_700_000_000 + np.arange(25) / 25, atol=1e-3)
        for i in range(25):
            np.testing.assert_array_equal(store[i], make_frame(i, 96, 160))
        assert store.duration == pytest.approx(0.96, abs=1e-3)


def test_from_video_file_limits_and_size(tmp_path, capsys):
    video = tmp_path / "in.mkv"
    make_video(video, 25, fps=25)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert save.main([a, "--source", str(video), "--format", "npy", "--duration", "0.5", "--size", "80x48"]) == 0
    assert save.main([b, "--source", str(video), "--format", "npy", "--frames", "5"]) == 0
    with imgstore.new_for_filename(a) as store:
        assert len(store) == 13  # pts 0 .. 0.48 s
        assert store.image_shape == (48, 80, 3)  # files default to colour
        assert read_barcode(store[7]) == 7
    with imgstore.new_for_filename(b) as store:
        assert len(store) == 5


def test_from_video_file_into_video_store(tmp_path, capsys):
    video = tmp_path / "in.mkv"
    make_video(video, 10)
    dest = str(tmp_path / "v")
    assert save.main([dest, "--source", str(video), "--format", "ffv1/mkv", "--grey"]) == 0
    with imgstore.new_for_filename(dest) as store:
        assert store.format == "ffv1/mkv" and len(store) == 10
        np.testing.assert_array_equal(store[9], make_frame(9, 96, 160))


class FakeCapture:
    """Stands in for ``cv2.VideoCapture`` of a camera: 10 colour barcode frames, then nothing."""

    frames = 10

    def __init__(self, index):
        self.index = index
        self.n = 0
        self.props = {}

    def isOpened(self):
        return self.index == 0

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def get(self, prop):
        return self.props.get(prop, 0.0)

    def read(self):
        if self.n >= self.frames:
            return False, None
        self.n += 1
        return True, make_frame(self.n - 1, 48, 64, color=True)

    def release(self):
        pass


def test_camera(tmp_path, monkeypatch, capsys):
    import cv2

    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    monkeypatch.setattr(save, "camera_present", lambda index=0: True)
    dest = str(tmp_path / "cam")
    t = time.time()
    assert save.main([dest, "--source", "0", "--format", "npy", "--grey", "--fps", "30"]) == 0
    out = capsys.readouterr().out
    assert "recording camera 0" in out and "press Ctrl-C to stop" in out
    with imgstore.new_for_filename(dest) as store:
        assert len(store) == 10 and store.image_shape == (48, 64)  # converted to grey
        assert list(store.frame_numbers) == list(range(10))
        # wall-clock stamps
        assert t <= store.frame_times[0] <= store.frame_times[-1] <= time.time()
        assert read_barcode(store[7]) == 7


def test_camera_missing(tmp_path, monkeypatch, capsys):
    import cv2

    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    monkeypatch.setattr(save, "camera_present", lambda index=0: True)  # the device is there but will not open
    assert save.main([str(tmp_path / "cam"), "--source", "3", "--format", "npy"]) == 1
    assert "could not open camera 3" in one_error_line(capsys.readouterr().err, "imgstore-save")


def test_source_auto_prefers_camera(tmp_path, monkeypatch, capsys):
    import cv2

    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    monkeypatch.setattr(save, "camera_present", lambda index=0: True)
    dest = str(tmp_path / "auto")
    assert save.main([dest, "--source", "auto", "--format", "npy"]) == 0
    with imgstore.new_for_filename(dest) as store:
        assert store.image_shape == (48, 64, 3)  # the camera's colour frames, not the test pattern
        assert len(store) == FakeCapture.frames


def _read_until(stream, pattern: re.Pattern, deadline: float) -> tuple[re.Match | None, str]:
    """Read a pipe until ``pattern`` matches what was read (or the deadline passes)."""
    seen = b""
    fd = stream.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen += chunk
        text = seen.decode(errors="replace")
        m = pattern.search(text)
        if m:
            return m, text
    return None, seen.decode(errors="replace")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly(tmp_path, sig):
    dest = str(tmp_path / f"live_{sig.name}")
    # --fps without --frames/--duration: a live test pattern that runs until stopped
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgstore", "save", dest, "--source", "testsrc", "--format", "npy", "--fps", "50",
         "--size", "64x48", "--chunksize", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # wait for the live counter (tqdm on stderr) to show at least 8 frames
        m, err = _read_until(proc.stderr, re.compile(r"(\d+) frames \["), time.monotonic() + 30)
        progress = re.findall(r"(\d+) frames \[", err)
        assert m and progress, f"no progress seen: {err!r}"
        while int(progress[-1]) < 8:
            m, more = _read_until(proc.stderr, re.compile(r"(\d+) frames \["), time.monotonic() + 30)
            assert m, f"recording stalled: {err + more!r}"
            progress = re.findall(r"(\d+) frames \[", more)
        proc.send_signal(sig)
        out_bytes, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest.decode()
    out = out_bytes.decode()
    m = re.search(rf"stopped after (\d+) frames \({sig.name}\)", out)
    assert m, out
    n = int(m.group(1))
    assert n >= int(progress[-1])
    with imgstore.new_for_filename(dest) as store:
        assert len(store) == n
        assert list(store.frame_numbers) == list(range(n))
        assert read_barcode(store[n - 1]) == n - 1
        # wall-clock stamps at about 50 fps
        assert np.median(np.diff(store.frame_times)) == pytest.approx(0.02, abs=0.01)
    assert re.search(rf"^frames\s+{n} in ", out, re.M)  # the summary was printed after stopping


def test_existing_store_needs_overwrite(tmp_path, capsys):
    dest = str(tmp_path / "s")
    args = [dest, "--source", "testsrc", "--format", "npy", "--frames", "3", "--size", "32x32"]
    assert save.main(args) == 0
    capsys.readouterr()
    assert save.main(args) == 1
    assert "already exists" in one_error_line(capsys.readouterr().err, "imgstore-save")
    assert save.main([*args, "--overwrite", "--frames", "4"]) == 0
    with imgstore.new_for_filename(dest) as store:
        assert len(store) == 4


@pytest.mark.parametrize("extra, status, message", [
    (["--source", "/no/such/movie.mp4"], 2, "no such file"),
    (["--source", "testsrc", "--format", "bogus"], 2, "format 'bogus' is not supported"),
    (["--source", "testsrc", "--size", "0x10"], 2, "must be positive"),
    (["--source", "testsrc", "--size", "large"], 2, "not a size"),
    (["--source", "testsrc", "--frames", "-3"], 2, "greater than 0"),
    (["--source", "testsrc", "--fps", "nan"], 2, "positive number"),
    (["--source", "testsrc", "--metadata", "novalue"], 2, "KEY=VALUE"),
    (["--source", "testsrc", "--metadata", "__store=1"], 2, "reserved"),
    (["--source", "testsrc", "--start-time", "yesterday"], 2, "ISO date-time"),
    (["--color", "--grey"], 2, "not allowed with"),
])
def test_bad_arguments(tmp_path, capsys, extra, status, message):
    """Every bad value is a bad argument: exit status 2 (docs/cli.md), one line naming it."""
    dest = str(tmp_path / "s")
    assert save.main([dest, "--format", "npy", *extra] if "--format" not in extra else [dest, *extra]) == status
    assert message in one_error_line(capsys.readouterr().err, "imgstore-save")
    assert not os.path.exists(os.path.join(dest, "metadata.yaml"))


def test_bad_video_file(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    assert save.main([str(tmp_path / "s"), "--source", str(bad), "--format", "npy"]) == 1
    assert "cannot open video file" in one_error_line(capsys.readouterr().err, "imgstore-save")
