"""What a program written for imgstore 0.4 sees of a store: run with either library, compare.

Reads a JSON list of ``{"path": store, "frame_number": n, "frame_time": t}`` on standard
input and prints, per store, the result of every call below as JSON: each operation is
recorded as ``["ok", value]`` or ``["error", exception class name]``. It uses only the
names imgstore 0.4 has (public and the private ones real programs use), so the same file
runs under the reference (in its own venv) and under this package; the tests compare the
two outputs (tests/test_reference_privates.py).
"""

import io
import json
import os
import sys

import numpy as np

import imgstore
from imgstore import stores, util
from imgstore.apps import generate_timecodes
from imgstore.constants import STORE_INDEX_FILENAME
from imgstore.index import ImgStoreIndex


def plain(value):
    """JSON-able form of what a call returned."""
    if isinstance(value, np.ndarray):
        return {"ndarray": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(type(value).__name__)


def probe(case):
    out = {}

    def record(name, fn):
        try:
            out[name] = ["ok", plain(fn())]
        except Exception as exc:  # every failure is part of what is compared
            out[name] = ["error", type(exc).__name__]

    path, fn, ft = case["path"], case["frame_number"], case["frame_time"]
    s = stores.new_for_filename(path)
    is_video = isinstance(s, stores.VideoImgStore)
    record("class", lambda: type(s).__name__)
    record("isinstance VideoImgStore", lambda: is_video)
    for name in ("_format", "_imgshape", "_imgdtype", "_basedir", "frame_count", "frame_min", "frame_max",
                 "chunks", "image_shape", "user_metadata", "has_extra_data", "mode", "filename", "full_path",
                 "frame_time_min", "frame_time_max", "duration", "uuid", "_chunk_n", "_chunk_current_frame_idx",
                 "lossless"):
        record(name, lambda name=name: getattr(s, name))
    record("len", lambda: len(s))
    record("_metadata", lambda: {k: v for k, v in s._metadata.items()})
    record("type(frame_count)", lambda: type(s.frame_count).__name__)
    if is_video:
        record("_ext", lambda: s._ext)
        # imgstore 0.4 listed them in glob order; compare them as a set
        record("_chunk_paths", lambda: sorted(s._chunk_paths))
    record("_chunk_n_and_chunk_paths", lambda: sorted([int(n), p] for n, p in s._chunk_n_and_chunk_paths))
    record("get_frame_metadata", s.get_frame_metadata)
    record("_index.get_all_metadata", lambda: s._index.get_all_metadata())
    record("_index.frame_count", lambda: s._index.frame_count)
    record("_index.chunks", lambda: list(s._index.chunks))
    record("_index.frame_min", lambda: s._index.frame_min)
    record("_index.frame_max", lambda: s._index.frame_max)
    record("_index.find_chunk(frame_number)", lambda: s._index.find_chunk("frame_number", fn))
    record("_index.find_chunk(index)", lambda: s._index.find_chunk("index", 3))
    record("_index.find_chunk(missing)", lambda: s._index.find_chunk("frame_number", -12345))
    record("_index.find_chunk_nearest(frame_time)", lambda: s._index.find_chunk_nearest("frame_time", ft + 1e-3))
    record("_index.find_chunk_nearest(frame_number)", lambda: s._index.find_chunk_nearest("frame_number", fn))
    for chunk_n in list(s._index.chunks)[:3]:
        record(f"_get_chunk_metadata({chunk_n})", lambda c=chunk_n: s._get_chunk_metadata(c))
        record(f"_index.get_chunk_metadata({chunk_n})", lambda c=chunk_n: s._index.get_chunk_metadata(c))
    record("get_next_image", lambda: s.get_next_image())
    record("after get_next_image: _chunk_n", lambda: s._chunk_n)
    record("after get_next_image: frame_number", lambda: s.frame_number)
    record("get_next_framenumber", s.get_next_framenumber)
    record("get_image(fn)", lambda: s.get_image(fn))
    record("get_image(np.int64(fn))", lambda: s.get_image(np.int64(fn))[1])
    record("after get_image: _chunk_n", lambda: s._chunk_n)
    record("after get_image: _chunk_current_frame_idx", lambda: s._chunk_current_frame_idx)
    record("get_image(frame_index=2)", lambda: s.get_image(frame_number=None, frame_index=2)[1])
    record("get_image(missing)", lambda: s.get_image(-12345))
    record("get_image(missing, exact_only=False)", lambda: s.get_image(-12345, exact_only=False)[1])
    record("get_image(frame_index=count)", lambda: s.get_image(None, frame_index=s.frame_count))
    record("get_nearest_image", lambda: s.get_nearest_image(ft + 1e-3)[1])
    record("after get_nearest_image: _chunk_n", lambda: s._chunk_n)
    record("get_extra_data", lambda: None if s.get_extra_data() is None else sorted(s.get_extra_data().columns))
    record("find_extra_data_files", lambda: [os.path.basename(p) for p in s.find_extra_data_files()])
    record("convert_frame_time_to_datetime", lambda: s.convert_frame_time_to_datetime(ft).isoformat())
    record("created", lambda: [s.created[0].isoformat(), str(s.created[1])])
    record("motif_get_parse_true_fps", lambda: util.motif_get_parse_true_fps(s))
    record("motif_get_parse_true_fps(default=None)", lambda: round(util.motif_get_parse_true_fps(s, None), 6))
    record("motif_get_recording_timezone", lambda: str(util.motif_get_recording_timezone(s)))

    def timecodes():
        buf = io.StringIO()
        ts = generate_timecodes(s, buf)
        return [buf.getvalue(), len(ts)]

    record("generate_timecodes", timecodes)
    record("get_extra_data_samplerate", s.get_extra_data_samplerate)
    record("extract_only_frame", lambda: stores.extract_only_frame(path, 1))
    sqlite = os.path.join(s.filename, STORE_INDEX_FILENAME)
    if os.path.exists(sqlite):
        # an index saved by either library opens in both and stands in for the chunk scan
        record("ImgStoreIndex.new_from_file", lambda: ImgStoreIndex.new_from_file(sqlite).get_all_metadata())

        def with_index():
            idx = ImgStoreIndex.new_from_file(sqlite)
            t = stores.new_for_filename(path, index=idx)
            return [t._index is idx, t.get_image(fn)[1], t.frame_count]

        record("new_for_filename(index=)", with_index)
    s.close()
    record("closed: user_metadata", lambda: s.user_metadata)
    return out


if __name__ == "__main__":
    json.dump({"version": imgstore.__version__, "stores": [probe(c) for c in json.load(sys.stdin)]}, sys.stdout)
