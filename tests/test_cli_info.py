"""imgstore-info: text and JSON summaries, dropped-frame detection, the interval plot."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import imgstore
from imgstore.cli import info
from imgstore.testing.barcode import make_frame

from .cli_util import one_error_line

T0 = 1_700_000_000.0


def write_store(path, numbers, times, fmt="npy", shape=(48, 64), chunksize=10, metadata=None, extra_at=()):
    """A small barcode store; extra data ``sensor=i`` is added after the frames at positions ``extra_at``."""
    with imgstore.new_for_format(fmt, basedir=str(path), imgshape=shape, imgdtype="uint8", chunksize=chunksize,
                                 metadata=metadata or {}) as store:
        for i, (fn, ft) in enumerate(zip(numbers, times, strict=False)):
            height, width = shape[:2]
            store.add_image(make_frame(fn, height, width, color=len(shape) == 3), fn, ft)
            if i in extra_at:
                store.add_extra_data(sensor=i, label=f"s{i}")
    return str(path)


@pytest.fixture
def gappy_store(tmp_path):
    """frame_number 0-9, 15-19, 21-29 (6 numbers missing in 2 gaps); times follow the camera's
    numbers at 25 fps, and the writer stalled for 0.5 s before frame 27."""
    numbers = [*range(0, 10), *range(15, 20), *range(21, 30)]
    times = [T0 + 0.04 * fn + (0.5 if fn >= 27 else 0.0) for fn in numbers]
    return write_store(tmp_path / "gappy", numbers, times, metadata={"genotype": "wt", "n": 3}, extra_at=(0, 5))




def test_dropped_frames_json(gappy_store, capsys):
    assert info.main([gappy_store, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frame_count"] == 24
    assert (out["frame_number_min"], out["frame_number_max"]) == (0, 29)
    d = out["dropped"]
    assert (d["missing"], d["gaps"], d["out_of_order"], d["repeated"]) == (6, 2, 0, 0)
    assert d["largest"][0] == {"after": 9, "before": 15, "missing": 5, "frame_index": 10,
                               "at": d["largest"][0]["at"]}
    assert d["largest"][1]["after"] == 19 and d["largest"][1]["missing"] == 1
    li = out["long_intervals"]
    assert li["median_s"] == pytest.approx(0.04)
    # the two number gaps (6x and 2x the median) and the stall (0.54 s)
    assert li["count"] == 3
    assert [x["frame_number"] for x in li["largest"]] == [27, 15, 21]
    assert li["largest"][0]["interval_s"] == pytest.approx(0.54)
    assert out["user_metadata"] == {"genotype": "wt", "n": 3}
    assert out["extra_data"]["rows"] == 2
    assert {"sensor", "label", "frame_number"} <= set(out["extra_data"]["columns"])
    assert out["duration_s"] == pytest.approx(0.04 * 29 + 0.5)
    assert out["mean_fps"] == pytest.approx(23 / out["duration_s"])


def test_dropped_frames_text(gappy_store, capsys):
    assert info.main([gappy_store]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^dropped\s+6 missing frame numbers in 2 gaps; largest: 5 after #9 at ", out, re.M), out
    assert re.search(r"^pauses\s+3 intervals > 1.5 x median \(60.00 ms\); longest: 540.0 ms before #27", out, re.M)
    assert re.search(r"^frame_number\s+0 \.\. 29$", out, re.M)
    assert re.search(r"^frames\s+24 in 3 chunks of up to 10$", out, re.M)
    assert re.search(r"^\s+genotype\s+wt$", out, re.M)
    assert "extra data" in out and "sensor" in out


def test_no_drops(tmp_path, capsys):
    path = write_store(tmp_path / "s", range(5), [T0 + i / 10 for i in range(5)])
    assert info.main([path, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dropped"]["missing"] == 0 and out["long_intervals"]["count"] == 0
    assert out["mean_fps"] == pytest.approx(10.0)


def test_empty_store(tmp_path, capsys):
    path = str(tmp_path / "empty")
    imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8), imgdtype="uint8").close()
    # an empty store has no chunks at all; it must still be summarised
    assert info.main([path]) == 0
    assert re.search(r"^frames\s+0 in 0 chunks", capsys.readouterr().out, re.M)


def test_out_of_order_and_repeats():
    gaps = info.frame_number_gaps(np.array([0, 1, 5, 2, 3, 3, 4, 8]))
    # numbers 6 and 7 are missing; 2..4 arrived late but are not missing
    assert (gaps["missing"], gaps["gaps"], gaps["out_of_order"], gaps["repeated"]) == (2, 1, 1, 1)
    assert gaps["largest"][0]["after"] == 5 and gaps["largest"][0]["before"] == 8


def test_fixtures_json(fixtures_dir, manifest, capsys):
    for entry in manifest["stores"]:
        if entry.get("crashed") or "frame_numbers" not in entry:
            continue
        assert info.main([str(fixtures_dir / entry["name"]), "--json"]) == 0, entry["name"]
        out = json.loads(capsys.readouterr().out)
        numbers = entry["frame_numbers"]
        assert out["format"] == entry["format"]
        assert out["frame_count"] == len(numbers)
        assert out["frame_number_min"] == min(numbers) and out["frame_number_max"] == max(numbers)
        assert out["frame_time_min"] == pytest.approx(min(entry["frame_times"]))
        assert out["image_shape"] == entry["imgshape"]
        assert out["chunksize"] == entry["chunksize"]
        assert out["user_metadata"] == entry["user_metadata"]
        assert out["dropped"]["missing"] == max(numbers) - min(numbers) + 1 - len(set(numbers))
        if entry["extra_data"]:
            assert out["extra_data"]["rows"] == len(entry["extra_data"])
            assert {"temperature", "note"} <= set(out["extra_data"]["columns"])
        else:
            assert out["extra_data"] is None


def test_fixture_text(fixture_copy, capsys):
    path = fixture_copy("npy_grey")
    assert info.main([path]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^format\s+npy \(DirectoryImgStore, lossless\)$", out, re.M)
    assert re.search(r"^image\s+160 x 120 grey, uint8$", out, re.M)
    assert re.search(r"^start\s+2023-11-1\d \d\d:\d\d:20\.000 ", out, re.M)


def test_crashed_fixture_reports_damage(fixture_copy, capsys):
    path = fixture_copy("crashed_npy")
    assert info.main([path, "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["frame_count"] == 20
    assert list(out["damaged_chunks"]) == ["2"]
    # the library's warning comes out as one readable line, not a source-code dump
    assert "imgstore-info: warning:" in captured.err and "warnings.warn" not in captured.err


def test_plot(gappy_store, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import cv2

    png = tmp_path / "intervals.png"
    assert info.main([gappy_store, "--plot", str(png)]) == 0
    assert f"plot written to {png}" in capsys.readouterr().out
    img = cv2.imread(str(png))
    assert img is not None and img.shape == (400, 1000, 3)
    # pauses are drawn as red markers (matplotlib's tab:red, BGR 40,39,214)
    red = (np.abs(img.astype(int) - (40, 39, 214)).sum(axis=2) < 30).sum()
    assert red > 20


def test_plot_without_matplotlib(gappy_store, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert info.main([gappy_store, "--plot", str(tmp_path / "x.png")]) == 1
    line = one_error_line(capsys.readouterr().err, "imgstore-info")
    assert "pip install 'imgstore[plot]'" in line


@pytest.mark.parametrize("argv, status, message", [
    (["/no/such/store"], 1, "does not exist"),
    ([], 2, "required"),
    (["--bogus", "x"], 2, "unrecognized arguments"),
])
def test_bad_arguments(argv, status, message, capsys):
    assert info.main(argv) == status
    assert message in one_error_line(capsys.readouterr().err, "imgstore-info")


def test_plot_needs_image_name(gappy_store, capsys):
    assert info.main([gappy_store, "--plot", "out.txt"]) == 2  # a bad argument
    assert ".png" in one_error_line(capsys.readouterr().err, "imgstore-info")


# ---------------------------------------------------------------------- the plot's axes, the time zone

def test_plot_axes_log_steps_local_dates(tmp_path):
    """Log y axis; a long interval is one flat step (not a ramp); the x axis is local date-times."""
    pytest.importorskip("matplotlib")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    t0 = 1_700_000_000.0
    times = [t0 + 0.04 * i for i in range(50)] + [t0 + 3600 * 24 * 7 + 0.04 * i for i in range(50)]  # a week
    path = write_store(str(tmp_path / "week"), list(range(100)), times, metadata={"timezone": "America/New_York"})
    with imgstore.new_for_filename(path) as store:
        fig = info.interval_figure(store)
    try:
        ax = fig.axes[0]
        assert ax.get_yscale() == "log"
        [steps] = [p for p in ax.patches if p.get_label() == "frame interval"]  # stairs: a flat step per interval
        vertices = steps.get_path().vertices
        long_step = vertices[np.isclose(vertices[:, 1], 3600 * 24 * 7 * 1000 - 49 * 40, rtol=1e-6)]
        assert len(long_step) == 2 and long_step[1, 0] - long_step[0, 0] == pytest.approx(7 - 49 * 0.04 / 86400)
        formatter = ax.xaxis.get_major_formatter()
        assert isinstance(formatter, mdates.ConciseDateFormatter)
        assert str(formatter._tz) == "America/New_York"
        assert "America/New_York" in ax.get_xlabel()
    finally:
        plt.close(fig)


def test_times_in_the_zone_the_recording_names(tmp_path, capsys):
    """The 'timezone' user-metadata key wins over the zone of the machine that wrote the store."""
    t0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
    path = write_store(str(tmp_path / "tz"), [0, 1], [t0, t0 + 0.04], metadata={"timezone": "Asia/Tokyo"})
    assert info.main([path]) == 0
    out = capsys.readouterr().out
    assert "2023-11-15 07:13:20.000 JST  (Asia/Tokyo)" in out
    bad = write_store(str(tmp_path / "bad"), [0, 1], [t0, t0 + 0.04], metadata={"timezone": "Mars/Olympus"})
    with imgstore.new_for_filename(bad) as store:
        from imgstore.cli._common import recording_timezone

        assert recording_timezone(store) == store.created[1]  # not a zone: the store's own


def test_random_access_comes_from_the_store_class(gappy_store, monkeypatch, capsys):
    from imgstore.backends.directory import DirectoryImgStore

    assert info.main([gappy_store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["random_access"] is True
    monkeypatch.setattr(DirectoryImgStore, "supports_random_access", False)
    assert info.main([gappy_store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["random_access"] is False
    assert info.main([gappy_store]) == 0
    assert re.search(r"^format\s+npy \(DirectoryImgStore, lossless, slow out of order\)$", capsys.readouterr().out,
                     re.M)
