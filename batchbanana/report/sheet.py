"""The HTML report's contact sheet: every item's final outcome as a card (its images with a
grounded image's sources, or what went wrong), a matrix's variants side by side under their
shared id, an edit chain as a sequence from its base, and a filter by outcome that works without
scripts (radio buttons and CSS), so the page stays one self-contained file that opens from disk.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from batchbanana.report.aggregate import SHEET_PAGE, THUMB_PX, outcome_rank
from batchbanana.report.attribution import CSS as SOURCES_CSS
from batchbanana.report.attribution import sources_html
from batchbanana.report.charts import outcome_color
from batchbanana.report.format import one_line, usd
from batchbanana.report.loading import Attempt, Item, LoadedReport

CSS = (
    """
.sheet{display:flex;flex-wrap:wrap;gap:8px}.row{display:flex;gap:6px;align-items:flex-start;
flex-wrap:wrap;margin:6px 0;padding:6px;border:1px solid #ddd}.row>b{width:100%;font-size:12px}
.arrow{align-self:center;font-size:20px;color:#888}.fail{width:160px;height:90px;padding:4px;
font-size:11px;border:2px solid;box-sizing:border-box;overflow:hidden}.filter{margin:.5em 0}
.filter label{margin-right:10px;cursor:pointer}
"""
    + SOURCES_CSS
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _key(outcome: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in outcome)


class _Cards:
    """Cards of items, by id; each card knows its outcome for the filter."""

    def __init__(
        self,
        loaded: LoadedReport,
        base: str,
        locate: Callable[[str, Path], str | None],
        height: Callable[[Attempt, str], int],
    ) -> None:
        self.loaded, self.base, self.locate, self.height = loaded, base, locate, height
        self.missing = 0

    def card(self, item: Item, label: str | None = None) -> str:
        final = item.final
        caption = _e(label or item.id)
        if final.outcome != "ok" or not final.outputs:
            color = outcome_color(final.outcome)
            return (
                f'<figure data-o="{_key(final.outcome)}"><div class=fail style="border-color:'
                f'{color}"><b>{caption}</b><br>{_e(final.outcome)} {_e(usd(final.price_usd))}<br>'
                f"{_e(one_line(final.error or '', 120))}</div></figure>"
            )
        images = []
        for number, raw in enumerate(final.outputs, start=1):
            found = self.locate(raw, self.loaded.ledgers[final.ledger])
            try:
                relative = os.path.relpath(found, self.base) if found else None
            except ValueError:  # another drive on Windows: no relative path exists
                relative = None
            if found is None or relative is None:
                self.missing += 1
                continue
            src = quote(relative.replace(os.sep, "/"))
            alt = item.id if number == 1 else f"{item.id}+{number}"
            images.append(
                f'<img src="{_e(src)}" loading="lazy" width="{THUMB_PX}" '
                f'height="{self.height(final, found)}" alt="{_e(alt)}">'
            )
        return (
            f'<figure data-o="ok">{"".join(images)}<figcaption><b>{caption}</b> '
            f"{_e(usd(final.price_usd))}<br>{_e(one_line(final.prompt, 140))}"
            f"{sources_html(final)}</figcaption></figure>"
        )


def _chains(items: dict[str, Item]) -> list[list[str]]:
    """Each path from a base through its edits (a branch gives one path per edit)."""
    children: dict[str, list[str]] = {}
    for item in items.values():
        for used in item.final.uses:
            if used in items:
                children.setdefault(used, []).append(item.id)
    roots = [i for i in children if not any(u in items for u in items[i].final.uses)]
    paths: list[list[str]] = []

    def walk(path: list[str]) -> None:
        following = [c for c in children.get(path[-1], []) if c not in path]
        if not following:
            paths.append(path)
        for child in following:
            walk([*path, child])

    for root in roots:
        walk([root])
    return paths


def contact_sheet(
    loaded: LoadedReport,
    base: str,
    locate: Callable[[str, Path], str | None],
    height: Callable[[Attempt, str], int],
) -> list[str]:
    """The contact sheet's HTML: the filter, matrices, chains, then every other item."""
    items = {item.id: item for item in loaded.items}
    cards = _Cards(loaded, base, locate, height)
    shown: set[str] = set()
    groups: dict[str, list[Item]] = {}
    for item in loaded.items:
        if item.final.variant_of:
            groups.setdefault(item.final.variant_of, []).append(item)
    rows: list[str] = []
    for name, variants in groups.items():
        body = "".join(
            cards.card(v, ", ".join(f"{k}={x}" for k, x in v.final.combination) or v.id)
            for v in variants
        )
        rows.append(f"<div class=row><b>matrix {_e(name)}</b>{body}</div>")
        shown.update(v.id for v in variants)
    for path in _chains(items):
        arrow = "<span class=arrow>→</span>"
        body = arrow.join(cards.card(items[i]) for i in path)
        rows.append(f"<div class=row><b>chain {_e(' → '.join(path))}</b>{body}</div>")
        shown.update(path)
    rest = [cards.card(item) for item in loaded.items if item.id not in shown]
    # The filter's radio buttons must be siblings of the cards' container for the CSS to reach it.
    parts = [f"<h2>Contact sheet ({len(loaded.items)} items)</h2>", '<div class="filter">']
    parts.extend(_filter(loaded))
    parts.append('<div class="cards">')
    if rows:
        parts.append("<h3>Matrices and chains</h3>" + "".join(rows))
    for first in range(0, len(rest), SHEET_PAGE):
        page = rest[first : first + SHEET_PAGE]
        parts.append(
            f"<details{' open' if first == 0 else ''}><summary>Items {first + 1}–"
            f'{first + len(page)} of {len(rest)}</summary><div class="sheet">'
            + "".join(page)
            + "</div></details>"
        )
    parts.append("</div></div>")
    if cards.missing:
        parts.insert(1, f"<p>{cards.missing} image files were not found and are not shown.</p>")
    return parts


def _filter(loaded: LoadedReport) -> list[str]:
    """Radio buttons, then the CSS that hides the cards of every other outcome when one is on."""
    outcomes = sorted({item.final.outcome for item in loaded.items}, key=outcome_rank)
    if len(outcomes) < 2:
        return []
    inputs = ['<input type=radio name=o id="o-all" checked><label for="o-all">all</label>']
    rules = []
    for outcome in outcomes:
        key = _key(outcome)
        count = sum(1 for item in loaded.items if item.final.outcome == outcome)
        inputs.append(
            f'<input type=radio name=o id="o-{key}"><label for="o-{key}">{_e(outcome)}'
            f" ({count})</label>"
        )
        rules.append(f'#o-{key}:checked~.cards figure:not([data-o="{key}"]){{display:none}}')
        rules.append(f'#o-{key}:checked~.cards .row:not(:has([data-o="{key}"])){{display:none}}')
    return [f"<style>{''.join(rules)}</style>", "show:", *inputs]
