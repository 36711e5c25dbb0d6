"""Reading ledgers for the report: each `sent` and `result` line (through ledger/records.py) into an
Attempt (attempts.py), merged into Items, with what each ledger's `job` lines say (aggregate.py,
runs.py sum).

Money comes only from the ledger's own lines: spent is the sum of `price_usd` over results billed
`yes`; possibly spent adds results billed `unknown` and each `sent` line left without a result.
`batch` lines describe remote batches (batches.py), whose requests are waiting, not interrupted.
Ledgers whose `job` lines name the same job are nights (or shards) of one job and merge by item id;
other ledgers keep their items apart.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchbanana.ledger.fields import as_text
from batchbanana.ledger.records import BatchLine, JobLine, ResultLine, SentLine, parse_line
from batchbanana.ledger.replay import read_ledger
from batchbanana.report.attempts import (
    EPOCH,
    UNKNOWN,
    Attempt,
    parse_ts,
    redact,
    result_attempt,
    unanswered,
)
from batchbanana.report.batches import Batch, fold_batches

__all__ = [
    "EPOCH", "UNKNOWN", "Attempt", "Batch", "Item", "JobInfo", "LoadedReport", "load_report",
    "parse_ts",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Item:
    """One piece of work and its final attempt (the latest, by line order, then by time)."""

    id: str
    job: str | None
    final: Attempt
    results: int  # result lines for this item


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What a ledger's latest `job` line says, limited to what is safe to show."""

    ledger: str
    name: str | None
    endpoint: str | None
    price_book: str | None


@dataclass(frozen=True, slots=True)
class LoadedReport:
    """Every ledger read, merged into attempts and items."""

    ledgers: tuple[Path, ...]
    jobs: tuple[JobInfo, ...]
    starts: tuple[tuple[int, int, JobLine], ...]  # (ledger, order, line): where each run began
    attempts: tuple[Attempt, ...]
    items: tuple[Item, ...]
    warnings: tuple[str, ...]
    batches: tuple[Batch, ...] = ()  # remote batches, in the order their first lines were read


def load_report(paths: Sequence[Path], warn: Callable[[str], None]) -> LoadedReport:
    """Read ledgers (unreadable lines skipped, each named through `warn`) and merge them."""
    warnings: list[str] = []

    def note(text: str) -> None:
        warnings.append(text)
        warn(f"batchbanana: warning: {text}")

    ledgers: list[Path] = []
    seen_files: set[str] = set()
    for path in paths:
        real = os.path.realpath(path)
        if real in seen_files:
            note(f"{path}: given twice; read once")
            continue
        seen_files.add(real)
        ledgers.append(Path(path))

    jobs: list[JobInfo] = []
    starts: list[tuple[int, int, JobLine]] = []
    events: list[Attempt] = []
    pending: list[tuple[int, str, int, SentLine]] = []  # (ledger, group, order, sent line)
    batch_lines: list[tuple[int, str, int, BatchLine]] = []
    seen_lines: set[tuple[str, ...]] = set()
    for index, path in enumerate(ledgers):
        read = read_ledger(path)
        for text in read.warnings:
            note(text)
        lines = [parse_line(record) for record in read.records]
        job_lines = [(order, line) for order, line in enumerate(lines) if isinstance(line, JobLine)]
        job = _job_info(path, [line for _, line in job_lines])
        jobs.append(job)
        starts.extend((index, order, line) for order, line in job_lines)
        group = f"job:{job.name}" if job.name else f"file:{index}"
        in_flight: dict[tuple[str, str], tuple[int, SentLine]] = {}
        duplicates = 0
        for order, line in enumerate(lines):
            if isinstance(line, BatchLine):
                batch_lines.append((index, group, order, line))
            if not isinstance(line, SentLine | ResultLine):
                continue
            # A copy of a ledger passed with the original must not count its money twice.
            event = "sent" if isinstance(line, SentLine) else "result"
            fields = (line.attempt, line.fingerprint, line.ts)
            identity = (group, event, line.item, *(str(value) for value in fields))
            if identity in seen_lines:
                duplicates += 1
                continue
            seen_lines.add(identity)
            attempt_key = (line.item, str(line.attempt))
            if isinstance(line, SentLine):
                in_flight[attempt_key] = (order, line)
            else:
                sent = in_flight.pop(attempt_key, None)
                events.append(result_attempt(line, group, index, order, sent))
        if duplicates:
            note(f"{path}: {duplicates} lines repeat lines already read; counted once")
        pending.extend((index, group, order, sent) for order, sent in in_flight.values())

    batches = fold_batches(batch_lines)
    events.extend(unanswered(pending, events, ledgers, note, batches))
    events.sort(key=lambda a: (a.ledger, a.order))
    return LoadedReport(
        ledgers=tuple(ledgers),
        jobs=tuple(jobs),
        starts=tuple(starts),
        attempts=tuple(events),
        items=_items(events, jobs),
        warnings=tuple(warnings),
        batches=tuple(batches.values()),
    )


def _job_info(path: Path, job_lines: list[JobLine]) -> JobInfo:
    if not job_lines:
        return JobInfo(str(path), None, None, None)
    latest = job_lines[-1]
    # Older ledgers lack "job"; a job's default name is its manifest's stem (contract section 2).
    manifest = latest.manifest
    name = latest.job or (Path(manifest).stem if manifest else None)
    return JobInfo(
        ledger=str(path),
        name=name or None,
        endpoint=_safe_endpoint(latest.settings.get("endpoint")),
        price_book=as_text(latest.settings.get("price_book")) or None,
    )


def _safe_endpoint(value: Any) -> str | None:
    """Scheme, host, port and path only: never userinfo or a query that could carry a key."""
    if not isinstance(value, str) or not value:
        return None
    parts = urlsplit(value)
    if not parts.scheme or not parts.hostname:
        return redact(value)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _items(events: list[Attempt], jobs: list[JobInfo]) -> tuple[Item, ...]:
    """Each item's final attempt: the last line per ledger, then the latest of those by time."""
    per_ledger: dict[tuple[str, str], dict[int, Attempt]] = {}
    results: Counter[tuple[str, str]] = Counter()
    for event in events:  # sorted by (ledger, order): later lines overwrite earlier ones
        key = (event.group, event.item)
        per_ledger.setdefault(key, {})[event.ledger] = event
        if not event.dangling:
            results[key] += 1
    items = []
    for key, candidates in per_ledger.items():
        final = max(candidates.values(), key=lambda a: (a.ts or EPOCH, a.ledger))
        items.append(Item(key[1], jobs[final.ledger].name, final, results[key]))
    return tuple(items)
