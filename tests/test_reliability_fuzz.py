"""Fuzzing the parsers a crashed store is read with: the writer's journal and the extra-data files.

(The metadata and chunk-index parsers are fuzzed in tests/test_ondisk.py.) Two kinds of property:
whatever bytes a file holds, the parser returns well-formed data or raises IndexCorruptError;
and a file cut at *any* byte (a writer killed mid-write) reads back as exactly the records
that were complete, never an error and never a record that was not written.
"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from imgstore import errors, ondisk

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
#: for the properties that write a file per example
FUZZ_FILES = settings(FUZZ, max_examples=50)

_MAGIC = b"IMGSTORE-JOURNAL 1\n"  # the first version, without checksums (still read)
_MAGIC_V2 = b"IMGSTORE-JOURNAL 2\n"
#: bytes of a journal record of frame_number and frame_time, with its CRC-32
RECORD = 8 + 8 + 4


def _check_table(table: dict) -> None:
    fn, ft = table["frame_number"], table["frame_time"]
    assert fn.dtype == np.int64 and ft.dtype == np.float64 and fn.ndim == ft.ndim == 1
    assert all(len(v) == len(fn) for v in table.values())


@FUZZ
@given(st.binary(max_size=200))
@example(_MAGIC + b'{"fields": []}\n' + b"\x00" * 16)
@example(_MAGIC + b'{"fields": [["frame_number", "<i8"]]}\n' + b"\x00" * 16)
@example(_MAGIC + b'{"fields": [["frame_number", "O"], ["frame_time", "<f8"]]}\n' + b"\x00" * 16)
@example(_MAGIC + b'{"fields": [["frame_number", "U4"], ["frame_time", "<f8"]]}\n' + b"\x00" * 32)
@example(_MAGIC + b'{"fields": [["frame_number", "(2,)<i8"], ["frame_time", "<f8"]]}\n')
@example(_MAGIC + b'{"fields": [["frame_time", "<f8"], ["frame_number", "<i8"]]}\n')
@example(_MAGIC + b'{"fields": {"a": 1}}\n')
@example(_MAGIC + b"[1, 2]\n")
def test_fuzz_journal_bytes(tmp_path, data):
    """Any bytes, with or without a valid magic: a well-formed table or IndexCorruptError."""
    path = str(tmp_path / "c.journal")
    for content in (data, _MAGIC + data, _MAGIC_V2 + data):
        with open(path, "wb") as f:
            f.write(content)
        with contextlib.suppress(errors.IndexCorruptError):
            _check_table(ondisk.read_journal(path))


_DTYPES = st.sampled_from(["<i8", "<i4", "<u2", "<f8", "<f4", "|b1", "U3", "O", "V0", "M8[s]", "(2,)<i4", "bogus"])


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["frame_number", "frame_time", "pts", "", "x"]), _DTYPES), max_size=4),
       st.binary(max_size=120))
def test_fuzz_journal_header(tmp_path, fields, body):
    """Headers naming any fields and types: only a well-formed table or IndexCorruptError."""
    path = str(tmp_path / "c.journal")
    with open(path, "wb") as f:
        f.write(_MAGIC + json.dumps({"fields": fields}).encode() + b"\n" + body)
    with contextlib.suppress(errors.IndexCorruptError):
        _check_table(ondisk.read_journal(path))


@FUZZ
@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False)), max_size=12),
       st.data())
def test_journal_cut_anywhere_reads_complete_records(tmp_path, records, data):
    """A journal cut at any byte after its header holds exactly the complete records."""
    path = str(tmp_path / "c.journal")
    if os.path.exists(path):
        os.unlink(path)
    journal = ondisk.ChunkJournal(path, fsync_interval=None)
    for fn, ft in records:
        journal.append(frame_number=fn, frame_time=ft)
    journal.close()
    with open(path, "rb") as f:
        content = f.read()
    header = len(content) - RECORD * len(records)
    cut = data.draw(st.integers(header, len(content)))
    with open(path, "wb") as f:
        f.write(content[:cut])
    table = ondisk.read_journal(path)
    n = (cut - header) // RECORD
    assert table["frame_number"].tolist() == [fn for fn, _ in records[:n]]
    assert table["frame_time"].tolist() == [ft for _, ft in records[:n]]


@FUZZ
@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False)), min_size=1, max_size=12),
       st.data())
def test_journal_byte_flipped_anywhere_is_never_read_as_frames(tmp_path, records, data):
    """One flipped byte anywhere: the header is refused, or the records read are the ones written, in
    order, up to the damaged one (those after it are counted as damaged, never returned)."""
    path = str(tmp_path / "c.journal")
    if os.path.exists(path):
        os.unlink(path)
    journal = ondisk.ChunkJournal(path, fsync_interval=None)
    for fn, ft in records:
        journal.append(frame_number=fn, frame_time=ft)
    journal.close()
    with open(path, "rb") as f:
        content = bytearray(f.read())
    at = data.draw(st.integers(0, len(content) - 1))
    content[at] ^= data.draw(st.integers(1, 255))
    with open(path, "wb") as f:
        f.write(content)
    header = len(content) - RECORD * len(records)
    try:
        contents = ondisk.read_journal_contents(path)
    except errors.IndexCorruptError:
        assert at < header  # only a damaged header is refused whole
        return
    assert at >= header
    damaged = (at - header) // RECORD
    assert contents.table["frame_number"].tolist() == [fn for fn, _ in records[:damaged]]
    assert contents.table["frame_time"].tolist() == [ft for _, ft in records[:damaged]]
    assert contents.damaged_records == len(records) - damaged


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=False)
                     | st.text(max_size=6), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c,
                                                                                              max_size=3), max_leaves=8)
_RECORDS = st.lists(st.dictionaries(st.text(max_size=5), _JSON, max_size=4), max_size=8)


@FUZZ_FILES
@given(_RECORDS, st.data())
def test_extra_lines_cut_anywhere_read_complete_records(tmp_path, records, data):
    """An .extra.jsonl cut at any byte reads back as the records written completely."""
    path = str(tmp_path / "c.extra.jsonl")
    lines = [ondisk.encode_extra_record(r).encode("utf-8") for r in records]
    content = b"".join(line + b"\n" for line in lines)
    cut = data.draw(st.integers(0, len(content)))
    with open(path, "wb") as f:
        f.write(content[:cut])
    ends = np.cumsum([len(line) + 1 for line in lines]) - 1  # where each record's JSON ends
    complete = [r for r, end in zip(records, ends, strict=False) if end <= cut]
    assert ondisk.read_extra_json(path) == complete


@FUZZ
@given(st.binary(max_size=200))
@example(b'{"a": 1}\n[1, 2]\n')
@example(b'{"a": 1}\n\xff\xfe\n{"b": 2}\n')
@example(b'{"a": 1}\n{"a": \xc3')  # a torn multi-byte character
def test_fuzz_extra_data_bytes(tmp_path, data):
    """Any bytes as .extra.jsonl or .extra.json: a list of records (dicts) or IndexCorruptError."""
    for name in ("c.extra.jsonl", "c.extra.json"):
        path = str(tmp_path / name)
        with open(path, "wb") as f:
            f.write(data)
        try:
            records = ondisk.read_extra_json(path)
        except errors.IndexCorruptError:
            continue
        assert isinstance(records, list) and all(isinstance(r, dict) for r in records)


@FUZZ_FILES
@given(_RECORDS)
def test_extra_json_round_trip(tmp_path, records):
    """What the writer finalises (a JSON array, the reference's format) reads back unchanged."""
    writer = ondisk.ExtraDataWriter(str(tmp_path / "c"))
    writer.discard()
    for r in records:
        writer.append(ondisk.encode_extra_record(r))
    writer.finalize()
    if records:
        assert ondisk.read_extra_json(writer.final_path) == records
        with open(writer.final_path, encoding="utf-8") as f:
            assert json.loads(f.read()) == records
    assert not os.path.exists(writer.journal_path)
