"""Deterministic synthetic frames that carry their own frame number.

Self-contained (numpy only) so the benchmark worker can use it under either
library's virtualenv without importing imgstore.

Layout of a frame of ``height`` x ``width`` pixels:

* top half: a barcode of ``BARCODE_BITS`` (20) bits. The width is split into
  20 equal column bands (edges at ``numpy.linspace(0, width, 21).astype(int)``);
  band ``i`` is 255 where bit ``i`` of the frame number is 1 (most significant
  bit first) and 0 otherwise;
* bottom half: a textured pattern (smooth blobs, a sinusoid and fine grain)
  that slides back and forth every frame, plus per-frame sensor-like noise,
  so that video codecs see motion, detail and residual as on real footage.

:func:`decode_barcode` reads the number back by averaging each band over the
top half (a pixel away from band edges, colour channels averaged) and
thresholding at 127. Frame numbers above 2**20 - 1 are encoded modulo 2**20.
"""

from __future__ import annotations

import numpy as np

BARCODE_BITS = 20
#: Bumped whenever the pixels change, so cached stores are rebuilt.
FRAMES_VERSION = 4
BARCODE_MODULO = 1 << BARCODE_BITS

#: Texture canvas margins: the visible window slides over a larger canvas.
_SLIDE_X = 256
_SLIDE_Y = 64
#: Sensor-like noise: frame n adds noise plane n % _NOISE_PLANES, values 0.._NOISE_LEVEL.
_NOISE_PLANES = 12
_NOISE_LEVEL = 10


def band_edges(width: int, bits: int = BARCODE_BITS) -> np.ndarray:
    """Column edges of the ``bits`` barcode bands of an image ``width`` wide."""
    return np.linspace(0, width, bits + 1).astype(int)


def barcode_row(frame_number: int, width: int, bits: int = BARCODE_BITS) -> np.ndarray:
    """One image row (uint8, ``width`` long) carrying ``frame_number`` as a barcode."""
    value = int(frame_number) % (1 << bits)
    edges = band_edges(width, bits)
    row = np.zeros(width, dtype=np.uint8)
    for i in range(bits):
        if (value >> (bits - 1 - i)) & 1:
            row[edges[i]:edges[i + 1]] = 255
    return row


def decode_barcode(img: np.ndarray, bits: int = BARCODE_BITS, rows: slice | None = None) -> int:
    """Read back the frame number of a frame made by :class:`FrameSource`.

    ``rows`` selects the rows to average (default: the top half). Returns -1
    when the image is unusable (None, empty).
    """
    if img is None:
        return -1
    img = np.asarray(img)
    if img.ndim < 2 or img.size == 0:
        return -1
    height, width = img.shape[:2]
    if rows is None:
        rows = slice(0, max(1, height // 2))
    column_means = img[rows].mean(axis=0, dtype=np.float64)
    if column_means.ndim == 2:  # colour: average the channels
        column_means = column_means.mean(axis=1)
    edges = band_edges(width, bits)
    value = 0
    for i in range(bits):
        lo, hi = edges[i] + 1, edges[i + 1] - 1
        if hi <= lo:  # band too narrow to skip its edges
            lo, hi = edges[i], edges[i + 1]
        value = (value << 1) | int(column_means[lo:hi].mean() > 127)
    return value


class FrameSource:
    """Deterministic frames of one shape: ``FrameSource(w, h, color).frame(n)``.

    The same (width, height, color) always yields bit-identical frames, in any
    process and under any numpy version (the texture comes from a fixed-seed
    legacy ``RandomState``).
    """

    def __init__(self, width: int, height: int, color: bool = False, seed: int = 12345):
        self.width = int(width)
        self.height = int(height)
        self.color = bool(color)
        self.shape = (self.height, self.width, 3) if self.color else (self.height, self.width)
        self._top = max(1, self.height // 2)
        self._canvas = self._make_canvas(seed)
        self._seed = seed
        self._noise: list = []

    def _make_canvas(self, seed: int) -> np.ndarray:
        rows = self.height - self._top + _SLIDE_Y
        cols = self.width + _SLIDE_X
        channels = 3 if self.color else 1
        rng = np.random.RandomState(seed)
        yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
        planes = []
        for c in range(channels):
            # smooth blobs: coarse random grid, bilinearly upsampled
            step = 32
            coarse = rng.rand(rows // step + 2, cols // step + 2).astype(np.float32)
            gy, gx = yy / step, xx / step
            y0, x0 = gy.astype(int), gx.astype(int)
            fy, fx = gy - y0, gx - x0
            blobs = (coarse[y0, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1, x0] * fy * (1 - fx)
                     + coarse[y0, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1, x0 + 1] * fy * fx)
            wave = 0.5 + 0.5 * np.sin(xx / (9.0 + 3 * c) + yy / (13.0 + c))
            grain = rng.rand(rows, cols).astype(np.float32)
            plane = 140 * blobs + 65 * wave + 30 * grain  # <= 235: room for the noise
            planes.append(np.clip(plane, 0, 255 - _NOISE_LEVEL).astype(np.uint8))
        canvas = np.stack(planes, axis=2)
        return canvas if self.color else canvas[:, :, 0]

    def frame(self, frame_number: int) -> np.ndarray:
        """The frame for ``frame_number`` (a new, C-contiguous uint8 array)."""
        n = int(frame_number)
        img = np.empty(self.shape, dtype=np.uint8)
        row = barcode_row(n, self.width)
        if self.color:
            img[:self._top] = row[None, :, None]
        else:
            img[:self._top] = row[None, :]
        dx = _triangle(3 * n, _SLIDE_X)
        dy = _triangle(n, _SLIDE_Y)
        bottom = img[self._top:]
        np.add(self._canvas[dy:dy + self.height - self._top, dx:dx + self.width],
               self._noise_plane(n), out=bottom)
        return img

    def _noise_plane(self, n: int) -> np.ndarray:
        if not self._noise:
            rng = np.random.RandomState(self._seed + 1)
            shape = (self.height - self._top, *self.shape[1:])
            self._noise = [rng.randint(0, _NOISE_LEVEL + 1, size=shape).astype(np.uint8)
                           for _ in range(_NOISE_PLANES)]
        return self._noise[n % _NOISE_PLANES]


def _triangle(x: int, span: int) -> int:
    """0, 1, ..., span-1, span-2, ..., 0, 1, ...: smooth back-and-forth motion (no jumps)."""
    period = 2 * (span - 1)
    x %= period
    return x if x < span else period - x


def frame_time(frame_number: int, t0: float = 1.7e9, fps: float = 25.0) -> float:
    """The synthetic timestamp of ``frame_number`` (seconds, 1/fps apart)."""
    return t0 + frame_number / fps


if __name__ == "__main__":  # tiny self-check
    for w, h, c in ((640, 480, False), (1920, 1080, True), (160, 8, False)):
        src = FrameSource(w, h, c)
        for n in (0, 1, 2, 12345, 1048575, 2159999):
            got = decode_barcode(src.frame(n))
            assert got == n % BARCODE_MODULO, (w, h, c, n, got)
    print("frames.py self-check ok")
