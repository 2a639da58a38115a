"""The commands ask the backend registry which formats exist and which options each takes.

Nothing in the command-line tools decides "not a directory format, so video": a format's
writing options come from :func:`imgstore.backends.registry.write_options` and its store
class from :func:`imgstore.backends.registry.class_for_format`. The tests change what the
npy backend declares and check that the commands follow.
"""

from __future__ import annotations

from typing import Any

import pytest

import imgstore
from imgstore.backends.directory import DirectoryBackend
from imgstore.backends.video import VideoImgStore
from imgstore.cli import _common, convert, save
from imgstore.testing.barcode import make_frame


class NpyDeclaration:
    """What the npy backend declares it takes (``takes``) and the options each new npy store received."""

    def __init__(self) -> None:
        self.takes: set[str] = set()
        self.received: list[dict[str, Any]] = []


@pytest.fixture
def npy_backend(monkeypatch) -> NpyDeclaration:
    declaration = NpyDeclaration()
    real_write_options = DirectoryBackend.write_options
    real_prepare_write = DirectoryBackend.prepare_write

    def write_options(cls, fmt: str) -> frozenset[str]:
        return frozenset(declaration.takes) if fmt == "npy" else real_write_options(fmt)

    def prepare_write(self, fmt, imgshape, imgdtype, encoding, options):
        if fmt == "npy":
            declaration.received.append(dict(options))
            for name in declaration.takes:  # a backend takes out of ``options`` what it declares
                options.pop(name, None)
        return real_prepare_write(self, fmt, imgshape, imgdtype, encoding, options)

    monkeypatch.setattr(DirectoryBackend, "write_options", classmethod(write_options))
    monkeypatch.setattr(DirectoryBackend, "prepare_write", prepare_write)
    return declaration


def _save(dest: str, *extra: str) -> int:
    return save.main([dest, "--source", "testsrc", "--size", "64x48", "--frames", "3", *extra])


@pytest.mark.parametrize("takes, expected", [
    ({"fps"}, {"fps": 40.0}),
    ({"quality"}, {"quality": 7}),
    ({"fps", "quality"}, {"fps": 40.0, "quality": 7}),
    (set(), {}),
])
def test_save_passes_the_options_the_format_declares(npy_backend, tmp_path, takes, expected):
    npy_backend.takes = takes
    assert _save(str(tmp_path / "s"), "--format", "npy", "--fps", "40", "--quality", "7") == 0
    assert npy_backend.received == [expected]


def test_save_says_when_quality_does_not_apply(tmp_path, capsys):
    dest = str(tmp_path / "s")
    assert _save(dest, "--format", "png", "--quality", "5") == 0
    assert "imgstore-save: warning: --quality does not apply to format png; ignored" in capsys.readouterr().err
    with imgstore.new_for_filename(dest) as store:
        assert store.format == "png" and len(store) == 3


def test_save_gives_video_its_options(tmp_path, capsys):
    dest = str(tmp_path / "v")
    assert _save(dest, "--format", "mjpeg", "--fps", "40", "--quality", "5") == 0
    assert "warning" not in capsys.readouterr().err
    with imgstore.new_for_filename(dest) as store:
        assert store.format == "mjpeg/avi"
        assert store.metadata["video_options"] == {"fps": 40.0, "quality": 5}


@pytest.fixture
def png_source(tmp_path) -> str:
    path = str(tmp_path / "src")
    with imgstore.new_for_format("png", basedir=path, imgshape=(48, 64), imgdtype="uint8", chunksize=4) as store:
        for i in range(6):
            store.add_image(make_frame(i, 48, 64), i, 1_700_000_000.0 + i / 10)
    return path


def test_convert_passes_the_options_the_format_declares(npy_backend, png_source, tmp_path):
    npy_backend.takes = {"fps"}
    assert convert.main([png_source, str(tmp_path / "d"), "--format", "npy", "--fps", "12", "--quality", "3"]) == 0
    assert npy_backend.received == [{"fps": 12.0}]


def test_convert_says_when_quality_does_not_apply(png_source, tmp_path, capsys):
    assert convert.main([png_source, str(tmp_path / "d"), "--format", "npy", "--quality", "3"]) == 0
    assert "imgstore-convert: warning: --quality does not apply to format npy; ignored" in capsys.readouterr().err


def test_convert_keeps_chunking_only_within_one_store_class(png_source, tmp_path):
    """png -> npy: both DirectoryImgStore, chunks of 4 kept; png -> mjpeg/avi: the video class's default."""
    same, other = str(tmp_path / "npy"), str(tmp_path / "avi")
    assert convert.main([png_source, same, "--format", "npy"]) == 0
    assert convert.main([png_source, other, "--format", "mjpeg/avi"]) == 0
    with imgstore.new_for_filename(same) as a, imgstore.new_for_filename(other) as b:
        assert a.chunksize == 4
        assert b.chunksize == VideoImgStore.DEFAULT_CHUNKSIZE != 4


def test_formats_come_from_every_writing_store_class():
    formats, why = _common.available_formats()
    assert why is None
    assert formats == imgstore.get_supported_formats()
    assert "npy" in formats and "mjpeg/avi" in formats
