"""``imgstore.repair`` and ``imgstore-repair``: finalising a crashed store, safely and idempotently."""

from __future__ import annotations

import errno
import json
import os
import socket
import warnings

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.cli import main as cli_main
from imgstore.cli import repair as cli_repair
from imgstore.repair import RepairReport, repair
from imgstore.storage import LocalStorage
from imgstore.testing.barcode import make_frame, read_barcode
from imgstore.testing.reference import read_in_reference

from .test_crash_torture import HEIGHT, WIDTH, is_video, make_plan, run_and_kill, torture_formats


def crashed_store(tmp_path, fmt="npy", point="frame-journaled:12", name="s", **plan_kw) -> tuple[str, int]:
    """A store whose writer was SIGKILLed at ``point``; returns (path, frames reported)."""
    plan = make_plan(fmt, 0, "stop", point.split(":")[0])
    plan.stop_at = point
    plan.chunksize = plan_kw.get("chunksize", 5)
    plan.extra_every, plan.extra_burst = 1, 1
    dest = str(tmp_path / name)
    crash = run_and_kill(dest, plan)
    return dest, len(crash.frames)


def files(path: str) -> dict[str, bytes]:
    out = {}
    for root, _, names in os.walk(path):
        for n in names:
            with open(os.path.join(root, n), "rb") as f:
                out[os.path.relpath(os.path.join(root, n), path)] = f.read()
    return out


def test_repair_finalises_a_crashed_store(tmp_path):
    path, reported = crashed_store(tmp_path)
    before = files(path)
    assert ".lock" in before and "000002/index.journal" in before and "000002/index.extra.jsonl" in before
    dry = repair(path, dry_run=True)
    assert files(path) == before  # a dry run changes nothing, not even the lock
    assert dry.dry_run and dry.changed and dry.recovered == {2: 2}
    report = repair(path)
    assert report.actions == dry.actions and report.recovered == dry.recovered
    assert report.clean and report.frame_count == reported + 1 == 12  # the 12th was journaled, then the kill
    after = files(path)
    assert not [f for f in after if f.endswith((".journal", ".jsonl", ".partial")) or f == ".lock"]
    # closed chunks untouched; the recovered one has the reference's files
    assert all(after[f] == before[f] for f in before if f.startswith(("000000/", "000001/")))
    assert {"000002/index.npz", "000002/index.extra.json"} <= set(after)
    assert "12 frames" in str(report) and "chunk(s) [2]" in str(report)
    # idempotent
    again = repair(path)
    assert not again.changed and again.clean and files(path) == after
    assert "nothing to repair" in str(again)
    # a repaired store is a normal store: it appends, numbering chunks on
    with imgstore.new_for_filename(path, mode="a") as s:
        s.add_image(make_frame(12, HEIGHT, WIDTH), 12, 2e9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imgstore.new_for_filename(path) as s:
            assert s.frame_numbers.tolist() == list(range(13)) and s.chunks == [0, 1, 2, 3]
            assert s.get_extra_data()["value"].tolist() == [i * 0.5 for i in range(11)]


def test_interrupted_repair_is_run_again(tmp_path, monkeypatch):
    """Repair itself fails half-way (disk full writing the extra data): running it again finishes it."""
    path, _ = crashed_store(tmp_path)
    real = LocalStorage.write_bytes

    def full(self, p, *a, **k):
        if p.endswith(".extra.json"):
            raise errors.StoreWriteError(errno.ENOSPC, f"could not write {p}: No space left on device")
        return real(self, p, *a, **k)

    monkeypatch.setattr(LocalStorage, "write_bytes", full)
    with pytest.raises(errors.StoreWriteError, match=r"extra.json"):
        repair(path)
    monkeypatch.undo()
    assert not os.path.exists(os.path.join(path, ".lock"))  # released on the way out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
        with imgstore.new_for_filename(path) as s:  # still readable in between
            assert s.frame_count == 12 and len(s.get_extra_data()) == 11
    report = repair(path)
    assert report.clean and report.frame_count == 12
    assert not [f for f in files(path) if f.endswith((".journal", ".jsonl"))]


@pytest.mark.parametrize("point, recovered, dropped", [
    ("chunk-created:2", {}, [2]),  # the next chunk's folder exists, nothing in it
    # the 11th rename: frame 5's file, the first of chunk 1, complete as .partial; chunk 1 holds
    # no frame but the extra data added after frame 4: kept as a chunk without frames
    ("partial-written:11", {1: 0}, []),
    ("partial-written:9", {}, []),  # chunk 0's .extra.json complete as .partial
    ("index-written:2", {}, []),  # the index is there; journal and extra lines are leftovers
    ("extra-finalized:2", {}, []),
])
def test_repair_at_crash_points(tmp_path, point, recovered, dropped):
    path, _ = crashed_store(tmp_path, point=point)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
        with imgstore.new_for_filename(path) as s:
            frames_before, extra_before = s.frame_count, len(s.get_extra_data())
    report = repair(path)
    assert report.recovered == recovered and report.dropped == dropped and report.clean
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imgstore.new_for_filename(path) as s:
            assert s.frame_count == frames_before and len(s.get_extra_data()) == extra_before
            assert all(read_barcode(s.get_image(i)[0]) == i for i in range(s.frame_count))


def test_refuses_a_live_writer_and_a_foreign_host_lock(tmp_path):
    path = str(tmp_path / "s")
    w = imgstore.new_for_format("npy", basedir=path, imgshape=(8, 8))
    w.add_image(np.zeros((8, 8), np.uint8), 0, 1.0)
    with pytest.raises(errors.StoreLockedError):
        repair(path)
    w.close()
    # a lock written on another machine (network share): cannot be checked from here
    with open(os.path.join(path, ".lock"), "w") as f:
        json.dump({"pid": 1, "host": socket.gethostname() + "-elsewhere", "since": 0}, f)
    with pytest.raises(errors.StoreLockedError, match="another machine"):
        repair(path)
    report = repair(path, force=True)
    assert report.actions == [f"remove the stale lock {os.path.join(path, '.lock')} (pid 1 on "
                              f"{socket.gethostname()}-elsewhere)"]
    assert not os.path.exists(os.path.join(path, ".lock"))


def test_reference_crashed_store(tmp_path, fixture_copy):
    """imgstore 0.4 keeps no journal: its crashed chunk cannot be indexed; it is set aside, and said so."""
    path = fixture_copy("crashed_npy")
    frames = sorted(os.listdir(os.path.join(path, "000002")))
    report = repair(path)
    assert not report.clean and report.moved == ["damaged/000002"] and report.frame_count == 20
    assert "neither an index nor a journal" in str(report) and "set aside" in str(report).splitlines()[-1]
    assert not os.path.exists(os.path.join(path, ".lock")) and not os.path.exists(os.path.join(path, "000002"))
    assert sorted(os.listdir(os.path.join(path, "damaged", "000002"))) == frames  # its frames are kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rest of the store reads without a word, and appends
        with imgstore.new_for_filename(path, mode="a") as s:
            s.add_image(np.zeros(s.image_shape, np.uint8), 99, 9.0)
        with imgstore.new_for_filename(path) as s:
            assert s.frame_count == 21 and s.frame_numbers[-1] == 99
    again = repair(path)
    assert not again.changed and again.clean


def test_cli(tmp_path, capsys, fixture_copy):
    path, _ = crashed_store(tmp_path)
    assert cli_repair.main([path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("would ") >= 3 and "would be repaired; 12 frames" in out.strip().splitlines()[-1]
    assert os.path.exists(os.path.join(path, ".lock"))
    assert cli_main.main(["repair", path]) == 0  # the umbrella command dispatches to it
    out = capsys.readouterr().out
    assert "write the index of chunk 2 from its journal (2 frames)" in out
    assert cli_repair.main([path, "-q"]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: nothing to repair; 12 frames"
    # errors: one line, status 1; bad arguments: status 2; damage left: status 3
    assert cli_repair.main([str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("imgstore-repair: error:") and "nope" in err
    assert cli_repair.main([]) == 2
    assert cli_repair.main([fixture_copy("crashed_npy")]) == cli_repair.EXIT_DAMAGE_LEFT
    assert "move 000002 to damaged/000002" in capsys.readouterr().out
    w = imgstore.new_for_format("npy", basedir=str(tmp_path / "live"), imgshape=(8, 8))
    try:
        assert cli_repair.main([str(tmp_path / "live")]) == 1
        assert "being written by" in capsys.readouterr().err
    finally:
        w.close()


def test_report_str():
    r = RepairReport(path="/x", dry_run=True, actions=["delete chunk 3: no recoverable frame"], frame_count=5,
                     left=["chunk 9: bad"])
    assert str(r).splitlines() == ["would delete chunk 3: no recoverable frame", "left as is: chunk 9: bad",
                                   "/x: would be repaired; 5 frames"]


# ------------------------------------------------------------------------------ the reference library


def test_repaired_stores_open_in_the_reference(tmp_path, ref_python):
    """Crashed stores, once repaired, read in imgstore 0.4.0: every frame, in order, with its extra data."""
    reference_formats = {"npy", "png", "jpg", "mjpeg/avi", "h264/mkv", "avc1/mp4"}
    expected = {}
    for fmt in [f for f in torture_formats() if f in reference_formats]:
        point = "frame-journaled:40" if is_video(fmt) else "frame-journaled:12"
        path, _ = crashed_store(tmp_path, fmt, point, name=fmt.replace("/", "_"),
                                chunksize=15 if is_video(fmt) else 5)
        repair(path)
        with imgstore.new_for_filename(path) as s:
            expected[path] = {"numbers": s.frame_numbers.tolist(), "extra": len(s.get_extra_data())}
    got = {r["path"]: r for r in read_in_reference(ref_python, [{"path": p} for p in expected])}
    for path, want in expected.items():
        assert "error" not in got[path], got[path]
        assert got[path]["frame_number"] == want["numbers"], path
        assert got[path]["sequential_codes"] == want["numbers"], path  # each frame shows its own number
        assert len(got[path]["extra_frame_index"] or []) == want["extra"], path
