"""Runs of a job: for each start of `run` or `retry` (its `job` line), how many requests went out
and how many the provider refused for load (429 rate quota, 503 overloaded).

A line belongs to the latest `job` line before it in its own ledger file; lines before any `job`
line (older or hand-made ledgers) make a run of their own with no id. A run found in two ledgers
of one job (a copy given with the original) is one run, as loading.py counts the copy's lines once.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from batchbanana.report.loading import Attempt, LoadedReport, parse_ts
from batchbanana.rules.outcomes import NEVER_SENT, Outcome

__all__ = ["Run", "runs"]

_REFUSED_FOR_LOAD = frozenset({Outcome.RATE_LIMITED, Outcome.UNAVAILABLE})


@dataclass(frozen=True, slots=True)
class Run:
    """One start of `run` or `retry` and what its requests met."""

    run_id: str | None
    command: str | None  # run | retry
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
    attempts: list[Attempt] = field(default_factory=list)

    def run(self) -> Run:
        sent = [a for a in self.attempts if a.outcome not in NEVER_SENT]
        refused = [a for a in sent if a.outcome in _REFUSED_FOR_LOAD]
        times = [a.ts for a in self.attempts if a.ts is not None]
        end = max([self.started, *times]) if self.started else None
        return Run(
            run_id=self.run_id,
            command=self.command,
            ledger=self.rank[0],
            started=self.started,
            wall_s=round((end - self.started).total_seconds(), 3) if end and self.started else None,
            requests=len(sent),
            refused=len(refused),
            refused_429=sum(1 for a in refused if a.http_status == 429),
            refused_503=sum(1 for a in refused if a.http_status == 503),
            ok=sum(1 for a in sent if a.outcome == Outcome.OK),
        )


def runs(loaded: LoadedReport) -> list[Run]:
    """Every run the ledgers hold, in ledger order, with the requests each one sent."""
    tallies: dict[tuple[object, ...], _Tally] = {}
    keys: dict[int, list[tuple[int, tuple[object, ...]]]] = defaultdict(list)  # ledger -> starts
    for ledger, order, line in loaded.starts:
        job = loaded.jobs[ledger].name
        key: tuple[object, ...] = (job, line.run_id, line.ts) if line.run_id else (ledger, order)
        if key not in tallies:
            tallies[key] = _Tally((ledger, order), line.run_id, line.command, parse_ts(line.ts))
        keys[ledger].append((order, key))
    for attempt in loaded.attempts:
        starts = keys[attempt.ledger]
        at = bisect.bisect_left(starts, attempt.order, key=lambda start: start[0]) - 1
        key = starts[at][1] if at >= 0 else (attempt.ledger, -1)
        tallies.setdefault(key, _Tally((attempt.ledger, -1))).attempts.append(attempt)
    return [tally.run() for tally in sorted(tallies.values(), key=lambda t: t.rank)]
