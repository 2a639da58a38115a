"""The backend registry: plug-ins found through the ``imgstore.backends`` entry-point group."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest

import imgstore
from imgstore.backends import registry

from .rawbackend import RawImgStore


def test_a_plugin_registers_through_its_entry_point(tmp_path, monkeypatch):
    plugin = importlib.metadata.EntryPoint(name="RawImgStore", value="tests.rawbackend:RawImgStore",
                                          group=registry.ENTRY_POINT_GROUP)
    real = importlib.metadata.entry_points

    def entry_points(**kwargs):
        if kwargs.get("group") == registry.ENTRY_POINT_GROUP:
            return [plugin]
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    try:
        registry.reread_entry_points()
        assert registry.class_for_name("RawImgStore") is RawImgStore
        assert "raw" in imgstore.get_supported_formats()
        path = str(tmp_path / "s")
        with imgstore.new_for_format("raw", basedir=path, imgshape=(3, 4), imgdtype=np.uint16) as s:
            s.add_image(np.full((3, 4), 9, np.uint16), 5, 1.0)
        with imgstore.new_for_filename(path) as s:
            assert type(s) is RawImgStore and s.get_frame_by_number(5).image.max() == 9
    finally:
        registry.unregister("RawImgStore")
        monkeypatch.undo()
        registry.reread_entry_points()
    assert registry.class_for_name("RawImgStore") is None


def test_a_plugin_that_cannot_be_imported_breaks_nothing(monkeypatch, caplog):
    registry.register("BrokenImgStore", "no_such_module:BrokenImgStore")
    try:
        assert "npy" in imgstore.get_supported_formats()
        assert registry.class_for_name("BrokenImgStore") is None
        assert "cannot be loaded" in caplog.text and "no_such_module" in caplog.text
    finally:
        registry.unregister("BrokenImgStore")
    with pytest.raises(ValueError, match="module:Class"):
        registry.register("X", "no colon")
