"""``imgstore-save DEST``: record a store from a camera, a video file or a synthetic test pattern.

Sources (``--source``):

``testsrc``
    Barcode frames (:func:`imgstore.testing.barcode.make_frame`; frame_number 0, 1, 2...
    readable back from the pixels). Without ``--fps``/``--duration`` it runs at full speed
    and stamps the frames 1/30 s apart starting now, so a quick demo store looks like a
    30 fps recording; with ``--fps`` or ``--duration`` it is paced by the wall clock and
    stamped with it.
an integer
    A camera (OpenCV device index); frame_time is the wall clock when the frame arrived.
a file path
    A video file decoded with PyAV; frame_time = ``--start-time`` (default: now) + the
    frame's presentation time in the file.
``testsrc`` is the default: a camera is recorded only when asked for (``--source 0``);
``--source auto`` takes camera 0 when one is present, else the test pattern.

SIGINT (Ctrl-C) and SIGTERM stop the recording; the store is closed properly either way.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ._common import (
    ArgumentParser,
    CLIError,
    UsageError,
    check_format,
    default_format,
    parse_metadata,
    parse_size,
    parse_time,
    port_number,
    positive_float,
    positive_int,
    run_command,
    writing_options,
)

__all__ = [
    "CameraSource",
    "LiveViewer",
    "StopFlag",
    "TestPatternSource",
    "VideoFileSource",
    "check_destination",
    "main",
]

PROG = "imgstore-save"
#: frames recorded from testsrc when neither --frames nor --duration is given
DEFAULT_TESTSRC_FRAMES = 300
#: the test pattern's nominal rate when it runs at full speed
DEFAULT_TESTSRC_FPS = 30.0
DEFAULT_TESTSRC_SIZE = (640, 480)

EPILOG = """\
examples:
  imgstore-save /tmp/demo                          300 test-pattern frames, default format
  imgstore-save /tmp/live --fps 30 --view          a live test pattern, watched in the browser
  imgstore-save /data/run1 --source 0 --format h264/mkv --fps 30 --metadata genotype=wt
  imgstore-save /data/run2 --source movie.mp4 --format ffv1/mkv --start-time 2024-05-01T12:00:00
  imgstore-save /tmp/live --source testsrc --fps 25 --duration 60 --size 320x240 --color

Ctrl-C (or SIGTERM) stops a recording cleanly: the store is closed and readable.
--metadata values are read as JSON when possible (21.5 -> number), else kept as text.
"""


class StopFlag:
    """Set by SIGINT/SIGTERM; the recording loop checks it between frames.

    Handlers only set a flag (never raise) so a signal cannot interrupt ``add_image``
    halfway: the loop finishes the frame it is writing, then closes the store.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def install(self) -> None:
        """Catch SIGINT and SIGTERM (only possible in the main thread; elsewhere a no-op)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: keep the default behaviour
                return

    def restore(self) -> None:
        """Put the previous handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# ---------------------------------------------------------------------- sources

class Source:
    """A frame source: ``first_frame`` (for the store's shape) then ``frames()``."""

    name = "source"
    #: frames the source will deliver, when known (for the progress bar)
    total: int | None = None
    #: nominal frame rate, when known (video stores need one)
    fps: float | None = None
    #: True for sources that run until stopped (live counter instead of a progress bar)
    live = True
    #: True when frames come exactly at ``fps`` (so --duration tells how many there will be)
    steady = False

    def frames(self) -> Iterator[tuple[np.ndarray, int, float]]:
        """``(image, frame_number, frame_time)`` until the source ends."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""


class TestPatternSource(Source):
    """Synthetic barcode frames.

    Parameters
    ----------
    size
        ``(width, height)``.
    color
        BGR frames instead of grey.
    fps
        Frame rate: frames are paced by the wall clock when ``paced``, else stamped
        ``1/fps`` apart without waiting.
    paced
        Wait for the wall clock (a live-like source) instead of running at full speed.
    start_time
        frame_time of frame 0 when not paced (default: now).
    """

    __test__ = False  # not a pytest test class despite the name
    name = "testsrc"
    steady = True
    fps: float  # always known here

    def __init__(self, size: tuple[int, int], color: bool, fps: float, paced: bool,
                 start_time: float | None = None) -> None:
        self.width, self.height = size
        self.color = color
        self.fps = fps
        self.paced = paced
        self.start_time = start_time

    def frames(self) -> Iterator[tuple[np.ndarray, int, float]]:
        from ..testing.barcode import make_frame

        t0 = time.time() if self.start_time is None else self.start_time
        clock0 = time.monotonic()
        for i in itertools.count():
            img = make_frame(i, self.height, self.width, color=self.color)
            if self.paced:
                # wait for this frame's slot (monotonic clock: immune to wall-clock steps)
                delay = clock0 + i / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                yield img, i, time.time()
            else:
                yield img, i, t0 + i / self.fps


def camera_present(index: int = 0) -> bool:
    """Cheap check whether camera ``index`` exists, without opening it where the OS allows."""
    if sys.platform.startswith("linux"):
        return os.path.exists(f"/dev/video{index}")
    try:
        import cv2

        cap = cv2.VideoCapture(index)
        try:
            return bool(cap.isOpened())
        finally:
            cap.release()
    except Exception:
        return False


class CameraSource(Source):
    """An OpenCV camera; frame_time is the wall clock when each frame arrives."""

    def __init__(self, index: int, size: tuple[int, int] | None, color: bool, fps: float | None) -> None:
        import cv2

        self.name = f"camera {index}"
        self._cv2 = cv2
        self.color = color
        if sys.platform.startswith("linux") and not camera_present(index):
            raise CLIError(f"--source {index}: there is no camera {index} (/dev/video{index} does not exist); "
                           f"use --source testsrc for the test pattern")
        # OpenCV logs '[ WARN ]' lines on stderr for every backend it tries; our one error line says it all
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self._cap = cv2.VideoCapture(index)
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if not self._cap.isOpened():
            raise CLIError(f"--source {index}: could not open camera {index} (busy, or no permission?)")
        if size is not None:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if fps is not None:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        reported = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps or (float(reported) if reported and reported > 0 else None)

    def frames(self) -> Iterator[tuple[np.ndarray, int, float]]:
        for i in itertools.count():
            ok, img = self._cap.read()
            t = time.time()
            if not ok or img is None:
                return
            if not self.color and img.ndim == 3:
                img = self._cv2.cvtColor(img, self._cv2.COLOR_BGR2GRAY)
            yield img, i, t

    def close(self) -> None:
        self._cap.release()


class VideoFileSource(Source):
    """A video file decoded with PyAV; frame_time = start + the frame's presentation time."""

    live = False
    steady = True

    def __init__(self, path: str, size: tuple[int, int] | None, color: bool, start_time: float | None) -> None:
        import av

        self.name = path
        try:
            self._container = av.open(path)
        except av.error.FFmpegError as exc:
            raise CLIError(f"cannot open video file {path!r}: {exc}") from None
        if not self._container.streams.video:
            self._container.close()
            raise CLIError(f"{path!r} has no video stream")
        self._stream = stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.total = int(stream.frames) or None
        time_base = stream.time_base
        if self.total is None and stream.duration is not None and time_base is not None and self.fps:
            self.total = round(float(stream.duration * time_base) * self.fps)
        # pts are relative to the stream's declared start (MPEG-TS files start at 1.4 s...)
        start = stream.start_time
        self._t_start = float(start * time_base) if start is not None and time_base is not None else 0.0
        self.start_time = time.time() if start_time is None else start_time
        self._size = size
        self._pix = "bgr24" if color else "gray"

    def frames(self) -> Iterator[tuple[np.ndarray, int, float]]:
        import av

        kwargs: dict[str, Any] = {"width": self._size[0], "height": self._size[1]} if self._size else {}
        try:
            for i, frame in enumerate(self._container.decode(self._stream)):
                rel = frame.time - self._t_start if frame.time is not None else i / (self.fps or 25.0)
                yield frame.to_ndarray(format=self._pix, **kwargs), i, self.start_time + rel
        except av.error.FFmpegError as exc:
            raise CLIError(f"{self.name}: decoding failed: {exc}") from None

    def close(self) -> None:
        self._container.close()


def open_source(args: argparse.Namespace) -> Source:
    """The source described by ``--source`` and the size/colour/fps options."""
    source = args.source
    start = parse_time(args.start_time, None) if args.start_time else None
    if source == "testsrc":
        paced = args.fps is not None or args.duration is not None
        return TestPatternSource(args.size or DEFAULT_TESTSRC_SIZE, color=bool(args.color),
                                 fps=args.fps or DEFAULT_TESTSRC_FPS, paced=paced, start_time=start)
    if source.isdigit():
        return CameraSource(int(source), args.size, color=args.color is not False, fps=args.fps)
    if not os.path.exists(source):
        raise UsageError(f"--source {source!r}: no such file (give a video file, a camera number or 'testsrc')")
    return VideoFileSource(source, args.size, color=args.color is not False, start_time=start)


# ---------------------------------------------------------------------- recording

def _progress(source: Source, limit: int | None, duration: float | None):
    from tqdm import tqdm

    total = source.total
    if limit is not None:
        total = min(total, limit) if total else limit
    if duration is not None and source.fps and source.steady:
        in_duration = math.ceil(duration * source.fps)
        total = min(total, in_duration) if total else in_duration
    # a source that runs until stopped gets a plain counter (frames, rate, elapsed)
    return tqdm(total=total or None, unit=" frames",
                desc=f"recording {source.name}", file=sys.stderr, dynamic_ncols=True, mininterval=0.25)


class LiveViewer:
    """``imgstore-view`` on the store being recorded, in a process of its own.

    A separate, lower-priority process decodes and encodes the frames a browser asks for,
    so watching never takes the recording loop's interpreter lock or its core; the
    recorder only starts and stops it (see ``benchmarks/save_view.py``).

    Parameters
    ----------
    dest
        The store being recorded (it must exist: start after the first frame).
    port
        Port to serve on (0: a free one).
    open_browser
        Let the viewer open a browser where there is a display.
    """

    def __init__(self, dest: str, port: int = 0, open_browser: bool = True) -> None:
        import subprocess

        cmd = [sys.executable, "-m", "imgstore", "view", dest, "--port", str(port)]
        if not open_browser:
            cmd.append("--no-browser")
        # a session of its own: Ctrl-C in the terminal stops the recording, which then stops the viewer
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        if hasattr(os, "setpriority"):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, self.proc.pid, 10)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the viewer (as Ctrl-C would), killing it if it does not stop in ``timeout`` seconds."""
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def check_destination(dest: str, overwrite: bool) -> None:
    """Refuse a destination that is a folder of other files: recording there would mix a store into them.

    A new or empty folder is fine, and so is an existing store with ``overwrite`` (the
    store refuses it without).
    """
    from ..ondisk import STORE_MD_FILENAME

    if os.path.exists(dest) and not os.path.isdir(dest):
        raise UsageError(f"destination {dest!r} is a file, not a folder")
    if not os.path.isdir(dest):
        return
    if os.path.exists(os.path.join(dest, STORE_MD_FILENAME)):
        if not overwrite:
            raise CLIError(f"a store already exists at '{dest}' (use --overwrite to replace it)")
        return
    entries = sorted(e for e in os.listdir(dest) if not e.startswith("."))
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise UsageError(f"destination {dest!r} is a folder with other files in it ({shown}) and not a store; "
                         f"choose a new or empty folder")


def record(source: Source, dest: str, fmt: str, args: argparse.Namespace, stop: StopFlag) -> int:
    """Record frames from ``source`` into a new store at ``dest``; returns the number of frames.

    With ``args.view`` an :class:`LiveViewer` serves the store from its first frame until
    the recording ends.
    """
    import imgstore

    frames = source.frames()
    try:
        first = next(frames)
    except StopIteration:
        raise CLIError(f"{source.name}: no frames") from None
    img0 = first[0]
    # --fps also paces the test pattern and is asked of a camera: it is not an error for a format without it
    options, not_taken = writing_options(fmt, fps=args.fps or source.fps, quality=args.quality)
    if "quality" in not_taken:
        warnings.warn(f"--quality does not apply to format {fmt}; ignored", stacklevel=1)
    kwargs: dict[str, Any] = {"chunksize": args.chunksize} if args.chunksize else {}
    store = imgstore.new_for_format(fmt, basedir=dest, imgshape=img0.shape, imgdtype=img0.dtype,
                                    metadata=parse_metadata(args.metadata), overwrite=args.overwrite,
                                    **kwargs, **options)
    n = 0
    t_first = first[2]
    viewer: LiveViewer | None = None
    try:
        with store, _progress(source, args.frames, args.duration) as bar:
            for img, frame_number, frame_time in itertools.chain([first], frames):
                if stop:
                    break
                # frame times run on the file's clock for a file and on the wall clock for live sources
                if args.duration is not None and frame_time - t_first >= args.duration:
                    break
                store.add_image(img, frame_number, frame_time)
                n += 1
                bar.update(1)
                if viewer is None and getattr(args, "view", False):
                    viewer = LiveViewer(dest, port=args.view_port, open_browser=not args.no_browser)
                if args.frames is not None and n >= args.frames:
                    break
    finally:
        if viewer is not None:
            viewer.stop()
    return n


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = ArgumentParser(prog=PROG, description="Record a new store from a camera, a video file or a "
                                              "synthetic test pattern, then print its summary.",
                       epilog=EPILOG)
    p.add_argument("dest", help="folder of the new store")
    p.add_argument("--source", default="testsrc", metavar="SRC",
                   help="'testsrc' (the default: a synthetic test pattern), a camera number (0, 1...), a video "
                        "file, or 'auto' (camera 0 if present, else testsrc)")
    p.add_argument("--format", metavar="FMT", help="store format (default: h264/mkv when available, else npy; "
                                                   "'imgstore-test' lists the formats)")
    p.add_argument("--chunksize", type=positive_int, metavar="N", help="frames per chunk (format default)")
    p.add_argument("--frames", type=positive_int, metavar="N", help="stop after N frames "
                                                                    f"(testsrc default: {DEFAULT_TESTSRC_FRAMES})")
    p.add_argument("--duration", type=positive_float, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("--fps", type=positive_float, help="frame rate: paces testsrc in real time, is "
                                                      "requested from a camera, and is stored for video formats")
    p.add_argument("--quality", type=int, help="encoder quality (video: codec specific, e.g. crf for "
                                               "H.264; jpg: 0-100)")
    p.add_argument("--size", type=parse_size, metavar="WxH", help="frame size (testsrc default 640x480; "
                                                                   "files are scaled; cameras are asked)")
    color = p.add_mutually_exclusive_group()
    color.add_argument("--color", dest="color", action="store_const", const=True,
                       help="store colour (BGR) frames (default for files and cameras)")
    color.add_argument("--grey", "--gray", dest="color", action="store_const", const=False,
                       help="store greyscale frames (default for testsrc)")
    p.add_argument("--start-time", metavar="TIME", help="frame_time of the first frame of a file or the "
                                                        "full-speed testsrc: seconds since the epoch or an ISO "
                                                        "date-time (default: now)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at DEST")
    p.add_argument("--metadata", action="append", metavar="KEY=VALUE", help="user metadata (repeatable)")
    p.add_argument("--view", action="store_true", help="serve the viewer (imgstore-view) on the recording "
                                                       "while it is made; it stops with the recording")
    p.add_argument("--view-port", type=port_number, default=0, metavar="N",
                   help="port of the --view viewer (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="with --view: only print the URL")
    return p


def run(args: argparse.Namespace) -> int:
    """Body of the command."""
    from . import info as info_cmd

    fmt = check_format(args.format or default_format())
    parse_metadata(args.metadata)  # reject bad KEY=VALUE before opening a camera
    check_destination(args.dest, args.overwrite)
    if args.source == "auto":
        args.source = "0" if camera_present(0) else "testsrc"
    if args.source == "testsrc" and args.frames is None and args.duration is None and args.fps is None:
        # a quick demo at full speed; with --fps the pattern runs live until stopped
        args.frames = DEFAULT_TESTSRC_FRAMES
    stop = StopFlag()
    stop.install()
    try:
        source = open_source(args)
        try:
            what = f"recording {source.name} into {args.dest} ({fmt})"
            if source.live and args.frames is None and args.duration is None:
                what += "; press Ctrl-C to stop"
            print(what, flush=True)
            n = record(source, args.dest, fmt, args, stop)
        finally:
            source.close()
    finally:
        stop.restore()
    if stop.signal is not None:
        print(f"stopped after {n} frames ({signal.Signals(stop.signal).name})", flush=True)
    else:
        print(f"recorded {n} frames", flush=True)
    import imgstore

    with imgstore.new_for_filename(args.dest) as store:
        print(info_cmd.format_summary(info_cmd.summarize(store)), flush=True)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run ``imgstore-save``; returns the exit status."""
    return run_command(prog, build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
