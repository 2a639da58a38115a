"""Memory phase: what opening a very long store costs in resident memory, each step in a fresh process.

``python benchmarks/memory.py [--quick] [--reps N]``

On a metadata-only 'npy' store of 36 288 000 frames (two weeks at 30 frames/s, 3 629 chunks
of 10 000; 2 160 000 with ``--quick``), ours only (the reference's open of 18 M frames takes
~28 s and builds an SQLite table; its numbers are in the week phase):

``first open``
    no index cache: the chunks' indexes are read and the cache written (the reader writes it
    for stores of 50 chunks or more); peak RSS, and bytes per frame above the process's RSS
    before opening.
``without cache``
    ``IMGSTORE_INDEX_CACHE=0``: the index held in memory only; bytes per frame resident.
``cached + lookups``
    open with the cache, then 1 000 random lookups (a third each by frame_number, by
    frame_index, by frame_time, on frames that have an image); open time, per-lookup time,
    exactness, peak RSS (goal ≤ 100 MB at 36 M frames).

Each step runs ``--reps`` times (default 2) in fresh processes; the report shows the best
repeat (lowest peak RSS).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

FULL_FRAMES = 36_288_000
QUICK_FRAMES = 2_160_000
LOOKUPS = 1000
RSS_GOAL_MB = 100
BYTES_PER_FRAME_GOAL = 16  # resident without the cache (issue 14)


def log(msg: str) -> None:
    print(f"[memory {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- worker (a fresh process)

def run_step(task: dict) -> dict:
    """One step in this process: open the store (and look frames up); report time and memory."""
    import imgstore

    targets = task.get("targets") or []
    rng = random.Random(task.get("seed", 7))
    picks = [targets[rng.randrange(len(targets))] for _ in range(task.get("n_lookups", 0))] if targets else []
    base = _rss_mb()
    t0 = time.perf_counter()
    store = imgstore.new_for_filename(task["basedir"])
    out: dict = {"open_s": time.perf_counter() - t0, "frames": len(store), "rss_before_open_mb": base,
                 "rss_after_open_mb": _rss_mb()}
    exact = 0
    t0 = time.perf_counter()
    for k, (frame_index, frame_number, frame_time, _path) in enumerate(picks):
        if k % 3 == 0:
            _img, md = store.get_image(frame_number, exact_only=True)
        elif k % 3 == 1:
            _img, md = store.get_image(None, exact_only=True, frame_index=frame_index)
        else:
            _img, md = store.get_nearest_image(frame_time + 0.01)
        exact += int(md[0]) == frame_number
    if picks:
        out |= {"lookups": len(picks), "lookup_ms": 1000 * (time.perf_counter() - t0) / len(picks),
                "exact_share": exact / len(picks)}
    store.close()
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["bytes_per_frame"] = (out["maxrss_mb"] - base) * 2**20 / max(out["frames"], 1)
    out["resident_bytes_per_frame"] = (out["rss_after_open_mb"] - base) * 2**20 / max(out["frames"], 1)
    return out


# --------------------------------------------------------------------------- the phase

def _spawn(task: dict, env_extra: dict | None = None, timeout: float = 600) -> dict:
    env = dict(os.environ) | (env_extra or {})
    src = env.get("IMGSTORE_SRC")
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    try:
        # the task on stdin: the lookup targets are too long for one command-line argument
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--step"], input=json.dumps(task),
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.splitlines()[-1])


def _age_indexes(basedir: str, seconds: float = 3600) -> None:
    """Date chunk indexes written in the last hour back by an hour, as in a finished recording's store.

    Index files younger than the cache's racy window (2 s) are re-read on every open until a
    later cache supersedes them (imgstore.index_cache); a store built seconds ago would measure that.
    """
    cutoff = time.time() - seconds
    for entry in os.scandir(basedir):
        index = os.path.join(entry.path, "index.npz")
        if entry.is_dir() and os.path.exists(index):
            st = os.stat(index)
            if st.st_mtime > cutoff:
                os.utime(index, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def _remove_cache(basedir: str) -> None:
    for name in os.listdir(basedir):
        if name.startswith(".imgstore-index"):
            os.unlink(os.path.join(basedir, name))


def run_phase(*, quick: bool, reps: int, work: str) -> dict:
    """Build (or reuse) the store and run each step ``reps`` times; everything for the report."""
    t0 = time.time()
    n_frames = QUICK_FRAMES if quick else FULL_FRAMES
    basedir = os.path.join(work, "index", f"n{n_frames}")
    os.makedirs(os.path.dirname(basedir), exist_ok=True)
    env = {"PYTHONPATH": os.environ.get("IMGSTORE_SRC", os.path.join(os.path.dirname(HERE), "src"))}
    # the store is built by a child: this process never imports imgstore (run.py's rule)
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--make-store", basedir, str(n_frames)],
                          capture_output=True, text=True, check=True, env=dict(os.environ) | env)
    built = json.loads(done.stdout.splitlines()[-1])
    log(f"store {basedir}: {built['n_frames']} frames in {built['chunks']} chunks")
    steps: dict[str, list[dict]] = {"first open": [], "without cache": [], "cached + lookups": []}
    for rep in range(reps):
        _remove_cache(basedir)
        steps["first open"].append(_spawn({"basedir": basedir}, env))
        steps["without cache"].append(_spawn({"basedir": basedir}, env | {"IMGSTORE_INDEX_CACHE": "0"}))
        steps["cached + lookups"].append(_spawn({"basedir": basedir, "targets": built["targets"],
                                                 "n_lookups": LOOKUPS, "seed": 7 + rep}, env))
        for name, results in steps.items():
            r = results[-1]
            shown = r.get("error") or f"open {r['open_s']:.3f} s, peak {r['maxrss_mb']:.0f} MB"
            log(f"rep {rep + 1} {name}: {shown}")
    return {"n_frames": built["n_frames"], "chunks": built["chunks"], "steps": steps, "reps": reps,
            "wall_s": time.time() - t0}


def section(data: dict, level: str = "##") -> list[str]:
    """The memory table as markdown lines."""
    n = f"{data['n_frames']:,}".replace(",", " ")
    lines = [f"{level} Memory: opening a store of {n} frames in {data['chunks']} chunks (ours)", "",
             f"Each step in a fresh process, {data['reps']}× (best repeat: lowest peak RSS). Peak RSS is the "
             "process's `ru_maxrss` (Python, numpy and imgstore imported: ~35–45 MB before opening); bytes per "
             "frame = (peak, or RSS right after opening, − RSS before opening) / frames. Chunk indexes dated "
             "an hour back, as in a finished recording (younger ones are re-read on every open). Lookups: "
             "1 000 random, a third each by frame_number, frame_index and frame_time, on frames that have an "
             "image.", "",
             "| step | open | per lookup | exact | peak RSS | bytes per frame: peak / after opening |",
             "|---|---|---|---|---|---|"]
    for name, results in data["steps"].items():
        good = [r for r in results if "error" not in r]
        if not good:
            lines.append(f"| {name} | error: {results[-1].get('error', '?') if results else 'not run'} | | | | |")
            continue
        best = min(good, key=lambda r: r["maxrss_mb"])
        open_s = min(r["open_s"] for r in good)
        look = f"{best['lookup_ms']:.3f} ms" if "lookup_ms" in best else "–"
        exact = f"{best['exact_share']:.0%}" if "exact_share" in best else "–"
        lines.append(f"| {name} | {open_s * 1000:.0f} ms | {look} | {exact} | {best['maxrss_mb']:.0f} MB | "
                     f"{best['bytes_per_frame']:.1f} / {best['resident_bytes_per_frame']:.1f} |")
    lines.append("")
    return lines


def _goal(data: dict | None, text: str, step: str, key: str, limit: float, shown: str) -> dict:
    """A goal row: the best (lowest) ``key`` of ``step``'s repeats against ``limit``."""
    if not data:
        return {"goal": text, "measured": "memory phase not run", "verdict": "not measured"}
    good = [r for r in data["steps"][step] if "error" not in r]
    if not good:
        return {"goal": text, "measured": "error", "verdict": "not met"}
    value = min(r[key] for r in good)
    verdict = "met" if value <= limit else "not met"
    if data["n_frames"] < FULL_FRAMES:
        verdict = f"not measured at 36 M (provisional: {verdict})"
    measured = f"{shown.format(value)} at {data['n_frames']:,} frames".replace(",", " ")
    return {"goal": text, "measured": measured, "verdict": verdict}


def goal(data: dict | None) -> dict:
    """The peak-RSS goal row for the goals table."""
    return _goal(data, f"peak RSS after open + {LOOKUPS} random lookups ≤ {RSS_GOAL_MB} MB at 36 M frames "
                 "(index cache)", "cached + lookups", "maxrss_mb", RSS_GOAL_MB, "{:.0f} MB")


def goal_without_cache(data: dict | None) -> dict:
    """The bytes-per-frame goal row (index held in memory, no cache) for the goals table."""
    return _goal(data, f"≤ {BYTES_PER_FRAME_GOAL} bytes per frame resident without the index cache (peak, 36 M "
                 "frames)", "without cache", "bytes_per_frame", BYTES_PER_FRAME_GOAL, "{:.1f} bytes per frame")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_FRAMES} frames instead of {FULL_FRAMES}")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--step", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--make-store", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.step:
        print(json.dumps(run_step(json.loads(sys.stdin.read()))))
        return 0
    if args.make_store:
        import layout

        built = layout.make_index_store(args.make_store[0], int(args.make_store[1]), chunksize=10000,
                                        images_per_chunk=2)
        _age_indexes(args.make_store[0])
        print(json.dumps(built))
        return 0
    data = run_phase(quick=args.quick, reps=args.reps, work=args.work)
    stamp = datetime.date.today().isoformat()
    name = f"{stamp}-memory{'-quick' if args.quick else ''}"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(data, f, indent=1)
    head = [f"# imgstore memory ({'quick' if args.quick else 'full'})", "",
            f"Run {datetime.datetime.now():%Y-%m-%d %H:%M}. Command: `python benchmarks/memory.py"
            f"{' --quick' if args.quick else ''} --reps {args.reps}`. Machine: {os.cpu_count()} cores, "
            f"load {os.getloadavg()[0]:.2f} at the end.", ""]
    text = "\n".join([*head, *section(data), "| goal | measured | verdict |", "|---|---|---|",
                      "| {goal} | {measured} | **{verdict}** |".format(**goal(data))])
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
