"""Motif's extra-data files (``NNNNNN.extra_data.json`` / ``.h5`` in the store root) are read."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import imgstore


@pytest.fixture
def motif_store(fixtures_dir, tmp_path):
    path = str(tmp_path / "motif")
    shutil.copytree(fixtures_dir / "motif_libx264_mp4", path)
    return path


def test_extra_data_json(motif_store):
    rows = [
        {"frame_index": 5, "frame_number": 5, "frame_time": 6.0, "sensor_time": 6.1, "temp": 21.5},
        {"frame_index": 2, "frame_number": 2, "frame_time": 3.0, "sensor_time": 3.2, "temp": 20.5},
        {"frame_index": 2, "frame_number": 2, "frame_time": 3.0, "sensor_time": 3.1, "temp": 20.0},
        {"frame_index": -1, "frame_number": -1, "frame_time": 0.0, "sensor_time": 0.0, "temp": 0.0},  # unused row
    ]
    with open(os.path.join(motif_store, "000000.extra_data.json"), "w") as f:
        json.dump(rows, f)
    with imgstore.new_for_filename(motif_store) as s:
        assert s.has_extra_data
        df = s.get_extra_data()
    # pre-allocated rows dropped, sorted by frame_index then sensor_time (as Motif's reader)
    assert df["temp"].tolist() == [20.0, 20.5, 21.5]
    assert df["sensor_time"].tolist() == [3.1, 3.2, 6.1]


def test_extra_data_h5(motif_store):
    h5py = pytest.importorskip("h5py")
    n = 6
    camera = np.zeros(n, dtype=[("frame_number", "<i8"), ("frame_time", "<f8"), ("frame_index", "<i8")])
    camera["frame_number"] = [0, 1, 2, 3, -1, -1]
    camera["frame_time"] = [1.0, 2.0, 3.0, 4.0, 0, 0]
    camera["frame_index"] = [0, 1, 2, 3, -1, -1]
    with h5py.File(os.path.join(motif_store, "000001.extra_data.h5"), "w") as f:
        f.attrs["datasets"] = b"daq"
        f.create_dataset("camera", data=camera)
        daq = f.create_dataset("daq", data=np.arange(2 * n, dtype=float).reshape(2, n))
        daq.attrs["column_names"] = b"volts, amps"
        daq.attrs["samplerate"] = 1000.0
        f.create_dataset("sample_delay", data=np.linspace(0, 0.5, n))
    with imgstore.new_for_filename(motif_store) as s:
        df = s.get_extra_data()
        assert s.find_extra_data_files() == [os.path.join(motif_store, "000001.extra_data.h5")]
    assert df["frame_number"].tolist() == [0, 1, 2, 3]
    assert df["volts"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert df["amps"].tolist() == [6.0, 7.0, 8.0, 9.0]
    assert df["sample_delay"].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3])
    from imgstore.util import motif_extra_data_h5_attrs

    attrs = motif_extra_data_h5_attrs(os.path.join(motif_store, "000001.extra_data.h5"))
    assert attrs["_datasets"] == ["daq"] and attrs["daq"]["samplerate"] == 1000.0
