"""One timed read workload through one library, in its own process: ``python peer_worker.py TASK_JSON``.

Run by ``peers.py`` under our venv (``ours``, ``ours-loop``) or the peers' venv
(``torchcodec``, ``decord``, ``pyav``, ``opencv``). Prints one line ``@@RESULT {json}``:
frames/s, frames done, the share of exact frames (barcode = requested frame_index; the
stores' frame_number equals their frame_index) and the peak RSS of the process.
The timed part includes opening the files (not importing the library); barcode checks come after it.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from frames import decode_barcode

Files = list[tuple[str, int]]


def _locate(files: Files, index: int) -> tuple[int, int]:
    for k, (_, n) in enumerate(files):
        if index < n:
            return k, index
        index -= n
    raise IndexError(index)


def _grouped(files: Files, indices: list[int]) -> Iterator[tuple[int, list[int], list[int]]]:
    """(file, local indices, rows) per file, in the order the rows come (a peer's batch call per file)."""
    per: dict[int, tuple[list[int], list[int]]] = {}
    for row, i in enumerate(indices):
        k, local = _locate(files, i)
        per.setdefault(k, ([], []))[0].append(local)
        per[k][1].append(row)
    for k in sorted(per):
        yield k, per[k][0], per[k][1]


# ------------------------------------------------------------------------------ libraries


def ours(task: dict) -> Callable[[list[int]], list[np.ndarray]]:
    import imgstore

    store = imgstore.new_for_filename(task["store"])
    if task["workload"].startswith("batch") and task["lib"] == "ours":
        return lambda idx: list(store.get_frames(idx).images)
    return lambda idx: [store.get_image(None, frame_index=i)[0] for i in idx]


def torchcodec(task: dict) -> Callable[[list[int]], list[np.ndarray]]:
    from torchcodec.decoders import VideoDecoder

    decoders: dict[int, VideoDecoder] = {}

    def dec(k: int) -> VideoDecoder:
        if k not in decoders:
            decoders[k] = VideoDecoder(task["files"][k][0], seek_mode="exact", dimension_order="NHWC")
        return decoders[k]

    def read(idx: list[int]) -> list[np.ndarray]:
        out: list = [None] * len(idx)
        if task["workload"].startswith("batch"):
            for k, local, rows in _grouped(task["files"], idx):
                data = dec(k).get_frames_at(local).data.numpy()
                for j, row in enumerate(rows):
                    out[row] = data[j]
            return out
        for row, i in enumerate(idx):
            k, local = _locate(task["files"], i)
            out[row] = dec(k).get_frame_at(local).data.numpy()
        return out

    return read


def decord(task: dict) -> Callable[[list[int]], list[np.ndarray]]:
    import decord as dc

    readers: dict[int, dc.VideoReader] = {}

    def vr(k: int) -> dc.VideoReader:
        if k not in readers:
            readers[k] = dc.VideoReader(task["files"][k][0], ctx=dc.cpu(0))
        return readers[k]

    def read(idx: list[int]) -> list[np.ndarray]:
        out: list = [None] * len(idx)
        if task["workload"].startswith("batch"):
            for k, local, rows in _grouped(task["files"], idx):
                data = vr(k).get_batch(local).asnumpy()
                for j, row in enumerate(rows):
                    out[row] = data[j]
            return out
        for row, i in enumerate(idx):
            k, local = _locate(task["files"], i)
            out[row] = vr(k)[local].asnumpy()
        return out

    return read


def pyav(task: dict) -> Callable[[list[int]], list[np.ndarray]]:
    """Naive PyAV: the next frame from the running decoder, else seek to the keyframe before
    it and decode up to it (no caching, no frame table beyond the pts list)."""
    import av

    fmt = "bgr24" if task["color"] else "gray"
    files: dict[int, dict] = {}

    def open_(k: int) -> dict:
        if k not in files:
            c = av.open(task["files"][k][0])
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            pts = sorted(p.pts for p in c.demux(s) if p.pts is not None)
            files[k] = {"c": c, "s": s, "pts": pts, "frames": None, "next": None}
        return files[k]

    def one(f: dict, local: int) -> np.ndarray:
        target = f["pts"][local]
        if f["next"] != local:
            f["c"].seek(target, stream=f["s"], backward=True, any_frame=False)
            f["frames"] = f["c"].decode(f["s"])
        f["next"] = None
        for frame in f["frames"]:
            if frame.pts == target:
                f["next"] = local + 1
                return frame.to_ndarray(format=fmt)
            if frame.pts > target:
                break
        return np.zeros((8, 8), np.uint8)  # not found: counted as not exact

    def read(idx: list[int]) -> list[np.ndarray]:
        out = []
        for i in idx:
            k, local = _locate(task["files"], i)
            out.append(one(open_(k), local))
        return out

    return read


def opencv(task: dict) -> Callable[[list[int]], list[np.ndarray]]:
    import cv2

    caps: dict[int, cv2.VideoCapture] = {}

    def read(idx: list[int]) -> list[np.ndarray]:
        out = []
        for i in idx:
            k, local = _locate(task["files"], i)
            if k not in caps:
                caps[k] = cv2.VideoCapture(task["files"][k][0])
            cap = caps[k]
            if int(cap.get(cv2.CAP_PROP_POS_FRAMES)) != local:
                cap.set(cv2.CAP_PROP_POS_FRAMES, local)
            ok, img = cap.read()
            out.append(img if ok else np.zeros((8, 8), np.uint8))
        return out

    return read


# ours: the video layer too (PyAV, imported on the first video store's open), as the peers'
# imports load their FFmpeg
IMPORTS = {"ours": "imgstore.backends.pyav", "ours-loop": "imgstore.backends.pyav",
           "torchcodec": "torchcodec.decoders", "decord": "decord",
           "pyav": "av", "opencv": "cv2"}
LIBS = {"ours": ours, "ours-loop": ours, "torchcodec": torchcodec, "decord": decord, "pyav": pyav, "opencv": opencv}


def run(task: dict) -> dict:
    indices = [int(i) for i in task["indices"]]
    cap = float(task.get("cap_s", 10.0))
    # the library's import (torch: seconds) is not timed; opening the files is
    importlib.import_module(IMPORTS[task["lib"]])
    t0 = time.perf_counter()
    read = LIBS[task["lib"]](task)
    done: list[int] = []
    frames: list[np.ndarray] = []
    if task["workload"].startswith("batch"):
        frames = read(indices)
        done = indices
    else:
        # one frame per call (random, sequential, scrub-back), stopping at the time cap
        for i in indices:
            frames.extend(read([i]))
            done.append(i)
            if time.perf_counter() - t0 > cap:
                break
    seconds = time.perf_counter() - t0
    exact = sum(decode_barcode(np.asarray(f)) == i for f, i in zip(frames, done, strict=True))
    return {"fps": len(done) / seconds, "n": len(done), "seconds": seconds,
            "exact": exact / max(1, len(done)),
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    try:
        result = run(spec)
    except Exception as exc:  # a peer that fails becomes an error cell, not a crash of the run
        result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    print("@@RESULT " + json.dumps(result), flush=True)
