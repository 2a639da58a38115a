"""The conformance suite, once per backend: directory, video and a test-only raw backend.

Each class runs :class:`~imgstore.testing.conformance.StoreConformance` over its backend's
formats (grey and colour, more dtypes, odd sizes); read tests run on stores written by
imgstore's writer and on stores written directly (:mod:`imgstore.testing.synthetic`,
``tests/rawbackend.py``), so that reading is tested independently of writing.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.backends import registry
from imgstore.backends.directory import DirectoryImgStore
from imgstore.backends.video import VideoImgStore
from imgstore.testing import synthetic
from imgstore.testing.conformance import FormatCase, StoreConformance

from .rawbackend import RawImgStore, RawReadOnlyImgStore, write_raw_payload, write_raw_store


class TestDirectoryStores(StoreConformance):
    store_class = DirectoryImgStore
    # listed, not asked: a format the backend stops offering fails instead of vanishing
    formats = ("npy", "bmp", "jpg", "pgm", "png", "ppm", "tif", "tif+color", "png+color", "jpg+color", "bmp+color")
    capabilities = frozenset({"write", "random_access"})
    direct_writer = staticmethod(synthetic.write_directory_store)
    extra_cases = (
        FormatCase("npy", dtype="uint16", lossless=True),
        FormatCase("png", dtype="uint16", lossless=True),
        FormatCase("tif", color=True, dtype="uint16", lossless=True),
        FormatCase("npy", dtype="float32", lossless=True),
        FormatCase("tif", dtype="float32", lossless=True),
        FormatCase("ppm", color=True, dtype="uint16", lossless=True),
    )

    @classmethod
    def colors_for(cls, fmt):
        if fmt == "pgm":
            return (False,)
        if fmt == "ppm" or fmt.endswith("+color"):
            return (True,)
        return (False, True)

    @classmethod
    def expect_lossless(cls, fmt):
        return fmt.replace("+color", "") != "jpg"


class TestVideoStores(StoreConformance):
    store_class = VideoImgStore
    # PyAV's wheels carry every codec these need: a format the probe stops finding is a regression
    formats = ("mjpeg/avi", "h264/mkv", "avc1/mp4", "ffv1/mkv", "hevc/mp4", "h264-lossless/mkv")
    capabilities = frozenset({"write", "random_access", "adopt"})
    direct_writer = staticmethod(synthetic.write_video_store)
    payload_writer = staticmethod(synthetic.write_video_chunk)
    # 4:2:0 H.264 needs even sizes: the file is padded, nothing is cropped from the frames
    extra_cases = (
        FormatCase("h264/mkv", color=True, shape=(45, 61), lossless=False),
        FormatCase("avc1/mp4", shape=(45, 61), lossless=False),
        FormatCase("ffv1/mkv", color=True, shape=(45, 61), lossless=True),
    )

    @classmethod
    def expect_lossless(cls, fmt):
        return fmt in ("ffv1/mkv", "h264-lossless/mkv")


def _register(name: str, target: str):
    """Make a store class known for the duration of a test class; forget it after."""
    registry.register(name, target)
    try:
        yield
    finally:
        registry.unregister(name)


class TestRawStores(StoreConformance):
    """A backend added in one file (tests/rawbackend.py) and one registry line."""

    store_class = RawImgStore
    formats = ("raw",)
    capabilities = frozenset({"write", "random_access", "adopt"})
    direct_writer = staticmethod(write_raw_store)
    payload_writer = staticmethod(write_raw_payload)
    extra_cases = (
        FormatCase("raw", dtype="uint16", lossless=True),
        FormatCase("raw", color=True, dtype="float32", shape=(45, 61), lossless=True),
    )

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def registered(cls):
        yield from _register("RawImgStore", "tests.rawbackend:RawImgStore")

    @classmethod
    def expect_lossless(cls, fmt):
        return True


class TestRawReadOnlyStores(StoreConformance):
    """A backend that cannot write nor read out of order cheaply: read tests on direct stores only."""

    store_class = RawReadOnlyImgStore
    formats = ("raw",)
    capabilities = frozenset()
    direct_writer = staticmethod(functools.partial(write_raw_store, class_name="RawReadOnlyImgStore"))

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def registered(cls):
        yield from _register("RawReadOnlyImgStore", "tests.rawbackend:RawReadOnlyImgStore")

    @classmethod
    def expect_lossless(cls, fmt):
        return True


def test_raw_backend_is_known_only_while_registered(tmp_path):
    """One register() line makes the factory, the format list and the reader know a backend."""
    path = str(tmp_path / "s")
    assert "raw" not in imgstore.get_supported_formats()
    with pytest.raises(errors.UnsupportedFormatError, match="'raw'"):
        imgstore.new_for_format("raw", basedir=path, imgshape=(4, 4))
    registry.register("RawImgStore", "tests.rawbackend:RawImgStore")
    try:
        assert imgstore.get_supported_formats()[-1] == "raw"
        assert registry.write_options("raw") == frozenset()
        with imgstore.new_for_format("raw", basedir=path, imgshape=(4, 4)) as s:
            assert type(s) is RawImgStore
        with imgstore.new_for_filename(path) as s:
            assert type(s) is RawImgStore and s.format == "raw"
    finally:
        registry.unregister("RawImgStore")
    assert "raw" not in imgstore.get_supported_formats()
    with pytest.raises(errors.MetadataError, match="'RawImgStore' not supported"):
        imgstore.new_for_filename(path)


def test_registry_alias_opens_stores_of_the_old_name(tmp_path):
    old = write_raw_store(str(tmp_path / "old"), "raw", [np.zeros((2, 3), np.uint16)], [7], [1.5], 10,
                          class_name="RawStoreV0")
    registry.register("RawImgStore", "tests.rawbackend:RawImgStore", aliases=("RawStoreV0",))
    try:
        assert registry.class_for_name("RawStoreV0") is RawImgStore
        with imgstore.new_for_filename(old) as s:
            assert type(s) is RawImgStore and s.get_frame_at(0).frame_number == 7
    finally:
        registry.unregister("RawImgStore")
    assert registry.class_for_name("RawStoreV0") is None


def test_read_only_never_writes_the_cache_of_a_big_store(tmp_path):
    """Plain readers write the index cache of big stores; ``read_only=True`` readers never write."""
    from imgstore import index_cache
    from imgstore.testing.conformance import snapshot_tree
    from imgstore.testing.synthetic import make_synthetic_store, synthetic_frame

    n_chunks = index_cache.READER_WRITE_MIN_CHUNKS + 1
    paths = [make_synthetic_store(str(tmp_path / name), 2 * n_chunks, 2) for name in ("ro", "plain")]
    before = snapshot_tree(paths[0])
    with imgstore.new_for_filename(paths[0], read_only=True) as s:
        assert s.chunks == list(range(n_chunks))
        assert (s.get_frame_at(2 * 7).image == synthetic_frame(2 * 7)).all()
        with pytest.raises(errors.StoreWriteError, match="read-only"):
            s.save_index_cache()
    assert snapshot_tree(paths[0]) == before
    # the same store opened plainly gets its cache: the read-only one was spared a real write
    with imgstore.new_for_filename(paths[1]) as s:
        assert len(s) == 2 * n_chunks
    assert os.path.exists(index_cache.cache_path(paths[1]))


def test_read_only_save_index_writes_nothing(tmp_path):
    from imgstore.testing.conformance import snapshot_tree
    from imgstore.testing.synthetic import make_synthetic_store

    path = make_synthetic_store(str(tmp_path / "s"), 6, 2)
    before = snapshot_tree(path)
    with imgstore.new_for_filename(path, read_only=True) as s, \
            pytest.raises(errors.StoreWriteError, match="read-only"):
        s.save_index()
    assert snapshot_tree(path) == before
