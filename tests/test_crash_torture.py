"""Crash torture: a writer SIGKILLed at random moments and at chosen points loses nothing it promised.

Each trial runs :mod:`imgstore.testing.crashwriter` in a subprocess and kills it (SIGKILL)
either at a random moment (after a random frame, plus a random delay) or exactly at a stop
point inside ``add_image``, a chunk change, ``add_extra_data`` or ``close``. Then:

* the store opens read-only, without any repair step, with no damaged chunk, and opening it
  changes no file;
* every frame whose ``add_image`` returned more than a second before the kill (for
  directory formats: every frame whose ``add_image`` returned) is there, exact (bit-exact
  for lossless formats, barcode for lossy ones), with its frame_number and frame_time, and
  no other frame is (no wrong frame);
* extra data added before then reads back, and nothing else does;
* every chunk closed before the kill is byte-identical to when it was closed;
* ``imgstore.repair`` finalises the store: no journal, temporary file or lock is left, it
  opens without a warning, with the same frames and extra data.

Wall-clock trials pace the writer like a slowly triggered or bursty camera, with pauses
(``crashwriter --schedule``), some with frame times hours and days apart (``--time-gaps``),
and kill it at a random wall-clock moment: every frame acknowledged more than a second
before the kill must be there, however long ago the previous frame came.

The default run is short (CI). ``--runslow`` runs the long one: ``IMGSTORE_TORTURE_TRIALS``
trials per format (default 40 for directory formats, 24 for video), seeded by
``IMGSTORE_TORTURE_SEED``, and ``IMGSTORE_TORTURE_WALLCLOCK_TRIALS`` wall-clock trials per
format (default 15); their figures are printed (``pytest -s``) and written as JSON to
``IMGSTORE_TORTURE_REPORT`` when that is set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import imgstore
from imgstore import ondisk
from imgstore.repair import repair
from imgstore.testing.barcode import make_frame, read_barcode
from imgstore.testing.crashwriter import STOP_POINTS, frame_time

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

DIRECTORY_FORMATS = ["npy", "png", "jpg"]
VIDEO_FORMATS = ["mjpeg/avi", "avc1/mp4", "h264/mkv", "ffv1/mkv", "hevc/mp4", "h264-lossless/mkv"]
HEIGHT, WIDTH = 96, 128
#: the guarantee for video: frames whose add_image returned this long before the kill survive
VIDEO_GRACE_S = 1.0
#: a writer that has not been killed after this long is hung (a bug): it is killed and the trial fails
WATCHDOG_S = 120.0


def torture_formats() -> list[str]:
    """The directory formats, plus each video format this installation lists.

    ``IMGSTORE_TORTURE_FORMATS=npy,h264/mkv`` picks formats instead (for a long run of one format).
    """
    chosen = os.environ.get("IMGSTORE_TORTURE_FORMATS")
    if chosen:
        return [f.strip() for f in chosen.split(",") if f.strip()]
    try:
        supported = set(imgstore.get_supported_formats())
    except Exception:  # the video layer cannot be loaded: directory formats still work
        supported = set()
    return DIRECTORY_FORMATS + [f for f in VIDEO_FORMATS if f in supported]


def is_video(fmt: str) -> bool:
    return fmt not in DIRECTORY_FORMATS


@dataclasses.dataclass
class WriterPlan:
    """How a trial's writer runs and when it dies."""

    fmt: str
    seed: int
    kind: str  # 'random', 'stop' or 'close'
    chunksize: int
    extra_every: int = 2
    extra_burst: int = 2
    extra_bytes: int = 0
    fps: float = 0.0
    frames: int | None = None
    stop_at: str | None = None
    kill_after_frame: int | None = None  # random kills: after this frame is reported ...
    kill_delay: float = 0.0  # ... and this many more seconds
    schedule: str | None = None  # wall-clock trials: the writer's pacing (crashwriter --schedule) ...
    kill_at: float | None = None  # ... and the kill, this many seconds after its first frame
    gaps: bool = False  # frame times with gaps of hours and days (crashwriter --time-gaps)

    def argv(self, dest: str) -> list[str]:
        args = [sys.executable, "-m", "imgstore.testing.crashwriter", dest, self.fmt, "--chunksize",
                str(self.chunksize), "--height", str(HEIGHT), "--width", str(WIDTH), "--extra-every",
                str(self.extra_every), "--extra-burst", str(self.extra_burst), "--extra-bytes",
                str(self.extra_bytes), "--report-chunks"]
        if self.fps:
            args += ["--fps", str(self.fps)]
        if self.frames is not None:
            args += ["--frames", str(self.frames)]
        if self.stop_at:
            args += ["--stop-at", self.stop_at]
        if self.schedule:
            args += ["--schedule", self.schedule]
        if self.gaps:
            args += ["--time-gaps"]
        return args

    def describe(self) -> str:
        if self.kind == "wallclock":
            what = f"{self.schedule}{' with time gaps' if self.gaps else ''}, killed {self.kill_at:.3f}s in"
        else:
            what = self.stop_at if self.kind != "random" else \
                f"after frame {self.kill_after_frame} + {self.kill_delay:.4f}s"
        return f"{self.fmt} seed={self.seed} {self.kind}: {what}"


@dataclasses.dataclass
class Crash:
    """What the writer reported before it was killed."""

    frames: list[tuple[int, float]]  # (frame_number, monotonic time add_image returned)
    extras: list[tuple[int, float]]  # (frame_number, monotonic time add_extra_data returned)
    chunk_hashes: dict[int, dict[str, str]]  # closed chunk -> {relative path: sha256}
    t_kill: float
    stopped_at: str | None
    stderr: str


def expected_extras(plan: WriterPlan, n: int) -> list[tuple[int, int]]:
    """The first ``n`` (frame_number, k) pairs the writer adds as extra data, in order."""
    out, fn = [], 0
    while len(out) < n:
        if fn % plan.extra_every == 0:
            out += [(fn, k) for k in range(plan.extra_burst)]
        fn += 1
    return out[:n]


def chunk_files(dest: str, fmt: str, chunk_n: int) -> dict[str, str]:
    """sha256 of every file of chunk ``chunk_n`` (its folder, or its video, index and extra data)."""
    name = ondisk.chunk_name(chunk_n)
    out = {}
    if is_video(fmt):
        paths = [os.path.join(dest, f) for f in os.listdir(dest) if f.startswith(name + ".")]
    else:
        folder = os.path.join(dest, name)
        paths = [os.path.join(folder, f) for f in os.listdir(folder)]
    for p in paths:
        with open(p, "rb") as f:
            out[os.path.relpath(p, dest)] = hashlib.sha256(f.read()).hexdigest()
    return out


def listing(dest: str) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file in the store."""
    out = {}
    for root, _, files in os.walk(dest):
        for f in files:
            st = os.stat(os.path.join(root, f))
            out[os.path.relpath(os.path.join(root, f), dest)] = (st.st_size, st.st_mtime_ns)
    return out


def run_and_kill(dest: str, plan: WriterPlan) -> Crash:
    """Run the writer for ``plan`` and SIGKILL it as planned."""
    err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in the finally below, after the kill
    proc = subprocess.Popen(plan.argv(dest), stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                            text=True)
    watchdog = threading.Timer(WATCHDOG_S, proc.kill)
    watchdog.start()
    frames, extras, hashes = [], [], {}
    stopped_at, t_kill = None, None
    killed_at: list[float] = []  # a wall-clock kill, from the timer's thread

    def kill_now() -> None:
        killed_at.append(time.monotonic())
        os.kill(proc.pid, signal.SIGKILL)

    timer = None
    try:
        # after the kill, the lines still in the pipe are read too: the writer printed them
        # before it died, so their frames are promised as well
        for line in proc.stdout:
            kind, *rest = line.split()
            if kind == "frame":
                frames.append((int(rest[0]), float(rest[1])))
                if plan.kill_at is not None and timer is None:
                    # a random wall-clock moment after the first frame (randomness, not synchronisation)
                    timer = threading.Timer(plan.kill_at, kill_now)
                    timer.start()
            elif kind == "extra":
                extras.append((int(rest[0]), float(rest[1])))
            elif kind == "chunk" and t_kill is None and not killed_at:
                # closed: its files are final from now on
                chunk_n = int(rest[0])
                hashes[chunk_n] = chunk_files(dest, plan.fmt, chunk_n)
            elif kind == "at":
                stopped_at = " ".join(rest)
            if t_kill is None and (kind == "at" or (kind == "frame" and plan.kind == "random"
                                                    and frames[-1][0] == plan.kill_after_frame)):
                if plan.kill_delay:
                    # a random moment after a known point (randomness, not synchronisation)
                    time.sleep(plan.kill_delay)
                t_kill = time.monotonic()
                os.kill(proc.pid, signal.SIGKILL)
    finally:
        watchdog.cancel()
        if timer is not None:
            timer.join()
        if t_kill is None:
            t_kill = killed_at[0] if killed_at else time.monotonic()
        proc.kill()
        proc.wait()
        proc.stdout.close()
        err.seek(0)
        stderr = err.read()
        err.close()
    assert proc.returncode == -signal.SIGKILL, f"{plan.describe()}: writer ended with {proc.returncode}:\n{stderr}"
    assert t_kill is not None
    return Crash(frames, extras, hashes, t_kill, stopped_at, stderr)


@dataclasses.dataclass
class TrialResult:
    """The figures of one trial."""

    plan: str
    kind: str
    reported: int
    recovered: int
    lost: int
    allowed_loss: int
    closed_chunks: int
    damaged_chunks: int
    open_failed: bool
    extras_reported: int
    extras_recovered: int
    repaired_chunks: int
    #: seconds between the kill and the moment the oldest lost frame had been acknowledged
    lost_seconds: float = 0.0
    chunks: int = 0


def check_frames(store, fmt: str, m: int, lossless: bool, gaps: bool = False) -> None:
    """The store holds exactly frames 0..m-1, each exact, with the writer's frame_time."""
    np.testing.assert_array_equal(store.frame_numbers, np.arange(m))
    np.testing.assert_array_equal(store.frame_times, [frame_time(i, gaps) for i in range(m)])
    for i in range(m):
        img, (fn, ft) = store.get_image(None, frame_index=i)
        assert fn == i and ft == frame_time(i, gaps)
        if lossless:
            np.testing.assert_array_equal(img, make_frame(i, HEIGHT, WIDTH), err_msg=f"{fmt} frame {i}")
        else:
            assert read_barcode(img) == i, f"{fmt}: frame_index {i} shows frame {read_barcode(img)}"


def check_extras(store, plan: WriterPlan) -> list[tuple[int, int]]:
    """Extra data is a prefix of what the writer added, with the right values; returns its keys."""
    with warnings.catch_warnings():
        # records added with frames the encoder still held are left out, with a warning
        warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
        df = store.get_extra_data()
    if df is None:
        return []
    got = list(zip(df["frame_number"].astype(int), df["k"].astype(int), strict=False))
    assert got == expected_extras(plan, len(got)), f"extra data out of order or unknown: {got}"
    for fn, rec in zip(df["frame_number"], df.to_dict("records"), strict=False):
        assert rec["value"] == fn * 0.5 and rec["tag"] == f"t{fn}"
        assert rec["frame_time"] == frame_time(fn, plan.gaps) and rec["frame_index"] == fn
    return got


#: the checks of trials run side by side take turns: warning filters are process-wide, so one
#: trial's ``catch_warnings`` would undo another's
_CHECKS = threading.Lock()


def trial(root: str, plan: WriterPlan) -> TrialResult:
    """Run one trial and assert every guarantee; return its figures."""
    dest = os.path.join(root, f"{plan.fmt.replace('/', '_')}-{plan.seed}")
    crash = run_and_kill(dest, plan)
    with _CHECKS:
        return check_trial(dest, plan, crash)


def check_trial(dest: str, plan: WriterPlan, crash: Crash) -> TrialResult:
    """Assert every guarantee on a killed writer's store; return the trial's figures."""
    ctx = plan.describe()
    if plan.kind in ("stop", "close"):
        assert crash.stopped_at is not None, f"{ctx}: the writer never reached the stop point"
    video = is_video(plan.fmt)
    reported = len(crash.frames)
    # what must survive: directory stores keep every frame whose add_image returned; video may
    # lose what its encoder still held, but nothing returned more than VIDEO_GRACE_S before the kill
    deadline = crash.t_kill - VIDEO_GRACE_S if video else float("inf")
    must_frames = sum(1 for _, t in crash.frames if t <= deadline)
    must_extras = sum(1 for _, t in crash.extras if t <= deadline)

    # 1. closed chunks were not touched by the crash
    for chunk_n, hashes in crash.chunk_hashes.items():
        assert chunk_files(dest, plan.fmt, chunk_n) == hashes, f"{ctx}: closed chunk {chunk_n} changed"

    # 2. the store opens read-only as it is, and reading changes nothing
    before = {k: v for k, v in listing(dest).items() if k != ".imgstore-index.cache"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
        store = imgstore.new_for_filename(dest)
    with store:
        assert store.damaged_chunks == {}, f"{ctx}: damaged chunks {store.damaged_chunks}"
        m = store.frame_count
        assert m >= must_frames, f"{ctx}: {m} frames recovered, {must_frames} were promised"
        check_frames(store, plan.fmt, m, store.lossless, plan.gaps)
        extras = check_extras(store, plan)
        assert len(extras) >= must_extras, f"{ctx}: {len(extras)} extra records, {must_extras} promised"
        lossless = store.lossless
    # (a reader may leave the index cache of a big store: an optimisation, see imgstore.index_cache)
    after = {k: v for k, v in listing(dest).items() if k != ".imgstore-index.cache"}
    assert after == before, f"{ctx}: opening the crashed store changed files"

    # 3. repair finalises it; closed chunks are still untouched
    report = repair(dest)
    left = [f for f in listing(dest) if (f.endswith((".journal", ".jsonl", ".partial")) or f == ".lock")
            and not f.startswith("damaged/")]
    assert not left, f"{ctx}: repair left {left}"
    assert not report.left, f"{ctx}: {report.left}"
    # the only thing set aside in a crash: extra data added with frames the video encoder had not written
    assert all(f.endswith((".extra.jsonl", ".extra.json")) for f in report.moved), \
        f"{ctx}: {report.moved} (files before repair: {sorted(before)}; repair: {report.actions})"
    assert not report.moved or m < reported, f"{ctx}: {report.moved} set aside, yet no frame was lost"
    for chunk_n, hashes in crash.chunk_hashes.items():
        assert chunk_files(dest, plan.fmt, chunk_n) == hashes, f"{ctx}: repair changed closed chunk {chunk_n}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a finished store: nothing to recover, nothing to skip
        with imgstore.new_for_filename(dest) as store:
            assert store.frame_count == m == report.frame_count, f"{ctx}: repair changed the frames"
            check_frames(store, plan.fmt, m, lossless, plan.gaps)
            assert check_extras(store, plan) == extras, f"{ctx}: repair changed the extra data"
            chunks = len(store.chunks)
    lost_seconds = max((crash.t_kill - t for _, t in crash.frames[m:]), default=0.0)
    return TrialResult(plan=ctx, kind=plan.kind, reported=reported, recovered=m, lost=max(0, reported - m),
                       allowed_loss=round(plan.fps * VIDEO_GRACE_S) if video and plan.fps else 0,
                       closed_chunks=len(crash.chunk_hashes), damaged_chunks=0, open_failed=False,
                       extras_reported=len(crash.extras), extras_recovered=len(extras),
                       repaired_chunks=len(report.recovered), lost_seconds=round(lost_seconds, 3), chunks=chunks)


# ------------------------------------------------------------------------------ plans

#: stop points and the pass at which to stop (N = 1 is the first rollover for chunk points);
#: 'partial-written' starts at 3 because its first passes create the store itself
_STOP_RANGES = {"frame-written": (1, 30), "frame-journaled": (1, 30), "chunk-closing": (1, 3),
                "index-written": (1, 3), "extra-finalized": (1, 3), "journal-removed": (1, 3),
                "chunk-created": (1, 3), "extra-written": (1, 20), "partial-written": (3, 40)}


def make_plan(fmt: str, seed: int, kind: str, point: str | None = None, short: bool = False) -> WriterPlan:
    """A reproducible plan for a trial of ``kind`` ('random', 'stop' or 'close').

    ``short``: a random video kill comes sooner (CI).
    """
    rng = random.Random(f"{fmt}-{seed}-{kind}-{point}")
    if is_video(fmt):
        # random kills: paced like a camera so "one second of frames" means something (chunks
        # roll over about every 0.5 s; at 120 frames/s hevc keeps its B-frames too); kills at a
        # stop point need no clock and run unpaced
        plan = WriterPlan(fmt, seed, kind, chunksize=rng.choice([20, 30, 40]), extra_every=rng.choice([1, 3]),
                          extra_burst=rng.choice([1, 2]), fps=rng.choice([60.0, 120.0]) if kind == "random" else 0.0)
    else:
        plan = WriterPlan(fmt, seed, kind, chunksize=rng.choice([3, 5, 7, 10]), extra_every=rng.choice([1, 2, 3]),
                          extra_burst=rng.choice([1, 3]), extra_bytes=rng.choice([0, 2000]))
    if kind == "random":
        if is_video(fmt):
            # die 1.3-3 s into the recording, at any moment within a frame interval
            plan.kill_after_frame = rng.randrange(int(1.3 * plan.fps), int((1.6 if short else 3) * plan.fps))
            plan.kill_delay = rng.uniform(0, 1 / plan.fps)
        else:
            plan.kill_after_frame = rng.randrange(0, rng.choice([20, 60, 300]))
            plan.kill_delay = rng.choice([0.0, rng.uniform(0, 0.003), rng.uniform(0, 0.03)])
    elif kind == "stop":
        lo, hi = _STOP_RANGES[point]
        plan.stop_at = f"{point}:{rng.randint(lo, hi)}"
    else:  # die inside close(): its chunk-closing / index-written pass comes after the rollovers
        plan.frames = rng.randrange(plan.chunksize + 1, 4 * plan.chunksize)
        final_pass = plan.frames // plan.chunksize + 1
        point = "index-written" if plan.frames % plan.chunksize and rng.random() < 0.5 else "chunk-closing"
        plan.stop_at = f"{point}:{final_pass}"
    return plan


def wallclock_plan(fmt: str, seed: int, schedule: str, gaps: bool, kill_within: tuple[float, float]) -> WriterPlan:
    """A writer paced by ``schedule`` (crashwriter --schedule), killed at a random wall-clock moment."""
    rng = random.Random(f"{fmt}-{seed}-wallclock-{schedule}-{gaps}")
    plan = WriterPlan(fmt, seed, "wallclock", chunksize=rng.choice([5, 20, 200] if is_video(fmt) else [3, 10]),
                      extra_every=rng.choice([1, 3]), extra_burst=rng.choice([1, 2]),
                      schedule=f"{schedule}:{seed}", gaps=gaps)
    plan.kill_at = rng.uniform(*kill_within)
    return plan


def run_concurrently(root: str, plans: list[WriterPlan], workers: int) -> list[TrialResult]:
    """Run trials side by side (paced writers mostly wait); raise with every failure, named."""
    def one(plan: WriterPlan) -> TrialResult | str:
        try:
            return trial(root, plan)
        except AssertionError as exc:  # its message names the plan
            return str(exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(one, plans))
    failures = [o for o in outcomes if isinstance(o, str)]
    assert not failures, "\n".join(failures)
    return [o for o in outcomes if isinstance(o, TrialResult)]


def long_run_plans(fmt: str, trials: int, seed0: int) -> list[WriterPlan]:
    """``trials`` plans: every stop point once, two kills inside close(), the rest random."""
    points = sorted(STOP_POINTS)
    plans = [make_plan(fmt, seed0 + i, "stop", p) for i, p in enumerate(points)]
    plans += [make_plan(fmt, seed0 + len(plans) + i, "close") for i in range(2)]
    while len(plans) < trials:
        plans.append(make_plan(fmt, seed0 + len(plans), "random"))
    return plans[:max(trials, len(points) + 2)]


# ------------------------------------------------------------------------------ tests

SHORT_STOPS = {"npy": sorted(STOP_POINTS), "png": ["chunk-created", "index-written", "extra-written"],
               "jpg": ["frame-written", "extra-finalized", "partial-written"]}


def _short_cases() -> list:
    cases = []
    for fmt in torture_formats():
        if is_video(fmt):
            cases += [pytest.param(fmt, "random", None, id=f"{fmt}-random"),
                      pytest.param(fmt, "stop", "index-written", id=f"{fmt}-index-written")]
        else:
            cases += [pytest.param(fmt, "random", None, id=f"{fmt}-random"),
                      pytest.param(fmt, "close", None, id=f"{fmt}-close")]
            cases += [pytest.param(fmt, "stop", p, id=f"{fmt}-{p}") for p in SHORT_STOPS[fmt]]
    return cases


@pytest.mark.parametrize("fmt, kind, point", _short_cases())
def test_crash_short(tmp_path, fmt, kind, point):
    """The CI run: each format killed at random and at chosen points."""
    seeds = range(2) if kind == "random" and not is_video(fmt) else range(1)
    for seed in seeds:
        trial(str(tmp_path), make_plan(fmt, seed, kind, point, short=True))


#: the formats of the short wall-clock run: every video format and one directory format
def _wallclock_formats() -> list[str]:
    return [f for f in torture_formats() if is_video(f)] + ["npy"]


@pytest.mark.parametrize("schedule, gaps, kill_within", [("low", False, (3.0, 6.0)), ("bursty", True, (2.0, 5.0))],
                         ids=["low-rate", "bursty-with-time-gaps"])
def test_crash_wallclock_short(tmp_path, schedule, gaps, kill_within):
    """The CI run: every format paced slowly or in bursts with pauses, killed at a random moment.

    Before the writer bounded latency in wall time, a 0.5 frames/s writer lost 10-20 s of frames
    and a pause kept 1-20 frames in the encoder or the muxer for as long as it lasted.
    """
    plans = [wallclock_plan(fmt, 0, schedule, gaps, kill_within) for fmt in _wallclock_formats()]
    results = run_concurrently(str(tmp_path), plans, workers=len(plans))
    assert all(r.lost_seconds <= VIDEO_GRACE_S for r in results)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", torture_formats())
def test_crash_wallclock_long(tmp_path, fmt):
    """The long wall-clock run (``--runslow``): low, bursty and mixed rates with pauses, some with
    time gaps, killed at random moments (4-30 s in at low rates, 1.5-12 s otherwise); prints and
    saves its figures."""
    trials = int(os.environ.get("IMGSTORE_TORTURE_WALLCLOCK_TRIALS", "15"))
    seed0 = int(os.environ.get("IMGSTORE_TORTURE_SEED", "1000"))
    schedules = [("low", "bursty", "mixed")[i % 3] for i in range(trials)]
    plans = [wallclock_plan(fmt, seed0 + i, schedule, gaps=bool(i % 2),
                            kill_within=(4.0, 30.0) if schedule == "low" else (1.5, 12.0))
             for i, schedule in enumerate(schedules)]
    t0 = time.monotonic()
    results = run_concurrently(str(tmp_path), plans, workers=5)
    summary = {
        "format": f"{fmt} (wall clock)", "trials": len(results), "seconds": round(time.monotonic() - t0, 1),
        "frames_reported_total": sum(r.reported for r in results),
        "frames_lost_max": max(r.lost for r in results), "frames_lost_mean": float(np.mean([r.lost for r in results])),
        "lost_seconds_max": max(r.lost_seconds for r in results),
        "chunks_total": sum(r.chunks for r in results),
        "closed_chunks_checked": sum(r.closed_chunks for r in results),
        "extras_reported_total": sum(r.extras_reported for r in results),
        "extras_recovered_total": sum(r.extras_recovered for r in results),
        "trials_detail": [dataclasses.asdict(r) for r in results],
    }
    _report(summary)
    assert summary["lost_seconds_max"] <= VIDEO_GRACE_S


def _report(summary: dict) -> None:
    """Print a run's figures and add them to ``IMGSTORE_TORTURE_REPORT`` (JSON) when set."""
    print(json.dumps({k: v for k, v in summary.items() if k != "trials_detail"}))
    out = os.environ.get("IMGSTORE_TORTURE_REPORT")
    if out:
        existing = []
        if os.path.exists(out):
            with open(out) as f:
                existing = json.load(f)
        existing = [s for s in existing if s["format"] != summary["format"]] + [summary]
        with open(out, "w") as f:
            json.dump(existing, f, indent=1)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", torture_formats())
def test_crash_long(tmp_path, fmt):
    """The long run (``--runslow``): many trials per format; prints and saves its figures."""
    trials = int(os.environ.get("IMGSTORE_TORTURE_TRIALS", "24" if is_video(fmt) else "40"))
    seed0 = int(os.environ.get("IMGSTORE_TORTURE_SEED", "1000"))
    results = []
    t0 = time.monotonic()
    for plan in long_run_plans(fmt, trials, seed0):
        results.append(trial(str(tmp_path), plan))
    elapsed = time.monotonic() - t0
    summary = {
        "format": fmt, "trials": len(results), "seconds": round(elapsed, 1),
        "frames_reported_total": sum(r.reported for r in results),
        "frames_lost_max": max(r.lost for r in results), "frames_lost_mean": float(np.mean([r.lost for r in results])),
        "lost_seconds_max": max(r.lost_seconds for r in results),
        # random kills: the writer runs at a camera's rate, so the bound is "one second of frames"
        "frames_lost_max_random": max(r.lost for r in results if r.kind == "random"),
        "allowed_loss_random": max(r.allowed_loss for r in results if r.kind == "random"),
        "closed_chunks_checked": sum(r.closed_chunks for r in results),
        "chunks_damaged": sum(r.damaged_chunks for r in results),
        "stores_failed_to_open": sum(r.open_failed for r in results),
        "chunks_recovered_by_repair": sum(r.repaired_chunks for r in results),
        "extras_reported_total": sum(r.extras_reported for r in results),
        "extras_recovered_total": sum(r.extras_recovered for r in results),
        "trials_detail": [dataclasses.asdict(r) for r in results],
    }
    _report(summary)
    assert all(r.lost <= r.allowed_loss for r in results if r.kind == "random")
    if not is_video(fmt):
        assert summary["frames_lost_max"] == 0
    assert len(results) >= 20
