"""Directory stores: one image file per frame, one folder per chunk."""

from __future__ import annotations

import io
import math
from typing import Any, ClassVar

import numpy as np

from .. import ondisk
from ..checksums import payload_digest_of_parts
from ..errors import ChunkReadError, InvalidImageError, UnsupportedFormatError
from ..imageops import check_encoding, encoding_decoder, ensure_color, ensure_grayscale
from ..ondisk import StoreMetadata
from ..storage import Storage
from .base import ImgStore
from .contract import Backend, ChunkWriter, FrameConverter
from .payload_checks import PAYLOAD_DIGEST_FIELD, PAYLOAD_DIGEST_JOURNAL_FIELD, PayloadDigests

__all__ = ["DirectoryBackend", "DirectoryImgStore", "read_image_file"]

#: image formats written through OpenCV and the dtypes each keeps exactly
_CV2_FORMAT_DTYPES: dict[str, tuple[str, ...]] = {
    "png": ("uint8", "uint16"),
    "tif": ("uint8", "uint16", "float32"),
    "jpg": ("uint8",),
    "bmp": ("uint8",),
    "pgm": ("uint8", "uint16"),
    "ppm": ("uint8", "uint16"),
}
_COLOR_VARIANTS = ("tif", "png", "jpg", "bmp")
#: JPEG quality when none is given (OpenCV's default)
_DEFAULT_JPEG_QUALITY = 95


class DirectoryBackend(Backend):
    """Frames as image files (``npy``, ``png``, ``jpg``, ``bmp``, ``tif``, ``pgm``, ``ppm``).

    ``<fmt>+color`` formats convert images from the given ``encoding`` (e.g. a Bayer
    pattern) to BGR when writing and store them as colour without an encoding.
    """

    class_name: ClassVar[str] = "DirectoryImgStore"
    kind: ClassVar[str] = "directory"
    readable_class_names: ClassVar[frozenset[str]] = frozenset({"DirectoryImgStore"})
    default_chunksize: ClassVar[int] = 200
    journal_fields: ClassVar[tuple[tuple[str, str], ...]] = (PAYLOAD_DIGEST_JOURNAL_FIELD,)

    def __init__(self, storage: Storage, basedir: str, mode: str) -> None:
        super().__init__(storage, basedir, mode)
        self._digests = PayloadDigests(self)
        self._write_encoding: str | None = None
        self._jpeg_quality = _DEFAULT_JPEG_QUALITY
        self._color = False
        self.extension = ""

    # ------------------------------------------------------------------ formats

    @classmethod
    def supported_formats(cls) -> list[str]:
        return ["npy", *sorted(_CV2_FORMAT_DTYPES), *(f + "+color" for f in _COLOR_VARIANTS)]

    @classmethod
    def write_options(cls, fmt: str) -> frozenset[str]:
        return frozenset({"quality"}) if fmt.replace("+color", "") == "jpg" else frozenset()

    @classmethod
    def format_dtypes(cls, fmt: str) -> tuple[str, ...] | None:
        """dtypes ``fmt`` stores exactly (None: any)."""
        base = fmt.replace("+color", "")
        return None if base == "npy" else _CV2_FORMAT_DTYPES[base]

    def prepare_write(self, fmt: str, imgshape: tuple[int, ...], imgdtype: np.dtype, encoding: str | None,
                      options: dict[str, Any]) -> StoreMetadata:
        if fmt not in self.supported_formats():
            raise UnsupportedFormatError(
                f"format {fmt!r} is not a directory format; choose from {self.supported_formats()}")
        allowed = self.format_dtypes(fmt)
        if allowed is not None and imgdtype.name not in allowed:
            raise UnsupportedFormatError(f"format {fmt!r} cannot store dtype {imgdtype.name} exactly "
                                         f"(supported: {list(allowed)}; use 'npy' for any dtype)")
        if imgdtype.kind not in "uif" or imgdtype.itemsize > 8:
            raise UnsupportedFormatError(f"dtype {imgdtype.name} is not an image dtype")
        self._jpeg_quality = int(options.pop("quality", _DEFAULT_JPEG_QUALITY))
        self._write_encoding = None
        store_shape = imgshape
        store_encoding = check_encoding(encoding)
        base = fmt.replace("+color", "")
        if fmt.endswith("+color") and encoding:
            # the reference converts on write and stores plain colour
            self._write_encoding = encoding
            store_encoding = None
            store_shape = (imgshape[0], imgshape[1], 3)
        return StoreMetadata.new(self.class_name, base, 1, store_shape, imgdtype.name, store_encoding)

    def input_converter(self) -> FrameConverter | None:
        return encoding_decoder(self._write_encoding) if self._write_encoding else None

    def configure(self, smd: StoreMetadata) -> None:
        if smd.format not in ("npy", *_CV2_FORMAT_DTYPES):
            raise UnsupportedFormatError(f"{self.storage.join(self.basedir, ondisk.STORE_MD_FILENAME)}: unknown "
                                         f"directory format {smd.format!r}")
        super().configure(smd)
        shape = tuple(smd.imgshape)
        self._color = len(shape) == 3 and shape[-1] == 3
        self.extension = "." + smd.format

    # ------------------------------------------------------------------ layout

    def chunk_base(self, chunk_n: int) -> str:
        return self.storage.join(self.payload_path(chunk_n), "index")

    def list_chunks(self) -> list[tuple[int, str]]:
        out = []
        for entry in self.storage.list_dir(self.basedir):
            n = ondisk.parse_chunk_name(entry.name)
            # frames are read from chunk_name(n): a folder named otherwise ('2024') is no chunk
            if n is not None and entry.name == ondisk.chunk_name(n) and entry.is_dir:
                out.append((n, self.storage.join(self.basedir, entry.name, "index")))
        return out

    def frame_path(self, chunk_n: int, position: int) -> str:
        """The file of the frame at ``position`` in chunk ``chunk_n``."""
        return self.storage.join(self.payload_path(chunk_n), f"{position:06d}{self.extension}")

    # ------------------------------------------------------------------ writing

    def open_chunk_writer(self, chunk_n: int) -> ChunkWriter:
        folder = self.payload_path(chunk_n)
        self.storage.makedirs(folder)
        return _FrameFileWriter(self, chunk_n)

    def encode_frame(self, img: np.ndarray) -> bytes:
        """The bytes of one frame file."""
        return b"".join(self.encode_frame_parts(img))

    def encode_frame_parts(self, img: np.ndarray) -> list[bytes | memoryview]:
        """The bytes of one frame file, in parts to be written one after the other.

        An ``.npy`` file is its header and the image's own memory: ``np.save`` into a
        ``BytesIO`` copied a 6 MB 1920x1080 frame twice before writing it (5.5 of the 17 ms a
        frame took), where the reference's ``np.save(path)`` writes it straight to the file.
        """
        fmt = self.metadata.format
        if fmt == "npy":
            arr = np.ascontiguousarray(img)
            head = io.BytesIO()
            # what np.save writes: a version 1.0 header (frames' headers are far below its limit)
            np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(arr))
            return [head.getvalue(), arr.data.cast("B")]
        import cv2

        if fmt == "ppm":
            img = ensure_color(img)
        elif fmt == "pgm":
            img = ensure_grayscale(img)
        params = [int(cv2.IMWRITE_JPEG_QUALITY), self._jpeg_quality] if fmt == "jpg" else []
        ok, data = cv2.imencode(self.extension, img, params)
        if not ok:
            raise InvalidImageError(f"OpenCV could not encode a {img.dtype} {img.shape} image as {fmt}")
        return [data.tobytes()]

    def remove_chunk_payload(self, chunk_n: int) -> None:
        self.storage.remove_tree(self.payload_path(chunk_n))

    # ------------------------------------------------------------------ recovery

    def recover_chunk(self, chunk_n: int, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(table["frame_number"])
        for i in range(n):
            if not self.storage.exists(self.frame_path(chunk_n, i)):
                n = i
                break
        return {k: v[:n] for k, v in table.items()}

    def chunk_has_payload(self, chunk_n: int) -> bool:
        return self.payload_frame_count(chunk_n) != 0  # None: cannot tell, let the caller report the chunk

    def payload_frame_count(self, chunk_n: int) -> int | None:
        # frame files are '<position><ext>'; '.partial' leftovers of an interrupted write are not frames
        try:
            return sum(e.name.endswith(self.extension) for e in self.storage.list_dir(self.payload_path(chunk_n)))
        except OSError:
            return None

    # ------------------------------------------------------------------ reading

    def close_readers(self) -> None:
        self._digests.clear()  # refresh(): a live writer may have closed or added chunks

    def read_frame(self, chunk_n: int, position: int) -> np.ndarray:
        smd = self.metadata
        path = self.frame_path(chunk_n, position)
        data = read_frame_file(self.storage, path)
        self._digests.check(chunk_n, position, data, path)
        img = decode_frame_file(data, path, smd.format, self._color, smd.imgdtype)
        shape = tuple(smd.imgshape)
        # a frame file of another shape or dtype (a colour .npy in a grey store...) is not this
        # store's frame: say so rather than return it
        if img.shape != shape and not (shape[-1] == 1 and img.shape == shape[:-1]):
            raise ChunkReadError(f"frame file {path} has shape {img.shape}, the store says {shape}")
        if img.dtype != np.dtype(smd.imgdtype):
            raise ChunkReadError(f"frame file {path} has dtype {img.dtype}, the store says {smd.imgdtype}")
        return img

    @classmethod
    def extract_only_frame(cls, storage: Storage, basedir: str, chunk_n: int, frame_n: int,
                           smd: StoreMetadata) -> np.ndarray:
        shape = tuple(smd.imgshape)
        path = storage.join(basedir, ondisk.chunk_name(chunk_n), f"{frame_n:06d}.{smd.format}")
        return read_image_file(storage, path, smd.format, len(shape) == 3 and shape[-1] == 3, smd.imgdtype)

    @property
    def lossless(self) -> bool:
        """False only for jpg."""
        return self.metadata.format != "jpg"


class _FrameFileWriter(ChunkWriter):
    """Writes one chunk's frame files, each atomically so the journal never points at half a frame."""

    def __init__(self, backend: DirectoryBackend, chunk_n: int) -> None:
        self._backend = backend
        self._chunk_n = chunk_n
        self._position = 0

    def write(self, img: np.ndarray, frame_number: int, frame_time: float) -> dict[str, int]:
        backend = self._backend
        parts = backend.encode_frame_parts(img)
        backend.storage.write_parts(backend.frame_path(self._chunk_n, self._position), parts)
        self._position += 1
        return {PAYLOAD_DIGEST_FIELD: payload_digest_of_parts(parts)}

    def close(self) -> None:
        return None


def read_image_file(storage: Storage, path: str, fmt: str, color: bool, dtype: str = "uint8") -> np.ndarray:
    """Read one frame file, raising :class:`ChunkReadError` if it is missing or damaged."""
    return decode_frame_file(read_frame_file(storage, path), path, fmt, color, dtype)


def read_frame_file(storage: Storage, path: str) -> np.ndarray:
    """The bytes of one frame file, or :class:`ChunkReadError`."""
    try:
        return storage.read_buffer(path)
    except FileNotFoundError:
        raise ChunkReadError(f"frame file {path} is missing") from None
    except OSError as exc:
        raise ChunkReadError(f"frame file {path} unreadable ({exc.strerror})") from None


def decode_frame_file(data: bytes | bytearray | np.ndarray, path: str, fmt: str, color: bool,
                      dtype: str = "uint8") -> np.ndarray:
    """Decode the bytes of a frame file (``path`` for messages), or :class:`ChunkReadError`."""
    if fmt == "npy":
        try:
            return _npy_array(data)
        except (ValueError, OSError, EOFError) as exc:
            raise ChunkReadError(f"frame file {path} is damaged ({exc})") from None
    import cv2

    # other dtypes unchanged: the reference's colour/grey flags silently reduce them to uint8
    grey_or_color = cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE
    flags = grey_or_color if dtype == "uint8" else cv2.IMREAD_UNCHANGED
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags) if len(data) else None
    if img is None:
        raise ChunkReadError(f"frame file {path} is damaged (cannot be decoded as {fmt})")
    if dtype != "uint8":
        img = ensure_color(img) if color else ensure_grayscale(img)
    return img


class DirectoryImgStore(ImgStore):
    """A store of image files, one folder per chunk (see :class:`DirectoryBackend`)."""

    backend_class = DirectoryBackend

    @classmethod
    def format_dtypes(cls, fmt: str) -> tuple[str, ...] | None:
        """dtypes ``fmt`` stores exactly (None: any)."""
        return DirectoryBackend.format_dtypes(fmt)

    @staticmethod
    def _open_image(path: str, format: str, color: bool) -> np.ndarray:
        """Read one frame file (imgstore 0.4's helper)."""
        from ..storage import LOCAL

        return read_image_file(LOCAL, path, format, color)


def _npy_array(data: bytes | bytearray | np.ndarray) -> np.ndarray:
    """The array of a ``.npy`` file's bytes: a view of ``data`` (writable if ``data`` is), as ``np.load`` reads.

    ``np.load`` of a ``BytesIO`` copies the payload once more; the header is read by numpy's own
    (public) ``numpy.lib.format`` functions, once per distinct header (a store's frames share
    one: parsing it, a ``literal_eval``, was 30 % of a 640x480 frame's read), and anything but
    a plain array goes to ``np.load``.
    """
    if bytes(data[:6]) != b"\x93NUMPY" or len(data) < 12 or data[6] not in (1, 2, 3):
        return np.load(io.BytesIO(bytes(data)), allow_pickle=False)  # np.load names what is wrong
    size_bytes = 2 if data[6] == 1 else 4
    end = 8 + size_bytes + int.from_bytes(bytes(data[8:8 + size_bytes]), "little")
    header = bytes(data[:end])
    parsed = _NPY_HEADERS.get(header)
    if parsed is None:
        head = io.BytesIO(header)
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            return np.load(io.BytesIO(bytes(data)), allow_pickle=False)
        if dtype.hasobject:
            raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
        parsed = (tuple(shape), bool(fortran_order), dtype, math.prod(shape))
        if len(_NPY_HEADERS) >= 64:
            _NPY_HEADERS.clear()
        _NPY_HEADERS[header] = parsed
    shape, fortran_order, dtype, count = parsed
    if len(data) - end < count * dtype.itemsize:
        raise EOFError(f"{len(data) - end} bytes of data for an array of {count} items of {dtype}")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=end)
    return flat.reshape(shape[::-1]).transpose() if fortran_order else flat.reshape(shape)


#: parsed ``.npy`` headers by their bytes: ``(shape, fortran_order, dtype, item count)``
_NPY_HEADERS: dict[bytes, tuple[tuple[int, ...], bool, np.dtype, int]] = {}
