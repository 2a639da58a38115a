#!/usr/bin/env python
"""Benchmark our imgstore side by side with the reference imgstore 0.4.0.

    python benchmarks/run.py [--quick] [--out benchmarks/results/]

Creates (or reuses) ``benchmarks/.venv-reference`` with ``imgstore==0.4.0``,
then runs every workload in worker processes, alternating ours and the
reference (A B A B) on the same files, and writes
``<out>/<date>-<quick|full>.md`` and ``.json``. See benchmarks/README.md.

This process runs under our venv but never imports imgstore: both libraries
are only ever imported by ``worker.py`` in their own process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import layout  # noqa: E402
import memory  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402
import startup  # noqa: E402
from workers import log, run_batch  # noqa: E402

FIXTURES = "/work/shared/fixtures/upstream-0.4.0"
REFERENCE_REQUIREMENTS = ["imgstore==0.4.0", "opencv-python-headless<4.9", "numpy<2"]
LIBS = ("ours", "reference")

BASE_FORMATS = ["npy", "png", "jpg", "mjpeg/avi", "avc1/mp4", "h264/mkv"]
NEW_FORMATS = ["ffv1/mkv", "hevc/mp4", "h264-lossless/mkv"]
H264_FORMATS = {"avc1/mp4", "h264/mkv", "h264-lossless/mkv"}
DIRECTORY_FORMATS = {"npy", "png", "jpg"}
X264_DEFAULT_GOP = 250


@dataclass
class Size:
    """An image geometry and the amount of work done with it."""
    key: str
    title: str
    width: int
    height: int
    color: bool
    n_dir: int          # frames written to directory stores
    chunk_dir: int
    n_video: int        # frames written to video stores
    chunk_video: int
    n_random: int       # random lookups per access mode
    gop_variants: tuple  # H.264 formats also run with a keyframe every 25 frames
    time_cap: float     # seconds per timed loop inside a worker (a loop stops early past it)


@dataclass
class Profile:
    name: str
    sizes: list
    reps: int
    time_cap: float           # seconds per timed loop for fixtures, index, physical limits
    fixture_random: int       # random lookups per mode in the reference-written fixtures
    index_frames: int
    index_lookups_ours: int
    index_lookups_ref: int
    week_frames: int = 0          # issue 6's week-long store (7 days at 30 frames/s); 0: not run
    week_lookups_ref: int = 10    # the reference takes ~2.5 s per lookup by time there


PROFILES = {
    "quick": Profile("quick", [Size("640x480-grey", "640x480 grey", 640, 480, False,
                                    n_dir=120, chunk_dir=60, n_video=250, chunk_video=250,
                                    n_random=20, gop_variants=("h264/mkv",), time_cap=2.0)],
                     reps=2, time_cap=3.0, fixture_random=15, index_frames=216_000,
                     index_lookups_ours=200, index_lookups_ref=10),
    "full": Profile("full", [Size("640x480-grey", "640x480 grey", 640, 480, False,
                                  n_dir=600, chunk_dir=200, n_video=750, chunk_video=250,
                                  n_random=150, gop_variants=("h264/mkv", "avc1/mp4"), time_cap=10.0),
                             Size("1920x1080-color", "1920x1080 colour", 1920, 1080, True,
                                  n_dir=120, chunk_dir=60, n_video=300, chunk_video=300,
                                  n_random=20, gop_variants=(), time_cap=6.0)],
                    reps=2, time_cap=20.0, fixture_random=100_000, index_frames=2_160_000,
                    index_lookups_ours=1000, index_lookups_ref=30, week_frames=18_144_000),
}


@dataclass
class Case:
    """One format (and keyframe interval) at one size."""
    size: Size
    fmt: str
    gop: int | None = None          # requested keyframe interval (H.264 only)
    ref_writes: bool = True
    ref_write_na: str = ""
    metrics: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    written_by: str = "?"
    store: str | None = None
    raw: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        slug = self.fmt.replace("/", "-")
        return f"{self.size.key}/{slug}" + (f"-gop{self.gop}" if self.gop else "")

    @property
    def title(self) -> str:
        t = f"{self.size.title} · {self.fmt}"
        if self.gop:
            t += " · keyframe every 25" if self.gop == 25 else f" · keyframe interval {self.gop}"
        return t

    @property
    def is_video(self) -> bool:
        return self.fmt not in DIRECTORY_FORMATS

    @property
    def n(self) -> int:
        return self.size.n_video if self.is_video else self.size.n_dir

    @property
    def chunksize(self) -> int:
        return self.size.chunk_video if self.is_video else self.size.chunk_dir


# --------------------------------------------------------------------------- environment

def ensure_reference_venv(path: str, rebuild: bool) -> str:
    """Path of the reference venv's python, creating the venv when needed."""
    python = os.path.join(path, "bin", "python")
    check = "import imgstore, cv2, sys; sys.exit(0 if imgstore.__version__ == '0.4.0' else 3)"
    if not rebuild and os.path.exists(python):
        if subprocess.run([python, "-c", check], capture_output=True).returncode == 0:
            return python
        log(f"reference venv at {path} is not usable; rebuilding")
    if os.path.isdir(path):
        shutil.rmtree(path)
    log(f"creating reference venv {path} ({' '.join(REFERENCE_REQUIREMENTS)})")
    subprocess.run([sys.executable, "-m", "venv", path], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *REFERENCE_REQUIREMENTS], check=True)
    subprocess.run([python, "-c", check], check=True)
    return python


def machine_info() -> dict:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError):
        mem = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem,
            "os": f"{platform.system()} {platform.release()}", "load_start": _loadavg()}


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def worker_env(lib: str) -> dict:
    env = dict(os.environ)
    env.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    env.pop("PYTHONPATH", None)  # each venv sees only its own imgstore
    if lib == "ours":
        # this checkout's imgstore (IMGSTORE_SRC to override), not whichever one our venv has
        # installed (an editable install may point at another worktree)
        env["PYTHONPATH"] = os.environ.get("IMGSTORE_SRC", os.path.join(os.path.dirname(HERE), "src"))
    return env


# --------------------------------------------------------------------------- result helpers

def err(res) -> str | None:
    return res["error"] if isinstance(res, dict) and "error" in res else None


def best_of(results: list, getter, higher: bool = True) -> dict:
    """Collapse repeats into one cell: best value, worst exactness, or the error."""
    good = [(getter(r), r) for r in results if not err(r) and getter(r) is not None]
    if not good:
        errors = [err(r) for r in results if err(r)]
        return {"error": errors[-1] if errors else "no result"}
    value, res = (max if higher else min)(good, key=lambda p: p[0])
    cell = {"value": value}
    shares = [r.get("exact_share") for _, r in good if r.get("exact_share") is not None]
    if shares:
        cell["exact_share"] = min(shares)
        cell["metadata_mismatch"] = max(r.get("metadata_mismatch", 0) for _, r in good)
        wrong = [r["first_wrong"] for _, r in good if r.get("first_wrong")]
        if wrong:
            cell["first_wrong"] = wrong[0]
    for key in ("frames", "lookups", "capped"):
        if key in res:
            cell[key] = res[key]
    return cell


def sub(results: list, key: str) -> list:
    """The ``key`` sub-result of each repeat (errors of the whole task propagate)."""
    out = []
    for r in results:
        if err(r):
            out.append(r)
        else:
            out.append(r.get(key, {"error": f"missing {key}"}))
    return out


# --------------------------------------------------------------------------- phases

class Bench:
    def __init__(self, args, profile: Profile, pythons: dict):
        self.args = args
        self.p = profile
        self.pythons = pythons
        self.libs = [lib for lib in LIBS if lib in args.libs]
        self.work = os.path.abspath(args.work)
        self.env = {lib: worker_env(lib) for lib in LIBS}
        self.warnings: list = []
        self.raw: dict = {}

    # ---- batches, alternating libraries
    def alternate(self, label: str, make_tasks) -> dict:
        """Run ``make_tasks(lib, rep)`` for rep in reps, lib in (ours, reference): A B A B."""
        out = {lib: [] for lib in self.libs}
        for rep in range(self.p.reps):
            for lib in self.libs:
                tasks = make_tasks(lib, rep)
                if not tasks:
                    continue
                t0 = time.monotonic()
                res = run_batch(self.pythons[lib], tasks, f"{label} {lib} rep {rep}", self.env[lib])
                log(f"{label}: {lib} rep {rep}: {len(tasks)} tasks in {time.monotonic() - t0:.1f} s")
                out[lib].append(res)
        self.raw[label] = out
        return out

    def info(self) -> dict:
        meta = {}
        for lib in self.libs:
            res = run_batch(self.pythons[lib], [{"id": "info", "kind": "info", "timeout": 120}],
                            f"info {lib}", self.env[lib])["info"]
            meta[lib] = res
        return meta

    # ---- per size: write, choose stores, read
    def make_cases(self, size: Size, our_formats: list) -> list:
        cases = []
        for fmt in BASE_FORMATS:
            if fmt in H264_FORMATS:
                cases.append(Case(size, fmt, gop=X264_DEFAULT_GOP))
                if fmt in size.gop_variants:
                    cases.append(Case(size, fmt, gop=25, ref_writes=False,
                                      ref_write_na="0.4.0 has no keyframe-interval option"))
            else:
                cases.append(Case(size, fmt))
        for fmt in NEW_FORMATS:
            if fmt in our_formats:
                # new formats are measured with their own defaults (h264-lossless: keyframe every 10)
                cases.append(Case(size, fmt, ref_writes=False, ref_write_na="format not in imgstore 0.4.0"))
        return cases

    def write_dir(self, case: Case, lib: str, rep: int) -> str:
        return os.path.join(self.work, "stores", case.key, f"{lib}-w{rep}")

    def write_phase(self, size: Size, cases: list) -> None:
        cap = max(120.0, size.time_cap * 20)

        def tasks(lib, rep):
            out = []
            for case in cases:
                if lib == "reference" and not case.ref_writes:
                    continue
                options = {}
                if lib == "ours" and case.fmt in H264_FORMATS:
                    options = {"fps": 25}
                    if case.gop:
                        options["keyframe_interval"] = case.gop
                out.append({"id": f"{case.key}|w{rep}", "kind": "write", "format": case.fmt,
                            "basedir": self.write_dir(case, lib, rep), "width": size.width,
                            "height": size.height, "color": size.color, "n": case.n,
                            "chunksize": case.chunksize, "options": options, "time_cap": cap,
                            "timeout": cap + 60})
            return out

        res = self.alternate(f"write {size.key}", tasks)
        for case in cases:
            per_lib = {lib: [r.get(f"{case.key}|w{rep}") for rep, r in enumerate(res.get(lib, []))]
                       for lib in self.libs}
            per_lib = {lib: [r for r in v if r is not None] for lib, v in per_lib.items()}
            case.raw["write"] = per_lib
            fps, bpf = {}, {}
            for lib in self.libs:
                if lib == "reference" and not case.ref_writes:
                    fps[lib] = bpf[lib] = {"na": case.ref_write_na}
                    continue
                fps[lib] = best_of(per_lib[lib], lambda r: r.get("fps"))
                bpf[lib] = best_of(per_lib[lib], lambda r: r.get("bytes_per_frame"), higher=False)
            case.metrics["write_fps"] = fps
            case.metrics["bytes_per_frame"] = bpf
            notes = {r.get("note") for r in per_lib.get("ours", []) if isinstance(r, dict) and r.get("note")}
            case.notes += [f"ours: {n}" for n in sorted(notes)]
            self.choose_store(case, per_lib)

    def choose_store(self, case: Case, per_lib: dict) -> None:
        """Pick the one store both libraries read: ours, else the reference's, else PyAV-made."""
        chosen = None
        for lib in ("ours", "reference"):
            good = [r for r in per_lib.get(lib, []) if not err(r)]
            if not good:
                continue
            path = good[-1]["basedir"]
            if case.fmt in H264_FORMATS and case.gop:
                ok, note = self.check_gop(path, case)
                if note:
                    case.notes.append(f"{lib}-written store: {note}")
                if not ok:
                    continue
            chosen = (lib, path)
            break
        if chosen is None and case.fmt in ("avc1/mp4", "h264/mkv"):
            path = os.path.join(self.work, "harness", case.key)
            try:
                made = layout.make_video_store(path, case.fmt, case.size.width, case.size.height,
                                               case.size.color, case.n, case.chunksize,
                                               None if case.gop == X264_DEFAULT_GOP else case.gop)
                probe = made.get("probe", {})
                case.notes.append(f"harness store: libx264 via PyAV, measured keyframe interval "
                                  f"{probe.get('keyframe_interval')}, B-frames {probe.get('b_frames')}")
                chosen = ("harness (PyAV libx264)", path)
            except Exception as exc:
                case.notes.append(f"harness store failed: {exc}")
        if chosen is None:
            case.written_by = "nobody"
            case.store = None
        else:
            case.written_by = f"written by: {chosen[0]}"
            case.store = chosen[1]
        # keep only the chosen store on disk
        for results in per_lib.values():
            for r in results:
                if isinstance(r, dict) and r.get("basedir") and r["basedir"] != case.store:
                    shutil.rmtree(r["basedir"], ignore_errors=True)
        for lib in self.libs:
            for rep in range(self.p.reps):
                d = self.write_dir(case, lib, rep)
                if d != case.store and os.path.isdir(d):
                    shutil.rmtree(d, ignore_errors=True)

    def check_gop(self, path: str, case: Case) -> tuple[bool, str]:
        """Does the store's first chunk have the requested keyframe interval?"""
        video = layout.first_chunk_video(path)
        if video is None:
            return False, "no video chunk found"
        try:
            probe = layout.probe_video(video)
        except Exception as exc:
            return True, f"could not probe ({exc})"
        measured = probe.get("keyframe_interval")
        expected = min(case.gop, probe.get("frames") or case.gop)
        note = (f"{probe.get('codec')} {probe.get('pix_fmt')}, measured keyframe interval {measured}, "
                f"B-frames {probe.get('b_frames')}")
        ok = measured is not None and abs(measured - expected) <= max(2, 0.1 * expected)
        if not ok:
            note += f" (wanted {case.gop}: not used for reading)"
        return ok, note

    def read_phase(self, size: Size, cases: list) -> None:
        cap = size.time_cap
        readable = [c for c in cases if c.store]

        def tasks(lib, rep):
            return [{"id": f"{c.key}|r{rep}", "kind": "read", "basedir": c.store,
                     "n_random": size.n_random, "seed": 1234, "time_cap": cap, "open_repeats": 3,
                     "timeout": cap * 5 + 60} for c in readable]

        res = self.alternate(f"read {size.key}", tasks)
        for case in cases:
            if not case.store:
                for key, _ in report.READ_METRICS:
                    case.metrics[key] = {lib: {"error": "no store to read (no library could write it)"}
                                         for lib in self.libs}
                continue
            per_lib = {lib: [r.get(f"{case.key}|r{rep}") for rep, r in enumerate(res.get(lib, []))]
                       for lib in self.libs}
            per_lib = {lib: [r for r in v if r is not None] for lib, v in per_lib.items()}
            case.raw["read"] = per_lib
            case.metrics["open_ms"] = {lib: best_of(sub(v, "open"), lambda r: 1000 * r["seconds"]
                                                    if r.get("seconds") is not None else None, higher=False)
                                       for lib, v in per_lib.items()}
            for key, _label in report.READ_METRICS:
                case.metrics[key] = {lib: best_of(sub(v, key), lambda r: r.get("fps"))
                                     for lib, v in per_lib.items()}

    # ---- reference-written fixtures
    def fixture_phase(self) -> list:
        names = ["avc1_mp4_grey", "h264_mkv_color", "motif_libx264_mp4"]
        copies = {}
        for name in names:
            src = os.path.join(FIXTURES, name)
            if not os.path.isdir(src):
                self.warnings.append(f"fixture {src} missing")
                continue
            dst = os.path.join(self.work, "fixtures", name)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst)
            for root, dirs, files in os.walk(dst):  # copies of read-only files: make them ours
                for n in dirs + files:
                    os.chmod(os.path.join(root, n), 0o755 if n in dirs else 0o644)
            os.chmod(dst, 0o755)
            copies[name] = dst
        barcodes = {"motif_libx264_mp4": {"bits": 16, "rows": [0.25, 0.75]}}

        def tasks(lib, rep):
            return [{"id": f"fixture/{name}|r{rep}", "kind": "read", "basedir": path,
                     "n_random": self.p.fixture_random,
                     "seed": 99, "time_cap": self.p.time_cap, "open_repeats": 1,
                     "barcode": barcodes.get(name), "timeout": self.p.time_cap * 5 + 60}
                    for name, path in copies.items()]

        res = self.alternate("fixtures", tasks)
        out = []
        for name in copies:
            entry = {"name": name, "results": {}}
            for lib in self.libs:
                reps = [r.get(f"fixture/{name}|r{rep}") for rep, r in enumerate(res.get(lib, []))]
                reps = [r for r in reps if r is not None]
                if not reps:
                    continue
                if all(err(r) for r in reps):
                    entry["results"][lib] = {"error": err(reps[-1])}
                    continue
                good = [r for r in reps if not err(r)]
                merged = {}
                for key, _label in report.READ_METRICS:
                    cells = [r.get(key) for r in good if r.get(key) is not None]
                    ok = [c for c in cells if not err(c)]
                    if ok:
                        merged[key] = min(ok, key=lambda c: c.get("exact_share") or 0)
                    elif cells:
                        merged[key] = cells[-1]
                    seq = good[-1].get("sequential", {})
                    if "frames" in seq:
                        entry["frames"] = seq["frames"]
                entry["results"][lib] = merged
            out.append(entry)
        return out

    # ---- large index
    def index_phase(self, n_frames: int, lookups_ref: int, images_per_chunk: int = 10,
                    label: str = "index") -> dict:
        """Open and lookup times on a metadata-only npy store of ``n_frames`` (10 000-frame chunks)."""
        path = os.path.join(self.work, "index", f"n{n_frames}")
        t0 = time.monotonic()
        built = layout.make_index_store(path, n_frames, chunksize=10000, images_per_chunk=images_per_chunk)
        log(f"index store {path}: {built['n_frames']} frames ready in {time.monotonic() - t0:.1f} s")
        targets = built["targets"]
        cap = max(60.0, self.p.time_cap * 3)

        def tasks(lib, rep):
            _clean_store_root(path)
            n = self.p.index_lookups_ours if lib == "ours" else lookups_ref
            return [{"id": f"index|r{rep}", "kind": "index", "basedir": path, "targets": targets,
                     "n_lookups": n, "open_repeats": 3 if lib == "ours" else 1, "time_cap": cap,
                     "timeout": cap * 4 + 600}]

        res = self.alternate(label, tasks)
        metrics: dict = {}
        per_lib = {lib: [r.get(f"index|r{rep}") for rep, r in enumerate(res.get(lib, []))] for lib in self.libs}
        per_lib = {lib: [r for r in v if r is not None] for lib, v in per_lib.items()}
        ms = lambda r: 1000 * r["seconds"] if r.get("seconds") is not None else None  # noqa: E731
        metrics["open_first_ms"] = {lib: best_of(sub(v, "open_first"), ms, higher=False)
                                    for lib, v in per_lib.items()}
        metrics["open_ms"] = {lib: best_of(sub(v, "open"), ms, higher=False) for lib, v in per_lib.items()}
        metrics["metadata_ms"] = {lib: best_of(sub(v, "metadata"), ms, higher=False) for lib, v in per_lib.items()}
        metrics["image_read_ms"] = {lib: best_of(sub(v, "image_read_alone"), lambda r: r.get("per_call_ms"),
                                                 higher=False) for lib, v in per_lib.items()}
        for mode in ("number", "index", "time"):
            metrics[f"lookup_{mode}_ms"] = {lib: best_of(sub(v, f"lookup_{mode}"), lambda r: r.get("per_call_ms"),
                                                         higher=False) for lib, v in per_lib.items()}
            over = {}
            for lib in self.libs:
                look = metrics[f"lookup_{mode}_ms"][lib]
                img = metrics["image_read_ms"][lib]
                if "value" in look and "value" in img:
                    over[lib] = {"value": look["value"] - img["value"]}
                else:
                    over[lib] = {"error": look.get("error") or img.get("error") or "n/a"}
            metrics[f"overhead_{mode}_ms"] = over
        note = (f"Ours: {self.p.index_lookups_ours} lookups per mode; reference: "
                f"{lookups_ref} per mode (its sqlite index scans the table on every lookup), "
                "per-lookup time extrapolates linearly. Each index task starts from the bare store (files a "
                "library left in the store folder, such as an index cache, are removed first); 'first open' "
                "is the first open in that process, 'open' the best of 3 for ours (later opens may use a "
                "cache the first wrote), 1 for the reference.")
        return {"n_frames": built["n_frames"], "chunks": built["chunks"], "image_files": built["image_files"],
                "metrics": metrics, "note": note, "raw": per_lib}

    # ---- physical limits (our venv only)
    def physical_phase(self, cases: list) -> dict:
        videos, npys, images, rows_meta = {}, {}, {}, []
        for case in cases:
            if not case.store:
                continue
            tag = case.key.replace("/", "_")
            if case.fmt in ("h264/mkv", "avc1/mp4", "mjpeg/avi"):
                if case.fmt == "avc1/mp4" and case.size.key == "640x480-grey":
                    continue  # same codec as h264/mkv; one container is enough for the floor
                video = layout.first_chunk_video(case.store)
                if video:
                    videos[tag] = {"path": video, "gray": not case.size.color, "random": True}
                    rows_meta.append((f"pyav_seq_{tag}", f"PyAV sequential decode → ndarray: {case.title}",
                                      "threaded decode of the first chunk; grey: luma plane copied, "
                                      "colour: bgr24"))
                    rows_meta.append((f"pyav_random_{tag}", f"PyAV seek + decode, random frames: {case.title}",
                                      "naive: seek to the keyframe before, decode up to the frame, "
                                      "no caching"))
            elif case.fmt in DIRECTORY_FORMATS:
                f = _first_file(case.store, "." + case.fmt)
                if not f:
                    continue
                if case.fmt == "npy":
                    npys[tag] = f
                    rows_meta.append((f"np_load_{tag}", f"np.load one frame: {case.title}", ""))
                else:
                    images[tag] = {"path": f, "color": case.size.color}
                    rows_meta.append((f"cv2_imread_{tag}", f"cv2.imread one frame: {case.title}", ""))
        copies = {}
        for size in self.p.sizes:
            shape = [size.height, size.width] + ([3] if size.color else [])
            copies[size.key] = {"shape": shape}
            rows_meta.append((f"memcopy_{size.key}", f"one memory copy of a frame: {size.title}", "np.copyto"))
        task = {"id": "physical", "kind": "physical", "videos": videos, "npy": npys, "images": images,
                "copies": copies, "n_random": 50, "seed": 1234, "time_cap": self.p.time_cap,
                "rep_time": 0.3 if self.p.name == "quick" else 1.0,
                "timeout": self.p.time_cap * 3 * (len(videos) + 1) + 120}
        res = run_batch(self.pythons["ours"], [task], "physical", self.env["ours"])["physical"]
        rows = []
        for key, label, note in rows_meta:
            cell = res.get(key, {"error": err(res) or "missing"}) if isinstance(res, dict) else {"error": "missing"}
            if key.startswith("pyav_random") and isinstance(cell, dict) and cell.get("decoded_per_access"):
                note = f"{note}; {cell['decoded_per_access']:.1f} frames decoded per access"
            if key.startswith("pyav_seq") and isinstance(cell, dict) and "decode_only" in cell:
                note = f"{note}; decode only {cell['decode_only'].get('fps', 0):.0f} frames/s"
            rows.append({"key": key, "label": label, "note": note, "cell": cell})
        return {"rows": rows, "raw": res}


def _clean_store_root(path: str) -> None:
    """Remove files a library left in the harness-made store's top folder (e.g. index caches).

    Only ``metadata.yaml`` and the harness's own marker stay, so every index
    task starts from the same store as the first one did.
    """
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isfile(full) and name not in ("metadata.yaml", layout.MARKER):
            os.unlink(full)


def _first_file(root: str, ext: str) -> str | None:
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(ext):
                return os.path.join(dirpath, name)
    return None


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run (< 2 min): 640x480 only, fewer frames")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="directory for the .md/.json results")
    ap.add_argument("--work", default=os.path.join(HERE, "work"), help="scratch directory for stores")
    ap.add_argument("--reference-venv", default=os.path.join(HERE, ".venv-reference"))
    ap.add_argument("--rebuild-reference-venv", action="store_true")
    ap.add_argument("--libs", default="ours,reference", help="comma list: ours, reference (default both)")
    ap.add_argument("--reps", type=int, default=None, help="repeats per library (default 2)")
    ap.add_argument("--skip", default="",
                    help="comma list of phases to skip: fixtures,index,week,memory,startup,physical,peers")
    ap.add_argument("--keep-work", action="store_true", help="keep written stores after the run")
    ap.add_argument("--peers-venv", default=os.path.join(HERE, ".venv-peers"),
                    help="venv of the peers phase (torchcodec, decord, PyAV, OpenCV; made on first use)")
    args = ap.parse_args(argv)
    args.libs = [x.strip() for x in args.libs.split(",") if x.strip()]
    args.skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    bad = set(args.libs) - set(LIBS)
    if bad:
        ap.error(f"unknown library {bad}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    profile = PROFILES["quick" if args.quick else "full"]
    if args.reps:
        profile.reps = args.reps
    started = datetime.datetime.now()
    t0 = time.monotonic()
    pythons = {"ours": sys.executable}
    venv_error = None
    if "reference" in args.libs:
        try:
            pythons["reference"] = ensure_reference_venv(os.path.abspath(args.reference_venv),
                                                         args.rebuild_reference_venv)
        except (subprocess.CalledProcessError, OSError) as exc:
            venv_error = f"could not set up the reference venv: {exc}"
            log(venv_error + "; running ours only")
            args.libs = [lib for lib in args.libs if lib != "reference"]
    bench = Bench(args, profile, pythons)
    if venv_error:
        bench.warnings.append(venv_error)
    os.makedirs(bench.work, exist_ok=True)
    meta = {"profile": profile.name, "started": started.strftime("%Y-%m-%d %H:%M"), "reps": profile.reps,
            "command": " ".join(["python benchmarks/run.py", *list(sys.argv[1:] if argv is None else argv)]),
            "machine": machine_info()}
    meta.update(bench.info())
    for lib in LIBS:
        meta.setdefault(lib, {"imgstore": "not run"})
    our_formats = meta.get("ours", {}).get("formats", []) or []
    if "ours" in meta and meta["ours"].get("formats_error"):
        bench.warnings.append(f"ours: imgstore.get_supported_formats() failed: {meta['ours']['formats_error']}")

    cases = []
    for size in profile.sizes:
        size_cases = bench.make_cases(size, our_formats)
        log(f"{size.title}: {len(size_cases)} cases")
        bench.write_phase(size, size_cases)
        bench.read_phase(size, size_cases)
        cases += size_cases
    fixtures = [] if "fixtures" in args.skip else bench.fixture_phase()
    index = week = None
    if "index" not in args.skip:
        index = bench.index_phase(profile.index_frames, profile.index_lookups_ref)
    if profile.week_frames and "week" not in args.skip:
        week = bench.index_phase(profile.week_frames, profile.week_lookups_ref, images_per_chunk=2, label="week")
    memory_data = startup_data = None
    if "memory" not in args.skip and "ours" in args.libs:
        # resident memory of opening a 36 M-frame store, fresh processes (benchmarks/memory.py)
        memory_data = memory.run_phase(quick=args.quick, reps=profile.reps, work=bench.work)
    if "startup" not in args.skip and "ours" in args.libs:
        # the fixed cost of writing short stores against bare PyAV (benchmarks/startup.py)
        startup_data = startup.run_phase(reps=5)
    physical = None if "physical" in args.skip or "ours" not in args.libs else bench.physical_phase(cases)
    peer_data = None
    if "peers" not in args.skip and "ours" in args.libs:
        # the same read workloads through other video readers (benchmarks/peers.py)
        peer_data = peers.run_phase(quick=args.quick, reps=profile.reps, work=os.path.join(bench.work, "peers"),
                                    peers_venv=os.path.abspath(args.peers_venv))

    meta["duration_s"] = time.monotonic() - t0
    meta["machine"]["load_end"] = _loadavg()
    data = {"meta": meta,
            "cases": [{"key": c.key, "title": c.title, "size": c.size.key, "fmt": c.fmt, "gop": c.gop,
                       "written_by": c.written_by, "store": c.store, "notes": c.notes, "metrics": c.metrics,
                       "raw": c.raw} for c in cases],
            "fixtures": fixtures, "index": index, "week": week, "memory": memory_data, "startup": startup_data,
            "physical": physical,
            "peers": peer_data,
            "warnings": bench.warnings}
    data["goals"], data["published"] = report.evaluate(data, quick=args.quick)
    markdown = report.render(data)

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{started.strftime('%Y-%m-%d')}-{profile.name}")
    with open(stem + ".md", "w") as f:
        f.write(markdown + "\n")
    with open(stem + ".json", "w") as f:
        json.dump(data, f, indent=1, default=str)
    if not args.keep_work:
        shutil.rmtree(os.path.join(bench.work, "stores"), ignore_errors=True)
        shutil.rmtree(os.path.join(bench.work, "fixtures"), ignore_errors=True)
    log(f"done in {meta['duration_s']:.0f} s: {stem}.md")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
