"""The report's figures over the attempts and items loading.py read from the ledgers: totals,
outcomes, latency percentiles, and the rows per model and size (text.py renders them as a table,
JSON or CSV, html.py as a page, render.py picks one).

Every money sum is taken once over the ledgers' own prices, then rounded.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from batchbanana.report.attempts import IN_BATCH
from batchbanana.report.loading import Attempt, Item, LoadedReport
from batchbanana.rules.models import ALL_SIZES
from batchbanana.rules.outcomes import RETRYABLE, Outcome
from batchbanana.rules.pricing import BATCH_DISCOUNT, money

# The contract's outcomes in its own order; anything else a ledger holds sorts after them.
OUTCOME_ORDER: tuple[str, ...] = tuple(Outcome)
SIZE_ORDER = {size: rank for rank, size in enumerate(ALL_SIZES)}
HTML_FAILURES = 2000
SHEET_PAGE = 500
THUMB_PX = 160


@dataclass(frozen=True, slots=True)
class Figures:
    """The report's figures over a set of attempts and items (the whole report, or one row)."""

    items: int
    outcomes: tuple[tuple[str, int], ...]  # final outcome -> items
    attempts: int
    images: int
    spent_usd: float
    possibly_spent_usd: float
    free_retries: int
    failed_items: int
    retry_cost_usd: float
    latency_s: tuple[float | None, float | None, float | None]  # p50, p90, p99 of ok attempts
    latency_count: int

    @property
    def cost_per_image_usd(self) -> float | None:
        """Spent divided by delivered images; None when nothing was delivered."""
        return money(self.spent_usd / self.images) if self.images else None


def figures(attempts: Iterable[Attempt], items: Iterable[Item]) -> Figures:
    """Totals over some attempts and items; every money sum is taken once, then rounded."""
    attempts = list(attempts)
    items = list(items)
    results = [a for a in attempts if not a.dangling]
    ok = [a for a in results if a.outcome == "ok"]
    latencies = sorted(a.latency_s for a in ok if a.latency_s is not None)
    failed = [i for i in items if failed_outcome(i.final.outcome)]
    outcomes = Counter(i.final.outcome for i in items)
    return Figures(
        items=len(items),
        outcomes=tuple(sorted(outcomes.items(), key=lambda pair: outcome_rank(pair[0]))),
        attempts=len(results),
        images=sum(max(1, len(a.outputs)) for a in ok),
        spent_usd=money(math.fsum(a.price_usd for a in results if a.billed == "yes")),
        possibly_spent_usd=money(math.fsum(a.price_usd for a in attempts if a.billed == "unknown")),
        free_retries=sum(1 for a in results if a.billed == "no" and a.outcome in RETRYABLE),
        failed_items=len(failed),
        # `retry` sends synchronously: a batch attempt's price is half the list price it pays.
        retry_cost_usd=money(
            math.fsum(
                i.final.price_usd / (BATCH_DISCOUNT if i.final.mode == "batch" else 1.0)
                for i in failed
            )
        ),
        latency_s=(
            _percentile(latencies, 50),
            _percentile(latencies, 90),
            _percentile(latencies, 99),
        ),
        latency_count=len(latencies),
    )


def failed_outcome(outcome: str) -> bool:
    """An item that ended so failed: not ok, and not still waiting in a remote batch."""
    return outcome not in ("ok", IN_BATCH)


def outcome_rank(outcome: str) -> tuple[int, str]:
    rank = OUTCOME_ORDER.index(outcome) if outcome in OUTCOME_ORDER else len(OUTCOME_ORDER)
    return rank, outcome


def _percentile(ordered: list[float], percent: int) -> float | None:
    """Nearest-rank percentile: always a latency that was actually measured."""
    if not ordered:
        return None
    return round(ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1], 3)


def by_model_size(loaded: LoadedReport) -> list[tuple[str, str, Figures]]:
    """One row per model and size: attempts by their own line, items by their final attempt."""
    attempts: dict[tuple[str, str], list[Attempt]] = defaultdict(list)
    items: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for attempt in loaded.attempts:
        attempts[(attempt.model, attempt.image_size)].append(attempt)
    for item in loaded.items:
        items[(item.final.model, item.final.image_size)].append(item)
    keys = sorted(set(attempts) | set(items), key=lambda k: (k[0], SIZE_ORDER.get(k[1], 9), k[1]))
    return [(m, s, figures(attempts[(m, s)], items[(m, s)])) for m, s in keys]


def failed_items(loaded: LoadedReport) -> list[Item]:
    """Items whose final outcome is not ok (an item waiting in a batch has not failed), in
    ledger order."""
    return [item for item in loaded.items if failed_outcome(item.final.outcome)]
