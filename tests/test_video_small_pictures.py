"""Small pictures in every video format: frames read back, and the process survives writing them.

The x265 of the PyAV wheels corrupts its heap on pictures 33 to 48 px wide (glibc "corrupted
size vs. prev_size" kills the process), so imgstore pads such pictures to 64 px; the test writes
those widths in a child process, where a relapse kills the child, not the test run.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import imgstore
from imgstore.testing.barcode import make_frame, read_barcode

_WRITE = """
import os, sys, imgstore
from imgstore.testing.barcode import make_frame
for w in (36, 40, 44, 48):  # one of them may survive a heap corruption; four (40 of 40 runs) do not
    path = os.path.join(sys.argv[1], str(w))
    with imgstore.new_for_format("hevc/mp4", basedir=path, imgshape=(32, w), chunksize=4) as s:
        for n in range(6):
            s.add_image(make_frame(n, 32, w, bits=4), n, float(n))
    with imgstore.new_for_filename(path) as s:
        print(len(s))
"""


@pytest.mark.parametrize("fmt", ["mjpeg/avi", "h264/mkv", "avc1/mp4", "ffv1/mkv", "hevc/mp4", "h264-lossless/mkv"])
@pytest.mark.parametrize("shape", [(16, 24), (32, 56, 3), (17, 31, 3)])
def test_small_pictures(tmp_path, fmt, shape):
    path = str(tmp_path / "s")
    frames = [make_frame(n, shape[0], shape[1], color=len(shape) == 3, bits=4) for n in range(6)]
    with imgstore.new_for_format(fmt, basedir=path, imgshape=shape, chunksize=4) as s:
        for n, img in enumerate(frames):
            s.add_image(img, n, float(n))
    with imgstore.new_for_filename(path) as s:
        assert s.image_shape == shape and s.frame_count == 6
        for n, img in enumerate(frames):
            got = s.get_frame_at(n).image
            if s.lossless:
                np.testing.assert_array_equal(got, img)
            else:
                assert read_barcode(got, bits=4) == n


def test_hevc_picture_widths_33_to_48_do_not_kill_the_writer(tmp_path):
    done = subprocess.run([sys.executable, "-c", _WRITE, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.split() == ["6"] * 4
