"""How fast the bridges of imgstore.integrations answer, on a 640x480 grey H.264 store.

Measures napari scrubbing through the npe2 reader (headless ``ViewerModel``: the time from moving
the dims slider to the new frame's data being sliced, without the GPU paint), the array view,
sleap-io reads and a shuffled FrameDataset pass. Not part of CI; the numbers are quoted in the
README ("Using imgstore with other tools").

    python benchmarks/integrations.py [--frames 3000] [--work benchmarks/work] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import imgstore
from imgstore.testing.barcode import make_frame, read_barcode

H, W = 480, 640


def make_store(path: str, n: int) -> str:
    if os.path.exists(os.path.join(path, "metadata.yaml")):
        with imgstore.new_for_filename(path) as s:
            if len(s) == n and s.image_shape == (H, W):
                return path
    # the default keyframe interval (25) and chunk size of the h264/mkv format
    with imgstore.new_for_format("h264/mkv", basedir=path, imgshape=(H, W), fps=30, overwrite=True) as s:
        for i in range(n):
            s.add_image(make_frame(i, H, W), i, 1_700_000_000.0 + i / 30)
    return path


def _stats(times: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000 for t in times)
    return {"median_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
            "max_ms": round(ms[-1], 2), "n": len(ms)}


def bench_napari(path: str, n: int, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    import npe2
    from napari.components import ViewerModel

    from imgstore.integrations.napari import attach_frame_info

    pm = npe2.PluginManager.instance()
    if "imgstore" not in pm:
        pm.discover()
    if "imgstore" not in pm:
        from importlib.resources import files

        pm.register(npe2.PluginManifest.from_file(str(files("imgstore.integrations") / "napari.yaml")))
    viewer = ViewerModel()
    t = time.perf_counter()
    (layer,) = viewer.open(path, plugin="imgstore")
    opened = time.perf_counter() - t
    attach_frame_info(viewer)
    out: dict[str, dict[str, float]] = {"open (first frame shown)": _stats([opened])}

    def scrub(steps: list[int]) -> list[float]:
        times = []
        for i in steps:
            t = time.perf_counter()
            viewer.dims.set_current_step(0, int(i))
            times.append(time.perf_counter() - t)
        return times

    start = n // 4
    viewer.dims.set_current_step(0, start)
    out["step +1 (playing forward)"] = _stats(scrub(list(range(start + 1, start + 301))))
    out["step -1 (scrubbing back)"] = _stats(scrub(list(range(start + 299, start - 1, -1))))
    out["jump to a random frame"] = _stats(scrub(list(rng.integers(0, n, 200))))
    # the frame on screen is the one asked for, with its frame_number in the overlay
    viewer.dims.set_current_step(0, 1234 % n)
    assert read_barcode(np.asarray(layer.data[1234 % n])) == 1234 % n
    overlay = viewer.canvas.overlays.text if hasattr(viewer, "canvas") else viewer.text_overlay
    assert f"frame_number {1234 % n}," in overlay.text
    layer.data.close()
    return out


def bench_array(path: str, n: int, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    out = {}
    with imgstore.new_for_filename(path) as s:
        t = time.perf_counter()
        crop = s[: min(n, 600), 100:200, 200:400]
        out["store[:600, 100:200, 200:400] (per frame)"] = _stats([(time.perf_counter() - t) / len(crop)])
        picks = rng.integers(0, n, 200)
        t = time.perf_counter()
        s[picks]
        out["store[200 random indices] (per frame)"] = _stats([(time.perf_counter() - t) / len(picks)])
    return out


def bench_sleap(path: str, n: int, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    import sleap_io as sio

    from imgstore.integrations.sleap_io import register

    register()
    video = sio.load_video(path)
    times = []
    for i in rng.integers(0, n, 200):
        t = time.perf_counter()
        video[int(i)]
        times.append(time.perf_counter() - t)
    video.close()
    return {"sio.Video[random frame]": _stats(times)}


def bench_dataset(path: str, n: int, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    from imgstore.integrations.dataset import FrameDataset

    ds = FrameDataset([path])
    order = rng.permutation(len(ds))[:300]
    t = time.perf_counter()
    for i in order:
        ds[int(i)]
    per = (time.perf_counter() - t) / len(order)
    ds.close()
    return {"FrameDataset shuffled (per sample, one worker)": _stats([per])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--work", default=os.path.join(os.path.dirname(__file__), "work"))
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    t = time.perf_counter()
    path = make_store(os.path.join(args.work, f"integrations-h264-{args.frames}"), args.frames)
    print(f"store ready ({time.perf_counter() - t:.1f} s)", file=sys.stderr)
    rng = np.random.default_rng(0)
    results = {}
    for name, bench in (("napari", bench_napari), ("array view", bench_array), ("sleap-io", bench_sleap),
                        ("dataset", bench_dataset)):
        try:
            results[name] = bench(path, args.frames, rng)
        except ImportError as exc:
            print(f"{name}: skipped ({exc})", file=sys.stderr)
    print(f"640x480 grey H.264 store, {args.frames} frames, keyframe every 25; {platform.processor() or ''} "
          f"{os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| what | median ms | p95 ms | max ms | n |\n|---|---|---|---|---|")
    for group, rows in results.items():
        for what, st in rows.items():
            print(f"| {group}: {what} | {st['median_ms']} | {st['p95_ms']} | {st['max_ms']} | {st['n']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"frames": args.frames, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
