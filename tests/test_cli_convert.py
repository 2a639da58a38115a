"""imgstore-convert: store to store (numbers, times, metadata, extra data kept) and --to-video + CSV."""

from __future__ import annotations

import csv
import os

import numpy as np
import pandas as pd
import pytest

import imgstore
from imgstore.cli import convert
from imgstore.testing.barcode import make_frame, read_barcode

from .cli_util import one_error_line

T0 = 1_700_000_000.0
#: a gap (10..14 missing) and frame times with a pause, so nothing can be renumbered silently
NUMBERS = [*range(0, 10), *range(15, 40)]
TIMES = [T0 + 0.04 * i + (0.3 if i > 20 else 0.0) for i in range(len(NUMBERS))]






@pytest.fixture
def source(tmp_path) -> str:
    """A png store (colour 96x160, chunks of 8) with user metadata and extra data of varying columns."""
    path = str(tmp_path / "src")
    shape = (96, 160, 3)
    with imgstore.new_for_format("png", basedir=path, imgshape=shape, imgdtype="uint8", chunksize=8,
                                 metadata={"genotype": "wt", "arena": {"x": 1, "y": [2, 3]}}) as store:
        store.add_extra_data(note="before the first frame")
        for i, (fn, ft) in enumerate(zip(NUMBERS, TIMES, strict=False)):
            store.add_image(make_frame(fn, 96, 160, color=True), fn, ft)
            if i % 7 == 0:
                store.add_extra_data(temperature=20.0 + i, note=f"n{i}")
            if i == 12:
                # a second record for the same frame, with a column of its own
                store.add_extra_data(event="lights off")
    return path


def assert_same_store(src_path: str, dest_path: str, exact: bool) -> None:
    with imgstore.new_for_filename(src_path) as a, imgstore.new_for_filename(dest_path) as b:
        assert len(a) == len(b)
        np.testing.assert_array_equal(a.frame_numbers, b.frame_numbers)
        np.testing.assert_array_equal(a.frame_times, b.frame_times)
        assert a.user_metadata == b.user_metadata
        assert a.created == b.created
        assert a.uuid != b.uuid
        ea, eb = a.get_extra_data(), b.get_extra_data()
        assert (ea is None) == (eb is None)
        if ea is not None:
            pd.testing.assert_frame_equal(ea, eb)
        for i in range(len(a)):
            if exact:
                np.testing.assert_array_equal(a[i], b[i])
            else:
                assert read_barcode(b[i]) == a.frame_numbers[i]


def test_png_to_npy_exact(source, tmp_path, capsys):
    dest = str(tmp_path / "npy")
    assert convert.main([source, dest, "--format", "npy"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {len(NUMBERS)} frames, 7 extra-data records to {dest} (npy)" in out
    assert_same_store(source, dest, exact=True)
    with imgstore.new_for_filename(dest) as store:
        assert store.chunksize == 8  # same kind of backend: chunking kept
        records = store.get_extra_data().to_dict("records")
    # each record kept exactly its own keys (the store adds frame_number/frame_time/frame_index)
    first = records[0]
    assert first["note"] == "before the first frame" and first["frame_index"] == -1
    lights = [r for r in records if r.get("event") == "lights off"]
    assert len(lights) == 1 and lights[0]["frame_number"] == NUMBERS[12]


def test_chunksize_option(source, tmp_path, capsys):
    dest = str(tmp_path / "c")
    assert convert.main([source, dest, "--format", "npy", "--chunksize", "20"]) == 0
    with imgstore.new_for_filename(dest) as store:
        assert store.chunksize == 20 and store.chunks == [0, 1]


def test_fixture_with_extra_data(fixture_copy, tmp_path, capsys):
    src = fixture_copy("npy_grey")
    dest = str(tmp_path / "png")
    assert convert.main([src, dest, "--format", "png"]) == 0
    assert_same_store(src, dest, exact=True)


@pytest.mark.parametrize("fmt, exact", [("ffv1/mkv", True), ("h264/mkv", False)])
def test_to_video_store_formats(source, tmp_path, capsys, fmt, exact):
    dest = str(tmp_path / "video")
    assert convert.main([source, dest, "--format", fmt]) == 0
    assert_same_store(source, dest, exact=exact)


def test_motif_store_to_lossless(fixture_copy, tmp_path, capsys):
    src = fixture_copy("motif_libx264_mp4")
    dest = str(tmp_path / "archive")
    assert convert.main([src, dest, "--format", "ffv1/mkv"]) == 0
    with imgstore.new_for_filename(src) as a, imgstore.new_for_filename(dest) as b:
        np.testing.assert_array_equal(a.frame_numbers, b.frame_numbers)
        np.testing.assert_array_equal(a.frame_times, b.frame_times)
        for i in (0, 99, 100, 178):
            np.testing.assert_array_equal(a[i], b[i])  # what the H.264 decoder gave, kept bit-exact


def test_export_video_and_csv(tmp_path, capsys):
    import av

    # odd sizes: the exporter pads to even ones for yuv420p
    src = str(tmp_path / "odd")
    with imgstore.new_for_format("npy", basedir=src, imgshape=(97, 161), imgdtype="uint8") as store:
        for fn, ft in zip(NUMBERS, TIMES, strict=False):
            store.add_image(make_frame(fn, 97, 161), fn, ft)
    video = str(tmp_path / "out.mp4")
    assert convert.main([src, "--to-video", video, "--fps", "25"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {len(NUMBERS)} frames to {video}" in out
    with av.open(video) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (162, 98)
        assert float(stream.average_rate) == 25
        frames = [f.to_ndarray(format="gray") for f in container.decode(stream)]
    assert len(frames) == len(NUMBERS)
    assert [read_barcode(f[:97, :161]) for f in frames] == NUMBERS
    with open(os.path.splitext(video)[0] + ".csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["frame_index", "frame_number", "frame_time"]
    assert [int(r[0]) for r in rows[1:]] == list(range(len(NUMBERS)))
    assert [int(r[1]) for r in rows[1:]] == NUMBERS
    assert [float(r[2]) for r in rows[1:]] == TIMES  # full precision


def test_store_and_video_in_one_pass(source, tmp_path, capsys):
    dest, video = str(tmp_path / "d"), str(tmp_path / "v.mkv")
    assert convert.main([source, dest, "--format", "npy", "--to-video", video]) == 0
    assert os.path.exists(video) and os.path.exists(str(tmp_path / "v.csv"))
    assert_same_store(source, dest, exact=True)


@pytest.mark.parametrize("argv, message, status", [
    (["SRC"], "give DEST", 2),
    (["SRC", "DEST"], "--format is required", 2),
    (["SRC", "SRC", "--format", "npy"], "DEST must differ", 2),
    (["SRC", "DEST", "--format", "bogus"], "--format 'bogus' is not supported", 2),
    (["SRC", "--format", "npy", "--to-video", "TMP/x.mp4"], "--format applies to a DEST", 2),
    (["SRC", "--to-video", "TMP/x.csv"], "video file name", 2),
    (["SRC", "DEST", "--resume"], "does not exist", 1),
    (["TMP/missing", "DEST", "--format", "npy"], "does not exist", 1),
])
def test_bad_arguments(source, tmp_path, capsys, argv, message, status):
    """Bad arguments exit 2, a store that is not there 1 (docs/cli.md)."""
    argv = [a.replace("SRC", source).replace("DEST", str(tmp_path / "dest")).replace("TMP", str(tmp_path))
            for a in argv]
    assert convert.main(argv) == status
    assert message in one_error_line(capsys.readouterr().err, "imgstore-convert")
    assert not os.path.exists(tmp_path / "dest")


def test_existing_outputs_need_overwrite(source, tmp_path, capsys):
    dest, video = str(tmp_path / "d"), str(tmp_path / "v.mp4")
    assert convert.main([source, dest, "--format", "npy"]) == 0
    assert convert.main([source, "--to-video", video]) == 0
    capsys.readouterr()
    assert convert.main([source, dest, "--format", "npy"]) == 1
    assert "already exists" in one_error_line(capsys.readouterr().err, "imgstore-convert")
    assert convert.main([source, "--to-video", video]) == 1
    assert "--overwrite" in one_error_line(capsys.readouterr().err, "imgstore-convert")
    assert convert.main([source, dest, "--format", "png", "--overwrite"]) == 0
    with imgstore.new_for_filename(dest) as store:
        assert store.format == "png"


# ---------------------------------------------------------------------- interruption, damage, resume

def _truncated_h264(tmp_path) -> str:
    """60 barcode frames of H.264 in chunks of 20; the middle chunk's file cut to 80 %."""
    path = str(tmp_path / "damaged")
    with imgstore.new_for_format("h264/mkv", basedir=path, imgshape=(48, 96), imgdtype="uint8", chunksize=20) as s:
        for i in range(60):
            s.add_image(make_frame(i, 48, 96), i, T0 + i / 25)
    video = os.path.join(path, "000001.mkv")
    os.truncate(video, os.path.getsize(video) * 8 // 10)
    return path


def test_damaged_source_frame_stops_with_its_name(tmp_path, capsys):
    src = _truncated_h264(tmp_path)
    dest = str(tmp_path / "out")
    assert convert.main([src, dest, "--format", "npy"]) == 1
    err = one_error_line(capsys.readouterr().err.splitlines()[-1], "imgstore-convert")  # after the progress bar
    with imgstore.new_for_filename(dest) as out:
        kept = len(out)
        assert 20 < kept < 40 and list(out.frame_numbers) == list(range(kept))
    assert f"source frame_index {kept} (frame_number {kept}) cannot be read" in err
    assert f"{dest} is a valid store of the {kept} frames before it" in err and "--skip-damaged" in err


def test_skip_damaged_lists_what_it_left_out(tmp_path, capsys):
    src = _truncated_h264(tmp_path)
    dest = str(tmp_path / "out")
    assert convert.main([src, dest, "--format", "npy", "--skip-damaged"]) == 0
    out = capsys.readouterr().out
    with imgstore.new_for_filename(dest) as store:
        numbers = list(store.frame_numbers)
        first_bad = next(i for i in range(60) if i not in numbers)
        assert numbers == [*range(first_bad), *range(40, 60)]
        assert [read_barcode(store[i]) for i in (first_bad - 1, first_bad)] == [first_bad - 1, 40]
    assert f"skipped {40 - first_bad} unreadable source frames: frame_number {first_bad}-39" in out


def _wait_for_frames(path: str, count: int, proc, deadline_s: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the conversion ended before it could be interrupted"
        if os.path.exists(os.path.join(path, "metadata.yaml")):
            with imgstore.new_for_filename(path) as store:
                if len(store) >= count:
                    return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {count} frames")


def test_ctrl_c_into_video_closes_a_valid_store_then_resume_finishes(tmp_path):
    import signal
    import subprocess
    import sys

    src = str(tmp_path / "src")
    n = 1500
    with imgstore.new_for_format("npy", basedir=src, imgshape=(240, 320), imgdtype="uint8", chunksize=500) as s:
        for i in range(n):
            s.add_image(make_frame(i, 240, 320), i, T0 + i / 25)
    dest = str(tmp_path / "dest")
    proc = subprocess.Popen([sys.executable, "-m", "imgstore", "convert", src, dest, "--format", "h264/mkv",
                             "--chunksize", "400"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_frames(dest, 50, proc)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "encoder" not in err and "error" not in err
    assert "--resume" in err
    with imgstore.new_for_filename(dest) as store:
        kept = len(store)
        assert 0 < kept < n and not store.damaged_chunks
        assert list(store.frame_numbers) == list(range(kept))
        assert read_barcode(store[kept - 1]) == kept - 1

    assert convert.main([src, dest, "--resume"]) == 0
    with imgstore.new_for_filename(dest) as store:
        assert list(store.frame_numbers) == list(range(n))
        assert [read_barcode(store[i]) for i in (kept - 1, kept, n - 1)] == [kept - 1, kept, n - 1]


def test_resume_refuses_a_store_that_is_not_a_conversion(tmp_path, source, capsys):
    other = str(tmp_path / "other")
    with imgstore.new_for_format("npy", basedir=other, imgshape=(96, 160, 3), imgdtype="uint8") as s:
        s.add_image(make_frame(9999, 96, 160, color=True), 9999, 5.0)
    assert convert.main([source, other, "--resume"]) == 1
    assert "is not a conversion of" in one_error_line(capsys.readouterr().err, "imgstore-convert")
    assert convert.main([source, other, "--resume", "--overwrite"]) == 2
