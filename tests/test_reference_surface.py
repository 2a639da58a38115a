"""imgstore 0.4's calling conventions, modules, helpers and private names (issue: a drop-in successor).

Each test states the reference's behaviour it keeps (read from imgstore 0.4.0's source);
``tests/test_reference_privates.py`` compares the two libraries on the same stores.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import subprocess
import sys
import warnings
from zoneinfo import ZoneInfo

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.testing.barcode import make_frame, read_barcode

SHAPE = (32, 48)
#: every name the reference's modules define (from imgstore 0.4.0's source), minus its OpenCV UI
REFERENCE_NAMES = {
    "imgstore": ["DirectoryImgStore", "VideoImgStore", "__version__", "ensure_color", "ensure_grayscale",
                 "extract_only_frame", "get_supported_formats", "main_test", "new_for_filename", "new_for_format",
                 "test"],
    "imgstore.stores": ["DEVNULL", "DirectoryImgStore", "EXTRA_DATA_FILE_EXTENSIONS", "FourCC",
                        "ImageCodecProcessor", "ImgStoreIndex", "JsonCustomEncoder", "STORE_INDEX_FILENAME",
                        "STORE_LOCK_FILENAME", "STORE_MD_FILENAME", "STORE_MD_KEY", "VideoImgStore", "_FRAME_MD",
                        "_ImgStore", "_VERBOSE_DEBUG_CHUNKS", "_VERBOSE_DEBUG_GETS", "_VERBOSE_VERY",
                        "_extract_ranges", "_extract_store_metadata", "_parse_basedir_fullpath", "ensure_color",
                        "ensure_grayscale", "extract_only_frame", "get_local_timezone_zoneinfo",
                        "get_supported_formats", "motif_extra_data_h5_attrs", "motif_extra_data_h5_to_df",
                        "motif_extra_data_json_to_df", "new_for_filename", "new_for_format"],
    "imgstore.util": ["FourCC", "ImageCodecProcessor", "JsonCustomEncoder", "_cvt_color", "ensure_color",
                      "ensure_grayscale", "get_local_timezone", "get_local_timezone_zoneinfo",
                      "motif_extra_data_h5_attrs", "motif_extra_data_h5_to_df", "motif_extra_data_json_to_df",
                      "motif_get_parse_true_fps", "motif_get_recording_timezone"],
    "imgstore.constants": ["DEVNULL", "EXTRA_DATA_FILE_EXTENSIONS", "FRAME_MD", "STORE_INDEX_FILENAME",
                           "STORE_LOCK_FILENAME", "STORE_MD_FILENAME", "STORE_MD_KEY"],
    "imgstore.index": ["FRAME_MD", "ImgStoreIndex", "_load_index"],
    "imgstore.apps": ["generate_timecodes", "main_generate_timecodes", "main_saver", "main_test", "main_viewer"],
}
STORE_METHODS = ["__enter__", "__exit__", "__len__", "_calculate_written_image_shape", "_extract_only_frame",
                 "_find_chunks", "_get_chunk_metadata", "_get_image", "_get_image_by_frame_index",
                 "_get_image_by_frame_number", "_get_next_framenumber_and_chunk_frame_idx",
                 "_iter_chunk_n_and_chunk_paths", "_iter_extra_data_files", "_load_chunk", "_load_image",
                 "_readability_check", "_remove_index", "_save_index", "add_extra_data", "add_image", "chunks",
                 "close", "convert_frame_time_to_datetime", "created", "disable_decoding", "duration", "empty",
                 "extract_only_frame", "filename", "find_extra_data_files", "frame_time_max", "frame_time_min",
                 "full_path", "get_extra_data", "get_extra_data_samplerate", "get_frame_metadata", "get_image",
                 "get_nearest_image", "get_next_framenumber", "get_next_image", "has_extra_data", "image_shape",
                 "mode", "reindex", "save_index", "supported_formats", "supports_format", "user_metadata", "uuid"]


def _write(path, fmt="npy", numbers=range(12), chunksize=5, color=False, **kwargs):
    shape = (*SHAPE, 3) if color else SHAPE
    s = imgstore.new_for_format(fmt, basedir=str(path), imgshape=shape, imgdtype=np.uint8, chunksize=chunksize,
                                **kwargs)
    for i, fn in enumerate(numbers):
        s.add_image(make_frame(fn, *SHAPE, color=color), fn, 1_700_000_000.0 + i)
    return s


# ----------------------------------------------------------------------------- modules and names


@pytest.mark.parametrize("module", sorted(REFERENCE_NAMES))
def test_every_reference_name_exists(module):
    mod = __import__(module, fromlist=["_"])
    missing = [n for n in REFERENCE_NAMES[module] if not hasattr(mod, n)]
    assert not missing, f"{module} lacks {missing}"


def test_store_classes_have_the_reference_methods():
    for cls in (imgstore.DirectoryImgStore, imgstore.VideoImgStore):
        assert not [n for n in STORE_METHODS if not hasattr(cls, n)], cls
    assert hasattr(imgstore.VideoImgStore, "insert_chunk") and hasattr(imgstore.VideoImgStore, "_get_chunk_extension")
    assert hasattr(imgstore.DirectoryImgStore, "_open_image")


def test_import_imgstore_makes_submodules_attributes():
    """``import imgstore`` alone gives ``imgstore.stores.X`` and ``imgstore.util.X`` (a fresh interpreter)."""
    code = ("import sys, imgstore; assert 'av' not in sys.modules; "
            "print(imgstore.stores.STORE_MD_FILENAME, imgstore.util.ensure_color.__name__, "
            "imgstore.constants.STORE_INDEX_FILENAME, imgstore.index.ImgStoreIndex.__name__, "
            "imgstore.apps.main_viewer.__name__, imgstore.test.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["metadata.yaml", "ensure_color", ".index.sqlite", "ImgStoreIndex",
                                  "main_viewer", "main_test"]


def test_constants_have_the_reference_values():
    from imgstore import constants

    assert constants.STORE_MD_KEY == "__store"
    assert constants.STORE_MD_FILENAME == "metadata.yaml"
    assert constants.STORE_LOCK_FILENAME == ".lock"
    assert constants.STORE_INDEX_FILENAME == ".index.sqlite"
    assert constants.EXTRA_DATA_FILE_EXTENSIONS == (".extra.json", ".extra_data.json", ".extra_data.h5")
    assert constants.FRAME_MD == ("frame_number", "frame_time")
    assert constants.DEVNULL == subprocess.DEVNULL


# ----------------------------------------------------------------------------- calling conventions


def test_format_in_kwargs_is_overridden_by_fmt(tmp_path):
    """The reference's own tests build one kwargs dict with ``format=`` and pass fmt too."""
    kwargs = {"basedir": str(tmp_path / "a"), "mode": "w", "imgshape": SHAPE, "imgdtype": np.uint8,
              "chunksize": 4, "format": "npy"}
    with imgstore.stores.new_for_format("npy", **kwargs) as s:
        assert s.format == "npy"
    kwargs.update(basedir=str(tmp_path / "b"), format="npy")
    with imgstore.stores.new_for_format("png", **kwargs) as s:  # fmt wins, as in the reference
        assert s.format == "png" and isinstance(s, imgstore.DirectoryImgStore)
    kwargs.update(basedir=str(tmp_path / "c"), format="png")
    with imgstore.stores.new_for_format("mjpeg", **kwargs) as s:
        assert s.format == "mjpeg/avi" and isinstance(s, imgstore.VideoImgStore)


def test_read_mode_without_a_path_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="path"):
        imgstore.new_for_format(fmt=None, mode="r")
    with pytest.raises(ValueError, match="mutually exclusive"):
        imgstore.new_for_format(fmt=None, path=str(tmp_path), basedir=str(tmp_path), mode="r")
    _write(tmp_path / "s").close()
    with imgstore.new_for_format(fmt="ignored", format="png", path=str(tmp_path / "s"), mode="r") as s:
        assert s.mode == "r" and s.format == "npy"


def test_path_and_basedir_together_is_a_value_error(tmp_path):
    _write(tmp_path / "s").close()
    p = str(tmp_path / "s")
    with pytest.raises(ValueError, match="mutually exclusive"):
        imgstore.new_for_filename(p, basedir=p)
    with pytest.raises(ValueError, match="basedir should be a directory"):
        imgstore.new_for_filename(None, basedir=os.path.join(p, "metadata.yaml"))
    with imgstore.new_for_filename(None, basedir=p) as s:
        assert s.frame_count == 12


def test_close_save_index_writes_the_reference_sqlite_index(tmp_path):
    s = _write(tmp_path / "s", numbers=[5, 6, 7, 1, 2, 9, 9, 10, 11, 3, 4])
    s.close(save_index=True)
    path = tmp_path / "s" / ".index.sqlite"
    db = sqlite3.connect(str(path))
    # the reference's schema, so imgstore 0.4 opens it too
    assert db.execute("SELECT value FROM index_information WHERE name='version'").fetchone() == ("1",)
    rows = db.execute("SELECT chunk, frame_idx, frame_number FROM frames ORDER BY rowid").fetchall()
    assert rows == [(i // 5, i % 5, fn) for i, fn in enumerate([5, 6, 7, 1, 2, 9, 9, 10, 11, 3, 4])]
    assert dict(db.execute("SELECT name, value FROM summary").fetchall())["frame_max"] == 11.0
    db.close()

    from imgstore.index import ImgStoreIndex

    idx = ImgStoreIndex.new_from_file(str(path))
    assert idx.chunks == (0, 1, 2) and idx.frame_count == 11 and idx.frame_min == 1 and idx.frame_max == 11
    assert idx.get_chunk_metadata(1) == {"frame_number": [9, 9, 10, 11, 3],
                                         "frame_time": [1_700_000_000.0 + i for i in range(5, 10)]}
    assert idx.find_chunk("frame_number", 9) == (1, 0)  # the first of a repeated number
    assert idx.find_chunk("index", 10) == (2, 0) and idx.find_chunk("frame_number", 8) == (-1, -1)
    assert idx.find_chunk_nearest("frame_number", 8) == (0, 2)  # 7 and 9 tie: the earlier frame wins
    with imgstore.new_for_filename(str(tmp_path / "s"), index=idx) as r:
        assert r._index is idx and r._chunk_n_and_chunk_paths is None  # the chunks were not listed
        img, (fn, _) = r.get_image(10)
        assert fn == 10 and read_barcode(img) == 10
        list(r._iter_chunk_n_and_chunk_paths())
        assert [n for n, _ in r._chunk_n_and_chunk_paths] == [0, 1, 2]
    with pytest.raises(TypeError, match="ImgStoreIndex"):
        imgstore.new_for_filename(str(tmp_path / "s"), index={"frame_number": []})


def test_save_index_of_a_reader(tmp_path):
    _write(tmp_path / "s").close()
    from imgstore.index import ImgStoreIndex

    with imgstore.new_for_filename(str(tmp_path / "s")) as r:
        elsewhere = str(tmp_path / "copy.sqlite")
        assert r.save_index(elsewhere) == elsewhere
        assert r.save_index() == str(tmp_path / "s" / ".index.sqlite")
    assert ImgStoreIndex.new_from_file(elsewhere).get_all_metadata() == r.get_frame_metadata()
    with pytest.raises(errors.IndexFileError, match="no index file") as info:
        ImgStoreIndex.new_from_file(str(tmp_path / "missing.sqlite"))
    assert isinstance(info.value, OSError)  # the reference raised IOError
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 10)
    with pytest.raises(errors.IndexFileError, match="not an imgstore index"):
        ImgStoreIndex.new_from_file(str(tmp_path / "junk.sqlite"))


def test_exactly_castable_images_are_accepted_with_one_warning(tmp_path):
    """SLEAP 1.4 writes float64 frames (np.zeros) into uint8 stores; imgstore 0.4 cast them."""
    path = str(tmp_path / "s")
    with imgstore.new_for_format("png", mode="w", basedir=path, imgshape=(*SHAPE, 1), chunksize=1000) as s:
        with pytest.warns(imgstore.ImgStoreWarning, match="float64 are converted to the store's uint8"):
            s.add_image(np.zeros((*SHAPE, 1)), 0, 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            s.add_image(make_frame(1, *SHAPE).astype(np.int64)[:, :, None], 1, 2.0)
            s.add_image(make_frame(2, *SHAPE).astype(bool), 2, 3.0)
        for bad, shown in [(np.full(SHAPE, 300.0), "300.0"), (np.full(SHAPE, -2, np.int16), "-2"),
                           (np.full(SHAPE, np.nan), "nan")]:
            with pytest.raises(errors.InvalidImageError, match=shown):
                s.add_image(bad, 9, 9.0)
    with imgstore.new_for_filename(path) as r:
        assert r.frame_count == 3
        np.testing.assert_array_equal(r.get_image(0)[0], np.zeros(SHAPE, np.uint8))
        np.testing.assert_array_equal(r.get_image(1)[0], make_frame(1, *SHAPE))
        np.testing.assert_array_equal(r.get_image(2)[0], make_frame(2, *SHAPE).astype(bool).astype(np.uint8))


# ----------------------------------------------------------------------------- private names


@pytest.mark.parametrize("fmt", ["npy", "h264/mkv"])
def test_private_names_are_views_of_the_real_state(tmp_path, fmt):
    path = tmp_path / "s"
    numbers = [*range(10, 22), 30]
    s = _write(path, fmt, numbers=numbers, chunksize=5, metadata={"rig": 2})
    # a writer: the chunk being written and its file
    assert s._chunk_n == 2 and s._format == fmt and s._imgshape == SHAPE and s._imgdtype == "uint8"
    if fmt != "npy":
        assert s._capfn == str(path / "000002.mkv")
    s.close()
    with imgstore.new_for_filename(str(path)) as r:
        assert r._basedir == str(path) and r._metadata["class"] == type(r).__name__
        assert r._metadata["chunksize"] == 5 and r._metadata["imgshape"] == list(SHAPE)
        assert r._index.get_all_metadata() == r.get_frame_metadata()
        assert r._index.frame_count == 13 and r._index.chunks == (0, 1, 2)
        assert r._get_chunk_metadata(2) == {"frame_number": [20, 21, 30],
                                            "frame_time": [1_700_000_010.0, 1_700_000_011.0, 1_700_000_012.0]}
        assert r._chunk_n == 0 and r._chunk_current_frame_idx == -1
        r.get_image(17)
        assert r._chunk_n == 1 and r._chunk_current_frame_idx == 2
        r.get_nearest_image(1_700_000_011.2)
        assert r._chunk_n == 2 and r._chunk_current_frame_idx == 1
        r._load_chunk(1)
        assert r._chunk_n == 1 and r._chunk_current_frame_idx == -1
        assert r.get_next_image()[1][0] == 15
        assert [c for c, _ in r._chunk_n_and_chunk_paths] == [0, 1, 2]
        if fmt == "npy":
            assert r._chunk_paths == [str(path / f"{c:06d}") for c in range(3)]
            assert r._chunk_n_and_chunk_paths[1][1] == str(path / "000001" / "index")
        else:
            assert r._ext == ".mkv" and r._chunk_paths == [str(path / f"{c:06d}.mkv") for c in range(3)]
            assert r._chunk_n_and_chunk_paths[1][1] == str(path / "000001")
        r._metadata["chunksize"] = 99  # a copy: the store is not changed through it
        assert r.chunksize == 5


def test_private_read_path_methods(tmp_path):
    _write(tmp_path / "s", numbers=range(100, 112)).close()
    with imgstore.new_for_filename(str(tmp_path / "s")) as r:
        img, (fn, _ft) = r._get_image(2, 1)
        assert fn == 111 and read_barcode(img) == 111 and r._chunk_n == 2
        assert r._get_image_by_frame_index(3)[1][0] == 103
        assert r._get_image_by_frame_number(104, exact_only=True)[1][0] == 104
        assert r._get_next_framenumber_and_chunk_frame_idx() == (105, 0)
        r._load_chunk(1)
        raw, (fn, _) = r._load_image(4)
        assert fn == 109 and read_barcode(raw) == 109
        with pytest.raises(errors.FrameIndexError, match="chunk 7"):
            r._load_chunk(7)
        assert [c for c, _ in r._find_chunks([2, 0])] == [0, 2]


# ----------------------------------------------------------------------------- util helpers


def test_motif_get_parse_true_fps(tmp_path):
    from imgstore.util import motif_get_parse_true_fps

    cases = [({"hwframerate": 90, "motifptpframerate": 1}, 90.0), ({"motifptpframerate": "45.5"}, 45.5),
             ({"acquisitionframerate": 12, "acquisitionframerateenable": True}, 12.0),
             ({"acquisitionframerate": 12, "acquisitionframerateenable": "yes"}, 25.0), ({}, 25.0)]
    for i, (md, expected) in enumerate(cases):
        s = _write(tmp_path / str(i), metadata=md)
        s.close()
        with imgstore.new_for_filename(s.filename) as r:
            assert motif_get_parse_true_fps(r) == expected
    with imgstore.new_for_filename(str(tmp_path / "2")) as r:
        assert motif_get_parse_true_fps(r, hwardware_only=True) == 25.0
        assert motif_get_parse_true_fps(r, default=None) == pytest.approx(12.0)
    with imgstore.new_for_filename(str(tmp_path / "4")) as r:
        assert motif_get_parse_true_fps(r, default=None) == pytest.approx(1.0)  # frames 1 s apart


def test_recording_timezone_and_local_times(tmp_path):
    from imgstore.util import get_local_timezone, get_local_timezone_zoneinfo, motif_get_recording_timezone

    assert isinstance(get_local_timezone(), str) and isinstance(get_local_timezone_zoneinfo(), ZoneInfo)
    _write(tmp_path / "vienna", metadata={"timezone": "Europe/Vienna"}).close()
    _write(tmp_path / "bad", metadata={"timezone": "Mars/Olympus"}).close()
    with imgstore.new_for_filename(str(tmp_path / "vienna")) as r:
        assert motif_get_recording_timezone(r) == ZoneInfo("Europe/Vienna")
        # as the reference: convert_frame_time_to_datetime uses the store's timezone_local
        local = r.convert_frame_time_to_datetime(1_700_000_000.0)
        assert local.tzinfo == r.created[1] and local.timestamp() == 1_700_000_000.0
        vienna = r.convert_frame_time_to_datetime(1_700_000_000.0, tz=motif_get_recording_timezone(r))
        assert vienna.isoformat() == "2023-11-14T23:13:20+01:00"
    with imgstore.new_for_filename(str(tmp_path / "bad")) as r:
        assert motif_get_recording_timezone(r) == r.created[1]


def test_image_codec_processor_class_methods():
    import cv2

    from imgstore.util import ImageCodecProcessor

    p = ImageCodecProcessor.from_cv2_enum(cv2.COLOR_BayerBG2BGR)
    assert p.encoding == "cv_bayerbg"
    assert ImageCodecProcessor().cv2_enum_to_code(cv2.COLOR_YUV2BGR_NV12) == "cv_yuv_nv12"
    assert ImageCodecProcessor.from_pylon_format("Bayer_GB").encoding == "cv_bayergr"
    assert ImageCodecProcessor.from_pylon_format("").encoding == ""
    with pytest.raises(errors.UnsupportedFormatError, match="'BayerXY'") as info:
        ImageCodecProcessor.from_pylon_format("BayerXY")
    assert isinstance(info.value, ValueError)
    with pytest.raises(errors.UnsupportedFormatError, match="12345"):
        ImageCodecProcessor().cv2_enum_to_code(12345)
    bayer = np.tile(np.array([[10, 200], [60, 90]], np.uint8), (8, 8))
    assert ImageCodecProcessor().check_code("cv_hsv_full")  # the reference kept the _FULL variants
    np.testing.assert_array_equal(ImageCodecProcessor().convert_to_bgr(bayer, method_enum=cv2.COLOR_BayerBG2BGR_EA),
                                  cv2.cvtColor(bayer, cv2.COLOR_BayerBG2BGR_EA))


def test_extra_data_samplerate(fixtures_dir, tmp_path):
    import shutil

    h5py = pytest.importorskip("h5py")
    path = str(tmp_path / "motif")
    shutil.copytree(fixtures_dir / "motif_libx264_mp4", path)
    with imgstore.new_for_filename(path) as s, pytest.raises(errors.MetadataError, match="no sample rate"):
        s.get_extra_data_samplerate()
    camera = np.zeros(2, dtype=[("frame_number", "<i8"), ("frame_time", "<f8"), ("frame_index", "<i8")])
    with h5py.File(os.path.join(path, "000000.extra_data.h5"), "w") as f:
        f.attrs["datasets"] = b"daq"
        f.create_dataset("camera", data=camera)
        f.create_dataset("daq", data=np.zeros((1, 2))).attrs["samplerate"] = 2500.0
    with imgstore.new_for_filename(path) as s:
        assert s.get_extra_data_samplerate() == 2500.0
    with h5py.File(os.path.join(path, "000000.extra_data.h5"), "a") as f:
        f.attrs["datasets"] = b"daq, mic"
    with imgstore.new_for_filename(path) as s, pytest.raises(errors.MetadataError, match="daq, mic"):
        s.get_extra_data_samplerate()


def test_generate_timecodes(tmp_path):
    import io

    from imgstore.apps import generate_timecodes, main_generate_timecodes

    _write(tmp_path / "s", numbers=range(4)).close()
    buf = io.StringIO()
    with imgstore.new_for_filename(str(tmp_path / "s")) as r:
        ts = generate_timecodes(r, buf)
    assert buf.getvalue() == "# timecode format v2\n0.000\n1000.000\n2000.000\n3000.000\n"
    assert ts.tolist() == [0.0, 1.0, 2.0, 3.0]
    out = subprocess.run([sys.executable, "-c", "import sys; from imgstore.apps import main_generate_timecodes; "
                          "sys.exit(main_generate_timecodes())", str(tmp_path / "s")],
                         capture_output=True, text=True, check=True)
    assert out.stdout == buf.getvalue() and callable(main_generate_timecodes)


def test_apps_entry_points_are_the_command_line(tmp_path, monkeypatch, capsys):
    from imgstore import apps

    store = str(tmp_path / "rec")
    monkeypatch.setattr(sys, "argv", ["imgstore-save", store, "--frames", "6", "--format", "npy"])
    assert apps.main_saver() == 0
    with imgstore.new_for_filename(store) as r:
        assert r.frame_count == 6
    assert imgstore.test is apps.main_test


def test_extra_data_before_the_first_frame(tmp_path):
    """SLEAP stores its video description as extra data before adding any frame."""
    path = str(tmp_path / "s")
    with imgstore.new_for_format("png", mode="w", basedir=path, imgshape=(*SHAPE, 3), chunksize=1000) as s:
        s.add_extra_data(source_sleap_video_obj={"backend": {"filename": "x.mp4", "grayscale": False},
                                                 "n": None, "ok": True})
        s.add_image(make_frame(3, *SHAPE, color=True), 3, 1.5)
    with imgstore.new_for_filename(path) as r:
        df = r.get_extra_data()
    assert df["frame_index"].tolist() == [-1]
    assert df["source_sleap_video_obj"][0] == {"backend": {"filename": "x.mp4", "grayscale": False}, "n": None,
                                               "ok": True}
    assert np.isnan(df["frame_number"][0]) and np.isnan(df["frame_time"][0])


def test_returned_frames_are_writable_contiguous_arrays(tmp_path):
    """Programs draw on the frames they get (cv2.circle, putText) in place."""
    for fmt in ("npy", "png", "mjpeg/avi", "h264/mkv", "avc1/mp4"):
        path = tmp_path / fmt.replace("/", "_")
        _write(path, fmt, color=True).close()
        with imgstore.new_for_filename(str(path)) as r:
            for img in (r.get_next_image()[0], r.get_image(7)[0], r.get_nearest_image(1_700_000_003.0)[0], r[2]):
                assert img.flags.writeable and img.flags.c_contiguous, fmt


def test_frame_min_max_are_python_ints(tmp_path):
    _write(tmp_path / "s", numbers=[4, 9, 2]).close()
    with imgstore.new_for_filename(str(tmp_path / "s")) as r:
        assert type(r.frame_min) is int and type(r.frame_max) is int and type(r.frame_count) is int
        assert list(range(r.frame_min, r.frame_max)) == list(range(2, 9))
        json.dumps({"n": r.frame_count, "t": r.get_frame_metadata()["frame_time"]})
        r.frame_number = r.frame_min  # old pinpoint assigned it
        assert r.frame_number == 2
        assert isinstance(r.created[0], datetime.datetime)
