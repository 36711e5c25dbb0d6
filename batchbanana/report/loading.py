"""Reading ledgers for the report: each `sent` and `result` line (through ledger/records.py) into an
Attempt, merged into Items, with what each ledger's `job` lines say (aggregate.py, runs.py sum).

Money comes only from the ledger's own lines: spent is the sum of `price_usd` over results billed
`yes`; possibly spent adds results billed `unknown` and each `sent` line left without a result.
Ledgers whose `job` lines name the same job are nights (or shards) of one job and merge by item id;
other ledgers keep their items apart.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchbanana.ledger.fields import Spec, as_text
from batchbanana.ledger.records import JobLine, ResultLine, SentLine, parse_line
from batchbanana.ledger.replay import read_ledger
from batchbanana.rules.outcomes import Billed, Outcome

__all__ = [
    "EPOCH", "UNKNOWN", "Attempt", "Item", "JobInfo", "LoadedReport", "load_report", "parse_ts",
]  # fmt: skip

UNKNOWN = "unknown"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Defence in depth: the ledger never holds a key, but text echoed by servers might look like one.
_KEY_LIKE = re.compile(
    r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,}"
    r"|(?i:(?<=[?&]key=))[^&\s\"']+|(?i:(?<=bearer ))[A-Za-z0-9._\-]{12,}"
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One `result` line, or a `sent` line that never got one (`dangling`, counted interrupted)."""

    item: str
    group: str  # items merge by (group, item): "job:NAME" or "file:N"
    ledger: int  # index into LoadedReport.ledgers
    order: int  # position of the line among its ledger's records
    outcome: str
    billed: str  # yes | no | unknown
    price_usd: float
    model: str
    image_size: str
    ts: datetime | None
    latency_s: float | None = None
    http_status: int | None = None
    outputs: tuple[str, ...] = ()
    error: str | None = None
    prompt: str = ""
    aspect_ratio: str | None = None
    dangling: bool = False


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
                in_flight.pop(attempt_key, None)
                events.append(_attempt(line, group, index, order))
        if duplicates:
            note(f"{path}: {duplicates} lines repeat lines already read; counted once")
        pending.extend((index, group, order, sent) for order, sent in in_flight.values())

    events.extend(_dangling(pending, events, ledgers, note))
    events.sort(key=lambda a: (a.ledger, a.order))
    return LoadedReport(
        ledgers=tuple(ledgers),
        jobs=tuple(jobs),
        starts=tuple(starts),
        attempts=tuple(events),
        items=_items(events, jobs),
        warnings=tuple(warnings),
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
        return _redact(value)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _request(line: SentLine | ResultLine) -> tuple[str, str, str, str | None]:
    """(model, size, prompt, ratio) of a line's request; its spec gives what the line lacks."""
    spec = Spec.from_json(line.spec)
    ratio = line.aspect_ratio if isinstance(line, ResultLine) else None
    return (
        line.model or spec.model or UNKNOWN,
        line.image_size or spec.image_size or UNKNOWN,
        _redact(spec.prompt or ""),
        ratio or spec.aspect_ratio or None,
    )


def _attempt(line: ResultLine, group: str, ledger: int, order: int) -> Attempt:
    model, image_size, prompt, aspect_ratio = _request(line)
    if line.outputs is not None:
        paths = tuple(line.outputs)
    else:
        paths = (line.output,) if line.output is not None else ()
    return Attempt(
        item=line.item,
        group=group,
        ledger=ledger,
        order=order,
        outcome=line.outcome,
        # An unreadable billing mark is treated as "maybe paid", never as free.
        billed=(line.billed or Billed.UNKNOWN).value,
        price_usd=line.price_usd or 0.0,
        model=model,
        image_size=image_size,
        ts=parse_ts(line.ts),
        latency_s=line.latency_s,
        http_status=line.http_status,
        outputs=paths,
        error=_redact(line.error) if line.error is not None else None,
        prompt=prompt,
        aspect_ratio=aspect_ratio,
    )


def _dangling(
    pending: list[tuple[int, str, int, SentLine]],
    results: list[Attempt],
    ledgers: list[Path],
    note: Callable[[str], None],
) -> list[Attempt]:
    """`sent` lines with no result after them: in flight when the process stopped."""
    latest_price = {(a.model, a.image_size): a.price_usd for a in results if a.price_usd}
    found = []
    for ledger, group, order, sent in pending:
        model, image_size, prompt, aspect_ratio = _request(sent)
        price = sent.price_usd
        if price is None:
            # Older ledgers wrote no price on `sent`; the job's price for that model and size
            # is the best estimate, and a silent zero would understate what may be owed.
            price = latest_price.get((model, image_size))
            if price is None:
                note(f"{ledgers[ledger]}: item '{sent.item}': in-flight request has no price")
        found.append(
            Attempt(
                item=sent.item,
                group=group,
                ledger=ledger,
                order=order,
                outcome=Outcome.INTERRUPTED.value,
                billed=Billed.UNKNOWN.value,
                price_usd=price or 0.0,
                model=model,
                image_size=image_size,
                ts=parse_ts(sent.ts),
                error="in flight when the process stopped (a sent line with no result)",
                prompt=prompt,
                aspect_ratio=aspect_ratio,
                dangling=True,
            )
        )
    return found


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


def parse_ts(value: str | None) -> datetime | None:
    """A ledger timestamp as an aware datetime (UTC when it names no zone), or None."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _redact(text: str) -> str:
    return _KEY_LIKE.sub("***", text)
