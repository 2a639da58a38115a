"""The command line as scripts and new users meet it: exit codes, pipes, warnings, messages, the README."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

import imgstore
from imgstore.cli import convert, save, view
from imgstore.testing.barcode import make_frame

from .cli_util import one_error_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def imgstore_cmd(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgstore", *args], capture_output=True, text=True, timeout=120,
                          **kwargs)


@pytest.fixture
def small_store(tmp_path) -> str:
    path = str(tmp_path / "small")
    with imgstore.new_for_format("npy", basedir=path, imgshape=(24, 32), imgdtype="uint8", chunksize=10) as s:
        for i in range(30):
            s.add_image(make_frame(i, 24, 32), i, 1_700_000_000.0 + i / 25)
    return path


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_closed_pipe_is_not_an_error(small_store, extra):
    """``imgstore-info X | head``: the reader went away before we wrote; no 'Broken pipe', status 0."""
    proc = subprocess.Popen([sys.executable, "-m", "imgstore", "info", small_store, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # long before the command has imported anything, let alone printed
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0, err
    assert err == ""


def test_a_warning_is_printed_once_with_the_prefix(small_store):
    """Opening a damaged store several times (verify: one reader per worker) warns once, prefixed."""
    os.unlink(os.path.join(small_store, "000001", "index.npz"))
    cache = os.path.join(small_store, ".imgstore-index.cache")
    if os.path.exists(cache):
        os.unlink(cache)
    result = imgstore_cmd("verify", small_store, "--workers", "2", "-q")
    assert result.returncode == 1
    warnings_ = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings_ == [f"imgstore verify: warning: {small_store}: chunk 1 skipped: missing index "
                         f"{small_store}/000001/index.npz (writer died before closing the chunk)"]


def test_missing_camera_is_one_clear_line(tmp_path):
    index = 7
    if os.path.exists(f"/dev/video{index}"):
        pytest.skip(f"this machine has /dev/video{index}")
    result = imgstore_cmd("save", str(tmp_path / "cam"), "--source", str(index), "--frames", "3")
    assert result.returncode == 1
    line = one_error_line(result.stderr, "imgstore save")
    assert f"there is no camera {index}" in line and "--source testsrc" in line
    assert "WARN" not in result.stderr


@pytest.mark.parametrize("args, status", [
    (["info", "STORE", "--plot", "x.txt"], 2),
    (["view", "STORE", "--port", "70000"], 2),
    (["save", "TMP/new", "--size", "0x0"], 2),
    (["save", "TMP/new", "--metadata", "novalue"], 2),
    (["save", "TMP/new", "--format", "bogus"], 2),
    (["convert", "STORE", "TMP/new"], 2),
    (["verify", "STORE", "--workers", "0"], 2),
    (["info", "TMP/missing"], 1),
    (["nonsense"], 2),
])
def test_exit_codes_as_documented(small_store, tmp_path, args, status):
    """docs/cli.md: 0 ok, 1 failure, 2 bad arguments (130 interrupted: see the convert and save tests)."""
    args = [a.replace("STORE", small_store).replace("TMP", str(tmp_path)) for a in args]
    result = imgstore_cmd(*args)
    assert result.returncode == status, result.stderr
    assert not os.path.exists(tmp_path / "new")


def test_documented_format_alias_mjpeg(tmp_path, small_store, capsys):
    assert save.main([str(tmp_path / "m"), "--format", "mjpeg", "--frames", "3", "--size", "64x48"]) == 0
    with imgstore.new_for_filename(str(tmp_path / "m")) as store:
        assert store.format == "mjpeg/avi" and len(store) == 3
    assert convert.main([small_store, str(tmp_path / "c"), "--format", "mjpeg"]) == 0
    assert "(mjpeg/avi)" in capsys.readouterr().out


def test_messages_use_option_names(tmp_path, small_store, capsys):
    assert save.main([small_store, "--frames", "3"]) == 1
    line = one_error_line(capsys.readouterr().err, "imgstore-save")
    assert "--overwrite" in line and "overwrite=True" not in line and "mode=" not in line
    dest = str(tmp_path / "dest")
    assert convert.main([small_store, dest, "--format", "npy", "--chunksize", "10"]) == 0
    capsys.readouterr()
    assert convert.main([small_store, dest, "--format", "npy"]) == 1
    line = one_error_line(capsys.readouterr().err, "imgstore-convert")
    assert "--overwrite" in line and "overwrite=True" not in line


def test_refuses_a_folder_that_is_not_a_store(tmp_path, capsys):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.docx").write_text("precious")
    for extra in ([], ["--overwrite"]):
        assert save.main([str(folder), "--frames", "3", *extra]) == 2
        line = one_error_line(capsys.readouterr().err, "imgstore-save")
        assert "chapter1.docx" in line and "not a store" in line
    assert sorted(os.listdir(folder)) == ["chapter1.docx"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert save.main([str(empty), "--frames", "3", "--format", "npy"]) == 0


def test_busy_port_is_named(small_store, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        assert view.main([small_store, "--port", str(port), "--no-browser"]) == 1
    line = one_error_line(capsys.readouterr().err, "imgstore-view")
    assert f"port {port} on 127.0.0.1 is already in use" in line


def test_default_source_is_the_test_pattern(tmp_path, monkeypatch, capsys):
    """A machine with a camera still records the test pattern unless a camera is asked for."""
    monkeypatch.setattr(save, "camera_present", lambda index=0: True)
    monkeypatch.setattr(save, "CameraSource", lambda *a, **k: pytest.fail("the camera was opened"))
    assert save.main([str(tmp_path / "demo"), "--frames", "5", "--format", "npy"]) == 0
    assert "recording testsrc" in capsys.readouterr().out


# ---------------------------------------------------------------------- the README

def readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_readme_main_job_records_the_test_pattern():
    m = re.search(r"```sh\n(python3 -m venv .*imgstore-save (.*))\n```", readme())
    assert m, "the main-job command is missing from the README"
    args = m.group(2).split()
    assert args[1:] == ["--source", "testsrc"]


def test_readme_python_example_runs_verbatim(tmp_path, monkeypatch):
    found = re.search(r"## Using it\n\n```python\n(.*?)```", readme(), re.S)
    assert found, "the Python example is missing from the README"
    block = found.group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    with imgstore.new_for_filename(str(tmp_path / "rec1")) as store:
        assert len(store) == 300
        assert list(store.get_extra_data()["temperature"][:2]) == [21.5, 21.51]
        assert np.all(store[123] == 123)


def test_library_log_messages_are_prefixed_warnings(tmp_path):
    """The video layer's notes about a crashed writer's file come out as ``prog: warning:`` lines."""
    dest = str(tmp_path / "crashed")
    code = ("import os, signal, numpy as np, imgstore\n"
            f"s = imgstore.new_for_format('h264/mkv', basedir={dest!r}, imgshape=(48, 64), imgdtype='uint8')\n"
            "for i in range(60):\n"
            "    s.add_image(np.full((48, 64), i * 4, np.uint8), i, 1e9 + i / 25)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", code], timeout=60)
    result = imgstore_cmd("info", dest)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines, "a crashed writer's chunk is worth a warning"
    assert all(line.startswith("imgstore info: warning: ") for line in lines), lines
    assert len(lines) == len(set(lines))
