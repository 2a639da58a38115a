"""A writer process for crash tests: records barcode frames and reports each one on stdout.

``python -m imgstore.testing.crashwriter DEST FORMAT [--chunksize N] [--frames N] [--fps F]``

After every ``add_image`` that returned it prints ``frame <frame_number> <monotonic time>``
(and ``extra <frame_number>`` after ``add_extra_data``), flushing stdout, so a test can kill
it at a known point without sleeping.
"""

from __future__ import annotations

import argparse
import sys
import time

import imgstore
from imgstore.testing.barcode import make_frame


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("dest")
    p.add_argument("format")
    p.add_argument("--chunksize", type=int, default=10)
    p.add_argument("--frames", type=int, default=10**9)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--color", action="store_true")
    p.add_argument("--extra-every", type=int, default=3)
    p.add_argument("--fps", type=float, default=0.0, help="pace frames at this rate (0: as fast as possible)")
    args = p.parse_args(argv)

    shape = (args.height, args.width, 3) if args.color else (args.height, args.width)
    frames = [make_frame(i, args.height, args.width, color=args.color) for i in range(64)]
    store = imgstore.new_for_format(args.format, basedir=args.dest, imgshape=shape, chunksize=args.chunksize)
    t0 = time.time()
    for fn in range(args.frames):
        if args.fps:
            # pacing by a deadline, not a sleep-for-sync: the reader never relies on it
            delay = t0 + fn / args.fps - time.time()
            if delay > 0:
                time.sleep(delay)
        img = frames[fn % 64] if fn < 64 else make_frame(fn, args.height, args.width, color=args.color)
        store.add_image(img, fn, 1_700_000_000.0 + fn / 30.0)
        sys.stdout.write(f"frame {fn} {time.monotonic():.6f}\n")
        if args.extra_every and fn % args.extra_every == 0:
            store.add_extra_data(value=fn * 0.5, tag=f"t{fn}")
            sys.stdout.write(f"extra {fn}\n")
        sys.stdout.flush()
    store.close()
    sys.stdout.write("closed\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
