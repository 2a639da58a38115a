"""Does ``imgstore-save --view`` slow recording down? Recording throughput with and without the viewer.

Records the full-speed test pattern (640x480 grey, ``h264/mkv`` by default) through
``imgstore.cli.save.record`` -- the loop ``imgstore-save`` runs -- three ways, A B C A B C:

``none``
    no viewer;
``view``
    ``--view`` with a client that behaves like the page following the recording: it polls
    ``/status`` twice a second and fetches the newest frame at most 30 times a second;
``flood``
    ``--view`` with a client that fetches the newest frame as fast as the viewer answers
    (the worst case: several browsers, or a script).

The client runs in its own process (as a browser would). Throughput is the recording loop's
frames/s after its first 100 frames (start-up, the viewer's launch and the encoder's
warm-up excluded). Results go to ``benchmarks/results/<date>-save-view.{md,json}``.

Usage::

    python benchmarks/save_view.py                  # 3 repeats of 1500 frames
    python benchmarks/save_view.py --frames 600 --reps 1 --format npy
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from imgstore.cli import save  # noqa: E402

WARMUP_FRAMES = 100


class TimedSource(save.TestPatternSource):
    """The full-speed test pattern, noting when each frame is handed to the recorder."""

    __test__ = False

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__(size, color=False, fps=30.0, paced=False)
        self.handed: list[float] = []

    def frames(self):
        for item in super().frames():
            self.handed.append(time.perf_counter())
            yield item


def client(url: str, mode: str, done, out) -> None:
    """A page following the recording ('view') or a flood of frame requests ('flood')."""
    frames = 0
    next_status = 0.0
    newest = -1
    while not done.is_set():
        try:
            now = time.monotonic()
            if now >= next_status or mode == "flood":
                with urllib.request.urlopen(url + "status", timeout=5) as r:
                    newest = json.loads(r.read())["steps"] - 1
                next_status = now + 0.5
            if newest >= 0:
                with urllib.request.urlopen(f"{url}frame?index={newest}", timeout=5) as r:
                    r.read()
                frames += 1
            if mode == "view":
                time.sleep(1 / 30)
        except OSError:
            time.sleep(0.05)  # the viewer is not up yet, or already stopped
    out.put(frames)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(mode: str, fmt: str, frames: int, size: tuple[int, int], workdir: str) -> dict:
    dest = os.path.join(workdir, f"rec-{mode}")
    shutil.rmtree(dest, ignore_errors=True)
    port = free_port()
    args = argparse.Namespace(fps=None, quality=None, chunksize=None, metadata=None, overwrite=False,
                              frames=frames, duration=None, view=mode != "none", view_port=port, no_browser=True)
    source = TimedSource(size)
    queue: multiprocessing.Queue = multiprocessing.Queue()
    done = multiprocessing.Event()
    proc = None
    if mode != "none":
        proc = multiprocessing.Process(target=client, args=(f"http://127.0.0.1:{port}/", mode, done, queue),
                                       daemon=True)
        proc.start()
    stop = save.StopFlag()
    with open(os.devnull, "w") as devnull:
        saved = sys.stderr
        sys.stderr = devnull  # the progress bar
        try:
            n = save.record(source, dest, fmt, args, stop)
        finally:
            sys.stderr = saved
    served = None
    if proc is not None:
        done.set()
        served = queue.get(timeout=30)
        proc.join(10)
    t = source.handed
    fps = (len(t) - 1 - WARMUP_FRAMES) / (t[-1] - t[WARMUP_FRAMES])
    shutil.rmtree(dest, ignore_errors=True)
    return {"mode": mode, "frames": n, "fps": fps, "client_frames": served}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--format", default="h264/mkv")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    size = tuple(int(x) for x in args.size.split("x"))
    modes = ("none", "view", "flood")
    runs = []
    with tempfile.TemporaryDirectory(prefix="imgstore-save-view-") as work:
        for rep in range(args.reps):
            for mode in modes:
                res = one_run(mode, args.format, args.frames, size, work)
                res["rep"] = rep
                runs.append(res)
                print(f"rep {rep} {mode:5s} {res['fps']:8.1f} frames/s", file=sys.stderr, flush=True)
    best = {m: max(r["fps"] for r in runs if r["mode"] == m) for m in modes}
    median = {m: statistics.median(r["fps"] for r in runs if r["mode"] == m) for m in modes}
    lines = [f"# imgstore-save --view: recording throughput ({args.format}, {args.size} grey, "
             f"{args.frames} frames, {args.reps} repeats A B C)", "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"python {platform.python_version()}",
             "", "| viewer | best frames/s | median frames/s | median vs none |", "|---|---|---|---|"]
    for m in modes:
        lines.append(f"| {m} | {best[m]:.1f} | {median[m]:.1f} | {median[m] / median['none']:.1%} |")
    served = [r["client_frames"] for r in runs if r["mode"] != "none"]
    lines += ["", f"Frames the client received per run: {served}"]
    report = "\n".join(lines) + "\n"
    print(report)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{datetime.date.today().isoformat()}-save-view")
    with open(stem + ".md", "w") as f:
        f.write(report)
    with open(stem + ".json", "w") as f:
        json.dump({"args": vars(args), "runs": runs, "best": best, "median": median}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
