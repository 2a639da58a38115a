"""``imgstore-sync SRC URL``: copy a store to object storage, idempotently; ``--follow`` while it is recorded.

See :mod:`imgstore.remote_sync` for the order of the uploads and what makes the remote copy a
valid store at every moment. Exit status 0 when everything is uploaded and verified, 1 when an
upload kept failing (rerun to finish), 2 for bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

from ._common import EXIT_OK, ArgumentParser, UsageError, add_storage_options, positive_float, run_command

__all__ = ["build_parser", "main"]

PROG = "imgstore-sync"

EPILOG = """\
examples:
  imgstore-sync /data/mouse1 s3://lab-videos/2026/mouse1
  imgstore-sync /data/mouse1 s3://lab-videos/mouse1 --follow       while the recording goes on
  imgstore-sync /data/mouse1 s3://bucket/mouse1 -o endpoint_url=http://minio.lab:9000

Credentials come from the usual configuration of fsspec/s3fs (AWS_* variables, ~/.aws, an
instance role...); they are never printed. A failed run leaves a valid remote store: rerun the
same command to finish it (files already there are checked and skipped).
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = ArgumentParser(prog=PROG, description="Copy a store to object storage (any fsspec URL: s3://, gs://, "
                                              "memory://...): metadata first, each chunk's payload before its "
                                              "index, the index cache last, every upload verified.", epilog=EPILOG)
    p.add_argument("src", help="the local store's folder")
    p.add_argument("url", help="where the copy goes (s3://bucket/path/store)")
    p.add_argument("--follow", action="store_true",
                   help="keep uploading chunks as the writer closes them; stop once the writer is gone")
    p.add_argument("--interval", type=positive_float, default=2.0, metavar="S",
                   help="seconds between passes with --follow (default: 2)")
    add_storage_options(p)
    p.add_argument("--no-verify", action="store_true", help="do not check each upload's size and MD5")
    p.add_argument("-v", "--verbose", action="store_true", help="print each uploaded file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Body of the command."""
    from tqdm import tqdm

    from ..remote import is_url, scrub
    from ..remote_sync import sync

    if not is_url(args.url):
        raise UsageError(f"{args.url!r} is not a URL (s3://bucket/path, gs://..., file:///...)")
    options = dict(args.storage_option)
    with tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=f"uploading to {scrub(args.url)}",
              file=sys.stderr, dynamic_ncols=True, mininterval=0.25, disable=args.quiet) as bar:

        def progress(name: str, nbytes: int) -> None:
            bar.update(nbytes)
            if args.verbose:
                bar.write(f"uploaded {name}", file=sys.stderr)

        stop = threading.Event()
        try:
            report = sync(args.src, args.url, storage_options=options, follow=args.follow, interval=args.interval,
                          verify=not args.no_verify, progress=progress, stop=stop)
        except KeyboardInterrupt:
            stop.set()
            raise
    print(f"{scrub(args.url)}: {len(report.uploaded)} files uploaded ({report.bytes} bytes), {report.skipped} "
          f"already there; {report.chunks} chunks" + (f", {report.passes} passes" if args.follow else ""))
    return EXIT_OK


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run ``imgstore-sync``; returns the exit status."""
    return run_command(prog, build_parser(), run, argv)
