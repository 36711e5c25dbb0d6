"""Batch mode in the report: the figures per mode (sync, batch), what batch mode saved against the
list price, and one row per remote batch with what became of its requests (text.py and html.py
show them; every sum comes from the ledgers' own prices).

Saved: a billed batch result paid the batch price, which is the list price times BATCH_DISCOUNT, so
it saved price x (1 - discount) / discount; at half price that is the price paid itself.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from batchbanana.ledger.fields import Json
from batchbanana.report.aggregate import Figures, figures
from batchbanana.report.attempts import BATCH, SYNC
from batchbanana.report.format import count_text, usd
from batchbanana.report.loading import Attempt, Batch, Item, LoadedReport
from batchbanana.rules.pricing import BATCH_DISCOUNT, money

__all__ = ["BatchRow", "BatchSummary", "batch_rows", "batch_summary", "by_mode", "saved_usd"]


def by_mode(loaded: LoadedReport) -> list[tuple[str, Figures]]:
    """One row per mode met, sync first: attempts by their own line, items by their final one."""
    attempts: dict[str, list[Attempt]] = defaultdict(list)
    items: dict[str, list[Item]] = defaultdict(list)
    for attempt in loaded.attempts:
        attempts[attempt.mode].append(attempt)
    for item in loaded.items:
        items[item.final.mode].append(item)
    order = {SYNC: 0, BATCH: 1}
    modes = sorted(set(attempts) | set(items), key=lambda mode: (order.get(mode, 2), mode))
    return [(mode, figures(attempts[mode], items[mode])) for mode in modes]


def saved_usd(attempts: Iterable[Attempt]) -> float:
    """What batch mode saved against the list price over these attempts' billed batch results."""
    factor = (1 - BATCH_DISCOUNT) / BATCH_DISCOUNT
    return money(
        math.fsum(
            a.price_usd * factor
            for a in attempts
            if a.mode == BATCH and not a.dangling and a.billed == "yes"
        )
    )


@dataclass(frozen=True, slots=True)
class BatchRow:
    """A remote batch and what became of its requests (`key` None for a batch known only by the
    name on its results)."""

    key: str | None
    name: str | None
    state: str | None
    model: str | None
    image_size: str | None
    requests: int  # as its `batch` line recorded it, else its results and waiting requests
    input: str | None
    stats: Json | None
    ledger: int
    results: int  # result lines of its requests
    waiting: int  # its requests' `sent` lines without a result
    spent_usd: float
    saved_usd: float


def _row(batch: Batch | None, attempts: list[Attempt], label: str = "") -> BatchRow:
    """A batch's row; with no `batch` line (`batch` None), `label` is the key its waiting
    requests name, or else the name its results give."""
    results = [a for a in attempts if not a.dangling]
    waiting = len(attempts) - len(results)
    first = attempts[0] if attempts else None
    if batch is None:
        batch = Batch(label, "", first.ledger if first else 0, 0, name=None if waiting else label)
        known = False
    else:
        known = True
    return BatchRow(
        key=batch.key if known or waiting else None,
        name=batch.name,
        state=batch.state,
        model=batch.model or (first.model if first else None),
        image_size=batch.image_size or (first.image_size if first else None),
        requests=batch.requests if batch.requests is not None else len(attempts),
        input=batch.input,
        stats=batch.stats,
        ledger=batch.ledger,
        results=len(results),
        waiting=waiting,
        spent_usd=money(math.fsum(a.price_usd for a in results if a.billed == "yes")),
        saved_usd=saved_usd(results),
    )


def batch_rows(loaded: LoadedReport) -> list[BatchRow]:
    """Every batch the ledgers name, in the order first read: those their `batch` lines
    describe, then any named only by a result or a `sent` line."""
    index: dict[tuple[str, str], Batch] = {}
    for batch in loaded.batches:
        index[(batch.group, batch.key)] = batch
        if batch.name is not None:
            index.setdefault((batch.group, batch.name), batch)
    members: dict[tuple[str, str], list[Attempt]] = defaultdict(list)  # (group, key) -> attempts
    others: dict[tuple[str, str], list[Attempt]] = {}
    for attempt in loaded.attempts:
        if attempt.mode != BATCH or attempt.batch is None:
            continue
        found = index.get((attempt.group, attempt.batch))
        if found is not None:
            members[(found.group, found.key)].append(attempt)
        else:
            others.setdefault((attempt.group, attempt.batch), []).append(attempt)
    rows = [_row(batch, members[(batch.group, batch.key)]) for batch in loaded.batches]
    rows += [_row(None, group, label) for (_, label), group in others.items()]
    return rows


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """Batch mode at a glance: requests sent in batches, how many batches, what it saved, and
    what still waits in them."""

    requests: int
    batches: int
    saved_usd: float
    waiting: int
    waiting_batches: int

    def text(self) -> str:
        """ "12 requests in 3 batches, saved $0.84; 4 waiting in 1 batch (possibly spent)"."""
        line = (
            f"{count_text(self.requests, 'request')} in"
            f" {count_text(self.batches, 'batch', 'batches')},"
            f" saved {usd(self.saved_usd)}"
        )
        if self.waiting:
            line += (
                f"; {self.waiting} waiting in"
                f" {count_text(self.waiting_batches, 'batch', 'batches')}"
                " (possibly spent until `batchbanana run` collects them)"
            )
        return line


def batch_summary(loaded: LoadedReport) -> BatchSummary | None:
    """The summary, or None when no request of these ledgers went out in a batch. A batch
    never created (no name, nothing waiting) sent nothing and is left out."""
    made = [row for row in batch_rows(loaded) if row.name is not None or row.waiting]
    if not made:
        return None
    return BatchSummary(
        requests=sum(row.results + row.waiting for row in made),
        batches=len(made),
        saved_usd=saved_usd(loaded.attempts),
        waiting=sum(row.waiting for row in made),
        waiting_batches=sum(1 for row in made if row.waiting),
    )
