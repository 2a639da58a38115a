"""Readers for the extra-data files written by Motif recording systems (``*.extra_data.*``)."""

from __future__ import annotations

import json

import numpy as np

from .errors import MissingDependencyError
from .storage import LOCAL, Storage


def read_motif_extra_data(path: str, storage: Storage = LOCAL):
    """Read a Motif ``.extra_data.json`` or ``.extra_data.h5`` file as a DataFrame."""
    if path.endswith(".h5"):
        with storage.open_read(path) as f:  # h5py reads file objects (ranges, when remote)
            return _read_h5(f, path)
    return _read_json(storage.read_bytes(path))


def _read_json(data: bytes):
    import pandas as pd

    df = pd.DataFrame(json.loads(data.decode("utf-8")))
    if df.empty:
        return df
    # Motif pre-allocates rows; unused ones have a negative frame_number
    df = df[df["frame_number"] >= 0]
    if df.empty:
        return df
    by = ["frame_index", "sensor_time"] if "sensor_time" in df.columns else ["frame_index"]
    return df.sort_values(by=by).reset_index(drop=True)


def _attr_text(value) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _require_h5py():
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError(
            "reading Motif .extra_data.h5 files needs h5py: pip install 'imgstore[h5]'") from None
    return h5py


def read_motif_h5_attrs(path: str, storage: Storage = LOCAL) -> dict:
    """Dataset names and per-dataset attributes of a Motif ``.extra_data.h5`` file."""
    h5py = _require_h5py()
    attrs: dict = {}
    with storage.open_read(path) as raw, h5py.File(raw, "r") as f:
        attrs["_datasets"] = [s.strip() for s in _attr_text(f.attrs["datasets"]).split(",")]
        for g in f:
            attrs[g] = dict(f[g].attrs)
    return attrs


def _read_h5(raw, path: str):
    import pandas as pd

    h5py = _require_h5py()
    with h5py.File(raw, "r") as f:
        camera = np.asarray(f["camera"])
        mask = camera["frame_number"] >= 0  # pre-allocated, unrecorded rows are negative
        data = {}
        for name in (s.strip() for s in _attr_text(f.attrs["datasets"]).split(",")):
            ds = f[name]
            columns = [s.strip() for s in _attr_text(ds.attrs["column_names"]).split(",")]
            arr = ds[..., mask]
            if len(columns) != arr.shape[0]:
                raise ValueError(f"{path}: dataset {name} has {arr.shape[0]} rows but {len(columns)} column names")
            for row, column in enumerate(columns):
                data[column] = arr[row]
        for field in camera.dtype.names or ():
            data[field] = camera[field][mask]
        data["sample_delay"] = np.asarray(f["sample_delay"])[mask]
    return pd.DataFrame(data)
