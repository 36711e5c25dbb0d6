"""One shard of a job (contract section 12), and the job's ledger opened with the rest of its
folder folded in, so that `run` and `retry` judge what is owed job-wide.

A shard sends the items whose id hashes to it, writes `ledger.shard-K-of-N.jsonl` beside the
job's ledger and holds only that file's lock; before it sends, it reads every ledger of the
folder (ledger/folder.py). Its budget is its share of the job's (rules/shards.py) unless
`--budget` gives its own, and either is counted against its own ledger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from batchbanana.errors import LedgerLockedError
from batchbanana.ledger.fold import fold
from batchbanana.ledger.folder import FolderMoney, job_ledgers, refuse_concurrent, shard_ledger
from batchbanana.ledger.replay import LedgerState, scan_ledger
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.chains import bases, uses
from batchbanana.plan.job import Job, WorkItem
from batchbanana.plan.workitems import WorkItems, shapes_of
from batchbanana.rules.shards import Shard, shard_budget_usd
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
    items: Sequence[WorkItem]
    if isinstance(job.items, WorkItems):
        items = job.items.select(shard.holds)  # as compact as the job's
    else:
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
    keep: Callable[[str], bool] | None = None,
    own_items: set[str] | None = None,
) -> tuple[LedgerWriter, LedgerState, FolderMoney]:
    """Lock the ledger at `path`, refuse to start beside a process that could send the same
    items, and replay it with every other ledger of its folder (and `also`) folded in
    (ledger/fold.py). The state's money is the own ledger's; FolderMoney says what the others
    commit. `keep` says which items of the others to hold (all if None); `own_items` is given
    the ids of the items the own ledger names."""
    existed = path.exists()
    writer = LedgerWriter(path, scrub)
    writer.open()
    warnings: list[str] = []
    try:
        others = job_ledgers(path, also)
        try:
            refuse_concurrent(path, others)
        except LedgerLockedError:
            if not existed:  # leave no empty ledger behind: we hold its lock, nobody wrote it
                path.unlink(missing_ok=True)
            raise
        if others:
            folded = fold(path, others, warnings, keep, own_items=own_items is not None)
            state, own = folded.state, folded.own
            state.spent_usd = round(own.spent_usd, 6)
            state.possibly_spent_usd = round(own.committed_usd - own.spent_usd, 6)
            money = FolderMoney.of(path, own.committed_usd, folded.others)
            seen = folded.own_items or set()
        else:  # the usual case: one ledger, read as it always was
            state, warnings = scan_ledger(path)
            money = FolderMoney.of(path, state.spent_usd + state.possibly_spent_usd, {})
            seen = set(state.items) if own_items is not None else set()
    except BaseException:
        writer.close()
        raise
    if own_items is not None:
        own_items.update(seen)
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
    if sharding is None:
        also, keep = [], None
    else:  # a shard holds its own items and the items they use, not the whole job's
        items = job.items
        wanted = set(items.ids) if isinstance(items, WorkItems) else {item.id for item in items}
        if any(uses(shape.images) for shape, _ in shapes_of(items)):  # edits of other items
            wanted.update(base for item in items if item.images for base in bases(item))
        also, keep = [sharding.job_ledger], wanted.__contains__
    writer, state, money = open_with_folder(job.ledger_path, scrub, stderr, also, keep)
    if sharding is None:
        money.count_in(state)  # an unsharded run's budget counts the whole folder
        settings.elsewhere_usd = money.spent_usd + money.possibly_spent_usd
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
