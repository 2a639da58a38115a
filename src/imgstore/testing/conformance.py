"""A test suite every store backend and format must pass.

Subclass :class:`StoreConformance` once per backend in a test module::

    class TestDirectoryStores(StoreConformance):
        store_class = DirectoryImgStore
        formats = ["npy", "png", "jpg"]                   # default: store_class.supported_formats()
        extra_cases = [FormatCase("png", dtype="uint16")]
        capabilities = {"write", "random_access"}         # what the backend must declare
        direct_writer = staticmethod(write_directory_store)

pytest then runs every ``test_*`` method for every :class:`FormatCase` (a format, grey or
colour, a dtype and a frame size). Read tests run on stores from every *source*: written
by imgstore's writer (``"writer"``, when the backend writes) and written directly, without
imgstore's writing code (``"direct"``, when the class has a ``direct_writer``;
:mod:`imgstore.testing.synthetic` has them for the built-in backends), so that reading is
tested independently of writing. Lossless formats must read back bit-exact, lossy ones
barcode-exact (:mod:`imgstore.testing.barcode`).

Tests are chosen by the backend's capability flags, read from its
:class:`~imgstore.backends.contract.Backend`:

``write`` (``supports_writing``)
    writing tests (append, refresh of a live writer, repair of an unclosed writer, ...);
    a backend without it must refuse ``mode='w'`` and ``'a'``.
``random_access`` (``supports_random_access``)
    many reads in random order (else a few).
``adopt`` (``inspect_payload`` implemented, and writing)
    ``insert_chunk`` (the class then needs a ``payload_writer`` making a payload to adopt).

``capabilities`` lists what the subclass expects: a backend that loses one fails
:meth:`StoreConformance.test_capabilities` instead of silently skipping its tests.

The older form, one class per format with ``fmt`` (and ``color``, ``dtype``, ``shape``)
set, still works: the store class then comes from the registry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import pickle
import re
import shutil
import socket
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.backends.registry import class_for_format, class_for_name
from imgstore.testing.barcode import make_frame, read_barcode

if TYPE_CHECKING:
    from imgstore.backends.base import ImgStore

__all__ = ["FRAME_NUMBERS", "FormatCase", "StoreConformance", "backend_capabilities", "frame_times_for",
           "snapshot_files", "snapshot_tree"]

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
    from imgstore.backends.contract import Backend

    backend = store_class.backend_class
    caps = set()
    if backend.supports_writing:
        caps.add("write")
    if backend.supports_random_access:
        caps.add("random_access")
    if backend.supports_writing and backend.inspect_payload is not Backend.inspect_payload:
        caps.add("adopt")
    return frozenset(caps)


def _open(path: str, store_class: type[ImgStore], **kwargs: Any) -> Any:
    store = imgstore.new_for_filename(path, **kwargs)
    if type(store) is not store_class:
        store.close()
        raise AssertionError(f"new_for_filename({path!r}) opened a {type(store).__name__}, not a "
                             f"{store_class.__name__}")
    return store


class StoreConformance:
    """Shared checks for the formats of one store class (see the module documentation)."""

    #: the store class under test (default: the registry's class for ``fmt``)
    store_class: ClassVar[type[ImgStore] | None] = None
    #: formats to test (default: ``store_class.supported_formats()``)
    formats: ClassVar[Sequence[str] | None] = None
    #: cases beyond grey and colour uint8 of each format (other dtypes, odd sizes...)
    extra_cases: ClassVar[Sequence[FormatCase]] = ()
    #: capabilities the backend must declare (None: not checked)
    capabilities: ClassVar[frozenset[str] | set[str] | None] = None
    #: ``f(path, fmt, images, frame_numbers, frame_times, chunksize, *, metadata, extra_data)``
    #: writing a store without imgstore's writer (see :mod:`imgstore.testing.synthetic`);
    #: None: the built-in one for the store class, if there is one
    direct_writer: ClassVar[Callable[..., Any] | None] = None
    #: ``f(path, fmt, images)`` writing a chunk payload for ``insert_chunk`` (backends that adopt);
    #: None: the built-in one for the store class, if there is one
    payload_writer: ClassVar[Callable[..., Any] | None] = None
    #: frames per chunk of the stores written
    chunksize: ClassVar[int] = 7

    # the older single-format form: set fmt (and color, dtype, shape, write_options)
    fmt: ClassVar[str] = ""
    color: ClassVar[bool] = False
    dtype: ClassVar[str] = "uint8"
    shape: ClassVar[tuple[int, int]] = (48, 64)
    write_options: ClassVar[Mapping[str, Any]] = {}

    # ------------------------------------------------------------- parametrisation

    @classmethod
    def get_store_class(cls) -> type[ImgStore]:
        """The store class under test."""
        if cls.store_class is not None:
            return cls.store_class
        found = class_for_format(cls.fmt)
        if found is None:
            raise errors.UnsupportedFormatError(f"{cls.__name__}: no store class writes format {cls.fmt!r}")
        return found

    @classmethod
    def colors_for(cls, fmt: str) -> Sequence[bool]:
        """Grey and/or colour cases of ``fmt``."""
        return (False, True)

    @classmethod
    def expect_lossless(cls, fmt: str) -> bool | None:
        """Whether stores of ``fmt`` must report lossless (None: not checked)."""
        return None

    @classmethod
    def cases(cls) -> list[FormatCase]:
        """Every case the class runs."""
        if cls.fmt:
            shape = (int(cls.shape[0]), int(cls.shape[1]))
            return [FormatCase(cls.fmt, cls.color, cls.dtype, shape, cls.expect_lossless(cls.fmt),
                               tuple(sorted(cls.write_options.items())))]
        formats = cls.formats if cls.formats is not None else cls.get_store_class().supported_formats()
        out = [FormatCase(fmt, color, lossless=cls.expect_lossless(fmt))
               for fmt in formats for color in cls.colors_for(fmt)]
        return out + list(cls.extra_cases)

    @classmethod
    def get_direct_writer(cls) -> Callable[..., Any] | None:
        """The direct writer (the class's, else the built-in one of its store class)."""
        if cls.direct_writer is not None:
            return cls.direct_writer
        from imgstore.testing import synthetic

        return {"DirectoryImgStore": synthetic.write_directory_store,
                "VideoImgStore": synthetic.write_video_store}.get(cls.get_store_class().class_name)

    @classmethod
    def get_payload_writer(cls) -> Callable[..., Any] | None:
        """The payload writer (the class's, else the built-in one of its store class)."""
        if cls.payload_writer is not None:
            return cls.payload_writer
        from imgstore.testing import synthetic

        return {"VideoImgStore": synthetic.write_video_chunk}.get(cls.get_store_class().class_name)

    @classmethod
    def sources(cls) -> list[str]:
        """Where the stores of the read tests come from."""
        out = []
        if cls.get_store_class().supports_writing:
            out.append("writer")
        if cls.get_direct_writer() is not None:
            out.append("direct")
        return out or ["none"]

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "case" in metafunc.fixturenames:
            cases = self.cases()
            if not cases:  # pytest would skip the tests: a backend without formats is an error
                raise errors.UnsupportedFormatError(f"{type(self).__name__}: no format to test")
            metafunc.parametrize("case", cases, ids=[c.id for c in cases], scope="class")
        if "source" in metafunc.fixturenames:
            metafunc.parametrize("source", self.sources(), scope="class")

    # ------------------------------------------------------------- writing stores

    @classmethod
    def require(cls, capability: str) -> None:
        """Skip the test unless the backend declares ``capability``."""
        if capability not in backend_capabilities(cls.get_store_class()):
            pytest.skip(f"{cls.get_store_class().__name__} lacks the capability {capability!r}")

    @classmethod
    def new_writer(cls, case: FormatCase, path: str, **kwargs: Any) -> Any:
        """A store of ``case`` opened for writing through the factory."""
        kwargs.setdefault("chunksize", cls.chunksize)
        kwargs.setdefault("metadata", USER_METADATA)
        store = imgstore.new_for_format(case.fmt, basedir=path, imgshape=case.imgshape, imgdtype=case.dtype,
                                        **case.options, **kwargs)
        if type(store) is not cls.get_store_class():
            store.close()
            raise AssertionError(f"new_for_format({case.fmt!r}) made a {type(store).__name__}, not a "
                                 f"{cls.get_store_class().__name__}")
        return store

    @classmethod
    def write_store(cls, case: FormatCase, path: str, numbers: Sequence[int] | None = None,
                    times: Sequence[float] | None = None, extra_every: int = 0, source: str = "writer",
                    **kwargs: Any) -> str:
        """Write ``numbers`` (default :data:`FRAME_NUMBERS`) to a new store at ``path`` from ``source``."""
        numbers = list(FRAME_NUMBERS if numbers is None else numbers)
        times = list(frame_times_for(numbers) if times is None else times)
        if source == "writer":
            with cls.new_writer(case, path, **kwargs) as store:
                for i, (fn, ft) in enumerate(zip(numbers, times, strict=True)):
                    store.add_image(case.frame(fn), fn, ft)
                    if extra_every and i % extra_every == 0:
                        store.add_extra_data(**extra_record(i))
        elif source == "direct":
            writer = cls.get_direct_writer()
            assert writer is not None
            extra = {i: extra_record(i) for i in range(0, len(numbers), extra_every)} if extra_every else None
            writer(path, case.fmt, [case.frame(n) for n in numbers], numbers, times,
                   kwargs.get("chunksize", cls.chunksize), metadata=USER_METADATA, extra_data=extra)
        else:
            pytest.fail(f"{cls.__name__}: {cls.get_store_class().__name__} neither writes nor has a direct "
                        f"writer: no store to test")
        return path

    # ------------------------------------------------------------- fixtures

    @pytest.fixture(scope="class")
    @classmethod
    def shared_store(cls, case: FormatCase, source: str, tmp_path_factory: Any) -> str:
        """A store of :data:`FRAME_NUMBERS` with extra data, written once per case and source: read only."""
        path = str(tmp_path_factory.mktemp("conformance") / "store")
        return cls.write_store(case, path, extra_every=EXTRA_EVERY, source=source)

    @pytest.fixture
    def store(self, shared_store: str):
        """The shared store opened for reading."""
        with _open(shared_store, self.get_store_class()) as s:
            yield s

    @pytest.fixture
    def store_copy(self, shared_store: str, tmp_path: Any) -> str:
        """A copy of the shared store that the test may change."""
        dest = str(tmp_path / "copy")
        shutil.copytree(shared_store, dest)
        return dest

    # ------------------------------------------------------------- the backend

    def test_capabilities(self) -> None:
        caps = backend_capabilities(self.get_store_class())
        if self.capabilities is not None:
            assert caps == frozenset(self.capabilities), f"the backend declares {sorted(caps)}"
        store_class = self.get_store_class()
        # the facade mirrors its backend's flags (the reference had them on the store class)
        assert store_class.supports_writing == store_class.backend_class.supports_writing
        assert store_class.supports_random_access == store_class.backend_class.supports_random_access
        if "adopt" in caps:
            assert callable(getattr(store_class, "insert_chunk", None)), "adopts payloads but has no insert_chunk"
            assert self.get_payload_writer() is not None, f"{type(self).__name__} needs a payload_writer"

    def test_formats_cover_backend(self) -> None:
        """Every format the backend offers is tested; every format listed is offered."""
        offered = set(self.get_store_class().supported_formats())
        tested = {case.fmt for case in self.cases()}
        if self.fmt:
            assert self.fmt in offered or not self.get_store_class().supports_writing
            return
        assert offered <= tested, f"formats not tested: {sorted(offered - tested)}"
        assert tested <= offered, f"formats not offered by {self.get_store_class().__name__}: " \
                                  f"{sorted(tested - offered)}"

    def test_formats_registered(self, case: FormatCase) -> None:
        store_class = self.get_store_class()
        assert class_for_name(store_class.class_name) is store_class
        if store_class.supports_writing:
            assert case.fmt in imgstore.get_supported_formats()
            assert class_for_format(case.fmt) is store_class
        else:
            assert class_for_format(case.fmt) is not store_class

    def test_write_modes_follow_capability(self, case: FormatCase, tmp_path: Any) -> None:
        store_class = self.get_store_class()
        path = str(tmp_path / "s")
        if store_class.supports_writing:
            with self.new_writer(case, path) as w:
                assert w.mode == "w"
            with _open(path, store_class, mode="a") as a:
                assert a.mode == "a"
            return
        # a backend that cannot write refuses every way of writing, naming the mode
        with pytest.raises(errors.ModeError, match="mode 'w'"):
            store_class(basedir=path, mode="w", imgshape=case.imgshape, imgdtype=case.dtype, format=case.fmt)
        assert not os.path.exists(path)
        if self.get_direct_writer() is not None:
            self.write_store(case, path, numbers=[1, 2], source="direct")
            with pytest.raises(errors.ModeError, match="mode 'a'"):
                imgstore.new_for_filename(path, mode="a")
        if class_for_format(case.fmt) is None:
            with pytest.raises(errors.UnsupportedFormatError, match=case.fmt):
                imgstore.new_for_format(case.fmt, basedir=str(tmp_path / "w"), imgshape=case.imgshape)

    # ------------------------------------------------------------- reading

    def test_metadata(self, case: FormatCase, store: Any) -> None:
        assert store.frame_count == len(FRAME_NUMBERS) == len(store)
        base = case.fmt.replace("+color", "")  # '<fmt>+color' stores are plain '<fmt>' stores
        assert store.format == {"mjpeg": "mjpeg/avi"}.get(base, base)
        assert store.image_shape == case.imgshape
        assert store.image_dtype == np.dtype(case.dtype)
        if case.lossless is not None:
            assert store.lossless is case.lossless
        assert store.frame_min == min(FRAME_NUMBERS)
        assert store.frame_max == max(FRAME_NUMBERS)
        times = frame_times_for(FRAME_NUMBERS)
        assert store.frame_time_min == times[0] and store.frame_time_max == times[-1]
        assert store.duration == pytest.approx(times[-1] - times[0])
        n_chunks = -(-len(FRAME_NUMBERS) // self.chunksize)
        assert store.chunks == list(range(n_chunks))
        assert store.chunksize == self.chunksize
        assert store.user_metadata == USER_METADATA
        assert store.metadata["class"] == type(store).class_name
        md = store.get_frame_metadata()
        assert md["frame_number"] == FRAME_NUMBERS
        assert md["frame_time"] == times
        np.testing.assert_array_equal(store.frame_numbers, FRAME_NUMBERS)
        np.testing.assert_array_equal(store.frame_times, times)
        assert len(store.uuid) == 32
        created, tz = store.created
        assert created.tzinfo is not None and tz is not None
        assert store.damaged_chunks == {}
        assert not store.is_live

    def test_sequential(self, case: FormatCase, store: Any) -> None:
        seen = []
        while True:
            try:
                img, (fn, ft) = store.get_next_image()
            except EOFError:
                break
            case.assert_frame(store, img, fn)
            assert (store.frame_number, store.frame_time) == (fn, ft)
            seen.append((fn, ft))
        assert seen == list(zip(FRAME_NUMBERS, frame_times_for(FRAME_NUMBERS), strict=True))
        with pytest.raises(EOFError):
            store.get_next_image()
        with pytest.raises(EOFError):
            store.get_next_framenumber()

    def test_next_continues_after_seek(self, store: Any) -> None:
        store.get_image(None, frame_index=10)
        assert store.get_next_framenumber() == FRAME_NUMBERS[11]
        _, (fn, _) = store.get_next_image()
        assert fn == FRAME_NUMBERS[11]
        assert store.frame_number == fn
        store.get_image(FRAME_NUMBERS[20])
        assert store.get_next_image().frame_number == FRAME_NUMBERS[21]

    def _n_random(self) -> int:
        return 40 if self.get_store_class().supports_random_access else 6

    def test_random_by_index(self, case: FormatCase, store: Any) -> None:
        rng = np.random.default_rng(2)
        for i in rng.integers(0, len(FRAME_NUMBERS), size=self._n_random()):
            img, (fn, _) = store.get_image(None, frame_index=i)  # numpy integers are valid arguments
            assert fn == FRAME_NUMBERS[i]
            case.assert_frame(store, img, fn)
            frame = store.get_frame_at(int(i))
            np.testing.assert_array_equal(frame.image, img)  # one decoder, one answer

    def test_random_by_number(self, case: FormatCase, store: Any) -> None:
        rng = np.random.default_rng(1)
        for fn in rng.choice(sorted(set(FRAME_NUMBERS)), size=self._n_random()):
            img, (got, _) = store.get_image(fn)
            assert got == fn
            case.assert_frame(store, img, int(fn))
            assert store.get_frame_by_number(fn).frame_number == fn

    def test_repeated_number_first_wins(self, store: Any) -> None:
        first = FRAME_NUMBERS.index(41)
        time_first = frame_times_for(FRAME_NUMBERS)[first]
        assert store.get_image(41)[1] == (41, time_first)
        assert store.get_frame_by_number(41).frame_time == time_first
        assert store.index_of_number(41) == first

    def test_by_time(self, case: FormatCase, store: Any) -> None:
        times = frame_times_for(FRAME_NUMBERS)
        for i in (0, 5, 13, len(times) - 1):
            img, (fn, ft) = store.get_nearest_image(times[i] + 0.011)
            assert (fn, ft) == (FRAME_NUMBERS[i], times[i])
            case.assert_frame(store, img, fn)
            frame = store.get_frame_played_at(times[i] - 0.013)
            assert (frame.frame_number, frame.frame_time) == (FRAME_NUMBERS[i], times[i])
            np.testing.assert_array_equal(frame.image, img)
            assert store.index_played_at(times[i] + 0.019) == i
        # before the first and after the last frame: the nearest is the first or last
        assert store.get_frame_played_at(times[0] - 3600).frame_number == FRAME_NUMBERS[0]
        assert store.get_frame_played_at(times[-1] + 3600).frame_number == FRAME_NUMBERS[-1]
        _, (fn, _) = store.get_image(15, exact_only=False)
        assert fn == min(FRAME_NUMBERS, key=lambda n: (abs(n - 15), FRAME_NUMBERS.index(n)))

    def test_named_api(self, case: FormatCase, store: Any) -> None:
        from imgstore.results import Frame, FrameMetadata

        times = frame_times_for(FRAME_NUMBERS)
        frame = store.get_frame_at(4)
        assert isinstance(frame, Frame)
        img, (fn, ft) = frame
        assert img is frame.image
        assert (frame.frame_number, frame.frame_time) == (fn, ft) == (FRAME_NUMBERS[4], times[4])
        assert frame.metadata == FrameMetadata(fn, ft) and isinstance(frame.metadata, FrameMetadata)
        assert isinstance(frame.frame_number, int) and isinstance(frame.frame_time, float)
        case.assert_frame(store, img, fn)
        assert img.flags.c_contiguous
        last = store.get_frame_at(-1)
        assert last.frame_number == FRAME_NUMBERS[-1]
        case.assert_frame(store, last.image, FRAME_NUMBERS[-1])
        assert store.get_frame_at(np.int64(2)).frame_number == FRAME_NUMBERS[2]
        near = store.get_frame_by_number(19, exact=False)
        assert near.frame_number == 21 and store.index_of_number(19, exact=False) == FRAME_NUMBERS.index(21)
        # the classic results are the same named tuples
        classic = store.get_image(None, frame_index=4)
        assert isinstance(classic, Frame) and classic.metadata == frame.metadata
        # the named API does not move the classic cursor
        store.get_frame_at(9)
        store.get_frame_by_number(50)
        store.get_frame_played_at(times[20])
        assert store.get_next_image().frame_number == FRAME_NUMBERS[5]

    def test_lookup_errors(self, store: Any) -> None:
        n = len(FRAME_NUMBERS)
        with pytest.raises(errors.FrameNotFoundError, match="#17"):
            store.get_image(17)
        with pytest.raises(errors.FrameNotFoundError, match="#17"):
            store.get_frame_by_number(17)
        with pytest.raises(ValueError, match="10000"):  # old code catches ValueError
            store.get_image(10_000)
        for bad in (-1, n, np.int64(10_000)):
            with pytest.raises(errors.FrameIndexError, match=str(int(bad))):
                store.get_image(None, frame_index=bad)
        with pytest.raises(errors.FrameIndexError, match=str(n)):
            store.get_frame_at(n)
        with pytest.raises(errors.FrameIndexError, match=r"1\.5"):
            store.get_frame_at(1.5)
        with pytest.raises(ValueError):
            store.get_image(0, frame_index=-5)
        # a failed lookup leaves the cursor where it was
        assert store.get_next_image().frame_number == FRAME_NUMBERS[0]

    def test_array_view(self, case: FormatCase, store: Any) -> None:
        n = len(FRAME_NUMBERS)
        block = store[3:9:2]
        assert block.shape == (3, *case.imgshape) and block.dtype == np.dtype(case.dtype)
        for img, i in zip(block, range(3, 9, 2), strict=True):
            case.assert_frame(store, img, FRAME_NUMBERS[i])
        case.assert_frame(store, store[-1], FRAME_NUMBERS[-1])
        picked = store[np.array([20, 2, 20])]
        assert [read_barcode(x, bits=BARCODE_BITS) for x in picked] == [FRAME_NUMBERS[20], FRAME_NUMBERS[2],
                                                                         FRAME_NUMBERS[20]]
        with pytest.raises(IndexError):
            store[n]
        assert sum(1 for _ in store) == n
        # the array view does not move the classic cursor
        _, (fn, _) = store.get_next_image()
        assert fn == FRAME_NUMBERS[0]

    def test_extra_data(self, store: Any) -> None:
        df = store.get_extra_data()
        rows = list(range(0, len(FRAME_NUMBERS), EXTRA_EVERY))
        assert list(df["frame_index"]) == rows
        assert list(df["frame_number"]) == [FRAME_NUMBERS[i] for i in rows]
        assert list(df["frame_time"]) == [frame_times_for(FRAME_NUMBERS)[i] for i in rows]
        assert list(df["note"]) == [f"n{i}" for i in rows]
        assert df["temperature"].tolist() == [20.0 + i for i in rows]
        assert store.has_extra_data

    def test_extract_only_frame(self, case: FormatCase, shared_store: str, store: Any) -> None:
        for i in (0, 9, len(FRAME_NUMBERS) - 1):
            case.assert_frame(store, imgstore.extract_only_frame(shared_store, i), FRAME_NUMBERS[i])

    def test_verify(self, store: Any) -> None:
        report = store.verify()
        assert report.ok, str(report)
        assert report.frame_count == len(FRAME_NUMBERS)
        # each chunk checked on its own: the verifier found every chunk's index and payload
        assert [c.chunk for c in report.chunks] == store.chunks
        assert sum(c.frames_read for c in report.chunks) == len(FRAME_NUMBERS)

    def test_pickle_reader(self, case: FormatCase, shared_store: str, store: Any) -> None:
        store.get_image(None, frame_index=3)
        clone = pickle.loads(pickle.dumps(store))
        try:
            assert type(clone) is type(store) and clone.mode == "r" and not clone.closed
            assert clone.filename == store.filename and clone.metadata == store.metadata
            assert clone.user_metadata == USER_METADATA
            np.testing.assert_array_equal(clone.frame_numbers, store.frame_numbers)
            np.testing.assert_array_equal(clone.frame_times, store.frame_times)
            for i in (0, 9, len(FRAME_NUMBERS) - 1):
                got, want = clone.get_frame_at(i), store.get_frame_at(i)
                assert got.metadata == want.metadata
                np.testing.assert_array_equal(got.image, want.image)
                case.assert_frame(clone, got.image, FRAME_NUMBERS[i])
        finally:
            clone.close()
        store.close()
        closed = pickle.loads(pickle.dumps(store))
        assert closed.closed
        with pytest.raises(errors.StoreClosedError, match="closed"):
            closed.get_frame_at(0)

    def test_read_only(self, case: FormatCase, shared_store: str, store_copy: str) -> None:
        """A plain open of a small store and a ``read_only=True`` open change nothing at all,
        with the index cache its writer left and without one."""
        from imgstore import index_cache

        with contextlib.suppress(FileNotFoundError):
            os.remove(index_cache.cache_path(store_copy))  # the one its writer left
        for path in (shared_store, store_copy):
            before = snapshot_tree(path)
            for kwargs in ({}, {"read_only": True}):
                with _open(path, self.get_store_class(), **kwargs) as s:
                    for i in range(len(s)):
                        case.assert_frame(s, s.get_image(None, frame_index=i)[0], FRAME_NUMBERS[i])
                    s.get_extra_data()
                    if kwargs:
                        with pytest.raises(errors.StoreWriteError, match="read-only"):
                            s.save_index_cache()
                assert snapshot_tree(path) == before, f"opened with {kwargs}"
            with pytest.raises(errors.ModeError, match="mode 'a'"):
                imgstore.new_for_filename(path, mode="a", read_only=True)
            assert snapshot_tree(path) == before

    def test_index_cache(self, case: FormatCase, store_copy: str, monkeypatch: Any) -> None:
        """A reopen from the index cache equals a plain open, and so does one with the cache disabled."""
        from imgstore import index_cache, ondisk

        store_class = self.get_store_class()
        path = store_copy
        cache = index_cache.cache_path(path)
        with contextlib.suppress(FileNotFoundError):
            os.remove(cache)  # the writer's, made when it closed
        # index files older than the racy window: a cache entry for them is believed after a stat
        age_files(path, seconds=3600)
        monkeypatch.setenv("IMGSTORE_INDEX_CACHE", "0")
        with _open(path, store_class) as plain:
            expected = _index_summary(plain)
            images = [plain.get_frame_at(i).image for i in (0, 12, len(plain) - 1)]
        assert not os.path.exists(cache)
        monkeypatch.delenv("IMGSTORE_INDEX_CACHE")
        with _open(path, store_class) as s:
            assert s.save_index_cache() == cache
        header = index_cache.read_cache_header(cache)
        assert isinstance(header, dict) and header

        reads: list[str] = []
        real = ondisk.read_chunk_index

        def counting(index_path: str, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
            reads.append(index_path)
            return real(index_path, *args, **kwargs)

        monkeypatch.setattr(ondisk, "read_chunk_index", counting)
        for env in ("1", "0"):
            monkeypatch.setenv("IMGSTORE_INDEX_CACHE", env)
            reads.clear()
            with _open(path, store_class) as s:
                opened_with = len(reads)
                assert _index_summary(s) == expected
                for img, i in zip(images, (0, 12, len(s) - 1), strict=True):
                    np.testing.assert_array_equal(s.get_frame_at(i).image, img)
            n_chunks = len(expected["chunks"])
            if env == "1":
                # from the cache: only spot checks read chunk indexes
                assert opened_with < n_chunks, f"{opened_with} of {n_chunks} chunk indexes read: cache unused"
            else:
                assert opened_with >= n_chunks

    def test_append(self, case: FormatCase, source: str, store_copy: str) -> None:
        """Frames appended to a store (with an index cache) read back after the old ones."""
        self.require("write")
        path = store_copy
        with _open(path, self.get_store_class()) as s:
            s.save_index_cache()
        added = [100, 101, 102, 103, 104, 105, 106, 107, 108]
        times = [1_800_000_000.0 + k for k in range(len(added))]
        with _open(path, self.get_store_class(), mode="a") as a:
            assert a.frame_count == len(FRAME_NUMBERS)
            for k, (fn, ft) in enumerate(zip(added, times, strict=True)):
                a.add_image(case.frame(fn), fn, ft)
                if k == 2:
                    a.add_extra_data(temperature=-1.0, note="appended")
            assert a.frame_count == len(FRAME_NUMBERS) + len(added)
        with warnings.catch_warnings():
            warnings.simplefilter("error", imgstore.ImgStoreWarning)
            s = _open(path, self.get_store_class())
        with s:
            assert s.get_frame_metadata()["frame_number"] == FRAME_NUMBERS + added
            assert s.frame_times[-1] == times[-1]
            assert s.chunks == list(range(-(-len(FRAME_NUMBERS) // self.chunksize) + 2))
            for fn in (FRAME_NUMBERS[-1], *added):
                case.assert_frame(s, s.get_image(fn)[0], fn)
            df = s.get_extra_data()
            assert df["note"].tolist()[-1] == "appended"
            assert df["frame_number"].tolist()[-1] == added[2]
            assert df["frame_index"].tolist()[-1] == len(FRAME_NUMBERS) + 2

    # ------------------------------------------------------------- writing

    def test_refuses_existing_store(self, case: FormatCase, tmp_path: Any) -> None:
        self.require("write")
        path = self.write_store(case, str(tmp_path / "s"), numbers=[1, 2, 3])
        with pytest.raises(errors.StoreExistsError, match="already exists"):
            self.write_store(case, path, numbers=[7])
        with _open(path, self.get_store_class()) as s:
            assert s.get_frame_metadata()["frame_number"] == [1, 2, 3]
        # overwrite replaces it, extra data included
        self.write_store(case, path, numbers=[5, 6, 7], overwrite=True)
        with _open(path, self.get_store_class()) as s:
            assert s.get_frame_metadata()["frame_number"] == [5, 6, 7]
            assert s.get_extra_data() is None
            case.assert_frame(s, s.get_image(6)[0], 6)

    def test_leftover_chunks_refused(self, case: FormatCase, tmp_path: Any) -> None:
        """A folder holding chunk payloads but no ``metadata.yaml`` (a damaged store) is not written over."""
        self.require("write")
        path = self.write_store(case, str(tmp_path / "s"), numbers=[1, 2, 3])
        for name in _all_files(path):
            if name == "metadata.yaml" or name.endswith((".npz", ".json", ".cache")):
                os.remove(os.path.join(path, name))
        payloads = _all_files(path)
        assert payloads, "the chunks' payloads are gone with their indexes"
        with pytest.raises(errors.StoreExistsError, match=r"but no metadata\.yaml"):
            self.new_writer(case, path)
        assert _all_files(path) == payloads

    def test_second_writer_refused(self, case: FormatCase, tmp_path: Any, monkeypatch: Any) -> None:
        self.require("write")
        from imgstore import _lock

        monkeypatch.setattr(_lock, "_PROBE_GRACE", 0.0)  # the lock is held: no need to wait for it
        path = str(tmp_path / "s")
        first = self.new_writer(case, path)
        try:
            with pytest.raises(errors.StoreLockedError, match=f"pid {os.getpid()}"):
                imgstore.new_for_filename(path, mode="a")
            with pytest.raises(errors.StoreLockedError):
                self.new_writer(case, path, overwrite=True)
        finally:
            first.close()
        assert not os.path.exists(os.path.join(path, ".lock"))

    def test_writer_not_picklable(self, case: FormatCase, tmp_path: Any) -> None:
        self.require("write")
        path = str(tmp_path / "s")
        with self.new_writer(case, path) as w:
            w.add_image(case.frame(0), 0, 1.0)
            with pytest.raises(TypeError, match="mode 'w'"):
                pickle.dumps(w)
        with _open(path, self.get_store_class(), mode="a") as a, pytest.raises(TypeError, match="mode 'a'"):
            pickle.dumps(a)

    def test_bad_images_rejected(self, case: FormatCase, tmp_path: Any) -> None:
        self.require("write")
        path = str(tmp_path / "s")
        with self.new_writer(case, path) as s:
            s.add_image(case.frame(0), 0, 1.0)
            wrong_shape = np.zeros((case.shape[0] + 2, case.shape[1], *case.imgshape[2:]), dtype=case.dtype)
            with pytest.raises(errors.InvalidImageError, match=rf"shape \({case.shape[0] + 2}, "):
                s.add_image(wrong_shape, 1, 2.0)
            # another dtype is cast only when no value changes (imgstore 0.4 cast blindly)
            inexact = case.frame(1).astype(np.float64)
            bad_value = 1e-300 if np.dtype(case.dtype).kind == "f" else 0.5
            inexact.flat[7] = bad_value
            with pytest.raises(errors.InvalidImageError, match=re.escape(f"float64 holds {bad_value!r}")):
                s.add_image(inexact, 1, 2.0)
            with pytest.raises(errors.InvalidFrameMetadataError, match="nan"):
                s.add_image(case.frame(1), 1, float("nan"))
            with pytest.raises(errors.InvalidFrameMetadataError, match=r"1\.5"):
                s.add_image(case.frame(1), 1.5, 2.0)
            with pytest.raises(errors.ExtraDataError):
                s.add_extra_data(bad=object())
            s.add_image(case.frame(1), np.int64(1), np.float32(2.0))
            with pytest.warns(imgstore.ImgStoreWarning, match="converted"):
                s.add_image(case.frame(2).astype(np.float64), 2, 3.0)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # one warning per store
                s.add_image(case.frame(3).astype(np.float64), 3, 4.0)
        with _open(path, self.get_store_class()) as s:
            assert s.get_frame_metadata()["frame_number"] == [0, 1, 2, 3]
            for frame_number in (0, 1, 2, 3):
                case.assert_frame(s, s.get_image(frame_number)[0], frame_number)

    def test_refresh_live_writer(self, case: FormatCase, tmp_path: Any) -> None:
        """``refresh()`` of readers in the writer's process picks up its frames as they land."""
        self.require("write")
        cs = self.chunksize
        path = str(tmp_path / "s")
        w = self.new_writer(case, path)
        try:
            _add(w, case, range(0, 2 * cs + 2))
            w.flush()
            with warnings.catch_warnings():
                warnings.simplefilter("error", imgstore.ImgStoreWarning)  # a live writer's chunk is no damage
                readers = [_open(path, self.get_store_class()),
                           _open(path, self.get_store_class(), read_only=True)]
            for r in readers:
                assert r.is_live
                # closed chunks whole; of the open one what is on disk already
                assert 2 * cs <= r.frame_count <= 2 * cs + 2
                _assert_frames(case, r, range(r.frame_count))
            _add(w, case, range(2 * cs + 2, 4 * cs + 1))
            w.flush()
            for r in readers:
                before = r.frame_count
                added = r.refresh()
                assert added == r.frame_count - before
                assert 4 * cs <= r.frame_count <= 4 * cs + 1
                _assert_frames(case, r, range(r.frame_count))
        finally:
            w.close()
        for r in readers:
            with r:
                before = r.frame_count
                assert r.refresh() == 4 * cs + 1 - before
                assert not r.is_live
                _assert_frames(case, r, range(4 * cs + 1))
                assert r.chunks == list(range(5))
                assert r.refresh() == 0

    def test_unclosed_writer_recovered_and_repaired(self, case: FormatCase, tmp_path: Any) -> None:
        """A writer that never closes: readers recover what is on disk; ``imgstore.repair`` finishes the store."""
        self.require("write")
        cs = self.chunksize
        path = str(tmp_path / "s")
        n = 2 * cs + 3
        w = self.new_writer(case, path)
        for fn in range(n):
            w.add_image(case.frame(fn), fn, 100.0 + fn)
            w.add_extra_data(i=fn)
        w.flush()
        del w  # dropped without close(), as by a crash: the open chunk stays journaled
        gc.collect()
        lock = os.path.join(path, ".lock")
        assert not os.path.exists(lock), "an abandoned writer kept its lock"
        # what a killed process leaves: a lock file nobody holds
        with open(lock, "w") as f:
            json.dump({"pid": 2**31 - 7, "host": socket.gethostname(), "since": 0.0}, f)

        with pytest.warns(imgstore.ImgStoreWarning, match="chunk 2"):
            r = _open(path, self.get_store_class())
        with r:
            got = r.get_frame_metadata()["frame_number"]
            # closed chunks are complete; the open one loses at most what the encoder still held
            assert got == list(range(len(got))) and 2 * cs <= len(got) <= n
            _assert_frames(case, r, range(len(got)))
            assert r.get_extra_data()["i"].tolist() == list(range(n))
        recovered = len(got)

        report = imgstore.repair(path)
        assert report.changed and report.clean, str(report)
        assert report.recovered == {2: recovered - 2 * cs}
        assert report.frame_count == recovered
        assert "stale lock" in str(report)
        leftovers = [f for f in _all_files(path) if f.endswith((".journal", ".jsonl", ".partial", ".lock"))]
        assert leftovers == []
        with warnings.catch_warnings():
            warnings.simplefilter("error", imgstore.ImgStoreWarning)  # a finished store
            r = _open(path, self.get_store_class())
        with r:
            assert r.get_frame_metadata()["frame_number"] == list(range(recovered))
            _assert_frames(case, r, range(recovered))
            assert r.get_extra_data()["i"].tolist() == list(range(n))
        again = imgstore.repair(path)
        assert not again.changed and again.frame_count == recovered
        # a repaired store takes appended frames
        with _open(path, self.get_store_class(), mode="a") as a:
            _add(a, case, range(recovered, recovered + 3))
        with _open(path, self.get_store_class()) as r:
            assert r.get_frame_metadata()["frame_number"] == list(range(recovered + 3))
            _assert_frames(case, r, range(recovered, recovered + 3))

    def test_insert_chunk(self, case: FormatCase, tmp_path: Any) -> None:
        """An existing payload becomes a chunk between frames added before and after it."""
        self.require("adopt")
        payload_writer = self.get_payload_writer()
        assert payload_writer is not None, f"{type(self).__name__} needs a payload_writer"
        path = str(tmp_path / "s")
        inserted = [100, 101, 102, 103, 104]
        with self.new_writer(case, path) as w:
            ext = w.metadata.get("extension") or ""
            payload = str(tmp_path / ("payload" + ext))
            payload_writer(payload, case.fmt, [case.frame(fn) for fn in inserted])
            _add(w, case, range(3))
            with pytest.raises(errors.InvalidFrameMetadataError, match="4"):
                w.insert_chunk(payload, inserted[:4], [200.0 + k for k in range(4)], move=False)
            wrong = str(tmp_path / "payload.wrong")
            shutil.copyfile(payload, wrong)
            with pytest.raises(errors.UnsupportedFormatError, match=ext.replace(".", r"\.") or "payload"):
                w.insert_chunk(wrong, inserted, [200.0 + k for k in range(5)])
            w.insert_chunk(payload, inserted, [200.0 + k for k in range(5)], move=False)
            assert os.path.exists(payload)  # copied, not moved
            assert w.frame_count == 8
            _add(w, case, range(300, 302))
        with _open(path, self.get_store_class()) as r:
            assert r.get_frame_metadata()["frame_number"] == [0, 1, 2, *inserted, 300, 301]
            assert r.get_frame_metadata()["frame_time"][3:8] == [200.0 + k for k in range(5)]
            assert r.chunks == [0, 1, 2]
            for i, fn in enumerate(r.frame_numbers):
                case.assert_frame(r, r.get_frame_at(i).image, int(fn))


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
