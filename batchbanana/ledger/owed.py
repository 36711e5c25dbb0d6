"""What the ledger says is still owed: which items `run` sends, which are done, and which are left
for `retry` (never attempted or not billed are sent; billed or unknown are never paid twice)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from batchbanana.ledger.replay import LedgerState
from batchbanana.plan.job import WorkItem
from batchbanana.rules.outcomes import Billed, Outcome


@dataclass(slots=True)
class Decision:
    """What the ledger says about the job's items before a run."""

    to_send: list[WorkItem] = field(default_factory=list)
    done: list[WorkItem] = field(default_factory=list)
    left_for_retry: list[tuple[WorkItem, str]] = field(default_factory=list)  # (item, outcome)
    in_batch: list[WorkItem] = field(default_factory=list)  # waiting in a remote batch


def decide(items: Sequence[WorkItem], state: LedgerState) -> Decision:
    """Which items `run` sends: never attempted, or whose latest outcome was not billed."""
    decision = Decision()
    for item in items:
        history = state.items.get(item.id)
        pair = history.by_fingerprint.get(item.fingerprint) if history else None
        if pair is None or (pair.outcome is None and pair.in_flight_attempt is None):
            decision.to_send.append(item)
        elif pair.in_flight_attempt is not None and pair.in_batch is not None:
            decision.in_batch.append(item)  # `run` re-attaches to its batch; never sent twice
        elif pair.in_flight_attempt is not None:
            decision.left_for_retry.append((item, Outcome.INTERRUPTED.value))
        elif pair.outcome == Outcome.OK.value:
            decision.done.append(item)
        elif pair.billed == Billed.NO.value:
            decision.to_send.append(item)
        elif history is not None and history.fingerprint != item.fingerprint:
            # Edited back to an earlier version that failed: an edit is new work. (`retry`
            # only sees the ledger's latest version, so leaving it would strand the item.)
            decision.to_send.append(item)
        else:
            decision.left_for_retry.append((item, pair.outcome or "unknown"))
    return decision
