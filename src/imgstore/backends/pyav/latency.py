"""Bounding, in wall-clock time, how long a written frame stays in memory only.

A frame handed to :class:`~.writer.VideoChunkWriter` can sit in two places a SIGKILL wipes
out: the encoder (x264/x265 hold back frames for their lookahead and B-frames) and the
muxer (Matroska keeps the current cluster, fragmented MP4 the current fragment, in
memory until the *next* packet arrives). Both count frames or media time, not wall time,
so at a low or irregular frame rate, or across a pause, a frame could stay there for
minutes. This module holds the two tools the writer uses against that:

:class:`MuxerFlush`
    ``av_write_frame(ctx, NULL)``: makes a muxer that buffers (Matroska, MP4) write out
    what it holds, at once, without ending the file. PyAV has no call for it, so it is
    reached through ctypes, on the ``AVFormatContext`` of the PyAV container, found in the
    container object and *checked* (its first field must be the ``AVClass`` that
    ``avformat_get_class()`` of the very library PyAV loaded returns) before it is used;
    when anything does not match, :meth:`MuxerFlush.attach` returns None and the writer
    falls back to finishing its chunk instead.
:class:`DeadlineThread`
    a daemon thread that calls back when a deadline (the moment the oldest frame not yet
    safe has waited long enough) passes, also while the caller is not writing (a pause).

The measurements behind this are in ``docs/video-notes.md`` ("Crash safety").
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import av

__all__ = ["DeadlineThread", "MuxerFlush"]

_log = logging.getLogger(__name__)

#: pointer-sized slots of a PyAV container object searched for its AVFormatContext pointer
_MAX_SLOTS = 64


def _loaded_libavformat_paths() -> list[str]:
    """Candidate files of the libavformat PyAV uses: the one mapped in this process first."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if line.count(" ") >= 5 else ""
                if "libavformat" in os.path.basename(path) and path not in paths:
                    paths.append(path)
    except OSError:  # not Linux: look where the wheels keep their libraries
        pass
    here = os.path.dirname(av.__file__)
    for pattern in ("../av.libs/libavformat*", ".dylibs/libavformat*", "../PyAV.libs/libavformat*"):
        paths += [p for p in sorted(glob.glob(os.path.join(here, pattern))) if p not in paths]
    return paths


class _Library:
    """``avformat_get_class`` and ``av_write_frame`` of the libavformat PyAV loaded (or None)."""

    _loaded: _Library | bool | None = False

    def __init__(self, lib: Any) -> None:
        self.get_class = lib.avformat_get_class
        self.get_class.restype = ctypes.c_void_p
        self.get_class.argtypes = []
        self.write_frame = lib.av_write_frame
        self.write_frame.restype = ctypes.c_int
        self.write_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.av_class: int = self.get_class()

    @classmethod
    def get(cls) -> _Library | None:
        if cls._loaded is False:
            cls._loaded = None
            for path in _loaded_libavformat_paths():
                try:
                    cls._loaded = cls(ctypes.CDLL(path))
                    break
                except (OSError, AttributeError):
                    continue
        return cls._loaded  # type: ignore[return-value]  # False only before the first call


def _read_pointer(address: int) -> int | None:
    """The pointer stored at `address`, read without risking a crash where possible (Linux)."""
    try:
        with open("/proc/self/mem", "rb", buffering=0) as mem:
            mem.seek(address)
            data = mem.read(ctypes.sizeof(ctypes.c_void_p))
    except (OSError, ValueError, OverflowError):
        if sys.platform.startswith("linux"):
            return None  # an address the kernel refuses: not a pointer to anything
        data = ctypes.string_at(address, ctypes.sizeof(ctypes.c_void_p))
    if len(data) != ctypes.sizeof(ctypes.c_void_p):
        return None
    return int.from_bytes(data, sys.byteorder)


class MuxerFlush:
    """Makes one PyAV output container's muxer write out what it buffers (see the module)."""

    def __init__(self, lib: _Library, context: int) -> None:
        self._lib = lib
        self._context = context

    @classmethod
    def attach(cls, container: Any) -> MuxerFlush | None:
        """A flusher for `container` (a PyAV output container), or None when it cannot be had safely."""
        lib = _Library.get()
        if lib is None or not lib.av_class:
            return None
        size = type(container).__basicsize__ // ctypes.sizeof(ctypes.c_void_p)
        slots = (ctypes.c_void_p * min(size, _MAX_SLOTS)).from_address(id(container))
        name_id = id(container.name)
        # PyAV declares the AVFormatContext pointer just before the container's name
        for i in range(1, len(slots) - 1):
            if slots[i + 1] == name_id and slots[i]:
                context = int(slots[i])  # type: ignore[arg-type]  # non-zero c_void_p
                if _read_pointer(context) == lib.av_class:
                    return cls(lib, context)
        return None

    def flush(self) -> int:
        """Write out what the muxer holds; FFmpeg's return value (< 0: an AVERROR)."""
        return int(self._lib.write_frame(self._context, None))


class DeadlineThread:
    """Calls ``callback()`` (from its own daemon thread) whenever the deadline set passes.

    `callback` is held weakly (a bound method: its object may be dropped without
    :meth:`stop`, the thread then ends). The callback sets the next deadline itself.
    """

    def __init__(self, callback: Callable[[], None], name: str) -> None:
        self._callback = weakref.WeakMethod(callback)
        self._cv = threading.Condition()
        self._deadline: float | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def set_deadline(self, deadline: float | None) -> None:
        """Call back at `deadline` (``time.monotonic()``), or never (None)."""
        with self._cv:
            wake = deadline is not None and (self._deadline is None or deadline < self._deadline)
            self._deadline = deadline
            if wake:
                self._cv.notify()

    def stop(self) -> None:
        """End the thread (without waiting for a callback that is running)."""
        with self._cv:
            self._stopped = True
            self._cv.notify()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopped:
                    now = time.monotonic()
                    if self._deadline is not None and now >= self._deadline:
                        break
                    # wake at the deadline, and at least once a minute to notice a dropped owner
                    wait = 60.0 if self._deadline is None else min(60.0, self._deadline - now)
                    if not self._cv.wait(wait) and self._callback() is None:
                        return
                if self._stopped:
                    return
                self._deadline = None
            callback = self._callback()
            if callback is None:
                return
            try:
                callback()
            except Exception:  # the owner records its own failures; never let the thread die silently
                _log.exception("latency deadline callback failed")
            del callback
