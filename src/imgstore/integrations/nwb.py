"""NWB: a store as an ``ImageSeries`` in an NWB file (``imgstore-convert STORE --to-nwb out.nwb``).

Video stores are *referenced*, the form DANDI accepts for behaviour video: ``external_file``
lists the chunk files (paths relative to the NWB file, so the folder can move as a whole) and
``starting_frame`` the position of each one's first frame. Directory stores (no video files)
have their frames *embedded* (gzip-compressed ``data``, streamed frame by frame; colour as RGB).
``timestamps`` are the frames' frame_time exactly: ``timestamps_reference_time`` is the Unix
epoch, so ``reference + timestamp`` is the frame's time. The user metadata keys that name an
NWB field (``experimenter``, ``lab``, ``institution``, ``session_description``, ``subject_id``,
``species``, ``genotype``, ...) fill it; all of them are kept as JSON in the series'
``comments``, with the store's uuid, format and frame_numbers in ``control``/``description``.

>>> from imgstore.integrations.nwb import store_to_nwb      # doctest: +SKIP
>>> store_to_nwb("/data/run1", "run1.nwb")                  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

import numpy as np

from ..errors import StoreExistsError, UnsupportedFormatError
from ..factory import new_for_filename
from ..storage import LOCAL
from ..timezones import recording_timezone
from ._common import require

__all__ = ["NWB_FILE_FIELDS", "SUBJECT_FIELDS", "series_name", "store_to_nwb"]

#: user metadata keys copied to the NWBFile field of the same name (text; lists for the list fields)
NWB_FILE_FIELDS = ("session_description", "experiment_description", "session_id", "institution", "lab", "notes",
                   "protocol", "pharmacology", "surgery", "virus", "stimulus_notes", "data_collection",
                   "experimenter", "keywords", "related_publications")
_LIST_FIELDS = ("experimenter", "keywords", "related_publications")
#: user metadata keys copied to the NWB Subject (``subject`` or ``animal`` name the subject_id too)
SUBJECT_FIELDS = ("subject_id", "species", "genotype", "sex", "age", "strain", "weight")
_SUBJECT_ALIASES = {"subject": "subject_id", "animal": "subject_id", "animal_id": "subject_id"}
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def series_name(store: Any) -> str:
    """The default ImageSeries name: the store folder's name (NWB names cannot hold ``/`` or ``:``)."""
    base = os.path.basename(os.path.abspath(store.filename)) or "video"
    return base.replace("/", "_").replace(":", "_")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _file_fields(user: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in NWB_FILE_FIELDS:
        if user.get(key) is None:
            continue
        value = user[key]
        if key in _LIST_FIELDS:
            out[key] = [_text(v) for v in value] if isinstance(value, (list, tuple)) else [_text(value)]
        else:
            out[key] = _text(value)
    return out


def _subject(pynwb: Any, user: dict[str, Any]) -> Any:
    fields = {_SUBJECT_ALIASES.get(k, k): user[k] for k in (*_SUBJECT_ALIASES, *SUBJECT_FIELDS)
              if user.get(k) is not None}
    if not fields:
        return None
    return pynwb.file.Subject(**{k: _text(v) for k, v in fields.items()})


def _external(store: Any, nwb_path: str, relative: bool) -> tuple[list[str], list[int]]:
    """(chunk files, frame_index of each one's first frame), in store order."""
    index = store.index
    files, starts = [], []
    for k, chunk_n in enumerate(index.chunk_numbers):
        if index.chunk_starts[k + 1] == index.chunk_starts[k]:
            continue  # an empty chunk holds no frame of the series
        payload = os.path.abspath(store.chunk_payload_path(int(chunk_n)))
        files.append(os.path.relpath(payload, os.path.dirname(os.path.abspath(nwb_path))) if relative else payload)
        starts.append(int(index.chunk_starts[k]))
    return files, starts


def _embedded(store: Any) -> Any:
    """The frames as a compressed dataset written frame by frame (RGB for colour)."""
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from hdmf.data_utils import DataChunkIterator

    colour = len(store.image_shape) == 3
    frames = ((img[..., ::-1] if colour else img) for img in store)
    shape = (len(store), *store.image_shape)
    chunks = (1, *store.image_shape)
    iterator = DataChunkIterator(data=frames, maxshape=shape, dtype=np.dtype(store.dtype), buffer_size=1)
    return H5DataIO(iterator, compression="gzip", chunks=chunks)


def store_to_nwb(store: Any, path: str | os.PathLike, *, name: str | None = None, embed: bool | None = None,
                 relative_paths: bool = True, overwrite: bool = False, **nwbfile_kwargs: Any) -> str:
    """Write an NWB file whose ImageSeries is the store's video (referenced or embedded).

    Parameters
    ----------
    store
        A store opened for reading, or its path.
    path
        The NWB file to write.
    name
        The ImageSeries' name (default: the store folder's name).
    embed
        Embed the frames (default: only for directory stores, which have no video files).
    relative_paths
        ``external_file`` paths relative to the NWB file's folder (DANDI's form), else absolute.
    overwrite
        Replace an existing ``path``.
    **nwbfile_kwargs
        NWBFile fields, over those taken from the user metadata (e.g. ``session_description``).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    StoreExistsError
        ``path`` exists and ``overwrite`` is false.
    UnsupportedFormatError
        ``embed=False`` for a directory store (it has no video files to reference).
    MissingDependencyError
        pynwb is not installed: ``pip install 'imgstore[nwb]'``.
    """
    pynwb = require("pynwb", "nwb", "writing NWB files")
    path = os.fspath(path)
    if LOCAL.exists(path) and not overwrite:
        raise StoreExistsError(f"{path} exists (pass overwrite=True, or --overwrite, to replace it)")
    opened = None
    if isinstance(store, (str, os.PathLike)):
        store = opened = new_for_filename(store)
    try:
        return _write(pynwb, store, path, name, embed, relative_paths, nwbfile_kwargs)
    finally:
        if opened is not None:
            opened.close()


def _write(pynwb: Any, store: Any, path: str, name: str | None, embed: bool | None, relative: bool,
           nwbfile_kwargs: dict[str, Any]) -> str:
    from pynwb.image import ImageSeries

    is_video = store.class_name == "VideoImgStore"  # a video file per chunk (Motif's stores too)
    embed = (not is_video) if embed is None else embed
    if not embed and not is_video:
        raise UnsupportedFormatError(f"{store.filename} is a {store.format} directory store: it has no video "
                                     f"files to reference; its frames can only be embedded (embed=True)")
    user = dict(store.user_metadata)
    tz = recording_timezone(store)
    times = np.asarray(store.frame_times, dtype=np.float64)
    start = (datetime.datetime.fromtimestamp(float(times[0]), tz=tz) if len(times)
             else store.created[0].astimezone(tz))
    fields = {"session_description": f"imgstore recording {series_name(store)}",
              "identifier": store.uuid or series_name(store), "session_start_time": start,
              "timestamps_reference_time": _EPOCH, **_file_fields(user), **nwbfile_kwargs}
    nwbfile = pynwb.NWBFile(**fields)
    subject = _subject(pynwb, user)
    if subject is not None:
        nwbfile.subject = subject
    device = nwbfile.create_device(name=_text(user.get("camera", "camera")),
                                   description=f"camera of the imgstore recording {store.filename}")
    height, width = store.image_shape[:2]
    common: dict[str, Any] = {
        "name": name or series_name(store), "unit": "n.a.", "timestamps": times, "device": device,
        "description": (f"imgstore {store.format} store {store.filename} (uuid {store.uuid}); the TimeSeries "
                        f"'<name>_frame_number' holds each frame's frame_number (the camera's)"),
        "comments": json.dumps({"user_metadata": user, "imgstore_format": store.format, "uuid": store.uuid},
                               default=str),
    }
    if embed:
        series = ImageSeries(data=_embedded(store), format="raw", **common)
    else:
        files, starts = _external(store, path, relative)
        series = ImageSeries(external_file=files, starting_frame=starts, format="external",
                             dimension=[int(width), int(height)], **common)
    nwbfile.add_acquisition(series)
    # the camera's numbers, on the same (linked) timestamps
    nwbfile.add_acquisition(pynwb.TimeSeries(
        name=f"{series.name}_frame_number", data=np.asarray(store.frame_numbers, dtype=np.int64), unit="n.a.",
        timestamps=series, description=f"frame_number (the camera's number) of each frame of {series.name}"))
    with pynwb.NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    return path
