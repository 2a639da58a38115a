"""The PyAV video chunk layer: formats, exact random access, fixtures, crash safety.

Frames carry their frame number as a barcode (:mod:`imgstore.testing.barcode`), so every
read is checked for *which* frame came back; lossless formats are checked bit for bit, and
lossy random reads are compared bit for bit with a sequential decode of the same file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from imgstore import errors
from imgstore.backends.pyav import (
    VIDEO_FORMATS,
    VideoChunkReader,
    VideoChunkWriter,
    available_video_formats,
    build_frame_table,
    coded_size,
    get_format_spec,
    written_size,
)
from imgstore.testing.barcode import make_frame, read_barcode, read_fixture_barcode

AVAILABLE = set(available_video_formats())
ALL_FORMATS = ["mjpeg/avi", "h264/mkv", "avc1/mp4", "ffv1/mkv", "hevc/mp4", "h264-lossless/mkv"]
LOSSLESS = {"ffv1/mkv", "h264-lossless/mkv"}


def need(fmt: str) -> None:
    if fmt not in AVAILABLE:
        pytest.skip(f"{fmt} cannot be written here")


def write_chunk(path, fmt, n, h=48, w=64, color=False, times=None, **kw):
    """Write barcode frames ``0 .. n-1``; return (table, frames, writer)."""
    imgs = [make_frame(i, h, w, color) for i in range(n)]
    with VideoChunkWriter(path, fmt, height=h, width=w, color=color, **kw) as wr:
        returned = [wr.write(img, None if times is None else times[i]) for i, img in enumerate(imgs)]
    table = wr.close()
    assert len(returned) == len(table["pts"]) == n
    return table, imgs, wr


def chunk_path(tmp_path, fmt, name="chunk"):
    return str(tmp_path / (name + get_format_spec(fmt).extension))


# ---------------------------------------------------------------------------------------
# formats
# ---------------------------------------------------------------------------------------


def test_format_table_matches_the_reference_names():
    assert VIDEO_FORMATS["mjpeg"] is VIDEO_FORMATS["mjpeg/avi"]
    expected = {"mjpeg/avi": ".avi", "h264/mkv": ".mkv", "avc1/mp4": ".mp4", "ffv1/mkv": ".mkv",
                "hevc/mp4": ".mp4", "h264-lossless/mkv": ".mkv"}
    for name, ext in expected.items():
        spec = get_format_spec(name)
        assert spec.name == name and spec.extension == ext
    assert {n for n, s in VIDEO_FORMATS.items() if s.lossless} == LOSSLESS
    # codecs built into every FFmpeg must always be usable
    assert {"mjpeg/avi", "mjpeg", "ffv1/mkv"} <= AVAILABLE
    assert set(VIDEO_FORMATS) >= AVAILABLE
    with pytest.raises(errors.UnsupportedFormatError):
        get_format_spec("vp9/webm")


@pytest.mark.parametrize("color", [False, True], ids=["grey", "colour"])
@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_round_trip(tmp_path, fmt, color):
    need(fmt)
    path = chunk_path(tmp_path, fmt)
    n = 40
    gop = None if get_format_spec(fmt).intra_only else 12
    table, imgs, _wr = write_chunk(path, fmt, n, color=color, keyframe_interval=gop)
    # the writer's table is what a demuxer sees in the file
    demuxed = build_frame_table(path)
    np.testing.assert_array_equal(demuxed["pts"], table["pts"])
    np.testing.assert_array_equal(demuxed["keyframe"], table["keyframe"])
    assert table["pts"].dtype == np.int64 and table["keyframe"].dtype == bool
    assert table["keyframe"][0]
    if not get_format_spec(fmt).intra_only:
        assert set(range(0, n, 12)) <= set(np.flatnonzero(table["keyframe"]))
    with VideoChunkReader(path, color=color, height=48, width=64, frame_table=table) as r:
        assert len(r) == n
        sequential = [r.read(i) for i in range(n)]
        assert r.stats["seeks"] == 0  # sequential reading never seeks
        order = np.random.default_rng(1).permutation(n)
        for pos in order:
            img = r.read(int(pos))
            np.testing.assert_array_equal(img, sequential[pos])  # same pixels on every path
    for i, img in enumerate(sequential):
        assert img.shape == imgs[i].shape and img.dtype == np.uint8
        assert read_barcode(img) == i
        if fmt in LOSSLESS:
            np.testing.assert_array_equal(img, imgs[i])


def test_writer_returns_increasing_pts(tmp_path):
    need("h264/mkv")
    path = chunk_path(tmp_path, "h264/mkv")
    with VideoChunkWriter(path, "h264/mkv", height=32, width=32, color=False, fps=50) as wr:
        returned = [wr.write(make_frame(i, 32, 32, False)) for i in range(10)]
    assert wr.time_base == Fraction(1, 1000)
    assert returned == list(range(0, 200, 20))  # 50 fps in milliseconds
    assert wr.close()["pts"].tolist() == returned


@pytest.mark.parametrize("fmt", ["ffv1/mkv", "h264-lossless/mkv"])
def test_lossless_colour_is_bit_exact_on_noise(tmp_path, fmt):
    """Noise defeats any prediction: every BGR value must survive (no RGB->YUV step)."""
    need(fmt)
    path = chunk_path(tmp_path, fmt)
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (33, 47, 3), dtype=np.uint8) for _ in range(5)]
    with VideoChunkWriter(path, fmt, height=33, width=47, color=True) as wr:
        for img in imgs:
            wr.write(img)
    with VideoChunkReader(path, color=True, height=33, width=47, frame_table=wr.close()) as r:
        for i in (4, 0, 2, 3, 1):
            np.testing.assert_array_equal(r.read(i), imgs[i])


def test_ffv1_uint16_grey(tmp_path):
    path = chunk_path(tmp_path, "ffv1/mkv")
    imgs = [make_frame(i, 30, 41, False, dtype=np.uint16) for i in range(6)]
    with VideoChunkWriter(path, "ffv1/mkv", height=30, width=41, color=False, dtype=np.uint16) as wr:
        for img in imgs:
            wr.write(img)
    with VideoChunkReader(path, color=False, frame_table=wr.close()) as r:
        for i in (5, 1, 2, 0):
            out = r.read(i)
            assert out.dtype == np.uint16
            np.testing.assert_array_equal(out, imgs[i])
    with pytest.raises(errors.UnsupportedFormatError):
        VideoChunkWriter(chunk_path(tmp_path, "mjpeg/avi"), "mjpeg/avi", height=8, width=8,
                         color=False, dtype=np.uint16)


@pytest.mark.parametrize("color", [False, True], ids=["grey", "colour"])
@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_odd_sizes_are_kept(tmp_path, fmt, color):
    need(fmt)
    path = chunk_path(tmp_path, fmt)
    h, w = 37, 53
    table, imgs, wr = write_chunk(path, fmt, 8, h=h, w=w, color=color)
    coded_h, coded_w = wr.coded_shape
    assert (coded_h, coded_w) == coded_size(fmt, h, w, color)
    assert written_size(fmt, h, w, color) == (h, w)  # nothing is cropped
    padded = color and fmt in ("h264/mkv", "avc1/mp4", "hevc/mp4")  # 4:2:0 needs even sizes
    expected_h, expected_w = (h + 1, w + 1) if padded else (h, w)
    if fmt == "hevc/mp4":
        expected_w = 64  # pictures 33..63 px wide are padded for x265 (see formats.coded_size)
    assert (coded_h, coded_w) == (expected_h, expected_w)
    assert wr.frame_shape == imgs[0].shape
    with VideoChunkReader(path, color=color, height=h, width=w, frame_table=table) as r:
        for i in (7, 0, 3):
            img = r.read(i)
            assert img.shape == imgs[i].shape
            assert read_barcode(img) == i
            if fmt in LOSSLESS:
                np.testing.assert_array_equal(img, imgs[i])
    # the padding is declared, never silently added to what the reader returns
    with VideoChunkReader(path, color=color, frame_table=table) as r:
        assert r.read(0).shape[:2] == (coded_h, coded_w)


def _h264_chroma_format_idc(avcc: bytes) -> int:
    """chroma_format_idc of the first SPS in an avcC record (0 means luma only)."""
    sps = avcc[8:8 + int.from_bytes(avcc[6:8], "big")]
    assert sps[0] & 0x1F == 7 and sps[1] in (100, 110, 122, 244)  # High profiles carry it
    bits = "".join(f"{b:08b}" for b in sps[4:12])
    pos = 0

    def ue() -> int:
        nonlocal pos
        zeros = bits.index("1", pos) - pos
        value = int(bits[pos + zeros: pos + 2 * zeros + 1], 2) - 1
        pos += 2 * zeros + 1
        return value

    ue()  # seq_parameter_set_id
    return ue()


@pytest.mark.parametrize("fmt", ["h264/mkv", "avc1/mp4", "h264-lossless/mkv", "hevc/mp4", "ffv1/mkv"])
def test_grey_stays_grey(tmp_path, fmt):
    """Grey chunks hold one luma plane, tagged full range so Y is the grey value."""
    need(fmt)
    path = chunk_path(tmp_path, fmt)
    write_chunk(path, fmt, 3)
    with av.open(path) as c:
        cc = c.streams.video[0].codec_context
        assert cc.color_range == 2  # JPEG / full range
        if fmt == "hevc/mp4" or fmt == "ffv1/mkv":
            assert cc.pix_fmt == "gray"
        else:  # FFmpeg reports 4:0:0 H.264 as yuvj420p: look at the SPS itself
            assert _h264_chroma_format_idc(bytes(cc.extradata)) == 0
    # and MJPEG, which has no luma-only mode, uses full-range 4:2:0
    assert get_format_spec("mjpeg/avi").grey_pix_fmt == "yuvj420p"


@pytest.mark.parametrize("fmt", ["h264/mkv", "avc1/mp4", "hevc/mp4", "ffv1/mkv"])
def test_variable_frame_rate(tmp_path, fmt):
    need(fmt)
    path = chunk_path(tmp_path, fmt)
    rng = np.random.default_rng(7)
    # irregular gaps, one repeated and one backwards time: pts must still increase
    times = list(1.7e9 + np.cumsum(rng.uniform(0.005, 0.3, 30)))
    times[10] = times[9]
    times[20] = times[19] - 0.05
    table, _imgs, _wr = write_chunk(path, fmt, 30, times=times, keyframe_interval=8)
    pts = table["pts"]
    assert np.all(np.diff(pts) > 0)
    if fmt.endswith("mkv"):
        # Matroska keeps the timeline: pts follow the frame times (ms) where they advance
        ms = np.round((np.asarray(times) - times[0]) * 1000).astype(np.int64)
        ok = [i for i in range(30) if i not in (10, 20, 21)]
        np.testing.assert_array_equal(pts[ok], ms[ok])
    with VideoChunkReader(path, color=False, frame_table=table) as r:
        for pos in rng.permutation(30):
            assert read_barcode(r.read(int(pos))) == pos


@pytest.mark.parametrize("step", [1.0, 3600.0])
@pytest.mark.parametrize("fmt", ["h264/mkv", "avc1/mp4", "hevc/mp4"])
def test_slow_frame_times_with_b_frames(tmp_path, fmt, step):
    """Frames seconds or hours apart: B-frame decode timestamps lag far behind pts."""
    need(fmt)
    for n in (2, 3, 7, 20):
        path = chunk_path(tmp_path, fmt, f"slow{n}")
        table, _, _ = write_chunk(path, fmt, n, times=[100.0 + step * i for i in range(n)])
        assert np.all(np.diff(table["pts"]) > 0)
        with VideoChunkReader(path, color=False, frame_table=table) as r:
            assert [read_barcode(r.read(i)) for i in reversed(range(n))] == list(reversed(range(n)))


def test_long_gop_b_frames_random_access(tmp_path):
    """Hundreds of lookups in mixed patterns on long-GOP H.264 with B-frames."""
    need("h264/mkv")
    path = chunk_path(tmp_path, "h264/mkv")
    n = 300
    table, _imgs, _ = write_chunk(path, "h264/mkv", n, h=48, w=64, keyframe_interval=120, fps=30)
    # B-frames: decode order differs from presentation order
    with av.open(path) as c:
        decode_order = [p.pts for p in c.demux(video=0) if p.size]
    assert decode_order != sorted(decode_order)
    with VideoChunkReader(path, color=False, frame_table=table, threads=1) as r:
        sequential = [r.read(i) for i in range(n)]
        assert r.stats["seeks"] == 0
    assert [read_barcode(img) for img in sequential] == list(range(n))
    rng = np.random.default_rng(11)
    order: list[int] = []
    for _ in range(150):
        p = int(rng.integers(0, n))
        kind = rng.integers(0, 4)
        if kind == 0:
            order.append(p)  # pure random
        elif kind == 1:
            order += range(p, min(n, p + 6))  # short sequential run
        elif kind == 2:
            order += [p, max(0, p - 1)]  # one step back
        else:
            order += range(p, min(n, p + 30), 7)  # forward skips in the same GOP
    assert len(order) >= 300
    for table_arg, threads in ((table, None), (None, None), (table, 2)):
        with VideoChunkReader(path, color=False, frame_table=table_arg, threads=threads) as r:
            for pos in order:
                np.testing.assert_array_equal(r.read(pos), sequential[pos])
            assert r.stats["retries"] == 0


def test_forward_reads_in_a_gop_do_not_seek(tmp_path):
    need("h264/mkv")
    path = chunk_path(tmp_path, "h264/mkv")
    table, _, _ = write_chunk(path, "h264/mkv", 60, keyframe_interval=30)
    with VideoChunkReader(path, color=False, frame_table=table) as r:
        r.read(31)
        seeks = r.stats["seeks"]
        for pos in (33, 40, 52, 59):  # same GOP, ahead of the decoder
            assert read_barcode(r.read(pos)) == pos
        assert r.stats["seeks"] == seeks
        r.read(5)  # behind: must seek
        assert r.stats["seeks"] == seeks + 1


def test_foreign_file_with_b_frames_and_offset_pts(tmp_path):
    """A file written by other software whose timeline does not start at 0."""
    need("h264/mkv")
    path = str(tmp_path / "foreign.mkv")
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        s.codec_context.options = {"g": "20", "bf": "3"}
        for i in range(60):
            frame = av.VideoFrame.from_ndarray(make_frame(i, 48, 64, False), format="gray")
            frame.pts = 5000 + 40 * i
            frame.time_base = Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    table = build_frame_table(path)
    assert table["pts"][0] == 5000 and len(table["pts"]) == 60
    with VideoChunkReader(path, color=False, height=48, width=64) as r:
        for pos in np.random.default_rng(2).permutation(60):
            assert read_barcode(r.read(int(pos))) == pos


def test_limited_range_grey_matches_ffmpeg_conversion(fixtures_dir):
    """The grey fast path (Y plane + range table) equals swscale's yuv -> gray."""
    path = str(fixtures_dir / "avc1_mp4_grey" / "000000.mp4")
    with av.open(path) as c:
        expected = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    with VideoChunkReader(path, color=False, height=120, width=160) as r:
        for i in range(len(r)):
            np.testing.assert_array_equal(r.read(i), expected[i])


# ---------------------------------------------------------------------------------------
# chunks written by the reference library
# ---------------------------------------------------------------------------------------

def fixture_number(img: np.ndarray, bits: int) -> int:
    """The fixtures' barcode; the Motif rows are cut out first (a 512x512x3 float copy is slow)."""
    if bits == 16:
        h = img.shape[0]
        return read_barcode(img[h // 2 - h // 8: h // 2 + h // 8], bits=16, rows=slice(None))
    return read_fixture_barcode(img, bits)


VIDEO_FIXTURES = ["mjpeg_avi_color", "avc1_mp4_grey", "h264_mkv_color", "crashed_mjpeg_avi", "motif_libx264_mp4"]


@pytest.mark.parametrize("store", VIDEO_FIXTURES)
def test_reference_fixture_chunks(fixtures_dir, store):
    ext = {"motif_libx264_mp4": ".mp4", "avc1_mp4_grey": ".mp4", "h264_mkv_color": ".mkv"}.get(store, ".avi")
    bits = 16 if store == "motif_libx264_mp4" else 20
    chunks = sorted(p for p in os.listdir(fixtures_dir / store) if p.endswith(ext))
    assert chunks
    rng = np.random.default_rng(4)
    total = 0
    for name in chunks:
        path = str(fixtures_dir / store / name)
        npz = path[: -len(ext)] + ".npz"
        if os.path.exists(npz):
            with np.load(npz, allow_pickle=False) as z:
                expected = [int(v) for v in z["frame_number"]]
        else:  # the crashed store's last chunk has no index: the writer was killed
            assert store == "crashed_mjpeg_avi"
            expected = [20, 21, 22]
        for color in (False, True):
            with VideoChunkReader(path, color=color, frame_table=None) as r:
                assert len(r) == len(expected)
                if not expected:  # the reference leaves an empty chunk behind
                    continue
                seq = [fixture_number(r.read(i), bits) for i in range(len(r))]
                assert seq == expected
                rounds = 1 if store == "motif_libx264_mp4" else 3  # 512x512 4:4:4, long GOP: slow
                order = np.concatenate([rng.permutation(len(r)) for _ in range(rounds)])
                for pos in order:
                    assert fixture_number(r.read(int(pos)), bits) == expected[pos]
                assert r.stats["retries"] == 0
        total += len(expected)
    assert total > 0


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------


def test_errors(tmp_path):
    path = chunk_path(tmp_path, "mjpeg/avi")
    with pytest.raises(errors.ChunkReadError) as exc:
        VideoChunkReader(path, color=False)
    assert isinstance(exc.value, OSError)
    with pytest.raises(errors.UnsupportedFormatError):
        VideoChunkWriter(path, "nope", height=8, width=8, color=False)
    with pytest.raises(errors.UnsupportedFormatError):
        VideoChunkWriter(chunk_path(tmp_path, "ffv1/mkv"), "ffv1/mkv", height=8, width=8, color=False, quality=3)
    table, _, wr = write_chunk(path, "mjpeg/avi", 5, h=16, w=16)
    with pytest.raises(errors.StoreWriteError):
        wr.write(make_frame(5, 16, 16, False))  # closed
    with pytest.raises(errors.InvalidImageError):
        VideoChunkWriter(str(tmp_path / "x.avi"), "mjpeg/avi", height=16, width=16, color=False).write(
            np.zeros((16, 17), np.uint8))
    with VideoChunkReader(path, color=False, frame_table=table) as r:
        with pytest.raises(errors.FrameIndexError):
            r.read(5)
        with pytest.raises(IndexError):
            r.read(-1)
    bad = {"pts": table["pts"][::-1].copy(), "keyframe": table["keyframe"]}
    with pytest.raises(errors.IndexCorruptError):
        VideoChunkReader(path, color=False, frame_table=bad)


@pytest.mark.parametrize("fmt", ["h264/mkv", "mjpeg/avi"])
def test_a_frame_missing_from_the_file_raises(tmp_path, fmt):
    """A table row the file cannot deliver must raise, never return a neighbour."""
    need(fmt)
    path = chunk_path(tmp_path, fmt)
    table, _, _ = write_chunk(path, fmt, 30, keyframe_interval=None if fmt == "mjpeg/avi" else 10)
    pts, key = table["pts"], table["keyframe"]
    fakes = [  # one more frame after the end
        {"pts": np.append(pts, pts[-1] + 1000), "keyframe": np.append(key, False)}]
    if fmt == "h264/mkv":  # and one between frames 14 and 15 (40 ms apart)
        fakes.append({"pts": np.insert(pts, 15, pts[14] + 20), "keyframe": np.insert(key, 15, False)})
    for fake, missing in zip(fakes, (30, 15), strict=False):
        with VideoChunkReader(path, color=False, frame_table=fake) as r:
            assert read_barcode(r.read(missing - 1)) == missing - 1
            with pytest.raises(errors.ChunkReadError):
                r.read(missing)
            assert read_barcode(r.read(3)) == 3  # still usable afterwards


def test_truncated_file_yields_only_whole_frames(tmp_path):
    need("h264/mkv")
    path = chunk_path(tmp_path, "h264/mkv")
    write_chunk(path, "h264/mkv", 120, fps=30, keyframe_interval=25)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) * 6 // 10)
    table = build_frame_table(path)
    n = len(table["pts"])
    assert 0 < n < 120
    with VideoChunkReader(path, color=False, frame_table=table) as r:
        assert [read_barcode(r.read(i)) for i in range(n)] == list(range(n))
        for pos in np.random.default_rng(0).permutation(n):
            assert read_barcode(r.read(int(pos))) == pos


def _mp4_fragment_starts(path: str) -> list[int]:
    """Byte offsets of the top-level 'moof' boxes of a fragmented MP4."""
    starts, pos, size = [], 0, os.path.getsize(path)
    with open(path, "rb") as f:
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(8)
            length = int.from_bytes(head[:4], "big")
            if head[4:8] == b"moof":
                starts.append(pos)
            if length < 8:
                break
            pos += length
    return starts


@pytest.mark.parametrize("fmt", ["h264/mkv", "avc1/mp4", "hevc/mp4", "ffv1/mkv", "mjpeg/avi"])
def test_cut_short_files_give_an_exact_prefix(tmp_path, fmt):
    """A crash leaves a file cut anywhere, e.g. after a fragment ending mid-GOP whose
    P-frame was written before the B-frames shown earlier: those frames must not be
    counted (they would shift every later position onto the wrong frame)."""
    need(fmt)
    path = chunk_path(tmp_path, fmt)
    n = 150
    write_chunk(path, fmt, n, fps=30, keyframe_interval=50)
    with open(path, "rb") as f:
        data = f.read()
    cuts = set(np.linspace(len(data) // 10, len(data) - 1, 25).astype(int).tolist())
    if fmt.endswith("mp4"):
        cuts |= set(_mp4_fragment_starts(path)[1:])  # exactly between two fragments
    cut_path = str(tmp_path / ("cut" + get_format_spec(fmt).extension))
    readable = []
    for cut in sorted(cuts):
        with open(cut_path, "wb") as f:
            f.write(data[:cut])
        table = build_frame_table(cut_path)
        m = len(table["pts"])
        with VideoChunkReader(cut_path, color=False, frame_table=table) as r:
            assert [read_barcode(r.read(i)) for i in range(m)] == list(range(m)), cut
            for pos in np.random.default_rng(cut).integers(0, m, 3 if m else 0):
                assert read_barcode(r.read(int(pos))) == pos
        readable.append(m)
    assert readable == sorted(readable) and readable[-1] >= n - 30, list(zip(sorted(cuts), readable, strict=False))


@pytest.mark.parametrize("fmt", ["h264/mkv", "avc1/mp4", "mjpeg/avi"])
def test_empty_chunk(tmp_path, fmt):
    need(fmt)
    path = chunk_path(tmp_path, fmt)
    table = VideoChunkWriter(path, fmt, height=16, width=16, color=False).close()
    assert len(table["pts"]) == 0
    assert len(build_frame_table(path)["pts"]) == 0
    with VideoChunkReader(path, color=False, frame_table=table) as r:
        assert len(r) == 0
        with pytest.raises(errors.FrameIndexError):
            r.read(0)


# ---------------------------------------------------------------------------------------
# crash safety
# ---------------------------------------------------------------------------------------

_CRASH_CHILD = r"""
import sys
from imgstore.backends.pyav import VideoChunkWriter
from imgstore.testing.barcode import make_frame
path, fmt, fps = sys.argv[1], sys.argv[2], float(sys.argv[3])
w = VideoChunkWriter(path, fmt, height=96, width=128, color=False, fps=fps)
i = 0
while True:
    w.write(make_frame(i, 96, 128, False), frame_time=1.7e9 + i / fps)
    i += 1
    print(i, flush=True)  # frames that write() has returned for
"""


@pytest.mark.parametrize("fmt", ["h264/mkv", "avc1/mp4", "ffv1/mkv", "mjpeg/avi", "hevc/mp4"])
def test_sigkilled_writer_loses_at_most_one_second(tmp_path, fmt):
    need(fmt)
    fps = 30
    path = chunk_path(tmp_path, fmt)
    proc = subprocess.Popen([sys.executable, "-c", _CRASH_CHILD, path, fmt, str(fps)],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if int(line) >= 100:  # a bit over 3 s of video
                break
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read().split()  # what the child reported before it died
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    written = int(rest[-1]) if rest else int(line)
    table = build_frame_table(path)
    n = len(table["pts"])
    with VideoChunkReader(path, color=False, frame_table=table) as r:
        got = [read_barcode(r.read(i)) for i in range(n)]
        assert got == list(range(n))  # every decodable frame is the right one
        for pos in np.random.default_rng(0).integers(0, n, 20):
            assert read_barcode(r.read(int(pos))) == pos
    assert written - n <= fps, f"{fmt}: {written} frames written, {n} readable"


# ---------------------------------------------------------------------------------------
# speed mechanisms must never change a pixel: non-reference skipping, lanes, adaptive
# threading and the BGR conversion graph, checked against a plain PyAV decode
# ---------------------------------------------------------------------------------------


def plain_decode(path, color: bool) -> list[np.ndarray]:
    """Every frame of `path` in presentation order, decoded by PyAV alone (one thread,
    nothing skipped): BGR through ``to_ndarray('bgr24')``, grey as the luma plane."""
    out = []
    with av.open(path) as c:
        stream = c.streams.video[0]
        stream.codec_context.thread_type = "NONE"
        frames = sorted(c.decode(stream), key=lambda f: f.pts)
        for f in frames:
            if color:
                out.append(f.to_ndarray(format="bgr24"))
            else:
                y = f.planes[0]
                out.append(np.frombuffer(y, np.uint8).reshape(-1, y.line_size)[: f.height, : f.width].copy())
    return out


def write_x264(path, n, settings, h=48, w=64, gop=None):
    """A long-GOP H.264 file written by PyAV directly with `settings` (x264 options)."""
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "gray"
        s.codec_context.time_base = Fraction(1, 1000)
        s.codec_context.color_range = 2
        s.codec_context.options = dict(settings, g=str(gop or n))
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(make_frame(i, h, w, False), format="gray")
            frame.pts, frame.time_base, frame.color_range = 40 * i, Fraction(1, 1000), 2
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def mixed_order(n: int, seed: int, count: int) -> list[int]:
    """Random positions, short runs, steps back and forward skips (>= `count` reads)."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < count:
        p = int(rng.integers(0, n))
        kind = rng.integers(0, 5)
        if kind <= 1:
            order.append(p)
        elif kind == 2:
            order += range(p, min(n, p + 5))
        elif kind == 3:
            order += [p, max(0, p - 1), max(0, p - 9)]
        else:
            order += range(p, min(n, p + 40), 9)
    return order


X264_SETTINGS = {
    # x264's defaults (what OpenCV and other software write): CABAC, deblocking,
    # adaptive B-frames and a B-pyramid, i.e. B-frames that are references
    "x264-defaults": {"preset": "medium"},
    "b-pyramid": {"preset": "veryfast", "x264-params": "b-pyramid=normal:bframes=3"},
    # ours without fastdecode: deblocked non-reference B-frames
    "ours-deblocked": {"preset": "veryfast", "x264-params": "b-pyramid=none:b-adapt=0"},
}


@pytest.mark.parametrize("settings", list(X264_SETTINGS))
def test_skipping_and_lanes_are_bit_exact_on_long_gop_b_frames(tmp_path, settings):
    """Hundreds of mixed lookups in one 240-frame GOP with B-frames (reference B-frames
    for x264's defaults): every read equals a plain sequential decode, bit for bit."""
    need("h264/mkv")
    path = str(tmp_path / "long.mkv")
    n = 240
    write_x264(path, n, X264_SETTINGS[settings])
    with av.open(path) as c:
        decode_order = [p.pts for p in c.demux(video=0) if p.size]
    assert decode_order != sorted(decode_order)  # B-frames
    expected = plain_decode(path, color=False)
    assert [read_barcode(img) for img in expected] == list(range(n))
    order = mixed_order(n, 5, 400)
    with VideoChunkReader(path, color=False) as r:
        for pos in order:
            np.testing.assert_array_equal(r.read(pos), expected[pos], err_msg=f"position {pos}")
        assert r.stats["retries"] == 0
        assert 2 <= r.stats["lanes"] <= VideoChunkReader.MAX_LANES
        # skipping: far fewer frames decoded than a decode from the keyframe each time
        assert r.stats["decoded"] < 0.5 * sum(order)


@pytest.mark.parametrize("store,color", [("motif_libx264_mp4", True), ("motif_libx264_mp4", False),
                                         ("h264_mkv_color", True), ("avc1_mp4_grey", True)])
def test_reference_fixtures_random_reads_equal_a_plain_decode(fixtures_dir, tmp_path, store, color):
    """Files written by other software (yuv444p with B-frames and a 100-frame GOP,
    yuv420p colour with B-frames, limited-range grey) read in mixed order."""
    src = fixtures_dir / store
    name = min(p for p in os.listdir(src) if p.endswith((".mp4", ".mkv")))
    path = str(tmp_path / name)
    shutil.copyfile(src / name, path)  # never open the shared fixtures for more than reading
    expected = plain_decode(path, color)
    n = len(expected)
    with VideoChunkReader(path, color=color) as r:
        assert len(r) == n
        for pos in mixed_order(n, 9, 250):
            img = r.read(pos)
            if color:
                np.testing.assert_array_equal(img, expected[pos], err_msg=f"position {pos}")
            else:  # grey goes through the range table for limited-range video
                assert read_barcode(img[img.shape[0] // 2 - img.shape[0] // 8: img.shape[0] // 2 + img.shape[0] // 8],
                                    bits=16, rows=slice(None)) == pos
        assert r.stats["retries"] == 0


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("size", [(48, 64), (37, 53)], ids=["even", "odd"])
def test_colour_reads_equal_pyav_bgr24(tmp_path, fmt, size):
    """The conversion graph returns exactly what ``to_ndarray(format='bgr24')`` does."""
    need(fmt)
    h, w = size
    path = chunk_path(tmp_path, fmt)
    table, _, _ = write_chunk(path, fmt, 12, h=h, w=w, color=True)
    expected = [img[:h, :w] for img in plain_decode(path, color=True)]
    with VideoChunkReader(path, color=True, height=h, width=w, frame_table=table) as r:
        for pos in (3, 0, 11, 4, 5, 6, 2):
            np.testing.assert_array_equal(r.read(pos), expected[pos])


def test_sequential_reading_switches_to_frame_threads_and_back(tmp_path):
    """Small frames: one thread for random access, frame threads for sequential runs;
    the pixels are the same either way."""
    need("h264/mkv")
    path = chunk_path(tmp_path, "h264/mkv")
    n = 150
    table, _, _ = write_chunk(path, "h264/mkv", n, h=96, w=128, keyframe_interval=25)
    expected = plain_decode(path, color=False)
    with VideoChunkReader(path, color=False, frame_table=table) as r:
        # a reader started at the first frame reads with frame threads from the start
        for i in range(60):
            np.testing.assert_array_equal(r.read(i), expected[i])
        assert r.stats["mode_switches"] == 1 and r.stats["seeks"] == 0 and r.stats["opens"] == 1
        np.testing.assert_array_equal(r.read(7), expected[7])  # a jump: back to one thread
        assert r.stats["mode_switches"] == 2
        for pos in (90, 33, 140, 12):
            np.testing.assert_array_equal(r.read(pos), expected[pos])
        assert r.stats["mode_switches"] == 2
        # a long run of next frames switches again at a keyframe
        start = 13
        for i in range(start, n):
            np.testing.assert_array_equal(r.read(i), expected[i])
        assert r.stats["mode_switches"] == 3
        assert r.stats["retries"] == 0
    with VideoChunkReader(path, color=False, frame_table=table, threads=1) as r:
        for i in range(n):
            r.read(i)
        assert r.stats["mode_switches"] == 0  # an explicit thread count is kept


@pytest.mark.parametrize("color", [False, True])
def test_large_frames_use_slice_threads_for_random_access(tmp_path, monkeypatch, color):
    """Large frames (here: any size, by lowering the threshold) of several slices (our
    writer's) read sequentially with frame threads and randomly with slice threads; every
    core is used either way (one chunk at a time in batches); the pixels equal a plain decode."""
    need("h264/mkv")
    monkeypatch.setattr(VideoChunkReader, "THREADED_PIXELS", 1)
    path = chunk_path(tmp_path, "h264/mkv")
    n = 120
    table, _, _ = write_chunk(path, "h264/mkv", n, h=192, w=256, color=color, keyframe_interval=60)
    expected = plain_decode(path, color=color)
    with VideoChunkReader(path, color=color, frame_table=table) as r:
        assert r._slices == 2  # x264 in sliced-thread mode, as PyAV opens it
        for i in range(10):  # started at the first frame: frame threads
            np.testing.assert_array_equal(r.read(i), expected[i])
        lane = r._lanes[0]
        assert lane.threaded and str(lane.cc.thread_type).endswith("AUTO") and r.parallel_decoding
        for pos in mixed_order(n, 3, 80):
            np.testing.assert_array_equal(r.read(pos), expected[pos], err_msg=f"position {pos}")
        r.read(5)
        r.read(100)  # two jumps: slice threads, one decoder (no lanes for large frames)
        assert r.stats["lanes"] == 1
        lane = r._lanes[0]
        assert not lane.threaded and str(lane.cc.thread_type).endswith("SLICE") and lane.cc.thread_count != 1
        assert r.parallel_decoding
        assert r.stats["retries"] == 0
    with VideoChunkReader(path, color=color, frame_table=table, threads=1) as r:
        for pos in (50, 3, 119):
            np.testing.assert_array_equal(r.read(pos), expected[pos])
        assert r.stats["mode_switches"] == 0 and r._lanes[0].cc.thread_count == 1


def test_large_frames_of_one_slice_keep_frame_threads(tmp_path, monkeypatch):
    """One slice per frame (OpenCV's and FFmpeg's x264 files): slice threads would decode on
    one thread, so random access keeps frame+slice threading."""
    need("h264/mkv")
    monkeypatch.setattr(VideoChunkReader, "THREADED_PIXELS", 1)
    path = str(tmp_path / "one-slice.mkv")
    n = 80
    write_x264(path, n, {"preset": "veryfast", "threads": "1"})
    expected = plain_decode(path, color=False)
    with VideoChunkReader(path, color=False) as r:
        for pos in mixed_order(n, 4, 40):
            np.testing.assert_array_equal(r.read(pos), expected[pos], err_msg=f"position {pos}")
        assert r._slices == 1 and r.parallel_decoding and r.stats["mode_switches"] == 0
        assert all(str(lane.cc.thread_type).endswith("AUTO") for lane in r._lanes)


def test_h264_slices_counts_slice_nal_units():
    from imgstore.backends.pyav.lane import h264_slices

    avcc = bytes([1, 100, 0, 40, 0xFF])  # 4-byte NAL lengths

    def nal(kind: int, size: int = 6) -> bytes:
        return size.to_bytes(4, "big") + bytes([0x60 | kind]) + bytes(size - 1)

    assert h264_slices(nal(9) + nal(6) + nal(5) + nal(5) + nal(5), avcc) == 3  # AUD, SEI, 3 IDR slices
    assert h264_slices(nal(1), avcc) == 1
    assert h264_slices(nal(1) + b"\0\0", avcc) == 0  # trailing bytes: not length-prefixed
    assert h264_slices(nal(1)[:-1], avcc) == 0  # a length past the end
    assert h264_slices(b"\0\0\0\1\x65abc", None) == 0  # Annex B: no avcC header
    assert h264_slices(nal(5), bytes([1, 100, 0, 40, 0xFC])) == 0  # 1-byte lengths do not parse


def test_lanes_are_bounded_and_released(tmp_path):
    need("h264/mkv")
    path = chunk_path(tmp_path, "h264/mkv")
    n = 250
    table, _, _ = write_chunk(path, "h264/mkv", n, keyframe_interval=250)
    with VideoChunkReader(path, color=False, frame_table=table) as r:
        for pos in np.random.default_rng(3).permutation(n)[:120]:
            assert read_barcode(r.read(int(pos))) == pos
        assert r.stats["lanes"] == VideoChunkReader.MAX_LANES
        assert r.stats["opens"] == VideoChunkReader.MAX_LANES  # lanes are reused, not reopened
        r.close()
        assert read_barcode(r.read(200)) == 200  # reopens after close()
    # a short GOP never opens a second lane: every target is near its keyframe
    table, _, _ = write_chunk(path, "h264/mkv", n, keyframe_interval=25)
    with VideoChunkReader(path, color=False, frame_table=table) as r:
        for pos in np.random.default_rng(4).permutation(n)[:60]:
            assert read_barcode(r.read(int(pos))) == pos
        assert r.stats["lanes"] == 1
