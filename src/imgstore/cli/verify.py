"""``imgstore-verify STORE``: read every frame and compare the chunks with the index.

Reports truncated, missing, corrupt (checksum), unreadable and mismatched frames per chunk (see
:mod:`imgstore.verify`). Exit status 0 when every frame reads back as indexed, 1 when
damage was found (or the store cannot be opened), 2 for bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._common import EXIT_FAILURE, EXIT_OK, ArgumentParser, positive_int, run_command, to_json

__all__ = ["build_parser", "main"]

PROG = "imgstore-verify"

EPILOG = """\
examples:
  imgstore-verify /data/mouse1                 every frame, all cores; exit status 1 on damage
  imgstore-verify /data/mouse1 --json | jq '.chunks[] | select(.ok | not)'
  imgstore-verify /data/mouse1 --workers 2     leave cores to a recording on the same machine

A damaged store can still be converted without its bad frames:
  imgstore-convert /data/mouse1 /data/mouse1-ok --format ffv1/mkv --skip-damaged
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = ArgumentParser(prog=PROG, description="Read every frame of a store (chunks in parallel) and compare "
                                              "each chunk's file with the index: truncated, missing, corrupt, "
                                              "unreadable or mismatched frames are listed per chunk.", epilog=EPILOG)
    p.add_argument("store", help="the store's folder or its metadata.yaml")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="chunks read at the same time (default: the number of cores, at most 8)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Body of the command."""
    from tqdm import tqdm

    import imgstore

    from ..verify import verify

    with imgstore.new_for_filename(args.store) as store:
        n = len(store)
        with tqdm(total=n, unit=" frames", desc=f"verifying {args.store}", file=sys.stderr, dynamic_ncols=True,
                  mininterval=0.25, disable=args.quiet) as bar:
            report = verify(store, workers=args.workers, progress=bar.update)
        fmt = store.format
    if args.json:
        print(to_json(report.to_dict()))
    else:
        print(f"store  {report.path}  ({fmt}, {n} frames in {len(report.chunks)} chunk"
              f"{'s' * (len(report.chunks) != 1)})")
        print(report)
    return EXIT_OK if report.ok else EXIT_FAILURE


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run ``imgstore-verify``; returns the exit status."""
    return run_command(prog, build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
