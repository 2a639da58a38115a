"""The conformance suite's base class: parametrisation, the stores it writes, backend checks."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

import imgstore
from imgstore import errors
from imgstore.backends.registry import class_for_format, class_for_name

if TYPE_CHECKING:
    from imgstore.backends.base import ImgStore

from .cases import (
    EXTRA_EVERY,
    FRAME_NUMBERS,
    USER_METADATA,
    FormatCase,
    _open,
    backend_capabilities,
    extra_record,
    frame_times_for,
)
from .reading import ReadTests
from .writing import WriteTests


class StoreConformance(ReadTests, WriteTests):
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
