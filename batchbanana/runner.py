"""Runs a job: decide what is owed from the ledger, send it through the pool, record every attempt.

The order of events per request is the money contract: a durable `sent` line, the request, the
image written atomically, then a durable `result` line. Whatever stops the process, the ledger
tells what may have been paid for.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.to_thread

from batchbanana import __version__
from batchbanana.backoff import backoff_delay_s
from batchbanana.client import AttemptResult, ProviderClient
from batchbanana.downloads import inline_downloads, remove_stale_downloads
from batchbanana.errors import UserError
from batchbanana.inputs import EncodedImageCache, ImageProblem
from batchbanana.ledger import LedgerState, LedgerWriter, read_ledger, replay
from batchbanana.outcomes import Billed, Outcome, billed, is_retryable
from batchbanana.outputs import (
    commit_image,
    existing_outputs,
    prepare_output_dir,
    remove_stale_temps,
    write_image,
)
from batchbanana.plan import SIMULATE, Job, WorkItem
from batchbanana.pool import WorkPool
from batchbanana.pricing import money, price_rule
from batchbanana.progress import Progress
from batchbanana.wire import AnswerImage, build_request, file_part, inline_part

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

BUDGET_SLACK_USD = 1e-9  # float noise, not money


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def utc_now() -> str:
    """An ISO-8601 UTC timestamp with milliseconds, as the ledger writes them."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_scrubber(secret_values: Sequence[str]) -> Callable[[str], str]:
    """A function that removes every secret (raw or JSON-escaped) from a text."""
    secrets_found = [value for value in secret_values if value and len(value) >= 4]
    variants = sorted(
        {form for value in secrets_found for form in (value, json.dumps(value)[1:-1])},
        key=len,
        reverse=True,
    )

    def scrub(text: str) -> str:
        for variant in variants:
            if variant in text:
                text = text.replace(variant, "***")
        return text

    return scrub


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


@dataclass(slots=True)
class RunTotals:
    """Money and outcomes of one run, kept up to date as results arrive."""

    spent_usd: float = 0.0  # whole ledger, this run included
    possibly_spent_usd: float = 0.0
    reserved_usd: float = 0.0  # estimated price of requests in flight
    run_spent_usd: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)  # final outcome per item this run
    free_retries: int = 0
    over_budget_usd: float = 0.0  # what the items refused by the budget would have cost
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (item, outcome, error)
    inline_images_sent: int = 0  # input images sent inline, counting every request
    images_encoded: int = 0  # distinct input images read and encoded (once each per run)
    bytes_saved: int = 0  # by optimize_inputs: lossless


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
        self.pool: WorkPool[WorkItem] = WorkPool(
            settings.concurrency, job.adaptive, job.rate_limit_rpm
        )
        self.progress: Progress | None = None
        self.unsent: list[WorkItem] = []

    # -- ledger lines -------------------------------------------------------------------------
    def _base(self, item: WorkItem, attempt: int) -> dict[str, Any]:
        return {"item": item.id, "attempt": attempt, "fingerprint": item.fingerprint}

    async def _record_result(
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
        record: dict[str, Any] = {"event": "result", "ts": utc_now(), **self._base(item, attempt)}
        record.update(
            {
                "outcome": outcome.value,
                "billed": billed(outcome).value,
                "price_usd": price_usd,
                "http_status": result.http_status if result else None,
                "latency_s": result.latency_s if result else None,
                "output": str(outputs[0]) if outputs else None,
                "bytes": size_bytes,
                "finish_reason": result.finish_reason if result else None,
                "error": error if error is not None else (result.error if result else None),
                "usage": result.usage if result else None,
            }
        )
        if len(outputs) > 1:
            record["outputs"] = [str(path) for path in outputs]
        if result is not None:
            for key in ("text", "response_id", "model_version"):
                value = getattr(result, key)
                if value is not None:
                    record[key] = value
        record.update(
            {
                "model": item.model,
                "image_size": item.image_size,
                "aspect_ratio": item.aspect_ratio,
                "spec": item.spec(),
            }
        )
        if extra:
            record.update(extra)
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

    def _within_budget(self, price_usd: float) -> bool:
        budget = self.settings.budget_usd
        if budget is None:
            return True
        committed = (
            self.totals.spent_usd + self.totals.possibly_spent_usd + self.totals.reserved_usd
        )
        return committed + price_usd <= budget + BUDGET_SLACK_USD

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
            self.progress.item_done(outcome is Outcome.OK, self.totals, self.pool.target.value)

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stderr.write(f"batchbanana: stopping: {self.scrub(reason)}\n")
            self.stderr.flush()
        self.pool.stop()

    async def handle(self, item: WorkItem, release: Callable[[], None]) -> None:
        """One attempt at one item: budget, sent line, request, image, result line, next step.

        The pool slot is released once the provider has answered: saving the image and writing
        the result line do not hold up the next request."""
        if self.pool.stopping:
            self.unsent.append(item)
            return
        price = item.price.ceiling_usd(item.image_size, len(item.images))
        if not self._within_budget(price):
            attempt = self._next_attempt(item)
            self.totals.over_budget_usd = money(self.totals.over_budget_usd + price)
            await self._record_result(
                item,
                attempt,
                Outcome.OVER_BUDGET,
                price,
                error=f"not sent: ${price:g} more would exceed the budget of"
                f" ${self.settings.budget_usd:g}",
            )
            self._finish(item, Outcome.OVER_BUDGET, "over budget")
            return
        # Reserved before any wait, so concurrent handlers see it in their budget check.
        self.totals.reserved_usd += price
        try:
            await self._send(item, price, release)
        finally:
            self.totals.reserved_usd = max(0.0, self.totals.reserved_usd - price)

    async def _send(self, item: WorkItem, price: float, release: Callable[[], None]) -> None:
        inline = sum(1 for image in item.images if image.kind == "file" or image.inline)
        try:
            if inline:
                # Reading, optimising and encoding inputs can take a while: not on the event loop.
                body = await anyio.to_thread.run_sync(self._body, item)
            else:
                body = self._body(item)
        except (OSError, ImageProblem) as exc:
            # An input changed or vanished after validation: nothing was sent or paid.
            self._stop(f"item '{item.id}': input image unreadable: {exc}")
            self.unsent.append(item)
            return
        self.totals.inline_images_sent += inline
        attempt = self._next_attempt(item)
        sent = {
            "event": "sent",
            "ts": utc_now(),
            **self._base(item, attempt),
            "price_usd": price,
            "model": item.model,
            "image_size": item.image_size,
            "spec": item.spec(),
        }
        with anyio.CancelScope(shield=True):
            await self.ledger.append_durable(sent)
        timeout_s = self.job.timeouts.for_size(item.image_size)
        try:
            result = await self.settings_client.generate(
                item.model, body, timeout_s, self.job.output_dir, item.id
            )
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._record_result(
                    item,
                    attempt,
                    Outcome.INTERRUPTED,
                    price,
                    error="stopped by a second signal with the request in flight",
                )
            self._finish(item, Outcome.INTERRUPTED, "interrupted")
            raise
        except Exception as exc:  # a bug must not hide a request that may have gone out
            with anyio.CancelScope(shield=True):
                await self._record_result(
                    item,
                    attempt,
                    Outcome.INTERRUPTED,
                    price,
                    error=f"internal error with the request in flight: {_describe(exc)}",
                )
            self._finish(item, Outcome.INTERRUPTED, "internal error")
            self._stop(f"internal error: {_describe(exc)}")
            return
        del body
        release()
        # The answer is paid for: record it even if a second Ctrl-C arrives meanwhile.
        with anyio.CancelScope(shield=True):
            await self._conclude(item, attempt, result)

    def _save(self, item: WorkItem, index: int, image: AnswerImage) -> Path:
        """Give one image of an ok answer its final name, durably (runs in a worker thread)."""
        if image.path is not None:
            return commit_image(image.path, self.job.output_dir, item.id, index, image.mime_type)
        return write_image(self.job.output_dir, item.id, index, image.mime_type, image.data)

    async def _conclude(self, item: WorkItem, attempt: int, result: AttemptResult) -> None:
        outcome = result.outcome
        price = item.price.actual_usd(item.image_size, result.usage)
        outputs: list[Path] = []
        size_bytes: int | None = None
        error = result.error
        if outcome is Outcome.OK:
            try:
                for index, image in enumerate(result.images, start=1):
                    outputs.append(await anyio.to_thread.run_sync(self._save, item, index, image))
                size_bytes = sum(image.size for image in result.images)
            except Exception as exc:  # whatever failed, the image was paid for and not saved
                outcome = Outcome.WRITE_ERROR
                error = f"could not write the image: {_describe(exc)}"
                outputs, size_bytes = [], None
            finally:
                for image in result.images[len(outputs) :]:
                    if image.path is not None:
                        image.path.unlink(missing_ok=True)  # not committed: no stray temp
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
        await self._record_result(
            item, attempt, outcome, price, result, outputs, size_bytes, error, extra
        )
        if outcome in (Outcome.RATE_LIMITED, Outcome.UNAVAILABLE):
            self.pool.target.on_throttled()
        else:
            self.pool.target.on_success()
        if retry_now:
            self.totals.free_retries += 1
            self.pool.defer(item, delay)
            if self.progress:
                self.progress.refresh(self.totals, self.pool.target.value)
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
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch_signals, group.cancel_scope)
                group.start_soon(self.ledger.keep_synced)
                await self.pool.run(self.handle)
                with anyio.CancelScope(shield=True):
                    await self.ledger.sync()
                group.cancel_scope.cancel()
        finally:
            self.progress.close()
        self.unsent.extend(self.pool.pending())

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


def _price_function(job: Job) -> Callable[[str, str], float]:
    def price(model: str, image_size: str) -> float:
        rule = price_rule(job.price_book, job.pricing, model, image_size)
        return rule.estimate_usd(image_size) if rule else 0.0

    return price


@asynccontextmanager
async def _endpoint_for(job: Job, endpoint: str) -> AsyncIterator[str]:
    if endpoint != SIMULATE:
        yield endpoint
        return
    from batchbanana.simulator import SimulatorConfig, run_simulator

    config = SimulatorConfig(price_usd=_price_function(job), price_book=job.price_book)
    async with run_simulator(config) as simulator:
        yield simulator.url


def resolve_api_key(endpoint: str, api_key_env: str) -> str:
    """The key from the environment; a missing key is a user error unless simulating."""
    if endpoint == SIMULATE:
        return os.environ.get(api_key_env) or "simulated-key"
    key = os.environ.get(api_key_env, "").strip()
    if not key:
        raise UserError(
            f"the environment variable {api_key_env} is not set or empty;"
            f" HINT: export {api_key_env}=... (api_key_env in the manifest names the variable)"
        )
    if not all(33 <= ord(char) <= 126 for char in key):
        raise UserError(
            f"the key in {api_key_env} holds spaces, control or non-ASCII characters;"
            " HINT: copy it again without quotes or line breaks"
        )
    return key


def job_record(job: Job, settings: RunSettings, run_id: str) -> dict[str, Any]:
    """The `job` line written at each start of run/retry."""
    recorded = job.settings()
    recorded.update(
        {
            "endpoint": settings.endpoint,
            "auth": settings.auth,
            "concurrency": settings.concurrency,
            "budget_usd": settings.budget_usd,
        }
    )
    return {
        "event": "job",
        "ts": utc_now(),
        "run_id": run_id,
        "command": settings.command,
        "job": job.name,
        "manifest": str(job.manifest_path),
        "manifest_sha256": job.manifest_sha256,
        "ledger": str(job.ledger_path),
        "version": __version__,
        "settings": recorded,
    }


def new_run_id() -> str:
    """A run id that sorts by time: r-YYYYMMDD-HHMMSS-xxxx."""
    return datetime.now(UTC).strftime("r-%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def open_ledger(
    path: Path, scrub: Callable[[str], str], stderr: TextIO
) -> tuple[LedgerWriter, LedgerState]:
    """Lock the ledger, read it (warning about unreadable lines) and replay it."""
    writer = LedgerWriter(path, scrub)
    writer.open()
    try:
        read = read_ledger(path)
    except BaseException:
        writer.close()
        raise
    for warning in read.warnings:
        stderr.write(f"batchbanana: warning: {warning}\n")
    return writer, replay(read.records)


def record_dangling(writer: LedgerWriter, state: LedgerState) -> int:
    """Close every `sent` line that has no result with an `interrupted` (billed unknown) result."""
    count = 0
    for item_id, print_id, attempt, price in state.dangling():
        history = state.items[item_id]
        writer.append_sync(
            {
                "event": "result",
                "ts": utc_now(),
                "item": item_id,
                "attempt": attempt,
                "fingerprint": print_id,
                "outcome": Outcome.INTERRUPTED.value,
                "billed": Billed.UNKNOWN.value,
                "price_usd": price,
                "http_status": None,
                "latency_s": None,
                "output": None,
                "bytes": None,
                "finish_reason": None,
                "error": "the process stopped with this request in flight (found at next start)",
                "usage": None,
                "model": (history.spec or {}).get("model"),
                "image_size": (history.spec or {}).get("image_size"),
                "aspect_ratio": (history.spec or {}).get("aspect_ratio"),
                "spec": history.spec,
            }
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


async def execute(
    job: Job,
    items: Sequence[WorkItem],
    writer: LedgerWriter,
    state: LedgerState,
    settings: RunSettings,
    stderr: TextIO,
    scrub: Callable[[str], str],
) -> RunResult:
    """Send `items` and return how the run ended (the ledger is written as it goes)."""
    runner = JobRunner(job, writer, state, settings, stderr, scrub)
    endpoint_cm: AbstractAsyncContextManager[str] = _endpoint_for(job, settings.endpoint)
    async with (
        endpoint_cm as base_url,
        ProviderClient(base_url, settings.auth, settings.api_key, job.timeouts.connect) as client,
    ):
        await runner.run(items, client)
    totals = runner.totals
    totals.images_encoded = runner.images.encodes
    totals.bytes_saved = runner.images.bytes_saved
    if runner.unsent:
        totals.outcomes["not_sent"] = len(runner.unsent)
    failed = any(outcome != Outcome.OK.value for outcome in totals.outcomes)
    if runner.interrupted:
        code = EXIT_INTERRUPTED
    elif failed or runner.stop_reason:
        code = EXIT_FAILED
    else:
        code = EXIT_OK
    return RunResult(code, totals, runner.stop_reason)


def run_restoring_signals(function: Callable[..., Any], *args: Any) -> RunResult:
    """anyio.run, then the SIGINT/SIGTERM handlers as they were (anyio leaves the defaults)."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        result: RunResult = anyio.run(function, *args)
    finally:
        for number, handler in handlers.items():
            if handler is not None:
                signal.signal(number, handler)
    return result


def run_job(
    job: Job,
    settings: RunSettings,
    stderr: TextIO | None = None,
) -> int:
    """`batchbanana run`: everything after validation. Returns the exit code."""
    stderr = stderr or sys.stderr
    scrub = make_scrubber([settings.api_key])
    prepare_output_dir(job.output_dir)
    writer, state = open_ledger(job.ledger_path, scrub, stderr)
    try:
        decision = decide(job.items, state)
        check_foreign_files(job, decision.to_send, state)
        remove_stale_temps(job.output_dir, {item.id for item in job.items})
        remove_stale_downloads(job.output_dir, job.ledger_path)
        # URL images to inline are fetched and checked before the run is recorded or paid for.
        with inline_downloads(
            job.output_dir, job.ledger_path, decision.to_send
        ) as settings.downloads:
            writer.append_sync(job_record(job, settings, new_run_id()))
            recovered = record_dangling(writer, state)
            if recovered:
                stderr.write(
                    f"batchbanana: {recovered} request(s) were in flight when the last run"
                    " stopped; recorded as interrupted (billed unknown)\n"
                )
            decision = decide(job.items, state)
            if decision.done:
                stderr.write(
                    f"batchbanana: {len(decision.done)} item(s) already ok in the ledger; not"
                    " sent again\n"
                )
            started = time.monotonic()
            result = run_restoring_signals(
                execute, job, decision.to_send, writer, state, settings, stderr, scrub
            )
            elapsed = time.monotonic() - started
    finally:
        writer.close()
    print_summary(job, decision, result, elapsed, stderr)
    if result.exit_code == EXIT_OK and decision.left_for_retry:
        return EXIT_FAILED
    return result.exit_code


def print_summary(
    job: Job, decision: Decision, result: RunResult, elapsed_s: float, stderr: TextIO
) -> None:
    """The short account at the end of a run, on stderr."""
    totals = result.totals
    counts = ", ".join(f"{count} {name}" for name, count in sorted(totals.outcomes.items()))
    sent = sum(totals.outcomes.values())
    lines = [
        f"batchbanana: job {job.name}: {sent} item(s) this run"
        + (f" ({counts})" if counts else "")
        + f" in {elapsed_s:.1f} s",
        f"  spent ${totals.run_spent_usd:.4f} this run; ledger total ${totals.spent_usd:.4f}"
        f" spent, ${totals.possibly_spent_usd:.4f} possibly spent",
    ]
    if totals.free_retries:
        lines.append(
            f"  {totals.free_retries} request(s) retried at no charge (429/503/no connection)"
        )
    for item_id, outcome, error in totals.failures[:10]:
        lines.append(f"  item '{item_id}': {outcome}: {error}")
    if len(totals.failures) > 10:
        lines.append(f"  ... and {len(totals.failures) - 10} more (see `batchbanana report`)")
    if totals.over_budget_usd:
        lines.append(
            f"  budget: items worth ${totals.over_budget_usd:.4f} were not sent; raise budget_usd"
            " (or --budget) and run again"
        )
    left = len(decision.left_for_retry) + sum(
        count
        for name, count in totals.outcomes.items()
        if name
        not in (
            "ok",
            "rate_limited",
            "unavailable",
            "connect_error",
            "http_error",
            "over_budget",
            "not_sent",
        )
    )
    if left:
        lines.append(
            f"  {left} item(s) need `batchbanana retry {job.ledger_path}` (their last attempt was"
            " billed or may have been)"
        )
    if totals.outcomes.get("not_sent"):
        lines.append(
            f"  {totals.outcomes['not_sent']} item(s) were not sent; running again sends them"
        )
    if result.stop_reason:
        lines.append(f"  stopped: {result.stop_reason}")
    if totals.inline_images_sent:
        saved = (
            f"; lossless optimisation saved {totals.bytes_saved / 1e6:.2f} MB"
            if totals.bytes_saved
            else ""
        )
        lines.append(
            f"  input images: {totals.images_encoded} read and encoded once each for"
            f" {totals.inline_images_sent} inline use(s){saved}"
        )
    lines.append(f"  images: {job.output_dir}  ledger: {job.ledger_path}")
    stderr.write("\n".join(lines) + "\n")
    stderr.flush()


def retry_ledger(
    ledger_path: Path,
    *,
    only: set[str] | None,
    concurrency: int | None,
    budget_usd: float | None,
    endpoint: str | None,
    confirm: Callable[[str], bool],
    show_progress: bool = True,
    stderr: TextIO | None = None,
) -> int:
    """`batchbanana retry`: pay again, explicitly, for the items whose latest outcome failed."""
    from batchbanana.plan import check_endpoint
    from batchbanana.rebuild import failed_items, job_from_ledger, ledger_pricing

    stderr = stderr or sys.stderr
    if not ledger_path.is_file():
        raise UserError(f"{ledger_path}: no such ledger file")
    writer, state = open_ledger(ledger_path, make_scrubber([]), stderr)
    try:
        pricing, book = ledger_pricing(state, ledger_path)
        chosen = failed_items(state, only, pricing, book)
        if not chosen:
            stderr.write("batchbanana: nothing to retry: no item's latest outcome is a failure\n")
            return EXIT_OK
        job = job_from_ledger(
            state, ledger_path, [item for item, _ in chosen], concurrency, budget_usd, endpoint
        )
        problem = check_endpoint(job.endpoint, job.allow_insecure_http)
        if problem:
            raise UserError(f"endpoint: {problem}")
        check_foreign_files(job, job.items, state)
        api_key = resolve_api_key(job.endpoint, job.api_key_env)
        scrub = make_scrubber([api_key])
        writer.set_scrubber(scrub)
        counts: dict[str, int] = {}
        for _, outcome in chosen:
            counts[outcome] = counts.get(outcome, 0) + 1
        estimate = money(sum(item.price.estimate_usd(item.image_size) for item, _ in chosen))
        described = ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))
        question = f"retry {len(chosen)} item(s) ({described}) at up to ${estimate:.4f}?"
        if not confirm(question):
            stderr.write("batchbanana: retry cancelled; nothing was sent\n")
            return EXIT_FAILED
        prepare_output_dir(job.output_dir)
        settings = RunSettings(
            endpoint=job.endpoint,
            auth=job.auth,
            api_key=api_key,
            concurrency=job.concurrency,
            budget_usd=job.budget_usd,
            show_progress=show_progress,
            command="retry",
        )
        with inline_downloads(job.output_dir, job.ledger_path, job.items) as settings.downloads:
            writer.append_sync(job_record(job, settings, new_run_id()))
            record_dangling(writer, state)
            started = time.monotonic()
            result = run_restoring_signals(
                execute, job, job.items, writer, state, settings, stderr, scrub
            )
            elapsed = time.monotonic() - started
    finally:
        writer.close()
    print_summary(job, Decision(), result, elapsed, stderr)
    return result.exit_code
