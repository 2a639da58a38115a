"""The conformance suite's building blocks: test cases, frames, store snapshots, helpers."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

import imgstore
from imgstore.testing.barcode import make_frame, read_barcode

if TYPE_CHECKING:
    from imgstore.backends.base import ImgStore


#: frame numbers with a gap, a run out of order and a repeat (the first one must win)
FRAME_NUMBERS: list[int] = [*range(0, 12), *range(30, 20, -1), 40, 41, 41, *range(50, 57)]
#: user metadata of the stores the suite writes
USER_METADATA: dict[str, Any] = {"experimenter": "conformance", "nested": {"a": [1, 2]}}
#: bits of the barcode in the test frames (frame numbers up to 1023)
BARCODE_BITS = 10
#: every ``EXTRA_EVERY``-th frame of the shared stores has extra data
EXTRA_EVERY = 5
#: largest mean absolute error of a lossy frame, as a fraction of the dtype's range (measured:
#: at most 0.022 for colour, 0.007 for grey; swapped colour channels give 0.085)
LOSSY_ERROR = 0.04


def frame_times_for(numbers: Sequence[int]) -> list[float]:
    """Increasing frame times 1/25 s apart starting at 1.7e9."""
    return [1_700_000_000.0 + 0.04 * i for i in range(len(numbers))]


def extra_record(i: int) -> dict[str, Any]:
    """The extra data the suite attaches to frame_index ``i``."""
    return {"temperature": 20.0 + i, "note": f"n{i}"}


@dataclasses.dataclass(frozen=True)
class FormatCase:
    """One format in one pixel layout: what the suite writes and how it checks what it reads.

    ``lossless`` is what the store must report (None: not checked); a lossless store must
    read back bit-exact, a lossy one barcode-exact.
    """

    fmt: str
    color: bool = False
    dtype: str = "uint8"
    shape: tuple[int, int] = (48, 64)
    lossless: bool | None = None
    write_options: tuple[tuple[str, Any], ...] = ()

    @property
    def id(self) -> str:
        """The case's name in test ids (``png-color-uint16``)."""
        parts = [self.fmt, "color" if self.color else "grey", self.dtype]
        if self.shape != FormatCase.shape:
            parts.append("x".join(map(str, self.shape)))
        parts += [f"{k}={v}" for k, v in self.write_options]
        return "-".join(parts)

    @property
    def imgshape(self) -> tuple[int, ...]:
        """Shape of the images written and read."""
        return (*self.shape, 3) if self.color else tuple(self.shape)

    @property
    def options(self) -> dict[str, Any]:
        """Writing options (``fps``, ``quality``...)."""
        return dict(self.write_options)

    def frame(self, frame_number: int) -> np.ndarray:
        """The image the suite writes for ``frame_number``."""
        h, w = self.shape
        return make_frame(frame_number, h, w, color=self.color, dtype=self.dtype, bits=BARCODE_BITS)

    def assert_frame(self, store: Any, img: np.ndarray, frame_number: int) -> None:
        """``img`` is the frame written for ``frame_number`` (bit-exact when the store is lossless)."""
        assert img.shape == tuple(store.image_shape) == self.imgshape, (img.shape, store.image_shape)
        assert img.dtype == np.dtype(self.dtype), (img.dtype, self.dtype)
        expected = self.frame(frame_number)
        if store.lossless:
            np.testing.assert_array_equal(img, expected, err_msg=f"frame #{frame_number}")
            return
        assert read_barcode(img, bits=BARCODE_BITS) == frame_number
        # the barcode is grey: the textured half shows swapped colour channels, shifts, wrong crops
        error = float(np.abs(img.astype(np.float64) - expected).mean())
        limit = LOSSY_ERROR * (np.iinfo(img.dtype).max if img.dtype.kind in "iu" else 1.0)
        assert error < limit, f"frame #{frame_number}: mean error {error:.1f} (at most {limit:.1f} expected)"


def backend_capabilities(store_class: type[ImgStore]) -> frozenset[str]:
    """What a store class's backend declares: ``write``, ``random_access``, ``adopt``."""
    backend = store_class.backend_class
    caps = set()
    if backend.supports_writing:
        caps.add("write")
    if backend.supports_random_access:
        caps.add("random_access")
    if backend.supports_writing and backend.supports_adopting:
        caps.add("adopt")
    return frozenset(caps)


def _open(path: str, store_class: type[ImgStore], **kwargs: Any) -> Any:
    store = imgstore.new_for_filename(path, **kwargs)
    if type(store) is not store_class:
        store.close()
        raise AssertionError(f"new_for_filename({path!r}) opened a {type(store).__name__}, not a "
                             f"{store_class.__name__}")
    return store


# ----------------------------------------------------------------------------- helpers


def _add(store: Any, case: FormatCase, numbers: Any) -> None:
    for fn in numbers:
        store.add_image(case.frame(fn), fn, 100.0 + fn)


def _assert_frames(case: FormatCase, store: Any, numbers: Any) -> None:
    """The frames with frame_number = frame_index ``numbers`` read back right."""
    for fn in numbers:
        frame = store.get_frame_at(fn)
        assert (frame.frame_number, frame.frame_time) == (fn, 100.0 + fn)
        case.assert_frame(store, frame.image, fn)


def _index_summary(store: Any) -> dict[str, Any]:
    return {"frame_number": store.frame_numbers.tolist(), "frame_time": store.frame_times.tolist(),
            "chunks": list(store.chunks), "frame_count": store.frame_count,
            "by_number": [store.index_of_number(n) for n in sorted(set(FRAME_NUMBERS))],
            "by_time": [store.index_played_at(t + 0.01) for t in frame_times_for(FRAME_NUMBERS)]}


def _all_files(path: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(root, f), path) for root, _, files in os.walk(path) for f in files)


def age_files(path: str, seconds: float) -> None:
    """Set the modification time of every file below ``path`` ``seconds`` into the past."""
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def snapshot_files(path: str) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file below ``path`` (to show that reading changed nothing)."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns)
    return out


def snapshot_tree(path: str) -> dict[str, tuple[bool, int, int, int]]:
    """Every file and folder below ``path`` (kind, size, mtime, inode): a created or removed
    temporary file changes its folder's mtime, a rewritten file its inode or mtime."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in [".", *dirs, *files]:
            p = os.path.normpath(os.path.join(root, name))
            st = os.stat(p)
            is_dir = name == "." or name in dirs
            out[os.path.relpath(p, path)] = (is_dir, 0 if is_dir else st.st_size, st.st_mtime_ns, st.st_ino)
    return out
