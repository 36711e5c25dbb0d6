"""A grounded image's attribution in the HTML report: the pages Google Search grounded it in,
linked by title beside the image, and what it searched (contract section 13; the provider's
attribution rules ask grounded content to credit its sources)."""

from __future__ import annotations

import html
from urllib.parse import urlsplit

from batchbanana.report.format import one_line
from batchbanana.report.loading import Attempt

SHOWN_SOURCES = 5  # per image; the rest are counted (every one is in the ledger)
CSS = """
.src{margin-top:2px;color:#555;overflow-wrap:anywhere}.src span{display:block}
.src a{display:block;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def sources_html(attempt: Attempt) -> str:
    """The sources of a grounded attempt, linked (http(s) only, whatever the ledger holds), how
    many more, and its searches; "" for an ungrounded one."""
    grounding = attempt.grounding
    if not isinstance(grounding, dict):
        return ""
    links = []
    sources = [s for s in grounding.get("sources") or () if isinstance(s, dict)]
    for source in sources[:SHOWN_SOURCES]:
        uri, title = source.get("uri"), source.get("title")
        if not isinstance(uri, str) or urlsplit(uri).scheme not in ("http", "https"):
            continue
        name = one_line(title if isinstance(title, str) and title else uri, 80)
        links.append(
            f'<a href="{_e(uri)}" title="{_e(uri)}" rel="noopener noreferrer nofollow">'
            f"{_e(name)}</a>"
        )
    left_out = grounding.get("more_sources")
    more = max(0, len(sources) - SHOWN_SOURCES) + (left_out if type(left_out) is int else 0)
    queries = [q for q in grounding.get("queries") or () if isinstance(q, str)]
    parts = ['<div class="src">Sources (Google Search):' if links else '<div class="src">']
    parts.extend(links)
    if more > 0:
        parts.append(f"<span>+{more} more</span>")
    if queries:
        parts.append(f"<span>searched: {_e(one_line('; '.join(queries), 120))}</span>")
    return "".join(parts) + "</div>" if len(parts) > 1 else ""
