"""On-disk format: metadata, chunk indexes, journals and extra data files, and their errors."""

from __future__ import annotations

import contextlib
import datetime
import os

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgstore
from imgstore import errors, ondisk
from imgstore.storage import LOCAL
from imgstore.testing.barcode import make_frame


def _write_store(path, n=5, fmt="npy", chunksize=3, **kw):
    with imgstore.new_for_format(fmt, basedir=str(path), imgshape=(16, 20), chunksize=chunksize, **kw) as s:
        for i in range(n):
            s.add_image(make_frame(i, 16, 20, bits=4), i, 10.0 + i)
    return str(path)


def test_metadata_layout(tmp_path):
    path = _write_store(tmp_path / "s", metadata={"genotype": "wt", "n": np.int64(3)})
    with open(os.path.join(path, "metadata.yaml")) as f:
        doc = yaml.safe_load(f)
    smd = doc.pop("__store")
    assert doc == {"genotype": "wt", "n": 3}
    assert smd["class"] == "DirectoryImgStore" and smd["format"] == "npy" and smd["version"] == 2
    assert smd["imgshape"] == [16, 20] and smd["imgdtype"] == "uint8" and smd["chunksize"] == 3
    assert smd["encoding"] is None and len(smd["uuid"]) == 32
    datetime.datetime.fromisoformat(smd["created_utc"])
    assert isinstance(smd["timezone_local"], str)
    with np.load(os.path.join(path, "000000", "index.npz"), allow_pickle=False) as npz:
        assert npz["frame_number"].dtype == np.int64 and npz["frame_time"].dtype == np.float64
        assert npz["frame_number"].tolist() == [0, 1, 2]
    assert not os.path.exists(os.path.join(path, ".lock"))
    assert not [f for _, _, fs in os.walk(path) for f in fs if f.endswith((".partial", ".journal", ".jsonl"))]


@pytest.mark.parametrize("text, match", [
    ("just a string", "top level must be a mapping"),
    ("[1, 2]", "top level must be a mapping"),
    ("a: [unclosed", "not valid YAML"),
    ("foo: 1", "no '__store' key"),
    ("__store: 3", "must be a mapping"),
    ("__store: {class: DirectoryImgStore}", "lacks required key"),
    ("__store: {class: X, format: npy, imgshape: [2, 2], imgdtype: uint8, chunksize: 2, version: 2}",
     "store class 'X' not supported"),
    ("__store: {class: DirectoryImgStore, format: npy, imgshape: [2, 2], imgdtype: uint8, chunksize: 2, version: 3}",
     "version 3"),
    ("__store: {class: DirectoryImgStore, format: npy, imgshape: [a, 2], imgdtype: uint8, chunksize: 2, version: 2}",
     "imgshape"),
    ("__store: {class: DirectoryImgStore, format: npy, imgshape: [2, 2], imgdtype: nope, chunksize: 2, version: 2}",
     "imgdtype 'nope'"),
    ("__store: {class: DirectoryImgStore, format: npy, imgshape: [2, 2], imgdtype: uint8, chunksize: 0, version: 2}",
     "chunksize 0"),
    ("!!python/object:os.system {}", "not valid YAML"),
])
def test_bad_metadata(tmp_path, text, match):
    (tmp_path / "metadata.yaml").write_text(text)
    with pytest.raises(errors.MetadataError, match=match) as info:
        imgstore.new_for_filename(str(tmp_path))
    assert isinstance(info.value, ValueError)


def test_missing_store(tmp_path):
    with pytest.raises(errors.StoreNotFoundError, match="does not exist") as info:
        imgstore.new_for_filename(str(tmp_path / "nope"))
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                    max_leaves=10))
def test_fuzz_metadata_parser(tmp_path, doc):
    """Whatever YAML holds, opening either works or raises an ImgStoreError."""
    (tmp_path / "metadata.yaml").write_text(yaml.safe_dump({"__store": doc}) if not isinstance(doc, dict)
                                            else yaml.safe_dump(doc))
    with contextlib.suppress(errors.ImgStoreError):
        imgstore.new_for_filename(str(tmp_path))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_fuzz_index_parser(tmp_path, data):
    p = tmp_path / "index.npz"
    p.write_bytes(data)
    with contextlib.suppress(errors.IndexCorruptError):
        ondisk.read_chunk_index(str(p))
    y = tmp_path / "index.yaml"
    y.write_bytes(data)
    with contextlib.suppress(errors.IndexCorruptError):
        ondisk.read_chunk_index(str(y))


def test_index_lengths_differ(tmp_path):
    path = _write_store(tmp_path / "s")
    np.savez(os.path.join(path, "000001", "index.npz"), frame_number=np.arange(3), frame_time=np.zeros(2))
    with pytest.warns(imgstore.ImgStoreWarning, match="frame_number has 3 entries but frame_time has 2"):
        s = imgstore.new_for_filename(path)
    assert s.get_frame_metadata()["frame_number"] == [0, 1, 2]  # the damaged chunk is skipped, not guessed
    with pytest.raises(errors.IndexCorruptError, match="000001"):
        imgstore.new_for_filename(path, strict=True)


def test_yaml_index_and_object_arrays(tmp_path):
    path = _write_store(tmp_path / "s", n=6)
    os.unlink(os.path.join(path, "000001", "index.npz"))
    with open(os.path.join(path, "000001", "index.yaml"), "w") as f:
        yaml.safe_dump({"frame_number": [3, 4, 5], "frame_time": [13.0, 14.0, 15.0]}, f)
    # the reference stores a pickled object in its npz: it must be skipped, never loaded
    np.savez(os.path.join(path, "000000", "index.npz"), frame_number=np.arange(3), frame_time=10.0 + np.arange(3),
             encoding=np.array(None, dtype=object))
    with imgstore.new_for_filename(path) as s:
        assert s.get_frame_metadata()["frame_number"] == list(range(6))


def test_stray_files_and_folders_ignored(tmp_path):
    path = _write_store(tmp_path / "s")
    os.mkdir(os.path.join(path, "notes"))
    open(os.path.join(path, "README.txt"), "w").close()
    open(os.path.join(path, "000001", "thumbs.db"), "w").close()
    with imgstore.new_for_filename(path) as s:
        assert s.frame_count == 5


def test_missing_and_truncated_frame_files(tmp_path):
    path = _write_store(tmp_path / "s", fmt="png")
    os.unlink(os.path.join(path, "000000", "000001.png"))
    with open(os.path.join(path, "000001", "000000.png"), "r+b") as f:
        f.truncate(30)
    with imgstore.new_for_filename(path) as s:
        with pytest.raises(errors.ChunkReadError, match=r"000001.png is missing"):
            s.get_image(1)
        # checked against the checksum recorded at write time, before decoding
        with pytest.raises(errors.ChunkCorruptError, match=r"frame 0 of chunk 1 \(.*000000.png\) fails its checksum"):
            s.get_image(3)
        assert s.get_image(4)[1][0] == 4  # the rest still reads
    # a store without checksums (as the reference writes them): the decoder notices
    index = os.path.join(path, "000001", "index.npz")
    arrays = dict(np.load(index))
    del arrays["payload_xxh3"]
    np.savez(index, **arrays)
    with imgstore.new_for_filename(path) as s, pytest.raises(errors.ChunkReadError, match=r"000000.png is damaged"):
        s.get_image(3)


def test_journal_torn_record(tmp_path):
    j = ondisk.ChunkJournal(str(tmp_path / "c.journal"))
    for i in range(4):
        j.append(frame_number=i, frame_time=i / 2)
    j.close()
    with open(tmp_path / "c.journal", "ab") as f:
        f.write(b"\x01\x02\x03")  # half a record: a writer killed mid-write
    t = ondisk.read_journal(str(tmp_path / "c.journal"))
    assert t["frame_number"].tolist() == [0, 1, 2, 3] and t["frame_time"].tolist() == [0, 0.5, 1, 1.5]


def test_unterminated_reference_extra_json(tmp_path):
    p = tmp_path / "x.extra.json"
    p.write_text('[{"a": 1, "frame_number": 0}, {"a": 2, "frame_number": 1}')
    with pytest.warns(UserWarning, match="recovered 2 records"):
        assert [r["a"] for r in ondisk.read_extra_json(str(p))] == [1, 2]


def test_old_store_created_from_folder_name(tmp_path):
    path = _write_store(tmp_path / "rec_20240102_030405")
    md_path = os.path.join(path, "metadata.yaml")
    with open(md_path) as f:
        doc = yaml.safe_load(f)
    for k in ("created_utc", "timezone_local"):
        del doc["__store"][k]
    doc["timezone"] = "Europe/Vienna"
    with open(md_path, "w") as f:
        yaml.safe_dump(doc, f)
    with imgstore.new_for_filename(path) as s:
        created, tz = s.created
        assert str(tz) == "Europe/Vienna"
        assert created == datetime.datetime(2024, 1, 2, 2, 4, 5, tzinfo=datetime.timezone.utc)
        assert s.convert_frame_time_to_datetime(0).utcoffset() == datetime.timedelta(hours=1)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError), LOCAL.atomic_write(str(p)) as f:
        f.write(b"new")
        raise RuntimeError("crash")
    assert p.read_bytes() == b"old" and not (tmp_path / "f.partial").exists()


def test_created_from_the_metadata_mtime_equals_the_reference_float(tmp_path):
    """Without created_utc (Motif), the time is os.path.getmtime's float, as imgstore 0.4 converts it."""
    import datetime
    import os

    from imgstore.storage import LOCAL

    path = tmp_path / "metadata.yaml"
    path.write_text("x")
    smd = ondisk.StoreMetadata(class_name="VideoImgStore", format="h264/mkv", chunksize=10, imgshape=(4, 4),
                               imgdtype="uint8")
    # mtimes whose nanoseconds round differently through mtime_ns / 1e9 than through st_mtime
    for ns in (1_794_257_678_620_673_558, 1_822_264_056_588_578_648, 1_831_636_157_261_953_414):
        os.utime(path, ns=(ns, ns))
        created, _ = ondisk.resolve_created(smd, {}, str(tmp_path), str(path), storage=LOCAL)
        assert created == datetime.datetime.fromtimestamp(os.path.getmtime(path), tz=datetime.timezone.utc)
