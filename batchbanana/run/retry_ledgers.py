"""Which ledger a `retry` appends to, which items it may send, and what its budget counts: from a
ledger file, a job's folder, or one shard of it (contract section 12).

- `retry LEDGER`: appends to LEDGER and retries its items; the folder's other ledgers are read
  (never written) so nothing ok or in flight elsewhere is paid for again. A shard's ledger
  (`ledger.shard-K-of-N.jsonl`) is that shard of its folder, as below.
- `retry FOLDER --shard K/N`: appends to shard K's ledger and retries the shard's items; other
  shards of N may run or retry beside it.
- `retry FOLDER`: holds every ledger of the folder (nothing else of the job may run meanwhile),
  closes the requests they left in flight as `interrupted`, and appends to `ledger.jsonl`.

The budget: `--budget`, or the job's (`budget_usd` of the latest `job` line, the job's own for a
shard's line). A shard's share of it counts its own ledger; otherwise the whole folder counts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from batchbanana.errors import UserError, make_scrubber
from batchbanana.ledger.fold import fold
from batchbanana.ledger.folder import LEDGER_GLOB, folder_ledgers
from batchbanana.ledger.replay import LedgerState
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.rules.shards import Shard, shard_of_ledger
from batchbanana.run.resume import open_ledger, record_dangling
from batchbanana.run.shards import Sharding, open_with_folder

UNSHARDED_LEDGER = "ledger.jsonl"  # where `retry FOLDER` appends


@dataclass(slots=True)
class RetryLedgers:
    """The ledgers a retry holds and what it may do with them."""

    path: Path  # the ledger new attempts are appended to
    writer: LedgerWriter
    state: LedgerState  # the folder folded in; its money is what the budget counts
    include: Callable[[str], bool]  # the items this retry may send
    budget_usd: float | None
    sharding: Sharding | None = None
    held: list[LedgerWriter] = field(default_factory=list)  # other ledgers held meanwhile

    def close(self) -> None:
        """Release every ledger held."""
        for writer in [self.writer, *self.held]:
            writer.close()


def _job_budget(state: LedgerState) -> float | None:
    """The job's budget as the latest `job` line recorded it (a shard's line: the job's own)."""
    settings: dict[str, Any] = state.jobs[-1].settings if state.jobs else {}
    value = settings.get("job_budget_usd") if "shard" in settings else settings.get("budget_usd")
    return float(value) if isinstance(value, int | float) else None


@contextlib.contextmanager
def retry_ledgers(
    target: Path, shard: Shard | None, budget_usd: float | None, stderr: TextIO
) -> Iterator[RetryLedgers]:
    """Open what `retry TARGET [--shard K/N]` works on; every ledger held is released after."""
    if target.is_dir():
        opened = (
            _open_shard(target / shard.ledger_name, shard, budget_usd, stderr)
            if shard is not None
            else _open_folder(target, budget_usd, stderr)
        )
    elif not target.is_file():
        raise UserError(f"{target}: no such ledger file or folder")
    elif shard is not None:
        raise UserError(f"--shard: give the ledgers' folder ({target.parent}), not one ledger file")
    elif (own_shard := shard_of_ledger(target.name)) is not None:
        opened = _open_shard(target, own_shard, budget_usd, stderr)
    else:
        opened = _open_file(target, budget_usd, stderr)
    try:
        yield opened
    finally:
        opened.close()


def _open_file(path: Path, budget_usd: float | None, stderr: TextIO) -> RetryLedgers:
    own_items: set[str] = set()
    writer, state, money = open_with_folder(path, make_scrubber([]), stderr, own_items=own_items)
    money.count_in(state)
    budget = budget_usd if budget_usd is not None else _job_budget(state)
    return RetryLedgers(path, writer, state, own_items.__contains__, budget)


def _open_shard(path: Path, shard: Shard, budget_usd: float | None, stderr: TextIO) -> RetryLedgers:
    if not path.is_file() and not folder_ledgers(path.parent):
        raise UserError(f"{path.parent}: no {LEDGER_GLOB} in this folder")
    writer, state, money = open_with_folder(path, make_scrubber([]), stderr)
    sharding = Sharding(shard, path.parent / UNSHARDED_LEDGER, _job_budget(state), budget_usd)
    return RetryLedgers(
        path, writer, state, shard.holds, sharding.budget_usd(money), sharding=sharding
    )


def _open_folder(folder: Path, budget_usd: float | None, stderr: TextIO) -> RetryLedgers:
    """Hold every ledger of the folder, close what they left in flight, fold them together."""
    others = [path for path in folder_ledgers(folder) if path.name != UNSHARDED_LEDGER]
    own = folder / UNSHARDED_LEDGER
    if not others and not own.is_file():
        raise UserError(f"{folder}: no {LEDGER_GLOB} in this folder")
    held: list[LedgerWriter] = []
    try:
        for path in others:
            writer, state = open_ledger(path, make_scrubber([]), stderr)
            held.append(writer)
            closed = record_dangling(writer, state)  # its process is gone: we hold its lock
            if closed:
                stderr.write(
                    f"batchbanana: {path.name}: {closed} request(s) were in flight when its last"
                    " run stopped; recorded as interrupted (billed unknown)\n"
                )
        writer = LedgerWriter(own, make_scrubber([]))
        writer.open()
    except BaseException:
        for holder in held:
            holder.close()
        raise
    warnings: list[str] = []
    try:
        state = fold(own, others, warnings).state  # every item, all the money
    except BaseException:
        for holder in [writer, *held]:
            holder.close()
        raise
    for warning in warnings:
        stderr.write(f"batchbanana: warning: {warning}\n")
    budget = budget_usd if budget_usd is not None else _job_budget(state)
    return RetryLedgers(own, writer, state, lambda item_id: True, budget, held=held)
