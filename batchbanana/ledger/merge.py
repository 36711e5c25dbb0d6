"""Folding the other ledgers of a job's folder (other shards, the unsharded ledger) into the state
of the one ledger a process holds, so that what is owed is judged job-wide.

Attempt numbers are unique job-wide (each run continues from the highest anywhere), so for an
item the ledger with its highest attempt holds its latest line: its fingerprint, spec and output
are the item's. For one (item, fingerprint) pair the merge keeps what must never be sent again:
`ok` in any ledger wins (an ok request is never repeated), then a request in flight in any ledger,
then the pair of the ledger with the item's highest attempt. Where that last choice could be an
older line (the item's latest line is of another fingerprint), `run` treats the pair as new work
whatever it says, so the choice never changes a decision.

A request in flight in another ledger (a `sent` line without a result) may be running right now
in another process: it is marked ELSEWHERE, billed unknown, never sent by `run` or `retry` here,
and never closed as `interrupted` by a process that does not hold its ledger.
"""

from __future__ import annotations

from batchbanana.ledger.replay import AttemptState, ItemHistory, LedgerState
from batchbanana.rules.outcomes import Billed, Outcome

ELSEWHERE = "in_flight_elsewhere"  # in-memory only: never written to a ledger
_OK = Outcome.OK.value


def _settled(pair: AttemptState) -> AttemptState:
    """Another ledger's pair as this process may use it: a request in flight there is ELSEWHERE."""
    if pair.in_flight_attempt is not None:
        return AttemptState(outcome=ELSEWHERE, billed=Billed.UNKNOWN.value)
    return pair


def _pick(mine: AttemptState, theirs: AttemptState, theirs_later: bool) -> AttemptState:
    """The pair that says what a request of this (item, fingerprint) may do now."""
    for pair in (mine, theirs):
        if pair.outcome == _OK:
            return pair
    for pair in (mine, theirs):
        if pair.in_flight_attempt is not None or pair.outcome == ELSEWHERE:
            return pair
    return theirs if theirs_later else mine


def merge_history(mine: ItemHistory | None, theirs: ItemHistory) -> ItemHistory:
    """One item's history with another ledger's folded in (`theirs` is consumed)."""
    if mine is None:
        for print_id, pair in theirs.by_fingerprint.items():
            theirs.by_fingerprint[print_id] = _settled(pair)
        return theirs
    later = theirs.attempts > mine.attempts
    if later:
        mine.fingerprint, mine.spec = theirs.fingerprint, theirs.spec
    if theirs.output is not None and (later or mine.output is None):
        mine.output = theirs.output
    mine.attempts = max(mine.attempts, theirs.attempts)
    mine.ever_sent = mine.ever_sent or theirs.ever_sent
    for print_id, pair in theirs.by_fingerprint.items():
        settled = _settled(pair)
        held = mine.by_fingerprint.get(print_id)
        mine.by_fingerprint[print_id] = settled if held is None else _pick(held, settled, later)
    return mine


def merge_state(mine: LedgerState, theirs: LedgerState) -> None:
    """Fold another ledger's items and `job` lines into `mine` (its money and batches stay out:
    the caller decides what money counts, and only a ledger's holder re-attaches its batches)."""
    for item_id, history in theirs.items.items():
        mine.items[item_id] = merge_history(mine.items.get(item_id), history)
    if theirs.jobs:
        mine.jobs = sorted([*mine.jobs, *theirs.jobs], key=lambda line: line.ts or "")
