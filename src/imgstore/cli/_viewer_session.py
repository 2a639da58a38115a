"""The store side of ``imgstore-view``: the stores shown, their alignment, and every answer the page asks for.

:class:`Viewer` knows nothing of HTTP (:mod:`._viewer_http` serves it): it turns the
stores' frame indexes into *steps* (one per frame with one store; with several, one per
frame_time of :class:`imgstore.align.MultiStore`), follows stores a writer is recording,
and answers with plain values. A value a user or a page sends that cannot be read
raises :class:`~imgstore.cli._common.UsageError` (HTTP 400), never anything else.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import CLIError, UsageError, format_local, parse_time, recording_timezone, to_json, to_uint8

__all__ = ["GAP", "PAUSE", "Viewer", "timeline_events"]

#: how often a live store is checked for new frames (seconds)
REFRESH_INTERVAL = 0.5
#: extra data of a live store is re-read at most this often (seconds): it is a full read
EXTRA_REFRESH_INTERVAL = 2.0
#: timeline marks sent to the page at most (the most severe ones when there are more)
MAX_EVENTS = 4000
#: points of an extra-data plot at most
MAX_PLOT_POINTS = 300
#: frame numbers are int64 in every store: a number outside cannot name a frame
FRAME_NUMBER_RANGE = (-(2**63), 2**63 - 1)
#: times the lookup box accepts (seconds since the epoch): years 1 to 9999, what a date-time can show
TIME_RANGE = (-62135596800.0, 253402300799.0)

_INTEGER = re.compile(r"-?[0-9]{1,20}")
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

    def parse_step(self, text: str | None) -> int:
        """The step a request names (``index=``), checked against the steps there are."""
        i = parse_integer(text, "index")
        if not 0 <= i < self.n_steps:
            raise UsageError(f"index {i} is outside 0..{self.n_steps - 1}")
        return i

    def parse_store(self, text: str | None) -> int:
        """The store a request names (``store=``, default the first), checked against the stores there are."""
        k = parse_integer(text, "store") if text not in (None, "") else 0
        if not 0 <= k < len(self.states):
            raise UsageError(f"store {k} is outside 0..{len(self.states) - 1}")
        return k

    def parse_window(self, text: str | None) -> int | None:
        """Frames either side of an extra-data plot (``window=``; None: the default), at most the steps there are."""
        if text in (None, ""):
            return None
        window = parse_integer(text, "window")
        if window <= 0:
            raise UsageError(f"window {window} must be positive")
        return min(window, max(self.n_steps, 1))

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
            index = self.parse_step(index_text)
            k = self.parse_store(store_text)
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
            if re.fullmatch(r"-?[0-9]+", number):
                # the length first: int() of thousands of digits is slow, or refused
                fn = int(number) if len(number) <= 21 else FRAME_NUMBER_RANGE[1] + 1
                if not FRAME_NUMBER_RANGE[0] <= fn <= FRAME_NUMBER_RANGE[1]:
                    raise UsageError(f"frame number {number} is out of range (no store has one beyond 64 bits)")
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
                if not TIME_RANGE[0] <= t <= TIME_RANGE[1]:
                    raise UsageError(f"{text!r} is out of range: give a time between the years 1 and 9999")
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


def parse_integer(text: str | None, what: str) -> int:
    """An integer a request sends: ASCII digits with an optional minus, at most 20 of them.

    Raises
    ------
    UsageError
        Anything else (``int()`` would also take ``' 1_0 '`` or other scripts' digits).
    """
    if text is None or not _INTEGER.fullmatch(text):
        raise UsageError(f"{what} {text!r} is not an integer")
    return int(text)


def _plain(value: Any) -> Any:
    """A numpy/pandas scalar as a JSON-friendly Python value (NaN -> None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


