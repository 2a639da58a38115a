"""imgstore-view refuses what only another site's page or a hostile client would send.

Plain HTTP requests (``http.client``, raw sockets) against a viewer serving in a thread:
a foreign ``Host`` (DNS rebinding) or ``Origin``, ``POST /quit`` without the run's token,
idle connections, numbers that cannot be read, and bodies whose length cannot be trusted.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest

import imgstore
from imgstore.cli import view
from imgstore.testing.barcode import make_frame

T0 = 1_700_000_000.0
SHAPE = (24, 64)
N_FRAMES = 12
#: idle timeout of the servers under test: short, so a test sees a connection closed quickly
IDLE = 0.3


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("http") / "store")
    with imgstore.new_for_format("npy", basedir=path, imgshape=SHAPE, imgdtype="uint8", chunksize=5) as store:
        for i in range(N_FRAMES):
            store.add_image(make_frame(100 + i, *SHAPE), 100 + i, T0 + 0.04 * i)
    return path


class Served:
    """A viewer serving in a thread."""

    def __init__(self, store_path: str, **options) -> None:
        self.store = imgstore.new_for_filename(store_path)
        options.setdefault("idle_timeout", IDLE)
        self.server = view.make_server(self.store, **options)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
                host: str | None = None) -> tuple[int, dict]:
        """``(status, JSON body or {})``; ``host`` replaces the Host header (None: the usual one)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
            if host is not None and host != "":
                conn.putheader("Host", host)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
            is_json = response.getheader("Content-Type") == "application/json"
            return response.status, json.loads(data) if is_json else {}
        finally:
            conn.close()

    def serving(self) -> bool:
        return self.request("GET", "/status")[0] == 200

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.thread.join(10)
        self.server.server_close()
        self.store.close()


@pytest.fixture
def served(store_path) -> Iterator[Served]:
    s = Served(store_path)
    yield s
    s.close()


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the server closes ``sock`` (without sending anything) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


# ---------------------------------------------------------------------- Host (DNS rebinding)

@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}",
                                  "evil.example@127.0.0.1:{port}", "127.0.0.1:notaport", ""])
def test_foreign_host_is_refused(served, host):
    """A page of evil.example whose DNS name now points at 127.0.0.1 sends Host: evil.example."""
    status, body = served.request("GET", "/info", host=host.format(port=served.port))
    assert status == 403
    assert "not this viewer's address" in body["error"]


def test_foreign_host_cannot_quit_even_with_the_token(served):
    status, _ = served.request("POST", "/quit", {"X-Imgstore-Token": served.server.token},
                               host=f"evil.example:{served.port}")
    assert status == 403
    assert served.serving()


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "127.0.0.1",
                                  "[::1]:9000"])
def test_loopback_names_are_served(served, host):
    """Any port: a tunnel (ssh -L 9000:127.0.0.1:PORT) shows the browser another one."""
    status, body = served.request("GET", "/info", host=host.format(port=served.port))
    assert status == 200 and body["frame_count"] == N_FRAMES


# ---------------------------------------------------------------------- other sites' pages

@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Origin": "http://127.0.0.1:1"}, {"Sec-Fetch-Site": "cross-site"},
                                     {"Sec-Fetch-Site": "same-site"}])
def test_requests_of_other_pages_are_refused(served, headers):
    assert served.request("GET", "/frame?index=0", headers)[0] == 403


def test_own_page_requests_are_served(served):
    own = {"Origin": f"http://127.0.0.1:{served.port}", "Sec-Fetch-Site": "same-origin"}
    assert served.request("GET", "/frame?index=0", own)[0] == 200
    assert served.request("GET", "/", {"Sec-Fetch-Site": "none"})[0] == 200  # a URL typed in


# ---------------------------------------------------------------------- the token

@pytest.mark.parametrize("headers", [{}, {"X-Imgstore-Token": "guess"}, {"X-Imgstore-Token": ""}])
def test_quit_needs_the_token(served, headers):
    status, body = served.request("POST", "/quit", headers, body=b"")
    assert status == 403 and "X-Imgstore-Token" in body["error"]
    assert served.serving()


def test_quit_with_the_token_stops_the_server(served):
    assert served.server.token.encode() in served.server.assets["/"][0]  # the page carries it
    status, body = served.request("POST", "/quit", {"X-Imgstore-Token": served.server.token}, body=b"")
    assert (status, body) == (200, {"stopping": True})
    served.thread.join(10)
    assert not served.thread.is_alive()


def test_every_run_has_its_own_token(store_path):
    first, second = Served(store_path), Served(store_path)
    try:
        assert first.server.token != second.server.token
        assert len(first.server.token) >= 32
    finally:
        first.close()
        second.close()


def test_page_forbids_foreign_scripts_and_framing(served):
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        csp = response.getheader("Content-Security-Policy") or ""
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.getheader("X-Content-Type-Options") == "nosniff"
    finally:
        conn.close()


# ---------------------------------------------------------------------- connections

def test_idle_connection_is_closed(served):
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        assert closed_within(sock, 10 * IDLE + 2)


def test_connection_idle_after_a_request_is_closed(served):
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(f"GET /status HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
        sock.settimeout(5)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        assert closed_within(sock, 10 * IDLE + 2)


def answered(s: Served) -> bool:
    """True if a request is answered (False: the connection was closed unanswered)."""
    try:
        return s.serving()
    except ConnectionError:
        return False


def test_connections_beyond_the_limit_are_closed(store_path):
    # idle connections stay open far longer than the test: only the limit can close the third one
    s = Served(store_path, max_connections=2, idle_timeout=60)
    try:
        held = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(2)]
        with socket.create_connection(("127.0.0.1", s.port)) as extra:
            assert closed_within(extra, 2.0)
        for sock in held:
            sock.close()
        # the slots come back once the threads of those connections end
        deadline = time.monotonic() + 10
        while not answered(s):
            assert time.monotonic() < deadline, "no slot came back"
            time.sleep(0.02)
    finally:
        s.close()


# ---------------------------------------------------------------------- numbers

@pytest.mark.parametrize("path", [
    "/lookup?q=" + "1" * 70,                   # a frame number no store can hold
    "/lookup?q=%23" + "9" * 19,                # '#' + beyond int64
    "/lookup?q=-" + "9" * 5000,                # more digits than int() takes
    "/lookup?q=1e20",                          # seconds since the epoch beyond year 9999
    "/lookup?q=99999999999999999999999s",      # seconds since the start, as far
    "/lookup?q=-1e300",
    "/frame?index=%EF%BC%91",                  # a fullwidth digit
    "/frame?index=1_0",
    "/frame?index=+1",
    "/frame?index=1&store=x",
    "/meta?index=" + "9" * 70,
    "/extra?index=1&window=abc",
    "/extra?index=1&window=-5",
])
def test_unreadable_numbers_are_bad_requests(served, path):
    status, body = served.request("GET", path)
    assert status == 400, body
    assert body["error"]


def test_readable_numbers_still_work(served):
    status, body = served.request("GET", "/lookup?q=" + urllib.parse.quote("#105"))
    assert status == 200 and body["index"] == 5
    status, body = served.request("GET", "/extra?index=1&window=" + "9" * 30)
    assert status == 400  # 30 digits are not a window either
    status, body = served.request("GET", "/extra?index=1&window=3")
    assert status == 200 and body["index"] == 1


# ---------------------------------------------------------------------- bodies

@pytest.mark.parametrize("method, length, code", [
    ("POST", "-5", 400), ("POST", "abc", 400), ("POST", "1e3", 400), ("POST", str(10**12), 413),
    ("GET", "-1", 400), ("GET", str(2**70), 400),
])
def test_untrustworthy_content_length_is_refused(served, method, length, code):
    headers = {"Content-Length": length, "X-Imgstore-Token": served.server.token}
    status, body = served.request(method, "/quit" if method == "POST" else "/status", headers)
    assert status == code and body["error"]
    assert served.serving()


def test_two_content_lengths_are_refused(served):
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
    try:
        conn.putrequest("POST", "/quit")
        conn.putheader("Content-Length", "0")
        conn.putheader("Content-Length", "5")
        conn.putheader("X-Imgstore-Token", served.server.token)
        conn.endheaders()
        assert conn.getresponse().status == 400
    finally:
        conn.close()
    assert served.serving()


def test_chunked_body_is_refused(served):
    status, _ = served.request("POST", "/quit", {"Transfer-Encoding": "chunked",
                                                 "X-Imgstore-Token": served.server.token}, body=b"0\r\n\r\n")
    assert status == 411
    assert served.serving()
