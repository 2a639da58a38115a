"""The calls real programs built on imgstore 0.4 make, on our stores and on the reference's.

Each test replays, in order and with the same arguments, what one program does with a
store (read from its source; the program is not vendored): SLEAP 1.4 (``ImgStoreVideo``,
``Video.to_imgstore``), Tierpsy tracker (``readLoopBio``), usv-playpen (``processing/``),
ethoscope (``ImgStoreCamera``), FlyHostel (``computer_vision/utils.py``), pinpoint
(``StoreReader``), loopbio's ``examples/*.py``, tierpsy-tools and fishMAD. Frames are
checked by barcode: the right frame, not just a frame.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest
import yaml

import imgstore
from imgstore.testing.barcode import make_frame, read_barcode, read_fixture_barcode

SHAPE = (48, 64)
T0 = 1_700_000_000.0


def _ours(tmp_path, fmt, color, numbers=tuple(range(30)), chunksize=7, metadata=None):
    path = str(tmp_path / ("ours_" + fmt.replace("/", "_") + ("_color" if color else "_grey")))
    shape = (*SHAPE, 3) if color else SHAPE
    with imgstore.new_for_format(fmt, basedir=path, imgshape=shape, imgdtype=np.uint8, chunksize=chunksize,
                                 metadata=metadata or {"timezone": "Europe/Vienna"}) as s:
        for i, fn in enumerate(numbers):
            s.add_image(make_frame(fn, *SHAPE, color=color), fn, T0 + 0.04 * i)
            if i % 4 == 0:
                s.add_extra_data(temperature=20.0 + i)
    return path, read_barcode


FIXTURES = ["npy_grey", "mjpeg_avi_color", "avc1_mp4_grey", "h264_mkv_color", "png_color_outoforder"]
OURS = [("png", True), ("npy", False), ("mjpeg/avi", True), ("avc1/mp4", False), ("h264/mkv", True)]


@pytest.fixture(params=[f"ours:{f}:{c}" for f, c in OURS] + [f"fixture:{n}" for n in FIXTURES])
def any_store(request, tmp_path, fixtures_dir):
    """``(path, barcode reader)`` of a store written here or by imgstore 0.4.0."""
    kind, *rest = request.param.split(":")
    if kind == "ours":
        return _ours(tmp_path, rest[0], rest[1] == "True")
    dest = tmp_path / rest[0]
    shutil.copytree(fixtures_dir / rest[0], dest)
    return str(dest), read_fixture_barcode


# ----------------------------------------------------------------------------- SLEAP 1.4


def test_sleap_imgstore_video_reads(any_store):
    path, barcode = any_store
    filename = os.path.abspath(path + "/metadata.yaml")  # SLEAP always passes .../metadata.yaml
    store = imgstore.new_for_filename(filename)
    img, (_frame_number, _frame_timestamp) = store.get_next_image()
    height, width = img.shape[0], img.shape[1]
    channels = 1 if len(img.shape) < 3 else img.shape[2]
    assert (height, width) == store.image_shape[:2] and img.dtype == np.dtype("uint8")
    assert channels == (store.image_shape[2] if len(store.image_shape) == 3 else 1)
    frames = store.frame_count
    numbers = store.get_frame_metadata()["frame_number"]
    for i in (0, frames // 2, frames - 1):  # index_by_original=False
        img, (fn, _) = store.get_image(frame_number=None, frame_index=i)
        assert fn == numbers[i] and barcode(img) == numbers[i]
    for fn in (numbers[3], store.frame_max):  # index_by_original=True
        img, (got, _) = store.get_image(fn)
        assert got == fn and barcode(img) == fn
    with pytest.raises(ValueError):  # SLEAP's tests: an index past the end
        store.get_image(frame_number=None, frame_index=frames + 20)
    with pytest.raises(ValueError):  # ... and a frame number that is not there
        store.get_image(max(numbers) + 1000)
    store.close()
    store = imgstore.new_for_filename(filename)  # closed, then reopened later
    assert store.frame_count == frames
    store.close()


@pytest.mark.parametrize("fmt", ["png", "jpg", "mjpeg/avi"])
@pytest.mark.parametrize("channels", [1, 3])
def test_sleap_to_imgstore(tmp_path, fmt, channels):
    path = str(tmp_path / "frame_data_vid0")
    height, width = SHAPE
    frame_numbers = {20, 40, 15}  # a set, as Labels.save_frame_data_imgstore passes
    store = imgstore.new_for_format(fmt, mode="w", basedir=path, imgshape=(height, width, channels),
                                    chunksize=1000)
    store.add_extra_data(source_sleap_video_obj={"backend": {"filename": "in.mp4", "grayscale": channels == 1}})
    for frame_num in frame_numbers:
        frame = make_frame(frame_num, height, width, color=channels == 3)
        store.add_image(frame if channels == 3 else frame[:, :, None], frame_num, time.time())
    store.close()
    # no frames: a dummy float64 frame (np.zeros) keeps the store valid
    empty = str(tmp_path / "empty")
    store = imgstore.new_for_format(fmt, mode="w", basedir=empty, imgshape=(height, width, channels), chunksize=1000)
    with pytest.warns(imgstore.ImgStoreWarning, match="float64"):
        store.add_image(np.zeros((height, width, channels)), 0, time.time())
    store.close()

    store = imgstore.new_for_filename(os.path.abspath(path + "/metadata.yaml"))
    img, _ = store.get_next_image()
    assert img.dtype == np.uint8 and (img.ndim == 2) == (channels == 1)
    assert store.frame_count == 3 and store.frame_max == 40
    for fn in frame_numbers:
        img, (got, _) = store.get_image(fn)
        assert got == fn and read_barcode(img) == fn
    assert store.get_extra_data()["source_sleap_video_obj"][0]["backend"]["filename"] == "in.mp4"
    with imgstore.new_for_filename(os.path.abspath(empty + "/metadata.yaml")) as e:
        img, _ = e.get_next_image()
        assert e.frame_count == 1 and img.dtype == np.uint8 and not img.any()


def test_sleap_imgstore_from_filenames(tmp_path):
    import cv2

    files = []
    for i in range(3):
        files.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(files[-1], make_frame(i, *SHAPE, color=True))
    out = str(tmp_path / "store")
    store = imgstore.new_for_format("png", mode="w", basedir=out, imgshape=(*SHAPE, 3))  # no chunksize
    for i, name in enumerate(files):
        store.add_image(cv2.imread(name, flags=cv2.IMREAD_COLOR), i, i)  # int frame_time
    store.close()
    with imgstore.new_for_filename(out) as r:
        assert r.chunksize == 200 and [read_barcode(r.get_image(i)[0]) for i in range(3)] == [0, 1, 2]


# ----------------------------------------------------------------------------- Tierpsy tracker


def test_tierpsy_read_loopbio(any_store):
    path, barcode = any_store
    video_file = path + "/metadata.yaml"
    assert video_file.endswith(".yaml")
    vid = imgstore.new_for_filename(video_file)
    first_frame, frame_max = vid.frame_min, vid.frame_max
    n = frame_max - first_frame + 1
    assert isinstance(n, int) and len(range(n)) == n  # __len__ and a QSpinBox maximum
    img, (frame_number, frame_timestamp) = vid.get_next_image()
    height, width, dtype = img.shape[0], img.shape[1], img.dtype
    assert np.iinfo(dtype).max == 255 and (height, width) == tuple(vid.image_shape[:2])
    vid.close()
    vid = imgstore.new_for_filename(video_file)
    frames_read = []
    while not frames_read or frames_read[-1][0] < frame_max:  # read() stops at frame_max, not EOFError
        img, (frame_number, frame_timestamp) = vid.get_next_image()
        frames_read.append((frame_number, frame_timestamp))
        assert barcode(img) == frame_number
    present = set(vid.get_frame_metadata()["frame_number"])
    for k in (0, 1, 5):
        if first_frame + k in present:
            img, (fn, _) = vid.get_image(first_frame + k)
            assert fn == first_frame + k and barcode(img) == fn
    vid.close()


def test_tierpsy_bad_store_is_a_value_error(tmp_path):
    os.makedirs(tmp_path / "not_a_store")
    with pytest.raises(ValueError):
        imgstore.new_for_filename(str(tmp_path / "not_a_store"))
    (tmp_path / "bad" / "x").mkdir(parents=True)
    (tmp_path / "bad" / "metadata.yaml").write_text("__store: {class: Nope, version: 2}\n")
    with pytest.raises(ValueError):
        imgstore.new_for_filename(str(tmp_path / "bad" / "metadata.yaml"))


# ----------------------------------------------------------------------------- usv-playpen


def test_usv_playpen(any_store, tmp_path):
    path, _ = any_store
    img_store = imgstore.new_for_filename(str(path) + "/metadata.yaml")
    try:
        total_frame_num = img_store.frame_count
        last_frame_num = img_store.frame_max
        frame_times = img_store.get_frame_metadata()["frame_time"]
        store_format = img_store._format
        user_meta_data = img_store.user_metadata
    finally:
        img_store.close()
    assert img_store.user_metadata == user_meta_data  # still there after close()
    video_duration = frame_times[-1] - frame_times[0]
    esr = round(number=total_frame_num / video_duration, ndigits=4)
    json.dumps({"cam": (total_frame_num, esr)})  # json.dump of the frame count
    yaml.safe_dump({"session_duration": round(video_duration, 3), "last": last_frame_num})
    assert isinstance(store_format, str) and store_format
    frame_times = np.array(frame_times)
    assert (frame_times - frame_times[0])[[0, -1]].tolist() == [0.0, video_duration]


# ----------------------------------------------------------------------------- ethoscope


def test_ethoscope_imgstore_camera(tmp_path, fixtures_dir):
    import cv2

    for path in (_ours(tmp_path, "mjpeg/avi", False)[0] + "/", str(fixtures_dir / "avc1_mp4_grey") + "/"):
        assert os.path.exists(path)
        store = imgstore.new_for_filename(path)
        metadata = store.get_frame_metadata()
        h, w = store._imgshape  # a grey store's shape is two numbers
        total_n_frames = len(metadata["frame_number"])
        start_time = metadata["frame_time"][0]
        resolution = (int(w), int(h))
        last_count = None
        while last_count is None or store.frame_max != last_count:  # is_last_frame()
            img, (frame_number, frame_timestamp) = store.get_next_image()
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            assert img.shape == (h, w, 3) and int(1000 * frame_timestamp) >= int(1000 * start_time)
            last_count = frame_number
        assert resolution == (store.image_shape[1], store.image_shape[0]) and last_count == metadata["frame_number"][-1]
        assert total_n_frames == store.frame_count
        store.close()


# ----------------------------------------------------------------------------- FlyHostel


def test_flyhostel(any_store):
    path, barcode = any_store
    store = imgstore.new_for_filename(path)  # a folder
    numbers = store.get_frame_metadata()["frame_number"]
    for frame_number in (numbers[1], numbers[len(numbers) // 2], numbers[-1]):
        frame, (frame_number_, _frame_time) = store.get_image(frame_number)
        assert frame_number_ == frame_number and barcode(frame) == frame_number
        metadata = store._index.get_all_metadata()
        real_fn = metadata["frame_number"].index(frame_number)
        chunk = store._chunk_n
        frame_index = store._get_chunk_metadata(chunk)["frame_number"].index(frame_number)
        assert store.get_image(None, frame_index=real_fn)[1][0] == frame_number
        assert store._index.find_chunk("frame_number", frame_number) == (chunk, frame_index)
        assert f"{chunk:06d}" in dict(store._chunk_n_and_chunk_paths)[chunk]  # paths built from the chunk
    with pytest.raises(ValueError):  # FlyHostel's library.py catches this ValueError of list.index
        store._get_chunk_metadata(store._chunk_n)["frame_number"].index(-999)
    times = store.get_frame_metadata()["frame_time"]
    frame, (fn, _ft) = store.get_nearest_image(times[5] + 0.001)
    assert fn == numbers[5] and store._index.find_chunk("frame_number", fn)[0] == store._chunk_n
    assert os.path.join(store._basedir, "x").startswith(path) and store._metadata["chunksize"] > 0
    df = pd.DataFrame(store._index.get_all_metadata())
    assert list(df.columns) == ["frame_number", "frame_time"] and len(df) == store.frame_count
    store.close()


def test_flyhostel_motif_extra_data_json_without_a_store(tmp_path):
    from imgstore.util import motif_extra_data_json_to_df

    path = tmp_path / "000000.extra_data.json"
    path.write_text(json.dumps([{"frame_index": 1, "frame_number": 1, "frame_time": 2.0, "temperature": 24.5},
                                {"frame_index": -1, "frame_number": -1, "frame_time": 0.0, "temperature": 0}]))
    df = pd.concat([motif_extra_data_json_to_df(None, str(path))])
    assert df["temperature"].tolist() == [24.5]


def test_flyhostel_writer_polls_the_chunk(tmp_path):
    """A recorder polls ``_chunk_n`` to notice a new chunk, and reads ``_capfn``."""
    store = imgstore.new_for_format(fmt="mjpeg/avi", mode="w", basedir=str(tmp_path / "rec"), imgshape=SHAPE,
                                    imgdtype=np.uint8, chunksize=3)
    seen = []
    for i in range(7):
        store.add_image(make_frame(i, *SHAPE), i, T0 + i)
        store.add_extra_data(temperature=np.nan, humidity=40.0, light=1, time=T0 + i)
        seen.append((store._chunk_n, os.path.basename(store._capfn)))
    store.close()
    assert seen[2] == (1, "000001.avi") and seen[6] == (2, "000002.avi")


# ----------------------------------------------------------------------------- pinpoint


def test_pinpoint_store_reader(any_store):
    path, barcode = any_store
    store = imgstore.new_for_filename(path + "/")
    metadata = store.get_frame_metadata()
    metaindex = np.array(metadata["frame_number"])
    shape = store.image_shape
    frames, frames_idx = [], []
    for idx in metaindex[[0, 2, 1, len(metaindex) - 1]]:  # numpy integers
        frame, (frame_idx, _timestamp) = store.get_image(idx, exact_only=False)
        frames.append(frame)
        frames_idx.append(frame_idx)
        assert frame_idx == idx and barcode(frame) == idx
    assert np.stack(frames).shape[1:3] == tuple(shape[:2])
    store.frame_number = store.frame_min  # older pinpoint assigned it
    assert store.frame_max - store.frame_min >= 0


# ----------------------------------------------------------------------------- loopbio examples


def test_loopbio_mux_audio_example(tmp_path, fixtures_dir):
    from imgstore import VideoImgStore, new_for_filename
    from imgstore.apps import generate_timecodes

    src = str(tmp_path / "motif")
    shutil.copytree(fixtures_dir / "motif_libx264_mp4", src)
    store = new_for_filename(src)
    assert isinstance(store, VideoImgStore) and store.frame_count == 179
    assert store._ext == ".mp4"
    mp4s = store._chunk_paths
    assert mp4s == [os.path.join(src, "000000.mp4"), os.path.join(src, "000001.mp4")]  # concat order
    listing = "".join(f"file '{p}'\n" for p in mp4s)
    assert listing.count("file") == 2
    buf = io.StringIO()
    ts = generate_timecodes(store, buf)
    assert ts.max() == pytest.approx(178.0) and buf.getvalue().startswith("# timecode format v2\n0.000\n1000.000")
    assert store.find_extra_data_files(extensions=(".extra_data.h5",)) == []
    vt0 = np.min(store.get_frame_metadata()["frame_time"])
    assert vt0 == 1.0


def test_loopbio_plot_examples(any_store):
    path, barcode = any_store
    store = imgstore.new_for_filename(path)
    assert store.has_extra_data is True or store.has_extra_data is False  # a property, not a method
    if store.has_extra_data:
        df = store.get_extra_data(ignore_corrupt_chunks=True)
        fts = np.asarray(df["frame_time"])
        fns = np.asarray(df["frame_number"])
        for ft, fn in zip(fts[:3], fns[:3], strict=False):
            img, (got_fn, _got_ft) = store.get_nearest_image(ft)
            assert got_fn == fn and barcode(img) == fn
    _img, _ = store.get_next_image()
    _is_color = (_img.shape[-1] == 3) & (_img.ndim == 3)
    assert _is_color == (len(store.image_shape) == 3)


# ----------------------------------------------------------------------------- tierpsy-tools, fishMAD


def test_tierpsytools_extra_data_files(tmp_path, fixtures_dir):
    src = str(tmp_path / "motif")
    shutil.copytree(fixtures_dir / "motif_libx264_mp4", src)
    with open(os.path.join(src, "000001.extra_data.json"), "w") as f:
        json.dump([{"frame_index": 100, "frame_number": 100, "frame_time": 101.0, "light": 3}], f)
    store = imgstore.new_for_filename(str(src))
    names = [chunk + ".extra_data.json" for (_, chunk) in store._chunk_n_and_chunk_paths]
    assert [os.path.exists(n) for n in names] == [False, True]
    assert store.filename.split("/")[-1] == "motif"
    assert read_fixture_barcode(store.get_next_image()[0], bits=16) == 0
    store.close()


def test_fishmad(tmp_path):
    path, _ = _ours(tmp_path, "mjpeg/avi", True, numbers=range(5, 25))
    store = imgstore.new_for_filename(path + "/metadata.yaml")
    framelist = pd.DataFrame(store.get_frame_metadata())
    framelist.columns = ["FrameNumber", "Timestamp"]  # relies on exactly these two keys, in this order
    assert framelist["FrameNumber"].tolist() == list(range(5, 25))
    seen = []
    for i in range(int(store.frame_min), store.frame_max - 1):
        _img, (md) = store.get_image(np.int64(i))
        seen.append(md[0])
    assert seen == list(range(5, 23))
    out = imgstore.new_for_format("mjpeg", mode="w", basedir=str(tmp_path / "drawn"), imgshape=store.image_shape,
                                  imgdtype=store.get_image(store.frame_min)[0].dtype, chunksize=1000)
    for f in range(store.frame_min, store.frame_min + 3):
        drawn, (fn, t) = store.get_image(store.frame_min + (f - store.frame_min))
        drawn[:2, :2] = 255  # drawn on in place
        out.add_image(drawn, fn, t)
    out.close()
    assert imgstore.new_for_filename(str(tmp_path / "drawn")).format == "mjpeg/avi"
    out2 = imgstore.new_for_format("avc1/mp4", mode="w", basedir=str(tmp_path / "mp4"), imgshape=SHAPE,
                                   imgdtype="uint8", chunksize=500)
    out2.close()
