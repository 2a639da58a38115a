"""Startup phase: the fixed cost of writing a short store, ours against bare PyAV, fresh processes A B A B.

``python benchmarks/startup.py [--reps N]``

A lab writing many short trials pays a store's fixed cost each time. Each repeat starts a
fresh process per library (bytecode caches on, as for an installed package; numpy imported
before timing) that imports the library, then writes eleven 5-frame 640x480 grey H.264
stores: ``ours`` through ``imgstore.new_for_format('avc1/mp4')`` ... ``add_image`` ...
``close`` (metadata, index and all), ``pyav`` through bare PyAV (``av.open``, a libx264
stream, encode, mux, close: the encoder's own start-up and work). Reported: import time,
the first store (for ours this includes importing PyAV, which imgstore defers until a video
store is opened), the median of the ten later stores. The goal (≤ 30 ms beyond the
encoder's own start-up, per store) is judged on the first store without the imports (ours'
first store less PyAV's import time, against PyAV's first store) and on each later store;
the whole process (imports included) is shown beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LIBS = ("ours", "pyav")
GOAL_MS = 30.0
N_STORES = 11


def run_step(lib: str) -> dict:
    """In this (fresh) process: import ``lib``, write the stores, return the times in ms."""
    import shutil

    import numpy as np

    frames = [np.full((480, 640), 20 * i, np.uint8) for i in range(5)]
    t0 = time.perf_counter()
    if lib == "ours":
        import imgstore
    else:
        import av
    import_ms = 1000 * (time.perf_counter() - t0)

    def ours(path: str) -> None:
        with imgstore.new_for_format("avc1/mp4", basedir=path, imgshape=(480, 640), imgdtype=np.uint8,
                                     chunksize=1000) as store:
            for i, frame in enumerate(frames):
                store.add_image(frame, i, 1_700_000_000.0 + i / 30)

    def pyav(path: str) -> None:
        os.makedirs(path)
        with av.open(os.path.join(path, "000000.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
            container.mux(stream.encode())

    root = tempfile.mkdtemp(prefix="imgstore-startup-")
    try:
        spent = []
        for k in range(N_STORES):
            t0 = time.perf_counter()
            (ours if lib == "ours" else pyav)(os.path.join(root, f"s{k}"))
            spent.append(1000 * (time.perf_counter() - t0))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"import_ms": import_ms, "first_ms": spent[0], "later_ms": statistics.median(spent[1:])}


def _spawn(lib: str) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its bytecode cached
    src = env.get("IMGSTORE_SRC", os.path.join(os.path.dirname(HERE), "src"))
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--step", lib], capture_output=True,
                          text=True, timeout=300, env=env)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.splitlines()[-1])


def run_phase(*, reps: int) -> dict:
    """Warm the bytecode caches, then run ours and pyav ``reps`` times each, alternating."""
    t0 = time.time()
    for lib in LIBS:
        _spawn(lib)  # writes bytecode caches where they are missing; not counted
    results: dict[str, list[dict]] = {lib: [] for lib in LIBS}
    for _ in range(reps):
        for lib in LIBS:
            results[lib].append(_spawn(lib))
    return {"results": results, "reps": reps, "wall_s": time.time() - t0}


def _best(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if "error" not in r]
    return min(values) if values else None


def section(data: dict, level: str = "##") -> list[str]:
    """The startup table as markdown lines."""
    res = data["results"]
    lines = [f"{level} Startup: writing 5-frame stores (640x480 grey H.264), fresh processes", "",
             f"{data['reps']} fresh processes per library, alternating; best of each column (ms). `ours`: "
             "`new_for_format('avc1/mp4')` … `add_image` × 5 … `close`; `pyav`: bare PyAV (libx264 stream, "
             "encode, mux, close). Ours' first store includes importing PyAV (deferred by `import imgstore`).", "",
             "| | import | first store | later stores (median) | import + first store |", "|---|---|---|---|---|"]
    for lib in LIBS:
        cells = [_best(res[lib], k) for k in ("import_ms", "first_ms", "later_ms")]
        if None in cells:
            lines.append(f"| {lib} | error: {res[lib][-1].get('error', '?') if res[lib] else 'not run'} | | | |")
            continue
        lines.append(f"| {lib} | {cells[0]:.0f} | {cells[1]:.0f} | {cells[2]:.0f} | {cells[0] + cells[1]:.0f} |")
    lines.append("")
    return lines


def goal(data: dict | None) -> dict:
    """The fixed-cost goal row for the goals table."""
    text = f"writer fixed cost per store ≤ {GOAL_MS:.0f} ms beyond the encoder's own start-up"
    if not data:
        return {"goal": text, "measured": "startup phase not run", "verdict": "not measured"}
    res = data["results"]
    best = {(lib, k): _best(res[lib], k) for lib in LIBS for k in ("import_ms", "first_ms", "later_ms")}
    if None in best.values():
        return {"goal": text, "measured": "error", "verdict": "not met"}
    first = best["ours", "first_ms"] - best["pyav", "import_ms"] - best["pyav", "first_ms"]
    later = best["ours", "later_ms"] - best["pyav", "later_ms"]
    process = (best["ours", "import_ms"] + best["ours", "first_ms"]
               - best["pyav", "import_ms"] - best["pyav", "first_ms"])
    ok = first <= GOAL_MS and later <= GOAL_MS
    return {"goal": text, "measured": f"first store {first:+.0f} ms, each later store {later:+.0f} ms (a whole "
                                      f"process writing one store, imports included: {process:+.0f} ms)",
            "verdict": "met" if ok else "not met"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--step", choices=LIBS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.step:
        print(json.dumps(run_step(args.step)))
        return 0
    data = run_phase(reps=args.reps)
    print("\n".join([*section(data), "| goal | measured | verdict |", "|---|---|---|",
                     "| {goal} | {measured} | **{verdict}** |".format(**goal(data))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
