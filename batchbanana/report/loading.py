"""Reading ledgers for the report: each `sent` and `result` line into an Attempt, merged into
Items, with what each ledger's latest `job` line says (aggregate.py sums them).

Money comes only from the ledger's own lines: spent is the sum of `price_usd` over results billed
`yes`; possibly spent adds results billed `unknown` and each `sent` line left without a result.
Ledgers whose `job` lines name the same job are nights (or shards) of one job and merge by item id;
other ledgers keep their items apart.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchbanana.ledger.replay import read_ledger

__all__ = ["EPOCH", "UNKNOWN", "Attempt", "Item", "JobInfo", "LoadedReport", "load_report"]

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
    events: list[Attempt] = []
    pending: list[tuple[int, str, int, dict[str, Any]]] = []  # (ledger, group, order, sent line)
    seen_lines: set[tuple[str, ...]] = set()
    for index, path in enumerate(ledgers):
        read = read_ledger(path)
        for text in read.warnings:
            note(text)
        job = _job_info(path, read.records)
        jobs.append(job)
        group = f"job:{job.name}" if job.name else f"file:{index}"
        in_flight: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        duplicates = 0
        for order, record in enumerate(read.records):
            event = record.get("event")
            item = record.get("item")
            if event not in ("sent", "result") or not isinstance(item, str):
                continue
            # A copy of a ledger passed with the original must not count its money twice.
            identity = (group, str(event), item, *(str(record.get(k)) for k in _IDENTITY))
            if identity in seen_lines:
                duplicates += 1
                continue
            seen_lines.add(identity)
            attempt_key = (item, str(record.get("attempt")))
            if event == "sent":
                in_flight[attempt_key] = (order, record)
            else:
                in_flight.pop(attempt_key, None)
                events.append(_attempt(record, item, group, index, order))
        if duplicates:
            note(f"{path}: {duplicates} lines repeat lines already read; counted once")
        pending.extend((index, group, order, sent) for order, sent in in_flight.values())

    events.extend(_dangling(pending, events, ledgers, note))
    events.sort(key=lambda a: (a.ledger, a.order))
    return LoadedReport(
        ledgers=tuple(ledgers),
        jobs=tuple(jobs),
        attempts=tuple(events),
        items=_items(events, jobs),
        warnings=tuple(warnings),
    )


_IDENTITY = ("attempt", "fingerprint", "ts")


def _job_info(path: Path, records: list[dict[str, Any]]) -> JobInfo:
    job_lines = [r for r in records if r.get("event") == "job"]
    if not job_lines:
        return JobInfo(str(path), None, None, None)
    latest = job_lines[-1]
    settings = _mapping(latest.get("settings"))
    # Older ledgers lack "job"; a job's default name is its manifest's stem (contract section 2).
    manifest = _text(latest.get("manifest"))
    name = _text(latest.get("job")) or (Path(manifest).stem if manifest else None)
    return JobInfo(
        ledger=str(path),
        name=name or None,
        endpoint=_safe_endpoint(settings.get("endpoint")),
        price_book=_text(settings.get("price_book")),
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


def _attempt(record: dict[str, Any], item: str, group: str, ledger: int, order: int) -> Attempt:
    spec = _mapping(record.get("spec"))
    billed = record.get("billed")
    outputs = record.get("outputs")
    if isinstance(outputs, list):
        paths = tuple(p for p in outputs if isinstance(p, str))
    else:
        paths = (record["output"],) if isinstance(record.get("output"), str) else ()
    return Attempt(
        item=item,
        group=group,
        ledger=ledger,
        order=order,
        outcome=_text(record.get("outcome")) or UNKNOWN,
        # An unreadable billing mark is treated as "maybe paid", never as free.
        billed=billed if billed in ("yes", "no", "unknown") else "unknown",
        price_usd=_number(record.get("price_usd")) or 0.0,
        model=_text(record.get("model")) or _text(spec.get("model")) or UNKNOWN,
        image_size=_text(record.get("image_size")) or _text(spec.get("image_size")) or UNKNOWN,
        ts=_parse_ts(record.get("ts")),
        latency_s=_number(record.get("latency_s")),
        outputs=paths,
        error=_redact(record["error"]) if isinstance(record.get("error"), str) else None,
        prompt=_redact(_text(spec.get("prompt")) or ""),
        aspect_ratio=_text(record.get("aspect_ratio")) or _text(spec.get("aspect_ratio")),
    )


def _dangling(
    pending: list[tuple[int, str, int, dict[str, Any]]],
    results: list[Attempt],
    ledgers: list[Path],
    note: Callable[[str], None],
) -> list[Attempt]:
    """`sent` lines with no result after them: in flight when the process stopped."""
    latest_price = {(a.model, a.image_size): a.price_usd for a in results if a.price_usd}
    found = []
    for ledger, group, order, sent in pending:
        base = _attempt(sent, str(sent["item"]), group, ledger, order)
        price = _number(sent.get("price_usd"))
        if price is None:
            # Older ledgers wrote no price on `sent`; the job's price for that model and size
            # is the best estimate, and a silent zero would understate what may be owed.
            price = latest_price.get((base.model, base.image_size))
            if price is None:
                note(f"{ledgers[ledger]}: item '{base.item}': in-flight request has no price")
        found.append(
            replace(
                base,
                outcome="interrupted",
                billed="unknown",
                price_usd=price or 0.0,
                error="in flight when the process stopped (a sent line with no result)",
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


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _redact(text: str) -> str:
    return _KEY_LIKE.sub("***", text)
