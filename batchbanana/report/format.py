"""How the report renderers write numbers and labels: dollars, seconds, counts, one-line text."""

from __future__ import annotations

from datetime import UTC, datetime

from batchbanana.report.loading import Item


def usd(amount: float | None) -> str:
    """Dollars with at least cents and up to six decimals, never hiding a tenth of a cent."""
    if amount is None:
        return "-"
    text = f"{amount:,.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def count_text(number: int, noun: str) -> str:
    """ "1 item", "2 items"."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def iso_text(moment: datetime | None) -> str | None:
    """A time as the ledger writes one (ISO 8601 UTC with milliseconds), or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seconds_text(value: float | None) -> str:
    """Seconds with one decimal, or "-" when not known."""
    return "-" if value is None else f"{value:.1f} s"


def one_line(text: str | None, limit: int) -> str:
    """Text folded onto one line and cut at `limit` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def item_label(item: Item, several_jobs: bool) -> str:
    """An item's id, prefixed by its job when the report spans several jobs."""
    return f"{item.job or '?'}/{item.id}" if several_jobs and item.job else item.id
