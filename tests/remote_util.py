"""Fixtures and helpers of the remote-storage tests: a real S3 server (moto) and a real HTTP server on 127.0.0.1.

moto and s3fs are in the ``test`` extra: when they are missing these tests fail (they never skip),
so CI, which installs the extra, always runs them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

import imgstore
from imgstore.testing.barcode import make_frame
from imgstore.testing.servers import HttpServer, S3Server

H, W = 48, 64
T0 = 1_700_000_000.0
_names = itertools.count()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server in a child process, for the whole session (faults cleared by ``s3``)."""
    with S3Server() as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server) -> Iterator[S3Server]:
    """The S3 server with no fault and no latency, and a fresh bucket in ``s3.bucket``."""
    s3_server.clear_faults()
    name = f"lab{os.getpid()}-{next(_names)}"
    s3_server.create_bucket(name)
    s3_server.bucket = name  # type: ignore[attr-defined]
    yield s3_server
    s3_server.clear_faults()


def write_store(path: str, fmt: str = "h264/mkv", n: int = 250, chunksize: int = 100, height: int = H,
                width: int = W, extra_every: int = 0, **options: Any) -> list[int]:
    """A store of ``n`` barcode frames (numbers 1000, 1002... so numbers and indexes differ); its frame numbers."""
    numbers = [1000 + 2 * i for i in range(n)]
    with imgstore.new_for_format(fmt, basedir=path, imgshape=(height, width), chunksize=chunksize, **options) as s:
        for i, fn in enumerate(numbers):
            s.add_image(make_frame(fn, height, width), fn, T0 + i / 30)
            if extra_every and i % extra_every == 0:
                s.add_extra_data(temperature=20.0 + i / 10, frame=fn)
    return numbers


def upload(server: S3Server, local: str, key: str, names: Sequence[str] | None = None) -> str:
    """Copy the files ``names`` (all by default) of folder ``local`` to ``s3://<bucket>/<key>``; the URL."""
    fs = server.filesystem()
    bucket = server.bucket  # type: ignore[attr-defined]
    for name in sorted(os.listdir(local)) if names is None else names:
        src = os.path.join(local, name)
        if os.path.isdir(src):
            fs.put(src, f"{bucket}/{key}/{name}", recursive=True)
        else:
            fs.put_file(src, f"{bucket}/{key}/{name}")
    return f"s3://{bucket}/{key}"


def remote_keys(server: S3Server, url: str) -> dict[str, tuple[int, str]]:
    """Every object under ``url``: ``{key: (size, etag)}``."""
    fs = server.filesystem()
    return {info["name"]: (info["size"], info.get("ETag", "")) for info in fs.find(url, detail=True).values()}


def same_frames(a: Any, b: Any, lossless: bool) -> None:
    """Stores ``a`` and ``b`` hold the same frames (bit-exact if lossless, else the same barcodes)."""
    from imgstore.testing.barcode import read_barcode

    assert a.frame_count == b.frame_count
    for i in range(a.frame_count):
        img_a, md_a = a.get_image(None, frame_index=i)
        img_b, md_b = b.get_image(None, frame_index=i)
        assert md_a == md_b
        if lossless:
            np.testing.assert_array_equal(img_a, img_b)
        else:
            assert read_barcode(img_a) == read_barcode(img_b) == md_a[0]


__all__ = ["T0", "H", "HttpServer", "W", "remote_keys", "s3", "s3_server", "same_frames", "upload", "write_store"]
