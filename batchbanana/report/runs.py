"""Runs of a job: for each start of `run` or `retry` (its `job` line), its mode (sync, or batch as
its `job` line's settings say), how many requests went out and how many the provider refused for
load (429 rate quota, 503 overloaded).

A request belongs to the latest `job` line before its line in its own ledger file (a batch's
request to the run that sent it, though a later run may collect its result; a run's wall time
runs to the last request or `batch` line it wrote); lines before any `job` line (older or hand-made
ledgers) make a run of their own with no id. A run found in two ledgers of one job (a copy given
with the original) is one run, as loading.py counts the copy's lines once.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from batchbanana.ledger.fields import as_text
from batchbanana.report.attempts import BATCH, SYNC
from batchbanana.report.loading import Attempt, LoadedReport, parse_ts
from batchbanana.rules.outcomes import NEVER_SENT, Outcome

__all__ = ["Run", "runs"]

_REFUSED_FOR_LOAD = frozenset({Outcome.RATE_LIMITED, Outcome.UNAVAILABLE})


@dataclass(frozen=True, slots=True)
class Run:
    """One start of `run` or `retry` and what its requests met."""

    run_id: str | None
    command: str | None  # run | retry
    mode: str  # sync | batch
    ledger: int  # index into LoadedReport.ledgers where the run was first seen
    started: datetime | None  # the `job` line's time
    wall_s: float | None  # from the `job` line to the run's last request line
    requests: int  # sent: every result but the never-sent ones, and sent lines left open
    refused: int  # refused for load: rate_limited and unavailable results
    refused_429: int  # of those, answered 429
    refused_503: int  # of those, answered 503 (an unfinished batch's items have no status)
    ok: int  # ok results

    @property
    def refused_per_ok(self) -> float | None:
        """Refusals for load per ok result; None when nothing came back ok."""
        return self.refused / self.ok if self.ok else None


@dataclass(slots=True)
class _Tally:
    """A run's counts while its lines are read."""

    rank: tuple[int, int]  # (ledger, order) of its first `job` line: runs are shown in this order
    run_id: str | None = None
    command: str | None = None
    started: datetime | None = None
    mode: str | None = None  # as its `job` line says; None: no `job` line
    attempts: list[Attempt] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)  # of the lines it wrote

    def run(self) -> Run:
        sent = [a for a in self.attempts if a.outcome not in NEVER_SENT]
        refused = [a for a in sent if a.outcome in _REFUSED_FOR_LOAD]
        end = max([self.started, *self.times]) if self.started else None
        return Run(
            run_id=self.run_id,
            command=self.command,
            mode=self.mode or (BATCH if any(a.mode == BATCH for a in sent) else SYNC),
            ledger=self.rank[0],
            started=self.started,
            wall_s=round((end - self.started).total_seconds(), 3) if end and self.started else None,
            requests=len(sent),
            refused=len(refused),
            refused_429=sum(1 for a in refused if a.http_status == 429),
            refused_503=sum(1 for a in refused if a.http_status == 503),
            ok=sum(1 for a in sent if a.outcome == Outcome.OK),
        )


_Key: TypeAlias = tuple[object, ...]


def runs(loaded: LoadedReport) -> list[Run]:
    """Every run the ledgers hold, in ledger order, with the requests each one sent."""
    tallies: dict[_Key, _Tally] = {}
    keys: dict[int, list[tuple[int, _Key]]] = defaultdict(list)  # ledger -> starts
    for ledger, order, line in loaded.starts:
        job = loaded.jobs[ledger].name
        key: _Key = (job, line.run_id, line.ts) if line.run_id else (ledger, order)
        if key not in tallies:
            mode = as_text(line.settings.get("mode")) or SYNC  # a sync job's line has none
            tallies[key] = _Tally(
                (ledger, order), line.run_id, line.command, parse_ts(line.ts), mode
            )
        keys[ledger].append((order, key))

    def key_of(ledger: int, order: int) -> _Key:
        """The run a line at `order` in ledger `ledger` belongs to."""
        starts = keys[ledger]
        at = bisect.bisect_left(starts, order, key=lambda start: start[0]) - 1
        return starts[at][1] if at >= 0 else (ledger, -1)

    def tally(ledger: int, order: int) -> _Tally:
        return tallies.setdefault(key_of(ledger, order), _Tally((ledger, -1)))

    for attempt in loaded.attempts:
        home = tally(attempt.ledger, attempt.order)
        sender = home
        if attempt.mode == BATCH and attempt.sent_order is not None:
            sender = tally(attempt.ledger, attempt.sent_order)
            if attempt.sent_ts is not None:
                sender.times.append(attempt.sent_ts)
        sender.attempts.append(attempt)
        if attempt.ts is not None:
            home.times.append(attempt.ts)
    for batch in loaded.batches:  # a run polling a batch is still at work
        for ledger, order, ts in batch.seen:
            found, moment = tallies.get(key_of(ledger, order)), parse_ts(ts)
            if found is not None and moment is not None:
                found.times.append(moment)
    return [tally.run() for tally in sorted(tallies.values(), key=lambda t: t.rank)]
