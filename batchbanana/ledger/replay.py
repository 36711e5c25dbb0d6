"""Reading a ledger back: every readable line (a torn or garbage one is skipped with a warning
that names its line), folded into per-item state and the money the ledger already records."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchbanana.errors import UserError


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


@dataclass(slots=True)
class ItemHistory:
    """Everything the ledger says about one item id."""

    attempts: int = 0  # highest attempt number used
    fingerprint: str | None = None  # the latest one: the current work for this id
    spec: dict[str, Any] | None = None  # the latest request's spec, kept while it is not ok
    by_fingerprint: dict[str, AttemptState] = field(default_factory=dict)
    ever_sent: bool = False  # a `sent` line exists (an over_budget line alone sends nothing)

    def current(self) -> AttemptState:
        """The state of the latest fingerprint."""
        return self.by_fingerprint.setdefault(self.fingerprint or "", AttemptState())


@dataclass(slots=True)
class LedgerState:
    """A ledger replayed: per-item history, and the money it already records."""

    items: dict[str, ItemHistory] = field(default_factory=dict)
    spent_usd: float = 0.0
    possibly_spent_usd: float = 0.0
    jobs: list[dict[str, Any]] = field(default_factory=list)

    def dangling(self) -> list[tuple[str, str, int, float]]:
        """(item, fingerprint, attempt, price) of requests whose `sent` line has no result."""
        found = []
        for item_id, history in self.items.items():
            for print_id, state in history.by_fingerprint.items():
                if state.in_flight_attempt is not None:
                    found.append(
                        (item_id, print_id, state.in_flight_attempt, state.in_flight_price_usd)
                    )
        return found


def _price(record: dict[str, Any]) -> float:
    value = record.get("price_usd")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return 0.0
    try:
        price = float(value)
    except OverflowError:
        return 0.0
    return price if math.isfinite(price) and price >= 0 else 0.0


def replay(records: Iterable[dict[str, Any]]) -> LedgerState:
    """Fold ledger records, in order, into per-item state and money totals."""
    state = LedgerState()
    spent = 0.0
    possibly = 0.0
    for record in records:
        event = record.get("event")
        if event == "job":
            state.jobs.append(record)
            continue
        item_id = record.get("item")
        print_id = record.get("fingerprint")
        if not isinstance(item_id, str) or not isinstance(print_id, str):
            continue
        history = state.items.setdefault(item_id, ItemHistory())
        attempt = record.get("attempt")
        if isinstance(attempt, int) and not isinstance(attempt, bool):
            history.attempts = max(history.attempts, attempt)
        history.fingerprint = print_id
        spec = record.get("spec")
        if isinstance(spec, dict):
            history.spec = spec
        pair = history.by_fingerprint.setdefault(print_id, AttemptState())
        if event == "sent":
            history.ever_sent = True
            pair.outcome = None  # a new attempt: the previous outcome no longer describes it
            pair.billed = None
            pair.in_flight_attempt = attempt if isinstance(attempt, int) else history.attempts
            pair.in_flight_price_usd = _price(record)
        elif event == "result":
            if pair.in_flight_attempt is not None and pair.in_flight_attempt == attempt:
                pair.in_flight_attempt = None
            pair.outcome = str(record.get("outcome"))
            pair.billed = str(record.get("billed"))
            if pair.outcome == "ok":
                history.spec = None  # only `retry` needs specs, and only of failed items
            if pair.billed == "yes":
                spent += _price(record)
            elif pair.billed == "unknown":
                possibly += _price(record)
    for history in state.items.values():
        for pair in history.by_fingerprint.values():
            if pair.in_flight_attempt is not None:
                possibly += pair.in_flight_price_usd
    state.spent_usd = round(spent, 6)
    state.possibly_spent_usd = round(possibly, 6)
    return state
