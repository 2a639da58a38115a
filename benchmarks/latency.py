"""What the wall-clock latency bound costs, per format and frame rate: before vs now.

``python benchmarks/latency.py [--frames 300] [--rates 100,60,25,10,1] [--content texture|arena]
[--width 640 --height 480] [--color] [--reps 3] [--formats h264/mkv,...]``

For each video format and frame rate ``r``, writes the same frames (frame times ``1/r`` apart)
twice and prints a markdown table:

* ``before``: the settings of the writer before the bound (x264: 3 B-frames, rc-lookahead
  ``clamp(r/3, 3, 10)``; x265: 4 B-frames, lookahead 5), no muxer flush;
* ``now``: what :class:`VideoChunkWriter` chooses for frames ``1/r`` s apart
  (``frame_interval``): the same B-frame settings with a shorter lookahead where they fit in
  0.3 s, else the low-latency ones (x264 ``tune=zerolatency``: no B-frames, no lookahead or
  mb-tree, sliced threads; x265 ``bframes=0:rc-lookahead=0``, one frame thread, no cutree);
  below 2 frames/s the muxer is also flushed after every frame, as the deadline thread then
  does (a Matroska cluster or an MP4 fragment per frame). Above 2 frames/s the deadline
  thread flushes about twice a second, like the muxers' own 250 ms clusters and fragments:
  nothing to measure.

Columns: the settings, KiB per frame, PSNR (dB, lossy formats), CPU ms per frame while
writing (all threads: ``getrusage``), write frames/s (wall), random reads/s (300 uniformly
random positions, best of ``--reps`` seeds), sequential reads/s, and the time to open the
chunk and read its first frame (ms; an MP4 reader reads every fragment's header at open).

Content: ``texture`` is ``frames.FrameSource`` (barcode, sliding texture, sensor noise: every
pixel moves); ``arena`` a static camera: a smooth background, six dark animals moving
slowly, Gaussian sensor noise of sigma 4.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from frames import FrameSource

from imgstore.backends.pyav import VideoChunkReader, VideoChunkWriter, get_format_spec

FORMATS = ["h264/mkv", "avc1/mp4", "hevc/mp4", "h264-lossless/mkv", "ffv1/mkv", "mjpeg/avi"]
#: ``frame_interval`` that makes the writer keep its B-frame settings whatever the rate (= before)
BEFORE_INTERVAL = 1e-3
#: below this rate (frames/s) the deadline thread flushes every frame on its own
FLUSH_EACH_BELOW = 2.0


class Arena:
    """Static camera: smooth background, 6 dark animals moving slowly, sensor noise sigma 4."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height, self.color = width, height, False
        rng = np.random.RandomState(3)
        coarse = rng.rand(height // 40 + 2, width // 40 + 2)
        yy, xx = np.mgrid[0:height, 0:width] / 40.0
        y0, x0 = yy.astype(int), xx.astype(int)
        fy, fx = yy - y0, xx - x0
        bg = (coarse[y0, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1, x0] * fy * (1 - fx)
              + coarse[y0, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1, x0 + 1] * fy * fx)
        self.bg = 90 + 80 * bg
        self.yy, self.xx = np.mgrid[0:height, 0:width]
        self.paths = rng.rand(6, 4)

    def frame(self, n: int) -> np.ndarray:
        img = self.bg.copy()
        for a, b, c, d in self.paths:
            cy = self.height * (0.5 + 0.4 * np.sin(n * 0.02 * (1 + a) + 6 * b))
            cx = self.width * (0.5 + 0.4 * np.cos(n * 0.015 * (1 + c) + 6 * d))
            img[((self.yy - cy) / 12) ** 2 + ((self.xx - cx) / 25) ** 2 < 1] = 30
        img = img + np.random.RandomState(n).normal(0, 4, img.shape)
        return np.clip(img, 0, 255).astype(np.uint8)


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def run(fmt: str, rate: float, now: bool, frames: list[np.ndarray], color: bool, reps: int, workdir: str) -> dict:
    n = len(frames)
    h, w_ = frames[0].shape[:2]
    path = os.path.join(workdir, "bench" + get_format_spec(fmt).extension)
    flush = now and rate < FLUSH_EACH_BELOW
    c0, t0 = cpu(), time.perf_counter()
    w = VideoChunkWriter(path, fmt, height=h, width=w_, color=color, fps=rate,
                         frame_interval=1.0 / rate if now else BEFORE_INTERVAL)
    flusher = w._flusher  # the benchmark plays the deadline thread (no max_latency: no thread)
    for i, img in enumerate(frames):
        w.write(img, frame_time=1.7e9 + i / rate)
        if flush and flusher is not None:
            flusher.flush()
    table = w.close()
    write_cpu, write_wall = cpu() - c0, time.perf_counter() - t0
    size = os.path.getsize(path)
    t0 = time.perf_counter()
    with VideoChunkReader(path, color=color, frame_table=table) as r:
        r.read(0)
        open_ms = (time.perf_counter() - t0) * 1000
        quality = []
        t0 = time.perf_counter()
        for i in range(1, n):
            img = r.read(i)
            if i % 10 == 0:
                quality.append(psnr(img, frames[i]))
        seq = (n - 1) / (time.perf_counter() - t0)
    rand = 0.0
    for seed in range(reps):
        positions = np.random.default_rng(seed).integers(0, n, 300)
        with VideoChunkReader(path, color=color, frame_table=table) as r:
            t0 = time.perf_counter()
            for p in positions:
                r.read(int(p))
            rand = max(rand, len(positions) / (time.perf_counter() - t0))
    opts = w._settings.options
    lookahead = opts.get("rc-lookahead") or dict(
        p.split("=", 1) for p in opts.get("x265-params", "").split(":") if "=" in p).get("rc-lookahead")
    settings = "low latency" if w.low_latency else f"B-frames, lookahead {lookahead}"
    if get_format_spec(fmt).intra_only:
        settings = "intra"
    elif get_format_spec(fmt).lossless and not w.low_latency:
        settings = f"lookahead {lookahead}"  # x264 codes no B-frames at qp 0
    if flush:
        settings += " + flush/frame"
    return {"kib": size / n / 1024, "psnr": float(np.mean(quality)), "cpu_ms": write_cpu / n * 1000,
            "write_fps": n / write_wall, "random": rand, "sequential": seq, "open_ms": open_ms,
            "settings": settings}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--rates", default="100,60,25,10,1")
    p.add_argument("--content", choices=["texture", "arena"], default="texture")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--color", action="store_true")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--formats", default=",".join(FORMATS))
    args = p.parse_args()
    if args.content == "arena":
        if args.color:
            raise SystemExit("the arena content is grey")
        src: FrameSource | Arena = Arena(args.width, args.height)
    else:
        src = FrameSource(args.width, args.height, args.color)
    frames = [src.frame(i) for i in range(args.frames)]
    print(f"{args.content}, {args.width}x{args.height} {'colour' if args.color else 'grey'}, {args.frames} frames\n")
    print("| format | frames/s | | settings | KiB/frame | PSNR dB | write CPU ms/frame | write /s | random /s "
          "| sequential /s | open ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir:
        for fmt in args.formats.split(","):
            spec = get_format_spec(fmt)
            for rate in (float(x) for x in args.rates.split(",")):
                for now in (False, True):
                    r = run(fmt, rate, now, frames, args.color, args.reps, workdir)
                    quality = "exact" if spec.lossless else f"{r['psnr']:.2f}"
                    print(f"| {fmt} | {rate:g} | {'now' if now else 'before'} | {r['settings']} | {r['kib']:.2f} "
                          f"| {quality} | {r['cpu_ms']:.2f} | {r['write_fps']:.0f} | {r['random']:.0f} "
                          f"| {r['sequential']:.0f} | {r['open_ms']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
