"""imgstore-verify and imgstore.verify: truncated, flipped-byte and healthy stores; imgstore-info's cheap check."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import imgstore
from imgstore import verify as verify_mod
from imgstore.cli import info, verify
from imgstore.testing.barcode import make_frame

SHAPE = (48, 96)
T0 = 1_700_000_000.0


def make_store(path: str, fmt: str, n: int = 60, chunksize: int = 20) -> str:
    with imgstore.new_for_format(fmt, basedir=path, imgshape=SHAPE, imgdtype="uint8", chunksize=chunksize) as s:
        for i in range(n):
            s.add_image(make_frame(i, *SHAPE), i, T0 + i / 25)
    return path


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def truncated_video(tmp_path) -> str:
    """An H.264 store of 3 chunks of 20 frames whose middle chunk's file was cut to 80 %."""
    path = make_store(str(tmp_path / "mkv"), "h264/mkv")
    video = os.path.join(path, "000001.mkv")
    os.truncate(video, os.path.getsize(video) * 8 // 10)
    return path


def test_healthy_store_is_ok(tmp_path, capsys):
    path = make_store(str(tmp_path / "ok"), "h264/mkv")
    report = verify_mod.verify(path, workers=2)
    assert report.ok and report.damaged_frames == 0
    assert [(c.chunk, c.start, c.stop, c.frames_read) for c in report.chunks] == [
        (0, 0, 20, 20), (1, 20, 40, 20), (2, 40, 60, 20)]
    assert verify.main([path, "-q"]) == 0
    assert "ok: all 60 frames in 3 chunks" in capsys.readouterr().out


def test_truncated_video_chunk(truncated_video, capsys):
    report = verify_mod.verify(truncated_video, workers=2)
    assert not report.ok
    [problem] = report.problems
    assert problem.kind == "truncated" and problem.chunk == 1
    assert problem.first is not None
    # the cut lands inside chunk 1 and runs to its end; chunks 0 and 2 are untouched
    assert 20 < problem.first < 40 and problem.last == 39
    assert (problem.frame_number_first, problem.frame_number_last) == (problem.first, 39)
    assert report.chunks[0].ok and report.chunks[2].ok
    assert report.chunks[1].frames_read == problem.first - 20

    assert verify.main([truncated_video, "-q"]) == 1
    out = capsys.readouterr().out
    assert f"chunk 1: truncated: frame_index {problem.first}-39" in out
    assert f"DAMAGED: 1 of 3 chunks; {40 - problem.first} of 60 indexed frames" in out

    assert verify.main([truncated_video, "-q", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["damaged_frames"] == 40 - problem.first
    assert doc["chunks"][1]["problems"][0]["kind"] == "truncated"


@pytest.mark.parametrize("fmt", ["png", "npy", "pgm"])
def test_flipped_byte_in_a_frame_file(tmp_path, capsys, fmt):
    """One flipped pixel byte: raw formats decode it as another image; the checksum does not."""
    path = make_store(str(tmp_path / fmt), fmt)
    frame_file = os.path.join(path, "000002", f"000007.{fmt}")
    flip_byte(frame_file, os.path.getsize(frame_file) - 3)
    report = verify_mod.verify(path, workers=1)
    [problem] = report.problems
    assert (problem.kind, problem.chunk, problem.first, problem.last) == ("corrupt", 2, 47, 47)
    assert f"000007.{fmt}" in problem.detail and "fails its checksum" in problem.detail
    assert verify.main([path, "-q"]) == 1
    assert "chunk 2: corrupt: frame_index 47 (frame_number 47)" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["h264/mkv", "avc1/mp4", "ffv1/mkv"])
def test_flipped_byte_in_a_video_packet(tmp_path, capsys, fmt):
    """A byte flipped in one frame's packet: that frame, and those decoded from it, are reported corrupt."""
    import av

    path = make_store(str(tmp_path / fmt.replace("/", "-")), fmt)
    video = os.path.join(path, "000002." + fmt.split("/")[1])
    with av.open(video) as container:
        packets = sorted((p for p in container.demux(container.streams.video[0]) if p.size), key=lambda p: p.pts)
        target = packets[7]  # frame_index 47
        offset = int(target.pos) + target.size * 2 // 3
    flip_byte(video, offset)
    report = verify_mod.verify(path, workers=1)
    [problem] = report.problems
    assert (problem.kind, problem.chunk) == ("corrupt", 2)
    if fmt == "ffv1/mkv":  # intra only: that frame alone
        assert (problem.first, problem.last) == (47, 47)
    else:
        # B-frames shown before it are decoded after it, and frames after it in the GOP from it
        assert 40 < problem.first <= 47 <= problem.last <= 59
    assert "the packet of frame 7" in problem.detail and "fails its checksum" in problem.detail
    assert report.chunks[0].ok and report.chunks[1].ok
    assert verify.main([path, "-q"]) == 1
    assert f"chunk 2: corrupt: frame_index {problem.first}" in capsys.readouterr().out


def test_flipped_byte_without_checksums_is_found_by_the_decoder_only(tmp_path):
    """A store as imgstore 0.4 writes it (no checksums): damage the decoder notices is still reported."""
    path = make_store(str(tmp_path / "png"), "png")
    for chunk in sorted(os.listdir(path)):
        index = os.path.join(path, chunk, "index.npz")
        if os.path.exists(index):
            arrays = dict(np.load(index))
            del arrays["payload_xxh3"]
            np.savez(index, **arrays)
    flip_byte(os.path.join(path, "000002", "000007.png"), 120)  # inside the compressed pixels
    [problem] = verify_mod.verify(path, workers=1).problems
    assert (problem.kind, problem.first) == ("unreadable", 47) and "000007.png" in problem.detail


def test_missing_frame_file_and_extra_packets_are_named(tmp_path):
    path = make_store(str(tmp_path / "npy"), "npy")
    os.unlink(os.path.join(path, "000000", "000003.npy"))
    [problem] = verify_mod.verify(path).problems
    assert (problem.kind, problem.first) == ("unreadable", 3)


def test_info_reports_the_truncated_chunk_and_points_to_verify(truncated_video, capsys):
    with imgstore.new_for_filename(truncated_video) as store:
        summary = info.summarize(store)
    [note] = summary["quick_check"]["problems"]
    assert note.startswith("chunk 1: the video file ends before the last of its 20 indexed frames")
    assert info.main([truncated_video]) == 0
    out = capsys.readouterr().out
    assert "DAMAGED" in out and f"imgstore-verify {truncated_video}" in out


def test_info_quick_check_clean(tmp_path, capsys):
    path = make_store(str(tmp_path / "png"), "png")
    assert info.main([path]) == 0
    assert "chunk files match the index" in capsys.readouterr().out
    os.unlink(os.path.join(path, "000001", "000004.png"))
    assert info.main([path]) == 0
    assert "chunk 1: 19 frame files for 20 indexed frames" in capsys.readouterr().out


def test_verify_script_entry_point(truncated_video):
    """``imgstore verify`` (the umbrella command) exits 1 on damage and 2 on bad arguments."""
    run = lambda *a: subprocess.run([sys.executable, "-m", "imgstore", "verify", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    assert run(truncated_video, "-q").returncode == 1
    bad = run(truncated_video, "--workers", "0")
    assert bad.returncode == 2 and "--workers" in bad.stderr
