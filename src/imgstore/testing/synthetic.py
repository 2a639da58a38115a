"""Synthetic stores for tests and benchmarks, written straight in the on-disk format.

:func:`make_synthetic_store` writes a directory store (``metadata.yaml``, one folder per chunk
with its ``index.npz``) for any number of frames in seconds: by default only the first frame
of each chunk gets an image file, so an 18-million-frame week-long store takes a few hundred MB
of indexes and no frame data. Such a store opens, answers every lookup by number, index and
time, and reads the frames that exist (the first of each chunk), in this imgstore and in the
reference imgstore 0.4.

The *direct writers* :func:`write_directory_store` and :func:`write_video_store` write a store
of given images without any of imgstore's writing code (no ``ImgStore``, no ``ondisk`` helper,
no ``VideoChunkWriter``): ``metadata.yaml`` with PyYAML, the frames with OpenCV / numpy or
straight with PyAV, each chunk's ``.npz`` index with numpy and its extra data with ``json``,
as imgstore 0.4 lays them out. The conformance suite reads such stores to test reading
independently of writing. :func:`write_video_chunk` encodes one video file (e.g. for
``insert_chunk``).
"""

from __future__ import annotations

import datetime
import io
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import yaml

from .. import ondisk
from ..backends.writing import remove_store_files
from ..errors import StoreExistsError, UnsupportedFormatError
from ..storage import LOCAL

__all__ = ["DIRECTORY_FORMATS", "VIDEO_ENCODINGS", "begin_store", "chunk_rows", "make_synthetic_store",
           "new_store_mapping", "synthetic_frame", "video_padded_size", "write_chunk_tables",
           "write_directory_store", "write_video_chunk", "write_video_store"]

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
            _write_frame(os.path.join(chunk_dir, f"{pos:06d}.{fmt}"), img, fmt)
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


# ============================================================================ direct writers

#: formats :func:`write_directory_store` writes (``<fmt>+color`` is written as ``<fmt>``)
DIRECTORY_FORMATS = ("npy", "png", "jpg", "bmp", "tif", "pgm", "ppm")


class VideoEncoding:
    """How :func:`write_video_chunk` encodes one format: plain PyAV settings, high quality."""

    def __init__(self, muxer: str, extension: str, grey: tuple[str, str], colour: tuple[str, str],
                 options: Mapping[str, str], lossless: bool) -> None:
        self.muxer = muxer
        self.extension = extension
        self.grey = grey
        self.colour = colour
        self.options = dict(options)
        self.lossless = lossless


_X264 = {"preset": "ultrafast", "crf": "12"}
#: imgstore video format -> how the direct writer encodes it (its own choices, not the writer's)
VIDEO_ENCODINGS: dict[str, VideoEncoding] = {
    "mjpeg/avi": VideoEncoding("avi", ".avi", ("mjpeg", "yuvj420p"), ("mjpeg", "yuvj420p"),
                               {"qmin": "2", "qmax": "2"}, lossless=False),
    "h264/mkv": VideoEncoding("matroska", ".mkv", ("libx264", "gray"), ("libx264", "yuv420p"), _X264,
                              lossless=False),
    "avc1/mp4": VideoEncoding("mp4", ".mp4", ("libx264", "gray"), ("libx264", "yuv420p"), _X264, lossless=False),
    "ffv1/mkv": VideoEncoding("matroska", ".mkv", ("ffv1", "gray"), ("ffv1", "bgr0"), {}, lossless=True),
    "hevc/mp4": VideoEncoding("mp4", ".mp4", ("libx265", "gray"), ("libx265", "yuv420p"),
                              {"preset": "ultrafast", "crf": "8", "x265-params": "log-level=error:ctu=16"},
                              lossless=False),
    "h264-lossless/mkv": VideoEncoding("matroska", ".mkv", ("libx264", "gray"), ("libx264rgb", "bgr24"),
                                       {"preset": "ultrafast", "qp": "0"}, lossless=True),
}
VIDEO_ENCODINGS["mjpeg"] = VIDEO_ENCODINGS["mjpeg/avi"]
_SUBSAMPLED = {"yuv420p", "yuvj420p"}
_PADDING_CODECS = {"libx264", "libx265"}


def new_store_mapping(class_name: str, fmt: str, chunksize: int, imgshape: Sequence[int], dtype: str,
                      **more: Any) -> dict[str, Any]:
    """The ``__store`` mapping of a new store, as imgstore 0.4 writes it (``more``: other keys)."""
    created = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    out = {"class": class_name, "format": fmt, "chunksize": int(chunksize), "imgshape": [int(x) for x in imgshape],
           "imgdtype": str(np.dtype(dtype)), "encoding": None, "version": 2, "uuid": uuid.uuid4().hex,
           "created_utc": created.isoformat(), "timezone_local": "UTC"}
    out.update(more)
    return out


def begin_store(path: str, store_md: Mapping[str, Any], metadata: Mapping[str, Any] | None) -> None:
    """Create the folder of a new store and its ``metadata.yaml`` (refusing an existing store)."""
    if os.path.exists(os.path.join(path, "metadata.yaml")):
        raise StoreExistsError(17, f"a store already exists at '{path}'", path)
    os.makedirs(path, exist_ok=True)
    doc = {**dict(metadata or {}), "__store": dict(store_md)}
    with open(os.path.join(path, "metadata.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f)


def chunk_rows(n_frames: int, chunksize: int) -> list[range]:
    """The frame indexes of each chunk of a store of ``n_frames`` frames."""
    if int(chunksize) <= 0:
        raise ValueError(f"chunksize {chunksize!r} must be positive")
    return [range(s, min(s + int(chunksize), n_frames)) for s in range(0, n_frames, int(chunksize))]


def _check_lengths(n_images: int, frame_numbers: Sequence[int], frame_times: Sequence[float]) -> None:
    if not (len(frame_numbers) == len(frame_times) == n_images) or not n_images:
        raise ValueError(f"{n_images} images, {len(frame_numbers)} frame_numbers and {len(frame_times)} "
                         f"frame_times: one each, at least one")


def write_chunk_tables(base: str, rows: range, frame_numbers: Sequence[int], frame_times: Sequence[float],
                       extra_data: Mapping[int, Mapping[str, Any]] | None = None) -> None:
    """``<base>.npz`` (frame_number, frame_time of frames ``rows``) and, when some of them have
    extra data (``{frame_index: record}``), ``<base>.extra.json``."""
    np.savez(base + ".npz", frame_number=np.asarray([frame_numbers[i] for i in rows], dtype=np.int64),
             frame_time=np.asarray([frame_times[i] for i in rows], dtype=np.float64))
    records = [{**dict(extra_data[i]), "frame_number": int(frame_numbers[i]), "frame_time": float(frame_times[i]),
                "frame_index": i} for i in rows if extra_data and i in extra_data]
    if records:
        with open(base + ".extra.json", "w", encoding="utf-8") as f:
            json.dump(records, f)


def _encode_image_file(img: np.ndarray, fmt: str, quality: int = 98) -> bytes:
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(img), allow_pickle=False)
        return buf.getvalue()
    import cv2

    params = [int(cv2.IMWRITE_JPEG_QUALITY), quality] if fmt == "jpg" else []
    ok, data = cv2.imencode("." + fmt, img, params)
    if not ok:
        raise UnsupportedFormatError(f"OpenCV could not encode a {img.dtype} {img.shape} image as {fmt}")
    return data.tobytes()


def write_directory_store(
    path: str | os.PathLike,
    fmt: str,
    images: Sequence[np.ndarray],
    frame_numbers: Sequence[int],
    frame_times: Sequence[float],
    chunksize: int,
    *,
    metadata: Mapping[str, Any] | None = None,
    extra_data: Mapping[int, Mapping[str, Any]] | None = None,
) -> str:
    """Write a directory store of ``images`` without imgstore's writer.

    Parameters
    ----------
    path
        The store's folder (must not hold a store).
    fmt
        One of :data:`DIRECTORY_FORMATS` (``'<fmt>+color'`` is written as ``fmt``).
    images
        One image per frame, all of one shape and dtype (colour: BGR).
    frame_numbers, frame_times
        One per image.
    chunksize
        Frames per chunk.
    metadata
        User metadata.
    extra_data
        ``{frame_index: record}``: extra data attached to those frames.

    Returns
    -------
    str
        ``path``.
    """
    path = os.fspath(path)
    fmt = fmt.replace("+color", "")
    if fmt not in DIRECTORY_FORMATS:
        raise UnsupportedFormatError(f"direct directory stores are written as {list(DIRECTORY_FORMATS)}, not {fmt!r}")
    _check_lengths(len(images), frame_numbers, frame_times)
    first = np.asarray(images[0])
    begin_store(path, new_store_mapping("DirectoryImgStore", fmt, chunksize, first.shape, first.dtype.name), metadata)
    for chunk_n, rows in enumerate(chunk_rows(len(images), chunksize)):
        folder = os.path.join(path, f"{chunk_n:06d}")
        os.makedirs(folder)
        for position, i in enumerate(rows):
            with open(os.path.join(folder, f"{position:06d}.{fmt}"), "wb") as f:
                f.write(_encode_image_file(np.asarray(images[i]), fmt))
        write_chunk_tables(os.path.join(folder, "index"), rows, frame_numbers, frame_times, extra_data)
    return path


def _video_encoding(fmt: str) -> VideoEncoding:
    try:
        return VIDEO_ENCODINGS[fmt]
    except KeyError:
        raise UnsupportedFormatError(f"direct video stores are written as {sorted(VIDEO_ENCODINGS)}, "
                                     f"not {fmt!r}") from None


def video_padded_size(fmt: str, height: int, width: int, color: bool) -> tuple[int, int]:
    """The picture size :func:`write_video_chunk` stores for frames of ``height`` x ``width``."""
    codec, pix_fmt = _video_encoding(fmt).colour if color else _video_encoding(fmt).grey
    if codec in _PADDING_CODECS and pix_fmt in _SUBSAMPLED:
        return height + height % 2, width + width % 2
    return height, width


def write_video_chunk(path: str | os.PathLike, fmt: str, images: Sequence[np.ndarray], fps: float = 25.0) -> None:
    """Encode ``images`` (uint8, grey or BGR) into one video file with PyAV alone.

    Timestamps count frames at ``fps``. Odd sizes are padded (last row / column repeated)
    where the codec needs whole chroma samples (:func:`video_padded_size`).
    """
    import av

    enc = _video_encoding(fmt)
    first = np.asarray(images[0])
    color = first.ndim == 3 and first.shape[2] == 3
    codec, pix_fmt = enc.colour if color else enc.grey
    height, width = first.shape[:2]
    coded_h, coded_w = video_padded_size(fmt, height, width, color)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(os.fspath(path), mode="w", format=enc.muxer) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = coded_w, coded_h, pix_fmt
        stream.codec_context.time_base = 1 / rate
        stream.codec_context.options = dict(enc.options)
        if not color:
            stream.codec_context.color_range = 2  # full range: grey values stay as they are
        for i, img in enumerate(images):
            img = np.asarray(img)
            if img.dtype != np.uint8 or img.shape != first.shape:
                raise UnsupportedFormatError(f"frame {i}: {img.dtype} {img.shape}, expected uint8 {first.shape}")
            if (coded_h, coded_w) != (height, width):
                pad = ((0, coded_h - height), (0, coded_w - width)) + ((0, 0),) * (img.ndim - 2)
                img = np.pad(img, pad, mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24" if color else "gray")
            frame.pts = i
            frame.time_base = 1 / rate
            if not color:
                frame.color_range = 2
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_video_store(
    path: str | os.PathLike,
    fmt: str,
    images: Sequence[np.ndarray],
    frame_numbers: Sequence[int],
    frame_times: Sequence[float],
    chunksize: int,
    *,
    metadata: Mapping[str, Any] | None = None,
    extra_data: Mapping[int, Mapping[str, Any]] | None = None,
    fps: float = 25.0,
) -> str:
    """Write a video store of ``images`` (uint8) without imgstore's writer: PyAV straight.

    Each chunk is one file encoded by :func:`write_video_chunk` beside an ``.npz`` index
    holding only ``frame_number`` and ``frame_time`` (as imgstore 0.4 wrote them: readers
    demux the file for its frame table). Parameters as :func:`write_directory_store`.
    """
    path = os.fspath(path)
    enc = _video_encoding(fmt)
    fmt = "mjpeg/avi" if fmt == "mjpeg" else fmt
    _check_lengths(len(images), frame_numbers, frame_times)
    first = np.asarray(images[0])
    color = first.ndim == 3 and first.shape[2] == 3
    more: dict[str, Any] = {"extension": enc.extension}
    if video_padded_size(fmt, first.shape[0], first.shape[1], color) != first.shape[:2]:
        more["odd_size_padded"] = True  # the file holds a padded picture that readers crop
    begin_store(path, new_store_mapping("VideoImgStore", fmt, chunksize, first.shape, "uint8", **more), metadata)
    for chunk_n, rows in enumerate(chunk_rows(len(images), chunksize)):
        base = os.path.join(path, f"{chunk_n:06d}")
        write_video_chunk(base + enc.extension, fmt, [images[i] for i in rows], fps=fps)
        write_chunk_tables(base, rows, frame_numbers, frame_times, extra_data)
    return path
