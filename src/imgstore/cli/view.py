"""``imgstore-view STORE [STORE...]``: browse stores in a web browser, also on machines without a display.

A small HTTP server (standard library only) on 127.0.0.1 serves one page and encodes
frames on demand. On a remote machine, forward the port over SSH
(``ssh -L 8000:127.0.0.1:8000 host imgstore-view STORE --port 8000 --no-browser``) and
open the printed URL locally.

Several stores are shown side by side, in step by frame_time (:class:`imgstore.align.MultiStore`,
a store without a frame at a step shows its previous one). The page's position is then a
*step*; with one store a step is a frame_index. A store that a writer is recording is
followed: new frames appear as they are written.

Endpoints (all GET unless noted):

``/``                         the viewer page
``/info``                     the first store's summary of ``imgstore-info --json`` plus ``playback_fps``,
                              ``frame_count`` (steps), ``live`` and ``stores`` (every store's summary)
``/status``                   ``steps``, ``live``, ``frame_counts``, ``version`` (cheap; the page polls it)
``/frame?index=N&store=K``    store K's frame at step N as JPEG or PNG; its metadata in ``X-Frame-*`` headers
``/meta?index=N``             the same metadata as JSON (``stores``: every store's)
``/events``                   timeline marks: frame-number gaps and pauses, by step
``/extra?index=N``            each store's extra data at step N and around it
``/lookup?q=TEXT``            the step for a frame number, a time or seconds since the start
``POST /quit``                stop the server (the command then exits with status 0)
"""

from __future__ import annotations

import argparse
import datetime
import errno
import http.server
import logging
import math
import os
import re
import sys
import threading
import time
import urllib.parse
import webbrowser
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import (
    ArgumentParser,
    CLIError,
    UsageError,
    format_local,
    parse_time,
    port_number,
    positive_float,
    recording_timezone,
    run_command,
    to_json,
    to_uint8,
)

__all__ = ["Viewer", "main", "make_server", "timeline_events"]

PROG = "imgstore-view"
#: how often a live store is checked for new frames (seconds)
REFRESH_INTERVAL = 0.5
#: extra data of a live store is re-read at most this often (seconds): it is a full read
EXTRA_REFRESH_INTERVAL = 2.0
#: timeline marks sent to the page at most (the most severe ones when there are more)
MAX_EVENTS = 4000
#: points of an extra-data plot at most
MAX_PLOT_POINTS = 300

EPILOG = """\
examples:
  imgstore-view /data/mouse1                      opens the browser on a free port
  imgstore-view /data/top /data/side              two cameras side by side, in step by frame_time
  imgstore-view /data/mouse1 --port 8000 --no-browser --fps 60
  ssh -L 8000:127.0.0.1:8000 rig1 imgstore-view /data/mouse1 --port 8000 --no-browser
                                                  (then open http://127.0.0.1:8000/ here)

In the page (? shows all keys): Space play/pause, arrows step (Shift: 10 frames), PgUp/PgDn
one second, Home/End (End also follows a live recording), n/p next/previous dropped frames or
pause, -/+ playback speed, f fits the frame to the window, the slider scrubs, the box jumps to
a frame number (1234), seconds since the start (12.5s), seconds since the epoch
(1700000000.5), a date-time (2024-05-01 12:00:05, in the store's time zone unless an offset is
given) or a time of day (12:00:05). Esc or q in the page (or Ctrl-C here) stops the viewer.
"""

_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")
_RELATIVE = re.compile(r"^\+?(\d+(\.\d*)?|\.\d+)\s*s$")
_RESERVED_EXTRA = ("frame_number", "frame_time", "frame_index")
#: timeline event kinds (the page colours them)
GAP, PAUSE = 0, 1


def timeline_events(frame_numbers: np.ndarray, frame_times: np.ndarray, factor: float = 1.5
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where a recording dropped frames or paused, in store order.

    Parameters
    ----------
    frame_numbers, frame_times
        Of every frame in store order.
    factor
        An interval longer than ``factor`` x the median interval is a pause.

    Returns
    -------
    frame_index, kind, size : numpy.ndarray
        For each event the frame_index of the frame after it, its kind (:data:`GAP`: frame
        numbers skipped, ``size`` of them; :data:`PAUSE`: ``size`` seconds since the
        previous frame), sorted by frame_index (a gap before a pause at the same frame).
    """
    fn = np.asarray(frame_numbers, dtype=np.int64)
    ft = np.asarray(frame_times, dtype=np.float64)
    empty = (np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.float64))
    if len(fn) < 2:
        return empty
    steps = np.diff(fn)
    gap_at = np.flatnonzero(steps > 1)
    dt = np.diff(ft)
    median = float(np.median(dt))
    pause_at = np.flatnonzero(dt > factor * median) if median > 0 else np.empty(0, np.int64)
    index = np.concatenate([gap_at, pause_at]) + 1
    kind = np.concatenate([np.full(len(gap_at), GAP, np.int8), np.full(len(pause_at), PAUSE, np.int8)])
    size = np.concatenate([(steps[gap_at] - 1).astype(np.float64), dt[pause_at]])
    order = np.lexsort((kind, index))
    return index[order], kind[order], size[order]


class _StoreState:
    """One store of the viewer, with what is derived from its frame index (rebuilt when it grows)."""

    def __init__(self, store, name: str) -> None:
        self.store = store
        self.name = name
        self.tz = recording_timezone(store)
        self.live = False
        self.extra = None  # pandas DataFrame of the extra data, or None
        self.extra_row_index: np.ndarray | None = None  # frame_index each extra row belongs to
        self.extra_read_at = -math.inf
        self.extra_count = -1  # frame count when the extra data was read
        self.reload()

    def reload(self) -> None:
        self.frame_numbers = np.asarray(self.store.frame_numbers)
        self.frame_times = np.asarray(self.store.frame_times)
        self.t0 = float(self.frame_times[0]) if len(self.frame_times) else 0.0

    def __len__(self) -> int:
        return len(self.frame_numbers)


class Viewer:
    """Frame access for the HTTP handlers: the stores, their alignment, and one lock.

    Parameters
    ----------
    stores
        A store opened for reading, or several (shown side by side, in step by frame_time).
    fps
        Playback rate at speed 1 (None: the first store's mean frame rate, kept within 1..60).
    image_format
        ``'jpg'`` (fast, small) or ``'png'`` (exact pixels).
    names
        Names of the stores on the page (default: their folder names).
    """

    def __init__(self, stores, fps: float | None = None, image_format: str = "jpg",
                 names: Sequence[str] | None = None) -> None:
        if not isinstance(stores, (list, tuple)):
            stores = [stores]
        if names is None:
            names = [os.path.basename(os.path.normpath(s.filename)) or s.filename for s in stores]
            if len(set(names)) != len(names):
                names = [f"{i + 1}: {n}" for i, n in enumerate(names)]
        self.states = [_StoreState(s, n) for s, n in zip(stores, names, strict=False)]
        self.store = stores[0]
        self.tz = self.states[0].tz
        # readers are not thread-safe, and a refresh replaces the index under the readers
        self.lock = threading.RLock()
        self.image_format = image_format
        self._fps_arg = fps
        self.version = 0
        self._info_json: bytes | None = None
        self._events_json: bytes | None = None
        with self.lock:
            for st in self.states:
                st.live = bool(st.store.is_live)
            if self.live:
                logging.getLogger("imgstore").setLevel(logging.ERROR)
            self._rebuild()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="imgstore-view-refresh", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ state

    @property
    def live(self) -> bool:
        """True while a writer records any of the stores."""
        return any(st.live for st in self.states)

    def _rebuild(self) -> None:
        """Derive the steps (and the info) from the stores' current frames; call with the lock held."""
        for st in self.states:
            st.reload()
        if len(self.states) == 1:
            st = self.states[0]
            self.step_times = st.frame_times
            self.step_map = None
            self.step_status = None
            self.n_steps = len(st)
        else:
            from ..align import MultiStore

            if any(len(st) == 0 for st in self.states):
                self.step_times = np.empty(0)
                self.step_map = np.empty((0, len(self.states)), np.int64)
                self.step_status = np.empty((0, len(self.states)), np.int8)
            else:
                ms = MultiStore([st.store for st in self.states], by="frame_time", missing="repeat",
                                names=[st.name for st in self.states])
                self.step_times = ms.keys
                self.step_map = ms.frame_indices
                # 'repeat' shows a store's previous frame again: a frame is its own at its first step
                previous = np.vstack([np.full((1, len(self.states)), -1, np.int64), self.step_map[:-1]])
                self.step_status = ((self.step_map >= 0) & (self.step_map != previous)).astype(np.int8)
            self.n_steps = len(self.step_times)
        mean = self._mean_fps()
        self.fps = self._fps_arg or (min(max(mean, 1.0), 60.0) if mean else 25.0)
        self.version += 1
        self._info_json = None
        self._events_json = None

    def _mean_fps(self) -> float | None:
        ft = self.states[0].frame_times
        if len(ft) < 2:
            return None
        duration = float(ft.max() - ft.min())
        return (len(ft) - 1) / duration if duration > 0 else None

    def refresh(self) -> bool:
        """Pick up frames written since the last look; True if any store changed."""
        changed = False
        with self.lock:
            for st in self.states:
                was_live = st.live
                st.live = bool(st.store.is_live)
                # one more refresh after the writer closed: its last frames and final indexes
                if st.live or was_live:
                    before = len(st)
                    st.store.refresh()
                    changed |= len(st.store) != before or st.live != was_live
            if changed:
                self._rebuild()
            # a live chunk is an unfinished file by design: the reader's notes about it are noise here
            logging.getLogger("imgstore").setLevel(logging.ERROR if self.live else logging.NOTSET)
        return changed

    def _follow(self) -> None:
        while not self._stop.wait(REFRESH_INTERVAL):
            try:
                self.refresh()
            except Exception:  # a half-written chunk seen at a bad moment: the next look will do
                continue

    def close(self) -> None:
        """Stop following the stores (the stores themselves are the caller's)."""
        self._stop.set()
        self._thread.join(5)

    # ------------------------------------------------------------------ answers

    def info_json(self) -> bytes:
        """``/info``: the first store's summary plus the viewer's own keys."""
        from .info import summarize

        with self.lock:
            if self._info_json is None:
                summaries = [summarize(st.store) for st in self.states]
                for st, summary in zip(self.states, summaries, strict=False):
                    summary["name"] = st.name
                    summary.pop("store_metadata", None)
                info = dict(summaries[0])
                info.update({"frame_count": self.n_steps, "playback_fps": self.fps, "image_format": self.image_format,
                             "live": self.live, "stores": summaries, "names": [st.name for st in self.states],
                             "has_extra_data": [bool(s["extra_data"]) for s in summaries],
                             "version": self.version})
                self._info_json = to_json(info).encode()
            return self._info_json

    def status(self) -> dict[str, Any]:
        """``/status``: what the page polls to follow a live recording."""
        with self.lock:
            return {"steps": self.n_steps, "live": self.live, "frame_counts": [len(st) for st in self.states],
                    "version": self.version}

    def _check_index(self, text: str | None) -> int:
        try:
            i = int(text if text is not None else "")
        except ValueError:
            raise UsageError(f"index {text!r} is not an integer") from None
        if not 0 <= i < self.n_steps:
            raise UsageError(f"index {i} is outside 0..{self.n_steps - 1}")
        return i

    def _check_store(self, text: str | None) -> int:
        try:
            k = int(text) if text not in (None, "") else 0
        except ValueError:
            raise UsageError(f"store {text!r} is not an integer") from None
        if not 0 <= k < len(self.states):
            raise UsageError(f"store {k} is outside 0..{len(self.states) - 1}")
        return k

    def frame_index_at(self, step: int, k: int = 0) -> tuple[int, str]:
        """``(frame_index, status)`` of store ``k`` at ``step``: 'ok', 'repeat' or 'blank' (-1)."""
        if self.step_map is None:
            return step, "ok"
        fi = int(self.step_map[step, k])
        if fi < 0:
            return -1, "blank"
        own = self.step_status is None or bool(self.step_status[step, k])
        return fi, "ok" if own else "repeat"

    def meta(self, index: int, k: int = 0) -> dict[str, Any]:
        """frame_index, frame_number, frame_time, local date-time and seconds since the first frame."""
        st = self.states[k]
        fi, status = self.frame_index_at(index, k)
        out: dict[str, Any] = {"index": index, "store": k, "name": st.name, "status": status, "frame_index": fi}
        if fi < 0:
            out.update({"frame_number": None, "frame_time": None, "datetime": "-", "offset_s": None})
            return out
        ft = float(st.frame_times[fi])
        out.update({"frame_number": int(st.frame_numbers[fi]), "frame_time": ft,
                    "datetime": format_local(ft, st.tz), "offset_s": round(ft - self.states[0].t0, 6)})
        return out

    def meta_all(self, index: int) -> dict[str, Any]:
        """``/meta``: the first store's metadata at step ``index`` and every store's in ``stores``."""
        with self.lock:
            metas = [self.meta(index, k) for k in range(len(self.states))]
        return {**metas[0], "stores": metas}

    def frame(self, index_text: str | None, store_text: str | None = None) -> tuple[bytes, str, dict[str, Any]]:
        """``(encoded image, content type, metadata)`` of a store's frame at a step."""
        import cv2

        with self.lock:
            index = self._check_index(index_text)
            k = self._check_store(store_text)
            meta = self.meta(index, k)
            st = self.states[k]
            if meta["frame_index"] < 0:
                shape = tuple(st.store.image_shape)
                img = np.zeros(shape[:2], np.uint8)
            else:
                img = st.store[meta["frame_index"]]
        img = to_uint8(np.asarray(img))
        if self.image_format == "png":
            ok, data = cv2.imencode(".png", img, [int(cv2.IMWRITE_PNG_COMPRESSION), 1])
            ctype = "image/png"
        else:
            ok, data = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 92])
            ctype = "image/jpeg"
        if not ok:
            raise CLIError(f"frame {index} could not be encoded")
        return data.tobytes(), ctype, meta

    def events_json(self) -> bytes:
        """``/events``: frame-number gaps and pauses of every store, by step, the most severe first kept."""
        with self.lock:
            if self._events_json is not None:
                return self._events_json
            rows = []
            totals = []
            for k, st in enumerate(self.states):
                fi, kind, size = timeline_events(st.frame_numbers, st.frame_times)
                totals.append({"gaps": int((kind == GAP).sum()), "missing": int(size[kind == GAP].sum()),
                               "pauses": int((kind == PAUSE).sum())})
                if self.step_map is None:
                    steps = fi
                else:
                    # a store's frame_index -> the step where it is shown as its own frame
                    step_of = np.full(len(st), -1, np.int64)
                    own = self.step_map[:, k] >= 0
                    if self.step_status is not None:
                        own &= self.step_status[:, k].astype(bool)
                    step_of[self.step_map[own, k]] = np.flatnonzero(own)
                    steps = step_of[fi] if len(fi) else fi
                for s, kd, sz, f in zip(steps.tolist(), kind.tolist(), size.tolist(), fi.tolist(), strict=False):
                    if s >= 0:
                        rows.append((s, kd, k, sz, f))
            dropped = 0
            if len(rows) > MAX_EVENTS:
                # keep the most severe: the longest pauses (in median intervals) and the largest gaps
                rows.sort(key=lambda r: -r[3])
                dropped = len(rows) - MAX_EVENTS
                rows = rows[:MAX_EVENTS]
            rows.sort()
            events = []
            for s, kd, k, sz, f in rows:
                st = self.states[k]
                fn = int(st.frame_numbers[f])
                if kd == GAP:
                    text = f"{int(sz)} missing frame number{'s' * (int(sz) != 1)} before #{fn}"
                else:
                    text = f"pause of {sz:.3f} s before #{fn}"
                if len(self.states) > 1:
                    text = f"{st.name}: {text}"
                events.append([s, kd, k, round(sz, 6), text])
            self._events_json = to_json({"events": events, "left_out": dropped, "totals": totals,
                                         "steps": self.n_steps}, indent=None).encode()
            return self._events_json

    def _extra_table(self, st: _StoreState):
        """The store's extra data (re-read when a live store grew, at most every few seconds)."""
        now = time.monotonic()
        stale = st.extra_count != len(st) and now - st.extra_read_at >= EXTRA_REFRESH_INTERVAL
        if st.extra_count < 0 or stale:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a live chunk's journal is read mid-write
                df = st.store.get_extra_data(ignore_corrupt_chunks=True)
            st.extra_read_at, st.extra_count = now, len(st)
            st.extra, st.extra_row_index = None, None
            if df is not None and len(df):
                if "frame_index" in df:
                    row_index = df["frame_index"].to_numpy(dtype=np.float64)
                elif "frame_time" in df and len(st):
                    row_index = np.searchsorted(st.frame_times, df["frame_time"].to_numpy(np.float64),
                                                side="right").astype(np.float64) - 1
                else:
                    row_index = np.arange(len(df), dtype=np.float64)
                order = np.argsort(row_index, kind="stable")
                st.extra = df.iloc[order].reset_index(drop=True)
                st.extra_row_index = row_index[order]
        return st.extra, st.extra_row_index

    def extra(self, index: int, window: int | None = None) -> dict[str, Any]:
        """``/extra``: per store, the last extra-data record at or before its frame at step ``index``,
        and each numeric column over ``window`` frames either side (default: 5 s of frames)."""
        out = []
        with self.lock:
            for k, st in enumerate(self.states):
                df, row_index = self._extra_table(st)
                fi, _ = self.frame_index_at(index, k)
                entry: dict[str, Any] = {"store": k, "name": st.name, "frame_index": fi, "columns": [],
                                         "current": None, "current_frame_index": None, "series": None}
                if df is None or fi < 0:
                    out.append(entry)
                    continue
                cols = [c for c in df.columns if str(c) not in _RESERVED_EXTRA]
                numeric = [c for c in cols if df[c].dtype.kind in "biuf"]
                entry["columns"] = [str(c) for c in cols]
                pos = int(np.searchsorted(row_index, fi, side="right")) - 1
                if pos >= 0:
                    row = df.iloc[pos]
                    entry["current"] = {str(c): _plain(row[c]) for c in cols}
                    entry["current_frame_index"] = int(row_index[pos])
                half = window or max(25, round(5 * self.fps))
                lo = int(np.searchsorted(row_index, fi - half, side="left"))
                hi = int(np.searchsorted(row_index, fi + half, side="right"))
                stride = max(1, (hi - lo) // MAX_PLOT_POINTS)
                sl = slice(lo, hi, stride)
                entry["series"] = {"frame_index": row_index[sl].tolist(), "from": fi - half, "to": fi + half,
                                   "columns": {str(c): [_plain(v) for v in df[c].to_numpy()[sl]] for c in numeric}}
                out.append(entry)
        return {"index": index, "stores": out}

    def lookup(self, text: str) -> dict[str, Any]:
        """The step the user means by ``text`` (see the module help), with a note when inexact."""
        text = (text or "").strip()
        if not text:
            raise UsageError("type a frame number, a time or seconds like 12.5s")
        with self.lock:
            if self.n_steps == 0:
                raise CLIError("the store has no frames")
            st = self.states[0]
            note = ""
            number = text[1:] if text.startswith("#") else text
            if re.fullmatch(r"-?\d+", number):
                fn = int(number)
                fi = st.store.frame_index_of(fn, exact=False)
                found = int(st.frame_numbers[fi])
                if found != fn:
                    note = f"no frame #{fn}; showing the nearest, #{found}"
                index = self._step_of_frame(fi, float(st.frame_times[fi]))
            else:
                m = _RELATIVE.match(text)
                if m:
                    t = st.t0 + float(m.group(1))
                elif _TIME_OF_DAY.match(text):
                    # a time of day on the date of the first frame, in the store's zone
                    day = datetime.datetime.fromtimestamp(st.t0, tz=st.tz).date().isoformat()
                    t = parse_time(f"{day}T{text}", st.tz)
                else:
                    t = parse_time(text, st.tz)
                index = self._step_at_time(t)
                ft = float(self.step_times[index])
                if abs(ft - t) > 1.0:
                    note = f"nearest frame is {ft - t:+.3f} s from {format_local(t, st.tz)}"
            return {**self.meta(index), "note": note}

    def _step_of_frame(self, frame_index: int, frame_time: float) -> int:
        if self.step_map is None:
            return frame_index
        hits = np.flatnonzero(self.step_map[:, 0] == frame_index)
        return int(hits[0]) if len(hits) else self._step_at_time(frame_time)

    def _step_at_time(self, t: float) -> int:
        if self.step_map is None:
            return int(self.states[0].store.frame_index_at_time(t))
        times = self.step_times
        i = int(np.clip(np.searchsorted(times, t), 1, len(times) - 1)) if len(times) > 1 else 0
        if len(times) > 1 and abs(times[i - 1] - t) <= abs(times[i] - t):
            i -= 1
        return i


def _plain(value: Any) -> Any:
    """A numpy/pandas scalar as a JSON-friendly Python value (NaN -> None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _handler_class(viewer: Viewer, page: bytes, verbose: bool) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: playback makes many small requests
        server_version = "imgstore-view"

        def log_message(self, format: str, *args: Any) -> None:
            if verbose:
                super().log_message(format, *args)

        def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, code: int, obj: Any) -> None:
            self._send(code, to_json(obj, indent=None).encode(), "application/json")

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            one = lambda key: (query.get(key) or [None])[0]  # noqa: E731
            try:
                if url.path in ("/", "/index.html"):
                    self._send(200, page, "text/html; charset=utf-8")
                elif url.path == "/info":
                    self._send(200, viewer.info_json(), "application/json")
                elif url.path == "/status":
                    self._json(200, viewer.status())
                elif url.path == "/frame":
                    data, ctype, meta = viewer.frame(one("index"), one("store"))
                    self._send(200, data, ctype, {
                        "X-Frame-Index": str(meta["frame_index"]), "X-Frame-Step": str(meta["index"]),
                        "X-Frame-Status": meta["status"],
                        "X-Frame-Number": "" if meta["frame_number"] is None else str(meta["frame_number"]),
                        "X-Frame-Time": "" if meta["frame_time"] is None else repr(meta["frame_time"]),
                        "X-Frame-Offset": "" if meta["offset_s"] is None else f"{meta['offset_s']:.3f}",
                        # header values must be latin-1: zone abbreviations are ASCII anyway
                        "X-Frame-Datetime": meta["datetime"].encode("ascii", "replace").decode()})
                elif url.path == "/meta":
                    self._json(200, viewer.meta_all(viewer._check_index(one("index"))))
                elif url.path == "/events":
                    self._send(200, viewer.events_json(), "application/json")
                elif url.path == "/extra":
                    window = one("window")
                    self._json(200, viewer.extra(viewer._check_index(one("index")),
                                                 int(window) if window and window.isdigit() else None))
                elif url.path == "/lookup":
                    self._json(200, viewer.lookup(one("q") or ""))
                elif url.path == "/favicon.ico":
                    self._send(204, b"", "image/x-icon")
                else:
                    self._json(404, {"error": f"no such page: {url.path}"})
            except CLIError as exc:
                self._json(400, {"error": str(exc)})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the page went away mid-answer (a reload, a closed tab)
            except Exception as exc:  # a damaged chunk must not kill the server: show it in the page
                self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if urllib.parse.urlsplit(self.path).path == "/quit":
                self._json(200, {"stopping": True})
                # shutdown() waits for serve_forever to return: never call it from the serving thread
                threading.Thread(target=self.server.shutdown, daemon=True).start()
            else:
                self._json(404, {"error": f"no such action: {self.path}"})

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def server_close(self) -> None:
        super().server_close()
        viewer = getattr(self, "viewer", None)  # not yet set when binding failed
        if viewer is not None:
            viewer.close()


def make_server(stores, host: str = "127.0.0.1", port: int = 0, fps: float | None = None,
                image_format: str = "jpg", verbose: bool = False,
                names: Sequence[str] | None = None) -> http.server.ThreadingHTTPServer:
    """An HTTP server for one store or several (not yet serving); its ``url`` attribute is the page's address.

    Parameters
    ----------
    stores
        A store opened for reading, or a list of them (closed by the caller after
        ``serve_forever`` returns and ``server_close()``).
    host, port
        Where to listen (port 0: a free port).
    fps, image_format, names
        See :class:`Viewer`.
    verbose
        Log every request on stderr.

    Raises
    ------
    CLIError
        The port is in use (the message names it).
    """
    from ._viewer_page import PAGE

    viewer = Viewer(stores, fps=fps, image_format=image_format, names=names)
    try:
        server = _Server((host, port), _handler_class(viewer, PAGE.encode(), verbose))
    except OSError as exc:
        viewer.close()
        if exc.errno == errno.EADDRINUSE:
            raise CLIError(f"port {port} on {host} is already in use (choose another --port, or 0 for a "
                           f"free one)") from None
        raise
    server.viewer = viewer  # type: ignore[attr-defined]
    server.url = f"http://{host}:{server.server_address[1]}/"  # type: ignore[attr-defined]
    return server


def _has_display() -> bool:
    """False on a Linux/BSD machine without X11 or Wayland, where a browser would start in the terminal."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = ArgumentParser(prog=PROG, description="Browse stores in a web browser: play, step, scrub, jump to a "
                                              "frame number or time, see dropped frames and extra data; several "
                                              "stores side by side in step; follows a store being recorded. "
                                              "Serves on 127.0.0.1 only.",
                       epilog=EPILOG)
    p.add_argument("store", nargs="+", help="the store's folder or its metadata.yaml; several: side by side")
    p.add_argument("--port", type=port_number, default=0, help="port to listen on (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL; do not open a browser")
    p.add_argument("--fps", type=positive_float, help="playback rate at speed 1 (default: the store's, at most 60)")
    p.add_argument("--png", action="store_true", help="send frames as PNG (exact pixels) instead of JPEG")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return p


def run(args: argparse.Namespace) -> int:
    """Body of the command."""
    import contextlib

    import imgstore

    with contextlib.ExitStack() as stack:
        library_log = logging.getLogger("imgstore")
        level = library_log.level
        # a store being recorded has an unfinished last chunk by design: opening it says so, needlessly
        library_log.setLevel(logging.ERROR)
        try:
            stores = [stack.enter_context(imgstore.new_for_filename(path)) for path in args.store]
        finally:
            library_log.setLevel(level)
        server = make_server(stores, port=args.port, fps=args.fps, image_format="png" if args.png else "jpg",
                             verbose=args.verbose)
        with server:
            counts = ", ".join(str(len(s)) for s in stores)
            what = " + ".join(args.store)
            print(f"serving {what} ({counts} frames) at {server.url}", flush=True)
            print("press Esc or q in the page, or Ctrl-C here, to stop", flush=True)
            if not args.no_browser:
                if _has_display():
                    # a browser that takes long to start must not delay the server
                    threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
                else:
                    port = server.server_address[1]
                    print(f"no display here: open the URL on this machine's browser, or from your computer "
                          f"after 'ssh -L {port}:127.0.0.1:{port} <this host>'", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever(poll_interval=0.2)
    print("viewer stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run ``imgstore-view``; returns the exit status."""
    return run_command(prog, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
