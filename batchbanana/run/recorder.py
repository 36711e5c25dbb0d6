"""An attempt's result line, built from what the attempt produced and appended to the ledger, with
the run's money kept in step (spent, possibly spent) as each line is written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchbanana.ledger.records import ResultLine
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.job import WorkItem
from batchbanana.rules.outcomes import Billed, Outcome, billed
from batchbanana.rules.pricing import money
from batchbanana.run.client import AttemptResult
from batchbanana.run.totals import RunTotals


class ResultRecorder:
    """Writes result lines to one ledger and adds their prices to one run's totals."""

    def __init__(self, ledger: LedgerWriter, totals: RunTotals) -> None:
        self._ledger = ledger
        self._totals = totals

    def record(
        self,
        item: WorkItem,
        attempt: int,
        outcome: Outcome,
        price_usd: float,
        result: AttemptResult | None = None,
        outputs: Sequence[Path] = (),
        size_bytes: int | None = None,
        error: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "output": str(outputs[0]) if outputs else None,
            "bytes": size_bytes,
            "error": error if error is not None else (result.error if result else None),
        }
        if result is not None:
            fields.update(
                http_status=result.http_status,
                latency_s=result.latency_s,
                finish_reason=result.finish_reason,
                usage=result.usage,
            )
            for key in ("text", "response_id", "model_version", "grounding"):
                value = getattr(result, key)
                if value is not None:
                    fields[key] = value
        if len(outputs) > 1:
            fields["outputs"] = [str(path) for path in outputs]
        fields.update(extra or {})
        record = ResultLine.for_attempt(
            item.id, attempt, item.fingerprint, outcome, price_usd, item.spec(), **fields
        )
        self._ledger.append_soon_durable(record)
        kind = billed(outcome)
        if kind is Billed.YES:
            self._totals.spent_usd = money(self._totals.spent_usd + price_usd)
            self._totals.run_spent_usd = money(self._totals.run_spent_usd + price_usd)
        elif kind is Billed.UNKNOWN:
            self._totals.possibly_spent_usd = money(self._totals.possibly_spent_usd + price_usd)

    def over_budget(
        self, item: WorkItem, attempt: int, price_usd: float, budget_usd: float | None
    ) -> None:
        """Record an item the budget kept back: no `sent` line, no request, the next attempt
        number, and what it would have cost added to the run's `over_budget_usd`."""
        self._totals.over_budget_usd = money(self._totals.over_budget_usd + price_usd)
        why = f"not sent: ${price_usd:g} more would exceed the budget of ${budget_usd or 0:g}"
        self.record(item, attempt, Outcome.OVER_BUDGET, price_usd, error=why)
