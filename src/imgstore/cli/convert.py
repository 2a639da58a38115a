"""``imgstore-convert SRC DEST --format FMT``: copy a store into another format, or export a video.

The new store keeps every frame's frame_number and frame_time, the user metadata, the
extra data (each record re-added after its frame, with its own columns) and the
recording's creation time and time zone; it gets a new uuid. ``--to-video`` writes one
ordinary H.264 video (for sharing or editing) plus a CSV mapping its frames back to the
store: ``frame_index,frame_number,frame_time``. ``--to-nwb`` writes an NWB file instead
(:mod:`imgstore.integrations.nwb`).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import sys
import warnings
from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from ._common import (
    EXIT_INTERRUPTED,
    ArgumentParser,
    CLIError,
    UsageError,
    add_storage_options,
    check_format,
    describe_error,
    open_for_reading,
    positive_float,
    positive_int,
    resolve_format,
    run_command,
    to_uint8,
    writing_options,
)

if TYPE_CHECKING:
    from ..backends.base import ImgStore

__all__ = ["VideoExporter", "convert_store", "extra_records", "main"]

PROG = "imgstore-convert"
#: x264 constant rate factor of --to-video when --quality is not given (visually lossless)
DEFAULT_VIDEO_CRF = 18

EPILOG = """\
examples:
  imgstore-convert /data/motif_run /data/run_ffv1 --format ffv1/mkv      lossless archive copy
  imgstore-convert /data/pngs /data/pngs_h264 --format h264/mkv --quality 20
  imgstore-convert /data/run1 --to-video run1.mp4       run1.mp4 + run1.csv (frame_index,frame_number,frame_time)
  imgstore-convert /data/run1 --to-nwb run1.nwb         NWB ImageSeries over the store's video files (DANDI's form)

Frame numbers, frame times, user metadata, extra data, the creation time and the time
zone are kept; the new store gets its own uuid.
"""

_RESERVED = ("frame_number", "frame_time", "frame_index")


# ---------------------------------------------------------------------- extra data

def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _given(value: Any) -> Any | None:
    """``value``, or None when it is missing (None or NaN: a column a record did not have)."""
    return None if _is_missing(value) else value


def extra_records(store) -> list[dict[str, Any]]:
    """Every extra-data record of ``store``, each with only its own keys.

    Records of imgstore's own files (``.extra.json``) are read as written, so a record
    keeps exactly the keys it was given. Other files (Motif ``.extra_data.*``) are read
    through :meth:`~imgstore.ImgStore.get_extra_data`; a key whose value is missing
    (NaN, None) in a row is then dropped from that record.
    """
    from .. import ondisk

    paths = store.find_extra_data_files()
    if not paths:
        return []
    if all(p.endswith((ondisk.EXTRA_JSON_SUFFIX, ondisk.EXTRA_JOURNAL_SUFFIX)) for p in paths):
        records: list[dict[str, Any]] = []
        for path in paths:
            records.extend(ondisk.read_extra_json(path, storage=store.storage))
        return records
    df = store.get_extra_data()
    if df is None:
        return []
    return [{k: v for k, v in row.items() if not _is_missing(v)} for row in df.to_dict("records")]


def _records_by_index(store, records: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Group records by the frame_index they belong to (-1: before the first frame)."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        idx = _given(rec.get("frame_index"))
        if idx is None:
            # files without frame_index (some Motif files): place by frame_number, else by time
            fn, ft = _given(rec.get("frame_number")), _given(rec.get("frame_time"))
            if fn is not None:
                idx = store.frame_index_of(int(fn), exact=False)
            elif ft is not None:
                idx = store.frame_index_at_time(float(ft))
            else:
                idx = -1
        out[int(idx)].append(rec)
    return out


# ---------------------------------------------------------------------- ordinary video

class VideoExporter:
    """Writes frames into one ordinary H.264 video (yuv420p, constant frame rate) with PyAV.

    Odd frame sizes are padded with black by one row/column (yuv420p needs even sizes);
    16-bit and float frames are reduced to 8 bits.

    Parameters
    ----------
    path
        The video file (``.mp4``, ``.mkv``, ``.mov``...).
    width, height
        Frame size.
    fps
        Frame rate of the video.
    crf
        x264 constant rate factor (0 lossless... 51 worst; 18 looks lossless).
    """

    def __init__(self, path: str, width: int, height: int, fps: float, crf: int = DEFAULT_VIDEO_CRF) -> None:
        import av

        self._av = av
        self.path = path
        self.width, self.height = width + width % 2, height + height % 2
        rate = Fraction(fps).limit_denominator(1001)
        try:
            self._container = av.open(path, "w")
        except av.error.FFmpegError as exc:
            raise CLIError(f"cannot create video file {path!r}: {exc}") from None
        try:
            self._stream = self._container.add_stream("libx264", rate=rate)
        except Exception as exc:
            self._container.close()
            raise CLIError(f"this PyAV has no H.264 encoder (libx264): {exc}") from None
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(int(crf)), "preset": "medium"}
        self._stream.codec_context.time_base = Fraction(1) / rate
        self._n = 0
        self._open = True

    def write(self, img: np.ndarray) -> None:
        """Append one frame (grey or BGR, any dtype)."""
        img = to_uint8(img)
        h, w = img.shape[:2]
        if (h, w) != (self.height, self.width):
            pad = [(0, self.height - h), (0, self.width - w)] + ([(0, 0)] if img.ndim == 3 else [])
            img = np.pad(img, pad)
        fmt = "bgr24" if img.ndim == 3 else "gray"
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=fmt)
        frame.pts = self._n
        self._n += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        if not self._open:
            return
        self._open = False
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()


def _estimated_fps(store) -> float | None:
    """Frame rate from the median frame interval (robust to pauses)."""
    ft = np.asarray(store.frame_times, dtype=np.float64)
    if len(ft) < 2:
        return None
    median = float(np.median(np.diff(ft)))
    return 1.0 / median if median > 0 else None


def _source_fps(store, requested: float | None) -> float | None:
    if requested:
        return requested
    options = store.metadata.get("video_options") or {}
    if isinstance(options, dict) and options.get("fps"):
        return float(options["fps"])
    return _estimated_fps(store)


def _same_backend(src, fmt: str) -> bool:
    """True if the store class writing ``fmt`` keeps its frames as ``src``'s does (same chunk sizes make sense)."""
    from ..backends import registry

    dest_cls = registry.class_for_format(fmt)
    src_backend = getattr(type(src), "backend_class", None)
    return dest_cls is not None and src_backend is not None and dest_cls.backend_class is src_backend


def _copy_recording_time(src, dest_path: str) -> None:
    """Give the new store the source's creation time and time zone.

    ``new_for_format`` stamps a new store with now and this machine's zone; a converted
    recording is still the same recording, and its local times must not move.
    """
    from .. import ondisk

    created_utc, tz = src.created
    md_path = os.path.join(dest_path, ondisk.STORE_MD_FILENAME)
    smd, user = ondisk.read_metadata(md_path)
    smd.created_utc = created_utc.astimezone(datetime.timezone.utc).replace(tzinfo=None).isoformat()
    key = getattr(tz, "key", None)
    if key:
        smd.timezone_local = key
    ondisk.write_metadata(md_path, smd, user)


# ---------------------------------------------------------------------- conversion

class DamagedSourceError(CLIError):
    """A source frame could not be read and ``skip_damaged`` was not asked for."""


def _ranges(values: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``'1-3, 7'`` (sorted input)."""
    runs: list[list[int]] = []  # [first, last] of each run of consecutive values
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(f"{first}-{last}" if last != first else f"{first}" for first, last in runs)


def resume_position(src, dest: str) -> int:
    """The frame_index of ``src`` to continue an interrupted conversion into ``dest`` from.

    The last frame of ``dest`` (its frame_number and frame_time) is looked up in ``src``;
    the conversion continues after it.

    Raises
    ------
    CLIError
        ``dest`` does not hold a conversion of ``src``.
    """
    import imgstore

    with imgstore.new_for_filename(dest) as done:
        if len(done) == 0:
            return 0
        last_fn = int(done.frame_numbers[-1])
        last_ft = float(done.frame_times[-1])
    fns = np.asarray(src.frame_numbers)
    fts = np.asarray(src.frame_times)
    hits = np.flatnonzero((fns == last_fn) & (np.abs(fts - last_ft) < 1e-6))
    if not len(hits):
        raise CLIError(f"{dest} is not a conversion of {src.filename}: its last frame (#{last_fn} at "
                       f"{last_ft!r}) is not in the source")
    return int(hits[-1]) + 1


def convert_store(src, dest: str | None, fmt: str | None, *, chunksize: int | None = None,
                  quality: int | None = None, fps: float | None = None, overwrite: bool = False,
                  to_video: str | None = None, progress: bool = True, skip_damaged: bool = False,
                  resume: bool = False, stop=None) -> dict[str, Any]:
    """Copy the frames of ``src`` into a new store and/or an ordinary video, in one pass.

    Parameters
    ----------
    src
        A store opened for reading.
    dest, fmt
        The new store's folder and format (None: no store).
    chunksize, quality, fps
        Options of the new store (fps and quality also apply to ``to_video``).
    overwrite
        Replace an existing store at ``dest``.
    to_video
        Also write an H.264 video here, and ``<name>.csv`` beside it.
    progress
        Show a progress bar on stderr.
    skip_damaged
        Leave out source frames that cannot be read (listed in ``skipped``) instead of stopping.
    resume
        ``dest`` holds an interrupted conversion: append the frames after its last one.
    stop
        Checked between frames (true: stop); the destination is then closed as a valid,
        shorter store.

    Returns
    -------
    dict
        ``frames`` written, ``extra_records`` re-added, ``mismatched_extra`` (records whose
        own frame_number/frame_time differ from their frame's; the store sets those),
        ``csv`` (path or None), ``skipped`` (``[frame_index, frame_number, error]`` of each
        unreadable frame left out), ``resumed_from`` (frame_index, or None), ``interrupted``.

    Raises
    ------
    DamagedSourceError
        A frame cannot be read (without ``skip_damaged``); ``dest`` is closed first and
        holds the frames before it.
    """
    from tqdm import tqdm

    import imgstore

    from ..errors import ImgStoreError, StoreWriteError

    n = len(src)
    shape = tuple(src.image_shape)
    store = None
    exporter = None
    by_index: dict[int, list[dict[str, Any]]] = {}
    result: dict[str, Any] = {"frames": 0, "extra_records": 0, "mismatched_extra": 0, "csv": None, "skipped": [],
                              "resumed_from": None, "interrupted": False}
    fps_value = _source_fps(src, fps)
    start = 0
    if resume:
        if dest is None or to_video is not None:
            raise UsageError("--resume continues a store conversion (DEST); a --to-video export starts again")
        start = resume_position(src, dest)
        result["resumed_from"] = start
    if dest is not None:
        assert fmt is not None
        by_index = _records_by_index(src, extra_records(src))
        if resume:
            store = imgstore.new_for_filename(dest, mode="a")
            if resolve_format(store.format) != resolve_format(fmt):
                store.close()
                raise UsageError(f"--format {fmt} but {dest} is a {store.format} store")
        else:
            options, not_taken = writing_options(fmt, fps=fps_value, quality=quality)
            if "quality" in not_taken and to_video is None:
                warnings.warn(f"--quality does not apply to format {fmt}; ignored", stacklevel=1)
            if chunksize is None and _same_backend(src, fmt):
                chunksize = src.chunksize  # same kind of backend: keep the chunking
            if chunksize is not None:
                options["chunksize"] = chunksize
            store = imgstore.new_for_format(fmt, basedir=dest, imgshape=shape, imgdtype=src.image_dtype,
                                            metadata=dict(src.user_metadata), overwrite=overwrite, **options)
    csv_file = None
    fns = np.asarray(src.frame_numbers)
    fts = np.asarray(src.frame_times)
    damaged: str | None = None
    try:
        if to_video is not None:
            exporter = VideoExporter(to_video, width=shape[1], height=shape[0], fps=fps_value or 25.0,
                                     crf=DEFAULT_VIDEO_CRF if quality is None else quality)
            result["csv"] = os.path.splitext(to_video)[0] + ".csv"
            csv_file = open(result["csv"], "w", newline="")  # noqa: SIM115 - closed in the finally below
            writer = csv.writer(csv_file)
            writer.writerow(["frame_index", "frame_number", "frame_time"])

        def _add_extra(target: ImgStore, index: int) -> None:
            for rec in by_index.get(index, ()):
                target.add_extra_data(**{k: v for k, v in rec.items() if k not in _RESERVED})
                result["extra_records"] += 1
                own_fn, own_ft = _given(rec.get("frame_number")), _given(rec.get("frame_time"))
                if index >= 0 and ((own_fn is not None and own_fn != target.frame_number)
                                   or (own_ft is not None and abs(own_ft - target.frame_time) > 1e-3)):
                    result["mismatched_extra"] += 1

        if store is not None and start == 0:
            _add_extra(store, -1)  # records added before the first frame
        targets = " and ".join(x for x in (dest, to_video) if x)
        with tqdm(total=n, initial=start, unit=" frames", desc=f"converting to {targets}", file=sys.stderr,
                  dynamic_ncols=True, mininterval=0.25, disable=not progress) as bar:
            for index in range(start, n):
                if stop:
                    result["interrupted"] = True
                    break
                frame_number, frame_time = int(fns[index]), float(fts[index])
                try:
                    img = src[index]
                except (ImgStoreError, OSError) as exc:
                    if isinstance(exc, StoreWriteError):
                        raise
                    if not skip_damaged:
                        damaged = (f"source frame_index {index} (frame_number {frame_number}) cannot be read: "
                                   f"{describe_error(exc)}")
                        break
                    result["skipped"].append([index, frame_number, describe_error(exc)])
                    bar.update(1)
                    continue
                if store is not None:
                    store.add_image(img, frame_number, frame_time)
                    _add_extra(store, index)
                if exporter is not None:
                    exporter.write(img)
                    writer.writerow([index, frame_number, repr(frame_time)])
                result["frames"] += 1
                bar.update(1)
        if store is not None and damaged is None and not result["interrupted"]:
            # records pointing past the last frame (should not happen) are not lost
            for index in sorted(i for i in by_index if i >= n):
                _add_extra(store, index)
    finally:
        if store is not None:
            store.close()
        if exporter is not None:
            exporter.close()
        if csv_file is not None:
            csv_file.close()
    if dest is not None and not resume:
        _copy_recording_time(src, dest)
    if damaged is not None:
        kept = f"; {dest} is a valid store of the {start + result['frames']} frames before it" if dest else ""
        raise DamagedSourceError(f"{damaged}{kept} (--skip-damaged leaves such frames out; "
                                 f"imgstore-verify {src.filename} lists them all)")
    return result


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = ArgumentParser(prog=PROG, description="Convert a store to another format (keeping frame numbers, "
                                              "times, metadata and extra data), and/or export it as one "
                                              "ordinary H.264 video with a CSV of frame numbers and times.",
                       epilog=EPILOG)
    p.add_argument("src", help="the store to convert (a folder, or a URL: s3://bucket/store, https://...)")
    add_storage_options(p)
    p.add_argument("dest", nargs="?", help="folder of the new store (needs --format)")
    p.add_argument("--format", metavar="FMT", help="format of the new store, e.g. ffv1/mkv, h264/mkv, png, npy")
    p.add_argument("--chunksize", type=positive_int, metavar="N",
                   help="frames per chunk (default: the source's when both are video or both directory "
                        "stores, else the format's default)")
    p.add_argument("--quality", type=int, help="encoder quality (H.264: crf, lower is better; jpg: 0-100)")
    p.add_argument("--fps", type=positive_float, help="frame rate of video output (default: the source's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at DEST")
    p.add_argument("--to-video", metavar="FILE.mp4",
                   help="also (or only) export an ordinary H.264 video, plus FILE.csv beside it")
    p.add_argument("--to-nwb", metavar="FILE.nwb",
                   help="instead, write an NWB file whose ImageSeries references the store's video files "
                        "(embeds the frames of directory stores), timestamps = frame_time (needs imgstore[nwb])")
    p.add_argument("--embed-frames", action="store_true", help="--to-nwb: embed the frames even of video stores")
    p.add_argument("--skip-damaged", action="store_true",
                   help="leave out source frames that cannot be read (they are listed) instead of stopping")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted conversion into DEST after its last frame")
    return p


def run(args: argparse.Namespace) -> int:
    """Body of the command."""
    import imgstore

    from .save import StopFlag

    if args.to_nwb is not None:
        return _run_to_nwb(args)
    if args.embed_frames:
        raise UsageError("--embed-frames applies to --to-nwb")
    if args.dest is None and args.to_video is None:
        raise UsageError("give DEST (with --format), --to-video FILE.mp4 or --to-nwb FILE.nwb")
    fmt = None
    if args.dest is not None:
        if args.format is None and not args.resume:
            raise UsageError("--format is required to write a store (e.g. --format ffv1/mkv)")
        if os.path.abspath(args.dest) == os.path.abspath(args.src):
            raise UsageError("DEST must differ from SRC")
        if args.resume:
            if args.overwrite:
                raise UsageError("--resume keeps what DEST holds; --overwrite would replace it")
            with imgstore.new_for_filename(args.dest) as done:  # a missing DEST is reported here
                fmt = resolve_format(args.format or done.format)
        fmt = check_format(fmt or args.format)
    elif args.format is not None:
        raise UsageError("--format applies to a DEST store; none was given")
    if args.to_video is not None:
        if os.path.splitext(args.to_video)[1].lower() == ".csv" or not os.path.splitext(args.to_video)[1]:
            raise UsageError(f"--to-video {args.to_video!r}: give a video file name such as run.mp4")
        if os.path.exists(args.to_video) and not args.overwrite:
            raise CLIError(f"{args.to_video} exists (use --overwrite to replace it)")
    stop = StopFlag()
    with open_for_reading(args.src, args) as src:
        if len(src) == 0:
            raise CLIError(f"{args.src} has no frames")
        # Ctrl-C must not land inside the encoder: it is noted, and the loop stops between frames
        stop.install()
        try:
            result = convert_store(src, args.dest, fmt, chunksize=args.chunksize, quality=args.quality,
                                   fps=args.fps, overwrite=args.overwrite, to_video=args.to_video,
                                   skip_damaged=args.skip_damaged, resume=args.resume, stop=stop)
        finally:
            stop.restore()
    if result["skipped"]:
        numbers = [fn for _, fn, _ in result["skipped"]]
        print(f"skipped {len(numbers)} unreadable source frame{'s' * (len(numbers) != 1)}: frame_number "
              f"{_ranges(sorted(numbers))} (first error: {result['skipped'][0][2]})")
    done = f"resumed at frame_index {result['resumed_from']}: " if result["resumed_from"] is not None else ""
    if args.dest is not None:
        extra = f", {result['extra_records']} extra-data records" if result["extra_records"] else ""
        print(f"{done}wrote {result['frames']} frames{extra} to {args.dest} ({fmt})")
        if result["mismatched_extra"]:
            warnings.warn(f"{result['mismatched_extra']} extra-data records had a frame_number/frame_time "
                          f"of their own; they now carry those of the frame they follow", stacklevel=1)
    if args.to_video is not None:
        print(f"wrote {result['frames']} frames to {args.to_video} and their numbers and times to {result['csv']}")
    if result["interrupted"]:
        import signal

        name = signal.Signals(stop.signal).name if stop.signal else "interrupted"
        hint = f"; continue with: imgstore-convert {args.src} {args.dest} --resume" if args.dest else ""
        print(f"stopped early ({name}): {args.dest or args.to_video} is complete up to there{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _run_to_nwb(args: argparse.Namespace) -> int:
    """``--to-nwb``: the store as an NWB ImageSeries (see :mod:`imgstore.integrations.nwb`)."""

    if args.dest is not None or args.to_video is not None or args.format is not None or args.resume:
        raise UsageError("--to-nwb writes only the NWB file: give no DEST, --format, --to-video or --resume")
    if os.path.exists(args.to_nwb) and not args.overwrite:
        raise CLIError(f"{args.to_nwb} exists (use --overwrite to replace it)")
    from ..integrations.nwb import store_to_nwb

    with open_for_reading(args.src, args) as src:
        if len(src) == 0:
            raise CLIError(f"{args.src} has no frames")
        store_to_nwb(src, args.to_nwb, embed=True if args.embed_frames else None, overwrite=args.overwrite)
        how = "embedded" if args.embed_frames or src.class_name != "VideoImgStore" else "referenced"
        print(f"wrote {args.to_nwb}: ImageSeries of {len(src)} frames ({how}), timestamps = frame_time")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run ``imgstore-convert``; returns the exit status."""
    return run_command(prog, build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
