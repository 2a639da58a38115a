"""``imgstore-repair STORE [--dry-run]``: finalise a store whose writer crashed.

Writes the index of the chunk the writer had open (from its journal), turns its extra-data
journal into ``.extra.json``, removes journals, temporary files and a stale ``.lock``, and
deletes chunks that provably hold nothing, so that every reader, imgstore 0.4 included,
reads the store as a closed one. What cannot be interpreted is moved into the store's
``damaged/`` folder, never deleted. A store that a live process is writing is never touched.

Exit status: 0 repaired (or nothing to do), 1 error, 2 bad arguments, 3 repaired as far as
possible but damage was found: set aside in ``damaged/`` or left (listed).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._common import ArgumentParser, run_command

__all__ = ["build_parser", "main"]

PROG = "imgstore-repair"

EPILOG = """\
examples:
  imgstore-repair /data/mouse1 --dry-run     show what would be done
  imgstore-repair /data/mouse1               do it
"""

#: exit status when damage was found: set aside in ``damaged/`` or left as is
EXIT_DAMAGE_LEFT = 3


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = ArgumentParser(prog=PROG, description="Finalise a store whose writer crashed (killed, power loss): write "
                                              "the missing index from the writer's journal and clean up, so that "
                                              "any imgstore reads it as a closed store.", epilog=EPILOG)
    p.add_argument("store", help="the store's folder (or its metadata.yaml)")
    p.add_argument("-n", "--dry-run", action="store_true", help="only show what would be done; change nothing")
    p.add_argument("--force", action="store_true",
                   help="treat a lock held by a process on another machine as stale (make sure it is!)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary line")
    return p


def run(args: argparse.Namespace) -> int:
    """Repair ``args.store`` and print what was done."""
    from ..repair import repair

    report = repair(args.store, dry_run=args.dry_run, force=args.force)
    lines = str(report).splitlines()
    print("\n".join(lines[-1:] if args.quiet else lines))
    return 0 if report.clean else EXIT_DAMAGE_LEFT


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run ``imgstore-repair``; returns the exit status."""
    return run_command(prog, build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
