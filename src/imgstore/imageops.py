"""Small image helpers: colour/grey conversion, pixel encodings and FourCC codes."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import numpy as np

from .errors import UnsupportedFormatError

__all__ = [
    "ensure_color",
    "ensure_grayscale",
    "FourCC",
    "available_encodings",
    "check_encoding",
    "encoding_decoder",
    "ImageCodecProcessor",
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


def FourCC(c1: str, c2: str, c3: str, c4: str) -> int:  # noqa: N802 - the reference's name
    """The integer FourCC code of four characters (as ``cv2.VideoWriter_fourcc``)."""
    return (ord(c1) & 255) | ((ord(c2) & 255) << 8) | ((ord(c3) & 255) << 16) | ((ord(c4) & 255) << 24)


# OpenCV names conversions e.g. COLOR_BayerBG2BGR (4.x) or COLOR_BAYER_BG2BGR (5.x); imgstore
# calls the source encoding 'cv_bayerbg' (lower case, underscores dropped), as the reference does.
_CV2_CODE_RE = re.compile(r"^COLOR_(?P<codec>[A-Za-z0-9_]+?)2BGR(?P<method>_[A-Za-z0-9]+)?$")


@functools.lru_cache(maxsize=1)
def _encoding_table() -> dict[str, int]:
    import cv2

    table: dict[str, int] = {}
    for name in dir(cv2):
        m = _CV2_CODE_RE.match(name)
        if not m:
            continue
        code = "cv_" + m.group("codec").lower().replace("_", "")
        method = m.group("method")
        if method:
            if "bayer" in code or method.lower() == "_full":
                continue  # demosaicing variants and 'FULL' ranges are not separate encodings
            code += "_" + method.lower().replace("_", "")
        table.setdefault(code, int(getattr(cv2, name)))
    return table


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
    """Converts images in a camera encoding (Bayer, YUV...) to BGR; the reference's helper."""

    def __init__(self) -> None:
        self._code: str | None = None
        self.autoconvert: Callable[[np.ndarray], np.ndarray] = _identity

    @property
    def encoding(self) -> str:
        """The default encoding ('' if none)."""
        return self._code or ""

    def check_code(self, code: str) -> bool:
        """True if ``code`` is a known encoding."""
        return code in _encoding_table()

    def set_default_code(self, code: str | None) -> None:
        """Set the encoding used by :attr:`autoconvert`."""
        self.autoconvert = encoding_decoder(code)
        self._code = code or None

    def convert_to_bgr(self, img: np.ndarray, code: str | None = None) -> np.ndarray:
        """Convert ``img`` from ``code`` (default: the default encoding) to BGR."""
        code = code or self._code
        if not code:
            raise UnsupportedFormatError("encoding must be specified")
        return encoding_decoder(code)(img)
