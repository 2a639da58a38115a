"""``imgstore-view STORE``: browse a store in a web browser, also on machines without a display.

A small HTTP server (standard library only) on 127.0.0.1 serves one page and encodes
frames on demand. On a remote machine, forward the port over SSH
(``ssh -L 8000:127.0.0.1:8000 host imgstore-view STORE --port 8000 --no-browser``) and
open the printed URL locally.

Endpoints (all GET unless noted):

``/``                 the viewer page
``/info``             the store summary of ``imgstore-info --json`` plus ``playback_fps``
``/frame?index=N``    frame N (by frame_index) as JPEG or PNG; its metadata in ``X-Frame-*`` headers
``/meta?index=N``     the same metadata as JSON
``/lookup?q=TEXT``    the frame_index for a frame number, a time or seconds since the start
``POST /quit``        stop the server (the command then exits with status 0)
"""

from __future__ import annotations

import argparse
import datetime
import http.server
import os
import re
import sys
import threading
import urllib.parse
import webbrowser
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import ArgumentParser, CLIError, format_local, parse_time, positive_float, run_command, to_json, to_uint8

__all__ = ["main", "Viewer", "make_server"]

PROG = "imgstore-view"

EPILOG = """\
examples:
  imgstore-view /data/mouse1                      opens the browser on a free port
  imgstore-view /data/mouse1 --port 8000 --no-browser --fps 60
  ssh -L 8000:127.0.0.1:8000 rig1 imgstore-view /data/mouse1 --port 8000 --no-browser
                                                  (then open http://127.0.0.1:8000/ here)

In the page: Space play/pause, arrows step (Shift: 10 frames), PgUp/PgDn one second,
Home/End, f fits the frame to the window, the slider scrubs, the box jumps to a frame number (1234), seconds since the
start (12.5s), seconds since the epoch (1700000000.5), a date-time (2024-05-01 12:00:05,
in the store's time zone unless an offset is given) or a time of day (12:00:05).
Esc or q in the page (or Ctrl-C here) stops the viewer.
"""

_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")
_RELATIVE = re.compile(r"^\+?(\d+(\.\d*)?|\.\d+)\s*s$")


class Viewer:
    """Frame access for the HTTP handlers: one store, one lock (readers are not thread-safe).

    Parameters
    ----------
    store
        A store opened for reading.
    fps
        Playback rate (None: the store's mean frame rate, kept within 1..60).
    image_format
        ``'jpg'`` (fast, small) or ``'png'`` (exact pixels).
    """

    def __init__(self, store, fps: float | None = None, image_format: str = "jpg") -> None:
        from .info import summarize

        self.store = store
        self.tz = recording_timezone(store)
        self.lock = threading.Lock()
        self.image_format = image_format
        self.info = summarize(store)
        mean = self.info["mean_fps"]
        self.fps = fps or (min(max(mean, 1.0), 60.0) if mean else 25.0)
        self.info["playback_fps"] = self.fps
        self.info["image_format"] = image_format
        self._t0 = float(store.frame_times[0]) if len(store) else 0.0
        self.info_json = to_json(self.info).encode()

    def _check_index(self, text: str | None) -> int:
        try:
            i = int(text if text is not None else "")
        except ValueError:
            raise CLIError(f"index {text!r} is not an integer") from None
        if not 0 <= i < len(self.store):
            raise CLIError(f"index {i} is outside 0..{len(self.store) - 1}")
        return i

    def meta(self, index: int) -> dict[str, Any]:
        """frame_index, frame_number, frame_time, local date-time and seconds since the first frame."""
        fn = int(self.store.frame_numbers[index])
        ft = float(self.store.frame_times[index])
        return {"index": index, "frame_number": fn, "frame_time": ft, "datetime": format_local(ft, self.tz),
                "offset_s": round(ft - self._t0, 6)}

    def frame(self, index_text: str | None) -> tuple[bytes, str, dict[str, Any]]:
        """``(encoded image, content type, metadata)`` of a frame."""
        import cv2

        index = self._check_index(index_text)
        with self.lock:
            img = self.store[index]
        img = to_uint8(np.asarray(img))
        if self.image_format == "png":
            ok, data = cv2.imencode(".png", img, [int(cv2.IMWRITE_PNG_COMPRESSION), 1])
            ctype = "image/png"
        else:
            ok, data = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 92])
            ctype = "image/jpeg"
        if not ok:
            raise CLIError(f"frame {index} could not be encoded")
        return data.tobytes(), ctype, self.meta(index)

    def lookup(self, text: str) -> dict[str, Any]:
        """The frame the user means by ``text`` (see the module help), with a note when inexact."""
        text = (text or "").strip()
        store = self.store
        if not text:
            raise CLIError("type a frame number, a time or seconds like 12.5s")
        if len(store) == 0:
            raise CLIError("the store has no frames")
        note = ""
        number = text[1:] if text.startswith("#") else text
        if re.fullmatch(r"-?\d+", number):
            fn = int(number)
            index = store.frame_index_of(fn, exact=False)
            found = int(store.frame_numbers[index])
            if found != fn:
                note = f"no frame #{fn}; showing the nearest, #{found}"
        else:
            m = _RELATIVE.match(text)
            if m:
                t = self._t0 + float(m.group(1))
            elif _TIME_OF_DAY.match(text):
                # a time of day on the date of the first frame, in the store's zone
                day = datetime.datetime.fromtimestamp(self._t0, tz=self.tz).date().isoformat()
                t = parse_time(f"{day}T{text}", self.tz)
            else:
                t = parse_time(text, self.tz)
            index = store.frame_index_at_time(t)
            ft = float(store.frame_times[index])
            if abs(ft - t) > 1.0:
                note = f"nearest frame is {ft - t:+.3f} s from {format_local(t, self.tz)}"
        return {**self.meta(index), "note": note}


def _handler_class(viewer: Viewer, page: bytes, verbose: bool) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: playback makes many small requests
        server_version = "imgstore-view"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's signature
            if verbose:
                super().log_message(format, *args)

        def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, code: int, obj: Any) -> None:
            self._send(code, to_json(obj, indent=None).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - the base's name
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            one = lambda key: (query.get(key) or [None])[0]  # noqa: E731
            try:
                if url.path in ("/", "/index.html"):
                    self._send(200, page, "text/html; charset=utf-8")
                elif url.path == "/info":
                    self._send(200, viewer.info_json, "application/json")
                elif url.path == "/frame":
                    data, ctype, meta = viewer.frame(one("index"))
                    self._send(200, data, ctype, {
                        "X-Frame-Index": str(meta["index"]), "X-Frame-Number": str(meta["frame_number"]),
                        "X-Frame-Time": repr(meta["frame_time"]), "X-Frame-Offset": f"{meta['offset_s']:.3f}",
                        # header values must be latin-1: zone abbreviations are ASCII anyway
                        "X-Frame-Datetime": meta["datetime"].encode("ascii", "replace").decode()})
                elif url.path == "/meta":
                    self._json(200, viewer.meta(viewer._check_index(one("index"))))
                elif url.path == "/lookup":
                    self._json(200, viewer.lookup(one("q") or ""))
                elif url.path == "/favicon.ico":
                    self._send(204, b"", "image/x-icon")
                else:
                    self._json(404, {"error": f"no such page: {url.path}"})
            except CLIError as exc:
                self._json(400, {"error": str(exc)})
            except Exception as exc:  # a damaged chunk must not kill the server: show it in the page
                self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if urllib.parse.urlsplit(self.path).path == "/quit":
                self._json(200, {"stopping": True})
                # shutdown() waits for serve_forever to return: never call it from the serving thread
                threading.Thread(target=self.server.shutdown, daemon=True).start()
            else:
                self._json(404, {"error": f"no such action: {self.path}"})

    return Handler


def make_server(store, host: str = "127.0.0.1", port: int = 0, fps: float | None = None,
                image_format: str = "jpg", verbose: bool = False) -> http.server.ThreadingHTTPServer:
    """An HTTP server for ``store`` (not yet serving); its ``url`` attribute is the page's address.

    Parameters
    ----------
    store
        A store opened for reading (closed by the caller after ``serve_forever`` returns).
    host, port
        Where to listen (port 0: a free port).
    fps, image_format
        See :class:`Viewer`.
    verbose
        Log every request on stderr.
    """
    from ._viewer_page import PAGE

    viewer = Viewer(store, fps=fps, image_format=image_format)
    server = http.server.ThreadingHTTPServer((host, port), _handler_class(viewer, PAGE.encode(), verbose))
    server.daemon_threads = True
    server.viewer = viewer  # type: ignore[attr-defined]
    server.url = f"http://{host}:{server.server_address[1]}/"  # type: ignore[attr-defined]
    return server


def _has_display() -> bool:
    """False on a Linux/BSD machine without X11 or Wayland, where a browser would start in the terminal."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = ArgumentParser(prog=PROG, description="Browse a store in a web browser: play, step, scrub and jump "
                                              "to a frame number or time. Serves on 127.0.0.1 only.",
                       epilog=EPILOG)
    p.add_argument("store", help="the store's folder or its metadata.yaml")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL; do not open a browser")
    p.add_argument("--fps", type=positive_float, help="playback rate (default: the store's, at most 60)")
    p.add_argument("--png", action="store_true", help="send frames as PNG (exact pixels) instead of JPEG")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return p


def run(args: argparse.Namespace) -> int:
    """Body of the command."""
    import imgstore

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port {args.port} is not a port number")
    with imgstore.new_for_filename(args.store) as store:
        server = make_server(store, port=args.port, fps=args.fps, image_format="png" if args.png else "jpg",
                             verbose=args.verbose)
        with server:
            print(f"serving {args.store} ({len(store)} frames) at {server.url}", flush=True)
            print("press Esc or q in the page, or Ctrl-C here, to stop", flush=True)
            if not args.no_browser:
                if _has_display():
                    # a browser that takes long to start must not delay the server
                    threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
                else:
                    port = server.server_address[1]
                    print(f"no display here: open the URL on this machine's browser, or from your computer "
                          f"after 'ssh -L {port}:127.0.0.1:{port} <this host>'", flush=True)
            try:
                server.serve_forever(poll_interval=0.2)
            except KeyboardInterrupt:
                pass
    print("viewer stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run ``imgstore-view``; returns the exit status."""
    return run_command(prog, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
