"""Hostile or broken files in a store: a named error quickly, never a hang, a crash or a wrong value.

Each case is a file a store can hold after a bad copy, a disk fault or on purpose; opening
must raise a :class:`~imgstore.errors.ImgStoreError` (MetadataError, IndexCorruptError, ...)
whose message is short and names the file (never the whole expansion of an alias bomb).
"""

from __future__ import annotations

import json
import os
import threading
import warnings

import numpy as np
import pytest
import yaml

import imgstore
from imgstore import errors

SHAPE = (8, 10)


def _store(path, fmt="npy", n=6, chunksize=3):
    with imgstore.new_for_format(fmt, basedir=str(path), imgshape=SHAPE, imgdtype=np.uint8, chunksize=chunksize) as s:
        for i in range(n):
            s.add_image(np.full(SHAPE, i, np.uint8), i, 100.0 + i)
            s.add_extra_data(i=i)
    return str(path)


def _replace_metadata(path, text: str | bytes):
    md = os.path.join(path, "metadata.yaml")
    os.unlink(md)
    with open(md, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    return md


def _store_section(path):
    with open(os.path.join(path, "metadata.yaml")) as f:
        return yaml.safe_load(f)["__store"]


def _open_within(path, seconds=5.0, **kwargs):
    """Open in a thread: a hang fails the test instead of blocking the run."""
    outcome: dict = {}

    def run():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
                with imgstore.new_for_filename(path, **kwargs) as s:
                    outcome["frames"] = [s.get_frame_at(i).image.max() for i in range(len(s))]
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"opening {path} hangs"
    return outcome


def _yaml_doc(store_section: dict, extra: str) -> str:
    return yaml.safe_dump({"__store": store_section}) + extra


def test_alias_bomb(tmp_path):
    path = _store(tmp_path / "s")
    bomb = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    md = _replace_metadata(path, _yaml_doc(_store_section(path), "l0: &l0 [lol]\n" + bomb))
    assert os.path.getsize(md) < 1000
    outcome = _open_within(path)
    error = outcome.get("error")
    assert isinstance(error, errors.MetadataError), outcome
    assert "expands to more than" in str(error) and md in str(error) and len(str(error)) < 300


def test_self_referencing_alias(tmp_path):
    path = _store(tmp_path / "s")
    md = _replace_metadata(path, _yaml_doc(_store_section(path), "loop: &loop [1, *loop]\n"))
    error = _open_within(path).get("error")
    assert isinstance(error, errors.MetadataError) and "refers to itself" in str(error) and md in str(error)


def test_deep_nesting(tmp_path):
    path = _store(tmp_path / "s")
    _replace_metadata(path, _yaml_doc(_store_section(path), "deep: " + "[" * 50_000 + "]" * 50_000 + "\n"))
    error = _open_within(path).get("error")
    assert isinstance(error, errors.MetadataError) and "nest" in str(error)


def test_huge_metadata_refused_unread(tmp_path):
    path = _store(tmp_path / "s")
    values = ", ".join("0.123456789012345" for _ in range(300_000))
    md = _replace_metadata(path, _yaml_doc(_store_section(path), f"values: [{values}]\n"))
    error = _open_within(path, seconds=2.0).get("error")
    assert isinstance(error, errors.MetadataError) and "more than" in str(error) and md in str(error)


@pytest.mark.parametrize("special", ["fifo", "device"])
def test_special_file_as_metadata(tmp_path, special):
    path = _store(tmp_path / "s")
    md = os.path.join(path, "metadata.yaml")
    os.unlink(md)
    if special == "fifo":
        os.mkfifo(md)
    else:
        os.symlink("/dev/zero", md)
    error = _open_within(path).get("error")
    assert isinstance(error, errors.MetadataError) and "not a regular file" in str(error)


@pytest.mark.parametrize("victim", ["000001/index.npz", "000001/000000.npy"])
def test_fifo_as_chunk_file(tmp_path, victim):
    path = _store(tmp_path / "s")
    target = os.path.join(path, victim)
    os.unlink(target)
    os.mkfifo(target)
    outcome = _open_within(path)
    if victim.endswith("index.npz"):  # the chunk is skipped, the rest reads
        assert outcome.get("frames") == [0, 1, 2], outcome
    else:  # the frame is refused by name, not waited for
        assert isinstance(outcome.get("error"), errors.ChunkReadError) and victim in str(outcome["error"])


def test_deeply_nested_extra_data(tmp_path):
    path = _store(tmp_path / "s")
    with open(os.path.join(path, "000000", "index.extra.json"), "w") as f:
        f.write("[" + "[" * 50_000 + "]" * 50_000 + "]")
    with imgstore.new_for_filename(path) as s, pytest.raises(errors.IndexCorruptError, match="nested too deeply"):
        s.get_extra_data()


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("chunksize", 1.5, "chunksize 1.5"),
    ("chunksize", True, "chunksize True"),
    ("imgshape", [8.0, 10.0], "imgshape"),
    ("imgdtype", "V8", "imgdtype 'V8'"),
    ("imgdtype", "<U5", "imgdtype '<U5'"),
])
def test_strict_store_metadata(tmp_path, key, value, shown):
    path = _store(tmp_path / "s")
    section = _store_section(path)
    section[key] = value
    md = _replace_metadata(path, yaml.safe_dump({"__store": section}))
    with pytest.raises(errors.MetadataError, match=shown) as info:
        imgstore.new_for_filename(path)
    assert md in str(info.value)


def test_directory_store_labelled_video(tmp_path):
    path = _store(tmp_path / "s")
    section = _store_section(path)
    section["class"] = "VideoImgStore"
    _replace_metadata(path, yaml.safe_dump({"__store": section}))
    with pytest.raises(errors.MetadataError, match="image format"):
        imgstore.new_for_filename(path)


def test_frame_numbers_beyond_int64(tmp_path):
    path = _store(tmp_path / "s")
    base = os.path.join(path, "000001", "index.npz")
    with np.load(base) as npz:
        arrays = dict(npz)
    arrays["frame_number"] = np.array([2**63 + 5, 4, 5], dtype=np.uint64)
    np.savez(base, **arrays)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with imgstore.new_for_filename(path) as s:
            assert s.frame_numbers.tolist() == [0, 1, 2] and s.damaged_chunks.keys() == {1}
    assert any("does not fit in 64 signed bits" in str(w.message) for w in caught)
    with pytest.raises(errors.IndexCorruptError, match="64 signed bits"):
        imgstore.new_for_filename(path, strict=True)


def test_format_none_is_a_named_error(tmp_path):
    with pytest.raises(errors.UnsupportedFormatError, match="format None"):
        imgstore.new_for_format(None, basedir=str(tmp_path / "s"), imgshape=SHAPE)
    assert not os.path.exists(tmp_path / "s")


def test_sane_metadata_with_shared_values_still_opens(tmp_path):
    """Aliases themselves are fine (yaml.safe_dump writes them for repeated objects)."""
    path = _store(tmp_path / "s")
    shared = {"rig": [1, 2, 3]}
    text = yaml.safe_dump({"__store": _store_section(path), "a": shared, "b": shared, "note": "x" * 1000})
    assert "&id" in text
    _replace_metadata(path, text)
    with imgstore.new_for_filename(path) as s:
        assert s.user_metadata["a"] == s.user_metadata["b"] == {"rig": [1, 2, 3]}
    json.dumps(s.user_metadata)
