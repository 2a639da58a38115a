"""Frames that carry their frame_number as a barcode, so any reader can be checked exactly.

The layout is the one of the shared fixtures: the image width is split into ``bits`` equal
column bands (edges at ``linspace(0, width, bits + 1)``); over the top half of the image
band *i* is white where bit *i* of the frame number is set (most significant bit first).
The bottom half is moving texture so that video codecs behave as on real footage.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike


def _band_edges(width: int, bits: int) -> np.ndarray:
    return np.linspace(0, width, bits + 1).astype(int)


def make_frame(frame_number: int, height: int = 480, width: int = 640, color: bool = False,
               bits: int = 20, dtype: DTypeLike = np.uint8) -> np.ndarray:
    """A synthetic frame: barcode of ``frame_number`` on top, moving texture below.

    For uint16 the values span the full 16-bit range so a lossy 8-bit path would show.
    """
    dtype = np.dtype(dtype)
    top = height // 2
    img = np.zeros((height, width), dtype=np.float64)
    edges = _band_edges(width, bits)
    for i in range(bits):
        if (int(frame_number) >> (bits - 1 - i)) & 1:
            img[:top, edges[i]:edges[i + 1]] = 1.0
    # separable texture: computed per row and per column, then broadcast (fast for big frames)
    xx = np.arange(width)[None, :]
    yy = np.arange(height - top)[:, None]
    phase = 0.35 * frame_number
    img[top:] = 0.5 + 0.25 * np.sin(xx / 7.0 + phase) + 0.25 * np.cos(yy / 5.0 - 0.6 * phase)
    if dtype.kind == "f":
        out = img.astype(dtype)
    else:
        out = np.round(img * np.iinfo(dtype).max).astype(dtype)
        if dtype.itemsize > 1:
            # low bits that an 8-bit round trip would lose
            out[top:] ^= np.broadcast_to(np.asarray((xx + int(frame_number)) % 251, dtype=dtype),
                                         out[top:].shape)
    if color:
        c = np.stack([out, np.roll(out, 3, axis=1), np.roll(out, 7, axis=0)], axis=-1)
        c[:top] = out[:top, :, None]
        return c
    return out


def read_barcode(img: np.ndarray, bits: int = 20, rows: slice | None = None) -> int:
    """Decode the frame number from a barcode frame (colour channels are averaged).

    ``rows`` selects the rows to average (default: the top half).
    """
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr.mean(axis=2)
    height, width = arr.shape
    dtype = np.asarray(img).dtype
    scale = float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0
    region = arr[rows if rows is not None else slice(0, height // 2)]
    edges = _band_edges(width, bits)
    value = 0
    for i in range(bits):
        lo, hi = edges[i] + 1, edges[i + 1] - 1
        if hi <= lo:
            lo, hi = edges[i], edges[i + 1]
        bit = region[:, lo:hi].mean() > 0.5 * scale
        value = (value << 1) | int(bit)
    return value


def read_fixture_barcode(img: np.ndarray, bits: int = 20) -> int:
    """Decode a shared-fixture barcode (20 bits over the top half; Motif: 16 over the middle rows)."""
    if bits == 16:
        h = img.shape[0]
        return read_barcode(img, bits=16, rows=slice(h // 2 - h // 8, h // 2 + h // 8))
    return read_barcode(img, bits=bits)
