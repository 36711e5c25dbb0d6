"""Reading a ledger back: every readable line (a torn or garbage one is skipped with a warning
that names its line), folded into per-item state and the money the ledger already records.

Lines are understood only through ledger/records.py: a record is read as a JobLine, SentLine or
ResultLine there, and a kind this version does not know is passed over.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchbanana.errors import UserError
from batchbanana.ledger.records import BatchLine, JobLine, SentLine, parse_line
from batchbanana.rules.outcomes import Billed, Outcome


@dataclass(slots=True)
class LedgerRead:
    """The records of a ledger file and the warnings about lines that could not be read."""

    records: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def iter_records(path: Path, warnings: list[str]) -> Iterator[dict[str, Any]]:
    """Each readable record, read as the file is (a torn or garbage line adds a warning naming
    its line instead). A missing file has no records."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"{path}: cannot read the ledger ({exc.strerror})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (ValueError, RecursionError):  # not JSON or UTF-8, absurd numbers or nesting
                record = None
            if isinstance(record, dict) and isinstance(record.get("event"), str):
                yield record
                continue
            kind = "not a ledger record" if raw.endswith(b"\n") else "torn (cut off mid-write)"
            warnings.append(f"{path}:{number}: skipped a line that is {kind}")


def read_ledger(path: Path) -> LedgerRead:
    """Every readable record; a torn or garbage line is skipped with a warning naming its line."""
    result = LedgerRead()
    result.records.extend(iter_records(path, result.warnings))
    return result


def scan_ledger(path: Path) -> tuple[LedgerState, list[str]]:
    """Replay a ledger as it is read, without holding its records (a 100,000-item ledger)."""
    warnings: list[str] = []
    state = replay(iter_records(path, warnings))
    return state, warnings


@dataclass(slots=True)
class AttemptState:
    """The latest known state of one (item, fingerprint) pair."""

    outcome: str | None = None  # latest result's outcome; None while a request is in flight
    billed: str | None = None
    in_flight_attempt: int | None = None  # a `sent` line with no result after it
    in_flight_price_usd: float = 0.0
    in_batch: str | None = None  # the batch key of the in-flight request, in batch mode


@dataclass(slots=True)
class ItemHistory:
    """Everything the ledger says about one item id."""

    attempts: int = 0  # highest attempt number used
    fingerprint: str | None = None  # the latest one: the current work for this id
    spec: dict[str, Any] | None = None  # the latest request's spec, kept while it is not ok
    by_fingerprint: dict[str, AttemptState] = field(default_factory=dict)
    ever_sent: bool = False  # a `sent` line exists (an over_budget line alone sends nothing)
    output: str | None = None  # the first image of the latest ok result (for `item:` references)

    def current(self) -> AttemptState:
        """The state of the latest fingerprint."""
        return self.by_fingerprint.setdefault(self.fingerprint or "", AttemptState())


@dataclass(slots=True)
class BatchRecord:
    """What the ledger knows of one remote batch: its latest `batch` line."""

    key: str
    name: str | None = None  # None until the create call's answer was recorded
    state: str | None = None
    model: str | None = None
    image_size: str | None = None
    input: str | None = None


@dataclass(frozen=True, slots=True)
class InFlight:
    """A request whose `sent` line has no result yet."""

    item: str
    fingerprint: str
    attempt: int
    price_usd: float
    batch_key: str | None


@dataclass(slots=True)
class LedgerState:
    """A ledger replayed: per-item history, remote batches, and the money it already records."""

    items: dict[str, ItemHistory] = field(default_factory=dict)
    spent_usd: float = 0.0
    possibly_spent_usd: float = 0.0
    jobs: list[JobLine] = field(default_factory=list)
    batches: dict[str, BatchRecord] = field(default_factory=dict)

    def in_flight(self) -> list[InFlight]:
        """Every request whose `sent` line has no result, in a batch or not."""
        found = []
        for item_id, history in self.items.items():
            for print_id, state in history.by_fingerprint.items():
                if state.in_flight_attempt is not None:
                    found.append(
                        InFlight(
                            item_id,
                            print_id,
                            state.in_flight_attempt,
                            state.in_flight_price_usd,
                            state.in_batch,
                        )
                    )
        return found

    def dangling(self) -> list[tuple[str, str, int, float]]:
        """(item, fingerprint, attempt, price) of synchronous requests whose `sent` line has no
        result: a crash left them. A batch's requests are not: they wait in their batch."""
        return [
            (entry.item, entry.fingerprint, entry.attempt, entry.price_usd)
            for entry in self.in_flight()
            if entry.batch_key is None
        ]

    def open_batches(self) -> dict[str, list[InFlight]]:
        """Batch key -> its requests still without a result: batches to re-attach to."""
        found: dict[str, list[InFlight]] = {}
        for entry in self.in_flight():
            if entry.batch_key is not None:
                found.setdefault(entry.batch_key, []).append(entry)
        return found


def _price(value: float | None) -> float:
    """A price as money: an unreadable or negative one counts as nothing."""
    return value if value is not None and value >= 0 else 0.0


def replay(records: Iterable[Mapping[str, Any]]) -> LedgerState:
    """Fold ledger records, in order, into per-item state and money totals."""
    state = LedgerState()
    spent = 0.0
    possibly = 0.0
    for record in records:
        line = parse_line(record)
        if isinstance(line, JobLine):
            state.jobs.append(line)
            continue
        if isinstance(line, BatchLine):
            batch = state.batches.setdefault(line.batch_key, BatchRecord(line.batch_key))
            for name in ("name", "state", "model", "image_size", "input"):
                value = getattr(line, name)
                if value is not None:
                    setattr(batch, name, value)
            continue
        if line is None or line.fingerprint is None:
            continue
        history = state.items.setdefault(line.item, ItemHistory())
        if line.attempt is not None:
            history.attempts = max(history.attempts, line.attempt)
        history.fingerprint = line.fingerprint
        if line.spec is not None:
            history.spec = line.spec
        pair = history.by_fingerprint.setdefault(line.fingerprint, AttemptState())
        if isinstance(line, SentLine):
            history.ever_sent = True
            pair.outcome = None  # a new attempt: the previous outcome no longer describes it
            pair.billed = None
            pair.in_flight_attempt = line.attempt if line.attempt is not None else history.attempts
            pair.in_flight_price_usd = _price(line.price_usd)
            pair.in_batch = line.batch_key
        else:
            if pair.in_flight_attempt is not None and pair.in_flight_attempt == line.attempt:
                pair.in_flight_attempt = None
                pair.in_batch = None
            pair.outcome = line.outcome
            pair.billed = line.billed  # None when unreadable: neither spent nor free
            if pair.outcome == Outcome.OK:
                history.spec = None  # only `retry` needs specs, and only of failed items
                history.output = line.output
            if pair.billed == Billed.YES:
                spent += _price(line.price_usd)
            elif pair.billed == Billed.UNKNOWN:
                possibly += _price(line.price_usd)
    for history in state.items.values():
        for pair in history.by_fingerprint.values():
            if pair.in_flight_attempt is not None:
                possibly += pair.in_flight_price_usd
    state.spent_usd = round(spent, 6)
    state.possibly_spent_usd = round(possibly, 6)
    return state
