"""The HTML report: one self-contained page a person opens in the morning.

Summary figures, inline SVG charts of spend and outcomes over time, the contact sheet
(report/sheet.py: every item's final outcome, matrices side by side, chains in sequence, a filter
by outcome; images linked relative to the page, lazily loaded, never inlined) and the failures.
No network, no scripts; every string from a ledger is escaped.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from urllib.parse import urlsplit

from batchbanana.report.aggregate import (
    HTML_FAILURES,
    THUMB_PX,
    by_model_size,
    failed_items,
    figures,
)
from batchbanana.report.charts import outcome_color, outcomes_svg, spend_svg
from batchbanana.report.format import (
    RUNS_NOTE,
    item_label,
    one_line,
    run_cells,
    run_columns,
    seconds_text,
    shows_mode,
    usd,
)
from batchbanana.report.loading import Attempt, LoadedReport
from batchbanana.report.modes import BatchRow, batch_rows, batch_summary
from batchbanana.report.runs import Run, runs
from batchbanana.report.sheet import CSS as SHEET_CSS
from batchbanana.report.sheet import contact_sheet

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
        SHEET_CSS,
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
    batches = batch_summary(loaded)
    if batches is not None:
        summary.insert(4, ("Batch mode", batches.text()))
    parts.append("</p><h2>Summary</h2><dl>")
    parts.extend(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in summary)
    parts.append("</dl><h3>Items by final outcome</h3><table>")
    parts.extend(
        f'<tr><td><span class="sw" style="background:{outcome_color(o)}"></span>{_e(o)}</td>'
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
    parts.append("</table>")
    parts.extend(_runs_html(runs(loaded)))
    parts.extend(_batches_html(batch_rows(loaded)))
    parts.append("<h2>Spend and outcomes over time</h2>")
    parts.append(spend_svg(loaded.attempts))
    parts.append(outcomes_svg(loaded.attempts))
    parts.extend(contact_sheet(loaded, base, _locate, _thumb_height))
    parts.extend(_failures_html(loaded, several_jobs))
    parts.append("</body></html>\n")
    return "".join(parts)


def _runs_html(found: list[Run]) -> list[str]:
    """One row per run, with the text table's cells."""
    parts = [f"<h3>Runs</h3><p>{_e(RUNS_NOTE)}</p>"]
    if not found:
        return [*parts, "<p>None.</p>"]
    with_mode = shows_mode(found)
    columns, text_columns = run_columns(with_mode)
    parts.append("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in columns) + "</tr>")
    for run in found:
        cells = (
            f"<td{'' if i < text_columns else ' class=n'}>{_e(c)}</td>"
            for i, c in enumerate(run_cells(run, with_mode))
        )
        parts.append("<tr>" + "".join(cells) + "</tr>")
    return [*parts, "</table>"]


def _batches_html(rows: list[BatchRow]) -> list[str]:
    """One row per remote batch (none, no section): its state and what became of its requests."""
    if not rows:
        return []
    heads = ("batch", "state", "model", "size", "input", "requests", "results", "waiting", "spent")
    parts = ["<h3>Batches</h3><table><tr>", *(f"<th>{_e(h)}</th>" for h in heads), "</tr>"]
    for row in rows:
        text = (row.name or row.key, row.state, row.model, row.image_size, row.input)
        counts = (row.requests, row.results, row.waiting, usd(row.spent_usd))
        parts.append(
            "<tr>"
            + "".join(f"<td>{_e(cell or '-')}</td>" for cell in text)
            + "".join(f"<td class=n>{_e(cell)}</td>" for cell in counts)
            + "</tr>"
        )
    return [*parts, "</table>"]


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
