"""SLEAP / sleap-io: a ``VideoBackend`` over a store, and SLEAP projects whose videos are stores.

sleap-io (and SLEAP >= 1.5, built on it) has no imgstore backend, and SLEAP <= 1.4 projects
record their imgstore videos as ``{"filename": ".../metadata.yaml", "index_by_original": ...}``,
which sleap-io opens without a backend. :func:`register` teaches sleap-io stores, through the
three places it turns paths and JSON into backends (sleap-io has no plugin hook):
``VideoBackend.from_filename`` (a store folder or ``metadata.yaml`` gives an
:class:`ImgStoreVideo`), ``make_video`` (the ``index_by_original`` of a loaded project is kept)
and ``video_to_dict`` (a store video is saved in SLEAP 1.4's form, which SLEAP 1.4 and sleap-io
read back). :func:`load_slp` and :func:`load_video` register first.

>>> import sleap_io as sio                                   # doctest: +SKIP
>>> from imgstore.integrations.sleap_io import load_slp      # doctest: +SKIP
>>> labels = load_slp("project.slp")   # videos read frames from their stores   # doctest: +SKIP
>>> labels.save("copy.slp")            # and still do after reloading          # doctest: +SKIP

Frames come as sleap-io's other backends give them: ``(height, width, channels)``, RGB for
colour stores (``rgb=False`` keeps the store's BGR, as SLEAP <= 1.4 showed them).
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, cast

import attrs
import numpy as np

from ..errors import FrameNotFoundError
from ..factory import new_for_filename
from ._common import require, store_folder

require("sleap_io", "sleap", "the SLEAP integration")

import sleap_io  # noqa: E402 - after the check that names the extra
from sleap_io.io import slp as _slp  # noqa: E402
from sleap_io.io.video_reading import VideoBackend  # noqa: E402

__all__ = ["ImgStoreVideo", "is_registered", "load_slp", "load_video", "register", "unregister"]

#: ``index_by`` values: LabeledFrame.frame_idx is a position, or the camera's frame_number
#: (SLEAP <= 1.4's ``index_by_original=True``, its default)
INDEX_BY = ("frame_index", "frame_number")


# not slotted: sleap-io's fields are invisible to mypy's attrs plugin, which would then refuse
# ``_open_reader`` as outside the slots
@attrs.define(slots=False)
class ImgStoreVideo(VideoBackend):
    """A sleap-io video backend reading a store.

    Attributes
    ----------
    filename
        The store's folder or its ``metadata.yaml``.
    index_by
        What a frame index given to sleap-io means: ``"frame_index"`` (a position 0..N-1, the
        default) or ``"frame_number"`` (the camera's number; SLEAP <= 1.4's ``index_by_original``).
    rgb
        Colour frames in RGB, as sleap-io's other backends give them (False: the store's BGR).
    """

    index_by: str = attrs.field(default="frame_index", validator=attrs.validators.in_(INDEX_BY))
    rgb: bool = True
    if TYPE_CHECKING:
        _open_reader: Any  # sleap-io's field, here the open store


    @property
    def store(self) -> Any:
        """The open store (opened on first use; pickling drops it and the copy reopens it)."""
        if self._open_reader is None:
            self._open_reader = new_for_filename(os.fspath(self.filename))
        return self._open_reader

    @property
    def num_frames(self) -> int:
        """Frames in the store."""
        return len(self.store)

    @property
    def img_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` from the store's metadata (no frame decoded)."""
        shape = self.store.image_shape
        channels = 1 if len(shape) == 2 or self.grayscale else shape[2]
        return int(shape[0]), int(shape[1]), int(channels)

    @property
    def fps(self) -> float | None:
        """The frame rate set, else the one of the store's frame times (median interval)."""
        if self._fps is not None:
            return self._fps
        times = self.store.frame_times
        if len(times) < 2:
            return None
        step = float(np.median(np.diff(times)))
        return 1.0 / step if step > 0 else None

    @fps.setter
    def fps(self, value: float | None) -> None:
        if value is not None and value <= 0:
            raise ValueError(f"FPS must be positive, got {value}")
        self._fps = value

    @property
    def frame_numbers(self) -> np.ndarray:
        """frame_number of every frame, by position."""
        return self.store.frame_numbers

    @property
    def frame_times(self) -> np.ndarray:
        """frame_time (seconds since the epoch) of every frame, by position."""
        return self.store.frame_times

    def position(self, frame_idx: int) -> int:
        """The store position (frame_index) of a sleap-io frame index (see ``index_by``)."""
        if self.index_by == "frame_number":
            return self.store.index_of_number(int(frame_idx))
        return int(frame_idx)

    def frame_number(self, frame_idx: int) -> int:
        """The camera's frame_number of a sleap-io frame index."""
        return int(self.store.frame_numbers[self.position(frame_idx)])

    def frame_time(self, frame_idx: int) -> float:
        """frame_time of a sleap-io frame index."""
        return float(self.store.frame_times[self.position(frame_idx)])

    def has_frame(self, frame_idx: int) -> bool:
        """True if the store has this frame (by position or by number, see ``index_by``)."""
        try:
            i = self.position(frame_idx)
        except FrameNotFoundError:
            return False
        return 0 <= i < len(self.store)

    def detect_grayscale(self, test_img: np.ndarray | None = None) -> bool:
        """Grey stores are grey (from the metadata, not by looking at a frame)."""
        self.grayscale = len(self.store.image_shape) == 2
        return self.grayscale

    def read_test_frame(self) -> np.ndarray:
        """The first frame (position 0, whatever its frame_number)."""
        return self._as_sleap(self.store[0])

    def _as_sleap(self, frames: np.ndarray) -> np.ndarray:
        """Frames in sleap-io's layout: a channel axis always, RGB for colour (unless ``rgb=False``)."""
        if len(self.store.image_shape) == 2:
            return frames[..., None]
        return np.ascontiguousarray(frames[..., ::-1]) if self.rgb else frames

    def _read_frame(self, frame_idx: int) -> np.ndarray:
        return self._as_sleap(self.store[self.position(frame_idx)])

    def _read_frames(self, frame_inds: Any) -> np.ndarray:
        # one indexing call: the store reads each distinct frame once, in store order
        return self._as_sleap(self.store[[self.position(i) for i in frame_inds]])

    def close(self) -> None:
        """Close the store (reopened on the next read)."""
        store = self._open_reader
        self._open_reader = None
        if store is not None:
            store.close()


def _backend(path: str | os.PathLike, **kwargs: Any) -> ImgStoreVideo:
    # the attrs fields inherited from sleap-io's VideoBackend (filename, grayscale...) are
    # invisible to mypy's attrs plugin
    return cast(Any, ImgStoreVideo)(os.fspath(path), **kwargs)


# ---------------------------------------------------------------------- teaching sleap-io stores

_KEYS = ("index_by", "rgb")
_ORIGINALS: dict[str, Any] = {}


def _index_by_from_metadata(meta: dict[str, Any]) -> str | None:
    """``index_by`` recorded in a video's JSON (SLEAP <= 1.4's ``index_by_original``, default True)."""
    if meta.get("type") == "ImgStoreVideo" or "index_by_original" in meta:
        return "frame_number" if meta.get("index_by_original", True) else "frame_index"
    return None


def _sync(video: Any) -> Any:
    """Give a video's store backend the indexing its JSON records."""
    if isinstance(video.backend, ImgStoreVideo):
        index_by = _index_by_from_metadata(video.backend_metadata)
        if index_by is not None:
            video.backend.index_by = index_by
    return video


def _from_filename(original, cls, filename, dataset=None, grayscale=None, keep_open=True, **kwargs):
    if store_folder(filename) is not None:
        return _backend(filename, grayscale=grayscale, keep_open=keep_open,
                        **{k: v for k, v in kwargs.items() if k in _KEYS})
    return original(filename, dataset=dataset, grayscale=grayscale, keep_open=keep_open, **kwargs)


def _moved_store(labels_path: str, video_json: dict[str, Any]) -> dict[str, Any]:
    """A store video whose recorded path is gone, found beside the project (a project copied with its stores).

    sleap-io looks for the file's *name* beside the project, which for a store is ``metadata.yaml``;
    the store is the folder holding it.
    """
    meta = video_json.get("backend", {})
    recorded = meta.get("filename", "")
    if _index_by_from_metadata(meta) is None or not isinstance(recorded, str) or store_folder(recorded):
        return video_json
    folder = recorded[: -len("/metadata.yaml")] if recorded.endswith("/metadata.yaml") else recorded
    beside = os.path.join(os.path.dirname(os.fspath(labels_path)), os.path.basename(folder.rstrip("/\\")))
    if store_folder(beside) is None:
        return video_json
    return {**video_json, "backend": {**meta, "filename": os.path.join(beside, "metadata.yaml")}}


def _make_video(original, labels_path, video_json, *args, **kwargs):
    return _sync(original(labels_path, _moved_store(labels_path, video_json), *args, **kwargs))


def _video_to_dict(original, video, labels_path=None, prefer_metadata=True):
    backend = video.backend
    if not isinstance(backend, ImgStoreVideo):
        return original(video, labels_path, prefer_metadata=prefer_metadata)
    filename = os.fspath(backend.filename)
    # SLEAP 1.4's ImgStoreVideo fields, plus what sleap-io reads when the store is absent
    # (shape, fps); "grayscale" is left out: SLEAP 1.4 would take the entry for a MediaVideo
    out: dict[str, Any] = {"filename": filename, "backend": {
        "type": "ImgStoreVideo", "filename": filename, "index_by_original": backend.index_by == "frame_number",
        "shape": list(backend.shape), "fps": backend.fps}}
    if video.source_video is not None:
        out["source_video"] = _slp.video_to_dict(video.source_video, labels_path, prefer_metadata=prefer_metadata)
    return out


def register() -> None:
    """Let sleap-io open stores, keep SLEAP 1.4's ``index_by_original`` and save store videos. Idempotent."""
    if _ORIGINALS:
        return
    from sleap_io.model import video as model_video

    _ORIGINALS["from_filename"] = VideoBackend.__dict__["from_filename"]
    _ORIGINALS["make_video"] = _slp.make_video
    _ORIGINALS["video_to_dict"] = _slp.video_to_dict
    _ORIGINALS["open"] = model_video.Video.open
    original_from_filename = VideoBackend.from_filename
    VideoBackend.from_filename = classmethod(
        lambda cls, *a, **k: _from_filename(original_from_filename, cls, *a, **k))
    _slp.make_video = functools.partial(_make_video, _ORIGINALS["make_video"])
    _slp.video_to_dict = functools.partial(_video_to_dict, _ORIGINALS["video_to_dict"])

    def open_and_sync(self, *args, **kwargs):
        _ORIGINALS["open"](self, *args, **kwargs)
        _sync(self)

    model_video.Video.open = open_and_sync


def unregister() -> None:
    """Undo :func:`register`."""
    if not _ORIGINALS:
        return
    from sleap_io.model import video as model_video

    VideoBackend.from_filename = _ORIGINALS.pop("from_filename")
    _slp.make_video = _ORIGINALS.pop("make_video")
    _slp.video_to_dict = _ORIGINALS.pop("video_to_dict")
    model_video.Video.open = _ORIGINALS.pop("open")


def is_registered() -> bool:
    """True while sleap-io knows stores (:func:`register`)."""
    return bool(_ORIGINALS)


# ---------------------------------------------------------------------- loading

def load_video(path: str | os.PathLike, index_by: str = "frame_index", rgb: bool = True) -> Any:
    """A ``sleap_io.Video`` reading the store at ``path`` (its folder or ``metadata.yaml``)."""
    register()
    backend = _backend(path, index_by=index_by, rgb=rgb)
    meta = {"type": "ImgStoreVideo", "index_by_original": index_by == "frame_number"}
    return sleap_io.Video(filename=os.fspath(path), backend=backend, backend_metadata=meta)


def load_slp(path: str | os.PathLike, *, as_positions: bool = False, **kwargs: Any) -> Any:
    """A SLEAP project (``.slp``, SLEAP <= 1.4 ones too) whose store videos read frames.

    Parameters
    ----------
    path
        The ``.slp`` file.
    as_positions
        Renumber the labelled frames and suggestions of videos indexed by frame_number
        (SLEAP <= 1.4's ``index_by_original``) to positions 0..N-1, as sleap-io's other
        videos are indexed.
    **kwargs
        Passed to ``sleap_io.load_slp``.

    Returns
    -------
    sleap_io.Labels
    """
    register()
    labels = sleap_io.load_slp(os.fspath(path), **kwargs)
    if as_positions:
        for video in labels.videos:
            backend = video.backend
            if isinstance(backend, ImgStoreVideo) and backend.index_by == "frame_number":
                for item in [*labels.find(video), *(sf for sf in labels.suggestions if sf.video is video)]:
                    item.frame_idx = backend.position(item.frame_idx)
                backend.index_by = "frame_index"
                video.backend_metadata["index_by_original"] = False
    return labels
