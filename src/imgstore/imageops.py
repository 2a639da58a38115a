"""Small image helpers: colour/grey conversion, pixel encodings and FourCC codes."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import numpy as np

from .errors import UnsupportedFormatError

__all__ = [
    "FourCC",
    "ImageCodecProcessor",
    "available_encodings",
    "check_encoding",
    "encoding_decoder",
    "ensure_color",
    "ensure_grayscale",
]


def _is_color(img: np.ndarray) -> bool:
    return img.ndim == 3 and img.shape[-1] == 3


def ensure_color(img: np.ndarray, ensure_copy: bool = False) -> np.ndarray:
    """Return ``img`` as a 3-channel BGR image (grey is replicated)."""
    if _is_color(img):
        return img.copy() if ensure_copy else img
    import cv2

    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


def ensure_grayscale(img: np.ndarray, ensure_copy: bool = False) -> np.ndarray:
    """Return ``img`` as a single-channel image (BGR is converted with OpenCV's weights)."""
    if _is_color(img):
        import cv2

        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return img.copy() if ensure_copy else img


def FourCC(c1: str, c2: str, c3: str, c4: str) -> int:
    """The integer FourCC code of four characters (as ``cv2.VideoWriter_fourcc``)."""
    return (ord(c1) & 255) | ((ord(c2) & 255) << 8) | ((ord(c3) & 255) << 16) | ((ord(c4) & 255) << 24)


# OpenCV names conversions e.g. COLOR_BayerBG2BGR (4.x) or COLOR_BAYER_BG2BGR (5.x); imgstore
# calls the source encoding 'cv_bayerbg' (lower case, underscores dropped), as the reference does.
_CV2_CODE_RE = re.compile(r"^COLOR_(?P<codec>[A-Za-z0-9_]+?)2BGR(?P<method>_[A-Za-z0-9]+)?$")


_BAYER_4_LETTERS = re.compile(r"cv_bayer[bgr]{4}")


@functools.lru_cache(maxsize=1)
def _encoding_tables() -> tuple[dict[str, int], dict[int, str]]:
    """``(encoding -> cv2 conversion enum, enum -> encoding)``, built as the reference built them."""
    import cv2

    to_enum: dict[str, int] = {}
    to_code: dict[int, str] = {}
    for name in dir(cv2):
        m = _CV2_CODE_RE.match(name)
        if not m:
            continue
        code = "cv_" + m.group("codec").lower().replace("_", "")
        method = m.group("method")
        if method:
            if "bayer" in code:
                continue  # demosaicing variants (VNG, EA) are not separate encodings
            # e.g. 'cv_hsv_full', 'cv_yuv_nv12': the reference kept these, so stores may name them
            code += "_" + method.lower().replace("_", "")
        enum = int(getattr(cv2, name))
        to_enum.setdefault(code, enum)
        if _BAYER_4_LETTERS.fullmatch(code):
            # OpenCV 4.12 added four-letter Bayer names (COLOR_BayerRGGB2BGR is COLOR_BayerBG2BGR);
            # stores name the pattern as imgstore 0.4 did, in the two-letter form
            continue
        # OpenCV gives one conversion several names; like the reference, the last name wins
        to_code[enum] = code
    return to_enum, to_code


def _encoding_table() -> dict[str, int]:
    return _encoding_tables()[0]


def available_encodings() -> list[str]:
    """Names of the pixel encodings (``cv_bayerbg``, ``cv_yuv_nv12``...) that can be decoded."""
    return sorted(_encoding_table())


def check_encoding(encoding: str | None) -> str | None:
    """Return ``encoding`` if known (None/'' mean no encoding), else raise."""
    if not encoding:
        return None
    if encoding not in _encoding_table():
        raise UnsupportedFormatError(
            f"unsupported store image encoding {encoding!r}; known: {', '.join(available_encodings()[:12])}, ..."
        )
    return encoding


def encoding_decoder(encoding: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """A function converting a stored image in ``encoding`` to BGR (identity for no encoding)."""
    encoding = check_encoding(encoding)
    if encoding is None:
        return _identity
    import cv2

    code = _encoding_table()[encoding]
    return functools.partial(cv2.cvtColor, code=code)


def _identity(img: np.ndarray) -> np.ndarray:
    return img


class ImageCodecProcessor:
    """Converts images in a camera encoding (Bayer, YUV...) to BGR; the reference's helper.

    Encodings are OpenCV's ``COLOR_<X>2BGR`` conversions named ``'cv_<x>'`` (lower case,
    underscores dropped), e.g. ``'cv_bayerbg'``, ``'cv_yuv_nv12'``.
    """

    def __init__(self) -> None:
        self._code: str | None = None
        self.autoconvert: Callable[[np.ndarray], np.ndarray] = _identity

    def __repr__(self) -> str:
        return f"<ImageCodecProcessor({self._code})>"

    @classmethod
    def from_pylon_format(cls, pixel_format: str | None) -> ImageCodecProcessor:
        """A processor for a Basler pylon pixel format (``'BayerBG'``, ``'Bayer_RG'``, ``''``...).

        pylon names Bayer patterns with red and blue swapped relative to OpenCV.
        """
        codes = {"BayerBG": "cv_bayerrg", "Bayer_BG": "cv_bayerrg", "BayerRG": "cv_bayerbg",
                 "Bayer_RG": "cv_bayerbg", "BayerGB": "cv_bayergr", "Bayer_GB": "cv_bayergr"}
        if not pixel_format or pixel_format == "None":
            code = None
        elif pixel_format in codes:
            code = codes[pixel_format]
        else:
            raise UnsupportedFormatError(f"unknown pylon format: {pixel_format!r} (known: {sorted(codes)})")
        obj = cls()
        obj.set_default_code(code)
        return obj

    @classmethod
    def from_cv2_enum(cls, enum: int) -> ImageCodecProcessor:
        """A processor whose default encoding is OpenCV's conversion ``enum`` (``cv2.COLOR_BayerBG2BGR``)."""
        obj = cls()
        obj.set_default_code(obj.cv2_enum_to_code(enum))
        return obj

    @property
    def encoding(self) -> str:
        """The default encoding ('' if none)."""
        return self._code or ""

    def check_code(self, code: str) -> bool:
        """True if ``code`` is a known encoding."""
        return code in _encoding_table()

    def cv2_enum_to_code(self, enum: int) -> str:
        """The encoding name of OpenCV's ``COLOR_<X>2BGR`` conversion ``enum``."""
        try:
            return _encoding_tables()[1][int(enum)]
        except (KeyError, TypeError, ValueError):
            raise UnsupportedFormatError(f"cv2 conversion {enum!r} is not a conversion to BGR") from None

    def set_default_code(self, code: str | None) -> None:
        """Set the encoding used by :attr:`autoconvert` (None or '' for none)."""
        self.autoconvert = encoding_decoder(code)
        self._code = code or None

    def convert_to_bgr(self, img: np.ndarray, code: str | None = None, method_enum: int | None = None
                       ) -> np.ndarray:
        """Convert ``img`` from ``code`` (default: the default encoding) to BGR.

        ``method_enum`` picks a specific OpenCV conversion (e.g. a demosaicing variant).
        """
        if method_enum is not None:
            import cv2

            return cv2.cvtColor(img, int(method_enum))
        code = code or self._code
        if not code:
            raise UnsupportedFormatError("encoding must be specified")
        return encoding_decoder(code)(img)
