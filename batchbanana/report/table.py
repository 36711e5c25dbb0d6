"""The report as a table for people (JSON and CSV for tools are text.py, the page html.py).

Everything shown comes from aggregate.py's figures, which come only from the ledgers' own lines.
"""

from __future__ import annotations

import math
from collections import defaultdict

from batchbanana.report.aggregate import by_model_size, failed_items, figures
from batchbanana.report.format import (
    RUNS_NOTE,
    aligned,
    count_text,
    item_label,
    one_line,
    run_cells,
    run_columns,
    seconds_text,
    shows_mode,
    usd,
)
from batchbanana.report.loading import Item, LoadedReport
from batchbanana.report.modes import BatchRow, batch_rows, batch_summary
from batchbanana.report.runs import Run, runs
from batchbanana.rules.pricing import money

TABLE_FAILURES = 20
TABLE_RUNS = 20  # the latest; a job retried every night for months has many
TABLE_BATCHES = 20  # the latest


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
    with_mode = shows_mode(found)
    columns, text_columns = run_columns(with_mode)
    return aligned([columns, *(run_cells(run, with_mode) for run in found)], text_columns)


BATCH_COLUMNS = ("batch", "state", "model", "size", "input", "requests", "results", "waiting")


def _batch_lines(rows: list[BatchRow]) -> list[str]:
    cells = [
        (
            row.name or row.key or "-",
            row.state or "-",
            row.model or "-",
            row.image_size or "-",
            row.input or "-",
            str(row.requests),
            str(row.results),
            str(row.waiting),
        )
        for row in rows
    ]
    return aligned([BATCH_COLUMNS, *cells], 5)


def as_table(loaded: LoadedReport) -> str:
    total = figures(loaded.attempts, loaded.items)
    summary = batch_summary(loaded)
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
        + (
            "  (billed unknown, in flight when stopped, or waiting in a batch)"
            if summary is not None and summary.waiting
            else "  (billed unknown, or in flight when stopped)"
        ),
        f"Retried at no charge:      {total.free_retries}",
        f"Cost per delivered image:  {usd(total.cost_per_image_usd)}"
        f"  ({count_text(total.images, 'image')} delivered)",
        f"Latency of ok attempts:    p50 {seconds_text(p50)}  p90 {seconds_text(p90)}"
        f"  p99 {seconds_text(p99)}  (n={total.latency_count})",
    ]
    if summary is not None:
        out.append(f"Batch mode:                {summary.text()}")
    out += [
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
    batches = batch_rows(loaded)
    if batches:
        out += ["", f"Batches ({len(batches)}):"]
        if len(batches) > TABLE_BATCHES:
            out.append(
                f"  {len(batches) - TABLE_BATCHES} earlier batches left out (see --format json)"
            )
        out.extend(_batch_lines(batches[-TABLE_BATCHES:]))
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
