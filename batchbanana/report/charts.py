"""The HTML page's inline SVG charts (html.py places them): cumulative spend, and attempts over
time stacked by outcome, in the colours the page's legends use. Every string is escaped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from html import escape

from batchbanana.report.aggregate import outcome_rank
from batchbanana.report.format import clock_text, usd
from batchbanana.report.loading import EPOCH, Attempt
from batchbanana.rules.pricing import money

__all__ = ["outcome_color", "outcomes_svg", "spend_svg"]

_COLORS = {
    "ok": "#2e7d32", "refused": "#c62828", "no_image": "#ef6c00", "bad_response": "#ad1457",
    "timeout": "#6a1b9a", "write_error": "#4e342e", "rate_limited": "#90a4ae",
    "unavailable": "#b0bec5", "connect_error": "#cfd8dc", "http_error": "#f9a825",
    "server_error": "#8e24aa", "interrupted": "#5d4037", "over_budget": "#546e7a",
    "blocked": "#78909c",
    "in_batch": "#1565c0",
}  # fmt: skip


def outcome_color(outcome: str) -> str:
    """The colour an outcome has in every chart and legend."""
    return _COLORS.get(outcome, "#9e9e9e")


_W, _H, _PAD = 720, 200, 40


def spend_svg(attempts: Sequence[Attempt]) -> str:
    """Cumulative spent (solid) and spent plus possibly spent (dashed), from result times."""
    timed = sorted((a for a in attempts if a.ts and a.billed != "no"), key=lambda a: a.ts or EPOCH)
    if not timed:
        return "<p>No timestamped billed attempts to chart.</p>"
    start, end = timed[0].ts or EPOCH, timed[-1].ts or EPOCH
    span = max((end - start).total_seconds(), 1.0)
    spent = maybe = 0.0
    sure: dict[int, float] = {}
    upper: dict[int, float] = {}
    for a in timed:  # one point per pixel column keeps the chart small for any ledger size
        if a.billed == "yes":
            spent += a.price_usd
        else:
            maybe += a.price_usd
        x = round(_PAD + ((a.ts or start) - start).total_seconds() / span * (_W - 2 * _PAD))
        sure[x], upper[x] = spent, spent + maybe
    top = max(spent + maybe, 1e-9)

    def line(points: dict[int, float], extra: str) -> str:
        coords = " ".join(
            f"{x},{_H - _PAD - y / top * (_H - 2 * _PAD):.1f}" for x, y in points.items()
        )
        start_point = f"{_PAD},{_H - _PAD}"
        return f'<polyline fill="none" stroke-width="2" points="{start_point} {coords}" {extra}/>'

    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">'
        "<title>Cumulative spend</title>"
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#999"/>'
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="#999"/>'
        + line(upper, 'stroke="#8e24aa" stroke-dasharray="4 3"')
        + line(sure, 'stroke="#2e7d32"')
        + f'<text x="{_PAD}" y="{_PAD - 8}" font-size="11">{escape(usd(money(top)))}</text>'
        + f'<text x="{_PAD}" y="{_H - 12}" font-size="11">{escape(clock_text(start))}</text>'
        + f'<text x="{_W - _PAD}" y="{_H - 12}" font-size="11" text-anchor="end">'
        f"{escape(clock_text(end))}</text>"
        "</svg><p>"
        '<span class="sw" style="background:#2e7d32"></span>spent '
        '<span class="sw" style="background:#8e24aa"></span>spent + possibly spent</p>'
    )


def outcomes_svg(attempts: Sequence[Attempt], buckets: int = 48) -> str:
    """Attempts per time slice, stacked by outcome."""
    timed = sorted((a for a in attempts if a.ts), key=lambda a: a.ts or EPOCH)
    if not timed:
        return ""
    start, end = timed[0].ts or EPOCH, timed[-1].ts or EPOCH
    span = max((end - start).total_seconds(), 1.0)
    counts: list[Counter[str]] = [Counter() for _ in range(buckets)]
    for a in timed:
        slot = min(buckets - 1, int(((a.ts or start) - start).total_seconds() / span * buckets))
        counts[slot][a.outcome] += 1
    tallest = max(sum(c.values()) for c in counts)
    width = (_W - 2 * _PAD) / buckets
    bars = []
    for slot, counter in enumerate(counts):
        y = float(_H - _PAD)
        for outcome, count in sorted(counter.items(), key=lambda p: outcome_rank(p[0])):
            height = count / tallest * (_H - 2 * _PAD)
            y -= height
            bars.append(
                f'<rect x="{_PAD + slot * width:.1f}" y="{y:.1f}" width="{width - 1:.1f}" '
                f'height="{height:.1f}" fill="{outcome_color(outcome)}">'
                f"<title>{escape(outcome)}: {count}</title></rect>"
            )
    legend = "".join(
        f'<span class="sw" style="background:{outcome_color(o)}"></span>{escape(o)}'
        for o in sorted({a.outcome for a in timed}, key=outcome_rank)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">'
        "<title>Attempts over time by outcome</title>"
        + "".join(bars)
        + f'<text x="{_PAD}" y="{_PAD - 8}" font-size="11">{tallest} per slice</text>'
        + f'<text x="{_PAD}" y="{_H - 12}" font-size="11">{escape(clock_text(start))}</text>'
        + f'<text x="{_W - _PAD}" y="{_H - 12}" font-size="11" text-anchor="end">'
        f"{escape(clock_text(end))}</text></svg><p>{legend}</p>"
    )
