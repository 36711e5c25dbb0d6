"""Putting a stopped run's ledger in order before a run: lock and replay it, close a `sent` line
without its result (a crash) as `interrupted`, and protect files this job never made."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from batchbanana.errors import UserError
from batchbanana.ledger.records import ResultLine
from batchbanana.ledger.replay import LedgerState, scan_ledger
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.job import Job, WorkItem
from batchbanana.rules.outcomes import Billed, Outcome
from batchbanana.run.making import is_own_sidecar
from batchbanana.run.outputs import SIDECAR_EXTENSION, existing_outputs


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
            ResultLine.for_attempt(
                item_id,
                attempt,
                print_id,
                Outcome.INTERRUPTED,
                price,
                history.spec,
                error="the process stopped with this request in flight (found at next start)",
            )
        )
        state.close_in_flight(item_id, print_id, Outcome.INTERRUPTED.value, Billed.UNKNOWN)
        count += 1
    return count


def check_foreign_files(job: Job, items: Sequence[WorkItem], state: LedgerState) -> None:
    """Refuse to overwrite a file at an item's final name that this job never made: an image of
    an item the ledger never sent, or (when the job writes sidecars) a `<id>.json` of an item to
    send that is not a sidecar batchbanana wrote for that item."""
    never_sent = [
        item.id
        for item in items
        if not ((history := state.items.get(item.id)) and history.ever_sent)
    ]
    problems: list[str] = []
    clashes = existing_outputs(job.output_dir, never_sent)
    if clashes:
        problems.append(
            f"{_named(clashes)}: already exist(s) and this job's ledger never made them; move"
            " them away or choose another output_dir (batchbanana never overwrites what it did"
            " not make)"
        )
    if job.metadata != "none":
        sidecars = existing_outputs(
            job.output_dir, [item.id for item in items], frozenset({SIDECAR_EXTENSION})
        )
        foreign = [path for path in sidecars if not is_own_sidecar(path)]
        if foreign:
            problems.append(
                f"{_named(foreign)}: already exist(s) where this job writes its sidecars, and"
                " batchbanana did not write them; move them away, choose another output_dir,"
                " or set metadata: none"
            )
    if problems:
        raise UserError(problems)


def _named(paths: Sequence[Path]) -> str:
    shown = ", ".join(str(path) for path in paths[:5])
    return f"{shown} and {len(paths) - 5} more" if len(paths) > 5 else shown
