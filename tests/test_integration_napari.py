"""napari (extra [napari]): the npe2 reader opens stores as lazy layers in a headless ViewerModel."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import sys
from pathlib import Path

import numpy as np
import pytest

import imgstore
from imgstore.testing.barcode import make_frame, read_barcode

npe2 = pytest.importorskip("npe2")
pytest.importorskip("napari")
from napari.components import ViewerModel  # noqa: E402

from imgstore.integrations import napari as plugin  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

H, W = 48, 64
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC, 23:13:20 in Vienna


def _manifest_path():
    return importlib.resources.files("imgstore.integrations") / "napari.yaml"


@pytest.fixture(scope="module")
def manager():
    """npe2's plugin manager with imgstore's manifest (from the entry point when installed, else the file)."""
    pm = npe2.PluginManager.instance()
    if "imgstore" not in pm:
        pm.discover()
    if "imgstore" not in pm:  # a source checkout on sys.path, not installed
        pm.register(npe2.PluginManifest.from_file(str(_manifest_path())))
    return pm


@pytest.fixture(scope="module")
def long_store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("napari") / "cam0")
    with imgstore.new_for_format("h264/mkv", basedir=path, imgshape=(H, W), chunksize=250, fps=25,
                                 metadata={"timezone": "Europe/Vienna"}) as s:
        for i in range(1000):
            s.add_image(make_frame(1000 + i, H, W), 1000 + i, T0 + i / 25)
    return path


@pytest.fixture(scope="module")
def colour_store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("napari") / "cam1")
    with imgstore.new_for_format("png", basedir=path, imgshape=(H, W, 3), chunksize=5) as s:
        for i in range(12):
            s.add_image(make_frame(i, H, W, color=True), 7 + i, T0 + i)
    return path


def test_manifest_is_valid_and_declared():
    manifest = npe2.PluginManifest.from_file(str(_manifest_path()))  # npe2's schema validation
    manifest.validate_imports()  # every python_name resolves
    assert manifest.name == "imgstore"
    (reader,) = manifest.contributions.readers
    assert reader.accepts_directories and reader.command == "imgstore.get_reader"
    with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)
    assert project["project"]["entry-points"]["napari.manifest"] == {"imgstore": "imgstore.integrations:napari.yaml"}
    assert "napari.yaml" in project["tool"]["setuptools"]["package-data"]["imgstore.integrations"]


def test_installed_entry_point_is_found():
    eps = [ep for ep in importlib.metadata.entry_points(group="napari.manifest") if ep.name == "imgstore"]
    if not eps:
        pytest.skip("imgstore is not installed with its entry points here (pip install -e . does it)")
    pm = npe2.PluginManager.instance()
    pm.discover()
    assert pm.get_manifest("imgstore").contributions.readers[0].command == "imgstore.get_reader"


def test_viewer_shows_frame_500_decoding_only_what_it_shows(manager, long_store, monkeypatch):
    decoded = []
    real = imgstore.ImgStore.read_frames_at

    def counting(self, frame_indices):
        decoded.extend(int(i) for i in frame_indices)
        return real(self, frame_indices)

    monkeypatch.setattr(imgstore.ImgStore, "read_frames_at", counting)
    viewer = ViewerModel()
    (layer,) = viewer.open(long_store, plugin="imgstore")
    plugin.attach_frame_info(viewer)
    assert layer.data.shape == (1000, H, W) and layer.data.dtype == np.uint8
    # opening decodes at most the frame the layer starts on and the one the viewer centres on
    assert len(decoded) <= 2
    decoded.clear()
    viewer.dims.set_current_step(0, 500)
    assert decoded == [500]
    shown = np.asarray(layer.data[500])
    assert read_barcode(shown) == 1500
    overlay = viewer.canvas.overlays.text if hasattr(viewer, "canvas") else viewer.text_overlay
    assert overlay.visible
    # frame 500 is 20 s after the first: 23:13:40 in Vienna (CET)
    assert overlay.text == "cam0: frame_number 1500, 2023-11-14 23:13:40.000 CET"
    viewer.dims.set_current_step(0, 501)
    assert overlay.text.startswith("cam0: frame_number 1501, 2023-11-14 23:13:40.040")
    meta = layer.metadata["imgstore"]
    assert meta["timezone"] == "Europe/Vienna" and meta["frame_numbers"][500] == 1500


def test_several_stores_give_several_layers_and_metadata_yaml_opens(manager, long_store, colour_store):
    viewer = ViewerModel()
    layers = viewer.open([long_store, colour_store + "/metadata.yaml"], plugin="imgstore")
    assert [layer.name for layer in layers] == ["cam0", "cam1"]
    grey, colour = layers
    assert colour.rgb and not grey.rgb
    with imgstore.new_for_filename(colour_store) as s:
        np.testing.assert_array_equal(colour.data[3], s[3][..., ::-1])  # RGB for napari
        np.testing.assert_array_equal(colour.data[2:5, 1, :, 0], s[2:5, 1, :, 2])
    plugin.attach_frame_info(viewer)
    viewer.dims.set_current_step(0, 4)
    text = (viewer.canvas.overlays.text if hasattr(viewer, "canvas") else viewer.text_overlay).text
    assert "cam0: frame_number 1004" in text and "cam1: frame_number 11" in text


def test_reader_declines_what_is_not_a_store(tmp_path, long_store):
    assert plugin.get_reader(str(tmp_path)) is None
    (tmp_path / "x.yaml").write_text("a: 1\n")
    assert plugin.get_reader(str(tmp_path / "x.yaml")) is None
    assert plugin.get_reader([long_store, str(tmp_path)]) is None
    read = plugin.get_reader([long_store])
    ((data, kwargs, kind),) = read([long_store])
    assert kind == "image" and kwargs["contrast_limits"] == [0.0, 255.0] and data.ndim == 3
    data.close()
