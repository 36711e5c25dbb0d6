"""What the ledger says is still owed, and putting a stopped run's ledger in order.

`run` sends only items never attempted or whose latest outcome was not billed; a `sent` line
without its result (a crash) is closed as `interrupted`; files this job never made are protected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from batchbanana.errors import UserError
from batchbanana.job import Job, WorkItem
from batchbanana.ledger import LedgerState, LedgerWriter, result_record, scan_ledger
from batchbanana.outcomes import Billed, Outcome
from batchbanana.outputs import existing_outputs


@dataclass(slots=True)
class Decision:
    """What the ledger says about the job's items before a run."""

    to_send: list[WorkItem] = field(default_factory=list)
    done: list[WorkItem] = field(default_factory=list)
    left_for_retry: list[tuple[WorkItem, str]] = field(default_factory=list)  # (item, outcome)


def decide(items: Sequence[WorkItem], state: LedgerState) -> Decision:
    """Which items `run` sends: never attempted, or whose latest outcome was not billed."""
    decision = Decision()
    for item in items:
        history = state.items.get(item.id)
        pair = history.by_fingerprint.get(item.fingerprint) if history else None
        if pair is None or (pair.outcome is None and pair.in_flight_attempt is None):
            decision.to_send.append(item)
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


def open_ledger(
    path: Path, scrub: Callable[[str], str], stderr: TextIO
) -> tuple[LedgerWriter, LedgerState]:
    """Lock the ledger, read it (warning about unreadable lines) and replay it."""
    writer = LedgerWriter(path, scrub)
    writer.open()
    try:
        state, warnings = scan_ledger(path)
    except BaseException:
        writer.close()
        raise
    for warning in warnings:
        stderr.write(f"batchbanana: warning: {warning}\n")
    return writer, state


def record_dangling(writer: LedgerWriter, state: LedgerState) -> int:
    """Close every `sent` line that has no result with an `interrupted` (billed unknown) result."""
    count = 0
    for item_id, print_id, attempt, price in state.dangling():
        history = state.items[item_id]
        writer.append_sync(
            result_record(
                item_id,
                attempt,
                print_id,
                Outcome.INTERRUPTED.value,
                Billed.UNKNOWN.value,
                price,
                history.spec,
                error="the process stopped with this request in flight (found at next start)",
            )
        )
        pair = history.by_fingerprint[print_id]
        pair.in_flight_attempt = None
        pair.outcome = Outcome.INTERRUPTED.value
        pair.billed = Billed.UNKNOWN.value
        count += 1
    return count


def check_foreign_files(job: Job, items: Sequence[WorkItem], state: LedgerState) -> None:
    """Refuse to overwrite a file at an item's final name that this job never made."""
    never_sent = [
        item.id
        for item in items
        if not ((history := state.items.get(item.id)) and history.ever_sent)
    ]
    clashes = existing_outputs(job.output_dir, never_sent)
    if clashes:
        shown = ", ".join(str(path) for path in clashes[:5])
        more = f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        raise UserError(
            f"{shown}{more}: already exist(s) and this job's ledger never made them; move them"
            " away or choose another output_dir (batchbanana never overwrites what it did not make)"
        )
