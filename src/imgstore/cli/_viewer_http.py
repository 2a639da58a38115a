"""The HTTP side of ``imgstore-view``: a standard-library server for the page and a :class:`Viewer`'s answers.

The page (``static/viewer.html``, ``viewer.css``, ``viewer.js``, package data) is served
as files; everything else is an answer of :class:`~._viewer_session.Viewer`. Only the
viewer's own page, or a program on this machine, may use the server:

* the ``Host`` header must name the served address (``127.0.0.1``, or ``localhost``/``::1``
  when serving on the loopback interface; any port, as an ``ssh -L`` tunnel may use another
  local one). Any other name is another site's page whose DNS name was pointed at this
  machine (DNS rebinding): 403;
* a request another site's page makes (``Origin`` other than this server, ``Sec-Fetch-Site``
  ``cross-site`` or ``same-site``) is refused: 403;
* a request that changes the server's state (``POST``: ``/quit``) must carry this run's
  token in ``X-Imgstore-Token`` (the page gets it in a ``<meta>`` tag; other sites cannot
  read the page): 403 without;
* a body needs a valid ``Content-Length`` of at most :data:`MAX_BODY` bytes (400, 411, 413);
* a connection idle for :data:`IDLE_TIMEOUT` seconds is closed; at most
  :data:`MAX_CONNECTIONS` are served at a time (more are closed at once).
"""

from __future__ import annotations

import errno
import http.server
import ipaddress
import re
import secrets
import threading
import urllib.parse
from collections.abc import Sequence
from importlib import resources
from typing import Any

from ._common import CLIError, to_json
from ._viewer_session import Viewer

__all__ = ["IDLE_TIMEOUT", "MAX_BODY", "MAX_CONNECTIONS", "TOKEN_HEADER", "ViewerServer", "make_server"]

#: seconds a connection may wait for its next request (browsers reopen one when they need it)
IDLE_TIMEOUT = 30.0
#: connections served at the same time (a browser opens about 6 per server)
MAX_CONNECTIONS = 32
#: largest request body accepted (no endpoint reads one; a POST may carry an empty form)
MAX_BODY = 64 * 1024
#: bytes per second a client must at least read an answer at (a 2.7 MB PNG frame: 27 s more)
MIN_SEND_RATE = 100_000
#: header carrying the run's token on requests that change the server's state
TOKEN_HEADER = "X-Imgstore-Token"
#: names of the loopback interface a browser on this machine may use in ``Host``
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: ``Sec-Fetch-Site`` values of requests the server's own page (or a typed URL) makes
OWN_FETCH_SITES = frozenset({"same-origin", "none"})

#: the page's files (package data beside this module) -> (URL path, content type)
ASSETS = {"viewer.html": ("/", "text/html; charset=utf-8"),
          "viewer.css": ("/viewer.css", "text/css; charset=utf-8"),
          "viewer.js": ("/viewer.js", "text/javascript; charset=utf-8")}
#: where the server puts its token in the page
TOKEN_PLACEHOLDER = "{{token}}"

#: only the page's own files, its frames (blob: URLs) and requests to this server
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                     "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                     "Content-Security-Policy": CONTENT_SECURITY_POLICY}
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")


def load_assets(token: str) -> dict[str, tuple[bytes, str]]:
    """``{URL path: (body, content type)}`` of the page's files, the token filled into the page."""
    folder = resources.files(__package__ or "imgstore.cli") / "static"
    assets: dict[str, tuple[bytes, str]] = {}
    for name, (path, ctype) in ASSETS.items():
        text = (folder / name).read_text(encoding="utf-8")
        assets[path] = (text.replace(TOKEN_PLACEHOLDER, token).encode(), ctype)
    assets["/index.html"] = assets["/"]
    return assets


def served_names(host: str) -> frozenset[str]:
    """Host names a request to a server listening on ``host`` may carry."""
    name = host.strip("[]").lower()
    try:
        loopback = name == "localhost" or ipaddress.ip_address(name).is_loopback
    except ValueError:
        loopback = False
    return LOOPBACK_NAMES | {name} if loopback else frozenset({name})


def host_name(value: str | None) -> str | None:
    """The host name of a ``Host`` header (lower case, IPv6 without brackets), None if it is not one."""
    # a Host header is name[:port]: user info, paths or spaces would make urlsplit read another name
    if not value or any(c in value for c in "@/\\?# \t"):
        return None
    try:
        parts = urllib.parse.urlsplit("//" + value)
        _ = parts.port  # ValueError for a port that is not 0..65535
    except ValueError:
        return None
    return parts.hostname


class ViewerRequestHandler(http.server.BaseHTTPRequestHandler):
    """Answers one connection's requests (HTTP/1.1 keep-alive: playback makes many small requests)."""

    protocol_version = "HTTP/1.1"
    server_version = "imgstore-view"
    server: ViewerServer

    def setup(self) -> None:
        super().setup()
        # every read and write of this connection: a silent client is dropped instead of holding a thread
        self.connection.settimeout(self.server.idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    # ------------------------------------------------------------------ answering

    def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**_SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            # a large frame over a slow tunnel takes longer than an idle pause; a client reading slower is dropped
            self.connection.settimeout(self.server.idle_timeout + len(body) / MIN_SEND_RATE)
            try:
                self.wfile.write(body)
            finally:
                self.connection.settimeout(self.server.idle_timeout)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, to_json(obj, indent=None).encode(), "application/json")

    def _refuse(self, code: int, message: str) -> None:
        # what follows on this connection cannot be trusted to start where a request starts
        self.close_connection = True
        self._json(code, {"error": message})

    # ------------------------------------------------------------------ admission

    def _admitted(self) -> bool:
        """True if the request may be answered; otherwise it has been refused (4xx)."""
        hosts = self.headers.get_all("Host") or []
        name = host_name(hosts[0]) if len(hosts) == 1 else None
        if name not in self.server.served_names:
            self._refuse(403, f"Host {', '.join(hosts) or '(none)'!s} is not this viewer's address; "
                              f"open {self.server.url}")
            return False
        origin = self.headers.get("Origin")
        if origin is not None and origin.lower() != f"http://{hosts[0]}".lower():
            self._refuse(403, f"requests from {origin} are not accepted")
            return False
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in OWN_FETCH_SITES:
            self._refuse(403, f"requests from other sites' pages ({site}) are not accepted")
            return False
        return self._read_body() is not None

    def _read_body(self) -> bytes | None:
        """The request's body (b'' without one); None after refusing a length that cannot be trusted."""
        if "Transfer-Encoding" in self.headers:
            self._refuse(411, "send a Content-Length instead of Transfer-Encoding")
            return None
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return b""
        if len(lengths) > 1 or not _CONTENT_LENGTH.fullmatch(lengths[0].strip()):
            self._refuse(400, f"Content-Length {', '.join(lengths)} is not one non-negative integer")
            return None
        length = int(lengths[0])
        if length > MAX_BODY:
            self._refuse(413, f"a body of {length} bytes is more than this server reads ({MAX_BODY})")
            return None
        return self.rfile.read(length)

    # ------------------------------------------------------------------ methods

    def do_GET(self) -> None:
        """Files of the page, and the viewer's answers (see :mod:`imgstore.cli.view`)."""
        if not self._admitted():
            return
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)

        def one(key: str) -> str | None:
            values = query.get(key)
            return values[0] if values else None

        viewer = self.server.viewer
        try:
            if url.path in self.server.assets:
                body, ctype = self.server.assets[url.path]
                self._send(200, body, ctype)
            elif url.path == "/info":
                self._send(200, viewer.info_json(), "application/json")
            elif url.path == "/status":
                self._json(200, viewer.status())
            elif url.path == "/frame":
                data, ctype, meta = viewer.frame(one("index"), one("store"))
                self._send(200, data, ctype, _frame_headers(meta))
            elif url.path == "/meta":
                self._json(200, viewer.meta_all(viewer.parse_step(one("index"))))
            elif url.path == "/events":
                self._send(200, viewer.events_json(), "application/json")
            elif url.path == "/extra":
                self._json(200, viewer.extra(viewer.parse_step(one("index")), viewer.parse_window(one("window"))))
            elif url.path == "/lookup":
                self._json(200, viewer.lookup(one("q") or ""))
            elif url.path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            else:
                self._json(404, {"error": f"no such page: {url.path}"})
        except CLIError as exc:
            self._json(400, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the page went away mid-answer (a reload, a closed tab)
        except Exception as exc:  # a damaged chunk must not kill the server: show it in the page
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

    def do_POST(self) -> None:
        """``/quit`` (with the run's token): stop the server."""
        if not self._admitted():
            return
        token = self.headers.get(TOKEN_HEADER) or ""
        if not secrets.compare_digest(token.encode(), self.server.token.encode()):
            self._refuse(403, f"{TOKEN_HEADER} is missing or wrong: only the viewer's page can do this")
            return
        if urllib.parse.urlsplit(self.path).path == "/quit":
            self._json(200, {"stopping": True})
            # shutdown() waits for serve_forever to return: never call it from the serving thread
            threading.Thread(target=self.server.shutdown, daemon=True).start()
        else:
            self._json(404, {"error": f"no such action: {self.path}"})


def _frame_headers(meta: dict[str, Any]) -> dict[str, str]:
    """A frame's metadata as the ``X-Frame-*`` headers of ``/frame``."""
    return {
        "X-Frame-Index": str(meta["frame_index"]), "X-Frame-Step": str(meta["index"]),
        "X-Frame-Status": meta["status"],
        "X-Frame-Number": "" if meta["frame_number"] is None else str(meta["frame_number"]),
        "X-Frame-Time": "" if meta["frame_time"] is None else repr(meta["frame_time"]),
        "X-Frame-Offset": "" if meta["offset_s"] is None else f"{meta['offset_s']:.3f}",
        # header values must be latin-1: zone abbreviations are ASCII anyway
        "X-Frame-Datetime": meta["datetime"].encode("ascii", "replace").decode(),
    }


class ViewerServer(http.server.ThreadingHTTPServer):
    """Serves a :class:`Viewer` (one thread per connection); ``url`` is the page's address.

    Parameters
    ----------
    address
        ``(host, port)`` to listen on (port 0: a free one).
    viewer
        What the page shows; closed with the server.
    verbose
        Log every request on stderr.
    idle_timeout
        Seconds a connection may stay silent.
    max_connections
        Connections served at the same time.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], viewer: Viewer, verbose: bool = False,
                 idle_timeout: float = IDLE_TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> None:
        self.viewer = viewer
        self.verbose = verbose
        self.idle_timeout = idle_timeout
        #: this run's secret: the page sends it back on requests that change the server's state
        self.token = secrets.token_urlsafe(32)
        self.assets = load_assets(self.token)
        self.served_names = served_names(address[0])
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, ViewerRequestHandler)
        host = address[0] if ":" not in address[0] else f"[{address[0]}]"
        self.url = f"http://{host}:{self.server_address[1]}/"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            # every slot is held (by a page, or by a program holding connections open): no thread for this one
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        self.viewer.close()


def make_server(stores: Any, host: str = "127.0.0.1", port: int = 0, fps: float | None = None,
                image_format: str = "jpg", verbose: bool = False, names: Sequence[str] | None = None,
                idle_timeout: float = IDLE_TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> ViewerServer:
    """An HTTP server for one store or several (not yet serving); its ``url`` attribute is the page's address.

    Parameters
    ----------
    stores
        A store opened for reading, or a list of them (closed by the caller after
        ``serve_forever`` returns and ``server_close()``).
    host, port
        Where to listen (port 0: a free port).
    fps, image_format, names
        See :class:`~._viewer_session.Viewer`.
    verbose, idle_timeout, max_connections
        See :class:`ViewerServer`.

    Raises
    ------
    CLIError
        The port is in use (the message names it).
    """
    viewer = Viewer(stores, fps=fps, image_format=image_format, names=names)
    try:
        return ViewerServer((host, port), viewer, verbose=verbose, idle_timeout=idle_timeout,
                            max_connections=max_connections)
    except OSError as exc:
        viewer.close()
        if exc.errno == errno.EADDRINUSE:
            raise CLIError(f"port {port} on {host} is already in use (choose another --port, or 0 for a "
                           f"free one)") from None
        raise
