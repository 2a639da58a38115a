"""Stores on object storage: loopback S3 (moto) with 0 and 20 ms added per request, beside the same store on disk.

For a 640x480 H.264 store and the 18.1 M-frame (week-long) index store: open time and requests,
random-frame latency and bytes fetched per random frame (beside the keyframe-to-frame bytes),
sequential frames/s, and lookups by number / index / time on the week store. Not part of CI.

Run (the week store takes ~1 min to build and ~1 min to upload the first time; both are reused)::

    . /work/venv/bin/activate
    python benchmarks/remote.py                 # both stores, latency 0 and 20 ms
    python benchmarks/remote.py --quick         # 2.16 M-frame index store instead of 18.1 M

Results: printed as Markdown, and saved to ``benchmarks/results/<date>-remote.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

import av
import layout
import numpy as np

import imgstore
from imgstore.remote_io import BLOCK_SIZE, CACHE_BYTES, MAX_READAHEAD
from imgstore.testing.barcode import make_frame, read_barcode
from imgstore.testing.servers import HttpServer, S3Server

HERE = os.path.dirname(os.path.abspath(__file__))
BUCKET = "bench"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_vga_store(path: str, n: int, chunksize: int) -> None:
    """640x480 grey H.264 (the writer's defaults), noisy frames: ~20 KiB per frame."""
    if os.path.exists(os.path.join(path, ".imgstore-index.cache")):
        return
    noise = np.random.default_rng(0).integers(0, 48, (480, 640), dtype=np.uint8)
    with imgstore.new_for_format("h264/mkv", basedir=path, imgshape=(480, 640), chunksize=chunksize,
                                 overwrite=True) as s:
        for i in range(n):
            s.add_image(make_frame(i, 480, 640) // 2 + np.roll(noise, 7 * i, axis=1), i, 1.7e9 + i / 30)


def keyframe_spans(path: str) -> dict[tuple[int, int], int]:
    """``{(chunk, position): bytes from the frame's keyframe to the end of its packet}``."""
    out = {}
    for name in sorted(os.listdir(path)):
        if not name.endswith(".mkv"):
            continue
        chunk = int(name[:6])
        with av.open(os.path.join(path, name)) as c:
            packets = [(p.pts, p.pos, p.size, p.is_keyframe) for p in c.demux(video=0) if p.size]
        with np.load(os.path.join(path, name[:6] + ".npz")) as npz:
            pts = npz["pts"]
        where = {p[0]: k for k, p in enumerate(packets)}
        last_key = 0
        key_before = []
        for k, p in enumerate(packets):
            last_key = k if p[3] else last_key
            key_before.append(last_key)
        for position, t in enumerate(pts):
            d = where[int(t)]
            out[(chunk, position)] = packets[d][1] + packets[d][2] - packets[key_before[d]][1]
    return out


def timed(fn, repeats: int = 1):
    best = None
    value = None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return best, value


def open_store(url: str, options: dict | None):
    return imgstore.new_for_filename(url, storage_options=options) if options else imgstore.new_for_filename(url)


def bench_vga(where: str, options: dict | None, spans: dict, n_random: int, n_seq: int) -> dict:
    res: dict = {}
    t_open, store = timed(lambda: open_store(where, options))
    res["open_ms"] = 1000 * t_open
    remote = getattr(store.storage, "stats", None)
    if remote is not None:
        res["open_requests"] = remote.requests
    n = store.frame_count
    store.get_image(None, frame_index=0)  # the container header: once per chunk
    store.get_image(None, frame_index=n - 1)
    rng = np.random.default_rng(11)
    times, fetched, wanted = [], [], []
    for i in rng.integers(0, n, n_random):
        if remote is not None:
            store.storage.blocks.clear()  # every frame from the server (a store bigger than the cache)
            remote.reset()
        t = time.perf_counter()
        img, (fn, _) = store.get_image(None, frame_index=int(i))
        times.append(1000 * (time.perf_counter() - t))
        assert fn == int(i) and read_barcode(img) == fn
        if remote is not None:
            fetched.append(sum(b for _, p, b in remote.log if p.endswith(".mkv")))
            chunk, position = divmod(int(i), store.chunksize)
            wanted.append(spans[(chunk, position)])
    res["random_ms_median"] = statistics.median(times)
    if fetched:
        res["random_kib_fetched_median"] = statistics.median(fetched) / 1024
        res["random_kib_keyframe_to_frame_median"] = statistics.median(wanted) / 1024
        ratios = [f / w for f, w in zip(fetched, wanted, strict=True)]
        res["random_bytes_ratio_median"] = statistics.median(ratios)
        res["random_bytes_ratio_all"] = sum(fetched) / sum(wanted)
    store.close()
    store = open_store(where, options)
    t = time.perf_counter()
    store.get_image(None, frame_index=0)
    n_seq = min(n_seq, n)
    for _ in range(n_seq - 1):
        store.get_next_image()
    res["sequential_fps"] = n_seq / (time.perf_counter() - t)
    if remote is not None:
        seq = store.storage.stats
        res["sequential_requests"] = sum(1 for _, p, _ in seq.log if p.endswith(".mkv"))
    store.close()
    return res


def bench_week(where: str, options: dict | None, targets: list, n_lookups: int) -> dict:
    res: dict = {}
    t_open, store = timed(lambda: open_store(where, options))
    res["open_ms"] = 1000 * t_open
    stats = getattr(store.storage, "stats", None)
    if stats is not None:
        res["open_requests"] = stats.requests
        res["open_kib"] = stats.bytes / 1024
    res["frames"] = store.frame_count
    store.close()
    for k, mode in enumerate(("number", "index", "time")):
        store = open_store(where, options)  # each mode from a fresh store, on other frames: nothing cached
        times = []
        for index, number, ftime, _ in targets[k * n_lookups:(k + 1) * n_lookups]:
            t = time.perf_counter()
            if mode == "number":
                _, (got, _) = store.get_image(number)
            elif mode == "index":
                _, (got, _) = store.get_image(None, frame_index=index)
            else:
                _, (got, _) = store.get_nearest_image(ftime)
            times.append(1000 * (time.perf_counter() - t))
            assert got == number
        res[f"lookup_{mode}_ms_median"] = statistics.median(times)
        store.close()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2.16 M-frame index store, fewer frames")
    ap.add_argument("--work", default=os.path.join(HERE, "work", "remote"))
    ap.add_argument("--latency-ms", default="0,20", help="comma list of per-request latencies added (ms)")
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    week_frames = 2_160_000 if args.quick else 18_144_000
    n_vga = 600 if args.quick else 1800
    vga = os.path.join(args.work, f"vga{n_vga}")
    week = os.path.join(args.work, f"week{week_frames}")
    log("building the 640x480 H.264 store")
    make_vga_store(vga, n=n_vga, chunksize=900)
    spans = keyframe_spans(vga)
    log(f"building the {week_frames}-frame index store")
    built = layout.make_index_store(week, week_frames, chunksize=10000, images_per_chunk=2)
    with imgstore.new_for_filename(week) as s:  # leaves the index cache
        assert s.frame_count == week_frames
    results: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "cases": {},
                     "settings": {"block_bytes": BLOCK_SIZE, "max_readahead_bytes": MAX_READAHEAD,
                                  "cache_bytes": CACHE_BYTES}}
    with S3Server() as s3, HttpServer(args.work) as http:
        s3.create_bucket(BUCKET)
        opts = s3.storage_options
        for name, path in (("vga", vga), ("week", week)):
            t = time.perf_counter()
            report = imgstore.sync(path, f"s3://{BUCKET}/{name}", storage_options=opts)
            log(f"synced {name}: {len(report.uploaded)} files, {report.bytes / 2**20:.0f} MiB in "
                f"{time.perf_counter() - t:.1f} s")
        # the servers' own cost of one 64 KiB range of the week store's index cache (no added latency):
        # moto reads the whole object for every range request, so its ranges of big objects are slow
        fs = s3.filesystem()
        cache = f"{BUCKET}/week/.imgstore-index.cache"
        t = time.perf_counter()
        for k in range(5):
            fs.cat_file(cache, start=k * 65536, end=(k + 1) * 65536)
        results["s3_range_ms_on_the_week_cache"] = (time.perf_counter() - t) / 5 * 1000
        log(f"moto: {results['s3_range_ms_on_the_week_cache']:.0f} ms per 64 KiB range of the week cache")
        for latency in [float(x) / 1000 for x in args.latency_ms.split(",")]:
            s3.faults(latency=latency)
            http.latency = latency
            tag = f"{latency * 1000:.0f}ms"
            for name, path in (("vga", vga), ("week", week)):
                for where, url, options in (("local", path, None), ("s3", f"s3://{BUCKET}/{name}", opts),
                                            ("http", f"{http.url}/{os.path.basename(path)}", None)):
                    if where == "local" and latency:
                        continue  # the disk has no network latency: measured once
                    log(f"{name} on {where}, +{tag}")
                    if name == "vga":
                        r = bench_vga(url, options, spans, n_random=15 if args.quick else 30,
                                      n_seq=300 if args.quick else 900)
                    else:
                        r = bench_week(url, options, built["targets"], n_lookups=10 if args.quick else 20)
                    results["cases"][f"{name}|{where}|{tag if where != 'local' else '-'}"] = r
                    log(json.dumps(r))
    print(report_markdown(results))
    out = os.path.join(HERE, "results", f"{datetime.date.today().isoformat()}-remote.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    log(f"saved {out}")
    return 0


def report_markdown(results: dict) -> str:
    lines = ["| store | where | added latency | open (ms) | open requests | random frame (ms) | "
             "KiB per random frame (keyframe-to-frame) | sequential frames/s | lookups number/index/time (ms) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, r in results["cases"].items():
        name, where, tag = key.split("|")
        fetched = (f"{r['random_kib_fetched_median']:.0f} ({r['random_kib_keyframe_to_frame_median']:.0f}; "
                   f"x{r['random_bytes_ratio_median']:.2f})" if "random_kib_fetched_median" in r else "")
        lookups = "/".join(f"{r[f'lookup_{m}_ms_median']:.1f}" for m in ("number", "index", "time")) \
            if "lookup_number_ms_median" in r else ""
        lines.append(f"| {name} | {where} | {tag} | {r['open_ms']:.0f} | {r.get('open_requests', '')} | "
                     f"{r.get('random_ms_median', float('nan')):.1f} | {fetched} | "
                     f"{r.get('sequential_fps', float('nan')):.0f} | {lookups} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
