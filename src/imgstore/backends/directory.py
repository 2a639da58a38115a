"""Directory stores: one image file per frame, one folder per chunk."""

from __future__ import annotations

import io
import os
import shutil
from typing import Any, ClassVar

import numpy as np

from .. import ondisk
from ..errors import ChunkReadError, InvalidImageError, UnsupportedFormatError
from ..imageops import check_encoding, encoding_decoder, ensure_color, ensure_grayscale
from ..ondisk import StoreMetadata
from .base import ImgStore

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


class DirectoryImgStore(ImgStore):
    """A store of image files (``npy``, ``png``, ``jpg``, ``bmp``, ``tif``, ``pgm``, ``ppm``).

    ``<fmt>+color`` formats convert images from the given ``encoding`` (e.g. a Bayer
    pattern) to BGR when writing and store them as colour without an encoding.
    """

    class_name: ClassVar[str] = "DirectoryImgStore"
    readable_class_names: ClassVar[frozenset[str]] = frozenset({"DirectoryImgStore"})
    DEFAULT_CHUNKSIZE: ClassVar[int] = 200

    _cv2_fmts: ClassVar[frozenset[str]] = frozenset(
        list(_CV2_FORMAT_DTYPES) + [f + "+color" for f in _COLOR_VARIANTS])
    _raw_fmts: ClassVar[frozenset[str]] = frozenset({"npy"})
    _write_encoding: str | None = None
    _jpeg_quality: int = 95

    # ------------------------------------------------------------------ formats

    @classmethod
    def supported_formats(cls) -> list[str]:
        """The directory formats."""
        return ["npy", *sorted(_CV2_FORMAT_DTYPES), *(f + "+color" for f in _COLOR_VARIANTS)]

    @classmethod
    def format_dtypes(cls, fmt: str) -> tuple[str, ...] | None:
        """dtypes ``fmt`` stores exactly (None: any)."""
        base = fmt.replace("+color", "")
        return None if base == "npy" else _CV2_FORMAT_DTYPES[base]

    def _prepare_write(self, fmt: str, imgshape: tuple[int, ...], imgdtype: np.dtype, encoding: str | None,
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
        self._jpeg_quality = int(options.pop("quality", 95))
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

    def _write_encoder(self):
        if self._write_encoding:
            return encoding_decoder(self._write_encoding)
        return super()._write_encoder()

    def _configure(self) -> None:
        smd = self._smd
        if smd.format not in ("npy", *_CV2_FORMAT_DTYPES):
            raise UnsupportedFormatError(f"{self._metadata_path()}: unknown directory format {smd.format!r}")
        shape = tuple(smd.imgshape)
        self._color = len(shape) == 3 and shape[-1] == 3
        self._ext = "." + smd.format
        self._chunk_dir = ""

    # ------------------------------------------------------------------ layout

    def _chunk_base(self, chunk_n: int) -> str:
        return os.path.join(self._basedir, ondisk.chunk_name(chunk_n), "index")

    def _list_chunks(self) -> list[tuple[int, str]]:
        out = []
        with os.scandir(self._basedir) as it:
            for entry in it:
                n = ondisk.parse_chunk_name(entry.name)
                # frames are read from chunk_name(n): a folder named otherwise ('2024') is no chunk
                if n is not None and entry.name == ondisk.chunk_name(n) and entry.is_dir():
                    out.append((n, os.path.join(entry.path, "index")))
        return out

    def _frame_path(self, chunk_n: int, position: int) -> str:
        return os.path.join(self._basedir, ondisk.chunk_name(chunk_n), "%06d%s" % (position, self._ext))

    # ------------------------------------------------------------------ writing

    def _open_write_chunk(self, chunk_n: int) -> None:
        self._chunk_dir = os.path.join(self._basedir, ondisk.chunk_name(chunk_n))
        try:
            os.makedirs(self._chunk_dir, exist_ok=True)
        except OSError as exc:
            raise ondisk.StoreWriteError(exc.errno, f"could not create chunk folder {self._chunk_dir}: "
                                                    f"{exc.strerror}") from exc
        self._chunk_pos = 0

    def _encode_file(self, img: np.ndarray) -> bytes:
        fmt = self._smd.format
        if fmt == "npy":
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(img), allow_pickle=False)
            return buf.getvalue()
        import cv2

        if fmt == "ppm":
            img = ensure_color(img)
        elif fmt == "pgm":
            img = ensure_grayscale(img)
        params = [int(cv2.IMWRITE_JPEG_QUALITY), self._jpeg_quality] if fmt == "jpg" else []
        ok, data = cv2.imencode(self._ext, img, params)
        if not ok:
            raise InvalidImageError(f"OpenCV could not encode a {img.dtype} {img.shape} image as {fmt}")
        return data.tobytes()

    def _write_image(self, img: np.ndarray, frame_number: int, frame_time: float) -> None:
        # written atomically so the journal never points at half a frame
        path = os.path.join(self._chunk_dir, "%06d%s" % (self._chunk_pos, self._ext))
        ondisk.atomic_write_bytes(path, self._encode_file(img))
        self._chunk_pos += 1
        return None

    def _close_write_chunk(self, n_frames: int) -> None:
        return None

    def _remove_chunk_payload(self, chunk_n: int) -> None:
        shutil.rmtree(os.path.join(self._basedir, ondisk.chunk_name(chunk_n)), ignore_errors=True)

    def _recover_chunk(self, chunk_n: int, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(table["frame_number"])
        for i in range(n):
            if not os.path.exists(self._frame_path(chunk_n, i)):
                n = i
                break
        return {k: v[:n] for k, v in table.items()}

    def _chunk_has_payload(self, chunk_n: int) -> bool:
        # frame files are '<position><ext>'; '.partial' leftovers of an interrupted write are not frames
        try:
            with os.scandir(os.path.join(self._basedir, ondisk.chunk_name(chunk_n))) as it:
                return any(e.name.endswith(self._ext) for e in it)
        except OSError:
            return True  # cannot tell: let the caller report the chunk

    # ------------------------------------------------------------------ reading

    def _read_image(self, chunk_n: int, position: int) -> np.ndarray:
        path = self._frame_path(chunk_n, position)
        img = read_image_file(path, self._smd.format, self._color, self._smd.imgdtype)
        shape = tuple(self._smd.imgshape)
        # a frame file of another shape or dtype (a colour .npy in a grey store...) is not this
        # store's frame: say so rather than return it
        if img.shape != shape and not (shape[-1] == 1 and img.shape == shape[:-1]):
            raise ChunkReadError(f"frame file {path} has shape {img.shape}, the store says {shape}")
        if img.dtype != np.dtype(self._smd.imgdtype):
            raise ChunkReadError(f"frame file {path} has dtype {img.dtype}, the store says {self._smd.imgdtype}")
        return img

    @classmethod
    def _extract_only_frame(cls, basedir: str, chunk_n: int, frame_n: int, smd: StoreMetadata) -> np.ndarray:
        shape = tuple(smd.imgshape)
        path = os.path.join(basedir, ondisk.chunk_name(chunk_n), "%06d.%s" % (frame_n, smd.format))
        return read_image_file(path, smd.format, len(shape) == 3 and shape[-1] == 3, smd.imgdtype)

    @staticmethod
    def _open_image(path: str, format: str, color: bool) -> np.ndarray:  # noqa: A002 - the reference's name
        """Read one frame file (imgstore 0.4's helper)."""
        return read_image_file(path, format, color)

    @property
    def lossless(self) -> bool:
        """False only for jpg."""
        return self._smd.format != "jpg"


def read_image_file(path: str, fmt: str, color: bool, dtype: str = "uint8") -> np.ndarray:
    """Read one frame file, raising :class:`ChunkReadError` if it is missing or damaged."""
    if fmt == "npy":
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise ChunkReadError(f"frame file {path} is missing") from None
        except (ValueError, OSError, EOFError) as exc:
            raise ChunkReadError(f"frame file {path} is damaged ({exc})") from None
    import cv2

    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ChunkReadError(f"frame file {path} is missing") from None
    except OSError as exc:
        raise ChunkReadError(f"frame file {path} unreadable ({exc.strerror})") from None
    if dtype == "uint8":
        flags = cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE
    else:
        # keep 16-bit/float data: the reference's flags silently reduce it to uint8
        flags = cv2.IMREAD_UNCHANGED
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise ChunkReadError(f"frame file {path} is damaged (cannot be decoded as {fmt})")
    if dtype != "uint8":
        img = ensure_color(img) if color else ensure_grayscale(img)
    return img
