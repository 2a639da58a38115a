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
import os
import sys
import tempfile

from imgstore.testing.reference import default_venv, ensure_reference_venv, read_in_reference

# formats both libraries know; video formats are read by the reference through OpenCV's FFmpeg
REFERENCE_FORMATS = ["npy", "png", "jpg", "bmp", "tif", "pgm", "ppm", "mjpeg/avi", "h264/mkv", "avc1/mp4",
                     # new formats: the reference cannot write them but its OpenCV reads them
                     "ffv1/mkv", "h264-lossless/mkv", "hevc/mp4"]
#: informational only: the reference never wrote these, so its reading them is a bonus
NEW_FORMATS = {"ffv1/mkv", "h264-lossless/mkv", "hevc/mp4"}

NUMBERS = [*range(0, 9), *range(30, 20, -1), 41, 41, *range(50, 56)]
SHAPE = (64, 96)


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
                for i, (fn, ft) in enumerate(zip(NUMBERS, times, strict=False)):
                    s.add_image(frames[i], fn, ft)
                    if i % 4 == 0:
                        s.add_extra_data(temperature=20.0 + i, note=f"n{i}")
                lossless = s.lossless
            written.append({"name": name, "path": path, "expected": path + ".expected.npy", "format": fmt,
                            "color": color, "numbers": NUMBERS, "times": times, "lossless": lossless,
                            "shape": list(shape),
                            "metadata": {"experimenter": "compat", "rig": 3},
                            "extra_rows": list(range(0, len(NUMBERS), 4)),
                            "get_image": [NUMBERS[10], NUMBERS[3]]})
    return written


def problems_of(case: dict, got: dict) -> list[str]:
    """What the reference read differently from what was written."""
    if "error" in got:
        return [got["error"]]
    problems = []
    if got["frame_number"] != case["numbers"]:
        problems.append("frame_number differs")
    if got["frame_time"] != case["times"]:
        problems.append("frame_time differs")
    if got["user_metadata"] != case["metadata"]:
        problems.append(f"user metadata differs: {got['user_metadata']!r}")
    if got["image_shape"] != case["shape"]:
        problems.append(f"image_shape {got['image_shape']}")
    if got["sequential_codes"] != case["numbers"]:
        problems.append("sequential barcodes differ")
    if case["lossless"] and not all(got["sequential_exact"]):
        problems.append(f"{got['sequential_exact'].count(False)} frames not bit-exact")
    for (fn_got, code), fn in zip(got["random"], case["get_image"], strict=False):
        if fn_got != fn or code != fn:
            problems.append(f"get_image({fn}) wrong")
    if got["extra_frame_index"] != case["extra_rows"]:
        problems.append("extra data differs")
    return problems[:5]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venv", default=default_venv())
    p.add_argument("--keep", help="write the stores here and keep them")
    args = p.parse_args(argv)

    print(f"reference venv: {args.venv}", flush=True)
    python = ensure_reference_venv(args.venv)
    root = args.keep or tempfile.mkdtemp(prefix="imgstore-compat-")
    os.makedirs(root, exist_ok=True)
    cases = write_stores(root)
    results = read_in_reference(python, cases)
    failed = 0
    for case, got in zip(cases, results, strict=False):
        new = case["format"] in NEW_FORMATS
        problems = problems_of(case, got)
        status = "ok" if not problems else "FAILED: " + "; ".join(problems)
        failed += bool(problems) and not new
        print(f"{case['name']:24s} opens in imgstore 0.4.0: {status}{' (new format, informational)' if new else ''}")
    required = sum(c["format"] not in NEW_FORMATS for c in cases)
    print(f"{required - failed}/{required} stores in the reference's formats read back in the reference library")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
