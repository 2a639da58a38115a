"""The conformance suite run against every format this installation supports."""

from __future__ import annotations

import imgstore
from imgstore.testing.conformance import StoreConformance


def _cases():
    for fmt in imgstore.get_supported_formats():
        colors = (False, True)
        if fmt == "pgm":
            colors = (False,)
        elif fmt == "ppm" or fmt.endswith("+color"):
            colors = (True,)
        for color in colors:
            yield fmt, color


for _fmt, _color in _cases():
    _name = "Test_" + _fmt.replace("/", "_").replace("+", "_").replace("-", "_") + ("_color" if _color else "_grey")
    globals()[_name] = type(_name, (StoreConformance,), {"fmt": _fmt, "color": _color})


class Test_npy_uint16(StoreConformance):
    fmt = "npy"
    dtype = "uint16"


class Test_png_uint16(StoreConformance):
    fmt = "png"
    dtype = "uint16"


class Test_tif_uint16_color(StoreConformance):
    fmt = "tif"
    dtype = "uint16"
    color = True


class Test_npy_float32(StoreConformance):
    fmt = "npy"
    dtype = "float32"


class Test_h264_mkv_odd_size_color(StoreConformance):
    """4:2:0 H.264 needs even sizes: the file is padded, nothing is cropped from the frames."""

    fmt = "h264/mkv"
    color = True
    shape = (45, 61)


class Test_avc1_mp4_odd_size_grey(StoreConformance):
    fmt = "avc1/mp4"
    shape = (45, 61)


class Test_ffv1_odd_size_color(StoreConformance):
    fmt = "ffv1/mkv"
    color = True
    shape = (45, 61)
