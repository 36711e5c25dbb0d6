"""A replayed ledger (replay.py fills it): per item id its history, read as an ItemHistory
snapshot built on demand from compact rows (columns.py); remote batches; the money it records.

A snapshot is a copy: setting its fields changes nothing in the state (a change goes through a
method, such as `close_in_flight`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchbanana.ledger.columns import EVER_SENT, AttemptState, ItemColumns
from batchbanana.ledger.records import JobLine
from batchbanana.rules.outcomes import Billed

Json = dict[str, Any]


@dataclass(slots=True)
class ItemHistory:
    """Everything the ledger says about one item id (a snapshot of LedgerState's rows)."""

    attempts: int = 0  # highest attempt number used
    fingerprint: str | None = None  # the latest one: the current work for this id
    spec: Json | None = None  # the latest request's spec, kept while it is not ok
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


class _Items(Mapping[str, ItemHistory]):
    """Item id -> its history, as snapshots (in the order the ledger first named the items)."""

    __slots__ = ("_state",)

    def __init__(self, state: LedgerState) -> None:
        self._state = state

    def __getitem__(self, item_id: str) -> ItemHistory:
        row = self._state.row_of(item_id)
        if row is None:
            raise KeyError(item_id)
        return self._state.history_at(row)

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.ids)

    def __len__(self) -> int:
        return len(self._state.ids)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self._state.row_of(item_id) is not None


class LedgerState(ItemColumns):
    """A ledger replayed: per-item history, remote batches, and the money it already records."""

    def __init__(self) -> None:
        super().__init__()
        self.items: Mapping[str, ItemHistory] = _Items(self)
        self.jobs: list[JobLine] = []
        self.batches: dict[str, BatchRecord] = {}

    def history_at(self, row: int) -> ItemHistory:
        """The item in `row` as an ItemHistory snapshot."""
        latest = self.fingerprint_at(row)
        pairs: dict[str, AttemptState] = {}
        for print_id, pair in (self._others.get(row) or {latest: None}).items():
            pairs[print_id] = pair if pair is not None else self.latest_pair(row)
        spec = self._specs.get(row)
        return ItemHistory(
            attempts=self.attempts_at(row),
            fingerprint=latest,
            spec=spec,
            by_fingerprint=pairs,
            ever_sent=bool(self._flags[row] & EVER_SENT),
            output=self.output_at(row),
        )

    def in_flight(self) -> list[InFlight]:
        """Every request whose `sent` line has no result, in a batch or not."""
        found = []
        rows = set(self._flights)
        rows.update(row for row, others in self._others.items() if others)
        for row in sorted(rows):
            for print_id, pair in self.history_at(row).by_fingerprint.items():
                if pair.in_flight_attempt is not None:
                    found.append(
                        InFlight(
                            self.ids[row],
                            print_id,
                            pair.in_flight_attempt,
                            pair.in_flight_price_usd,
                            pair.in_batch,
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

    def close_in_flight(self, item_id: str, fingerprint: str, outcome: str, billed: Billed) -> None:
        """Record that the request in flight for (item, fingerprint) ended as `outcome`."""
        row = self._rows[item_id]
        if self.is_latest(row, fingerprint):
            self._flights.pop(row, None)
            self.set_outcome(row, outcome, billed)
            return
        pair = self._others[row][fingerprint]
        assert pair is not None
        pair.in_flight_attempt = None
        pair.outcome = outcome
        pair.billed = billed
