"""Two full runs side by side: every ours/reference ratio of the older run against the newer.

``python benchmarks/compare.py OLD.json NEW.json [--out FILE.md] [--noise 0.15]``

Each run's ratios are measured within that run (ours and the reference alternating on the
same files), so they can be compared across runs made under different machine load; the raw
frames/s cannot. A ratio is normalised so that larger is better for ours (frames/s: ours /
reference; ms and bytes: reference / ours). A row is a regression when the newer normalised
ratio is below the older by more than the noise threshold (default 15 %, the spread of
repeated runs on the 2-core benchmark machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import report  # noqa: E402


def _value(cell: dict | None) -> float | None:
    v = report.num((cell or {}).get("value"))
    return v if v is not None and v > 0 else None


def _norm(cells: dict, higher: bool) -> float | None:
    o, r = _value(cells.get("ours")), _value(cells.get("reference"))
    if o is None or r is None:
        return None
    return o / r if higher else r / o


def ratios(data: dict) -> dict[str, float]:
    """``{row name: normalised ours/reference ratio}`` of one run."""
    out: dict[str, float] = {}
    for case in data.get("cases", []):
        for key, label, _unit, higher in report.case_metric_rows(case):
            v = _norm(case["metrics"].get(key, {}), higher)
            if v is not None:
                out[f"{case['title']} · {label}"] = v
    for fixture in data.get("fixtures", []) or []:
        res = fixture.get("results", {})
        for key, label in report.READ_METRICS:
            v = _norm({lib: res.get(lib, {}).get(key) for lib in ("ours", "reference")}, True)
            if v is not None:
                out[f"fixture {fixture['name']} · {label} frames/s"] = v
    for phase in ("index", "week"):
        block = data.get(phase) or {}
        for key, cells in (block.get("metrics") or {}).items():
            if key.startswith("overhead_") or key == "image_read_ms":
                continue  # differences of two timings: no stable ratio
            v = _norm(cells, False)
            if v is not None:
                out[f"{phase} ({block.get('n_frames', '?')} frames) · {key}"] = v
    return out


def compare(old: dict, new: dict, noise: float) -> tuple[list[str], int]:
    """Markdown lines and the number of regressions."""
    a, b = ratios(old), ratios(new)
    rows, regressions = [], 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            rows.append(f"| {name} | {a.get(name, float('nan')):.3g} | {b.get(name, float('nan')):.3g} | – | "
                        f"{'only in the newer run' if name in b else 'only in the older run'} |")
            continue
        change = b[name] / a[name]
        verdict = "**regression**" if change < 1 - noise else ("better" if change > 1 + noise else "same")
        regressions += change < 1 - noise
        rows.append(f"| {name} | {a[name]:.3g} | {b[name]:.3g} | {change:.2f}× | {verdict} |")
    head = [f"Older: {old['meta'].get('started', '?')} ({old['meta'].get('profile', '?')}); newer: "
            f"{new['meta'].get('started', '?')} ({new['meta'].get('profile', '?')}). Ratios normalised so that "
            f"> 1 means ours is better than the reference (frames/s: ours / reference; ms and bytes: reference "
            f"/ ours). Noise threshold ±{noise:.0%}. Regressions: {regressions} of "
            f"{sum(1 for r in rows if '×' in r)} rows.", "",
            "| row | older ratio | newer ratio | newer / older | verdict |", "|---|---|---|---|---|"]
    return head + rows, regressions


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--out")
    ap.add_argument("--noise", type=float, default=0.15)
    args = ap.parse_args(argv)
    with open(args.old) as f:
        old = json.load(f)
    with open(args.new) as f:
        new = json.load(f)
    lines, _ = compare(old, new, args.noise)
    text = "\n".join([f"# Ratios: {os.path.basename(args.old)} vs {os.path.basename(args.new)}", "", *lines])
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
