"""Several ledgers of one job's folder (other shards, the unsharded ledger) read and folded by
`replay` as one, so that what is owed is judged job-wide; and what each of them commits.

Only what replay.py offers is used: each file's records (`iter_records`) go into one `replay`.
They are interleaved run by run, by the time each run's `job` line records: runs that could touch
the same item never overlap (ledger/folder.py refuses to start them side by side), and a run
continues the attempt numbers from the highest in any ledger, so an item's lines reach `replay`
in the order they were written, and its latest outcome anywhere is its latest.

A request in flight in another ledger (a `sent` line without a result) may be running right now
in another process: it is closed, for this fold only, by a made-up result ELSEWHERE (billed
unknown, so its price still counts as possibly spent): never sent by `run` or `retry` here, and
never recorded as `interrupted` by a process that does not hold that ledger. Another ledger's
`batch` lines are left out: only a ledger's holder re-attaches its batches.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchbanana.ledger.fields import as_float, as_int, as_text
from batchbanana.ledger.replay import LedgerState, iter_records, replay

ELSEWHERE = "in_flight_elsewhere"  # a made-up outcome, in memory only: never written
_Key = tuple[str, int, int]  # (the run's start, the file, the line)


@dataclass(slots=True)
class Tally:
    """What one ledger commits, counted as replay counts it: `spent` over results billed yes,
    `possibly` over results billed unknown and `sent` lines left without a result."""

    spent_usd: float = 0.0
    possibly_usd: float = 0.0
    open: dict[tuple[str, int | None], Mapping[str, Any]] = field(default_factory=dict)

    def count(self, record: Mapping[str, Any]) -> None:
        """Count one `sent` or `result` record (other kinds commit nothing)."""
        event, item = record.get("event"), as_text(record.get("item"))
        if item is None or as_text(record.get("fingerprint")) is None:
            return  # a line replay passes over
        key = (item, as_int(record.get("attempt")))
        if event == "sent":
            self.open[key] = record
        elif event == "result":
            self.open.pop(key, None)
            billed = as_text(record.get("billed"))
            if billed == "yes":
                self.spent_usd += _price(record)
            elif billed == "unknown":
                self.possibly_usd += _price(record)

    @property
    def committed_usd(self) -> float:
        """Spent and possibly spent, a request still open included."""
        return self.spent_usd + self.possibly_usd + sum(map(_price, self.open.values()))


def _price(record: Mapping[str, Any]) -> float:
    price = as_float(record.get("price_usd"))
    return price if price is not None and price >= 0 else 0.0


def _elsewhere(sent: Mapping[str, Any]) -> dict[str, Any]:
    """The made-up result that closes another ledger's open request for this fold."""
    return {
        "event": "result", "item": sent.get("item"), "attempt": sent.get("attempt"),
        "fingerprint": sent.get("fingerprint"), "outcome": ELSEWHERE, "billed": "unknown",
        "price_usd": sent.get("price_usd"), "spec": sent.get("spec"), "ts": sent.get("ts"),
        "error": "in flight in another ledger of the folder",
    }  # fmt: skip


def _stream(
    index: int,
    path: Path,
    tally: Tally,
    warnings: list[str],
    foreign: bool,
    keep: Callable[[str], bool] | None,
    seen: set[str] | None,
) -> Iterator[tuple[_Key, Mapping[str, Any]]]:
    """One ledger's records, each keyed by the start of the run that wrote it."""
    run, position = "", 0
    for position, record in enumerate(iter_records(path, warnings)):
        event = record.get("event")
        if event == "job":
            run = as_text(record.get("ts")) or run
        else:
            tally.count(record)
            item = as_text(record.get("item"))
            if foreign and (event == "batch" or (item and keep is not None and not keep(item))):
                continue
            if seen is not None and item is not None:
                seen.add(item)
        yield (run, index, position), record
    if foreign:
        for (item, _), sent in tally.open.items():
            if keep is None or keep(item):
                yield (run, index, position + 1), _elsewhere(sent)


@dataclass(slots=True)
class Folded:
    """Several ledgers folded: the state, what each ledger commits, the own ledger's items."""

    state: LedgerState
    own: Tally
    others: dict[Path, Tally]
    own_items: set[str] | None = None


def fold(
    own: Path,
    others: Sequence[Path],
    warnings: list[str],
    keep: Callable[[str], bool] | None = None,
    own_items: bool = False,
) -> Folded:
    """`own` (whose open requests stay open: its holder closes them) and `others` folded into
    one state; `keep` (if given) says which items of the others to hold, but every item's money
    is tallied; `own_items` collects the ids the own ledger names."""
    tallies = [Tally() for _ in range(len(others) + 1)]
    seen: set[str] | None = set() if own_items else None
    streams = [_stream(0, own, tallies[0], warnings, False, None, seen)]
    streams += [
        _stream(index, path, tallies[index], warnings, True, keep, None)
        for index, path in enumerate(others, start=1)
    ]
    merged = heapq.merge(*streams, key=lambda keyed: keyed[0])
    state = replay(record for _, record in merged)
    return Folded(state, tallies[0], dict(zip(others, tallies[1:], strict=True)), seen)
