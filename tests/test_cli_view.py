"""imgstore-view: the HTTP endpoints, and the page end to end in headless Chromium.

The browser test needs selenium, /usr/bin/chromium and /usr/bin/chromedriver (Debian
packages ``chromium chromium-driver``); it is skipped with the reason when they are missing.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import IO
from zoneinfo import ZoneInfo

import numpy as np
import pytest

import imgstore
from imgstore.cli import view
from imgstore.testing.barcode import make_frame, read_barcode

T0 = 1_700_000_000.0
#: 1000..1009 then 1015..1044: frame_number differs from frame_index after the gap
NUMBERS = [*range(1000, 1010), *range(1015, 1045)]
TIMES = [T0 + 0.04 * i for i in range(len(NUMBERS))]
SHAPE = (120, 320)

CHROMIUM = os.environ.get("IMGSTORE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("IMGSTORE_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("view") / "store")
    with imgstore.new_for_format("png", basedir=path, imgshape=SHAPE, imgdtype="uint8", chunksize=16,
                                 metadata={"timezone": "Europe/Vienna"}) as store:
        for fn, ft in zip(NUMBERS, TIMES, strict=False):
            store.add_image(make_frame(fn, *SHAPE), fn, ft)
    return path


# ---------------------------------------------------------------------- HTTP endpoints

@pytest.fixture
def server(store_path):
    """A viewer serving in a thread; yields its URL."""
    store = imgstore.new_for_filename(store_path)
    srv = view.make_server(store, fps=50)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    thread.join(10)
    srv.server_close()
    store.close()


def get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


#: how a program finds the run's token: in the page, where the page's script reads it
TOKEN_IN_PAGE = re.compile(rb'<meta name="imgstore-token" content="([A-Za-z0-9_-]{20,})">')


def quit_viewer(url: str) -> dict:
    """``POST /quit`` as the page does it: with the token the page carries."""
    with urllib.request.urlopen(url, timeout=10) as r:
        m = TOKEN_IN_PAGE.search(r.read())
    assert m, "no token in the page"
    req = urllib.request.Request(url + "quit", data=b"", method="POST",
                                 headers={"X-Imgstore-Token": m.group(1).decode()})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_info_endpoint(server):
    status, headers, body = get(server.url + "info")
    assert status == 200 and headers["Content-Type"] == "application/json"
    info = json.loads(body)
    assert info["frame_count"] == len(NUMBERS)
    assert info["playback_fps"] == 50
    assert info["dropped"]["missing"] == 5


def test_page_is_served(server):
    status, headers, body = get(server.url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'id="frames"' in body and b'id="timeline"' in body
    assert b'<script src="/viewer.js">' in body and b'href="/viewer.css"' in body
    m = TOKEN_IN_PAGE.search(body)
    assert m and m.group(1).decode() == server.token
    status, headers, script = get(server.url + "viewer.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert b'fetch("/quit"' in script and b'"X-Imgstore-Token": TOKEN' in script
    status, headers, style = get(server.url + "viewer.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css") and b"#timeline" in style


def decode_grey(data: bytes) -> np.ndarray:
    """An encoded image (PNG, JPEG) as grey pixels."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert img is not None, "not an image"
    return img


def url_in(text: str) -> str:
    """The viewer's URL in a line it printed."""
    m = re.search(r"http://127\.0\.0\.1:\d+/", text)
    assert m, f"no URL in {text!r}"
    return m.group(0)


def pipe(stream: IO[str] | None) -> IO[str]:
    """A subprocess's stdout or stderr, opened with PIPE."""
    assert stream is not None
    return stream


def test_frame_endpoint(server):
    status, headers, body = get(server.url + "frame?index=12")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    img = decode_grey(body)
    assert img.shape == SHAPE
    assert read_barcode(img) == NUMBERS[12]
    assert headers["X-Frame-Index"] == "12"
    assert headers["X-Frame-Number"] == str(NUMBERS[12])
    assert float(headers["X-Frame-Time"]) == TIMES[12]
    assert headers["X-Frame-Offset"] == "0.480"
    # the store was created here, so its zone is this machine's; the text is that local time
    tz = server.viewer.tz
    expected = datetime.datetime.fromtimestamp(TIMES[12], tz=tz).strftime("%Y-%m-%d %H:%M:%S.480")
    assert headers["X-Frame-Datetime"].startswith(expected)


@pytest.mark.parametrize("query, index, note", [
    ("1020", NUMBERS.index(1020), ""),
    ("#1003", 3, ""),
    ("1012", None, "no frame #1012; showing the nearest"),
    ("0.5s", round(0.5 / 0.04), ""),
    ("+1.2 s", 30, ""),
    (repr(T0 + 0.4), 10, ""),
])
def test_lookup(server, query, index, note):
    status, _, body = get(server.url + "lookup?q=" + urllib.parse.quote(query))
    assert status == 200, body
    answer = json.loads(body)
    if index is not None:
        assert answer["index"] == index
    else:
        assert NUMBERS[answer["index"]] in (1009, 1015)
    assert answer["note"].startswith(note)
    assert answer["frame_number"] == NUMBERS[answer["index"]]


def test_lookup_dates(server):
    tz = server.viewer.tz
    local = datetime.datetime.fromtimestamp(T0 + 0.8, tz=tz)
    for text in (local.replace(tzinfo=None).isoformat(sep=" "), local.isoformat(), local.strftime("%H:%M:%S.%f")):
        status, _, body = get(server.url + "lookup?q=" + urllib.parse.quote(text))
        assert status == 200, (text, body)
        assert json.loads(body)["index"] == 20, text


@pytest.mark.parametrize("path", ["frame?index=40", "frame?index=-1", "frame?index=x", "frame",
                                  "lookup?q=", "lookup?q=tomorrow", "meta?index=99"])
def test_bad_requests(server, path):
    status, _, body = get(server.url + path)
    assert status == 400
    assert json.loads(body)["error"]


def test_unknown_page(server):
    assert get(server.url + "nothing")[0] == 404


def test_quit_stops_serving(store_path):
    store = imgstore.new_for_filename(store_path)
    srv = view.make_server(store)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    assert quit_viewer(srv.url) == {"stopping": True}
    thread.join(10)
    assert not thread.is_alive()
    srv.server_close()
    store.close()


def test_bad_arguments(capsys, tmp_path):
    assert view.main([str(tmp_path / "nostore"), "--no-browser"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("imgstore-view: error:") and "does not exist" in err[0]
    assert view.main(["x", "--port", "70000"]) == 2  # a bad argument (docs/cli.md)
    assert "not a port number" in capsys.readouterr().err


def test_opens_browser(store_path, tmp_path):
    """Without --no-browser the URL goes to the user's browser ($BROWSER here: a script that
    notes the URL and then stops the viewer through /quit, with the token from the page)."""
    seen = tmp_path / "url.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(
        "import re, sys, urllib.request\n"
        f"open({str(seen)!r}, 'w').write(sys.argv[1])\n"
        "page = urllib.request.urlopen(sys.argv[1]).read()\n"
        f"token = re.search({TOKEN_IN_PAGE.pattern!r}, page).group(1)\n"
        "urllib.request.urlopen(urllib.request.Request(sys.argv[1] + 'quit', data=b'', method='POST',\n"
        "                                              headers={'X-Imgstore-Token': token}))\n")
    env = {**os.environ, "BROWSER": f"{sys.executable} {browser} %s", "DISPLAY": ":99"}
    proc = subprocess.run([sys.executable, "-m", "imgstore", "view", store_path], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    url = url_in(proc.stdout)
    assert seen.read_text() == url
    assert "viewer stopped" in proc.stdout


def test_no_display_prints_ssh_hint(store_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.Popen([sys.executable, "-m", "imgstore", "view", store_path], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = pipe(proc.stdout)
        url = url_in(out.readline())
        out.readline()  # "press Esc or q..."
        hint = out.readline()
        assert hint.startswith("no display here") and "ssh -L" in hint
        quit_viewer(url)
        assert proc.wait(timeout=15) == 0
    finally:
        stop(proc)


# ---------------------------------------------------------------------- the page in Chromium

def _browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.exists(path) or shutil.which(path)):
            pytest.skip(f"{path} not found (apt-get install {package})")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1000,700",
                "--force-device-scale-factor=1", "--hide-scrollbars"):
        options.add_argument(arg)
    return webdriver, options, Service(CHROMEDRIVER)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    webdriver, options, service = _browser()
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    try:
        drv = webdriver.Chrome(service=service, options=options)
    except Exception as exc:  # a chromium that cannot start here is an environment problem
        pytest.skip(f"chromium did not start: {exc}")
    yield drv
    drv.quit()


def start_viewer(store_path: str, *extra: str) -> tuple[subprocess.Popen, str]:
    """``python -m imgstore view`` in a subprocess; returns it and the URL it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "imgstore", "view", store_path, *extra, "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = pipe(proc.stdout).readline()  # the first line names the URL once the server listens
    m = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no URL printed: {line!r} {pipe(proc.stderr).read()!r}")
    return proc, m.group(0)


def stop(proc: subprocess.Popen) -> None:
    """Kill the viewer if the test left it running; close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    pipe(proc.stdout).close()
    pipe(proc.stderr).close()


def shown_frame(driver) -> np.ndarray:
    """The pixels of the <img> as they appear in a screenshot (grey)."""
    left, top, width, height = driver.execute_script(
        "const r = document.getElementById('frame').getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height];")
    shot = decode_grey(driver.get_screenshot_as_png())
    x, y = round(left), round(top)
    return shot[y:y + round(height), x:x + round(width)]


def test_page_in_chromium(driver, store_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    proc, url = start_viewer(store_path, "--png", "--fps", "20")
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 15, poll_frequency=0.05)
        text = lambda id_: driver.find_element(By.ID, id_).text  # noqa: E731
        wait.until(lambda d: text("frame_number") == "1000")
        body = driver.find_element(By.TAG_NAME, "body")

        # arrows step by frame_index; the screenshot shows the frame the text names
        for _ in range(3):
            body.send_keys(Keys.ARROW_RIGHT)
        wait.until(lambda d: text("frame_number") == "1003")
        img = shown_frame(driver)
        assert img.shape == SHAPE  # drawn 1:1
        assert read_barcode(img) == 1003
        assert np.abs(img.astype(int) - make_frame(1003, *SHAPE)).max() <= 2  # PNG: the exact pixels
        assert text("frame_index") == "3"
        # in the zone the recording names in its metadata, not the machine's (UTC here)
        assert text("datetime") == datetime.datetime.fromtimestamp(TIMES[3], tz=ZoneInfo("Europe/Vienna")).strftime(
            "%Y-%m-%d %H:%M:%S.120 %Z")

        body.send_keys(Keys.SHIFT, Keys.ARROW_RIGHT)  # 10 frames: index 13, across the gap
        wait.until(lambda d: text("frame_index") == "13")
        assert text("frame_number") == str(NUMBERS[13])
        body.send_keys(Keys.ARROW_LEFT)
        wait.until(lambda d: text("frame_number") == str(NUMBERS[12]))
        assert read_barcode(shown_frame(driver)) == NUMBERS[12]

        # the box jumps to a frame number, to the nearest of a missing one, and to a time
        box = driver.find_element(By.ID, "goto")
        box.send_keys("1030", Keys.ENTER)
        wait.until(lambda d: text("frame_number") == "1030")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("1012", Keys.ENTER)
        wait.until(lambda d: "no frame #1012" in text("status"))
        assert text("frame_number") in ("1009", "1015")
        box.clear()
        box.send_keys("0.2s", Keys.ENTER)
        wait.until(lambda d: text("frame_index") == "5")
        assert read_barcode(shown_frame(driver)) == NUMBERS[5]

        # the slider scrubs over the whole store
        slider = driver.find_element(By.ID, "slider")
        assert slider.get_attribute("max") == str(len(NUMBERS) - 1)
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(driver).move_to_element_with_offset(slider, slider.size["width"] // 2 - 1, 0).click().perform()
        wait.until(lambda d: int(text("frame_index")) >= len(NUMBERS) - 3)
        i = int(text("frame_index"))
        assert text("frame_number") == str(NUMBERS[i])

        # Space plays (from the start when at the end), Space again pauses
        body.send_keys(Keys.HOME)
        wait.until(lambda d: text("frame_index") == "0")
        body.send_keys(" ")
        wait.until(lambda d: int(text("frame_index")) >= 4)
        body.send_keys(" ")
        assert driver.execute_script("return playing") is False
        idle = lambda d: d.execute_script("return loader === null")  # noqa: E731 - no frame in flight
        wait.until(idle)
        paused_at = int(text("frame_index"))
        assert paused_at < len(NUMBERS) - 1
        body.send_keys(Keys.ARROW_RIGHT)
        wait.until(lambda d: idle(d) and int(text("frame_index")) > paused_at)
        assert int(text("frame_index")) == paused_at + 1  # only the arrow moved it: playback stopped
        assert read_barcode(shown_frame(driver)) == NUMBERS[paused_at + 1]

        # f fits the frame to the window (scaled up here), and back to 1:1
        body.send_keys("f")
        big = shown_frame(driver)
        assert big.shape[1] > 2 * SHAPE[1]
        assert read_barcode(big) == NUMBERS[paused_at + 1]
        body.send_keys("f")
        assert shown_frame(driver).shape == SHAPE

        # q stops the server; the command exits 0
        body.send_keys("q")
        assert proc.wait(timeout=15) == 0
        wait.until(lambda d: "viewer stopped" in text("status"))
    finally:
        stop(proc)


def test_escape_quits(driver, store_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    proc, url = start_viewer(store_path)
    try:
        driver.get(url)
        WebDriverWait(driver, 15, poll_frequency=0.05).until(
            lambda d: d.find_element(By.ID, "frame_number").text == "1000")
        # Esc works even while typing in the box
        box = driver.find_element(By.ID, "goto")
        box.send_keys("10", Keys.ESCAPE)
        assert proc.wait(timeout=15) == 0
        out = pipe(proc.stdout).read()
        assert "viewer stopped" in out
    finally:
        stop(proc)
