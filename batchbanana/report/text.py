"""The report for tools: JSON and CSV (the table for people is table.py, the page html.py).

Everything shown comes from aggregate.py's figures, which come only from the ledgers' own lines.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from typing import Any

from batchbanana.report.aggregate import (
    Figures,
    by_model_size,
    failed_items,
    figures,
    outcome_rank,
)
from batchbanana.report.format import iso_text
from batchbanana.report.loading import Attempt, LoadedReport
from batchbanana.report.modes import BatchRow, batch_rows, by_mode, saved_usd
from batchbanana.report.runs import Run, runs
from batchbanana.rules.pricing import money


def _row_json(figs: Figures) -> dict[str, Any]:
    return {
        "items": figs.items,
        "attempts": figs.attempts,
        "images": figs.images,
        "spent_usd": figs.spent_usd,
        "possibly_spent_usd": figs.possibly_spent_usd,
        "free_retries": figs.free_retries,
        "failed_items": figs.failed_items,
        "retry_cost_usd": figs.retry_cost_usd,
        "cost_per_image_usd": figs.cost_per_image_usd,
    }


def _latency_json(figs: Figures) -> dict[str, Any]:
    p50, p90, p99 = figs.latency_s
    return {"p50": p50, "p90": p90, "p99": p99, "count": figs.latency_count}


def as_json(loaded: LoadedReport) -> dict[str, Any]:
    """The report as one JSON-ready object (contract section 1 keys, and more)."""
    total = figures(loaded.attempts, loaded.items)
    return {
        "spent_usd": total.spent_usd,
        "possibly_spent_usd": total.possibly_spent_usd,
        "items": total.items,
        "outcomes": dict(total.outcomes),
        "attempts": total.attempts,
        "attempt_outcomes": dict(
            sorted(
                Counter(a.outcome for a in loaded.attempts if not a.dangling).items(),
                key=lambda pair: outcome_rank(pair[0]),
            )
        ),
        "by_model_size": [
            {"model": m, "image_size": s, **_row_json(f), "latency_s": _latency_json(f)}
            for m, s, f in by_model_size(loaded)
        ],
        "free_retries": total.free_retries,
        "images_delivered": total.images,
        "cost_per_image_usd": total.cost_per_image_usd,
        "latency_s": _latency_json(total),
        "failures": [
            {
                "id": item.id,
                "job": item.job,
                "ledger": str(loaded.ledgers[item.final.ledger]),
                "outcome": item.final.outcome,
                "error": item.final.error,
                "price_usd": item.final.price_usd,
                "model": item.final.model,
                "image_size": item.final.image_size,
                "attempts": item.results,
                "mode": item.final.mode,
            }
            for item in failed_items(loaded)
        ],
        "retry_cost_usd": total.retry_cost_usd,
        "ledgers": [str(path) for path in loaded.ledgers],
        "jobs": [
            {"ledger": j.ledger, "job": j.name, "endpoint": j.endpoint, "price_book": j.price_book}
            for j in loaded.jobs
        ],
        "warnings": len(loaded.warnings),
        "runs": [_run_json(run, loaded) for run in runs(loaded)],
        "by_mode": [
            {
                "mode": mode,
                "attempts": f.attempts,
                "items": f.items,
                "spent_usd": f.spent_usd,
                "possibly_spent_usd": f.possibly_spent_usd,
            }
            for mode, f in by_mode(loaded)
        ],
        "batch_saved_usd": saved_usd(loaded.attempts),
        "batches": [_batch_json(row, loaded) for row in batch_rows(loaded)],
    }


def _batch_json(row: BatchRow, loaded: LoadedReport) -> dict[str, Any]:
    return {
        "batch_key": row.key,
        "name": row.name,
        "state": row.state,
        "requests": row.requests,
        "input": row.input,
        "model": row.model,
        "image_size": row.image_size,
        "ledger": str(loaded.ledgers[row.ledger]),
        "results": row.results,
        "waiting": row.waiting,
        "spent_usd": row.spent_usd,
        "saved_usd": row.saved_usd,
        "stats": row.stats,
    }


def _run_json(run: Run, loaded: LoadedReport) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "command": run.command,
        "mode": run.mode,
        "ledger": str(loaded.ledgers[run.ledger]),
        "started": iso_text(run.started),
        "wall_s": run.wall_s,
        "requests": run.requests,
        "refused_for_load": run.refused,
        "refused_429": run.refused_429,
        "refused_503": run.refused_503,
        "ok": run.ok,
    }


CSV_COLUMNS = (
    "model", "image_size", "items", "attempts", "images", "spent_usd", "possibly_spent_usd",
    "free_retries", "failed_items", "retry_cost_usd", "cost_per_image_usd",
    "latency_p50_s", "latency_p90_s", "latency_p99_s",
    "batch_attempts", "batch_spent_usd", "batch_saved_usd",
)  # fmt: skip


def _batch_cells(attempts: list[Attempt]) -> list[Any]:
    """A CSV row's batch mode columns: its batch results, what they cost and saved."""
    batch = [a for a in attempts if a.mode == "batch" and not a.dangling]
    spent = money(math.fsum(a.price_usd for a in batch if a.billed == "yes"))
    return [len(batch), spent, saved_usd(batch)]


def as_csv(loaded: LoadedReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    rows = [(m, s, f) for m, s, f in by_model_size(loaded)]
    rows.append(("TOTAL", "", figures(loaded.attempts, loaded.items)))
    per_row: dict[tuple[str, str], list[Attempt]] = defaultdict(list)
    for attempt in loaded.attempts:
        per_row[(attempt.model, attempt.image_size)].append(attempt)
    per_row[("TOTAL", "")] = list(loaded.attempts)
    for model, size, figs in rows:
        values = [model, size, *_row_json(figs).values(), *figs.latency_s]
        values += _batch_cells(per_row[(model, size)])
        writer.writerow(["" if value is None else value for value in values])
    return buffer.getvalue()
