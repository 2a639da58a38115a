"""Synthetic stores for tests and benchmarks, written straight in the on-disk format.

:func:`make_synthetic_store` writes a directory store (``metadata.yaml``, one folder per chunk
with its ``index.npz``) for any number of frames in seconds: by default only the first frame
of each chunk gets an image file, so an 18-million-frame week-long store takes a few hundred MB
of indexes and no frame data. Such a store opens, answers every lookup by number, index and
time, and reads the frames that exist (the first of each chunk), in this imgstore and in the
reference imgstore 0.4.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import yaml

from .. import ondisk
from ..backends.writing import remove_store_files
from ..errors import StoreExistsError, UnsupportedFormatError
from ..storage import LOCAL

__all__ = ["make_synthetic_store", "synthetic_frame"]

_FRAME_FORMATS = ("npy", "png")


def synthetic_frame(frame_number: int, imgshape: Sequence[int] = (8, 8), dtype: str = "uint8") -> np.ndarray:
    """The image a synthetic store holds for ``frame_number``: every pixel ``frame_number % 251``."""
    return np.full(tuple(imgshape), int(frame_number) % 251, dtype=dtype)


def make_synthetic_store(
    path: str | os.PathLike,
    n_frames: int,
    chunksize: int,
    fmt: str = "npy",
    *,
    imgshape: Sequence[int] = (8, 8),
    fps: float = 30.0,
    t0: float = 1_700_000_000.0,
    first_frame_number: int = 0,
    frame_numbers: Sequence[int] | np.ndarray | None = None,
    frame_times: Sequence[float] | np.ndarray | None = None,
    chunk_lengths: Sequence[int] | None = None,
    frames: str = "first",
    index_format: str = "npz",
    overwrite: bool = False,
) -> str:
    """Write a directory store of ``n_frames`` frames without encoding any video.

    Parameters
    ----------
    path
        The store's folder (created).
    n_frames
        Number of frames.
    chunksize
        Frames per chunk (recorded in the metadata; also how frames are split into chunks
        unless ``chunk_lengths`` is given).
    fmt
        Frame file format, ``'npy'`` or ``'png'``.
    imgshape
        Image shape; tiny by default.
    fps, t0, first_frame_number
        Default metadata: ``frame_number = first_frame_number + i``, ``frame_time = t0 + i / fps``.
    frame_numbers, frame_times
        Explicit per-frame metadata (length ``n_frames``) instead of the defaults: repeated,
        unsorted or gapped numbers, jittered times...
    chunk_lengths
        Explicit number of frames per chunk (may contain zeros: empty chunks); must sum to
        ``n_frames``.
    frames
        Which frames get an image file: ``'first'`` of each chunk (default), ``'all'``, or
        ``'none'``. The image of a frame is :func:`synthetic_frame` of its frame_number.
    index_format
        ``'npz'`` (as written by imgstore) or ``'yaml'`` (as old stores have).
    overwrite
        Replace an existing store at ``path``.

    Returns
    -------
    str
        ``path``.
    """
    path = os.fspath(path)
    if fmt not in _FRAME_FORMATS:
        raise UnsupportedFormatError(f"synthetic stores are written as {list(_FRAME_FORMATS)}, not {fmt!r}")
    if frames not in ("first", "all", "none"):
        raise ValueError(f"frames {frames!r} must be 'first', 'all' or 'none'")
    if index_format not in ("npz", "yaml"):
        raise ValueError(f"index_format {index_format!r} must be 'npz' or 'yaml'")
    if int(n_frames) < 0 or int(chunksize) <= 0:
        raise ValueError(f"n_frames {n_frames!r} must be >= 0 and chunksize {chunksize!r} > 0")
    n_frames = int(n_frames)
    fn = (np.arange(n_frames, dtype=np.int64) + int(first_frame_number) if frame_numbers is None
          else np.asarray(frame_numbers, dtype=np.int64))
    ft = t0 + np.arange(n_frames, dtype=np.float64) / float(fps) if frame_times is None \
        else np.asarray(frame_times, dtype=np.float64)
    if len(fn) != n_frames or len(ft) != n_frames:
        raise ValueError(f"{len(fn)} frame_numbers and {len(ft)} frame_times for n_frames={n_frames}")
    if chunk_lengths is None:
        lengths = [min(int(chunksize), n_frames - s) for s in range(0, n_frames, int(chunksize))]
    else:
        lengths = [int(x) for x in chunk_lengths]
        if any(x < 0 for x in lengths) or sum(lengths) != n_frames:
            raise ValueError(f"chunk_lengths {list(chunk_lengths)!r} must be >= 0 and sum to {n_frames}")

    if os.path.exists(os.path.join(path, ondisk.STORE_MD_FILENAME)):
        if not overwrite:
            raise StoreExistsError(17, f"a store already exists at '{path}'", path)
        remove_store_files(LOCAL, path)
    os.makedirs(path, exist_ok=True)
    smd = ondisk.StoreMetadata.new("DirectoryImgStore", fmt, int(chunksize), tuple(imgshape), "uint8")
    ondisk.write_metadata(os.path.join(path, ondisk.STORE_MD_FILENAME), smd, {"synthetic": True})

    start = 0
    for chunk_n, length in enumerate(lengths):
        chunk_dir = os.path.join(path, ondisk.chunk_name(chunk_n))
        os.makedirs(chunk_dir, exist_ok=True)
        cfn, cft = fn[start:start + length], ft[start:start + length]
        base = os.path.join(chunk_dir, "index")
        if index_format == "npz":
            ondisk.write_chunk_index(base, {"frame_number": cfn, "frame_time": cft}, smd)
        else:
            text = yaml.safe_dump({"frame_number": cfn.tolist(), "frame_time": cft.tolist()})
            LOCAL.write_bytes(base + ".yaml", text.encode())
        count = {"first": min(1, length), "all": length, "none": 0}[frames]
        for pos in range(count):
            img = synthetic_frame(int(cfn[pos]), imgshape)
            _write_frame(os.path.join(chunk_dir, "%06d.%s" % (pos, fmt)), img, fmt)
        start += length
    return path


def _write_frame(path: str, img: np.ndarray, fmt: str) -> None:
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, img, allow_pickle=False)
        data = buf.getvalue()
    else:
        import cv2

        ok, enc = cv2.imencode(".png", img)
        if not ok:  # pragma: no cover - png encodes any uint8 image
            raise UnsupportedFormatError(f"OpenCV could not encode a {img.shape} image as png")
        data = enc.tobytes()
    with open(path, "wb") as f:
        f.write(data)
