"""``imgstore-view STORE [STORE...]``: browse stores in a web browser, also on machines without a display.

A small HTTP server (standard library only) on 127.0.0.1 serves one page and encodes
frames on demand. On a remote machine, forward the port over SSH
(``ssh -L 8000:127.0.0.1:8000 host imgstore-view STORE --port 8000 --no-browser``) and
open the printed URL locally.

Several stores are shown side by side, in step by frame_time (:class:`imgstore.align.MultiStore`,
a store without a frame at a step shows its previous one). The page's position is then a
*step*; with one store a step is a frame_index. A store that a writer is recording is
followed: new frames appear as they are written.

Endpoints (all GET unless noted):

``/``                         the viewer page (``/viewer.css``, ``/viewer.js``: its style and script)
``/info``                     the first store's summary of ``imgstore-info --json`` plus ``playback_fps``,
                              ``frame_count`` (steps), ``live`` and ``stores`` (every store's summary)
``/status``                   ``steps``, ``live``, ``frame_counts``, ``version`` (cheap; the page polls it)
``/frame?index=N&store=K``    store K's frame at step N as JPEG or PNG; its metadata in ``X-Frame-*`` headers
``/meta?index=N``             the same metadata as JSON (``stores``: every store's)
``/events``                   timeline marks: frame-number gaps and pauses, by step
``/extra?index=N``            each store's extra data at step N and around it
``/lookup?q=TEXT``            the step for a frame number, a time or seconds since the start
``POST /quit``                stop the server (the command then exits with status 0); needs the run's
                              token in ``X-Imgstore-Token`` (the page has it)

A value that cannot be read (``index=x``, a frame number beyond 64 bits) is answered 400.
Requests from anything but the viewer's own page or a program on this machine (a foreign
``Host`` or ``Origin``) are refused with 403 (see :mod:`._viewer_http`).

The store side (the answers) is :mod:`._viewer_session`, the HTTP side :mod:`._viewer_http`,
the page itself the package data ``static/viewer.{html,css,js}``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import webbrowser
from collections.abc import Sequence

from ._common import ArgumentParser, add_storage_options, open_for_reading, port_number, positive_float, run_command
from ._viewer_http import ViewerServer, make_server
from ._viewer_session import Viewer, timeline_events

__all__ = ["Viewer", "ViewerServer", "main", "make_server", "timeline_events"]

PROG = "imgstore-view"

EPILOG = """\
examples:
  imgstore-view /data/mouse1                      opens the browser on a free port
  imgstore-view /data/top /data/side              two cameras side by side, in step by frame_time
  imgstore-view /data/mouse1 --port 8000 --no-browser --fps 60
  ssh -L 8000:127.0.0.1:8000 rig1 imgstore-view /data/mouse1 --port 8000 --no-browser
                                                  (then open http://127.0.0.1:8000/ here)

In the page (? shows all keys): Space play/pause, arrows step (Shift: 10 frames), PgUp/PgDn
one second, Home/End (End also follows a live recording), n/p next/previous dropped frames or
pause, -/+ playback speed, f fits the frame to the window, the slider scrubs, the box jumps to
a frame number (1234), seconds since the start (12.5s), seconds since the epoch
(1700000000.5), a date-time (2024-05-01 12:00:05, in the store's time zone unless an offset is
given) or a time of day (12:00:05). Esc or q in the page (or Ctrl-C here) stops the viewer.
"""


def _has_display() -> bool:
    """False on a Linux/BSD machine without X11 or Wayland, where a browser would start in the terminal."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = ArgumentParser(prog=PROG, description="Browse stores in a web browser: play, step, scrub, jump to a "
                                              "frame number or time, see dropped frames and extra data; several "
                                              "stores side by side in step; follows a store being recorded. "
                                              "Serves on 127.0.0.1 only.",
                       epilog=EPILOG)
    p.add_argument("store", nargs="+", help="the store's folder or its metadata.yaml, or a URL (s3://bucket/store); "
                                            "several: side by side")
    add_storage_options(p)
    p.add_argument("--port", type=port_number, default=0, help="port to listen on (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL; do not open a browser")
    p.add_argument("--fps", type=positive_float, help="playback rate at speed 1 (default: the store's, at most 60)")
    p.add_argument("--png", action="store_true", help="send frames as PNG (exact pixels) instead of JPEG")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return p


def run(args: argparse.Namespace) -> int:
    """Body of the command."""

    with contextlib.ExitStack() as stack:
        library_log = logging.getLogger("imgstore")
        level = library_log.level
        # a store being recorded has an unfinished last chunk by design: opening it says so, needlessly
        library_log.setLevel(logging.ERROR)
        try:
            stores = [stack.enter_context(open_for_reading(path, args)) for path in args.store]
        finally:
            library_log.setLevel(level)
        server = make_server(stores, port=args.port, fps=args.fps, image_format="png" if args.png else "jpg",
                             verbose=args.verbose)
        with server:
            counts = ", ".join(str(len(s)) for s in stores)
            what = " + ".join(args.store)
            print(f"serving {what} ({counts} frames) at {server.url}", flush=True)
            print("press Esc or q in the page, or Ctrl-C here, to stop", flush=True)
            if not args.no_browser:
                if _has_display():
                    # a browser that takes long to start must not delay the server
                    threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
                else:
                    port = server.server_address[1]
                    print(f"no display here: open the URL on this machine's browser, or from your computer "
                          f"after 'ssh -L {port}:127.0.0.1:{port} <this host>'", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever(poll_interval=0.2)
    print("viewer stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run ``imgstore-view``; returns the exit status."""
    return run_command(prog, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
