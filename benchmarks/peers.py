"""Peers phase: the same read workloads through imgstore and other video readers, A B A B.

``python benchmarks/peers.py [--quick] [--reps N] [--libs ours,torchcodec,...]``

Libraries: ``ours`` (``store.get_frames`` for batches, ``get_image`` otherwise), ``ours-loop``
(a ``get_image(frame_index=)`` loop in the order asked for, the baseline a batch must beat),
``torchcodec`` (exact seek mode, ``get_frames_at`` per chunk file), ``decord``
(``get_batch``), ``pyav`` (naive: the running decoder's next frame, else seek to the keyframe
and decode to the frame; its sequential row is PyAV's decode + conversion alone) and ``opencv``
(``CAP_PROP_POS_FRAMES`` + ``read``). The peers run under ``benchmarks/.venv-peers`` (made
on first use; a peer that cannot be installed or imported is reported as skipped). Each
workload runs every library once per repeat, alternating, each in a fresh process, on the
same files; the report shows the best repeat, the worst exactness and ours / peer ratios.

Workloads (640x480 grey H.264 stores of 750 frames in 3 chunks of 250, keyframe every 250
and every 25, written by our writer; 1920x1080 colour, one chunk of 300, keyframe 250):
``batch-unsorted`` (500 distinct random frames in random order, and 100), ``batch-sorted``
(the same lists sorted), ``random`` (150 single reads; 40 at 1080p), ``sequential`` (every
frame in order, one call each) and ``scrub-back`` (1080p: from frame 249 back one frame per
call).
Peak RSS of each process is reported in the memory table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from frames import FrameSource, frame_time  # noqa: E402

PEERS = ("torchcodec", "decord", "pyav", "opencv")
# the peers' venv: torch and torchcodec (which needs FFmpeg's shared libraries from the system,
# e.g. Debian's libavcodec59 ... libavfilter8), decord, PyAV and OpenCV
PEER_PACKAGES = (("numpy",), ("av",), ("opencv-python-headless",), ("decord",), ("torch", "torchcodec"))
IMPORTS = {"torchcodec": "torchcodec.decoders", "decord": "decord", "pyav": "av", "opencv": "cv2"}


def log(msg: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_peer_venv(path: str) -> tuple[str, dict[str, str]]:
    """The peers' python and, per peer, why it is skipped (packages installed one group at a time)."""
    python = os.path.join(path, "bin", "python")
    if not os.path.exists(python):
        log(f"creating {path}")
        subprocess.run([sys.executable, "-m", "venv", path], check=True)
        for group in PEER_PACKAGES:
            done = subprocess.run([python, "-m", "pip", "install", "-q", *group], capture_output=True, text=True)
            if done.returncode:
                log(f"could not install {group}: {done.stderr.strip()[-300:]}")
    skipped = {}
    for lib, module in IMPORTS.items():
        done = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
        if done.returncode:
            skipped[lib] = (done.stderr.strip().splitlines() or ["import failed"])[-1][:200]
    return python, skipped


def make_store(root: str, name: str, *, width: int, height: int, color: bool, frames: int, chunksize: int,
               keyframe_interval: int) -> tuple[str, list[tuple[str, int]]]:
    """A store written by our writer (reused when present) and its chunk files with frame counts."""
    import imgstore

    path = os.path.join(root, name)
    if not os.path.exists(os.path.join(path, "metadata.yaml")):
        log(f"writing {name}")
        src = FrameSource(width, height, color)
        shape = (height, width, 3) if color else (height, width)
        store = imgstore.new_for_format("h264/mkv", path, imgshape=shape, imgdtype=np.uint8, chunksize=chunksize,
                                        keyframe_interval=keyframe_interval, fps=25, overwrite=True)
        for i in range(frames):
            store.add_image(src.frame(i), i, frame_time(i))
        store.close()
    store = imgstore.new_for_filename(path)
    index = store.index
    files = []
    for chunk_n in index.chunks:
        part = index.chunk_slice(chunk_n)
        files.append((os.path.join(path, f"{chunk_n:06d}.mkv"), part.stop - part.start))
    store.close()
    return path, files


def make_stores(work: str, quick: bool) -> dict[str, tuple[str, list[tuple[str, int]]]]:
    """The three stores of the phase, by name (made once, reused)."""
    frames = 250 if quick else 750
    stores = {f"grey{kf}": make_store(work, f"grey{kf}-{frames}", width=640, height=480, color=False,
                                      frames=frames, chunksize=250, keyframe_interval=kf) for kf in (250, 25)}
    stores["colour250"] = make_store(work, "colour250-300", width=1920, height=1080, color=True, frames=300,
                                     chunksize=300, keyframe_interval=250)
    return stores


def run_task(python: str, task: dict, timeout: float) -> dict:
    try:
        done = subprocess.run([python, os.path.join(HERE, "peer_worker.py"), json.dumps(task)], capture_output=True,
                              text=True, timeout=timeout, env=dict(os.environ, PYTHONPATH=os.environ.get(
                                  "IMGSTORE_SRC", "")) if task["lib"].startswith("ours") else None)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT "):])
    return {"error": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}


def plan(quick: bool, stores: dict) -> list[dict]:
    rng = np.random.default_rng(1234)
    cases = []
    for kf in (250, 25):
        path, files = stores[f"grey{kf}"]
        n = sum(c for _, c in files)
        for size in ((100,) if quick else (500, 100)):
            chosen = rng.choice(n, size, replace=False).tolist()
            label = f"640x480 grey · keyframe {kf} · {size} of {n} frames"
            cases.append({"workload": "batch-unsorted", "label": label, "store": path, "files": files,
                          "indices": chosen, "color": False})
            cases.append({"workload": "batch-sorted", "label": label, "store": path, "files": files,
                          "indices": sorted(chosen), "color": False})
        cases.append({"workload": "random", "label": f"640x480 grey · keyframe {kf} · 150 single reads",
                      "store": path, "files": files, "indices": rng.choice(n, 150 if not quick else 40,
                                                                           replace=False).tolist(),
                      "color": False, "cap_s": 6})
        cases.append({"workload": "sequential", "label": f"640x480 grey · keyframe {kf} · every frame",
                      "store": path, "files": files, "indices": list(range(n)), "color": False})
    path, files = stores["colour250"]
    n = sum(c for _, c in files)
    label = "1920x1080 colour · keyframe 250"
    cases.append({"workload": "random", "label": f"{label} · {12 if quick else 40} single reads", "store": path,
                  "files": files, "indices": rng.choice(n, 12 if quick else 40, replace=False).tolist(),
                  "color": True, "cap_s": 8 if quick else 20})
    cases.append({"workload": "sequential", "label": f"{label} · every frame", "store": path, "files": files,
                  "indices": list(range(n)), "color": True, "cap_s": 8 if quick else 20})
    cases.append({"workload": "scrub-back", "label": "1920x1080 colour · keyframe 250 · from frame 249 back",
                  "store": path, "files": files, "indices": list(range(249, 249 - (60 if quick else 200), -1)),
                  "color": True, "cap_s": 8 if quick else 15})
    return cases


def best(results: list[dict]) -> dict:
    good = [r for r in results if "error" not in r]
    if not good:
        return results[0] if results else {"error": "not run"}
    top = dict(max(good, key=lambda r: r["fps"]))
    top["exact"] = min(r["exact"] for r in good)
    top["maxrss_mb"] = min(r["maxrss_mb"] for r in good)
    return top


def _same_as_ours(lib: str, case: dict) -> bool:
    # outside batches `ours` is a get_image loop too: ours-loop would time the same calls again
    return lib == "ours-loop" and not case["workload"].startswith("batch")


def section(data: dict, level: str = "##") -> list[str]:
    """The peers tables (frames/s with ours/peer ratios, exactness, peak RSS) as markdown lines."""
    cases, libs, skipped, info = data["cases"], data["libs"], data["skipped"], data["info"]
    lines = [f"{level} Peers: batch reads, scrubbing, single and sequential reads", "",
             f"{info['wall_s']:.0f} s wall. Each workload ran {info['reps']}× per library, alternating "
             f"({', '.join(libs)}), each in a fresh process, on the same files (written by our writer); "
             "frames/s of the best repeat (opening included), worst exactness (barcode = frame asked for). "
             "ours/peer > 1: ours is faster. `ours` reads batches with `store.get_frames` and single frames "
             "with `get_image`; `ours-loop` is a `get_image(frame_index=)` loop in the order asked for (the "
             "baseline a batch must beat; outside batches it would be the same calls as `ours`); torchcodec: "
             "`VideoDecoder(seek_mode='exact')`, `get_frames_at` "
             "per file for batches; decord: `get_batch` per file; pyav: naive (the running decoder's next "
             "frame, else seek to the keyframe and decode to the frame, `to_ndarray`); opencv: "
             "`CAP_PROP_POS_FRAMES` + `read`.", ""]
    if skipped:
        lines += ["Skipped peers: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()), ""]
    peers = [lib for lib in libs if lib != "ours"]
    head = "| workload | case | " + " | ".join(f"{lib} frames/s (exact)" for lib in libs) + " | " + \
        " | ".join(f"ours/{p}" for p in peers) + " |"
    lines += [head, "|" + "---|" * (2 + len(libs) + len(peers))]
    for case in cases:
        cells = []
        res = {lib: best(case["results"].get(lib, [])) for lib in libs}
        for lib in libs:
            r = res[lib]
            if _same_as_ours(lib, case):
                cells.append("= ours")
                continue
            cells.append(f"error: {r['error']}" if "error" in r else f"{r['fps']:.0f} ({100 * r['exact']:.0f} %, "
                         f"n={r['n']})")
        for p in peers:
            a, b = res["ours"], res[p]
            cells.append("–" if "error" in a or "error" in b or _same_as_ours(p, case)
                         else f"**{a['fps'] / b['fps']:.2f}×**")
        lines.append(f"| {case['workload']} | {case['label']} | " + " | ".join(cells) + " |")
    lines += ["", f"{level}# Peers: peak RSS of each process (MB)", "",
              "| workload | case | " + " | ".join(libs) + " |", "|" + "---|" * (2 + len(libs))]
    for case in cases:
        res = {lib: best(case["results"].get(lib, [])) for lib in libs}
        lines.append(f"| {case['workload']} | {case['label']} | " + " | ".join(
            "–" if "error" in res[lib] or _same_as_ours(lib, case) else f"{res[lib]['maxrss_mb']:.0f}"
            for lib in libs) + " |")
    return [*lines, ""]


SCRUB_GOAL_FPS = 25  # issue 14: stepping back through a 1080p keyframe-250 chunk


def goals(data: dict | None) -> list[dict]:
    """The peers' goal rows (issue 14) for the goals table."""
    texts = ("batch reads ≥ 1.0× the best peer (unsorted and sorted, keyframe 25 and 250), 100 % exact",
             "batch reads never slower than a `get_image` loop",
             f"scrub-back ≥ {SCRUB_GOAL_FPS} frames/s (1920x1080 colour, keyframe 250)")
    if not data:
        return [{"goal": t, "measured": "peers phase not run", "verdict": "not measured"} for t in texts]
    batch_vs_peer, batch_vs_loop, exact, scrub = [], [], [], []
    missing: set[str] = set(data.get("skipped", {}))  # a best peer is only the best of those measured
    for case in data["cases"]:
        res = {lib: best(case["results"].get(lib, [])) for lib in data["libs"]}
        ours = res.get("ours", {"error": "not run"})
        if "error" in ours:
            continue
        if case["workload"].startswith("batch"):
            exact.append(ours["exact"])
            peer_fps = [r["fps"] for lib, r in res.items() if lib in PEERS and "error" not in r]
            missing.update(lib for lib, r in res.items() if lib in PEERS and "error" in r)
            if peer_fps:
                top = max(peer_fps)
                batch_vs_peer.append((ours["fps"] / top, case["workload"], case["label"]))
            loop = res.get("ours-loop", {"error": "not run"})
            if "error" not in loop:
                batch_vs_loop.append((ours["fps"] / loop["fps"], case["workload"], case["label"]))
        elif case["workload"] == "scrub-back":
            scrub.append((ours["fps"], ours["exact"]))
    rows = []
    for text, found, needs_exact in ((texts[0], batch_vs_peer, True), (texts[1], batch_vs_loop, False)):
        if not found:
            rows.append({"goal": text, "measured": "error", "verdict": "not met"})
            continue
        low = min(found)
        ok = low[0] >= 1.0 and (not needs_exact or min(exact, default=0) >= 1.0)
        measured = f"lowest {low[0]:.2f}× ({low[1]}, {low[2]}) over {len(found)} cases"
        verdict = "met" if ok else "not met"
        if needs_exact:
            measured += f"; exact {100 * min(exact, default=0):.0f} %"
            if missing:
                measured += f"; not measured: {', '.join(sorted(missing))}"
                verdict = f"incomplete ({verdict} against the others)"
        rows.append({"goal": text, "measured": measured, "verdict": verdict})
    if scrub:
        fps, ex = min(scrub)
        rows.append({"goal": texts[2], "measured": f"{fps:.0f} frames/s, exact {100 * ex:.0f} %",
                     "verdict": "met" if fps >= SCRUB_GOAL_FPS and ex >= 1.0 else "not met"})
    else:
        rows.append({"goal": texts[2], "measured": "error", "verdict": "not met"})
    return rows


def run_phase(*, quick: bool, reps: int, work: str, peers_venv: str, libs: list[str] | None = None,
              only: str = "") -> dict:
    """Write (or reuse) the stores, run every case A B A B, return everything for the report."""
    t0 = time.time()
    os.makedirs(work, exist_ok=True)
    # our workers import imgstore from this checkout (or the installed one); this process never
    # does (run.py's rule): the stores are written by a child process too
    os.environ.setdefault("IMGSTORE_SRC", os.path.join(os.path.dirname(HERE), "src"))
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--make-stores", work]
                          + (["--quick"] if quick else []), capture_output=True, text=True, check=True,
                          env=dict(os.environ, PYTHONPATH=os.environ["IMGSTORE_SRC"]))
    stores = json.loads(done.stdout.splitlines()[-1])
    libs = list(libs or ["ours", "ours-loop", *PEERS])
    skipped: dict[str, str] = {}
    peer_python = sys.executable
    if any(lib in PEERS for lib in libs):
        peer_python, skipped = ensure_peer_venv(peers_venv)
    libs = [lib for lib in libs if lib not in skipped]
    cases = plan(quick, stores)
    if only:
        cases = [c for c in cases if c["workload"] in only.split(",")]
    for case in cases:
        case["results"] = {}
        for rep in range(reps):
            for lib in libs:
                if _same_as_ours(lib, case):
                    continue
                task = {k: v for k, v in case.items() if k != "results"} | {"lib": lib}
                python = sys.executable if lib.startswith("ours") else peer_python
                result = run_task(python, task, timeout=120)
                case["results"].setdefault(lib, []).append(result)
                shown = result.get("error") or f"{result['fps']:.0f} frames/s, exact {result['exact']:.0%}"
                log(f"{case['workload']} · {case['label']} · {lib} #{rep + 1}: {shown}")
    info = {"profile": "quick" if quick else "full", "wall_s": time.time() - t0, "reps": reps}
    return {"info": info, "libs": libs, "skipped": skipped, "cases": cases}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--libs", default="ours,ours-loop," + ",".join(PEERS))
    ap.add_argument("--work", default=os.path.join(HERE, "work", "peers"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--peers-venv", default=os.path.join(HERE, ".venv-peers"))
    ap.add_argument("--only", default="", help="comma-separated workloads to run (default all)")
    ap.add_argument("--make-stores", metavar="WORK", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.make_stores:
        print(json.dumps(make_stores(args.make_stores, args.quick)))
        return 0
    data = run_phase(quick=args.quick, reps=args.reps, work=args.work, peers_venv=args.peers_venv,
                     libs=[lib for lib in args.libs.split(",") if lib], only=args.only)
    now = datetime.datetime.now()
    command = "python benchmarks/peers.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join([f"# imgstore peers ({data['info']['profile']})", "",
                      f"Run {now.strftime('%Y-%m-%d %H:%M')}. Command: `{command}`. Machine: {os.cpu_count()} "
                      f"cores, load {os.getloadavg()[0]:.2f} at the end.", "", *section(data)])
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{now.strftime('%Y-%m-%d')}-peers{'-quick' if args.quick else ''}")
    with open(stem + ".md", "w") as f:
        f.write(text)
    with open(stem + ".json", "w") as f:
        json.dump(data, f, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
