"""Re-attaching to a job's batches at the start of a batch-mode run: every batch whose requests
the ledger left without a result is found again, by its recorded name, or by its display name
(the batch key) when the process died between the create call and recording its answer. One
that the provider never created closes its requests as not billed: owed to this run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from batchbanana.ledger.records import BatchLine, SentLine
from batchbanana.ledger.replay import InFlight, LedgerState, iter_records
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.job import Job
from batchbanana.rules.batch import BatchState, BatchStatus
from batchbanana.rules.pricing import PriceRule
from batchbanana.run.batch_api import BatchApi
from batchbanana.run.batch_collect import Collected, Collector, Member

# How long a batch that ended with answers may go without naming its output before its
# requests are closed as unanswered (Google may report SUCCEEDED before the output is there).
OUTPUT_GRACE_S = 1800.0


# How long a batch whose create answer was lost may stay unlisted before it counts as never created
# (a provider's list can lag its creates; a kill between create and record is found at once).
NOT_LISTED_GRACE_S = 300.0


@dataclass(slots=True)
class Waiting:
    """A batch being waited for."""

    key: str
    name: str
    state: BatchState
    requests: dict[tuple[str, int], Member]
    created: float  # epoch seconds, for batch.max_wait_h
    stats: dict[str, int]
    cancel_asked: bool = False
    output_missing_since: float | None = None  # finished, its output not named yet (monotonic)


@dataclass(slots=True)
class Found:
    """The job's open batches: to wait for, closed as never created, and the items owed again."""

    waiting: list[Waiting] = field(default_factory=list)
    closed: list[Collected] = field(default_factory=list)
    reowed: set[str] = field(default_factory=set)
    unresolved: list[tuple[str, float]] = field(default_factory=list)  # (key, seconds to wait)


def _sent_at(ledger: Path, key: str) -> float | None:
    """When the last `sent` line of batch `key` was written (epoch seconds), from the ledger."""
    latest: float | None = None
    for record in iter_records(ledger, []):
        if record.get("event") == "sent" and record.get("batch_key") == key:
            line = SentLine.from_json(record)
            when = epoch_s(line.ts if line is not None else None)
            if when is not None:
                latest = when if latest is None else max(latest, when)
    return latest


def epoch_s(text: str | None) -> float | None:
    """An RFC 3339 time as epoch seconds, or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def output_pending(batch: Waiting, status: BatchStatus, now: float) -> bool:
    """Whether a finished batch that names no output yet should have one (it SUCCEEDED, or its
    counts say some requests succeeded, answers that are paid for): then it is polled again, for
    up to OUTPUT_GRACE_S from `now` first seen so, rather than its requests closed unanswered.
    A batch that FAILED with nothing succeeded is closed at once (failed requests cost nothing)."""
    if status.responses_file or status.has_inline_output:
        return False
    if status.state is not BatchState.SUCCEEDED and not status.stats.get("succeeded", 0):
        return False
    if batch.output_missing_since is None:
        batch.output_missing_since = now
    return now - batch.output_missing_since < OUTPUT_GRACE_S


def overdue(batch: Waiting, max_wait_h: float) -> bool:
    """Still pending past batch.max_wait_h: to cancel (its items stay owed)."""
    return batch.state is BatchState.PENDING and (time.time() - batch.created) / 3600 > max_wait_h


def waiting_for(key: str, status: BatchStatus, members: dict[tuple[str, int], Member]) -> Waiting:
    """A batch to wait for, as its status describes it."""
    created = epoch_s(status.create_time) or time.time()
    return Waiting(key, status.name, status.state, members, created, status.stats)


def members_of(
    job: Job, state: LedgerState, entries: list[InFlight]
) -> dict[tuple[str, int], Member]:
    """The requests of an open batch, priced as the job prices them (or, for an item edited
    since it was sent, at the price its `sent` line recorded)."""
    by_id = {item.id: item for item in job.items}
    members: dict[tuple[str, int], Member] = {}
    for entry in entries:
        history = state.items[entry.item]
        known = by_id.get(entry.item)
        if known is not None and known.fingerprint == entry.fingerprint:
            rule, size = known.price, known.image_size
        else:
            rule = PriceRule(per_request_usd=entry.price_usd)
            size = str((history.spec or {}).get("image_size") or "1K")
        members[(entry.item, entry.attempt)] = Member(
            entry.item, entry.attempt, entry.fingerprint, rule, size, history.spec
        )
    return members


async def open_batches(
    job: Job, state: LedgerState, writer: LedgerWriter, api: BatchApi, scrub: Callable[[str], str]
) -> Found:
    """Every batch of the job the ledger leaves open, found again at the provider."""
    found = Found()
    for key, entries in state.open_batches().items():
        members = members_of(job, state, entries)
        record = state.batches.get(key)
        if record is not None and record.name:
            # Its state is read by the first poll (a finished batch's answer can be large).
            found.waiting.append(
                Waiting(key, record.name, BatchState.UNKNOWN, members, time.time(), {})
            )
            continue
        status = await api.find(key)  # died between the create and its record: ask by name
        if status is not None:
            writer.append_sync(
                BatchLine(batch_key=key, name=status.name, state=status.state.value,
                          note="found again by its display name")
            )  # fmt: skip
            found.waiting.append(waiting_for(key, status, members))
            continue
        age_s = time.time() - (_sent_at(job.ledger_path, key) or 0.0)
        if age_s < NOT_LISTED_GRACE_S:
            # A create whose answer was lost may not be listed yet: closing it now could pay
            # for the same requests twice. Ask again once the provider has had time.
            found.unresolved.append((key, NOT_LISTED_GRACE_S - age_s))
            continue
        collector = Collector(key, members, job.output_dir, writer, scrub)
        why = f"batch {key} was never created (the provider lists no batch by that name)"
        found.closed.append(collector.finish(BatchState.FAILED, why))
        found.reowed.update(item for item, _ in members)
        writer.append_sync(
            BatchLine(batch_key=key, name=None, state="NOT_CREATED",
                      note="the provider lists no batch by this name")
        )  # fmt: skip
    return found
