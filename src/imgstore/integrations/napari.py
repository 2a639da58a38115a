"""napari: imgstore's npe2 reader (``napari.yaml``): a store as a lazy image layer.

Open a store folder or its ``metadata.yaml`` (File > Open, ``napari STORE``,
``viewer.open(path, plugin="imgstore")``); several stores give several layers. Frames are
decoded only when napari shows them (:class:`StoreFrames` is the layer's lazy data; the contrast
limits come from the dtype, so nothing is read to compute them). The current frame's
frame_number and local time (the recording's time zone) show in the viewer's text overlay
(:func:`attach_frame_info`, done for the viewer the file is opened in when there is one) and
are :func:`frame_info` for any layer.
"""

from __future__ import annotations

import datetime
import functools
import os
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backends.arrayview import plan_indexing
from ..factory import new_for_filename
from ..timezones import recording_timezone
from ._common import store_folder

__all__ = ["StoreFrames", "attach_frame_info", "frame_info", "get_reader", "read_stores"]

#: the layer metadata key holding what the layer shows (see :func:`frame_info`)
METADATA_KEY = "imgstore"


class StoreFrames:
    """A store as napari's lazy image data: numpy indexing, colour frames in RGB.

    Parameters
    ----------
    store
        A store opened for reading (this object closes it in :meth:`close`).
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.rgb = len(store.image_shape) == 3 and store.image_shape[2] == 3
        self.shape: tuple[int, ...] = tuple(store.shape)
        self.dtype = np.dtype(store.dtype)
        self.ndim = len(self.shape)

    @property
    def size(self) -> int:
        """Number of pixel values."""
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> Any:
        # the store's own plan: only the frames the key selects are decoded
        plan = plan_indexing(key, self.shape)
        frames = self.store.read_frames_at(plan.frames)
        if self.rgb:
            frames = frames[..., ::-1]  # the store keeps OpenCV's BGR; napari shows RGB
        return frames[plan.key]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = np.asarray(self.store)  # the store's size limit applies
        out = out[..., ::-1] if self.rgb else out
        return out if dtype is None else out.astype(dtype)

    def close(self) -> None:
        """Close the store."""
        self.store.close()


def _contrast_limits(dtype: np.dtype) -> list[float]:
    # from the dtype: napari would otherwise read frames to find the data's range
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return [float(info.min), float(info.max)]
    return [0.0, 1.0]


def _layer(path: str) -> tuple[StoreFrames, dict[str, Any], str]:
    store = new_for_filename(path)
    data = StoreFrames(store)
    tz = recording_timezone(store)  # the lab's "timezone" metadata, else the recording machine's
    meta = {"path": os.path.abspath(path), "uuid": store.uuid, "format": store.format,
            "frame_numbers": np.array(store.frame_numbers), "frame_times": np.array(store.frame_times),
            "timezone": getattr(tz, "key", None) or str(tz), "tzinfo": tz, "user_metadata": dict(store.user_metadata)}
    name = os.path.basename(os.path.abspath(store_folder(path) or path))
    kwargs = {"name": name, "rgb": data.rgb, "contrast_limits": _contrast_limits(data.dtype),
              "multiscale": False, "metadata": {METADATA_KEY: meta}}
    return data, kwargs, "image"


def read_stores(paths: Sequence[str]) -> list[tuple[Any, dict[str, Any], str]]:
    """One lazy image layer (napari layer data tuple) per store; attaches the frame info overlay."""
    layers = [_layer(p) for p in paths]
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # no napari GUI here (headless use): the caller attaches
        viewer = None
    if viewer is not None:
        attach_frame_info(viewer)
    return layers


def get_reader(path: str | Sequence[str]):
    """npe2 reader: a function reading the stores at ``path`` (folders or ``metadata.yaml``), else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    folders = [store_folder(p) for p in paths]
    if not folders or any(f is None for f in folders):
        return None
    return functools.partial(_read, [os.fspath(p) for p in paths])


def _read(paths: list[str], path: Any = None) -> list[tuple[Any, dict[str, Any], str]]:
    # napari calls the reader with the path again; the paths were checked by get_reader
    return read_stores(paths)


def frame_info(layer: Any, frame_index: int) -> str | None:
    """``"name: frame_number N, <local time>"`` of ``frame_index`` of an imgstore layer (None otherwise)."""
    meta = getattr(layer, "metadata", {}).get(METADATA_KEY)
    if meta is None or not 0 <= frame_index < len(meta["frame_numbers"]):
        return None
    when = datetime.datetime.fromtimestamp(float(meta["frame_times"][frame_index]), tz=meta["tzinfo"])
    return (f"{layer.name}: frame_number {int(meta['frame_numbers'][frame_index])}, "
            f"{when:%Y-%m-%d %H:%M:%S}.{when.microsecond // 1000:03d} {when.tzname()}")


def _text_overlay(viewer: Any) -> Any:
    canvas = getattr(viewer, "canvas", None)  # napari >= 0.9; earlier: viewer.text_overlay
    return canvas.overlays.text if canvas is not None else viewer.text_overlay


def _update(viewer: Any, event: Any = None) -> None:
    lines = []
    for layer in viewer.layers:
        if not layer.visible or METADATA_KEY not in getattr(layer, "metadata", {}):
            continue
        # the dims position in the layer's data coordinates (its scale and translate applied)
        index = round(float(layer.world_to_data(viewer.dims.point)[0]))
        line = frame_info(layer, index)
        if line is not None:
            lines.append(line)
    overlay = _text_overlay(viewer)
    overlay.text = "\n".join(lines)
    overlay.visible = bool(lines)


#: viewers showing the frame info already
_ATTACHED: weakref.WeakSet = weakref.WeakSet()


def attach_frame_info(viewer: Any) -> None:
    """Show the current frame's frame_number and local time of every imgstore layer in the text overlay.

    Idempotent; follows the dims slider and layers being added or removed.
    """
    if viewer in _ATTACHED:
        return
    update = functools.partial(_update, viewer)
    viewer.dims.events.current_step.connect(update)
    viewer.layers.events.inserted.connect(update)
    viewer.layers.events.removed.connect(update)
    _ATTACHED.add(viewer)
    update()
