"""Benchmark worker: runs timed tasks against whichever ``imgstore`` is importable.

Usage::

    python benchmarks/worker.py '<json job>'      # or a path to a JSON file

The job is ``{"tasks": [task, ...]}``; each task is a dict with ``"id"`` and
``"kind"`` (``info``, ``write``, ``read``, ``index``, ``physical``). For each
task the worker prints one line ``@@START <id>`` when it begins and one line
``@@RESULT <json>`` when it ends, so the runner can keep finished results and
time out a task that hangs. A task that raises is reported as
``{"error": "<Type>: <message>"}``; every sub-measurement of a task is guarded
the same way, so one failing access mode does not hide the others.

The worker runs under our venv *and* under the reference (imgstore 0.4.0)
venv, so it only uses the API both share: ``new_for_format``, ``add_image``,
``close``, ``new_for_filename``, ``get_next_image``, ``get_image``,
``get_nearest_image``, ``get_frame_metadata`` and ``frame_count``. It imports
nothing from our package besides ``imgstore`` itself (and ``av``/``cv2`` only
in the ``physical`` task, which the runner sends to our venv only).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contextlib

import frames

RESULT_MARK = "@@RESULT "
START_MARK = "@@START "
_now = time.perf_counter


# --------------------------------------------------------------------------- helpers

def short_error(exc: BaseException, limit: int = 160) -> str:
    """``Type: message`` on one line, cut to ``limit`` characters."""
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def guarded(fn, *args, **kwargs) -> dict:
    """Run ``fn``; return its dict result, or ``{"error": ...}`` if it raised."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        return {"error": short_error(exc), "traceback": traceback.format_exc(limit=6)[-1500:]}


def dir_bytes(path: str) -> int:
    """Total size of the regular files under ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


def as_list(values) -> list:
    """A plain list from whatever get_frame_metadata returned for one column."""
    if hasattr(values, "tolist"):
        return values.tolist()
    return list(values)


def frame_metadata(store) -> tuple[list, list]:
    """(frame_numbers, frame_times) in store order, via ``get_frame_metadata``."""
    md = store.get_frame_metadata()
    return as_list(md["frame_number"]), as_list(md["frame_time"])


def store_version() -> str:
    import imgstore
    version = getattr(imgstore, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version
            version = dist_version("imgstore")
        except Exception:
            version = "?"
    return str(version)


# --------------------------------------------------------------------------- tasks

def task_info(task: dict) -> dict:
    """Versions of the libraries in this venv and the formats imgstore supports."""
    import platform
    out = {"python": platform.python_version(), "numpy": np.__version__,
           "executable": sys.executable}
    for mod in ("cv2", "av", "pandas"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception as exc:
            out[mod] = f"n/a ({short_error(exc, 60)})"
    try:
        import imgstore
        out["imgstore"] = store_version()
        out["imgstore_path"] = os.path.dirname(getattr(imgstore, "__file__", "") or "")
        try:
            out["formats"] = list(imgstore.get_supported_formats())
        except Exception as exc:
            out["formats_error"] = short_error(exc)
    except Exception as exc:
        out["imgstore_error"] = short_error(exc)
    return out


def open_writer(fmt: str, basedir: str, shape: tuple, chunksize: int, options: dict):
    """``new_for_format`` with optional writer ``options`` (e.g. keyframe_interval, fps).

    A library that does not know an option raises TypeError (an unexpected
    keyword); then the worker retries with each option alone and finally with
    none. Any other exception is a real failure and propagates. Returns
    ``(store, accepted_options, note)``.
    """
    import imgstore
    base = dict(basedir=basedir, imgshape=shape, imgdtype="uint8", chunksize=chunksize)
    attempts = [dict(options)] if options else []
    if len(options) > 1:
        attempts += [{k: v} for k, v in options.items()]
    attempts.append({})
    rejected = []
    for attempt in attempts:
        try:
            store = imgstore.new_for_format(fmt, **base, **attempt)
        except TypeError as exc:
            if not attempt:
                raise
            rejected.append(short_error(exc, 100))
            if os.path.isdir(basedir):
                shutil.rmtree(basedir)
            continue
        unavailable = sorted(set(options) - set(attempt))
        note = f"writer options {unavailable} unavailable ({rejected[0]})" if unavailable else ""
        return store, attempt, note
    raise AssertionError("unreachable")


def task_write(task: dict) -> dict:
    """Write ``n`` synthetic frames; time add_image + close (frame synthesis excluded)."""
    basedir = task["basedir"]
    if os.path.isdir(basedir):
        shutil.rmtree(basedir)
    os.makedirs(os.path.dirname(basedir), exist_ok=True)
    src = frames.FrameSource(task["width"], task["height"], task["color"])
    n = int(task["n"])
    t_open = _now()
    store, accepted, note = open_writer(task["format"], basedir, src.shape, int(task["chunksize"]),
                                        task.get("options") or {})
    spent = _now() - t_open
    deadline = _now() + float(task.get("time_cap", 1e9))
    written = 0
    try:
        for fn in range(n):
            img = src.frame(fn)
            ft = frames.frame_time(fn)
            t0 = _now()
            store.add_image(img, fn, ft)
            spent += _now() - t0
            written += 1
            if _now() > deadline:
                raise TimeoutError(f"write time cap hit after {written} of {n} frames")
    finally:
        t0 = _now()
        try:
            store.close()
        finally:
            spent += _now() - t0
    size = dir_bytes(basedir)
    if not os.path.exists(os.path.join(basedir, "metadata.yaml")) or size == 0:
        raise RuntimeError("writer produced no store")
    return {"frames": written, "seconds": spent, "fps": written / spent if spent else None,
            "bytes_per_frame": size / max(written, 1), "options": accepted, "note": note,
            "basedir": basedir}


def _timed_open(path: str, repeats: int) -> dict:
    """Best-of-``repeats`` time of ``new_for_filename`` (+ close, untimed)."""
    import imgstore
    best = None
    for _ in range(max(1, repeats)):
        t0 = _now()
        store = imgstore.new_for_filename(path)
        dt = _now() - t0
        frame_count = int(store.frame_count)
        store.close()
        best = dt if best is None else min(best, dt)
    return {"seconds": best, "frame_count": frame_count}


def _timed_metadata(path: str) -> dict:
    import imgstore
    store = imgstore.new_for_filename(path)
    try:
        t0 = _now()
        fns, _fts = frame_metadata(store)
        dt = _now() - t0
    finally:
        store.close()
    return {"seconds": dt, "frames": len(fns)}


class Checker:
    """Counts how many returned images carry the expected barcode."""

    def __init__(self, barcode: dict | None):
        barcode = barcode or {}
        self.bits = int(barcode.get("bits", frames.BARCODE_BITS))
        rows = barcode.get("rows")  # [start_fraction, stop_fraction] of the height
        self.rows = rows
        self.checked = self.exact = self.md_mismatch = 0
        self.first_bad: list = []

    def check(self, img, expected: int, returned_md=None) -> None:
        rows = None
        if self.rows is not None and img is not None:
            h = np.asarray(img).shape[0]
            rows = slice(int(self.rows[0] * h), max(int(self.rows[0] * h) + 1, int(self.rows[1] * h)))
        got = frames.decode_barcode(img, self.bits, rows)
        self.checked += 1
        if got == int(expected) % (1 << self.bits):
            self.exact += 1
        elif len(self.first_bad) < 5:
            self.first_bad.append([int(expected), got])
        if returned_md is not None:
            try:
                if int(returned_md[0]) != int(expected):
                    self.md_mismatch += 1
            except Exception:
                self.md_mismatch += 1

    def summary(self) -> dict:
        out = {"checked": self.checked, "exact": self.exact,
               "exact_share": (self.exact / self.checked) if self.checked else None,
               "metadata_mismatch": self.md_mismatch}
        if self.first_bad:
            out["first_wrong"] = self.first_bad  # [expected, decoded] pairs
        return out


def _timed_reads(path: str, reads, barcode: dict, time_cap: float, eof_ends: bool = False) -> dict:
    """Time ``reads(store)``: (expected frame_number, call) pairs, each call returning (img, md).

    Stops at the end of the pairs, past the time cap or (``eof_ends``: sequential reading) at
    EOFError; only the calls are timed, the barcode checks are not.
    """
    import imgstore
    store = imgstore.new_for_filename(path)
    checker = Checker(barcode)
    spent = 0.0
    n = 0
    deadline = _now() + time_cap
    capped = False
    try:
        for expected, call in reads(store):
            t0 = _now()
            try:
                img, md = call()
            except EOFError:
                if not eof_ends:
                    raise
                break
            spent += _now() - t0
            checker.check(img, expected, md)
            n += 1
            if _now() > deadline:
                capped = True
                break
    finally:
        store.close()
    out = {"frames": n, "seconds": spent, "fps": n / spent if spent else None,
           "per_call_ms": 1000 * spent / n if n else None, "capped": capped}
    out.update(checker.summary())
    return out


def _sequential(path: str, expected: list, barcode: dict, time_cap: float) -> dict:
    """Read from the start with get_next_image until EOFError (or the time cap)."""
    def reads(store):
        for i in itertools.count():
            yield (expected[i] if i < len(expected) else -1), store.get_next_image

    return _timed_reads(path, reads, barcode, time_cap, eof_ends=True)


def _random(path: str, mode: str, order: list, fns: list, fts: list, barcode: dict,
            time_cap: float, half_period: float) -> dict:
    """Random access in a fixed order: by frame_number, frame_index or frame_time."""
    if mode not in ("number", "index", "time"):
        raise ValueError(f"unknown random mode {mode!r}")

    def reads(store):
        for idx in order:
            if mode == "number":
                call = functools.partial(store.get_image, fns[idx], exact_only=True)
            elif mode == "index":
                call = functools.partial(store.get_image, None, exact_only=True, frame_index=idx)
            else:
                # a little after the frame's time, well within half a frame period
                call = functools.partial(store.get_nearest_image, fts[idx] + 0.25 * half_period)
            yield fns[idx], call

    return _timed_reads(path, reads, barcode, time_cap)


def random_order(count: int, n: int, seed: int) -> list:
    """``min(n, count)`` distinct frame indices in ``0..count-1``, in a fixed pseudo-random order."""
    rng = np.random.RandomState(seed)
    if n >= count:
        return rng.permutation(count).tolist()
    return rng.choice(count, size=n, replace=False).tolist()


def task_read(task: dict) -> dict:
    """Open time, metadata time, sequential and random read speed with exactness."""
    import imgstore
    path = task["basedir"]
    barcode = task.get("barcode")
    out: dict = {"basedir": path}
    out["open"] = guarded(_timed_open, path, int(task.get("open_repeats", 3)))
    out["metadata"] = guarded(_timed_metadata, path)

    store = imgstore.new_for_filename(path)
    try:
        fns, fts = frame_metadata(store)
    finally:
        store.close()
    if not fns:
        raise RuntimeError("store has no frames")
    diffs = np.diff(np.asarray(fts, dtype=float))
    half_period = float(np.min(np.abs(diffs[diffs != 0]))) / 2 if diffs.size and np.any(diffs) else 0.01

    if task.get("sequential", True):
        out["sequential"] = guarded(_sequential, path, fns, barcode, float(task.get("time_cap", 60)))
    n_random = int(task.get("n_random", 0))
    if n_random:
        order = random_order(len(fns), n_random, int(task.get("seed", 1234)))
        for mode in task.get("random_modes", ("number", "index", "time")):
            out[f"random_{mode}"] = guarded(_random, path, mode, order, fns, fts, barcode,
                                            float(task.get("time_cap", 60)), half_period)
    return out


def task_index(task: dict) -> dict:
    """Large-index store: open, get_frame_metadata, lookups; image read alone for contrast.

    The store's image files exist only for the frames listed in
    ``task["targets"]`` ([frame_index, frame_number, frame_time, image path]).
    One opened store serves the metadata call and all lookups (the reference
    rebuilds its in-memory sqlite index on every open, which is slow).
    """
    import imgstore
    path = task["basedir"]
    targets = task["targets"][: int(task["n_lookups"])]
    out: dict = {"basedir": path, "lookups_requested": len(targets)}
    t0 = _now()
    store = imgstore.new_for_filename(path)
    first = _now() - t0
    out["open_first"] = {"seconds": first, "frame_count": int(store.frame_count)}
    extra_opens = int(task.get("open_repeats", 1)) - 1
    if extra_opens > 0:  # later opens may use whatever the first one left behind (index caches)
        store.close()
        again = _timed_open(path, extra_opens)["seconds"]
        store = imgstore.new_for_filename(path)
        out["open"] = {"seconds": min(first, again), "frame_count": int(store.frame_count)}
    else:
        out["open"] = dict(out["open_first"])
    try:
        def metadata() -> dict:
            t0 = _now()
            fns, _fts = frame_metadata(store)
            return {"seconds": _now() - t0, "frames": len(fns)}

        out["metadata"] = guarded(metadata)

        def lookups(mode: str) -> dict:
            checker = Checker(None)
            spent = 0.0
            n = 0
            deadline = _now() + float(task.get("time_cap", 60))
            for idx, fn, ft, _img_path in targets:
                t0 = _now()
                if mode == "number":
                    img, md = store.get_image(fn, exact_only=True)
                elif mode == "index":
                    img, md = store.get_image(None, exact_only=True, frame_index=idx)
                else:
                    img, md = store.get_nearest_image(ft + 0.01)
                spent += _now() - t0
                checker.check(img, fn, md)
                n += 1
                if _now() > deadline:
                    break
            res = {"lookups": n, "seconds": spent, "per_call_ms": 1000 * spent / n if n else None}
            res.update(checker.summary())
            return res

        for mode in ("number", "index", "time"):
            out[f"lookup_{mode}"] = guarded(lookups, mode)
    finally:
        store.close()

    def image_alone() -> dict:
        for _idx, _fn, _ft, img_path in targets[:5]:  # warm
            np.load(img_path)
        t0 = _now()
        for _idx, _fn, _ft, img_path in targets:
            np.load(img_path)
        dt = _now() - t0
        return {"per_call_ms": 1000 * dt / len(targets), "reads": len(targets)}

    out["image_read_alone"] = guarded(image_alone)
    return out


def task_physical(task: dict) -> dict:
    """Floors on this machine: PyAV decode, np.load, cv2.imread, a memory copy."""
    out: dict = {}
    for name, spec in (task.get("videos") or {}).items():
        out[f"pyav_seq_{name}"] = guarded(_pyav_sequential, spec["path"], spec.get("gray", False),
                                          float(task.get("time_cap", 30)))
        if spec.get("random"):
            out[f"pyav_random_{name}"] = guarded(_pyav_random, spec["path"], spec.get("gray", False),
                                                 int(task.get("n_random", 50)), int(task.get("seed", 1234)),
                                                 float(task.get("time_cap", 30)))
    for name, path in (task.get("npy") or {}).items():
        out[f"np_load_{name}"] = guarded(_repeat, lambda p=path: np.load(p), float(task.get("rep_time", 1.0)))
    for name, spec in (task.get("images") or {}).items():
        out[f"cv2_imread_{name}"] = guarded(_cv2_imread, spec["path"], spec.get("color", False),
                                            float(task.get("rep_time", 1.0)))
    for name, spec in (task.get("copies") or {}).items():
        shape = tuple(spec["shape"])
        src = np.random.RandomState(0).randint(0, 255, size=shape, dtype=np.uint8)
        dst = np.empty_like(src)
        out[f"memcopy_{name}"] = guarded(_repeat, lambda dst=dst, src=src: np.copyto(dst, src),
                                         float(task.get("rep_time", 1.0)))
    return out


def _repeat(fn, min_time: float) -> dict:
    """Call ``fn`` repeatedly for about ``min_time`` seconds; calls per second."""
    fn()  # warm
    n = 0
    t0 = _now()
    while True:
        fn()
        n += 1
        dt = _now() - t0
        if dt >= min_time and n >= 5:
            break
    return {"fps": n / dt, "per_call_ms": 1000 * dt / n, "calls": n}


def _cv2_imread(path: str, color: bool, min_time: float) -> dict:
    import cv2
    flags = cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE
    return _repeat(lambda: cv2.imread(path, flags), min_time)


def _frame_array(frame, gray: bool) -> np.ndarray:
    """The cheapest numpy image of a decoded frame: the luma plane for grey, bgr24 for colour."""
    if gray and frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuv444p", "gray", "nv12"):
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
        return rows[:, :frame.width].copy()
    return frame.to_ndarray(format="gray" if gray else "bgr24")


def _pyav_sequential(path: str, gray: bool, time_cap: float) -> dict:
    """Decode a whole video file with PyAV (threaded), with and without making numpy arrays."""
    import av
    out = {}
    for label, to_array in (("decode_only", False), ("decode_to_ndarray", True)):
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            n = 0
            t0 = _now()
            for frame in container.decode(stream):
                if to_array:
                    _frame_array(frame, gray)
                n += 1
                if _now() - t0 > time_cap:
                    break
            dt = _now() - t0
        out[label] = {"frames": n, "fps": n / dt if dt else None}
    out["fps"] = out["decode_to_ndarray"]["fps"]
    return out


def _pyav_random(path: str, gray: bool, n: int, seed: int, time_cap: float) -> dict:
    """Seek to the keyframe before a random frame and decode up to it (PyAV, no imgstore)."""
    import av
    with av.open(path) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
    order = random_order(len(pts), n, seed)
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        done = 0
        decoded = 0
        t0 = _now()
        for idx in order:
            target = pts[idx]
            container.seek(target, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                decoded += 1
                if frame.pts is not None and frame.pts >= target:
                    _frame_array(frame, gray)
                    break
            done += 1
            if _now() - t0 > time_cap:
                break
        dt = _now() - t0
    return {"frames": done, "fps": done / dt if dt else None,
            "decoded_per_access": decoded / done if done else None}


def task_selftest(task: dict) -> dict:
    """Harness self-test: sleep (to exercise timeouts) or die abruptly (to exercise crash handling)."""
    if task.get("crash"):
        os._exit(3)
    time.sleep(float(task.get("sleep", 0)))
    return {"slept": float(task.get("sleep", 0))}


TASKS = {"info": task_info, "write": task_write, "read": task_read,
         "index": task_index, "physical": task_physical, "selftest": task_selftest}


def run_job(job: dict) -> None:
    """Run every task of ``job``, printing START/RESULT lines as it goes."""
    for task in job["tasks"]:
        print(START_MARK + str(task["id"]), flush=True)
        t0 = _now()
        fn = TASKS.get(task.get("kind"))
        result = guarded(fn, task) if fn else {"error": f"unknown task kind {task.get('kind')!r}"}
        result["wall_seconds"] = _now() - t0
        print(RESULT_MARK + json.dumps({"id": task["id"], "result": result}, default=_json_default),
              flush=True)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    arg = argv[1]
    if arg.lstrip().startswith("{"):
        job = json.loads(arg)
    else:
        with open(arg) as f:
            job = json.load(f)
    run_job(job)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
