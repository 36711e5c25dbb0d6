"""Remote batches as the ledgers record them (contract section 10): each `batch` line folded into
its batch, so the report knows a batch's name, latest state, size and input, and whether it is
finished (a `sent` line of an unfinished batch is waiting in it, not interrupted).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from batchbanana.ledger.fields import Json
from batchbanana.ledger.records import BatchLine
from batchbanana.rules.batch import BatchState, batch_state

__all__ = ["Batch", "fold_batches", "state_text"]


@dataclass(frozen=True, slots=True)
class Batch:
    """One remote batch: its key (also its display name), and what its latest lines say."""

    key: str
    group: str  # the job's group, as items merge: "job:NAME" or "file:N"
    ledger: int  # index into LoadedReport.ledgers of its first line
    order: int  # position of its first line in that ledger
    name: str | None = None  # `batches/...`; None until the create call's answer was recorded
    state: str | None = None  # the latest state, in one spelling when it is a known one
    model: str | None = None
    image_size: str | None = None
    requests: int | None = None
    input: str | None = None  # "inline" or the uploaded file's name
    stats: Json | None = None  # the provider's batchStats counts
    seen: tuple[tuple[int, int, str | None], ...] = ()  # (ledger, order, ts) of each of its lines

    @property
    def finished(self) -> bool:
        """Its latest state is final: SUCCEEDED, FAILED, CANCELLED or EXPIRED."""
        return batch_state(self.state).finished

    @property
    def label(self) -> str:
        """The batch's name once known, else its key."""
        return self.name or self.key


def state_text(raw: str | None) -> str | None:
    """A state in one spelling (`BATCH_STATE_RUNNING`, `JOB_STATE_RUNNING` -> `RUNNING`); a state
    this version does not know is kept as written."""
    if raw is None:
        return None
    known = batch_state(raw)
    return raw if known is BatchState.UNKNOWN else known.value


_FOLDED = ("name", "model", "image_size", "requests", "input", "stats")


def fold_batches(lines: Iterable[tuple[int, str, int, BatchLine]]) -> dict[tuple[str, str], Batch]:
    """(group, batch key) -> the batch its `batch` lines describe, read in ledger order: each
    line's fields that are not None replace the earlier ones."""
    found: dict[tuple[str, str], Batch] = {}
    for ledger, group, order, line in lines:
        key = (group, line.batch_key)
        batch = found.get(key) or Batch(line.batch_key, group, ledger, order)
        changes: dict[str, Any] = {
            name: getattr(line, name) for name in _FOLDED if getattr(line, name) is not None
        }
        if line.state is not None:
            changes["state"] = state_text(line.state)
        changes["seen"] = (*batch.seen, (ledger, order, line.ts))
        found[key] = dataclasses.replace(batch, **changes)
    return found
