"""``imgstore-info STORE``: what is in a store, and which frames were dropped.

Dropped frames show up two ways: gaps in the camera's ``frame_number`` (the camera
counted frames that never reached the store) and pauses in ``frame_time`` (intervals
far longer than the typical one: the camera or the writer stalled).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import (
    ArgumentParser,
    UsageError,
    add_storage_options,
    format_duration,
    format_local,
    open_for_reading,
    recording_timezone,
    run_command,
    to_json,
)

__all__ = [
    "format_summary",
    "frame_number_gaps",
    "interval_figure",
    "long_intervals",
    "main",
    "plot_intervals",
    "summarize",
]

PROG = "imgstore-info"
#: an interval longer than this many median intervals counts as a pause
LONG_INTERVAL_FACTOR = 1.5
#: how many of the largest gaps/pauses are listed
TOP = 5
#: chunks the cheap damage check looks at (the last ones: a copy cut short loses the end)
QUICK_CHECK_CHUNKS = 200

EPILOG = """\
examples:
  imgstore-info /data/mouse1                     human summary
  imgstore-info /data/mouse1 --json | jq .dropped
  imgstore-info /data/mouse1 --plot intervals.png   frame interval over time, drops marked
"""


def frame_number_gaps(frame_numbers: np.ndarray, frame_times: np.ndarray | None = None, tz: Any = None,
                      top: int = TOP) -> dict[str, Any]:
    """Missing frame numbers: how many, in how many gaps, and the largest gaps.

    Gaps are found between consecutive *distinct* frame numbers in numerical order, so
    a store written out of order is not reported as dropping frames it has.

    Parameters
    ----------
    frame_numbers
        frame_number of every frame in store order.
    frame_times
        frame_time of every frame in store order (to say when a gap happened).
    tz
        Time zone for the ``at`` strings.
    top
        How many of the largest gaps to list.

    Returns
    -------
    dict
        ``missing`` (frame numbers never stored), ``gaps`` (runs of missing numbers),
        ``out_of_order`` (steps where the number went down), ``repeated`` (frames whose
        number was already stored) and ``largest``: the ``top`` largest gaps, each
        ``{after, before, missing, frame_index, at}`` (``frame_index``/``at``: the frame after
        the gap).
    """
    fn = np.asarray(frame_numbers, dtype=np.int64)
    out: dict[str, Any] = {"missing": 0, "gaps": 0, "out_of_order": 0, "repeated": 0, "largest": []}
    if len(fn) < 2:
        return out
    steps = np.diff(fn)
    out["out_of_order"] = int((steps < 0).sum())
    uniq, first_index = np.unique(fn, return_index=True)
    out["repeated"] = int(len(fn) - len(uniq))
    jumps = np.diff(uniq)
    where = np.flatnonzero(jumps > 1)
    missing = jumps[where] - 1
    out["missing"] = int(missing.sum())
    out["gaps"] = len(where)
    order = np.argsort(-missing, kind="stable")[:top]
    for k in order:
        i = int(where[k])
        frame_index = int(first_index[i + 1])
        gap: dict[str, Any] = {"after": int(uniq[i]), "before": int(uniq[i + 1]), "missing": int(missing[k]),
               "frame_index": frame_index}
        if frame_times is not None:
            gap["at"] = format_local(float(frame_times[frame_index]), tz)
        out["largest"].append(gap)
    return out


def long_intervals(frame_times: np.ndarray, frame_numbers: np.ndarray | None = None, tz: Any = None,
                   factor: float = LONG_INTERVAL_FACTOR, top: int = TOP) -> dict[str, Any]:
    """Intervals between consecutive frames (store order) longer than ``factor`` x the median.

    Returns
    -------
    dict
        ``median_s``, ``threshold_s``, ``factor``, ``count``, ``backwards`` (intervals
        where time went back), ``largest``: the ``top`` longest intervals, each
        ``{frame_index, frame_number, interval_s, ratio, at}`` for the frame that ended it.
    """
    ft = np.asarray(frame_times, dtype=np.float64)
    out: dict[str, Any] = {"median_s": None, "threshold_s": None, "factor": factor, "count": 0,
                           "backwards": 0, "largest": []}
    if len(ft) < 2:
        return out
    dt = np.diff(ft)
    out["backwards"] = int((dt < 0).sum())
    median = float(np.median(dt))
    out["median_s"] = median
    if not median > 0:
        return out
    threshold = factor * median
    out["threshold_s"] = threshold
    where = np.flatnonzero(dt > threshold)
    out["count"] = len(where)
    for k in np.argsort(-dt[where], kind="stable")[:top]:
        i = int(where[k]) + 1
        item = {"frame_index": i, "interval_s": float(dt[i - 1]), "ratio": float(dt[i - 1] / median),
                "at": format_local(float(ft[i]), tz)}
        if frame_numbers is not None:
            item["frame_number"] = int(frame_numbers[i])
        out["largest"].append(item)
    return out


def _lossless(store) -> bool | None:
    try:
        return bool(store.lossless)
    except Exception:  # e.g. the video layer cannot be loaded: report "unknown" rather than fail
        return None


def _quick_check(store) -> dict[str, Any]:
    """What can be seen of damage without decoding (see :func:`imgstore.verify.quick_check`)."""
    from ..verify import quick_check

    chunks = len(store.chunks)
    try:
        notes = quick_check(store, max_chunks=QUICK_CHECK_CHUNKS)
    except Exception as exc:  # a report, not a verdict: never let it stop the summary
        notes = [f"could not check: {' '.join(str(exc).split())}"]
    return {"problems": notes, "chunks_checked": min(chunks, QUICK_CHECK_CHUNKS), "chunks": chunks}


def summarize(store) -> dict[str, Any]:
    """Everything ``imgstore-info`` reports about an open (read) store, JSON-serialisable.

    Parameters
    ----------
    store
        A store opened for reading (:func:`imgstore.new_for_filename`).
    """
    created_utc = store.created[0]
    tz = recording_timezone(store)
    fn = np.asarray(store.frame_numbers)
    ft = np.asarray(store.frame_times)
    n = len(fn)
    duration = float(store.duration) if n else 0.0
    smd = store.metadata
    info: dict[str, Any] = {
        "path": store.filename,
        "format": store.format,
        "class": smd.get("class"),
        "uuid": store.uuid,
        "lossless": _lossless(store),
        # frames read out of order cost about as much as in order (the store class says so)
        "random_access": bool(type(store).supports_random_access),
        "encoding": store.encoding,
        "image_shape": [int(x) for x in store.image_shape],
        "image_dtype": str(store.image_dtype),
        "color": len(store.image_shape) == 3 and store.image_shape[2] == 3,
        "chunksize": int(store.chunksize),
        "chunks": [int(c) for c in store.chunks],
        "frame_count": n,
        "frame_number_min": int(fn.min()) if n else None,
        "frame_number_max": int(fn.max()) if n else None,
        "timezone": str(getattr(tz, "key", tz)) if tz is not None else None,
        "created": created_utc.astimezone(tz).isoformat() if created_utc is not None else None,
        "frame_time_min": float(ft.min()) if n else None,
        "frame_time_max": float(ft.max()) if n else None,
        "start": format_local(float(ft.min()), tz) if n else None,
        "end": format_local(float(ft.max()), tz) if n else None,
        "duration_s": duration,
        "mean_fps": (n - 1) / duration if n > 1 and duration > 0 else None,
        "dropped": frame_number_gaps(fn, ft, tz),
        "long_intervals": long_intervals(ft, fn, tz),
        "damaged_chunks": {str(k): v for k, v in getattr(store, "damaged_chunks", {}).items()},
        "user_metadata": dict(store.user_metadata),
        "extra_data": None,
        "store_metadata": smd,
    }
    info["quick_check"] = _quick_check(store)
    extra = store.get_extra_data(ignore_corrupt_chunks=True)
    if extra is not None:
        info["extra_data"] = {"rows": len(extra), "columns": [str(c) for c in extra.columns]}
    return info


def _shape_text(info: dict[str, Any]) -> str:
    shape = info["image_shape"]
    kind = "colour" if info["color"] else ("grey" if len(shape) == 2 else f"{shape[2]} channels")
    return f"{shape[1]} x {shape[0]} {kind}, {info['image_dtype']}"


def format_summary(info: dict[str, Any]) -> str:
    """The human-readable text of a :func:`summarize` result."""
    lossless = {True: "lossless", False: "lossy", None: "lossless: unknown"}[info["lossless"]]
    enc = f", encoding {info['encoding']}" if info["encoding"] else ""
    if info.get("random_access") is False:
        enc += ", slow out of order"
    n = info["frame_count"]
    rows = [
        ("store", info["path"]),
        ("format", f"{info['format']} ({info['class']}, {lossless}{enc})"),
        ("image", _shape_text(info)),
        ("frames", f"{n} in {len(info['chunks'])} chunk{'s' * (len(info['chunks']) != 1)} "
                   f"of up to {info['chunksize']}"),
    ]
    if n:
        rows += [
            ("frame_number", f"{info['frame_number_min']} .. {info['frame_number_max']}"),
            ("start", f"{info['start']}  ({info['timezone']})"),
            ("end", info["end"]),
            ("duration", f"{format_duration(info['duration_s'])}  ({info['duration_s']:.3f} s)"),
        ]
        li = info["long_intervals"]
        fps = f"{info['mean_fps']:.3f}" if info["mean_fps"] else "-"
        median = f"{li['median_s'] * 1000:.2f} ms" if li["median_s"] is not None else "-"
        rows.append(("mean fps", f"{fps}  (median interval {median})"))
        d = info["dropped"]
        text = f"{d['missing']} missing frame number{'s' * (d['missing'] != 1)}"
        if d["gaps"]:
            largest = ", ".join(f"{g['missing']} after #{g['after']} at {g['at']}" for g in d["largest"])
            text += f" in {d['gaps']} gap{'s' * (d['gaps'] != 1)}; largest: {largest}"
        rows.append(("dropped", text))
        if li["threshold_s"] is not None:
            text = (f"{li['count']} interval{'s' * (li['count'] != 1)} > {li['factor']:g} x median "
                    f"({li['threshold_s'] * 1000:.2f} ms)")
            if li["count"]:
                largest = ", ".join(f"{x['interval_s'] * 1000:.1f} ms before #{x['frame_number']} at {x['at']}"
                                    for x in li["largest"])
                text += f"; longest: {largest}"
            rows.append(("pauses", text))
        notes = []
        if d["out_of_order"]:
            notes.append(f"frame_number goes down {d['out_of_order']} time{'s' * (d['out_of_order'] != 1)}")
        if d["repeated"]:
            notes.append(f"{d['repeated']} repeated frame number{'s' * (d['repeated'] != 1)}")
        if li["backwards"]:
            notes.append(f"frame_time goes back {li['backwards']} time{'s' * (li['backwards'] != 1)}")
        if notes:
            rows.append(("order", "; ".join(notes)))
    qc = info.get("quick_check")
    if qc is not None:
        if qc["problems"]:
            rows.append(("DAMAGED", "; ".join(qc["problems"])))
            rows.append(("", f"imgstore-verify {info['path']} reads every frame and lists the damaged ones"))
        else:
            some = "" if qc["chunks_checked"] == qc["chunks"] else f" (last {qc['chunks_checked']} chunks)"
            rows.append(("check", f"chunk files match the index{some}; imgstore-verify reads every frame"))
    rows.append(("created", f"{info['created']}  uuid {info['uuid']}"))
    if info["user_metadata"]:
        rows.append(("metadata", ""))
        rows += [(f"  {k}", repr(v) if not isinstance(v, str) else v) for k, v in info["user_metadata"].items()]
    else:
        rows.append(("metadata", "(none)"))
    ed = info["extra_data"]
    rows.append(("extra data", f"{ed['rows']} rows; columns: {', '.join(ed['columns'])}" if ed else "(none)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}".rstrip() for k, v in rows)


#: intervals plotted one by one up to this many; above, the largest interval of each bin is drawn
PLOT_MAX_POINTS = 20000


def interval_figure(store, info: dict[str, Any] | None = None):
    """A matplotlib figure of the frame interval over the recording's local time, drops marked.

    Each interval is drawn as a flat step over the time it lasted (a long pause is a wide
    plateau, not a ramp), on a logarithmic axis (one spike does not flatten the rest); the
    x axis shows local date-times in the recording's time zone. Long recordings draw the
    largest interval of each of :data:`PLOT_MAX_POINTS` bins, so no pause disappears.

    Raises
    ------
    imgstore.errors.MissingDependencyError
        matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # headless: never needs a display
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("--plot needs matplotlib: pip install 'imgstore[plot]'") from None
    info = info or summarize(store)
    tz = recording_timezone(store)
    ft = np.asarray(store.frame_times, dtype=np.float64)
    fn = np.asarray(store.frame_numbers, dtype=np.int64)
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    if len(ft) < 2:
        ax.text(0.5, 0.5, "fewer than 2 frames", ha="center", va="center", transform=ax.transAxes)
        return fig

    def when(seconds: np.ndarray) -> np.ndarray:
        return (seconds * 1e6).astype("datetime64[us]")  # UTC; the axis shows it in the recording's zone

    dt_ms = np.diff(ft) * 1000.0
    ends = ft[1:]
    smallest = float(dt_ms[dt_ms > 0].min()) if (dt_ms > 0).any() else 1.0
    shown = np.maximum(dt_ms, smallest)  # a log axis has no 0: a repeated time is drawn at the floor
    label = "frame interval"
    if len(shown) > PLOT_MAX_POINTS:
        edges = np.linspace(0, len(shown), PLOT_MAX_POINTS + 1).astype(np.int64)
        shown = np.maximum.reduceat(shown, edges[:-1])
        ends = ends[np.minimum(edges[1:] - 1, len(ends) - 1)]
        label = f"largest frame interval per {len(dt_ms) // PLOT_MAX_POINTS}+ frames"
    x = when(np.concatenate([[ft[0]], ends]))
    ax.stairs(shown, x, color="tab:blue", lw=0.8, label=label, baseline=None)
    li = info["long_intervals"]
    if li["threshold_s"] is not None:
        ax.axhline(li["median_s"] * 1000, color="grey", ls=":", lw=0.8, label="median")
        ax.axhline(li["threshold_s"] * 1000, color="tab:red", ls="--", lw=0.8, label=f"{li['factor']:g} x median")
        long_ = dt_ms > li["threshold_s"] * 1000
        if long_.any():
            ax.plot(when(ft[1:][long_]), dt_ms[long_], "o", ms=4, color="tab:red", label=f"pauses ({int(long_.sum())})")
    gaps = np.flatnonzero(np.diff(fn) > 1)
    for k, i in enumerate(gaps[:2000]):
        ax.axvline(when(ft[i + 1 : i + 2])[0], color="tab:orange", lw=0.8, alpha=0.7,
                   label=f"frame_number gaps ({len(gaps)})" if k == 0 else None)
    ax.set_yscale("log")
    locator = mdates.AutoDateLocator(tz=tz)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tz))
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel(f"local time ({info['timezone']})")
    ax.set_ylabel("interval (ms, log scale)")
    d = info["dropped"]
    ax.set_title(f"{info['path']}: {info['frame_count']} frames, {d['missing']} missing frame numbers, "
                 f"{li['count']} pauses", fontsize=9)
    fig.tight_layout()
    return fig


def plot_intervals(store, path: str, info: dict[str, Any] | None = None) -> None:
    """Draw :func:`interval_figure` into ``path`` (PNG or any matplotlib format).

    Raises
    ------
    imgstore.errors.MissingDependencyError
        matplotlib is not installed.
    """
    fig = interval_figure(store, info)  # first: it says clearly when matplotlib is missing
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path)
    finally:
        plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = ArgumentParser(prog=PROG, description="Summarise a store: format, frames, times in the store's "
                                              "time zone, dropped frames, metadata and extra data.",
                       epilog=EPILOG)
    p.add_argument("store", help="the store's folder or its metadata.yaml, or a URL (s3://bucket/store)")
    add_storage_options(p)
    p.add_argument("--json", action="store_true", help="print everything as JSON (for scripts)")
    p.add_argument("--plot", metavar="FILE.png", help="draw the frame interval over time, drops marked "
                                                      "(needs matplotlib)")
    return p


def run(args: argparse.Namespace) -> int:
    """Body of the command."""

    if args.plot and not args.plot.lower().endswith((".png", ".svg", ".pdf", ".jpg", ".jpeg")):
        raise UsageError(f"--plot {args.plot!r}: give a file name ending in .png (or .svg, .pdf)")
    with open_for_reading(args.store, args) as store:
        info = summarize(store)
        if args.plot:
            plot_intervals(store, args.plot, info)
    if args.json:
        print(to_json(info))
    else:
        print(format_summary(info))
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run ``imgstore-info``; returns the exit status."""
    return run_command(prog, build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
