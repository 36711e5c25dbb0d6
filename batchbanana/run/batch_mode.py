"""`run` in batch mode (contract section 10): re-attach to the job's unfinished batches, submit
what is owed as new batches, wait (polling with backoff, a progress bar with the state and the
counts), collect each batch as it finishes. Ctrl-C stops the waiting and leaves the batches
running at the provider: the next `run` re-attaches. `cancel` cancels them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import anyio
import anyio.to_thread

from batchbanana.errors import BadResponse, BatchCallError
from batchbanana.ledger.records import BatchLine
from batchbanana.ledger.replay import LedgerState, scan_ledger
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.job import Job, WorkItem
from batchbanana.rules.batch import BatchState, BatchStatus, batch_status, poll_delay_s
from batchbanana.run.batch_api import BatchApi
from batchbanana.run.batch_attach import (
    Waiting,
    epoch_s,
    open_batches,
    output_pending,
    overdue,
    waiting_for,
)
from batchbanana.run.batch_collect import Collected, Collector, collect_owner
from batchbanana.run.batch_stream import inline_responses, jsonl_responses, saved_operation
from batchbanana.run.batch_submit import Submitted, Submitter
from batchbanana.run.meters import BudgetMeter
from batchbanana.run.outputs import temp_path
from batchbanana.run.progress import BatchProgress
from batchbanana.run.settings import RunSettings
from batchbanana.run.signals import watch_stop_signals
from batchbanana.run.totals import RunTotals

MAX_POLL_FAILURES = 20  # polls in a row that fail before the run stops waiting


class BatchRun:
    """One `run` of a job in batch mode over a locked ledger."""

    def __init__(
        self,
        job: Job,
        writer: LedgerWriter,
        state: LedgerState,
        settings: RunSettings,
        run_id: str,
        stderr: TextIO,
        scrub: Callable[[str], str],
    ) -> None:
        self.job, self.writer, self.state = job, writer, state
        self.settings, self.run_id, self.stderr, self.scrub = settings, run_id, stderr, scrub
        self.totals = RunTotals(
            spent_usd=state.spent_usd, possibly_spent_usd=state.possibly_spent_usd
        )
        self.waiting: list[Waiting] = []
        self.stop_reason: str | None = None
        self.interrupted = False
        self.unsent: list[WorkItem] = []
        self._wake = anyio.Event()
        self._submitter: Submitter | None = None
        self._scope: anyio.CancelScope | None = None
        self._polling = anyio.CancelScope()  # the poll under way (its collection is shielded)
        self.reowed: set[str] = set()  # items of batches found never created: owed again

    def say(self, text: str) -> None:
        self.stderr.write(f"batchbanana: {self.scrub(text)}\n")
        self.stderr.flush()

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.say(f"stopping: {reason}")
        if self._submitter is not None:
            self._submitter.stopping = True
        self._wake.set()

    def _on_signal(self, name: str, again: bool) -> None:
        self.interrupted = True
        self._polling.cancel()
        if again and self._scope is not None:
            self.say(f"{name} again: aborting (a batch being created is found by name next run)")
            self._scope.cancel()
        self._stop(
            f"{name}: no new batches; the ones created keep running at the provider"
            f" (`batchbanana run` again re-attaches, `batchbanana cancel"
            f" {self.job.ledger_path}` cancels them)"
        )

    async def reattach(self, api: BatchApi) -> int:
        """Wait for every batch of the job still open in the ledger; those never created are
        closed as not billed, their items owed again. Returns how many were re-attached."""
        found = await open_batches(self.job, self.state, self.writer, api, self.scrub)
        self.waiting.extend(found.waiting)
        if closed := sum(sum(c.outcomes.values()) for c in found.closed):  # not this run's
            self.say(f"{closed} request(s) were in a batch never created: not billed, sent again")
        self.reowed.update(found.reowed)
        for key, wait_s in found.unresolved:
            self._stop(
                f"batch {key} is not listed at the provider yet (its create's answer was lost);"
                f" run again in {wait_s / 60:.0f} min or later: it is then found, or its"
                " requests are sent again"
            )
        return len(found.waiting)

    # -- submit ---------------------------------------------------------------------------------
    async def submit(self, api: BatchApi, items: list[WorkItem]) -> None:
        attempts = {item.id: self.state.attempts_of(item.id) for item in items}
        committed = self.state.spent_usd + self.state.possibly_spent_usd
        if self.reowed:  # batches found never created: their requests no longer count
            money, _ = await anyio.to_thread.run_sync(scan_ledger, self.job.ledger_path)
            committed = money.spent_usd + money.possibly_spent_usd + self.settings.elsewhere_usd
        budget = BudgetMeter(self.settings.budget_usd)
        submitter = Submitter(self.job, self.writer, api, self.run_id, attempts, budget,
                              lambda: committed, self.settings.downloads)  # fmt: skip
        self._submitter = submitter
        if self.stop_reason:
            submitter.stopping = True
        made: list[Submitted] = await submitter.submit(items)
        report = submitter.report
        for name, count in report.outcomes.items():
            self.totals.outcomes[name] = self.totals.outcomes.get(name, 0) + count
        self.totals.failures.extend(report.failures)
        self.totals.over_budget_usd = report.over_budget_usd
        self.unsent.extend(report.unsent)
        if report.stop_reason:
            self._stop(report.stop_reason)
        for batch in made:
            self.waiting.append(waiting_for(batch.key, batch.status, batch.requests))
            shown = "inline" if batch.status.responses_file is None else "file"
            self.say(f"created {batch.status.name} ({len(batch.requests)} request(s), {shown})")

    # -- wait and collect -----------------------------------------------------------------------
    async def wait(self, api: BatchApi) -> None:
        bar = BatchProgress(
            sum(len(w.requests) for w in self.waiting), self.settings.show_progress, self.stderr
        )
        polls, failures = 0, 0
        try:
            while self.waiting and not self.stop_reason:
                for batch in list(self.waiting):
                    try:
                        with anyio.CancelScope() as self._polling:  # a Ctrl-C ends a poll
                            await self._poll(api, batch)
                        failures = 0
                    except (BatchCallError, BadResponse) as exc:
                        if isinstance(exc, BatchCallError) and exc.status == 404:
                            await self._gone(batch, exc)
                            continue
                        failures += 1
                        if failures >= MAX_POLL_FAILURES:
                            self._stop(
                                f"cannot read batch {batch.name}'s state ({exc});"
                                " `batchbanana run` again re-attaches"
                            )
                        continue  # the other batches are polled all the same
                    if self.stop_reason:
                        break
                bar.show(self.waiting)
                if not self.waiting or self.stop_reason:
                    break
                delay = poll_delay_s(polls, self.job.batch.poll_s, self.job.batch.max_poll_s)
                polls += 1
                with anyio.move_on_after(delay):
                    await self._wake.wait()
        finally:
            bar.close()

    async def _gone(self, batch: Waiting, exc: BatchCallError) -> None:
        """The provider no longer has the batch (deleted, or expired long ago): its answers can
        never be collected and may have been paid for, so its requests are billed unknown."""
        why = f"batch {batch.name} is gone at the provider ({exc}); it may have been billed"
        self.say(why + ": its requests are left for `retry`")
        collector = Collector(
            batch.name, batch.requests, self.job.output_dir, self.writer, self.scrub
        )
        self._add(await anyio.to_thread.run_sync(collector.finish, BatchState.UNKNOWN, why))
        self.writer.append_sync(BatchLine(batch_key=batch.key, name=batch.name, state="NOT_FOUND"))
        self.waiting.remove(batch)

    async def _poll(self, api: BatchApi, batch: Waiting) -> None:
        path = temp_path(self.job.output_dir, collect_owner(self.job.ledger_path), "operation")
        try:
            await api.save_operation(batch.name, path, self.settings.rng)
            operation = await anyio.to_thread.run_sync(saved_operation, path)
            status = batch_status(operation) if isinstance(operation, dict) else None
            if status is None:
                raise BadResponse(f"the state of {batch.name} names no batch")
            if status.state is not batch.state:
                self.writer.append_sync(
                    BatchLine(
                        batch_key=batch.key,
                        name=batch.name,
                        state=status.state.value,
                        stats=dict(status.stats),
                    )
                )
            batch.state, batch.stats = status.state, status.stats
            batch.created = epoch_s(status.create_time) or batch.created
            told = batch.output_missing_since is not None
            if status.state.finished and output_pending(batch, status, time.monotonic()):
                if not told:  # its answers are paid for: wait for the output to be named
                    self.say(f"{batch.name} ended {status.state.value}; waiting for its results")
            elif status.state.finished:
                with anyio.CancelScope(shield=True):
                    collected = await self._collect(api, batch, status, path)
                if collected:
                    self.waiting.remove(batch)
            elif overdue(batch, self.job.batch.max_wait_h) and not batch.cancel_asked:
                hours = self.job.batch.max_wait_h
                self.say(
                    f"{batch.name} still pending after {hours:g} h (batch.max_wait_h):"
                    " cancelling it; its items stay owed to the next run"
                )
                await api.cancel(batch.name)
                batch.cancel_asked = True
        finally:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    async def _collect(
        self, api: BatchApi, batch: Waiting, status: BatchStatus, saved: Path
    ) -> bool:
        """Collect a finished batch; False if an image could not be written: the job stops and
        the requests not reached stay open for the next `run` (the provider keeps them)."""
        collector = Collector.for_job(batch.name, batch.requests, self.job, self.writer, self.scrub)
        folder, owner = self.job.output_dir, collect_owner(self.job.ledger_path)
        if status.responses_file:
            download = temp_path(folder, owner, "responses")
            try:
                await api.download(status.responses_file, download, self.settings.rng)
                await anyio.to_thread.run_sync(
                    lambda: collector.take(jsonl_responses(download, folder, owner))
                )
            finally:
                with contextlib.suppress(OSError):
                    download.unlink(missing_ok=True)
        elif status.has_inline_output:
            await anyio.to_thread.run_sync(
                lambda: collector.take(inline_responses(saved, folder, owner))
            )
        if collector.stopped:
            self._add(collector.collected)
            batch.requests = dict(collector.members)
            self._stop(
                f"{collector.collected.stop_reason}; {len(batch.requests)} answer(s) of"
                f" {batch.name} not collected: `batchbanana run` again collects them"
            )
            return False
        collected = await anyio.to_thread.run_sync(collector.finish, status.state)
        self._add(collected)
        if collected.stop_reason:
            self._stop(collected.stop_reason)
        return True

    def _add(self, collected: Collected) -> None:
        for name, count in collected.outcomes.items():
            self.totals.outcomes[name] = self.totals.outcomes.get(name, 0) + count
        self.totals.failures.extend(collected.failures)
        self.totals.run_spent_usd += collected.spent_usd

    async def run(self, api: BatchApi, items: list[WorkItem]) -> None:
        """Re-attach, submit, wait, collect; until done, stopped or interrupted."""
        async with anyio.create_task_group() as group:
            self._scope = group.cancel_scope
            group.start_soon(watch_stop_signals, self._on_signal)
            try:
                found = await self.reattach(api)
                if found:
                    self.say(f"re-attached to {found} unfinished batch(es) of this job")
                again = [
                    item
                    for item in (self.job.items if self.reowed else ())
                    if item.id in self.reowed
                    and item not in items
                    and self.state.items[item.id].fingerprint == item.fingerprint
                ]
                await self.submit(api, items + again)
                await self.wait(api)
            except BatchCallError as exc:
                self._stop(f"the Batch API failed: {exc}")
            finally:
                group.cancel_scope.cancel()
        if self.waiting:
            names = ", ".join(w.name for w in self.waiting)
            self.say(
                f"not collected yet, left at the provider: {names}; `batchbanana run"
                f" {self.job.manifest_path}` again re-attaches and collects them"
            )
            self.totals.outcomes["in_batch"] = sum(len(w.requests) for w in self.waiting)
