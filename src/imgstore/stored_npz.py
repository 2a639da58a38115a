"""Arrays of an uncompressed ``.npz`` (``np.savez``) read straight from its bytes.

Opening a store without a valid index cache reads every chunk's index: 1 810 files for a
week-long store (18.1 M frames), where ``np.load`` spent 1.4 s, mostly in ``zipfile``'s
per-member machinery and in ``ast.literal_eval`` of each array header.  Chunk indexes are
written by ``np.savez`` (stored, not deflated), so the arrays are slices of the file: this
module finds them from the zip central directory, checks each member's CRC-32 (as zipfile
does) and parses the ``.npy`` header with a regular expression (the format numpy writes).
Anything else (deflated members, ZIP64, other header layouts, a CRC mismatch) answers None
and the caller reads the file with ``np.load``, which reports what is wrong.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Sequence

import numpy as np

__all__ = ["member_names", "read_members"]

# the central directory's end record, one of its entries, a local file header
_EOCD = b"PK\x05\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_CENTRAL_ENTRY = struct.Struct("<10xH4xIIIHHH8xI")  # method, crc, sizes, name/extra/comment lengths, offset
_NPY_MAGIC = b"\x93NUMPY"
# the header numpy writes for a one-dimensional array: {'descr': '<i8', 'fortran_order': False,
# 'shape': (10000,), } padded with spaces to a multiple of 64 bytes
_NPY_HEADER = re.compile(rb"\{'descr': '([<>|][a-zA-Z]\d+)', 'fortran_order': False, 'shape': \((\d+),\), \} *\n")


def _central_directory(data: bytes | bytearray, data_start: int = 0) -> list[tuple] | None:
    """The zip central directory's entries ``(name, method, crc, csize, usize, offset)``, read from
    ``data`` (the file's bytes from byte ``data_start`` on, its end included); None if the
    directory is not within them or is damaged."""
    end = data.rfind(_EOCD, max(0, len(data) - 65_557))
    if end < 0 or len(data) < end + 22:
        return None
    n_entries, _, cd_offset = struct.unpack_from("<HII", data, end + 10)
    pos = cd_offset - data_start
    if pos < 0:
        return None
    entries = []
    for _ in range(n_entries):
        if data[pos:pos + 4] != _CENTRAL or pos + 46 > len(data):
            return None
        method, crc, csize, usize, nlen, xlen, clen, offset = _CENTRAL_ENTRY.unpack_from(data, pos)
        name = bytes(data[pos + 46:pos + 46 + nlen]).decode("utf-8", "replace")
        entries.append((name, method, crc, csize, usize, offset))
        pos += 46 + nlen + xlen + clen
    return entries


def read_members(data: bytes | bytearray, keys: Sequence[str]) -> dict[str, np.ndarray] | None:
    """``{key: array}`` of the ``keys`` present in the ``.npz`` ``data`` (one-dimensional, plain
    dtypes); None if the file is not a plain stored ``np.savez`` archive or fails a check."""
    entries = _central_directory(data)
    if entries is None:
        return None
    wanted = {f"{k}.npy": k for k in keys}
    out: dict[str, np.ndarray] = {}
    for name, method, crc, csize, usize, offset in entries:
        key = wanted.get(name)
        if key is None:
            continue
        if method != 0 or csize != usize or 0xFFFFFFFF in (csize, offset):
            return None
        if data[offset:offset + 4] != _LOCAL:
            return None
        lnlen, lxlen = struct.unpack_from("<HH", data, offset + 26)
        start = offset + 30 + lnlen + lxlen
        member = memoryview(data)[start:start + csize]
        if len(member) != csize or zlib.crc32(member) != crc:
            return None
        array = _npy_vector(member)
        if array is None:
            return None
        out[key] = array
    return out


def member_names(tail: bytes, tail_start: int) -> list[str] | None:
    """The member names of a zip archive from its last bytes (``tail``, which starts at byte
    ``tail_start`` of the file); None if its central directory does not lie within them."""
    entries = _central_directory(tail, tail_start)
    return None if entries is None else [entry[0] for entry in entries]


def _npy_vector(member: memoryview) -> np.ndarray | None:
    """The one-dimensional array of an ``.npy`` file (format 1.0), or None."""
    if bytes(member[:6]) != _NPY_MAGIC or bytes(member[6:8]) != b"\x01\x00":
        return None
    (header_len,) = struct.unpack_from("<H", member, 8)
    match = _NPY_HEADER.fullmatch(bytes(member[10:10 + header_len]))
    if match is None:
        return None
    dtype = np.dtype(match.group(1).decode())
    count = int(match.group(2))
    body = member[10 + header_len:]
    if dtype.hasobject or len(body) != count * dtype.itemsize:
        return None
    return np.frombuffer(body, dtype=dtype, count=count).copy()
