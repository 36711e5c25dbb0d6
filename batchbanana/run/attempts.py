"""One attempt at one item, in the order the money contract demands.

A durable `sent` line, the request, the image made durable under its final name, then the
`result` line; budget reserved before anything waits; retries only of what provably cost
nothing. Whatever stops the process, the ledger tells what may have been paid for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.to_thread

from batchbanana.errors import ImageProblem, describe_error
from batchbanana.ledger.records import SentLine
from batchbanana.ledger.replay import LedgerState
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.chains import bases
from batchbanana.plan.inputs import EncodedImageCache
from batchbanana.plan.job import Job, WorkItem
from batchbanana.rules.backoff import retry_wait_s
from batchbanana.rules.outcomes import Outcome, is_retryable
from batchbanana.run.body import request_body
from batchbanana.run.chains import ChainWaits, Moves
from batchbanana.run.client import AttemptResult, ProviderClient
from batchbanana.run.committer import ImageCommitter
from batchbanana.run.meters import BudgetMeter
from batchbanana.run.pool import Slot, WorkPool
from batchbanana.run.progress import Progress
from batchbanana.run.recorder import ResultRecorder
from batchbanana.run.saving import keep_images
from batchbanana.run.settings import RunSettings
from batchbanana.run.signals import watch_stop_signals
from batchbanana.run.totals import RunTotals

ENCODER_THREADS = 4  # threads building request bodies (reading, optimising, encoding inputs)


class JobRunner:
    """One run of a job over a locked ledger."""

    def __init__(
        self,
        job: Job,
        ledger: LedgerWriter,
        state: LedgerState,
        settings: RunSettings,
        stderr: TextIO,
        scrub: Callable[[str], str],
    ) -> None:
        self.job = job
        self.ledger = ledger
        self.settings = settings
        self.stderr = stderr
        self.scrub = scrub
        self.totals = RunTotals(
            spent_usd=state.spent_usd, possibly_spent_usd=state.possibly_spent_usd
        )
        self.state = state
        self.attempts: dict[str, int] = {}  # this run's, over the ledger's (state.attempts_of)
        self.run_attempts: dict[str, int] = {}
        self.images = EncodedImageCache(
            optimize=job.optimize_inputs == "lossless", downloads=settings.downloads
        )
        self.stop_reason: str | None = None
        self.interrupted = False
        self.budget = BudgetMeter(settings.budget_usd)
        self.recorder = ResultRecorder(ledger, self.totals)
        self.pool: WorkPool[WorkItem] = WorkPool(
            settings.concurrency, job.adaptive, job.rate_limit_rpm
        )
        self.progress: Progress | None = None
        self.unsent: list[WorkItem] = []
        self._encoders = anyio.CapacityLimiter(ENCODER_THREADS)
        self.saver = ImageCommitter.for_job(job, scrub)
        self._finishing = anyio.CapacityLimiter(settings.concurrency)
        self.chains = ChainWaits(state)  # items waiting for other items' outputs

    # -- one attempt ----------------------------------------------------------------------------
    def _next_attempt(self, item: WorkItem) -> int:
        number = self.attempts.get(item.id, self.state.attempts_of(item.id)) + 1
        self.attempts[item.id] = number
        self.run_attempts[item.id] = self.run_attempts.get(item.id, 0) + 1
        return number

    def _finish(
        self, item: WorkItem, outcome: Outcome, error: str | None, output: Path | None = None
    ) -> None:
        self.totals.outcomes[outcome.value] = self.totals.outcomes.get(outcome.value, 0) + 1
        if outcome is not Outcome.OK:
            self.totals.failures.append((item.id, outcome.value, self.scrub(error or "")))
        if self.progress:
            self.progress.item_done(outcome is Outcome.OK, self.totals, self.pool.shown_limits())
        self._follow(self.chains.settle(item.id, outcome, output))

    def _follow(self, moves: Moves) -> None:
        """Items whose inputs are now known go to the pool; blocked ones get their line."""
        for ready in moves.ready:
            self.pool.submit(ready)
        for item, why in moves.blocked:
            price = item.price.ceiling_usd(item.image_size, len(item.images))
            self.recorder.record(item, self._next_attempt(item), Outcome.BLOCKED, price, error=why)
            self._finish(item, Outcome.BLOCKED, why)

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stderr.write(f"batchbanana: stopping: {self.scrub(reason)}\n")
            self.stderr.flush()
        self.pool.stop()

    async def handle(self, item: WorkItem, slot: Slot) -> None:
        """One attempt at one item: budget, sent line, request, image, result line, next step.

        The pool slot is released once the provider has answered: saving the image and writing
        the result line do not hold up the next request."""
        if self.pool.stopping:
            self.unsent.append(item)
            return
        if bases(item):  # the outputs it uses are known now: read them, off the event loop
            try:
                item, known = await anyio.to_thread.run_sync(
                    self.chains.resolve, item, limiter=self._encoders
                )
            except ImageProblem as exc:
                self._follow(Moves(blocked=[(item, f"not sent: {exc}")]))
                return
            if known is not None:  # the ledger has this very request already: never sent twice
                self._finish(item, known.outcome, known.error, known.output)
                return
        price = item.price.ceiling_usd(item.image_size, len(item.images))
        if not self.budget.admits(self.totals.spent_usd + self.totals.possibly_spent_usd, price):
            attempt = self._next_attempt(item)
            self.recorder.over_budget(item, attempt, price, self.settings.budget_usd)
            self._finish(item, Outcome.OVER_BUDGET, "over budget")
            return
        self.budget.reserve(price)  # before any wait: concurrent handlers see it
        try:
            await self._send(item, price, slot)
        finally:
            self.budget.release(price)

    async def _send(self, item: WorkItem, price: float, slot: Slot) -> None:
        inline = sum(1 for image in item.images if image.kind == "file" or image.inline)
        try:
            if inline:
                # Reading, optimising and encoding inputs can take a while: not on the event
                # loop, and not in the thread pool that fsyncs the ledger and saves images.
                body = await anyio.to_thread.run_sync(
                    request_body, item, self.images, limiter=self._encoders
                )
            else:
                body = request_body(item, self.images)
        except (OSError, ImageProblem) as exc:
            # An input changed or vanished after validation: nothing was sent or paid.
            self._stop(f"item '{item.id}': input image unreadable: {exc}")
            self.unsent.append(item)
            return
        except anyio.get_cancelled_exc_class():
            self.unsent.append(item)  # aborted before its `sent` line: nothing went out
            raise
        if self.pool.stopping:
            # A stop (Ctrl-C, a job-level error) came while the body was being built.
            self.unsent.append(item)
            return
        self.totals.inline_images_sent += inline
        attempt = self._next_attempt(item)
        sent = SentLine(
            item=item.id,
            attempt=attempt,
            fingerprint=item.fingerprint,
            price_usd=price,
            model=item.model,
            image_size=item.image_size,
            spec=item.spec(),
        )
        with anyio.CancelScope(shield=True):
            await self.ledger.append_durable(sent)
        timeout_s = self.job.timeouts.for_size(item.image_size)
        try:
            result = await self.settings_client.generate(
                item.model, body, timeout_s, self.job.output_dir, item.id
            )
        except anyio.get_cancelled_exc_class():
            self._interrupted(item, attempt, price, "stopped by a second signal")
            raise
        except Exception as exc:  # a bug must not hide a request that may have gone out
            self._interrupted(item, attempt, price, f"internal error: {describe_error(exc)}")
            self._stop(f"internal error: {describe_error(exc)}")
            return
        del body
        # The answer is paid for: record it even if a second Ctrl-C arrives meanwhile.
        with anyio.CancelScope(shield=True):
            # The next request may start while this answer is saved, but only while fewer than
            # `concurrency` answers are being saved: a slow disk holds the pool back instead of
            # letting answers pile up in memory.
            async with self._finishing:
                self._tell_pool(slot, result)
                await self._conclude(item, attempt, result)

    def _tell_pool(self, slot: Slot, result: AttemptResult) -> None:
        """Free the slot, saying what the provider answered; with no HTTP answer at all (no
        connection, a timeout, a dropped connection) there is nothing to learn about its load."""
        try:
            if result.http_status is None:
                slot.abandon()
            else:
                slot.release(
                    result.throttle, result.server_wait_s, result.latency_s, result.quota_window_s
                )
        except Exception:  # the limits are advice (the slot is freed whatever they raise); the
            pass  # paid answer's result line is not

    def _interrupted(self, item: WorkItem, attempt: int, price: float, why: str) -> None:
        """Record a request that may have gone out but whose answer will never be read."""
        self.recorder.record(
            item, attempt, Outcome.INTERRUPTED, price, error=f"{why}, with the request in flight"
        )
        self._finish(item, Outcome.INTERRUPTED, why)

    async def _conclude(self, item: WorkItem, attempt: int, result: AttemptResult) -> None:
        price = item.price.actual_usd(item.image_size, result.usage, len(result.images))
        kept = await keep_images(self.saver, item, attempt, price, result)
        outcome, error = kept.outcome, kept.error
        extra: dict[str, Any] = {}
        retry, delay = self.job.retry, None
        if is_retryable(outcome):
            delay = retry_wait_s(
                self.run_attempts.get(item.id, 1), retry.base_delay_s, retry.max_delay_s,
                retry.max_wait_s, result.server_wait_s, self.settings.rng,
            )  # fmt: skip
            if delay is None:  # a stop for the job, retried or not: the pool would hold every
                # other item at the provider's gate for as long
                wait_s = result.server_wait_s or 0
                self._stop(f"the provider asks to wait {wait_s:.0f} s, over retry.max_wait_s"
                           f" ({retry.max_wait_s:g} s)")  # fmt: skip
        retry_now = delay is not None and result.job_stop is None and not self.pool.stopping
        retry_now = retry_now and self.run_attempts.get(item.id, 0) < retry.max_attempts
        if retry_now and delay is not None:
            extra["retry_in_s"] = round(delay, 3)
        self.recorder.record(
            item, attempt, outcome, price, result, kept.outputs, kept.size_bytes, error, extra
        )
        if retry_now and delay is not None:
            self.totals.free_retries += 1
            self.pool.defer(item, delay)
            if self.progress:
                self.progress.refresh(self.totals, self.pool.shown_limits())
            return
        if result.job_stop:
            self._stop(result.job_stop)
        if outcome is Outcome.WRITE_ERROR:
            self._stop(f"item '{item.id}': {error}")
        self._finish(item, outcome, error, kept.outputs[0] if kept.outputs else None)

    settings_client: ProviderClient

    async def run(self, items: Sequence[WorkItem], client: ProviderClient) -> None:
        """Send the items through the pool until done, stopped or aborted."""
        self.settings_client = client
        self.progress = Progress(
            total=len(items), enabled=self.settings.show_progress, stream=self.stderr
        )
        self._follow(self.chains.start(items))
        try:
            # The saver outlives everything that may hand it a paid image: if a task beside the
            # pool fails, the answers being concluded (shielded) are still saved.
            async with anyio.create_task_group() as saving:
                saving.start_soon(self.saver.serve)
                try:
                    async with anyio.create_task_group() as group:
                        group.start_soon(watch_stop_signals, self._on_signal)
                        group.start_soon(self.ledger.keep_synced)
                        await self.pool.run(self.handle)
                        with anyio.CancelScope(shield=True):
                            await self.ledger.sync()
                        group.cancel_scope.cancel()
                finally:
                    saving.cancel_scope.cancel()
        finally:
            self.progress.close()
        self.unsent.extend(self.pool.pending() + self.chains.still_waiting())
        self.totals.refused = self.pool.meter.refused
        self.totals.limit_found = self.pool.meter.found()

    def _on_signal(self, name: str, again: bool) -> None:
        if not again:
            self.interrupted = True
            self._stop(
                f"{name}: no new requests; waiting for the ones in flight (they are paid"
                " for). Press Ctrl-C again to abort them."
            )
        else:
            self.stderr.write(f"batchbanana: {name} again: aborting requests in flight\n")
            self.pool.abort()
