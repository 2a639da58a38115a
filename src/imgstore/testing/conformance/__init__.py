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

from .cases import (
    FRAME_NUMBERS,
    FormatCase,
    age_files,
    backend_capabilities,
    frame_times_for,
    snapshot_files,
    snapshot_tree,
)
from .suite import StoreConformance

__all__ = ["FRAME_NUMBERS", "FormatCase", "StoreConformance", "age_files", "backend_capabilities", "frame_times_for",
           "snapshot_files", "snapshot_tree"]
