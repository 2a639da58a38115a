"""imgstore-test: the installation check passes here, and reports failures when a format misbehaves."""

from __future__ import annotations

import re

import numpy as np
import pytest

import imgstore
from imgstore.backends.directory import DirectoryBackend
from imgstore.cli import selftest
from imgstore.cli._common import available_formats


def _row(out: str, fmt: str) -> list[str]:
    m = re.search(rf"^{re.escape(fmt)}\s+(.*)$", out, re.M)
    assert m, out
    return m.group(1).split()


def test_directory_formats_pass(capsys):
    assert selftest.main(["--formats", "npy,png,jpg,ppm,png+color", "--frames", "20"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^format\s+write\s+frames exact\s+random access\s+write fps\s+read fps\s+lossless$", out, re.M)
    assert _row(out, "npy")[:3] == ["ok", "ok", "ok"] and _row(out, "npy")[-1] == "yes"
    assert _row(out, "jpg")[:3] == ["ok", "ok", "ok"] and _row(out, "jpg")[-1] == "no"
    assert "all 5 formats ok" in out


def test_every_supported_format(capsys):
    """Every format passes, video included: the PyAV wheels always carry the video layer and
    mjpeg/avi, so their absence is a broken installation or a regression, never a reason to skip."""
    formats, why = available_formats()
    assert why is None, why
    assert "mjpeg/avi" in formats, formats
    status = selftest.main(["--frames", "30"])
    out = capsys.readouterr().out
    assert status == 0, out
    for fmt in formats:
        assert _row(out, fmt)[:3] == ["ok", "ok", "ok"]


def test_unknown_format_fails(capsys):
    assert selftest.main(["--formats", "npy,nosuchformat", "--frames", "5"]) == 1
    out = capsys.readouterr().out
    assert _row(out, "nosuchformat")[:3] == ["FAIL", "-", "-"]
    assert re.search(r"^  nosuchformat: write: .*nosuchformat", out, re.M)
    assert out.rstrip().endswith("FAILED")


def test_wrong_pixels_are_caught(monkeypatch, capsys):
    real = DirectoryBackend.read_frame

    def off_by_one(self, chunk_n, position):
        img = real(self, chunk_n, position).copy()
        if self.metadata.format == "png" and chunk_n == 0 and position == 3:
            img[-1, -1] ^= 1  # one pixel of one frame
        return img

    monkeypatch.setattr(DirectoryBackend, "read_frame", off_by_one)
    assert selftest.main(["--formats", "png,npy", "--frames", "10"]) == 1
    out = capsys.readouterr().out
    assert _row(out, "png")[:3] == ["ok", "FAIL", "ok"]
    assert "frame 1003: pixels differ (lossless format)" in out
    assert _row(out, "npy")[:3] == ["ok", "ok", "ok"]


def test_random_access_mismatch_is_caught(monkeypatch, capsys):
    real = imgstore.ImgStore.get_image

    def wrong_frame(self, frame_number, exact_only=True, frame_index=None):
        # answer every random request with the first frame
        _img, meta = real(self, frame_number, exact_only, frame_index)
        return self[0], meta

    monkeypatch.setattr(imgstore.ImgStore, "get_image", wrong_frame)
    assert selftest.main(["--formats", "npy", "--frames", "10"]) == 1
    out = capsys.readouterr().out
    assert _row(out, "npy")[:3] == ["ok", "ok", "FAIL"]


def test_full_runs_conformance_suite(capfd):
    pytest.importorskip("pytest")
    assert selftest.main(["--formats", "npy", "--frames", "5", "--full"]) == 0
    out = capfd.readouterr().out
    assert "running the conformance suite" in out
    m = re.search(r"(\d+) passed", out)
    assert m and int(m.group(1)) >= 10, out
    assert "failed" not in out


def test_conformance_module_source():
    src = selftest.conformance_module_source(["npy", "h264/mkv", "ppm"])
    namespace: dict = {}
    exec(compile(src, "generated", "exec"), namespace)
    classes = {k: v for k, v in namespace.items() if k.startswith("Test_")}
    assert sorted((c.fmt, c.color) for c in classes.values()) == [("h264/mkv", False), ("npy", False),
                                                                  ("ppm", True)]


def test_bad_arguments(capsys):
    assert selftest.main(["--frames", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("imgstore-test: error: argument --frames")


def test_helper_detects_lossless(tmp_path):
    res = selftest.check_format_roundtrip("npy", str(tmp_path), n_frames=6)
    assert res.ok and res.lossless is True and np.isfinite(res.write_fps)
