"""SLEAP / sleap-io (extra [sleap]): store videos in sio.Video and in .slp projects, SLEAP 1.4's too."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest

import imgstore
from imgstore.testing.barcode import make_frame, read_barcode

sio = pytest.importorskip("sleap_io")
h5py = pytest.importorskip("h5py")
from imgstore.integrations import sleap_io as bridge  # noqa: E402

H, W = 64, 96
T0 = 1_700_000_000.0


def _store(path, fmt, numbers, color=False):
    shape = (H, W, 3) if color else (H, W)
    with imgstore.new_for_format(fmt, basedir=str(path), imgshape=shape, chunksize=20) as s:
        for i, fn in enumerate(numbers):
            s.add_image(make_frame(fn, H, W, color=color), fn, T0 + i / 25)
    return str(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("sleap")
    # a camera's numbers: start at 1000, with dropped frames
    grey_numbers = [1000 + 3 * i + (i > 30) for i in range(50)]
    return {"grey": (_store(root / "grey", "ffv1/mkv", grey_numbers), grey_numbers),
            "colour": (_store(root / "colour", "npy", list(range(40)), color=True), list(range(40)))}


@pytest.fixture
def plain_sleap_io():
    """sleap-io as installed, without the bridge (restored afterwards if it was registered)."""
    was = bridge.is_registered()
    bridge.unregister()
    yield
    if was:
        bridge.register()


def _skeleton():
    return sio.Skeleton(["head", "tail"], edges=[("head", "tail")])


def _write_sleap14_project(path, videos):
    """A SLEAP 1.4-style .slp: labelled frames made with sleap-io, videos_json as SLEAP <= 1.4 wrote it.

    ``videos`` is ``[(store_path, index_by_original, frame_idx values)]``.
    """
    skeleton = _skeleton()
    placeholders, frames = [], []
    for k, (store_path, _, frame_idxs) in enumerate(videos):
        video = sio.Video(filename=store_path + "/metadata.yaml", backend_metadata={"shape": None},
                          open_backend=False)
        placeholders.append(video)
        for j, idx in enumerate(frame_idxs):
            pts = np.array([[10.0 + j, 20.0 + k], [30.0 + j, 40.0 + k]])
            frames.append(sio.LabeledFrame(video=video, frame_idx=idx,
                                           instances=[sio.Instance.from_numpy(pts, skeleton=skeleton)]))
    sio.save_slp(sio.Labels(frames, videos=placeholders, skeletons=[skeleton]), str(path))
    with h5py.File(path, "r+") as f:
        del f["videos_json"]
        rows = [json.dumps({"backend": {"filename": store_path + "/metadata.yaml",
                                        "index_by_original": by_original}}) for store_path, by_original, _ in videos]
        f.create_dataset("videos_json", data=rows, dtype=h5py.string_dtype(), maxshape=(None,))
    return str(path)


def test_plain_sleap_io_cannot_read_a_store(stores, plain_sleap_io, tmp_path):
    """The problem the bridge solves (sleap-io 0.9.5): no backend for a store or a SLEAP 1.4 store video."""
    path, numbers = stores["grey"]
    with pytest.raises(ValueError, match="Unknown video file type"):
        sio.load_video(path + "/metadata.yaml")
    project = _write_sleap14_project(tmp_path / "p.slp", [(path, True, numbers[:2])])
    assert sio.load_slp(project).videos[0].backend is None


def test_sleap14_project_reads_the_labelled_frames_exactly(stores, tmp_path):
    grey, grey_numbers = stores["grey"]
    colour, _ = stores["colour"]
    # index_by_original=True (SLEAP 1.4's default): frame_idx is the camera's frame_number
    by_number = [grey_numbers[i] for i in (0, 7, 31, 32, 49)]
    by_position = [0, 5, 39]
    project = _write_sleap14_project(tmp_path / "p14.slp", [(grey, True, by_number), (colour, False, by_position)])
    labels = bridge.load_slp(project)
    assert [type(v.backend) for v in labels.videos] == [bridge.ImgStoreVideo] * 2
    assert [v.backend.index_by for v in labels.videos] == ["frame_number", "frame_index"]
    with imgstore.new_for_filename(grey) as g, imgstore.new_for_filename(colour) as c:
        for lf in labels.find(labels.videos[0]):
            img = lf.image
            assert img.shape == (H, W, 1)
            assert read_barcode(img[..., 0]) == lf.frame_idx
            np.testing.assert_array_equal(img[..., 0], g.get_image(lf.frame_idx)[0])
        assert sorted(lf.frame_idx for lf in labels.find(labels.videos[0])) == by_number
        for lf in labels.find(labels.videos[1]):
            img = lf.image
            np.testing.assert_array_equal(img, c[lf.frame_idx][..., ::-1])  # RGB, as sleap-io's backends
            assert read_barcode(img) == lf.frame_idx
        # the labels themselves came through
        assert [lf.instances[0].numpy()[0, 0] for lf in labels.find(labels.videos[0])] == [10.0, 11.0, 12.0,
                                                                                            13.0, 14.0]


def test_saving_and_reloading_keeps_the_store_videos(stores, tmp_path):
    grey, grey_numbers = stores["grey"]
    labels = bridge.load_slp(_write_sleap14_project(tmp_path / "p14.slp", [(grey, True, grey_numbers[10:13])]))
    out = str(tmp_path / "saved.slp")
    labels.save(out)  # sleap-io's own save
    with h5py.File(out, "r") as f:
        entry = json.loads(f["videos_json"][0])
    assert entry["backend"]["type"] == "ImgStoreVideo"
    assert entry["backend"]["index_by_original"] is True
    assert entry["backend"]["shape"] == [50, H, W, 1]
    again = sio.load_slp(out)  # registered by now: plain sio.load_slp opens the store
    video = again.videos[0]
    assert isinstance(video.backend, bridge.ImgStoreVideo) and video.backend.index_by == "frame_number"
    assert [read_barcode(lf.image[..., 0]) for lf in again.labeled_frames] == grey_numbers[10:13]
    # copies close and reopen their videos
    clone = copy.deepcopy(again)
    assert read_barcode(clone.labeled_frames[0].image[..., 0]) == grey_numbers[10]
    assert clone.videos[0].backend.index_by == "frame_number"


def test_a_project_moved_with_its_stores_finds_them(stores, tmp_path):
    import shutil

    colour, _ = stores["colour"]
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copytree(colour, moved / "colour")
    project = _write_sleap14_project(moved / "p.slp", [("/gone/lab/colour", False, [3])])
    labels = bridge.load_slp(project)
    video = labels.videos[0]
    assert isinstance(video.backend, bridge.ImgStoreVideo)
    assert video.filename == str(moved / "colour" / "metadata.yaml")
    assert read_barcode(labels.labeled_frames[0].image) == 3


def test_as_positions_renumbers_frames_by_number(stores, tmp_path):
    grey, grey_numbers = stores["grey"]
    wanted = [grey_numbers[i] for i in (3, 40)]
    labels = bridge.load_slp(_write_sleap14_project(tmp_path / "p.slp", [(grey, True, wanted)]), as_positions=True)
    assert [lf.frame_idx for lf in labels.labeled_frames] == [3, 40]
    assert [read_barcode(lf.image[..., 0]) for lf in labels.labeled_frames] == wanted
    out = str(tmp_path / "positions.slp")
    labels.save(out)
    again = bridge.load_slp(out)
    assert again.videos[0].backend.index_by == "frame_index"
    assert [read_barcode(lf.image[..., 0]) for lf in again.labeled_frames] == wanted


def test_a_new_video_over_a_store(stores, tmp_path):
    grey, grey_numbers = stores["grey"]
    bridge.register()
    video = sio.load_video(grey)  # sleap-io's own loader, on the folder
    assert isinstance(video.backend, bridge.ImgStoreVideo)
    assert video.shape == (50, H, W, 1) and video.grayscale
    assert video.fps == pytest.approx(25.0)
    frames = video[[4, 2, 4]]
    assert [read_barcode(f[..., 0]) for f in frames] == [grey_numbers[4], grey_numbers[2], grey_numbers[4]]
    backend = video.backend
    assert backend.frame_number(31) == grey_numbers[31]
    assert backend.frame_time(31) == pytest.approx(T0 + 31 / 25)
    np.testing.assert_array_equal(backend.frame_numbers, grey_numbers)
    assert not backend.has_frame(50) and backend.has_frame(49)
    # readers travel to worker processes and reopen there
    clone = pickle.loads(pickle.dumps(backend))
    assert read_barcode(clone.get_frame(7)[..., 0]) == grey_numbers[7]
    # a labelled project made from scratch round-trips
    skeleton = _skeleton()
    lf = sio.LabeledFrame(video=video, frame_idx=9,
                          instances=[sio.Instance.from_numpy(np.array([[1.0, 2.0], [3.0, 4.0]]), skeleton=skeleton)])
    path = str(tmp_path / "new.slp")
    sio.save_slp(sio.Labels([lf], videos=[video], skeletons=[skeleton]), path)
    again = sio.load_slp(path)
    assert again.videos[0].backend.index_by == "frame_index"
    assert read_barcode(again.labeled_frames[0].image[..., 0]) == grey_numbers[9]
    colour = bridge.load_video(stores["colour"][0], rgb=False)
    with imgstore.new_for_filename(stores["colour"][0]) as c:
        np.testing.assert_array_equal(colour[3], c[3])  # the store's BGR when asked


def test_index_by_number_refuses_a_missing_number(stores):
    video = bridge.load_video(stores["grey"][0], index_by="frame_number")
    assert not video.backend.has_frame(1001)
    with pytest.raises(IndexError, match="1001"):
        video[1001]
    with pytest.raises(ValueError, match="index_by"):
        bridge.ImgStoreVideo(stores["grey"][0], index_by="time")
