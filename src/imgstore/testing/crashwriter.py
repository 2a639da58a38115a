"""A writer process for crash tests: records barcode frames and reports each one on stdout.

``python -m imgstore.testing.crashwriter DEST FORMAT [--chunksize N] [--frames N] [--fps F] ...``

After every ``add_image`` that returned it prints ``frame <frame_number> <monotonic time>``
(and ``extra <frame_number> <monotonic time>`` after each ``add_extra_data``), flushing stdout,
so a test can kill it at a known point without sleeping. Frame ``n`` is
``make_frame(n, height, width)`` with frame_time ``1_700_000_000 + n / 30`` and extra data
``{"value": n * 0.5, "tag": "t<n>", "k": <0..burst-1>}``.

Options for crash tests that need more than frame boundaries:

``--report-chunks``
    also print ``chunk <n>`` once chunk ``n`` is closed (its files are final from then on,
    so the test can checksum them and later prove a crash did not touch them).
``--stop-at POINT[:N]``
    the N-th time (default 1) the writer reaches POINT, print ``at <POINT> <N>`` and block
    forever, so the test can SIGKILL it exactly there. POINTs (see :data:`STOP_POINTS`) lie
    inside ``add_image``, a chunk change and ``add_extra_data``.
``--step``
    write frames only when told: before a frame, if none is left to write, read a line with
    a number N from stdin and write N more frames (N = 0 or end of input: close the store);
    a test can so hold the writer still at a known frame count without sleeping.
``--extra-burst K``
    call ``add_extra_data`` K times after each frame that gets extra data, ``--extra-bytes B``
    makes each record B characters longer: a random kill then often lands inside
    ``add_extra_data``.
``--schedule KIND:SEED``
    pace frames by a seeded random schedule instead of a fixed ``--fps`` (see
    :func:`schedule`): ``low`` (0.2-2 frames/s), ``bursty`` (bursts at 50-1000 frames/s,
    pauses of 0.3-3 s), ``mixed`` (10-120 frames/s with pauses of 1.2-4 s). Frames are
    written at deadlines from the start (the writer's own pacing; tests never rely on it).
``--time-gaps``
    frame times with long gaps: 8 hours before every 7th frame and 30 days before every
    13th (see :func:`frame_time`), as overnight pauses and idle weeks.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import imgstore
from imgstore import ondisk
from imgstore.backends.base import ImgStore
from imgstore.backends.writing import WriteSession
from imgstore.testing.barcode import make_frame

#: where ``--stop-at`` can stop the writer, and what is then on disk
STOP_POINTS = {
    "frame-written": "the frame's payload is written, its journal record is not",
    "frame-journaled": "the frame's journal record is written, add_image has not returned",
    "chunk-closing": "a chunk is about to be closed (a rollover or close() begins)",
    "index-written": "the closing chunk's index is written; its extra data and journal are not finalised",
    "extra-finalized": "the closing chunk's .extra.json is written; its journal still exists",
    "journal-removed": "the closing chunk's journal is removed; the next chunk is not open yet",
    "chunk-created": "the next chunk's payload (folder or video file) exists, its journal does not",
    "extra-written": "an extra-data record is on disk, add_extra_data has not returned",
    "partial-written": "a temporary '.partial' file is complete, not yet renamed into place",
}

FRAME_TIME_0 = 1_700_000_000.0
#: ``--time-gaps``: (every, first, seconds): a gap of `seconds` before frames first, first + every, ...
TIME_GAPS = ((7, 3, 8 * 3600.0), (13, 5, 30 * 86400.0))
#: ``--schedule`` kinds
SCHEDULES = ("low", "bursty", "mixed")


def frame_time(frame_number: int, gaps: bool = False) -> float:
    """The frame_time the writer gives frame ``frame_number`` (``gaps``: with ``--time-gaps``)."""
    t = FRAME_TIME_0 + frame_number / 30.0
    if gaps:
        for every, first, seconds in TIME_GAPS:
            if frame_number >= first:
                t += seconds * ((frame_number - first) // every + 1)
    return t


def schedule(spec: str) -> Iterator[float]:
    """Seconds between successive frames for ``--schedule KIND:SEED`` (endless, reproducible)."""
    kind, _, seed = spec.partition(":")
    if kind not in SCHEDULES:
        raise SystemExit(f"unknown schedule {kind!r}; choose from {SCHEDULES}")
    rng = random.Random(f"{kind}:{seed}")
    while True:
        if kind == "low":  # a slowly triggered camera, 0.2-2 frames/s
            yield rng.uniform(0.5, 5.0)
        elif kind == "bursty":  # bursts of 3-80 frames at 50-1000 frames/s, then a pause
            step = 1.0 / rng.uniform(50, 1000)
            yield from (step for _ in range(rng.randint(3, 80)))
            yield rng.uniform(0.3, 3.0)
        else:  # a steady camera at 10-120 frames/s for 0.3-3 s, then a pause
            step = 1.0 / rng.uniform(10, 120)
            yield from (step for _ in range(max(1, int(rng.uniform(0.3, 3.0) / step))))
            yield rng.uniform(1.2, 4.0)


class _Stopper:
    """Counts passes through the stop points; blocks at the chosen one."""

    def __init__(self, spec: str | None) -> None:
        self.point, self.nth = None, 1
        if spec:
            point, _, nth = spec.partition(":")
            if point not in STOP_POINTS:
                raise SystemExit(f"unknown stop point {point!r}; choose from {sorted(STOP_POINTS)}")
            self.point, self.nth = point, int(nth or 1)
        self.counts: dict[str, int] = {}

    def __call__(self, point: str) -> None:
        count = self.counts[point] = self.counts.get(point, 0) + 1
        if point == self.point and count == self.nth:
            sys.stdout.write(f"at {point} {count}\n")
            sys.stdout.flush()
            while True:  # wait for the SIGKILL
                signal.pause()


def _after(func: Callable, hook: Callable[[], None]) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        hook()
        return result

    return wrapper


def _before(func: Callable, hook: Callable[[], None]) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hook()
        return func(*args, **kwargs)

    return wrapper


def _instrument_library(stop: _Stopper) -> None:
    """Hook the stop points into the library (this process only)."""
    ondisk.write_chunk_index = _after(ondisk.write_chunk_index, lambda: stop("index-written"))
    # methods patched with setattr: this harness instruments the classes of this process only
    setattr(ondisk.ExtraDataWriter, "finalize",  # noqa: B010
            _after(ondisk.ExtraDataWriter.finalize, lambda: stop("extra-finalized")))
    setattr(ondisk.ExtraDataWriter, "append", _after(ondisk.ExtraDataWriter.append,  # noqa: B010
                                                     lambda: stop("extra-written")))
    # a frame's journal record is appended right after its payload was written
    setattr(ondisk.ChunkJournal, "append",  # noqa: B010
            _after(_before(ondisk.ChunkJournal.append, lambda: stop("frame-written")), lambda: stop("frame-journaled")))
    close = ondisk.ChunkJournal.close

    def journal_close(self, remove: bool = False) -> None:
        close(self, remove=remove)
        if remove:
            stop("journal-removed")

    setattr(ondisk.ChunkJournal, "close", journal_close)  # noqa: B010
    setattr(WriteSession, "finish_chunk", _before(WriteSession.finish_chunk, lambda: stop("chunk-closing")))  # noqa: B010
    # atomic_write renames its finished temporary file with os.replace
    os.replace = _before(os.replace, lambda: stop("partial-written"))


def _instrument_store(store: ImgStore, stop: _Stopper) -> None:
    # after the store's first chunk exists: the next chunk's creation is the one stopped at
    backend = type(store).backend_class
    setattr(backend, "open_chunk_writer", _after(backend.open_chunk_writer, lambda: stop("chunk-created")))  # noqa: B010


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dest")
    p.add_argument("format")
    p.add_argument("--chunksize", type=int, default=10)
    p.add_argument("--frames", type=int, default=10**9)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--color", action="store_true")
    p.add_argument("--extra-every", type=int, default=3)
    p.add_argument("--extra-burst", type=int, default=1, help="add_extra_data calls per frame with extra data")
    p.add_argument("--extra-bytes", type=int, default=0, help="make each extra record this much longer")
    p.add_argument("--fps", type=float, default=0.0, help="pace frames at this rate (0: as fast as possible)")
    p.add_argument("--schedule", metavar="KIND:SEED", help=f"pace frames by a random schedule: {', '.join(SCHEDULES)}")
    p.add_argument("--time-gaps", action="store_true", help="frame times with gaps of 8 hours and 30 days")
    p.add_argument("--report-chunks", action="store_true", help="print 'chunk N' when chunk N is closed")
    p.add_argument("--stop-at", metavar="POINT[:N]", help=f"block at a point: {', '.join(STOP_POINTS)}")
    p.add_argument("--step", action="store_true", help="write the number of frames read from stdin, line by line")
    args = p.parse_args(argv)

    stop = _Stopper(args.stop_at)
    if stop.point:
        _instrument_library(stop)
    shape = (args.height, args.width, 3) if args.color else (args.height, args.width)
    frames = [make_frame(i, args.height, args.width, color=args.color) for i in range(64)]
    options: dict[str, Any] = {"fps": args.fps or 30.0} if "/" in args.format or args.format == "mjpeg" else {}
    store = imgstore.new_for_format(args.format, basedir=args.dest, imgshape=shape, chunksize=args.chunksize,
                                    **options)
    if stop.point:
        _instrument_store(store, stop)
    padding = "x" * args.extra_bytes
    closed = 0
    t0 = time.monotonic()
    budget = 0
    intervals = schedule(args.schedule) if args.schedule else None
    due = t0
    for fn in range(args.frames):
        if args.step and budget == 0:
            line = sys.stdin.readline()
            budget = int(line) if line.strip() else 0
            if budget <= 0:
                break
        budget -= 1
        if intervals is not None or args.fps:
            # pacing by a deadline, not a sleep-for-sync: the reader never relies on it
            due = due + next(intervals) if intervals is not None and fn else t0 + fn / (args.fps or 1.0)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        img = frames[fn % 64] if fn < 64 else make_frame(fn, args.height, args.width, color=args.color)
        store.add_image(img, fn, frame_time(fn, args.time_gaps))
        sys.stdout.write(f"frame {fn} {time.monotonic():.6f}\n")
        if args.report_chunks:
            while closed < len(store.chunks):
                sys.stdout.write(f"chunk {store.chunks[closed]}\n")
                closed += 1
        if args.extra_every and fn % args.extra_every == 0:
            for k in range(args.extra_burst):
                record = {"value": fn * 0.5, "tag": f"t{fn}", "k": k}
                if padding:
                    record["pad"] = padding
                store.add_extra_data(**record)
                sys.stdout.write(f"extra {fn} {time.monotonic():.6f}\n")
        sys.stdout.flush()
    store.close()
    sys.stdout.write("closed\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
