"""Repair of damaged crashed stores: nothing it cannot read is destroyed; extra data keeps its frames."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

import imgstore
from imgstore.cli import repair as cli_repair
from imgstore.repair import repair
from imgstore.testing.barcode import make_frame, read_barcode

from .test_crash_torture import HEIGHT, WIDTH, is_video, torture_formats
from .test_reliability_repair import crashed_store, files


def flip(path: str, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x5A]))


def journal_header_length(path: str) -> int:
    with open(path, "rb") as f:
        data = f.read()
    return data.index(b"\n", len(b"IMGSTORE-JOURNAL 2\n")) + 1


def journal_record_size(path: str) -> int:
    """Bytes per record: the fields named in the header, plus the record's CRC-32."""
    with open(path, "rb") as f:
        data = f.read()
    start = len(b"IMGSTORE-JOURNAL 2\n")
    fields = json.loads(data[start:data.index(b"\n", start)].rpartition(b"\t")[0])["fields"]
    return np.dtype([tuple(f) for f in fields]).itemsize + 4


def quiet_open(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
        return imgstore.new_for_filename(path, **kw)


def assert_extra_names_its_frames(store) -> list[int]:
    """Every extra-data record names a frame_index holding the frame_number it was added with."""
    df = store.get_extra_data()
    assert df is not None
    numbers = store.frame_numbers
    for record in df.to_dict("records"):
        assert numbers[int(record["frame_index"])] == record["frame_number"], record
        assert record["value"] == record["frame_number"] * 0.5  # the writer's value for that frame
    return df["frame_number"].astype(int).tolist()


# ------------------------------------------------------------------------------ journals


def test_damaged_journal_header_sets_the_chunk_aside(tmp_path, capsys):
    """One flipped byte in the header: no frame number can be trusted; every frame file is kept."""
    path, _ = crashed_store(tmp_path)
    journal = os.path.join(path, "000002", "index.journal")
    flip(journal, 25)
    before = files(path)
    chunk_files = {k: v for k, v in before.items() if k.startswith("000002/")}
    assert sum(k.endswith(".npy") for k in chunk_files) == 2
    with pytest.warns(imgstore.ImgStoreWarning, match="chunk 2 skipped"), imgstore.new_for_filename(path) as s:
        assert list(s.damaged_chunks) == [2] and s.frame_count == 10
    dry = repair(path, dry_run=True)
    assert files(path) == before and dry.moved == ["damaged/000002"]
    assert cli_repair.main([path]) == cli_repair.EXIT_DAMAGE_LEFT
    out = capsys.readouterr().out
    assert "move 000002 to damaged/000002: chunk 2 cannot be read, its journal cannot be read" in out
    assert "1 item(s) set aside" in out
    after = files(path)
    # byte for byte, every file of the chunk is in damaged/ (the journal too)
    assert {k[len("damaged/"):]: v for k, v in after.items() if k.startswith("damaged/")} == chunk_files
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imgstore.new_for_filename(path) as s:
            assert s.frame_numbers.tolist() == list(range(10)) and not s.damaged_chunks
            assert assert_extra_names_its_frames(s) == list(range(10))
    assert not repair(path).changed  # idempotent


def test_damaged_journal_record_keeps_the_good_records(tmp_path):
    """A record failing its checksum: the frames before it are recovered, the journal is kept aside."""
    path, _ = crashed_store(tmp_path, point="frame-journaled:14")  # chunk 2 journals frames 10..13
    journal = os.path.join(path, "000002", "index.journal")
    header = journal_header_length(journal)
    flip(journal, header + 2 * journal_record_size(journal) + 3)  # inside the third record (frame 12)
    with open(journal, "rb") as f:
        damaged_journal = f.read()
    warned = pytest.warns(imgstore.ImgStoreWarning, match=r"2 damaged record\(s\) after 2 good one")
    with warned, imgstore.new_for_filename(path) as s:
        assert s.frame_numbers.tolist() == list(range(12))
    with pytest.raises(imgstore.errors.IndexCorruptError, match="damaged record"):
        imgstore.new_for_filename(path, strict=True)
    report = repair(path)
    assert report.recovered == {2: 2} and "damaged/000002/index.journal" in report.moved
    with open(os.path.join(path, "damaged", "000002", "index.journal"), "rb") as f:
        assert f.read() == damaged_journal
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imgstore.new_for_filename(path) as s:
            assert s.frame_numbers.tolist() == list(range(12))
            assert all(read_barcode(s.get_image(i)[0]) == i for i in range(12))
            # the records added with frames 12 and 13 (which cannot be placed) are not read as others
            assert assert_extra_names_its_frames(s) == list(range(12))


@pytest.mark.parametrize("frames_in_folder", [1, 2])
def test_frames_without_journal_record(tmp_path, frames_in_folder):
    """A chunk whose journal holds no record: its one frame file is the frame being written when the
    writer died (payload first, journal second: never acknowledged) and goes; more than that is data
    no journal describes, set aside, never deleted."""
    path, _ = crashed_store(tmp_path, point="frame-journaled:11")  # frame 10, the first of chunk 2
    folder = os.path.join(path, "000002")
    journal = os.path.join(folder, "index.journal")
    with open(journal, "r+b") as f:  # as if killed before the record was written
        f.truncate(journal_header_length(journal))
    for name in os.listdir(folder):
        if name.endswith(".extra.jsonl"):
            os.unlink(os.path.join(folder, name))
    assert sorted(os.listdir(folder)) == ["000000.npy", "index.journal"]
    if frames_in_folder == 2:
        with open(os.path.join(folder, "000000.npy"), "rb") as src, open(os.path.join(folder, "000001.npy"),
                                                                          "wb") as dst:
            dst.write(src.read())
    report = repair(path)
    if frames_in_folder == 1:
        assert report.dropped == [2] and report.moved == [] and report.clean
        assert any("being written when the writer died" in a for a in report.actions), report.actions
        assert not os.path.exists(folder)
    else:
        assert report.moved == ["damaged/000002"] and not report.dropped and not report.clean
        assert os.path.exists(os.path.join(path, "damaged", "000002", "000001.npy"))
    with quiet_open(path) as store:
        assert store.frame_numbers.tolist() == list(range(10))


# ------------------------------------------------------------------------------ extra data


@pytest.mark.parametrize("fmt", [f for f in torture_formats() if f in ("npy", "h264/mkv")])
def test_cut_extra_data_line_never_deletes_the_chunk(tmp_path, fmt):
    """A line of ``.extra.jsonl`` cut short in the middle: the chunk and every readable record stay."""
    point = "frame-journaled:58" if is_video(fmt) else "frame-journaled:12"
    path, _ = crashed_store(tmp_path, fmt, point, chunksize=20 if is_video(fmt) else 5)
    last = max(int(n[:6]) for n in os.listdir(path) if n[:6].isdigit())
    with quiet_open(path) as s:
        frames = s.frame_numbers.tolist()
        records_before = len(s.get_extra_data())
        assert s.chunks[-1] == last  # the crashed chunk holds frames (the precondition of this test)
    lines_path = os.path.join(path, f"{last:06d}.extra.jsonl" if is_video(fmt) else f"{last:06d}/index.extra.jsonl")
    with open(lines_path, "rb") as f:
        original = f.read()
    lines = original.split(b"\n")
    assert len(lines) >= 3
    lines[0] = lines[0][: len(lines[0]) // 2]  # the first record cut in the middle
    with open(lines_path, "wb") as f:
        f.write(b"\n".join(lines))
    report = repair(path)
    payload = [k for k in files(path) if k.startswith(f"{last:06d}") and not k.endswith((".npz", ".json"))]
    assert payload, f"the chunk's frames are still in the store: {report}"
    assert any(m.endswith(".extra.jsonl") for m in report.moved) and "unreadable line(s) [1]" in str(report)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imgstore.new_for_filename(path) as s:
            assert s.frame_numbers.tolist() == frames
            assert len(assert_extra_names_its_frames(s)) == records_before - 1  # only the cut one is aside


def test_extra_data_after_crash_and_append_names_the_right_frames(tmp_path):
    """Records of frames lost in a crash never end up naming the frames appended later."""
    path, _ = crashed_store(tmp_path, point="frame-journaled:14")
    # the last two journaled frames lost (as a video encoder loses what it still held); frame 12
    # has its record (frame 13's add_extra_data never ran)
    for position in (2, 3):
        os.unlink(os.path.join(path, "000002", f"{position:06d}.npy"))
    warned = pytest.warns(imgstore.ImgStoreWarning, match=r"1 extra data record\(s\) were added with frames lost")
    with warned, imgstore.new_for_filename(path) as s:
        assert s.frame_count == 12 and assert_extra_names_its_frames(s) == list(range(12))
    with pytest.warns(imgstore.ImgStoreWarning, match="set aside in damaged/"), \
            imgstore.new_for_filename(path, mode="a") as s:
        for i in range(12, 20):
            s.add_image(make_frame(i, HEIGHT, WIDTH), 100 + i, 2e9 + i)
            s.add_extra_data(value=(100 + i) * 0.5, k=0, tag="appended")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imgstore.new_for_filename(path) as s:
            assert s.frame_numbers.tolist() == list(range(12)) + list(range(112, 120))
            assert assert_extra_names_its_frames(s) == list(range(12)) + list(range(112, 120))
    kept = [k for k in files(path) if k.startswith("damaged/")]
    assert kept == ["damaged/000002/index.extra.jsonl"]  # the two records are not lost either


def test_repair_maps_extra_data_past_a_chunk_set_aside(tmp_path):
    """A closed chunk whose index is unreadable is set aside; later records follow their frames."""
    path, _ = crashed_store(tmp_path, point="frame-journaled:14")
    with open(os.path.join(path, "000001", "index.npz"), "r+b") as f:
        f.truncate(30)
    report = repair(path)
    assert "damaged/000001" in report.moved
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imgstore.new_for_filename(path) as s:
            numbers = s.frame_numbers.tolist()
            assert numbers == [0, 1, 2, 3, 4, 10, 11, 12, 13]
            got = assert_extra_names_its_frames(s)
    # frame 9's record went aside with frame 9, frame 4's (filed with chunk 1) stays with frame 4;
    # the rest follow their frames to their new frame_index (frame 13's record was never added)
    assert got == [0, 1, 2, 3, 4, 10, 11, 12]


def test_set_aside_never_follows_a_link(tmp_path):
    path, _ = crashed_store(tmp_path)
    flip(os.path.join(path, "000002", "index.journal"), 25)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, os.path.join(path, "damaged"))
    with pytest.raises(imgstore.errors.StoreWriteError, match="symbolic link"):
        repair(path)
    assert not os.listdir(outside) and os.path.exists(os.path.join(path, "000002", "index.journal"))


def test_stray_journal_with_records_is_kept(tmp_path):
    """The journal of a video chunk whose file is gone still says which frames were lost: kept aside."""
    path, _ = crashed_store(tmp_path, "h264/mkv", "frame-journaled:40", chunksize=15)
    last = max(int(n[:6]) for n in os.listdir(path) if n.endswith(".mkv"))
    os.unlink(os.path.join(path, f"{last:06d}.mkv"))
    report = repair(path)
    assert sorted(report.moved) == [f"damaged/{last:06d}.extra.jsonl", f"damaged/{last:06d}.journal"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imgstore.new_for_filename(path) as s:
            assert s.frame_numbers.tolist() == list(range(15 * last))
            assert assert_extra_names_its_frames(s)[-1] == 15 * last - 1
