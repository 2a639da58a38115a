#!/usr/bin/env python
"""Prove that stores written by this imgstore open in the reference library (imgstore 0.4.0).

Usage::

    python scripts/check_reference_compat.py [--venv .venv-reference] [--keep DIR]

1. creates (or reuses) a virtualenv with ``imgstore==0.4.0`` and ``opencv-python-headless<4.9``;
2. writes a barcode store in every format we support that the reference knows, with this
   library (this interpreter), including out-of-order/repeated frame numbers, several chunks,
   user metadata and extra data;
3. runs a checker in the reference venv (its import name is also ``imgstore``) that opens each
   store and compares frame metadata, user metadata, extra data and every frame (bit-exact
   for lossless formats, barcode-exact otherwise) with what was written;
4. prints one line per format and exits non-zero if any store does not read back.

Not part of the unit tests: it needs to install the reference from the package index.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import venv

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE_REQUIREMENTS = ["imgstore==0.4.0", "opencv-python-headless<4.9", "numpy<2"]

# formats both libraries know; video formats are read by the reference through OpenCV's FFmpeg
REFERENCE_FORMATS = ["npy", "png", "jpg", "bmp", "tif", "pgm", "ppm", "mjpeg/avi", "h264/mkv", "avc1/mp4",
                     # new formats: the reference cannot write them but its OpenCV reads them
                     "ffv1/mkv", "h264-lossless/mkv", "hevc/mp4"]
#: informational only: the reference never wrote these, so its reading them is a bonus
NEW_FORMATS = {"ffv1/mkv", "h264-lossless/mkv", "hevc/mp4"}

NUMBERS = [*range(0, 9), *range(30, 20, -1), 41, 41, *range(50, 56)]
SHAPE = (64, 96)


def ensure_reference_venv(path: str) -> str:
    python = os.path.join(path, "bin", "python")
    if not os.path.exists(python):
        print(f"creating reference venv {path} ...", flush=True)
        venv.create(path, with_pip=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *REFERENCE_REQUIREMENTS], check=True)
    return python


def write_stores(root: str) -> list[dict]:
    import numpy as np

    import imgstore
    from imgstore.testing.barcode import make_frame

    written = []
    for fmt in REFERENCE_FORMATS:
        if fmt not in imgstore.get_supported_formats():
            print(f"{fmt:12s} skipped: not supported by this installation")
            continue
        colors = {"pgm": [False], "ppm": [True]}.get(fmt, [False, True])
        for color in colors:
            name = fmt.replace("/", "_") + ("_color" if color else "_grey")
            path = os.path.join(root, name)
            shape = (*SHAPE, 3) if color else SHAPE
            times = [1_700_000_000.0 + 0.04 * i for i in range(len(NUMBERS))]
            frames = np.stack([make_frame(fn, *SHAPE, color=color) for fn in NUMBERS])
            np.save(path + ".expected.npy", frames)
            with imgstore.new_for_format(fmt, basedir=path, imgshape=shape, imgdtype=np.uint8, chunksize=7,
                                         metadata={"experimenter": "compat", "rig": 3}) as s:
                for i, (fn, ft) in enumerate(zip(NUMBERS, times)):
                    s.add_image(frames[i], fn, ft)
                    if i % 4 == 0:
                        s.add_extra_data(temperature=20.0 + i, note=f"n{i}")
                lossless = s.lossless
            written.append({"name": name, "path": path, "expected": path + ".expected.npy", "format": fmt,
                            "color": color, "numbers": NUMBERS, "times": times, "lossless": lossless, "shape": list(shape),
                            "metadata": {"experimenter": "compat", "rig": 3},
                            "extra_rows": list(range(0, len(NUMBERS), 4))})
    return written


CHECKER = textwrap.dedent(r'''
    import json, sys
    import numpy as np
    import imgstore
    assert imgstore.__version__ == "0.4.0", imgstore.__version__

    def band_code(img, bits=20):
        a = img.astype(float)
        if a.ndim == 3:
            a = a.mean(axis=2)
        h, w = a.shape
        edges = np.linspace(0, w, bits + 1).astype(int)
        v = 0
        for i in range(bits):
            v = (v << 1) | int(a[: h // 2, edges[i] + 1: edges[i + 1] - 1].mean() > 127)
        return v

    results = []
    for case in json.load(sys.stdin):
        problems = []
        try:
            s = imgstore.new_for_filename(case["path"])
            md = s.get_frame_metadata()
            if list(md["frame_number"]) != case["numbers"]:
                problems.append("frame_number differs")
            if list(md["frame_time"]) != case["times"]:
                problems.append("frame_time differs")
            if s.user_metadata != case["metadata"]:
                problems.append("user metadata differs: %r" % s.user_metadata)
            if list(s.image_shape) != case["shape"]:
                problems.append("image_shape %r" % (s.image_shape,))
            expected = np.load(case["expected"])
            seen = []
            while True:
                try:
                    img, (fn, ft) = s.get_next_image()
                except EOFError:
                    break
                want = expected[len(seen)]
                seen.append(fn)
                if case["lossless"]:
                    if not np.array_equal(img, want):
                        problems.append("frame %d not bit-exact" % fn)
                elif band_code(img) != fn:
                    problems.append("frame %d barcode %d" % (fn, band_code(img)))
            if seen != case["numbers"]:
                problems.append("sequential read gave %d frames" % len(seen))
            for fn in (case["numbers"][10], case["numbers"][3]):
                img, (got, _) = s.get_image(fn)
                if got != fn or band_code(img) != fn:
                    problems.append("get_image(%d) wrong" % fn)
            df = s.get_extra_data()
            if df is None or list(df["frame_index"]) != case["extra_rows"]:
                problems.append("extra data differs")
            s.close()
        except Exception as e:
            problems.append("%s: %s" % (type(e).__name__, e))
        results.append({"name": case["name"], "problems": problems[:5]})
    json.dump(results, sys.stdout)
''')


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venv", default=os.path.join(os.path.dirname(HERE), ".venv-reference"))
    p.add_argument("--keep", help="write the stores here and keep them")
    args = p.parse_args(argv)

    python = ensure_reference_venv(args.venv)
    root = args.keep or tempfile.mkdtemp(prefix="imgstore-compat-")
    os.makedirs(root, exist_ok=True)
    cases = write_stores(root)
    out = subprocess.run([python, "-c", CHECKER], input=json.dumps(cases), capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return 2
    failed = 0
    formats = {c["name"]: c["format"] for c in cases}
    for r in json.loads(out.stdout):
        new = formats[r["name"]] in NEW_FORMATS
        status = "ok" if not r["problems"] else "FAILED: " + "; ".join(r["problems"])
        failed += bool(r["problems"]) and not new
        print(f"{r['name']:24s} opens in imgstore 0.4.0: {status}{' (new format, informational)' if new else ''}")
    required = sum(formats[n] not in NEW_FORMATS for n in formats)
    print(f"{required - failed}/{required} stores in the reference's formats read back in the reference library")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
