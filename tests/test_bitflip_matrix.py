"""The bit-flip matrix: one byte of a closed store flipped anywhere, in every format -- never a wrong frame.

Each trial copies a pristine store, flips one byte of one of its files (a frame file or video
chunk most often, else a chunk index, the extra data, ``metadata.yaml`` or the index cache) and
reads every frame, by frame_number and by frame_index. Every read must return exactly what the
pristine store returns for that frame (pixels, frame_number, frame_time) or raise a named
error; a store that refuses to open must say why with a named error too. The short run (CI)
flips a few bytes per format; ``--runslow`` flips ``IMGSTORE_BITFLIP_TRIALS`` (default 60)
per format and prints how each flip was caught.
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import warnings

import numpy as np
import pytest

import imgstore
from imgstore import errors
from imgstore.testing.barcode import make_frame

DIRECTORY_FORMATS = ["npy", "png", "jpg", "bmp", "tif", "pgm", "ppm"]
VIDEO_FORMATS = ["mjpeg/avi", "avc1/mp4", "h264/mkv", "hevc/mp4", "h264-lossless/mkv", "ffv1/mkv"]
SHAPE = (48, 64)
CHUNKSIZE = 12
N_FRAMES = 24
#: what a read of a damaged store may raise instead of returning the frame
NAMED = (errors.ChunkReadError, errors.FrameNotFoundError, errors.IndexCorruptError, errors.FrameIndexError)


def formats() -> list[str]:
    supported = set(imgstore.get_supported_formats())
    return DIRECTORY_FORMATS + [f for f in VIDEO_FORMATS if f in supported]


def write_store(path: str, fmt: str) -> str:
    with imgstore.new_for_format(fmt, basedir=path, imgshape=SHAPE, imgdtype="uint8", chunksize=CHUNKSIZE) as s:
        for i in range(N_FRAMES):
            s.add_image(make_frame(i, *SHAPE), 1000 + i, 1_700_000_000.0 + i / 25)
            s.add_extra_data(sensor=i)
    return path


def read_all(path: str) -> dict[int, tuple[np.ndarray, float]]:
    with imgstore.new_for_filename(path) as s:
        return {fn: (s.get_image(fn)[0].copy(), float(ft)) for fn, ft in zip(s.frame_numbers, s.frame_times,
                                                                            strict=True)}


def pick_byte(path: str, rng: random.Random) -> tuple[str, int]:
    """A file of the store (payloads most often) and a byte offset in it."""
    files = []
    for root, _, names in os.walk(path):
        files += [os.path.join(root, n) for n in names if os.path.getsize(os.path.join(root, n))]
    payloads = [f for f in files if not f.endswith((".npz", ".json", ".yaml", ".cache"))]
    chosen = rng.choice(payloads) if rng.random() < 0.7 else rng.choice(files)
    return chosen, rng.randrange(os.path.getsize(chosen))


def flip(path: str, offset: int, mask: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


def trial(pristine: str, expected: dict[int, tuple[np.ndarray, float]], work: str, rng: random.Random) -> str:
    """One flip; returns how it ended: 'harmless', 'refused' (open failed by name) or 'caught'."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(pristine, work)
    target, offset = pick_byte(work, rng)
    flip(target, offset, rng.randrange(1, 256))
    where = f"{os.path.relpath(target, work)} byte {offset}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
        try:
            store = imgstore.new_for_filename(work)
        except errors.ImgStoreError:
            return "refused"
        caught = False
        with store:
            for fn, (img, ft) in expected.items():
                try:
                    got, (got_fn, got_ft) = store.get_image(fn)
                except NAMED:
                    caught = True
                    continue
                assert got_fn == fn and got_ft == ft, f"{where}: frame #{fn} came back as #{got_fn} at {got_ft}"
                np.testing.assert_array_equal(got, img, err_msg=f"{where}: frame #{fn} has other pixels")
            for i in range(store.frame_count):
                try:
                    got, (got_fn, got_ft) = store.get_image(None, frame_index=i)
                except NAMED:
                    caught = True
                    continue
                assert got_fn in expected, f"{where}: frame_index {i} gives an unknown frame #{got_fn}"
                img, ft = expected[got_fn]
                assert got_ft == ft, f"{where}: frame_index {i}: #{got_fn} at {got_ft}, written at {ft}"
                np.testing.assert_array_equal(got, img, err_msg=f"{where}: frame_index {i} (#{got_fn})")
            caught |= store.frame_count < len(expected) or bool(store.damaged_chunks)
    return "caught" if caught else "harmless"


def run_matrix(tmp_path, fmt: str, trials: int, seed: int) -> collections.Counter:
    pristine = write_store(str(tmp_path / "pristine"), fmt)
    expected = read_all(pristine)
    rng = random.Random(seed)
    outcomes: collections.Counter = collections.Counter()
    for _ in range(trials):
        outcomes[trial(pristine, expected, str(tmp_path / "damaged"), rng)] += 1
    return outcomes


@pytest.mark.parametrize("fmt", formats())
def test_bitflip_short(tmp_path, fmt):
    """CI: a few flips per format, each caught or harmless, never a wrong frame."""
    outcomes = run_matrix(tmp_path, fmt, trials=6, seed=sum(map(ord, fmt)))
    assert sum(outcomes.values()) == 6


def payload_middle(path: str) -> int:
    """The offset of a byte in the middle of the frame data: of a frame file, of a video chunk's largest packet."""
    if not path.endswith(tuple(f".{ext}" for ext in ("mkv", "mp4", "avi"))):
        return os.path.getsize(path) * 2 // 3
    import av

    with av.open(path) as container:
        largest = max((p for p in container.demux(container.streams.video[0]) if p.size), key=lambda p: p.size)
        # a demuxer's pos may point at the block header before the data (Matroska, AVI)
        return int(largest.pos) + largest.size * 2 // 3


def read_outcomes(path: str, expected: dict[int, tuple[np.ndarray, float]], fmt: str) -> list[str]:
    """Read every frame by number; the names of the errors raised (a frame returned must be exact)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", imgstore.ImgStoreWarning)
        with imgstore.new_for_filename(path) as s:
            outcomes = []
            for fn, (img, _) in expected.items():
                try:
                    got = s.get_image(fn)[0]
                except errors.ChunkReadError as exc:
                    outcomes.append(type(exc).__name__)
                    continue
                np.testing.assert_array_equal(got, img, err_msg=f"{fmt}: frame #{fn} silently wrong")
    return outcomes


def first_payload(path: str, fmt: str) -> str:
    payload = sorted(p for p in os.listdir(path) if p.startswith("000000") and not p.endswith((".npz", ".json")))[0]
    target = os.path.join(path, payload)
    return os.path.join(target, f"000005.{fmt}") if os.path.isdir(target) else target


@pytest.mark.parametrize("fmt", formats())
def test_payload_flip_is_caught(tmp_path, fmt):
    """A byte flipped in the middle of a frame's data is always caught (never harmless)."""
    pristine = write_store(str(tmp_path / "pristine"), fmt)
    expected = read_all(pristine)
    target = first_payload(pristine, fmt)
    flip(target, payload_middle(target), 0x01)
    outcomes = read_outcomes(pristine, expected, fmt)
    assert "ChunkCorruptError" in outcomes, f"{fmt}: a damaged frame read as if intact ({outcomes})"


@pytest.mark.parametrize("fmt", [f for f in formats() if f in VIDEO_FORMATS and f != "mjpeg/avi"])
def test_codec_header_flip_is_caught(tmp_path, fmt):
    """A byte flipped in a video chunk's codec header (SPS/PPS...) fails every frame of the chunk by name."""
    import av

    pristine = write_store(str(tmp_path / "pristine"), fmt)
    expected = read_all(pristine)
    target = first_payload(pristine, fmt)
    with av.open(target) as container:
        header = bytes(container.streams.video[0].codec_context.extradata or b"")
    assert header, f"{fmt} was expected to have a codec header"
    with open(target, "rb") as f:
        at = f.read().find(header)
    assert at > 0, f"{fmt}: the codec header is not stored verbatim in {target}"
    flip(target, at + len(header) // 2, 0x01)
    outcomes = read_outcomes(pristine, expected, fmt)
    assert outcomes.count("ChunkCorruptError") == CHUNKSIZE, f"{fmt}: {outcomes}"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", formats())
def test_bitflip_long(tmp_path, fmt):
    trials = int(os.environ.get("IMGSTORE_BITFLIP_TRIALS", "60"))
    outcomes = run_matrix(tmp_path, fmt, trials=trials, seed=int(os.environ.get("IMGSTORE_BITFLIP_SEED", "7")))
    print(f"\n{fmt}: {dict(outcomes)} of {trials} flips")
    assert sum(outcomes.values()) == trials


@pytest.mark.parametrize("fmt", [f for f in formats() if f.endswith("/mkv")])
def test_container_picture_size_flip_is_never_a_wrong_frame(tmp_path, fmt):
    """Matroska's PixelWidth flipped (64 -> 65): FFV1 takes the picture size from the container, so
    its frames would decode wrong with intact packets; the checksums cover the size too."""
    pristine = write_store(str(tmp_path / "pristine"), fmt)
    expected = read_all(pristine)
    target = first_payload(pristine, fmt)
    with open(target, "rb") as f:
        at = f.read().find(b"\xb0\x81" + bytes([SHAPE[1]]))  # PixelWidth, one byte: 64
    assert at > 0
    flip(target, at + 2, 0x01)
    outcomes = read_outcomes(pristine, expected, fmt)  # a frame returned must be exact
    if fmt == "ffv1/mkv":
        assert outcomes.count("ChunkCorruptError") == CHUNKSIZE, outcomes
