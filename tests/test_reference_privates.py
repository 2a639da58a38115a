"""Programs written for imgstore 0.4 see the same store here as there.

``tests/reference_probe.py`` makes every call real programs make (public names and the
private ones they use: ``_index``, ``_chunk_paths``, ``_imgshape``, ``_metadata``...) and
records what each returned. It runs once under imgstore 0.4.0 (in its own venv) and once
under this package, on the same stores: the reference's own fixtures and stores written
here. No call that works in 0.4.0 may fail here, and each must return the same value,
but for the differences listed in ``EXPECTED_DIFFERENCES``.

Needs the reference venv (``scripts/check_reference_compat.py`` or ``.ci/run`` makes it);
CI sets ``IMGSTORE_REQUIRE_REFERENCE=1`` so that a missing venv fails instead of skipping.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.testing.barcode import make_frame

PROBE = Path(__file__).with_name("reference_probe.py")

#: probe keys whose value may differ, and why (the operation must still succeed here)
EXPECTED_DIFFERENCES = {
    # 0.4.0 reads grey video through OpenCV's VideoCapture, which returns BGR; here a grey
    # store's frames are grey, as its image_shape says
    "extract_only_frame": "grey video chunks read as grey here",
}


def _run_probe(python: str, cases: list[dict], cwd: str) -> dict:
    # cwd outside the checkout: the reference venv must import its own imgstore
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if python == sys.executable:
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    out = subprocess.run([python, str(PROBE)], input=json.dumps(cases), capture_output=True, text=True,
                         cwd=cwd, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def _write_store(path: str, fmt: str, color: bool, numbers: list[int], metadata: dict, save_index: bool) -> None:
    shape = (48, 64, 3) if color else (48, 64)
    with imgstore.new_for_format(fmt, basedir=path, imgshape=shape, imgdtype=np.uint8, chunksize=5,
                                 metadata=metadata) as s:
        for i, fn in enumerate(numbers):
            s.add_image(make_frame(fn, 48, 64, color=color), fn, 1_700_000_000.0 + 0.04 * i)
            if i % 3 == 0:
                s.add_extra_data(temperature=20.0 + i)
        s.close(save_index=save_index)


OUR_STORES = [
    # (format, colour, user metadata, close(save_index=True))
    ("npy", False, {"timezone": "Europe/Vienna", "hwframerate": 30}, True),
    ("png", True, {"acquisitionframerate": 12.5, "acquisitionframerateenable": True}, False),
    ("mjpeg/avi", True, {"motif_version": "5.1"}, True),
    ("h264/mkv", False, {"timezone": "not a zone"}, False),
    ("avc1/mp4", True, {}, False),
]
NUMBERS = [*range(0, 7), *range(20, 14, -1), 30, 30, 31]


def _cases(tmp_path: Path, fixtures: Path, manifest: dict) -> list[dict]:
    cases = []
    for fmt, color, md, save_index in OUR_STORES:
        path = str(tmp_path / fmt.replace("/", "_"))
        _write_store(path, fmt, color, NUMBERS, md, save_index)
        cases.append({"path": path, "frame_number": 17, "frame_time": 1_700_000_000.0 + 0.04 * 9})
    for entry in manifest["stores"]:
        if entry["name"].startswith("crashed"):
            continue  # read differently on purpose: see tests/test_upstream_fixtures.py
        dest = tmp_path / ("fixture_" + entry["name"])
        shutil.copytree(fixtures / entry["name"], dest)
        # the Motif store's manifest entry has no lists: frame_number 0..178, frame_time = number + 1
        numbers = entry.get("frame_numbers", list(range(179)))
        times = entry.get("frame_times", [n + 1.0 for n in numbers])
        cases.append({"path": str(dest), "frame_number": numbers[len(numbers) // 2],
                      "frame_time": times[len(times) // 3]})
    return cases


def _our_error_class(name: str) -> type[BaseException]:
    cls = getattr(errors, name, None) or getattr(builtins, name, None)
    assert cls is not None, f"unknown exception class {name}"
    return cls


def _same(ours, theirs) -> bool:
    if isinstance(theirs, float) and isinstance(ours, (int, float)):
        return ours == pytest.approx(theirs, rel=1e-12, abs=1e-9)
    if isinstance(theirs, list) and isinstance(ours, list):
        return len(ours) == len(theirs) and all(_same(a, b) for a, b in zip(ours, theirs, strict=False))
    if isinstance(theirs, dict) and isinstance(ours, dict):
        # this package may add keys (e.g. to __store); every key the reference has must match
        return all(k in ours and _same(ours[k], v) for k, v in theirs.items())
    return ours == theirs


def test_programs_see_the_same_store(tmp_path, ref_python, fixtures_dir, manifest):
    cases = _cases(tmp_path, Path(fixtures_dir), manifest)
    theirs = _run_probe(ref_python, cases, cwd=str(tmp_path))
    ours = _run_probe(sys.executable, cases, cwd=str(tmp_path))
    assert theirs["version"] == "0.4.0" and ours["version"] == imgstore.__version__
    problems = []
    for case, t_store, o_store in zip(cases, theirs["stores"], ours["stores"], strict=False):
        name = os.path.basename(case["path"])
        for key, (t_status, t_value) in t_store.items():
            if key not in o_store:
                problems.append(f"{name}: {key}: not probed here")
                continue
            o_status, o_value = o_store[key]
            if t_status == "ok":
                if o_status != "ok":
                    problems.append(f"{name}: {key}: works in 0.4.0, raises {o_value} here")
                elif key not in EXPECTED_DIFFERENCES and not _same(o_value, t_value):
                    problems.append(f"{name}: {key}: 0.4.0 gives {t_value!r}, here {o_value!r}")
            elif o_status == "error":
                # a failure here must still be caught by the reference's except clauses
                builtin = getattr(builtins, t_value, None)
                if builtin is not None and not issubclass(_our_error_class(o_value), builtin):
                    problems.append(f"{name}: {key}: 0.4.0 raises {t_value}, here {o_value} (not a {t_value})")
    assert not problems, "\n".join(problems)


def test_probe_covers_the_private_names(tmp_path, fixtures_dir, manifest):
    """The names the corpus of client programs uses are all probed (so the comparison means something)."""
    cases = _cases(tmp_path, Path(fixtures_dir), manifest)[:1]
    ours = _run_probe(sys.executable, cases, cwd=str(tmp_path))["stores"][0]
    for name in ("_format", "_imgshape", "_imgdtype", "_metadata", "_chunk_n", "_basedir",
                 "_index.get_all_metadata", "_index.frame_count", "_index.chunks", "_get_chunk_metadata(0)",
                 "_index.get_chunk_metadata(0)", "_chunk_n_and_chunk_paths", "motif_get_parse_true_fps",
                 "new_for_filename(index=)"):
        assert ours[name][0] == "ok", (name, ours[name])
