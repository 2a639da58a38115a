"""imgstore-view as a lab uses it, in headless Chromium: no freeze, live following of a store another
process records (and ``imgstore-save --view``), the timeline of drops, extra data, two cameras in step,
playback speed, falling behind, keyboard help, and a layout that fits common screens.

Screenshots of the main views are written to ``$IMGSTORE_SCREENSHOTS`` when it is set (to look at).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

import imgstore
from imgstore.align import MultiStore
from imgstore.testing.barcode import make_frame, read_barcode

from .test_cli_view import _browser, decode_grey, pipe, start_viewer, stop

T0 = 1_700_000_000.0
SHAPE = (48, 160)
#: 1000..1009, then 5 numbers dropped, then 1015..1039; a 1 s pause before index 30
NUMBERS = [*range(1000, 1010), *range(1015, 1040)]
TIMES = [T0 + 0.04 * i + (1.0 if i >= 30 else 0.0) for i in range(len(NUMBERS))]
GAP_INDEX, PAUSE_INDEX = 10, 30
SCREENSHOTS = os.environ.get("IMGSTORE_SCREENSHOTS")


def poll(condition, timeout: float = 20.0, what: str = "condition"):
    """Wait for ``condition()`` to be true (polled), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def lab_store(tmp_path_factory) -> str:
    """A png store with a frame-number gap, a pause and extra data every third frame."""
    path = str(tmp_path_factory.mktemp("lab") / "arena1")
    with imgstore.new_for_format("png", basedir=path, imgshape=SHAPE, imgdtype="uint8", chunksize=16,
                                 metadata={"timezone": "Europe/Vienna"}) as store:
        for i, (fn, ft) in enumerate(zip(NUMBERS, TIMES, strict=False)):
            store.add_image(make_frame(fn, *SHAPE), fn, ft)
            if i % 3 == 0:
                store.add_extra_data(temperature=20.0 + i / 10, light="on")
    return path


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    webdriver, options, service = _browser()
    options.arguments.remove("--window-size=1000,700")
    options.add_argument("--window-size=1280,800")
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-lab')}")
    try:
        drv = webdriver.Chrome(service=service, options=options)
    except Exception as exc:  # a chromium that cannot start here is an environment problem
        pytest.skip(f"chromium did not start: {exc}")
    viewport(drv, 1280, 800)
    yield drv
    drv.quit()


def viewport(drv, width: int, height: int) -> None:
    """Make the page's viewport exactly ``width`` x ``height`` CSS pixels."""
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def open_page(drv, url: str) -> None:
    drv.get(url)
    poll(lambda: drv.execute_script("return document.body.dataset.ready === '1' && loader === null"),
         what="the first frame")


def text(drv, id_: str) -> str:
    return drv.execute_script(f"return document.getElementById('{id_}').textContent")


def idle(drv) -> bool:
    return drv.execute_script("return loader === null")


def press(drv, *keys: str) -> None:
    from selenium.webdriver.common.by import By

    drv.find_element(By.TAG_NAME, "body").send_keys(*keys)


def grab(drv, element_id: str) -> np.ndarray:
    """The pixels of an element as they appear in a screenshot (grey)."""
    left, top, width, height = drv.execute_script(
        f"const r = document.getElementById('{element_id}').getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height];")
    shot = decode_grey(drv.get_screenshot_as_png())
    x, y = round(left), round(top)
    return shot[y:y + round(height), x:x + round(width)]


def screenshot(drv, name: str) -> None:
    if SCREENSHOTS:
        os.makedirs(SCREENSHOTS, exist_ok=True)
        drv.save_screenshot(os.path.join(SCREENSHOTS, name))


# ---------------------------------------------------------------------- no freeze

def test_asking_for_the_frame_shown_does_not_freeze(driver, lab_store):
    """Home on the first frame, Left at 0, End on the last, 'go' twice: the page still answers."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    proc, url = start_viewer(lab_store, "--png")
    try:
        open_page(driver, url)
        last = len(NUMBERS) - 1
        for key in (Keys.HOME, Keys.ARROW_LEFT):
            press(driver, key)
            poll(lambda: idle(driver), what="idle")
        press(driver, Keys.ARROW_RIGHT)
        poll(lambda: text(driver, "frame_index") == "1", what="frame 1 after Home/Left on frame 0")
        press(driver, Keys.END)
        poll(lambda: text(driver, "frame_index") == str(last), what="the last frame")
        press(driver, Keys.END)
        poll(lambda: idle(driver), what="idle")
        press(driver, Keys.ARROW_LEFT)
        poll(lambda: text(driver, "frame_index") == str(last - 1), what="a step back after End twice")
        box = driver.find_element(By.ID, "goto")
        for _ in range(2):
            driver.execute_script("showStatus('looking up')")  # the lookup clears it once its frame is shown
            box.clear()
            box.send_keys("1020", Keys.ENTER)
            poll(lambda: text(driver, "status") == "" and text(driver, "frame_number") == "1020" and idle(driver),
                 what="#1020")
        press(driver, Keys.ARROW_RIGHT)
        poll(lambda: text(driver, "frame_number") == "1021", what="a step after 'go' twice")
        assert read_barcode(grab(driver, "frame")) == 1021
    finally:
        stop(proc)


# ---------------------------------------------------------------------- timeline, extra data, help

def test_timeline_marks_drops_and_n_p_jump_to_them(driver, lab_store):
    proc, url = start_viewer(lab_store, "--png")
    try:
        open_page(driver, url)
        poll(lambda: driver.execute_script("return document.getElementById('timeline').dataset.marks") == "2",
             what="two timeline marks")
        assert "5 dropped in 1 gap" in text(driver, "evsummary") and "1 pause" in text(driver, "evsummary")

        # the marks are drawn where the slider puts those frames: orange for the gap, red for the pause
        def colour_at(step: int) -> list[int]:
            return driver.execute_script(
                "const c = document.getElementById('timeline'), pad = 7;"
                "const x = Math.round(pad + arguments[0] / (n - 1) * (c.width - 2 * pad));"
                "return Array.from(c.getContext('2d').getImageData(x, 7, 1, 1).data);", step)

        r, g, b, _ = colour_at(GAP_INDEX)
        assert r > 200 and 120 < g < 200 and b < 100, (r, g, b)
        r, g, b, _ = colour_at(PAUSE_INDEX)
        assert r > 200 and g < 120 and b < 120, (r, g, b)
        r, g, b, _ = colour_at(20)  # no mark between them
        assert max(r, g, b) < 80

        press(driver, "n")
        poll(lambda: text(driver, "frame_index") == str(GAP_INDEX) and "missing" in text(driver, "status"),
             what="the gap")
        assert text(driver, "status") == "5 missing frame numbers before #1015"
        assert read_barcode(grab(driver, "frame")) == 1015
        press(driver, "n")
        poll(lambda: text(driver, "frame_index") == str(PAUSE_INDEX), what="the pause")
        assert text(driver, "status").startswith("pause of 1.040 s before #1035")
        press(driver, "n")
        poll(lambda: "no more drops" in text(driver, "status"), what="the end of the drops")
        press(driver, "p")
        poll(lambda: text(driver, "frame_index") == str(GAP_INDEX), what="back to the gap")
    finally:
        stop(proc)


def test_extra_data_of_the_current_frame(driver, lab_store):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    proc, url = start_viewer(lab_store, "--png")
    try:
        open_page(driver, url)
        assert driver.find_element(By.ID, "side").is_displayed()
        value = lambda col: driver.execute_script(  # noqa: E731
            f"const e = document.querySelector('[data-extra-col=\"{col}\"]'); return e && e.textContent")
        poll(lambda: value("temperature") == "20", what="frame 0's temperature")
        assert value("light") == "on" and "at this frame" in text(driver, "extra")
        box = driver.find_element(By.ID, "goto")
        box.send_keys(str(NUMBERS[7]), Keys.ENTER)  # records at 0, 3, 6, 9...: frame 7 shows frame 6's
        poll(lambda: value("temperature") == "20.60", what="frame 6's temperature at frame 7")
        assert "last record: 1 frame earlier" in text(driver, "extra")
        points = driver.execute_script("return +document.querySelector('#extra canvas').dataset.points")
        assert points == len(range(0, len(NUMBERS), 3))  # the whole short store is inside the plot window
        screenshot(driver, "view-extra-1280x800.png")
    finally:
        stop(proc)


def test_keyboard_help_overlay(driver, lab_store):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    proc, url = start_viewer(lab_store)
    try:
        open_page(driver, url)
        help_box = driver.find_element(By.ID, "help")
        assert not help_box.is_displayed()
        press(driver, "?")
        poll(help_box.is_displayed, what="the help overlay")
        assert "next / previous dropped frames or pause" in help_box.text
        press(driver, Keys.ESCAPE)  # closes the overlay; does not stop the viewer
        poll(lambda: not help_box.is_displayed(), what="the overlay to close")
        assert proc.poll() is None
        driver.find_element(By.ID, "helpbtn").click()
        poll(help_box.is_displayed, what="the overlay from its button")
    finally:
        stop(proc)


# ---------------------------------------------------------------------- playback

def test_playback_speed_and_falling_behind(driver, tmp_path):
    """At a rate no browser reaches for 1280x720 PNG frames the page says it is behind; -/+ change the speed."""
    from selenium.webdriver.common.by import By

    path = str(tmp_path / "hd")
    with imgstore.new_for_format("npy", basedir=path, imgshape=(720, 1280), imgdtype="uint8", chunksize=50) as s:
        noise = np.random.default_rng(0).integers(0, 255, (720, 1280), dtype=np.uint8)  # PNG cannot shrink it
        for i in range(150):
            s.add_image(np.roll(noise, i, axis=1), i, T0 + i / 60)
    proc, url = start_viewer(path, "--png", "--fps", "60")
    try:
        open_page(driver, url)
        speed = driver.find_element(By.ID, "speed")
        press(driver, "+", "+", "+")  # 1x -> 2x -> 4x -> 8x: 480 fps asked
        assert speed.get_attribute("value") == "8"
        press(driver, " ")
        poll(lambda: text(driver, "perf").startswith("behind: "), what="the falling-behind note")
        behind = re.match(r"behind: ([\d.]+) of (\d+) fps", text(driver, "perf"))
        assert behind, text(driver, "perf")
        reached, asked = behind.groups()
        assert asked == "480" and float(reached) < 480 * 0.85
        assert "behind" in driver.find_element(By.ID, "perf").get_attribute("class")
        press(driver, " ")
        poll(lambda: text(driver, "perf") == "", what="the note to go when paused")
        press(driver, "-", "-", "-", "-", "-", "-", "-")
        assert speed.get_attribute("value") == "0.1"
    finally:
        stop(proc)


# ---------------------------------------------------------------------- two cameras

@pytest.fixture(scope="module")
def two_cameras(tmp_path_factory) -> tuple[str, str]:
    """'top' at 25 fps and 'side' at 20 fps, started 13 ms later; barcodes are the frame numbers."""
    root = tmp_path_factory.mktemp("cams")
    paths = []
    for name, fps, offset, first in (("top", 25.0, 0.0, 0), ("side", 20.0, 0.013, 500)):
        path = str(root / name)
        with imgstore.new_for_format("png", basedir=path, imgshape=SHAPE, imgdtype="uint8", chunksize=20) as s:
            for i in range(50):
                s.add_image(make_frame(first + i, *SHAPE), first + i, T0 + offset + i / fps)
        paths.append(path)
    return paths[0], paths[1]


def test_two_stores_side_by_side_in_step(driver, two_cameras):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    top, side = two_cameras
    with MultiStore([top, side], by="frame_time", missing="repeat") as ms:
        steps = ms.frame_indices
        keys = ms.keys
    proc, url = start_viewer(top, side, "--png")
    try:
        open_page(driver, url)
        assert text(driver, "last_index") == str(len(keys) - 1)
        assert text(driver, "poslabel") == "step"
        box = driver.find_element(By.ID, "goto")
        box.send_keys("1.2s", Keys.ENTER)  # 1.2 s after the first frame: top #30, side #524 (at 1.213 s)
        step = int(np.argmin(np.abs(keys - (T0 + 1.2))))
        poll(lambda: text(driver, "frame_index") == str(step) and idle(driver), what="the step at 1.2 s")
        top_fi, side_fi = (int(x) for x in steps[step])
        assert read_barcode(grab(driver, "frame")) == top_fi
        assert read_barcode(grab(driver, "frame1")) == 500 + side_fi
        # each pane names its store and frame; both frames are within half a frame interval
        assert abs((T0 + top_fi / 25) - (T0 + 0.013 + side_fi / 20)) <= 0.5 / 20
        captions = driver.execute_script("return [...document.querySelectorAll('.caption')].map(c => c.textContent)")
        assert captions[0].startswith(f"top#{top_fi}") and captions[1].startswith(f"side#{500 + side_fi}")
        # stepping moves both in step by frame_time
        press(driver, Keys.ARROW_RIGHT)
        poll(lambda: text(driver, "frame_index") == str(step + 1) and idle(driver), what="the next step")
        assert read_barcode(grab(driver, "frame")) == int(steps[step + 1][0])
        assert read_barcode(grab(driver, "frame1")) == 500 + int(steps[step + 1][1])
        screenshot(driver, "view-two-cameras-1280x800.png")
    finally:
        stop(proc)


@pytest.mark.parametrize("width, height", [(1280, 800), (1366, 768), (1024, 640)])
def test_layout_fits_the_screen(driver, lab_store, two_cameras, width, height):
    """Nothing overflows the window; frames, side panel and controls do not overlap."""
    proc, url = start_viewer(*two_cameras[:1], lab_store)
    try:
        viewport(driver, width, height)
        open_page(driver, url)
        box = driver.execute_script("""
            const r = (id) => document.getElementById(id).getBoundingClientRect();
            return {sw: document.documentElement.scrollWidth, sh: document.documentElement.scrollHeight,
                    f0: r('frame'), f1: r('frame1'), side: r('side'), controls: r('controls'), top: r('top')};""")
        assert box["sw"] <= width and box["sh"] <= height
        assert box["controls"]["bottom"] <= height and box["controls"]["top"] >= box["f0"]["bottom"]
        assert box["f0"]["right"] <= box["f1"]["left"] and box["f1"]["right"] <= box["side"]["left"]
        assert box["f0"]["top"] >= box["top"]["bottom"]
        if (width, height) == (1280, 800):
            screenshot(driver, "view-layout-1280x800.png")
    finally:
        viewport(driver, 1280, 800)
        stop(proc)


# ---------------------------------------------------------------------- live

def _writer(dest: str, *extra: str) -> subprocess.Popen:
    """``imgstore save`` of a live test pattern (15 fps, 160x48, png) in another process."""
    return subprocess.Popen([sys.executable, "-m", "imgstore", "save", dest, "--source", "testsrc", "--fps", "15",
                             "--duration", "120", "--size", "160x48", "--format", "png", "--chunksize", "20", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _frames_in(path: str) -> int:
    if not os.path.exists(os.path.join(path, "metadata.yaml")):
        return 0
    with imgstore.new_for_filename(path) as store:
        return len(store)


def test_follows_a_store_another_process_records(driver, tmp_path):
    from selenium.webdriver.common.keys import Keys

    dest = str(tmp_path / "live")
    writer = _writer(dest)
    proc = None
    try:
        poll(lambda: _frames_in(dest) >= 3, what="the writer's first frames")
        proc, url = start_viewer(dest, "--png")
        open_page(driver, url)
        poll(lambda: "live" in driver.find_element("tag name", "body").get_attribute("class"), what="LIVE")
        assert driver.find_element("id", "live").is_displayed()
        first_last = int(text(driver, "last_index"))
        # new frames appear, and the page follows the newest (it opened following)
        poll(lambda: int(text(driver, "last_index")) >= first_last + 10, what="new frames")
        poll(lambda: int(text(driver, "frame_index")) >= first_last + 10, what="the page to follow")
        press(driver, Keys.HOME)  # stop following; End (or 'newest') follows again
        poll(lambda: text(driver, "frame_index") == "0", what="frame 0")
        assert read_barcode(grab(driver, "frame")) == 0
        press(driver, Keys.END)
        newest = int(text(driver, "last_index"))
        poll(lambda: int(text(driver, "frame_index")) > newest, what="following again after End")
        poll(lambda: idle(driver), what="idle")
        assert read_barcode(grab(driver, "frame")) == int(text(driver, "frame_number"))

        writer.send_signal(signal.SIGINT)
        assert writer.wait(timeout=30) == 0
        final = _frames_in(dest)
        poll(lambda: "recording ended" in text(driver, "status"), what="the end of the recording")
        assert not driver.find_element("id", "live").is_displayed()
        poll(lambda: text(driver, "last_index") == str(final - 1), what="every frame")
        driver.refresh()  # a reload sees every frame too
        open_page(driver, url)
        assert text(driver, "last_index") == str(final - 1)
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
        if proc is not None:
            stop(proc)


def test_save_view_serves_the_recording_as_it_is_made(driver, tmp_path):
    dest = str(tmp_path / "rec")
    writer = _writer(dest, "--view", "--no-browser")
    try:
        url = None
        for _ in range(5):  # its own lines come first, then the viewer's
            line = pipe(writer.stdout).readline()
            m = re.search(r"http://127\.0\.0\.1:\d+/", line)
            if m:
                url = m.group(0)
                break
        assert url, "no viewer URL printed"
        open_page(driver, url)
        poll(lambda: "live" in driver.find_element("tag name", "body").get_attribute("class"), what="LIVE")
        shown = int(text(driver, "frame_index"))
        poll(lambda: int(text(driver, "frame_index")) >= shown + 5, what="the page to follow the recording")
        poll(lambda: idle(driver), what="idle")
        assert read_barcode(grab(driver, "frame")) == int(text(driver, "frame_number"))
        screenshot(driver, "view-live-1280x800.png")
        writer.send_signal(signal.SIGINT)
        assert writer.wait(timeout=30) == 0
        rest = pipe(writer.stdout).read()
        assert "stopped after" in rest and "viewer stopped" in rest
        with pytest.raises(OSError):  # the viewer stopped with the recording
            urllib.request.urlopen(url + "status", timeout=5)
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
        pipe(writer.stdout).close()
