#!/usr/bin/env python3
"""Renders perf/ratios.svg: Gauntlet's headline ratio against Prometheus over time, one line
per `gauntlet-bench run` scenario, read from the dated runs in perf/history/*.md (one file per
month, read in name order).

The headline ratio of a run is the first figure of its "ratio target / baseline" row: the
scenario's throughput (queries/s, series/s, acknowledged samples/s, samples merged per second),
Gauntlet over Prometheus in the same run. Runs without a Prometheus side have no ratio, and
paced runs (both sides given the same samples) a ratio of 1 by design: both are left out. Standard library only; run it after `gauntlet-bench run` appends a section:

    python3 perf/plot_ratios.py [HISTORY.md ...] [OUT.svg]

Without files it reads every perf/history/*.md; an argument ending in `.svg` names the picture
(perf/ratios.svg by default).
"""

import math
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

HEADING = re.compile(r"^## (\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC — `run (\w+)`")
COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"]


def runs(text):
    """(time, scenario, throughput column name, ratio) for every dated run with a ratio row."""
    out = []
    section = None
    header = None
    system = 0
    for line in text.splitlines():
        m = HEADING.match(line)
        if m:
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
            section = (when, m.group(2))
            header = None
            continue
        if line.startswith("## "):
            section = None
            continue
        if section is not None and line.startswith("Input:") and re.search(r"\d s at \d+ samples/s", line):
            # A paced run gives both sides the same samples: its throughput ratio is 1 by
            # design, not a measure.
            section = None
        if section is None or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "system" in cells:
            header = cells
            system = cells.index("system")
        elif header and len(cells) == len(header) and cells[system].startswith("ratio"):
            # The first figure of the first ratio row (`run series` has one per selector);
            # a run whose throughput has no ratio (`n/a`) is left out. Empty cells are
            # figures without a ratio (`run series`'s series count).
            figures = [(n, c) for n, c in list(zip(header, cells))[system + 1 :] if c]
            if figures:
                name, cell = figures[0]
                try:
                    out.append((section[0], section[1], name, float(cell.rstrip("x"))))
                except ValueError:
                    pass
            section = None
    return out


def svg(points):
    width, height = 1000, 420
    left, right, top, bottom = 70, 290, 40, 50
    times = [p[0].timestamp() for p in points]
    t0, t1 = min(times), max(times)
    if t1 == t0:
        t1 = t0 + 3600
    ratios = [p[3] for p in points]
    lo = 10 ** math.floor(math.log10(min(min(ratios), 1.0)))
    hi = 10 ** math.ceil(math.log10(max(max(ratios), 1.0)))

    def x(t):
        return left + (t - t0) / (t1 - t0) * (width - left - right)

    def y(r):
        return top + (math.log10(hi) - math.log10(r)) / (math.log10(hi) - math.log10(lo)) * (
            height - top - bottom
        )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="22" font-size="15">Gauntlet / Prometheus, headline figure of each '
        f"run (log scale; above 1: Gauntlet ahead)</text>",
    ]
    decade = lo
    while decade <= hi * 1.0001:
        for k in (1, 2, 5):
            r = decade * k
            if r < lo or r > hi:
                continue
            yy = y(r)
            stroke = "#999" if k == 1 else "#e5e5e5"
            parts.append(
                f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{stroke}"/>'
            )
            parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{r:g}x</text>')
        decade *= 10
    yy = y(1.0)
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#333" stroke-dasharray="4 3"/>'
    )
    for t, label in ((t0, "start"), (t1, "end")):
        when = datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M")
        anchor = "start" if label == "start" else "end"
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - bottom + 20}" text-anchor="{anchor}">{when} UTC</text>'
        )
    scenarios = sorted({p[1] for p in points})
    for i, name in enumerate(scenarios):
        color = COLORS[i % len(COLORS)]
        series = sorted((p for p in points if p[1] == name), key=lambda p: p[0])
        coords = " ".join(f"{x(p[0].timestamp()):.1f},{y(p[3]):.1f}" for p in series)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        for p in series:
            parts.append(
                f'<circle cx="{x(p[0].timestamp()):.1f}" cy="{y(p[3]):.1f}" r="3" fill="{color}">'
                f"<title>{p[0]:%Y-%m-%d %H:%M} run {name}: {p[2]} {p[3]:g}x</title></circle>"
            )
        ly = top + 10 + i * 34
        parts.append(
            f'<rect x="{width - right + 15}" y="{ly - 9}" width="12" height="12" fill="{color}"/>'
        )
        parts.append(f'<text x="{width - right + 33}" y="{ly + 1}">run {name}</text>')
        parts.append(
            f'<text x="{width - right + 33}" y="{ly + 15}" fill="#666">{series[-1][2]}, '
            f"{len(series)} runs</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    here = Path(__file__).resolve().parent
    args = [Path(a) for a in sys.argv[1:]]
    outs = [a for a in args if a.suffix == ".svg"]
    srcs = [a for a in args if a.suffix != ".svg"] or sorted((here / "history").glob("*.md"))
    dst = outs[0] if outs else here / "ratios.svg"
    points = [p for src in srcs for p in runs(src.read_text())]
    if not points:
        sys.exit(f"{', '.join(map(str, srcs)) or here / 'history'}: no dated run with a ratio row")
    dst.write_text(svg(points))
    per = {}
    for p in points:
        per[p[1]] = per.get(p[1], 0) + 1
    print(f"{dst}: {len(points)} runs ({', '.join(f'{k} {v}' for k, v in sorted(per.items()))})")


if __name__ == "__main__":
    main()
