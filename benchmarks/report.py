"""Turn the runner's collected results into a markdown report (and goal verdicts).

Input is the JSON-able dict that ``run.py`` builds (also saved next to the
markdown). Nothing here measures anything.

Conventions: frames/s and "exact" shares are "higher is better"; seconds and
bytes are "lower is better". Ratios are always ours / reference, so a ratio
above 1 is better for frames/s and worse for times and sizes; the "better"
column says who wins.
"""

from __future__ import annotations

import math

import memory
import peers
import startup

LIBS = ("ours", "reference")

#: The reference's published figures on a 2-core machine (640x480 grey).
PUBLISHED_REFERENCE = [
    ("H.264 random get_image, default keyframe interval (250)", "h264_random_250", 20.0),
    ("H.264 random get_image, keyframe every 25 frames", "h264_random_25", 63.0),
    ("MJPEG/avi random get_image", "mjpeg_random", 100.0),
    ("H.264 sequential read", "h264_sequential", 1726.0),
]

#: Issue 6: a week-long store opens in under half a second.
WEEK_OPEN_LIMIT_S = 0.5
WEEK_CACHED_OPEN_LIMIT_MS = 20    # issue 14: cached open at 1 800 chunks
WEEK_FIRST_OPEN_LIMIT_S = 1.0     # issue 14: first open / cache build of 18 M frames
#: Threshold for "well under a millisecond" of index overhead per lookup.
INDEX_OVERHEAD_LIMIT_MS = 0.5

READ_METRICS = [
    ("sequential", "sequential get_next_image"),
    ("random_number", "random get_image(frame_number)"),
    ("random_index", "random get_image(frame_index=)"),
    ("random_time", "random get_nearest_image(time)"),
]


# --------------------------------------------------------------------------- value helpers

def is_err(v) -> bool:
    return isinstance(v, dict) and "error" in v


def num(v):
    """The number in ``v`` or None (errors, missing)."""
    if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
        return v
    return None


def fmt_num(v, unit: str = "") -> str:
    if v is None:
        return "–"
    if abs(v) >= 1000:
        s = f"{v:,.0f}".replace(",", " ")
    elif abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    elif abs(v) >= 0.1:
        s = f"{v:.2f}"
    else:
        s = f"{v:.3g}"
    return s + (f" {unit}" if unit else "")


def fmt_cell(cell: dict | None, unit: str = "") -> str:
    """A value, an "error: ..." text, or "n/a: ..." for a metric of one library."""
    if cell is None:
        return "–"
    if "error" in cell:
        return "error: " + _md_escape(cell["error"])
    if "na" in cell:
        return "n/a: " + _md_escape(cell["na"])
    return fmt_num(num(cell.get("value")), unit)


def fmt_exact(cell: dict | None) -> str:
    if not cell or "error" in cell or "na" in cell:
        return "–"
    share = cell.get("exact_share")
    if share is None:
        return "–"
    text = f"{100 * share:.0f} %" if share in (0, 1) else f"{100 * share:.1f} %"
    if cell.get("metadata_mismatch"):
        text += f" (md≠ {cell['metadata_mismatch']})"
    return text


def ratio(ours: dict | None, ref: dict | None):
    a = num((ours or {}).get("value"))
    b = num((ref or {}).get("value"))
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r) -> str:
    if r is None:
        return "–"
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def better(r, higher_is_better: bool) -> str:
    if r is None:
        return ""
    if 0.95 <= r <= 1.05:
        return "≈"
    return "ours" if (r > 1) == higher_is_better else "ref"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------- sections

def machine_section(meta: dict) -> list[str]:
    m = meta.get("machine", {})
    ours = meta.get("ours", {})
    ref = meta.get("reference", {})
    lines = ["## Machine", "",
             f"- CPU: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gb', '?')} GiB RAM",
             f"- OS: {m.get('os', '?')}; load average (1/5/15 min) at start {m.get('load_start', '?')}, "
             f"at end {m.get('load_end', '?')} (other work on the machine skews the numbers)",
             f"- Python: ours {ours.get('python', '?')}, reference {ref.get('python', '?')}",
             f"- numpy: ours {ours.get('numpy', '?')}, reference {ref.get('numpy', '?')}",
             f"- OpenCV: ours {ours.get('cv2', '?')}, reference {ref.get('cv2', '?')}",
             f"- PyAV: ours {ours.get('av', '?')} (reference venv: {ref.get('av', '?')})",
             f"- imgstore: ours {ours.get('imgstore', ours.get('imgstore_error', '?'))}, "
             f"reference {ref.get('imgstore', ref.get('imgstore_error', '?'))}",
             f"- our supported formats: "
             f"{', '.join(ours.get('formats', [])) or 'error: ' + str(ours.get('formats_error', '?'))}",
             ""]
    return lines


def summary_table(cases: list[dict]) -> list[str]:
    """One line per case: the headline ratios and exactness."""
    lines = ["## Summary (ours / reference; frames/s, higher is better)", "",
             "| case | written by | write | sequential | random by number | random by index | "
             "nearest by time | exact ours | exact ref |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case in cases:
        m = case["metrics"]

        def pair(key, m=m):
            o, r = m.get(key, {}).get("ours"), m.get(key, {}).get("reference")
            rr = ratio(o, r)
            if rr is not None:
                return f"{fmt_num(num(o.get('value')))} / {fmt_num(num(r.get('value')))} ({fmt_ratio(rr)})"
            return f"{_brief(o)} / {_brief(r)}"

        ex_o = _worst_exact(m, "ours")
        ex_r = _worst_exact(m, "reference")
        lines.append(f"| {case['title']} | {case.get('written_by', '?')} | {pair('write_fps')} | "
                     f"{pair('sequential')} | {pair('random_number')} | {pair('random_index')} | "
                     f"{pair('random_time')} | {ex_o} | {ex_r} |")
    lines.append("")
    return lines


def _brief(cell: dict | None) -> str:
    """A summary-table cell: the number, or just 'error' / 'n/a' (details in the long table)."""
    if cell is None:
        return "–"
    if "error" in cell:
        return "error"
    if "na" in cell:
        return "n/a"
    return fmt_num(num(cell.get("value")))


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _worst_exact(metrics: dict, lib: str) -> str:
    shares = []
    for key, _label in READ_METRICS:
        cell = metrics.get(key, {}).get(lib)
        if cell and "error" not in cell and "na" not in cell and cell.get("exact_share") is not None:
            shares.append(cell["exact_share"])
    if not shares:
        return "–"
    worst = min(shares)
    return f"{100 * worst:.0f} %" if worst in (0, 1) else f"{100 * worst:.1f} %"


def detail_table(cases: list[dict]) -> list[str]:
    lines = ["## Details", "",
             "Ratios are ours / reference. frames/s: higher is better; ms and bytes: lower is better. "
             "Exact: share of returned frames whose barcode is the requested frame number "
             "(md≠ n: n returned frame numbers differ from the requested one).", "",
             "| case | metric | ours | reference | ours/ref | better | exact ours | exact ref |",
             "|---|---|---|---|---|---|---|---|"]
    for case in cases:
        first = True
        for key, label, unit, higher in case_metric_rows(case):
            cell = case["metrics"].get(key, {})
            o, r = cell.get("ours"), cell.get("reference")
            rr = ratio(o, r)
            title = f"**{case['title']}** ({case.get('written_by', '?')})" if first else ""
            first = False
            exact_o = fmt_exact(o) if key in dict(READ_METRICS) else ""
            exact_r = fmt_exact(r) if key in dict(READ_METRICS) else ""
            verdict = better(rr, higher)
            inexact = [name for name, c in (("ours", o), ("ref", r))
                       if c and c.get("exact_share") is not None and c["exact_share"] < 1]
            if verdict and inexact:
                verdict += f" ⚠ {'/'.join(inexact)} returns wrong frames"
            n_note = _count_note(o, r) if key in dict(READ_METRICS) else ""
            lines.append(f"| {title} | {label}{n_note} | {fmt_cell(o, unit)} | {fmt_cell(r, unit)} | "
                         f"{fmt_ratio(rr)} | {verdict} | {exact_o} | {exact_r} |")
        if case.get("notes"):
            lines.append(f"| | notes | {_md_escape('; '.join(case['notes']))} | | | | | |")
    lines.append("")
    return lines


def _count_note(o, r) -> str:
    counts = []
    for cell in (o, r):
        if cell and "frames" in cell and cell.get("frames") is not None:
            counts.append(str(cell["frames"]))
    if not counts:
        return ""
    return f" (n={'/'.join(counts)})" if len(set(counts)) > 1 else f" (n={counts[0]})"


def case_metric_rows(case: dict):
    rows = [("write_fps", "write frames/s", "", True),
            ("bytes_per_frame", "bytes per frame", "B", False),
            ("open_ms", "open ms", "", False)]
    rows += [(key, label + " frames/s", "", True) for key, label in READ_METRICS]
    return [r for r in rows if r[0] in case["metrics"]]


def fixture_table(fixtures: list[dict]) -> list[str]:
    if not fixtures:
        return []
    lines = ["## Stores written by the reference (shared fixtures, read from a copy)", "",
             "Exact share of returned frames (sequential / random by number / by index / nearest by time).", "",
             "| store | frames | ours | reference |", "|---|---|---|---|"]
    for fx in fixtures:
        cells = []
        for lib in LIBS:
            res = fx["results"].get(lib)
            if res is None:
                cells.append("–")
            elif is_err(res):
                cells.append("error: " + _md_escape(res["error"]))
            else:
                parts = []
                for key, _ in READ_METRICS:
                    sub = res.get(key)
                    if sub is None:
                        parts.append("–")
                    elif is_err(sub):
                        parts.append("error: " + _md_escape(sub["error"]))
                    else:
                        parts.append(fmt_exact({"exact_share": sub.get("exact_share"),
                                                "metadata_mismatch": sub.get("metadata_mismatch")}))
                cells.append(" / ".join(parts))
        lines.append(f"| {fx['name']} | {fx.get('frames', '?')} | {cells[0]} | {cells[1]} |")
    lines.append("")
    return lines


def index_table(index: dict | None, title: str = "Large index") -> list[str]:
    if not index:
        return []
    n_frames = f"{index.get('n_frames', 0):,}".replace(",", " ")
    lines = [f"## {title}: {n_frames} frames in {index.get('chunks', '?')} chunks "
             f"(npy store: full metadata, but only {index.get('image_files', '?')} tiny image files)",
             "",
             "Per-lookup times in ms; 'index overhead' is the lookup time minus reading the same tiny image "
             "with np.load alone. " + index.get("note", ""), "",
             "| metric | ours | reference | ours/ref | better |", "|---|---|---|---|---|"]
    for key, label in (("open_first_ms", "first open (new_for_filename) ms"),
                       ("open_ms", "open, best (new_for_filename) ms"),
                       ("metadata_ms", "get_frame_metadata ms"),
                       ("lookup_number_ms", "get_image(frame_number) ms per lookup"),
                       ("lookup_index_ms", "get_image(frame_index=) ms per lookup"),
                       ("lookup_time_ms", "get_nearest_image(time) ms per lookup"),
                       ("image_read_ms", "image read alone (np.load) ms"),
                       ("overhead_number_ms", "index overhead, by number, ms"),
                       ("overhead_index_ms", "index overhead, by index, ms"),
                       ("overhead_time_ms", "index overhead, by time, ms")):
        cell = index["metrics"].get(key, {})
        o, r = cell.get("ours"), cell.get("reference")
        note = ""
        if key.startswith("lookup"):
            note = _count_note_lookups(o, r)
        rr = ratio(o, r)
        lines.append(f"| {label}{note} | {fmt_cell(o)} | {fmt_cell(r)} | {fmt_ratio(rr)} | {better(rr, False)} |")
    lines.append("")
    return lines


def _count_note_lookups(o, r) -> str:
    counts = [str(c["lookups"]) for c in (o, r) if c and c.get("lookups") is not None]
    return f" (n={'/'.join(counts)})" if counts else ""


def physical_table(physical: dict | None) -> list[str]:
    if not physical:
        return []
    lines = ["## Physical limits on this machine (no imgstore; our venv)", "",
             "| what | frames/s | ms per frame | notes |", "|---|---|---|---|"]
    for row in physical.get("rows", []):
        cell = row["cell"]
        if is_err(cell):
            lines.append(f"| {row['label']} | error: {_md_escape(cell['error'])} | | |")
            continue
        fps = num(cell.get("fps"))
        ms = 1000 / fps if fps else None
        lines.append(f"| {row['label']} | {fmt_num(fps)} | {fmt_num(ms)} | {_md_escape(row.get('note', ''))} |")
    lines.append("")
    return lines


def published_table(published: list[dict]) -> list[str]:
    if not published:
        return []
    lines = ["## The reference here vs its published figures (640x480 grey)", "",
             "| workload | published | reference measured here | ours measured here |", "|---|---|---|---|"]
    for row in published:
        lines.append(f"| {row['label']} | {fmt_num(row['published'])} | {fmt_cell(row.get('reference'))} | "
                     f"{fmt_cell(row.get('ours'))} |")
    lines.append("")
    return lines


def goals_table(goals: list[dict]) -> list[str]:
    lines = ["## Goals", "", "| goal | measured | verdict |", "|---|---|---|"]
    for g in goals:
        lines.append(f"| {g['goal']} | {_md_escape(g['measured'])} | **{g['verdict']}** |")
    lines.append("")
    return lines


def render(data: dict) -> str:
    meta = data["meta"]
    lines = [f"# imgstore benchmarks: ours vs reference {meta.get('reference', {}).get('imgstore', '0.4.0')} "
             f"({meta['profile']})", "",
             f"Run {meta['started']} — {meta['duration_s']:.0f} s wall. Command: `{meta['command']}`.", "",
             f"Each workload ran {meta['reps']}× per library, alternating ours, reference, ours, reference, "
             "each in its own worker process, on the same files; the table shows the best repeat. "
             "Frame synthesis and barcode checks are outside the timed calls; the page cache is warm.", ""]
    lines += machine_section(meta)
    lines += goals_table(data.get("goals", []))
    lines += summary_table(data["cases"])
    lines += published_table(data.get("published", []))
    lines += index_table(data.get("index"))
    lines += index_table(data.get("week"), "Week-long store (7 days at 30 frames/s)")
    if data.get("memory"):
        lines += memory.section(data["memory"])
    if data.get("startup"):
        lines += startup.section(data["startup"])
    lines += fixture_table(data.get("fixtures", []))
    lines += physical_table(data.get("physical"))
    if data.get("peers"):
        lines += peers.section(data["peers"])
    lines += detail_table(data["cases"])
    if data.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {_md_escape(w)}" for w in data["warnings"]] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- goals

def _find(cases: list, size: str, fmts, gop="any") -> list:
    return [c for c in cases if c["size"] == size and c["fmt"] in fmts and (gop == "any" or c.get("gop") == gop)]


def _ratio_check(cases: list, keys: list, target: float) -> tuple[str, str]:
    """Measured text and verdict for 'ours >= target x reference, ours 100 % exact'."""
    parts, verdicts = [], []
    for case in cases:
        bits = []
        for key in keys:
            cell = case["metrics"].get(key, {})
            o, r = cell.get("ours"), cell.get("reference")
            rr = ratio(o, r)
            exact = (o or {}).get("exact_share")
            if rr is None:
                why = ((o or {}).get("error") or (r or {}).get("error")
                       or ("not run" if o is None or r is None else "missing"))
                bits.append(f"{key}: no ratio ({_short(why, 60)})")
                verdicts.append(None)
                continue
            ok = rr >= target and (exact is None or exact == 1.0)
            verdicts.append(ok)
            ex = "" if exact is None else f", exact {100 * exact:.0f} %"
            bits.append(f"{key.replace('random_', '')} {rr:.2f}×{ex}")
        parts.append(f"{case['title']}: " + "; ".join(bits))
    if not verdicts:
        return "no such case ran", "not measured"
    verdict = "not met (errors)" if any(v is None for v in verdicts) else "met" if all(verdicts) else "not met"
    return " · ".join(parts), verdict


def evaluate(data: dict, quick: bool) -> tuple[list, list]:
    """The goal verdicts and the published-figure comparison rows."""
    cases = data["cases"]
    small = "640x480-grey"
    goals = []
    h264 = _find(cases, small, ("avc1/mp4", "h264/mkv"))
    modes = ["random_number", "random_index", "random_time"]
    text, verdict = _ratio_check(h264, modes, 3.0)
    goals.append({"goal": "H.264 random access ≥ 3× the reference (640x480, keyframe 250 and 25), 100 % exact",
                  "measured": text, "verdict": verdict})
    text, verdict = _ratio_check([c for c in cases if c["fmt"] == "mjpeg/avi"], modes, 10.0)
    goals.append({"goal": "MJPEG random access ≥ 10× the reference, 100 % exact", "measured": text,
                  "verdict": verdict})
    text, verdict = _ratio_check(h264, ["sequential"], 1.4)
    goals.append({"goal": "H.264 sequential read ≥ 1.4× the reference (640x480)", "measured": text,
                  "verdict": verdict})

    big = _find(cases, "1920x1080-color", ("avc1/mp4", "h264/mkv"), gop=250)
    if not big:
        goals.append({"goal": "write 1080p colour H.264 at ≥ 30 frames/s",
                      "measured": "1080p not run (--quick)" if quick else "no 1080p H.264 case",
                      "verdict": "not measured"})
    else:
        parts, oks = [], []
        for c in big:
            cell = c["metrics"].get("write_fps", {}).get("ours", {})
            v = num(cell.get("value"))
            parts.append(f"{c['fmt']}: " + (f"{v:.1f} frames/s" if v is not None
                                            else "error: " + str(cell.get("error", "?"))))
            oks.append(v is not None and v >= 30)
        goals.append({"goal": "write 1080p colour H.264 at ≥ 30 frames/s", "measured": "; ".join(parts),
                      "verdict": "met" if all(oks) else "not met"})

    index = data.get("index")
    if not index:
        goals.append({"goal": f"2 M-frame index: get_image(frame_number) < {INDEX_OVERHEAD_LIMIT_MS} ms beyond "
                              "the image read", "measured": "index phase skipped", "verdict": "not measured"})
    else:
        cell = index["metrics"].get("overhead_number_ms", {}).get("ours", {})
        v = num(cell.get("value"))
        n = index.get("n_frames", 0)
        measured = (f"{v:.3f} ms overhead per lookup at {n:,} frames".replace(",", " ") if v is not None
                    else "error: " + str(cell.get("error", "?")))
        ok = v is not None and v < INDEX_OVERHEAD_LIMIT_MS
        verdict = "met" if ok else "not met"
        if n < 2_000_000:
            verdict = f"not measured at 2 M (provisional: {verdict})"
        goals.append({"goal": f"2 M-frame index: get_image(frame_number) < {INDEX_OVERHEAD_LIMIT_MS} ms beyond "
                              "the image read", "measured": measured, "verdict": verdict})

    week = data.get("week")
    goal = f"18 M-frame (week-long) store opens in < {WEEK_OPEN_LIMIT_S} s, lookups O(log n)"
    if not week:
        goals.append({"goal": goal, "measured": "week phase not run (full profile only)",
                      "verdict": "not measured"})
    else:
        m = week["metrics"]
        opened = {lib: num(m.get("open_ms", {}).get(lib, {}).get("value")) for lib in ("ours", "reference")}
        first = num(m.get("open_first_ms", {}).get("ours", {}).get("value"))
        parts = []
        if opened["ours"] is not None:
            parts.append(f"open {opened['ours'] / 1000:.3f} s (first open, building the cache: "
                         f"{(first or 0) / 1000:.1f} s)")
        if opened["reference"] is not None:
            parts.append(f"reference open {opened['reference'] / 1000:.1f} s")
        for mode in ("number", "index", "time"):
            cell = m.get(f"overhead_{mode}_ms", {})
            o, r = num(cell.get("ours", {}).get("value")), num(cell.get("reference", {}).get("value"))
            if o is not None:
                parts.append(f"lookup by {mode} {o:.3f} ms" + (f" (reference {r:.0f} ms)" if r is not None else ""))
        ok = opened["ours"] is not None and opened["ours"] / 1000 < WEEK_OPEN_LIMIT_S
        goals.append({"goal": goal, "measured": "; ".join(parts) or "error",
                      "verdict": "met" if ok else "not met"})
        chunks = f"{week.get('chunks', 0):,}".replace(",", " ")
        ok = opened["ours"] is not None and opened["ours"] <= WEEK_CACHED_OPEN_LIMIT_MS
        goals.append({"goal": f"cached open ≤ {WEEK_CACHED_OPEN_LIMIT_MS} ms at 1 800 chunks",
                      "measured": f"{opened['ours']:.1f} ms at {chunks} chunks" if opened["ours"] is not None
                      else "error", "verdict": "met" if ok else "not met"})
        ok = first is not None and first / 1000 <= WEEK_FIRST_OPEN_LIMIT_S
        goals.append({"goal": f"first open (building the index cache) of an 18 M-frame store ≤ "
                              f"{WEEK_FIRST_OPEN_LIMIT_S:g} s",
                      "measured": f"{first / 1000:.2f} s at {week.get('n_frames', 0):,} frames".replace(",", " ")
                      if first is not None else "error", "verdict": "met" if ok else "not met"})

    published = []
    for label, what, value in PUBLISHED_REFERENCE:
        if what == "mjpeg_random":
            found = [(c, "random_number") for c in _find(cases, small, ("mjpeg/avi",))]
        elif what == "h264_sequential":
            found = [(c, "sequential") for c in _find(cases, small, ("avc1/mp4", "h264/mkv"), gop=250)]
        else:
            gop = 250 if what.endswith("250") else 25
            found = [(c, "random_number") for c in _find(cases, small, ("avc1/mp4", "h264/mkv"), gop=gop)]
        for case, key in found:
            cell = case["metrics"].get(key, {})
            published.append({"label": f"{label} ({case['fmt']})", "published": value,
                              "reference": cell.get("reference"), "ours": cell.get("ours")})
    if data.get("memory") is not None or not quick:
        goals.append(memory.goal(data.get("memory")))
        goals.append(memory.goal_without_cache(data.get("memory")))
    if data.get("peers") is not None or not quick:
        goals += peers.goals(data.get("peers"))
    if data.get("startup") is not None or not quick:
        goals.append(startup.goal(data.get("startup")))
    return goals, published
