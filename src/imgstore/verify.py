"""Check a store frame by frame: is every frame the index lists really there and readable?

:func:`verify` reads every frame (chunks in parallel), compares what the chunk files hold
with the index, and returns a :class:`VerifyReport` listing, per chunk, frames that are

``truncated``
    listed in the index but absent from the end of the chunk's file (a copy cut short, a
    full disk);
``missing``
    absent from the middle of the chunk's file, or its frame file is gone;
``corrupt``
    its stored bytes fail the checksum recorded when they were written (a flipped byte, even
    one a decoder would not notice; stores written by imgstore 0.4 have no checksums);
``unreadable``
    present but not decodable (a damaged file);
``mismatched``
    read, but not what the index says: a different shape or dtype, or frames in the file
    that the index does not list;
``unindexed``
    a chunk whose index cannot be read at all (the store skips it when opening).

Checks are small callables (:class:`ChunkCheck`) run on each chunk in turn; a checksum
check is one more of them. ``imgstore-verify`` is the command-line face of this module and
``store.verify()`` can delegate to :func:`verify`.

:func:`quick_check` is the cheap part (no decoding; one seek per video chunk) that
``imgstore-info`` reports.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from .errors import ChunkCorruptError
from .factory import new_for_filename

__all__ = [
    "DEFAULT_CHECKS",
    "ChunkCheck",
    "ChunkReport",
    "ChunkSpan",
    "Problem",
    "ReadFramesCheck",
    "VerifyReport",
    "chunk_spans",
    "quick_check",
    "verify",
    "video_packet_pts",
]

#: problem kinds, most serious first
KINDS = ("unindexed", "truncated", "missing", "corrupt", "unreadable", "mismatched")


@dataclasses.dataclass
class Problem:
    """A run of consecutive frames of one chunk with the same defect.

    ``first``/``last`` are frame_index values (inclusive); ``None`` for a problem of the
    chunk as a whole (an unreadable index, frames in the file the index does not list).
    """

    kind: str
    chunk: int | None
    first: int | None
    last: int | None
    frame_number_first: int | None
    frame_number_last: int | None
    detail: str

    @property
    def frames(self) -> int:
        """How many indexed frames the problem covers."""
        return 0 if self.first is None or self.last is None else self.last - self.first + 1

    def __str__(self) -> str:
        if self.first is None:
            return f"{self.kind}: {self.detail}"
        if self.first == self.last:
            where = f"frame_index {self.first} (frame_number {self.frame_number_first})"
        else:
            where = (f"frame_index {self.first}-{self.last} (frame_number {self.frame_number_first}-"
                     f"{self.frame_number_last}; {self.frames} frames)")
        return f"{self.kind}: {where}: {self.detail}"


@dataclasses.dataclass
class ChunkSpan:
    """Where a chunk's frames are: frame_index ``start`` .. ``stop - 1`` of the store.

    ``pts`` holds the presentation time of each frame in a video chunk's file (None for
    directory chunks and video indexes without it); ``payload`` the video file or the
    chunk's folder.
    """

    chunk: int
    start: int
    stop: int
    payload: str
    pts: np.ndarray | None = None

    def __len__(self) -> int:
        return self.stop - self.start


@dataclasses.dataclass
class ChunkReport:
    """What verifying one chunk found."""

    chunk: int
    start: int
    stop: int
    problems: list[Problem] = dataclasses.field(default_factory=list)
    #: frames of the chunk read back without error
    frames_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclasses.dataclass
class VerifyReport:
    """The result of :func:`verify`: one :class:`ChunkReport` per chunk."""

    path: str
    frame_count: int
    chunks: list[ChunkReport]
    checks: list[str]

    @property
    def problems(self) -> list[Problem]:
        """Every problem, in store order."""
        return [p for c in self.chunks for p in c.problems]

    @property
    def ok(self) -> bool:
        """True when no check found anything."""
        return not self.problems

    @property
    def damaged_frames(self) -> int:
        """Indexed frames with a problem (each counted once)."""
        bad: set[int] = set()
        for p in self.problems:
            if p.first is not None and p.last is not None:
                bad.update(range(p.first, p.last + 1))
        return len(bad)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (for ``imgstore-verify --json``)."""
        return {"path": self.path, "ok": self.ok, "frame_count": self.frame_count,
                "damaged_frames": self.damaged_frames, "checks": list(self.checks),
                "chunks": [{"chunk": c.chunk, "frame_index_start": c.start, "frame_index_stop": c.stop,
                            "frames_read": c.frames_read, "ok": c.ok,
                            "problems": [{**dataclasses.asdict(p), "frames": p.frames} for p in c.problems]}
                           for c in self.chunks]}

    def __str__(self) -> str:
        lines = []
        for c in self.chunks:
            for p in c.problems:
                lines.append(f"chunk {c.chunk}: {p}" if c.chunk >= 0 else str(p))
        bad_chunks = sum(1 for c in self.chunks if not c.ok)
        if self.ok:
            lines.append(f"ok: all {self.frame_count} frames in {len(self.chunks)} chunk"
                         f"{'s' * (len(self.chunks) != 1)} read back as indexed")
        else:
            lines.append(f"DAMAGED: {bad_chunks} of {len(self.chunks)} chunks; {self.damaged_frames} of "
                         f"{self.frame_count} indexed frames")
        return "\n".join(lines)


class ChunkCheck(Protocol):
    """One check of one chunk: appends problems to ``report``; ``progress(k)`` after k frames."""

    name: str

    def __call__(self, store, span: ChunkSpan, report: ChunkReport, progress: Callable[[int], None]) -> None:
        ...


# ---------------------------------------------------------------------- chunk layout

def _is_video(store) -> bool:
    # video backends keep each frame's pts in the chunk index (for exact seeking)
    return "pts" in dict(type(store).backend_class.journal_fields)


def chunk_spans(store) -> list[ChunkSpan]:
    """Each chunk's frame_index range (from the chunk indexes, checked against the store's frames).

    When the chunk indexes do not add up to the store's frames (a chunk damaged beyond
    reading), the whole store is one span with chunk number -1, so every frame is still read.
    """
    video = _is_video(store)
    fns = np.asarray(store.frame_numbers)
    spans: list[ChunkSpan] = []
    start = 0
    consistent = True
    for chunk in sorted(store.chunks):
        try:
            table = store.read_chunk_table(chunk, ("frame_number", "frame_time", "pts") if video else ("frame_number",))
        except Exception:
            table = None
        if table is None:
            continue
        count = len(table["frame_number"])
        if not np.array_equal(fns[start:start + count], table["frame_number"]):
            consistent = False
            break
        pts = table.get("pts") if video else None
        if pts is not None and len(pts) != count:
            pts = None
        payload = store.chunk_payload_path(chunk)
        spans.append(ChunkSpan(chunk, start, start + count, payload, None if pts is None else np.asarray(pts)))
        start += count
    if not consistent or start != len(fns):
        return [ChunkSpan(-1, 0, len(fns), store.filename)]
    return spans


def video_packet_pts(path: str) -> tuple[np.ndarray, str | None]:
    """The pts of every packet of a video file's first video stream (demuxed, not decoded).

    Returns
    -------
    pts, error
        The packets' pts, and the demuxer's error if it stopped before the end of the file.
    """
    import av

    found: list[int] = []
    error = None
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:  # size 0: the demuxer's end marker
                    found.append(int(packet.pts))
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        error = str(exc) or type(exc).__name__
    return np.asarray(found, dtype=np.int64), error


def _video_has_pts(path: str, pts: int) -> bool | None:
    """Whether the video file holds a packet with ``pts`` (one seek; None when it cannot tell)."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            container.seek(int(pts), stream=stream, backward=True, any_frame=False)
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size and packet.pts >= pts:
                    return packet.pts == pts
            return False
    except (av.error.FFmpegError, IndexError, OSError):
        return False
    except Exception:
        return None


def quick_check(store, max_chunks: int | None = None) -> list[str]:
    """Cheap signs of damage, without decoding: what ``imgstore-info`` reports.

    Per video chunk: the file exists and holds the last frame the index lists (one seek);
    per directory chunk: as many frame files as indexed frames. Chunks the store could not
    index are listed too.

    Parameters
    ----------
    store
        A store opened for reading.
    max_chunks
        Look at the last ``max_chunks`` chunks only (None: all).

    Returns
    -------
    list of str
        One line per suspicious chunk (empty: nothing seen; only ``imgstore-verify`` is sure).
    """
    notes = [f"chunk {c}: {why}" for c, why in sorted(getattr(store, "damaged_chunks", {}).items())]
    spans = chunk_spans(store)
    if max_chunks is not None:
        spans = spans[-max_chunks:]
    for span in spans:
        if span.chunk < 0 or not len(span):
            continue
        if _is_video(store):
            if not store.storage.exists(span.payload):
                notes.append(f"chunk {span.chunk}: video file {span.payload} is missing")
            elif span.pts is not None and _video_has_pts(span.payload, int(span.pts.max())) is False:
                notes.append(f"chunk {span.chunk}: the video file ends before the last of its {len(span)} "
                             f"indexed frames (truncated?)")
        else:
            try:
                files = sum(1 for e in store.storage.list_dir(span.payload)
                            if e.is_file and not e.name.startswith(("index", ".")) and "." in e.name
                            and e.name.split(".", 1)[0].isdigit())
            except OSError:
                notes.append(f"chunk {span.chunk}: folder {span.payload} cannot be read")
                continue
            if files < len(span):
                notes.append(f"chunk {span.chunk}: {files} frame files for {len(span)} indexed frames")
    return notes


# ---------------------------------------------------------------------- checks

def _runs(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted frame indices -> ``[(first, last), ...]`` runs of consecutive values."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


class ReadFramesCheck:
    """Read every frame of the chunk through the store; for video, first compare the file's packets with the index.

    Frames whose packet is not in the video file are reported as ``truncated`` (at the end)
    or ``missing`` and are not decoded (that would fail slowly, one seek each).
    """

    name = "read"

    def __call__(self, store, span: ChunkSpan, report: ChunkReport, progress: Callable[[int], None]) -> None:
        fns = store.frame_numbers
        absent: set[int] = set()
        if span.pts is not None and span.chunk >= 0:
            packet_pts, demux_error = video_packet_pts(span.payload)
            in_file = np.isin(span.pts, packet_pts)
            absent = {span.start + int(k) for k in np.flatnonzero(~in_file)}
            if absent:
                last_in_file = int(packet_pts.max()) if len(packet_pts) else None
                for first, last in _runs(sorted(absent)):
                    tail = last_in_file is None or bool((span.pts[first - span.start:last - span.start + 1]
                                                         > last_in_file).all())
                    why = "not in the video file" + (f" (the demuxer stopped: {demux_error})" if demux_error else "")
                    report.problems.append(Problem("truncated" if tail else "missing", span.chunk, first, last,
                                                   int(fns[first]), int(fns[last]), why))
            unlisted = np.setdiff1d(packet_pts, span.pts)
            if len(unlisted):
                report.problems.append(Problem("mismatched", span.chunk, None, None, None, None,
                                               f"{len(unlisted)} frames in {span.payload} are not in the index"))
            progress(len(absent))
        shape = tuple(store.image_shape)
        dtype = np.dtype(store.image_dtype)
        errors: dict[int, str] = {}
        corrupt: dict[int, str] = {}
        mismatched: dict[int, str] = {}
        done = 0
        for i in range(span.start, span.stop):
            if i in absent:
                continue
            try:
                img = store[i]
            except _Cancelled:
                raise
            except ChunkCorruptError as exc:
                corrupt[i] = _one_line(exc)
            except Exception as exc:
                errors[i] = _one_line(exc)
            else:
                report.frames_read += 1
                if img.shape != shape or img.dtype != dtype:
                    mismatched[i] = f"read as {img.shape} {img.dtype}, the store says {shape} {dtype}"
            done += 1
            if done == 50:
                progress(done)
                done = 0
        progress(done)
        for kind, found in (("corrupt", corrupt), ("unreadable", errors), ("mismatched", mismatched)):
            for first, last in _runs(sorted(found)):
                report.problems.append(Problem(kind, span.chunk, first, last, int(fns[first]), int(fns[last]),
                                               found[first]))


class _Cancelled(Exception):
    """Raised in a worker after the main thread was interrupted."""


def _one_line(exc: BaseException) -> str:
    return " ".join((str(exc) or type(exc).__name__).split())


#: what :func:`verify` runs on every chunk, in order
DEFAULT_CHECKS: tuple[ChunkCheck, ...] = (ReadFramesCheck(),)


# ---------------------------------------------------------------------- verify

def verify(store_or_path, checks: Sequence[ChunkCheck] | None = None, workers: int | None = None,
           progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Read every frame of a store and compare its chunks with the index.

    Parameters
    ----------
    store_or_path
        A store opened for reading, or its path.
    checks
        The checks to run on every chunk (default :data:`DEFAULT_CHECKS`).
    workers
        Chunks checked at the same time, each by its own reader (default: the CPU count, at most 8).
    progress
        Called with the number of frames just checked (from worker threads).

    Returns
    -------
    VerifyReport
    """
    checks = list(DEFAULT_CHECKS if checks is None else checks)
    own = not hasattr(store_or_path, "frame_numbers")
    store = new_for_filename(store_or_path) if own else store_or_path
    try:
        path = store.filename
        spans = chunk_spans(store)
        reports = {span.chunk: ChunkReport(span.chunk, span.start, span.stop) for span in spans}
        for chunk, why in sorted(getattr(store, "damaged_chunks", {}).items()):
            reports.setdefault(chunk, ChunkReport(chunk, 0, 0)).problems.append(
                Problem("unindexed", chunk, None, None, None, None, f"{why} (its frames are not in the index)"))
        workers = max(1, min(workers or min(os.cpu_count() or 1, 8), len(spans) or 1))
        local = threading.local()
        readers: list = []
        lock = threading.Lock()
        cancelled = threading.Event()

        def tick(k: int) -> None:
            # checks report progress every few frames: the place to stop them after Ctrl-C
            if cancelled.is_set():
                raise _Cancelled
            if progress is not None:
                progress(k)

        def reader():
            # readers are not thread-safe: one per worker thread, opened once
            if not hasattr(local, "store"):
                local.store = new_for_filename(path)
                with lock:
                    readers.append(local.store)
            return local.store

        def run(span: ChunkSpan) -> None:
            s = reader() if workers > 1 else store
            for check in checks:
                check(s, span, reports[span.chunk], tick)

        try:
            if workers == 1:
                for span in spans:
                    run(span)
            else:
                pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="imgstore-verify")
                try:
                    # the biggest chunks first, so one long chunk does not finish alone at the end
                    for fut in [pool.submit(run, sp) for sp in sorted(spans, key=len, reverse=True)]:
                        fut.result()
                except BaseException:
                    cancelled.set()
                    raise
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
        finally:
            for r in readers:
                r.close()
        ordered = [reports[k] for k in sorted(reports)]
        return VerifyReport(path, len(store), ordered, [getattr(c, "name", type(c).__name__) for c in checks])
    finally:
        if own:
            store.close()
