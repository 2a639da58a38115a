"""The reference's public API: names, signatures, return shapes and edge behaviour."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import imgstore
import imgstore.stores
import imgstore.util
from imgstore import errors
from imgstore.testing.barcode import make_frame, read_barcode


def test_names_exist():
    for name in ("new_for_filename", "new_for_format", "get_supported_formats", "extract_only_frame",
                 "VideoImgStore", "DirectoryImgStore", "ensure_color", "ensure_grayscale"):
        assert hasattr(imgstore, name), name
    for name in ("new_for_filename", "new_for_format", "extract_only_frame", "get_supported_formats",
                 "DirectoryImgStore", "VideoImgStore"):
        assert getattr(imgstore.stores, name) is getattr(imgstore, name)
    for name in ("ensure_color", "ensure_grayscale", "FourCC", "ImageCodecProcessor", "JsonCustomEncoder"):
        assert hasattr(imgstore.util, name)
    params = inspect.signature(imgstore.DirectoryImgStore.get_image).parameters
    assert list(params)[:4] == ["self", "frame_number", "exact_only", "frame_index"]
    assert params["exact_only"].default is True and params["frame_index"].default is None


def test_fourcc_matches_opencv():
    import cv2

    assert imgstore.util.FourCC("M", "J", "P", "G") == cv2.VideoWriter_fourcc(*"MJPG")
    assert imgstore.util.FourCC("a", "v", "c", "1") == cv2.VideoWriter_fourcc(*"avc1")


def test_ensure_color_grayscale():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    c = imgstore.ensure_color(g)
    assert c.shape == (3, 4, 3) and (c[..., 0] == g).all()
    assert imgstore.ensure_grayscale(c).shape == (3, 4)
    assert imgstore.ensure_grayscale(g) is g and imgstore.ensure_color(c) is c


def test_supported_formats_include_reference_formats():
    fmts = imgstore.get_supported_formats()
    for f in ("npy", "png", "jpg", "bmp", "tif", "pgm", "ppm", "png+color", "mjpeg/avi", "h264/mkv", "avc1/mp4"):
        assert f in fmts, f


def test_metadata_yaml_path_and_basedir(tmp_path):
    path = tmp_path / "s"
    s = imgstore.new_for_format("npy", str(path), imgshape=(8, 8), imgdtype=np.uint8, chunksize=2)
    s.add_image(np.zeros((8, 8), np.uint8), 0, 1.0)
    s.close()
    for arg in (str(path), str(path / "metadata.yaml"), path):
        with imgstore.new_for_filename(arg) as r:
            assert r.frame_count == 1 and r.filename == str(path)
            assert r.full_path == str(path / "metadata.yaml")
    with imgstore.stores.DirectoryImgStore(basedir=str(path), mode="r") as r:
        assert len(r) == 1
    with imgstore.new_for_format("npy", str(path), mode="r") as r:
        assert r.frame_count == 1
    with pytest.raises(ValueError, match="mutually exclusive"):
        imgstore.new_for_filename(str(path), basedir=str(path))
    with pytest.raises(errors.UnsupportedFormatError, match="'webm'") as info:
        imgstore.new_for_format("webm", str(tmp_path / "x"), imgshape=(8, 8))
    assert isinstance(info.value, ValueError)


def test_return_types_and_state(tmp_path):
    path = str(tmp_path / "s")
    with imgstore.new_for_format("png", basedir=path, imgshape=(32, 40), imgdtype="uint8", chunksize=3) as s:
        assert s.frame_count == 0 and np.isnan(s.frame_number)
        for i in range(7):
            s.add_image(make_frame(10 + i, 32, 40, bits=8), 10 + i, 100.0 + i)
        assert s.frame_count == 7 and s.frame_number == 16 and s.frame_time == 106.0
        assert (s.frame_min, s.frame_max) == (10, 16)
        assert s.chunks == [0, 1]
        assert s.get_frame_metadata()["frame_number"] == list(range(10, 17))
    with imgstore.new_for_filename(path) as s:
        img, (fn, ft) = s.get_next_image()
        assert type(fn) is int and type(ft) is float
        assert isinstance(s.get_frame_metadata()["frame_number"], list)
        assert s.frame_number == 10
        assert read_barcode(img, bits=8) == 10


def test_write_mode_cannot_read_and_read_mode_cannot_write(tmp_path):
    path = str(tmp_path / "s")
    with imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8), chunksize=2) as s:
        s.add_image(np.zeros((8, 8), np.uint8), 0, 1.0)
        with pytest.raises(errors.ModeError, match="reading"):
            s.get_image(0)
    with imgstore.new_for_filename(path) as s:
        with pytest.raises(errors.ModeError, match="writing"):
            s.add_image(np.zeros((8, 8), np.uint8), 1, 2.0)
        with pytest.raises(ValueError):
            s.empty()
    with pytest.raises(errors.StoreClosedError):
        s.get_image(0)


def test_empty_restarts(tmp_path):
    path = str(tmp_path / "s")
    with imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8), chunksize=2) as s:
        for i in range(5):
            s.add_image(np.full((8, 8), i, np.uint8), i, float(i))
        s.add_extra_data(x=1)
        s.empty()
        assert s.frame_count == 0
        s.add_image(np.full((8, 8), 9, np.uint8), 9, 9.0)
    with imgstore.new_for_filename(path) as s:
        assert s.get_frame_metadata() == {"frame_number": [9], "frame_time": [9.0]}
        assert s.get_extra_data() is None
        assert s.get_image(9)[0][0, 0] == 9


def test_encoding_converted_on_read(tmp_path):
    import cv2

    raw = (np.arange(24 * 32) % 251).astype(np.uint8).reshape(24, 32)
    path = str(tmp_path / "bayer")
    with imgstore.new_for_format("png", basedir=path, imgshape=(24, 32), encoding="cv_bayerbg", chunksize=4) as s:
        s.add_image(raw, 0, 0.0)
    expected = cv2.cvtColor(raw, cv2.COLOR_BAYER_BG2BGR if hasattr(cv2, "COLOR_BAYER_BG2BGR") else
                            cv2.COLOR_BayerBG2BGR)
    with imgstore.new_for_filename(path) as s:
        assert s.image_shape == (24, 32, 3)
        np.testing.assert_array_equal(s.get_image(0)[0], expected)
        s.disable_decoding()
        np.testing.assert_array_equal(s.get_image(0)[0], raw)
    # '+color' converts when writing and stores plain colour
    path2 = str(tmp_path / "bayer_color")
    with imgstore.new_for_format("png+color", basedir=path2, imgshape=(24, 32), encoding="cv_bayerbg") as s:
        s.add_image(raw, 0, 0.0)
    with imgstore.new_for_filename(path2) as s:
        assert s.encoding is None and s.image_shape == (24, 32, 3)
        np.testing.assert_array_equal(s.get_image(0)[0], expected)
    with pytest.raises(errors.UnsupportedFormatError, match="cv_nonsense"):
        imgstore.new_for_format("png", basedir=str(tmp_path / "x"), imgshape=(8, 8), encoding="cv_nonsense")


def test_uint16_rejected_where_format_cannot_keep_it(tmp_path):
    with pytest.raises(errors.UnsupportedFormatError, match="uint16"):
        imgstore.new_for_format("jpg", basedir=str(tmp_path / "j"), imgshape=(8, 8), imgdtype="uint16")


def test_reindex(tmp_path):
    path = str(tmp_path / "s")
    numbers = [7, 8, 9, 0, 1, 2, 3]
    with imgstore.new_for_format("npy", basedir=path, imgshape=(4, 4), chunksize=3) as s:
        for i, fn in enumerate(numbers):
            s.add_image(np.full((4, 4), i, np.uint8), fn, float(i))
            s.add_extra_data(k=i)
    with imgstore.new_for_filename(path) as s:
        s.reindex()
        assert s.get_frame_metadata()["frame_number"] == [-3, -2, -1, 0, 1, 2, 3]
        assert s.get_image(-2)[0][0, 0] == 1
        df = s.get_extra_data()
        assert df["frame_number"].tolist() == [-3, -2, -1, 0, 1, 2, 3]
        assert df["_frame_number_before_reindex"].tolist() == numbers
    with imgstore.new_for_filename(path) as s:
        assert s.get_frame_metadata()["frame_number"][0] == -3
    path2 = str(tmp_path / "two_zeros")
    with imgstore.new_for_format("npy", basedir=path2, imgshape=(4, 4), chunksize=3) as s:
        for i, fn in enumerate([0, 1, 0]):
            s.add_image(np.zeros((4, 4), np.uint8), fn, float(i))
    with imgstore.new_for_filename(path2) as s:
        with pytest.raises(ValueError, match="2 frame_number=0"):
            s.reindex()
        assert s.get_frame_metadata()["frame_number"] == [0, 1, 0]


def test_created_can_be_given(tmp_path):
    import datetime
    from zoneinfo import ZoneInfo

    when = datetime.datetime(2023, 5, 6, 7, 8, 9, tzinfo=ZoneInfo("Europe/Vienna"))
    path = str(tmp_path / "s")
    with imgstore.new_for_format("npy", basedir=path, imgshape=(4, 4), created_utc=when,
                                 timezone_local="Europe/Vienna") as s:
        s.add_image(np.zeros((4, 4), np.uint8), 0, 0.0)
    with imgstore.new_for_filename(path) as s:
        created, tz = s.created
        assert created == when and str(tz) == "Europe/Vienna"
    with pytest.raises(errors.MetadataError, match="'yesterday'"):
        imgstore.new_for_format("npy", basedir=str(tmp_path / "t"), imgshape=(4, 4), created_utc="yesterday")
