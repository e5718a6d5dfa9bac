"""Small server-side SVG charts: per-feature match weights (waterfall), a timeline of
stays, registrations and deregistrations, counts over days (the statistics) and shares as
bars (source quality).

Pure functions returning SVG markup (escaped); no JavaScript.
"""

from __future__ import annotations

from datetime import UTC, tzinfo
from html import escape

from reglink.console import fmt

#: room right of the plot for a value label such as ``+35.75`` (11 px text)
VALUE_W = 52
#: width of ``deadline 2026-03-09 00:00 +08:00`` (10 px text)
DEADLINE_W = 180


def waterfall(explanation: dict | None, width: int = 560) -> str:
    """Splink-style waterfall: the prior, then each feature's bits of evidence (log2 Bayes
    factor), then the total and its probability, on a row of its own below the bars. The value
    labels have room to the right of the plot, so no text runs past the chart's edge."""
    if not explanation or not explanation.get("features"):
        return '<p class="muted">No feature weights (new identity or no comparison).</p>'
    steps = [("prior", None, float(explanation.get("prior_weight") or 0.0))]
    steps += [(f["feature"], f.get("level"), float(f.get("weight") or 0.0))
              for f in explanation["features"]]
    running, bars = 0.0, []
    for name, level, w in steps:
        bars.append((name, level, running, running + w, w))
        running += w
    total = float(explanation.get("total_weight", running))
    lo = min([0.0, total] + [min(b[2], b[3]) for b in bars])
    hi = max([0.0, total] + [max(b[2], b[3]) for b in bars])
    span = (hi - lo) or 1.0
    label_w, row_h, pad = 170, 22, VALUE_W
    plot_w = width - label_w - pad
    rows = len(bars) + 1
    height = rows * row_h + 44

    def x(v: float) -> float:
        return label_w + (v - lo) / span * plot_w

    out = [f'<svg class="chart waterfall" role="img" aria-label="match weights" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'xmlns="http://www.w3.org/2000/svg">',
           f'<line x1="{x(0):.1f}" y1="0" x2="{x(0):.1f}" y2="{rows * row_h}" stroke="#888" '
           'stroke-dasharray="3,3"/>']
    for i, (name, level, a, b, w) in enumerate(bars):
        y = i * row_h + 4
        color = "#2e7d32" if w >= 0 else "#c62828"
        if name == "prior":
            color = "#607d8b"
        x0, x1 = sorted((x(a), x(b)))
        lab = escape(name if level is None else f"{name} · {level}")
        out.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" '
                   f'class="lab">{lab}</text>')
        out.append(f'<rect class="bar" data-feature="{escape(name)}" x="{x0:.1f}" y="{y}" '
                   f'width="{max(x1 - x0, 1):.1f}" height="{row_h - 6}" fill="{color}">'
                   f'<title>{lab}: {w:+.2f}</title></rect>')
        out.append(f'<text x="{x1 + 4:.1f}" y="{y + 14}" class="val">{w:+.2f}</text>')
    y = len(bars) * row_h + 4
    x0, x1 = sorted((x(0), x(total)))
    out.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" class="lab">'
               f'<tspan font-weight="bold">total</tspan></text>')
    out.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" '
               f'height="{row_h - 6}" fill="#1565c0"/>')
    out.append(f'<text x="{x1 + 4:.1f}" y="{y + 14}" class="val">{total:+.2f}</text>')
    prob = explanation.get("probability")
    if isinstance(prob, int | float):
        out.append(f'<text x="{label_w - 6}" y="{rows * row_h + 16}" text-anchor="end" '
                   'class="lab"><tspan font-weight="bold">probability</tspan></text>'
                   f'<text x="{label_w}" y="{rows * row_h + 16}" class="prob" '
                   f'font-weight="bold">{escape(fmt.prob(prob))}</text>')
    out.append(f'<text x="4" y="{height - 4}" class="axis">bits of evidence (log2 Bayes '
               'factor); right of the dashed line: same person</text>')
    out.append("</svg>")
    return "".join(out)


def timeline(intervals: list[dict], registrations: list[dict], deadline: float | None,
             width: int = 760, tz: tzinfo = UTC, departures: list[dict] | None = None) -> str:
    """Presence intervals (``{label, start, end|None, grace}``), registrations
    (``{label, registered_at, valid_from, valid_until}``), deregistrations (``departures``:
    ``{label, registered_at, left_at}``, the day the person left and when it was recorded)
    and the deadline on one time axis, its days and the deadline written in ``tz`` (the zone
    the page shows times in). The caption explains only what is drawn."""
    departures = departures or []
    # The window spans the starts, registrations, departures and deadline (not far-off ends,
    # which would squash the episode): bars running past it are clipped at the edge.
    times = [iv["start"] for iv in intervals]
    times += [t for r in registrations for t in (r["registered_at"], r["valid_from"]) if t]
    times += [t for d in departures for t in (d["registered_at"], d["left_at"]) if t]
    if deadline:
        times.append(deadline)
    if not times:
        return '<p class="muted">No presence data.</p>'
    lo, hi = min(times) - 86400, max(times) + 86400 * 7
    label_w, row_h = 200, 24
    plot_w = width - label_w - 20
    rows = len(intervals) + len(registrations) + len(departures)
    height = rows * row_h + 46

    def x(t: float) -> float:
        return label_w + (min(max(t, lo), hi) - lo) / (hi - lo) * plot_w

    kind = "stay timeline" if intervals else "registration timeline"
    out = [f'<svg class="chart timeline" role="img" aria-label="{kind}" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" '
           'xmlns="http://www.w3.org/2000/svg">']
    step = max(86400, int((hi - lo) / 8 // 86400) * 86400)
    t = fmt.local_midnight_after(lo, tz)
    while t < hi:
        out.append(f'<line x1="{x(t):.1f}" y1="0" x2="{x(t):.1f}" y2="{rows * row_h}" '
                   'stroke="#eee"/>')
        out.append(f'<text x="{x(t):.1f}" y="{rows * row_h + 14}" class="axis" '
                   f'text-anchor="middle">{fmt.day(t, tz)}</text>')
        t = fmt.local_midnight_after(t + step - 3600, tz)
    y = 2
    for iv in intervals:
        end = iv.get("end") or hi
        lab = escape(iv["label"])
        out.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="lab">'
                   f'{lab}</text>')
        out.append(f'<rect class="presence" x="{x(iv["start"]):.1f}" y="{y}" '
                   f'width="{max(x(end) - x(iv["start"]), 2):.1f}" height="{row_h - 8}" '
                   f'fill="#fb8c00" opacity="0.8"><title>{lab}</title></rect>')
        if iv.get("grace"):
            g = iv["start"] + iv["grace"]
            out.append(f'<line x1="{x(g):.1f}" y1="{y}" x2="{x(g):.1f}" y2="{y + row_h - 8}" '
                       'stroke="#333" stroke-width="2"><title>grace ends</title></line>')
        y += row_h
    for r in registrations:
        lab = escape(r["label"])
        out.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="lab">'
                   f'{lab}</text>')
        out.append(f'<rect class="registration" x="{x(r["valid_from"]):.1f}" y="{y}" '
                   f'width="{max(x(r["valid_until"]) - x(r["valid_from"]), 2):.1f}" '
                   f'height="{row_h - 8}" fill="#43a047" opacity="0.8"><title>{lab}</title>'
                   '</rect>')
        out.append(f'<circle cx="{x(r["registered_at"]):.1f}" cy="{y + (row_h - 8) / 2}" r="4" '
                   'fill="#1b5e20"><title>registered at</title></circle>')
        y += row_h
    for d in departures:
        lab = escape(d["label"])
        mid = y + (row_h - 8) / 2
        out.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="lab">'
                   f'{lab}</text>')
        a, b = sorted((x(d["left_at"]), x(d["registered_at"])))
        out.append(f'<line x1="{a:.1f}" y1="{mid}" x2="{b:.1f}" y2="{mid}" stroke="#6a1b9a" '
                   'stroke-dasharray="3,2"/>')
        out.append(f'<rect class="deregistration" x="{x(d["left_at"]) - 2:.1f}" y="{y}" '
                   f'width="4" height="{row_h - 8}" fill="#6a1b9a"><title>{lab}: left '
                   f'{escape(fmt.when(d["left_at"], tz))}</title></rect>')
        out.append(f'<circle cx="{x(d["registered_at"]):.1f}" cy="{mid}" r="4" fill="#6a1b9a">'
                   f'<title>deregistration recorded {escape(fmt.when(d["registered_at"], tz))}'
                   '</title></circle>')
        y += row_h
    if deadline:
        out.append(f'<line class="deadline" x1="{x(deadline):.1f}" y1="0" '
                   f'x2="{x(deadline):.1f}" y2="{rows * row_h}" stroke="#c62828" '
                   'stroke-width="2"/>')
        # the label reads right of the line, or left of it near the right edge
        right = x(deadline) + DEADLINE_W <= width
        out.append(f'<text class="axis deadline-label" x="{x(deadline) + (3 if right else -3):.1f}"'
                   f' y="{rows * row_h + 30}" fill="#c62828" '
                   f'text-anchor="{"start" if right else "end"}">'
                   f'deadline {escape(fmt.when(deadline, tz))}</text>')
    legend = [text for drawn, text in (
        (intervals, "orange: presence (tick: grace ends)"),
        (registrations, "green: registration valid (dot: registered)"),
        (departures, "purple: left (dot: deregistration recorded)"),
        (deadline, "red: deadline")) if drawn]
    out.append(f'<text x="4" y="{height - 4}" class="axis">{" · ".join(legend)}</text>')
    out.append("</svg>")
    return "".join(out)


def _nice(top: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``top`` (at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= top:
                return m * step
        step *= 10


#: Dates up to which each day of a series chart carries a hover title with its counts.
TITLED_DAYS = 120


def series(dates: list[str], values: dict[str, list[int]], colours: dict[str, str],
           label: str, width: int = 430, height: int = 170) -> str:
    """Counts over days as lines on one chart: ``values[name]`` has one count per date of
    ``dates`` (ISO dates), drawn in ``colours[name]``. The y axis starts at 0 and ends at a
    round number (its middle marked when that is a whole count too); the latest count of each
    line is written right of its end; each day (up to :data:`TITLED_DAYS` of them) has a hover
    title with its counts."""
    if not dates:
        return '<p class="muted">No rows.</p>'
    left, right, top, bottom = 40, 44, 8, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    hi = _nice(max([max(v) for v in values.values() if v] + [1]))
    n = len(dates)

    def x(i: int) -> float:
        return left + (i / (n - 1) * plot_w if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - v / hi * plot_h

    out = [f'<svg class="chart series" role="img" aria-label="{escape(label)}" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'xmlns="http://www.w3.org/2000/svg">']
    for v in (0, hi // 2, hi) if hi % 2 == 0 else (0, hi):  # whole counts only
        out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + plot_w}" y2="{y(v):.1f}" '
                   f'stroke="{"#999" if v == 0 else "#eee"}"/>')
        out.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" class="axis" text-anchor="end">'
                   f'{v}</text>')
    ticks = sorted({0, n // 2, n - 1})
    for i in ticks:
        anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
        out.append(f'<text x="{x(i):.1f}" y="{height - 6}" class="axis" '
                   f'text-anchor="{anchor}">{escape(dates[i])}</text>')
    if n <= TITLED_DAYS:
        band = plot_w / max(n - 1, 1)
        for i, d in enumerate(dates):
            text = " · ".join(f"{k.replace('_', ' ')} {vs[i]}" for k, vs in values.items())
            out.append(f'<rect class="day" x="{x(i) - band / 2:.1f}" y="{top}" '
                       f'width="{band:.1f}" height="{plot_h}" fill="transparent">'
                       f'<title>{escape(d)}: {escape(text)}</title></rect>')
    ends = []
    for name, vs in values.items():
        colour = colours.get(name, "#333")
        if n == 1:
            out.append(f'<circle cx="{x(0):.1f}" cy="{y(vs[0]):.1f}" r="3" fill="{colour}"/>')
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vs))
        out.append(f'<polyline class="line" data-series="{escape(name)}" points="{points}" '
                   f'fill="none" stroke="{colour}" stroke-width="1.8"/>')
        ends.append([y(vs[-1]), name, vs[-1], colour])
    # the latest counts right of the lines' ends, pushed apart so that none overlaps
    # (down from the top, then, for those pushed below the axis, back up from it)
    ends.sort()
    for i in range(1, len(ends)):
        ends[i][0] = max(ends[i][0], ends[i - 1][0] + 11)
    for i in reversed(range(len(ends))):
        below = top + plot_h if i == len(ends) - 1 else ends[i + 1][0] - 11
        ends[i][0] = min(ends[i][0], below)
    for pos, name, v, colour in ends:
        out.append(f'<text class="last" data-series="{escape(name)}" x="{left + plot_w + 4}" '
                   f'y="{pos + 4:.1f}" fill="{colour}">{v}</text>')
    out.append("</svg>")
    return "".join(out)


def share(rate: float | None, colour: str = "#c62828", width: int = 90) -> str:
    """A share (0..1) as a small horizontal bar (red: a share of problems); nothing for
    none."""
    if rate is None:
        return ""
    w = max(min(rate, 1.0), 0.0) * width
    return (f'<svg class="share" role="img" aria-label="{rate * 100:.1f} %" width="{width}" '
            f'height="10" viewBox="0 0 {width} 10" xmlns="http://www.w3.org/2000/svg">'
            f'<rect width="{width}" height="10" fill="#eceff1"/>'
            f'<rect width="{w:.1f}" height="10" fill="{colour}"/></svg>')
