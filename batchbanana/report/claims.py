"""`report --claims`: the attempts that qualify for the provider's failed-generation refund
(rules/claims.py decides which), with what a claim form asks (time, model, size, price, HTTP
status, finish reason, response id) and the total to claim; as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from batchbanana.report.attempts import EPOCH
from batchbanana.report.format import aligned, count_text, iso_text, one_line, usd
from batchbanana.report.loading import Attempt, LoadedReport
from batchbanana.rules.claims import qualifies
from batchbanana.rules.pricing import money

CLAIM_FORMATS = ("table", "json", "csv")
CLAIM_COLUMNS = (
    "item", "attempt", "ts", "model", "image_size", "outcome", "price_usd", "http_status",
    "finish_reason", "response_id", "job", "ledger", "error",
)  # fmt: skip
_TABLE_COLUMNS = (
    "time (UTC)", "item", "attempt", "model", "size", "outcome", "http", "finish reason",
    "response id", "price",
)  # fmt: skip
HOW_TO_CLAIM = (
    "API易 reimburses failed generations not caused by the input: to claim them (or check that"
    " they were credited), send this list (--format csv) to its support with your account name"
)


def claimed(loaded: LoadedReport) -> list[Attempt]:
    """Every attempt that qualifies, oldest first (by its result line's time)."""
    found = [
        attempt
        for attempt in loaded.attempts
        if not attempt.dangling
        and qualifies(attempt.outcome, attempt.billed, attempt.finish_reason)
    ]
    return sorted(found, key=lambda a: (a.ts or EPOCH, a.ledger, a.order))


def _claim_json(attempt: Attempt, loaded: LoadedReport) -> dict[str, Any]:
    return {
        "item": attempt.item,
        "attempt": attempt.attempt,
        "ts": iso_text(attempt.ts),
        "model": attempt.model,
        "image_size": attempt.image_size,
        "outcome": attempt.outcome,
        "price_usd": attempt.price_usd,
        "http_status": attempt.http_status,
        "finish_reason": attempt.finish_reason,
        "response_id": attempt.response_id,
        "job": loaded.jobs[attempt.ledger].name,
        "ledger": str(loaded.ledgers[attempt.ledger]),
        "error": attempt.error,
    }


def _total(found: list[Attempt]) -> float:
    return money(math.fsum(attempt.price_usd for attempt in found))


def claims_json(loaded: LoadedReport) -> dict[str, Any]:
    """{"claims": [...], "count", "total_usd"}."""
    found = claimed(loaded)
    return {
        "claims": [_claim_json(attempt, loaded) for attempt in found],
        "count": len(found),
        "total_usd": _total(found),
    }


def claims_csv(loaded: LoadedReport) -> str:
    """One row per claim under CLAIM_COLUMNS (no total row: a sum of the column is the total)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CLAIM_COLUMNS)
    for attempt in claimed(loaded):
        row = _claim_json(attempt, loaded)
        writer.writerow(["" if row[name] is None else row[name] for name in CLAIM_COLUMNS])
    return buffer.getvalue()


def claims_table(loaded: LoadedReport) -> str:
    """The claims for people: one line each, then the total and how to claim it."""
    found = claimed(loaded)
    out = [
        f"Refund claims: {count_text(len(found), 'attempt')} to claim, {usd(_total(found))}"
        f" ({count_text(len(loaded.ledgers), 'ledger')})"
    ]
    if found:
        rows = [
            (
                (iso_text(a.ts) or "-").replace("T", " ").removesuffix("Z"),
                a.item,
                str(a.attempt if a.attempt is not None else "-"),
                a.model,
                a.image_size,
                a.outcome,
                str(a.http_status if a.http_status is not None else "-"),
                a.finish_reason or "-",
                one_line(a.response_id, 40) or "-",
                usd(a.price_usd),
            )
            for a in found
        ]
        out += aligned([_TABLE_COLUMNS, *rows], len(_TABLE_COLUMNS) - 1)
    out += [
        f"Total to claim: {usd(_total(found))}",
        "Qualify: billed (or possibly billed) timeout, bad_response, server_error, and no_image"
        " without a safety or content-policy finish reason; never refused, ok, write_error or"
        " interrupted.",
        HOW_TO_CLAIM + ".",
    ]
    return "\n".join(out) + "\n"
