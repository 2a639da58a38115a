"""Real servers on 127.0.0.1 for the remote-storage tests and benchmarks.

:class:`S3Server`
    moto's S3 in server mode (``moto[server]`` from PyPI) in a child process, behind a small
    WSGI layer that adds per-request latency and injects faults on request: answer 500, drop
    the connection before answering, cut a response body short, change a byte of it, or answer
    slowly (each for the next N requests, or at random at a given rate). Faults are
    set through ``POST /_imgstore/faults`` (a JSON body), so they apply to any client, dask
    worker processes included.
:class:`HttpServer`
    a threaded HTTP server of a local folder with range requests and directory listings
    (what a lab web server with autoindex offers).

Both pick a free port (the OS chooses: port 0) and are ready when ``start()`` returns: the
parent waits for the child's port line, then polls the server until it answers (bounded).
"""

from __future__ import annotations

import contextlib
import email.utils
import http.server
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

__all__ = ["HttpServer", "S3Server"]

_FAULTS_PATH = "/_imgstore/faults"
_READY_TIMEOUT = 60.0


class _Faults:
    """What the next requests suffer (shared by the server's threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.settings: dict[str, Any] = {}
        self.counts = {"requests": 0, "bytes": 0, "faults": 0}
        self.random = random.Random(0)

    def take(self, path: str, method: str) -> str | None:
        """The fault for this request (``'500'``, ``'drop'``, ``'cut'``, ``'slow'``, ``'flip'``) or None."""
        with self.lock:
            self.counts["requests"] += 1
            s = self.settings
            if s.get("match") and s["match"] not in path:
                return None
            if s.get("methods") and method not in s["methods"]:
                return None
            for kind in ("500", "drop", "cut", "slow", "flip"):
                left = s.get(kind, 0)
                if left:
                    if left > 0:
                        s[kind] = left - 1
                    self.counts["faults"] += 1
                    return kind
            if s.get("rate") and self.random.random() < float(s["rate"]):
                self.counts["faults"] += 1
                return str(self.random.choice(s.get("kinds") or ["500", "drop", "cut"]))
        return None


class _RangeCache:
    """Range requests answered from a copy of the object (moto reads a whole object for every range).

    moto answers a 64 KiB range of a 277 MiB object in ~160 ms against ~4 ms for a 1 MB one; S3
    and MinIO answer ranges in constant time. So the first range request of an object fetches it
    whole from moto (without the Range header) and keeps it; later ranges are cut from the copy,
    with moto's headers. Every PUT, POST or DELETE under a path forgets the copies there.
    """

    LIMIT = 2 << 30  # bytes of copies kept

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.objects: dict[str, tuple[list[tuple[str, str]], bytes]] = {}
        self.held = 0

    def forget(self, path: str) -> None:
        with self.lock:
            for p in [p for p in self.objects if p == path or p.startswith(path.rstrip("/") + "/")]:
                self.held -= len(self.objects.pop(p)[1])

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if method in ("PUT", "POST", "DELETE"):
            self.forget(path)
        match = re.match(r"bytes=(\d+)-(\d+)$", environ.get("HTTP_RANGE", ""))
        if method != "GET" or match is None or environ.get("QUERY_STRING") or path.count("/") < 2:
            return self.app(environ, start_response)
        with self.lock:
            cached = self.objects.get(path)
        if cached is None:
            whole = dict(environ)
            del whole["HTTP_RANGE"]
            got: dict[str, Any] = {}

            def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                got["status"], got["headers"] = status, headers
                return lambda data: None

            body = b"".join(self.app(whole, keep))
            if not str(got.get("status", "")).startswith("200"):
                return self.app(environ, start_response)  # an error: moto answers the request itself
            cached = (list(got["headers"]), body)
            with self.lock:
                if self.held + len(body) <= self.LIMIT:
                    self.objects[path] = cached
                    self.held += len(body)
        headers, body = cached
        start, stop = int(match.group(1)), min(int(match.group(2)) + 1, len(body))
        if start >= len(body):
            return self.app(environ, start_response)
        whole_object = start == 0 and stop == len(body)
        out = [(k, v) for k, v in headers if k.lower() not in ("content-length", "content-range")
               and (whole_object or not k.lower().startswith("x-amz-checksum"))]
        out += [("Content-Length", str(stop - start)), ("Content-Range", f"bytes {start}-{stop - 1}/{len(body)}")]
        start_response("206 Partial Content", out)
        return [body[start:stop]]


def _fault_app(app: Any, faults: _Faults) -> Any:
    """``app`` with latency and faults (see the module documentation), ranges cut from copies (:class:`_RangeCache`)."""
    app = _RangeCache(app)

    def wrapped(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == _FAULTS_PATH:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(size) if size else b""
            with faults.lock:
                if environ["REQUEST_METHOD"] == "POST":
                    faults.settings = json.loads(body or b"{}")
                    faults.random = random.Random(faults.settings.get("seed", 0))
                    if faults.settings.pop("reset_counts", False):
                        faults.counts = {"requests": 0, "bytes": 0, "faults": 0}
                answer = json.dumps({"settings": faults.settings, "counts": faults.counts}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
            return [answer]
        latency = float(faults.settings.get("latency", 0.0))
        if latency:
            time.sleep(latency)  # the network's round trip, added to every request
        fault = faults.take(path, environ["REQUEST_METHOD"])
        if fault == "500":
            body = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
            start_response("500 Internal Server Error", [("Content-Type", "application/xml"),
                                                        ("Content-Length", str(len(body)))])
            return [body]
        if fault == "drop":
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            start_response("500 Internal Server Error", [("Content-Length", "0")])
            return []
        if fault == "slow":
            time.sleep(float(faults.settings.get("slow_seconds", 2.0)))
        chunks = app(environ, start_response)
        if fault == "cut":
            return _cut(chunks, environ.get("werkzeug.socket"))
        if fault == "flip":
            return _flip(chunks)
        return _counted(chunks, faults)

    return wrapped


def _counted(chunks: Iterable[bytes], faults: _Faults) -> Iterable[bytes]:
    for chunk in chunks:
        faults.counts["bytes"] += len(chunk)
        yield chunk


def _cut(chunks: Iterable[bytes], sock: Any) -> Iterable[bytes]:
    """Half of the body, then the connection is closed (the headers promised all of it)."""
    body = b"".join(chunks)
    yield body[: len(body) // 2]
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _flip(chunks: Iterable[bytes]) -> Iterable[bytes]:
    """The body with one byte in its middle changed (a bad disk or proxy: the length is right)."""
    body = bytearray(b"".join(chunks))
    if body:
        body[len(body) // 2] ^= 0x5A
    yield bytes(body)


def _serve_s3() -> None:  # pragma: no cover - runs in the child process
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    def exit_with_the_parent() -> None:
        sys.stdin.read()  # EOF: the parent closed the pipe, or died (killed tests must not leave servers)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=exit_with_the_parent, daemon=True).start()
    faults = _Faults()
    app = _fault_app(DomainDispatcherApplication(create_backend_app), faults)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


class S3Server:
    """moto's S3 server in a child process on 127.0.0.1 (see the module documentation).

    Use as a context manager, or :meth:`start` / :meth:`stop`.
    """

    #: credentials moto accepts (any); passed to clients so no real configuration is used
    KEY = "testing"
    SECRET = "testing"

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options reaching this server."""
        return {"endpoint_url": self.endpoint_url, "key": self.KEY, "secret": self.SECRET,
                "client_kwargs": {"region_name": "us-east-1"}}

    def start(self) -> S3Server:
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.KEY, AWS_SECRET_ACCESS_KEY=self.SECRET,
                   AWS_DEFAULT_REGION="us-east-1", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([sys.executable, "-c", "from imgstore.testing.servers import _serve_s3; "
                                         "_serve_s3()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, env=env)
        deadline = time.monotonic() + _READY_TIMEOUT
        assert self.process.stdout is not None
        line = ""
        while time.monotonic() < deadline and not line:
            ready, _, _ = select.select([self.process.stdout], [], [], 1.0)
            if ready:
                line = self.process.stdout.readline()
                if not line:
                    break
            elif self.process.poll() is not None:
                break
        match = re.match(r"PORT (\d+)", line)
        if not match:
            self.stop()
            raise RuntimeError("moto S3 server did not start (is moto[server] installed?)")
        self.port = int(match.group(1))
        while time.monotonic() < deadline:
            try:
                self.faults()
                return self
            except OSError:
                time.sleep(0.05)  # polling for readiness, bounded by the deadline
        self.stop()
        raise RuntimeError(f"moto S3 server on port {self.port} does not answer")

    def faults(self, **settings: Any) -> dict[str, Any]:
        """Set faults and latency (no arguments: just read them and the request counts).

        Parameters
        ----------
        settings
            ``latency`` (seconds added to every request), ``500`` / ``drop`` / ``cut`` / ``slow`` /
            ``flip`` (how many of the next requests get that fault; -1: all), ``rate`` (the
            probability of a fault, drawn from ``kinds``, for every request; ``seed``),
            ``slow_seconds``, ``match`` (only requests whose path contains it), ``methods`` (only
            these HTTP methods), ``reset_counts`` (count requests from zero).
        """
        data = json.dumps(settings).encode() if settings else None
        request = urllib.request.Request(self.endpoint_url + _FAULTS_PATH, data=data,
                                         method="POST" if settings else "GET")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def clear_faults(self) -> None:
        """No faults, no added latency, counts from zero."""
        self.faults(latency=0.0, reset_counts=True)

    def filesystem(self) -> Any:
        """An s3fs filesystem on this server (a fresh instance, not fsspec's cached one)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (us-east-1 takes no location constraint, which s3fs's mkdir sends)."""
        fs = self.filesystem()
        fs.call_s3("create_bucket", Bucket=name)
        fs.invalidate_cache()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    pipe.close()
            self.process = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Files with ``Range: bytes=a-b`` support, folders as HTML listings."""

    _remaining: int | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_head(self):
        latency = float(getattr(self.server, "latency", 0.0))
        if latency:
            time.sleep(latency)  # the network's round trip, added to every request
        self.server.requests += 1  # type: ignore[attr-defined]
        path = self.translate_path(self.path)
        if os.path.isdir(path) or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        match = re.match(r"bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))
        if not getattr(self.server, "ranges", True):
            match = None  # a server that ignores range requests (python -m http.server)
        f = open(path, "rb")  # noqa: SIM115  (closed by the base class after copying)
        stamp = email.utils.formatdate(os.path.getmtime(path), usegmt=True)
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                stop = min(int(match.group(2)) + 1, size) if match.group(2) else size
            else:
                start, stop = max(size - int(match.group(2)), 0), size
            if start >= size:
                f.close()
                self.send_error(416, "range not satisfiable")
                return None
            f.seek(start)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
            self.send_header("Content-Length", str(stop - start))
            self._remaining = stop - start
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self._remaining = size
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", stamp)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        return f

    def copyfile(self, source, outputfile):
        remaining: int | None = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        while remaining > 0:
            data = source.read(min(remaining, 1 << 16))
            if not data:
                break
            outputfile.write(data)
            remaining -= len(data)
        self._remaining = None
        return None


class HttpServer:
    """A threaded HTTP server of folder ``root`` on 127.0.0.1 (see the module documentation).

    ``latency`` seconds are added to every request (settable while it runs); ``requests`` counts them.
    ``ranges=False``: range requests are answered with the whole file (as ``python -m http.server``).
    """

    def __init__(self, root: str | os.PathLike[str], latency: float = 0.0, ranges: bool = True) -> None:
        self.root = os.fspath(root)
        self._latency = float(latency)
        self._ranges = bool(ranges)
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HttpServer:
        root = self.root

        class Handler(_RangeHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=root, **kwargs)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.latency = self._latency  # type: ignore[attr-defined]
        self._server.requests = 0  # type: ignore[attr-defined]
        self._server.ranges = self._ranges  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=5):
                    return self
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # polling for readiness, bounded by the deadline

    @property
    def latency(self) -> float:
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._latency = float(seconds)
        if self._server is not None:
            self._server.latency = self._latency  # type: ignore[attr-defined]

    @property
    def requests(self) -> int:
        """Requests answered so far."""
        return int(getattr(self._server, "requests", 0))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
