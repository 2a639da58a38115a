"""Stores built by the harness itself, in the on-disk layout of imgstore 0.4.0.

Used when neither library can write what a benchmark needs:

* :func:`make_index_store`: a DirectoryImgStore ('npy') with millions of frames
  of metadata (``index.npz`` per chunk) but image files for only a few frames
  per chunk, to time the frame index without writing millions of files;
* :func:`make_video_store`: a VideoImgStore of H.264 chunks encoded with PyAV
  directly, e.g. with a keyframe every 25 frames;
* :func:`probe_video`: codec, pixel format and keyframe spacing of a chunk.

Runs in our venv only (needs PyAV for video); never imports imgstore.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import uuid

import frames
import numpy as np
import yaml

MARKER = ".bench-layout.json"


def _store_metadata(cls: str, fmt: str, shape: tuple, chunksize: int, extension: str | None) -> dict:
    smd = {
        "class": cls,
        "format": fmt,
        "chunksize": int(chunksize),
        "imgshape": [int(x) for x in shape],
        "imgdtype": "uint8",
        "encoding": None,
        "version": 2,
        "uuid": uuid.uuid4().hex,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat(),
        "timezone_local": "Etc/UTC",
    }
    if extension:
        smd["extension"] = extension
    return {"__store": smd}


def _reuse(basedir: str, params: dict) -> dict | None:
    """The saved result of an identical earlier build, if ``basedir`` holds one."""
    try:
        with open(os.path.join(basedir, MARKER)) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    return saved.get("result") if saved.get("params") == params else None


def _fresh(basedir: str) -> None:
    if os.path.isdir(basedir):
        shutil.rmtree(basedir)
    os.makedirs(basedir)


def _save_marker(basedir: str, params: dict, result: dict) -> None:
    with open(os.path.join(basedir, MARKER), "w") as f:
        json.dump({"params": params, "result": result}, f)


def index_frame_number(i: int) -> int:
    """Frame number of the i-th frame of the large-index store (one gap every 1000 frames)."""
    return i + i // 1000


def make_index_store(basedir: str, n_frames: int, chunksize: int = 10000, images_per_chunk: int = 10,
                     shape: tuple = (8, 160), seed: int = 4321) -> dict:
    """A metadata-heavy 'npy' DirectoryImgStore; returns lookup targets.

    Every chunk directory gets ``index.npz`` (int64 frame_number, float64
    frame_time) for ``chunksize`` frames but ``.npy`` image files for only
    ``images_per_chunk`` random frames of it. The returned ``targets`` list
    ([frame_index, frame_number, frame_time, image path], shuffled) names the
    frames that can be read. Reuses an identical earlier build.
    """
    params = {"kind": "index", "n_frames": n_frames, "chunksize": chunksize,
              "images_per_chunk": images_per_chunk, "shape": list(shape), "seed": seed, "v": frames.FRAMES_VERSION}
    saved = _reuse(basedir, params)
    if saved is not None:
        return saved
    _fresh(basedir)
    with open(os.path.join(basedir, "metadata.yaml"), "w") as f:
        yaml.safe_dump(_store_metadata("DirectoryImgStore", "npy", shape, chunksize, None), f)
    src = frames.FrameSource(shape[1], shape[0], False)
    rng = np.random.RandomState(seed)
    targets = []
    n_chunks = (n_frames + chunksize - 1) // chunksize
    for chunk in range(n_chunks):
        first = chunk * chunksize
        idx = np.arange(first, min(first + chunksize, n_frames), dtype=np.int64)
        fns = idx + idx // 1000
        fts = frames.frame_time(fns)  # vectorised: the same float64 arithmetic per element
        cdir = os.path.join(basedir, f"{chunk:06d}")
        os.mkdir(cdir)
        np.savez(os.path.join(cdir, "index.npz"), frame_number=fns, frame_time=fts)
        for k in sorted(rng.choice(len(idx), size=min(images_per_chunk, len(idx)), replace=False)):
            path = os.path.join(cdir, f"{k:06d}.npy")
            np.save(path, src.frame(int(fns[k])))
            targets.append([int(idx[k]), int(fns[k]), float(fts[k]), path])
    order = rng.permutation(len(targets))
    result = {"targets": [targets[i] for i in order], "n_frames": n_frames, "chunks": n_chunks,
              "image_files": len(targets)}
    _save_marker(basedir, params, result)
    return result


def make_video_store(basedir: str, fmt: str, width: int, height: int, color: bool, n: int,
                     chunksize: int, gop: int | None) -> dict:
    """An H.264 VideoImgStore encoded with PyAV (libx264, yuv420p, 25 fps).

    ``fmt`` is 'h264/mkv' or 'avc1/mp4'; ``gop`` the keyframe interval (None:
    x264's default of 250). Frames are :class:`frames.FrameSource` frames
    0..n-1 with :func:`frames.frame_time` times. Reuses an identical build.
    """
    import av

    params = {"kind": "video", "fmt": fmt, "w": width, "h": height, "color": color, "n": n,
              "chunksize": chunksize, "gop": gop, "v": frames.FRAMES_VERSION}
    saved = _reuse(basedir, params)
    if saved is not None:
        return saved
    _fresh(basedir)
    ext = "." + fmt.split("/")[1]
    src = frames.FrameSource(width, height, color)
    with open(os.path.join(basedir, "metadata.yaml"), "w") as f:
        yaml.safe_dump(_store_metadata("VideoImgStore", fmt, src.shape, chunksize, ext), f)
    for chunk, first in enumerate(range(0, n, chunksize)):
        fns = np.arange(first, min(first + chunksize, n), dtype=np.int64)
        with av.open(os.path.join(basedir, f"{chunk:06d}{ext}"), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            if gop:
                stream.codec_context.gop_size = gop
                stream.options = {"x264-params": f"keyint={gop}:min-keyint={min(gop, 25)}"}
            for fn in fns:
                img = src.frame(int(fn))
                frame = av.VideoFrame.from_ndarray(img, format="bgr24" if color else "gray")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        np.savez(os.path.join(basedir, f"{chunk:06d}.npz"), frame_number=fns,
                 frame_time=np.array([frames.frame_time(int(x)) for x in fns], dtype=np.float64))
    result = {"basedir": basedir, "probe": probe_video(os.path.join(basedir, "000000" + ext))}
    _save_marker(basedir, params, result)
    return result


def first_chunk_video(basedir: str) -> str | None:
    """Path of the first video chunk file of a store (None if there is none)."""
    names = sorted(n for n in os.listdir(basedir)
                   if os.path.splitext(n)[1] in (".mkv", ".mp4", ".avi", ".mov"))
    return os.path.join(basedir, names[0]) if names else None


def probe_video(path: str) -> dict:
    """Codec, pixel format, frame count and keyframe spacing of one video file."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        keys = []
        count = 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.is_keyframe:
                keys.append(count)
            count += 1
        spacing = np.diff(keys) if len(keys) > 1 else np.array([count])
        return {"codec": ctx.name, "pix_fmt": ctx.format.name if ctx.format else None,
                "width": ctx.width, "height": ctx.height, "frames": count, "keyframes": len(keys),
                "keyframe_interval": int(spacing.max()) if spacing.size else None,
                "b_frames": bool(getattr(ctx, "has_b_frames", False))}
