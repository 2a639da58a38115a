"""Video stores through the store API: long-GOP seeking, writer options, insert_chunk."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.testing.barcode import make_frame, read_barcode

H, W = 48, 64


def _write(path, fmt, numbers, chunksize, **options):
    with imgstore.new_for_format(fmt, basedir=path, imgshape=(H, W), chunksize=chunksize, **options) as s:
        for i, fn in enumerate(numbers):
            s.add_image(make_frame(fn, H, W), fn, 1_700_000_000.0 + i / 30)
    return path


def test_thousands_of_random_lookups_on_long_gop_b_frames(tmp_path):
    """x264's default keyframe interval (250) with B-frames, several chunks: every answer exact."""
    numbers = list(range(1000, 1700))
    path = _write(str(tmp_path / "s"), "h264/mkv", numbers, chunksize=350, keyframe_interval=250, fps=30)
    with av.open(str(tmp_path / "s" / "000000.mkv")) as c:
        decode_order = [p.pts for p in c.demux(video=0) if p.size]
    assert decode_order != sorted(decode_order), "expected B-frames"
    with np.load(str(tmp_path / "s" / "000000.npz")) as npz:
        assert np.flatnonzero(npz["keyframe"]).tolist() == [0, 250]
    rng = np.random.default_rng(42)
    with imgstore.new_for_filename(path) as s:
        for k, fn in enumerate(rng.choice(numbers, size=2000)):
            if k % 3 == 0:
                img, (got, _) = s.get_image(None, frame_index=int(fn) - 1000)
            else:
                img, (got, _) = s.get_image(fn)
            assert got == fn and read_barcode(img) == fn
        # and sequentially, after all that seeking
        s.get_image(None, frame_index=0)
        for fn in numbers[1:]:
            img, (got, _) = s.get_next_image()
            assert got == fn and read_barcode(img) == fn


def test_writer_options_and_grey_output(tmp_path):
    path = _write(str(tmp_path / "s"), "h264/mkv", list(range(60)), chunksize=100, keyframe_interval=10, fps=50,
                  quality=30)
    with imgstore.new_for_filename(path) as s:
        assert s.metadata["video_options"] == {"keyframe_interval": 10, "fps": 50, "quality": 30}
        assert s[5].shape == (H, W) and s[5].dtype == np.uint8
    with np.load(str(tmp_path / "s" / "000000.npz")) as npz:
        assert np.flatnonzero(npz["keyframe"]).tolist() == list(range(0, 60, 10))
    with av.open(str(tmp_path / "s" / "000000.mkv")) as c:
        assert c.streams.video[0].average_rate == 50 or c.streams.video[0].guessed_rate == 50
    with pytest.raises(errors.UnsupportedFormatError, match="uint16"):
        imgstore.new_for_format("h264/mkv", basedir=str(tmp_path / "x"), imgshape=(H, W), imgdtype="uint16")
    with pytest.raises(errors.InvalidOptionError, match="fps -1"):
        imgstore.new_for_format("h264/mkv", basedir=str(tmp_path / "y"), imgshape=(H, W), fps=-1)
    with pytest.raises(TypeError, match="nonsense"):
        imgstore.new_for_format("h264/mkv", basedir=str(tmp_path / "z"), imgshape=(H, W), nonsense=1)


def _foreign_video(path, numbers):
    """A video written by 'other software' (PyAV directly, B-frames, pts not starting at 0)."""
    with av.open(path, "w") as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        for i, fn in enumerate(numbers):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.stack([make_frame(fn, H, W)] * 3, -1)),
                                               format="bgr24")
            frame.pts = 7 + i
            for p in st.encode(frame):
                c.mux(p)
        for p in st.encode():
            c.mux(p)


def _other_video(tmp_path) -> str:
    p = str(tmp_path / "other.mkv")
    _foreign_video(p, range(40))
    return p


@pytest.mark.parametrize("move", [True, False])
def test_insert_chunk(tmp_path, move):
    video = str(tmp_path / "foreign.mkv")
    _foreign_video(video, range(100, 140))
    path = str(tmp_path / "s")
    with imgstore.new_for_format("h264/mkv", basedir=path, imgshape=(H, W), chunksize=20) as s:
        for fn in range(5):
            s.add_image(make_frame(fn, H, W), fn, float(fn))
        s.insert_chunk(video, list(range(100, 140)), [100.0 + i for i in range(40)], move=move)
        for fn in range(200, 203):
            s.add_image(make_frame(fn, H, W), fn, float(fn))
        with pytest.raises(errors.InvalidFrameMetadataError, match="holds 40 frames but 3"):
            s.insert_chunk(_other_video(tmp_path), [1, 2, 3], [1.0, 2.0, 3.0], move=False)
    assert os.path.exists(video) != move
    expected = [*range(5), *range(100, 140), *range(200, 203)]
    with imgstore.new_for_filename(path) as s:
        assert s.get_frame_metadata()["frame_number"] == expected
        assert s.chunks == [0, 1, 2]
        for fn in np.random.default_rng(0).permutation(expected):
            img, (got, _) = s.get_image(fn)
            assert got == fn and read_barcode(img) == fn


def test_fps_estimated_from_frame_times_after_the_first_chunk(tmp_path):
    path = str(tmp_path / "s")
    with imgstore.new_for_format("h264/mkv", basedir=path, imgshape=(H, W), chunksize=10) as s:
        assert s.estimated_fps() == 25.0  # nothing known yet
        for i in range(25):
            s.add_image(make_frame(i, H, W), i, 100.0 + i / 50.0)  # a 50 fps camera
        assert s.estimated_fps() == pytest.approx(50.0)
    with av.open(os.path.join(path, "000002.mkv")) as c:
        st = c.streams.video[0]
        assert float(st.average_rate or st.guessed_rate) == pytest.approx(50.0, rel=0.02)


def test_append_keeps_the_recorded_frame_rate(tmp_path):
    path = str(tmp_path / "s")
    with imgstore.new_for_format("h264/mkv", basedir=path, imgshape=(H, W), chunksize=10) as s:
        for i in range(10):
            s.add_image(make_frame(i, H, W), i, 100.0 + i / 10.0)  # a 10 fps camera, one chunk
    with imgstore.new_for_filename(path, mode="a") as s:
        assert s.estimated_fps() == pytest.approx(10.0)
        for i in range(10, 15):
            s.add_image(make_frame(i, H, W), i, 100.0 + i / 10.0)
    with av.open(os.path.join(path, "000001.mkv")) as c:
        st = c.streams.video[0]
        assert float(st.average_rate or st.guessed_rate) == pytest.approx(10.0, rel=0.02)
    with imgstore.new_for_filename(path) as s:
        for i in range(15):
            img, (fn, _) = s.get_image(i)
            assert fn == i and read_barcode(img) == i


def test_tiny_hevc_frames_are_deterministic_and_exact(tmp_path):
    """32x32 pictures (the reference's test_videoseek_extensive): same bytes every run, every frame right."""
    if "hevc/mp4" not in imgstore.get_supported_formats():
        pytest.fail("hevc/mp4 must be available from the PyAV wheels")
    frames = [make_frame(i, 32, 32, color=True, bits=8) for i in range(160)]
    payloads = []
    for run in range(2):
        path = str(tmp_path / f"run{run}")
        with imgstore.new_for_format("hevc/mp4", basedir=path, imgshape=(32, 32, 3), chunksize=1000) as s:
            for i, img in enumerate(frames):
                s.add_image(img, i, 1_700_000_000.0 + i / 25)
        with av.open(os.path.join(path, "000000.mp4")) as container:
            payloads.append([bytes(p) for p in container.demux(video=0)])
        with imgstore.new_for_filename(path) as s:
            got = [read_barcode(s.get_image(i)[0], bits=8) for i in np.random.default_rng(run).permutation(160)]
            assert sorted(got) == list(range(160)) and got == [int(i) for i in
                                                               np.random.default_rng(run).permutation(160)]
    assert payloads[0] == payloads[1]
