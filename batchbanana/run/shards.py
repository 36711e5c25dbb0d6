"""One shard of a job (contract section 12), and the job's ledger opened with the rest of its
folder folded in, so that `run` and `retry` judge what is owed job-wide.

A shard sends the items whose id hashes to it, writes `ledger.shard-K-of-N.jsonl` beside the
job's ledger and holds only that file's lock; before it sends, it reads every ledger of the
folder (ledger/folder.py). Its budget is its share of the job's (rules/shards.py) unless
`--budget` gives its own, and either is counted against its own ledger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from batchbanana.ledger.folder import (
    FolderMoney,
    fold_ledgers,
    job_ledgers,
    refuse_concurrent,
    shard_ledger,
)
from batchbanana.ledger.replay import LedgerState
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.job import Job
from batchbanana.rules.shards import Shard, shard_budget_usd
from batchbanana.run.resume import open_ledger
from batchbanana.run.settings import RunSettings


@dataclass(frozen=True, slots=True)
class Sharding:
    """How a sharded run differs from the job's own: which shard, and whose budget."""

    shard: Shard
    job_ledger: Path  # the job's own ledger: read, never written, by a shard
    job_budget_usd: float | None  # the job's budget_usd, shared out among the shards
    given_budget_usd: float | None = None  # --budget: this shard's own cap

    def budget_usd(self, money: FolderMoney) -> float | None:
        """What this shard may commit, counted against its own ledger."""
        if self.given_budget_usd is not None:
            return self.given_budget_usd
        if self.job_budget_usd is None:
            return None
        return shard_budget_usd(
            self.job_budget_usd, self.shard, money.by_shard_usd, money.others_usd
        )

    def recorded(self) -> dict[str, Any]:
        """What the `job` line adds for a shard (its `budget_usd` is the shard's own)."""
        return {"shard": str(self.shard), "job_budget_usd": self.job_budget_usd}


def shard_job(job: Job, shard: Shard, budget_usd: float | None = None) -> tuple[Job, Sharding]:
    """The job as shard `shard` runs it: its items only, its own ledger (`budget_usd` is
    `--budget`, this shard's own; the job's own budget_usd is shared out when it is None)."""
    sharding = Sharding(shard, job.ledger_path, job.budget_usd, budget_usd)
    items = tuple(item for item in job.items if shard.holds(item.id))
    shard_job = dataclasses.replace(
        job, items=items, ledger_path=shard_ledger(job.ledger_path, shard), budget_usd=budget_usd
    )
    return shard_job, sharding


def open_with_folder(
    path: Path,
    scrub: Callable[[str], str],
    stderr: TextIO,
    also: Iterable[Path] = (),
    own_items: set[str] | None = None,
) -> tuple[LedgerWriter, LedgerState, FolderMoney]:
    """Lock and replay the ledger at `path`, refuse to start beside a process that could send
    the same items, and fold in every other ledger of its folder (and `also`). The state's money
    is still the own ledger's; FolderMoney says what the others record. `own_items` is given
    the ids of the items the own ledger holds."""
    writer, state = open_ledger(path, scrub, stderr)
    if own_items is not None:
        own_items.update(state.items)
    warnings: list[str] = []
    try:
        others = job_ledgers(path, also)
        refuse_concurrent(path, others)
        money = fold_ledgers(path, state, others, warnings)
    except BaseException:
        writer.close()
        raise
    for warning in warnings:
        stderr.write(f"batchbanana: warning: {warning}\n")
    return writer, state, money


def open_job_ledgers(
    job: Job,
    sharding: Sharding | None,
    settings: RunSettings,
    scrub: Callable[[str], str],
    stderr: TextIO,
) -> tuple[LedgerWriter, LedgerState]:
    """`run`'s ledger, with the folder folded in. Unsharded, the whole folder's money counts
    against the budget; a shard counts its own ledger against its share (set in `settings`)."""
    also = [sharding.job_ledger] if sharding is not None else []
    writer, state, money = open_with_folder(job.ledger_path, scrub, stderr, also)
    if sharding is None:
        money.count_in(state)  # an unsharded run's budget counts the whole folder
        return writer, state
    settings.budget_usd = share = sharding.budget_usd(money)
    if share is None:
        shown = "no budget"
    elif sharding.given_budget_usd is not None:
        shown = f"budget ${share:.4f} (--budget)"
    else:
        shown = f"budget ${share:.4f} of the job's ${sharding.job_budget_usd:.4f}"
    stderr.write(
        f"batchbanana: shard {sharding.shard}: {len(job.items)} item(s), {shown};"
        f" ledger {job.ledger_path.name}\n"
    )
    return writer, state
