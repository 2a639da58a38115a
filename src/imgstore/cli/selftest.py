"""``imgstore-test``: check that this installation writes and reads back every store format.

For each format of :func:`imgstore.get_supported_formats` it writes a short store of
barcode frames (each frame carries its frame_number in its pixels) into a temporary
folder, then reads it back

* sequentially (``get_next_image``): every frame must carry the right frame_number and
  frame_time and show the right barcode; lossless formats must return the exact pixels;
* in random order (``get_image(frame_number)`` and ``store[frame_index]``): every frame
  must equal the one read sequentially, pixel for pixel.

``--full`` then runs imgstore's packaged conformance suite (the checks in
:mod:`imgstore.testing.conformance`) under pytest for the same formats.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._common import ArgumentParser, available_formats, describe_error, positive_int, run_command

__all__ = ["FormatResult", "check_format_roundtrip", "conformance_module_source", "main"]

PROG = "imgstore-test"
FIRST_FRAME_NUMBER = 1000
T0 = 1_700_000_000.0

EPILOG = """\
examples:
  imgstore-test                       every format; exit status 0 when all pass
  imgstore-test --formats npy,h264/mkv --frames 200
  imgstore-test --full                also run the packaged conformance suite (needs pytest)

The repository's own test suite is run from a source checkout with: pytest tests/
"""


@dataclass
class FormatResult:
    """Outcome of one format's round trip."""

    fmt: str
    write_ok: bool = False
    #: None: not checked (the write failed)
    frames_ok: bool | None = None
    random_ok: bool | None = None
    write_fps: float = float("nan")
    read_fps: float = float("nan")
    lossless: bool | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return self.write_ok and self.frames_ok is True and self.random_ok is True


def _color_for(fmt: str) -> bool:
    # ppm is colour-only and the '+color' formats store colour; the others are checked in grey
    return fmt == "ppm" or fmt.endswith("+color")


def check_format_roundtrip(fmt: str, tmpdir: str, n_frames: int = 60, shape: tuple[int, int] = (96, 160),
                           seed: int = 0) -> FormatResult:
    """Write ``n_frames`` barcode frames in ``fmt`` and read them back in order and at random.

    Parameters
    ----------
    fmt
        Store format.
    tmpdir
        Where to write the store (a subfolder is created).
    n_frames
        Frames to write (chunks of ``n_frames // 3 + 1`` so several chunks are read).
    shape
        ``(height, width)`` of the frames.
    seed
        Seed of the random reading order.
    """
    import imgstore
    from imgstore.testing.barcode import make_frame, read_barcode

    res = FormatResult(fmt)
    color = _color_for(fmt)
    h, w = shape
    numbers = [FIRST_FRAME_NUMBER + i for i in range(n_frames)]
    times = [T0 + i / 30.0 for i in range(n_frames)]
    frames = {fn: make_frame(fn, h, w, color=color) for fn in numbers}
    path = os.path.join(tmpdir, fmt.replace("/", "_").replace("+", "_"))
    try:
        t = time.perf_counter()
        with imgstore.new_for_format(fmt, basedir=path, imgshape=frames[numbers[0]].shape, imgdtype="uint8",
                                     chunksize=n_frames // 3 + 1) as store:
            for fn, ft in zip(numbers, times, strict=False):
                store.add_image(frames[fn], fn, ft)
        res.write_fps = n_frames / (time.perf_counter() - t)
        res.write_ok = True
    except Exception as exc:  # any failure is this format's failure, reported in the table
        res.problems.append(f"write: {describe_error(exc)}")
        return res

    try:
        with imgstore.new_for_filename(path) as store:
            res.lossless = bool(store.lossless)
            sequential: list[np.ndarray] = []
            bad: list[str] = []
            t = time.perf_counter()
            while True:
                try:
                    img, (fn, ft) = store.get_next_image()
                except EOFError:
                    break
                sequential.append(img)
            res.read_fps = len(sequential) / (time.perf_counter() - t)
            if len(sequential) != n_frames:
                bad.append(f"read {len(sequential)} frames, wrote {n_frames}")
            if list(store.frame_numbers) != numbers or list(store.frame_times) != times:
                bad.append("frame numbers/times differ from those written")
            for i, img in enumerate(sequential[:n_frames]):
                fn = numbers[i]
                if res.lossless and not np.array_equal(img, frames[fn]):
                    bad.append(f"frame {fn}: pixels differ (lossless format)")
                elif read_barcode(img) != fn:
                    bad.append(f"frame {fn}: barcode reads {read_barcode(img)}")
            res.frames_ok = not bad
            res.problems += bad[:3]

            bad = []
            order = np.random.default_rng(seed).permutation(len(sequential))
            for k, i in enumerate(order):
                i = int(i)
                if k % 2:
                    img = store[i]
                    meta = (numbers[i], times[i])
                else:
                    img, meta = store.get_image(numbers[i])
                if meta != (numbers[i], times[i]):
                    bad.append(f"random access to frame {numbers[i]} returned metadata {meta}")
                if not np.array_equal(img, sequential[i]):
                    bad.append(f"random access to frame {numbers[i]} differs from sequential reading")
            res.random_ok = not bad
            res.problems += bad[:3]
    except Exception as exc:
        res.problems.append(f"read: {describe_error(exc)}")
        res.frames_ok = bool(res.frames_ok)
        res.random_ok = bool(res.random_ok)
    return res


def format_table(results: Sequence[FormatResult]) -> str:
    """The results as a text table."""
    def mark(ok: bool | None) -> str:
        return "-" if ok is None else ("ok" if ok else "FAIL")

    def rate(x: float) -> str:
        return f"{x:.0f}" if x == x else "-"

    header = ("format", "write", "frames exact", "random access", "write fps", "read fps", "lossless")
    rows = [header]
    for r in results:
        lossless = {True: "yes", False: "no", None: "-"}[r.lossless]
        rows.append((r.fmt, mark(r.write_ok), mark(r.frames_ok), mark(r.random_ok), rate(r.write_fps),
                     rate(r.read_fps), lossless))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def conformance_module_source(formats: Sequence[str]) -> str:
    """A pytest module running :class:`~imgstore.testing.conformance.StoreConformance` per format."""
    lines = ["from imgstore.testing.conformance import StoreConformance", ""]
    for i, fmt in enumerate(formats):
        name = "Test_" + "".join(c if c.isalnum() else "_" for c in fmt)
        lines += [f"class {name}_{i}(StoreConformance):", f"    fmt = {fmt!r}", f"    color = {_color_for(fmt)!r}",
                  ""]
    return "\n".join(lines)


def run_conformance(formats: Sequence[str], verbose: bool) -> int:
    """Run the packaged conformance suite for ``formats`` under pytest; returns pytest's status."""
    try:
        import pytest  # noqa: F401 - only checking it is installed
    except ImportError:
        print(f"{PROG}: --full needs pytest (pip install 'imgstore[test]')", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="imgstore-test-") as tmp:
        module = os.path.join(tmp, "test_imgstore_conformance.py")
        with open(module, "w") as f:
            f.write(conformance_module_source(formats))
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", tmp,
               "-q" if not verbose else "-v", module]
        print(f"\nrunning the conformance suite: {' '.join(cmd)}", flush=True)
        # run from the temporary folder so no project's pytest configuration applies, and without
        # third-party plugins: the suite needs none, and some cost seconds to load
        env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        return subprocess.call(cmd, cwd=tmp, env=env)


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = ArgumentParser(prog=PROG, description="Check this installation: write a short barcode store in every "
                                              "supported format and read it back sequentially and at random.",
                       epilog=EPILOG)
    p.add_argument("--formats", metavar="FMT,FMT", help="only these formats (comma separated)")
    p.add_argument("--frames", type=positive_int, default=60, metavar="N", help="frames per store (default 60)")
    p.add_argument("--full", action="store_true", help="also run the packaged conformance suite with pytest")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of failures")
    return p


def run(args: argparse.Namespace) -> int:
    """Body of the command."""
    import imgstore

    formats, why = available_formats()
    failed = False
    if args.formats:
        wanted = [f.strip() for f in args.formats.split(",") if f.strip()]
    else:
        wanted = formats
        if why:
            # a broken video layer is a broken installation, even though directory stores still work
            print(f"{PROG}: error: {why}", file=sys.stderr)
            failed = True
    print(f"imgstore {imgstore.__version__}: checking {len(wanted)} formats with {args.frames} frames each",
          flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="imgstore-test-") as tmp:
        for fmt in wanted:
            try:
                results.append(check_format_roundtrip(fmt, tmp, n_frames=args.frames))
            except Exception:  # a bug in the check itself: still report the other formats
                r = FormatResult(fmt, problems=[traceback.format_exc() if args.verbose else "unexpected error"])
                results.append(r)
    print(format_table(results))
    for r in results:
        for problem in r.problems:
            print(f"  {r.fmt}: {problem}")
    failed = failed or not all(r.ok for r in results)
    print("FAILED" if failed else f"all {len(results)} formats ok")
    if args.full:
        status = run_conformance([r.fmt for r in results if r.ok], args.verbose)
        failed = failed or status != 0
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run ``imgstore-test``; returns the exit status."""
    return run_command(prog, build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
