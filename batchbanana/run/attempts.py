"""One attempt at one item, in the order the money contract demands.

A durable `sent` line, the request, the image made durable under its final name, then the
`result` line; budget reserved before anything waits; retries only of what provably cost
nothing. Whatever stops the process, the ledger tells what may have been paid for.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.to_thread

from batchbanana.errors import ImageProblem, describe_error
from batchbanana.ledger.records import ResultLine, SentLine
from batchbanana.ledger.replay import LedgerState
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.inputs import EncodedImageCache
from batchbanana.plan.job import Job, WorkItem
from batchbanana.rules.backoff import backoff_delay_s
from batchbanana.rules.outcomes import Billed, Outcome, billed, is_retryable
from batchbanana.rules.pricing import money
from batchbanana.rules.wire import build_request, file_part, inline_part
from batchbanana.run.client import AttemptResult, ProviderClient
from batchbanana.run.meters import BudgetMeter
from batchbanana.run.outputs import ImageCommitter
from batchbanana.run.pool import Slot, WorkPool
from batchbanana.run.progress import Progress
from batchbanana.run.totals import RunTotals

ENCODER_THREADS = 4  # threads building request bodies (reading, optimising, encoding inputs)


@dataclass(slots=True)
class RunSettings:
    """How to send: where, with which key, within which limits."""

    endpoint: str
    auth: str
    api_key: str
    concurrency: int
    budget_usd: float | None
    show_progress: bool = True
    command: str = "run"
    rng: random.Random = field(default_factory=random.Random)
    downloads: dict[str, tuple[Path, str]] = field(default_factory=dict)  # inline_urls

    @classmethod
    def for_job(
        cls, job: Job, api_key: str, show_progress: bool = True, command: str = "run"
    ) -> RunSettings:
        """The settings a job's own fields give (command-line overrides are already in the job)."""
        return cls(
            endpoint=job.endpoint,
            auth=job.auth,
            api_key=api_key,
            concurrency=job.concurrency,
            budget_usd=job.budget_usd,
            show_progress=show_progress,
            command=command,
        )


@dataclass(slots=True)
class RunResult:
    """How a run ended."""

    exit_code: int
    totals: RunTotals
    stop_reason: str | None = None


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
        self.attempts = {item_id: history.attempts for item_id, history in state.items.items()}
        self.run_attempts: dict[str, int] = {}
        self.images = EncodedImageCache(
            optimize=job.optimize_inputs == "lossless", downloads=settings.downloads
        )
        self.stop_reason: str | None = None
        self.interrupted = False
        self.budget = BudgetMeter(settings.budget_usd)
        self.pool: WorkPool[WorkItem] = WorkPool(
            settings.concurrency, job.adaptive, job.rate_limit_rpm
        )
        self.progress: Progress | None = None
        self.unsent: list[WorkItem] = []
        self._encoders = anyio.CapacityLimiter(ENCODER_THREADS)
        self.saver = ImageCommitter(job.output_dir)
        self._finishing = anyio.CapacityLimiter(settings.concurrency)

    # -- ledger lines -------------------------------------------------------------------------
    def _record_result(
        self,
        item: WorkItem,
        attempt: int,
        outcome: Outcome,
        price_usd: float,
        result: AttemptResult | None = None,
        outputs: Sequence[Path] = (),
        size_bytes: int | None = None,
        error: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "output": str(outputs[0]) if outputs else None,
            "bytes": size_bytes,
            "error": error if error is not None else (result.error if result else None),
        }
        if result is not None:
            fields.update(
                http_status=result.http_status,
                latency_s=result.latency_s,
                finish_reason=result.finish_reason,
                usage=result.usage,
            )
            for key in ("text", "response_id", "model_version"):
                value = getattr(result, key)
                if value is not None:
                    fields[key] = value
        if len(outputs) > 1:
            fields["outputs"] = [str(path) for path in outputs]
        fields.update(extra or {})
        record = ResultLine.for_attempt(
            item.id, attempt, item.fingerprint, outcome, price_usd, item.spec(), **fields
        )
        self.ledger.append_soon_durable(record)
        kind = billed(outcome)
        if kind is Billed.YES:
            self.totals.spent_usd = money(self.totals.spent_usd + price_usd)
            self.totals.run_spent_usd = money(self.totals.run_spent_usd + price_usd)
        elif kind is Billed.UNKNOWN:
            self.totals.possibly_spent_usd = money(self.totals.possibly_spent_usd + price_usd)

    # -- one attempt ----------------------------------------------------------------------------
    def _next_attempt(self, item: WorkItem) -> int:
        number = self.attempts.get(item.id, 0) + 1
        self.attempts[item.id] = number
        self.run_attempts[item.id] = self.run_attempts.get(item.id, 0) + 1
        return number

    def _body(self, item: WorkItem) -> bytes:
        parts = []
        for image in item.images:
            if image.kind == "url" and not image.inline:
                parts.append(file_part(image.mime_type, image.reference))
            else:
                parts.append(inline_part(*self.images.get(image)))
        body = build_request(
            model=item.model,
            prompt=item.prompt,
            image_parts=parts,
            image_size=item.image_size,
            aspect_ratio=item.aspect_ratio,
            system_prompt=item.system_prompt,
            response_modalities=item.response_modalities,
        )
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def _finish(self, item: WorkItem, outcome: Outcome, error: str | None) -> None:
        self.totals.outcomes[outcome.value] = self.totals.outcomes.get(outcome.value, 0) + 1
        if outcome is not Outcome.OK:
            self.totals.failures.append((item.id, outcome.value, self.scrub(error or "")))
        if self.progress:
            self.progress.item_done(outcome is Outcome.OK, self.totals, self.pool.shown_limits())

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
        price = item.price.ceiling_usd(item.image_size, len(item.images))
        if not self.budget.admits(self.totals.spent_usd + self.totals.possibly_spent_usd, price):
            attempt = self._next_attempt(item)
            self.totals.over_budget_usd = money(self.totals.over_budget_usd + price)
            self._record_result(
                item,
                attempt,
                Outcome.OVER_BUDGET,
                price,
                error=f"not sent: ${price:g} more would exceed the budget of"
                f" ${self.settings.budget_usd:g}",
            )
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
                body = await anyio.to_thread.run_sync(self._body, item, limiter=self._encoders)
            else:
                body = self._body(item)
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
                slot.release(result.throttle, result.server_wait_s)
                await self._conclude(item, attempt, result)

    def _interrupted(self, item: WorkItem, attempt: int, price: float, why: str) -> None:
        """Record a request that may have gone out but whose answer will never be read."""
        self._record_result(
            item, attempt, Outcome.INTERRUPTED, price, error=f"{why}, with the request in flight"
        )
        self._finish(item, Outcome.INTERRUPTED, why)

    async def _conclude(self, item: WorkItem, attempt: int, result: AttemptResult) -> None:
        outcome = result.outcome
        price = item.price.actual_usd(item.image_size, result.usage, len(result.images))
        outputs: list[Path] = []
        size_bytes: int | None = None
        error = result.error
        if outcome is Outcome.OK:
            try:
                saved = await self.saver.commit(item.id, result.images)
                outputs = saved.paths
                if saved.error is None:
                    size_bytes = sum(image.size for image in result.images)
                else:  # paid for and not (all) saved; the line names any file that was
                    outcome = Outcome.WRITE_ERROR
                    error = f"could not write the image: {describe_error(saved.error)}"
                    if outputs:
                        error += f" ({len(outputs)} of {len(result.images)} images saved)"
            except Exception as exc:  # a bug must not cost a paid answer its result line
                outcome = Outcome.WRITE_ERROR
                error = f"could not write the image: {describe_error(exc)}"
                outputs, size_bytes = [], None
            finally:
                for image in result.images[len(outputs) :]:
                    if image.path is not None:
                        # Not committed: no stray temp. A failure here must not cost the paid
                        # answer its result line (the next start removes the temp anyway).
                        with contextlib.suppress(OSError):
                            image.path.unlink(missing_ok=True)
        extra: dict[str, Any] = {}
        retry_now = (
            is_retryable(outcome)
            and result.job_stop is None
            and not self.pool.stopping
            and self.run_attempts.get(item.id, 0) < self.job.retry.max_attempts
        )
        delay = 0.0
        if retry_now:
            delay = backoff_delay_s(
                self.run_attempts[item.id],
                self.job.retry.base_delay_s,
                self.job.retry.max_delay_s,
                result.server_wait_s,
                self.settings.rng,
            )
            if (
                result.server_wait_s is not None
                and result.server_wait_s > self.job.retry.max_wait_s
            ):
                retry_now = False
                self._stop(
                    f"the provider asks to wait {result.server_wait_s:.0f} s, over"
                    f" retry.max_wait_s ({self.job.retry.max_wait_s:g} s)"
                )
            else:
                extra["retry_in_s"] = round(delay, 3)
        self._record_result(
            item, attempt, outcome, price, result, outputs, size_bytes, error, extra
        )
        if retry_now:
            self.totals.free_retries += 1
            self.pool.defer(item, delay)
            if self.progress:
                self.progress.refresh(self.totals, self.pool.shown_limits())
            return
        if result.job_stop:
            self._stop(result.job_stop)
        if outcome is Outcome.WRITE_ERROR:
            self._stop(f"item '{item.id}': {error}")
        self._finish(item, outcome, error)

    settings_client: ProviderClient

    async def run(self, items: Sequence[WorkItem], client: ProviderClient) -> None:
        """Send the items through the pool until done, stopped or aborted."""
        self.settings_client = client
        for item in items:
            self.pool.submit(item)
        self.progress = Progress(
            total=len(items), enabled=self.settings.show_progress, stream=self.stderr
        )
        try:
            # The saver outlives everything that may hand it a paid image: if a task beside the
            # pool fails, the answers being concluded (shielded) are still saved.
            async with anyio.create_task_group() as saving:
                saving.start_soon(self.saver.serve)
                try:
                    async with anyio.create_task_group() as group:
                        group.start_soon(self._watch_signals, group.cancel_scope)
                        group.start_soon(self.ledger.keep_synced)
                        await self.pool.run(self.handle)
                        with anyio.CancelScope(shield=True):
                            await self.ledger.sync()
                        group.cancel_scope.cancel()
                finally:
                    saving.cancel_scope.cancel()
        finally:
            self.progress.close()
        self.unsent.extend(self.pool.pending())
        self.totals.refused = self.pool.meter.refused
        self.totals.limit_found = self.pool.meter.found()

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.interrupted:
                    self.interrupted = True
                    self._stop(
                        f"{name}: no new requests; waiting for the ones in flight (they are paid"
                        " for). Press Ctrl-C again to abort them."
                    )
                else:
                    self.stderr.write(f"batchbanana: {name} again: aborting requests in flight\n")
                    self.pool.abort()
