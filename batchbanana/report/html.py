"""The HTML report: one self-contained page a person opens in the morning.

Summary figures, inline SVG charts of spend and outcomes over time, a paginated contact sheet of
delivered images (linked relative to the page, lazily loaded, never inlined) and the failures.
No network, no scripts; every string from a ledger is escaped.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

from batchbanana.report.aggregate import (
    HTML_FAILURES,
    SHEET_PAGE,
    THUMB_PX,
    by_model_size,
    failed_items,
    figures,
    outcome_rank,
)
from batchbanana.report.format import item_label, one_line, seconds_text, usd
from batchbanana.report.loading import EPOCH, Attempt, LoadedReport
from batchbanana.rules.pricing import money

_COLORS = {
    "ok": "#2e7d32", "refused": "#c62828", "no_image": "#ef6c00", "bad_response": "#ad1457",
    "timeout": "#6a1b9a", "write_error": "#4e342e", "rate_limited": "#90a4ae",
    "unavailable": "#b0bec5", "connect_error": "#cfd8dc", "http_error": "#f9a825",
    "server_error": "#8e24aa", "interrupted": "#5d4037", "over_budget": "#546e7a",
}  # fmt: skip
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px}
td.n{text-align:right}dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}
dd{margin:0}.sheet{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;width:160px;font-size:11px}figure img{object-fit:contain;background:#eee}
.sw{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}summary{cursor:pointer}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_html(loaded: LoadedReport, output_path: Path | None) -> str:
    """One self-contained page: summary, charts, contact sheet, failures (images linked, not
    inlined, relative to output_path)."""
    total = figures(loaded.attempts, loaded.items)
    base = os.path.abspath(output_path.parent if output_path is not None else Path.cwd())
    several_jobs = len({item.final.group for item in loaded.items}) > 1
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        "<title>batchbanana report</title><style>",
        _CSS,
        "</style></head><body><h1>batchbanana report</h1><p>",
    ]
    for job in loaded.jobs:
        host = urlsplit(job.endpoint).netloc if job.endpoint and "://" in job.endpoint else ""
        parts.append(
            f"ledger <code>{_e(job.ledger)}</code>"
            + (f", job <b>{_e(job.name)}</b>" if job.name else "")
            + (f", endpoint {_e(host or job.endpoint)}" if job.endpoint else "")
            + (f", price book {_e(job.price_book)}" if job.price_book else "")
            + "<br>"
        )
    p50, p90, p99 = total.latency_s
    summary = [
        ("Items", total.items),
        ("Attempts", total.attempts),
        ("Spent", usd(total.spent_usd)),
        ("Possibly spent", usd(total.possibly_spent_usd)),
        ("Retried at no charge", total.free_retries),
        ("Delivered images", total.images),
        ("Cost per delivered image", usd(total.cost_per_image_usd)),
        (
            "Latency p50 / p90 / p99",
            f"{seconds_text(p50)} / {seconds_text(p90)} / {seconds_text(p99)}",
        ),
        ("Failed items", total.failed_items),
        ("Retry would cost", usd(total.retry_cost_usd)),
        ("Warnings", len(loaded.warnings)),
    ]
    parts.append("</p><h2>Summary</h2><dl>")
    parts.extend(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in summary)
    parts.append("</dl><h3>Items by final outcome</h3><table>")
    parts.extend(
        f'<tr><td><span class="sw" style="background:{_color(o)}"></span>{_e(o)}</td>'
        f'<td class="n">{n}</td></tr>'
        for o, n in total.outcomes
    )
    parts.append("</table><h3>By model and size</h3><table><tr>")
    parts.extend(f"<th>{_e(h)}</th>" for h in ("model", "size", "items", "attempts", "images"))
    parts.append("<th>spent</th><th>possibly spent</th><th>retry cost</th></tr>")
    for model, size, figs in by_model_size(loaded):
        parts.append(
            f"<tr><td>{_e(model)}</td><td>{_e(size)}</td><td class=n>{figs.items}</td>"
            f"<td class=n>{figs.attempts}</td><td class=n>{figs.images}</td>"
            f"<td class=n>{_e(usd(figs.spent_usd))}</td>"
            f"<td class=n>{_e(usd(figs.possibly_spent_usd))}</td>"
            f"<td class=n>{_e(usd(figs.retry_cost_usd))}</td></tr>"
        )
    parts.append("</table><h2>Spend and outcomes over time</h2>")
    parts.append(_spend_svg(loaded.attempts))
    parts.append(_outcomes_svg(loaded.attempts))
    parts.extend(_contact_sheet(loaded, base))
    parts.extend(_failures_html(loaded, several_jobs))
    parts.append("</body></html>\n")
    return "".join(parts)


def _color(outcome: str) -> str:
    return _COLORS.get(outcome, "#9e9e9e")


_W, _H, _PAD = 720, 200, 40


def _spend_svg(attempts: Sequence[Attempt]) -> str:
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
        + f'<text x="{_PAD}" y="{_PAD - 8}" font-size="11">{_e(usd(money(top)))}</text>'
        + f'<text x="{_PAD}" y="{_H - 12}" font-size="11">{_e(_clock(start))}</text>'
        + f'<text x="{_W - _PAD}" y="{_H - 12}" font-size="11" text-anchor="end">'
        f"{_e(_clock(end))}</text>"
        "</svg><p>"
        '<span class="sw" style="background:#2e7d32"></span>spent '
        '<span class="sw" style="background:#8e24aa"></span>spent + possibly spent</p>'
    )


def _outcomes_svg(attempts: Sequence[Attempt], buckets: int = 48) -> str:
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
                f'height="{height:.1f}" fill="{_color(outcome)}"><title>{_e(outcome)}: {count}'
                "</title></rect>"
            )
    legend = "".join(
        f'<span class="sw" style="background:{_color(o)}"></span>{_e(o)}'
        for o in sorted({a.outcome for a in timed}, key=outcome_rank)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">'
        "<title>Attempts over time by outcome</title>"
        + "".join(bars)
        + f'<text x="{_PAD}" y="{_PAD - 8}" font-size="11">{tallest} per slice</text>'
        + f'<text x="{_PAD}" y="{_H - 12}" font-size="11">{_e(_clock(start))}</text>'
        + f'<text x="{_W - _PAD}" y="{_H - 12}" font-size="11" text-anchor="end">'
        f"{_e(_clock(end))}</text></svg><p>{legend}</p>"
    )


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _locate(raw: str, ledger: Path) -> str | None:
    """The image file a ledger's `output` names (absolute, or relative to cwd or the ledger)."""
    path = Path(raw)
    folder = ledger.parent
    candidates = [path] if path.is_absolute() else [path, folder / path, folder / path.name]
    for candidate in candidates:
        if candidate.is_file():
            return os.path.abspath(candidate)
    return None


def _thumb_height(attempt: Attempt, file_path: str) -> int:
    ratio = None
    if attempt.aspect_ratio and ":" in attempt.aspect_ratio:
        w, _, h = attempt.aspect_ratio.partition(":")
        if w.isdigit() and h.isdigit() and int(w) and int(h):
            ratio = int(h) / int(w)
    if ratio is None:
        try:
            with open(file_path, "rb") as handle:
                head = handle.read(24)
        except OSError:
            head = b""
        if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 24:
            width, height = int.from_bytes(head[16:20]), int.from_bytes(head[20:24])
            ratio = height / width if width and height else None
    return max(1, round(THUMB_PX * (ratio or 1.0)))


def _contact_sheet(loaded: LoadedReport, base: str) -> list[str]:
    cards: list[str] = []
    missing = 0
    for attempt in loaded.attempts:
        if attempt.outcome != "ok" or attempt.dangling:
            continue
        for number, raw in enumerate(attempt.outputs, start=1):
            found = _locate(raw, loaded.ledgers[attempt.ledger])
            if found is None:
                missing += 1
                continue
            try:
                relative = os.path.relpath(found, base)
            except ValueError:  # another drive on Windows: no relative path exists
                missing += 1
                continue
            src = quote(relative.replace(os.sep, "/"))
            label = attempt.item if number == 1 else f"{attempt.item}+{number}"
            cards.append(
                f'<figure><img src="{_e(src)}" loading="lazy" width="{THUMB_PX}" '
                f'height="{_thumb_height(attempt, found)}" alt="{_e(label)}"><figcaption>'
                f"<b>{_e(label)}</b> {_e(usd(attempt.price_usd))}<br>"
                f"{_e(one_line(attempt.prompt, 140))}</figcaption></figure>"
            )
    parts = [f"<h2>Delivered images ({len(cards)})</h2>"]
    if missing:
        parts.append(f"<p>{missing} delivered image files were not found and are not shown.</p>")
    for first in range(0, len(cards), SHEET_PAGE):
        page = cards[first : first + SHEET_PAGE]
        parts.append(
            f"<details{' open' if first == 0 else ''}><summary>Images {first + 1}–"
            f'{first + len(page)} of {len(cards)}</summary><div class="sheet">'
            + "".join(page)
            + "</div></details>"
        )
    return parts


def _failures_html(loaded: LoadedReport, several_jobs: bool) -> list[str]:
    failed = failed_items(loaded)
    parts = [f"<h2>Failures ({len(failed)})</h2>"]
    if not failed:
        return [*parts, "<p>None.</p>"]
    parts.append("<table><tr><th>item</th><th>outcome</th><th>price</th><th>reason</th></tr>")
    parts.extend(
        f"<tr><td>{_e(item_label(item, several_jobs))}</td><td>{_e(item.final.outcome)}</td>"
        f"<td class=n>{_e(usd(item.final.price_usd))}</td>"
        f"<td>{_e(one_line(item.final.error, 300))}</td></tr>"
        for item in failed[:HTML_FAILURES]
    )
    parts.append("</table>")
    if len(failed) > HTML_FAILURES:
        parts.append(f"<p>... and {len(failed) - HTML_FAILURES} more (see --format json).</p>")
    parts.append(f"<p>Retry would cost about {_e(usd(figures([], failed).retry_cost_usd))}.</p>")
    return parts
