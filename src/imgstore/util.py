"""The reference's ``imgstore.util``: image, JSON, time-zone and Motif helpers.

Thin re-exports of this package's implementations under the names imgstore 0.4 used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _motif
from .imageops import FourCC, ImageCodecProcessor, ensure_color, ensure_grayscale
from .ondisk import JsonCustomEncoder, local_timezone_name
from .timezones import local_timezone, recording_timezone

__all__ = [
    "FourCC",
    "ImageCodecProcessor",
    "JsonCustomEncoder",
    "ensure_color",
    "ensure_grayscale",
    "get_local_timezone",
    "get_local_timezone_zoneinfo",
    "motif_extra_data_h5_attrs",
    "motif_extra_data_h5_to_df",
    "motif_extra_data_json_to_df",
    "motif_get_parse_true_fps",
    "motif_get_recording_timezone",
]

#: the IANA name of this machine's time zone (a string, as in the reference)
get_local_timezone = local_timezone_name
#: this machine's time zone as a ``ZoneInfo``
get_local_timezone_zoneinfo = local_timezone
#: the zone a recording's local times are shown in: its ``timezone`` user metadata, else ``created[1]``
motif_get_recording_timezone = recording_timezone
motif_extra_data_h5_attrs = _motif.read_motif_h5_attrs


def _cvt_color(img: np.ndarray, code: int, ensure_copy: bool = True) -> np.ndarray:
    """imgstore 0.4's helper behind :func:`ensure_color` / :func:`ensure_grayscale`."""
    import cv2

    if code == cv2.COLOR_GRAY2BGR:
        return ensure_color(img, ensure_copy=ensure_copy)
    if code == cv2.COLOR_BGR2GRAY:
        return ensure_grayscale(img, ensure_copy=ensure_copy)
    # the reference *returned* this error instead of raising it
    raise ValueError(f"cvtColor code not understood: {code!r}")


def motif_extra_data_json_to_df(store: Any, path: str):
    """A Motif ``.extra_data.json`` file as a DataFrame (``store`` is unused, kept for the signature)."""
    return _motif.read_motif_extra_data(path)


def motif_extra_data_h5_to_df(store: Any, path: str):
    """A Motif ``.extra_data.h5`` file as a DataFrame (``store`` is unused, kept for the signature)."""
    return _motif.read_motif_extra_data(path)


def motif_get_parse_true_fps(store: Any, default: float | None = 25.0, hwardware_only: bool = False) -> float:
    """The camera's true frame rate from Motif's user metadata.

    ``hwframerate``, else ``motifptpframerate``, else (unless ``hwardware_only``, the
    reference's spelling) ``acquisitionframerate`` when ``acquisitionframerateenable`` is
    true; else ``default``, or with ``default=None`` the median rate of the first chunk's
    frame times.
    """
    md = store.user_metadata or {}
    if "hwframerate" in md:
        return float(md["hwframerate"])
    if "motifptpframerate" in md:
        return float(md["motifptpframerate"])
    if not hwardware_only and md.get("acquisitionframerate") and md.get("acquisitionframerateenable", False) is True:
        return float(md["acquisitionframerate"])
    if default is None:
        index = store.index
        first = index.chunk_slice(index.chunks[0]) if index.chunks else slice(0, 0)
        steps = np.diff(index.frame_time[first])
        if not len(steps):
            raise ValueError(f"cannot estimate the frame rate of {store.filename!r}: fewer than 2 frames")
        return float(1.0 / np.median(steps))
    return default
