"""NWB (extra [nwb]): a store as an ImageSeries, valid by pynwb's validator and read back."""

from __future__ import annotations

import datetime
import os

import av
import numpy as np
import pytest

import imgstore
from imgstore.errors import StoreExistsError, UnsupportedFormatError
from imgstore.testing.barcode import make_frame, read_barcode

pynwb = pytest.importorskip("pynwb")
from imgstore.cli import convert  # noqa: E402
from imgstore.integrations.nwb import store_to_nwb  # noqa: E402

H, W = 48, 64
T0 = 1_700_000_000.0
USER = {"experimenter": "Ada Lovelace", "lab": "Behaviour", "institution": "IST", "subject": "mouse-7",
        "species": "Mus musculus", "genotype": "wt", "keywords": ["fly", "arena"], "room": 3}


def _validate(path):
    errors = pynwb.validate(path=str(path))
    return errors[0] if isinstance(errors, tuple) else errors  # (errors, status) in some pynwb versions


@pytest.fixture(scope="module")
def video_store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("nwb") / "cam0")
    numbers = [500 + 2 * i for i in range(50)]  # a camera's numbers, not positions
    with imgstore.new_for_format("h264/mkv", basedir=path, imgshape=(H, W), chunksize=20, fps=25,
                                 metadata=USER) as s:
        for i, fn in enumerate(numbers):
            s.add_image(make_frame(fn, H, W), fn, T0 + i / 25 + 1e-4 * (i % 3))  # jitter: real clocks
    return path


def _decode(path, k):
    """Frame ``k`` of a video file, decoded independently of imgstore (PyAV, in presentation order)."""
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == k:
                return frame.to_ndarray(format="gray")
    raise AssertionError(f"{path} has no frame {k}")


def test_video_store_is_referenced_as_external_files(video_store, tmp_path):
    out = tmp_path / "sub" / "run.nwb"
    out.parent.mkdir()
    store_to_nwb(video_store, out)
    assert _validate(out) == []
    with imgstore.new_for_filename(video_store) as s, pynwb.NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        series = nwb.acquisition["cam0"]
        assert series.format == "external"
        files = [str(f) for f in series.external_file[:]]
        # relative to the NWB file's folder (DANDI's form)
        assert files == [os.path.relpath(s.chunk_payload_path(c), out.parent) for c in range(3)]
        assert all(not os.path.isabs(f) and f.endswith(f"cam0{os.sep}{c:06d}.mkv") for c, f in enumerate(files))
        assert series.starting_frame[:].tolist() == [0, 20, 40]
        np.testing.assert_array_equal(series.timestamps[:], s.frame_times)  # bit-exact frame_time
        assert nwb.timestamps_reference_time == datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        np.testing.assert_array_equal(nwb.acquisition["cam0_frame_number"].data[:], s.frame_numbers)
        assert list(series.dimension[:]) == [W, H]
        # each referenced file holds its frames from starting_frame on
        for j in (0, 19, 20, 45):
            chunk = int(np.searchsorted(series.starting_frame[:], j, side="right")) - 1
            video = os.path.join(os.path.dirname(out), files[chunk])
            assert read_barcode(_decode(video, j - series.starting_frame[chunk])) == s.frame_numbers[j]
        # the user metadata: NWB fields where one fits, everything in the comments
        assert nwb.experimenter == ("Ada Lovelace",) and nwb.lab == "Behaviour" and nwb.institution == "IST"
        assert list(nwb.keywords[:]) == ["fly", "arena"]
        assert (nwb.subject.subject_id, nwb.subject.species, nwb.subject.genotype) == ("mouse-7", "Mus musculus",
                                                                                         "wt")
        assert '"room": 3' in series.comments and s.uuid in series.comments
        assert nwb.identifier == s.uuid
        assert nwb.session_start_time.timestamp() == pytest.approx(T0)


def test_directory_store_frames_are_embedded(tmp_path):
    path = str(tmp_path / "pngs")
    with imgstore.new_for_format("png", basedir=path, imgshape=(H, W, 3), chunksize=7) as s:
        for i in range(16):
            s.add_image(make_frame(i, H, W, color=True), 100 + i, T0 + i)
    out = tmp_path / "pngs.nwb"
    store_to_nwb(path, out, session_description="test session")
    assert _validate(out) == []
    with imgstore.new_for_filename(path) as s, pynwb.NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        series = nwb.acquisition["pngs"]
        assert nwb.session_description == "test session"
        assert series.data.shape == (16, H, W, 3) and series.data.compression == "gzip"
        np.testing.assert_array_equal(series.data[:], np.asarray(s)[..., ::-1])  # lossless, RGB
        np.testing.assert_array_equal(series.timestamps[:], s.frame_times)
    with pytest.raises(UnsupportedFormatError, match="pngs is a png directory store"):
        store_to_nwb(path, tmp_path / "x.nwb", embed=False)
    with pytest.raises(StoreExistsError, match=r"pngs\.nwb exists"):
        store_to_nwb(path, out)


def test_command_line_to_nwb(video_store, tmp_path, capsys):
    out = str(tmp_path / "cli.nwb")
    assert convert.main([video_store, "--to-nwb", out]) == 0
    assert "ImageSeries of 50 frames (referenced)" in capsys.readouterr().out
    assert _validate(out) == []
    assert convert.main([video_store, "--to-nwb", out]) == 1  # exists
    assert "use --overwrite" in capsys.readouterr().err
    assert convert.main([video_store, "--to-nwb", out, "--overwrite", "--embed-frames"]) == 0
    with imgstore.new_for_filename(video_store) as s, pynwb.NWBHDF5IO(out, "r") as io:
        series = io.read().acquisition["cam0"]
        assert series.format == "raw"
        assert [read_barcode(img) for img in series.data[[0, 49]]] == [s.frame_numbers[0], s.frame_numbers[49]]
    assert convert.main([video_store, str(tmp_path / "d"), "--to-nwb", out]) == 2
    assert convert.main([video_store, str(tmp_path / "d"), "--format", "png", "--embed-frames"]) == 2
