"""How the report renderers write numbers and labels: dollars, seconds, counts, one-line text."""

from __future__ import annotations

from datetime import UTC, datetime

from batchbanana.report.loading import Item
from batchbanana.report.runs import Run

# A run's cells, as both the table and the page show them: the first RUN_TEXT_COLUMNS read left
# to right, the figures line up on the right.
RUN_COLUMNS = ("started", "command", "wall", "requests", "refused (429/503)", "per ok")
RUN_TEXT_COLUMNS = 2
# With a run in batch mode among them, a `mode` column follows `command`.
MODE_RUN_COLUMNS = (*RUN_COLUMNS[:RUN_TEXT_COLUMNS], "mode", *RUN_COLUMNS[RUN_TEXT_COLUMNS:])
RUNS_NOTE = "refused: turned away for load, 429 rate quota / 503 overloaded; per ok: refused per ok"


def usd(amount: float | None) -> str:
    """Dollars with at least cents and up to six decimals, never hiding a tenth of a cent."""
    if amount is None:
        return "-"
    text = f"{amount:,.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def count_text(number: int, noun: str, plural: str | None = None) -> str:
    """ "1 item", "2 items" ("1 batch", "2 batches" with `plural`)."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def iso_text(moment: datetime | None) -> str | None:
    """A time as the ledger writes one (ISO 8601 UTC with milliseconds), or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clock_text(moment: datetime | None) -> str:
    """A time in UTC to the second, or "-" when not known."""
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration_text(seconds: float | None) -> str:
    """A wall time a person reads at a glance: "4.2 s", "12m05s", "3h07m"."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m{int(seconds % 60):02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def shows_mode(found: list[Run]) -> bool:
    """Runs are shown with their mode when any was in batch mode: a sync job's report looks as
    it always did."""
    return any(run.mode != "sync" for run in found)


def run_columns(with_mode: bool) -> tuple[tuple[str, ...], int]:
    """The runs' column titles, and how many of them are text (read left to right)."""
    if with_mode:
        return MODE_RUN_COLUMNS, RUN_TEXT_COLUMNS + 1
    return RUN_COLUMNS, RUN_TEXT_COLUMNS


def run_cells(run: Run, with_mode: bool = False) -> tuple[str, ...]:
    """One run under RUN_COLUMNS (MODE_RUN_COLUMNS `with_mode`): refusals for load with their
    429s and 503s, and per ok result."""
    per_ok = run.refused_per_ok
    return (
        clock_text(run.started),
        run.command or "-",
        *((run.mode,) if with_mode else ()),
        duration_text(run.wall_s),
        str(run.requests),
        f"{run.refused} ({run.refused_429}/{run.refused_503})",
        "-" if per_ok is None else f"{per_ok:.2f}",
    )


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


def aligned(rows: list[tuple[str, ...]], text_columns: int) -> list[str]:
    """Rows of cells as aligned lines: the first `text_columns` left, the figures right."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  "
        + "  ".join(
            cell.ljust(width) if column < text_columns else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
