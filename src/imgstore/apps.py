"""The reference's ``imgstore.apps``: its entry points, now the command-line tools of :mod:`imgstore.cli`.

``main_viewer`` is ``imgstore-view`` (a browser viewer instead of an OpenCV window, so it
works on headless recording machines), ``main_saver`` is ``imgstore-save`` and
``main_test`` is ``imgstore-test``. Each parses ``sys.argv`` as the reference did and
returns the command's exit status.
"""

from __future__ import annotations

import sys
from typing import IO, Any

import numpy as np

from .factory import new_for_filename

__all__ = ["generate_timecodes", "main_generate_timecodes", "main_saver", "main_test", "main_viewer"]


def main_viewer() -> int:
    """``imgstore-view`` (:mod:`imgstore.cli.view`)."""
    from .cli import view

    return view.main()


def main_saver() -> int:
    """``imgstore-save`` (:mod:`imgstore.cli.save`)."""
    from .cli import save

    return save.main()


def main_test() -> int:
    """``imgstore-test`` (:mod:`imgstore.cli.selftest`): check every format of this installation."""
    from .cli import selftest

    return selftest.main()


def generate_timecodes(store: Any, dest_file: IO[str]) -> np.ndarray:
    """Write a Matroska "timecode format v2" file (ms since the first frame); return the seconds."""
    frame_times = np.asarray(store.get_frame_metadata()["frame_time"], dtype=np.float64)
    seconds = frame_times - frame_times[0] if len(frame_times) else frame_times
    dest_file.write("# timecode format v2\n")
    for t in seconds:
        dest_file.write(f"{t * 1000.0:.3f}\n")
    return seconds


def main_generate_timecodes(argv: list[str] | None = None) -> int:
    """Print a store's timecodes (``generate_timecodes``) to standard output."""
    import argparse

    parser = argparse.ArgumentParser(description="print a store's frame times as a timecode v2 file")
    parser.add_argument("path", nargs=1)
    args = parser.parse_args(argv)
    with new_for_filename(args.path[0]) as store:
        generate_timecodes(store, sys.stdout)
    return 0
