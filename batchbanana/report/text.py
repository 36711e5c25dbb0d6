"""The report as text: a table for people, JSON and CSV for tools (the page is html.py).

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
from batchbanana.report.format import (
    RUN_COLUMNS,
    RUN_TEXT_COLUMNS,
    RUNS_NOTE,
    count_text,
    iso_text,
    item_label,
    one_line,
    run_cells,
    seconds_text,
    usd,
)
from batchbanana.report.loading import Item, LoadedReport
from batchbanana.report.runs import Run, runs
from batchbanana.rules.pricing import money

TABLE_FAILURES = 20
TABLE_RUNS = 20  # the latest; a job retried every night for months has many


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
    }


def _run_json(run: Run, loaded: LoadedReport) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "command": run.command,
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
)  # fmt: skip


def as_csv(loaded: LoadedReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    rows = [(m, s, f) for m, s, f in by_model_size(loaded)]
    rows.append(("TOTAL", "", figures(loaded.attempts, loaded.items)))
    for model, size, figs in rows:
        values = [model, size, *_row_json(figs).values(), *figs.latency_s]
        writer.writerow(["" if value is None else value for value in values])
    return buffer.getvalue()


def _retry_lines(loaded: LoadedReport, failed: list[Item]) -> list[str]:
    per_ledger: dict[int, list[Item]] = defaultdict(list)
    for item in failed:
        per_ledger[item.final.ledger].append(item)
    return [
        f"  batchbanana retry {loaded.ledgers[index]}   # {count_text(len(group), 'item')}, about "
        + usd(money(math.fsum(i.final.price_usd for i in group)))
        for index, group in sorted(per_ledger.items())
    ]


def _run_lines(found: list[Run]) -> list[str]:
    if not found:
        return []
    rows = [RUN_COLUMNS, *(run_cells(run) for run in found)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(RUN_COLUMNS))]
    return [
        "  "
        + "  ".join(
            cell.ljust(width) if column < RUN_TEXT_COLUMNS else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]


def as_table(loaded: LoadedReport) -> str:
    total = figures(loaded.attempts, loaded.items)
    several_jobs = len({item.final.group for item in loaded.items}) > 1
    out = [
        f"batchbanana report: {count_text(len(loaded.ledgers), 'ledger')},"
        f" {count_text(total.items, 'item')}"
    ]
    for job in loaded.jobs:
        out.append(f"  {job.ledger}" + (f"  (job '{job.name}')" if job.name else ""))
    out.append("")
    out.append("Items by final outcome:")
    out.extend(f"  {outcome:<14}{count:>8}" for outcome, count in total.outcomes)
    if not total.outcomes:
        out.append("  (none)")
    p50, p90, p99 = total.latency_s
    out += [
        "",
        f"Attempts:                  {total.attempts}",
        f"Spent:                     {usd(total.spent_usd)}",
        f"Possibly spent:            {usd(total.possibly_spent_usd)}"
        "  (billed unknown, or in flight when stopped)",
        f"Retried at no charge:      {total.free_retries}",
        f"Cost per delivered image:  {usd(total.cost_per_image_usd)}"
        f"  ({count_text(total.images, 'image')} delivered)",
        f"Latency of ok attempts:    p50 {seconds_text(p50)}  p90 {seconds_text(p90)}"
        f"  p99 {seconds_text(p99)}  (n={total.latency_count})",
        "",
        "By model and size:",
        f"  {'model':<32}{'size':<6}{'items':>7}{'attempts':>10}{'images':>8}"
        f"{'spent':>14}{'possibly':>12}",
    ]
    for model, size, figs in by_model_size(loaded):
        out.append(
            f"  {model:<32}{size:<6}{figs.items:>7}{figs.attempts:>10}{figs.images:>8}"
            f"{usd(figs.spent_usd):>14}{usd(figs.possibly_spent_usd):>12}"
        )
    out += ["", f"Runs ({RUNS_NOTE}):"]
    found = runs(loaded)
    if len(found) > TABLE_RUNS:
        out.append(f"  {len(found) - TABLE_RUNS} earlier runs left out (see --format json)")
    out.extend(_run_lines(found[-TABLE_RUNS:]) or ["  (none)"])
    failed = failed_items(loaded)
    out += ["", f"Failed items ({len(failed)}):"]
    shown = failed[:TABLE_FAILURES]
    width = max((len(item_label(item, several_jobs)) for item in shown), default=0)
    for item in shown:
        out.append(
            f"  {item_label(item, several_jobs):<{width}}  {item.final.outcome:<13}"
            f"{usd(item.final.price_usd):>10}  {one_line(item.final.error, 120)}"
        )
    if len(failed) > TABLE_FAILURES:
        out.append(f"  ... and {len(failed) - TABLE_FAILURES} more (see --format json or csv)")
    if failed:
        out += ["", f"Retry would cost about {usd(total.retry_cost_usd)}:"]
        out.extend(_retry_lines(loaded, failed))
    else:
        out.append("  (none)")
    if loaded.warnings:
        out += ["", f"Warnings: {len(loaded.warnings)} (printed above on stderr)"]
    return "\n".join(out) + "\n"
