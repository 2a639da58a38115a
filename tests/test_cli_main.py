"""The umbrella ``imgstore`` command, ``python -m imgstore``, help texts and shared argument helpers."""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import json
import subprocess
import sys
from zoneinfo import ZoneInfo

import pytest

import imgstore
from imgstore.cli import _common
from imgstore.cli import main as cli_main
from imgstore.testing.barcode import make_frame

COMMAND_MODULES = {"save": "save", "view": "view", "info": "info", "convert": "convert", "test": "selftest"}


@pytest.fixture
def small_store(tmp_path) -> str:
    path = str(tmp_path / "s")
    with imgstore.new_for_format("npy", basedir=path, imgshape=(16, 40), imgdtype="uint8") as store:
        for i in range(4):
            store.add_image(make_frame(i, 16, 40), i, 1_700_000_000.0 + i)
    return path


def test_usage_lists_commands(capsys):
    assert cli_main.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMAND_MODULES:
        assert f"\n  {name} " in out
    has_repair = importlib.util.find_spec("imgstore.cli.repair") is not None
    assert ("\n  repair " in out) == has_repair


def test_no_command_prints_usage(capsys):
    assert cli_main.main([]) == 2
    assert "usage: imgstore <command>" in capsys.readouterr().out


def test_unknown_command(capsys):
    assert cli_main.main(["frobnicate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'frobnicate' is not a command" in err[0]


def test_missing_command_module_is_skipped(monkeypatch, capsys):
    monkeypatch.setitem(cli_main.COMMANDS, "ghost", ("_no_such_module", "not installed"))
    assert cli_main.main(["ghost"]) == 2
    assert "'ghost' is not available in this installation" in capsys.readouterr().err
    assert cli_main.main(["--help"]) == 0
    assert "ghost" not in capsys.readouterr().out


def test_dispatches_with_prog_name(small_store, capsys):
    assert cli_main.main(["info", small_store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frame_count"] == 4
    assert cli_main.main(["info"]) == 2
    assert capsys.readouterr().err.startswith("imgstore info: error: the following arguments are required")


def test_help_subcommand(capsys):
    assert cli_main.main(["help", "info"]) == 0
    assert "usage: imgstore info" in capsys.readouterr().out


def test_version(capsys):
    assert cli_main.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"imgstore {imgstore.__version__}"


@pytest.mark.parametrize("name", sorted(COMMAND_MODULES))
def test_each_command_has_help_with_examples(name, capsys):
    module = importlib.import_module(f"imgstore.cli.{COMMAND_MODULES[name]}")
    assert module.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: imgstore-{name}")
    assert "examples:" in out and f"imgstore-{name} " in out.split("examples:")[1]


@pytest.mark.parametrize("name", sorted(COMMAND_MODULES))
def test_each_command_rejects_unknown_options(name, capsys):
    module = importlib.import_module(f"imgstore.cli.{COMMAND_MODULES[name]}")
    assert module.main(["--no-such-option", "x", "y"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"imgstore-{name}: error: ")


def test_python_dash_m(small_store):
    result = subprocess.run([sys.executable, "-m", "imgstore", "info", small_store, "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frame_number_max"] == 3
    result = subprocess.run([sys.executable, "-m", "imgstore", "info", small_store + "_missing"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_debug_env_shows_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSTORE_DEBUG", "1")
    from imgstore.cli import info

    with pytest.raises(imgstore.errors.StoreNotFoundError):
        info.main([str(tmp_path / "missing")])


# ---------------------------------------------------------------------- shared helpers

def test_parse_time():
    vienna = ZoneInfo("Europe/Vienna")
    assert _common.parse_time("1700000000.25", vienna) == 1700000000.25
    # without an offset the time is in the given zone (CET = UTC+1 in November)
    assert _common.parse_time("2023-11-14T23:13:20", vienna) == 1700000000.0
    assert _common.parse_time("2023-11-14 22:13:20Z", vienna) == 1700000000.0
    assert _common.parse_time("2023-11-14T23:13:20+01:00", None) == 1700000000.0
    with pytest.raises(_common.CLIError, match="ISO date-time"):
        _common.parse_time("soon", vienna)
    with pytest.raises(_common.CLIError, match="not finite"):
        _common.parse_time("nan", vienna)


def test_parse_metadata():
    assert _common.parse_metadata(["a=1", "b=wt", "c=", "d=[1, 2]", "e=x=y", 'f="7"']) == {
        "a": 1, "b": "wt", "c": "", "d": [1, 2], "e": "x=y", "f": "7"}
    for bad in ("novalue", "=3", "__store=1"):
        with pytest.raises(_common.CLIError):
            _common.parse_metadata([bad])


def test_format_local():
    vienna = ZoneInfo("Europe/Vienna")
    assert _common.format_local(1700000000.0405, vienna) == "2023-11-14 23:13:20.040 CET"
    assert _common.format_local(1700000000.9, vienna, 0) == "2023-11-14 23:13:20 CET"
    assert _common.format_local(float("nan"), vienna) == "-"
    assert _common.format_duration(3723.5) == "1:02:03.500"


def test_to_json_is_strict():
    text = _common.to_json({"a": float("nan"), "b": [float("inf"), 1.5], "d": datetime.date(2024, 5, 1),
                            "s": {3}})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "d": "2024-05-01", "s": [3]}


def test_to_uint8():
    import numpy as np

    assert _common.to_uint8(np.array([[0, 65535, 256]], np.uint16)).tolist() == [[0, 255, 1]]
    assert _common.to_uint8(np.array([[0.0, 0.5, 1.0]], np.float32)).tolist() == [[0, 128, 255]]
    img = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert _common.to_uint8(img) is img


def test_unsupported_video_format_message(monkeypatch):
    from imgstore.backends.video import VideoBackend

    def broken(cls):
        raise ImportError("cannot import name '_pyav'")

    # the video layer failing to load, as the registry's video store class reports it
    monkeypatch.setattr(VideoBackend, "supported_formats", classmethod(broken))
    formats, why = _common.available_formats()
    assert "npy" in formats and "h264/mkv" not in formats
    assert why is not None and "video formats unavailable" in why
    assert _common.default_format() == "npy"
    with pytest.raises(_common.CLIError, match=r"format 'h264/mkv' is not supported here \(video formats"):
        _common.check_format("h264/mkv")
